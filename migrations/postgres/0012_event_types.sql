-- Event types through a dictionary (issue 23, section 1). Every event repeated its type's
-- name and an 8-byte schema version; now it holds a 4-byte `type_id` naming a row of
-- `event_types`, the (type, schema version) pairs, which are few. Appends look the id up
-- in the statement (the store remembers which pairs exist, and adds a new pair in a
-- statement of its own before its first append); readers join the dictionary.
--
-- The table is rebuilt rather than altered, so that its columns lie in alignment order
-- (the 8-byte columns first, the texts last) and every row loses the padding the old
-- order cost, and so that the indexes are built packed. Positions, transaction ids and
-- times are copied as they are, so checkpoints, the outbox's requests and snapshots still
-- name the same events. Readers and writers wait for the copy (BENCHMARKS.md, "Upgrading
-- in place", gives the time per million events).

CREATE TABLE event_types (
    type_id        integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type     text    NOT NULL,
    schema_version bigint  NOT NULL,
    CONSTRAINT event_types_pair_key UNIQUE (event_type, schema_version)
);

INSERT INTO event_types (event_type, schema_version)
    SELECT DISTINCT event_type, schema_version FROM events ORDER BY 1, 2;

DROP VIEW events_json;
ALTER TABLE events RENAME TO events_before_0012;

CREATE TABLE events (
    position       bigint      GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    version        bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    type_id        integer     NOT NULL,
    stream_id      text        NOT NULL,
    payload        bytea       NOT NULL, -- JSON text, or chronicle's codec header + body
    correlation_id text,
    causation_id   text,
    tenant_id      text,
    user_id        text,
    metadata       jsonb                 -- request id, trace id, custom fields
);

INSERT INTO events (position, transaction_id, recorded_at, version, event_id, type_id,
                    stream_id, payload, correlation_id, causation_id, tenant_id, user_id,
                    metadata)
OVERRIDING SYSTEM VALUE
SELECT e.position, e.transaction_id, e.recorded_at, e.version, e.event_id, t.type_id,
       e.stream_id, e.payload, e.correlation_id, e.causation_id, e.tenant_id, e.user_id,
       e.metadata
FROM events_before_0012 e
JOIN event_types t USING (event_type, schema_version)
ORDER BY e.transaction_id, e.position;

-- New positions go on from where the old table's left off (not from the largest kept
-- position: one taken by a transaction that rolled back is never handed out again).
SELECT setval(pg_get_serial_sequence('events', 'position'), last)
FROM (SELECT pg_sequence_last_value(pg_get_serial_sequence('events_before_0012', 'position')::regclass)
             AS last) AS old
WHERE last IS NOT NULL;

DROP TABLE events_before_0012;

-- The new table's position identity was named beside the old one's; it takes its name.
DO $$
BEGIN
    EXECUTE format('ALTER SEQUENCE %s RENAME TO events_position_seq',
                   pg_get_serial_sequence('events', 'position'));
END
$$;

ALTER TABLE events
    ADD CONSTRAINT events_pkey PRIMARY KEY (transaction_id, position),
    ADD CONSTRAINT events_event_id_key UNIQUE (event_id),
    ADD CONSTRAINT events_stream_version_key UNIQUE (stream_id, version);
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_tenant ON events (tenant_id, transaction_id, position)
    WHERE tenant_id IS NOT NULL;
CREATE INDEX events_type ON events (type_id);
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);

-- Plain payloads as JSON, for people at a psql prompt: the same columns as before.
CREATE VIEW events_json AS
SELECT position, event_id, stream_id, version, event_type, schema_version,
       chronicle_payload_json(payload) AS payload,
       correlation_id, causation_id, tenant_id, user_id, metadata, recorded_at
FROM events JOIN event_types USING (type_id);
