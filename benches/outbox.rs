//! chronicle's outbox benchmarks: requests created per second by the processor (beside
//! `read_all` of the same log), and no-op executions per second with one executor and
//! with four, on SQLite and PostgreSQL.
//!
//! ```text
//! cargo bench --bench outbox                    # everything
//! cargo bench --bench outbox -- outbox_execute  # only workloads whose name contains this
//! CHRONICLE_BENCH_QUICK=1 cargo bench --bench outbox
//! ```
//!
//! Environment: `CHRONICLE_PG_URL`, `CHRONICLE_BENCH_ROUNDS` and `CHRONICLE_BENCH_QUICK` as
//! in `benches/core.rs`, and `CHRONICLE_BENCH_OUTBOX_EVENTS` (default 20,000; quick 2,000):
//! the events of the log, one request each.
//!
//! Every round uses a handler of a new name, so its requests are new. The processor is
//! timed from the start of its log to its end (`Outbox::process`). The executors are timed
//! from the first claim until every request of the round is done; each executor is an
//! `Outbox` with 32 workers, and on PostgreSQL each of the four has a store (a pool) of its
//! own, as separate processes would.

mod harness;

use std::time::Instant;

use chronicle::{ExpectedVersion, Handler, HandlerMap, HandlerRequest, NewEvent, Outbox, Store};
use futures::TryStreamExt;

use harness::{
    Config, Deposited, Met, Rates, Res, Row, Schemas, Throughput, fmt_rate, interleave_units,
    median, next_id, ratio_row, sqlite_url, unit_op, with_schemas,
};

const EVENTS_ENV: &str = "CHRONICLE_BENCH_OUTBOX_EVENTS";
/// Handlers run at once per executor.
const WORKERS: usize = 32;

/// Writes `total` events in appends of 100 to 100 streams in turn.
async fn fill(store: &Store, total: u64) -> Res<()> {
    let mut written = 0;
    while written < total {
        let count = (total - written).min(100);
        let events = (written..written + count)
            .map(|n| NewEvent::from_serialize("deposited", &Deposited::sample(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let stream = format!("acct-{}", written / 100 % 100);
        store.append(stream, ExpectedVersion::Any, events).await?;
        written += count;
    }
    Ok(())
}

/// An outbox whose one no-op handler has a name of its own (its requests are new).
fn fresh_outbox(store: &Store, handler: &str) -> Res<Outbox> {
    let handlers =
        HandlerMap::new().route(Handler::new(handler, "*", |request: HandlerRequest| {
            std::hint::black_box(request);
            async { Ok(()) }
        }));
    Ok(store
        .outbox(handlers)?
        .name(format!("{handler}-processor"))
        .workers(WORKERS))
}

/// `read_all` of the whole log, the processor's baseline.
async fn read_all(store: Store, total: u64) -> Res<Throughput> {
    let started = Instant::now();
    let events: Vec<_> = store
        .read_all(chronicle::LogPosition::START)
        .try_collect()
        .await?;
    harness::expect_count("read_all", events.len() as u64, total)?;
    Ok(Throughput {
        units: total,
        elapsed: started.elapsed(),
    })
}

/// One processor run over the whole log, by a fresh outbox.
async fn process(store: Store, total: u64) -> Res<Throughput> {
    let outbox = fresh_outbox(&store, &format!("p{}", next_id()))?;
    let started = Instant::now();
    let created = outbox.process().await?;
    harness::expect_count("requests created", created, total)?;
    Ok(Throughput {
        units: created,
        elapsed: started.elapsed(),
    })
}

/// Creates `total` requests for a fresh handler (untimed), then times `executors` (one
/// store each) draining them side by side.
async fn execute(stores: Vec<Store>, total: u64) -> Res<Throughput> {
    let handler = format!("x{}", next_id());
    let first = stores.first().ok_or("no store")?;
    let created = fresh_outbox(first, &handler)?.process().await?;
    harness::expect_count("requests created", created, total)?;
    let started = Instant::now();
    let runs: Vec<_> = stores
        .iter()
        .map(|store| {
            let outbox = fresh_outbox(store, &handler);
            tokio::spawn(async move {
                let outbox = outbox?;
                let mut done = 0;
                loop {
                    let executed = outbox.execute().await?;
                    if executed.claimed == 0 {
                        return Ok::<u64, harness::BoxError>(done);
                    }
                    done += executed.done;
                }
            })
        })
        .collect();
    let mut done = 0;
    for run in runs {
        done += run.await??;
    }
    harness::expect_count("requests done", done, total)?;
    Ok(Throughput {
        units: done,
        elapsed: started.elapsed(),
    })
}

/// The processor against `read_all`, for information.
async fn process_rows(cfg: &Config, name: &str, backend: &str, store: Store) -> Res<Vec<Row>> {
    let total = cfg.size(EVENTS_ENV, 20_000)?;
    fill(&store, total).await?;
    let (s1, s2) = (store.clone(), store);
    let systems = [
        (
            "chronicle read_all",
            unit_op(move || read_all(s1.clone(), total)),
        ),
        (
            "outbox processor",
            unit_op(move || process(s2.clone(), total)),
        ),
    ];
    let rates = interleave_units(cfg, &systems).await?;
    let [baseline, chronicle] = <[Vec<f64>; 2]>::try_from(rates).map_err(|_| "two systems")?;
    Ok(vec![Row {
        met: Met::Info,
        target: "—".to_owned(),
        ..ratio_row(
            &format!(
                "{name}: {backend}, requests created from {} events, one handler \
                 (requests/s; baseline: read_all events/s)",
                fmt_rate(total as f64)
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

/// One executor against four.
async fn execute_rows(
    cfg: &Config,
    name: &str,
    backend: &str,
    one: Store,
    four: Vec<Store>,
    target: Option<f64>,
) -> Res<Vec<Row>> {
    let total = cfg.size(EVENTS_ENV, 20_000)?;
    fill(&one, total).await?;
    let systems = [
        (
            "1 executor",
            unit_op(move || execute(vec![one.clone()], total)),
        ),
        ("4 executors", unit_op(move || execute(four.clone(), total))),
    ];
    let rates = interleave_units(cfg, &systems).await?;
    let [single, quad] = <[Vec<f64>; 2]>::try_from(rates).map_err(|_| "two systems")?;
    let executions = median(&quad);
    let (met, target) = match target {
        Some(target) => (
            Met::from(executions >= target),
            format!("≥ {} executions/s with 4 executors", fmt_rate(target)),
        ),
        None => (Met::Info, "—".to_owned()),
    };
    Ok(vec![Row {
        met,
        target,
        ..ratio_row(
            &format!(
                "{name}: {backend}, no-op executions of {} requests, 4 executors \
                 (baseline: 1 executor; {WORKERS} workers each)",
                fmt_rate(total as f64)
            ),
            "executions/s",
            &Rates {
                baseline: single,
                chronicle: quad,
            },
            0.0,
            "",
        )
    }])
}

async fn outbox_process_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(sqlite_url(dir.path(), "process.db")).await?;
    process_rows(cfg, "outbox_process_sqlite", "SQLite", store).await
}

async fn outbox_process_pg(cfg: &Config) -> Res<Vec<Row>> {
    with_schemas(cfg, async |schemas: &mut Schemas| {
        let store = schemas.store("outbox_process", 4, |b| b).await?;
        process_rows(cfg, "outbox_process_pg", "PostgreSQL", store).await
    })
    .await
}

async fn outbox_execute_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(sqlite_url(dir.path(), "execute.db")).await?;
    // One file: the executors share its single writer whatever their stores.
    let four = vec![store.clone(); 4];
    execute_rows(cfg, "outbox_execute_sqlite", "SQLite", store, four, None).await
}

async fn outbox_execute_pg(cfg: &Config) -> Res<Vec<Row>> {
    with_schemas(cfg, async |schemas: &mut Schemas| {
        let store = schemas.store("outbox_execute", 4, |b| b).await?;
        let schema = schemas.names.last().cloned().unwrap_or_default();
        let mut four = Vec::new();
        for _ in 0..4 {
            let other = Store::builder(cfg.pg_url.clone())
                .schema(schema.clone())
                .pool_size(4)
                .open()
                .await?;
            four.push(other);
        }
        let name = "outbox_execute_pg";
        execute_rows(cfg, name, "PostgreSQL", store, four, Some(10_000.0)).await
    })
    .await
}

const WORKLOADS: &[&str] = &[
    "outbox_process_sqlite",
    "outbox_process_pg",
    "outbox_execute_sqlite",
    "outbox_execute_pg",
];

async fn run_workload(cfg: &Config, name: &str) -> Res<Vec<Row>> {
    match name {
        "outbox_process_sqlite" => outbox_process_sqlite(cfg).await,
        "outbox_process_pg" => outbox_process_pg(cfg).await,
        "outbox_execute_sqlite" => outbox_execute_sqlite(cfg).await,
        "outbox_execute_pg" => outbox_execute_pg(cfg).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

fn main() -> Res<()> {
    harness::run("chronicle outbox benchmarks", WORKLOADS, run_workload)
}
