//! Rows of the SQL backends decoded: [`RowRef`], which names a row in the error of a
//! corrupt value, and [`DecodeRows`], each database's decoders of the rows of `events` and
//! `streams` and of its time columns. Those are the part of a read's cost that differs:
//! SQLite keeps any value in any column, so its decoders check every column's type;
//! PostgreSQL's column types are fixed by the statements, so its decoders skip the checks
//! and read `timestamptz` in binary.

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Row, Type};
use uuid::Uuid;

use crate::error::{CorruptRow, CorruptValue, Result};
use crate::read::EventParts;
use crate::store::backend::{StoredEvent, StoredStream};
use crate::stream::{StreamId, StreamStatus};

#[cfg(feature = "postgres")]
use sqlx::postgres::{PgRow, PgValueFormat};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::SqliteRow;

/// How a database's rows decode into chronicle's types.
pub(crate) trait DecodeRows: Database {
    /// The columns of `events` before the payload (`Dialect::EVENT_HEAD`).
    const EVENT_HEAD_COLUMNS: usize;

    /// A row of `events` read for `parts`, its columns as `Statements::event_columns`
    /// lists them, as stored (the extra metadata stays JSON text: `Store` parses it); the
    /// parts not read are empty.
    fn event_row(row: &Self::Row, parts: EventParts) -> Result<StoredEvent, sqlx::Error>;

    /// A row of `streams`, its columns as `Dialect::STREAM_COLUMNS` lists them.
    fn stream_row(row: &Self::Row) -> Result<StoredStream, sqlx::Error>;

    /// The time in column `index` (named `column`) of the row `at`.
    fn time(
        row: &Self::Row,
        index: usize,
        at: RowRef<'_>,
        column: &'static str,
    ) -> Result<DateTime<Utc>, sqlx::Error>;
}

/// Where the parts of a row of `events` are, in a read of some parts: the columns of
/// those not read are left out, and the recording time comes last.
#[derive(Debug, Clone, Copy)]
struct EventLayout {
    /// The payload's column.
    payload: Option<usize>,
    /// The first of the five metadata columns.
    metadata: Option<usize>,
    recorded_at: usize,
}

impl EventLayout {
    fn of<D: DecodeRows>(parts: EventParts) -> Self {
        let mut next = D::EVENT_HEAD_COLUMNS;
        let mut take = |wanted: bool, columns: usize| {
            wanted.then(|| {
                next += columns;
                next - columns
            })
        };
        let payload = take(parts.payload(), 1);
        let metadata = take(parts.metadata(), 5);
        EventLayout {
            payload,
            metadata,
            recorded_at: next,
        }
    }
}

/// A row of `snapshots` of `stream`: (version, schema version, `third`, created at), where
/// `third` is the payload or its length. A value of another type (SQLite keeps any) is
/// named as corrupt.
pub(crate) fn snapshot_columns<D, T>(
    stream: &StreamId,
    row: &D::Row,
) -> Result<(u64, u32, T, DateTime<Utc>), sqlx::Error>
where
    D: DecodeRows,
    usize: ColumnIndex<D::Row>,
    for<'r> i64: Decode<'r, D> + Type<D>,
    for<'r> T: Decode<'r, D> + Type<D>,
{
    let at = RowRef::snapshot(stream.as_str(), None);
    let version = at.version(row.try_get(0).map_err(at.unreadable("version"))?)?;
    let at = at.at_version(version);
    let schema_version = row.try_get(1).map_err(at.unreadable("schema_version"))?;
    Ok((
        version,
        at.schema_version(schema_version)?,
        row.try_get(2)?,
        D::time(row, 3, at, "created_at")?,
    ))
}

/// The row being decoded, for the error of a corrupt value in it: a few words copied on
/// the stack, turned into a [`CorruptRow`] only when a check fails. Each check is one
/// comparison on the hot path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowRef<'a> {
    table: &'static str,
    stream: &'a str,
    version: Option<u64>,
    event_id: Option<Uuid>,
}

impl<'a> RowRef<'a> {
    /// A row of `events`.
    pub(crate) fn event(stream: &'a str, event_id: Uuid) -> Self {
        RowRef {
            table: "events",
            stream,
            version: None,
            event_id: Some(event_id),
        }
    }

    /// A row of `streams`.
    pub(crate) fn stream(stream: &'a str) -> Self {
        RowRef {
            table: "streams",
            stream,
            version: None,
            event_id: None,
        }
    }

    /// A row of `snapshots`, at `version` when it is known (read).
    pub(crate) fn snapshot(stream: &'a str, version: Option<u64>) -> Self {
        RowRef {
            table: "snapshots",
            stream,
            version,
            event_id: None,
        }
    }

    /// A row of `projection_checkpoints`, named by its projection.
    pub(crate) fn checkpoint(projection: &'a str) -> Self {
        RowRef {
            table: "projection_checkpoints",
            stream: projection,
            version: None,
            event_id: None,
        }
    }

    /// A row of `outbox_handlers`, named by its handler.
    pub(crate) fn outbox_handler(handler: &'a str) -> Self {
        RowRef {
            table: "outbox_handlers",
            stream: handler,
            version: None,
            event_id: None,
        }
    }

    /// The same row, named by its version too (once that read).
    pub(crate) fn at_version(self, version: u64) -> Self {
        RowRef {
            version: Some(version),
            ..self
        }
    }

    /// The error for `column` holding a value with `problem`.
    #[cold]
    pub(crate) fn corrupt(self, column: &'static str, problem: CorruptValue) -> sqlx::Error {
        sqlx::Error::Decode(Box::new(CorruptRow {
            table: self.table,
            stream: self.stream.to_owned(),
            version: self.version,
            event_id: self.event_id,
            column,
            problem,
        }))
    }

    /// A stored non-negative integer of `column`, described as `expected`.
    pub(crate) fn unsigned(
        self,
        column: &'static str,
        expected: &'static str,
        value: i64,
    ) -> Result<u64, sqlx::Error> {
        u64::try_from(value)
            .map_err(|_| self.corrupt(column, CorruptValue::OutOfRange { value, expected }))
    }

    /// The `version` column.
    pub(crate) fn version(self, value: i64) -> Result<u64, sqlx::Error> {
        self.unsigned("version", "version", value)
    }

    /// The `schema_version` column (written from a `u32`).
    pub(crate) fn schema_version(self, value: i64) -> Result<u32, sqlx::Error> {
        u32::try_from(value).map_err(|_| {
            self.corrupt(
                "schema_version",
                CorruptValue::OutOfRange {
                    value,
                    expected: "schema version",
                },
            )
        })
    }

    /// An event's type and schema version, read through the join of the type dictionary
    /// (`event_joins::TYPES_JOIN`): both `None` when the row's `type_id` names no row of
    /// `event_types`.
    pub(crate) fn event_type(
        self,
        name: Option<String>,
        schema_version: Option<i64>,
    ) -> Result<(String, u32), sqlx::Error> {
        match (name, schema_version) {
            (Some(name), Some(version)) => Ok((name, self.schema_version(version)?)),
            _ => Err(self.corrupt("type_id", CorruptValue::NoEventType)),
        }
    }

    /// The `status` column of a stream.
    pub(crate) fn status(self, value: i64) -> Result<StreamStatus, sqlx::Error> {
        StreamStatus::from_code(value)
            .ok_or_else(|| self.corrupt("status", CorruptValue::UnknownStatus(value)))
    }

    /// A time column stored as microseconds since the Unix epoch (SQLite).
    #[cfg(feature = "sqlite")]
    pub(crate) fn micros(
        self,
        column: &'static str,
        value: i64,
    ) -> Result<DateTime<Utc>, sqlx::Error> {
        DateTime::from_timestamp_micros(value)
            .ok_or_else(|| self.corrupt(column, CorruptValue::Time(format!("{value} µs"))))
    }

    /// A driver error reading `column` (a value of another type, on SQLite), named.
    pub(crate) fn unreadable(
        self,
        column: &'static str,
    ) -> impl FnOnce(sqlx::Error) -> sqlx::Error {
        move |error| match error {
            sqlx::Error::ColumnDecode { .. } => self.corrupt(column, CorruptValue::Type(error)),
            error => error,
        }
    }
}

/// A row of `events` on PostgreSQL, its columns as `Dialect::EVENT_HEAD` lists them
/// (`stream_id`: the row's stream id, read from its fourth column or found by its key).
/// The columns' types are fixed by the statements, so the type checks are skipped: this
/// decoding is most of a log read's cost.
#[cfg(feature = "postgres")]
pub(crate) fn postgres_event_row(
    row: &PgRow,
    parts: EventParts,
    stream_id: impl FnOnce(&PgRow) -> Result<Option<String>, sqlx::Error>,
) -> Result<StoredEvent, sqlx::Error> {
    let layout = EventLayout::of::<sqlx::Postgres>(parts);
    let id = row.try_get_unchecked(2)?;
    let stream_id = stream_of(stream_id(row)?, id)?;
    let at = RowRef::event(&stream_id, id);
    let version = at.version(row.try_get_unchecked(4)?)?;
    let at = at.at_version(version);
    let (correlation_id, causation_id, tenant_id, user_id, extra_metadata) = match layout.metadata {
        Some(first) => (
            row.try_get_unchecked(first)?,
            row.try_get_unchecked(first + 1)?,
            row.try_get_unchecked(first + 2)?,
            row.try_get_unchecked(first + 3)?,
            row.try_get_unchecked(first + 4)?,
        ),
        None => (None, None, None, None, None),
    };
    let (event_type, schema_version) =
        at.event_type(row.try_get_unchecked(5)?, row.try_get_unchecked(6)?)?;
    Ok(StoredEvent {
        id,
        version,
        position: at.unsigned("position", "position", row.try_get_unchecked(0)?)?,
        // xid8 is an unsigned 64-bit integer, sent as one: read as i64, whose range
        // transaction ids never leave (the cast to text and bigint cost the server more).
        commit: to_u64(row.try_get_unchecked(1)?),
        event_type,
        schema_version,
        payload: match layout.payload {
            Some(column) => row.try_get_unchecked(column)?,
            None => Vec::new(),
        },
        correlation_id,
        causation_id,
        tenant_id,
        user_id,
        extra_metadata,
        recorded_at: <sqlx::Postgres as DecodeRows>::time(
            row,
            layout.recorded_at,
            at,
            "recorded_at",
        )?,
        stream_id: StreamId::trusted(stream_id),
    })
}

/// The length of the stored payload of a row of `events` read as `postgres_event_row`
/// reads it, when the read asked for the payload.
#[cfg(feature = "postgres")]
pub(crate) fn postgres_payload_len(row: &PgRow, parts: EventParts) -> Option<usize> {
    let column = EventLayout::of::<sqlx::Postgres>(parts).payload?;
    let value = row.try_get_raw(column).ok()?;
    Some(value.as_bytes().map_or(0, <[u8]>::len))
}

/// The stream id of event `id`, read through the join of the stream ids
/// (`event_joins::EVENT_JOINS`): `None` when the row's `stream_key` names no row of
/// `streams`.
pub(crate) fn stream_of(stream_id: Option<String>, id: Uuid) -> Result<String, sqlx::Error> {
    stream_id.ok_or_else(|| RowRef::event("", id).corrupt("stream_key", CorruptValue::NoStream))
}

/// The values of a SQLite row as chronicle reads them, whatever holds the row: sqlx's
/// [`SqliteRow`], or the statement of the log reader (`sqlite_reader`), which reads the
/// columns in place. Each follows sqlx's rules for the type (which stored types it takes,
/// what `NULL` reads as), and fails with the same `ColumnDecode` error, so a row of
/// `events` decodes, or is named corrupt, the same way on both paths.
#[cfg(feature = "sqlite")]
pub(crate) trait SqliteColumns {
    /// An integer (`INTEGER`; `NULL` reads as 0).
    fn int(&self, index: usize) -> Result<i64, sqlx::Error>;
    /// Text or `NULL`.
    fn text_or_null(&self, index: usize) -> Result<Option<String>, sqlx::Error>;
    /// Bytes (`BLOB` or `TEXT`; `NULL` reads as empty).
    fn bytes(&self, index: usize) -> Result<Vec<u8>, sqlx::Error>;
    /// A UUID stored as 16 bytes (`BLOB` or `TEXT`, sqlx's rule; anything else fails).
    fn uuid(&self, index: usize) -> Result<Uuid, sqlx::Error>;
}

#[cfg(feature = "sqlite")]
impl SqliteColumns for SqliteRow {
    fn int(&self, index: usize) -> Result<i64, sqlx::Error> {
        self.try_get(index)
    }

    fn text_or_null(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
        self.try_get(index)
    }

    fn bytes(&self, index: usize) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(index)
    }

    fn uuid(&self, index: usize) -> Result<Uuid, sqlx::Error> {
        self.try_get(index)
    }
}

/// A SQLite row of `events` read for `parts`, its columns as `Statements::event_columns`
/// lists them: `DecodeRows::event_row` for sqlx's rows and the log reader's alike.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_event_row(
    row: &impl SqliteColumns,
    parts: EventParts,
) -> Result<StoredEvent, sqlx::Error> {
    let layout = EventLayout::of::<sqlx::Sqlite>(parts);
    let id = row.uuid(1)?;
    let stream_id = stream_of(row.text_or_null(2)?, id)?;
    let at = RowRef::event(&stream_id, id);
    let version = at.version(row.int(3).map_err(at.unreadable("version"))?)?;
    let at = at.at_version(version);
    let position = row.int(0).map_err(at.unreadable("position"))?;
    // Both null when the row's `type_id` names no row of `event_types`.
    let event_type = row.text_or_null(4).map_err(at.unreadable("event_type"))?;
    let schema_version = match event_type {
        Some(_) => Some(row.int(5).map_err(at.unreadable("schema_version"))?),
        None => None,
    };
    let (event_type, schema_version) = at.event_type(event_type, schema_version)?;
    let recorded_at = row
        .int(layout.recorded_at)
        .map_err(at.unreadable("recorded_at"))?;
    let (correlation_id, causation_id, tenant_id, user_id, extra_metadata) = match layout.metadata {
        Some(first) => (
            row.text_or_null(first)?,
            row.text_or_null(first + 1)?,
            row.text_or_null(first + 2)?,
            row.text_or_null(first + 3)?,
            row.text_or_null(first + 4)
                .map_err(at.unreadable("metadata"))?,
        ),
        None => (None, None, None, None, None),
    };
    Ok(StoredEvent {
        id,
        version,
        position: at.unsigned("position", "position", position)?,
        commit: 0,
        event_type,
        schema_version,
        payload: match layout.payload {
            Some(column) => row.bytes(column)?,
            None => Vec::new(),
        },
        correlation_id,
        causation_id,
        tenant_id,
        user_id,
        extra_metadata,
        recorded_at: at.micros("recorded_at", recorded_at)?,
        stream_id: StreamId::trusted(stream_id),
    })
}

/// The number of columns a row of `events` read for `parts` has on SQLite.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_event_columns(parts: EventParts) -> usize {
    EventLayout::of::<sqlx::Sqlite>(parts).recorded_at + 1
}

#[cfg(feature = "sqlite")]
impl DecodeRows for sqlx::Sqlite {
    /// SQLite keeps any value in any column, so a value of another type is named as
    /// corrupt too.
    const EVENT_HEAD_COLUMNS: usize = 6;

    fn event_row(row: &SqliteRow, parts: EventParts) -> Result<StoredEvent, sqlx::Error> {
        sqlite_event_row(row, parts)
    }

    fn stream_row(row: &SqliteRow) -> Result<StoredStream, sqlx::Error> {
        let stream_id: String = row.try_get("stream_id")?;
        let at = RowRef::stream(&stream_id);
        let int =
            |column: &'static str| row.try_get::<i64, _>(column).map_err(at.unreadable(column));
        Ok(StoredStream {
            category: row.try_get("category")?,
            aggregate_type: row.try_get("aggregate_type")?,
            display_name: row.try_get("display_name")?,
            version: at.version(int("version")?)?,
            event_count: at.unsigned("event_count", "count", int("event_count")?)?,
            created_at: at.micros("created_at", int("created_at")?)?,
            updated_at: at.micros("updated_at", int("updated_at")?)?,
            last_event_id: row.try_get("last_event_id")?,
            status: at.status(int("status")?)?,
            metadata: row.try_get("metadata").map_err(at.unreadable("metadata"))?,
            stream_id: StreamId::trusted(stream_id),
        })
    }

    /// Microseconds since the Unix epoch.
    fn time(
        row: &SqliteRow,
        index: usize,
        at: RowRef<'_>,
        column: &'static str,
    ) -> Result<DateTime<Utc>, sqlx::Error> {
        at.micros(column, row.try_get(index).map_err(at.unreadable(column))?)
    }
}

#[cfg(feature = "postgres")]
impl DecodeRows for sqlx::Postgres {
    const EVENT_HEAD_COLUMNS: usize = 7;

    fn event_row(row: &PgRow, parts: EventParts) -> Result<StoredEvent, sqlx::Error> {
        postgres_event_row(row, parts, |row| row.try_get_unchecked(3))
    }

    fn stream_row(row: &PgRow) -> Result<StoredStream, sqlx::Error> {
        let stream_id: String = row.try_get("stream_id")?;
        let at = RowRef::stream(&stream_id);
        let time = |column: &'static str| {
            let index = sqlx::Column::ordinal(row.try_column(column)?);
            Self::time(row, index, at, column)
        };
        Ok(StoredStream {
            category: row.try_get("category")?,
            aggregate_type: row.try_get("aggregate_type")?,
            display_name: row.try_get("display_name")?,
            version: at.version(row.try_get("version")?)?,
            event_count: at.unsigned("event_count", "count", row.try_get("event_count")?)?,
            created_at: time("created_at")?,
            updated_at: time("updated_at")?,
            last_event_id: row.try_get("last_event_id")?,
            status: at.status(i64::from(row.try_get::<i16, _>("status")?))?,
            metadata: row.try_get("metadata")?,
            stream_id: StreamId::trusted(stream_id),
        })
    }

    /// A `timestamptz` column of the row `at`. In binary form it is microseconds since
    /// 2000-01-01 UTC, read here directly (sqlx goes through three chrono conversions, and
    /// panics on `infinity`). `infinity` and `-infinity` are no time: a [`CorruptRow`].
    ///
    /// [`CorruptRow`]: crate::CorruptRow
    fn time(
        row: &PgRow,
        index: usize,
        at: RowRef<'_>,
        column: &'static str,
    ) -> Result<DateTime<Utc>, sqlx::Error> {
        let value = row.try_get_raw(index)?;
        let binary = (value.format() == PgValueFormat::Binary)
            .then(|| <[u8; 8]>::try_from(value.as_bytes().ok()?).ok())
            .flatten();
        if let Some(bytes) = binary {
            return from_postgres_micros(i64::from_be_bytes(bytes))
                .map_err(|stored| at.corrupt(column, CorruptValue::Time(stored)));
        }
        // Text form (not sent to these reads; kept for safety): sqlx parses it, and fails
        // without panicking on `infinity`.
        row.try_get(index)
    }
}

/// A `timestamptz`'s microseconds since 2000-01-01 UTC as a time; the stored value,
/// described, for `infinity` and `-infinity` (`i64::MAX` and `i64::MIN`) and the finite
/// times after chrono's last year (262143).
#[cfg(feature = "postgres")]
pub(crate) fn from_postgres_micros(micros: i64) -> Result<DateTime<Utc>, String> {
    /// 2000-01-01T00:00:00Z in microseconds since the Unix epoch.
    const POSTGRES_EPOCH: i64 = 946_684_800_000_000;
    let time = (micros != i64::MAX && micros != i64::MIN)
        .then(|| DateTime::from_timestamp_micros(micros.checked_add(POSTGRES_EPOCH)?))
        .flatten();
    time.ok_or_else(|| match micros {
        i64::MAX => "infinity".to_owned(),
        i64::MIN => "-infinity".to_owned(),
        micros => format!("{micros} µs after 2000-01-01"),
    })
}

/// A count or version as a SQL integer (saturating; no stream gets near `i64::MAX`).
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A number the database computed (a count, a length, a sum) as a `u64`; never a stored
/// column, which goes through [`RowRef`] so that a corrupt value is an error.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}
