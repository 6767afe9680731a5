//! Events: what a caller appends ([`NewEvent`]), the context it carries
//! ([`EventMetadata`]), and what a read returns ([`RecordedEvent`]).
//!
//! A payload is JSON. It is serialized once, when the event is built, and kept as bytes
//! from then on; readers deserialize it on demand with [`RecordedEvent::data`], straight into
//! their own types.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::CodecError;
use crate::error::{Error, Result};
use crate::read::LogPosition;
use crate::stream::StreamId;

/// Context that travels with an event: who caused it, in which request and tenant.
///
/// The four ids `correlation_id`, `causation_id`, `tenant_id` and `user_id` are stored in
/// their own columns and can be queried. Metadata is never encrypted: keep personal data in
/// the payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Ties together every event of one business transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The command or event that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The user on whose behalf the event was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The tenant the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The request (HTTP, RPC) that wrote the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The distributed trace the write belonged to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Anything else, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, serde_json::Value>,
}

impl EventMetadata {
    /// This metadata for events written because of `cause`: `causation_id` becomes the
    /// cause's id, and `correlation_id` the cause's correlation id, or, when the cause has
    /// none, the cause's id (it started the business transaction). A field this metadata
    /// already holds is kept: the caller's explicit values win. The cause's tenant is
    /// carried over the same way.
    ///
    /// ```
    /// # async fn demo(store: chronicle::Store) -> chronicle::Result<()> {
    /// use chronicle::{EventMetadata, ExpectedVersion, NewEvent};
    /// use futures::TryStreamExt;
    ///
    /// store
    ///     .append("order-1", ExpectedVersion::Any, vec![NewEvent::new("order.Placed", serde_json::json!({}))])
    ///     .await?;
    /// let stored: Vec<_> = store.read_stream("order-1", 1, Default::default()).try_collect().await?;
    /// let placed = &stored[0];
    /// let metadata = EventMetadata::default().caused_by(placed);
    /// assert_eq!(metadata.causation_id, Some(placed.id.to_string()));
    /// assert_eq!(metadata.correlation_id, Some(placed.id.to_string()));
    /// # Ok(()) }
    /// ```
    pub fn caused_by(mut self, cause: &RecordedEvent) -> Self {
        self.follow(cause.id, &cause.metadata);
        self
    }

    /// [`EventMetadata::caused_by`] from an event's id and metadata (a `RecordedEvent`'s
    /// parts, or an event about to be written).
    pub(crate) fn follow(&mut self, cause: Uuid, cause_metadata: &EventMetadata) {
        if self.causation_id.is_none() {
            self.causation_id = Some(cause.to_string());
        }
        if self.correlation_id.is_none() {
            self.correlation_id = Some(
                cause_metadata
                    .correlation_id
                    .clone()
                    .unwrap_or_else(|| cause.to_string()),
            );
        }
        if self.tenant_id.is_none() {
            self.tenant_id.clone_from(&cause_metadata.tenant_id);
        }
    }

    /// The fields that have no column of their own (request id, trace id, custom), as JSON,
    /// or `None` when all are empty.
    pub(crate) fn extra_json(&self) -> Option<String> {
        if self.request_id.is_none() && self.trace_id.is_none() && self.custom.is_empty() {
            return None;
        }
        let extra = ExtraMetadata {
            request_id: self.request_id.clone(),
            trace_id: self.trace_id.clone(),
            custom: self.custom.clone(),
        };
        serde_json::to_string(&extra).ok()
    }

    /// Rebuilds metadata from its columns and the extra JSON.
    ///
    /// # Errors
    /// The extra JSON does not parse, or is not of the shape [`EventMetadata::extra_json`]
    /// writes.
    pub(crate) fn from_parts(
        correlation_id: Option<String>,
        causation_id: Option<String>,
        tenant_id: Option<String>,
        user_id: Option<String>,
        extra: Option<&str>,
    ) -> std::result::Result<Self, serde_json::Error> {
        let extra: ExtraMetadata = match extra {
            Some(json) => serde_json::from_str(json)?,
            None => ExtraMetadata::default(),
        };
        Ok(EventMetadata {
            correlation_id,
            causation_id,
            user_id,
            tenant_id,
            request_id: extra.request_id,
            trace_id: extra.trace_id,
            custom: extra.custom,
        })
    }
}

#[derive(Default, Serialize, Deserialize)]
struct ExtraMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    custom: BTreeMap<String, serde_json::Value>,
}

/// An event to append.
///
/// ```
/// use chronicle::{EventMetadata, NewEvent};
/// use serde_json::json;
///
/// #[derive(serde::Serialize)]
/// struct Deposited { amount: u64 }
///
/// let plain = NewEvent::new("account.opened", json!({ "owner": "ada" }));
/// let typed = NewEvent::from_serialize("account.deposited", &Deposited { amount: 10 })?
///     .schema_version(2)
///     .correlation_id("req-17");
/// assert_eq!(typed.event_type(), "account.deposited");
/// # Ok::<(), chronicle::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub(crate) id: Uuid,
    pub(crate) event_type: String,
    pub(crate) schema_version: u32,
    pub(crate) payload: Vec<u8>,
    pub(crate) metadata: EventMetadata,
}

impl NewEvent {
    /// An event of `event_type` with a JSON payload, a fresh UUID v7 id and schema version 1.
    pub fn new(event_type: impl Into<String>, payload: serde_json::Value) -> Self {
        // Serializing a `Value` cannot fail: its map keys are strings.
        let payload = serde_json::to_vec(&payload).unwrap_or_default();
        Self::from_json_bytes(event_type, payload)
    }

    /// An event whose payload is `data` serialized to JSON.
    ///
    /// # Errors
    /// [`ValidationError::Unserializable`](crate::ValidationError::Unserializable) naming
    /// the event type when `T`'s `Serialize` fails.
    pub fn from_serialize<T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        data: &T,
    ) -> Result<Self> {
        let event_type = event_type.into();
        let payload = serde_json::to_vec(data).map_err(|error| {
            Error::from(crate::ValidationError::Unserializable {
                event_type: event_type.clone(),
                reason: error.to_string(),
            })
        })?;
        Ok(Self::from_json_bytes(event_type, payload))
    }

    pub(crate) fn from_json_bytes(event_type: impl Into<String>, payload: Vec<u8>) -> Self {
        NewEvent {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            payload,
            metadata: EventMetadata::default(),
        }
    }

    /// Sets the event id (for idempotent retries, give the same id again).
    pub fn id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Sets the payload's schema version (default 1).
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
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

    /// Sets the causation id.
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.causation_id = Some(id.into());
        self
    }

    /// The event's id.
    pub fn event_id(&self) -> Uuid {
        self.id
    }

    /// The event's type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The metadata.
    pub fn event_metadata(&self) -> &EventMetadata {
        &self.metadata
    }

    /// The payload, as serialized JSON.
    pub fn payload_json(&self) -> &[u8] {
        &self.payload
    }
}

/// An event as stored: the appended event plus where and when it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The event's id.
    pub id: Uuid,
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its version in that stream (1-based, no gaps).
    pub version: u64,
    /// Its position in the global log: unique and never reused, but on PostgreSQL not
    /// necessarily in commit order (see [`LogPosition`]).
    pub position: u64,
    /// Its type.
    pub event_type: String,
    /// Its payload's schema version.
    pub schema_version: u32,
    /// Its metadata.
    pub metadata: EventMetadata,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    pub(crate) commit: u64,
    pub(crate) payload: Vec<u8>,
    /// Why the payload could not be decoded, when the store keeps such events
    /// ([`StoreBuilder::keep_undecodable_payloads`](crate::StoreBuilder::keep_undecodable_payloads)).
    pub(crate) unreadable: Option<CodecError>,
}

impl RecordedEvent {
    /// Where this event sits in the global log: pass it to
    /// [`Store::read_all`](crate::Store::read_all) to continue after this event.
    ///
    /// Only take cursors from events that `read_all` returned. On PostgreSQL, an event
    /// read another way (by stream, id or query) may sit ahead of a transaction still
    /// running, and resuming after it would skip that transaction's events.
    pub fn log_position(&self) -> LogPosition {
        LogPosition::new(self.commit, self.position)
    }

    /// The payload deserialized into `T`.
    ///
    /// # Errors
    /// [`Error::Payload`] naming the event when the JSON does not fit `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload).map_err(|source| Error::Payload {
            stream: self.stream_id.to_string(),
            event_id: self.id,
            event_type: self.event_type.clone(),
            source,
        })
    }

    /// The payload as a JSON value.
    ///
    /// # Errors
    /// [`Error::Payload`] naming the event when the stored bytes are not JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        self.data()
    }

    /// The payload's JSON text, decrypted and decompressed.
    pub fn payload_json(&self) -> &[u8] {
        &self.payload
    }

    /// Why the payload could not be decoded: only on a store opened with
    /// [`StoreBuilder::keep_undecodable_payloads`](crate::StoreBuilder::keep_undecodable_payloads),
    /// whose reads return such an event with an empty payload instead of an error
    /// ([`CodecError::MissingKey`] when the key ring lacks its key, or has none;
    /// [`CodecError::Shredded`] when its stream was forgotten). `None` otherwise.
    pub fn payload_error(&self) -> Option<&CodecError> {
        self.unreadable.as_ref()
    }
}
