-- chronicle core schema for SQLite: streams and their events.
-- Times are microseconds since the Unix epoch (UTC); ids are 16-byte UUIDs.

-- A category is a key range of the primary key: `account` and `account-…` lie in
-- ['account', 'account.'), so it needs no index of its own.
CREATE TABLE streams (
    stream_id      TEXT    NOT NULL PRIMARY KEY,
    category       TEXT    NOT NULL,
    aggregate_type TEXT,
    display_name   TEXT,
    version        INTEGER NOT NULL DEFAULT 0,
    event_count    INTEGER NOT NULL DEFAULT 0,
    last_event_id  BLOB,
    status         INTEGER NOT NULL DEFAULT 0, -- 0 active, 1 soft-deleted, 2 tombstoned
    metadata       TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) WITHOUT ROWID;

-- AUTOINCREMENT: positions are never reused, even after hard deletes.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       BLOB    NOT NULL UNIQUE,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        BLOB    NOT NULL, -- JSON text, or chronicle's codec header + body
    correlation_id TEXT,
    causation_id   TEXT,
    tenant_id      TEXT,
    user_id        TEXT,
    metadata       TEXT,             -- request id, trace id, custom fields
    recorded_at    INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_tenant ON events (tenant_id, position) WHERE tenant_id IS NOT NULL;
CREATE INDEX events_type ON events (event_type, position);
CREATE INDEX events_recorded_at ON events (recorded_at);
