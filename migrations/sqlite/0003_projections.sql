-- Projection checkpoints: where each projection stopped in the global log, as the
-- (transaction, position) cursor; written in the transaction of the batch it covers.
CREATE TABLE projection_checkpoints (
    name        TEXT    NOT NULL PRIMARY KEY,
    commit_id   INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL -- microseconds since the Unix epoch
) WITHOUT ROWID;

-- Events a projection stepped over after its handler kept failing (FailurePolicy::Skip).
CREATE TABLE projection_skipped (
    name        TEXT    NOT NULL,
    event_id    BLOB    NOT NULL,
    position    INTEGER NOT NULL,
    error       TEXT    NOT NULL,
    skipped_at  INTEGER NOT NULL,
    PRIMARY KEY (name, event_id)
) WITHOUT ROWID;
