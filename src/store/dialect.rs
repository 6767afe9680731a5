//! The little that differs between SQLite and PostgreSQL in statements otherwise written
//! once (`keys_sql`, `retention_sql`): how a list is bound and tested, how a time in
//! microseconds is written and read back, and how a write transaction begins. Each
//! module here has the same items, so a macro expanding statements inside `use
//! dialect::sqlite::*` or `use dialect::postgres::*` gets the right ones.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

#[cfg(feature = "sqlite")]
pub(super) mod sqlite {
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
pub(super) mod postgres {
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
        from_postgres_micros(time.0)
    }

    /// A `timestamptz`'s microseconds since 2000-01-01 UTC as a time; the stored value,
    /// described, for `infinity` and `-infinity` (`i64::MAX` and `i64::MIN`) and the finite
    /// times after chrono's last year (262143).
    pub(crate) fn from_postgres_micros(micros: i64) -> std::result::Result<DateTime<Utc>, String> {
        /// 2000-01-01T00:00:00Z in microseconds since the Unix epoch.
        const POSTGRES_EPOCH: i64 = 946_684_800_000_000;
        let time = (micros != i64::MAX && micros != i64::MIN)
            .then(|| DateTime::from_timestamp_micros(micros.checked_add(POSTGRES_EPOCH)?))
            .flatten();
        time.ok_or_else(|| match micros {
            i64::MAX => "infinity".to_owned(),
            i64::MIN => "-infinity".to_owned(),
            micros => format!("{micros} µs after 2000-01-01"),
        })
    }

    /// A write transaction.
    pub(crate) async fn begin_write(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
        pool.begin()
            .await
            .map_err(|error| Error::from_sqlx("begin", error))
    }
}
