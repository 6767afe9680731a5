//! The [`Store`]: appends, reads and stream management on any backend.
//!
//! `Store` is the one place where policy lives: it validates input, runs payloads through
//! the codec, retries transient failures, applies timeouts, recognises idempotent
//! replays, pages long reads and opens a `tracing` span per operation. The backends under
//! it (`memory`, `sqlite`, `postgres`) only move rows; see `backend`.

mod append;
pub(crate) mod backend;
pub(crate) mod batch;
mod builder;
mod connect;
mod dictionaries;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod dictionaries_sql;
pub(crate) mod hooks;
mod key_cache;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod keys_sql;
mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod migrate;
mod paging;
#[cfg(feature = "postgres")]
mod postgres;
mod replay;
pub(crate) mod requests;
mod retention;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod retention_sql;
mod retry;
mod rotation;
mod snapshots;
pub(crate) mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
mod storage;
mod stream_keys;
pub(crate) mod stream_rows;
mod streams;

use std::collections::HashMap;
use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt, stream};
use tracing::Instrument;
use uuid::Uuid;

pub use append::{AppendResult, WrittenEvent};
pub use builder::{DEFAULT_MAX_EVENT_SIZE, DEFAULT_MAX_EVENTS_PER_APPEND, StoreBuilder};
pub use connect::{DEFAULT_CONNECT_TIMEOUT, StoreTarget};
pub use dictionaries::{DICTIONARY_MAX_BYTES, DICTIONARY_SAMPLE_EVENTS, TrainedDictionary};
pub use migrate::Migrations;
pub use rotation::{KeyRotation, RotationProgress};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteDurability;
pub use storage::StorageStats;
pub use stream_keys::ShreddedEvents;

pub(crate) use self::key_cache::PageKeys;

pub(crate) use self::backend::StoredSnapshot;
pub(crate) use self::backend::WindowLimit;
use self::backend::{AppendOutcome, Backend, EncodedEvent, StoredEvent};
use self::paging::{PageSizes, Reach, RowsHint, StreamCursor};
use self::retry::RetryPolicy;
use crate::codec::{Codec, CodecError, DataKey, Dictionary, event_context};
use crate::domain_event::{DomainEvent, EventView};
use crate::error::{CorruptRow, CorruptValue, Error, Result};
use crate::event::{EventMetadata, NewEvent, RecordedEvent};
use crate::read::{EventParts, EventQuery, LogPosition};
use crate::retention::rules::RulesCache;
use crate::stream::{AppendGuard, Direction, ExpectedVersion, StreamId, StreamStatus};
use crate::telemetry;
use crate::text;
use crate::upcast::{Decoded, UpcastTable};

/// The default byte budget of a page of a read (a page of [`Store::read_stream`],
/// [`Store::read_all`] or an aggregate's replay; see
/// [`StoreBuilder::read_budget_bytes`]) and of a window of the log (a projection's batch,
/// an outbox processor's or a re-encryption's window): 32 MiB of stored payloads. A page
/// ends at the event that reaches it, or at its event count, whichever comes first.
pub const DEFAULT_WINDOW_BYTES: usize = 32 << 20;

/// The store's limits and read settings, from the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest JSON payload an append accepts, in bytes.
    pub max_event_size: usize,
    /// Most events in one append.
    pub max_events_per_append: usize,
    /// Events fetched per round trip by reads.
    pub page_size: usize,
    /// Bytes of stored payloads a page of a read stops at (the event that reaches them is
    /// the page's last).
    pub read_budget: usize,
    /// How long `read_all` waits for events held back by running transactions.
    pub settle_timeout: Duration,
    /// Whether the public reads return undecodable events (payload left out) rather than
    /// an error item.
    pub keep_undecodable: bool,
}

/// An event store. Cheap to clone: clones share the connection pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> chronicle::Result<()> {
/// use chronicle::{Direction, ExpectedVersion, NewEvent, Store};
/// use futures::TryStreamExt;
/// use serde_json::json;
///
/// let store = Store::open("sqlite::memory:").await?;
/// store
///     .append("account-1", ExpectedVersion::NoStream, vec![
///         NewEvent::new("account.opened", json!({ "owner": "ada" })),
///     ])
///     .await?;
///
/// let events: Vec<_> = store
///     .read_stream("account-1", 1, Direction::Forward)
///     .try_collect()
///     .await?;
/// assert_eq!(events[0].json()?["owner"], "ada");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Arc<dyn Backend>,
    /// What the backend can do, read once at open.
    capabilities: backend::Capabilities,
    codec: Codec,
    retry: RetryPolicy,
    upcasters: UpcastTable,
    /// Projections run inside every append's transaction.
    inline: hooks::AppendHooks,
    limits: Limits,
    /// Bumped after every append that wrote events (and, on PostgreSQL, on every
    /// notification of another process's append): wakes the projections.
    appended: tokio::sync::watch::Sender<u64>,
    /// Whether a task forwards the backend's append feed into `appended`.
    listening: std::sync::Mutex<bool>,
    /// The retention policies in force, as reads check them.
    retention: RulesCache,
    /// Per-stream data keys: whether streams get one, and the unwrapped ones.
    keys: key_cache::StreamKeys,
    /// The compression dictionaries loaded, and the active one.
    dictionaries: dictionaries::DictionaryCache,
    /// Wakes the task that announces this store's appends to other processes, where the
    /// backend can (PostgreSQL).
    announcer: Option<Arc<tokio::sync::Notify>>,
    /// How many rows a page of one stream asks for (on a backend that sends every row).
    stream_rows: RowsHint,
    /// How many rows a window of the log asks for (on a backend that sends every row).
    log_rows: RowsHint,
}

impl Store {
    /// Opens the store at `target` (a URL, or the driver's options or pool: see
    /// [`StoreTarget`]) with default settings; see [`StoreBuilder`] for the URLs and
    /// settings.
    ///
    /// # Errors
    /// As [`StoreBuilder::open`].
    pub async fn open(target: impl Into<StoreTarget>) -> Result<Store> {
        Store::builder(target).open().await
    }

    /// A builder for a store at `target`: a URL (`&str`, `String`), a `PgPool`,
    /// `PgConnectOptions` or `SqliteConnectOptions` ([`StoreTarget`]).
    pub fn builder(target: impl Into<StoreTarget>) -> StoreBuilder {
        StoreBuilder::new(target)
    }

    /// Applies the pending migrations at `target` without opening a store (the deploy
    /// step), and returns their names; for a PostgreSQL schema other than `public`, or TLS
    /// settings, use [`StoreBuilder::migrate`].
    ///
    /// # Errors
    /// As [`StoreBuilder::migrate`].
    pub async fn migrate(target: impl Into<StoreTarget>) -> Result<Vec<String>> {
        Store::builder(target).migrate().await
    }

    fn from_parts(
        backend: Arc<dyn Backend>,
        codec: Codec,
        retry: RetryPolicy,
        upcasters: UpcastTable,
        inline: hooks::AppendHooks,
        limits: Limits,
        per_stream_keys: bool,
    ) -> Self {
        let capabilities = backend.capabilities();
        let announcer = (capabilities.append_notices == backend::AppendNotices::OtherProcesses)
            .then(|| Arc::new(tokio::sync::Notify::new()));
        let sends_every_row = capabilities.answers == backend::Answers::Whole;
        let store = Store {
            inner: Arc::new(Inner {
                backend,
                capabilities,
                codec,
                retry,
                upcasters,
                inline,
                limits,
                appended: tokio::sync::watch::Sender::new(0),
                listening: std::sync::Mutex::new(false),
                announcer: announcer.clone(),
                retention: RulesCache::new(Duration::from_secs(1)),
                keys: key_cache::StreamKeys::new(per_stream_keys),
                dictionaries: dictionaries::DictionaryCache::default(),
                stream_rows: RowsHint::new(
                    sends_every_row,
                    RowsHint::first_stream_rows(limits.read_budget, limits.max_event_size),
                ),
                log_rows: RowsHint::new(sends_every_row, paging::FIRST_WINDOW_ROWS),
            }),
        };
        if let Some(wake) = announcer {
            tokio::spawn(announce_appends(Arc::downgrade(&store.inner), wake));
        }
        store
    }

    /// Appends `events` to `stream` if it is at the `expected` version, atomically: all of
    /// them or none. Appending to a stream that does not exist creates it (with `Any`,
    /// `NoStream` or `Exact(0)`; `StreamExists` and `Exact(n > 0)` conflict).
    ///
    /// Re-sending a batch whose event ids are already stored in this stream, in order, with
    /// the same content, succeeds without writing anything
    /// ([`AppendResult::already_stored`]); that makes retries after a lost answer safe.
    ///
    /// # Errors
    /// - [`Error::Conflict`] when the stream is not at `expected`;
    /// - [`Error::StreamDeleted`] when the stream was deleted;
    /// - [`Error::EventIdReused`] when an id is stored with other content or elsewhere;
    /// - [`Error::Validation`] for a bad stream id, an empty batch, too many events, or an
    ///   event over `max_event_size`;
    /// - [`Error::Connection`] / [`Error::Timeout`] when the database did not answer.
    pub async fn append(
        &self,
        stream: impl AsRef<str>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let span = tracing::debug_span!("chronicle.append", stream = stream.as_ref(), %expected, events = events.len());
        let started = std::time::Instant::now();
        let appended = self
            .append_inner(stream.as_ref(), expected, events)
            .instrument(span)
            .await;
        let outcome = match &appended {
            Ok(_) => "ok",
            Err(Error::Conflict { .. }) => "conflict",
            Err(_) => "error",
        };
        metrics::counter!(telemetry::APPENDS, "outcome" => outcome).increment(1);
        metrics::histogram!(telemetry::APPEND_SECONDS).record(started.elapsed().as_secs_f64());
        appended
    }

    /// Appends an application event: one raised outside any aggregate (an import
    /// finished, a timer fired), so that projections and the outbox's handlers see it like
    /// any other. It goes to a stream of its own, `app-{event id}` (no two raises wait on
    /// each other), created by the append; raising the same event again is an idempotent
    /// replay.
    ///
    /// # Errors
    /// As [`Store::append`].
    pub async fn raise(&self, event: NewEvent) -> Result<AppendResult> {
        let stream = format!("app-{}", event.id);
        self.append(stream, ExpectedVersion::NoStream, vec![event])
            .await
    }

    async fn append_inner(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        for event in &mut events {
            telemetry::stamp(&mut event.metadata);
        }
        let stream = StreamId::new(stream)?;
        append::validate(&stream, &events, &self.inner.limits)?;
        if let ExpectedVersion::Exact(version) = expected
            && version > append::MAX_VERSION
        {
            // No stream gets there; the databases' integers would overflow on the way.
            let actual = self
                .stream_info(stream.as_str())
                .await?
                .map(|info| info.version);
            return Err(Error::Conflict {
                stream: stream.to_string(),
                expected,
                actual,
            });
        }
        let key = self.write_key(&stream).await?;
        let dictionary = self.write_dictionary().await?;
        let encoded = events
            .iter()
            .map(|event| self.encode(&stream, event, key.as_deref(), dictionary.as_deref()))
            .collect::<Result<Vec<_>>>()?;
        let backend = &self.inner.backend;
        let outcome = if self.inner.inline.is_empty() {
            let append = || self.append_direct(&stream, expected.guard(), &encoded);
            self.inner.retry.run("append", append).await?
        } else {
            let append = || self.append_inline(&stream, expected, &events, &encoded);
            self.inner.retry.run("append", append).await?
        };
        let rejection = match outcome {
            AppendOutcome::Written(written) => {
                metrics::counter!(telemetry::APPENDED_EVENTS).increment(events.len() as u64);
                let bytes: usize = encoded.iter().map(|event| event.payload.len()).sum();
                metrics::counter!(telemetry::APPENDED_BYTES).increment(bytes as u64);
                self.inner
                    .appended
                    .send_modify(|count| *count = count.wrapping_add(1));
                if let Some(announcer) = &self.inner.announcer {
                    announcer.notify_one();
                }
                return Ok(AppendResult::new(&stream, &events, &written));
            }
            AppendOutcome::Deleted { hard } => {
                return Err(Error::StreamDeleted {
                    stream: stream.to_string(),
                    hard,
                });
            }
            AppendOutcome::Conflict { actual } => Error::Conflict {
                stream: stream.to_string(),
                expected,
                actual,
            },
            AppendOutcome::DuplicateEventId => Error::Internal(format!(
                "append to `{stream}`: an event id vanished while checking for a replay"
            )),
            AppendOutcome::NotMatched => {
                return Err(Error::Internal(format!(
                    "append to `{stream}`: an unsettled write reached the store"
                )));
            }
        };
        // Rejected: unless every event is already stored (a replay), the rejection stands.
        let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
        let stored = self
            .inner
            .retry
            .run("append", || backend.events_by_id(&ids))
            .await?;
        let keys = self.keys_of(&stored).await?;
        let stored = self
            .recorded_page(
                stored,
                EventParts::ALL,
                &keys,
                |event, failed| match failed {
                    None => Some(Ok(event)),
                    Some(error) => Some(Err(error)),
                },
            )?
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        match append::resolve_replay(&stream, expected, &events, stored)? {
            Some(result) => {
                tracing::debug!(%stream, "append was already stored; nothing written");
                Ok(result)
            }
            None => Err(rejection),
        }
    }

    /// An append outside a transaction; a write that matched no row is settled in one.
    async fn append_direct(
        &self,
        stream: &StreamId,
        guard: AppendGuard,
        encoded: &[EncodedEvent<'_>],
    ) -> Result<AppendOutcome> {
        let backend = &*self.inner.backend;
        let outcome = backend.append(stream, guard, encoded).await?;
        if outcome != AppendOutcome::NotMatched {
            return Ok(outcome);
        }
        let mut tx = backend.begin_batch(batch::Flush::Wait).await?;
        let outcome = append::settle(backend, &mut *tx, stream, guard, encoded).await?;
        if let AppendOutcome::Written(_) = outcome {
            tx.commit().await?;
        }
        Ok(outcome)
    }

    /// An append in a transaction that also runs the inline projections on the events
    /// written, and commits only when they succeed.
    async fn append_inline(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
        encoded: &[EncodedEvent<'_>],
    ) -> Result<AppendOutcome> {
        let backend = &*self.inner.backend;
        let guard = expected.guard();
        let mut tx = backend.begin_batch(batch::Flush::Wait).await?;
        let mut outcome = backend.append_in(&mut *tx, stream, guard, encoded).await?;
        if outcome == AppendOutcome::NotMatched {
            outcome = append::settle(backend, &mut *tx, stream, guard, encoded).await?;
        }
        if let AppendOutcome::Written(written) = &outcome {
            let recorded: Vec<RecordedEvent> = events
                .iter()
                .zip(written)
                .map(|(event, written)| RecordedEvent::written(stream, event, written))
                .collect();
            self.inner.inline.apply(&recorded, &mut *tx, self).await?;
            tx.commit().await?;
        }
        Ok(outcome)
    }

    fn encode<'a>(
        &self,
        stream: &StreamId,
        event: &'a NewEvent,
        key: Option<&DataKey>,
        dictionary: Option<&Dictionary>,
    ) -> Result<EncodedEvent<'a>> {
        let payload = self
            .inner
            .codec
            .encode_with(
                &event.payload,
                || event_context(event.id, stream.as_str()),
                key,
                dictionary,
            )
            .map_err(|source| Error::Codec {
                stream: stream.to_string(),
                event_id: event.id,
                source,
            })?;
        Ok(EncodedEvent {
            source: event,
            payload,
            extra_metadata: event.metadata.extra_json(),
        })
    }

    /// A page of stored events as [`RecordedEvent`]s: the one place a stored event is
    /// decoded. Each event's extra metadata is parsed and its payload decoded (with its
    /// stream's data key from `keys`), then `each` makes of it what the read returns, or
    /// leaves it out (`None`): it gets the event, and the error its payload failed with
    /// (the event's payload is then empty). A page read without some `parts` has them
    /// empty, and its payloads, not read, are not decoded.
    ///
    /// Callers run this inside their decode closure ([`paging::off_runtime`]) where the
    /// page is large.
    ///
    /// # Errors
    /// [`Error::CorruptRow`] naming the `metadata` column when an event's extra metadata is
    /// not JSON of the shape chronicle writes: the whole page fails, as for any other
    /// corrupt value in its rows.
    fn recorded_page<T>(
        &self,
        page: Vec<StoredEvent>,
        parts: EventParts,
        keys: &PageKeys,
        mut each: impl FnMut(RecordedEvent, Option<Error>) -> Option<T>,
    ) -> Result<Vec<T>> {
        let codec = &self.inner.codec;
        let mut out = Vec::with_capacity(page.len());
        for stored in page {
            let StoredEvent {
                id,
                stream_id,
                version,
                position,
                commit,
                event_type,
                schema_version,
                payload,
                correlation_id,
                causation_id,
                tenant_id,
                user_id,
                extra_metadata,
                recorded_at,
            } = stored;
            let metadata = EventMetadata::from_parts(
                correlation_id,
                causation_id,
                tenant_id,
                user_id,
                extra_metadata.as_deref(),
            )
            .map_err(|error| corrupt_metadata(&stream_id, version, id, error))?;
            let stream = stream_id.as_str();
            let decoded = if parts.payload() {
                codec.decode(payload, || event_context(id, stream), keys.get(stream))
            } else {
                // Not read (a lean window): empty, and nothing to decode.
                Ok(payload)
            };
            let (payload, failed) = match decoded {
                Ok(payload) => (payload, None),
                Err(source) => (Vec::new(), Some(codec_error(stream, id, source))),
            };
            let event = RecordedEvent {
                id,
                stream_id,
                version,
                position,
                event_type,
                schema_version,
                metadata,
                recorded_at,
                commit,
                payload,
                unreadable: None,
            };
            out.extend(each(event, failed));
        }
        Ok(out)
    }

    /// `events` decoded each on its own for a public read (one that fails does not hide
    /// the others; see [`Store::for_reader`]), looking up the data keys they need first.
    async fn decode_each(&self, events: Vec<StoredEvent>) -> Result<Vec<Result<RecordedEvent>>> {
        let keys = self.keys_of(&events).await?;
        metrics::counter!(telemetry::READ_EVENTS).increment(events.len() as u64);
        self.recorded_page(events, EventParts::ALL, &keys, |event, failed| {
            Some(self.for_reader(event, failed))
        })
    }

    /// An event decoded for a public read, `failed` the error its payload failed with: an
    /// event that cannot be decoded is an error, or, on a store built to keep them
    /// ([`StoreBuilder::keep_undecodable_payloads`]), the event with an empty payload and
    /// the reason in its `payload_error`.
    fn for_reader(&self, mut event: RecordedEvent, failed: Option<Error>) -> Result<RecordedEvent> {
        match failed {
            None => Ok(event),
            Some(error) if self.inner.limits.keep_undecodable => {
                let reason = match error {
                    Error::Codec { source, .. } => source,
                    Error::Shredded { .. } => CodecError::Shredded,
                    error => return Err(error),
                };
                event.unreadable = Some(reason);
                Ok(event)
            }
            Some(error) => Err(error),
        }
    }

    /// The data keys `events` need.
    async fn keys_of(&self, events: &[StoredEvent]) -> Result<Arc<PageKeys>> {
        self.page_keys(
            events
                .iter()
                .map(|event| (event.stream_id.as_str(), event.payload.as_slice())),
        )
        .await
    }

    /// `event` decoded into the typed event `E`, its payload first brought to the schema
    /// version `E` declares by the store's upcasters (see [`Upcasters`](crate::Upcasters)).
    ///
    /// # Errors
    /// - [`Error::UnknownEventType`] when `E` has no variant for the event's type;
    /// - [`Error::SchemaVersion`] when the stored version is newer than `E`'s, or an
    ///   upcaster on the way is missing;
    /// - [`Error::Payload`] when the payload does not fit the variant
    ///   ([`Error::UndeclaredSchemaChange`] when it lacks a field although stored in the
    ///   version the code declares);
    /// - [`Error::NotOneEvent`] when an upcaster splits the event or drops its type (use
    ///   [`Store::decode_events`]).
    pub fn decode_event<E: DomainEvent>(&self, event: &RecordedEvent) -> Result<E> {
        match self.decode_view(event.view())? {
            Decoded::One(decoded) => Ok(decoded),
            Decoded::Many(mut many) if many.len() == 1 => Ok(many.remove(0)),
            Decoded::Many(many) => Err(Error::NotOneEvent {
                stream: event.stream_id.to_string(),
                event_id: event.id,
                event_type: event.event_type.clone(),
                count: many.len(),
            }),
        }
    }

    /// Every domain event `event` stands for, with the store's upcasters: one; several
    /// when an upcaster splits it; none when its type was dropped. They all share
    /// `event`'s stream version, log position and id.
    ///
    /// # Errors
    /// As [`Store::decode_event`] (except [`Error::NotOneEvent`]), and [`Error::Upcast`]
    /// when a split returns a type it does not declare.
    pub fn decode_events<E: DomainEvent>(&self, event: &RecordedEvent) -> Result<Vec<E>> {
        self.decode_view(event.view())
            .map(|decoded| decoded.into_iter().collect())
    }

    pub(crate) fn decode_view<E: DomainEvent>(&self, event: EventView<'_>) -> Result<Decoded<E>> {
        self.inner.upcasters.decode(event)
    }

    /// The checkpoint of the projection `name`: where in the global log it stopped, or
    /// `None` when it has not committed a batch yet.
    ///
    /// # Errors
    /// [`ValidationError::InvalidText`](crate::ValidationError::InvalidText) for a name
    /// no projection can have (see [`MAX_NAME_LEN`](crate::MAX_NAME_LEN)); connection
    /// errors.
    pub async fn checkpoint(&self, name: &str) -> Result<Option<LogPosition>> {
        text::check_name("checkpoint name", name)?;
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("checkpoint", || backend.checkpoint(name))
            .await
    }

    /// The end of the global log now: the cursor after the last event that
    /// [`Store::read_all`] from [`LogPosition::START`] would return. To follow the log
    /// from here on (a `tail -f`), pass it to `read_all` and go on from the last event
    /// read. On PostgreSQL, events of transactions still running, or committed behind one
    /// still running, lie after it: they come with the reads that follow.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn log_end(&self) -> Result<LogPosition> {
        let backend = &self.inner.backend;
        self.inner.retry.run("log_end", || backend.log_end()).await
    }

    /// `sqlite`, `postgres` or `memory`.
    pub fn backend_kind(&self) -> &'static str {
        self.inner.capabilities.kind
    }

    /// The pool an application reads its read models through, when the store is SQLite
    /// (`None` otherwise): the store's readers' pool, in WAL mode never blocked by the
    /// writer. Writing through it is possible (your own tables) but waits for chronicle's
    /// write lock, up to the busy timeout; an in-memory database (`sqlite::memory:`) has a
    /// single connection, shared with chronicle's writes, so do not hold one from it.
    /// For statements that also run on PostgreSQL, see [`Store::fetch_all`].
    #[cfg(feature = "sqlite")]
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        self.inner.backend.sqlite_pool()
    }

    /// The store's pool, when the store is PostgreSQL (`None` otherwise). Its connections
    /// have the store's [schema](StoreBuilder::schema) first on their `search_path`
    /// (chronicle sets it on a pool of its own, and checks it on one it is given), so read
    /// models a projection created without naming a schema (in its
    /// [`setup`](crate::Projection::setup) hook) are found by unqualified names here too.
    /// Closed by [`Store::close`] when chronicle opened it.
    #[cfg(feature = "postgres")]
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        self.inner.backend.postgres_pool()
    }

    /// Runs a read of [portable SQL](crate::Sql) on the store's database and returns its
    /// rows: the application's side of a read model that a projection writes with the
    /// same statements ([`ProjectionContext::execute`](crate::ProjectionContext::execute)).
    /// On SQLite it runs on the readers' pool (on an in-memory database, the one
    /// connection, which waits while a projection's batch holds it), on PostgreSQL in the
    /// store's schema ([`Store::postgres_pool`]).
    ///
    /// # Errors
    /// [`Error::Sql`] when the database refuses or fails the statement (its source is
    /// sqlx's error); [`Error::SqlUnavailable`] on the memory store.
    pub async fn fetch_all(&self, sql: impl Into<crate::Sql>) -> Result<Vec<crate::SqlRow>> {
        self.sql_target().fetch_all(sql.into()).await
    }

    /// [`Store::fetch_all`], for the first row only (`None` when there is none).
    ///
    /// # Errors
    /// As [`Store::fetch_all`].
    pub async fn fetch_optional(
        &self,
        sql: impl Into<crate::Sql>,
    ) -> Result<Option<crate::SqlRow>> {
        self.sql_target().fetch_optional(sql.into()).await
    }

    /// Where the application's portable SQL runs.
    fn sql_target(&self) -> crate::portable::Target<'_> {
        #[cfg(feature = "sqlite")]
        if let Some(pool) = self.sqlite_pool() {
            return crate::portable::Target::SqlitePool(pool);
        }
        #[cfg(feature = "postgres")]
        if let Some(pool) = self.postgres_pool() {
            return crate::portable::Target::PgPool(pool);
        }
        crate::portable::Target::None("the memory store has no SQL database")
    }

    /// One round trip to the database, timed: what a health check asks. The memory store
    /// answers at once.
    ///
    /// # Errors
    /// Connection errors (retried as every operation is).
    #[tracing::instrument(name = "chronicle.ping", skip(self), err(level = "debug"))]
    pub async fn ping(&self) -> Result<std::time::Duration> {
        let backend = &self.inner.backend;
        let started = std::time::Instant::now();
        self.inner.retry.run("ping", || backend.ping()).await?;
        Ok(started.elapsed())
    }

    /// What the store holds: streams, events, snapshots and bytes ([`StorageStats`] says
    /// which backend estimates and which counts).
    ///
    /// # Errors
    /// Connection errors.
    #[tracing::instrument(name = "chronicle.storage", skip(self), err(level = "debug"))]
    pub async fn storage(&self) -> Result<StorageStats> {
        let backend = &self.inner.backend;
        self.inner.retry.run("storage", || backend.storage()).await
    }

    /// Tries to take projection `name`'s lease; `None` while another instance holds it.
    pub(crate) async fn try_lease(&self, name: &str) -> Result<Option<Box<dyn backend::Lease>>> {
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("lease", || backend.try_lease(name))
            .await
    }

    /// Whether the store keeps the outbox's requests: every backend of chronicle's does
    /// (memory since slice 17); a backend written against the seam may not.
    pub(crate) fn keeps_outbox(&self) -> bool {
        self.inner.capabilities.outbox == backend::Support::Supported
    }

    /// The highest global position taken so far.
    pub(crate) async fn last_position(&self) -> Result<u64> {
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("last_position", || backend.last_position())
            .await
    }

    /// Opens a batch's transaction (a projection's, the outbox's).
    pub(crate) async fn begin_batch(&self, flush: batch::Flush) -> Result<Box<dyn batch::DynTx>> {
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("begin_batch", || backend.begin_batch(flush))
            .await
    }

    /// Opens a transaction that only reads (never SQLite's write lock).
    pub(crate) async fn begin_read(&self) -> Result<Box<dyn batch::DynTx>> {
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("begin_read", || backend.begin_read())
            .await
    }

    /// A receiver that changes after every append of this store (and its clones) that
    /// wrote events.
    ///
    /// The first call starts a task that forwards other processes' appends (PostgreSQL
    /// LISTEN/NOTIFY); it ends once no receiver is left.
    pub(crate) fn appends(&self) -> tokio::sync::watch::Receiver<u64> {
        let mut listening = self
            .inner
            .listening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let receiver = self.inner.appended.subscribe();
        if !*listening {
            *listening = true;
            tokio::spawn(forward_appends(Arc::downgrade(&self.inner)));
        }
        receiver
    }

    /// The events of `stream` from version `from` on ([`Direction::Forward`]) or down
    /// ([`Direction::Backward`]; pass `u64::MAX` to start at the end), up to the stream's
    /// version when the read began, fetched page by page: a page holds at most the store's
    /// `page_size` events, and ends at the event whose stored payload brings it to the
    /// store's `read_budget_bytes` (so an event larger than that still reads); the next
    /// page loads while the current one is consumed.
    ///
    /// The stream yields [`Error::StreamNotFound`] or [`Error::StreamDeleted`] first when
    /// the stream is missing or deleted, and [`Error::Codec`] for an event whose payload
    /// cannot be decoded. A row holding a value chronicle never writes is an
    /// [`Error::CorruptRow`] item in place of its whole page (rows are decoded as the
    /// page is fetched); the next pages still come.
    pub fn read_stream(
        &self,
        stream: impl AsRef<str>,
        from: u64,
        direction: Direction,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static {
        let store = self.clone();
        let span = tracing::debug_span!(
            "chronicle.read_stream",
            stream = stream.as_ref(),
            from,
            ?direction
        );
        let stream = StreamId::new(stream.as_ref());
        let pages_span = span.clone();
        let start = async move {
            let stream = stream?;
            let Some(last) = store.active_version(&stream).await? else {
                return Err(Error::StreamNotFound {
                    stream: stream.to_string(),
                });
            };
            let page = store.inner.limits.page_size;
            let read = ReadStream { stream, direction };
            let pages = store.stream_pages(
                read,
                StreamCursor::new(from, last, direction),
                PageSizes::growing(page, page),
                pages_span,
            );
            Ok(pages.map_ok(stream::iter).try_flatten())
        };
        stream::once(start.instrument(span)).try_flatten()
    }

    /// The version of `stream`, or `None` when it does not exist.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`] when it was deleted; connection errors.
    pub(crate) async fn active_version(&self, stream: &StreamId) -> Result<Option<u64>> {
        match self.stream_info(stream.as_str()).await? {
            None => Ok(None),
            Some(info) if info.status == StreamStatus::Active => Ok(Some(info.version)),
            Some(info) => Err(Error::StreamDeleted {
                stream: stream.to_string(),
                hard: info.status == StreamStatus::Tombstoned,
            }),
        }
    }

    /// The pages of a read of one stream from `cursor`, each of up to `sizes` events and
    /// the store's read budget, one after another: a page cut by the budget is followed
    /// from its last event, any other from the end of its range. The next page loads (on
    /// a task of its own, in `span`) while the current one is consumed. A page that fails
    /// is an error in its place, and the next one starts after its range.
    fn stream_pages<R: StreamRead>(
        self,
        read: R,
        cursor: StreamCursor,
        sizes: PageSizes,
        span: tracing::Span,
    ) -> impl Stream<Item = Result<R::Page>> + Send + 'static {
        let pager = StreamPager {
            store: self,
            read,
            cursor,
            sizes,
        };
        paging::prefetched(pager, span, StreamPager::next_page)
    }

    /// `events` decoded, each on its own (one that fails does not hide the others), with
    /// the data keys they need; on a blocking thread when the codec's work is large.
    async fn decode_page(&self, events: Vec<StoredEvent>) -> Result<Vec<Result<RecordedEvent>>> {
        let keys = self.keys_of(&events).await?;
        metrics::counter!(telemetry::READ_EVENTS).increment(events.len() as u64);
        let work = paging::decode_work(events.iter().map(|event| event.payload.as_slice()), false);
        let store = self.clone();
        paging::off_runtime(work, "decoding a page of events", move || {
            store.recorded_page(events, EventParts::ALL, &keys, |event, failed| {
                Some(store.for_reader(event, failed))
            })
        })
        .await?
    }

    /// Every event of the global log after `after` (use [`LogPosition::START`] for all),
    /// in transaction order, fetched page by page (at most the store's `page_size` events
    /// a page, ending at the event whose stored payload brings it to `read_budget_bytes`;
    /// the next page loads while the current one is consumed). To follow the log, call
    /// again with the last event's [`RecordedEvent::log_position`].
    ///
    /// No event is ever skipped, even on PostgreSQL where positions can commit out of
    /// order: an event is returned only once every older transaction has finished. The read
    /// ends with the events committed before it started; when one of them waits behind a
    /// transaction still running, the read waits for that transaction too, for up to the
    /// store's `log_settle_timeout` (default 5 s), then ends without it (the next read
    /// from the cursor returns it).
    ///
    /// On PostgreSQL, "older transactions" means any transaction on the server, in any
    /// database: one left open (idle in transaction) holds every reader back until it
    /// ends. Set `idle_in_transaction_session_timeout` on servers shared with such clients.
    /// Within one stream, events come in version order.
    pub fn read_all(
        &self,
        after: LogPosition,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static {
        let span = tracing::debug_span!("chronicle.read_all", %after);
        let limits = &self.inner.limits;
        let page = WindowLimit {
            events: limits.page_size,
            bytes: Some(limits.read_budget),
        };
        let read = LogRead::new(self.clone(), after, Arc::from([]), page);
        // The pages start loading once the stream is polled (on the runtime).
        let pages = async move { paging::prefetched(read, span, LogRead::next_page) };
        stream::once(pages)
            .flatten()
            .map_ok(stream::iter)
            .try_flatten()
    }

    /// One window of the log after `after` within `limit` (events, and stored bytes of the
    /// wanted events), keeping those whose type is in `types` (all when empty): a
    /// projection's batch. Waits for held-back events as [`Store::read_all`] does.
    ///
    /// Payloads that need the codec's work (decompression, decryption) and total more
    /// than [`paging::OFFLOAD_DECODE_BYTES`] are decoded on a blocking thread, off the
    /// runtime's workers.
    pub(crate) async fn read_window(
        &self,
        after: LogPosition,
        types: Arc<[String]>,
        parts: EventParts,
        limit: WindowLimit,
        shredded: ShreddedEvents,
    ) -> Result<LogWindow> {
        let window = self
            .read_window_encoded(after, types, parts, limit, Expired::Hide)
            .await?;
        let keys = self.keys_of(&window.events).await?;
        let payloads = window.events.iter().map(|event| event.payload.as_slice());
        let work = paging::decode_work(payloads, false);
        let store = self.clone();
        paging::off_runtime(work, "decoding a window of the log", move || {
            store.decode_window(window, parts, &keys, shredded)
        })
        .await?
    }

    /// `window` decoded; events of forgotten streams are left out when `shredded` says
    /// so. The first event that does not decode otherwise fails the window.
    fn decode_window(
        &self,
        window: LogWindow<StoredEvent>,
        parts: EventParts,
        keys: &PageKeys,
        shredded: ShreddedEvents,
    ) -> Result<LogWindow> {
        let mut first_error = None;
        let events =
            self.recorded_page(window.events, parts, keys, |event, failed| match failed {
                None => Some(event),
                Some(Error::Shredded { .. }) if shredded == ShreddedEvents::Skip => None,
                Some(error) => {
                    first_error.get_or_insert(error);
                    None
                }
            })?;
        match first_error {
            Some(error) => Err(error),
            None => Ok(LogWindow {
                events,
                scanned_to: window.scanned_to,
                more: window.more,
            }),
        }
    }

    /// [`Store::read_window`] without decoding the events (they stay as stored), with only
    /// `parts` of them read, for readers that only need the events' ids, types and
    /// places, or the stored bytes.
    pub(crate) async fn read_window_encoded(
        &self,
        after: LogPosition,
        types: Arc<[String]>,
        parts: EventParts,
        limit: WindowLimit,
        expired: Expired,
    ) -> Result<LogWindow<StoredEvent>> {
        let span = tracing::debug_span!("chronicle.read_all", %after);
        let mut read = LogRead::new(self.clone(), after, types, limit);
        read.with_expired = expired == Expired::Include;
        read.parts = parts;
        let events = read.next_window().instrument(span).await?;
        Ok(LogWindow {
            events: events.unwrap_or_default(),
            scanned_to: read.after,
            more: !read.done,
        })
    }

    /// The events with these ids, each decoded on its own (one that does not decode does
    /// not hide the others); missing ids are left out.
    pub(crate) async fn events_by_ids(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Result<RecordedEvent>>> {
        let backend = &self.inner.backend;
        let found = self
            .inner
            .retry
            .run("event_by_id", || backend.events_by_id(ids))
            .await?;
        let found = self.without_expired(found).await?;
        let keys = self.keys_of(&found).await?;
        let decoded = self.recorded_page(found, EventParts::ALL, &keys, |event, failed| {
            Some((event.id, failed.map_or(Ok(event), Err)))
        })?;
        Ok(decoded.into_iter().collect())
    }

    /// The event with this id, or `None`.
    ///
    /// # Errors
    /// [`Error::Codec`] when its payload cannot be decoded; [`Error::CorruptRow`] when its
    /// row holds a value chronicle never writes; connection errors.
    #[tracing::instrument(name = "chronicle.event_by_id", skip(self))]
    pub async fn event_by_id(&self, id: Uuid) -> Result<Option<RecordedEvent>> {
        let backend = &self.inner.backend;
        let found = self
            .inner
            .retry
            .run("event_by_id", || {
                backend.events_by_id(std::slice::from_ref(&id))
            })
            .await?;
        let found = self.without_expired(found).await?;
        self.decode_each(found)
            .await?
            .into_iter()
            .next()
            .transpose()
    }

    /// Closes the store's connections, waiting for operations in flight to return them.
    /// Every clone of the store is closed; on the SQL backends later operations fail with
    /// [`Error::Connection`] (the memory backend has nothing to close). Dropping the last clone closes the connections too, without
    /// waiting.
    pub async fn close(&self) {
        self.inner.backend.close().await;
    }

    /// The events matching `query`, in global-position order, each decoded on its own.
    ///
    /// As with [`Store::read_stream`], an event whose payload does not decode is an
    /// [`Error::Codec`] item (naming it) and the others still come: a caller may report
    /// it and go on, or stop (`try_collect`). The matching rows are fetched in one
    /// statement (`query.limit` bounds them), so a connection error, or a corrupt row
    /// ([`Error::CorruptRow`]), is the only item.
    pub fn query(
        &self,
        query: &EventQuery,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static {
        let span = tracing::debug_span!(
            "chronicle.query",
            stream = query.stream.as_deref(),
            limit = query.limit
        );
        let (store, query) = (self.clone(), query.clone());
        let fetch = async move {
            text::refuse(query.text_problem(), None, None)?;
            let backend = &store.inner.backend;
            let found = store
                .inner
                .retry
                .run("query", || backend.query(&query))
                .await?;
            let found = store.without_expired(found).await?;
            Ok::<_, Error>(stream::iter(store.decode_each(found).await?))
        };
        stream::once(fetch.instrument(span)).try_flatten()
    }
}

/// The error of a payload of `stream` that did not decode: [`Error::Shredded`] when its
/// stream was forgotten, else [`Error::Codec`].
pub(crate) fn codec_error(stream: &str, event_id: Uuid, source: CodecError) -> Error {
    match source {
        CodecError::Shredded => Error::Shredded {
            stream: stream.to_owned(),
            event_id: Some(event_id),
        },
        source => Error::Codec {
            stream: stream.to_owned(),
            event_id,
            source,
        },
    }
}

/// The error of an event of `stream` whose stored extra metadata is not JSON of the shape
/// chronicle writes: its row is corrupt, in column `metadata`.
#[cold]
fn corrupt_metadata(stream: &StreamId, version: u64, id: Uuid, error: serde_json::Error) -> Error {
    Error::CorruptRow(Box::new(CorruptRow {
        table: "events",
        stream: stream.to_string(),
        version: Some(version),
        event_id: Some(id),
        column: "metadata",
        problem: CorruptValue::Json(error),
    }))
}

/// Announces this store's appends to other processes, after they committed and outside
/// their transactions (a `NOTIFY` inside an append would serialize every commit on the
/// server's notification lock: measured, it cut 8 writers' single-event commits to a
/// third). Appends within 10 ms of an announcement share the next one. Ends once the
/// store is dropped.
async fn announce_appends(inner: std::sync::Weak<Inner>, wake: Arc<tokio::sync::Notify>) {
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if inner.strong_count() == 0 {
                    return;
                }
                continue;
            }
        }
        let Some(backend) = inner.upgrade().map(|strong| Arc::clone(&strong.backend)) else {
            return;
        };
        if let Err(error) = backend.announce_appends().await {
            tracing::debug!(%error, "appends not announced; other processes will poll");
        }
        drop(backend);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Forwards the backend's append feed into `appended` until the store is dropped or
/// nobody subscribes any more. Holds the store only between waits.
async fn forward_appends(inner: std::sync::Weak<Inner>) {
    let feed = match inner.upgrade() {
        Some(strong) => strong.backend.append_feed().await,
        None => return,
    };
    let mut feed = match feed {
        Ok(Some(feed)) => feed,
        // Nothing to forward: appends from elsewhere are found by polling.
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for appends; projections poll instead");
            if let Some(strong) = inner.upgrade() {
                *strong
                    .listening
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
            }
            return;
        }
    };
    loop {
        tokio::select! {
            notified = feed.next() => match notified {
                Ok(()) => {
                    if let Some(strong) = inner.upgrade() {
                        strong
                            .appended
                            .send_modify(|count| *count = count.wrapping_add(1));
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "append feed interrupted; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let mut listening = strong
            .listening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if strong.appended.receiver_count() == 0 {
            *listening = false;
            return;
        }
    }
}

/// One window of the log, from [`Store::read_window`] (decoded events) or
/// [`Store::read_window_encoded`] (events as stored).
#[derive(Debug)]
pub(crate) struct LogWindow<E = RecordedEvent> {
    /// The window's events of the types asked for.
    pub events: Vec<E>,
    /// Where the window ended (its last event of any type; where it began when empty).
    pub scanned_to: LogPosition,
    /// Whether more events may follow right away (the window was full).
    pub more: bool,
}

/// Whether a read of the log returns events a retention policy expired (but the enforcer
/// has not removed yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    Hide,
    Include,
}

/// The state of one [`Store::read_all`]: the cursor, and how long to wait for events held
/// back by running transactions.
struct LogRead {
    store: Store,
    after: LogPosition,
    /// Only events of these types; all when empty.
    types: Arc<[String]>,
    /// How far each page reaches.
    limit: WindowLimit,
    /// Transactions from this one on began after the read did; set at the first short page.
    bound: Option<u64>,
    deadline: Option<tokio::time::Instant>,
    done: bool,
    /// Whether events a retention policy expired are returned too (key rotation must
    /// reach every stored row).
    with_expired: bool,
    /// The parts of the events read (a projection's lean windows).
    parts: EventParts,
}

impl LogRead {
    fn new(store: Store, after: LogPosition, types: Arc<[String]>, limit: WindowLimit) -> Self {
        // Rows stored under names renamed or split into the types asked for decode as
        // them: ask for those names too.
        let types = store.inner.upcasters.stored_names(types);
        LogRead {
            store,
            after,
            types,
            limit: WindowLimit {
                events: limit.events.max(1),
                bytes: limit.bytes,
            },
            bound: None,
            deadline: None,
            done: false,
            with_expired: false,
            parts: EventParts::ALL,
        }
    }

    /// The next window's events, decoded each on its own, and the read to go on with;
    /// `None` once the read is done. After an error, the read is done.
    async fn next_page(mut self) -> Option<(Result<Vec<Result<RecordedEvent>>>, Self)> {
        let page = match self.next_window().await {
            Ok(None) => return None,
            Ok(Some(events)) => self.store.decode_page(events).await,
            Err(error) => Err(error),
        };
        self.done |= page.is_err();
        Some((page, self))
    }

    /// The next window's events of the types asked for, still encoded (none when the
    /// window has none of them; `None` once the read is done).
    async fn next_window(&mut self) -> Result<Option<Vec<StoredEvent>>> {
        let inner = &self.store.inner;
        let mut wait = Duration::from_millis(5);
        loop {
            if self.done {
                return Ok(None);
            }
            let after = self.after;
            let limit = inner.log_rows.ask(self.limit);
            let page = inner
                .retry
                .run("read_all", || {
                    inner
                        .backend
                        .read_all(after, limit, &self.types, self.parts)
                })
                .await?;
            let bytes = page.events.iter().map(|event| event.payload.len()).sum();
            inner
                .log_rows
                .learn(limit, page.events.len(), bytes, page.full);
            if let Some(last) = page.scanned_to {
                self.after = last;
            }
            let events = if self.with_expired {
                page.events
            } else {
                self.store.without_expired(page.events).await?
            };
            if !page.full {
                let bound = self.bound;
                let cursor = self.after;
                let held = inner
                    .retry
                    .run("read_all", || inner.backend.held_back(cursor, bound))
                    .await?;
                self.bound = Some(held.bound);
                let deadline = *self.deadline.get_or_insert_with(|| {
                    tokio::time::Instant::now() + inner.limits.settle_timeout
                });
                if !held.pending || tokio::time::Instant::now() >= deadline {
                    if held.pending {
                        tracing::warn!(after = %self.after, "read_all ends with events held back by a long-running transaction");
                    }
                    self.done = true;
                } else if events.is_empty() {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(200));
                    continue;
                }
            }
            return Ok(Some(events));
        }
    }
}

/// What a paged read of one stream fetches, and makes of the rows: `read_stream`'s pages
/// ([`ReadStream`]) and an aggregate's replay (`replay::Replay`).
trait StreamRead: Send + Sync + 'static {
    /// A page's rows as the backend returned them.
    type Rows: Send + 'static;
    /// A page as the reader takes it.
    type Page: Send + 'static;

    /// The rows of `versions` within `limit`, and what they reached.
    fn fetch(
        &self,
        store: &Store,
        versions: RangeInclusive<u64>,
        limit: WindowLimit,
    ) -> impl Future<Output = Result<(Self::Rows, Reach)>> + Send;

    /// The page made of `rows`: events a retention policy expired left out, payloads
    /// decoded.
    fn finish(
        &self,
        store: &Store,
        rows: Self::Rows,
    ) -> impl Future<Output = Result<Self::Page>> + Send;
}

/// The state of a paged read of one stream (see [`Store::stream_pages`]).
struct StreamPager<R> {
    store: Store,
    read: R,
    cursor: StreamCursor,
    sizes: PageSizes,
}

impl<R: StreamRead> StreamPager<R> {
    /// The next page and the pager to go on with; `None` once the versions are read.
    async fn next_page(mut self) -> Option<(Result<R::Page>, Self)> {
        let inner = &self.store.inner;
        let limit = inner.stream_rows.ask(WindowLimit {
            events: self.sizes.take(),
            bytes: Some(inner.limits.read_budget),
        });
        let versions = self.cursor.range(limit.events)?;
        let page = match self.read.fetch(&self.store, versions.clone(), limit).await {
            Ok((rows, reach)) => {
                let cut = limit.bytes_reached(reach.bytes);
                let full = reach.rows >= limit.events;
                inner
                    .stream_rows
                    .learn(limit, reach.rows, reach.bytes, full);
                self.cursor.advance(&versions, reach.last.filter(|_| cut));
                self.read.finish(&self.store, rows).await
            }
            Err(error) => {
                self.cursor.advance(&versions, None);
                Err(error)
            }
        };
        Some((page, self))
    }
}

/// [`Store::read_stream`]'s pages: whole rows, in either direction, each payload decoded
/// on its own.
struct ReadStream {
    stream: StreamId,
    direction: Direction,
}

impl StreamRead for ReadStream {
    type Rows = Vec<StoredEvent>;
    type Page = Vec<Result<RecordedEvent>>;

    async fn fetch(
        &self,
        store: &Store,
        versions: RangeInclusive<u64>,
        limit: WindowLimit,
    ) -> Result<(Self::Rows, Reach)> {
        let backend = &store.inner.backend;
        let rows = store
            .inner
            .retry
            .run("read_stream", || {
                backend.read_stream(&self.stream, versions.clone(), self.direction, limit)
            })
            .await?;
        let reach = Reach::of(rows.iter().map(|row| (row.version, row.payload.len())));
        Ok((rows, reach))
    }

    async fn finish(&self, store: &Store, rows: Self::Rows) -> Result<Self::Page> {
        let rows = store.without_expired(rows).await?;
        store.decode_page(rows).await
    }
}
