//! How a [`BusEvent`] travels through a broker: the one encoding every broker adapter
//! uses, so that a consumer in any language can read what chronicle publishes.
//!
//! A message's **body** is the event's data, the JSON text as stored. Its **headers**
//! (NATS headers, Redis stream fields, Kafka headers) carry the envelope, named as the
//! CloudEvents HTTP binding names them:
//!
//! | header | value |
//! | --- | --- |
//! | `ce-specversion` | `1.0` |
//! | `ce-id` | the event id (a UUID): the deduplication key |
//! | `ce-type` | the event type |
//! | `ce-source` | the source |
//! | `ce-subject` | the subject (the stream), when there is one |
//! | `ce-time` | the time, RFC 3339 |
//! | `content-type` | `application/json` |
//! | `chronicle-schemaversion` | the payload's schema version, when not 1 |
//! | `chronicle-metadata` | [`EventMetadata`] as JSON, when not empty |
//!
//! ```
//! use chronicle::bus::{BusEvent, wire};
//!
//! let event = BusEvent::new("user.Registered", serde_json::json!({ "name": "ada" }))
//!     .subject("user-1")
//!     .correlation_id("req-9");
//! let headers = wire::headers(&event);
//! let lookup = |name: &str| headers.iter().find(|(key, _)| *key == name).map(|(_, v)| v.as_str());
//! let back = wire::decode(lookup, event.data_json(), "example")?;
//! assert_eq!(back, event);
//! # Ok::<(), chronicle::Error>(())
//! ```

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use super::BusEvent;
use crate::error::{Error, Result};
use crate::event::EventMetadata;

/// The CloudEvents version the headers follow.
pub const SPEC_VERSION: &str = "1.0";
/// Header: the CloudEvents version.
pub const SPECVERSION: &str = "ce-specversion";
/// Header: the event id.
pub const ID: &str = "ce-id";
/// Header: the event type.
pub const TYPE: &str = "ce-type";
/// Header: the source.
pub const SOURCE: &str = "ce-source";
/// Header: the subject (the stream).
pub const SUBJECT: &str = "ce-subject";
/// Header: the time, RFC 3339.
pub const TIME: &str = "ce-time";
/// Header: the body's media type.
pub const CONTENT_TYPE: &str = "content-type";
/// Header: the payload's schema version.
pub const SCHEMA_VERSION: &str = "chronicle-schemaversion";
/// Header: the metadata as JSON.
pub const METADATA: &str = "chronicle-metadata";

/// The headers of `event`'s message, in a fixed order (the body is
/// [`BusEvent::data_json`]).
pub fn headers(event: &BusEvent) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        (SPECVERSION, SPEC_VERSION.to_owned()),
        (ID, event.id.to_string()),
        (TYPE, event.event_type.clone()),
        (SOURCE, event.source.clone()),
        (
            TIME,
            event.time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        ),
        (CONTENT_TYPE, "application/json".to_owned()),
    ];
    if let Some(subject) = &event.subject {
        headers.push((SUBJECT, subject.clone()));
    }
    if event.schema_version != 1 {
        headers.push((SCHEMA_VERSION, event.schema_version.to_string()));
    }
    if event.metadata != EventMetadata::default() {
        // Serializing metadata cannot fail: its custom map's keys are strings.
        if let Ok(metadata) = serde_json::to_string(&event.metadata) {
            headers.push((METADATA, metadata));
        }
    }
    headers
}

/// The event a message carries: `header` looks a header up by name, `body` is the
/// message's body, and `origin` (a subject, topic or stream key) names the message in
/// errors.
///
/// # Errors
/// [`Error::MalformedMessage`] naming `origin` when a required header (`ce-id`,
/// `ce-type`) is missing, or a header or the body does not parse (the body must be JSON).
pub fn decode<'a>(
    header: impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
    origin: &str,
) -> Result<BusEvent> {
    let malformed = |reason: String| Error::MalformedMessage {
        origin: origin.to_owned(),
        reason,
    };
    let required = |name: &str| header(name).ok_or_else(|| malformed(format!("no `{name}`")));
    let id: Uuid = required(ID)?
        .parse()
        .map_err(|error| malformed(format!("`{ID}` is not a UUID: {error}")))?;
    let event_type = required(TYPE)?;
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        return Err(malformed(format!("the body is not JSON: {error}")));
    }
    let mut event = BusEvent::from_json_bytes(id, event_type.to_owned(), body.to_vec());
    if let Some(source) = header(SOURCE) {
        event.source = source.to_owned();
    }
    event.subject = header(SUBJECT).map(str::to_owned);
    if let Some(time) = header(TIME) {
        event.time = DateTime::parse_from_rfc3339(time)
            .map_err(|error| malformed(format!("`{TIME}` is not RFC 3339: {error}")))?
            .with_timezone(&Utc);
    }
    if let Some(version) = header(SCHEMA_VERSION) {
        event.schema_version = version
            .parse()
            .map_err(|error| malformed(format!("`{SCHEMA_VERSION}`: {error}")))?;
    }
    if let Some(metadata) = header(METADATA) {
        event.metadata = serde_json::from_str(metadata)
            .map_err(|error| malformed(format!("`{METADATA}`: {error}")))?;
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lookup<'h>(headers: &'h [(&'static str, String)]) -> impl Fn(&str) -> Option<&'h str> {
        move |name| {
            headers
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.as_str())
        }
    }

    proptest! {
        #[test]
        fn every_event_survives_the_wire(
            event_type in "\\PC{1,40}",
            subject in proptest::option::of("\\PC{1,40}"),
            source in "\\PC{1,20}",
            schema_version in 1u32..1000,
            correlation in proptest::option::of("\\PC{0,20}"),
            text in "\\PC{0,60}",
            nanos in 0i64..4_000_000_000_000_000_000,
        ) {
            let mut event = BusEvent::new(event_type, serde_json::json!({ "text": text }))
                .source(source)
                .time(DateTime::from_timestamp_nanos(nanos));
            event.subject = subject;
            event.schema_version = schema_version;
            event.metadata.correlation_id = correlation;
            event.metadata.custom.insert("k".into(), serde_json::json!([1, "two"]));
            let headers = headers(&event);
            let back = decode(lookup(&headers), event.data_json(), "test").expect("decodes");
            prop_assert_eq!(back, event);
        }
    }

    #[test]
    fn a_message_without_an_id_or_with_a_body_that_is_not_json_is_malformed() {
        let event = BusEvent::new("a.B", serde_json::json!(1));
        let mut headers = headers(&event);
        let error = decode(lookup(&headers), b"{not json", "orders").expect_err("body");
        assert!(
            matches!(&error, Error::MalformedMessage { origin, .. } if origin == "orders"),
            "{error:?}"
        );
        headers.retain(|(name, _)| *name != ID);
        let error = decode(lookup(&headers), b"1", "orders").expect_err("no id");
        assert!(error.to_string().contains("ce-id"), "{error}");
    }
}
