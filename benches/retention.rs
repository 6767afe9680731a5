//! chronicle's retention benchmark: events removed per second by one enforcement pass,
//! beside a raw sqlx `DELETE` of the same rows, on PostgreSQL and SQLite.
//!
//! ```text
//! cargo bench --bench retention                  # both backends
//! cargo bench --bench retention -- retention_pg  # only PostgreSQL
//! CHRONICLE_BENCH_QUICK=1 cargo bench --bench retention
//! ```
//!
//! Environment: `CHRONICLE_PG_URL`, `CHRONICLE_BENCH_ROUNDS` and `CHRONICLE_BENCH_QUICK` as
//! in `benches/core.rs`, and `CHRONICLE_BENCH_RETENTION_STREAMS` (default 1,000; quick
//! 100): streams of 200 events each, of which a `max_count(20)` category policy expires
//! 180.
//!
//! Each unit empties the tables, fills them again (untimed), then times the removal:
//! chronicle's `Store::enforce_retention` (default batches of 500 streams), or one raw
//! `DELETE FROM events WHERE version <= 180` on the same rows, which is the ceiling (no
//! per-stream policy, no event counts kept).

mod harness;

use std::time::Instant;

use chronicle::{ExpectedVersion, NewEvent, RetentionPolicy, RetentionScope, Store};
use futures::{StreamExt, TryStreamExt};
use sqlx::AssertSqlSafe;

use harness::{
    Config, Deposited, Met, Rates, Res, Row, Schemas, Throughput, fmt_rate, interleave_units,
    median, ratio_row, sqlite_url, unit_op, with_schemas,
};

const STREAMS_ENV: &str = "CHRONICLE_BENCH_RETENTION_STREAMS";
const EVENTS_PER_STREAM: u64 = 200;
const KEEP: u64 = 20;

/// Empties the store's tables and writes `streams` streams of 200 events (appends of 100,
/// 8 at a time).
async fn refill(store: &Store, clear: &str, raw: &Raw, streams: u64) -> Res<()> {
    raw.execute(clear).await?;
    futures::stream::iter(0..streams * EVENTS_PER_STREAM / 100)
        .map(|append| async move {
            let events = (0..100)
                .map(|n| NewEvent::from_serialize("deposited", &Deposited::sample(n)))
                .collect::<Result<Vec<_>, _>>()?;
            let stream = format!("tmp-{}", append / 2);
            store.append(stream, ExpectedVersion::Any, events).await?;
            Ok::<(), harness::BoxError>(())
        })
        .buffer_unordered(8)
        .try_collect::<()>()
        .await
}

/// A plain sqlx pool on the store's database.
#[derive(Clone)]
enum Raw {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Raw {
    async fn execute(&self, sql: &str) -> Res<u64> {
        let sql = AssertSqlSafe(sql.to_owned());
        Ok(match self {
            Raw::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await?.rows_affected(),
            Raw::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await?.rows_affected(),
        })
    }
}

async fn enforce(store: Store, clear: &'static str, raw: Raw, streams: u64) -> Res<Throughput> {
    refill(&store, clear, &raw, streams).await?;
    let started = Instant::now();
    let report = store.enforce_retention().await?;
    let elapsed = started.elapsed();
    let want = streams * (EVENTS_PER_STREAM - KEEP);
    harness::expect_count("events removed", report.events_removed, want)?;
    Ok(Throughput {
        units: report.events_removed,
        elapsed,
    })
}

async fn raw_delete(store: Store, clear: &'static str, raw: Raw, streams: u64) -> Res<Throughput> {
    refill(&store, clear, &raw, streams).await?;
    let started = Instant::now();
    let removed = raw
        .execute(&format!(
            "DELETE FROM events WHERE version <= {}",
            EVENTS_PER_STREAM - KEEP
        ))
        .await?;
    let elapsed = started.elapsed();
    harness::expect_count(
        "rows deleted",
        removed,
        streams * (EVENTS_PER_STREAM - KEEP),
    )?;
    Ok(Throughput {
        units: removed,
        elapsed,
    })
}

async fn rows(
    cfg: &Config,
    name: &str,
    backend: &str,
    store: Store,
    raw: Raw,
    clear: &'static str,
    target: Option<f64>,
) -> Res<Vec<Row>> {
    let streams = cfg.size(STREAMS_ENV, 1_000)?;
    store
        .set_retention(
            RetentionScope::category("tmp"),
            RetentionPolicy::new().max_count(KEEP).ignore_snapshots(),
        )
        .await?;
    let (s1, r1, s2, r2) = (store.clone(), raw.clone(), store, raw);
    let systems = [
        (
            "raw DELETE",
            unit_op(move || raw_delete(s1.clone(), clear, r1.clone(), streams)),
        ),
        (
            "chronicle enforce_retention",
            unit_op(move || enforce(s2.clone(), clear, r2.clone(), streams)),
        ),
    ];
    let rates = interleave_units(cfg, &systems).await?;
    let [baseline, chronicle] = <[Vec<f64>; 2]>::try_from(rates).map_err(|_| "two systems")?;
    let removed = median(&chronicle);
    let (met, target) = match target {
        Some(target) => (
            Met::from(removed >= target),
            format!("≥ {} events removed/s", fmt_rate(target)),
        ),
        None => (Met::Info, "—".to_owned()),
    };
    Ok(vec![Row {
        met,
        target,
        ..ratio_row(
            &format!(
                "{name}: {backend}, one pass over {} streams of {EVENTS_PER_STREAM} events, \
                 {} expired (events removed/s; baseline: one raw DELETE)",
                fmt_rate(streams as f64),
                fmt_rate((streams * (EVENTS_PER_STREAM - KEEP)) as f64)
            ),
            "/s",
            &Rates {
                baseline,
                chronicle,
            },
            0.0,
            "",
        )
    }])
}

async fn retention_pg(cfg: &Config) -> Res<Vec<Row>> {
    with_schemas(cfg, async |schemas: &mut Schemas| {
        let store = schemas.store("retention", 8, |b| b).await?;
        let schema = schemas.names.last().cloned().unwrap_or_default();
        let raw = Raw::Postgres(schemas.pool_on(&schema, 2).await?);
        let clear = "TRUNCATE events, streams, snapshots";
        rows(
            cfg,
            "retention_pg",
            "PostgreSQL",
            store,
            raw,
            clear,
            Some(50_000.0),
        )
        .await
    })
    .await
}

async fn retention_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let url = sqlite_url(dir.path(), "retention.db");
    let store = Store::open(url.clone()).await?;
    let raw = Raw::Sqlite(harness::sqlite_reader(&url).await?);
    let clear = "DELETE FROM events; DELETE FROM streams; DELETE FROM snapshots";
    rows(cfg, "retention_sqlite", "SQLite", store, raw, clear, None).await
}

const WORKLOADS: &[&str] = &["retention_pg", "retention_sqlite"];

async fn run_workload(cfg: &Config, name: &str) -> Res<Vec<Row>> {
    match name {
        "retention_pg" => retention_pg(cfg).await,
        "retention_sqlite" => retention_sqlite(cfg).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

fn main() -> Res<()> {
    harness::run_described(
        "chronicle retention benchmark",
        |cfg| {
            format!(
                "{} interleaved rounds (refill untimed, then one timed removal), medians{}",
                cfg.rounds,
                if cfg.quick { ", quick sizes" } else { "" }
            )
        },
        WORKLOADS,
        run_workload,
    )
}
