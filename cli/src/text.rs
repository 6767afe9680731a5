//! Reading and writing the small values of the command line: durations (`90d`, `500ms`),
//! times (RFC 3339, or a duration ago), and how times and durations are shown.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

pub use chronicle::manager::parse_duration;

/// A time: RFC 3339 (`2026-11-05T10:00:00Z`), or a duration before now (`15m`, `7d`).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let ago = parse_duration(text).map_err(|_| {
        format!("`{text}` is neither an RFC 3339 time (2026-11-05T10:00:00Z) nor a duration ago (15m, 7d)")
    })?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|ago| Utc::now().checked_sub_signed(ago))
        .ok_or_else(|| format!("`{text}` ago is before any time"))
}

/// A time as shown: RFC 3339 in UTC, to the millisecond.
pub fn time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A duration as written on the command line, in its largest whole unit (`90d`, `1500ms`).
pub fn duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let seconds = duration.as_secs();
    for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds >= size && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// How long ago `time` was, roughly (`3s ago`, `2h ago`).
pub fn ago(time: DateTime<Utc>) -> String {
    let seconds = (Utc::now() - time).num_seconds();
    if seconds < 0 {
        return "in the future".to_owned();
    }
    let (amount, unit) = match seconds {
        0..60 => (seconds, "s"),
        60..3600 => (seconds / 60, "m"),
        3600..86_400 => (seconds / 3600, "h"),
        _ => (seconds / 86_400, "d"),
    };
    format!("{amount}{unit} ago")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_write_alike() {
        for text in ["90d", "12h", "15m", "45s", "500ms", "2w"] {
            let parsed = parse_duration(text).expect(text);
            assert_eq!(duration(parsed), text);
        }
        assert_eq!(parse_duration("1h").expect("1h"), Duration::from_secs(3600));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10y").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn times_are_rfc3339_or_ago() {
        let exact = parse_time("2026-11-05T10:00:00+01:00").expect("rfc3339");
        assert_eq!(time(exact), "2026-11-05T09:00:00.000Z");
        let ago = parse_time("2h").expect("ago");
        let hours = (Utc::now() - ago).num_minutes();
        assert!((119..=120).contains(&hours), "{hours}");
        assert!(parse_time("yesterday").is_err());
    }
}
