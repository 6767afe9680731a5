//! Retention: how long streams keep their events, and the enforcer that removes the
//! expired ones.
//!
//! A [`RetentionPolicy`] (max age, max count, truncate-before a version) applies to one
//! stream, to a category, or store-wide ([`RetentionScope`]); the most specific one wins.
//! Policies are stored in the database, so every process sharing it sees them.
//!
//! Expiry is judged per event, as KurrentDB does with `$maxAge` / `$maxCount` / `$tb`:
//! reads (`read_stream`, `read_all`, loads, projections, the outbox) leave expired events
//! out as soon as a policy expires them, and the enforcer ([`Store::enforce_retention`],
//! [`RetentionEnforcer`]) removes them from the database later. Global positions never
//! change: a removed event is simply absent from the log.
//!
//! A snapshot-aware policy (the default) expires only events that the stream's newest
//! snapshot covers, so an aggregate still loads to the same state.
//!
//! [`Store::enforce_retention`]: crate::Store::enforce_retention

mod enforcer;
pub(crate) mod rules;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use enforcer::{EnforcerHandle, RetentionEnforcer};

/// How long a stream keeps its events. Every limit set applies: an event expires when any
/// of them says so (and, when snapshot-aware, the newest snapshot covers it).
///
/// ```
/// use std::time::Duration;
/// use chronicle::RetentionPolicy;
///
/// // Keep the last 1,000 events of each stream, and nothing older than 90 days, but never
/// // an event the latest snapshot does not cover yet (the default).
/// let policy = RetentionPolicy::new()
///     .max_count(1_000)
///     .max_age(Duration::from_secs(90 * 24 * 3600));
/// assert!(policy.is_snapshot_aware());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::millis::option"
    )]
    max_age: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    truncate_before: Option<u64>,
    #[serde(default = "yes")]
    snapshot_aware: bool,
}

fn yes() -> bool {
    true
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl RetentionPolicy {
    /// A snapshot-aware policy with no limits yet (it expires nothing until one is set).
    pub fn new() -> Self {
        RetentionPolicy {
            max_age: None,
            max_count: None,
            truncate_before: None,
            snapshot_aware: true,
        }
    }

    /// Events recorded longer ago than `age` expire.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Only the stream's last `count` versions are kept (0 keeps none).
    pub fn max_count(mut self, count: u64) -> Self {
        self.max_count = Some(count);
        self
    }

    /// Events with versions below `version` expire.
    pub fn truncate_before(mut self, version: u64) -> Self {
        self.truncate_before = Some(version);
        self
    }

    /// Expires events whether or not a snapshot covers them. For streams that are not
    /// loaded as aggregates (logs, audit trails): an aggregate whose early events expire
    /// without a snapshot loads to a different state.
    pub fn ignore_snapshots(mut self) -> Self {
        self.snapshot_aware = false;
        self
    }

    /// The age limit, if any.
    pub fn age_limit(&self) -> Option<Duration> {
        self.max_age
    }

    /// The count limit, if any.
    pub fn count_limit(&self) -> Option<u64> {
        self.max_count
    }

    /// The truncation version, if any.
    pub fn truncation(&self) -> Option<u64> {
        self.truncate_before
    }

    /// Whether only events covered by the newest snapshot expire.
    pub fn is_snapshot_aware(&self) -> bool {
        self.snapshot_aware
    }

    /// Whether the event at `version`, recorded at `recorded_at`, of a stream at version
    /// `head` whose newest snapshot is at `snapshot`, has expired at `now`.
    pub(crate) fn expires(
        &self,
        version: u64,
        recorded_at: DateTime<Utc>,
        stream: StreamPlace,
        now: DateTime<Utc>,
    ) -> bool {
        self.removable_up_to(stream) >= version
            && (version < self.version_cut(stream.head)
                || self.age_bound(now).is_some_and(|bound| recorded_at < bound))
    }

    /// The highest version this policy may remove: the newest snapshot's when
    /// snapshot-aware (0 without one), else the stream's head.
    pub(crate) fn removable_up_to(&self, stream: StreamPlace) -> u64 {
        if self.snapshot_aware {
            stream.snapshot.unwrap_or(0).min(stream.head)
        } else {
            stream.head
        }
    }

    /// Versions below this one expire by count or truncation (1: none do).
    pub(crate) fn version_cut(&self, head: u64) -> u64 {
        let by_count = self
            .max_count
            .map_or(1, |count| head.saturating_sub(count).saturating_add(1));
        by_count.max(self.truncate_before.unwrap_or(1)).max(1)
    }

    /// Events recorded before this time expire by age.
    pub(crate) fn age_bound(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let age = chrono::Duration::from_std(self.max_age?).ok()?;
        now.checked_sub_signed(age)
    }
}

/// What a policy needs to know of a stream: its version and its newest snapshot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamPlace {
    pub head: u64,
    pub snapshot: Option<u64>,
}

/// What a retention policy applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RetentionScope {
    /// Every stream without a policy of its own or of its category.
    Default,
    /// The streams of a category (the part of the id before the first `-`).
    Category(String),
    /// One stream.
    Stream(String),
}

impl RetentionScope {
    /// The scope of the streams of `category`.
    pub fn category(category: impl Into<String>) -> Self {
        RetentionScope::Category(category.into())
    }

    /// The scope of one stream.
    pub fn stream(stream: impl Into<String>) -> Self {
        RetentionScope::Stream(stream.into())
    }

    /// The stored (kind, name) pair.
    pub(crate) fn key(&self) -> (i16, &str) {
        match self {
            RetentionScope::Default => (0, ""),
            RetentionScope::Category(category) => (1, category),
            RetentionScope::Stream(stream) => (2, stream),
        }
    }

    pub(crate) fn from_key(kind: i64, name: String) -> Self {
        match kind {
            0 => RetentionScope::Default,
            1 => RetentionScope::Category(name),
            _ => RetentionScope::Stream(name),
        }
    }
}

impl fmt::Display for RetentionScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetentionScope::Default => f.write_str("the store's default"),
            RetentionScope::Category(category) => write!(f, "category `{category}`"),
            RetentionScope::Stream(stream) => write!(f, "stream `{stream}`"),
        }
    }
}

/// The policy that applies to a stream and where it was set, as
/// [`StreamInfo::retention`](crate::StreamInfo::retention) shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedRetention {
    /// The policy.
    pub policy: RetentionPolicy,
    /// Where it was set: the stream itself, its category or the default.
    pub scope: RetentionScope,
}

/// What one enforcement pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RetentionReport {
    /// Streams with a policy that were looked at.
    pub streams_examined: u64,
    /// Events removed from the database.
    pub events_removed: u64,
    /// Payload bytes of the removed events (the database frees its pages later, at its
    /// own pace: PostgreSQL's vacuum, SQLite's `auto_vacuum` or `VACUUM`).
    pub bytes_freed: u64,
}

impl RetentionReport {
    pub(crate) fn add(&mut self, other: RetentionReport) {
        self.streams_examined += other.streams_examined;
        self.events_removed += other.events_removed;
        self.bytes_freed += other.bytes_freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(head: u64, snapshot: Option<u64>) -> StreamPlace {
        StreamPlace { head, snapshot }
    }

    #[test]
    fn count_and_truncation_cut_versions() {
        let now = Utc::now();
        let policy = RetentionPolicy::new().max_count(3).ignore_snapshots();
        let kept: Vec<u64> = (1..=10)
            .filter(|&v| !policy.expires(v, now, place(10, None), now))
            .collect();
        assert_eq!(kept, [8, 9, 10]);
        let policy = RetentionPolicy::new().truncate_before(4).ignore_snapshots();
        assert!(policy.expires(3, now, place(10, None), now));
        assert!(!policy.expires(4, now, place(10, None), now));
    }

    #[test]
    fn snapshot_aware_policies_keep_what_the_snapshot_does_not_cover() {
        let now = Utc::now();
        let policy = RetentionPolicy::new().max_count(1);
        assert!(!policy.expires(2, now, place(10, None), now), "no snapshot");
        assert!(policy.expires(5, now, place(10, Some(5)), now));
        assert!(!policy.expires(6, now, place(10, Some(5)), now));
    }

    #[test]
    fn age_is_judged_per_event() {
        let now = Utc::now();
        let old = now - chrono::Duration::hours(2);
        let policy = RetentionPolicy::new()
            .max_age(Duration::from_secs(3600))
            .ignore_snapshots();
        assert!(policy.expires(7, old, place(10, None), now));
        assert!(!policy.expires(1, now, place(10, None), now));
    }

    #[test]
    fn policies_round_trip_as_json() {
        let policy = RetentionPolicy::new()
            .max_age(Duration::from_millis(1500))
            .max_count(7)
            .ignore_snapshots();
        let json = serde_json::to_string(&policy).expect("serializes");
        assert_eq!(
            serde_json::from_str::<RetentionPolicy>(&json).expect("parses"),
            policy
        );
        let empty: RetentionPolicy = serde_json::from_str("{}").expect("parses");
        assert_eq!(empty, RetentionPolicy::new());
    }
}
