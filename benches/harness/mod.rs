//! The machinery the benchmarks share: configuration from the environment, timed runs of
//! concurrent operations, interleaved rounds against a baseline, the results table, the
//! PostgreSQL schemas and SQLite files the workloads run in, and the raw sqlx baselines.
//!
//! Each bench target (`core.rs`, `aggregates.rs`, `projections.rs`) includes this module
//! with `mod harness;` and calls [`run`] (or [`run_described`]) from its `main` with its
//! list of workloads. Cargo does not take `benches/harness/mod.rs` for a target of its
//! own: only files directly in `benches/` are.
//!
//! What is *not* here: chronicle-side operations and workload definitions; those live in
//! the bench that measures them.

// Each bench target compiles this module on its own and uses only part of it (the core
// bench has no three-way interleave, the aggregate bench no batch or SQLite INSERT), so
// whatever one target leaves unused would warn in that target.
#![allow(dead_code)]

use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chronicle::{Store, StoreBuilder};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row as _};
use uuid::Uuid;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, BoxError>;

// ---------------------------------------------------------------------------------------
// Configuration

/// The settings every bench shares, from the environment and the command line.
pub struct Config {
    pub pg_url: String,
    pub secs: Duration,
    pub warmup: Duration,
    pub rounds: usize,
    pub quick: bool,
    pub filter: Option<String>,
}

impl Config {
    pub fn from_env() -> Res<Self> {
        let quick = std::env::var("CHRONICLE_BENCH_QUICK").is_ok_and(|v| v == "1");
        let secs: f64 = env_or("CHRONICLE_BENCH_SECS", 5.0)?;
        let secs = Duration::from_secs_f64(secs.max(0.1));
        Ok(Config {
            // Plain TCP, as the peers (built without TLS) connect: with the `tls-rustls`
            // feature, sqlx's default `sslmode=prefer` would encrypt chronicle's loopback.
            pg_url: std::env::var("CHRONICLE_PG_URL").unwrap_or_else(|_| {
                "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".to_owned()
            }),
            secs,
            // Fills the pools and the plan caches before each timed run.
            warmup: (secs / 10).min(Duration::from_millis(500)),
            rounds: env_or("CHRONICLE_BENCH_ROUNDS", 3_usize)?.max(1),
            quick,
            // `cargo bench` passes `--bench`; the first other argument is the filter.
            filter: std::env::args().skip(1).find(|arg| !arg.starts_with('-')),
        })
    }

    pub fn selected(&self, workload: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|filter| workload.contains(filter))
    }

    /// A workload size: the variable `var` when set, else `full` (a tenth of it with
    /// `CHRONICLE_BENCH_QUICK=1`).
    pub fn size(&self, var: &str, full: u64) -> Res<u64> {
        env_or(var, if self.quick { full / 10 } else { full })
    }
}

pub fn env_or<T: FromStr>(name: &str, default: T) -> Res<T>
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
pub struct Deposited {
    pub account: String,
    pub amount: u64,
    pub currency: String,
    pub reference: Uuid,
}

impl Deposited {
    pub fn sample(n: u64) -> Self {
        Deposited {
            account: format!("acct-{n}"),
            amount: n % 10_000,
            currency: "EUR".to_owned(),
            reference: Uuid::now_v7(),
        }
    }
}

/// A process-wide counter: unique stream ids across rounds, warm-ups and workloads.
pub fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// Measuring

/// Units of work (appends, events) done in a wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub units: u64,
    pub elapsed: Duration,
}

impl Throughput {
    pub fn per_sec(self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `op` in `tasks` concurrent tokio tasks until `duration` has passed, adding up the
/// units each call reports. A call still running when time is up finishes and counts, and
/// the elapsed time includes it.
pub async fn run_for<F, Fut>(tasks: usize, duration: Duration, op: &Arc<F>) -> Res<Throughput>
where
    F: Fn(usize) -> Fut + Send + Sync + ?Sized + 'static,
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
pub struct Rates {
    pub baseline: Vec<f64>,
    pub chronicle: Vec<f64>,
}

impl Rates {
    pub fn ratio(&self) -> f64 {
        median(&self.chronicle) / median(&self.baseline)
    }
}

/// Runs `baseline` then `chronicle`, each warmed up and then timed for `cfg.secs` with
/// `tasks` concurrent tasks, for `cfg.rounds` rounds.
pub async fn interleave<B, BFut, C, CFut>(
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
        eprintln!("{}", round_line(round, &[(names.0, b), (names.1, c)]));
        rates.baseline.push(b.per_sec());
        rates.chronicle.push(c.per_sec());
    }
    Ok(rates)
}

/// An operation of [`interleave_systems`]: boxed, so systems of different types can share
/// a list.
pub type Op = Arc<dyn Fn(usize) -> BoxFuture<'static, Res<u64>> + Send + Sync>;

/// Boxes `op` into an [`Op`].
pub fn op<F, Fut>(op: F) -> Op
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Res<u64>> + Send + 'static,
{
    Arc::new(move |task| Box::pin(op(task)))
}

/// [`interleave`] for any number of systems, run in the order given in every round (the
/// baseline first); returns each system's rates, one per round.
pub async fn interleave_systems(
    cfg: &Config,
    tasks: usize,
    systems: &[(&str, Op)],
) -> Res<Vec<Vec<f64>>> {
    let mut rates = vec![Vec::new(); systems.len()];
    for round in 1..=cfg.rounds {
        let mut results = Vec::new();
        for (name, op) in systems {
            run_for(tasks, cfg.warmup, op).await?;
            results.push((*name, run_for(tasks, cfg.secs, op).await?));
        }
        eprintln!("{}", round_line(round, &results));
        for (rates, (_, result)) in rates.iter_mut().zip(&results) {
            rates.push(result.per_sec());
        }
    }
    Ok(rates)
}

/// One unit of [`interleave_units`]: does its work once (set-up included) and reports the
/// units it did and the time it timed, which may leave its set-up out.
pub type UnitOp = Arc<dyn Fn() -> BoxFuture<'static, Res<Throughput>> + Send + Sync>;

/// Boxes `op` into a [`UnitOp`].
pub fn unit_op<F, Fut>(op: F) -> UnitOp
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Res<Throughput>> + Send + 'static,
{
    Arc::new(move || Box::pin(op()))
}

/// [`interleave_systems`] for work that takes seconds per unit (a whole catch-up of the
/// log): each round runs every system's op once, in the order given (the baseline first),
/// with no warm-up and no time window; returns each system's rates, one per round.
pub async fn interleave_units(cfg: &Config, systems: &[(&str, UnitOp)]) -> Res<Vec<Vec<f64>>> {
    let mut rates = vec![Vec::new(); systems.len()];
    for round in 1..=cfg.rounds {
        let mut results = Vec::new();
        for (name, op) in systems {
            results.push((*name, op().await?));
        }
        eprintln!("{}", round_line(round, &results));
        for (rates, (_, result)) in rates.iter_mut().zip(&results) {
            rates.push(result.per_sec());
        }
    }
    Ok(rates)
}

/// The progress line of one round: each system's rate, then each later system's ratio to
/// the first (`ratio 0.77`, or `ratio 0.70 / 0.77` for three systems).
fn round_line(round: usize, results: &[(&str, Throughput)]) -> String {
    let systems: Vec<String> = results
        .iter()
        .map(|(name, t)| {
            format!(
                "{name} {}/s ({} in {:.2} s)",
                fmt_rate(t.per_sec()),
                t.units,
                t.elapsed.as_secs_f64()
            )
        })
        .collect();
    let first = results.first().map_or(f64::NAN, |(_, t)| t.per_sec());
    let ratios: Vec<String> = results
        .iter()
        .skip(1)
        .map(|(_, t)| format!("{:.2}", t.per_sec() / first))
        .collect();
    format!(
        "  round {round}: {}, ratio {}",
        systems.join(", "),
        ratios.join(" / ")
    )
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub fn fmt_rate(value: f64) -> String {
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

/// The `met?` column of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Met {
    Yes,
    No,
    /// The workload failed.
    NotMeasured,
    /// A row shown for information, with no target.
    Info,
}

impl From<bool> for Met {
    fn from(met: bool) -> Self {
        if met { Met::Yes } else { Met::No }
    }
}

/// One line of the results table.
pub struct Row {
    pub workload: String,
    pub chronicle: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    pub met: Met,
}

/// A row whose target is chronicle's share of the baseline's median rate.
pub fn ratio_row(workload: &str, unit: &str, rates: &Rates, target: f64, target_text: &str) -> Row {
    let ratio = rates.ratio();
    Row {
        workload: workload.to_owned(),
        chronicle: format!("{} {unit}", fmt_rate(median(&rates.chronicle))),
        baseline: format!("{} {unit}", fmt_rate(median(&rates.baseline))),
        ratio: format!("{:.0}%", ratio * 100.0),
        target: target_text.to_owned(),
        met: Met::from(ratio >= target),
    }
}

/// A replay row: chronicle's rate against the absolute target of 150,000 events/s, the
/// raw rate beside it.
pub fn replay_row(workload: &str, rates: &Rates) -> Row {
    let chronicle = median(&rates.chronicle);
    Row {
        met: Met::from(chronicle >= 150_000.0),
        target: "≥ 150,000 events/s".to_owned(),
        ..ratio_row(workload, "events/s", rates, 0.0, "")
    }
}

pub fn error_row(workload: &str, error: &BoxError) -> Row {
    Row {
        workload: workload.to_owned(),
        chronicle: format!("error: {error}").replace('|', "/"),
        baseline: "—".to_owned(),
        ratio: "—".to_owned(),
        target: "—".to_owned(),
        met: Met::NotMeasured,
    }
}

pub fn print_table(rows: &[Row]) {
    println!("| workload | chronicle | baseline | ratio | target | met? |");
    println!("| --- | ---: | ---: | ---: | --- | --- |");
    for row in rows {
        let met = match row.met {
            Met::Yes => "yes",
            Met::No => "**no**",
            Met::NotMeasured => "not measured",
            Met::Info => "(information)",
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.workload, row.chronicle, row.baseline, row.ratio, row.target, met
        );
    }
}

/// Fails when a replay returned a different number of events than were written.
pub fn expect_count(what: &str, got: u64, want: u64) -> Res<u64> {
    if got == want {
        Ok(got)
    } else {
        Err(format!("{what} replayed {got} events, expected {want}").into())
    }
}

// ---------------------------------------------------------------------------------------
// Main

/// A bench target's `main`: reads the [`Config`], runs every workload of `workloads` the
/// filter selects with `run_workload` (a failed one becomes an error row), and prints
/// the header and the results table to stdout, progress to stderr.
pub fn run<W>(title: &str, workloads: &[&'static str], run_workload: W) -> Res<()>
where
    W: AsyncFn(&Config, &'static str) -> Res<Vec<Row>>,
{
    run_described(title, timed_windows, workloads, run_workload)
}

/// The header's method line of the benches whose systems run in timed windows
/// ([`interleave`], [`interleave_systems`]).
fn timed_windows(cfg: &Config) -> String {
    format!(
        "{} s per system per round (+{} ms warm-up), {} interleaved rounds, medians{}",
        cfg.secs.as_secs_f64(),
        cfg.warmup.as_millis(),
        cfg.rounds,
        if cfg.quick { ", quick sizes" } else { "" }
    )
}

/// [`run`] with the header's method line from `method` (how a round is run and timed).
pub fn run_described<W>(
    title: &str,
    method: fn(&Config) -> String,
    workloads: &[&'static str],
    run_workload: W,
) -> Res<()>
where
    W: AsyncFn(&Config, &'static str) -> Res<Vec<Row>>,
{
    let cfg = Config::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let selected: Vec<&'static str> = workloads
            .iter()
            .copied()
            .filter(|name| cfg.selected(name))
            .collect();
        if selected.is_empty() {
            return Err(format!(
                "no workload matches `{}`; workloads: {}",
                cfg.filter.as_deref().unwrap_or_default(),
                workloads.join(", ")
            )
            .into());
        }
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        println!("# {title}");
        println!();
        println!(
            "- date: {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        println!("- cores: {cores}");
        println!("- PostgreSQL: {}", postgres_version(&cfg.pg_url).await);
        println!("- {}", method(&cfg));
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

/// The server's `version()`, or why it could not be asked.
pub async fn postgres_version(url: &str) -> String {
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

// ---------------------------------------------------------------------------------------
// Databases

/// chronicle's migration files for `backend`, in order: the raw baselines' tables are built
/// from them, so they have exactly chronicle's columns and indexes.
pub fn migrations(backend: &str) -> Res<Vec<String>> {
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
pub struct Schemas {
    admin: PgPool,
    url: String,
    pub names: Vec<String>,
}

impl Schemas {
    pub async fn connect(url: &str) -> Res<Self> {
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
        let name = Self::schema_name(tag);
        self.names.push(name.clone());
        name
    }

    /// The name of the schema that [`Schemas::store`] and [`Schemas::raw`] create for `tag`.
    pub fn schema_name(tag: &str) -> String {
        format!("bench_{}_{tag}", std::process::id())
    }

    /// A chronicle store with `connections` connections on the existing schema of `tag`
    /// (made by [`Schemas::store`] or [`Schemas::raw`] earlier in the workload), its data
    /// kept: for benches whose rounds reopen what a set-up phase wrote.
    pub async fn reopen(
        &self,
        tag: &str,
        connections: u32,
        configure: impl FnOnce(StoreBuilder) -> StoreBuilder,
    ) -> Res<Store> {
        let builder = Store::builder(self.url.clone())
            .schema(Self::schema_name(tag))
            .pool_size(connections);
        Ok(configure(builder).open().await?)
    }

    /// A chronicle store with `connections` connections in a fresh schema.
    pub async fn store(
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
    pub async fn raw(&mut self, tag: &str, connections: u32) -> Res<PgPool> {
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
            .test_before_acquire(false)
            .connect_with(options)
            .await?)
    }

    /// A plain sqlx pool on the schema of an existing chronicle store.
    pub async fn pool_on(&self, schema: &str, connections: u32) -> Res<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(connections)
            .test_before_acquire(false)
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
pub async fn with_schemas<T, F>(cfg: &Config, body: F) -> Res<T>
where
    F: AsyncFnOnce(&mut Schemas) -> Res<T>,
{
    let mut schemas = Schemas::connect(&cfg.pg_url).await?;
    let result = body(&mut schemas).await;
    schemas.drop_all().await;
    result
}

pub fn sqlite_url(dir: &Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}

/// A one-connection sqlx pool on a SQLite file in WAL mode with `synchronous = FULL`
/// (chronicle's default durability) holding chronicle's tables.
pub async fn raw_sqlite(url: &str) -> Res<SqlitePool> {
    raw_sqlite_with(url, SqliteSynchronous::Full).await
}

/// [`raw_sqlite`] with another `synchronous` setting.
pub async fn raw_sqlite_with(url: &str, synchronous: SqliteSynchronous) -> Res<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    for sql in migrations("sqlite")? {
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&pool).await?;
    }
    // The baseline writes bare event rows: chronicle's guard triggers (the version check
    // and the stream row) are chronicle's work, not the ceiling's.
    // Its one type, as an application would add it once (`RAW_SQLITE_INSERT`).
    sqlx::raw_sql(
        "DROP TRIGGER events_guard; DROP TRIGGER events_advance_stream; \
         INSERT INTO event_types (event_type, schema_version) VALUES ('deposited', 1)",
    )
    .execute(&pool)
    .await?;
    Ok(pool)
}

/// A one-connection sqlx pool on an existing SQLite file (a chronicle store's), for the
/// raw reads.
pub async fn sqlite_reader(url: &str) -> Res<SqlitePool> {
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::from_str(url)?)
        .await?)
}

// ---------------------------------------------------------------------------------------
// Raw baselines

// An event names its type by its row in `event_types`, looked up in the statement as
// chronicle's append does ([`raw_pg`] adds the row on first use, [`raw_sqlite`] at the
// start). It names its stream by a key, which a hand-written writer would keep in memory:
// here one of the writer's own (`raw_stream_key`), with no `streams` row.
const RAW_PG_INSERT: &str = "INSERT INTO events \
     (event_id, stream_key, version, type_id, payload) \
     VALUES ($1, $2, $3, \
             (SELECT type_id FROM event_types WHERE event_type = $4 AND schema_version = $5), $6)";

const RAW_PG_INSERT_BATCH: &str = "INSERT INTO events \
     (event_id, stream_key, version, type_id, payload) \
     SELECT e.id, $2, e.version, \
            (SELECT type_id FROM event_types t \
             WHERE t.event_type = e.typ AND t.schema_version = e.sv), e.payload \
     FROM UNNEST($1::uuid[], $3::bigint[], $4::text[], $5::int8[], $6::bytea[]) \
          AS e(id, version, typ, sv, payload)";

/// The stream key of the raw baselines' `n`th stream, one no store hands out: negative
/// on PostgreSQL (its identity counts up from 1, in 4 bytes), far above the store's keys
/// on SQLite (chronicle's guard trigger checks the version of the stream a key names).
fn raw_stream_key(n: u64, postgres: bool) -> i64 {
    if postgres {
        -(n as i64)
    } else {
        (1_i64 << 40) + n as i64
    }
}

/// Runs a raw insert of `deposited` events (schema version 1) on PostgreSQL, adding the
/// type to `event_types` first when the insert finds it missing.
async fn raw_pg<'q>(
    pool: &PgPool,
    query: impl Fn() -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Res<()> {
    match query().execute(pool).await {
        Err(sqlx::Error::Database(db)) if db.kind() == sqlx::error::ErrorKind::NotNullViolation => {
            sqlx::query(
                "INSERT INTO event_types (event_type, schema_version) VALUES ('deposited', 1) \
                 ON CONFLICT DO NOTHING",
            )
            .execute(pool)
            .await?;
            query().execute(pool).await?;
            Ok(())
        }
        result => {
            result?;
            Ok(())
        }
    }
}

/// As [`RAW_PG_INSERT`]; the stream key is the writer's own ([`raw_stream_key`]).
const RAW_SQLITE_INSERT: &str = "INSERT INTO events \
     (event_id, stream_key, version, type_id, payload, recorded_at) \
     VALUES (?, ?, ?, (SELECT type_id FROM event_types WHERE event_type = ? AND schema_version = ?), \
             ?, ?)";

/// The raw baseline of a 1-event append: one autocommitted single-row INSERT.
pub async fn raw_pg_insert_one(pool: &PgPool) -> Res<u64> {
    let n = next_id();
    let payload = serde_json::to_vec(&Deposited::sample(n))?;
    let id = Uuid::now_v7();
    raw_pg(pool, || {
        sqlx::query(RAW_PG_INSERT)
            .bind(id)
            .bind(raw_stream_key(n, true))
            .bind(1_i64)
            .bind("deposited")
            .bind(1_i64)
            .bind(payload.clone())
    })
    .await?;
    Ok(1)
}

/// The raw baseline of a batch append: one multi-row INSERT over UNNEST'ed arrays.
pub async fn raw_pg_insert_batch(pool: &PgPool, count: usize) -> Res<u64> {
    let n = next_id();
    let payloads = (0..count)
        .map(|_| serde_json::to_vec(&Deposited::sample(n)))
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    raw_pg(pool, || {
        sqlx::query(RAW_PG_INSERT_BATCH)
            .bind(ids.clone())
            .bind(raw_stream_key(n, true))
            .bind((1..=count as i64).collect::<Vec<_>>())
            .bind(vec!["deposited"; count])
            .bind(vec![1_i64; count])
            .bind(payloads.clone())
    })
    .await?;
    Ok(count as u64)
}

/// The raw SQLite baseline of a 1-event append.
pub async fn raw_sqlite_insert_one(pool: &SqlitePool) -> Res<u64> {
    let n = next_id();
    let payload = serde_json::to_vec(&Deposited::sample(n))?;
    sqlx::query(RAW_SQLITE_INSERT)
        .bind(Uuid::now_v7())
        .bind(raw_stream_key(n, false))
        .bind(1_i64)
        .bind("deposited")
        .bind(1_i64)
        .bind(payload)
        .bind(chrono::Utc::now().timestamp_micros())
        .execute(pool)
        .await?;
    Ok(1)
}

/// The raw SQLite baseline of a batch append: one multi-row INSERT of `count` events of
/// one stream (a key of the writer's own), each row looking its type up as
/// [`RAW_SQLITE_INSERT`] does.
pub async fn raw_sqlite_insert_batch(pool: &SqlitePool, count: usize) -> Res<u64> {
    let n = next_id();
    let payload = serde_json::to_vec(&Deposited::sample(n))?;
    let now = chrono::Utc::now().timestamp_micros();
    let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO events (event_id, stream_key, version, type_id, payload, recorded_at) ",
    );
    insert.push_values(1..=count as i64, |mut row, version| {
        row.push_bind(Uuid::now_v7())
            .push_bind(raw_stream_key(n, false))
            .push_bind(version)
            .push(
                "(SELECT type_id FROM event_types \
                 WHERE event_type = 'deposited' AND schema_version = 1)",
            )
            .push_bind(payload.clone())
            .push_bind(now);
    });
    insert.build().execute(pool).await?;
    Ok(count as u64)
}

/// The columns the raw replays read: the envelope a hand-written replay would need.
const RAW_REPLAY_PG: &str = "SELECT position, event_id, version, event_type, payload, recorded_at \
     FROM events JOIN event_types USING (type_id) \
     WHERE stream_key = (SELECT stream_key FROM streams WHERE stream_id = $1) ORDER BY version";
const RAW_REPLAY_SQLITE: &str = "SELECT position, event_id, version, event_type, payload, recorded_at \
     FROM events JOIN event_types USING (type_id) \
     WHERE stream_key = (SELECT stream_key FROM streams WHERE stream_id = ?) ORDER BY version";

/// The ceiling of a chronicle replay on PostgreSQL: one streamed SELECT of `stream`,
/// `decode(event type, payload)` per row; returns the number of rows.
pub async fn replay_raw_pg<T>(
    pool: &PgPool,
    stream: &str,
    decode: impl FnMut(&str, &[u8]) -> Res<T>,
) -> Res<u64> {
    decode_raw_pg(sqlx::query(RAW_REPLAY_PG).bind(stream).fetch(pool), decode).await
}

/// The ceiling of a chronicle replay on SQLite: one streamed SELECT of `stream`,
/// `decode(event type, payload)` per row; returns the number of rows.
pub async fn replay_raw_sqlite<T>(
    pool: &SqlitePool,
    stream: &str,
    decode: impl FnMut(&str, &[u8]) -> Res<T>,
) -> Res<u64> {
    decode_raw_sqlite(
        sqlx::query(RAW_REPLAY_SQLITE).bind(stream).fetch(pool),
        decode,
    )
    .await
}

/// The whole log read the raw way: one streamed SELECT of the columns a raw replay reads,
/// in position order, `decode(event type, payload)` per row; returns the number of rows.
/// The ceiling of a projection catching up.
pub async fn scan_raw_pg<T>(pool: &PgPool, decode: impl FnMut(&str, &[u8]) -> Res<T>) -> Res<u64> {
    decode_raw_pg(sqlx::query(RAW_SCAN_PG).fetch(pool), decode).await
}

/// [`scan_raw_pg`] on SQLite.
pub async fn scan_raw_sqlite<T>(
    pool: &SqlitePool,
    decode: impl FnMut(&str, &[u8]) -> Res<T>,
) -> Res<u64> {
    decode_raw_sqlite(sqlx::query(RAW_SCAN).fetch(pool), decode).await
}

/// Reads the raw columns of every row, `decode(event type, payload)` each.
async fn decode_raw_pg<T>(
    mut rows: BoxStream<'_, Result<sqlx::postgres::PgRow, sqlx::Error>>,
    mut decode: impl FnMut(&str, &[u8]) -> Res<T>,
) -> Res<u64> {
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        let position: i64 = row.try_get(0)?;
        let id: Uuid = row.try_get(1)?;
        let version: i32 = row.try_get(2)?;
        let event_type: String = row.try_get(3)?;
        let payload: &[u8] = row.try_get(4)?;
        let recorded_at: chrono::DateTime<chrono::Utc> = row.try_get(5)?;
        let data = decode(&event_type, payload)?;
        black_box((position, id, version, event_type, recorded_at, data));
        count += 1;
    }
    Ok(count)
}

/// [`decode_raw_pg`] on SQLite rows.
async fn decode_raw_sqlite<T>(
    mut rows: BoxStream<'_, Result<sqlx::sqlite::SqliteRow, sqlx::Error>>,
    mut decode: impl FnMut(&str, &[u8]) -> Res<T>,
) -> Res<u64> {
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        let position: i64 = row.try_get(0)?;
        let id: Uuid = row.try_get(1)?;
        let version: i64 = row.try_get(2)?;
        let event_type: String = row.try_get(3)?;
        let payload: &[u8] = row.try_get(4)?;
        let recorded_at: i64 = row.try_get(5)?;
        let data = decode(&event_type, payload)?;
        black_box((position, id, version, event_type, recorded_at, data));
        count += 1;
    }
    Ok(count)
}

const RAW_SCAN: &str = "SELECT position, event_id, version, event_type, payload, recorded_at \
     FROM events JOIN event_types USING (type_id) ORDER BY position";
const RAW_SCAN_PG: &str = "SELECT position, event_id, version, event_type, payload, recorded_at \
     FROM events JOIN event_types USING (type_id) ORDER BY transaction_id, position";

// ---------------------------------------------------------------------------------------
// The relay benches (`bus.rs`, `nats.rs`, `redis.rs`, `kafka.rs`): one log, one relay run

/// Writes `total` `account.Deposited` events in appends of 100 to 100 streams
/// (`acct-0` … `acct-99`) in turn.
pub async fn fill_accounts(store: &Store, total: u64) -> Res<()> {
    let mut written = 0;
    while written < total {
        let count = (total - written).min(100);
        let events = (written..written + count)
            .map(|n| {
                chronicle::NewEvent::from_serialize("account.Deposited", &Deposited::sample(n))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stream = format!("acct-{}", written / 100 % 100);
        store
            .append(stream, chronicle::ExpectedVersion::Any, events)
            .await?;
        written += count;
    }
    Ok(())
}

/// A SQLite store in `dir` holding [`fill_accounts`]' `total` events (how long writing
/// them took goes to stderr): the log a relay bench reads.
pub async fn relay_log(dir: &Path, total: u64) -> Res<Store> {
    let store = Store::open(sqlite_url(dir, "relay.db")).await?;
    let started = Instant::now();
    fill_accounts(&store, total).await?;
    eprintln!(
        "  wrote {} events in {:.1} s",
        fmt_rate(total as f64),
        started.elapsed().as_secs_f64()
    );
    Ok(store)
}

/// The log's events as the relay sends them, in log order.
pub async fn log_events(store: &Store) -> Res<Vec<chronicle::bus::BusEvent>> {
    Ok(store
        .read_all(chronicle::LogPosition::START)
        .map_ok(|event| chronicle::bus::BusEvent::from(&event))
        .try_collect()
        .await?)
}

/// `read_all` of the whole log, every event consumed: what any relay reads. Fails
/// unless it read `total` events.
pub async fn read_log(store: Store, total: u64) -> Res<Throughput> {
    let started = Instant::now();
    let mut events = std::pin::pin!(store.read_all(chronicle::LogPosition::START));
    let mut units = 0;
    while let Some(event) = events.try_next().await? {
        black_box(&event);
        units += 1;
    }
    if units != total {
        return Err(format!("read_all returned {units} events, expected {total}").into());
    }
    Ok(Throughput {
        units,
        elapsed: started.elapsed(),
    })
}

/// A relay of a new name from the start of the log into `sink`, in batches of `batch`
/// (`None`: the relay's default for the sink), polling every 10 ms, timed until it is
/// idle. Fails unless it sent `total` events.
pub async fn relay_to_idle<S: chronicle::bus::EventSink>(
    store: &Store,
    total: u64,
    batch: impl Into<Option<usize>>,
    sink: S,
) -> Res<Throughput> {
    let started = Instant::now();
    let relay = store
        .relay(format!("bench-{}", next_id()))
        .start_from(chronicle::bus::StartFrom::Beginning)
        .poll_interval(Duration::from_millis(10));
    let relay = match batch.into() {
        Some(batch) => relay.batch_size(batch),
        None => relay,
    };
    let relay = relay.spawn(sink);
    relay.wait_for_idle().await?;
    let elapsed = started.elapsed();
    let sent = relay.stats().published;
    relay.stop().await?;
    if sent != total {
        return Err(format!("the relay sent {sent} events, expected {total}").into());
    }
    Ok(Throughput {
        units: total,
        elapsed,
    })
}

/// A row for information beside the measured ones: chronicle's rate and the baseline's,
/// no target.
pub fn info_row(workload: &str, unit: &str, rates: &Rates) -> Row {
    Row {
        target: "—".to_owned(),
        met: Met::Info,
        ..ratio_row(workload, unit, rates, 0.0, "")
    }
}
