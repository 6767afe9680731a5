//! Replaying a stream into typed events: the read behind an aggregate's load. It fetches
//! narrow rows (id, version, type, schema version, payload), a page ahead like
//! `read_stream` but in pages that grow, and decodes each payload through the codec, the
//! upcasters and the `DomainEvent`.

use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::sync::Arc;

use futures::{Stream, TryStreamExt, stream};

use super::Store;
use super::backend::{ReplayedEvent, StoredEvent, StoredSnapshot, WindowLimit};
use super::decode::codec_error;
use super::key_cache::PageKeys;
use super::paging::{self, PageSizes, Reach, StreamCursor};
use super::read::StreamRead;
use crate::codec::event_context;
use crate::domain_event::{DomainEvent, EventView};
use crate::error::{Error, Result};
use crate::stream::{Direction, StreamId, StreamStatus};
use crate::upcast::Decoded;

/// The start of a load: see [`Store::replay_start`].
#[derive(Debug)]
pub(crate) struct ReplayStart {
    /// The stream's version.
    pub head: u64,
    /// The newest snapshot at or below the version asked for, of any schema version.
    pub snapshot: Option<StoredSnapshot>,
    /// The version `events` follow: the snapshot's, whatever its schema version (a
    /// load that cannot use it starts over from 1), else 0.
    pub events_after: u64,
    /// The first page of events after `events_after` (cut at the store's read budget).
    pub events: Vec<ReplayedEvent>,
    /// Whether `events` reach the end of what was asked for (the page was neither full
    /// nor cut by the budget).
    pub complete: bool,
    /// The stream's data key, when the snapshot or the events need it.
    pub keys: Arc<PageKeys>,
}

/// A replay's pages, in pages of the store (512 events by default): the first, read with
/// the stream's head and snapshot, holds 4 (so most loads take one statement); the next
/// ones 8, then 16, the most. A long stream then costs few round trips (10,000 events:
/// 3, instead of 20 pages of 512). Each page also ends at the store's read budget, so
/// memory stays bounded by about two budgets whatever the events' sizes.
const REPLAY_FIRST_PAGES: usize = 4;
const REPLAY_MAX_PAGES: usize = 16;

impl Store {
    /// Where a load of `stream` up to `max_version` starts, in one statement on the SQL
    /// backends: the head, the newest snapshot, and the first pages of events after it,
    /// up to the store's read budget. `None` when the stream does not exist.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`] for a deleted stream; connection errors.
    pub(crate) async fn replay_start(
        &self,
        stream: &StreamId,
        max_version: u64,
    ) -> Result<Option<ReplayStart>> {
        let limits = &self.inner.limits;
        let limit = self.inner.stream_rows.ask(WindowLimit {
            events: limits.page_size.saturating_mul(REPLAY_FIRST_PAGES),
            bytes: Some(limits.read_budget),
        });
        let backend = &self.inner.backend;
        let start = self
            .inner
            .retry
            .run("replay_stream", || {
                backend.replay_start(stream, max_version, limit)
            })
            .await?;
        let Some(start) = start else {
            return Ok(None);
        };
        let reach = Reach::of(
            start
                .events
                .iter()
                .map(|row| (row.version, row.payload.len())),
        );
        let cut = limit.bytes_reached(reach.bytes);
        let full = reach.rows >= limit.events;
        self.inner
            .stream_rows
            .learn(limit, reach.rows, reach.bytes, full);
        if start.status != StreamStatus::Active {
            return Err(Error::StreamDeleted {
                stream: stream.to_string(),
                hard: start.status == StreamStatus::Tombstoned,
            });
        }
        let events_after = start
            .snapshot
            .as_ref()
            .map_or(0, |snapshot| snapshot.version);
        // Events a retention policy may expire are replayed through the wide rows, which
        // carry what expiry is judged on.
        let filtered = self.expiry_reaches(stream, events_after + 1).await?;
        let events = if filtered { Vec::new() } else { start.events };
        let payloads = start
            .snapshot
            .iter()
            .map(|snapshot| snapshot.payload.as_slice())
            .chain(events.iter().map(|row| row.payload.as_slice()));
        let keys = self
            .page_keys(payloads.map(|payload| (stream.as_str(), payload)))
            .await?;
        Ok(Some(ReplayStart {
            head: start.version,
            snapshot: start.snapshot,
            events_after,
            complete: !filtered && !full && !cut,
            events,
            keys,
        }))
    }

    /// The events of `stream` from version `from` to `last`, decoded into `E`, with their
    /// versions: one item per stored event, holding the domain events the upcasters make
    /// of it (usually one; several after a split, none for a dropped type). The caller has checked that the stream is active and reaches `last`. The
    /// first page starts loading at once.
    pub(crate) fn replay<E: DomainEvent>(
        self,
        stream: StreamId,
        from: u64,
        last: u64,
    ) -> impl Stream<Item = Result<(u64, Decoded<E>)>> + Send + 'static {
        let page = self.inner.limits.page_size;
        let span = tracing::debug_span!("chronicle.replay", stream = %stream, from, last);
        let read = Replay::<E> {
            stream,
            event: PhantomData,
        };
        self.stream_pages(
            read,
            StreamCursor::new(from, last, Direction::Forward),
            PageSizes::growing(
                page.saturating_mul(REPLAY_FIRST_PAGES * 2),
                page.saturating_mul(REPLAY_MAX_PAGES),
            ),
            span,
        )
        .map_ok(stream::iter)
        .try_flatten()
    }

    /// The rows of a page of `stream`'s replay decoded into `E`, each on its own, with
    /// the stream's data key from `keys`; on a blocking thread when the work is large.
    pub(crate) async fn decode_replayed_page<E: DomainEvent>(
        &self,
        stream: &StreamId,
        rows: Vec<ReplayedEvent>,
        keys: Arc<PageKeys>,
    ) -> Result<Vec<Result<(u64, Decoded<E>)>>> {
        let work = paging::decode_work(rows.iter().map(|row| row.payload.as_slice()), true);
        let (store, stream) = (self.clone(), stream.clone());
        paging::off_runtime(work, "decoding a replay's events", move || {
            rows.into_iter()
                .map(|row| store.decode_replayed(&stream, row, &keys))
                .collect()
        })
        .await
    }

    /// Whether a retention policy may expire events of `stream` from version `from` on
    /// (a snapshot-aware one never expires events above the newest snapshot).
    async fn expiry_reaches(&self, stream: &StreamId, from: u64) -> Result<bool> {
        Ok(self
            .stream_policy(stream.as_str())
            .await?
            .is_some_and(|(applied, place)| applied.policy.removable_up_to(place) >= from))
    }

    /// Decodes a replayed row into `E`, with its stream's data key from `keys`.
    pub(crate) fn decode_replayed<E: DomainEvent>(
        &self,
        stream: &StreamId,
        row: ReplayedEvent,
        keys: &PageKeys,
    ) -> Result<(u64, Decoded<E>)> {
        let payload = self
            .inner
            .codec
            .decode(
                row.payload,
                || event_context(row.id, stream.as_str()),
                keys.get(stream.as_str()),
            )
            .map_err(|source| codec_error(stream.as_str(), row.id, source))?;
        let event = self.decode_view(EventView {
            stream,
            id: row.id,
            event_type: &row.event_type,
            schema_version: row.schema_version,
            payload: &payload,
        })?;
        Ok((row.version, event))
    }
}

/// A replay's pages: narrow rows, or whole ones when a retention policy may expire some of
/// them (whole rows carry the time expiry is judged on), decoded into `E`.
struct Replay<E> {
    stream: StreamId,
    event: PhantomData<fn() -> E>,
}

/// The rows of a replay's page.
enum ReplayRows {
    Narrow(Vec<ReplayedEvent>),
    /// Still to be filtered by the retention policy.
    Whole(Vec<StoredEvent>),
}

impl<E: DomainEvent> StreamRead for Replay<E> {
    type Rows = ReplayRows;
    type Page = Vec<Result<(u64, Decoded<E>)>>;

    async fn fetch(
        &self,
        store: &Store,
        versions: RangeInclusive<u64>,
        limit: WindowLimit,
    ) -> Result<(Self::Rows, Reach)> {
        let (backend, retry) = (&store.inner.backend, &store.inner.retry);
        let stream = &self.stream;
        if !store.expiry_reaches(stream, *versions.start()).await? {
            let rows = retry
                .run("replay_stream", || {
                    backend.replay_stream(stream, versions.clone(), limit)
                })
                .await?;
            let reach = Reach::of(rows.iter().map(|row| (row.version, row.payload.len())));
            return Ok((ReplayRows::Narrow(rows), reach));
        }
        let rows = retry
            .run("replay_stream", || {
                backend.read_stream(stream, versions.clone(), Direction::Forward, limit)
            })
            .await?;
        let reach = Reach::of(rows.iter().map(|row| (row.version, row.payload.len())));
        Ok((ReplayRows::Whole(rows), reach))
    }

    async fn finish(&self, store: &Store, rows: Self::Rows) -> Result<Self::Page> {
        let rows: Vec<ReplayedEvent> = match rows {
            ReplayRows::Narrow(rows) => rows,
            ReplayRows::Whole(rows) => store
                .without_expired(rows)
                .await?
                .into_iter()
                .map(ReplayedEvent::from)
                .collect(),
        };
        let payloads = rows.iter().map(|row| row.payload.as_slice());
        let keys = store
            .page_keys(payloads.map(|payload| (self.stream.as_str(), payload)))
            .await?;
        store.decode_replayed_page(&self.stream, rows, keys).await
    }
}
