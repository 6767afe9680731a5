//! A stream's rows inside a write transaction: [`StreamTx`], the primitives a backend
//! gives so that `Store` decides every change of a stream's state in one place (create,
//! re-create, soft and hard delete in `streams.rs`, snapshot saves and pruning in
//! `snapshots.rs`, a stream's first key in `stream_keys.rs`).
//!
//! The primitives only read and write rows; they hold no rule. [`StreamTx::lock_stream`]
//! comes first in every such transaction: it holds the stream (PostgreSQL: the appends'
//! per-stream advisory lock, then the row; SQLite and memory: the write lock) until the
//! transaction ends, so the state it returns is the state the writes apply to.

use async_trait::async_trait;

use crate::error::Result;
use crate::stream::{NewStream, StreamId, StreamStatus};

/// A snapshot to write, its payload encoded.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotWrite<'a> {
    /// The stream version it was taken at.
    pub version: u64,
    /// The schema version of the aggregate's state.
    pub schema_version: u32,
    /// The state, encoded.
    pub payload: &'a [u8],
}

/// A stream's row as [`StreamTx::lock_stream`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedStream {
    /// Its version (its last event's; 0: empty).
    pub version: u64,
    /// Active, soft-deleted or tombstoned.
    pub status: StreamStatus,
}

/// A change of a stream's row, decided by `Store`.
#[derive(Debug, Clone, Copy)]
pub enum StreamWrite<'a> {
    /// A new, active, empty stream.
    Insert(&'a NewStream),
    /// A soft-deleted stream active again, with a new aggregate type, name and metadata;
    /// its versions continue.
    Reactivate(&'a NewStream),
    /// Soft-deleted: its events stay.
    SoftDelete,
    /// Tombstoned: hard-deleted, with no events left (its event count becomes 0).
    Tombstone,
}

/// Which snapshots of a stream [`StreamTx::delete_snapshots`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotCut {
    /// Every snapshot of the stream.
    All,
    /// The one at this version.
    At(u64),
    /// Those at this version and below.
    AtOrBelow(u64),
}

impl SnapshotCut {
    /// Whether the cut takes the snapshot at `version`.
    pub fn takes(self, version: u64) -> bool {
        match self {
            SnapshotCut::All => true,
            SnapshotCut::At(at) => version == at,
            SnapshotCut::AtOrBelow(top) => version <= top,
        }
    }
}

/// The stream-row primitives of a write transaction; see the module. Times written
/// (`created_at`, `updated_at`) are the application's clock.
#[async_trait]
pub trait StreamTx: Send {
    /// Holds `stream` until the transaction ends and returns its row, or `None` when the
    /// stream never existed.
    async fn lock_stream(&mut self, stream: &StreamId) -> Result<Option<LockedStream>>;

    /// Writes the stream's row.
    async fn write_stream(&mut self, stream: &StreamId, write: StreamWrite<'_>) -> Result<()>;

    /// Deletes every event of the stream; returns how many.
    async fn remove_events(&mut self, stream: &StreamId) -> Result<u64>;

    /// Stores a snapshot, replacing one at the same version.
    async fn put_snapshot(&mut self, stream: &StreamId, snapshot: SnapshotWrite<'_>) -> Result<()>;

    /// The versions of the stream's `newest` newest snapshots, newest first.
    async fn snapshot_versions(&mut self, stream: &StreamId, newest: usize) -> Result<Vec<u64>>;

    /// Deletes the stream's snapshots that `cut` takes; returns how many.
    async fn delete_snapshots(&mut self, stream: &StreamId, cut: SnapshotCut) -> Result<u64>;

    /// Stores a stream's wrapped data key unless the stream has a key row (a live or a
    /// forgotten one).
    async fn insert_key(&mut self, stream: &StreamId, key_id: &str, wrapped: &[u8]) -> Result<()>;

    /// Deletes the stream's key row.
    async fn delete_key(&mut self, stream: &StreamId) -> Result<()>;
}

impl StreamStatus {
    /// The state a row holds after `write`.
    pub fn after(write: StreamWrite<'_>) -> StreamStatus {
        match write {
            StreamWrite::Insert(_) | StreamWrite::Reactivate(_) => StreamStatus::Active,
            StreamWrite::SoftDelete => StreamStatus::Deleted,
            StreamWrite::Tombstone => StreamStatus::Tombstoned,
        }
    }
}
