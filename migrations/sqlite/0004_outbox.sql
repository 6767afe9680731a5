-- The outbox's handler requests: one row per (event, handler), created by the processor
-- in the transaction that moves its checkpoint, claimed and completed by executors.
-- Times are microseconds since the Unix epoch (UTC).
CREATE TABLE handler_requests (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    handler         TEXT    NOT NULL,
    event_id        BLOB    NOT NULL,
    event_position  INTEGER NOT NULL,
    stream_id       TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    ordered         INTEGER NOT NULL,           -- boolean
    state           INTEGER NOT NULL DEFAULT 0, -- 0 pending, 1 running, 2 done, 3 dead
    attempts        INTEGER NOT NULL DEFAULT 0, -- executions started
    errors          INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    due_at          INTEGER NOT NULL,           -- not run before this
    locked_until    INTEGER,                    -- a running request's lease
    locked_by       TEXT,                       -- the executor holding it
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (handler, event_id)
);

CREATE INDEX handler_requests_open ON handler_requests (priority, event_position)
    WHERE state < 2;
CREATE INDEX handler_requests_stream ON handler_requests (handler, stream_id, event_position)
    WHERE state < 2;
CREATE INDEX handler_requests_state ON handler_requests (handler, state, updated_at);
