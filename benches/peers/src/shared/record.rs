//! The JSON lines of a run. A peer process answers each phase with one [`Message`] on its
//! stdout; every measurement, from a peer or from chronicle's side in the driver, becomes a
//! [`Record`] appended to the results file, from which the driver prints the table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A peer process's answer to one phase (one JSON line on stdout).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub enum Message {
    /// `setup` is done: the workload's data is in place.
    Ready { detail: String },
    /// The system cannot run this workload; nothing was set up.
    Unsupported { reason: String },
    /// A `run` phase measured this.
    Measured { record: Record },
    /// The phase failed.
    Failed { error: String },
    /// `teardown` is done.
    Done,
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// Whether a record holds a measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Measured,
    /// The system cannot run the workload (`detail` says why).
    Unsupported,
    /// The phase failed (`detail` has the error).
    Failed,
}

/// One measurement of one system in one round (or why there is none).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub run: String,
    pub system: String,
    pub workload: String,
    pub round: u32,
    #[serde(default)]
    pub status: Status,
    /// The headline figure: a rate, a median latency in ms, or bytes per event.
    pub value: f64,
    pub unit: String,
    pub better: Better,
    /// The 99th percentile, for latencies.
    pub p99_ms: Option<f64>,
    /// Whether every checked state, count or sum came out as expected.
    pub correct: bool,
    /// What was checked and counted (conflicts, refusals, breakdowns), or what was wrong.
    pub detail: String,
    /// Counts behind the figure (commands, conflicts, refusals, loads, …).
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    /// Seconds since the Unix epoch when the measurement ended.
    pub unix_time: u64,
}

impl Record {
    /// A record stamped now.
    pub fn new(run: &str, system: &str, workload: &str, round: u32, measured: Measured) -> Record {
        Record {
            run: run.to_owned(),
            system: system.to_owned(),
            workload: workload.to_owned(),
            round,
            status: Status::Measured,
            value: measured.value,
            unit: measured.unit.to_owned(),
            better: measured.better,
            p99_ms: measured.p99_ms,
            correct: measured.correct,
            detail: measured.detail,
            counts: measured.counts,
            unix_time: unix_time(),
        }
    }

    /// A record saying why `system` has no figure for `workload`.
    pub fn missing(run: &str, system: &str, workload: &str, status: Status, why: String) -> Record {
        Record {
            run: run.to_owned(),
            system: system.to_owned(),
            workload: workload.to_owned(),
            round: 0,
            status,
            value: 0.0,
            unit: String::new(),
            better: Better::Higher,
            p99_ms: None,
            correct: false,
            detail: why,
            counts: BTreeMap::new(),
            unix_time: unix_time(),
        }
    }
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// What a workload measured, before it is stamped with the run, system and round.
#[derive(Debug, Clone)]
pub struct Measured {
    pub value: f64,
    pub unit: &'static str,
    pub better: Better,
    pub p99_ms: Option<f64>,
    pub correct: bool,
    pub detail: String,
    pub counts: BTreeMap<String, u64>,
}
