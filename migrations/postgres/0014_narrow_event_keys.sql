-- Events' stream key and version as 4-byte integers (issue 23, section 1: the design's
-- v4b). An (8-byte, 8-byte) (stream, version) index entry is 24 bytes with its header;
-- a (4, 4) one is 16. The row loses 8 bytes of columns too, which is one step of its
-- 8-byte alignment.
--
-- 0013 kept the key a `bigint` because the append's upsert drew an identity value on
-- every call; the append now draws one (from `streams_stream_key_seq`, by that name)
-- only when its snapshot has no row for the stream, so values count new streams (and the
-- rare append that races another one's creation of the same stream). The limits this
-- sets are typed errors at append time (`ValidationError::StorageLimit`): 2,147,483,647
-- events in one stream and about as many streams in one store.
--
-- `ALTER COLUMN … TYPE` rewrites `events` in place, keeping positions, transaction ids
-- and times, and rebuilds its indexes packed; the identity of `streams.stream_key`
-- becomes an `integer` sequence with it. Readers and writers wait for the rewrite
-- (BENCHMARKS.md, "Upgrading in place", gives the time per million events).

-- A value that does not fit would fail the rewrite with a bare "integer out of range":
-- stop first, naming it.
DO $$
DECLARE
    widest_key bigint;
    longest text;
BEGIN
    SELECT max(stream_key) INTO widest_key FROM streams;
    IF widest_key > 2147483647 THEN
        RAISE EXCEPTION 'stream key % does not fit in an integer: this store cannot take migration 0014', widest_key;
    END IF;
    SELECT stream_id INTO longest FROM streams WHERE version > 2147483647 LIMIT 1;
    IF longest IS NOT NULL THEN
        RAISE EXCEPTION 'stream `%` has more than 2147483647 events: this store cannot take migration 0014', longest;
    END IF;
END
$$;

DROP VIEW events_json;

-- The append names the key's sequence; 0013's identity took this name unless another
-- relation held it.
DO $$
BEGIN
    IF to_regclass('streams_stream_key_seq') IS DISTINCT FROM
       pg_get_serial_sequence('streams', 'stream_key')::regclass THEN
        EXECUTE format('ALTER SEQUENCE %s RENAME TO streams_stream_key_seq',
                       pg_get_serial_sequence('streams', 'stream_key'));
    END IF;
END
$$;

ALTER TABLE streams ALTER COLUMN stream_key TYPE integer;
ALTER TABLE events
    ALTER COLUMN stream_key TYPE integer,
    ALTER COLUMN version TYPE integer;

-- Plain payloads as JSON, for people at a psql prompt: the same columns as before.
CREATE VIEW events_json AS
SELECT position, event_id, stream_id, e.version::bigint AS version, event_type,
       schema_version, chronicle_payload_json(payload) AS payload,
       correlation_id, causation_id, tenant_id, user_id, e.metadata, recorded_at
FROM events e
JOIN streams USING (stream_key)
JOIN event_types USING (type_id);
