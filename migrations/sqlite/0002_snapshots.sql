-- Snapshots: an aggregate's state at a stream version, encoded like event payloads.
CREATE TABLE snapshots (
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    schema_version INTEGER NOT NULL, -- the shape of the state (the aggregate's snapshot_version)
    payload        BLOB    NOT NULL, -- JSON text, or chronicle's codec header + body
    created_at     INTEGER NOT NULL, -- microseconds since the Unix epoch
    PRIMARY KEY (stream_id, version)
) WITHOUT ROWID;
