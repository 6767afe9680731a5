//! Durations in JSON as whole milliseconds: retention policies as stored, and the
//! operators' reports (stats, health). `#[serde(with = "crate::millis")]` for a
//! `Duration`, `crate::millis::option` for an `Option<Duration>`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn to_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    to_millis(*value).serialize(serializer)
}

pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.map(to_millis).serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
    }
}
