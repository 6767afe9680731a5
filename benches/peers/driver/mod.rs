//! The driver of `cargo bench --bench peers` (compiled into the main crate's bench target
//! `benches/peers.rs`, not into the peers project this directory sits in): it builds the
//! peers binary, then for each workload sets every system up, runs the rounds with the
//! systems taking turns, tears them down, appends every record to the results file and
//! prints the tables.
//!
//! - [`systems`]: the matrix (which system runs which workload) and the system names.
//! - [`chronicle`]: chronicle's systems, in this process.
//! - [`raw`]: the raw sqlx ceilings, in this process.
//! - [`child`]: the peers binary, one process per phase.
//! - [`report`]: the results file and the tables.

pub mod child;
pub mod chronicle;
pub mod raw;
pub mod report;
pub mod systems;

use std::path::PathBuf;
use std::time::Instant;

use self::chronicle::Chronicle;
use self::raw::Raw;
use self::report::Results;
use self::systems::{Backend, Side, System};
use crate::harness::{self, Schemas, env_or, with_schemas};
use crate::shared::record::{Message, Record, Status};
use crate::shared::settings::{Phase, Settings, Workload};
use crate::shared::workload::{Res, serve};

/// What one invocation does, from the environment and the command line.
struct Options {
    settings: Settings,
    rounds: u32,
    workloads: Vec<Workload>,
    /// `CHRONICLE_BENCH_PEERS_SYSTEMS`: only these systems (comma-separated names).
    only: Option<Vec<String>>,
    /// `CHRONICLE_BENCH_PEERS_REPORT`: print the tables of this run (or `last`) from the
    /// results file instead of measuring.
    report: Option<String>,
}

impl Options {
    fn from_env(sqlite_dir: PathBuf) -> Res<Options> {
        let quick = std::env::var("CHRONICLE_BENCH_QUICK").is_ok_and(|v| v == "1");
        let scale = |full: u64| if quick { full / 10 } else { full };
        let secs: f64 = env_or("CHRONICLE_BENCH_SECS", 20.0)?;
        let secs = secs.max(0.1);
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let settings = Settings {
            run: format!("{unix:x}"),
            // Plain TCP for every system: the peers are built without TLS, and chronicle's
            // `tls-rustls` would otherwise encrypt its loopback (sqlx's `sslmode=prefer`).
            pg_url: std::env::var("CHRONICLE_PG_URL").unwrap_or_else(|_| {
                "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".to_owned()
            }),
            sqlite_dir,
            secs,
            warmup_secs: (secs / 10.0).min(0.5),
            load_secs: env_or("CHRONICLE_BENCH_LOAD_SECS", if quick { 1.0 } else { 5.0 })?,
            clients: env_or("CHRONICLE_BENCH_CLIENTS", 8)?,
            stream_len: env_or("CHRONICLE_BENCH_STREAM_LEN", 100)?,
            short_stream_len: env_or("CHRONICLE_BENCH_SHORT_STREAM_LEN", 10)?,
            snapshot_every: 100,
            snapshot_tail: 50,
            log_accounts: scale(1_000),
            catchup_events: env_or("CHRONICLE_BENCH_PROJ_EVENTS", scale(200_000))?,
            storage_events: env_or("CHRONICLE_BENCH_STORAGE_EVENTS", scale(100_000))?,
        };
        let filter = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
        let workloads = [
            Workload::Throughput,
            Workload::ShortThroughput,
            Workload::Contention,
            Workload::Load(scale(1_000)),
            Workload::Load(scale(10_000)),
            Workload::SnapshotLoad(scale(1_000)),
            Workload::SnapshotLoad(scale(10_000)),
            Workload::CatchUp,
            Workload::Storage,
        ]
        .into_iter()
        .filter(|w| filter.as_deref().is_none_or(|f| w.name().contains(f)))
        .collect();
        Ok(Options {
            settings,
            rounds: env_or("CHRONICLE_BENCH_ROUNDS", 3)?.max(1),
            workloads,
            only: std::env::var("CHRONICLE_BENCH_PEERS_SYSTEMS")
                .ok()
                .map(|list| list.split(',').map(|s| s.trim().to_owned()).collect()),
            report: std::env::var("CHRONICLE_BENCH_PEERS_REPORT").ok(),
        })
    }

    fn selected(&self, system: &System) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|name| name == system.name))
    }
}

/// The bench target's `main`.
pub fn main() -> Res<()> {
    let sqlite_dir = tempfile::tempdir()?;
    let options = Options::from_env(sqlite_dir.path().to_owned())?;
    let results_path = report::results_path();
    if let Some(run) = &options.report {
        let (settings, records) = report::read_run(&results_path, run)?;
        report::print_tables(&options.workloads, &settings, &records);
        return Ok(());
    }
    if options.workloads.is_empty() {
        return Err("no workload matches the filter".into());
    }
    let binary = child::build()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let started = Instant::now();
        let settings = &options.settings;
        let mut results = Results::open(&results_path, settings)?;
        print_header(&options, &results_path).await;
        for workload in &options.workloads {
            eprintln!("{}:", workload.name());
            run_workload(&options, &binary, workload, &mut results).await?;
        }
        report::print_tables(&options.workloads, settings, &results.records);
        println!(
            "The whole run took {:.0} s; records in {}.",
            started.elapsed().as_secs_f64(),
            results_path.display()
        );
        Ok(())
    })
}

async fn print_header(options: &Options, results: &std::path::Path) {
    let settings = &options.settings;
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("# chronicle beside its Rust peers");
    println!();
    println!(
        "- date: {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    println!("- cores: {cores}");
    println!(
        "- PostgreSQL: {}",
        harness::postgres_version(&settings.pg_url).await
    );
    println!(
        "- run `{}`: {} interleaved rounds (the order rotates each round), {} s per command \
         window (+{} s warm-up), {} s per load window, {} clients; records appended to {}",
        settings.run,
        options.rounds,
        settings.secs,
        settings.warmup_secs,
        settings.load_secs,
        settings.clients,
        results.display()
    );
    println!();
}

/// Sets up every selected system of `workload`, runs the rounds with the systems taking
/// turns (starting one further each round), and tears them down.
async fn run_workload(
    options: &Options,
    binary: &std::path::Path,
    workload: &Workload,
    results: &mut Results,
) -> Res<()> {
    let settings = &options.settings;
    let systems: Vec<&System> = systems::for_workload(workload)
        .into_iter()
        .filter(|system| options.selected(system))
        .collect();
    let config = harness::Config::from_env()?;
    with_schemas(&config, async |schemas: &mut Schemas| {
        let run = settings.run.as_str();
        let name = workload.name();
        let mut ready = Vec::new();
        for system in systems {
            let started = Instant::now();
            let answer = phase(schemas, binary, settings, system, Phase::Setup, workload, 0);
            let missing = |status, why| Record::missing(run, system.name, &name, status, why);
            match answer.await {
                Ok(Message::Ready { detail }) => {
                    eprintln!(
                        "  {} set up in {:.1} s: {detail}",
                        system.name,
                        started.elapsed().as_secs_f64()
                    );
                    ready.push(system);
                }
                Ok(Message::Unsupported { reason }) => {
                    eprintln!("  {}: n/a ({reason})", system.name);
                    results.add(missing(Status::Unsupported, reason))?;
                }
                Ok(other) => {
                    let why = failure(other);
                    eprintln!("  {} set-up failed: {why}", system.name);
                    results.add(missing(Status::Failed, why))?;
                }
                Err(error) => {
                    eprintln!("  {} set-up failed: {error}", system.name);
                    results.add(missing(Status::Failed, error.to_string()))?;
                }
            }
        }
        let rounds = if workload.repeats() {
            options.rounds
        } else {
            1
        };
        for round in 1..=rounds {
            let mut order = ready.clone();
            let turn = (round as usize - 1) % order.len().max(1);
            order.rotate_left(turn);
            for system in order {
                let answer = phase(
                    schemas,
                    binary,
                    settings,
                    system,
                    Phase::Run,
                    workload,
                    round,
                );
                let record = match answer.await {
                    Ok(Message::Measured { record }) => record,
                    Ok(other) => failed(run, system, &name, round, failure(other)),
                    Err(error) => failed(run, system, &name, round, error.to_string()),
                };
                eprintln!("  round {round} {}: {}", system.name, summary(&record));
                results.add(record)?;
            }
        }
        for system in ready {
            match phase(
                schemas,
                binary,
                settings,
                system,
                Phase::Teardown,
                workload,
                0,
            )
            .await
            {
                Ok(Message::Done) => {}
                Ok(other) => eprintln!("  {} teardown: {}", system.name, failure(other)),
                Err(error) => eprintln!("  {} teardown: {error}", system.name),
            }
        }
        Ok(())
    })
    .await
}

fn failed(run: &str, system: &System, workload: &str, round: u32, why: String) -> Record {
    let mut record = Record::missing(run, system.name, workload, Status::Failed, why);
    record.round = round;
    record
}

fn failure(message: Message) -> String {
    match message {
        Message::Failed { error } => error,
        other => format!("unexpected answer {other:?}"),
    }
}

fn summary(record: &Record) -> String {
    match record.status {
        Status::Measured => format!(
            "{:.2} {}{}{} — {}",
            record.value,
            record.unit,
            record
                .p99_ms
                .map_or(String::new(), |p99| format!(", p99 {p99:.2} ms")),
            if record.correct { "" } else { ", WRONG" },
            record.detail
        ),
        _ => format!("failed: {}", record.detail),
    }
}

/// One phase of one system: in this process for chronicle and the raw ceilings, in a
/// process of the peers binary for the peers.
async fn phase(
    schemas: &mut Schemas,
    binary: &std::path::Path,
    settings: &Settings,
    system: &System,
    phase: Phase,
    workload: &Workload,
    round: u32,
) -> Res<Message> {
    if system.side == Side::Peer {
        return child::phase(binary, settings, system.name, workload, phase, round).await;
    }
    let name = system.name;
    let fresh = phase == Phase::Setup;
    let raw = name.starts_with("raw");
    match phase {
        // PostgreSQL schemas go when the workload's `with_schemas` ends.
        Phase::Teardown => {
            if system.backend == Backend::Sqlite {
                crate::shared::settings::remove_sqlite(&settings.sqlite_path(name, workload))?;
            }
            return Ok(Message::Done);
        }
        // The raw command ceiling takes a fresh table each round.
        Phase::Setup if raw && workload.is_throughput() => {
            return Ok(Message::Ready {
                detail: "a fresh table each round".to_owned(),
            });
        }
        _ => {}
    }
    match (raw, system.backend) {
        (true, Backend::Postgres) => {
            let bank = Raw::postgres(schemas, settings, name, workload, fresh, round).await?;
            serve(bank, settings, workload, name, phase, round).await
        }
        (true, Backend::Sqlite) => {
            let bank = Raw::sqlite(settings, name, workload, fresh, round).await?;
            serve(bank, settings, workload, name, phase, round).await
        }
        (false, Backend::Postgres) => {
            let bank = Chronicle::postgres(schemas, settings, name, workload, fresh).await?;
            serve(bank, settings, workload, name, phase, round).await
        }
        (false, Backend::Sqlite) => {
            let bank = Chronicle::sqlite(settings, name, workload, fresh).await?;
            serve(bank, settings, workload, name, phase, round).await
        }
    }
}
