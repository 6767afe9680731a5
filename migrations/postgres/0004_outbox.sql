-- The outbox's handler requests: one row per (event, handler), created by the processor
-- in the transaction that moves its checkpoint, claimed and completed by executors.
-- Times are microseconds since the Unix epoch (UTC), computed by the library, so that
-- the same statements run on SQLite and PostgreSQL.
CREATE TABLE handler_requests (
    id              bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    handler         text     NOT NULL,
    event_id        uuid     NOT NULL,
    event_position  bigint   NOT NULL,
    stream_id       text     NOT NULL,
    priority        integer  NOT NULL,
    ordered         boolean  NOT NULL,
    state           smallint NOT NULL DEFAULT 0, -- 0 pending, 1 running, 2 done, 3 dead
    attempts        integer  NOT NULL DEFAULT 0, -- executions started
    errors          integer  NOT NULL DEFAULT 0,
    last_error      text,
    due_at          bigint   NOT NULL,           -- not run before this
    locked_until    bigint,                      -- a running request's lease
    locked_by       text,                        -- the executor holding it
    created_at      bigint   NOT NULL,
    updated_at      bigint   NOT NULL,
    UNIQUE (handler, event_id)
);

-- Claims: the open requests in priority, then log order.
CREATE INDEX handler_requests_open ON handler_requests (priority, event_position)
    WHERE state < 2;
-- Ordered-per-stream handlers: the earlier open request of the same stream.
CREATE INDEX handler_requests_stream ON handler_requests (handler, stream_id, event_position)
    WHERE state < 2;
-- Purges and statistics.
CREATE INDEX handler_requests_state ON handler_requests (handler, state, updated_at);
