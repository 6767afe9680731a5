-- Snapshots: an aggregate's state at a stream version, encoded like event payloads.
CREATE TABLE snapshots (
    stream_id      text        COLLATE "C" NOT NULL,
    version        bigint      NOT NULL,
    schema_version bigint      NOT NULL, -- the shape of the state (the aggregate's snapshot_version)
    payload        bytea       NOT NULL, -- JSON text, or chronicle's codec header + body
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, version)
);
