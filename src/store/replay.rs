//! Replaying a stream into typed events: the read behind an aggregate's load. It fetches
//! narrow rows (id, version, type, schema version, payload), a page ahead like
//! `read_stream` but in pages that grow, and decodes each payload through the codec, the
//! upcasters and the `DomainEvent`.

use futures::{Stream, StreamExt, TryStreamExt, stream};

use std::sync::Arc;

use super::backend::{ReplayedEvent, StoredSnapshot};
use super::stream_keys::PageKeys;
use super::{Store, codec_error};
use crate::codec::event_context;
use crate::domain_event::{DomainEvent, EventView};
use crate::error::{Error, Result};
use crate::stream::{Direction, StreamId, StreamStatus};

/// The start of a load: see [`Store::replay_start`].
#[derive(Debug)]
pub(crate) struct ReplayStart {
    /// The stream's version.
    pub head: u64,
    /// The newest snapshot at or below the version asked for, of any schema version.
    pub snapshot: Option<StoredSnapshot>,
    /// The version `events` follow: the snapshot's when its schema version was the one
    /// asked for, else 0.
    pub events_after: u64,
    /// The first page of events after `events_after`.
    pub events: Vec<ReplayedEvent>,
    /// Whether `events` reach the end of what was asked for (the page was not full).
    pub complete: bool,
    /// The stream's data key, when the snapshot or the events need it.
    pub keys: Arc<PageKeys>,
}

/// A replay's pages, in pages of the store (512 events by default): the first, read with
/// the stream's head and snapshot, holds 4 (so most loads take one statement); the next
/// ones 8, then 16, the most. A long stream then costs few round trips (10,000 events:
/// 3, instead of 20 pages of 512), while memory stays bounded by two pages.
const REPLAY_FIRST_PAGES: u64 = 4;
const REPLAY_MAX_PAGES: u64 = 16;

impl Store {
    /// Where a load of `stream` up to `max_version` starts, in one statement on the SQL
    /// backends: the head, the newest snapshot, and the first pages of events after it.
    /// `None` when the stream does not exist.
    ///
    /// # Errors
    /// [`Error::StreamDeleted`] for a deleted stream; connection errors.
    pub(crate) async fn replay_start(
        &self,
        stream: &StreamId,
        max_version: u64,
        schema_version: u32,
    ) -> Result<Option<ReplayStart>> {
        let limit = self
            .inner
            .limits
            .page_size
            .saturating_mul(REPLAY_FIRST_PAGES as usize);
        let backend = &self.inner.backend;
        let start = self
            .inner
            .retry
            .run("replay_stream", || {
                backend.replay_start(stream, max_version, schema_version, limit)
            })
            .await?;
        let Some(start) = start else {
            return Ok(None);
        };
        if start.status != StreamStatus::Active {
            return Err(Error::StreamDeleted {
                stream: stream.to_string(),
                hard: start.status == StreamStatus::Tombstoned,
            });
        }
        let events_after = start
            .snapshot
            .as_ref()
            .filter(|snapshot| snapshot.schema_version == schema_version)
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
            complete: !filtered && events.len() < limit,
            events,
            keys,
        }))
    }

    /// The events of `stream` from version `from` to `last`, decoded into `E`, with their
    /// versions. The caller has checked that the stream is active and reaches `last`.
    pub(crate) fn replay<E: DomainEvent>(
        self,
        stream: StreamId,
        from: u64,
        last: u64,
    ) -> impl Stream<Item = Result<(u64, E)>> + Send + 'static {
        let fetch_stream = stream.clone();
        let decoder = self.clone();
        self.pages(
            (from, last),
            Direction::Forward,
            (REPLAY_FIRST_PAGES * 2, REPLAY_MAX_PAGES),
            move |store, versions| {
                let stream = fetch_stream.clone();
                async move {
                    let backend = &store.inner.backend;
                    if !store.expiry_reaches(&stream, *versions.start()).await? {
                        return store
                            .inner
                            .retry
                            .run("replay_stream", || {
                                backend.replay_stream(&stream, versions.clone())
                            })
                            .await;
                    }
                    let page = store
                        .inner
                        .retry
                        .run("replay_stream", || {
                            backend.read_stream(&stream, versions.clone(), Direction::Forward)
                        })
                        .await?;
                    let page = store.without_expired(page).await?;
                    Ok(page.into_iter().map(ReplayedEvent::from).collect())
                }
            },
        )
        .and_then(move |page| {
            let (store, stream) = (decoder.clone(), stream.clone());
            async move {
                let keys = store
                    .page_keys(
                        page.iter()
                            .map(|row| (stream.as_str(), row.payload.as_slice())),
                    )
                    .await?;
                Ok(stream::iter(page).map(move |row| store.decode_replayed(&stream, row, &keys)))
            }
        })
        .try_flatten()
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
    ) -> Result<(u64, E)> {
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
