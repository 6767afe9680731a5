//! Streams: their ids, the expected-version rule of an append, and what a stream knows
//! about itself.
//!
//! A stream is an ordered list of events with versions 1, 2, 3, … and no gaps. Its id is
//! free text such as `account-42`; the part before the first `-` is its *category*
//! (`account`), which listing and (later) retention policies filter on.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Result, ValidationError};
use crate::retention::AppliedRetention;
use crate::text::{self, TextProblem};

/// The longest stream id accepted, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 256;

/// A validated stream id: non-empty, at most [`MAX_STREAM_ID_LEN`] bytes, no control
/// characters.
///
/// Store methods take any `AsRef<str>` and validate it, so most code never builds one by
/// hand; recorded events and stream info carry it.
///
/// ```
/// use chronicle::StreamId;
///
/// let id = StreamId::new("account-42")?;
/// assert_eq!(id.category(), "account");
/// assert!(StreamId::new("").is_err());
/// # Ok::<(), chronicle::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct StreamId(String);

impl StreamId {
    /// Validates `id` as a stream id.
    ///
    /// # Errors
    /// [`ValidationError`] when the id is empty, too long or holds a control character.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        if id.is_empty() {
            return Err(ValidationError::EmptyStreamId.into());
        }
        if id.len() > MAX_STREAM_ID_LEN {
            return Err(ValidationError::StreamIdTooLong {
                len: id.len(),
                limit: MAX_STREAM_ID_LEN,
            }
            .into());
        }
        if id.chars().any(char::is_control) {
            return Err(ValidationError::StreamIdControlChar { stream: id }.into());
        }
        Ok(StreamId(id))
    }

    /// Wraps an id read back from the database, which was validated when written.
    pub(crate) fn trusted(id: String) -> Self {
        StreamId(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `-`, or the whole id when it has none.
    pub fn category(&self) -> &str {
        category_of(&self.0)
    }

    /// The part after the category and its `-` (`"42-a"` for `order-42-a`): the id a
    /// repository was given. The whole id when it has no `-`.
    ///
    /// ```
    /// use chronicle::StreamId;
    ///
    /// let stream = StreamId::new("order-42")?;
    /// assert_eq!((stream.category(), stream.id()), ("order", "42"));
    /// assert_eq!(StreamId::new("audit")?.id(), "audit");
    /// # Ok::<(), chronicle::Error>(())
    /// ```
    pub fn id(&self) -> &str {
        self.0.split_once('-').map_or(&self.0, |(_, id)| id)
    }
}

/// The category of a stream id: the part before the first `-`.
pub(crate) fn category_of(id: &str) -> &str {
    id.split_once('-').map_or(id, |(category, _)| category)
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for StreamId {
    type Error = crate::Error;
    fn try_from(value: &str) -> Result<Self> {
        StreamId::new(value)
    }
}

impl TryFrom<String> for StreamId {
    type Error = crate::Error;
    fn try_from(value: String) -> Result<Self> {
        StreamId::new(value)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = String::deserialize(deserializer)?;
        StreamId::new(id).map_err(serde::de::Error::custom)
    }
}

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
pub(crate) struct AppendGuard {
    /// A missing stream is created by the append; otherwise it must exist.
    pub may_create: bool,
    /// The version the stream must be at (a missing stream is at 0); `None`: any.
    pub version: Option<u64>,
}

impl AppendGuard {
    /// Whether a stream at version `current` (`None`: no such stream) passes the guard.
    pub(crate) fn admits(self, current: Option<u64>) -> bool {
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

/// The order of a stream read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Oldest first, from the given version up.
    #[default]
    Forward,
    /// Newest first, from the given version down (`u64::MAX`: from the end).
    Backward,
}

/// Whether and how a stream was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum StreamStatus {
    /// Readable and writable.
    #[default]
    Active,
    /// Soft-deleted: reads report it deleted and appends are rejected until it is
    /// re-created; its events stay in the global log.
    Deleted,
    /// Hard-deleted: its events are gone for good and it can never be written again.
    Tombstoned,
}

impl StreamStatus {
    #[cfg(feature = "postgres")]
    pub(crate) fn to_code(self) -> i16 {
        match self {
            StreamStatus::Active => 0,
            StreamStatus::Deleted => 1,
            StreamStatus::Tombstoned => 2,
        }
    }

    /// The status stored as `code`; `None` for a code chronicle never writes.
    pub(crate) fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(StreamStatus::Active),
            1 => Some(StreamStatus::Deleted),
            2 => Some(StreamStatus::Tombstoned),
            _ => None,
        }
    }
}

/// How [`Store::delete_stream`](crate::Store::delete_stream) deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeleteMode {
    /// Mark the stream deleted; its events stay in the global log and it can be re-created.
    Soft,
    /// Remove its events for good and tombstone the id.
    Hard,
}

/// What a stream knows about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamInfo {
    /// The stream's id.
    pub stream_id: StreamId,
    /// The part of the id before the first `-`.
    pub category: String,
    /// The aggregate type given at creation, if any.
    pub aggregate_type: Option<String>,
    /// A human-readable name given at creation, if any.
    pub display_name: Option<String>,
    /// The version of the last event (0 for an empty stream).
    pub version: u64,
    /// Events currently stored in the stream.
    pub event_count: u64,
    /// When the stream was created.
    pub created_at: DateTime<Utc>,
    /// When the stream last changed.
    pub updated_at: DateTime<Utc>,
    /// The id of the last event appended, if any.
    pub last_event_id: Option<Uuid>,
    /// Whether the stream was deleted.
    pub status: StreamStatus,
    /// Free-form metadata given at creation.
    pub metadata: serde_json::Value,
    /// The retention policy in force for the stream, and where it was set.
    pub retention: Option<AppliedRetention>,
}

/// Options for [`Store::create_stream`](crate::Store::create_stream).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewStream {
    /// The aggregate type the stream belongs to, if any.
    pub aggregate_type: Option<String>,
    /// A human-readable name.
    pub display_name: Option<String>,
    /// Free-form metadata (a JSON object, `null` for none).
    pub metadata: serde_json::Value,
}

impl NewStream {
    /// A stream with no aggregate type, name or metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first field that breaks the text rules (`crate::text`), with its problem.
    pub(crate) fn text_problem(&self) -> Option<(&'static str, TextProblem)> {
        text::first_nul([
            ("aggregate_type", self.aggregate_type.as_deref()),
            ("display_name", self.display_name.as_deref()),
        ])
        .or_else(|| Some(("stream metadata", text::json_problem(&self.metadata)?)))
    }

    /// Sets the aggregate type.
    pub fn aggregate_type(mut self, aggregate_type: impl Into<String>) -> Self {
        self.aggregate_type = Some(aggregate_type.into());
        self
    }

    /// Sets the display name.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// Sets the metadata.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A page request for [`Store::list_streams`](crate::Store::list_streams): streams in id
/// order, optionally of one category, after a given id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamListQuery {
    /// Only streams of this category.
    pub category: Option<String>,
    /// Only streams whose id sorts after this one (the last id of the previous page).
    pub after: Option<String>,
    /// At most this many streams.
    pub limit: usize,
    /// Whether soft-deleted and tombstoned streams are listed too.
    pub include_deleted: bool,
}

impl StreamListQuery {
    /// The first filter that breaks the text rules (`crate::text`), with its problem.
    pub(crate) fn text_problem(&self) -> Option<(&'static str, TextProblem)> {
        text::first_nul([
            ("category", self.category.as_deref()),
            ("after", self.after.as_deref()),
        ])
    }
}

impl Default for StreamListQuery {
    fn default() -> Self {
        StreamListQuery {
            category: None,
            after: None,
            limit: 100,
            include_deleted: false,
        }
    }
}

impl StreamListQuery {
    /// The first page of 100 streams of every category.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only streams of `category`.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// The page after the stream `after`.
    pub fn after(mut self, after: impl Into<String>) -> Self {
        self.after = Some(after.into());
        self
    }

    /// At most `limit` streams.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// List deleted streams too.
    pub fn include_deleted(mut self, include: bool) -> Self {
        self.include_deleted = include;
        self
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
