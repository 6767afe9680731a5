//! What differs between SQLite and PostgreSQL in the statements the SQL backends share.
//!
//! [`Dialect`], implemented for `sqlx::Sqlite` and `sqlx::Postgres`, holds only that: the
//! column lists and a few fragments of the shared statements (row locks, bytewise order,
//! JSON lists, index hints, the outbox claim's locks and planner settings and its turn
//! locks), how times, ids and lists of texts are bound (and lists tested), what "now" is,
//! how a time column reads back, how a write transaction begins, the count of rows a
//! statement changed, how a connection is handed to read models ([`SqlConnection`]), and
//! (through [`DecodeRows`](super::rows::DecodeRows)) how rows are decoded. Code written
//! once is generic over `D: Dialect`, in `impl` blocks that [`sql_impl!`] gives sqlx's
//! bounds (`backend`, `reads`, `migrate`, `tx`, `outbox`, `keys_sql`, `retention_sql`);
//! portable SQL's row reading extends the trait (`portable.rs`). What a backend does its
//! own way beyond statements (the append, the log window, its life cycle) is
//! `sql/backend.rs`'s `Engine`.

use std::future::Future;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{Decode, Encode, Pool, QueryBuilder, Transaction, Type};
use uuid::Uuid;

use super::event_joins::{EVENT_JOINS, TYPES_JOIN, of_stream};
use super::rows::DecodeRows;
use crate::error::{Error, Result};
use crate::read::EventParts;
use crate::store::batch::SqlConnection;

/// What a database's statements need that the other's do not; see the module.
pub(crate) trait Dialect: DecodeRows + Sized {
    /// The columns of `events` before the payload, in the order
    /// [`DecodeRows::event_row`] reads them.
    const EVENT_HEAD: &'static str;
    /// The payload column (left out of a read that does not ask for the payload).
    const EVENT_PAYLOAD: &'static str;
    /// The metadata columns, the four ids then the extra JSON as text (left out of a read
    /// that does not ask for the metadata).
    const EVENT_METADATA: &'static str;
    /// The columns of `events` after the metadata.
    const EVENT_TAIL: &'static str;
    /// The statement that adds to `event_types` the (type, schema version) pairs of the
    /// JSON array of pairs bound as `$1` that it lacks (`event_types::add`). Its `NOT
    /// EXISTS` keeps present pairs from drawing an id (PostgreSQL's `INSERT … ON CONFLICT`
    /// draws one from the identity for every row it tries); its `ON CONFLICT` covers a
    /// writer adding the same pair at the same time, whose commit it waits for.
    const ADD_EVENT_TYPES: &'static str;
    /// The columns of `streams`, as [`DecodeRows::stream_row`] reads them.
    const STREAM_COLUMNS: &'static str;
    /// The function that gives the smaller of two values.
    const LEAST: &'static str;
    /// What makes an integer expression of a result column a 64-bit one (PostgreSQL types
    /// a `UNION`'s columns by its first member, and `length()` as `integer`).
    const BIGINT: &'static str;
    /// The head row's event columns in the one-statement start of a load: NULLs, typed
    /// where the database types a `UNION`'s columns by its first member.
    const START_NULLS: &'static str;
    /// What goes around a `SELECT … ORDER BY … LIMIT` to make it a member of a
    /// `UNION ALL`.
    const ORDERED_MEMBER: (&'static str, &'static str);
    /// What follows a `SELECT` of a row that the transaction then holds until it ends
    /// (nothing where a write transaction holds the whole database: SQLite).
    const FOR_UPDATE: &'static str;
    /// The statement that holds a stream (bound as `$1`) for the rest of a write
    /// transaction before its row is read `FOR UPDATE`: PostgreSQL's per-stream advisory
    /// lock, the one appends take first; `None` where the write lock holds every stream
    /// (SQLite).
    const LOCK_STREAM: Option<&'static str>;
    /// What follows a bound JSON text to store it in a JSON column.
    const JSON_PARAM: &'static str;
    /// What follows an `ORDER BY` of text to sort it bytewise (SQLite's own order).
    const BYTEWISE: &'static str;
    /// What follows the outbox claim's pick of requests so that executors claiming at once
    /// pass over each other's (nothing where the write lock serializes claims: SQLite).
    const SKIP_LOCKED: &'static str;
    /// The statement run before the outbox claim, in its transaction, if any (PostgreSQL:
    /// the planner settings that keep the claim on its index, and no wait for the disk).
    const BEFORE_CLAIM: Option<&'static str>;
    /// The log position of the last event committed and visible to the transaction
    /// (transaction id, position): by commit on PostgreSQL, by position on SQLite.
    const LAST_COMMITTED: &'static str;
    /// The `events` columns of the log's order, for an `ORDER BY`: (transaction, position)
    /// on PostgreSQL, its primary key; the position on SQLite.
    const LOG_ORDER: &'static str;
    /// [`Dialect::LOG_ORDER`] backwards: the newest events first.
    const NEWEST_FIRST: &'static str;

    /// A time as a statement binds it.
    type Time: for<'t> Encode<'t, Self> + Type<Self> + Send + 'static;
    /// A list of texts as a statement binds it, for [`Dialect::in_list`].
    type List: for<'t> Encode<'t, Self> + Type<Self> + Send + 'static;
    /// A time column as it reads back, for [`Dialect::stored_time`].
    type StoredTime: for<'r> Decode<'r, Self> + Type<Self> + Send + Unpin + 'static;

    /// The condition "`column` is one of the list bound as `param`".
    fn in_list(column: &str, param: &str) -> String;

    /// The elements of the JSON array bound as `param` as a subquery's rows, of type
    /// `pg_type` on PostgreSQL (SQLite keeps JSON's own types).
    fn json_elements(param: &str, pg_type: &str) -> String;

    /// The rows `(handler, stream_id)` of the JSON array of pairs bound as `param`.
    fn json_pairs(param: &str) -> String;

    /// `INDEXED BY index` where the planner must be told (SQLite plans without statistics
    /// unless someone ran `ANALYZE`, and then took an index of every open request of a
    /// handler for the outbox claim); nothing on PostgreSQL.
    fn indexed_by(index: &str) -> String;

    /// The condition "`id` is one of the rows of `select`", read through the primary key
    /// whatever number of rows the planner guesses `select` gives (PostgreSQL guessed 100
    /// rows of a JSON list for `IN` and read the whole table; `= ANY (ARRAY(…))` it does not).
    fn id_in(select: &str) -> String;

    /// The statement that takes, for the rest of the transaction and in one order for
    /// every transaction, a lock per (handler, stream) of the `keys` subquery (PostgreSQL's
    /// advisory locks); `None` where the write lock already serializes writers (SQLite).
    fn lock_turns(keys: &str) -> Option<String>;

    /// `items` as bound for [`Dialect::in_list`].
    ///
    /// # Errors
    /// [`Error::Internal`] when the list cannot be written.
    fn list<T: AsRef<str>>(items: &[T]) -> Result<Self::List>;

    /// The SQL for "now", given the microseconds since the Unix epoch bound as `param`
    /// (the same clock on both databases).
    fn now(param: &str) -> String;

    /// A time column read back; the stored value, described, when it is no time.
    fn stored_time(time: Self::StoredTime) -> std::result::Result<DateTime<Utc>, String>;

    /// A write transaction on `pool`.
    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>>> + Send;

    /// `time` as a statement binds it.
    fn time_param(time: DateTime<Utc>) -> Self::Time;

    /// Appends "is one of `ids`" to a statement that ends with a `uuid` column.
    fn push_in_ids(query: &mut QueryBuilder<Self>, ids: &[Uuid]);

    /// The rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// A connection of this database, as the seam hands it to read models.
    fn connection(conn: &mut Self::Connection) -> SqlConnection<'_>;

    /// The shared statements, built once from the constants above.
    fn statements() -> &'static Statements;
}

/// The fixed statements of the shared reads, built once per dialect from its fragments
/// (see `reads`).
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) stream_info: String,
    pub(crate) list_streams: String,
    pub(crate) events: String,
    /// The events of a stream in a version range, narrow (as a replay needs them), at
    /// most $4.
    pub(crate) replay_stream: String,
    /// The column lists of `events` for each [`EventParts`] (see [`Statements::event_columns`];
    /// PostgreSQL's log windows take their own head, `postgres/window.rs`).
    #[cfg(feature = "sqlite")]
    event_columns: [String; 4],
    pub(crate) replay_start: String,
    pub(crate) list_snapshots: String,
    /// A projection's first checkpoint (or the move of one still at the start).
    pub(crate) insert_checkpoint: String,
    /// The move of a checkpoint from where it still is.
    pub(crate) move_checkpoint: String,
    pub(crate) locked_checkpoint: String,
    pub(crate) checkpoints: String,
    pub(crate) record_skip: String,
}

/// The columns of `events` a read of `parts` selects, `head` first (`Dialect::EVENT_HEAD`,
/// or columns in the same order that take them elsewhere): the columns of the parts not
/// asked for are left out.
pub(crate) fn event_columns<D: Dialect>(head: &str, parts: EventParts) -> String {
    let payload = parts.payload().then_some(D::EVENT_PAYLOAD);
    let metadata = parts.metadata().then_some(D::EVENT_METADATA);
    [Some(head), payload, metadata, Some(D::EVENT_TAIL)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
}

impl Statements {
    /// The statements of `D`.
    fn of<D: Dialect>() -> Self {
        let (member_open, member_close) = D::ORDERED_MEMBER;
        let event_columns = [
            EventParts::ALL,
            EventParts::PAYLOAD,
            EventParts::METADATA,
            EventParts::NONE,
        ]
        .map(|parts| event_columns::<D>(D::EVENT_HEAD, parts));
        Statements {
            stream_info: format!(
                "SELECT {} FROM streams WHERE stream_id = $1",
                D::STREAM_COLUMNS
            ),
            list_streams: format!("SELECT {} FROM streams", D::STREAM_COLUMNS),
            events: format!("SELECT {} FROM events{}", event_columns[0], EVENT_JOINS),
            replay_stream: format!(
                "SELECT event_id, version, event_type, schema_version, payload \
                 FROM events{TYPES_JOIN} \
                 WHERE {} AND version BETWEEN $2 AND $3 ORDER BY version LIMIT $4",
                of_stream!("$1")
            ),
            #[cfg(feature = "sqlite")]
            event_columns,
            // One round trip: the stream row (kind 0), the newest snapshot at or below $2
            // (kind 1) and the first page of events after it (kind 2), as rows of one shape.
            // Every statement is a round trip (on SQLite a hop to the connection's thread and
            // back), which cost a snapshot load more than the reads did.
            replay_start: format!(
                "WITH head AS (SELECT version, status FROM streams WHERE stream_id = $1), \
                 snap AS ( \
                     SELECT version, schema_version, payload, created_at FROM snapshots \
                     WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT 1), \
                 base AS (SELECT COALESCE((SELECT version FROM snap), 0) AS v) \
                 SELECT 0{int} AS kind, version, status{int} AS n, {nulls} \
                 FROM head \
                 UNION ALL \
                 SELECT 1{int}, version, schema_version, NULL, NULL, payload, created_at FROM snap \
                 UNION ALL \
                 {member_open}SELECT 2{int}, e.version, schema_version, e.event_id, event_type, \
                         e.payload, NULL \
                  FROM events e{types}, head \
                  WHERE e.{of_stream} AND head.status = 0 \
                    AND e.version > (SELECT v FROM base) AND e.version <= {least}(head.version, $2) \
                  ORDER BY e.version LIMIT $3{member_close}",
                int = D::BIGINT,
                nulls = D::START_NULLS,
                least = D::LEAST,
                types = TYPES_JOIN,
                of_stream = of_stream!("$1"),
            ),
            list_snapshots: format!(
                "SELECT version, schema_version, length(payload){}, created_at FROM snapshots \
                 WHERE stream_id = $1 ORDER BY version DESC",
                D::BIGINT
            ),
            // $1 name, $2/$3 where it is, $4/$5 where it goes, $6 now.
            insert_checkpoint: format!(
                "INSERT INTO projection_checkpoints (name, commit_id, position, updated_at) \
                 VALUES ($1, $4, $5, {}) \
                 ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, \
                     position = excluded.position, updated_at = excluded.updated_at \
                 WHERE projection_checkpoints.commit_id = $2 \
                   AND projection_checkpoints.position = $3",
                D::now("$6")
            ),
            move_checkpoint: format!(
                "UPDATE projection_checkpoints SET commit_id = $4, position = $5, \
                     updated_at = {} \
                 WHERE name = $1 AND commit_id = $2 AND position = $3",
                D::now("$6")
            ),
            locked_checkpoint: format!(
                "SELECT commit_id, position FROM projection_checkpoints WHERE name = $1{}",
                D::FOR_UPDATE
            ),
            checkpoints: format!(
                "SELECT name, commit_id, position, updated_at FROM projection_checkpoints \
                 ORDER BY name{}",
                D::BYTEWISE
            ),
            record_skip: format!(
                "INSERT INTO projection_skipped (name, event_id, position, error, skipped_at) \
                 VALUES ($1, $2, $3, $4, {}) ON CONFLICT (name, event_id) DO UPDATE SET \
                     error = excluded.error, skipped_at = excluded.skipped_at",
                D::now("$5")
            ),
        }
    }
}

#[cfg(feature = "sqlite")]
impl Statements {
    /// The columns of `events` a read of `parts` selects, in the order
    /// [`DecodeRows::event_row`] reads them for `parts`: the columns of the parts not
    /// asked for are left out.
    pub(crate) fn event_columns(&self, parts: EventParts) -> &str {
        let index = match (parts.payload(), parts.metadata()) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        &self.event_columns[index]
    }
}

#[cfg(feature = "sqlite")]
impl Dialect for sqlx::Sqlite {
    const EVENT_HEAD: &'static str =
        "position, event_id, stream_id, version, event_type, schema_version";
    const EVENT_PAYLOAD: &'static str = "payload";
    const EVENT_METADATA: &'static str =
        "correlation_id, causation_id, tenant_id, user_id, metadata";
    const EVENT_TAIL: &'static str = "recorded_at";
    const ADD_EVENT_TYPES: &'static str = "INSERT INTO event_types (event_type, schema_version) \
         SELECT json_extract(w.value, '$[0]'), json_extract(w.value, '$[1]') \
         FROM json_each($1) AS w \
         WHERE NOT EXISTS (SELECT 1 FROM event_types t \
             WHERE t.event_type = json_extract(w.value, '$[0]') \
               AND t.schema_version = json_extract(w.value, '$[1]')) \
         ON CONFLICT (event_type, schema_version) DO NOTHING";
    const STREAM_COLUMNS: &'static str = "stream_id, category, aggregate_type, display_name, \
         version, event_count, last_event_id, status, metadata, created_at, updated_at";
    const LEAST: &'static str = "MIN";
    const BIGINT: &'static str = "";
    const START_NULLS: &'static str =
        "NULL AS event_id, NULL AS event_type, NULL AS payload, NULL AS at";
    // A compound SELECT takes no parenthesized member.
    const ORDERED_MEMBER: (&'static str, &'static str) = ("SELECT * FROM (", ")");
    const FOR_UPDATE: &'static str = "";
    const LOCK_STREAM: Option<&'static str> = None;
    const JSON_PARAM: &'static str = "";
    const BYTEWISE: &'static str = "";
    const SKIP_LOCKED: &'static str = "";
    const BEFORE_CLAIM: Option<&'static str> = None;
    const LAST_COMMITTED: &'static str =
        "SELECT 0, position FROM events ORDER BY position DESC LIMIT 1";
    const LOG_ORDER: &'static str = "position";
    const NEWEST_FIRST: &'static str = "position DESC";

    /// Microseconds since the Unix epoch.
    type Time = i64;

    /// JSON text.
    type List = String;
    /// Microseconds since the Unix epoch.
    type StoredTime = i64;

    fn time_param(time: DateTime<Utc>) -> i64 {
        time.timestamp_micros()
    }

    fn in_list(column: &str, param: &str) -> String {
        format!("{column} IN (SELECT value FROM json_each({param}))")
    }

    fn json_elements(param: &str, _pg_type: &str) -> String {
        format!("SELECT value FROM json_each({param})")
    }

    fn json_pairs(param: &str) -> String {
        format!(
            "SELECT json_extract(value, '$[0]') AS handler, \
                 json_extract(value, '$[1]') AS stream_id FROM json_each({param})"
        )
    }

    fn indexed_by(index: &str) -> String {
        format!("INDEXED BY {index}")
    }

    fn id_in(select: &str) -> String {
        format!("id IN ({select})")
    }

    fn lock_turns(_keys: &str) -> Option<String> {
        None
    }

    fn list<T: AsRef<str>>(items: &[T]) -> Result<String> {
        let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
        serde_json::to_string(&items).map_err(|error| Error::Internal(format!("list: {error}")))
    }

    fn now(param: &str) -> String {
        param.to_owned()
    }

    fn stored_time(micros: i64) -> std::result::Result<DateTime<Utc>, String> {
        DateTime::from_timestamp_micros(micros).ok_or_else(|| format!("{micros} µs"))
    }

    /// Takes the write lock at once (a deferred transaction could fail to upgrade).
    async fn begin_write(pool: &Pool<Self>) -> Result<Transaction<'static, Self>> {
        pool.begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|error| Error::from_sqlx("begin", error))
    }

    fn push_in_ids(query: &mut QueryBuilder<Self>, ids: &[Uuid]) {
        query.push(" IN (");
        let mut list = query.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        query.push(")");
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn connection(conn: &mut sqlx::SqliteConnection) -> SqlConnection<'_> {
        SqlConnection::Sqlite(conn)
    }

    fn statements() -> &'static Statements {
        static STATEMENTS: LazyLock<Statements> = LazyLock::new(Statements::of::<sqlx::Sqlite>);
        &STATEMENTS
    }
}

#[cfg(feature = "postgres")]
impl Dialect for sqlx::Postgres {
    const EVENT_HEAD: &'static str = "position, transaction_id AS commit_id, event_id, \
         stream_id, version, event_type, schema_version";
    const EVENT_PAYLOAD: &'static str = "payload";
    const EVENT_METADATA: &'static str =
        "correlation_id, causation_id, tenant_id, user_id, metadata::text AS metadata";
    const EVENT_TAIL: &'static str = "recorded_at";
    const ADD_EVENT_TYPES: &'static str = "INSERT INTO event_types (event_type, schema_version) \
         SELECT w ->> 0, (w ->> 1)::bigint FROM json_array_elements($1::json) AS w \
         WHERE NOT EXISTS (SELECT 1 FROM event_types t \
             WHERE t.event_type = w ->> 0 AND t.schema_version = (w ->> 1)::bigint) \
         ON CONFLICT (event_type, schema_version) DO NOTHING";
    const STREAM_COLUMNS: &'static str = "stream_id, category, aggregate_type, display_name, \
         version, event_count, last_event_id, status, metadata::text AS metadata, created_at, \
         updated_at";
    const LEAST: &'static str = "LEAST";
    const BIGINT: &'static str = "::bigint";
    const START_NULLS: &'static str = "NULL::uuid AS event_id, NULL::text AS event_type, \
         NULL::bytea AS payload, NULL::timestamptz AS at";
    const ORDERED_MEMBER: (&'static str, &'static str) = ("(", ")");
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const LOCK_STREAM: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))");
    const JSON_PARAM: &'static str = "::jsonb";
    const BYTEWISE: &'static str = " COLLATE \"C\"";
    const SKIP_LOCKED: &'static str = "FOR UPDATE SKIP LOCKED";
    // Walk the open requests' index in claim order and stop at the limit. On a table
    // whose statistics lag its churn (no autovacuum, or just after a burst), PostgreSQL
    // otherwise fetched every open request and sorted them for each claim: 4.9 ms instead
    // of 1.7 ms at 10,000 open requests, and growing with them. And do not wait for the
    // claim to reach the disk: a claim lost in a crash leaves its requests pending, to be
    // claimed again, which a lease running out would do anyway.
    const BEFORE_CLAIM: Option<&'static str> = Some(
        "SELECT set_config('enable_sort', 'off', true), \
                set_config('enable_bitmapscan', 'off', true), \
                set_config('synchronous_commit', 'off', true)",
    );
    // Named `commit_id` so that `ORDER BY` sorts by the column, through the primary key,
    // not by the cast (which keeps the column's name): every event sorted, per call.
    const LAST_COMMITTED: &'static str = "SELECT transaction_id::text::bigint AS commit_id, \
         position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1";
    const LOG_ORDER: &'static str = "transaction_id, position";
    const NEWEST_FIRST: &'static str = "transaction_id DESC, position DESC";

    type Time = DateTime<Utc>;

    /// A text array.
    type List = Vec<String>;
    /// A `timestamptz` read in binary form.
    type StoredTime = StoredTime;

    fn time_param(time: DateTime<Utc>) -> DateTime<Utc> {
        time
    }

    fn in_list(column: &str, param: &str) -> String {
        format!("{column} = ANY({param})")
    }

    fn json_elements(param: &str, pg_type: &str) -> String {
        format!("SELECT json_array_elements_text({param}::json)::{pg_type}")
    }

    fn json_pairs(param: &str) -> String {
        format!(
            "SELECT k ->> 0 AS handler, k ->> 1 AS stream_id \
             FROM json_array_elements({param}::json) AS k"
        )
    }

    fn indexed_by(_index: &str) -> String {
        String::new()
    }

    fn id_in(select: &str) -> String {
        format!("id = ANY (ARRAY({select}))")
    }

    fn lock_turns(keys: &str) -> Option<String> {
        Some(format!(
            "SELECT count(pg_advisory_xact_lock({TURN_LOCK_CLASS}, key)) FROM ( \
                 SELECT DISTINCT hashtext(handler || chr(10) || stream_id) AS key \
                 FROM ({keys}) AS keys ORDER BY key) AS sorted"
        ))
    }

    fn list<T: AsRef<str>>(items: &[T]) -> Result<Vec<String>> {
        Ok(items.iter().map(|item| item.as_ref().to_owned()).collect())
    }

    fn now(param: &str) -> String {
        format!("to_timestamp({param}::float8 / 1000000)")
    }

    fn stored_time(time: StoredTime) -> std::result::Result<DateTime<Utc>, String> {
        super::rows::from_postgres_micros(time.0)
    }

    async fn begin_write(pool: &Pool<Self>) -> Result<Transaction<'static, Self>> {
        pool.begin()
            .await
            .map_err(|error| Error::from_sqlx("begin", error))
    }

    fn push_in_ids(query: &mut QueryBuilder<Self>, ids: &[Uuid]) {
        query.push(" = ANY(").push_bind(ids).push(")");
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn connection(conn: &mut sqlx::PgConnection) -> SqlConnection<'_> {
        SqlConnection::Postgres(conn)
    }

    fn statements() -> &'static Statements {
        static STATEMENTS: LazyLock<Statements> = LazyLock::new(Statements::of::<sqlx::Postgres>);
        &STATEMENTS
    }
}

/// The class of the PostgreSQL advisory locks on the outbox's turns (two-key locks: their
/// space is apart from the one-key locks of appends and leases).
#[cfg(feature = "postgres")]
const TURN_LOCK_CLASS: i32 = 0x6f62_7478;

/// A `timestamptz` as sent in binary form: microseconds since 2000-01-01 UTC, decoded
/// without sqlx's chrono conversion, which panics on `infinity`.
#[cfg(feature = "postgres")]
pub(crate) struct StoredTime(i64);

#[cfg(feature = "postgres")]
impl Type<sqlx::Postgres> for StoredTime {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <DateTime<Utc> as Type<sqlx::Postgres>>::type_info()
    }
}

#[cfg(feature = "postgres")]
impl<'r> Decode<'r, sqlx::Postgres> for StoredTime {
    fn decode(
        value: sqlx::postgres::PgValueRef<'r>,
    ) -> std::result::Result<Self, sqlx::error::BoxDynError> {
        if value.format() != sqlx::postgres::PgValueFormat::Binary {
            return Err("timestamptz in text form".into());
        }
        Ok(StoredTime(i64::from_be_bytes(<[u8; 8]>::try_from(
            value.as_bytes()?,
        )?)))
    }
}

/// An `impl` block over `D: Dialect` with the sqlx bounds the shared statements need,
/// written here once (`impl<D: Bound>` adds a bound: `sql/backend.rs`'s `Engine`). sqlx
/// says what a database binds and decodes by bounds on the values' types, which a trait's
/// supertraits cannot imply, so without this each generic `impl` would repeat them.
macro_rules! sql_impl {
    ($(#[$attr:meta])* impl<$d:ident $(: $bound:path)?> $tr:ident for $ty:ty { $($item:tt)* }) => {
        $crate::store::sql::dialect::sql_impl! {
            @bounds [$(#[$attr])*] [$d $(: $bound)?] [$tr for $ty] { $($item)* }
        }
    };
    (impl<$d:ident $(: $bound:path)?> $ty:ty { $($item:tt)* }) => {
        $crate::store::sql::dialect::sql_impl! { @bounds [] [$d $(: $bound)?] [$ty] { $($item)* } }
    };
    (@bounds [$($attr:tt)*] [$d:ident $(: $bound:path)?] [$($head:tt)*] { $($item:tt)* }) => {
        $($attr)*
        impl<$d> $($head)*
        where
            $d: $crate::store::sql::dialect::Dialect $(+ $bound)?,
            for<'c> &'c mut <$d as sqlx::Database>::Connection:
                sqlx::Executor<'c, Database = $d>,
            <$d as sqlx::Database>::Arguments: sqlx::IntoArguments<$d>,
            usize: sqlx::ColumnIndex<<$d as sqlx::Database>::Row>,
            for<'t> &'t str: sqlx::Encode<'t, $d> + sqlx::Type<$d>,
            for<'t> &'t [u8]: sqlx::Encode<'t, $d> + sqlx::Type<$d>,
            for<'t> bool: sqlx::Encode<'t, $d> + sqlx::Decode<'t, $d> + sqlx::Type<$d>,
            for<'t> i16: sqlx::Encode<'t, $d> + sqlx::Decode<'t, $d> + sqlx::Type<$d>,
            for<'t> i32: sqlx::Encode<'t, $d> + sqlx::Decode<'t, $d> + sqlx::Type<$d>,
            for<'t> i64: sqlx::Encode<'t, $d> + sqlx::Decode<'t, $d> + sqlx::Type<$d>,
            for<'t> String: sqlx::Encode<'t, $d> + sqlx::Decode<'t, $d> + sqlx::Type<$d>,
            for<'t> Vec<u8>: sqlx::Encode<'t, $d> + sqlx::Decode<'t, $d> + sqlx::Type<$d>,
            for<'t> Option<String>: sqlx::Encode<'t, $d> + sqlx::Type<$d>,
            for<'t> Option<&'t str>: sqlx::Encode<'t, $d> + sqlx::Type<$d>,
            for<'t> Option<i64>: sqlx::Encode<'t, $d> + sqlx::Type<$d>,
            for<'t> Option<Vec<u8>>: sqlx::Encode<'t, $d> + sqlx::Type<$d>,
            for<'t> uuid::Uuid: sqlx::Encode<'t, $d> + sqlx::Decode<'t, $d> + sqlx::Type<$d>,
        {
            $($item)*
        }
    };
}

pub(crate) use sql_impl;
