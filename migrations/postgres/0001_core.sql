-- chronicle core schema for PostgreSQL: streams, events and the one-statement append.
-- Everything is created in the store's schema (the connection's search_path).

CREATE TABLE streams (
    stream_id      text        NOT NULL PRIMARY KEY,
    category       text        NOT NULL,
    aggregate_type text,
    display_name   text,
    version        bigint      NOT NULL DEFAULT 0,
    event_count    bigint      NOT NULL DEFAULT 0,
    last_event_id  uuid,
    status         smallint    NOT NULL DEFAULT 0, -- 0 active, 1 soft-deleted, 2 tombstoned
    metadata       jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX streams_category ON streams (category, stream_id);

-- `transaction_id` is the writing transaction; readers of the global log order by
-- (transaction_id, position) and stop below the oldest running transaction, so an event
-- whose transaction commits late is never skipped.
CREATE TABLE events (
    position       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid        NOT NULL,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    payload        bytea       NOT NULL, -- JSON text, or chronicle's codec header + body
    correlation_id text,
    causation_id   text,
    tenant_id      text,
    user_id        text,
    metadata       jsonb,                -- request id, trace id, custom fields
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

CREATE INDEX events_commit_order ON events (transaction_id, position);
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_tenant ON events (tenant_id, position) WHERE tenant_id IS NOT NULL;
CREATE INDEX events_type ON events (event_type, position);
CREATE INDEX events_recorded_at ON events (recorded_at);

-- Plain (uncompressed, unencrypted) payloads as JSON, for people at a psql prompt.
CREATE VIEW events_json AS
SELECT position, event_id, stream_id, version, event_type, schema_version,
       CASE WHEN get_byte(payload, 0) < 128 THEN convert_from(payload, 'UTF8')::jsonb END AS payload,
       correlation_id, causation_id, tenant_id, user_id, metadata, recorded_at
FROM events;

-- Appends a batch to a stream in one statement: locks (or creates) the stream row, checks
-- the expected version, inserts the events and returns their versions and positions.
-- Rejections are raised with chronicle's own SQLSTATEs, so the transaction writes nothing:
--   CH409 wrong expected version (DETAIL: the actual version, empty for no stream)
--   CH410 stream deleted (DETAIL: 1 soft, 2 tombstoned)
-- p_expected_kind: 0 any, 1 no stream, 2 stream exists, 3 exact (p_expected_version).
CREATE FUNCTION chronicle_append(
    p_stream_id       text,
    p_category        text,
    p_expected_kind   smallint,
    p_expected        bigint,
    p_event_ids       uuid[],
    p_event_types     text[],
    p_schema_versions integer[],
    p_payloads        bytea[],
    p_correlation_ids text[],
    p_causation_ids   text[],
    p_tenant_ids      text[],
    p_user_ids        text[],
    p_metadata        jsonb[]
) RETURNS TABLE (out_version bigint, out_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_current bigint;
    v_status  smallint;
    v_new     boolean := false;
    v_count   bigint := cardinality(p_event_ids);
BEGIN
    SELECT s.version, s.status INTO v_current, v_status
    FROM streams s WHERE s.stream_id = p_stream_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO streams (stream_id, category) VALUES (p_stream_id, p_category)
        ON CONFLICT (stream_id) DO NOTHING;
        IF FOUND THEN
            v_new := true;
            v_current := 0;
            v_status := 0;
        ELSE
            -- Created by a concurrent append that committed meanwhile.
            SELECT s.version, s.status INTO v_current, v_status
            FROM streams s WHERE s.stream_id = p_stream_id FOR UPDATE;
        END IF;
    END IF;

    IF v_status <> 0 THEN
        RAISE EXCEPTION 'stream % is deleted', p_stream_id
            USING ERRCODE = 'CH410', DETAIL = v_status::text;
    END IF;
    IF (p_expected_kind = 1 AND v_current <> 0)
       OR (p_expected_kind = 2 AND v_new)
       OR (p_expected_kind = 3 AND v_current <> p_expected) THEN
        RAISE EXCEPTION 'wrong expected version on stream %', p_stream_id
            USING ERRCODE = 'CH409', DETAIL = CASE WHEN v_new THEN '' ELSE v_current::text END;
    END IF;

    UPDATE streams
    SET version = v_current + v_count,
        event_count = event_count + v_count,
        last_event_id = p_event_ids[v_count],
        updated_at = now()
    WHERE stream_id = p_stream_id;

    RETURN QUERY
    INSERT INTO events (event_id, stream_id, version, event_type, schema_version, payload,
                        correlation_id, causation_id, tenant_id, user_id, metadata)
    SELECT e.id, p_stream_id, v_current + e.ord, e.typ, e.sv, e.payload,
           e.corr, e.caus, e.tenant, e.usr, e.meta
    FROM unnest(p_event_ids, p_event_types, p_schema_versions, p_payloads,
                p_correlation_ids, p_causation_ids, p_tenant_ids, p_user_ids, p_metadata)
         WITH ORDINALITY AS e(id, typ, sv, payload, corr, caus, tenant, usr, meta, ord)
    ORDER BY e.ord
    RETURNING events.version, events.position;
END
$$;
