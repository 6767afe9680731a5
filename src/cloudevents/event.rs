//! The CloudEvents 1.0 event model: [`CloudEvent`] (its context attributes, extensions
//! and data), [`Data`], [`ExtensionValue`] and the [`CloudEventBuilder`] that checks every
//! rule of the specification before an event exists.
//!
//! A `CloudEvent` is valid by construction: the builder and the decoders run
//! [`validate`](super::validate) on it, so a value of this type always satisfies the
//! specification, and the encoders need not check again.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

use super::error::CloudEventError;
use super::validate;

/// The only `specversion` this crate reads and writes.
pub const SPEC_VERSION: &str = "1.0";

/// An event's payload, as CloudEvents carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// A JSON value (with a JSON `datacontenttype`, or none).
    Json(serde_json::Value),
    /// Text of another media type (`text/plain`, `application/xml`, …).
    Text(String),
    /// Bytes (`data_base64` in the JSON format; the body as is in binary mode).
    Binary(Vec<u8>),
}

/// The value of an extension attribute. CloudEvents' other types (URI, URI-reference,
/// timestamp, binary) travel as strings in every format chronicle speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionValue {
    /// A string (no control characters).
    String(String),
    /// A 32-bit signed integer, the specification's `Integer`.
    Integer(i32),
    /// A boolean.
    Boolean(bool),
}

impl ExtensionValue {
    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ExtensionValue::String(text) => serde_json::Value::String(text.clone()),
            ExtensionValue::Integer(number) => serde_json::Value::from(*number),
            ExtensionValue::Boolean(flag) => serde_json::Value::Bool(*flag),
        }
    }

    /// The string, when it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ExtensionValue::String(text) => Some(text),
            _ => None,
        }
    }
}

impl fmt::Display for ExtensionValue {
    /// The canonical string form (`true`, `42`, the text itself), as HTTP headers carry
    /// it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtensionValue::String(text) => f.write_str(text),
            ExtensionValue::Integer(number) => write!(f, "{number}"),
            ExtensionValue::Boolean(flag) => write!(f, "{flag}"),
        }
    }
}

impl From<String> for ExtensionValue {
    fn from(text: String) -> Self {
        ExtensionValue::String(text)
    }
}

impl From<&str> for ExtensionValue {
    fn from(text: &str) -> Self {
        ExtensionValue::String(text.to_owned())
    }
}

impl From<i32> for ExtensionValue {
    fn from(number: i32) -> Self {
        ExtensionValue::Integer(number)
    }
}

impl From<bool> for ExtensionValue {
    fn from(flag: bool) -> Self {
        ExtensionValue::Boolean(flag)
    }
}

/// A CloudEvent (specversion 1.0): context attributes, extensions and optional data.
///
/// ```
/// use chronicle::cloudevents::{CloudEvent, Data};
/// use serde_json::json;
///
/// let event = CloudEvent::builder("A234-1234-1234", "/billing", "com.example.invoice.paid")
///     .subject("invoice-17")
///     .extension("tenantid", "acme")
///     .data_json(json!({ "amount": 12 }))
///     .build()?;
/// assert_eq!(event.specversion(), "1.0");
/// assert_eq!(event.datacontenttype(), Some("application/json"));
/// assert_eq!(event.data(), Some(&Data::Json(json!({ "amount": 12 }))));
///
/// // Every rule of the specification is checked, and the error names the attribute.
/// let error = CloudEvent::builder("1", "/billing", "paid").extension("Tenant", "acme").build();
/// assert_eq!(error.unwrap_err().attribute(), Some("Tenant"));
/// # Ok::<(), chronicle::cloudevents::CloudEventError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub(crate) id: String,
    pub(crate) source: String,
    pub(crate) ty: String,
    pub(crate) datacontenttype: Option<String>,
    pub(crate) dataschema: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) time: Option<DateTime<FixedOffset>>,
    pub(crate) extensions: BTreeMap<String, ExtensionValue>,
    pub(crate) data: Option<Data>,
}

impl CloudEvent {
    /// A builder for an event with the three required attributes (specversion is 1.0).
    pub fn builder(
        id: impl Into<String>,
        source: impl Into<String>,
        ty: impl Into<String>,
    ) -> CloudEventBuilder {
        CloudEventBuilder {
            event: CloudEvent {
                id: id.into(),
                source: source.into(),
                ty: ty.into(),
                datacontenttype: None,
                dataschema: None,
                subject: None,
                time: None,
                extensions: BTreeMap::new(),
                data: None,
            },
        }
    }

    /// A builder starting from this event, to derive another from it.
    pub fn to_builder(&self) -> CloudEventBuilder {
        CloudEventBuilder {
            event: self.clone(),
        }
    }

    /// `id`: unique within the scope of `source`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `source`: the context the event happened in (a URI-reference).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `specversion`: always `1.0`.
    pub fn specversion(&self) -> &'static str {
        SPEC_VERSION
    }

    /// `type`: what happened, usually reverse-DNS (`com.example.invoice.paid`).
    pub fn ty(&self) -> &str {
        &self.ty
    }

    /// `datacontenttype`: the media type of the data.
    pub fn datacontenttype(&self) -> Option<&str> {
        self.datacontenttype.as_deref()
    }

    /// `dataschema`: the schema the data adheres to (an absolute URI).
    pub fn dataschema(&self) -> Option<&str> {
        self.dataschema.as_deref()
    }

    /// `subject`: what the event is about, within `source`.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// `time`: when it happened.
    pub fn time(&self) -> Option<&DateTime<FixedOffset>> {
        self.time.as_ref()
    }

    /// `time` as RFC 3339 text, as the formats write it (`Z` for UTC).
    pub(crate) fn time_text(&self) -> Option<String> {
        self.time.map(|time| format_time(&time))
    }

    /// The extension attribute `name`.
    pub fn extension(&self, name: &str) -> Option<&ExtensionValue> {
        self.extensions.get(name)
    }

    /// Every extension attribute, by name.
    pub fn extensions(&self) -> &BTreeMap<String, ExtensionValue> {
        &self.extensions
    }

    /// The data, if any.
    pub fn data(&self) -> Option<&Data> {
        self.data.as_ref()
    }

    /// The data as bytes: JSON serialized, text as UTF-8, binary as is (empty when
    /// none). This is the body of a binary-mode message.
    pub fn data_bytes(&self) -> Vec<u8> {
        match &self.data {
            None => Vec::new(),
            // Serializing a `Value` cannot fail: its map keys are strings.
            Some(Data::Json(value)) => serde_json::to_vec(value).unwrap_or_default(),
            Some(Data::Text(text)) => text.as_bytes().to_vec(),
            Some(Data::Binary(bytes)) => bytes.clone(),
        }
    }
}

/// RFC 3339 with as many fractional digits as needed and `Z` for UTC.
pub(crate) fn format_time(time: &DateTime<FixedOffset>) -> String {
    if time.offset().local_minus_utc() == 0 {
        time.with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    } else {
        time.to_rfc3339_opts(SecondsFormat::AutoSi, false)
    }
}

/// Builds a [`CloudEvent`]; [`build`](CloudEventBuilder::build) checks it.
#[derive(Debug, Clone)]
pub struct CloudEventBuilder {
    event: CloudEvent,
}

impl CloudEventBuilder {
    /// Sets `id`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.event.id = id.into();
        self
    }

    /// Sets `source`.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.event.source = source.into();
        self
    }

    /// Sets `type`.
    pub fn ty(mut self, ty: impl Into<String>) -> Self {
        self.event.ty = ty.into();
        self
    }

    /// Sets `subject`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.event.subject = Some(subject.into());
        self
    }

    /// Sets `time`.
    pub fn time(mut self, time: impl Into<DateTime<FixedOffset>>) -> Self {
        self.event.time = Some(time.into());
        self
    }

    /// Sets `datacontenttype`.
    pub fn datacontenttype(mut self, media_type: impl Into<String>) -> Self {
        self.event.datacontenttype = Some(media_type.into());
        self
    }

    /// Sets `dataschema`.
    pub fn dataschema(mut self, uri: impl Into<String>) -> Self {
        self.event.dataschema = Some(uri.into());
        self
    }

    /// Sets the extension attribute `name` (replacing one of that name).
    pub fn extension(mut self, name: impl Into<String>, value: impl Into<ExtensionValue>) -> Self {
        self.event.extensions.insert(name.into(), value.into());
        self
    }

    /// Removes the extension attribute `name`.
    pub fn without_extension(mut self, name: &str) -> Self {
        self.event.extensions.remove(name);
        self
    }

    /// JSON data; `datacontenttype` becomes `application/json` unless set.
    pub fn data_json(mut self, value: serde_json::Value) -> Self {
        if self.event.datacontenttype.is_none() {
            self.event.datacontenttype = Some("application/json".to_owned());
        }
        self.event.data = Some(Data::Json(value));
        self
    }

    /// Text data of the media type `media_type`.
    pub fn data_text(mut self, media_type: impl Into<String>, text: impl Into<String>) -> Self {
        self.event.datacontenttype = Some(media_type.into());
        self.event.data = Some(Data::Text(text.into()));
        self
    }

    /// Binary data of the media type `media_type`.
    pub fn data_binary(mut self, media_type: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        self.event.datacontenttype = Some(media_type.into());
        self.event.data = Some(Data::Binary(bytes.into()));
        self
    }

    /// Sets the data as given, leaving `datacontenttype` alone (`None` removes the data).
    pub fn data(mut self, data: Option<Data>) -> Self {
        self.event.data = data;
        self
    }

    /// The event, checked against every rule of the specification.
    ///
    /// # Errors
    /// The first rule broken, naming its attribute ([`CloudEventError::attribute`]).
    pub fn build(self) -> Result<CloudEvent, CloudEventError> {
        validate::event(&self.event)?;
        Ok(self.event)
    }
}
