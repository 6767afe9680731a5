//! The [`Repository`]: loads aggregates (snapshot, then the events after it) and executes
//! commands against them with optimistic concurrency and bounded retries.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use tracing::Instrument;

use super::cache::{Cached, StateCache};
use super::{Aggregate, AggregateType};
use crate::domain_event::{DomainEvent, decode_error};
use crate::error::{Error, Result};
use crate::event::{EventMetadata, NewEvent, RecordedEvent};
use crate::read::LogPosition;
use crate::snapshot::NewSnapshot;
use crate::store::{PageKeys, Store, StoredSnapshot, WrittenEvent};
use crate::stream::{ExpectedVersion, StreamId};
use crate::telemetry;

/// `got`, the version of the event replayed after `version`, when it is the next one: a
/// gap means events were removed (a retention policy) that no usable snapshot covers,
/// and folding past it would give a state the stream never had.
fn next_version(stream: &StreamId, version: u64, got: u64) -> Result<u64> {
    if got == version + 1 {
        Ok(got)
    } else {
        Err(Error::HistoryUnavailable {
            stream: stream.to_string(),
            version: version + 1,
        })
    }
}

/// Why [`Repository::execute`] did not complete a command.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The aggregate refused the command; nothing was written.
    #[error("command rejected: {0}")]
    Domain(#[source] E),
    /// The store failed, or the stream kept changing under the command
    /// ([`Error::Conflict`] after the configured retries).
    #[error(transparent)]
    Store(#[from] Error),
}

impl<E: std::error::Error + 'static> CommandError<E> {
    /// The domain error, when the aggregate refused the command.
    pub fn domain(&self) -> Option<&E> {
        match self {
            CommandError::Domain(error) => Some(error),
            CommandError::Store(_) => None,
        }
    }

    /// Whether the command gave up on an optimistic-concurrency conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, CommandError::Store(Error::Conflict { .. }))
    }
}

/// An aggregate's state as loaded, at a version.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The stream version the state includes (0 for a stream without events).
    pub version: u64,
    /// The stream version of the snapshot the load started from, if one was used.
    pub from_snapshot: Option<u64>,
    /// How many stored events were read from the stream and applied (rows: an event an
    /// upcaster splits counts once, one whose type was dropped counts too).
    pub replayed: u64,
}

/// What [`Repository::execute`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Executed<A: AggregateType> {
    /// The state after the command.
    pub state: A,
    /// The stream version after the command.
    pub version: u64,
    /// The events written (none when the command produced none).
    pub events: Vec<WrittenEvent>,
    /// The domain events the command produced, as the aggregate returned them, in the
    /// order of [`Executed::events`].
    pub domain_events: Vec<A::Event>,
    /// How many times the command was tried (more than 1 after conflicts).
    pub attempts: u32,
}

impl<A: AggregateType> Executed<A> {
    /// Where the command's last event sits in the global log, to wait for it
    /// ([`ProjectionHandle::wait_until`](crate::ProjectionHandle::wait_until),
    /// [`Outbox::wait_until`](crate::Outbox::wait_until)); `None` when the command
    /// produced no event.
    pub fn log_position(&self) -> Option<LogPosition> {
        self.events.last().map(WrittenEvent::log_position)
    }
}

/// Loads and changes aggregates of type `A`. Cheap to clone: clones share the store and
/// the cache of recent states.
///
/// Streams are named `{A::NAME}-{id}`. `execute` queues commands per aggregate within
/// the repository (clones included) and keeps the states it wrote, so a busy aggregate
/// costs one round trip per command; writers in other processes are caught by the
/// append's expected-version check, which reloads and retries.
///
/// ```
/// # use chronicle::{Aggregate, DomainEvent};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// # enum CounterEvent { Incremented { by: u32 } }
/// # #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
/// # #[aggregate(name = "counter", event = CounterEvent)]
/// # struct Counter { total: u64 }
/// # #[derive(Debug, thiserror::Error)]
/// # #[error("zero")]
/// # struct Zero;
/// # impl Aggregate for Counter {
/// #     type Command = u32;
/// #     type Error = Zero;
/// #     fn apply(&mut self, CounterEvent::Incremented { by }: CounterEvent) { self.total += u64::from(by) }
/// #     fn handle(&self, by: &u32) -> Result<Vec<CounterEvent>, Zero> {
/// #         if *by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by: *by }]) }
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use chronicle::Store;
///
/// let store = Store::open("sqlite::memory:").await?;
/// let counters = store.repository::<Counter>().snapshot_every(50);
///
/// counters.execute("7", 5).await?;
/// let done = counters.execute("7", 2).await?;
/// assert_eq!((done.state.total, done.version), (7, 2));
///
/// let loaded = counters.load("7").await?.expect("the stream exists");
/// assert_eq!(loaded.state.total, 7);
/// assert!(counters.execute("7", 0).await.is_err_and(|error| error.domain().is_some()));
/// # Ok(()) }
/// ```
pub struct Repository<A: Aggregate> {
    store: Store,
    settings: Settings,
    cache: Arc<StateCache<A>>,
    snapshot_failures: Arc<AtomicU64>,
    _aggregate: PhantomData<fn() -> A>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    snapshot_every: Option<u64>,
    keep_snapshots: usize,
    max_attempts: u32,
}

/// The default number of tries of a command that meets conflicts.
pub const DEFAULT_COMMAND_ATTEMPTS: u32 = 10;
/// The default number of aggregate states a repository keeps.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

impl<A: Aggregate> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            settings: self.settings,
            cache: Arc::clone(&self.cache),
            snapshot_failures: Arc::clone(&self.snapshot_failures),
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> fmt::Debug for Repository<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &A::NAME)
            .field("snapshot_every", &self.settings.snapshot_every)
            .field("keep_snapshots", &self.settings.keep_snapshots)
            .field("max_attempts", &self.settings.max_attempts)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A repository of aggregates `A` on this store, with the snapshot policy of `A`'s
    /// derive attribute, up to [`DEFAULT_COMMAND_ATTEMPTS`] tries per command and a cache
    /// of [`DEFAULT_CACHE_CAPACITY`] states; the methods of [`Repository`] change these.
    pub fn repository<A: Aggregate>(&self) -> Repository<A> {
        Repository {
            store: self.clone(),
            settings: Settings {
                snapshot_every: A::SNAPSHOT_EVERY.filter(|every| *every > 0),
                keep_snapshots: 2,
                max_attempts: DEFAULT_COMMAND_ATTEMPTS,
            },
            cache: Arc::new(StateCache::new(DEFAULT_CACHE_CAPACITY)),
            snapshot_failures: Arc::new(AtomicU64::new(0)),
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> Repository<A> {
    /// Take a snapshot whenever a command carries the stream past a multiple of `events`
    /// (0 turns snapshots off). Overrides the derive attribute's `snapshot_every`.
    pub fn snapshot_every(mut self, events: u64) -> Self {
        self.settings.snapshot_every = (events > 0).then_some(events);
        self
    }

    /// Keep the newest `count` snapshots of each stream (default 2, at least 1).
    pub fn keep_snapshots(mut self, count: usize) -> Self {
        self.settings.keep_snapshots = count.max(1);
        self
    }

    /// Try a command at most `attempts` times (at least 1) when it meets conflicts, with
    /// a short random pause between tries.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts.max(1);
        self
    }

    /// Keep up to `states` recently used aggregate states between commands (0 keeps
    /// none: every command loads its aggregate). The repository gets a cache of its own.
    pub fn cache_capacity(mut self, states: usize) -> Self {
        self.cache = Arc::new(StateCache::new(states));
        self
    }

    /// The store under this repository.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How many snapshot writes failed since the repository was made (each was logged;
    /// none failed its command).
    pub fn snapshot_failures(&self) -> u64 {
        self.snapshot_failures.load(Ordering::Relaxed)
    }

    /// The stream id of the aggregate `id`: `{A::NAME}-{id}`.
    ///
    /// # Errors
    /// [`Error::Validation`] when the id makes an invalid stream id.
    pub fn stream_id(&self, id: impl fmt::Display) -> Result<StreamId> {
        StreamId::new(format!("{}-{id}", A::NAME))
    }

    /// The aggregate's current state, or `None` when its stream does not exist.
    ///
    /// Starts from the newest snapshot when its schema version is `A::SNAPSHOT_VERSION`
    /// and applies the events after it; on PostgreSQL the stream's row, the snapshot and
    /// the first page of events come in one round trip. A newest snapshot of another
    /// version, or one that does not decode, is skipped (with a warning for the latter):
    /// the load starts from the next older snapshot it can use (or, with none, replays the
    /// whole stream), and the snapshot is replaced when snapshots are on.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`] for a deleted stream; decoding errors naming the event;
    /// connection errors.
    pub async fn load(&self, id: impl fmt::Display) -> Result<Option<Loaded<A>>> {
        let stream = self.stream_id(id)?;
        let span = tracing::debug_span!("chronicle.load", stream = %stream);
        async {
            let (loaded, replace_snapshot) = self.load_stream(&stream, u64::MAX).await?;
            if let (Some(loaded), true, Some(_)) =
                (&loaded, replace_snapshot, self.settings.snapshot_every)
                && loaded.version > 0
            {
                self.snapshot_quietly(&stream, &loaded.state, loaded.version)
                    .await;
            }
            Ok(loaded)
        }
        .instrument(span)
        .await
    }

    /// The aggregate's state as of `version` (history), or `None` when its stream does
    /// not exist. A `version` past the stream's end gives the current state; see
    /// [`Loaded::version`].
    ///
    /// # Errors
    /// As [`Repository::load`].
    pub async fn load_at(&self, id: impl fmt::Display, version: u64) -> Result<Option<Loaded<A>>> {
        let stream = self.stream_id(id)?;
        let span = tracing::debug_span!("chronicle.load_at", stream = %stream, version);
        let (loaded, _) = self.load_stream(&stream, version).instrument(span).await?;
        Ok(loaded)
    }

    /// Loads `stream` up to `max_version`; the flag says the newest snapshot was unusable.
    async fn load_stream(
        &self,
        stream: &StreamId,
        max_version: u64,
    ) -> Result<(Option<Loaded<A>>, bool)> {
        let Some(start) = self.store.replay_start(stream, max_version).await? else {
            return Ok((None, false));
        };
        let head = start.head.min(max_version);
        let (base, unusable) = self
            .usable_snapshot(stream, start.snapshot, &start.keys)
            .await?;
        let from_snapshot = base.as_ref().map(|(_, version)| *version);
        let (mut state, mut version) = base.unwrap_or_default();
        let mut replayed = 0;
        // The first page follows the newest snapshot; when that snapshot is of another
        // schema version or did not decode here, the page is of no use and the replay
        // starts over.
        let (first, done) = if start.events_after == version {
            (start.events, start.complete)
        } else {
            (Vec::new(), false)
        };
        // The rest starts loading before the first page is decoded and applied.
        let next = first.last().map_or(version, |row| row.version);
        let rest = (!done && next < head).then(|| {
            self.store
                .clone()
                .replay::<A::Event>(stream.clone(), next + 1, head)
        });
        let first = self
            .store
            .decode_replayed_page::<A::Event>(stream, first, start.keys)
            .await?;
        // Versions are the stored rows': a split row's events share one, a dropped
        // type's row still takes its own.
        for decoded in first {
            let (event_version, events) = decoded?;
            version = next_version(stream, version, event_version)?;
            events.into_iter().for_each(|event| state.apply(event));
            replayed += 1;
        }
        if let Some(events) = rest {
            futures::pin_mut!(events);
            while let Some((event_version, events)) = events.try_next().await? {
                version = next_version(stream, version, event_version)?;
                events.into_iter().for_each(|event| state.apply(event));
                replayed += 1;
            }
        }
        if version < head {
            return Err(Error::HistoryUnavailable {
                stream: stream.to_string(),
                version: version + 1,
            });
        }
        let source = if from_snapshot.is_some() {
            "snapshot"
        } else {
            "events"
        };
        metrics::counter!(telemetry::AGGREGATE_LOADS, "aggregate" => A::NAME, "source" => source)
            .increment(1);
        metrics::counter!(telemetry::AGGREGATE_REPLAYED, "aggregate" => A::NAME)
            .increment(replayed);
        let loaded = Loaded {
            state,
            version,
            from_snapshot,
            replayed,
        };
        Ok((Some(loaded), unusable))
    }

    /// The state in `stored` when this code can use it, else in the next older snapshot
    /// that it can use, if any; and whether the newest snapshot had to be skipped (another
    /// schema version, or bytes that do not decode), so that it is replaced.
    async fn usable_snapshot(
        &self,
        stream: &StreamId,
        stored: Option<StoredSnapshot>,
        keys: &PageKeys,
    ) -> Result<(Option<(A, u64)>, bool)> {
        let Some(stored) = stored else {
            return Ok((None, false));
        };
        let version = stored.version;
        if stored.usable_for(A::SNAPSHOT_VERSION) {
            match self.store.snapshot_state::<A>(stream, stored, keys) {
                Ok(state) => return Ok((Some(state), false)),
                Err(error) => {
                    tracing::warn!(%stream, version, %error, "snapshot does not decode; trying the older ones");
                }
            }
        } else {
            // Written before a change of the snapshot's schema: older ones are older
            // still, so the load replays from the start (and replaces it).
            tracing::debug!(
                %stream,
                stored = stored.schema_version,
                current = A::SNAPSHOT_VERSION,
                "snapshot has another schema version; replaying"
            );
            return Ok((None, true));
        }
        let older = self
            .store
            .older_usable_snapshot::<A>(stream, version, A::SNAPSHOT_VERSION)
            .await?;
        Ok((older, true))
    }

    /// Runs `command` against the aggregate `id`: load, handle, append with
    /// `Exact(version)`; on a conflict, reload and try again (see
    /// [`Repository::max_attempts`]).
    ///
    /// # Errors
    /// [`CommandError::Domain`] when the aggregate refuses the command (nothing is
    /// written); [`CommandError::Store`] with [`Error::Conflict`] when every try met a
    /// conflict, or with the store's error.
    pub async fn execute(
        &self,
        id: impl fmt::Display,
        command: A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        self.execute_with(id, command, EventMetadata::default())
            .await
    }

    /// [`Repository::execute`] for a command that runs because of `cause`: every event
    /// written gets `causation_id` = the cause's id and the cause's `correlation_id` (or,
    /// when it has none, the cause's id), as [`EventMetadata::caused_by`] says. Outbox
    /// handlers ([`HandlerRequest::execute`](crate::HandlerRequest::execute)) and process
    /// managers do this for you; to set other fields too, pass
    /// `metadata.caused_by(&cause)` to [`Repository::execute_with`].
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub async fn execute_caused_by(
        &self,
        cause: &RecordedEvent,
        id: impl fmt::Display,
        command: A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        self.execute_with(id, command, EventMetadata::default().caused_by(cause))
            .await
    }

    /// [`Repository::execute`], with `metadata` (correlation, causation, user, tenant …)
    /// on every event written.
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub async fn execute_with(
        &self,
        id: impl fmt::Display,
        command: A::Command,
        metadata: EventMetadata,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let stream = self.stream_id(id)?;
        let span = tracing::info_span!(
            "chronicle.execute",
            aggregate.r#type = A::NAME,
            aggregate.id = %stream,
            attempts = tracing::field::Empty,
        );
        let executed = self
            .run_command(&stream, &command, &metadata)
            .instrument(span.clone())
            .await;
        let outcome = match &executed {
            Ok(executed) => {
                span.record("attempts", executed.attempts);
                "ok"
            }
            Err(CommandError::Domain(_)) => "rejected",
            Err(_) => "error",
        };
        metrics::counter!(telemetry::COMMANDS, "aggregate" => A::NAME, "outcome" => outcome)
            .increment(1);
        executed
    }

    async fn run_command(
        &self,
        stream: &StreamId,
        command: &A::Command,
        metadata: &EventMetadata,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let slot = self.cache.slot(stream.as_str());
        let mut cached = slot.lock().await;
        let mut attempt = 0;
        // An unusable snapshot met while loading is replaced after the command.
        let mut replace_snapshot = false;
        let (executed, snapshot_due) = loop {
            attempt += 1;
            let Cached { mut state, version } = match cached.take() {
                Some(current) => {
                    metrics::counter!(telemetry::AGGREGATE_LOADS, "aggregate" => A::NAME, "source" => "cache")
                        .increment(1);
                    current
                }
                None => {
                    let (loaded, unusable) = self.load_stream(stream, u64::MAX).await?;
                    replace_snapshot |= unusable;
                    loaded.map_or_else(
                        || Cached {
                            state: A::default(),
                            version: 0,
                        },
                        |loaded| Cached {
                            state: loaded.state,
                            version: loaded.version,
                        },
                    )
                }
            };
            let events = match state.handle(command) {
                Ok(events) => events,
                Err(error) => {
                    self.keep(&mut cached, state, version);
                    return Err(CommandError::Domain(error));
                }
            };
            if events.is_empty() {
                self.keep(&mut cached, state.clone(), version);
                let executed = Executed {
                    state,
                    version,
                    events: Vec::new(),
                    domain_events: events,
                    attempts: attempt,
                };
                break (executed, false);
            }
            let (new_events, read_back) = encode_events::<A>(stream, &events, metadata)?;
            match self
                .store
                .append(stream.as_str(), ExpectedVersion::Exact(version), new_events)
                .await
            {
                Ok(written) => {
                    for event in read_back {
                        state.apply(event);
                    }
                    let new_version = written.next_expected_version();
                    self.keep(&mut cached, state.clone(), new_version);
                    let due = self.settings.snapshot_every.is_some_and(|every| {
                        replace_snapshot || version / every < new_version / every
                    });
                    let executed = Executed {
                        state,
                        version: new_version,
                        events: written.events,
                        domain_events: events,
                        attempts: attempt,
                    };
                    break (executed, due);
                }
                Err(Error::Conflict { .. }) if attempt < self.settings.max_attempts => {
                    tracing::debug!(%stream, attempt, "conflict; reloading and retrying the command");
                    tokio::time::sleep(conflict_pause(attempt)).await;
                }
                Err(error) => return Err(error.into()),
            }
        };
        // The next command on this aggregate need not wait for the snapshot.
        drop(cached);
        if snapshot_due {
            self.snapshot_quietly(stream, &executed.state, executed.version)
                .await;
        }
        Ok(executed)
    }

    fn keep(&self, slot: &mut Option<Cached<A>>, state: A, version: u64) {
        if self.cache.keeps_states() {
            *slot = Some(Cached { state, version });
        }
    }

    /// Saves a snapshot; a failure is logged and counted, never returned.
    async fn snapshot_quietly(&self, stream: &StreamId, state: &A, version: u64) {
        if let Err(error) = self.save_snapshot(stream, state, version).await {
            self.snapshot_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%stream, version, %error, "snapshot not saved; the command is unaffected");
        }
    }

    async fn save_snapshot(&self, stream: &StreamId, state: &A, version: u64) -> Result<()> {
        let snapshot = NewSnapshot::from_serialize(version, A::SNAPSHOT_VERSION, state)?
            .keep_latest(self.settings.keep_snapshots);
        self.store.save_snapshot(stream.as_str(), snapshot).await
    }

    /// Snapshots the aggregate's current state now, whatever the policy; returns the
    /// version it covers, or `None` when the stream does not exist.
    ///
    /// # Errors
    /// As [`Repository::load`], and the store's errors saving the snapshot.
    pub async fn create_snapshot(&self, id: impl fmt::Display) -> Result<Option<u64>> {
        let stream = self.stream_id(id)?;
        let span = tracing::debug_span!("chronicle.create_snapshot", stream = %stream);
        async {
            let Some(loaded) = self.load_stream(&stream, u64::MAX).await?.0 else {
                return Ok(None);
            };
            self.save_snapshot(&stream, &loaded.state, loaded.version)
                .await?;
            Ok(Some(loaded.version))
        }
        .instrument(span)
        .await
    }

    /// The aggregate's newest snapshot of the current `A::SNAPSHOT_VERSION`, as a state
    /// and the stream version it covers, or `None` when there is none (snapshots of other
    /// schema versions are not deserialized).
    ///
    /// # Errors
    /// [`Error::SnapshotCodec`] / [`Error::SnapshotPayload`] when it does not decode.
    pub async fn latest_snapshot(&self, id: impl fmt::Display) -> Result<Option<(A, u64)>> {
        let stream = self.stream_id(id)?;
        match self
            .store
            .latest_snapshot(stream.as_str(), u64::MAX)
            .await?
        {
            Some(snapshot) if snapshot.usable_for(A::SNAPSHOT_VERSION) => {
                Ok(Some((snapshot.data()?, snapshot.version)))
            }
            _ => Ok(None),
        }
    }

    /// The aggregate's snapshots, newest first.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn list_snapshots(
        &self,
        id: impl fmt::Display,
    ) -> Result<Vec<crate::snapshot::SnapshotInfo>> {
        self.store
            .list_snapshots(self.stream_id(id)?.as_str())
            .await
    }

    /// Deletes the aggregate's snapshot at `version`, or all of them; returns how many.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn delete_snapshots(
        &self,
        id: impl fmt::Display,
        version: Option<u64>,
    ) -> Result<u64> {
        self.store
            .delete_snapshots(self.stream_id(id)?.as_str(), version)
            .await
    }
}

/// The events to append, and the same events as a load will read them back (decoded from
/// their payloads). Applying the read-back values keeps the cached state and snapshots
/// equal to what the store holds, even when encoding drops something (`#[serde(skip)]`);
/// an event that does not read back is refused before anything is written.
fn encode_events<A: Aggregate>(
    stream: &StreamId,
    events: &[A::Event],
    metadata: &EventMetadata,
) -> Result<(Vec<NewEvent>, Vec<A::Event>)> {
    let mut new_events = Vec::with_capacity(events.len());
    let mut read_back = Vec::with_capacity(events.len());
    for event in events {
        let new_event = event.to_new_event()?.metadata(metadata.clone());
        let decoded = A::Event::decode(new_event.event_type(), new_event.payload_json()).map_err(
            |error| {
                decode_error::<A::Event>(
                    error,
                    stream,
                    new_event.event_id(),
                    new_event.event_type(),
                )
            },
        )?;
        read_back.push(decoded);
        new_events.push(new_event);
    }
    Ok((new_events, read_back))
}

/// A random pause before retrying after the `attempt`-th conflict (from 1): up to 1, 2,
/// 4 … 32 ms, so competing writers spread out.
fn conflict_pause(attempt: u32) -> Duration {
    let ceiling = 1u64 << attempt.saturating_sub(1).min(5);
    Duration::from_micros(fastrand::u64(0..=ceiling * 1000))
}
