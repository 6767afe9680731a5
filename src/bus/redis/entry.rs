//! An event as a stream entry's fields and back, and as a pub/sub message: the
//! [`wire`](crate::bus::wire) headers plus the [`DATA_FIELD`].

use std::collections::HashMap;

use ::redis::{Cmd, Value};
use serde_json::value::RawValue;

use super::DATA_FIELD;
use crate::bus::{BusEvent, wire};
use crate::error::{Error, Result};

/// Appends `XADD key [MAXLEN ~ maxlen] * <fields…>` for `event` to `cmd` (a fresh `XADD`).
pub(crate) fn xadd(key: &str, maxlen: Option<usize>, event: &BusEvent) -> Cmd {
    let mut cmd = ::redis::cmd("XADD");
    cmd.arg(key);
    if let Some(maxlen) = maxlen {
        cmd.arg("MAXLEN").arg("~").arg(maxlen);
    }
    cmd.arg("*");
    for (name, value) in wire::headers(event) {
        cmd.arg(name).arg(value);
    }
    cmd.arg(DATA_FIELD).arg(event.data_json());
    cmd
}

/// The text of a field's value, when it is text.
fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

/// The bytes of a field's value.
pub(crate) fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

/// The event a stream entry's fields carry (as `XREADGROUP`, `XRANGE` or `XCLAIM` return
/// them); `origin` (the stream key) names the entry in errors.
///
/// # Errors
/// [`Error::MalformedMessage`] when the [`DATA_FIELD`] is missing, or
/// [`wire::decode`] refuses the headers or the body.
pub fn decode_entry(fields: &HashMap<String, Value>, origin: &str) -> Result<BusEvent> {
    let Some(body) = fields.get(DATA_FIELD).and_then(bytes) else {
        return Err(Error::MalformedMessage {
            origin: origin.to_owned(),
            reason: format!("no `{DATA_FIELD}` field"),
        });
    };
    wire::decode(|name| fields.get(name).and_then(text), body, origin)
}

/// A pub/sub message for `event`. A message has no fields, so it is the stream entry's
/// fields as one JSON object: each header a string member, `data` the body as JSON.
pub(crate) fn message(event: &BusEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(event.data_json().len() + 256);
    out.push(b'{');
    for (name, value) in wire::headers(event) {
        // Serializing a string cannot fail.
        let _ = serde_json::to_writer(&mut out, name);
        out.push(b':');
        let _ = serde_json::to_writer(&mut out, &value);
        out.push(b',');
    }
    let _ = serde_json::to_writer(&mut out, DATA_FIELD);
    out.push(b':');
    out.extend_from_slice(event.data_json());
    out.push(b'}');
    out
}

/// The event of a pub/sub message ([`message`]); `origin` (the channel) names it in
/// errors.
pub(crate) fn decode_message(payload: &[u8], origin: &str) -> Result<BusEvent> {
    let malformed = |reason: String| Error::MalformedMessage {
        origin: origin.to_owned(),
        reason,
    };
    let members: HashMap<String, Box<RawValue>> = serde_json::from_slice(payload)
        .map_err(|error| malformed(format!("not a JSON object: {error}")))?;
    let mut headers = HashMap::with_capacity(members.len());
    for (name, value) in &members {
        if name == DATA_FIELD {
            continue;
        }
        let value: String = serde_json::from_str(value.get())
            .map_err(|error| malformed(format!("`{name}` is not a string: {error}")))?;
        headers.insert(name.as_str(), value);
    }
    let body = members
        .get(DATA_FIELD)
        .ok_or_else(|| malformed(format!("no `{DATA_FIELD}` member")))?;
    wire::decode(
        |name| headers.get(name).map(String::as_str),
        body.get().as_bytes(),
        origin,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> BusEvent {
        BusEvent::new(
            "user.Registered",
            serde_json::json!({ "name": "ada", "n": 1.50 }),
        )
        .subject("user-1")
        .correlation_id("req-1")
    }

    #[test]
    fn a_message_round_trips_with_its_body_byte_for_byte() {
        let event = event();
        let back = decode_message(&message(&event), "chronicle:user.Registered").expect("decodes");
        assert_eq!(back, event);
    }

    #[test]
    fn fields_round_trip() {
        let event = event();
        let mut fields: HashMap<String, Value> = wire::headers(&event)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), Value::BulkString(value.into_bytes())))
            .collect();
        fields.insert(
            DATA_FIELD.to_owned(),
            Value::BulkString(event.data_json().to_vec()),
        );
        assert_eq!(decode_entry(&fields, "user").expect("decodes"), event);
        fields.remove(DATA_FIELD);
        let error = decode_entry(&fields, "user").expect_err("no data");
        assert!(matches!(error, Error::MalformedMessage { .. }), "{error:?}");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for payload in [&b"nope"[..], b"[]", b"{\"ce-id\": 3}", b"{\"data\": 1}"] {
            let error = decode_message(payload, "c").expect_err("malformed");
            assert!(matches!(error, Error::MalformedMessage { .. }), "{error:?}");
        }
    }
}
