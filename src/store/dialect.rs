//! The little that differs between SQLite and PostgreSQL in statements otherwise written
//! once (`keys_sql`, `retention_sql`): how a list is bound and tested, how a time in
//! microseconds is written and read back, and how a write transaction begins. Each
//! module here has the same items, so a macro expanding statements inside `use
//! dialect::sqlite::*` or `use dialect::postgres::*` gets the right ones.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

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

pub(super) mod postgres {
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

    /// A time column read back.
    pub(crate) fn time(time: DateTime<Utc>) -> std::result::Result<DateTime<Utc>, String> {
        Ok(time)
    }

    /// A write transaction.
    pub(crate) async fn begin_write(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
        pool.begin()
            .await
            .map_err(|error| Error::from_sqlx("begin", error))
    }
}
