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

-- The database guards every append, so one INSERT into `events` is a whole append: each
-- row must carry the version after the stream's current one (no gaps, optimistic
-- concurrency), and the stream must not be deleted; then the stream row follows the
-- event. A rejected row aborts the statement, so a batch is written whole or not at all.
CREATE TRIGGER events_guard BEFORE INSERT ON events
BEGIN
    SELECT RAISE(ABORT, 'chronicle: stream deleted')
    WHERE EXISTS (SELECT 1 FROM streams WHERE stream_id = NEW.stream_id AND status <> 0);
    SELECT RAISE(ABORT, 'chronicle: wrong expected version')
    WHERE NEW.version <> COALESCE(
        (SELECT version FROM streams WHERE stream_id = NEW.stream_id), 0) + 1;
END;

CREATE TRIGGER events_advance_stream AFTER INSERT ON events
BEGIN
    INSERT INTO streams (stream_id, category, version, event_count, last_event_id,
                         created_at, updated_at)
    VALUES (NEW.stream_id,
            CASE WHEN instr(NEW.stream_id, '-') > 0
                 THEN substr(NEW.stream_id, 1, instr(NEW.stream_id, '-') - 1)
                 ELSE NEW.stream_id END,
            NEW.version, 1, NEW.event_id, NEW.recorded_at, NEW.recorded_at)
    ON CONFLICT (stream_id) DO UPDATE SET
        version = excluded.version,
        event_count = event_count + 1,
        last_event_id = excluded.last_event_id,
        updated_at = excluded.updated_at;
END;
