-- Event types through a dictionary (issue 23, section 1), as on PostgreSQL: every event
-- repeated its type's name and schema version, and the type index repeated the name
-- again; now `event_types` holds each (type, schema version) pair once under an integer
-- id, an event row holds the id, and the type index holds ids. Appends look the id up in
-- their `INSERT` (the store adds a new pair first, in the append's transaction); readers
-- join the dictionary.
--
-- SQLite changes a column only by copying the table: the events are copied with their
-- positions, the position counter is carried over (positions are never reused), and the
-- indexes and the append's triggers are made again on the copy. Readers and writers wait
-- for the copy.

CREATE TABLE event_types (
    type_id        INTEGER PRIMARY KEY,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    UNIQUE (event_type, schema_version)
);

INSERT INTO event_types (event_type, schema_version)
    SELECT DISTINCT event_type, schema_version FROM events ORDER BY 1, 2;

CREATE TABLE events_0010 (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       BLOB    NOT NULL UNIQUE,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    type_id        INTEGER NOT NULL,
    payload        BLOB    NOT NULL, -- JSON text, or chronicle's codec header + body
    correlation_id TEXT,
    causation_id   TEXT,
    tenant_id      TEXT,
    user_id        TEXT,
    metadata       TEXT,             -- request id, trace id, custom fields
    recorded_at    INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);

INSERT INTO events_0010 (position, event_id, stream_id, version, type_id, payload,
                         correlation_id, causation_id, tenant_id, user_id, metadata,
                         recorded_at)
SELECT e.position, e.event_id, e.stream_id, e.version, t.type_id, e.payload,
       e.correlation_id, e.causation_id, e.tenant_id, e.user_id, e.metadata, e.recorded_at
FROM events e
JOIN event_types t ON t.event_type = e.event_type AND t.schema_version = e.schema_version
ORDER BY e.position;

-- The position counter goes on from the old table's (not from the largest kept position:
-- positions freed by hard deletes are never handed out again).
DELETE FROM sqlite_sequence WHERE name = 'events_0010';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'events_0010', seq FROM sqlite_sequence WHERE name = 'events';

DROP TABLE events;
ALTER TABLE events_0010 RENAME TO events;

CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_tenant ON events (tenant_id, position) WHERE tenant_id IS NOT NULL;
CREATE INDEX events_type ON events (type_id);
CREATE INDEX events_recorded_at ON events (recorded_at);

-- The append's guard and the stream row's upkeep, as in 0001_core.sql.
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
