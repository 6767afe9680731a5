-- Events name their stream by a key, as on PostgreSQL (issue 23, section 1): every event
-- repeated its stream id's text, in its row and again in the (stream, version) index; now
-- it holds `stream_key`, an integer naming its row of `streams`, which keeps the text
-- once. Readers join `streams` for the id (a stream's row exists from its first append
-- and is never removed: a deleted stream keeps it, with its status).
--
-- A stream row gets its key when it is inserted (`streams_key`: one more than the largest
-- key of any stream row or event, both read from an index; writers are serialized by the
-- database's write lock). chronicle never removes a stream row, and a key that events
-- still hold is never handed out again even if someone does. Its index holds the
-- stream id too (an index of a table without rowids holds its primary key), so a reader
-- finds a key's id in the index alone.
--
-- `events` is copied as 0010 copied it (positions, the position counter, indexes and the
-- append's triggers made again). Readers and writers wait for the copy.

ALTER TABLE streams ADD COLUMN stream_key INTEGER;

UPDATE streams SET stream_key = keys.n
FROM (SELECT stream_id, row_number() OVER (ORDER BY stream_id) AS n FROM streams) AS keys
WHERE keys.stream_id = streams.stream_id;

CREATE UNIQUE INDEX streams_stream_key ON streams (stream_key);

-- An event without a stream row would have no key: stop rather than drop it.
CREATE TEMP TABLE chronicle_0011_orphans (stream_id TEXT);
CREATE TEMP TRIGGER chronicle_0011_stop BEFORE INSERT ON chronicle_0011_orphans
BEGIN
    SELECT RAISE(ABORT, 'chronicle: a stream has events but no row in streams');
END;
INSERT INTO chronicle_0011_orphans
    SELECT e.stream_id FROM events e
    WHERE NOT EXISTS (SELECT 1 FROM streams s WHERE s.stream_id = e.stream_id) LIMIT 1;
DROP TABLE chronicle_0011_orphans;

CREATE TABLE events_0011 (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       BLOB    NOT NULL UNIQUE,
    stream_key     INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    type_id        INTEGER NOT NULL,
    payload        BLOB    NOT NULL, -- JSON text, or chronicle's codec header + body
    correlation_id TEXT,
    causation_id   TEXT,
    tenant_id      TEXT,
    user_id        TEXT,
    metadata       TEXT,             -- request id, trace id, custom fields
    recorded_at    INTEGER NOT NULL,
    UNIQUE (stream_key, version)
);

INSERT INTO events_0011 (position, event_id, stream_key, version, type_id, payload,
                         correlation_id, causation_id, tenant_id, user_id, metadata,
                         recorded_at)
SELECT e.position, e.event_id, s.stream_key, e.version, e.type_id, e.payload,
       e.correlation_id, e.causation_id, e.tenant_id, e.user_id, e.metadata, e.recorded_at
FROM events e
JOIN streams s USING (stream_id)
ORDER BY e.position;

DELETE FROM sqlite_sequence WHERE name = 'events_0011';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'events_0011', seq FROM sqlite_sequence WHERE name = 'events';

DROP TABLE events;
ALTER TABLE events_0011 RENAME TO events;

CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_tenant ON events (tenant_id, position) WHERE tenant_id IS NOT NULL;
CREATE INDEX events_type ON events (type_id);
CREATE INDEX events_recorded_at ON events (recorded_at);

-- The append's guard and the stream row's upkeep, as in 0010, by the key. The append
-- inserts a new stream's row before its events (which need its key), so the upkeep is an
-- update, and an event whose stream has no row is refused as the guard refuses others.
CREATE TRIGGER events_guard BEFORE INSERT ON events
BEGIN
    SELECT RAISE(ABORT, 'chronicle: no such stream') WHERE NEW.stream_key IS NULL;
    SELECT RAISE(ABORT, 'chronicle: stream deleted')
    WHERE EXISTS (SELECT 1 FROM streams WHERE stream_key = NEW.stream_key AND status <> 0);
    SELECT RAISE(ABORT, 'chronicle: wrong expected version')
    WHERE NEW.version <> COALESCE(
        (SELECT version FROM streams WHERE stream_key = NEW.stream_key), 0) + 1;
END;

CREATE TRIGGER events_advance_stream AFTER INSERT ON events
BEGIN
    UPDATE streams SET
        version = NEW.version,
        event_count = event_count + 1,
        last_event_id = NEW.event_id,
        updated_at = NEW.recorded_at
    WHERE stream_key = NEW.stream_key;
END;

CREATE TRIGGER streams_key AFTER INSERT ON streams WHEN NEW.stream_key IS NULL
BEGIN
    UPDATE streams SET stream_key = 1 + max(
        COALESCE((SELECT max(stream_key) FROM streams), 0),
        COALESCE((SELECT max(stream_key) FROM events), 0))
    WHERE stream_id = NEW.stream_id;
END;
