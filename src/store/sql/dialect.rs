//! What differs between SQLite and PostgreSQL in the statements the SQL backends share.
//!
//! [`Dialect`], implemented for `sqlx::Sqlite` and `sqlx::Postgres`, holds only that: the
//! column lists and a few fragments of the shared statements, how times, ids and lists
//! of texts are bound (and lists tested), what "now" is, how a time column reads back, how a
//! write transaction begins, the count of rows a statement changed, and (through
//! [`DecodeRows`](super::rows::DecodeRows)) how rows are decoded. Code written once is
//! generic over `D: Dialect`, in `impl` blocks that [`sql_impl!`] gives sqlx's bounds
//! (`reads`, `keys_sql`, `retention_sql`); portable SQL's row reading extends the trait
//! (`portable.rs`).

use std::future::Future;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{Decode, Encode, Pool, QueryBuilder, Transaction, Type};
use uuid::Uuid;

use super::rows::DecodeRows;
use crate::error::{Error, Result};
use crate::read::EventParts;

/// What a database's statements need that the other's do not; see the module.
pub(crate) trait Dialect: DecodeRows + Sized {
    /// The columns of `events` before the payload, in the order
    /// [`DecodeRows::event_row`] reads them.
    const EVENT_HEAD: &'static str;
    /// The payload column, and an empty value of its type that a lean read selects in
    /// its place.
    const EVENT_PAYLOAD: (&'static str, &'static str);
    /// The metadata columns (the four ids, then the extra JSON as text), and NULLs of
    /// their types that a lean read selects in their place.
    const EVENT_METADATA: (&'static str, &'static str);
    /// The columns of `events` after the metadata.
    const EVENT_TAIL: &'static str;
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

    /// A time as a statement binds it.
    type Time: for<'t> Encode<'t, Self> + Type<Self> + Send + 'static;
    /// A list of texts as a statement binds it, for [`Dialect::in_list`].
    type List: for<'t> Encode<'t, Self> + Type<Self> + Send + 'static;
    /// A time column as it reads back, for [`Dialect::stored_time`].
    type StoredTime: for<'r> Decode<'r, Self> + Type<Self> + Send + Unpin + 'static;

    /// The condition "`column` is one of the list bound as `param`".
    fn in_list(column: &str, param: &str) -> String;

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
    /// The column lists of `events` for each [`EventParts`] (see [`Statements::event_columns`]).
    event_columns: [String; 4],
    pub(crate) replay_start: String,
    pub(crate) list_snapshots: String,
}

impl Statements {
    /// The statements of `D`.
    fn of<D: Dialect>() -> Self {
        let (member_open, member_close) = D::ORDERED_MEMBER;
        let columns = |parts: EventParts| {
            let pick = |(column, empty), wanted: bool| if wanted { column } else { empty };
            format!(
                "{}, {}, {}, {}",
                D::EVENT_HEAD,
                pick(D::EVENT_PAYLOAD, parts.payload()),
                pick(D::EVENT_METADATA, parts.metadata()),
                D::EVENT_TAIL
            )
        };
        let event_columns = [
            EventParts::ALL,
            EventParts::PAYLOAD,
            EventParts::METADATA,
            EventParts::NONE,
        ]
        .map(columns);
        Statements {
            stream_info: format!(
                "SELECT {} FROM streams WHERE stream_id = $1",
                D::STREAM_COLUMNS
            ),
            list_streams: format!("SELECT {} FROM streams", D::STREAM_COLUMNS),
            events: format!("SELECT {} FROM events", event_columns[0]),
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
                 {member_open}SELECT 2{int}, e.version, e.schema_version, e.event_id, e.event_type, \
                         e.payload, NULL \
                  FROM events e, head \
                  WHERE e.stream_id = $1 AND head.status = 0 \
                    AND e.version > (SELECT v FROM base) AND e.version <= {least}(head.version, $2) \
                  ORDER BY e.version LIMIT $3{member_close}",
                int = D::BIGINT,
                nulls = D::START_NULLS,
                least = D::LEAST,
            ),
            list_snapshots: format!(
                "SELECT version, schema_version, length(payload){}, created_at FROM snapshots \
                 WHERE stream_id = $1 ORDER BY version DESC",
                D::BIGINT
            ),
        }
    }
}

impl Statements {
    /// The columns of `events` a read of `parts` selects, in the order
    /// [`DecodeRows::event_row`] reads them: the parts not asked for are empty values of
    /// their types (an empty payload, NULL metadata), so one decoder reads every list.
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
    const EVENT_PAYLOAD: (&'static str, &'static str) = ("payload", "X'' AS payload");
    const EVENT_METADATA: (&'static str, &'static str) = (
        "correlation_id, causation_id, tenant_id, user_id, metadata",
        "NULL AS correlation_id, NULL AS causation_id, NULL AS tenant_id, NULL AS user_id, \
         NULL AS metadata",
    );
    const EVENT_TAIL: &'static str = "recorded_at";
    const STREAM_COLUMNS: &'static str = "stream_id, category, aggregate_type, display_name, \
         version, event_count, last_event_id, status, metadata, created_at, updated_at";
    const LEAST: &'static str = "MIN";
    const BIGINT: &'static str = "";
    const START_NULLS: &'static str =
        "NULL AS event_id, NULL AS event_type, NULL AS payload, NULL AS at";
    // A compound SELECT takes no parenthesized member.
    const ORDERED_MEMBER: (&'static str, &'static str) = ("SELECT * FROM (", ")");

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

    fn statements() -> &'static Statements {
        static STATEMENTS: LazyLock<Statements> = LazyLock::new(Statements::of::<sqlx::Sqlite>);
        &STATEMENTS
    }
}

#[cfg(feature = "postgres")]
impl Dialect for sqlx::Postgres {
    const EVENT_HEAD: &'static str = "position, transaction_id AS commit_id, event_id, \
         stream_id, version, event_type, schema_version";
    const EVENT_PAYLOAD: (&'static str, &'static str) = ("payload", "''::bytea AS payload");
    const EVENT_METADATA: (&'static str, &'static str) = (
        "correlation_id, causation_id, tenant_id, user_id, metadata::text AS metadata",
        "NULL::text AS correlation_id, NULL::text AS causation_id, NULL::text AS tenant_id, \
         NULL::text AS user_id, NULL::text AS metadata",
    );
    const EVENT_TAIL: &'static str = "recorded_at";
    const STREAM_COLUMNS: &'static str = "stream_id, category, aggregate_type, display_name, \
         version, event_count, last_event_id, status, metadata::text AS metadata, created_at, \
         updated_at";
    const LEAST: &'static str = "LEAST";
    const BIGINT: &'static str = "::bigint";
    const START_NULLS: &'static str = "NULL::uuid AS event_id, NULL::text AS event_type, \
         NULL::bytea AS payload, NULL::timestamptz AS at";
    const ORDERED_MEMBER: (&'static str, &'static str) = ("(", ")");

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

    fn statements() -> &'static Statements {
        static STATEMENTS: LazyLock<Statements> = LazyLock::new(Statements::of::<sqlx::Postgres>);
        &STATEMENTS
    }
}

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
/// written here once. sqlx says what a database binds and decodes by bounds on the
/// values' types, which a trait's supertraits cannot imply, so without this each generic
/// `impl` would repeat them.
macro_rules! sql_impl {
    (impl<$d:ident> $ty:ty { $($item:tt)* }) => {
        impl<$d> $ty
        where
            $d: $crate::store::sql::dialect::Dialect,
            for<'c> &'c mut <$d as sqlx::Database>::Connection:
                sqlx::Executor<'c, Database = $d>,
            <$d as sqlx::Database>::Arguments: sqlx::IntoArguments<$d>,
            usize: sqlx::ColumnIndex<<$d as sqlx::Database>::Row>,
            for<'t> &'t str: sqlx::Encode<'t, $d> + sqlx::Type<$d>,
            for<'t> &'t [u8]: sqlx::Encode<'t, $d> + sqlx::Type<$d>,
            for<'t> bool: sqlx::Encode<'t, $d> + sqlx::Type<$d>,
            for<'t> i32: sqlx::Encode<'t, $d> + sqlx::Decode<'t, $d> + sqlx::Type<$d>,
            for<'t> i64: sqlx::Encode<'t, $d> + sqlx::Decode<'t, $d> + sqlx::Type<$d>,
            for<'t> String: sqlx::Encode<'t, $d> + sqlx::Decode<'t, $d> + sqlx::Type<$d>,
            for<'t> Vec<u8>: sqlx::Encode<'t, $d> + sqlx::Decode<'t, $d> + sqlx::Type<$d>,
            for<'t> Option<String>: sqlx::Encode<'t, $d> + sqlx::Type<$d>,
            for<'t> Option<Vec<u8>>: sqlx::Encode<'t, $d> + sqlx::Type<$d>,
            for<'t> uuid::Uuid: sqlx::Encode<'t, $d> + sqlx::Decode<'t, $d> + sqlx::Type<$d>,
        {
            $($item)*
        }
    };
}

pub(crate) use sql_impl;
