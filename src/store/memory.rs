//! The in-memory backend (`memory:`): the reference the SQL backends are tested against,
//! and a store for unit tests. Nothing survives the process.
//!
//! The tables are `Arc`'d maps (`Tables`) behind a briefly held mutex. A writer lock
//! (a `tokio` mutex) plays SQLite's write lock: a write outside a transaction takes it
//! for the write; a write transaction (`MemoryTx`) takes it at its first write and holds
//! it until it commits or drops, working from then on on its own copy of the tables (their
//! `Arc`s: a table is copied, through `Arc::make_mut`, only when the transaction first
//! writes it), so it reads its own writes and nobody else's reads see them. Its appends are staged and
//! moved into the log at commit (an inline append does not copy the log). Commit swaps
//! the tables in and cannot fail; dropping the transaction rolls it back. Readers never
//! take the writer lock.
//!
//! The outbox's tables and statements are in `memory/outbox.rs`.

mod outbox;

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use super::backend::{
    Answers, AppendNotices, AppendOutcome, Backend, Capabilities, EncodedEvent, ExpiryCut, LogPage,
    ReplayedEvent, StoredEvent, StoredSnapshot, StoredStream, Support, WindowLimit, Written,
};
use super::batch::{DynTx, Flush, StoredCheckpoint, Tx};
use super::key_cache::StoredKey;
use super::storage::StorageStats;
use crate::codec::StoredDictionary;
use crate::error::{Error, Result};
use crate::read::{EventParts, EventQuery, LogPosition};
use crate::retention::RetentionScope;
use crate::retention::rules::{PolicyRows, StoredPolicy, StreamRetention};
use crate::snapshot::SnapshotInfo;
use crate::stream::{
    AppendGuard, Direction, NewStream, StreamId, StreamListQuery, StreamStatus, category_of,
};

#[cfg(feature = "sqlite")]
mod read_models;
mod streams;

#[derive(Debug, Default)]
/// The in-memory backend (`memory:`): every feature, nothing kept past the process. A reference for the seam, and a base for a test backend to wrap.
pub struct MemoryBackend {
    /// The committed tables, shared with the transactions that commit into them.
    tables: Arc<Mutex<Tables>>,
    /// The writer lock: held by a write transaction, and briefly by every other write.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// The read models' database, for portable SQL.
    #[cfg(feature = "sqlite")]
    read_models: read_models::ReadModels,
}

/// The store's tables. Cloning copies the `Arc`s, not the maps.
#[derive(Debug, Default, Clone)]
struct Tables {
    /// Every event by global position; hard deletes remove entries, positions stay.
    log: Arc<BTreeMap<u64, StoredEvent>>,
    last_position: u64,
    streams: Arc<BTreeMap<String, StreamRow>>,
    /// Position of every stored event id.
    ids: Arc<HashMap<Uuid, u64>>,
    /// Retention policies by (kind, name), as JSON text.
    policies: Arc<BTreeMap<(i16, String), String>>,
    /// Per-stream data keys, wrapped.
    keys: Arc<BTreeMap<String, StoredKey>>,
    /// Compression dictionaries by id.
    dictionaries: Arc<BTreeMap<u32, StoredDictionary>>,
    /// Projection checkpoints by name.
    checkpoints: Arc<HashMap<String, LogPosition>>,
    /// The outbox's requests and handlers' starts.
    outbox: outbox::OutboxTables,
}

impl Tables {
    fn retention_of(&self, stream: &str, row: &StreamRow) -> StreamRetention {
        StreamRetention {
            stream: stream.to_owned(),
            head: row.info.version,
            own: self.policies.get(&(2, stream.to_owned())).cloned(),
            snapshot: row.snapshots.keys().next_back().copied(),
        }
    }

    /// Checks `guard` and writes `events` at the end of `stream`: the stream's row here,
    /// the events into `staged` (after the events staged before them), for
    /// [`Tables::merge`] to move into the log.
    fn append(
        &mut self,
        staged: &mut Vec<StoredEvent>,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> AppendOutcome {
        let current = self.streams.get(stream.as_str());
        let current = current.map(|row| (row.info.version, row.info.status));
        if let Some(rejected) = AppendOutcome::rejection(guard, current) {
            return rejected;
        }
        let taken =
            |id: &Uuid| self.ids.contains_key(id) || staged.iter().any(|event| event.id == *id);
        if events.iter().any(|event| taken(&event.source.id)) {
            return AppendOutcome::DuplicateEventId;
        }
        let now = Utc::now();
        let base = current.map_or(0, |(version, _)| version);
        let mut written = Vec::with_capacity(events.len());
        for (offset, event) in (1..).zip(events) {
            self.last_position += 1;
            let position = self.last_position;
            let version = base + offset;
            let metadata = &event.source.metadata;
            staged.push(StoredEvent {
                id: event.source.id,
                stream_id: stream.clone(),
                version,
                position,
                commit: 0,
                event_type: event.source.event_type.clone(),
                schema_version: event.source.schema_version,
                payload: event.payload.clone(),
                correlation_id: metadata.correlation_id.clone(),
                causation_id: metadata.causation_id.clone(),
                tenant_id: metadata.tenant_id.clone(),
                user_id: metadata.user_id.clone(),
                extra_metadata: event.extra_metadata.clone(),
                recorded_at: now,
            });
            written.push(Written {
                version,
                position,
                commit: 0,
                recorded_at: now,
            });
        }
        let row = Arc::make_mut(&mut self.streams)
            .entry(stream.as_str().to_owned())
            .or_insert_with(|| StreamRow::new(stream, &NewStream::default()));
        row.positions
            .extend(written.iter().map(|w| (w.version, w.position)));
        row.info.version = base + events.len() as u64;
        row.info.event_count += events.len() as u64;
        row.info.updated_at = now;
        row.info.last_event_id = events.last().map(|event| event.source.id);
        AppendOutcome::Written(written)
    }

    /// Moves staged events into the log.
    fn merge(&mut self, staged: Vec<StoredEvent>) {
        if staged.is_empty() {
            return;
        }
        let (log, ids) = (Arc::make_mut(&mut self.log), Arc::make_mut(&mut self.ids));
        for event in staged {
            ids.insert(event.id, event.position);
            log.insert(event.position, event);
        }
    }
}

#[derive(Debug, Clone)]
struct StreamRow {
    info: StoredStream,
    /// Positions of the stream's events, by version.
    positions: BTreeMap<u64, u64>,
    snapshots: BTreeMap<u64, StoredSnapshot>,
}

impl StreamRow {
    fn new(stream: &StreamId, spec: &NewStream) -> Self {
        StreamRow {
            info: new_info(stream, spec),
            positions: BTreeMap::new(),
            snapshots: BTreeMap::new(),
        }
    }
}

/// The committed tables, for a read or a write that holds the writer lock.
type TablesGuard<'a> = std::sync::MutexGuard<'a, Tables>;

impl MemoryBackend {
    /// The committed tables, to read.
    fn lock(&self) -> Result<TablesGuard<'_>> {
        self.tables
            .lock()
            .map_err(|_| Error::Internal("memory store lock poisoned".into()))
    }

    /// The committed tables, to write outside a transaction: the writer lock is held
    /// as long as the first guard.
    async fn write(&self) -> Result<(tokio::sync::MutexGuard<'_, ()>, TablesGuard<'_>)> {
        let writer = self.writer.lock().await;
        Ok((writer, self.lock()?))
    }
}

fn new_info(stream: &StreamId, spec: &NewStream) -> StoredStream {
    let now = Utc::now();
    StoredStream {
        stream_id: stream.clone(),
        category: stream.category().to_owned(),
        aggregate_type: spec.aggregate_type.clone(),
        display_name: spec.display_name.clone(),
        version: 0,
        event_count: 0,
        created_at: now,
        updated_at: now,
        last_event_id: None,
        status: StreamStatus::Active,
        metadata: spec.stored_metadata(),
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn append(
        &self,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> Result<AppendOutcome> {
        let (_writer, mut tables) = self.write().await?;
        let mut staged = Vec::with_capacity(events.len());
        let outcome = tables.append(&mut staged, stream, guard, events);
        tables.merge(staged);
        Ok(outcome)
    }

    /// Stages the append in `tx`, a `MemoryTx`.
    async fn append_in(
        &self,
        tx: &mut dyn DynTx,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> Result<AppendOutcome> {
        let tx = tx.as_any().downcast_mut::<MemoryTx>().ok_or_else(|| {
            Error::Internal("a memory append in another backend's transaction".to_owned())
        })?;
        let (tables, staged) = tx.write().await?;
        Ok(tables.append(staged, stream, guard, events))
    }

    async fn stream_info(&self, stream: &StreamId) -> Result<Option<StoredStream>> {
        let state = self.lock()?;
        Ok(state
            .streams
            .get(stream.as_str())
            .map(|row| row.info.clone()))
    }

    async fn list_streams(&self, query: &StreamListQuery) -> Result<Vec<StoredStream>> {
        let state = self.lock()?;
        let start = match &query.after {
            Some(after) => std::ops::Bound::Excluded(after.clone()),
            None => std::ops::Bound::Unbounded,
        };
        Ok(state
            .streams
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, row)| &row.info)
            .filter(|info| query.include_deleted || info.status == StreamStatus::Active)
            .filter(|info| {
                query
                    .category
                    .as_deref()
                    .is_none_or(|category| category_of(info.stream_id.as_str()) == category)
            })
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        versions: RangeInclusive<u64>,
        direction: Direction,
        limit: WindowLimit,
    ) -> Result<Vec<StoredEvent>> {
        let state = self.lock()?;
        let Some(row) = state.streams.get(stream.as_str()) else {
            return Ok(Vec::new());
        };
        let in_range = row.positions.range(versions);
        let positions: Box<dyn Iterator<Item = (&u64, &u64)>> = match direction {
            Direction::Forward => Box::new(in_range),
            Direction::Backward => Box::new(in_range.rev()),
        };
        let (mut events, mut bytes) = (Vec::new(), 0);
        for event in positions
            .filter_map(|(_, position)| state.log.get(position))
            .take(limit.events)
        {
            bytes += event.payload.len();
            events.push(event.clone());
            if limit.bytes_reached(bytes) {
                break;
            }
        }
        Ok(events)
    }

    async fn replay_stream(
        &self,
        stream: &StreamId,
        versions: RangeInclusive<u64>,
        limit: WindowLimit,
    ) -> Result<Vec<ReplayedEvent>> {
        let events = self
            .read_stream(stream, versions, Direction::Forward, limit)
            .await?;
        Ok(events
            .into_iter()
            .map(|event| ReplayedEvent {
                id: event.id,
                version: event.version,
                event_type: event.event_type,
                schema_version: event.schema_version,
                payload: event.payload,
            })
            .collect())
    }

    async fn read_all(
        &self,
        after: LogPosition,
        limit: WindowLimit,
        types: &[String],
        parts: EventParts,
    ) -> Result<LogPage> {
        let state = self.lock()?;
        let first = after.position().saturating_add(1);
        let (mut events, mut scanned, mut scanned_to, mut bytes) = (Vec::new(), 0, None, 0);
        for event in state.log.range(first..).map(|(_, e)| e).take(limit.events) {
            scanned += 1;
            scanned_to = Some(event.log_position());
            if types.is_empty() || types.contains(&event.event_type) {
                let event = event.lean(parts);
                bytes += event.payload.len();
                events.push(event);
                if limit.bytes_reached(bytes) {
                    break;
                }
            }
        }
        Ok(LogPage::new(events, scanned_to, scanned, limit))
    }

    async fn latest_snapshot(
        &self,
        stream: &StreamId,
        max_version: u64,
    ) -> Result<Option<StoredSnapshot>> {
        let state = self.lock()?;
        Ok(state.streams.get(stream.as_str()).and_then(|row| {
            row.snapshots
                .range(..=max_version)
                .next_back()
                .map(|(_, snapshot)| snapshot.clone())
        }))
    }

    async fn list_snapshots(&self, stream: &StreamId) -> Result<Vec<SnapshotInfo>> {
        let state = self.lock()?;
        let Some(row) = state.streams.get(stream.as_str()) else {
            return Ok(Vec::new());
        };
        Ok(row
            .snapshots
            .values()
            .rev()
            .map(|snapshot| SnapshotInfo {
                version: snapshot.version,
                schema_version: snapshot.schema_version,
                stored_size: snapshot.payload.len() as u64,
                created_at: snapshot.created_at,
            })
            .collect())
    }

    /// A write transaction; it takes the writer lock at its first write.
    async fn begin_batch(&self, _flush: Flush) -> Result<Box<dyn DynTx>> {
        let writer = Some(Arc::clone(&self.writer));
        let tx = MemoryTx::new(&self.tables, writer);
        #[cfg(feature = "sqlite")]
        let tx = MemoryTx {
            read_models: Some(self.read_models.clone()),
            ..tx
        };
        Ok(Box::new(tx))
    }

    /// A transaction that only reads: it never takes the writer lock, and refuses to
    /// write.
    async fn begin_read(&self) -> Result<Box<dyn DynTx>> {
        Ok(Box::new(MemoryTx::new(&self.tables, None)))
    }

    async fn last_position(&self) -> Result<u64> {
        Ok(self.lock()?.last_position)
    }

    /// The read models' embedded database.
    #[cfg(feature = "sqlite")]
    fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        Some(self.read_models.pool())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kind: "memory",
            append_notices: AppendNotices::ThisProcess,
            answers: Answers::RowByRow,
            outbox: Support::Supported,
        }
    }

    async fn storage(&self) -> Result<StorageStats> {
        let state = self.lock()?;
        Ok(StorageStats {
            streams: state.streams.len() as u64,
            events: state.log.len() as u64,
            snapshots: state
                .streams
                .values()
                .map(|row| row.snapshots.len() as u64)
                .sum(),
            bytes: state
                .log
                .values()
                .map(|event| event.payload.len() as u64)
                .sum(),
            estimated: false,
        })
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<LogPosition>> {
        Ok(self.lock()?.checkpoints.get(name).copied())
    }

    async fn events_by_id(&self, ids: &[Uuid]) -> Result<Vec<StoredEvent>> {
        let state = self.lock()?;
        Ok(ids
            .iter()
            .filter_map(|id| state.ids.get(id))
            .filter_map(|position| state.log.get(position))
            .cloned()
            .collect())
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        let state = self.lock()?;
        Ok(state
            .log
            .values()
            .filter(|event| {
                query
                    .stream
                    .as_deref()
                    .is_none_or(|s| event.stream_id.as_str() == s)
                    && (query.event_types.is_empty()
                        || query.event_types.contains(&event.event_type))
                    && query.from_time.is_none_or(|t| event.recorded_at >= t)
                    && query.to_time.is_none_or(|t| event.recorded_at < t)
                    && query
                        .correlation_id
                        .as_ref()
                        .is_none_or(|id| event.correlation_id.as_ref() == Some(id))
                    && query
                        .tenant_id
                        .as_ref()
                        .is_none_or(|id| event.tenant_id.as_ref() == Some(id))
            })
            .skip(query.offset)
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn retention_policies(&self) -> Result<PolicyRows> {
        let state = self.lock()?;
        let mut rows = PolicyRows::default();
        for ((kind, name), json) in state.policies.iter() {
            if *kind == 2 {
                rows.streams.push(name.clone());
            } else {
                rows.general.push(StoredPolicy {
                    scope: RetentionScope::from_key(i64::from(*kind), name.clone()),
                    json: json.clone(),
                });
            }
        }
        Ok(rows)
    }

    async fn retention_policy(&self, scope: &RetentionScope) -> Result<Option<String>> {
        let (kind, name) = scope.key();
        Ok(self.lock()?.policies.get(&(kind, name.to_owned())).cloned())
    }

    async fn list_retention(
        &self,
        after: Option<(i16, &str)>,
        limit: usize,
    ) -> Result<Vec<StoredPolicy>> {
        let state = self.lock()?;
        Ok(state
            .policies
            .iter()
            .filter(|((kind, name), _)| {
                after.is_none_or(|(after_kind, after_name)| {
                    (*kind, name.as_str()) > (after_kind, after_name)
                })
            })
            .take(limit)
            .map(|((kind, name), json)| StoredPolicy {
                scope: RetentionScope::from_key(i64::from(*kind), name.clone()),
                json: json.clone(),
            })
            .collect())
    }

    async fn set_retention(&self, scope: &RetentionScope, policy: Option<&str>) -> Result<()> {
        let (kind, name) = scope.key();
        let (_writer, mut state) = self.write().await?;
        match policy {
            Some(json) => {
                Arc::make_mut(&mut state.policies).insert((kind, name.to_owned()), json.to_owned())
            }
            None => Arc::make_mut(&mut state.policies).remove(&(kind, name.to_owned())),
        };
        Ok(())
    }

    async fn stream_retention(&self, streams: &[&str]) -> Result<Vec<StreamRetention>> {
        let state = self.lock()?;
        Ok(streams
            .iter()
            .filter_map(|stream| {
                let row = state.streams.get(*stream)?;
                Some(state.retention_of(stream, row))
            })
            .collect())
    }

    async fn retention_candidates(
        &self,
        after: &str,
        limit: usize,
        categories: &[String],
        all: bool,
    ) -> Result<Vec<StreamRetention>> {
        let state = self.lock()?;
        let range = (
            std::ops::Bound::Excluded(after.to_owned()),
            std::ops::Bound::Unbounded,
        );
        Ok(state
            .streams
            .range::<String, _>(range)
            .filter(|(_, row)| row.info.status != StreamStatus::Tombstoned)
            .map(|(stream, row)| state.retention_of(stream, row))
            .filter(|retention| {
                all || retention.own.is_some()
                    || categories
                        .iter()
                        .any(|c| c == category_of(&retention.stream))
            })
            .take(limit)
            .collect())
    }

    async fn remove_expired(&self, cuts: &[ExpiryCut]) -> Result<(u64, u64)> {
        let (_writer, mut state) = self.write().await?;
        let state = &mut *state;
        let (mut events, mut bytes) = (0, 0);
        for cut in cuts {
            let Some(row) = Arc::make_mut(&mut state.streams).get_mut(&cut.stream) else {
                continue;
            };
            let doomed: Vec<(u64, u64)> = row
                .positions
                .range(..=cut.up_to)
                .filter(|(version, position)| {
                    **version < cut.below
                        || state.log.get(position).is_some_and(|event| {
                            cut.before.is_some_and(|before| event.recorded_at < before)
                        })
                })
                .map(|(version, position)| (*version, *position))
                .collect();
            for (version, position) in doomed {
                row.positions.remove(&version);
                row.info.event_count -= 1;
                if let Some(event) = Arc::make_mut(&mut state.log).remove(&position) {
                    Arc::make_mut(&mut state.ids).remove(&event.id);
                    events += 1;
                    bytes += event.payload.len() as u64;
                }
            }
        }
        Ok((events, bytes))
    }

    async fn dictionaries(&self, ids: &[u32]) -> Result<Vec<StoredDictionary>> {
        let state = self.lock()?;
        Ok(ids
            .iter()
            .filter_map(|id| state.dictionaries.get(id).cloned())
            .collect())
    }

    async fn latest_dictionary(&self) -> Result<Option<u32>> {
        Ok(self.lock()?.dictionaries.keys().next_back().copied())
    }

    async fn insert_dictionary(&self, dictionary: &StoredDictionary) -> Result<bool> {
        let (_writer, mut state) = self.write().await?;
        if state.dictionaries.contains_key(&dictionary.id) {
            return Ok(false);
        }
        Arc::make_mut(&mut state.dictionaries).insert(dictionary.id, dictionary.clone());
        Ok(true)
    }

    async fn reseal_dictionary(
        &self,
        old: &StoredDictionary,
        new: &StoredDictionary,
    ) -> Result<bool> {
        let (_writer, mut state) = self.write().await?;
        match Arc::make_mut(&mut state.dictionaries).get_mut(&old.id) {
            Some(stored) if stored == old => {
                stored.key_id.clone_from(&new.key_id);
                stored.content.clone_from(&new.content);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn recent_payloads(&self, limit: usize) -> Result<Vec<(Uuid, String, Vec<u8>)>> {
        let state = self.lock()?;
        Ok(state
            .log
            .values()
            .rev()
            .take(limit)
            .map(|event| (event.id, event.stream_id.to_string(), event.payload.clone()))
            .collect())
    }

    async fn stream_keys(&self, streams: &[&str]) -> Result<Vec<StoredKey>> {
        let state = self.lock()?;
        Ok(streams
            .iter()
            .filter_map(|stream| state.keys.get(*stream).cloned())
            .collect())
    }

    async fn forget_stream_key(&self, stream: &str) -> Result<()> {
        let (_writer, mut state) = self.write().await?;
        Arc::make_mut(&mut state.keys).insert(
            stream.to_owned(),
            StoredKey {
                stream: stream.to_owned(),
                key_id: None,
                wrapped: None,
            },
        );
        Ok(())
    }

    async fn keys_to_rewrap(&self, active: &str, limit: usize) -> Result<Vec<StoredKey>> {
        let state = self.lock()?;
        Ok(state
            .keys
            .values()
            .filter(|key| key.key_id.as_deref().is_some_and(|id| id != active))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn rewrap_stream_keys(&self, keys: &[(StoredKey, StoredKey)]) -> Result<u64> {
        let (_writer, mut state) = self.write().await?;
        let mut done = 0;
        for (old, new) in keys {
            if let Some(stored) = Arc::make_mut(&mut state.keys).get_mut(&old.stream)
                && stored == old
            {
                *stored = new.clone();
                done += 1;
            }
        }
        Ok(done)
    }

    async fn replace_payloads(&self, payloads: &[(String, u64, Vec<u8>, Vec<u8>)]) -> Result<u64> {
        let (_writer, mut state) = self.write().await?;
        let mut done = 0;
        for (stream, version, old, new) in payloads {
            let position = state
                .streams
                .get(stream)
                .and_then(|row| row.positions.get(version))
                .copied();
            if let Some(event) =
                position.and_then(|position| Arc::make_mut(&mut state.log).get_mut(&position))
                && &event.payload == old
            {
                event.payload = new.clone();
                done += 1;
            }
        }
        Ok(done)
    }

    async fn snapshots_after(
        &self,
        after: (&str, u64),
        limit: usize,
    ) -> Result<Vec<(StreamId, StoredSnapshot)>> {
        let state = self.lock()?;
        let mut found = Vec::new();
        let later = (
            std::ops::Bound::Included(after.0.to_owned()),
            std::ops::Bound::Unbounded,
        );
        for (stream, row) in state.streams.range::<String, _>(later) {
            for (version, snapshot) in &row.snapshots {
                if found.len() == limit {
                    return Ok(found);
                }
                if (stream.as_str(), *version) > after {
                    found.push((row.info.stream_id.clone(), snapshot.clone()));
                }
            }
        }
        Ok(found)
    }

    async fn replace_snapshot_payloads(
        &self,
        payloads: &[(String, u64, Vec<u8>, Vec<u8>)],
    ) -> Result<u64> {
        let (_writer, mut state) = self.write().await?;
        let mut done = 0;
        for (stream, version, old, new) in payloads {
            if let Some(snapshot) = Arc::make_mut(&mut state.streams)
                .get_mut(stream)
                .and_then(|row| row.snapshots.get_mut(version))
                && &snapshot.payload == old
            {
                snapshot.payload = new.clone();
                done += 1;
            }
        }
        Ok(done)
    }
}

/// The memory backend's transaction. Until its first write it reads the committed tables;
/// its first write (or `locked_checkpoint`) takes the writer lock, which it then holds
/// until it ends, and a copy of the tables (the `Arc`s; a table is copied when first
/// written) that it reads and writes, with the events it appended staged beside them;
/// commit swaps both in. Dropped, it rolls back: the copy goes, and the writer lock with
/// it. Its outbox statements are in `memory/outbox.rs`; there is no SQL.
///
/// The lock is taken at the first write, not at `begin_batch`, so that a projection's
/// handler (which runs before its batch moves the checkpoint) holds no lock: a handler
/// that hangs on memory does not stop the store's other writers.
#[derive(Debug)]
struct MemoryTx {
    /// The backend's tables, which commit replaces.
    committed: Arc<Mutex<Tables>>,
    /// The backend's writer lock; `None` for a transaction that only reads.
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Once the transaction writes: the writer lock, held until it ends, and its view
    /// (the committed tables when it took the lock, and its own writes).
    open: Option<(OwnedMutexGuard<()>, Tables)>,
    /// Events appended in the transaction, in position order, not yet in the log.
    staged: Vec<StoredEvent>,
    /// The read models' database, for a write transaction.
    #[cfg(feature = "sqlite")]
    read_models: Option<read_models::ReadModels>,
    /// Once portable SQL ran: the transaction on the read models' database.
    #[cfg(feature = "sqlite")]
    sql: Option<read_models::ReadModelTx>,
}

impl MemoryTx {
    fn new(committed: &Arc<Mutex<Tables>>, writer: Option<Arc<tokio::sync::Mutex<()>>>) -> Self {
        MemoryTx {
            committed: Arc::clone(committed),
            writer,
            open: None,
            staged: Vec::new(),
            #[cfg(feature = "sqlite")]
            read_models: None,
            #[cfg(feature = "sqlite")]
            sql: None,
        }
    }

    /// The checkpoints as the transaction reads them: its own view once it writes, the
    /// committed ones before.
    fn checkpoints_view(&self) -> Arc<HashMap<String, LogPosition>> {
        match &self.open {
            Some((_, tables)) => Arc::clone(&tables.checkpoints),
            None => {
                let committed = self.committed.lock();
                Arc::clone(
                    &committed
                        .unwrap_or_else(PoisonError::into_inner)
                        .checkpoints,
                )
            }
        }
    }

    /// The transaction's tables to write, and its staged events: the first call takes
    /// the writer lock and copies the committed tables' `Arc`s.
    async fn write(&mut self) -> Result<(&mut Tables, &mut Vec<StoredEvent>)> {
        if self.open.is_none() {
            let Some(writer) = &self.writer else {
                return Err(Error::Internal(
                    "a write in a memory transaction that only reads".to_owned(),
                ));
            };
            let guard = Arc::clone(writer).lock_owned().await;
            let committed = self.committed.lock();
            let tables = committed.unwrap_or_else(PoisonError::into_inner).clone();
            self.open = Some((guard, tables));
        }
        match &mut self.open {
            Some((_, tables)) => Ok((tables, &mut self.staged)),
            None => Err(Error::Internal(
                "a memory transaction lost its tables".to_owned(),
            )),
        }
    }
}

impl Tx for MemoryTx {
    type Outbox = Self;

    async fn move_checkpoint(
        &mut self,
        name: &str,
        from: LogPosition,
        to: LogPosition,
    ) -> Result<bool> {
        let (tables, _) = self.write().await?;
        let stored = tables.checkpoints.get(name).copied().unwrap_or_default();
        if stored != from {
            return Ok(false);
        }
        Arc::make_mut(&mut tables.checkpoints).insert(name.to_owned(), to);
        Ok(true)
    }

    /// No other transaction moves it: this one takes the writer lock.
    async fn locked_checkpoint(&mut self, name: &str) -> Result<Option<LogPosition>> {
        let (tables, _) = self.write().await?;
        Ok(tables.checkpoints.get(name).copied())
    }

    /// Their times are not recorded (`updated_at` is `None`).
    async fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>> {
        let mut listed: Vec<StoredCheckpoint> = self
            .checkpoints_view()
            .iter()
            .map(|(name, position)| StoredCheckpoint {
                name: name.clone(),
                position: *position,
                updated_at: None,
            })
            .collect();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listed)
    }

    async fn reset_checkpoint(&mut self, name: &str) -> Result<bool> {
        let (tables, _) = self.write().await?;
        if !tables.checkpoints.contains_key(name) {
            return Ok(false);
        }
        Ok(Arc::make_mut(&mut tables.checkpoints)
            .remove(name)
            .is_some())
    }

    /// Not recorded.
    async fn record_skip(&mut self, _: &str, _: Uuid, _: u64, _: &str) -> Result<()> {
        Ok(())
    }

    fn outbox(&mut self) -> Option<&mut Self> {
        Some(self)
    }

    /// The writer lock first, then the read models' connection (see `read_models.rs`).
    #[cfg(feature = "sqlite")]
    async fn prepare_sql(&mut self) -> Result<()> {
        if self.sql.is_none()
            && let Some(read_models) = self.read_models.clone()
        {
            self.write().await?;
            self.sql = Some(read_models.begin().await?);
        }
        Ok(())
    }

    #[cfg(feature = "sqlite")]
    fn sql(&mut self) -> Option<super::batch::SqlConnection<'_>> {
        self.sql
            .as_deref_mut()
            .map(super::batch::SqlConnection::Embedded)
    }

    /// Commits the read models' part first (when portable SQL ran), then swaps the
    /// transaction's tables in, with its appended events, which cannot fail.
    async fn commit(self) -> Result<()> {
        let MemoryTx {
            committed,
            open,
            staged,
            #[cfg(feature = "sqlite")]
            sql,
            ..
        } = self;
        #[cfg(feature = "sqlite")]
        if let Some(sql) = sql {
            read_models::commit(sql).await?;
        }
        let Some((writer, tables)) = open else {
            return Ok(());
        };
        let mut committed = committed.lock().unwrap_or_else(PoisonError::into_inner);
        // The old tables go first, so the log is shared no more and `merge` does not
        // copy it.
        *committed = tables;
        committed.merge(staged);
        drop(committed);
        drop(writer);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::event::NewEvent;
    use crate::stream::ExpectedVersion;

    fn event() -> NewEvent {
        NewEvent::new("test.noted", serde_json::json!({}))
    }

    fn encoded(event: &NewEvent) -> EncodedEvent<'_> {
        EncodedEvent {
            source: event,
            payload: b"{}".to_vec(),
            extra_metadata: None,
        }
    }

    fn stream(name: &str) -> StreamId {
        StreamId::new(name).expect("a valid id")
    }

    async fn append_in(backend: &MemoryBackend, tx: &mut dyn DynTx, name: &str) -> AppendOutcome {
        let event = event();
        let guard = ExpectedVersion::Any.guard();
        backend
            .append_in(tx, &stream(name), guard, &[encoded(&event)])
            .await
            .expect("staged")
    }

    /// A transaction reads its own writes, others see them only after the commit, which
    /// brings the appends and the checkpoint in together.
    #[tokio::test]
    async fn a_transaction_commits_its_appends_and_checkpoint_together() {
        let backend = MemoryBackend::default();
        let mut tx = backend.begin_batch(Flush::Wait).await.expect("begins");
        assert!(matches!(
            append_in(&backend, &mut *tx, "s-1").await,
            AppendOutcome::Written(_)
        ));
        let second = append_in(&backend, &mut *tx, "s-1").await;
        let AppendOutcome::Written(written) = second else {
            panic!("expected a write, got {second:?}");
        };
        assert_eq!((written[0].version, written[0].position), (2, 2));
        let to = LogPosition::new(0, 2);
        assert!(
            tx.move_checkpoint("p", LogPosition::START, to)
                .await
                .expect("moves")
        );
        assert_eq!(tx.locked_checkpoint("p").await.expect("reads"), Some(to));
        assert_eq!(
            backend.stream_info(&stream("s-1")).await.expect("info"),
            None
        );
        assert_eq!(backend.checkpoint("p").await.expect("reads"), None);
        assert_eq!(backend.last_position().await.expect("reads"), 0);
        tx.commit().await.expect("commits");
        let info = backend.stream_info(&stream("s-1")).await.expect("info");
        assert_eq!(info.map(|info| info.version), Some(2));
        assert_eq!(backend.checkpoint("p").await.expect("reads"), Some(to));
        let page = backend
            .read_all(
                LogPosition::START,
                WindowLimit {
                    events: 10,
                    bytes: None,
                },
                &[],
                EventParts::ALL,
            )
            .await
            .expect("reads");
        assert_eq!(page.events.len(), 2);
    }

    /// Dropped, a transaction leaves nothing behind, and frees the writer lock.
    #[tokio::test]
    async fn a_dropped_transaction_rolls_back() {
        let backend = MemoryBackend::default();
        let mut tx = backend.begin_batch(Flush::Wait).await.expect("begins");
        append_in(&backend, &mut *tx, "s-1").await;
        drop(tx);
        assert_eq!(
            backend.stream_info(&stream("s-1")).await.expect("info"),
            None
        );
        let event = event();
        let guard = ExpectedVersion::NoStream.guard();
        let outcome = backend
            .append(&stream("s-1"), guard, &[encoded(&event)])
            .await
            .expect("appends");
        assert!(matches!(outcome, AppendOutcome::Written(_)), "{outcome:?}");
    }

    /// Until its first write, a transaction holds no lock: a projection's handler that
    /// hangs mid-batch does not stop the other writers.
    #[tokio::test]
    async fn a_transaction_takes_the_writer_lock_at_its_first_write() {
        let backend = MemoryBackend::default();
        let mut tx = backend.begin_batch(Flush::Wait).await.expect("begins");
        let event = event();
        let guard = ExpectedVersion::Any.guard();
        let outcome = backend
            .append(&stream("s-1"), guard, &[encoded(&event)])
            .await
            .expect("appends");
        assert!(matches!(outcome, AppendOutcome::Written(_)), "{outcome:?}");
        // The move checks against what is committed when the lock is taken.
        let to = LogPosition::new(0, 1);
        assert!(
            tx.move_checkpoint("p", LogPosition::START, to)
                .await
                .expect("moves")
        );
        tx.commit().await.expect("commits");
        assert_eq!(backend.last_position().await.expect("reads"), 1);
        assert_eq!(backend.checkpoint("p").await.expect("reads"), Some(to));
    }

    /// A write outside the transaction waits for it; a read does not.
    #[tokio::test]
    async fn writes_wait_for_the_open_transaction_and_reads_do_not() {
        let backend = Arc::new(MemoryBackend::default());
        let mut tx = backend.begin_batch(Flush::Wait).await.expect("begins");
        append_in(&backend, &mut *tx, "s-1").await;
        let writer = {
            let backend = Arc::clone(&backend);
            tokio::spawn(async move {
                let event = event();
                let guard = ExpectedVersion::Any.guard();
                backend
                    .append(&stream("s-1"), guard, &[encoded(&event)])
                    .await
                    .expect("appends")
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!writer.is_finished(), "the write waits for the writer lock");
        assert_eq!(backend.last_position().await.expect("reads"), 0);
        tx.commit().await.expect("commits");
        let outcome = writer.await.expect("the writer");
        let AppendOutcome::Written(written) = outcome else {
            panic!("expected a write, got {outcome:?}");
        };
        assert_eq!((written[0].version, written[0].position), (2, 2));
    }
}
