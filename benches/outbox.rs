//! chronicle's outbox benchmarks: requests created per second by the processor (beside
//! `read_all` of the same log), no-op executions per second with one executor and with
//! four, and the time of one claim with a backlog of open ordered requests, on SQLite,
//! PostgreSQL and memory.
//!
//! ```text
//! cargo bench --bench outbox                    # everything
//! cargo bench --bench outbox -- outbox_execute  # only workloads whose name contains this
//! cargo bench --bench outbox -- outbox_claim    # the claim latencies only
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
//!
//! The claim workloads (`outbox_claim_sqlite`, `outbox_claim_pg`) keep a backlog of open
//! requests for a handler ordered per stream (`CHRONICLE_BENCH_CLAIM_SIZES`, default
//! `1000,4000,16000`), spread over 16 streams in runs of 100 events, and time the claims
//! of `Outbox::execute` (4 workers): the executor's `chronicle_outbox_claim_seconds`
//! histogram, read through a recorder installed here. After each execution, as many
//! events as it finished are appended and processed (untimed), so the backlog stays the
//! same. Each size takes `CHRONICLE_BENCH_CLAIMS` claims (default 300) or
//! `CHRONICLE_BENCH_CLAIM_SECS` seconds (default 20), whichever ends first.

mod harness;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
        .start_from(chronicle::StartFrom::Beginning)
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

async fn outbox_process_memory(cfg: &Config) -> Res<Vec<Row>> {
    let store = Store::open("memory:").await?;
    process_rows(cfg, "outbox_process_memory", "memory", store).await
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

async fn outbox_execute_memory(cfg: &Config) -> Res<Vec<Row>> {
    let store = Store::open("memory:").await?;
    // One store: the executors share its writer lock.
    let four = vec![store.clone(); 4];
    execute_rows(cfg, "outbox_execute_memory", "memory", store, four, None).await
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

// ---------------------------------------------------------------------------------------
// Claims with a backlog

/// The executor's claim times (seconds) since the last [`take_claims`].
static CLAIMS: Mutex<Vec<f64>> = Mutex::new(Vec::new());

fn take_claims() -> Vec<f64> {
    std::mem::take(&mut *CLAIMS.lock().unwrap_or_else(PoisonError::into_inner))
}

/// A `metrics` recorder that keeps the values of `chronicle_outbox_claim_seconds` in
/// [`CLAIMS`] and drops everything else.
struct ClaimRecorder;

struct ClaimTimes;

impl metrics::HistogramFn for ClaimTimes {
    fn record(&self, value: f64) {
        CLAIMS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(value);
    }
}

impl metrics::Recorder for ClaimRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        if key.name() == "chronicle_outbox_claim_seconds" {
            metrics::Histogram::from_arc(Arc::new(ClaimTimes))
        } else {
            metrics::Histogram::noop()
        }
    }
}

/// Streams of the claim workloads' backlog.
const CLAIM_STREAMS: u64 = 16;

/// Appends `count` events in appends of up to 100, each to the next of the
/// [`CLAIM_STREAMS`] streams (`next` counts the appends).
async fn fill_claim_streams(store: &Store, count: u64, next: &mut u64) -> Res<()> {
    let mut written = 0;
    while written < count {
        let batch = (count - written).min(100);
        let events = (0..batch)
            .map(|n| NewEvent::from_serialize("deposited", &Deposited::sample(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let stream = format!("ordered-{}", *next % CLAIM_STREAMS);
        *next += 1;
        store.append(stream, ExpectedVersion::Any, events).await?;
        written += batch;
    }
    Ok(())
}

/// The `q` quantile of sorted `values`, in milliseconds.
fn quantile_ms(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)] * 1000.0
}

/// One backlog size on a fresh `store`: its claims' times and the executions' times
/// (seconds).
async fn claim_run(
    store: &Store,
    backlog: u64,
    claims: usize,
    budget: Duration,
) -> Res<(Vec<f64>, Vec<f64>)> {
    let handler = format!("ordered{}", next_id());
    let handlers = HandlerMap::new().route(
        Handler::new(handler.as_str(), "*", |request: HandlerRequest| {
            std::hint::black_box(request);
            async { Ok(()) }
        })
        .ordered_per_stream(),
    );
    let outbox = store
        .outbox(handlers)?
        .start_from(chronicle::StartFrom::Beginning)
        .name(format!("{handler}-processor"))
        .workers(4);
    let mut appends = 0;
    fill_claim_streams(store, backlog, &mut appends).await?;
    harness::expect_count("requests created", outbox.process().await?, backlog)?;
    // Warm-up: the plan caches and the pool.
    for _ in 0..3 {
        let executed = outbox.execute().await?;
        fill_claim_streams(store, executed.done, &mut appends).await?;
        outbox.process().await?;
    }
    take_claims();
    let (mut times, mut executions) = (Vec::new(), Vec::new());
    let started = Instant::now();
    while times.len() < claims && started.elapsed() < budget {
        let execution = Instant::now();
        let executed = outbox.execute().await?;
        executions.push(execution.elapsed().as_secs_f64());
        times.extend(take_claims());
        if executed.claimed == 0 || executed.done != executed.claimed {
            return Err(format!(
                "an execution claimed {} and finished {}",
                executed.claimed, executed.done
            )
            .into());
        }
        fill_claim_streams(store, executed.done, &mut appends).await?;
        outbox.process().await?;
    }
    Ok((times, executions))
}

/// The claim rows of one backend: a store per backlog size from `open`.
async fn claim_rows<F>(cfg: &Config, name: &str, backend: &str, mut open: F) -> Res<Vec<Row>>
where
    F: AsyncFnMut(u64) -> Res<Store>,
{
    let sizes: String =
        harness::env_or("CHRONICLE_BENCH_CLAIM_SIZES", "1000,4000,16000".to_owned())?;
    let claims: usize =
        harness::env_or("CHRONICLE_BENCH_CLAIMS", if cfg.quick { 50 } else { 300 })?;
    let budget = Duration::from_secs_f64(harness::env_or("CHRONICLE_BENCH_CLAIM_SECS", 20.0)?);
    let mut rows = Vec::new();
    for size in sizes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let backlog: u64 = size
            .parse()
            .map_err(|_| format!("bad backlog size `{size}`"))?;
        let store = open(backlog).await?;
        let (mut times, mut executions) = claim_run(&store, backlog, claims, budget).await?;
        store.close().await;
        times.sort_by(f64::total_cmp);
        executions.sort_by(f64::total_cmp);
        let p99 = quantile_ms(&times, 0.99);
        let text = format!(
            "p50 {:.2} ms, p99 {:.2} ms (max {:.2} ms, {} claims)",
            quantile_ms(&times, 0.5),
            p99,
            quantile_ms(&times, 1.0),
            times.len()
        );
        eprintln!("  {backlog} open: claims {text}");
        let (met, target) = if backlog >= 16_000 {
            (Met::from(p99 < 10.0), "p99 < 10 ms".to_owned())
        } else {
            (Met::Info, "—".to_owned())
        };
        rows.push(Row {
            workload: format!(
                "{name}: {backend}, claims of 4 with {} open requests ordered per stream \
                 ({CLAIM_STREAMS} streams)",
                fmt_rate(backlog as f64)
            ),
            chronicle: text,
            baseline: format!(
                "execute(): p50 {:.2} ms, p99 {:.2} ms",
                quantile_ms(&executions, 0.5),
                quantile_ms(&executions, 0.99)
            ),
            ratio: "—".to_owned(),
            target,
            met,
        });
    }
    Ok(rows)
}

async fn outbox_claim_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    claim_rows(cfg, "outbox_claim_sqlite", "SQLite", async |backlog| {
        Ok(Store::open(sqlite_url(dir.path(), &format!("claim-{backlog}.db"))).await?)
    })
    .await
}

async fn outbox_claim_memory(cfg: &Config) -> Res<Vec<Row>> {
    claim_rows(cfg, "outbox_claim_memory", "memory", async |_| {
        Ok(Store::open("memory:").await?)
    })
    .await
}

async fn outbox_claim_pg(cfg: &Config) -> Res<Vec<Row>> {
    with_schemas(cfg, async |schemas: &mut Schemas| {
        claim_rows(cfg, "outbox_claim_pg", "PostgreSQL", async |backlog| {
            schemas
                .store(&format!("outbox_claim_{backlog}"), 4, |b| b)
                .await
        })
        .await
    })
    .await
}

const WORKLOADS: &[&str] = &[
    "outbox_process_sqlite",
    "outbox_process_pg",
    "outbox_execute_sqlite",
    "outbox_execute_pg",
    "outbox_claim_sqlite",
    "outbox_claim_pg",
    "outbox_process_memory",
    "outbox_execute_memory",
    "outbox_claim_memory",
];

async fn run_workload(cfg: &Config, name: &str) -> Res<Vec<Row>> {
    match name {
        "outbox_process_sqlite" => outbox_process_sqlite(cfg).await,
        "outbox_process_pg" => outbox_process_pg(cfg).await,
        "outbox_execute_sqlite" => outbox_execute_sqlite(cfg).await,
        "outbox_execute_pg" => outbox_execute_pg(cfg).await,
        "outbox_claim_sqlite" => outbox_claim_sqlite(cfg).await,
        "outbox_claim_pg" => outbox_claim_pg(cfg).await,
        "outbox_process_memory" => outbox_process_memory(cfg).await,
        "outbox_execute_memory" => outbox_execute_memory(cfg).await,
        "outbox_claim_memory" => outbox_claim_memory(cfg).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

fn main() -> Res<()> {
    metrics::set_global_recorder(ClaimRecorder).map_err(|error| error.to_string())?;
    harness::run("chronicle outbox benchmarks", WORKLOADS, run_workload)
}
