//! The `Backend` trait: the little that differs between memory, SQLite and PostgreSQL.
//!
//! A backend stores and fetches rows. It never parses JSON or sees keys: payloads arrive
//! encoded and leave encoded, and events leave as [`StoredEvent`]s (payload and extra
//! metadata as stored), which `Store` turns into [`RecordedEvent`](crate::RecordedEvent)s.
//! Validation, the codec, retries,
//! timeouts, idempotent replays and paging live once, in [`Store`](crate::Store), above
//! this trait.

use std::ops::RangeInclusive;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::batch::{DynTx, Flush};
use super::key_cache::StoredKey;
use super::storage::StorageStats;
use crate::error::Result;
use crate::event::NewEvent;
use crate::read::{EventParts, EventQuery, LogPosition};
use crate::retention::RetentionScope;
use crate::retention::rules::{PolicyRows, StoredPolicy, StreamRetention};
use crate::snapshot::SnapshotInfo;
use crate::stream::{AppendGuard, Direction, StreamId, StreamListQuery, StreamStatus};

/// An event ready to be written: the validated event, with its payload encoded.
#[derive(Debug, Clone)]
pub struct EncodedEvent<'a> {
    /// The event as the caller built it (id, type, schema version, metadata).
    pub source: &'a NewEvent,
    /// The payload as stored: the codec's output.
    pub payload: Vec<u8>,
    /// `source.metadata`'s fields without a column of their own, as JSON.
    pub extra_metadata: Option<String>,
}

/// Where and when one appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The event's version in its stream.
    pub version: u64,
    /// The event's position in the global log.
    pub position: u64,
    /// The writing transaction (0 on SQLite and in memory): with `position`, the event's
    /// [`LogPosition`].
    pub commit: u64,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// An event as a backend stores and returns it: its columns as they are, the payload as
/// the codec wrote it and the metadata without a column of its own as the JSON text
/// written ([`EncodedEvent::extra_metadata`]). Only `Store` decodes it (payload and
/// metadata), into a [`RecordedEvent`](crate::RecordedEvent), so that a public event
/// always holds JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The event's id.
    pub id: Uuid,
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its version in the stream (1 for the first event).
    pub version: u64,
    /// Its position in the global log.
    pub position: u64,
    /// The writing transaction (0 on SQLite and in memory).
    pub commit: u64,
    /// Its type, as the application names it.
    pub event_type: String,
    /// The schema version of its payload.
    pub schema_version: u32,
    /// As stored: the codec's output.
    pub payload: Vec<u8>,
    /// The correlation id its metadata carries.
    pub correlation_id: Option<String>,
    /// The causation id its metadata carries.
    pub causation_id: Option<String>,
    /// The tenant id its metadata carries.
    pub tenant_id: Option<String>,
    /// The user id its metadata carries.
    pub user_id: Option<String>,
    /// The extra metadata's JSON text as stored; parsed by `Store`, never by a backend.
    pub extra_metadata: Option<String>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// Where this event sits in the global log.
    pub fn log_position(&self) -> LogPosition {
        LogPosition::new(self.commit, self.position)
    }

    /// A copy of this event with only `parts`: the payload left out is empty, the
    /// metadata left out `None` (what the SQL backends' lean column lists select).
    pub fn lean(&self, parts: EventParts) -> StoredEvent {
        let metadata = |value: &Option<String>| value.clone().filter(|_| parts.metadata());
        StoredEvent {
            id: self.id,
            stream_id: self.stream_id.clone(),
            version: self.version,
            position: self.position,
            commit: self.commit,
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            payload: if parts.payload() {
                self.payload.clone()
            } else {
                Vec::new()
            },
            correlation_id: metadata(&self.correlation_id),
            causation_id: metadata(&self.causation_id),
            tenant_id: metadata(&self.tenant_id),
            user_id: metadata(&self.user_id),
            extra_metadata: metadata(&self.extra_metadata),
            recorded_at: self.recorded_at,
        }
    }
}

/// A stream's row as a backend stores it: what [`StreamInfo`](crate::StreamInfo) holds, but the metadata is
/// still the JSON text stored (`None`: none), which `Store` parses (a backend never
/// parses JSON), and without the retention policy `Store` looks up.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStream {
    /// The stream's id.
    pub stream_id: StreamId,
    /// Its category (the id up to the first `-`).
    pub category: String,
    /// The aggregate type it was created for.
    pub aggregate_type: Option<String>,
    /// A name for people.
    pub display_name: Option<String>,
    /// Its version (its last event's).
    pub version: u64,
    /// How many events it holds.
    pub event_count: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Its last event's id.
    pub last_event_id: Option<Uuid>,
    /// Active, soft-deleted or tombstoned.
    pub status: StreamStatus,
    /// The metadata's JSON text as stored; `None`: none.
    pub metadata: Option<String>,
}

/// What a backend can do beyond the seam's required methods, as types: `Store` reads
/// it once when it opens and decides from it (never from the backend's kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `sqlite`, `postgres` or `memory`: what operators' reports call it.
    pub kind: &'static str,
    /// Whom [`Backend::announce_appends`] reaches.
    pub append_notices: AppendNotices,
    /// How a statement's answer reaches the client.
    pub answers: Answers,
    /// Whether its transactions keep the outbox's requests ([`Tx::outbox`] is `Some`).
    ///
    /// [`Tx::outbox`]: super::batch::Tx::outbox
    pub outbox: Support,
}

/// Whom a backend tells of its appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendNotices {
    /// Nobody beyond this process (other processes find appends by polling).
    ThisProcess,
    /// Other processes too (PostgreSQL's NOTIFY), so `Store` announces its appends.
    OtherProcesses,
}

/// How a statement's answer crosses to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// Row by row, as the reader asks (SQLite steps; memory).
    RowByRow,
    /// Whole, even when the reader stops early (PostgreSQL sends every selected row):
    /// then a read with a byte budget asks for about as many rows as the budget holds
    /// (`paging::RowsHint`), so that few are read past the cut only to be dropped.
    Whole,
}

/// Whether a backend supports a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// The backend supports it.
    Supported,
    /// The backend does not: `Store` refuses the feature with a typed error.
    Unsupported,
}

/// What an append did; the rejections are sorted out by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Every event was written, in order.
    Written(Vec<Written>),
    /// The expected version did not match.
    Conflict {
        /// The stream's version; `None`: no such stream.
        actual: Option<u64>,
    },
    /// The stream is deleted.
    Deleted {
        /// Tombstoned (hard-deleted), not soft-deleted.
        hard: bool,
    },
    /// One of the event ids is already stored somewhere.
    DuplicateEventId,
    /// The guarded write matched no row, and the backend did not read why (PostgreSQL's
    /// one-statement append checks the guard in the statement and learns only that it
    /// failed). `Store` settles it under the stream's lock (`append::settle`).
    NotMatched,
}

impl AppendOutcome {
    /// The one rule of who may append: the rejection a stream in state `current`
    /// ((version, status); `None`: no such stream) gives an append under `guard`, or
    /// `None` when that state lets it write. Every backend decides with it, from a state
    /// read under the lock the write would take, so a rejection always describes a state
    /// that rejects its request.
    pub fn rejection(
        guard: AppendGuard,
        current: Option<(u64, StreamStatus)>,
    ) -> Option<AppendOutcome> {
        match current {
            Some((_, StreamStatus::Deleted)) => Some(AppendOutcome::Deleted { hard: false }),
            Some((_, StreamStatus::Tombstoned)) => Some(AppendOutcome::Deleted { hard: true }),
            Some((version, StreamStatus::Active)) => {
                (!guard.admits(Some(version))).then_some(AppendOutcome::Conflict {
                    actual: Some(version),
                })
            }
            None => (!guard.admits(None)).then_some(AppendOutcome::Conflict { actual: None }),
        }
    }
}

/// One window of the global log, from [`Backend::read_all`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogPage {
    /// The window's events of the types asked for.
    pub events: Vec<StoredEvent>,
    /// The window's last event, of any type: the next window starts after it.
    pub scanned_to: Option<LogPosition>,
    /// Whether the window was full, of events or of bytes (more events may follow right
    /// away).
    pub full: bool,
    /// Whether the byte budget ended it.
    pub cut: bool,
}

/// A row of a filtered window of the log: an event, whether its type was asked for, and
/// how many events the whole window holds.
#[derive(Debug)]
pub struct WindowRow {
    /// The event.
    pub event: StoredEvent,
    /// Whether its type was asked for.
    pub wanted: bool,
    /// How many events the window holds up to this one.
    pub scanned: usize,
}

impl WindowRow {
    /// What it counts against a window's byte budget: its stored payload, when wanted.
    pub fn budget_bytes(&self) -> Option<usize> {
        self.wanted.then_some(self.event.payload.len())
    }
}

/// How far one window of the log, or one page of a read, reaches: `events` events at
/// most, and, when `bytes` is set, no event after the one whose stored payload brings the
/// window's wanted events to `bytes` (so a window holds at least one event, and at most
/// one past the budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimit {
    /// Events at most.
    pub events: usize,
    /// The stored payloads' bytes after which the window ends, if any.
    pub bytes: Option<usize>,
}

impl WindowLimit {
    /// Whether `bytes` of stored payloads fill the window.
    pub fn bytes_reached(&self, bytes: usize) -> bool {
        self.bytes.is_some_and(|budget| bytes >= budget)
    }
}

impl LogPage {
    /// The page of an unfiltered window: every event of it.
    pub fn all(events: Vec<StoredEvent>, limit: WindowLimit) -> Self {
        let scanned_to = events.last().map(StoredEvent::log_position);
        let scanned = events.len();
        LogPage::new(events, scanned_to, scanned, limit)
    }

    /// The page of a filtered window from its rows, in log order: the wanted events, and
    /// the window's last event whatever its type (or the one the byte budget cut it at).
    pub fn filtered(rows: Vec<WindowRow>, limit: WindowLimit) -> Self {
        let scanned_to = rows.last().map(|row| row.event.log_position());
        let scanned = rows.last().map_or(0, |row| row.scanned);
        let events = rows
            .into_iter()
            .filter(|row| row.wanted)
            .map(|row| row.event)
            .collect();
        LogPage::new(events, scanned_to, scanned, limit)
    }

    /// The page of a window of `scanned` events ending at `scanned_to`, of which `events`
    /// are wanted: full when it holds `limit.events` events or its wanted events' payloads
    /// fill `limit.bytes` (when the window ended there by chance, the next one is empty).
    pub fn new(
        events: Vec<StoredEvent>,
        scanned_to: Option<LogPosition>,
        scanned: usize,
        limit: WindowLimit,
    ) -> Self {
        let cut = limit.bytes_reached(events.iter().map(|event| event.payload.len()).sum());
        LogPage {
            full: scanned >= limit.events || cut,
            cut,
            events,
            scanned_to,
        }
    }
}

/// The answer of [`Backend::held_back`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBack {
    /// Committed events are waiting behind a running transaction.
    pub pending: bool,
    /// Transactions from this one on started after the read began; they are not waited for.
    pub bound: u64,
}

/// A stored event as an aggregate's replay needs it: no metadata, position or time, so
/// the rows are narrow and cheap to fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayedEvent {
    /// The event's id.
    pub id: Uuid,
    /// Its version in the stream.
    pub version: u64,
    /// Its type.
    pub event_type: String,
    /// The schema version of its payload.
    pub schema_version: u32,
    /// As stored: the codec's output.
    pub payload: Vec<u8>,
}

impl From<StoredEvent> for ReplayedEvent {
    fn from(event: StoredEvent) -> Self {
        ReplayedEvent {
            id: event.id,
            version: event.version,
            event_type: event.event_type,
            schema_version: event.schema_version,
            payload: event.payload,
        }
    }
}

/// What a load needs first, in one answer: the stream's head, its newest snapshot, and the
/// first page of events after that snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStart {
    /// The stream's version.
    pub version: u64,
    /// Active, soft-deleted or tombstoned.
    pub status: StreamStatus,
    /// The newest snapshot at or below the version asked for, of any schema version.
    pub snapshot: Option<StoredSnapshot>,
    /// Events after the snapshot when its schema version is the one asked for (else from
    /// version 1), up to the version asked for, at most one page (cut at its byte budget).
    pub events: Vec<ReplayedEvent>,
}

/// A projection's lease: while it lives, no other instance runs the projection.
/// Dropping it frees it (on PostgreSQL, `PgLease` owns the connection holding the
/// session advisory lock; the process dying closes it too).
#[async_trait]
pub trait Lease: Send + std::fmt::Debug {
    /// Checks the lease still holds (on PostgreSQL, that the session holding the lock
    /// still answers: a server restart, a connection killed or a network cut end it, and
    /// another instance may have the lock by now).
    ///
    /// # Errors
    /// A connection error, or a timeout after `within`: the lease is lost.
    async fn check(&mut self, within: std::time::Duration) -> Result<()>;
}

/// The lease of a backend without cross-process leases: held in this process, it always
/// holds (the checkpoint's move check still keeps two instances from applying a batch
/// twice).
#[derive(Debug, Default)]
pub struct InProcessLease;

#[async_trait]
impl Lease for InProcessLease {
    async fn check(&mut self, _within: std::time::Duration) -> Result<()> {
        Ok(())
    }
}

/// Notifications that events were appended to this store, by any process (on
/// PostgreSQL, `PgFeed`: LISTEN/NOTIFY; the other backends have none).
#[async_trait]
pub trait AppendFeed: Send + std::fmt::Debug {
    /// Waits for the next append to this store.
    async fn next(&mut self) -> Result<()>;
}

/// A stored snapshot, its payload still encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSnapshot {
    /// The stream version it was taken at.
    pub version: u64,
    /// The schema version of the aggregate's state.
    pub schema_version: u32,
    /// The state, as stored: the codec's output.
    pub payload: Vec<u8>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// Which of a stream's events an enforcement pass removes: those at or below `up_to`
/// that are below `below` or were recorded before `before`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryCut {
    /// The stream.
    pub stream: String,
    /// The highest version the pass may remove (it keeps the newest snapshot's events and later ones).
    pub up_to: u64,
    /// Remove events below this version (a policy that keeps the last N).
    pub below: u64,
    /// Remove events recorded before this time (a policy that keeps an age), if any.
    pub before: Option<DateTime<Utc>>,
}

/// Storage for streams and events. See the module docs for what belongs here.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Checks `guard` and writes `events` at the end of `stream` atomically, creating
    /// the stream when missing and the guard allows it.
    async fn append(
        &self,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> Result<AppendOutcome>;

    /// [`Backend::append`] inside `tx` (a transaction from [`Backend::begin_batch`] of this
    /// backend), which the caller commits or drops.
    async fn append_in(
        &self,
        tx: &mut dyn DynTx,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> Result<AppendOutcome>;

    /// The stream's row, deleted or not; `None` when it never existed.
    async fn stream_info(&self, stream: &StreamId) -> Result<Option<StoredStream>>;

    /// One page of streams in id order.
    async fn list_streams(&self, query: &StreamListQuery) -> Result<Vec<StoredStream>>;

    /// The events of `stream` whose versions lie in `versions`, in `direction`'s order:
    /// at most `limit.events`, and none after the one whose stored payload brings the
    /// total to `limit.bytes` (so at least one, when any lies there). Rows are read one by
    /// one: those past the budget are never held.
    async fn read_stream(
        &self,
        stream: &StreamId,
        versions: RangeInclusive<u64>,
        direction: Direction,
        limit: WindowLimit,
    ) -> Result<Vec<StoredEvent>>;

    /// The events of `stream` whose versions lie in `versions`, oldest first, with only the
    /// columns a replay needs, within `limit` as [`Backend::read_stream`].
    async fn replay_stream(
        &self,
        stream: &StreamId,
        versions: RangeInclusive<u64>,
        limit: WindowLimit,
    ) -> Result<Vec<ReplayedEvent>>;

    /// The stream's head, its newest snapshot at or below `max_version` (of any schema
    /// version: whether it is usable is `Store`'s rule), and the events after that
    /// snapshot (after 0 without one), no further than `max_version`, within `limit` as
    /// [`Backend::read_stream`]; `None` when the stream does not exist. No events for a
    /// deleted stream.
    ///
    /// The default takes three round trips; the SQL backends answer in one statement.
    async fn replay_start(
        &self,
        stream: &StreamId,
        max_version: u64,
        limit: WindowLimit,
    ) -> Result<Option<StreamStart>> {
        let Some(info) = self.stream_info(stream).await? else {
            return Ok(None);
        };
        let snapshot = self.latest_snapshot(stream, max_version).await?;
        let after = snapshot.as_ref().map_or(0, |snapshot| snapshot.version);
        let last = info
            .version
            .min(max_version)
            .min(after.saturating_add(limit.events as u64));
        let events = if after < last && info.status == StreamStatus::Active {
            self.replay_stream(stream, after + 1..=last, limit).await?
        } else {
            Vec::new()
        };
        Ok(Some(StreamStart {
            version: info.version,
            status: info.status,
            snapshot,
            events,
        }))
    }

    /// A window of up to `limit` events after `after`, in transaction order, never past an
    /// event whose transaction may still be running; of those, the ones whose type is in
    /// `types` (all when empty).
    ///
    /// The window is scanned in commit order whatever the filter: a filtered read costs
    /// what an unfiltered one does, rather than whatever plan the database picks for a
    /// type condition (PostgreSQL, with stale statistics, fetched every later event of the
    /// type and sorted them, for each page).
    ///
    /// With a byte budget (`limit.bytes`), the window ends early at the event whose stored
    /// payload reaches it, counting the wanted events only; the rows after it are not
    /// held in memory.
    ///
    /// Only the `parts` asked for are read: the events' other parts are empty (an empty
    /// payload, no metadata), as [`StoredEvent::lean`] makes them.
    async fn read_all(
        &self,
        after: LogPosition,
        limit: WindowLimit,
        types: &[String],
        parts: EventParts,
    ) -> Result<LogPage>;

    /// Whether committed events of transactions older than `bound` follow `after`: after a
    /// short page of [`Backend::read_all`], they are events held back because an older
    /// transaction is still running (or that passed the horizon since). Returns the bound
    /// to pass next time (`None` the first time: "now").
    ///
    /// Only PostgreSQL can commit out of position order; the default says "nothing held".
    async fn held_back(&self, after: LogPosition, bound: Option<u64>) -> Result<HeldBack> {
        let _ = after;
        Ok(HeldBack {
            pending: false,
            bound: bound.unwrap_or(0),
        })
    }

    /// Closes the connections; later calls fail with a connection error.
    async fn close(&self) {}

    /// The stream's newest snapshot at or below `max_version`.
    async fn latest_snapshot(
        &self,
        stream: &StreamId,
        max_version: u64,
    ) -> Result<Option<StoredSnapshot>>;

    /// The stream's snapshots, newest first.
    async fn list_snapshots(&self, stream: &StreamId) -> Result<Vec<SnapshotInfo>>;

    /// Opens a batch transaction (a projection's, the outbox's, an inline append's; on
    /// SQLite on the writer connection) whose commit waits for the disk or not, as `flush`
    /// says.
    async fn begin_batch(&self, flush: Flush) -> Result<Box<dyn DynTx>>;

    /// Opens a transaction that only reads (the outbox's administration): on SQLite on a
    /// reader connection, so it never waits for the write lock. By default, a batch.
    async fn begin_read(&self) -> Result<Box<dyn DynTx>> {
        self.begin_batch(Flush::Wait).await
    }

    /// The position of the log's last event, in log order (0 for an empty log): the
    /// highest, except where positions commit out of order (PostgreSQL), where it may be
    /// a little lower while such transactions finish.
    async fn last_position(&self) -> Result<u64>;

    /// One round trip to the database (nothing for memory).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    /// What the store holds: counts and bytes, exact or estimated (the backend says).
    async fn storage(&self) -> Result<StorageStats>;

    /// The end of the log as a cursor: every event committed so far is at or before it,
    /// and every event committed later is after it, except (PostgreSQL) events of
    /// transactions still running, which may commit after it or already have. By default
    /// `(0, last_position)`: where positions commit in order.
    async fn log_end(&self) -> Result<LogPosition> {
        Ok(LogPosition::new(0, self.last_position().await?))
    }

    /// The checkpoint stored under `name`, if any.
    async fn checkpoint(&self, name: &str) -> Result<Option<LogPosition>>;

    /// A feed of other processes' appends to this store (PostgreSQL LISTEN/NOTIFY), or
    /// `None` where appends from elsewhere are only found by polling.
    async fn append_feed(&self) -> Result<Option<Box<dyn AppendFeed>>> {
        Ok(None)
    }

    /// Tells other processes that this store appended (PostgreSQL: `pg_notify` on
    /// `chronicle_appends`, sent after the append committed, outside its transaction).
    /// The default has no one to tell.
    async fn announce_appends(&self) -> Result<()> {
        Ok(())
    }

    /// What the backend can do; `Store` reads it once, when it opens.
    fn capabilities(&self) -> Capabilities;

    /// The pool the application reads its read models through, when the store is SQLite:
    /// the readers' pool.
    #[cfg(feature = "sqlite")]
    fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        None
    }

    /// The store's pool, when the store is PostgreSQL (its connections have the store's
    /// schema first on their `search_path`).
    #[cfg(feature = "postgres")]
    fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        None
    }

    /// Tries to become the one active instance of projection `name`: `Some` holds the
    /// lease until dropped, `None` means another instance holds it. Backends without
    /// cross-process leases grant it at once (the checkpoint's move check still keeps
    /// two instances from applying a batch twice).
    async fn try_lease(&self, name: &str) -> Result<Option<Box<dyn Lease>>> {
        let _ = name;
        Ok(Some(Box::new(InProcessLease)))
    }

    /// The stored events with these ids (in no particular order; missing ids are left out).
    async fn events_by_id(&self, ids: &[Uuid]) -> Result<Vec<StoredEvent>>;

    /// The events matching `query`, in log order (on PostgreSQL by (transaction, position)).
    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>>;

    /// The default and category retention policies, and the streams with their own (up to
    /// `MAX_LISTED_STREAM_POLICIES` + 1 of them).
    async fn retention_policies(&self) -> Result<PolicyRows>;

    /// The policy stored for `scope` (JSON text).
    async fn retention_policy(&self, scope: &RetentionScope) -> Result<Option<String>>;

    /// Up to `limit` stored policies after the key `after` (kind, name), in key order:
    /// the default, then categories, then streams, each by name.
    async fn list_retention(
        &self,
        after: Option<(i16, &str)>,
        limit: usize,
    ) -> Result<Vec<StoredPolicy>>;

    /// Stores (`Some`) or removes (`None`) the policy of `scope`.
    async fn set_retention(&self, scope: &RetentionScope, policy: Option<&str>) -> Result<()>;

    /// What the retention of these streams depends on (streams that do not exist are left
    /// out).
    async fn stream_retention(&self, streams: &[&str]) -> Result<Vec<StreamRetention>>;

    /// Up to `limit` streams after `after` in id order, not tombstoned, that a policy may
    /// apply to: every one when `all`, else those with their own policy or in one of
    /// `categories`.
    async fn retention_candidates(
        &self,
        after: &str,
        limit: usize,
        categories: &[String],
        all: bool,
    ) -> Result<Vec<StreamRetention>>;

    /// The stored data keys of these streams (streams without one are left out).
    async fn stream_keys(&self, streams: &[&str]) -> Result<Vec<StoredKey>>;

    /// Destroys the data key of `stream`, keeping a row that says it was forgotten.
    async fn forget_stream_key(&self, stream: &str) -> Result<()>;

    /// Up to `limit` live data keys wrapped by another ring key than `active`.
    async fn keys_to_rewrap(&self, active: &str, limit: usize) -> Result<Vec<StoredKey>>;

    /// Replaces wrapped keys (`old` as read, `new` with its new ring key id), each only if
    /// still as read; returns how many were replaced.
    async fn rewrap_stream_keys(&self, keys: &[(StoredKey, StoredKey)]) -> Result<u64>;

    /// Replaces event payloads (stream, version, payload as read, new payload), each only
    /// if still as read; returns how many were replaced.
    async fn replace_payloads(&self, payloads: &[(String, u64, Vec<u8>, Vec<u8>)]) -> Result<u64>;

    /// Up to `limit` snapshots after `after` (stream, version), in that order.
    async fn snapshots_after(
        &self,
        after: (&str, u64),
        limit: usize,
    ) -> Result<Vec<(StreamId, StoredSnapshot)>>;

    /// Replaces snapshot payloads (stream, version, payload as read, new payload), each
    /// only if still as read; returns how many were replaced.
    async fn replace_snapshot_payloads(
        &self,
        payloads: &[(String, u64, Vec<u8>, Vec<u8>)],
    ) -> Result<u64>;

    /// Removes the events the cuts expire, in one transaction, and keeps the streams'
    /// event counts; returns (events removed, payload bytes removed).
    async fn remove_expired(&self, cuts: &[ExpiryCut]) -> Result<(u64, u64)>;

    /// The stored compression dictionaries of these ids (missing ones are left out).
    async fn dictionaries(&self, ids: &[u32]) -> Result<Vec<crate::codec::StoredDictionary>>;

    /// The highest compression dictionary id stored: the active dictionary's.
    async fn latest_dictionary(&self) -> Result<Option<u32>>;

    /// Stores a compression dictionary unless its id is taken; whether it was stored.
    async fn insert_dictionary(&self, dictionary: &crate::codec::StoredDictionary) -> Result<bool>;

    /// Replaces a dictionary's seal (`key_id` and `content`) with `new`'s if its row is
    /// still as `old` was read; whether it was replaced.
    async fn reseal_dictionary(
        &self,
        old: &crate::codec::StoredDictionary,
        new: &crate::codec::StoredDictionary,
    ) -> Result<bool>;

    /// The newest `limit` events' ids, streams and stored payloads, newest first: what a
    /// dictionary is trained on.
    async fn recent_payloads(&self, limit: usize) -> Result<Vec<(Uuid, String, Vec<u8>)>>;
}
