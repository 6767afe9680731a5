//! Durations as text: [`parse_duration`], and the serde adapters of the manager's
//! configuration and health thresholds, which take text with a unit (`"250ms"`, `"5m"`)
//! or whole milliseconds: this module for an `Option<Duration>`, [`required`] for a
//! `Duration`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses a duration: a whole number and a unit, `ms`, `s`, `m`, `h`, `d` or `w` (`90d`,
/// `500ms`).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(chronicle::manager::parse_duration("90s"), Ok(Duration::from_secs(90)));
/// assert!(chronicle::manager::parse_duration("90").is_err());
/// ```
///
/// # Errors
/// What is wrong with `text`, as a sentence.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: write 30s, 15m, 12h, 7d, 2w or 500ms"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let unit_seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{unit}` is not a unit: use ms, s, m, h, d or w")),
    };
    number
        .checked_mul(unit_seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    Millis(u64),
    Text(String),
}

impl Text {
    fn duration<E: serde::de::Error>(self) -> Result<Duration, E> {
        match self {
            Text::Millis(millis) => Ok(Duration::from_millis(millis)),
            Text::Text(text) => parse_duration(&text).map_err(E::custom),
        }
    }
}

fn text(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

pub(in crate::manager) fn serialize<S: Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(duration) => serializer.serialize_str(&text(*duration)),
        None => serializer.serialize_none(),
    }
}

pub(in crate::manager) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    Option::<Text>::deserialize(deserializer)?
        .map(Text::duration)
        .transpose()
}

/// A `Duration` field that must be there.
pub(in crate::manager) mod required {
    use super::*;

    pub(in crate::manager) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&text(*value))
    }

    pub(in crate::manager) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        Text::deserialize(deserializer)?.duration()
    }
}
