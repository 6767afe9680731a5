//! Reading the global log: the commit-ordered cursor [`LogPosition`] and the filter of
//! [`Store::query`](crate::Store::query).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, ValidationError};
use crate::text::{self, TextProblem};

/// The parts of a stored event a reader asks for, beyond what every event read carries:
/// the id, stream, version, log position, type, schema version and recording time.
///
/// A [`Projection`](crate::Projection) declares them with
/// [`Projection::event_parts`](crate::Projection::event_parts), and the runner's reads of
/// the log then fetch only those columns (on SQLite and PostgreSQL), so a projection
/// that needs the type and payload but no metadata moves fewer bytes per event. What was
/// not asked for is absent in the [`RecordedEvent`](crate::RecordedEvent)s it gets: an
/// empty payload without [`EventParts::PAYLOAD`] (so
/// [`RecordedEvent::data`](crate::RecordedEvent::data) fails), and
/// [`EventMetadata::default`](crate::EventMetadata) without [`EventParts::METADATA`].
///
/// ```
/// use chronicle::EventParts;
///
/// let lean = EventParts::PAYLOAD;
/// assert!(lean.payload() && !lean.metadata());
/// assert_eq!(EventParts::PAYLOAD | EventParts::METADATA, EventParts::ALL);
/// assert_eq!(EventParts::default(), EventParts::ALL);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventParts {
    payload: bool,
    metadata: bool,
}

impl EventParts {
    /// The whole event (the default).
    pub const ALL: EventParts = EventParts {
        payload: true,
        metadata: true,
    };
    /// The payload.
    pub const PAYLOAD: EventParts = EventParts {
        payload: true,
        metadata: false,
    };
    /// The metadata (correlation, causation, tenant and user ids, and the rest).
    pub const METADATA: EventParts = EventParts {
        payload: false,
        metadata: true,
    };
    /// Neither payload nor metadata: only what every event read carries.
    pub const NONE: EventParts = EventParts {
        payload: false,
        metadata: false,
    };

    /// Whether the payload is asked for.
    pub const fn payload(self) -> bool {
        self.payload
    }

    /// Whether the metadata is asked for.
    pub const fn metadata(self) -> bool {
        self.metadata
    }
}

impl Default for EventParts {
    fn default() -> Self {
        EventParts::ALL
    }
}

impl std::ops::BitOr for EventParts {
    type Output = EventParts;

    fn bitor(self, other: EventParts) -> EventParts {
        EventParts {
            payload: self.payload || other.payload,
            metadata: self.metadata || other.metadata,
        }
    }
}

/// A place in the global log, in transaction order: an opaque, ordered cursor.
///
/// Global positions are unique, but on PostgreSQL they can commit out of order
/// (transaction A takes position 10, B takes 11, B commits first). A reader that resumed
/// from "after 11" would skip 10. So the cursor is the pair (committing transaction,
/// position), and [`Store::read_all`](crate::Store::read_all) only returns events whose
/// transaction is older than every transaction still running: behind the cursor, nothing
/// can appear any more. On SQLite and in memory, writes are serialized and the transaction
/// part is always 0.
///
/// Store it as text ([`Display`](fmt::Display) / [`FromStr`]) or through serde.
///
/// ```
/// use chronicle::LogPosition;
///
/// let cursor: LogPosition = "0/42".parse()?;
/// assert!(cursor > LogPosition::START);
/// assert_eq!(cursor.to_string(), "0/42");
/// # Ok::<(), chronicle::Error>(())
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct LogPosition {
    commit: u64,
    position: u64,
}

impl LogPosition {
    /// Before the first event.
    pub const START: LogPosition = LogPosition {
        commit: 0,
        position: 0,
    };

    pub(crate) fn new(commit: u64, position: u64) -> Self {
        LogPosition { commit, position }
    }

    /// The transaction part (0 on SQLite and in memory).
    pub fn commit(self) -> u64 {
        self.commit
    }

    /// The global position of the event at this cursor.
    pub fn position(self) -> u64 {
        self.position
    }
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.commit, self.position)
    }
}

impl FromStr for LogPosition {
    type Err = crate::Error;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = || ValidationError::InvalidLogPosition(text.to_owned());
        let (commit, position) = text.split_once('/').ok_or_else(invalid)?;
        Ok(LogPosition {
            commit: commit.parse().map_err(|_| invalid())?,
            position: position.parse().map_err(|_| invalid())?,
        })
    }
}

/// A filter over the global log for [`Store::query`](crate::Store::query). Every set field
/// must match; results come in the log's order (the order of [`Store::read_all`](crate::Store::read_all)).
///
/// ```
/// use chronicle::EventQuery;
///
/// let query = EventQuery::new()
///     .stream("account-1")
///     .event_types(["account.deposited", "account.withdrawn"])
///     .tenant_id("acme")
///     .limit(50);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Events of this stream only.
    pub stream: Option<String>,
    /// Events of these types only (empty: all types).
    pub event_types: Vec<String>,
    /// Recorded at or after this time.
    pub from_time: Option<DateTime<Utc>>,
    /// Recorded strictly before this time.
    pub to_time: Option<DateTime<Utc>>,
    /// With this correlation id.
    pub correlation_id: Option<String>,
    /// Of this tenant.
    pub tenant_id: Option<String>,
    /// At most this many events ([`EventQuery::DEFAULT_LIMIT`], 100, unless set).
    pub limit: usize,
    /// Skip this many matching events first.
    pub offset: usize,
}

impl EventQuery {
    /// The first filter that breaks the text rules (`crate::text`), with its problem.
    pub(crate) fn text_problem(&self) -> Option<(&'static str, TextProblem)> {
        let types = self
            .event_types
            .iter()
            .map(|t| ("event type", Some(t.as_str())));
        text::first_nul(
            [
                ("stream", self.stream.as_deref()),
                ("correlation_id", self.correlation_id.as_deref()),
                ("tenant_id", self.tenant_id.as_deref()),
            ]
            .into_iter()
            .chain(types),
        )
    }
}

impl Default for EventQuery {
    fn default() -> Self {
        EventQuery {
            stream: None,
            event_types: Vec::new(),
            from_time: None,
            to_time: None,
            correlation_id: None,
            tenant_id: None,
            limit: EventQuery::DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

impl EventQuery {
    /// The most events a query returns unless [`EventQuery::limit`] says otherwise.
    pub const DEFAULT_LIMIT: usize = 100;

    /// Every event, **but at most [`EventQuery::DEFAULT_LIMIT`] (100) of them**: set
    /// [`EventQuery::limit`] for more, and page with [`EventQuery::offset`] (or read the
    /// whole log with [`Store::read_all`](crate::Store::read_all), which pages itself).
    pub fn new() -> Self {
        Self::default()
    }

    /// Only events of `stream`.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Only events of these types.
    pub fn event_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Only events recorded in `[from, to)`.
    pub fn time_range(mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        self.from_time = Some(from);
        self.to_time = Some(to);
        self
    }

    /// Only events with this correlation id.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Only events of this tenant.
    pub fn tenant_id(mut self, id: impl Into<String>) -> Self {
        self.tenant_id = Some(id.into());
        self
    }

    /// At most `limit` events (default [`EventQuery::DEFAULT_LIMIT`], 100).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Skip the first `offset` matches.
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }
}
