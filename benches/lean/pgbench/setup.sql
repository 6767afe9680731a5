-- The scratch tables beside chronicle's own (made by its migrations in the same schema):
-- `events_key`, chronicle's table with an integer stream key in place of the stream id
-- text, and `minimal`, the issue's ceiling (position, stream, version, jsonb payload, a
-- primary key and one unique index). One type in the dictionary; every stream row made
-- up front by `run.sh` (accounts of ~10 events, as the short-stream peers workload).
CREATE TABLE events_key (
    position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    version bigint NOT NULL,
    event_id uuid NOT NULL,
    type_id integer NOT NULL,
    stream_key integer NOT NULL,
    payload bytea NOT NULL,
    correlation_id text, causation_id text, tenant_id text, user_id text, metadata jsonb,
    PRIMARY KEY (transaction_id, position),
    UNIQUE (event_id),
    UNIQUE (stream_key, version));
CREATE INDEX ON events_key (type_id);
CREATE INDEX ON events_key USING brin (recorded_at);
CREATE INDEX ON events_key (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX ON events_key (tenant_id, transaction_id, position) WHERE tenant_id IS NOT NULL;
CREATE TABLE minimal (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id text NOT NULL,
    version bigint NOT NULL,
    payload jsonb NOT NULL,
    UNIQUE (stream_id, version));
INSERT INTO event_types (event_type, schema_version) VALUES ('account.Deposited', 1);
-- The append without the stream-row write, made safe: a function whose statements each
-- take a snapshot after the one before, so its reads follow the lock.
CREATE FUNCTION append_after_lock(p_stream text, p_id uuid, p_payload bytea)
RETURNS TABLE (pos bigint, ver bigint, tx bigint, at timestamptz) LANGUAGE plpgsql AS $$
DECLARE
    last bigint;
    state smallint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 0));
    SELECT s.status INTO state FROM streams s WHERE s.stream_id = p_stream;
    IF NOT FOUND THEN
        INSERT INTO streams (stream_id, category) VALUES (p_stream, 'acc');
        state := 0;
    END IF;
    IF state <> 0 THEN
        RETURN;
    END IF;
    SELECT coalesce(max(e.version), 0) INTO last FROM events e WHERE e.stream_id = p_stream;
    RETURN QUERY INSERT INTO events (event_id, stream_id, version, type_id, payload)
        VALUES (p_id, p_stream, last + 1, 1, p_payload)
        RETURNING events.position, events.version, events.transaction_id::text::bigint,
                  events.recorded_at;
END $$;
