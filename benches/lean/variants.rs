//! The PostgreSQL tables compared by `cargo bench --bench lean`: chronicle's schema as its
//! migrations make it, the candidates of a leaner one (each adds one change to the one
//! before), cqrs-es's `events` table and the minimal table of issue 23's ceiling.
//!
//! Each variant lives in a scratch schema of its own. It is filled by one `INSERT … SELECT`
//! from the log chronicle wrote (`{src}` is that schema), in position order, so every table
//! gets the same rows in the same order as chronicle's own and its indexes split the same
//! way; and it has the single-row INSERT a writer of that table would run, timed and
//! WAL-profiled side by side with the others.

/// How a variant's single-row INSERT names the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRef {
    /// The stream id as text (`account-…`).
    Text,
    /// A surrogate key from the variant's `streams` table, registered once per stream
    /// (`REGISTER_STREAM`) and cached by the writer.
    Key,
}

pub struct Variant {
    pub name: &'static str,
    pub what: &'static str,
    /// Creates the variant's tables in the current schema, in order. Empty: chronicle's
    /// migrations.
    pub ddl: &'static [&'static str],
    /// Copies the log of schema `{src}` in (the statements run in order).
    pub fill: &'static [&'static str],
    /// One event row: `$1` event id (uuid), `$2` stream (text or bigint, see `stream`),
    /// `$3` version (bigint), `$4` payload (bytea of JSON text); without `$1` when the table
    /// has no event id (`event_id` false), the others shifted down by one.
    pub insert: &'static str,
    pub event_id: bool,
    pub stream: StreamRef,
}

/// Registers a stream of a keyed variant, returning its key.
pub const REGISTER_STREAM: &str =
    "INSERT INTO streams (stream_id, category) VALUES ($1, 'account') RETURNING stream_key::bigint";

/// Moves the position identity past the copied positions (`OVERRIDING SYSTEM VALUE` leaves
/// it at the start).
const RESYNC_POSITION: &str = "SELECT setval(pg_get_serial_sequence('events', 'position'), \
     (SELECT max(position) FROM events))";

/// The type every timed insert writes, with its id in the keyed variants' dictionaries.
pub const INSERT_TYPE: &str = "account.Deposited";

/// Today's type dictionary, then the event columns of today's table, copied as they are
/// but for the stream keys, which the copy's `streams` drew anew.
const COPY_TYPES: &str = "INSERT INTO event_types (type_id, event_type, schema_version) \
     OVERRIDING SYSTEM VALUE SELECT type_id, event_type, schema_version FROM {src}.event_types";
const COPY_CHRONICLE: &str = "INSERT INTO events (position, transaction_id, recorded_at, version, \
     stream_key, event_id, type_id, payload, correlation_id, causation_id, tenant_id, user_id, \
     metadata) OVERRIDING SYSTEM VALUE \
     SELECT e.position, e.transaction_id, e.recorded_at, e.version, s.stream_key, e.event_id, \
     e.type_id, e.payload, e.correlation_id, e.causation_id, e.tenant_id, e.user_id, e.metadata \
     FROM {src}.events_flat e JOIN streams s USING (stream_id) \
     ORDER BY e.transaction_id, e.position";

const COPY_STREAMS: &str = "INSERT INTO streams (stream_id, category, aggregate_type, display_name, \
     version, event_count, last_event_id, status, metadata, created_at, updated_at) \
     SELECT stream_id, category, aggregate_type, display_name, version, event_count, \
     last_event_id, status, metadata, created_at, updated_at FROM {src}.streams ORDER BY created_at";

/// The streams table of the keyed variants: today's, with a surrogate key.
const KEYED_STREAMS: &str = "
CREATE TABLE streams (
    stream_key     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id      text        COLLATE \"C\" NOT NULL UNIQUE,
    category       text        NOT NULL,
    aggregate_type text,
    display_name   text,
    version        bigint      NOT NULL DEFAULT 0,
    event_count    bigint      NOT NULL DEFAULT 0,
    last_event_id  uuid,
    status         smallint    NOT NULL DEFAULT 0,
    metadata       jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);";

/// The type dictionary of V2 and V3.
const TYPES_TABLE: &str = "
CREATE TABLE event_types (
    type_id    smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type text     NOT NULL UNIQUE
);";

const TYPES_FILL: &str = "INSERT INTO event_types (event_type) \
     SELECT DISTINCT event_type FROM {src}.events_flat ORDER BY 1";

/// The keyed variants that keep the metadata columns in the row (V2, V3).
const COPY_TYPED: &str = "INSERT INTO events (position, transaction_id, stream_key, version, \
     recorded_at, event_id, type_id, schema_version, payload, correlation_id, causation_id, \
     tenant_id, user_id, metadata) OVERRIDING SYSTEM VALUE \
     SELECT e.position, e.transaction_id, s.stream_key, e.version, e.recorded_at, e.event_id, \
     t.type_id, e.schema_version, e.payload, e.correlation_id, e.causation_id, e.tenant_id, \
     e.user_id, e.metadata \
     FROM {src}.events_flat e JOIN streams s USING (stream_id) JOIN event_types t USING (event_type) \
     ORDER BY e.position";

/// The variants with the sparse metadata in a side table (V4 on).
const COPY_SLIM: [&str; 3] = [
    "INSERT INTO event_types (event_type, schema_version) \
     SELECT DISTINCT event_type, schema_version FROM {src}.events_flat ORDER BY 1, 2",
    "INSERT INTO events (position, transaction_id, stream_key, version, recorded_at, event_id, \
     type_id, payload) OVERRIDING SYSTEM VALUE \
     SELECT e.position, e.transaction_id, s.stream_key, e.version, e.recorded_at, e.event_id, \
     t.type_id, e.payload \
     FROM {src}.events_flat e JOIN streams s USING (stream_id) \
     JOIN event_types t ON t.event_type = e.event_type AND t.schema_version = e.schema_version \
     ORDER BY e.position",
    "INSERT INTO event_metadata SELECT position, correlation_id, causation_id, tenant_id, \
     user_id, metadata FROM {src}.events_flat \
     WHERE num_nonnulls(correlation_id, causation_id, tenant_id, user_id, metadata) > 0 \
     ORDER BY position",
];

/// The `events` table of V4 on: 8 columns in alignment order, none nullable; the stream
/// key's and version's type, the event-id constraint and the table's options vary.
macro_rules! slim_events {
    ($int:literal, $event_id:literal, $payload:literal, $with:literal) => {
        concat!(
            "CREATE TABLE events ( \
                 position       bigint      GENERATED ALWAYS AS IDENTITY, \
                 transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(), \
                 recorded_at    timestamptz NOT NULL DEFAULT now(), \
                 stream_key     ",
            $int,
            " NOT NULL, version ",
            $int,
            " NOT NULL, \
                 event_id       uuid        NOT NULL, \
                 type_id        smallint    NOT NULL, \
                 payload        bytea       ",
            $payload,
            " NOT NULL, \
                 CONSTRAINT events_pkey PRIMARY KEY (transaction_id, position), \
                 CONSTRAINT events_event_id_key ",
            $event_id,
            ", CONSTRAINT events_stream_version_key UNIQUE (stream_key, version)) ",
            $with,
            "; CREATE INDEX events_type ON events (type_id); \
             CREATE INDEX events_recorded_at ON events USING brin (recorded_at);"
        )
    };
}

/// The copy of V4 on.
const SLIM_FILL: &[&str] = &[
    COPY_STREAMS,
    COPY_SLIM[0],
    COPY_SLIM[1],
    COPY_SLIM[2],
    RESYNC_POSITION,
];

const SLIM_INSERT: &str = "INSERT INTO events (event_id, stream_key, version, type_id, payload) \
     VALUES ($1, $2, $3, 1, $4)";

/// The side table of the sparse metadata (V4 on): a row only for events that have any.
const SLIM_METADATA: &str = "
CREATE TABLE event_metadata (
    position       bigint NOT NULL PRIMARY KEY,
    correlation_id text,
    causation_id   text,
    tenant_id      text,
    user_id        text,
    metadata       jsonb
);
CREATE INDEX event_metadata_correlation ON event_metadata (correlation_id)
    WHERE correlation_id IS NOT NULL;
CREATE INDEX event_metadata_tenant ON event_metadata (tenant_id, position)
    WHERE tenant_id IS NOT NULL;";

/// The dictionary of (type, schema version) pairs of V4 on.
const SLIM_TYPES: &str = "
CREATE TABLE event_types (
    type_id        smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type     text     NOT NULL,
    schema_version smallint NOT NULL,
    UNIQUE (event_type, schema_version)
);";

pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "v0-today",
        what: "chronicle's schema today (every migration), a copy",
        ddl: &[],
        fill: &[COPY_STREAMS, COPY_TYPES, COPY_CHRONICLE, RESYNC_POSITION],
        insert: "INSERT INTO events (event_id, stream_key, version, type_id, payload) \
                 VALUES ($1, $2, $3, (SELECT type_id FROM event_types \
                 WHERE event_type = 'account.Deposited' AND schema_version = 1), $4)",
        event_id: true,
        stream: StreamRef::Key,
    },
    Variant {
        name: "v1-stream-key",
        what: "V0 + streams by a bigint surrogate key (events.stream_key, unique (stream_key, version))",
        ddl: &[
            KEYED_STREAMS,
            "
CREATE TABLE events (
    position       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid        NOT NULL,
    stream_key     bigint      NOT NULL,
    version        bigint      NOT NULL,
    event_type     text        NOT NULL,
    schema_version bigint      NOT NULL,
    payload        bytea       NOT NULL,
    correlation_id text,
    causation_id   text,
    tenant_id      text,
    user_id        text,
    metadata       jsonb,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_key, version)
);
CREATE INDEX events_commit_order ON events (transaction_id, position);
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_tenant ON events (tenant_id, position) WHERE tenant_id IS NOT NULL;
CREATE INDEX events_type ON events (event_type);
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);",
        ],
        fill: &[
            COPY_STREAMS,
            "INSERT INTO events (position, transaction_id, event_id, stream_key, version, \
             event_type, schema_version, payload, correlation_id, causation_id, tenant_id, \
             user_id, metadata, recorded_at) OVERRIDING SYSTEM VALUE \
             SELECT e.position, e.transaction_id, e.event_id, s.stream_key, e.version, \
             e.event_type, e.schema_version, e.payload, e.correlation_id, e.causation_id, \
             e.tenant_id, e.user_id, e.metadata, e.recorded_at \
             FROM {src}.events_flat e JOIN streams s USING (stream_id) ORDER BY e.position",
            RESYNC_POSITION,
        ],
        insert: "INSERT INTO events (event_id, stream_key, version, event_type, schema_version, \
                 payload) VALUES ($1, $2, $3, 'account.Deposited', 1, $4)",
        event_id: true,
        stream: StreamRef::Key,
    },
    Variant {
        name: "v2-types",
        what: "V1 + event types as a smallint through a dictionary, schema_version smallint, \
               columns ordered by alignment",
        ddl: &[
            KEYED_STREAMS,
            TYPES_TABLE,
            "
CREATE TABLE events (
    position       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_key     bigint      NOT NULL,
    version        bigint      NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    event_id       uuid        NOT NULL,
    type_id        smallint    NOT NULL,
    schema_version smallint    NOT NULL,
    payload        bytea       NOT NULL,
    correlation_id text,
    causation_id   text,
    tenant_id      text,
    user_id        text,
    metadata       jsonb,
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_key, version)
);
CREATE INDEX events_commit_order ON events (transaction_id, position);
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_tenant ON events (tenant_id, position) WHERE tenant_id IS NOT NULL;
CREATE INDEX events_type ON events (type_id);
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);",
        ],
        fill: &[COPY_STREAMS, TYPES_FILL, COPY_TYPED, RESYNC_POSITION],
        insert: "INSERT INTO events (event_id, stream_key, version, type_id, schema_version, \
                 payload) VALUES ($1, $2, $3, 1, 1, $4)",
        event_id: true,
        stream: StreamRef::Key,
    },
    Variant {
        name: "v3-merged-pk",
        what: "V2 + primary key (transaction_id, position): the commit-order index is the key",
        ddl: &[
            KEYED_STREAMS,
            TYPES_TABLE,
            "
CREATE TABLE events (
    position       bigint      GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_key     bigint      NOT NULL,
    version        bigint      NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    event_id       uuid        NOT NULL,
    type_id        smallint    NOT NULL,
    schema_version smallint    NOT NULL,
    payload        bytea       NOT NULL,
    correlation_id text,
    causation_id   text,
    tenant_id      text,
    user_id        text,
    metadata       jsonb,
    CONSTRAINT events_pkey PRIMARY KEY (transaction_id, position),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_key, version)
);
CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_tenant ON events (tenant_id, position) WHERE tenant_id IS NOT NULL;
CREATE INDEX events_type ON events (type_id);
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);",
        ],
        fill: &[COPY_STREAMS, TYPES_FILL, COPY_TYPED, RESYNC_POSITION],
        insert: "INSERT INTO events (event_id, stream_key, version, type_id, schema_version, \
                 payload) VALUES ($1, $2, $3, 1, 1, $4)",
        event_id: true,
        stream: StreamRef::Key,
    },
    Variant {
        name: "v4-slim-row",
        what: "V3 + the five sparse metadata columns in a side table, schema_version in the \
               type dictionary: 8 columns, none null, so no null bitmap (a 24-byte row header)",
        ddl: &[
            KEYED_STREAMS,
            SLIM_TYPES,
            SLIM_METADATA,
            slim_events!("bigint", "UNIQUE (event_id)", "", ""),
        ],
        fill: SLIM_FILL,
        insert: SLIM_INSERT,
        event_id: true,
        stream: StreamRef::Key,
    },
    Variant {
        name: "v5-hash-event-id",
        what: "V4 + event ids unique through a hash exclusion constraint instead of a btree",
        ddl: &[
            KEYED_STREAMS,
            SLIM_TYPES,
            SLIM_METADATA,
            slim_events!("bigint", "EXCLUDE USING hash (event_id WITH =)", "", ""),
        ],
        fill: SLIM_FILL,
        insert: SLIM_INSERT,
        event_id: true,
        stream: StreamRef::Key,
    },
    Variant {
        name: "v6-lz4-inline",
        what: "V5 + payloads compressed in the row by PostgreSQL (lz4, storage MAIN, \
               toast_tuple_target 128)",
        ddl: &[
            KEYED_STREAMS,
            SLIM_TYPES,
            SLIM_METADATA,
            slim_events!(
                "bigint",
                "EXCLUDE USING hash (event_id WITH =)",
                "COMPRESSION lz4",
                "WITH (toast_tuple_target = 128)"
            ),
            "ALTER TABLE events ALTER COLUMN payload SET STORAGE MAIN",
        ],
        fill: SLIM_FILL,
        insert: SLIM_INSERT,
        event_id: true,
        stream: StreamRef::Key,
    },
    Variant {
        name: "v4b-slim-btree",
        what: "V4 with the event-id btree but version and stream key as integer (4 bytes): \
               a narrower (stream, version) key",
        ddl: &[
            KEYED_STREAMS,
            SLIM_TYPES,
            SLIM_METADATA,
            slim_events!("integer", "UNIQUE (event_id)", "", ""),
        ],
        fill: SLIM_FILL,
        insert: "INSERT INTO events (event_id, stream_key, version, type_id, payload) \
                 VALUES ($1, $2::bigint::integer, $3::bigint::integer, 1, $4)",
        event_id: true,
        stream: StreamRef::Key,
    },
    Variant {
        name: "cqrs-es",
        what: "postgres-es 0.5's `events` table (its init.sql), the same events",
        ddl: &["
CREATE TABLE events (
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);"],
        fill: &[
            "INSERT INTO events SELECT 'Account', substr(stream_id, 9), version, \
                 substr(event_type, 9), '1.0', convert_from(payload, 'UTF8')::json, '{}' \
                 FROM {src}.events_flat ORDER BY position",
        ],
        insert: "INSERT INTO events VALUES ('Account', substr($1, 9), $2, 'Deposited', '1.0', \
                 convert_from($3, 'UTF8')::json, '{}')",
        event_id: false,
        stream: StreamRef::Text,
    },
    Variant {
        name: "minimal",
        what: "issue 23's ceiling: position, stream, version, jsonb payload; a primary key and \
               one unique index",
        ddl: &["
CREATE TABLE events (
    position  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id text   NOT NULL,
    version   bigint NOT NULL,
    payload   jsonb  NOT NULL,
    UNIQUE (stream_id, version)
);"],
        fill: &["INSERT INTO events (stream_id, version, payload) \
                 SELECT stream_id, version, convert_from(payload, 'UTF8')::jsonb \
                 FROM {src}.events_flat ORDER BY position"],
        insert: "INSERT INTO events (stream_id, version, payload) \
                 VALUES ($1, $2, convert_from($3, 'UTF8')::jsonb)",
        event_id: false,
        stream: StreamRef::Text,
    },
];
