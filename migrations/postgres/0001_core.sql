-- chronicle core schema for PostgreSQL: streams, events and the one-statement append.
-- Everything is created in the store's schema (the connection's search_path).

-- Stream ids sort bytewise (COLLATE "C"), as on SQLite, so listing pages the same way on
-- every backend and a category is a key range: `account` and `account-…` lie in
-- ['account', 'account.').
CREATE TABLE streams (
    stream_id      text        COLLATE "C" NOT NULL PRIMARY KEY,
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
    schema_version bigint      NOT NULL,
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

-- A plain (uncompressed, unencrypted) payload as jsonb; NULL for encoded payloads and for
-- text jsonb cannot hold (such as \u0000), so one odd row never breaks a query.
CREATE FUNCTION chronicle_payload_json(payload bytea) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF length(payload) = 0 OR get_byte(payload, 0) >= 128 THEN
        RETURN NULL;
    END IF;
    RETURN convert_from(payload, 'UTF8')::jsonb;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;

-- Plain payloads as JSON, for people at a psql prompt.
CREATE VIEW events_json AS
SELECT position, event_id, stream_id, version, event_type, schema_version,
       chronicle_payload_json(payload) AS payload,
       correlation_id, causation_id, tenant_id, user_id, metadata, recorded_at
FROM events;
