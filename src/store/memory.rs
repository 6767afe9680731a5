//! The in-memory backend (`memory:`): the reference the SQL backends are tested against,
//! and a store for unit tests. Everything sits behind one mutex; nothing survives the
//! process.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

use super::backend::{
    AppendOutcome, Backend, CreateOutcome, EncodedEvent, ExpiryCut, LogPage, ReplayedEvent,
    SnapshotWrite, StoredEvent, StoredSnapshot, WindowLimit, Written,
};
use super::batch::{DynTx, Flush, StoredCheckpoint, Tx};
use super::key_cache::StoredKey;
use super::requests::NoOutbox;
use super::storage::StorageStats;
use crate::codec::StoredDictionary;
use crate::error::{Error, Result};
use crate::read::{EventParts, EventQuery, LogPosition};
use crate::retention::RetentionScope;
use crate::retention::rules::{PolicyRows, StoredPolicy, StreamRetention};
use crate::snapshot::SnapshotInfo;
use crate::stream::{
    AppendGuard, DeleteMode, Direction, NewStream, StreamId, StreamInfo, StreamListQuery,
    StreamStatus, category_of,
};

/// The memory backend's checkpoints, shared with its transactions.
type MemoryCheckpoints = Arc<Mutex<HashMap<String, LogPosition>>>;

#[derive(Debug, Default)]
pub(crate) struct MemoryBackend {
    state: Mutex<State>,
    checkpoints: MemoryCheckpoints,
}

#[derive(Debug, Default)]
struct State {
    /// Every event by global position; hard deletes remove entries, positions stay.
    log: BTreeMap<u64, StoredEvent>,
    last_position: u64,
    streams: BTreeMap<String, StreamRow>,
    /// Position of every stored event id.
    ids: HashMap<Uuid, u64>,
    /// Retention policies by (kind, name), as JSON text.
    policies: BTreeMap<(i16, String), String>,
    /// Per-stream data keys, wrapped.
    keys: BTreeMap<String, StoredKey>,
    /// Compression dictionaries by id.
    dictionaries: BTreeMap<u32, StoredDictionary>,
}

impl State {
    fn retention_of(&self, stream: &str, row: &StreamRow) -> StreamRetention {
        StreamRetention {
            stream: stream.to_owned(),
            head: row.info.version,
            own: self.policies.get(&(2, stream.to_owned())).cloned(),
            snapshot: row.snapshots.keys().next_back().copied(),
        }
    }
}

#[derive(Debug)]
struct StreamRow {
    info: StreamInfo,
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

impl MemoryBackend {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| Error::Internal("memory store lock poisoned".into()))
    }
}

fn new_info(stream: &StreamId, spec: &NewStream) -> StreamInfo {
    let now = Utc::now();
    StreamInfo {
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
        metadata: spec.metadata.clone(),
        retention: None,
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
        let mut state = self.lock()?;
        let current = state.streams.get(stream.as_str());
        let current = current.map(|row| (row.info.version, row.info.status));
        if let Some(rejected) = AppendOutcome::rejection(guard, current) {
            return Ok(rejected);
        }
        let actual = current.map(|(version, _)| version);
        if events
            .iter()
            .any(|event| state.ids.contains_key(&event.source.id))
        {
            return Ok(AppendOutcome::DuplicateEventId);
        }
        let now = Utc::now();
        let base = actual.unwrap_or(0);
        let mut written = Vec::with_capacity(events.len());
        for (offset, event) in (1..).zip(events) {
            state.last_position += 1;
            let position = state.last_position;
            let version = base + offset;
            state.ids.insert(event.source.id, position);
            let metadata = &event.source.metadata;
            state.log.insert(
                position,
                StoredEvent {
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
                },
            );
            written.push(Written {
                version,
                position,
                commit: 0,
                recorded_at: now,
            });
        }
        let row = state
            .streams
            .entry(stream.as_str().to_owned())
            .or_insert_with(|| StreamRow::new(stream, &NewStream::default()));
        row.positions
            .extend(written.iter().map(|w| (w.version, w.position)));
        row.info.version = base + events.len() as u64;
        row.info.event_count += events.len() as u64;
        row.info.updated_at = now;
        row.info.last_event_id = events.last().map(|event| event.source.id);
        Ok(AppendOutcome::Written(written))
    }

    async fn create_stream(&self, stream: &StreamId, spec: &NewStream) -> Result<CreateOutcome> {
        let mut state = self.lock()?;
        let Some(row) = state.streams.get_mut(stream.as_str()) else {
            state
                .streams
                .insert(stream.as_str().to_owned(), StreamRow::new(stream, spec));
            return Ok(CreateOutcome::Created);
        };
        Ok(match row.info.status {
            StreamStatus::Active => CreateOutcome::Exists,
            StreamStatus::Tombstoned => CreateOutcome::Tombstoned,
            StreamStatus::Deleted => {
                let fresh = new_info(stream, spec);
                row.info = StreamInfo {
                    version: row.info.version,
                    event_count: row.info.event_count,
                    last_event_id: row.info.last_event_id,
                    ..fresh
                };
                CreateOutcome::Recreated
            }
        })
    }

    async fn stream_info(&self, stream: &StreamId) -> Result<Option<StreamInfo>> {
        let state = self.lock()?;
        Ok(state
            .streams
            .get(stream.as_str())
            .map(|row| row.info.clone()))
    }

    async fn list_streams(&self, query: &StreamListQuery) -> Result<Vec<StreamInfo>> {
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

    async fn delete_stream(&self, stream: &StreamId, mode: DeleteMode) -> Result<bool> {
        let mut state = self.lock()?;
        let state = &mut *state;
        let Some(row) = state.streams.get_mut(stream.as_str()) else {
            return Ok(false);
        };
        row.info.updated_at = Utc::now();
        match mode {
            DeleteMode::Soft if row.info.status == StreamStatus::Active => {
                row.info.status = StreamStatus::Deleted;
            }
            DeleteMode::Soft => {}
            DeleteMode::Hard => {
                row.info.status = StreamStatus::Tombstoned;
                row.info.event_count = 0;
                row.snapshots.clear();
                state.keys.remove(stream.as_str());
                for position in std::mem::take(&mut row.positions).into_values() {
                    if let Some(event) = state.log.remove(&position) {
                        state.ids.remove(&event.id);
                    }
                }
            }
        }
        Ok(true)
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

    async fn save_snapshot(&self, stream: &StreamId, snapshot: SnapshotWrite<'_>) -> Result<bool> {
        let mut state = self.lock()?;
        let Some(row) = state.streams.get_mut(stream.as_str()) else {
            return Ok(false);
        };
        if row.info.status != StreamStatus::Active || row.info.version < snapshot.version {
            return Ok(false);
        }
        row.snapshots.insert(
            snapshot.version,
            StoredSnapshot {
                version: snapshot.version,
                schema_version: snapshot.schema_version,
                payload: snapshot.payload.to_vec(),
                created_at: Utc::now(),
            },
        );
        if let Some(keep) = snapshot.keep {
            while row.snapshots.len() > keep {
                row.snapshots.pop_first();
            }
        }
        Ok(true)
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

    async fn delete_snapshots(&self, stream: &StreamId, version: Option<u64>) -> Result<u64> {
        let mut state = self.lock()?;
        let Some(row) = state.streams.get_mut(stream.as_str()) else {
            return Ok(0);
        };
        Ok(match version {
            Some(version) => u64::from(row.snapshots.remove(&version).is_some()),
            None => std::mem::take(&mut row.snapshots).len() as u64,
        })
    }

    fn is_sql(&self) -> bool {
        false
    }

    async fn begin_batch(&self, _flush: Flush) -> Result<Box<dyn DynTx>> {
        Ok(Box::new(MemoryTx {
            checkpoints: Arc::clone(&self.checkpoints),
            pending: None,
        }))
    }

    async fn last_position(&self) -> Result<u64> {
        Ok(self.lock()?.last_position)
    }

    fn kind(&self) -> &'static str {
        "memory"
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
        let checkpoints = self
            .checkpoints
            .lock()
            .map_err(|_| Error::Internal("memory store lock poisoned".into()))?;
        Ok(checkpoints.get(name).copied())
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
        for ((kind, name), json) in &state.policies {
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
        let mut state = self.lock()?;
        match policy {
            Some(json) => state
                .policies
                .insert((kind, name.to_owned()), json.to_owned()),
            None => state.policies.remove(&(kind, name.to_owned())),
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
        let mut state = self.lock()?;
        let state = &mut *state;
        let (mut events, mut bytes) = (0, 0);
        for cut in cuts {
            let Some(row) = state.streams.get_mut(&cut.stream) else {
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
                if let Some(event) = state.log.remove(&position) {
                    state.ids.remove(&event.id);
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
        let mut state = self.lock()?;
        if state.dictionaries.contains_key(&dictionary.id) {
            return Ok(false);
        }
        state.dictionaries.insert(dictionary.id, dictionary.clone());
        Ok(true)
    }

    async fn reseal_dictionary(
        &self,
        old: &StoredDictionary,
        new: &StoredDictionary,
    ) -> Result<bool> {
        let mut state = self.lock()?;
        match state.dictionaries.get_mut(&old.id) {
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

    async fn insert_stream_key(
        &self,
        stream: &str,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<Option<StoredKey>> {
        let mut state = self.lock()?;
        let tombstoned = state
            .streams
            .get(stream)
            .is_some_and(|row| row.info.status == StreamStatus::Tombstoned);
        if tombstoned {
            return Ok(None);
        }
        Ok(Some(
            state
                .keys
                .entry(stream.to_owned())
                .or_insert_with(|| StoredKey {
                    stream: stream.to_owned(),
                    key_id: Some(key_id.to_owned()),
                    wrapped: Some(wrapped.to_vec()),
                })
                .clone(),
        ))
    }

    async fn forget_stream_key(&self, stream: &str) -> Result<()> {
        self.lock()?.keys.insert(
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
        let mut state = self.lock()?;
        let mut done = 0;
        for (old, new) in keys {
            if let Some(stored) = state.keys.get_mut(&old.stream)
                && stored == old
            {
                *stored = new.clone();
                done += 1;
            }
        }
        Ok(done)
    }

    async fn replace_payloads(&self, payloads: &[(u64, Vec<u8>, Vec<u8>)]) -> Result<u64> {
        let mut state = self.lock()?;
        let mut done = 0;
        for (position, old, new) in payloads {
            if let Some(event) = state.log.get_mut(position)
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
        let mut state = self.lock()?;
        let mut done = 0;
        for (stream, version, old, new) in payloads {
            if let Some(snapshot) = state
                .streams
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

/// The memory backend's transaction. It has no transactions yet (issue 21, slice 16):
/// a checkpoint move is kept aside and stored on commit, if the checkpoint is still where
/// the move started; there is no outbox and no SQL.
#[derive(Debug)]
struct MemoryTx {
    checkpoints: MemoryCheckpoints,
    /// The checkpoint move to make on commit: name, expected position, new position.
    pending: Option<(String, LogPosition, LogPosition)>,
}

impl MemoryTx {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, LogPosition>> {
        self.checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Tx for MemoryTx {
    type Outbox = NoOutbox;

    async fn move_checkpoint(
        &mut self,
        name: &str,
        from: LogPosition,
        to: LogPosition,
    ) -> Result<bool> {
        let stored = self.table().get(name).copied().unwrap_or_default();
        self.pending = Some((name.to_owned(), from, to));
        Ok(stored == from)
    }

    async fn locked_checkpoint(&mut self, name: &str) -> Result<Option<LogPosition>> {
        Ok(self.table().get(name).copied())
    }

    /// Their times are not recorded (`updated_at` is `None`).
    async fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>> {
        let mut listed: Vec<StoredCheckpoint> = self
            .table()
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
        Ok(self.table().remove(name).is_some())
    }

    /// Not recorded.
    async fn record_skip(&mut self, _: &str, _: Uuid, _: u64, _: &str) -> Result<()> {
        Ok(())
    }

    async fn commit(self) -> Result<()> {
        if let Some((name, from, to)) = &self.pending {
            let mut checkpoints = self.table();
            let stored = checkpoints.entry(name.clone()).or_default();
            if stored != from {
                return Err(Error::Internal(
                    "a projection checkpoint moved during the batch".into(),
                ));
            }
            *stored = *to;
        }
        Ok(())
    }
}
