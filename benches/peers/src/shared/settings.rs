//! The settings of one run and the names of its workloads. The driver (`benches/peers.rs`)
//! reads them from the environment and hands them to every peer process as one JSON
//! argument, so both sides measure with the same numbers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The settings every system of a run gets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Names this run's schemas and files, so runs never share them.
    pub run: String,
    pub pg_url: String,
    /// Where the SQLite systems keep their files.
    pub sqlite_dir: PathBuf,
    /// The timed window of the command workloads, per system and round.
    pub secs: f64,
    /// Untimed commands or loads before each timed window.
    pub warmup_secs: f64,
    /// The timed window of each load workload, per system and round.
    pub load_secs: f64,
    /// Concurrent clients of the command workloads.
    pub clients: usize,
    /// Commands an account takes in the command workloads before a fresh one is opened.
    pub stream_len: u64,
    /// The same for the short-stream throughput workload (`throughput-short`), where
    /// reloading a stream costs little and the append itself decides.
    #[serde(default = "default_short_stream_len")]
    pub short_stream_len: u64,
    /// The snapshot interval of the systems with snapshots.
    pub snapshot_every: u64,
    /// Events after the snapshot in the snapshot-load workloads.
    pub snapshot_tail: u64,
    /// Accounts the log of the catch-up and storage workloads is spread over.
    pub log_accounts: u64,
    pub catchup_events: u64,
    pub storage_events: u64,
}

impl Settings {
    /// Commands an account of `workload` takes before a fresh one is opened.
    pub fn stream_len_of(&self, workload: &Workload) -> u64 {
        match workload {
            Workload::ShortThroughput => self.short_stream_len,
            _ => self.stream_len,
        }
    }

    pub fn window(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup_secs)
    }

    pub fn load_window(&self) -> Duration {
        Duration::from_secs_f64(self.load_secs)
    }

    /// The PostgreSQL schema of `system` for `workload` in this run (at most 63 bytes).
    pub fn schema(&self, system: &str, workload: &Workload) -> String {
        let name = format!("peers_{}_{system}_{}", self.run, workload.name());
        let mut name = name.replace(['-', '.'], "_");
        name.truncate(63);
        name
    }

    /// The SQLite file of `system` for `workload` in this run.
    pub fn sqlite_path(&self, system: &str, workload: &Workload) -> PathBuf {
        self.sqlite_dir
            .join(format!("{system}-{}.db", workload.name()))
    }
}

/// Commands per account of `throughput-short` in results files written before it existed.
fn default_short_stream_len() -> u64 {
    10
}

/// Removes a SQLite file and its WAL and shared-memory files.
pub fn remove_sqlite(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

/// A phase of a workload on one system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Create the system's schema or file and write the workload's data (untimed).
    Setup,
    /// Measure one round.
    Run,
    /// Drop the schema or file.
    Teardown,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Run => "run",
            Phase::Teardown => "teardown",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Phase::Setup, Phase::Run, Phase::Teardown]
            .into_iter()
            .find(|phase| phase.name() == name)
    }
}

/// One workload of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Commands by `clients` clients, each on accounts of its own.
    Throughput,
    /// The same on short accounts (`short_stream_len` commands each).
    ShortThroughput,
    /// Commands by `clients` clients, all on one account at a time.
    Contention,
    /// Loads of an account of this many events, without snapshots.
    Load(u64),
    /// Loads of an account of this many events plus the tail, from a snapshot at this many.
    SnapshotLoad(u64),
    /// A projection catching up on a log of `catchup_events` events.
    CatchUp,
    /// Bytes on disk for `storage_events` events.
    Storage,
}

impl Workload {
    pub fn name(&self) -> String {
        match self {
            Workload::Throughput => "throughput".to_owned(),
            Workload::ShortThroughput => "throughput-short".to_owned(),
            Workload::Contention => "contention".to_owned(),
            Workload::Load(events) => format!("load-{events}"),
            Workload::SnapshotLoad(events) => format!("snapload-{events}"),
            Workload::CatchUp => "catchup".to_owned(),
            Workload::Storage => "storage".to_owned(),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "throughput" => Some(Workload::Throughput),
            "throughput-short" => Some(Workload::ShortThroughput),
            "contention" => Some(Workload::Contention),
            "catchup" => Some(Workload::CatchUp),
            "storage" => Some(Workload::Storage),
            _ => {
                if let Some(events) = name.strip_prefix("load-") {
                    events.parse().ok().map(Workload::Load)
                } else if let Some(events) = name.strip_prefix("snapload-") {
                    events.parse().ok().map(Workload::SnapshotLoad)
                } else {
                    None
                }
            }
        }
    }

    /// Whether clients send commands, each to accounts of its own (the raw ceilings' one
    /// command workload).
    pub fn is_throughput(&self) -> bool {
        matches!(self, Workload::Throughput | Workload::ShortThroughput)
    }

    /// Whether the measurement varies between rounds: the bytes on disk do not.
    pub fn repeats(&self) -> bool {
        !matches!(self, Workload::Storage)
    }
}
