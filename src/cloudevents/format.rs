//! The JSON event format (CloudEvents JSON Event Format 1.0): one event as a JSON object
//! (`application/cloudevents+json`) and a batch as an array of them
//! (`application/cloudevents-batch+json`).
//!
//! Data goes in `data` as JSON when the media type is JSON (or absent), as a JSON string
//! when it is text of another type, and base64-encoded in `data_base64` when it is
//! binary. `null` reads as an absent attribute.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::DateTime;
use serde_json::{Map, Value};

use super::error::CloudEventError;
use super::event::{CloudEvent, Data, ExtensionValue, SPEC_VERSION};
use super::validate;

/// The structured mode's media type.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
/// The batch mode's media type.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// `event` as a JSON object.
pub fn to_json(event: &CloudEvent) -> Value {
    let mut object = Map::new();
    object.insert("specversion".into(), SPEC_VERSION.into());
    object.insert("id".into(), event.id.clone().into());
    object.insert("source".into(), event.source.clone().into());
    object.insert("type".into(), event.ty.clone().into());
    let optional = [
        ("datacontenttype", event.datacontenttype.clone()),
        ("dataschema", event.dataschema.clone()),
        ("subject", event.subject.clone()),
        ("time", event.time_text()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            object.insert(name.into(), value.into());
        }
    }
    for (name, value) in &event.extensions {
        object.insert(name.clone(), value.to_json());
    }
    match &event.data {
        None => {}
        Some(Data::Json(value)) => {
            object.insert("data".into(), value.clone());
        }
        Some(Data::Text(text)) => {
            object.insert("data".into(), text.clone().into());
        }
        Some(Data::Binary(bytes)) => {
            object.insert("data_base64".into(), BASE64.encode(bytes).into());
        }
    }
    Value::Object(object)
}

/// `event` as the bytes of a structured-mode body.
pub fn to_bytes(event: &CloudEvent) -> Vec<u8> {
    // Serializing a `Value` cannot fail: its map keys are strings.
    serde_json::to_vec(&to_json(event)).unwrap_or_default()
}

/// `events` as the bytes of a batch-mode body.
pub fn batch_to_bytes(events: &[CloudEvent]) -> Vec<u8> {
    let array: Vec<Value> = events.iter().map(to_json).collect();
    serde_json::to_vec(&array).unwrap_or_default()
}

/// The event a structured-mode body holds.
///
/// # Errors
/// [`CloudEventError::Malformed`] when the bytes are not a JSON object; else the first
/// rule broken, naming the attribute.
pub fn from_bytes(bytes: &[u8]) -> Result<CloudEvent, CloudEventError> {
    from_json(parse(bytes)?)
}

/// The events a batch-mode body holds.
///
/// # Errors
/// [`CloudEventError::Malformed`] when the bytes are not a JSON array of objects; else the
/// first rule an event breaks, naming the attribute.
pub fn batch_from_bytes(bytes: &[u8]) -> Result<Vec<CloudEvent>, CloudEventError> {
    match parse(bytes)? {
        Value::Array(items) => items.into_iter().map(from_json).collect(),
        _ => Err(CloudEventError::Malformed {
            reason: "a batch must be a JSON array of events".to_owned(),
        }),
    }
}

fn parse(bytes: &[u8]) -> Result<Value, CloudEventError> {
    serde_json::from_slice(bytes).map_err(|error| CloudEventError::Malformed {
        reason: format!("not JSON: {error}"),
    })
}

/// The event a JSON object describes.
///
/// # Errors
/// As [`from_bytes`].
pub fn from_json(value: Value) -> Result<CloudEvent, CloudEventError> {
    let Value::Object(mut object) = value else {
        return Err(CloudEventError::Malformed {
            reason: "an event must be a JSON object".to_owned(),
        });
    };
    let specversion = take_string(&mut object, "specversion")?
        .ok_or_else(|| CloudEventError::missing("specversion"))?;
    if specversion != SPEC_VERSION {
        return Err(CloudEventError::UnsupportedSpecVersion { found: specversion });
    }
    let required = |object: &mut Map<String, Value>, name: &str| {
        take_string(object, name)?.ok_or_else(|| CloudEventError::missing(name))
    };
    let id = required(&mut object, "id")?;
    let source = required(&mut object, "source")?;
    let ty = required(&mut object, "type")?;
    let datacontenttype = take_string(&mut object, "datacontenttype")?;
    if let Some(media_type) = &datacontenttype {
        // Before the data, which is read by it.
        validate::media_type("datacontenttype", media_type)?;
    }
    let dataschema = take_string(&mut object, "dataschema")?;
    let subject = take_string(&mut object, "subject")?;
    let time = take_string(&mut object, "time")?
        .map(|text| parse_time("time", &text))
        .transpose()?;
    let data = take_data(&mut object, datacontenttype.as_deref())?;
    let mut extensions = std::collections::BTreeMap::new();
    for (name, value) in object {
        validate::extension_name(&name)?;
        let value = match value {
            Value::Null => continue,
            Value::String(text) => ExtensionValue::String(text),
            Value::Bool(flag) => ExtensionValue::Boolean(flag),
            Value::Number(number) => {
                let integer = number.as_i64().and_then(|n| i32::try_from(n).ok());
                match integer {
                    Some(integer) => ExtensionValue::Integer(integer),
                    None => {
                        return Err(CloudEventError::invalid(
                            &name,
                            &number.to_string(),
                            "an extension number must be a 32-bit integer",
                        ));
                    }
                }
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(CloudEventError::wrong_type(
                    &name,
                    "a string, a boolean or an integer",
                ));
            }
        };
        extensions.insert(name, value);
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

/// Removes the string member `name` (`null` reads as absent).
fn take_string(
    object: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<String>, CloudEventError> {
    match object.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(CloudEventError::wrong_type(name, "a string")),
    }
}

/// Removes `data` / `data_base64` and reads them by the media type.
fn take_data(
    object: &mut Map<String, Value>,
    media_type: Option<&str>,
) -> Result<Option<Data>, CloudEventError> {
    let data = object.remove("data").filter(|value| !value.is_null());
    let base64 = take_string(object, "data_base64")?;
    match (data, base64) {
        (Some(_), Some(text)) => Err(CloudEventError::invalid(
            "data_base64",
            &text,
            "`data` and `data_base64` cannot both be present",
        )),
        (None, Some(text)) => BASE64
            .decode(text.as_bytes())
            .map(|bytes| Some(Data::Binary(bytes)))
            .map_err(|_| CloudEventError::invalid("data_base64", &text, "not base64")),
        (None, None) => Ok(None),
        (Some(value), None) => match (media_type, value) {
            (Some(media_type), Value::String(text)) if !validate::is_json(media_type) => {
                Ok(Some(Data::Text(text)))
            }
            (Some(media_type), _) if !validate::is_json(media_type) => Err(
                CloudEventError::wrong_type("data", "a string when `datacontenttype` is not JSON"),
            ),
            (_, value) => Ok(Some(Data::Json(value))),
        },
    }
}

/// An RFC 3339 time.
pub(crate) fn parse_time(
    attribute: &str,
    text: &str,
) -> Result<DateTime<chrono::FixedOffset>, CloudEventError> {
    DateTime::parse_from_rfc3339(text)
        .map_err(|_| CloudEventError::invalid(attribute, text, "not an RFC 3339 time"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full() -> CloudEvent {
        CloudEvent::builder("id-1", "https://example.com/src", "com.example.thing")
            .subject("thing-1")
            .time(DateTime::parse_from_rfc3339("2026-05-01T10:00:00.123456Z").expect("time"))
            .dataschema("https://example.com/schema")
            .extension("flag", true)
            .extension("count", 7)
            .extension("note", "hé")
            .data_json(json!({ "a": [1, 2] }))
            .build()
            .expect("valid")
    }

    #[test]
    fn json_round_trips_every_kind_of_data() {
        let text = full()
            .to_builder()
            .data_text("text/plain", "hi")
            .build()
            .expect("text");
        let binary = full()
            .to_builder()
            .data_binary("application/octet-stream", vec![0u8, 255, 7])
            .build()
            .expect("binary");
        let none = full().to_builder().data(None).build().expect("none");
        for event in [full(), text, binary, none] {
            assert_eq!(from_bytes(&to_bytes(&event)), Ok(event));
        }
        let batch = vec![full(), full().to_builder().id("id-2").build().expect("2")];
        assert_eq!(batch_from_bytes(&batch_to_bytes(&batch)), Ok(batch));
    }

    #[test]
    fn every_rule_names_its_attribute() {
        let base = to_json(&full());
        let with = |name: &str, value: Value| {
            let mut object = base.clone();
            object[name] = value;
            from_json(object).expect_err(name)
        };
        let without = |name: &str| {
            let mut object = base.clone();
            object.as_object_mut().expect("object").remove(name);
            from_json(object).expect_err(name)
        };
        for name in ["specversion", "id", "source", "type"] {
            assert_eq!(without(name).attribute(), Some(name));
            assert_eq!(with(name, json!(5)).attribute(), Some(name));
        }
        assert!(matches!(
            with("specversion", json!("0.3")),
            CloudEventError::UnsupportedSpecVersion { .. }
        ));
        for (name, value) in [
            ("id", json!("")),
            ("source", json!("not a uri")),
            ("type", json!("a\u{1}b")),
            ("subject", json!("")),
            ("time", json!("yesterday")),
            ("dataschema", json!("relative/schema")),
            ("datacontenttype", json!("json")),
            ("data_base64", json!("!!!")),
            ("count", json!(1.5)),
            ("count", json!(4_000_000_000_i64)),
            ("count", json!({ "nested": true })),
            ("BadName", json!("x")),
        ] {
            assert_eq!(
                with(name, value.clone()).attribute(),
                Some(name),
                "{name}: {value}"
            );
        }
        assert!(matches!(
            from_json(json!([1])),
            Err(CloudEventError::Malformed { .. })
        ));
        assert!(matches!(
            from_bytes(b"{\"id\":"),
            Err(CloudEventError::Malformed { .. })
        ));
        assert!(matches!(
            batch_from_bytes(b"{}"),
            Err(CloudEventError::Malformed { .. })
        ));
    }

    #[test]
    fn null_attributes_are_absent() {
        let mut object = to_json(&full());
        object["subject"] = Value::Null;
        object["note"] = Value::Null;
        let event = from_json(object).expect("valid");
        assert_eq!(event.subject(), None);
        assert_eq!(event.extension("note"), None);
    }

    #[test]
    fn text_media_types_read_data_as_text() {
        let event = from_json(json!({
            "specversion": "1.0", "id": "1", "source": "/s", "type": "t",
            "datacontenttype": "text/xml", "data": "<a/>"
        }))
        .expect("valid");
        assert_eq!(event.data(), Some(&Data::Text("<a/>".into())));
        let error = from_json(json!({
            "specversion": "1.0", "id": "1", "source": "/s", "type": "t",
            "datacontenttype": "text/xml", "data": { "a": 1 }
        }))
        .expect_err("object data of a text type");
        assert_eq!(error.attribute(), Some("data"));
    }
}
