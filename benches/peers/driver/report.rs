//! The results file (one [`Record`] per JSON line, appended) and the markdown tables made
//! from the records of one run: per workload, every system's median over the rounds, the
//! rounds themselves, chronicle's advantage over it and whether its final states were
//! correct.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::systems::{self, System};
use crate::harness::{fmt_rate, median};
use crate::shared::record::{Better, Record, Status};
use crate::shared::settings::{Settings, Workload};
use crate::shared::workload::Res;

/// Where the records go: `target/peers.jsonl` (or under `CARGO_TARGET_DIR`), or
/// `CHRONICLE_BENCH_PEERS_RESULTS`.
pub fn results_path() -> PathBuf {
    if let Ok(path) = std::env::var("CHRONICLE_BENCH_PEERS_RESULTS") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("peers.jsonl")
}

/// A line of the results file: a run's settings as it starts, then its records.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Start { run_start: Settings },
    Record(Record),
}

/// Appends records to the results file as they come.
pub struct Results {
    file: std::fs::File,
    pub records: Vec<Record>,
}

impl Results {
    /// Opens the results file for appending and writes the run's settings to it.
    pub fn open(path: &Path, settings: &Settings) -> Res<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let start = Line::Start {
            run_start: settings.clone(),
        };
        writeln!(file, "{}", serde_json::to_string(&start)?)?;
        Ok(Results {
            file,
            records: Vec::new(),
        })
    }

    pub fn add(&mut self, record: Record) -> Res<()> {
        writeln!(self.file, "{}", serde_json::to_string(&record)?)?;
        self.file.flush()?;
        self.records.push(record);
        Ok(())
    }
}

/// The settings and records of run `run` in the results file (`last`: the newest run).
pub fn read_run(path: &Path, run: &str) -> Res<(Settings, Vec<Record>)> {
    let file = std::fs::File::open(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut starts = Vec::new();
    let mut records = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Start { run_start }) => starts.push(run_start),
            Ok(Line::Record(record)) => records.push(record),
            Err(_) if line.trim().is_empty() => {}
            Err(error) => return Err(format!("{}: {error}: {line}", path.display()).into()),
        }
    }
    let settings = match run {
        "last" => starts.pop(),
        run => starts.into_iter().find(|settings| settings.run == run),
    }
    .ok_or_else(|| format!("no run `{run}` in {}", path.display()))?;
    records.retain(|record| record.run == settings.run);
    Ok((settings, records))
}

/// What a workload's table is about.
fn title(workload: &Workload, settings: &Settings) -> String {
    match workload {
        Workload::Throughput => format!(
            "Command throughput: {} clients, each on accounts of its own (a fresh account every \
             {} commands), {} s per system and round; commands/s, higher is better",
            settings.clients, settings.stream_len, settings.secs
        ),
        Workload::ShortThroughput => format!(
            "Command throughput on short streams: {} clients, each on accounts of its own (a \
             fresh account every {} commands, so reloading costs the peers little and the \
             append itself decides), {} s per system and round; commands/s, higher is better",
            settings.clients, settings.short_stream_len, settings.secs
        ),
        Workload::Contention => format!(
            "Contention: {} clients on one account at a time (a fresh one every {} commands), \
             {} s per system and round; successful commands/s, higher is better",
            settings.clients, settings.stream_len, settings.secs
        ),
        Workload::Load(events) => format!(
            "Load latency of an account of {} events, no snapshots; median of the rounds' p50 \
             and p99, lower is better",
            fmt_rate(*events as f64)
        ),
        Workload::SnapshotLoad(events) => format!(
            "Load latency of an account of {} events from a snapshot at {} (one every {}); \
             median of the rounds' p50 and p99, lower is better",
            fmt_rate((events + settings.snapshot_tail) as f64),
            fmt_rate(*events as f64),
            settings.snapshot_every
        ),
        Workload::CatchUp => format!(
            "Projection catch-up over {} events ({} accounts), from the start of the log; \
             events/s, higher is better",
            fmt_rate(settings.catchup_events as f64),
            fmt_rate(settings.log_accounts as f64)
        ),
        Workload::Storage => format!(
            "Storage of {} events ({} accounts): bytes on disk per event, lower is better",
            fmt_rate(settings.storage_events as f64),
            fmt_rate(settings.log_accounts as f64)
        ),
    }
}

fn fmt_value(value: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{value:.2} ms"),
        "B/event" => format!("{value:.0} B"),
        _ => fmt_rate(value),
    }
}

/// How many times better `reference` is than `value` (>1: the reference is ahead).
fn advantage(reference: f64, value: f64, better: Better) -> f64 {
    match better {
        Better::Higher => reference / value,
        Better::Lower => value / reference,
    }
}

/// One system's measured rounds.
struct Measured<'a> {
    rounds: Vec<&'a Record>,
}

impl Measured<'_> {
    fn median(&self) -> f64 {
        median(&self.rounds.iter().map(|r| r.value).collect::<Vec<_>>())
    }

    fn p99(&self) -> Option<f64> {
        let p99: Vec<f64> = self.rounds.iter().filter_map(|r| r.p99_ms).collect();
        (!p99.is_empty()).then(|| median(&p99))
    }

    fn unit(&self) -> &str {
        self.rounds.first().map_or("", |r| r.unit.as_str())
    }

    fn better(&self) -> Better {
        self.rounds.first().map_or(Better::Higher, |r| r.better)
    }

    fn correct(&self) -> String {
        let wrong: Vec<&&Record> = self.rounds.iter().filter(|r| !r.correct).collect();
        let Some(first) = wrong.first() else {
            return "yes".to_owned();
        };
        let what = match (first.counts.get("wrong"), first.counts.get("accounts")) {
            (Some(bad), Some(accounts)) => {
                format!(
                    "round {}: {bad} of {accounts} accounts load wrong",
                    first.round
                )
            }
            // Records written before the count existed: the check's own words.
            _ => {
                let check = first
                    .detail
                    .split("; ")
                    .find(|part| part.contains("WRONG"))
                    .and_then(|part| part.split(':').next())
                    .unwrap_or(&first.detail);
                format!("round {}: {}", first.round, check.replace('|', "/"))
            }
        };
        format!(
            "**NO** in {} of {} rounds ({what})",
            wrong.len(),
            self.rounds.len()
        )
    }

    /// Medians of the counts worth a column (conflicts and refusals per command).
    fn notes(&self) -> String {
        let per_command = |key: &str| {
            let values: Vec<f64> = self
                .rounds
                .iter()
                .filter_map(|r| {
                    let commands = *r.counts.get("commands")? as f64;
                    Some(*r.counts.get(key)? as f64 / commands.max(1.0))
                })
                .collect();
            (!values.is_empty()).then(|| median(&values))
        };
        let mut notes = Vec::new();
        if let Some(conflicts) = per_command("conflicts").filter(|c| *c > 0.0) {
            notes.push(format!(
                "{conflicts:.2} conflicts retried per written command"
            ));
        }
        if let Some(refused) = per_command("refused").filter(|r| *r > 0.0) {
            notes.push(format!("{refused:.3} refused per written command"));
        }
        notes.join(", ")
    }
}

/// The table of one workload.
fn print_workload(workload: &Workload, settings: &Settings, records: &[Record]) {
    let name = workload.name();
    let mine: Vec<&Record> = records.iter().filter(|r| r.workload == name).collect();
    if mine.is_empty() {
        return;
    }
    let mut measured: BTreeMap<&str, Measured> = BTreeMap::new();
    let mut missing: BTreeMap<&str, &Record> = BTreeMap::new();
    for record in &mine {
        match record.status {
            Status::Measured => measured
                .entry(record.system.as_str())
                .or_insert_with(|| Measured { rounds: Vec::new() })
                .rounds
                .push(record),
            _ => {
                missing.insert(record.system.as_str(), record);
            }
        }
    }
    let systems = systems::for_workload(workload);
    // The reference of each backend: its first chronicle system.
    let reference = |system: &System| {
        systems
            .iter()
            .find(|s| s.chronicle && s.backend == system.backend)
            .and_then(|s| measured.get(s.name).map(|m| (s.name, m.median())))
    };
    let latency = matches!(workload, Workload::Load(_) | Workload::SnapshotLoad(_));
    println!("### {name}: {}", title(workload, settings));
    println!();
    if latency {
        println!(
            "| system | p50 | p99 | p50 per round | chronicle's advantage (p50) | correct | notes |"
        );
        println!("| --- | ---: | ---: | --- | ---: | --- | --- |");
    } else {
        println!("| system | median | per round | chronicle's advantage | correct | notes |");
        println!("| --- | ---: | --- | ---: | --- | --- |");
    }
    for system in systems.iter().copied() {
        let label = format!("`{}`: {}", system.name, system.label);
        if let Some(m) = measured.get(system.name) {
            let value = m.median();
            let rounds = m
                .rounds
                .iter()
                .map(|r| fmt_value(r.value, &r.unit))
                .collect::<Vec<_>>()
                .join(" / ");
            let ratio = match reference(system) {
                Some((name, _)) if name == system.name => "(reference)".to_owned(),
                Some((_, reference)) => format!("{:.2}×", advantage(reference, value, m.better())),
                None => "—".to_owned(),
            };
            let value_cells = if latency {
                let p99 = m.p99().map_or("—".to_owned(), |p| fmt_value(p, "ms"));
                format!("{} | {p99}", fmt_value(value, m.unit()))
            } else {
                match unit_suffix(m.unit()) {
                    "" => fmt_value(value, m.unit()),
                    unit => format!("{} {unit}", fmt_value(value, m.unit())),
                }
            };
            println!(
                "| {label} | {value_cells} | {rounds} | {ratio} | {} | {} |",
                m.correct(),
                m.notes()
            );
        } else if let Some(record) = missing.get(system.name) {
            let why = match record.status {
                Status::Unsupported => format!("n/a: {}", record.detail),
                _ => format!("failed: {}", record.detail),
            }
            .replace('|', "/");
            let blanks = if latency { "— | —" } else { "—" };
            println!("| {label} | {blanks} | — | — | — | {why} |");
        }
    }
    println!();
}

fn unit_suffix(unit: &str) -> &str {
    match unit {
        "ms" | "B/event" => "",
        unit => unit,
    }
}

/// Every workload's table, for the records of one run.
pub fn print_tables(workloads: &[Workload], settings: &Settings, records: &[Record]) {
    println!(
        "chronicle's advantage: how many times better chronicle (the first chronicle system \
         of the same backend) did than the system on the row: its rate ÷ the row's, or the \
         row's latency or bytes ÷ its own. Below 1: chronicle is behind."
    );
    println!();
    for workload in workloads {
        print_workload(workload, settings, records);
    }
}
