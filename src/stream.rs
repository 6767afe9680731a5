//! Streams: their ids and what a stream knows about itself. The expected-version rule of
//! an append is in `expected_version.rs`, re-exported here.
//!
//! A stream is an ordered list of events with versions 1, 2, 3, … and no gaps. Its id is
//! free text such as `account-42`; the part before the first `-` is its *category*
//! (`account`), which listing and (later) retention policies filter on.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Result, ValidationError};
pub(crate) use crate::expected_version::AppendGuard;
pub use crate::expected_version::ExpectedVersion;
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
    /// The status as stored.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
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

    /// The metadata as a backend stores it ([`StoredStream::metadata`]): JSON text, or
    /// `None` for `null`.
    ///
    /// [`StoredStream::metadata`]: crate::backend::StoredStream::metadata
    pub fn stored_metadata(&self) -> Option<String> {
        (!self.metadata.is_null()).then(|| self.metadata.to_string())
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
