//! What can go wrong with a CloudEvent: an event that breaks a rule of the specification
//! or of its formats ([`CloudEventError`], always naming the attribute when there is one),
//! and a mapping to or from chronicle's events that cannot be made ([`MappingError`]).
//!
//! The HTTP side's errors live with their code: delivery results in `delivery.rs`, the
//! receiver's server in `receiver.rs`, the webhook's in `webhook.rs`.

/// An event that breaks a rule of CloudEvents 1.0, its JSON format or its HTTP binding.
///
/// Every variant that concerns one attribute names it ([`CloudEventError::attribute`]):
/// the receiver puts that name in its 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloudEventError {
    /// A required attribute is absent (or `null` in JSON).
    #[error("the CloudEvent has no `{attribute}`")]
    Missing {
        /// The attribute.
        attribute: String,
    },

    /// An attribute is present but empty where the specification wants a non-empty value.
    #[error("`{attribute}` is empty")]
    Empty {
        /// The attribute.
        attribute: String,
    },

    /// An attribute has the wrong JSON type (a number where a string belongs, an object as
    /// an extension value).
    #[error("`{attribute}` must be {expected}")]
    WrongType {
        /// The attribute.
        attribute: String,
        /// What it must be.
        expected: &'static str,
    },

    /// An attribute's value breaks a rule: not a URI-reference, not an RFC 3339 time, a
    /// control character, bad percent-encoding, bad base64, an extension name outside
    /// `[a-z0-9]`, …
    #[error("`{attribute}` is invalid ({reason}): {value:?}")]
    InvalidValue {
        /// The attribute (or extension) concerned.
        attribute: String,
        /// The offending value, cut to 100 characters.
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },

    /// `specversion` is not `1.0`.
    #[error("specversion `{found}` is not supported: only 1.0 is")]
    UnsupportedSpecVersion {
        /// The version given.
        found: String,
    },

    /// The body is not a JSON event (or batch) at all: not JSON, or not an object (array).
    #[error("malformed CloudEvent: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },

    /// The HTTP message is in no mode this binding reads: a structured or batch format
    /// other than JSON, or a body without `ce-` headers whose content type is not a
    /// CloudEvents format.
    #[error("unsupported content type `{content_type}`: {reason}")]
    UnsupportedContentType {
        /// The `Content-Type` given (empty when none).
        content_type: String,
        /// What would have been accepted.
        reason: &'static str,
    },
}

impl CloudEventError {
    /// The attribute the error concerns, if one.
    pub fn attribute(&self) -> Option<&str> {
        match self {
            CloudEventError::Missing { attribute }
            | CloudEventError::Empty { attribute }
            | CloudEventError::WrongType { attribute, .. }
            | CloudEventError::InvalidValue { attribute, .. } => Some(attribute),
            CloudEventError::UnsupportedSpecVersion { .. } => Some("specversion"),
            CloudEventError::Malformed { .. } | CloudEventError::UnsupportedContentType { .. } => {
                None
            }
        }
    }

    pub(crate) fn missing(attribute: &str) -> Self {
        CloudEventError::Missing {
            attribute: attribute.to_owned(),
        }
    }

    pub(crate) fn invalid(attribute: &str, value: &str, reason: &'static str) -> Self {
        CloudEventError::InvalidValue {
            attribute: attribute.to_owned(),
            value: value.chars().take(100).collect(),
            reason,
        }
    }

    pub(crate) fn wrong_type(attribute: &str, expected: &'static str) -> Self {
        CloudEventError::WrongType {
            attribute: attribute.to_owned(),
            expected,
        }
    }
}

/// A chronicle event that cannot become a CloudEvent, or a CloudEvent that cannot become
/// a chronicle event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// The CloudEvent the mapping built breaks a rule (an event type with a control
    /// character, a configured source that is not a URI-reference, …).
    #[error("event {event_id} does not make a valid CloudEvent: {source}")]
    Invalid {
        /// The event's id.
        event_id: String,
        /// The rule it breaks.
        #[source]
        source: CloudEventError,
    },

    /// A stored payload is not JSON (chronicle's payloads always are).
    #[error("the payload of event {event_id} is not JSON: {source}")]
    Payload {
        /// The event's id.
        event_id: String,
        /// serde_json's account.
        #[source]
        source: serde_json::Error,
    },

    /// The event's metadata holds a `$cloudevent` record (the attributes of the
    /// CloudEvent it was received as) that is not of the shape the mapping writes.
    #[error("the `$cloudevent` metadata of event {event_id} is unreadable: {source}")]
    Origin {
        /// The event's id.
        event_id: String,
        /// serde_json's account.
        #[source]
        source: serde_json::Error,
    },

    /// The `schemaversion` extension is not a whole number from 1 to 2³²−1.
    #[error("`schemaversion` of CloudEvent {event_id} is not a positive 32-bit number: {value:?}")]
    SchemaVersion {
        /// The CloudEvent's id.
        event_id: String,
        /// The value given.
        value: String,
    },
}

impl MappingError {
    /// The CloudEvent attribute the error concerns, if one.
    pub fn attribute(&self) -> Option<&str> {
        match self {
            MappingError::Invalid { source, .. } => source.attribute(),
            MappingError::Payload { .. } => Some("data"),
            MappingError::Origin { .. } => None,
            MappingError::SchemaVersion { .. } => Some("schemaversion"),
        }
    }
}
