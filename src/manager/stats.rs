//! What [`Manager::stats`](super::Manager::stats) reports: per provider, what the store
//! holds, where each projection is, the outbox's requests, the relays and the retention
//! enforcer; per bus, its counts and health. Every report serializes to JSON (durations
//! as `…_ms` fields).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bus::{BusHealth, BusStats, RelayStats};
use crate::outbox::OutboxStats;
use crate::projection::{ProjectionCheckpoint, ProjectionStatus};
use crate::retention::RetentionReport;
use crate::store::StorageStats;

/// Everything the manager watches.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ManagerStats {
    /// Per provider, by name.
    pub providers: BTreeMap<String, ProviderStats>,
    /// Per bus, by the name it was added under.
    pub buses: BTreeMap<String, BusReport>,
}

/// One provider's figures. What could not be read is left empty and said in `errors`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProviderStats {
    /// `sqlite`, `postgres` or `memory`.
    pub backend: &'static str,
    /// Streams, events, snapshots and bytes ([`StorageStats`] says which are estimates).
    pub storage: Option<StorageStats>,
    /// Every checkpoint stored in the database (projections, relays as `relay:{name}`,
    /// outbox processors), with its distance to the end of the log: what runs elsewhere
    /// too.
    pub checkpoints: Vec<ProjectionCheckpoint>,
    /// The projections this manager runs, by name: state, checkpoint, lag, rate.
    pub projections: BTreeMap<String, ProjectionStatus>,
    /// The outbox's requests by handler and state (every outbox of the store shares them;
    /// `None` when the backend keeps no outbox, or when they could not be read, the error
    /// in `errors`).
    pub outbox: Option<OutboxStats>,
    /// The relays this manager runs, by name.
    pub relays: BTreeMap<String, RelayReport>,
    /// What the retention enforcer removed so far, if the manager runs one.
    pub retention: Option<RetentionReport>,
    /// What could not be read, and why.
    pub errors: Vec<String>,
}

/// A relay's progress, counts and health.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RelayReport {
    /// State, checkpoint, lag, rate (as a projection's).
    pub status: ProjectionStatus,
    /// Published, dropped, failed, and its sink's counts.
    pub stats: RelayStats,
    /// Its sink's health, with the relay's lag.
    pub health: BusHealth,
}

/// A bus's counts and health.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BusReport {
    /// Published, delivered, failed, panicked, dead.
    pub stats: BusStats,
    /// Connected, reconnects, lag, last error.
    pub health: BusHealth,
}
