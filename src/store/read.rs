//! The store's reads, above the backends and once for all of them: a stream's pages
//! ([`Store::read_stream`], through `StreamPager`), the global log ([`Store::read_all`],
//! `LogRead`), a window of the log for projections, the outbox and re-encryption
//! (`read_window`, `read_window_encoded`), events by id and queries.

use std::collections::HashMap;
use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt, stream};
use tracing::Instrument;
use uuid::Uuid;

use super::Store;
use super::backend::{StoredEvent, WindowLimit};
use super::key_cache::PageKeys;
use super::paging::{self, PageSizes, Reach, StreamCursor};
use super::stream_keys::ShreddedEvents;
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::read::{EventParts, EventQuery, LogPosition};
use crate::stream::{Direction, StreamId, StreamStatus};
use crate::telemetry;
use crate::text;

impl Store {
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
    pub(super) fn stream_pages<R: StreamRead>(
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

    /// The events matching `query`, in the log's order (as [`Store::read_all`] returns
    /// them), each decoded on its own.
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
pub(super) trait StreamRead: Send + Sync + 'static {
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
