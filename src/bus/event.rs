//! The envelope every bus carries: [`BusEvent`] (id, type, source, subject, time, JSON
//! data, metadata), built from a stored [`RecordedEvent`], from an event about to be
//! appended, or from scratch for an event that is never stored.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{Error, Result, ValidationError};
use crate::event::{EventMetadata, NewEvent, RecordedEvent};

/// The `source` of events that do not name one: what published them.
pub const DEFAULT_SOURCE: &str = "chronicle";

/// The event type of [`BusEvent::error`]: an error published as an event.
pub const ERROR_EVENT_TYPE: &str = "chronicle.error";

/// An event on a bus: chronicle's envelope, close to a CloudEvent.
///
/// The data is kept as JSON text (as [`RecordedEvent`] keeps its payload), so an event
/// from the store goes out without being parsed; read it with [`BusEvent::data`] or
/// [`BusEvent::json`]. Its id is the deduplication key everywhere: a relay publishes a
/// stored event under the id it was stored with, again after a crash.
///
/// ```
/// use chronicle::bus::BusEvent;
/// use serde_json::json;
///
/// // An event that is never stored: a fresh id, the time now.
/// let event = BusEvent::new("cache.Invalidated", json!({ "key": "user-7" }))
///     .subject("user-7")
///     .source("web-1")
///     .correlation_id("req-42");
/// assert_eq!(event.data::<serde_json::Value>()?["key"], "user-7");
/// # Ok::<(), chronicle::Error>(())
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct BusEvent {
    /// The event's id: for a stored event, its id in the store. The deduplication key.
    pub id: Uuid,
    /// Its type, such as `account.Deposited`.
    pub event_type: String,
    /// Who published it ([`DEFAULT_SOURCE`] unless set): a service's name, a URI.
    pub source: String,
    /// What it is about: for a stored event, its stream (`account-42`).
    pub subject: Option<String>,
    /// When it happened: for a stored event, when it was recorded.
    pub time: DateTime<Utc>,
    /// The payload's schema version (1 unless set).
    pub schema_version: u32,
    /// Correlation, causation, user, tenant, request and trace ids, custom fields.
    pub metadata: EventMetadata,
    data: Arc<[u8]>,
}

impl BusEvent {
    /// An event of `event_type` carrying `data`, never stored: a fresh UUID v7 id, the
    /// time now, source [`DEFAULT_SOURCE`], no subject.
    pub fn new(event_type: impl Into<String>, data: serde_json::Value) -> Self {
        // Serializing a `Value` cannot fail: its map keys are strings.
        let data = serde_json::to_vec(&data).unwrap_or_default();
        BusEvent::from_json_bytes(Uuid::now_v7(), event_type.into(), data)
    }

    /// An event whose data is `data` serialized to JSON (see [`BusEvent::new`]).
    ///
    /// # Errors
    /// [`ValidationError::Unserializable`] naming the event type when `T`'s `Serialize`
    /// fails.
    pub fn from_serialize<T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        data: &T,
    ) -> Result<Self> {
        let event_type = event_type.into();
        match serde_json::to_vec(data) {
            Ok(data) => Ok(BusEvent::from_json_bytes(Uuid::now_v7(), event_type, data)),
            Err(error) => Err(ValidationError::Unserializable {
                event_type,
                reason: error.to_string(),
            }
            .into()),
        }
    }

    /// `event`, about to be appended to `stream`, as the relay will publish it once
    /// stored (same id, type, data and metadata; the time is now, not the time it will be
    /// recorded).
    pub fn from_new_event(stream: impl Into<String>, event: &NewEvent) -> Self {
        let mut bus_event =
            BusEvent::from_json_bytes(event.id, event.event_type.clone(), event.payload.clone());
        bus_event.subject = Some(stream.into());
        bus_event.schema_version = event.schema_version;
        bus_event.metadata = event.metadata.clone();
        bus_event
    }

    /// An error as an event of type [`ERROR_EVENT_TYPE`]: its data holds the error's
    /// message, the messages of its sources (`causes`, outermost first) and `context`
    /// (anything the caller adds: the operation, the input's id). Set a subject and
    /// metadata on the result to tie it to what failed.
    pub fn error(error: &(dyn std::error::Error + 'static), context: serde_json::Value) -> Self {
        let mut causes = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            causes.push(serde_json::Value::String(cause.to_string()));
            source = cause.source();
        }
        BusEvent::new(
            ERROR_EVENT_TYPE,
            serde_json::json!({
                "message": error.to_string(),
                "causes": causes,
                "context": context,
            }),
        )
    }

    pub(crate) fn from_json_bytes(id: Uuid, event_type: String, data: Vec<u8>) -> Self {
        BusEvent {
            id,
            event_type,
            source: DEFAULT_SOURCE.to_owned(),
            subject: None,
            time: Utc::now(),
            schema_version: 1,
            metadata: EventMetadata::default(),
            data: data.into(),
        }
    }

    /// Sets the id (the deduplication key).
    pub fn id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Sets the type (say, a private event's public name).
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = event_type.into();
        self
    }

    /// Sets the source.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets the subject.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the time.
    pub fn time(mut self, time: DateTime<Utc>) -> Self {
        self.time = time;
        self
    }

    /// Replaces the metadata.
    pub fn metadata(mut self, metadata: EventMetadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.correlation_id = Some(id.into());
        self
    }

    /// Replaces the data (say, a private event's fields mapped to a public contract).
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = serde_json::to_vec(&data).unwrap_or_default().into();
        self
    }

    /// The data deserialized into `T`.
    ///
    /// # Errors
    /// [`Error::Payload`] naming the event when the JSON does not fit `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.data).map_err(|source| Error::Payload {
            stream: self.subject.clone().unwrap_or_default(),
            event_id: self.id,
            event_type: self.event_type.clone(),
            source,
        })
    }

    /// The data as a JSON value.
    ///
    /// # Errors
    /// As [`BusEvent::data`].
    pub fn json(&self) -> Result<serde_json::Value> {
        self.data()
    }

    /// The data's JSON text, as it goes on the wire.
    pub fn data_json(&self) -> &[u8] {
        &self.data
    }

    /// The stream category of the subject (the part before its first `-`: `account` for
    /// `account-42`), if there is a subject.
    pub fn category(&self) -> Option<&str> {
        self.subject.as_deref().map(crate::stream::category_of)
    }
}

impl From<&RecordedEvent> for BusEvent {
    /// The stored event as the relay publishes it: its id, type, stream (as the subject),
    /// the time it was recorded, schema version, metadata and payload; source
    /// [`DEFAULT_SOURCE`].
    fn from(event: &RecordedEvent) -> Self {
        BusEvent {
            id: event.id,
            event_type: event.event_type.clone(),
            source: DEFAULT_SOURCE.to_owned(),
            subject: Some(event.stream_id.as_str().to_owned()),
            time: event.recorded_at,
            schema_version: event.schema_version,
            metadata: event.metadata.clone(),
            data: event.payload_json().into(),
        }
    }
}

impl From<RecordedEvent> for BusEvent {
    fn from(event: RecordedEvent) -> Self {
        BusEvent::from(&event)
    }
}

impl fmt::Debug for BusEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusEvent")
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .field("source", &self.source)
            .field("subject", &self.subject)
            .field("time", &self.time)
            .field("schema_version", &self.schema_version)
            .field("metadata", &self.metadata)
            .field("data", &String::from_utf8_lossy(&self.data))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("charge failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_error_event_carries_its_causes_and_context() {
        let error = Outer(std::io::Error::other("card declined"));
        let event = BusEvent::error(&error, serde_json::json!({ "order": 7 }));
        assert_eq!(event.event_type, ERROR_EVENT_TYPE);
        let data = event.json().expect("json");
        assert_eq!(data["message"], "charge failed");
        assert_eq!(data["causes"], serde_json::json!(["card declined"]));
        assert_eq!(data["context"]["order"], 7);
    }

    #[test]
    fn the_category_is_the_subject_before_its_first_dash() {
        let event = BusEvent::new("a", serde_json::Value::Null);
        assert_eq!(event.category(), None);
        assert_eq!(event.subject("order-7-x").category(), Some("order"));
    }
}
