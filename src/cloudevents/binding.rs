//! The HTTP protocol binding (CloudEvents HTTP Protocol Binding 1.0): how an event becomes
//! an HTTP message and back, in its three content modes.
//!
//! - **Structured:** the whole event in the body, `Content-Type:
//!   application/cloudevents+json`.
//! - **Binary:** each attribute in a `ce-{name}` header (percent-encoded: space, `"`, `%`
//!   and everything outside printable ASCII), `datacontenttype` as `Content-Type`, the
//!   data as the body.
//! - **Batch:** a JSON array of events, `Content-Type:
//!   application/cloudevents-batch+json`.
//!
//! Used by both sides: the client encodes requests and decodes replies, the receiver
//! decodes requests and encodes replies. Nothing here touches the network.

use std::collections::BTreeMap;

use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::error::CloudEventError;
use super::event::{CloudEvent, Data, ExtensionValue, SPEC_VERSION};
use super::format::{self, BATCH_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE};
use super::validate;

/// How a single event travels in an HTTP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The whole event as a JSON body (`application/cloudevents+json`).
    #[default]
    Structured,
    /// Attributes in `ce-*` headers, the data as the body.
    Binary,
}

/// What an HTTP message carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// One event, and the mode it came in (a reply goes back in the same mode).
    Event {
        /// The event.
        event: CloudEvent,
        /// Its content mode.
        mode: Mode,
    },
    /// A batch of events (possibly empty).
    Batch(Vec<CloudEvent>),
}

/// The prefix of binary-mode attribute headers.
const CE_PREFIX: &str = "ce-";

/// What a `ce-*` header value percent-encodes: controls, space, `"`, `%` (and, always,
/// every byte outside ASCII).
const HEADER_ENCODE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// A header value for `value`, percent-encoded as the binding says.
fn header_value(value: &str) -> HeaderValue {
    let encoded = utf8_percent_encode(value, HEADER_ENCODE).to_string();
    // Only printable ASCII is left, which every header value may hold.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn ce_header(name: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(format!("{CE_PREFIX}{name}").as_bytes()).ok()
}

/// `event` as headers and body in `mode`.
pub fn encode(event: &CloudEvent, mode: Mode) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    match mode {
        Mode::Structured => {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static(STRUCTURED_CONTENT_TYPE),
            );
            (headers, format::to_bytes(event))
        }
        Mode::Binary => {
            let mut put = |name: &str, value: &str| {
                if let Some(name) = ce_header(name) {
                    headers.insert(name, header_value(value));
                }
            };
            put("specversion", SPEC_VERSION);
            put("id", &event.id);
            put("source", &event.source);
            put("type", &event.ty);
            if let Some(subject) = &event.subject {
                put("subject", subject);
            }
            if let Some(time) = event.time_text() {
                put("time", &time);
            }
            if let Some(uri) = &event.dataschema {
                put("dataschema", uri);
            }
            for (name, value) in &event.extensions {
                put(name, &value.to_string());
            }
            let media_type = match (&event.datacontenttype, &event.data) {
                (Some(media_type), _) => Some(media_type.as_str()),
                (None, Some(Data::Json(_))) => Some("application/json"),
                (None, _) => None,
            };
            if let Some(media_type) = media_type {
                // A checked media type is printable ASCII.
                if let Ok(value) = HeaderValue::from_str(media_type) {
                    headers.insert(CONTENT_TYPE, value);
                }
            }
            (headers, event.data_bytes())
        }
    }
}

/// `events` as a batch-mode message.
pub fn encode_batch(events: &[CloudEvent]) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(BATCH_CONTENT_TYPE));
    (headers, format::batch_to_bytes(events))
}

/// The format an HTTP message's content type names.
enum Format {
    Structured,
    Batch,
    /// Another structured or batch format (XML, Avro, Protobuf): not read here.
    Unsupported,
    /// Not a CloudEvents format: binary mode, if `ce-*` headers say so.
    Other,
}

fn format_of(media_type: &str) -> Format {
    let essence = validate::essence(media_type);
    if essence == STRUCTURED_CONTENT_TYPE {
        Format::Structured
    } else if essence == BATCH_CONTENT_TYPE {
        Format::Batch
    } else if essence.starts_with("application/cloudevents") {
        Format::Unsupported
    } else {
        Format::Other
    }
}

/// The message's `Content-Type`, if any.
fn content_type(headers: &HeaderMap) -> Result<Option<&str>, CloudEventError> {
    headers
        .get(CONTENT_TYPE)
        .map(|value| {
            value.to_str().map_err(|_| {
                CloudEventError::invalid(
                    "datacontenttype",
                    &String::from_utf8_lossy(value.as_bytes()),
                    "the Content-Type header is not ASCII",
                )
            })
        })
        .transpose()
}

fn has_ce_headers(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|name| name.as_str().starts_with(CE_PREFIX))
}

/// The event or batch an HTTP request carries.
///
/// # Errors
/// [`CloudEventError::UnsupportedContentType`] for a format other than JSON, or a body
/// that is in no mode; else the first rule broken, naming its attribute (a missing
/// `ce-specversion`, bad percent-encoding in a `ce-*` header, malformed JSON, …).
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Incoming, CloudEventError> {
    let media_type = content_type(headers)?;
    match media_type.map(format_of) {
        Some(Format::Structured) => Ok(Incoming::Event {
            event: format::from_bytes(body)?,
            mode: Mode::Structured,
        }),
        Some(Format::Batch) => Ok(Incoming::Batch(format::batch_from_bytes(body)?)),
        Some(Format::Unsupported) => Err(CloudEventError::UnsupportedContentType {
            content_type: media_type.unwrap_or_default().to_owned(),
            reason: "only the JSON event format is supported",
        }),
        Some(Format::Other) | None if has_ce_headers(headers) => Ok(Incoming::Event {
            event: decode_binary(headers, media_type, body)?,
            mode: Mode::Binary,
        }),
        Some(Format::Other) | None => Err(CloudEventError::UnsupportedContentType {
            content_type: media_type.unwrap_or_default().to_owned(),
            reason: "expected application/cloudevents+json, application/cloudevents-batch+json, \
                     or binary mode with ce-* headers",
        }),
    }
}

/// The event an HTTP reply carries, or `None` when it carries none (no `ce-*` headers
/// and no CloudEvents content type: a plain `202`, say).
///
/// # Errors
/// As [`decode`]; a batch is [`CloudEventError::Malformed`] (a reply is one event).
pub fn decode_reply(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<CloudEvent>, CloudEventError> {
    let media_type = content_type(headers)?;
    let is_format =
        media_type.is_some_and(|media_type| !matches!(format_of(media_type), Format::Other));
    if !is_format && !has_ce_headers(headers) {
        return Ok(None);
    }
    match decode(headers, body)? {
        Incoming::Event { event, .. } => Ok(Some(event)),
        Incoming::Batch(_) => Err(CloudEventError::Malformed {
            reason: "a reply must be one event, not a batch".to_owned(),
        }),
    }
}

fn decode_binary(
    headers: &HeaderMap,
    media_type: Option<&str>,
    body: &[u8],
) -> Result<CloudEvent, CloudEventError> {
    let mut attributes: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix(CE_PREFIX) else {
            continue;
        };
        let decoded = percent_decode(attribute, value.as_bytes())?;
        if attributes.insert(attribute.to_owned(), decoded).is_some() {
            return Err(CloudEventError::invalid(
                attribute,
                "",
                "the ce- header is given more than once",
            ));
        }
    }
    let specversion = attributes
        .remove("specversion")
        .ok_or_else(|| CloudEventError::missing("specversion"))?;
    if specversion != SPEC_VERSION {
        return Err(CloudEventError::UnsupportedSpecVersion { found: specversion });
    }
    if let Some(value) = attributes.remove("datacontenttype") {
        return Err(CloudEventError::invalid(
            "datacontenttype",
            &value,
            "in binary mode datacontenttype is the Content-Type header, not ce-datacontenttype",
        ));
    }
    let mut required = |name: &str| {
        attributes
            .remove(name)
            .ok_or_else(|| CloudEventError::missing(name))
    };
    let id = required("id")?;
    let source = required("source")?;
    let ty = required("type")?;
    let time = attributes
        .remove("time")
        .map(|text| format::parse_time("time", &text))
        .transpose()?;
    let subject = attributes.remove("subject");
    let dataschema = attributes.remove("dataschema");
    let datacontenttype = media_type.map(str::to_owned);
    if let Some(media_type) = &datacontenttype {
        validate::media_type("datacontenttype", media_type)?;
    }
    let data = binary_data(datacontenttype.as_deref(), body)?;
    let mut extensions = BTreeMap::new();
    for (name, value) in attributes {
        validate::extension_name(&name)?;
        extensions.insert(name, ExtensionValue::String(value));
    }
    let event = CloudEvent {
        id,
        source,
        ty,
        datacontenttype,
        dataschema,
        subject,
        time,
        extensions,
        data,
    };
    validate::event(&event)?;
    Ok(event)
}

/// A binary-mode body as data: JSON for a JSON media type, text for `text/*` in UTF-8,
/// bytes otherwise; an empty body is no data.
fn binary_data(media_type: Option<&str>, body: &[u8]) -> Result<Option<Data>, CloudEventError> {
    if body.is_empty() {
        return Ok(None);
    }
    let Some(media_type) = media_type else {
        return Ok(Some(Data::Binary(body.to_vec())));
    };
    if validate::is_json(media_type) {
        return serde_json::from_slice(body)
            .map(|value| Some(Data::Json(value)))
            .map_err(|_| {
                CloudEventError::invalid(
                    "data",
                    &String::from_utf8_lossy(body),
                    "the body is not the JSON its Content-Type says",
                )
            });
    }
    if validate::essence(media_type).starts_with("text/")
        && let Ok(text) = std::str::from_utf8(body)
    {
        return Ok(Some(Data::Text(text.to_owned())));
    }
    Ok(Some(Data::Binary(body.to_vec())))
}

/// A `ce-*` header value, percent-decoded strictly: `%` must start two hex digits, raw
/// bytes must be printable ASCII (or space), and the result must be UTF-8.
fn percent_decode(attribute: &str, raw: &[u8]) -> Result<String, CloudEventError> {
    let lossy = || String::from_utf8_lossy(raw).into_owned();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        let byte = raw[index];
        if byte == b'%' {
            let pair = raw.get(index + 1..index + 3);
            let value = pair
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .filter(|pair| pair.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|pair| u8::from_str_radix(pair, 16).ok());
            let Some(value) = value else {
                return Err(CloudEventError::invalid(
                    attribute,
                    &lossy(),
                    "bad percent-encoding: `%` must start two hex digits",
                ));
            };
            bytes.push(value);
            index += 3;
            continue;
        }
        if !(0x20..=0x7E).contains(&byte) {
            return Err(CloudEventError::invalid(
                attribute,
                &lossy(),
                "a raw byte outside printable ASCII: it must be percent-encoded",
            ));
        }
        bytes.push(byte);
        index += 1;
    }
    String::from_utf8(bytes).map_err(|_| {
        CloudEventError::invalid(
            attribute,
            &lossy(),
            "bad percent-encoding: the bytes are not UTF-8",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> CloudEvent {
        CloudEvent::builder("id 1 \"q\" 100%", "/src/%C3%A9", "com.example.t")
            .subject("ünï cødé")
            .time(chrono::DateTime::parse_from_rfc3339("2026-05-01T10:00:00+02:00").expect("time"))
            .extension("flag", "true")
            .data_json(json!({ "x": 1 }))
            .build()
            .expect("valid")
    }

    #[test]
    fn binary_mode_percent_encodes_and_round_trips() {
        let (headers, body) = encode(&event(), Mode::Binary);
        assert_eq!(headers["ce-id"], "id%201%20%22q%22%20100%25");
        assert_eq!(headers["ce-source"], "/src/%25C3%25A9");
        assert_eq!(headers["ce-subject"], "%C3%BCn%C3%AF%20c%C3%B8d%C3%A9");
        assert_eq!(headers["ce-time"], "2026-05-01T10:00:00+02:00");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body, br#"{"x":1}"#);
        let decoded = decode(&headers, &body).expect("decodes");
        assert_eq!(
            decoded,
            Incoming::Event {
                event: event(),
                mode: Mode::Binary
            }
        );
    }

    #[test]
    fn structured_and_batch_modes_round_trip() {
        let (headers, body) = encode(&event(), Mode::Structured);
        assert_eq!(
            decode(&headers, &body),
            Ok(Incoming::Event {
                event: event(),
                mode: Mode::Structured
            })
        );
        let (headers, body) = encode_batch(&[event(), event()]);
        assert_eq!(
            decode(&headers, &body),
            Ok(Incoming::Batch(vec![event(), event()]))
        );
    }

    fn binary_headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_bytes(value).expect("value"),
            );
        }
        headers
    }

    #[test]
    fn bad_binary_headers_name_the_attribute() {
        let base: Vec<(&str, &[u8])> = vec![
            ("ce-specversion", b"1.0"),
            ("ce-id", b"1"),
            ("ce-source", b"/s"),
            ("ce-type", b"t"),
        ];
        assert!(decode(&binary_headers(&base), b"").is_ok());
        let cases: Vec<(&str, &[u8], &str)> = vec![
            ("ce-subject", b"%zz", "subject"),
            ("ce-subject", b"%4", "subject"),
            ("ce-subject", b"%FF%FE", "subject"),
            ("ce-subject", b"\xC3\xA9", "subject"),
            ("ce-subject", b"a%0Ab", "subject"),
            ("ce-time", b"noon", "time"),
            ("ce-Bad_Name", b"x", "bad_name"),
            ("ce-datacontenttype", b"text/plain", "datacontenttype"),
            ("ce-id", b"2", "id"),
        ];
        for (name, value, attribute) in cases {
            let mut pairs = base.clone();
            pairs.push((name, value));
            let error = decode(&binary_headers(&pairs), b"").expect_err(name);
            assert_eq!(error.attribute(), Some(attribute), "{name}: {error}");
        }
        let missing = decode(&binary_headers(&base[1..]), b"").expect_err("no specversion");
        assert_eq!(missing, CloudEventError::missing("specversion"));
        let mut unknown = base.clone();
        unknown[0] = ("ce-specversion", b"0.3");
        assert!(matches!(
            decode(&binary_headers(&unknown), b""),
            Err(CloudEventError::UnsupportedSpecVersion { .. })
        ));
        let mut json = base.clone();
        json.push(("content-type", b"application/json"));
        let error = decode(&binary_headers(&json), b"{not json").expect_err("bad JSON body");
        assert_eq!(error.attribute(), Some("data"));
    }

    #[test]
    fn content_types_pick_the_mode() {
        let plain = binary_headers(&[("content-type", b"application/json")]);
        assert!(matches!(
            decode(&plain, b"{}"),
            Err(CloudEventError::UnsupportedContentType { .. })
        ));
        let xml = binary_headers(&[("content-type", b"application/cloudevents+xml")]);
        assert!(matches!(
            decode(&xml, b"<e/>"),
            Err(CloudEventError::UnsupportedContentType { .. })
        ));
        let charset = binary_headers(&[(
            "content-type",
            b"application/cloudevents+json; charset=UTF-8",
        )]);
        assert!(decode(&charset, &format::to_bytes(&event())).is_ok());
        assert_eq!(decode_reply(&HeaderMap::new(), b""), Ok(None));
        assert_eq!(decode_reply(&plain, b"ok"), Ok(None));
    }

    #[test]
    fn binary_bodies_by_media_type() {
        let base: Vec<(&str, &[u8])> = vec![
            ("ce-specversion", b"1.0"),
            ("ce-id", b"1"),
            ("ce-source", b"/s"),
            ("ce-type", b"t"),
        ];
        let with_type = |media_type: &'static [u8], body: &[u8]| {
            let mut pairs = base.clone();
            pairs.push(("content-type", media_type));
            match decode(&binary_headers(&pairs), body).expect("decodes") {
                Incoming::Event { event, .. } => event.data,
                Incoming::Batch(_) => None,
            }
        };
        assert_eq!(
            with_type(b"text/plain", b"hi"),
            Some(Data::Text("hi".into()))
        );
        assert_eq!(
            with_type(b"text/plain", b"\xFF"),
            Some(Data::Binary(vec![0xFF]))
        );
        assert_eq!(
            with_type(b"image/png", b"\x89P"),
            Some(Data::Binary(b"\x89P".to_vec()))
        );
        assert_eq!(
            with_type(b"application/vnd.x+json", b"[1]"),
            Some(Data::Json(json!([1])))
        );
    }
}
