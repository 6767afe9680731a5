//! The mapping between chronicle's events and CloudEvents, both ways, and the rules that
//! make it round-trip.
//!
//! **Out** ([`EventMapping::to_cloud_event`], a [`RecordedEvent`] becomes a CloudEvent):
//!
//! | CloudEvent | from the `RecordedEvent` |
//! | --- | --- |
//! | `id` | the event id (UUID text) |
//! | `source` | configured: per stream category, else the store-wide default (`/chronicle`) |
//! | `type` | the event type |
//! | `subject` | the stream id |
//! | `time` | `recorded_at` |
//! | `datacontenttype`, data | `application/json`, the payload (no data when it is `null`) |
//! | `schemaversion` | the schema version, when not 1 |
//! | `correlationid`, `causationid`, `tenantid`, `userid`, `requestid` | the metadata ids |
//! | `traceparent` | `trace_id`, when it is a W3C `traceparent`; else `traceid` |
//! | other extensions | custom metadata with an extension's name and a string, boolean or 32-bit integer value |
//! | `chroniclemeta` | the other custom metadata, as JSON text |
//!
//! **In** ([`EventMapping::to_new_event`], a CloudEvent becomes a [`NewEvent`]): the same
//! table read backwards. The event id is the CloudEvent's `id` when that is a UUID in
//! canonical form, else a UUID v5 of (`source`, `id`): the same CloudEvent always gives
//! the same event id, so storing it twice is an idempotent replay. Text data is stored
//! as a JSON string, binary data as a JSON string of its base64, no data as `null`.
//! The attributes chronicle has no column for (`source`, `time`, `subject`, the media
//! type, `dataschema`, a non-UUID `id`, the kind of data) are kept in the custom metadata
//! entry `$cloudevent`, and an event that has one goes out with exactly those attributes.
//!
//! So both round trips hold: CloudEvent → `NewEvent` → stored → CloudEvent gives the same
//! CloudEvent; `RecordedEvent` → CloudEvent → `NewEvent` gives the same id, type, schema
//! version, payload and metadata (plus, for an event that had none, the `$cloudevent`
//! record of where it came from). Binary mode carries every extension as a string, so
//! over it a boolean or integer custom value comes back as its text.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::error::{CloudEventError, MappingError};
use super::event::{CloudEvent, Data, ExtensionValue};
use super::validate;
use crate::event::{EventMetadata, NewEvent, RecordedEvent};

/// The custom metadata entry holding a received CloudEvent's own attributes. Its name is
/// not a valid extension name, so it never clashes with an extension.
pub const ORIGIN_KEY: &str = "$cloudevent";

/// The extension carrying custom metadata that no extension can hold, as JSON text.
pub const META_EXTENSION: &str = "chroniclemeta";

/// The namespace of the v5 UUIDs made from (`source`, `id`) of CloudEvents whose id is
/// not a UUID.
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_3c2e_9d4a_4c8e_a5f0_2e7d_c1b9_0a31);

const CORRELATION: &str = "correlationid";
const CAUSATION: &str = "causationid";
const TENANT: &str = "tenantid";
const USER: &str = "userid";
const REQUEST: &str = "requestid";
const TRACEPARENT: &str = "traceparent";
const TRACE_ID: &str = "traceid";
const SCHEMA_VERSION: &str = "schemaversion";

/// Extension names the mapping gives a meaning to: custom metadata of these names travels
/// in `chroniclemeta`.
const MAPPED: [&str; 9] = [
    CORRELATION,
    CAUSATION,
    TENANT,
    USER,
    REQUEST,
    TRACEPARENT,
    TRACE_ID,
    SCHEMA_VERSION,
    META_EXTENSION,
];

/// The attributes of the CloudEvent an event was received as, which chronicle has no
/// column for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Origin {
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<DateTime<FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dataschema: Option<String>,
    data: DataKind,
}

/// What the payload of a received event stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DataKind {
    /// The payload is the data.
    Json,
    /// The payload is a JSON string holding the text.
    Text,
    /// The payload is a JSON string holding the bytes in base64.
    Binary,
    /// There was no data; the payload is `null`.
    None,
}

/// How chronicle's events and CloudEvents map to each other: the `source` of outgoing
/// events, store-wide and per stream category.
///
/// ```
/// use chronicle::cloudevents::EventMapping;
///
/// let mapping = EventMapping::new()
///     .source("https://bank.example.com")
///     .category_source("account", "https://bank.example.com/accounts");
/// # let _ = mapping;
/// ```
#[derive(Debug, Clone)]
pub struct EventMapping {
    source: String,
    by_category: BTreeMap<String, String>,
}

impl Default for EventMapping {
    fn default() -> Self {
        EventMapping {
            source: "/chronicle".to_owned(),
            by_category: BTreeMap::new(),
        }
    }
}

impl EventMapping {
    /// The source `/chronicle` for every event.
    pub fn new() -> Self {
        EventMapping::default()
    }

    /// The `source` of events whose category has none of its own (a URI-reference; an
    /// invalid one fails every mapping, naming `source`).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// The `source` of events of streams in `category` (the part of the stream id before
    /// the first `-`).
    pub fn category_source(
        mut self,
        category: impl Into<String>,
        source: impl Into<String>,
    ) -> Self {
        self.by_category.insert(category.into(), source.into());
        self
    }

    /// The source configured for the stream `stream`.
    fn source_for(&self, stream: &crate::StreamId) -> &str {
        self.by_category
            .get(stream.category())
            .map_or(self.source.as_str(), String::as_str)
    }

    /// `event` as a CloudEvent (see the module's table).
    ///
    /// # Errors
    /// [`MappingError::Invalid`] when the result breaks a rule (a configured source that is
    /// not a URI-reference, say); [`MappingError::Origin`] when a `$cloudevent` record is
    /// not of the mapping's shape; [`MappingError::Payload`] for a payload that is not
    /// JSON.
    pub fn to_cloud_event(&self, event: &RecordedEvent) -> Result<CloudEvent, MappingError> {
        let event_id = event.id.to_string();
        let payload: Value = serde_json::from_slice(event.payload_json()).map_err(|source| {
            MappingError::Payload {
                event_id: event_id.clone(),
                source,
            }
        })?;
        let mut custom = event.metadata.custom.clone();
        let origin = custom
            .remove(ORIGIN_KEY)
            .map(serde_json::from_value::<Origin>)
            .transpose()
            .map_err(|source| MappingError::Origin {
                event_id: event_id.clone(),
                source,
            })?;
        let invalid = |source: CloudEventError| MappingError::Invalid {
            event_id: event_id.clone(),
            source,
        };
        let mut builder = match &origin {
            Some(origin) => {
                let mut builder = CloudEvent::builder(
                    origin.id.clone().unwrap_or_else(|| event_id.clone()),
                    origin.source.clone(),
                    event.event_type.clone(),
                );
                if let Some(subject) = &origin.subject {
                    builder = builder.subject(subject.clone());
                }
                if let Some(time) = origin.time {
                    builder = builder.time(time);
                }
                if let Some(media_type) = &origin.datacontenttype {
                    builder = builder.datacontenttype(media_type.clone());
                }
                if let Some(uri) = &origin.dataschema {
                    builder = builder.dataschema(uri.clone());
                }
                let data = origin_data(origin.data, payload).map_err(invalid)?;
                builder.data(data)
            }
            None => {
                let builder = CloudEvent::builder(
                    event_id.clone(),
                    self.source_for(&event.stream_id).to_owned(),
                    event.event_type.clone(),
                )
                .subject(event.stream_id.as_str())
                .time(event.recorded_at);
                if payload.is_null() {
                    builder
                } else {
                    builder.data_json(payload)
                }
            }
        };
        if event.schema_version != 1 {
            builder = builder.extension(SCHEMA_VERSION, schema_extension(event.schema_version));
        }
        builder = metadata_extensions(builder, &event.metadata, custom);
        builder.build().map_err(invalid)
    }

    /// `event` as an event to append (see the module's table).
    ///
    /// # Errors
    /// [`MappingError::SchemaVersion`] when `schemaversion` is not a positive 32-bit
    /// number.
    pub fn to_new_event(&self, event: &CloudEvent) -> Result<NewEvent, MappingError> {
        let canonical = Uuid::parse_str(&event.id)
            .ok()
            .filter(|id| id.hyphenated().to_string() == event.id);
        let id = canonical.unwrap_or_else(|| {
            Uuid::new_v5(
                &ID_NAMESPACE,
                format!("{}\n{}", event.source, event.id).as_bytes(),
            )
        });
        let (kind, payload) = match &event.data {
            None => (DataKind::None, Value::Null),
            Some(Data::Json(value)) => (DataKind::Json, value.clone()),
            Some(Data::Text(text)) => (DataKind::Text, Value::String(text.clone())),
            Some(Data::Binary(bytes)) => (DataKind::Binary, Value::String(BASE64.encode(bytes))),
        };
        let origin = Origin {
            source: event.source.clone(),
            id: canonical.is_none().then(|| event.id.clone()),
            subject: event.subject.clone(),
            time: event.time,
            datacontenttype: event.datacontenttype.clone(),
            dataschema: event.dataschema.clone(),
            data: kind,
        };
        let mut extensions = event.extensions.clone();
        let schema_version = match extensions.remove(SCHEMA_VERSION) {
            None => 1,
            Some(value) => {
                parse_schema_version(&value).ok_or_else(|| MappingError::SchemaVersion {
                    event_id: event.id.clone(),
                    value: value.to_string(),
                })?
            }
        };
        let mut text = |name: &str| extensions.remove(name).map(|value| value.to_string());
        let mut metadata = EventMetadata {
            correlation_id: text(CORRELATION),
            causation_id: text(CAUSATION),
            tenant_id: text(TENANT),
            user_id: text(USER),
            request_id: text(REQUEST),
            trace_id: None,
            custom: BTreeMap::new(),
        };
        metadata.trace_id = match extensions.remove(TRACEPARENT) {
            Some(traceparent) => Some(traceparent.to_string()),
            None => extensions.remove(TRACE_ID).map(|value| value.to_string()),
        };
        let meta = extensions.remove(META_EXTENSION);
        for (name, value) in extensions {
            metadata.custom.insert(name, value.to_json());
        }
        if let Some(meta) = meta {
            match meta
                .as_str()
                .and_then(|text| serde_json::from_str::<BTreeMap<String, Value>>(text).ok())
            {
                Some(entries) => {
                    for (name, value) in entries {
                        metadata.custom.entry(name).or_insert(value);
                    }
                }
                None => {
                    metadata
                        .custom
                        .insert(META_EXTENSION.to_owned(), meta.to_json());
                }
            }
        }
        // An `Origin` is strings, a time and an enum: it always serializes.
        let origin = serde_json::to_value(&origin).unwrap_or_default();
        metadata.custom.insert(ORIGIN_KEY.to_owned(), origin);
        // Serializing a `Value` cannot fail: its map keys are strings.
        let payload = serde_json::to_vec(&payload).unwrap_or_default();
        Ok(NewEvent::from_json_bytes(event.ty.clone(), payload)
            .id(id)
            .schema_version(schema_version)
            .metadata(metadata))
    }
}

/// The data a received event's payload stands for.
fn origin_data(kind: DataKind, payload: Value) -> Result<Option<Data>, CloudEventError> {
    let as_string = |payload: Value| match payload {
        Value::String(text) => Ok(text),
        other => Err(CloudEventError::invalid(
            "data",
            &other.to_string(),
            "the stored payload of text or binary data must be a JSON string",
        )),
    };
    Ok(match kind {
        DataKind::None => None,
        DataKind::Json => Some(Data::Json(payload)),
        DataKind::Text => Some(Data::Text(as_string(payload)?)),
        DataKind::Binary => {
            let text = as_string(payload)?;
            let bytes = BASE64
                .decode(text.as_bytes())
                .map_err(|_| CloudEventError::invalid("data", &text, "not base64"))?;
            Some(Data::Binary(bytes))
        }
    })
}

/// A schema version as the `schemaversion` extension: an integer when it fits.
fn schema_extension(version: u32) -> ExtensionValue {
    i32::try_from(version).map_or_else(
        |_| ExtensionValue::String(version.to_string()),
        ExtensionValue::Integer,
    )
}

fn parse_schema_version(value: &ExtensionValue) -> Option<u32> {
    let version = match value {
        ExtensionValue::Integer(number) => u32::try_from(*number).ok()?,
        ExtensionValue::String(text) => text.parse().ok()?,
        ExtensionValue::Boolean(_) => return None,
    };
    (version >= 1).then_some(version)
}

/// Whether `text` is a W3C `traceparent` (`00-{32 hex}-{16 hex}-{2 hex}`).
fn is_traceparent(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let hex = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}

/// The metadata as extensions: the ids, the trace, and the custom entries (those that
/// cannot be an extension go together into `chroniclemeta`).
fn metadata_extensions(
    mut builder: super::builder::CloudEventBuilder,
    metadata: &EventMetadata,
    custom: BTreeMap<String, Value>,
) -> super::builder::CloudEventBuilder {
    let ids = [
        (CORRELATION, &metadata.correlation_id),
        (CAUSATION, &metadata.causation_id),
        (TENANT, &metadata.tenant_id),
        (USER, &metadata.user_id),
        (REQUEST, &metadata.request_id),
    ];
    for (name, value) in ids {
        if let Some(value) = value {
            builder = builder.extension(name, value.as_str());
        }
    }
    if let Some(trace) = &metadata.trace_id {
        let name = if is_traceparent(trace) {
            TRACEPARENT
        } else {
            TRACE_ID
        };
        builder = builder.extension(name, trace.as_str());
    }
    let mut rest = BTreeMap::new();
    for (name, value) in custom {
        let fits = validate::extension_name(&name).is_ok() && !MAPPED.contains(&name.as_str());
        let extension = match &value {
            Value::String(text) if validate::string(&name, text).is_ok() => {
                Some(ExtensionValue::String(text.clone()))
            }
            Value::Bool(flag) => Some(ExtensionValue::Boolean(*flag)),
            Value::Number(number) => number
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(ExtensionValue::Integer),
            _ => None,
        };
        match extension {
            Some(extension) if fits => builder = builder.extension(name, extension),
            _ => {
                rest.insert(name, value);
            }
        }
    }
    if !rest.is_empty() {
        // A map of `Value`s always serializes.
        let text = serde_json::to_string(&rest).unwrap_or_default();
        builder = builder.extension(META_EXTENSION, text);
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents() {
        assert!(is_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(!is_traceparent(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
        ));
    }

    #[test]
    fn schema_versions() {
        assert_eq!(parse_schema_version(&ExtensionValue::Integer(3)), Some(3));
        assert_eq!(
            parse_schema_version(&ExtensionValue::String("4".into())),
            Some(4)
        );
        assert_eq!(parse_schema_version(&ExtensionValue::Integer(0)), None);
        assert_eq!(parse_schema_version(&ExtensionValue::Integer(-1)), None);
        assert_eq!(
            parse_schema_version(&ExtensionValue::String("x".into())),
            None
        );
        assert_eq!(
            parse_schema_version(&schema_extension(u32::MAX)),
            Some(u32::MAX)
        );
    }

    #[test]
    fn the_same_cloud_event_gives_the_same_event_id() {
        let event = CloudEvent::builder("A234-1234", "/s", "t")
            .build()
            .expect("valid");
        let mapping = EventMapping::new();
        let first = mapping.to_new_event(&event).expect("maps");
        let second = mapping.to_new_event(&event).expect("maps");
        assert_eq!(first, second);
        let other_source = event.to_builder().source("/other").build().expect("valid");
        assert_ne!(
            mapping
                .to_new_event(&other_source)
                .expect("maps")
                .event_id(),
            first.event_id()
        );
        let uuid = Uuid::now_v7();
        let by_uuid = event
            .to_builder()
            .id(uuid.to_string())
            .build()
            .expect("valid");
        assert_eq!(
            mapping.to_new_event(&by_uuid).expect("maps").event_id(),
            uuid
        );
    }
}
