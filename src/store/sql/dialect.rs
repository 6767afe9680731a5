//! What differs between SQLite and PostgreSQL in the statements the SQL backends share.
//!
//! [`Dialect`], implemented for `sqlx::Sqlite` and `sqlx::Postgres`, holds only that: the
//! column lists and a few fragments of the shared statements, how a time and a list of
//! ids are bound, the count of rows a statement changed, and (through
//! [`DecodeRows`](super::rows::DecodeRows)) how rows are decoded. Code written once is
//! generic over `D: Dialect` (`reads`); portable SQL's row reading extends the trait
//! (`portable.rs`).
//!
//! The modules `sqlite` and `postgres` are the older form of the same idea, with the same
//! items each, for the statements the `key_statements!` and `retention_statements!` macros
//! expand inside `use dialect::sqlite::*` or `use dialect::postgres::*`.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::rows::DecodeRows;
use crate::error::{Error, Result};

/// What a database's statements need that the other's do not; see the module.
pub(crate) trait Dialect: DecodeRows + Sized {
    /// The columns of `events`, in the order [`DecodeRows::event_row`] reads them.
    const EVENT_COLUMNS: &'static str;
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
    pub(crate) replay_start: String,
    pub(crate) list_snapshots: String,
}

impl Statements {
    /// The statements of `D`.
    fn of<D: Dialect>() -> Self {
        let (member_open, member_close) = D::ORDERED_MEMBER;
        Statements {
            stream_info: format!(
                "SELECT {} FROM streams WHERE stream_id = $1",
                D::STREAM_COLUMNS
            ),
            list_streams: format!("SELECT {} FROM streams", D::STREAM_COLUMNS),
            events: format!("SELECT {} FROM events", D::EVENT_COLUMNS),
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

#[cfg(feature = "sqlite")]
impl Dialect for sqlx::Sqlite {
    const EVENT_COLUMNS: &'static str = "position, event_id, stream_id, version, event_type, \
         schema_version, payload, correlation_id, causation_id, tenant_id, user_id, metadata, \
         recorded_at";
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

    fn time_param(time: DateTime<Utc>) -> i64 {
        time.timestamp_micros()
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
    const EVENT_COLUMNS: &'static str = "position, transaction_id AS commit_id, event_id, \
         stream_id, version, event_type, schema_version, payload, correlation_id, causation_id, \
         tenant_id, user_id, metadata::text AS metadata, recorded_at";
    const STREAM_COLUMNS: &'static str = "stream_id, category, aggregate_type, display_name, \
         version, event_count, last_event_id, status, metadata::text AS metadata, created_at, \
         updated_at";
    const LEAST: &'static str = "LEAST";
    const BIGINT: &'static str = "::bigint";
    const START_NULLS: &'static str = "NULL::uuid AS event_id, NULL::text AS event_type, \
         NULL::bytea AS payload, NULL::timestamptz AS at";
    const ORDERED_MEMBER: (&'static str, &'static str) = ("(", ")");

    type Time = DateTime<Utc>;

    fn time_param(time: DateTime<Utc>) -> DateTime<Utc> {
        time
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

#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    use sqlx::{Sqlite, SqlitePool, Transaction};

    use super::*;

    pub(crate) type Pool = SqlitePool;

    /// The condition "`column` is one of the list bound as `param`".
    pub(crate) fn in_list(column: &str, param: &str) -> String {
        format!("{column} IN (SELECT value FROM json_each({param}))")
    }

    /// A list as bound for [`in_list`]: JSON text.
    pub(crate) fn list<T: AsRef<str>>(items: &[T]) -> Result<String> {
        let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
        serde_json::to_string(&items).map_err(|error| Error::Internal(format!("list: {error}")))
    }

    /// A time column read back (microseconds since the Unix epoch); the stored value when
    /// it is no time.
    pub(crate) fn time(micros: i64) -> std::result::Result<DateTime<Utc>, String> {
        DateTime::from_timestamp_micros(micros).ok_or_else(|| format!("{micros} µs"))
    }

    /// A write transaction: takes the write lock at once (a deferred one could fail to
    /// upgrade).
    pub(crate) async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
        pool.begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|error| Error::from_sqlx("begin", error))
    }
}

#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    use sqlx::error::BoxDynError;
    use sqlx::postgres::{PgTypeInfo, PgValueFormat, PgValueRef};
    use sqlx::{PgPool, Postgres, Transaction};

    use super::*;

    pub(crate) type Pool = PgPool;

    /// The condition "`column` is one of the list bound as `param`".
    pub(crate) fn in_list(column: &str, param: &str) -> String {
        format!("{column} = ANY({param})")
    }

    /// A list as bound for [`in_list`]: a text array.
    pub(crate) fn list<T: AsRef<str>>(items: &[T]) -> Result<Vec<String>> {
        Ok(items.iter().map(|item| item.as_ref().to_owned()).collect())
    }

    /// A `timestamptz` as sent in binary form: microseconds since 2000-01-01 UTC, decoded
    /// without sqlx's chrono conversion, which panics on `infinity`.
    pub(crate) struct StoredTime(i64);

    impl sqlx::Type<Postgres> for StoredTime {
        fn type_info() -> PgTypeInfo {
            <DateTime<Utc> as sqlx::Type<Postgres>>::type_info()
        }
    }

    impl<'r> sqlx::Decode<'r, Postgres> for StoredTime {
        fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
            if value.format() != PgValueFormat::Binary {
                return Err("timestamptz in text form".into());
            }
            Ok(StoredTime(i64::from_be_bytes(<[u8; 8]>::try_from(
                value.as_bytes()?,
            )?)))
        }
    }

    /// A time column read back; the stored value when it is no time.
    pub(crate) fn time(time: StoredTime) -> std::result::Result<DateTime<Utc>, String> {
        crate::store::sql::rows::from_postgres_micros(time.0)
    }

    /// A write transaction.
    pub(crate) async fn begin_write(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
        pool.begin()
            .await
            .map_err(|error| Error::from_sqlx("begin", error))
    }
}
