//! Every rule CloudEvents 1.0 sets on an event, in one place: the required attributes are
//! present and non-empty, strings hold no control characters or noncharacters, `source`
//! is a URI-reference and `dataschema` an absolute URI (RFC 3986), `datacontenttype` a
//! media type (RFC 2046), extension names are lower-case `a-z` and `0-9` and clash with no
//! context attribute, and JSON data has a JSON media type.
//!
//! The builder and every decoder end here, so each rule is written once. Names longer
//! than the 20 characters the specification recommends are accepted (it is a SHOULD).

use super::error::CloudEventError;
use super::event::{CloudEvent, Data, ExtensionValue};

/// The context attributes of CloudEvents 1.0, and the JSON format's data members: no
/// extension may take these names.
pub(crate) const RESERVED: [&str; 10] = [
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
];

/// Checks `event` against every rule; the first one broken is the error.
pub(crate) fn event(event: &CloudEvent) -> Result<(), CloudEventError> {
    required("id", &event.id)?;
    required("source", &event.source)?;
    uri_reference("source", &event.source)?;
    required("type", &event.ty)?;
    if let Some(media_type) = &event.datacontenttype {
        required("datacontenttype", media_type)?;
        self::media_type("datacontenttype", media_type)?;
    }
    if let Some(uri) = &event.dataschema {
        required("dataschema", uri)?;
        absolute_uri("dataschema", uri)?;
    }
    if let Some(subject) = &event.subject {
        required("subject", subject)?;
    }
    for (name, value) in &event.extensions {
        extension_name(name)?;
        if let ExtensionValue::String(text) = value {
            string(name, text)?;
        }
    }
    if let (Some(Data::Json(_)), Some(media_type)) = (&event.data, &event.datacontenttype)
        && !is_json(media_type)
    {
        return Err(CloudEventError::invalid(
            "datacontenttype",
            media_type,
            "JSON data needs a JSON media type",
        ));
    }
    Ok(())
}

/// A required string attribute: non-empty and a valid string.
fn required(attribute: &str, value: &str) -> Result<(), CloudEventError> {
    if value.is_empty() {
        return Err(CloudEventError::Empty {
            attribute: attribute.to_owned(),
        });
    }
    string(attribute, value)
}

/// The specification's `String`: no control characters (U+0000–U+001F, U+007F–U+009F)
/// and no noncharacters (Rust strings hold no surrogates).
pub(crate) fn string(attribute: &str, value: &str) -> Result<(), CloudEventError> {
    if value.chars().any(char::is_control) {
        return Err(CloudEventError::invalid(
            attribute,
            value,
            "control characters are not allowed",
        ));
    }
    if value.chars().any(is_noncharacter) {
        return Err(CloudEventError::invalid(
            attribute,
            value,
            "Unicode noncharacters are not allowed",
        ));
    }
    Ok(())
}

fn is_noncharacter(c: char) -> bool {
    let code = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE
}

/// An extension attribute's name: `[a-z0-9]+`, not a context attribute.
pub(crate) fn extension_name(name: &str) -> Result<(), CloudEventError> {
    if name.is_empty() {
        return Err(CloudEventError::invalid(
            name,
            name,
            "an extension name cannot be empty",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(CloudEventError::invalid(
            name,
            name,
            "extension names are lower-case a-z and 0-9 only",
        ));
    }
    if RESERVED.contains(&name) {
        return Err(CloudEventError::invalid(
            name,
            name,
            "a context attribute's name cannot be an extension",
        ));
    }
    Ok(())
}

/// RFC 3986 characters: unreserved, reserved, and `%` with two hex digits.
fn uri_characters(attribute: &str, value: &str) -> Result<(), CloudEventError> {
    let bytes = value.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let hex = bytes.get(index + 1..index + 3);
            if !hex.is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit)) {
                return Err(CloudEventError::invalid(
                    attribute,
                    value,
                    "`%` must start a percent-encoded byte",
                ));
            }
            index += 3;
            continue;
        }
        if !(byte.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&byte)) {
            return Err(CloudEventError::invalid(
                attribute,
                value,
                "not a URI: a character RFC 3986 does not allow",
            ));
        }
        index += 1;
    }
    if value.matches('#').count() > 1 {
        return Err(CloudEventError::invalid(
            attribute,
            value,
            "not a URI: more than one `#`",
        ));
    }
    Ok(())
}

/// The scheme of `value`, when it starts with one (`scheme ":"` before any `/?#`).
fn scheme(value: &str) -> Option<&str> {
    let end = value.find([':', '/', '?', '#'])?;
    (value.as_bytes()[end] == b':').then(|| &value[..end])
}

fn valid_scheme(scheme: &str) -> bool {
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

/// A URI-reference (RFC 3986 §4.1): a URI, or a relative reference whose first segment
/// has no `:`.
pub(crate) fn uri_reference(attribute: &str, value: &str) -> Result<(), CloudEventError> {
    uri_characters(attribute, value)?;
    if let Some(scheme) = scheme(value)
        && !valid_scheme(scheme)
    {
        return Err(CloudEventError::invalid(
            attribute,
            value,
            "not a URI-reference: a `:` in the first segment needs a scheme before it",
        ));
    }
    Ok(())
}

/// An absolute URI (RFC 3986 §4.3): a scheme, and no fragment.
pub(crate) fn absolute_uri(attribute: &str, value: &str) -> Result<(), CloudEventError> {
    uri_characters(attribute, value)?;
    if !scheme(value).is_some_and(valid_scheme) {
        return Err(CloudEventError::invalid(
            attribute,
            value,
            "not an absolute URI: no scheme",
        ));
    }
    if value.contains('#') {
        return Err(CloudEventError::invalid(
            attribute,
            value,
            "not an absolute URI: it has a fragment",
        ));
    }
    Ok(())
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A media type (RFC 2046, with RFC 7231's syntax): `type/subtype`, then `; name=value`
/// parameters.
pub(crate) fn media_type(attribute: &str, value: &str) -> Result<(), CloudEventError> {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let valid_essence = essence
        .split_once('/')
        .is_some_and(|(kind, subtype)| is_token(kind) && is_token(subtype));
    if !valid_essence {
        return Err(CloudEventError::invalid(
            attribute,
            value,
            "not a media type (`type/subtype`)",
        ));
    }
    for parameter in parts {
        let parameter = parameter.trim();
        if parameter.is_empty() {
            continue;
        }
        let valid = parameter.split_once('=').is_some_and(|(name, value)| {
            is_token(name.trim())
                && (is_token(value)
                    || (value.len() >= 2 && value.starts_with('"') && value.ends_with('"')))
        });
        if !valid {
            return Err(CloudEventError::invalid(
                attribute,
                value,
                "a media type parameter is not `name=value`",
            ));
        }
    }
    Ok(())
}

/// The media type's `type/subtype`, lower-cased, without parameters.
pub(crate) fn essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether data of `media_type` is JSON: `application/json`, `text/json`, or a `+json`
/// suffix.
pub(crate) fn is_json(media_type: &str) -> bool {
    let essence = essence(media_type);
    matches!(essence.as_str(), "application/json" | "text/json")
        || (essence.ends_with("+json")
            && (essence.starts_with("application/") || essence.starts_with("text/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_references() {
        for good in [
            "/billing",
            "https://example.com/a?b=c#d",
            "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
            "mailto:ada@example.com",
            "relative/path",
            "%C3%A9",
            "",
        ] {
            assert!(uri_characters("source", good).is_ok(), "{good}");
            assert!(uri_reference("source", good).is_ok(), "{good}");
        }
        for bad in ["with space", "1a:b", "/a%zz", "/a%2", "a#b#c", "é", "<x>"] {
            assert!(uri_reference("source", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn absolute_uris() {
        assert!(absolute_uri("dataschema", "https://example.com/schema.json").is_ok());
        assert!(absolute_uri("dataschema", "urn:example:schema").is_ok());
        assert!(absolute_uri("dataschema", "/schema.json").is_err());
        assert!(absolute_uri("dataschema", "https://example.com/s#frag").is_err());
    }

    #[test]
    fn media_types() {
        for good in [
            "application/json",
            "text/plain; charset=utf-8",
            "application/vnd.api+json",
            "text/plain;charset=\"utf-8\"",
        ] {
            assert!(media_type("datacontenttype", good).is_ok(), "{good}");
        }
        for bad in [
            "json",
            "application/",
            "/json",
            "text/plain; charset",
            "a b/c",
        ] {
            assert!(media_type("datacontenttype", bad).is_err(), "{bad}");
        }
        assert!(is_json("application/cloudevents+json; charset=utf-8"));
        assert!(is_json("Application/JSON"));
        assert!(!is_json("application/jsonx"));
        assert!(!is_json("text/plain"));
    }

    #[test]
    fn extension_names() {
        assert!(extension_name("tenantid").is_ok());
        assert!(extension_name("a1").is_ok());
        assert!(extension_name("averyveryverylongextensionname").is_ok());
        for bad in [
            "",
            "Tenant",
            "tenant_id",
            "tenant-id",
            "é",
            "type",
            "data",
            "time",
        ] {
            let error = extension_name(bad).expect_err(bad);
            assert_eq!(error.attribute(), Some(bad));
        }
    }

    #[test]
    fn strings() {
        assert!(string("id", "ok ünïcödé ✓").is_ok());
        for bad in [
            "a\nb",
            "\u{0}",
            "\u{7f}",
            "\u{85}",
            "\u{FDD0}",
            "\u{FFFE}",
            "\u{1FFFF}",
        ] {
            assert!(string("id", bad).is_err(), "{bad:?}");
        }
    }
}
