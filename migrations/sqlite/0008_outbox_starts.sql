-- Where each outbox handler starts: it gets requests only for events after this position
-- (0/0: the beginning). Recorded when a processor first sees the handler, from the
-- handler's start (by default the end of the log then: "from now on"), and kept.
CREATE TABLE outbox_handlers (
    outbox          TEXT    NOT NULL,           -- the processor's checkpoint name
    handler         TEXT    NOT NULL,
    start_commit    INTEGER NOT NULL,
    start_position  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,           -- microseconds since the Unix epoch
    PRIMARY KEY (outbox, handler)
);

-- A request's event's transaction (0 on SQLite), so that a wait for a log position
-- compares requests in log order.
ALTER TABLE handler_requests ADD COLUMN event_commit INTEGER NOT NULL DEFAULT 0;
