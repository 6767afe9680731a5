//! How stored events become [`RecordedEvent`]s, in one place for every read:
//! [`Store::recorded_page`] decodes a page of the backend's `StoredEvent`s (payloads through
//! the codec with their streams' keys, extra metadata parsed), public reads keep or refuse
//! an event that does not decode (`for_reader`), and the typed decoders turn a
//! `RecordedEvent` into a domain event through the upcasters.

use std::sync::Arc;

use uuid::Uuid;

use super::Store;
use super::backend::StoredEvent;
use super::key_cache::PageKeys;
use crate::codec::{CodecError, event_context};
use crate::domain_event::{DomainEvent, EventView};
use crate::error::{CorruptRow, CorruptValue, Error, Result};
use crate::event::{EventMetadata, RecordedEvent};
use crate::read::EventParts;
use crate::stream::StreamId;
use crate::telemetry;
use crate::upcast::Decoded;

impl Store {
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
    pub(super) fn recorded_page<T>(
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
    pub(super) async fn decode_each(
        &self,
        events: Vec<StoredEvent>,
    ) -> Result<Vec<Result<RecordedEvent>>> {
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
    pub(super) fn for_reader(
        &self,
        mut event: RecordedEvent,
        failed: Option<Error>,
    ) -> Result<RecordedEvent> {
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
    pub(super) async fn keys_of(&self, events: &[StoredEvent]) -> Result<Arc<PageKeys>> {
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
