//! The databases the peers run in: a fresh PostgreSQL schema per system and workload (the
//! pool's `search_path` points at it, so each library's unqualified table names land
//! there), or a SQLite file; their removal; their footprints; and the error codes the
//! peers' conflicts arrive as.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, PgConnection};

use crate::shared::workload::{self, Footprint, Res};

/// The pool size of `default_postgress_pool` (postgres-es), of sqlx's `PgPool::connect`
/// (what esrs's and disintegrate's examples use) and of chronicle's default: 10.
const POOL_SIZE: u32 = 10;

/// Drops `schema` if it exists and creates it empty.
pub async fn fresh_schema(url: &str, schema: &str) -> Res<()> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::raw_sql(&format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""
    ))
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}

pub async fn drop_schema(url: &str, schema: &str) -> Res<()> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// A pool of [`POOL_SIZE`] connections whose `search_path` is `schema`, handing them out
/// without a ping (sqlx pings before every checkout by default: a round trip per command
/// that chronicle's pool skips for connections used in the last 500 ms; each peer gets the
/// faster setting).
pub async fn pg_pool(url: &str, schema: &str) -> Res<PgPool> {
    let options = PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
    Ok(PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(options)
        .await?)
}

/// A pool on the SQLite file at `path` with the options of sqlite-es's
/// `default_sqlite_pool` (WAL, `synchronous = NORMAL`, foreign keys, 10 connections),
/// without a ping before checkout.
pub async fn sqlite_pool(path: &Path) -> Res<SqlitePool> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true);
    Ok(SqlitePoolOptions::new()
        .max_connections(POOL_SIZE)
        .test_before_acquire(false)
        .connect_with(options)
        .await?)
}

pub async fn pg_footprint(pool: &PgPool) -> Res<Footprint> {
    let rows: Vec<(String, i64)> = sqlx::query_as(workload::PG_FOOTPRINT_SQL)
        .fetch_all(pool)
        .await?;
    Ok(workload::pg_footprint(rows))
}

pub async fn sqlite_footprint(pool: &SqlitePool, path: &Path) -> Res<Footprint> {
    sqlx::query(workload::SQLITE_CHECKPOINT_SQL)
        .execute(pool)
        .await?;
    workload::sqlite_footprint(path)
}

/// Whether `error` is the database refusing a row on a unique key: how cqrs-es and esrs
/// see another writer's event at the same version.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Whether `error` is PostgreSQL's serialization failure (SQLSTATE 40001), which a
/// SERIALIZABLE transaction (disintegrate's appends) gets when another one got there first.
pub fn is_serialization_failure(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("40001"))
}
