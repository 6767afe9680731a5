//! chronicle's benchmark harness: every workload beside a baseline measured in the same run,
//! on the same server, interleaved (baseline, chronicle, baseline, chronicle, …) for a few
//! rounds, reporting medians.
//!
//! ```text
//! cargo bench --bench core                       # everything, 5 s per system per round
//! cargo bench --bench core -- pg_append          # only workloads whose name contains this
//! CHRONICLE_BENCH_SECS=1 CHRONICLE_BENCH_QUICK=1 cargo bench --bench core   # smoke run
//! ```
//!
//! Environment:
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `CHRONICLE_PG_URL` | `postgres://postgres@127.0.0.1:5432/test` | PostgreSQL server |
//! | `CHRONICLE_BENCH_SECS` | `5` | seconds per system per round of a timed workload |
//! | `CHRONICLE_BENCH_ROUNDS` | `3` | interleaved rounds |
//! | `CHRONICLE_BENCH_QUICK` | unset | `1` shrinks the replay sizes tenfold |
//! | `CHRONICLE_BENCH_REPLAY_EVENTS` | `100000` (quick: `10000`) | events in the replay workloads |
//! | `CHRONICLE_BENCH_BIG_REPLAY_EVENTS` | `1000000` (quick: `100000`) | events in the memory workload |
//!
//! The raw baselines write the same rows into tables built from chronicle's own migration
//! files (`migrations/<backend>/*.sql`, run in a schema or file of their own), so columns
//! and indexes are identical. Every PostgreSQL schema is named `bench_<pid>_<tag>` and
//! dropped afterwards; SQLite files live in a temporary directory. Progress goes to
//! stderr, the results table to stdout.

use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chronicle::{
    Compression, Direction, ExpectedVersion, KeyRing, NewEvent, SqliteDurability, Store,
    StoreBuilder,
};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row as _};
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

/// Events per append when a replay stream is written.
const FILL_BATCH: usize = 1000;
/// The stream every replay workload reads.
const REPLAY_STREAM: &str = "replay-1";
/// Set in the child process that measures one replay's memory (see `replay_memory`).
const CHILD_ENV: &str = "CHRONICLE_BENCH_CHILD";

// ---------------------------------------------------------------------------------------
// Configuration

struct Config {
    pg_url: String,
    secs: Duration,
    warmup: Duration,
    rounds: usize,
    quick: bool,
    replay_events: u64,
    big_replay_events: u64,
    filter: Option<String>,
}

impl Config {
    fn from_env() -> Res<Self> {
        let quick = std::env::var("CHRONICLE_BENCH_QUICK").is_ok_and(|v| v == "1");
        let secs: f64 = env_or("CHRONICLE_BENCH_SECS", 5.0)?;
        let secs = Duration::from_secs_f64(secs.max(0.1));
        Ok(Config {
            pg_url: std::env::var("CHRONICLE_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
            secs,
            // Fills the pools and the plan caches before each timed run.
            warmup: (secs / 10).min(Duration::from_millis(500)),
            rounds: env_or("CHRONICLE_BENCH_ROUNDS", 3_usize)?.max(1),
            quick,
            replay_events: env_or(
                "CHRONICLE_BENCH_REPLAY_EVENTS",
                if quick { 10_000 } else { 100_000 },
            )?,
            big_replay_events: env_or(
                "CHRONICLE_BENCH_BIG_REPLAY_EVENTS",
                if quick { 100_000 } else { 1_000_000 },
            )?,
            // `cargo bench` passes `--bench`; the first other argument is the filter.
            filter: std::env::args().skip(1).find(|arg| !arg.starts_with('-')),
        })
    }

    fn selected(&self, workload: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|filter| workload.contains(filter))
    }
}

fn env_or<T: FromStr>(name: &str, default: T) -> Res<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|error| format!("{name}={value}: {error}").into()),
        Err(_) => Ok(default),
    }
}

// ---------------------------------------------------------------------------------------
// Payloads

/// The typed event of the small-payload workloads (about 110 bytes of JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Deposited {
    account: String,
    amount: u64,
    currency: String,
    reference: Uuid,
}

impl Deposited {
    fn sample(n: u64) -> Self {
        Deposited {
            account: format!("acct-{n}"),
            amount: n % 10_000,
            currency: "EUR".to_owned(),
            reference: Uuid::now_v7(),
        }
    }
}

/// An order of about 1 KiB of JSON: nested objects, numbers, ids and some prose, so zstd
/// has realistic (not trivial) work.
fn order_payload() -> serde_json::Value {
    let lines: Vec<_> = (1..=6)
        .map(|i| {
            serde_json::json!({
                "sku": format!("SKU-{:05}", 1000 + i * 37),
                "description": format!("Widget model {i}, anodised, {} mm", 10 * i),
                "quantity": i,
                "unit_price_cents": 1999 + i * 250,
            })
        })
        .collect();
    let mut order = serde_json::json!({
        "order_id": Uuid::now_v7(),
        "customer": {
            "id": Uuid::now_v7(),
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "address": { "street": "12 Analytical Row", "city": "London", "postcode": "NW1 2AB", "country": "GB" },
        },
        "lines": lines,
        "currency": "GBP",
        "note": "",
    });
    let base = serde_json::to_vec(&order).map_or(0, |json| json.len());
    let prose = "Please leave the parcel with the concierge if nobody answers. ";
    let note: String = prose
        .chars()
        .cycle()
        .take(1024_usize.saturating_sub(base))
        .collect();
    order["note"] = serde_json::Value::String(note);
    order
}

/// A process-wide counter: unique stream ids across rounds, warm-ups and workloads.
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// Measuring

/// Units of work (appends, events) done in a wall-clock time.
#[derive(Debug, Clone, Copy)]
struct Throughput {
    units: u64,
    elapsed: Duration,
}

impl Throughput {
    fn per_sec(self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `op` in `tasks` concurrent tokio tasks until `duration` has passed, adding up the
/// units each call reports. A call still running when time is up finishes and counts, and
/// the elapsed time includes it.
async fn run_for<F, Fut>(tasks: usize, duration: Duration, op: &Arc<F>) -> Res<Throughput>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Res<u64>> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let op = Arc::clone(op);
            tokio::spawn(async move {
                let mut units = 0;
                while Instant::now() < deadline {
                    units += op(task).await?;
                }
                Ok::<u64, BoxError>(units)
            })
        })
        .collect();
    let mut units = 0;
    for handle in handles {
        units += handle.await??;
    }
    Ok(Throughput {
        units,
        elapsed: start.elapsed(),
    })
}

/// The rates (units/s) of a baseline and of chronicle, one per round.
struct Rates {
    baseline: Vec<f64>,
    chronicle: Vec<f64>,
}

impl Rates {
    fn ratio(&self) -> f64 {
        median(&self.chronicle) / median(&self.baseline)
    }
}

/// Runs `baseline` then `chronicle`, each warmed up and then timed for `cfg.secs` with
/// `tasks` concurrent tasks, for `cfg.rounds` rounds.
async fn interleave<B, BFut, C, CFut>(
    cfg: &Config,
    names: (&str, &str),
    tasks: usize,
    baseline: B,
    chronicle: C,
) -> Res<Rates>
where
    B: Fn(usize) -> BFut + Send + Sync + 'static,
    BFut: Future<Output = Res<u64>> + Send + 'static,
    C: Fn(usize) -> CFut + Send + Sync + 'static,
    CFut: Future<Output = Res<u64>> + Send + 'static,
{
    let (baseline, chronicle) = (Arc::new(baseline), Arc::new(chronicle));
    let mut rates = Rates {
        baseline: Vec::new(),
        chronicle: Vec::new(),
    };
    for round in 1..=cfg.rounds {
        run_for(tasks, cfg.warmup, &baseline).await?;
        let b = run_for(tasks, cfg.secs, &baseline).await?;
        run_for(tasks, cfg.warmup, &chronicle).await?;
        let c = run_for(tasks, cfg.secs, &chronicle).await?;
        eprintln!(
            "  round {round}: {} {}/s ({} in {:.2} s), {} {}/s ({} in {:.2} s), ratio {:.2}",
            names.0,
            fmt_rate(b.per_sec()),
            b.units,
            b.elapsed.as_secs_f64(),
            names.1,
            fmt_rate(c.per_sec()),
            c.units,
            c.elapsed.as_secs_f64(),
            c.per_sec() / b.per_sec(),
        );
        rates.baseline.push(b.per_sec());
        rates.chronicle.push(c.per_sec());
    }
    Ok(rates)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn fmt_rate(value: f64) -> String {
    if !value.is_finite() {
        return "—".to_owned();
    }
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Results

/// One line of the results table.
struct Row {
    workload: String,
    chronicle: String,
    baseline: String,
    ratio: String,
    target: String,
    met: Option<bool>,
}

/// A row whose target is chronicle's share of the baseline's median rate.
fn ratio_row(workload: &str, unit: &str, rates: &Rates, target: f64, target_text: &str) -> Row {
    let ratio = rates.ratio();
    Row {
        workload: workload.to_owned(),
        chronicle: format!("{} {unit}", fmt_rate(median(&rates.chronicle))),
        baseline: format!("{} {unit}", fmt_rate(median(&rates.baseline))),
        ratio: format!("{:.0}%", ratio * 100.0),
        target: target_text.to_owned(),
        met: Some(ratio >= target),
    }
}

fn error_row(workload: &str, error: &BoxError) -> Row {
    Row {
        workload: workload.to_owned(),
        chronicle: format!("error: {error}").replace('|', "/"),
        baseline: "—".to_owned(),
        ratio: "—".to_owned(),
        target: "—".to_owned(),
        met: None,
    }
}

fn print_table(rows: &[Row]) {
    println!("| workload | chronicle | baseline | ratio | target | met? |");
    println!("| --- | ---: | ---: | ---: | --- | --- |");
    for row in rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.workload, row.chronicle, row.baseline, row.ratio, row.target, met
        );
    }
}

// ---------------------------------------------------------------------------------------
// Databases

/// chronicle's migration files for `backend`, in order: the raw baselines' tables are built
/// from them, so they have exactly chronicle's columns and indexes.
fn migrations(backend: &str) -> Res<Vec<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|error| format!("{}: {error}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|path| path.extension().is_some_and(|ext| ext == "sql"));
    files.sort();
    files
        .iter()
        .map(|path| std::fs::read_to_string(path).map_err(Into::into))
        .collect()
}

/// PostgreSQL schemas of one run, dropped by `drop_all` when the workload ends.
struct Schemas {
    admin: PgPool,
    url: String,
    names: Vec<String>,
}

impl Schemas {
    async fn connect(url: &str) -> Res<Self> {
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|error| format!("PostgreSQL at {url}: {error}"))?;
        Ok(Schemas {
            admin,
            url: url.to_owned(),
            names: Vec::new(),
        })
    }

    /// A new schema name for `tag`; chronicle creates it on open.
    fn name(&mut self, tag: &str) -> String {
        let name = format!("bench_{}_{tag}", std::process::id());
        self.names.push(name.clone());
        name
    }

    /// A chronicle store with `connections` connections in a fresh schema.
    async fn store(
        &mut self,
        tag: &str,
        connections: u32,
        configure: impl FnOnce(StoreBuilder) -> StoreBuilder,
    ) -> Res<Store> {
        let schema = self.name(tag);
        self.drop_schema(&schema).await?;
        let builder = Store::builder(self.url.clone())
            .schema(schema)
            .pool_size(connections);
        Ok(configure(builder).open().await?)
    }

    /// A fresh schema holding chronicle's tables, and a plain sqlx pool of `connections`
    /// connections whose `search_path` is that schema (as chronicle's connections are).
    async fn raw(&mut self, tag: &str, connections: u32) -> Res<PgPool> {
        let schema = self.name(tag);
        self.drop_schema(&schema).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
            .execute(&self.admin)
            .await?;
        let options = pg_options(&self.url, &schema)?;
        let mut conn = PgConnection::connect_with(&options).await?;
        for sql in migrations("postgres")? {
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
        }
        conn.close().await?;
        Ok(PgPoolOptions::new()
            .max_connections(connections)
            .connect_with(options)
            .await?)
    }

    /// A plain sqlx pool on the schema of an existing chronicle store.
    async fn pool_on(&self, schema: &str, connections: u32) -> Res<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(connections)
            .connect_with(pg_options(&self.url, schema)?)
            .await?)
    }

    async fn drop_schema(&self, schema: &str) -> Res<()> {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&self.admin)
        .await?;
        Ok(())
    }

    async fn drop_all(self) {
        for schema in &self.names {
            if let Err(error) = self.drop_schema(schema).await {
                eprintln!("  could not drop schema {schema}: {error}");
            }
        }
        self.admin.close().await;
    }
}

fn pg_options(url: &str, schema: &str) -> Res<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)?.options([("search_path", schema)]))
}

/// Runs a PostgreSQL workload with its own schemas, and drops them whatever happens.
async fn with_schemas<T, F>(cfg: &Config, body: F) -> Res<T>
where
    F: AsyncFnOnce(&mut Schemas) -> Res<T>,
{
    let mut schemas = Schemas::connect(&cfg.pg_url).await?;
    let result = body(&mut schemas).await;
    schemas.drop_all().await;
    result
}

fn sqlite_url(dir: &Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}

/// A one-connection sqlx pool on a SQLite file in WAL mode with `synchronous = FULL`
/// (chronicle's default durability) holding chronicle's tables.
async fn raw_sqlite(url: &str) -> Res<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    for sql in migrations("sqlite")? {
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&pool).await?;
    }
    // The baseline writes bare event rows: chronicle's guard triggers (the version check
    // and the stream row) are chronicle's work, not the ceiling's.
    sqlx::raw_sql("DROP TRIGGER events_guard; DROP TRIGGER events_advance_stream")
        .execute(&pool)
        .await?;
    Ok(pool)
}

// ---------------------------------------------------------------------------------------
// Operations shared by the workloads

/// Appends one small event to a new stream.
async fn append_one(store: &Store) -> Res<u64> {
    let n = next_id();
    let event = NewEvent::from_serialize("deposited", &Deposited::sample(n))?;
    store
        .append(format!("acct-{n}"), ExpectedVersion::NoStream, vec![event])
        .await?;
    Ok(1)
}

/// Appends `count` small events to a new stream in one append.
async fn append_batch(store: &Store, count: usize) -> Res<u64> {
    let n = next_id();
    let events = (0..count)
        .map(|_| NewEvent::from_serialize("deposited", &Deposited::sample(n)))
        .collect::<Result<Vec<_>, _>>()?;
    store
        .append(format!("batch-{n}"), ExpectedVersion::NoStream, events)
        .await?;
    Ok(count as u64)
}

/// Appends one event carrying `payload` to a new stream.
async fn append_payload(store: &Store, payload: &serde_json::Value) -> Res<u64> {
    let n = next_id();
    let event = NewEvent::from_serialize("order.placed", payload)?;
    store
        .append(format!("order-{n}"), ExpectedVersion::NoStream, vec![event])
        .await?;
    Ok(1)
}

const RAW_PG_INSERT: &str = "INSERT INTO events \
     (event_id, stream_id, version, event_type, schema_version, payload) \
     VALUES ($1, $2, $3, $4, $5, $6)";

const RAW_PG_INSERT_BATCH: &str = "INSERT INTO events \
     (event_id, stream_id, version, event_type, schema_version, payload) \
     SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::int4[], $6::bytea[])";

const RAW_SQLITE_INSERT: &str = "INSERT INTO events \
     (event_id, stream_id, version, event_type, schema_version, payload, recorded_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?)";

/// The raw baseline of `append_one`: one autocommitted single-row INSERT.
async fn raw_pg_insert_one(pool: &PgPool) -> Res<u64> {
    let n = next_id();
    let payload = serde_json::to_vec(&Deposited::sample(n))?;
    sqlx::query(RAW_PG_INSERT)
        .bind(Uuid::now_v7())
        .bind(format!("acct-{n}"))
        .bind(1_i64)
        .bind("deposited")
        .bind(1_i32)
        .bind(payload)
        .execute(pool)
        .await?;
    Ok(1)
}

/// The raw baseline of `append_batch`: one multi-row INSERT over UNNEST'ed arrays.
async fn raw_pg_insert_batch(pool: &PgPool, count: usize) -> Res<u64> {
    let n = next_id();
    let stream = format!("batch-{n}");
    let payloads = (0..count)
        .map(|_| serde_json::to_vec(&Deposited::sample(n)))
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(RAW_PG_INSERT_BATCH)
        .bind((0..count).map(|_| Uuid::now_v7()).collect::<Vec<_>>())
        .bind(vec![stream.as_str(); count])
        .bind((1..=count as i64).collect::<Vec<_>>())
        .bind(vec!["deposited"; count])
        .bind(vec![1_i32; count])
        .bind(payloads)
        .execute(pool)
        .await?;
    Ok(count as u64)
}

/// The raw SQLite baseline of `append_one` (or of a 1 KiB append, given `payload`).
async fn raw_sqlite_insert_one(pool: &SqlitePool) -> Res<u64> {
    let n = next_id();
    let payload = serde_json::to_vec(&Deposited::sample(n))?;
    sqlx::query(RAW_SQLITE_INSERT)
        .bind(Uuid::now_v7())
        .bind(format!("acct-{n}"))
        .bind(1_i64)
        .bind("deposited")
        .bind(1_i64)
        .bind(payload)
        .bind(chrono::Utc::now().timestamp_micros())
        .execute(pool)
        .await?;
    Ok(1)
}

/// Writes `total` small events to `stream` in appends of `FILL_BATCH`.
async fn fill_stream(store: &Store, stream: &str, total: u64) -> Res<()> {
    let started = Instant::now();
    let mut version = 0;
    while version < total {
        let count = (total - version).min(FILL_BATCH as u64);
        let events = (0..count)
            .map(|i| NewEvent::from_serialize("deposited", &Deposited::sample(version + i)))
            .collect::<Result<Vec<_>, _>>()?;
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        version = store
            .append(stream, expected, events)
            .await?
            .next_expected_version();
    }
    eprintln!(
        "  wrote {} events to `{stream}` in {:.1} s",
        fmt_rate(total as f64),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Reads `stream` through chronicle, decoding every payload into `Deposited`.
async fn replay_chronicle(store: &Store, stream: &str) -> Res<u64> {
    let mut events = std::pin::pin!(store.read_stream(stream, 1, Direction::Forward));
    let mut count = 0;
    while let Some(event) = events.try_next().await? {
        black_box(event.data::<Deposited>()?);
        count += 1;
    }
    Ok(count)
}

/// The columns the raw replays read: the envelope a hand-written replay would need.
const RAW_REPLAY_PG: &str = "SELECT position, event_id, version, event_type, payload, recorded_at \
     FROM events WHERE stream_id = $1 ORDER BY version";
const RAW_REPLAY_SQLITE: &str = "SELECT position, event_id, version, event_type, payload, recorded_at \
     FROM events WHERE stream_id = ? ORDER BY version";

/// The ceiling of `replay_chronicle` on PostgreSQL: one streamed SELECT, serde per row.
async fn replay_raw_pg(pool: &PgPool, stream: &str) -> Res<u64> {
    let mut rows = sqlx::query(RAW_REPLAY_PG).bind(stream).fetch(pool);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        let position: i64 = row.try_get(0)?;
        let id: Uuid = row.try_get(1)?;
        let version: i64 = row.try_get(2)?;
        let event_type: String = row.try_get(3)?;
        let payload: &[u8] = row.try_get(4)?;
        let recorded_at: chrono::DateTime<chrono::Utc> = row.try_get(5)?;
        let data: Deposited = serde_json::from_slice(payload)?;
        black_box((position, id, version, event_type, recorded_at, data));
        count += 1;
    }
    Ok(count)
}

/// The ceiling of `replay_chronicle` on SQLite: one streamed SELECT, serde per row.
async fn replay_raw_sqlite(pool: &SqlitePool, stream: &str) -> Res<u64> {
    let mut rows = sqlx::query(RAW_REPLAY_SQLITE).bind(stream).fetch(pool);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        let position: i64 = row.try_get(0)?;
        let id: Uuid = row.try_get(1)?;
        let version: i64 = row.try_get(2)?;
        let event_type: String = row.try_get(3)?;
        let payload: &[u8] = row.try_get(4)?;
        let recorded_at: i64 = row.try_get(5)?;
        let data: Deposited = serde_json::from_slice(payload)?;
        black_box((position, id, version, event_type, recorded_at, data));
        count += 1;
    }
    Ok(count)
}

/// Fails when a replay returned a different number of events than were written.
fn expect_count(what: &str, got: u64, want: u64) -> Res<u64> {
    if got == want {
        Ok(got)
    } else {
        Err(format!("{what} replayed {got} events, expected {want}").into())
    }
}

// ---------------------------------------------------------------------------------------
// Workloads

/// 1. PostgreSQL, 1-event appends to distinct streams, 8 writers.
async fn pg_append_1(cfg: &Config) -> Res<Vec<Row>> {
    const WRITERS: u32 = 8;
    let rates = with_schemas(cfg, async |schemas: &mut Schemas| {
        let raw = schemas.raw("append1_raw", WRITERS).await?;
        let store = schemas.store("append1_chronicle", WRITERS, |b| b).await?;
        interleave(
            cfg,
            ("raw INSERT", "chronicle"),
            WRITERS as usize,
            move |_| {
                let raw = raw.clone();
                async move { raw_pg_insert_one(&raw).await }
            },
            move |_| {
                let store = store.clone();
                async move { append_one(&store).await }
            },
        )
        .await
    })
    .await?;
    Ok(vec![ratio_row(
        "pg_append_1: PostgreSQL, 1-event appends, 8 writers",
        "appends/s",
        &rates,
        0.75,
        "≥ 75% of raw single-row INSERT",
    )])
}

/// 2. PostgreSQL, 100-event appends, 4 writers.
async fn pg_append_100(cfg: &Config) -> Res<Vec<Row>> {
    const WRITERS: u32 = 4;
    const BATCH: usize = 100;
    let rates = with_schemas(cfg, async |schemas: &mut Schemas| {
        let raw = schemas.raw("append100_raw", WRITERS).await?;
        let store = schemas.store("append100_chronicle", WRITERS, |b| b).await?;
        interleave(
            cfg,
            ("raw multi-row INSERT", "chronicle"),
            WRITERS as usize,
            move |_| {
                let raw = raw.clone();
                async move { raw_pg_insert_batch(&raw, BATCH).await }
            },
            move |_| {
                let store = store.clone();
                async move { append_batch(&store, BATCH).await }
            },
        )
        .await
    })
    .await?;
    Ok(vec![ratio_row(
        "pg_append_100: PostgreSQL, 100-event appends, 4 writers",
        "events/s",
        &rates,
        0.60,
        "≥ 60% of raw multi-row INSERT",
    )])
}

/// 3. SQLite file, 1-event appends, 1 writer, `synchronous = FULL` on both sides.
async fn sqlite_append_1(cfg: &Config) -> Res<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let raw = raw_sqlite(&sqlite_url(dir.path(), "raw.db")).await?;
    let store = Store::builder(sqlite_url(dir.path(), "chronicle.db"))
        .sqlite_durability(SqliteDurability::Full)
        .open()
        .await?;
    let rates = interleave(
        cfg,
        ("raw INSERT", "chronicle"),
        1,
        move |_| {
            let raw = raw.clone();
            async move { raw_sqlite_insert_one(&raw).await }
        },
        move |_| {
            let store = store.clone();
            async move { append_one(&store).await }
        },
    )
    .await?;
    Ok(vec![ratio_row(
        "sqlite_append_1: SQLite file (FULL), 1-event appends, 1 writer",
        "appends/s",
        &rates,
        0.75,
        "≥ 75% of raw single-row INSERT",
    )])
}

/// A replay row: chronicle's rate against the absolute target, the raw rate beside it.
fn replay_row(workload: &str, rates: &Rates) -> Row {
    let chronicle = median(&rates.chronicle);
    Row {
        met: Some(chronicle >= 150_000.0),
        target: "≥ 150,000 events/s".to_owned(),
        ..ratio_row(workload, "events/s", rates, 0.0, "")
    }
}

/// Interleaves a raw replay of `REPLAY_STREAM` (the ceiling) with chronicle's, checking
/// that each read every one of the `total` events.
async fn interleave_replays<R, RFut>(cfg: &Config, store: Store, total: u64, raw: R) -> Res<Rates>
where
    R: Fn() -> RFut + Send + Sync + 'static,
    RFut: Future<Output = Res<u64>> + Send + 'static,
{
    interleave(
        cfg,
        ("raw SELECT + serde", "chronicle read_stream"),
        1,
        move |_| {
            let got = raw();
            async move { expect_count("raw", got.await?, total) }
        },
        move |_| {
            let store = store.clone();
            async move {
                let got = replay_chronicle(&store, REPLAY_STREAM).await?;
                expect_count("chronicle", got, total)
            }
        },
    )
    .await
}

/// 4a. Replay of a stream on SQLite, decoded into typed structs.
async fn replay_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let total = cfg.replay_events;
    let dir = tempfile::tempdir()?;
    let url = sqlite_url(dir.path(), "replay.db");
    let store = Store::open(url.clone()).await?;
    fill_stream(&store, REPLAY_STREAM, total).await?;
    let raw = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::from_str(&url)?)
        .await?;
    let rates = interleave_replays(cfg, store, total, move || {
        let raw = raw.clone();
        async move { replay_raw_sqlite(&raw, REPLAY_STREAM).await }
    })
    .await?;
    Ok(vec![replay_row(
        &format!(
            "replay_sqlite: SQLite, read_stream of {} events → typed",
            fmt_rate(total as f64)
        ),
        &rates,
    )])
}

/// 4b. Replay of a stream on PostgreSQL, decoded into typed structs.
async fn replay_pg(cfg: &Config) -> Res<Vec<Row>> {
    let total = cfg.replay_events;
    let rates = with_schemas(cfg, async |schemas: &mut Schemas| {
        let store = schemas.store("replay", 2, |b| b).await?;
        fill_stream(&store, REPLAY_STREAM, total).await?;
        let schema = schemas.names.last().cloned().unwrap_or_default();
        let raw = schemas.pool_on(&schema, 2).await?;
        interleave_replays(cfg, store, total, move || {
            let raw = raw.clone();
            async move { replay_raw_pg(&raw, REPLAY_STREAM).await }
        })
        .await
    })
    .await?;
    Ok(vec![replay_row(
        &format!(
            "replay_pg: PostgreSQL, read_stream of {} events → typed",
            fmt_rate(total as f64)
        ),
        &rates,
    )])
}

/// Turns on zstd (chronicle's defaults: level 3, payloads from 256 bytes) and
/// XChaCha20-Poly1305 on a store builder.
fn codec_on(builder: StoreBuilder, keys: KeyRing) -> StoreBuilder {
    builder.compression(Compression::zstd()).encryption(keys)
}

fn codec_row(workload: &str, rates: &Rates) -> Row {
    Row {
        chronicle: format!("on: {} appends/s", fmt_rate(median(&rates.chronicle))),
        baseline: format!("off: {} appends/s", fmt_rate(median(&rates.baseline))),
        ..ratio_row(workload, "", rates, 0.85, "on ≤ 15% slower than off")
    }
}

/// 5a. PostgreSQL, 1 KiB payloads, compression + encryption on vs off, 8 writers.
async fn codec_pg(cfg: &Config) -> Res<Vec<Row>> {
    const WRITERS: u32 = 8;
    let payload = Arc::new(order_payload());
    let keys = KeyRing::new("k1", KeyRing::generate_key())?;
    let rates = with_schemas(cfg, async |schemas: &mut Schemas| {
        let off = schemas.store("codec_off", WRITERS, |b| b).await?;
        let on = schemas
            .store("codec_on", WRITERS, |b| codec_on(b, keys))
            .await?;
        let payload_on = Arc::clone(&payload);
        interleave(
            cfg,
            ("off", "on"),
            WRITERS as usize,
            move |_| {
                let (store, payload) = (off.clone(), Arc::clone(&payload));
                async move { append_payload(&store, &payload).await }
            },
            move |_| {
                let (store, payload) = (on.clone(), Arc::clone(&payload_on));
                async move { append_payload(&store, &payload).await }
            },
        )
        .await
    })
    .await?;
    Ok(vec![codec_row(
        "codec_pg: PostgreSQL, 1 KiB payloads, zstd + encryption on vs off, 8 writers",
        &rates,
    )])
}

/// 5b. SQLite file, 1 KiB payloads, compression + encryption on vs off, 1 writer.
async fn codec_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let payload = Arc::new(order_payload());
    let dir = tempfile::tempdir()?;
    let off = Store::open(sqlite_url(dir.path(), "off.db")).await?;
    let keys = KeyRing::new("k1", KeyRing::generate_key())?;
    let on = codec_on(Store::builder(sqlite_url(dir.path(), "on.db")), keys)
        .open()
        .await?;
    let payload_on = Arc::clone(&payload);
    let rates = interleave(
        cfg,
        ("off", "on"),
        1,
        move |_| {
            let (store, payload) = (off.clone(), Arc::clone(&payload));
            async move { append_payload(&store, &payload).await }
        },
        move |_| {
            let (store, payload) = (on.clone(), Arc::clone(&payload_on));
            async move { append_payload(&store, &payload).await }
        },
    )
    .await?;
    Ok(vec![codec_row(
        "codec_sqlite: SQLite file (FULL), 1 KiB payloads, zstd + encryption on vs off, 1 writer",
        &rates,
    )])
}

/// Workload 6: peak memory growth of replaying a large SQLite stream, each replay measured
/// in a fresh child process (so memory the writer freed cannot hide the reader's growth).
async fn replay_memory(cfg: &Config) -> Res<Vec<Row>> {
    let total = cfg.big_replay_events;
    let dir = tempfile::tempdir()?;
    let url = sqlite_url(dir.path(), "big.db");
    {
        let store = Store::builder(url.clone())
            .sqlite_durability(SqliteDurability::Normal)
            .open()
            .await?;
        fill_stream(&store, REPLAY_STREAM, total).await?;
    }
    let chronicle = measure_in_child("chronicle", &url, total).await?;
    let raw = measure_in_child("raw", &url, total).await?;
    let limit_kib = 64 * 1024;
    Ok(vec![Row {
        workload: format!(
            "replay_1m_memory: SQLite, read_stream of {} events, peak RSS growth",
            fmt_rate(total as f64)
        ),
        chronicle: chronicle.describe(),
        baseline: format!("raw streamed SELECT: {}", raw.describe()),
        ratio: "—".to_owned(),
        target: "growth < 64 MiB".to_owned(),
        met: Some(chronicle.growth_kib() < limit_kib),
    }])
}

/// What a child process reported about one replay.
struct MemoryReport {
    before_kib: u64,
    peak_kib: u64,
    events: u64,
    secs: f64,
    method: String,
}

impl MemoryReport {
    fn growth_kib(&self) -> u64 {
        self.peak_kib.saturating_sub(self.before_kib)
    }

    fn describe(&self) -> String {
        format!(
            "+{:.1} MiB ({:.1} → {:.1} MiB, {}; {} events/s)",
            self.growth_kib() as f64 / 1024.0,
            self.before_kib as f64 / 1024.0,
            self.peak_kib as f64 / 1024.0,
            self.method,
            fmt_rate(self.events as f64 / self.secs),
        )
    }
}

async fn measure_in_child(system: &str, url: &str, total: u64) -> Res<MemoryReport> {
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, format!("{system} {total} {url}"))
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|line| line.strip_prefix("RESULT "));
    let (true, Some(line)) = (output.status.success(), line) else {
        return Err(format!(
            "memory child ({system}) failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [before, peak, events, secs, method] = fields[..] else {
        return Err(format!("memory child ({system}) printed `{line}`").into());
    };
    let report = MemoryReport {
        before_kib: before.parse()?,
        peak_kib: peak.parse()?,
        events: events.parse()?,
        secs: secs.parse()?,
        method: method.replace('_', " "),
    };
    eprintln!("  {system}: {}", report.describe());
    expect_count(system, report.events, total)?;
    Ok(report)
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// The child side of `replay_memory`: opens the database, notes VmRSS, resets the peak,
/// replays while sampling VmRSS every 10 ms, and prints
/// `RESULT <before KiB> <peak KiB> <events> <seconds> <method>`.
fn child_main(spec: &str) -> Res<()> {
    let mut parts = spec.splitn(3, ' ');
    let (Some(system), Some(total), Some(url)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("bad {CHILD_ENV} `{spec}`").into());
    };
    let total: u64 = total.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        enum Reader {
            Chronicle(Store),
            Raw(SqlitePool),
        }
        let reader = match system {
            "chronicle" => Reader::Chronicle(
                Store::builder(url)
                    .sqlite_durability(SqliteDurability::Normal)
                    .open()
                    .await?,
            ),
            _ => Reader::Raw(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(SqliteConnectOptions::from_str(url)?)
                    .await?,
            ),
        };
        let rss = || proc_status_kib("VmRSS").unwrap_or(0);
        let before = rss();
        let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let sampled = Arc::new(AtomicU64::new(before));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (sampled, stop) = (Arc::clone(&sampled), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    sampled.fetch_max(rss(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let started = Instant::now();
        let events = match &reader {
            Reader::Chronicle(store) => replay_chronicle(store, REPLAY_STREAM).await?,
            Reader::Raw(pool) => replay_raw_sqlite(pool, REPLAY_STREAM).await?,
        };
        let secs = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        sampler.await?;
        let sampled = sampled.load(Ordering::Relaxed).max(rss());
        let (peak, method) = match proc_status_kib("VmHWM") {
            Some(hwm) if hwm_reset => (hwm.max(sampled), "VmHWM_after_clear_refs"),
            _ => (sampled, "VmRSS_sampled_every_10_ms"),
        };
        if events != total {
            eprintln!("replayed {events} events, expected {total}");
        }
        println!("RESULT {before} {peak} {events} {secs:.3} {method}");
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// Main

const WORKLOADS: &[&str] = &[
    "pg_append_1",
    "pg_append_100",
    "sqlite_append_1",
    "replay_sqlite",
    "replay_pg",
    "codec_pg",
    "codec_sqlite",
    "replay_1m_memory",
];

async fn run_workload(cfg: &Config, name: &str) -> Res<Vec<Row>> {
    match name {
        "pg_append_1" => pg_append_1(cfg).await,
        "pg_append_100" => pg_append_100(cfg).await,
        "sqlite_append_1" => sqlite_append_1(cfg).await,
        "replay_sqlite" => replay_sqlite(cfg).await,
        "replay_pg" => replay_pg(cfg).await,
        "codec_pg" => codec_pg(cfg).await,
        "codec_sqlite" => codec_sqlite(cfg).await,
        "replay_1m_memory" => replay_memory(cfg).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

async fn postgres_version(url: &str) -> String {
    let version = async {
        let mut conn = PgConnection::connect(url).await?;
        let version: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        Ok::<_, BoxError>(version)
    };
    version
        .await
        .unwrap_or_else(|error| format!("unreachable ({error})"))
}

fn main() -> Res<()> {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return child_main(&spec);
    }
    let cfg = Config::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let selected: Vec<&str> = WORKLOADS
            .iter()
            .copied()
            .filter(|name| cfg.selected(name))
            .collect();
        if selected.is_empty() {
            return Err(format!(
                "no workload matches `{}`; workloads: {}",
                cfg.filter.as_deref().unwrap_or_default(),
                WORKLOADS.join(", ")
            )
            .into());
        }
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        println!("# chronicle benchmarks");
        println!();
        println!(
            "- date: {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        println!("- cores: {cores}");
        println!("- PostgreSQL: {}", postgres_version(&cfg.pg_url).await);
        println!(
            "- {} s per system per round (+{} ms warm-up), {} interleaved rounds, medians{}",
            cfg.secs.as_secs_f64(),
            cfg.warmup.as_millis(),
            cfg.rounds,
            if cfg.quick { ", quick sizes" } else { "" }
        );
        println!();
        let started = Instant::now();
        let mut rows = Vec::new();
        for name in selected {
            eprintln!("{name}:");
            match run_workload(&cfg, name).await {
                Ok(mut more) => rows.append(&mut more),
                Err(error) => {
                    eprintln!("  failed: {error}");
                    rows.push(error_row(name, &error));
                }
            }
        }
        print_table(&rows);
        eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
        Ok(())
    })
}
