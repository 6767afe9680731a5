//! The physical ceilings: raw sqlx on chronicle's own `events` table (the harness's
//! baselines of `benches/core.rs` and `benches/aggregates.rs`), so each figure sits between
//! the peers and what the database and driver can do at all; and, for commands on
//! PostgreSQL, raw sqlx on the minimal table of issue 23 (`raw-min-pg`: position, stream,
//! version, jsonb payload; a primary key and one unique index). chronicle's own table shows
//! what chronicle's schema costs, the minimal table the limit.
//!
//! - commands: one autocommitted single-row INSERT per "command" (`raw_pg_insert_one` /
//!   `raw_sqlite_insert_one` / [`insert_minimal`]: a new stream each, no read, no version
//!   check, no domain), on a fresh table per round; checked by counting the rows. Pools
//!   hand out connections without a ping (the harness's pools), as chronicle's does.
//! - loads: one streamed SELECT of the account's rows, decoded and folded
//!   (`replay_raw_pg` / `replay_raw_sqlite`) on rows chronicle wrote.
//! - catch-up: one streamed SELECT of the whole table in position order, decoded and summed.

use std::sync::atomic::{AtomicU64, Ordering};

use chronicle::DomainEvent;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqlitePool, SqliteSynchronous};

use super::chronicle::{AccountEvent, Chronicle, POOL_SIZE, tag};
use crate::harness::{
    Deposited, Schemas, next_id, raw_pg_insert_one, raw_sqlite_insert_one, raw_sqlite_with,
    replay_raw_pg, replay_raw_sqlite, scan_raw_pg, scan_raw_sqlite, sqlite_reader, sqlite_url,
};
use crate::shared::bank::{self, Change, Command};
use crate::shared::settings::{Settings, Workload, remove_sqlite};
use crate::shared::workload::{Bank, Caught, Check, Loaded, Outcome, Res, Tally};

/// The minimal table of the `raw-min-pg` ceiling, beside chronicle's tables in its schema.
const MINIMAL_TABLE: &str = "CREATE TABLE minimal_events ( \
     position  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
     stream_id text   NOT NULL, \
     version   bigint NOT NULL, \
     payload   jsonb  NOT NULL, \
     UNIQUE (stream_id, version))";

const MINIMAL_INSERT: &str =
    "INSERT INTO minimal_events (stream_id, version, payload) VALUES ($1, 1, $2::text::jsonb)";

/// The minimal ceiling's "command": one autocommitted single-row INSERT into the minimal
/// table, the payload the raw ceiling on chronicle's table writes.
async fn insert_minimal(pool: &PgPool) -> Res<u64> {
    let n = next_id();
    let payload = serde_json::to_string(&Deposited::sample(n))?;
    sqlx::query(MINIMAL_INSERT)
        .bind(format!("acct-{n}"))
        .bind(payload)
        .execute(pool)
        .await?;
    Ok(1)
}

enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

pub struct Raw {
    pool: Pool,
    /// The table the commands write: chronicle's `events`, or `minimal_events`.
    table: &'static str,
    /// chronicle, writing the rows the raw reads read (set-up phases of reads only).
    writer: Option<Chronicle>,
    /// Rows this phase inserted.
    inserted: AtomicU64,
}

/// Decodes a stored row into the bank's change.
fn change(event_type: &str, payload: &[u8]) -> Res<Change> {
    Ok(AccountEvent::decode(event_type, payload)?.into())
}

/// The system name of the minimal-table ceiling.
pub const MINIMAL_SYSTEM: &str = "raw-min-pg";

impl Raw {
    /// On PostgreSQL. Commands get a fresh table of chronicle's columns each round; reads
    /// go to the schema a chronicle store wrote in the set-up phase.
    pub async fn postgres(
        schemas: &mut Schemas,
        settings: &Settings,
        system: &str,
        workload: &Workload,
        fresh: bool,
        round: u32,
    ) -> Res<Self> {
        let tag = tag(system, workload);
        let minimal = system == MINIMAL_SYSTEM;
        let (pool, writer) = match (workload, fresh) {
            (w, _) if w.is_throughput() => {
                let pool = schemas.raw(&format!("{tag}_r{round}"), POOL_SIZE).await?;
                if minimal {
                    sqlx::raw_sql(MINIMAL_TABLE).execute(&pool).await?;
                }
                (pool, None)
            }
            (_, true) => {
                let writer = Chronicle::postgres(schemas, settings, system, workload, true).await?;
                let pool = schemas.pool_on(&Schemas::schema_name(&tag), 1).await?;
                (pool, Some(writer))
            }
            (_, false) => {
                let pool = schemas
                    .pool_on(&Schemas::schema_name(&tag), POOL_SIZE)
                    .await?;
                (pool, None)
            }
        };
        Ok(Raw {
            pool: Pool::Postgres(pool),
            table: if minimal { "minimal_events" } else { "events" },
            writer,
            inserted: AtomicU64::new(0),
        })
    }

    /// On a SQLite file (`synchronous = NORMAL`, as the SQLite systems compared), one
    /// connection. Commands get a fresh file each round.
    pub async fn sqlite(
        settings: &Settings,
        system: &str,
        workload: &Workload,
        fresh: bool,
        round: u32,
    ) -> Res<Self> {
        let path = settings.sqlite_path(system, workload);
        let (pool, writer) = match (workload, fresh) {
            (w, _) if w.is_throughput() => {
                let path = path.with_extension(format!("r{round}.db"));
                remove_sqlite(&path)?;
                let dir = path.parent().ok_or("no directory for the SQLite file")?;
                let name = path.file_name().ok_or("no SQLite file name")?;
                let url = sqlite_url(dir, &name.to_string_lossy());
                (
                    raw_sqlite_with(&url, SqliteSynchronous::Normal).await?,
                    None,
                )
            }
            (_, true) => {
                let writer = Chronicle::sqlite(settings, system, workload, true).await?;
                let pool = sqlite_reader(&format!("sqlite://{}", path.display())).await?;
                (pool, Some(writer))
            }
            (_, false) => (
                sqlite_reader(&format!("sqlite://{}", path.display())).await?,
                None,
            ),
        };
        Ok(Raw {
            pool: Pool::Sqlite(pool),
            table: "events",
            writer,
            inserted: AtomicU64::new(0),
        })
    }

    async fn count_rows(&self) -> Res<u64> {
        let sql = AssertSqlSafe(format!("SELECT COUNT(*) FROM {}", self.table));
        let count: i64 = match &self.pool {
            Pool::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Pool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        };
        Ok(u64::try_from(count)?)
    }
}

impl Bank for Raw {
    async fn execute(&self, _account: &str, _command: Command) -> Res<Outcome> {
        match &self.pool {
            Pool::Postgres(pool) if self.table == "minimal_events" => insert_minimal(pool).await?,
            Pool::Postgres(pool) => raw_pg_insert_one(pool).await?,
            Pool::Sqlite(pool) => raw_sqlite_insert_one(pool).await?,
        };
        self.inserted.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome::Done { retries: 0 })
    }

    async fn load(&self, account: &str) -> Res<Option<Loaded>> {
        let stream = format!("account-{account}");
        let mut state = bank::Account::default();
        let fold = |event_type: &str, payload: &[u8]| {
            state.apply(&change(event_type, payload)?);
            Ok(())
        };
        let rows = match &self.pool {
            Pool::Postgres(pool) => replay_raw_pg(pool, &stream, fold).await?,
            Pool::Sqlite(pool) => replay_raw_sqlite(pool, &stream, fold).await?,
        };
        Ok((rows > 0).then_some(Loaded {
            version: rows,
            account: state,
        }))
    }

    async fn append(&self, account: &str, version: u64, changes: Vec<Change>) -> Res<()> {
        let writer = self
            .writer
            .as_ref()
            .ok_or("the raw system writes histories in its set-up phase only")?;
        writer.append(account, version, changes).await
    }

    async fn verify(&self, tallies: Vec<Tally>) -> Res<Check> {
        // Every "command" was one row in a new stream: count them.
        let rows = self.count_rows().await?;
        let inserted = self.inserted.load(Ordering::Relaxed);
        let commands: u64 = tallies.iter().map(Tally::commands).sum();
        Ok(Check {
            correct: rows == inserted,
            wrong: rows.abs_diff(inserted),
            detail: format!(
                "{rows} rows in the table, {inserted} inserts returned ({commands} in the \
                 timed window)"
            ),
        })
    }

    async fn catch_up(&self, _round: u32, _events: u64) -> Res<Caught> {
        let started = std::time::Instant::now();
        let mut sum = 0;
        let add = |event_type: &str, payload: &[u8]| {
            sum += change(event_type, payload)?.delta();
            Ok(())
        };
        let events = match &self.pool {
            Pool::Postgres(pool) => scan_raw_pg(pool, add).await?,
            Pool::Sqlite(pool) => scan_raw_sqlite(pool, add).await?,
        };
        Ok(Caught {
            events,
            sum,
            elapsed: started.elapsed(),
            detail: "one streamed SELECT of the table in position order, decoded and summed"
                .to_owned(),
        })
    }

    async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        match &self.pool {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
        }
    }
}
