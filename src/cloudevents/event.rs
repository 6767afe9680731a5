//! The CloudEvents 1.0 event model: [`CloudEvent`] (its context attributes, extensions
//! and data), [`Data`] and [`ExtensionValue`]. `builder.rs` holds the builder that checks
//! every rule of the specification before an event exists.
//!
//! A `CloudEvent` is valid by construction: the builder and the decoders run
//! [`validate`](super::validate) on it, so a value of this type always satisfies the
//! specification, and the encoders need not check again.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

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
