-- Projection checkpoints: where each projection stopped in the global log, as the
-- (transaction, position) cursor; written in the transaction of the batch it covers.
CREATE TABLE projection_checkpoints (
    name        text        NOT NULL PRIMARY KEY,
    commit_id   bigint      NOT NULL,
    position    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Events a projection stepped over after its handler kept failing (FailurePolicy::Skip).
CREATE TABLE projection_skipped (
    name        text        NOT NULL,
    event_id    uuid        NOT NULL,
    position    bigint      NOT NULL,
    error       text        NOT NULL,
    skipped_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, event_id)
);
