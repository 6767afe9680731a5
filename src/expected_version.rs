//! The expected-version rule of an append: what a caller expects of a stream's version
//! ([`ExpectedVersion`]), and the guard every backend applies to the stream's row
//! ([`AppendGuard`]). A leaf: it imports nothing of the crate, so the error types can name
//! an expectation without a circle.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What an append expects of the stream's current version (optimistic concurrency).
///
/// A mismatch fails the append with [`Error::Conflict`](crate::Error::Conflict) and writes
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check: append at the end, creating the stream when needed.
    Any,
    /// The stream has no events yet: it does not exist, or was created empty.
    NoStream,
    /// The stream exists (created explicitly or holding events).
    StreamExists,
    /// The stream's last event has exactly this version (0: exists or not, but empty).
    Exact(u64),
}

impl ExpectedVersion {
    /// The expectation as the two facts a backend applies to its stream row.
    pub(crate) fn guard(self) -> AppendGuard {
        match self {
            ExpectedVersion::Any => AppendGuard {
                may_create: true,
                version: None,
            },
            ExpectedVersion::NoStream => AppendGuard {
                may_create: true,
                version: Some(0),
            },
            ExpectedVersion::StreamExists => AppendGuard {
                may_create: false,
                version: None,
            },
            ExpectedVersion::Exact(version) => AppendGuard {
                may_create: version == 0,
                version: Some(version),
            },
        }
    }
}

/// The expected-version rule of an append, stated once as what it asks of the stream's
/// row: whether the row may be missing (the append creates it), and the version it must
/// hold, if any. Every backend applies it mechanically: memory calls
/// [`admits`](Self::admits); SQLite inserts at `version + 1` (the `events_guard` trigger
/// refuses any other base); PostgreSQL upserts or updates by `may_create` and checks
/// `version` in the same statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendGuard {
    /// A missing stream is created by the append; otherwise it must exist.
    pub may_create: bool,
    /// The version the stream must be at (a missing stream is at 0); `None`: any.
    pub version: Option<u64>,
}

impl AppendGuard {
    /// Whether a stream at version `current` (`None`: no such stream) passes the guard.
    pub fn admits(self, current: Option<u64>) -> bool {
        let at_version = |actual: u64| self.version.is_none_or(|version| version == actual);
        match current {
            None => self.may_create && at_version(0),
            Some(actual) => at_version(actual),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(version) => write!(f, "version {version}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::ExpectedVersion;

    /// The expectations as the documentation of [`ExpectedVersion`] states them.
    fn documented(expected: ExpectedVersion, current: Option<u64>) -> bool {
        match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.unwrap_or(0) == 0,
            ExpectedVersion::StreamExists => current.is_some(),
            ExpectedVersion::Exact(expected) => current.unwrap_or(0) == expected,
        }
    }

    fn expectation() -> impl Strategy<Value = ExpectedVersion> {
        prop_oneof![
            Just(ExpectedVersion::Any),
            Just(ExpectedVersion::NoStream),
            Just(ExpectedVersion::StreamExists),
            (0u64..4).prop_map(ExpectedVersion::Exact),
            any::<u64>().prop_map(ExpectedVersion::Exact),
        ]
    }

    fn state() -> impl Strategy<Value = Option<u64>> {
        prop_oneof![
            Just(None),
            (0u64..4).prop_map(Some),
            any::<u64>().prop_map(Some)
        ]
    }

    proptest! {
        /// The guard the backends apply admits exactly the states the documentation
        /// promises.
        #[test]
        fn the_guard_admits_what_the_expectation_documents(
            expected in expectation(),
            current in state(),
        ) {
            prop_assert_eq!(expected.guard().admits(current), documented(expected, current));
        }

        /// A guard that may create a stream asks for no version but 0, so the SQL
        /// backends' "insert at `version + 1`" of a missing stream starts at 1.
        #[test]
        fn a_guard_that_creates_starts_at_version_one(expected in expectation()) {
            let guard = expected.guard();
            prop_assert!(!guard.may_create || guard.version.unwrap_or(0) == 0);
        }
    }
}
