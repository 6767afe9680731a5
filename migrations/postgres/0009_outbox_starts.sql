-- Where each outbox handler starts: it gets requests only for events after this position
-- (0/0: the beginning). Recorded when a processor first sees the handler, from the
-- handler's start (by default the end of the log then: "from now on"), and kept.
CREATE TABLE outbox_handlers (
    outbox          text    NOT NULL,           -- the processor's checkpoint name
    handler         text    NOT NULL,
    start_commit    bigint  NOT NULL,
    start_position  bigint  NOT NULL,
    created_at      bigint  NOT NULL,           -- microseconds since the Unix epoch
    PRIMARY KEY (outbox, handler)
);

-- A request's event's transaction, so that a wait for a log position compares requests
-- in log order (requests created before this migration count as earliest).
ALTER TABLE handler_requests ADD COLUMN event_commit bigint NOT NULL DEFAULT 0;
