//! The rules of an append that hold on every backend: what a batch must look like before it
//! is written, and how a re-sent batch is recognised as already stored (an idempotent
//! retry, as KurrentDB does it).

use std::collections::HashSet;

use tracing::Instrument;
use uuid::Uuid;

use super::backend::{AppendOutcome, Backend, EncodedEvent, Written};
use super::batch::DynTx;
use super::{Limits, Store, batch};
use crate::codec::{DataKey, Dictionary, event_context};
use crate::error::{Error, Result, ValidationError};
use crate::event::{NewEvent, RecordedEvent};
use crate::read::EventParts;
use crate::read::LogPosition;
use crate::stream::{AppendGuard, ExpectedVersion, StreamId};
use crate::telemetry;
use crate::text::{self, MAX_EVENT_TYPE_LEN, MAX_METADATA_ID_LEN};

impl RecordedEvent {
    /// `event` as it was just written to `stream`, where `written` says (its payload as
    /// the caller gave it, not as stored).
    pub(crate) fn written(stream: &StreamId, event: &NewEvent, written: &Written) -> Self {
        RecordedEvent {
            id: event.id,
            stream_id: stream.clone(),
            version: written.version,
            position: written.position,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            metadata: event.metadata.clone(),
            recorded_at: written.recorded_at,
            commit: written.commit,
            payload: event.payload.clone(),
            unreadable: None,
        }
    }
}

/// How often [`settle`] appends again when the state it read let the append write but
/// the write still matched no row (a stream created beside it, then deleted).
const SETTLE_ATTEMPTS: usize = 3;

/// An append whose guarded write matched no row ([`AppendOutcome::NotMatched`]), decided
/// again in `tx` where the stream cannot move: under [`StreamTx::lock_stream`], the
/// stream's state either rejects it (the rejection then describes a state that rejects
/// it) or lets it write, and it appends in the same transaction. The caller commits a
/// `Written` outcome.
pub(crate) async fn settle(
    backend: &dyn Backend,
    tx: &mut dyn DynTx,
    stream: &StreamId,
    guard: AppendGuard,
    events: &[EncodedEvent<'_>],
) -> Result<AppendOutcome> {
    for _ in 0..SETTLE_ATTEMPTS {
        let state = tx.lock_stream(stream).await?;
        let state = state.map(|row| (row.version, row.status));
        if let Some(rejected) = AppendOutcome::rejection(guard, state) {
            return Ok(rejected);
        }
        match backend.append_in(tx, stream, guard, events).await? {
            AppendOutcome::NotMatched => continue,
            outcome => return Ok(outcome),
        }
    }
    Err(Error::Internal(format!(
        "append to `{stream}`: the stream changed under its lock {SETTLE_ATTEMPTS} times"
    )))
}

/// What an append wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream appended to.
    pub stream_id: StreamId,
    /// Each event's id, version and global position, in the order given.
    pub events: Vec<WrittenEvent>,
    /// `true` when every event was already stored by an earlier attempt and nothing was
    /// written this time.
    pub already_stored: bool,
}

impl AppendResult {
    /// The stream's version after the append: pass it as `ExpectedVersion::Exact` next time.
    pub fn next_expected_version(&self) -> u64 {
        self.events.last().map_or(0, |event| event.version)
    }

    /// Where the last event sits in the global log: wait for a projection to apply it with
    /// [`ProjectionHandle::wait_until`](crate::ProjectionHandle::wait_until) (read your own
    /// writes).
    pub fn log_position(&self) -> LogPosition {
        self.events
            .last()
            .map_or(LogPosition::START, WrittenEvent::log_position)
    }

    pub(crate) fn new(stream: &StreamId, events: &[NewEvent], written: &[Written]) -> Self {
        AppendResult {
            stream_id: stream.clone(),
            events: events
                .iter()
                .zip(written)
                .map(|(event, w)| WrittenEvent {
                    event_id: event.id,
                    version: w.version,
                    position: w.position,
                    commit: w.commit,
                })
                .collect(),
            already_stored: false,
        }
    }
}

/// Where one appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WrittenEvent {
    /// The event's id.
    pub event_id: Uuid,
    /// Its version in the stream.
    pub version: u64,
    /// Its global position.
    pub position: u64,
    commit: u64,
}

impl WrittenEvent {
    /// Where it sits in the global log (see [`LogPosition`]).
    pub fn log_position(&self) -> LogPosition {
        LogPosition::new(self.commit, self.position)
    }
}

/// Versions above this are never reached (stored versions are signed 64-bit integers);
/// `Exact` expectations beyond it are conflicts without asking the database.
pub(crate) const MAX_VERSION: u64 = (i64::MAX as u64) / 2;

/// Rejects a batch that must not be written: empty, too many events, an event too large or
/// without a type, or the same id twice.
pub(crate) fn validate(stream: &StreamId, events: &[NewEvent], limits: &Limits) -> Result<()> {
    let name = || stream.to_string();
    if events.is_empty() {
        return Err(ValidationError::EmptyBatch { stream: name() }.into());
    }
    if events.len() > limits.max_events_per_append {
        return Err(ValidationError::BatchTooLarge {
            stream: name(),
            count: events.len(),
            limit: limits.max_events_per_append,
        }
        .into());
    }
    let mut seen = HashSet::with_capacity(events.len());
    for event in events {
        if event.event_type.is_empty() {
            return Err(ValidationError::EmptyEventType {
                stream: name(),
                event_id: event.id,
            }
            .into());
        }
        check_event_text(stream, event)?;
        if event.payload.len() > limits.max_event_size {
            return Err(ValidationError::EventTooLarge {
                stream: name(),
                event_id: event.id,
                size: event.payload.len(),
                limit: limits.max_event_size,
            }
            .into());
        }
        if !seen.insert(event.id) {
            return Err(ValidationError::DuplicateIdInBatch {
                stream: name(),
                event_id: event.id,
            }
            .into());
        }
    }
    Ok(())
}

/// Refuses an event whose type or metadata breaks the text rules (`crate::text`).
fn check_event_text(stream: &StreamId, event: &NewEvent) -> Result<()> {
    let metadata = &event.metadata;
    let ids = [
        ("correlation_id", &metadata.correlation_id),
        ("causation_id", &metadata.causation_id),
        ("user_id", &metadata.user_id),
        ("tenant_id", &metadata.tenant_id),
        ("request_id", &metadata.request_id),
        ("trace_id", &metadata.trace_id),
    ];
    let found = text::problem(&event.event_type, Some(MAX_EVENT_TYPE_LEN), false)
        .map(|problem| ("event type", problem))
        .or_else(|| {
            ids.into_iter().find_map(|(field, id)| {
                let problem = text::problem(id.as_deref()?, Some(MAX_METADATA_ID_LEN), true)?;
                Some((field, problem))
            })
        })
        .or_else(|| {
            metadata.custom.iter().find_map(|(key, value)| {
                let problem =
                    text::problem(key, None, true).or_else(|| text::json_problem(value))?;
                Some(("custom metadata", problem))
            })
        });
    text::refuse(found, Some(stream.as_str()), Some(event.id))
}

/// Decides whether a rejected append is a replay of one already stored.
///
/// `stored` are the decoded stored events carrying the batch's ids. The batch is a replay
/// when all its ids are stored in this stream, in this order at consecutive versions that
/// fit `expected`, with the same type, schema version and payload. Then the earlier result
/// is returned. When none of the ids is stored the rejection stands (`Ok(None)`); any
/// other overlap is [`Error::EventIdReused`].
pub(crate) fn resolve_replay(
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
    mut stored: Vec<RecordedEvent>,
) -> Result<Option<AppendResult>> {
    if stored.is_empty() {
        return Ok(None);
    }
    let reused = |existing: &RecordedEvent| Error::EventIdReused {
        stream: stream.to_string(),
        event_id: existing.id,
        existing_stream: existing.stream_id.to_string(),
    };
    if let Some(elsewhere) = stored.iter().find(|e| &e.stream_id != stream) {
        return Err(reused(elsewhere));
    }
    let index_of = |id: Uuid| events.iter().position(|e| e.id == id).unwrap_or(usize::MAX);
    stored.sort_by_key(|e| index_of(e.id));
    if stored.len() != events.len() {
        return Err(reused(&stored[0]));
    }
    let first_version = stored[0].version;
    let fits_expected = match expected {
        ExpectedVersion::Exact(version) => version.checked_add(1) == Some(first_version),
        ExpectedVersion::NoStream => first_version == 1,
        ExpectedVersion::Any | ExpectedVersion::StreamExists => true,
    };
    for ((offset, new), old) in (0..).zip(events).zip(&stored) {
        let same = fits_expected
            && old.version == first_version + offset
            && old.event_type == new.event_type
            && old.schema_version == new.schema_version
            && same_json(&old.payload, &new.payload);
        if !same {
            return Err(reused(old));
        }
    }
    let written: Vec<Written> = stored
        .iter()
        .map(|e| Written {
            version: e.version,
            position: e.position,
            commit: e.commit,
            recorded_at: e.recorded_at,
        })
        .collect();
    Ok(Some(AppendResult {
        already_stored: true,
        ..AppendResult::new(stream, events, &written)
    }))
}

/// JSON equality that ignores formatting (both sides were produced by serde_json, but a
/// replay may come from another process or version).
fn same_json(a: &[u8], b: &[u8]) -> bool {
    a == b
        || matches!(
            (
                serde_json::from_slice::<serde_json::Value>(a),
                serde_json::from_slice::<serde_json::Value>(b),
            ),
            (Ok(a), Ok(b)) if a == b
        )
}

impl Store {
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
        validate(&stream, &events, &self.inner.limits)?;
        if let ExpectedVersion::Exact(version) = expected
            && version > MAX_VERSION
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
        match resolve_replay(&stream, expected, &events, stored)? {
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
        let outcome = settle(backend, &mut *tx, stream, guard, encoded).await?;
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
            outcome = settle(backend, &mut *tx, stream, guard, encoded).await?;
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
}
