-- Events name their stream by a surrogate key (issue 23, section 1). Every event repeated
-- its stream id's text, in its row and again in the (stream, version) key; now it holds
-- `stream_key`, an 8-byte number naming its row of `streams`, which keeps the text once.
-- Readers join `streams` for the id (the stream's row exists from its first append and is
-- never removed: a deleted stream keeps it, with its status).
--
-- The key is a `bigint`, not an `integer`, although no store holds 2^31 streams: an
-- append that may create its stream is an `INSERT … ON CONFLICT DO UPDATE`, which draws a
-- value from the identity whether it inserts or not, so the counter follows such appends,
-- not streams. An (8-byte key, 8-byte version) index entry is as wide as a (4, 8) one.
--
-- The table is rebuilt as 0012 rebuilt it (alignment order, indexes built packed,
-- positions, transaction ids and times kept), so checkpoints, the outbox's requests and
-- snapshots still name the same events. Readers and writers wait for the copy
-- (BENCHMARKS.md, "Upgrading in place", gives the time per million events).

ALTER TABLE streams ADD COLUMN stream_key bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE streams ADD CONSTRAINT streams_stream_key_key UNIQUE (stream_key);

-- An event without a stream row would have no key: stop rather than drop it.
DO $$
DECLARE
    orphan text;
BEGIN
    SELECT e.stream_id INTO orphan FROM events e
    WHERE NOT EXISTS (SELECT 1 FROM streams s WHERE s.stream_id = e.stream_id) LIMIT 1;
    IF orphan IS NOT NULL THEN
        RAISE EXCEPTION 'stream `%` has events but no row in streams', orphan;
    END IF;
END
$$;

DROP VIEW events_json;
ALTER TABLE events RENAME TO events_before_0013;

CREATE TABLE events (
    position       bigint      GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    version        bigint      NOT NULL,
    stream_key     bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    type_id        integer     NOT NULL,
    payload        bytea       NOT NULL, -- JSON text, or chronicle's codec header + body
    correlation_id text,
    causation_id   text,
    tenant_id      text,
    user_id        text,
    metadata       jsonb                 -- request id, trace id, custom fields
);

INSERT INTO events (position, transaction_id, recorded_at, version, stream_key, event_id,
                    type_id, payload, correlation_id, causation_id, tenant_id, user_id,
                    metadata)
OVERRIDING SYSTEM VALUE
SELECT e.position, e.transaction_id, e.recorded_at, e.version, s.stream_key, e.event_id,
       e.type_id, e.payload, e.correlation_id, e.causation_id, e.tenant_id, e.user_id,
       e.metadata
FROM events_before_0013 e
JOIN streams s USING (stream_id)
ORDER BY e.transaction_id, e.position;

-- New positions go on from where the old table's left off (see 0012).
SELECT setval(pg_get_serial_sequence('events', 'position'), last)
FROM (SELECT pg_sequence_last_value(pg_get_serial_sequence('events_before_0013', 'position')::regclass)
             AS last) AS old
WHERE last IS NOT NULL;

DROP TABLE events_before_0013;

DO $$
BEGIN
    EXECUTE format('ALTER SEQUENCE %s RENAME TO events_position_seq',
                   pg_get_serial_sequence('events', 'position'));
END
$$;

ALTER TABLE events
    ADD CONSTRAINT events_pkey PRIMARY KEY (transaction_id, position),
    ADD CONSTRAINT events_event_id_key UNIQUE (event_id),
    ADD CONSTRAINT events_stream_version_key UNIQUE (stream_key, version);
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_tenant ON events (tenant_id, transaction_id, position)
    WHERE tenant_id IS NOT NULL;
CREATE INDEX events_type ON events (type_id);
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);

-- Plain payloads as JSON, for people at a psql prompt: the same columns as before.
CREATE VIEW events_json AS
SELECT position, event_id, stream_id, e.version, event_type, schema_version,
       chronicle_payload_json(payload) AS payload,
       correlation_id, causation_id, tenant_id, user_id, e.metadata, recorded_at
FROM events e
JOIN streams USING (stream_key)
JOIN event_types USING (type_id);
