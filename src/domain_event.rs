//! Typed events: the [`DomainEvent`] trait that `#[derive(DomainEvent)]` implements, which
//! maps a Rust enum (or struct) to stored events and back.
//!
//! Each variant has a stable *event type* name, stored in the event-type column, and a
//! *schema version*. The payload holds only the variant's fields: the type is not repeated
//! in the JSON. Decoding goes the other way, from (event type, payload); payloads written
//! with an older schema version are first brought up to date by the store's upcasters
//! (see [`StoreBuilder::upcast`](crate::StoreBuilder::upcast)).

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{NewEvent, RecordedEvent};
use crate::stream::StreamId;

/// One event type a [`DomainEvent`] can hold: its stored name and the schema version the
/// code writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventType {
    /// The name stored in the event-type column, such as `account.Deposited`.
    pub name: &'static str,
    /// The schema version written for it (1 unless `#[event(version = n)]` says otherwise).
    pub version: u32,
}

/// Why [`DomainEvent::decode`] could not build a value.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The event type is not one of [`DomainEvent::EVENT_TYPES`].
    #[error("unknown event type")]
    UnknownType,
    /// The payload does not fit the variant's fields.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// A type whose values are stored as events: usually an enum with one variant per event,
/// implemented by `#[derive(DomainEvent)]`.
///
/// A variant's event type is the enum's `#[event(prefix = "...")]` followed by the
/// variant's name, unless `#[event(rename = "...")]` gives the full name; its schema
/// version is 1 unless `#[event(version = n)]` says otherwise. A struct variant is stored
/// as a JSON object of its fields, a newtype variant as its inner value, a tuple variant as
/// an array, and a variant without fields as `{}`; `#[serde(...)]` attributes on variants
/// and fields apply. A struct deriving `DomainEvent` (and serde's traits) is a single event
/// type, stored as itself.
///
/// ```
/// use chronicle::DomainEvent;
///
/// #[derive(Debug, PartialEq, DomainEvent)]
/// #[event(prefix = "account.")]
/// enum AccountEvent {
///     Opened { owner: String },
///     #[event(rename = "account.money_deposited", version = 2)]
///     Deposited { amount: u64, currency: String },
///     Closed,
/// }
///
/// let event = AccountEvent::Deposited { amount: 5, currency: "EUR".into() };
/// assert_eq!(event.event_type(), "account.money_deposited");
/// assert_eq!(event.schema_version(), 2);
/// // The payload is the variant's fields; the type lives in its own column.
/// assert_eq!(event.encode()?, br#"{"amount":5,"currency":"EUR"}"#);
///
/// let back = AccountEvent::decode("account.money_deposited", br#"{"amount":5,"currency":"EUR"}"#)?;
/// assert_eq!(back, event);
/// assert_eq!(AccountEvent::EVENT_TYPES[0].name, "account.Opened");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait DomainEvent: Sized + Send + Sync + 'static {
    /// Every event type this type decodes, in declaration order.
    const EVENT_TYPES: &'static [EventType];

    /// This value's event type name.
    fn event_type(&self) -> &'static str;

    /// The schema version this value is written with.
    fn schema_version(&self) -> u32;

    /// The payload: this value's fields as JSON, without the event type.
    ///
    /// # Errors
    /// When a field's `Serialize` implementation fails.
    fn encode(&self) -> Result<Vec<u8>, serde_json::Error>;

    /// Builds a value from its event type and a payload in the current schema version.
    ///
    /// # Errors
    /// [`DecodeError::UnknownType`] for a type not in [`DomainEvent::EVENT_TYPES`];
    /// [`DecodeError::Json`] when the payload does not fit.
    fn decode(event_type: &str, payload: &[u8]) -> Result<Self, DecodeError>;

    /// The schema version the code writes for `event_type`, or `None` when this type does
    /// not know it.
    fn current_version(event_type: &str) -> Option<u32> {
        Self::EVENT_TYPES
            .iter()
            .find(|known| known.name == event_type)
            .map(|known| known.version)
    }

    /// This value as an event to append (fresh id, no metadata).
    ///
    /// # Errors
    /// [`ValidationError::Unserializable`](crate::ValidationError::Unserializable) when
    /// [`DomainEvent::encode`] fails.
    fn to_new_event(&self) -> Result<NewEvent> {
        let payload = self
            .encode()
            .map_err(|error| crate::ValidationError::Unserializable {
                event_type: self.event_type().to_owned(),
                reason: error.to_string(),
            })?;
        Ok(NewEvent::from_json_bytes(self.event_type(), payload)
            .schema_version(self.schema_version()))
    }
}

/// The store's error for a payload that `E::decode` refused.
pub(crate) fn decode_error<E: DomainEvent>(
    error: DecodeError,
    stream: &StreamId,
    event_id: Uuid,
    event_type: &str,
) -> Error {
    match error {
        DecodeError::UnknownType => Error::UnknownEventType {
            stream: stream.to_string(),
            event_id,
            event_type: event_type.to_owned(),
            expected: std::any::type_name::<E>(),
        },
        DecodeError::Json(source) => Error::Payload {
            stream: stream.to_string(),
            event_id,
            event_type: event_type.to_owned(),
            source,
        },
    }
}

/// The parts of a stored event that typed decoding needs, borrowed from a
/// [`RecordedEvent`](crate::RecordedEvent) or from a replay row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventView<'a> {
    pub stream: &'a StreamId,
    pub id: Uuid,
    pub event_type: &'a str,
    pub schema_version: u32,
    /// The payload's JSON, decrypted and decompressed.
    pub payload: &'a [u8],
}

impl RecordedEvent {
    /// The parts of this event typed decoding needs.
    pub(crate) fn view(&self) -> EventView<'_> {
        EventView {
            stream: &self.stream_id,
            id: self.id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            payload: &self.payload,
        }
    }
}
