//! The SQL that SQLite and PostgreSQL share. `backend` is their one `Backend`,
//! `SqlBackend<D>`, with `Engine`, what each database's backend does its own way
//! (implemented in `store/sqlite.rs` and `store/postgres.rs`); `event_types` is the
//! event-type dictionary both logs name their types through, and `event_joins` how reads
//! reach the types and streams an event row names by key; `dialect` says what
//! differs between their statements, `rows` decodes their rows (and names a corrupt one),
//! `reads` holds the reads written once over a dialect, `migrate` the migration runner,
//! `tx` the transaction (`SqlTx`, the seam's `Tx`: checkpoints and
//! skips) with `outbox` its outbox statements and `streams` its stream-row primitives,
//! written once the same way; `sqlite_reader` reads SQLite's log windows on threads of
//! its own, through SQLite's C API; here are the rows of the shapes both backends return, the filters
//! both push onto statements with sqlx's `QueryBuilder` (which picks each database's
//! placeholders), and small conversions.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod backend;
pub(crate) mod dialect;
pub(crate) mod event_joins;
pub(crate) mod event_types;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod migrate;
mod outbox;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod reads;
pub(crate) mod rows;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite_code;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite_reader;
mod streams;
pub(crate) mod tx;

use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use uuid::Uuid;

use self::rows::DecodeRows;
pub(crate) use self::rows::{RowRef, to_i64, to_u64};
use super::backend::{
    AppendOutcome, ReplayedEvent, StoredEvent, StoredSnapshot, StreamStart, WindowLimit, WindowRow,
    Written,
};
use crate::error::{Error, Result};
use crate::read::{EventQuery, LogPosition};
use crate::stream::{Direction, StreamId, StreamListQuery, StreamStatus};

/// A row of the narrow replay statement (`reads`), of `stream`.
pub(crate) fn replayed_from_row<R>(stream: &str, row: &R) -> Result<ReplayedEvent, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> Uuid: Decode<'r, R::Database>,
    for<'r> i64: Decode<'r, R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database>,
{
    // The columns' types are fixed by the statement, so the type checks are skipped: a
    // load of 1,000 events decodes 5,000 columns.
    let id = row.try_get_unchecked(0)?;
    let at = RowRef::event(stream, id);
    let version = at.version(row.try_get_unchecked(1)?)?;
    let (event_type, schema_version) = at
        .at_version(version)
        .event_type(row.try_get_unchecked(2)?, row.try_get_unchecked(3)?)?;
    Ok(ReplayedEvent {
        id,
        version,
        event_type,
        schema_version,
        payload: row.try_get_unchecked(4)?,
    })
}

/// A row of a backend's one-statement `replay_start`: the stream's head, its newest
/// snapshot, or an event after that snapshot.
#[derive(Debug)]
pub(crate) enum StartRow {
    Head(u64, StreamStatus),
    Snapshot(StoredSnapshot),
    Event(ReplayedEvent),
}

impl StartRow {
    /// What it counts against the byte budget of the load's first page: an event's stored
    /// payload.
    pub(crate) fn budget_bytes(&self) -> Option<usize> {
        match self {
            StartRow::Event(event) => Some(event.payload.len()),
            StartRow::Head(..) | StartRow::Snapshot(_) => None,
        }
    }
}

/// A row of a backend's one-statement `replay_start`, all of one shape: (kind, version,
/// number, event id, event type, payload, time). Kind 0 is the stream's head (number: its
/// status), kind 1 its newest snapshot (number: schema version; time in column 6), kind 2
/// an event (number: schema version).
pub(crate) fn start_row<D>(stream: &str, row: &D::Row) -> Result<StartRow, sqlx::Error>
where
    D: DecodeRows,
    usize: ColumnIndex<D::Row>,
    for<'r> Uuid: Decode<'r, D>,
    for<'r> i64: Decode<'r, D>,
    for<'r> String: Decode<'r, D>,
    for<'r> Vec<u8>: Decode<'r, D>,
{
    let version: i64 = row.try_get_unchecked(1)?;
    // Null only for an event whose type row is missing (`RowRef::event_type`).
    let number: Option<i64> = row.try_get_unchecked(2)?;
    Ok(match row.try_get_unchecked::<i64, _>(0)? {
        0 => {
            let number = number.unwrap_or_default();
            let at = RowRef::stream(stream);
            StartRow::Head(at.version(version)?, at.status(number)?)
        }
        1 => {
            let number = number.unwrap_or_default();
            let at = RowRef::snapshot(stream, None);
            let version = at.version(version)?;
            let at = at.at_version(version);
            StartRow::Snapshot(StoredSnapshot {
                version,
                schema_version: at.schema_version(number)?,
                payload: row.try_get_unchecked(5)?,
                created_at: D::time(row, 6, at, "created_at")?,
            })
        }
        _ => {
            let id = row.try_get_unchecked(3)?;
            let at = RowRef::event(stream, id);
            let version = at.version(version)?;
            let (event_type, schema_version) = at
                .at_version(version)
                .event_type(row.try_get_unchecked(4)?, number)?;
            StartRow::Event(ReplayedEvent {
                id,
                version,
                event_type,
                schema_version,
                payload: row.try_get_unchecked(5)?,
            })
        }
    })
}

/// The start of a load from the [`StartRow`]s of `stream`, as the statement sent them
/// (its `UNION ALL` sends the head, then the snapshot, then the events in version order,
/// and the rows were cut at the page's byte budget as they came); `None` when there is no
/// head row: no such stream.
///
/// # Errors
/// [`Error::Internal`] for rows in another order, which a cut could have robbed of the
/// head or the snapshot: never a start that leaves them out. (Events come only with a
/// head, so events without one are out of order too.)
pub(crate) fn stream_start(stream: &str, rows: Vec<StartRow>) -> Result<Option<StreamStart>> {
    let mut head = None;
    let mut snapshot = None;
    let mut events: Vec<ReplayedEvent> = Vec::new();
    for row in rows {
        let in_order = match &row {
            StartRow::Head(..) => head.is_none() && snapshot.is_none() && events.is_empty(),
            StartRow::Snapshot(_) => snapshot.is_none() && events.is_empty(),
            StartRow::Event(event) => {
                head.is_some()
                    && events
                        .last()
                        .is_none_or(|last| last.version < event.version)
            }
        };
        if !in_order {
            return Err(Error::Internal(format!(
                "the start of a load of `{stream}` came in another order than its statement's"
            )));
        }
        match row {
            StartRow::Head(version, status) => head = Some((version, status)),
            StartRow::Snapshot(stored) => snapshot = Some(stored),
            StartRow::Event(event) => events.push(event),
        }
    }
    Ok(head.map(|(version, status)| StreamStart {
        version,
        status,
        snapshot,
        events,
    }))
}

/// A row of a filtered window statement: the event columns, then `wanted` (of a type
/// asked for) and `scanned` (events in the whole window).
pub(crate) fn window_row<R>(
    row: &R,
    event_from_row: impl Fn(&R) -> Result<StoredEvent, sqlx::Error>,
) -> Result<WindowRow, sqlx::Error>
where
    R: Row,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    Ok(WindowRow {
        event: event_from_row(row)?,
        wanted: row.try_get("wanted")?,
        scanned: to_u64(row.try_get("scanned")?) as usize,
    })
}

/// Collects `rows` up to the one whose `size` brings the total to the byte budget of
/// `limit` (the rest are left unread: dropping the stream discards them).
pub(crate) async fn cut_at_budget<T>(
    mut rows: impl Stream<Item = Result<T, sqlx::Error>> + Unpin,
    limit: WindowLimit,
    size: impl Fn(&T) -> Option<usize>,
) -> Result<Vec<T>, sqlx::Error> {
    let (mut kept, mut bytes) = (Vec::new(), 0);
    while let Some(row) = rows.try_next().await? {
        bytes += size(&row).unwrap_or(0);
        kept.push(row);
        if limit.bytes_reached(bytes) {
            break;
        }
    }
    Ok(kept)
}

/// The checkpoint of the projection `name` from its stored (commit id, position).
///
/// # Errors
/// A [`CorruptRow`] (as `sqlx::Error::Decode`) for a negative value: read as 0, it would
/// send the projection back to the start of the log.
pub(crate) fn checkpoint(
    name: &str,
    (commit, position): (i64, i64),
) -> Result<LogPosition, sqlx::Error> {
    let at = RowRef::checkpoint(name);
    Ok(LogPosition::new(
        at.unsigned("commit_id", "transaction id", commit)?,
        at.unsigned("position", "position", position)?,
    ))
}

/// Appends `WHERE …`, order and limit for the first `limit` events of `stream` with
/// versions in `versions`, in `direction`'s order, to a `SELECT … FROM events` statement.
pub(crate) fn push_version_range<DB>(
    query: &mut QueryBuilder<DB>,
    stream: &StreamId,
    versions: &RangeInclusive<u64>,
    direction: Direction,
    limit: usize,
) where
    DB: Database,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    query.push(" WHERE ");
    event_joins::push_of_stream(query, stream.as_str());
    query
        .push(" AND version BETWEEN ")
        .push_bind(to_i64(*versions.start()))
        .push(" AND ")
        .push_bind(to_i64(*versions.end()))
        .push(match direction {
            Direction::Forward => " ORDER BY version ASC LIMIT ",
            Direction::Backward => " ORDER BY version DESC LIMIT ",
        })
        .push_bind(to_i64(limit as u64));
}

/// Appends `WHERE …` conditions, the log's order (`log_order`: its columns), limit and
/// offset for `filter` to a `SELECT … FROM events` statement. `time` turns a time into the
/// backend's column value.
pub(crate) fn push_event_filter<DB, T>(
    query: &mut QueryBuilder<DB>,
    filter: &EventQuery,
    log_order: &str,
    time: impl Fn(DateTime<Utc>) -> T,
) where
    DB: Database,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> T: Encode<'t, DB> + Type<DB>,
{
    query.push(" WHERE 1 = 1");
    if let Some(stream) = &filter.stream {
        query.push(" AND ");
        event_joins::push_of_stream(query, stream);
    }
    if !filter.event_types.is_empty() {
        query.push(" AND event_type IN (");
        let mut list = query.separated(", ");
        for event_type in &filter.event_types {
            list.push_bind(event_type.as_str());
        }
        query.push(")");
    }
    if let Some(from) = filter.from_time {
        query.push(" AND recorded_at >= ").push_bind(time(from));
    }
    if let Some(to) = filter.to_time {
        query.push(" AND recorded_at < ").push_bind(time(to));
    }
    if let Some(id) = &filter.correlation_id {
        query.push(" AND correlation_id = ").push_bind(id.as_str());
    }
    if let Some(id) = &filter.tenant_id {
        query.push(" AND tenant_id = ").push_bind(id.as_str());
    }
    query
        .push(" ORDER BY ")
        .push(log_order)
        .push(" LIMIT ")
        .push_bind(to_i64(filter.limit as u64))
        .push(" OFFSET ")
        .push_bind(to_i64(filter.offset as u64));
}

/// Appends `WHERE …`, order and limit for `query` to a `SELECT … FROM streams` statement.
/// A category is a range of the primary key (stream ids sort bytewise on both backends):
/// the category itself and `category-…` lie in `[category, category + ".")`, since `.`
/// follows `-`; the `category` column drops other ids in that range (`category!…`).
pub(crate) fn push_stream_list_filter<DB>(query: &mut QueryBuilder<DB>, list: &StreamListQuery)
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    query.push(" WHERE 1 = 1");
    if let Some(category) = &list.category {
        query
            .push(" AND stream_id >= ")
            .push_bind(category.as_str())
            .push(" AND stream_id < ")
            .push_bind(format!("{category}."))
            .push(" AND category = ")
            .push_bind(category.as_str());
    }
    if let Some(after) = &list.after {
        query.push(" AND stream_id > ").push_bind(after.as_str());
    }
    if !list.include_deleted {
        query.push(" AND status = 0");
    }
    query
        .push(" ORDER BY stream_id LIMIT ")
        .push_bind(to_i64(list.limit as u64));
}

/// An appended event's row as an append returns it: position, version, writing
/// transaction, time recorded.
pub(crate) type WrittenRow = (i64, i64, i64, DateTime<Utc>);

/// The outcome of an append from its rows, in version order.
pub(crate) fn written(rows: Vec<WrittenRow>) -> AppendOutcome {
    let mut written: Vec<Written> = rows
        .into_iter()
        .map(|(position, version, commit, recorded_at)| Written {
            version: to_u64(version),
            position: to_u64(position),
            commit: to_u64(commit),
            recorded_at,
        })
        .collect();
    written.sort_by_key(|w| w.version);
    AppendOutcome::Written(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(version: u64) -> StartRow {
        StartRow::Event(ReplayedEvent {
            id: Uuid::nil(),
            version,
            event_type: "t".to_owned(),
            schema_version: 1,
            payload: b"{}".to_vec(),
        })
    }

    fn snapshot(version: u64) -> StartRow {
        StartRow::Snapshot(StoredSnapshot {
            version,
            schema_version: 1,
            payload: b"{}".to_vec(),
            created_at: Utc::now(),
        })
    }

    #[test]
    fn a_start_takes_its_rows_in_the_statements_order_only() {
        let head = || StartRow::Head(9, StreamStatus::Active);
        let start = stream_start("s", vec![head(), snapshot(4), event(5), event(6)])
            .expect("in order")
            .expect("a stream");
        assert_eq!((start.version, start.events.len()), (9, 2));
        assert_eq!(start.snapshot.map(|s| s.version), Some(4));
        assert!(stream_start("s", Vec::new()).expect("no rows").is_none());
        for rows in [
            vec![event(5), head()],
            vec![head(), event(5), snapshot(4)],
            vec![head(), event(6), event(5)],
            vec![snapshot(4), head()],
            vec![event(1)],
        ] {
            assert!(
                matches!(stream_start("s", rows), Err(Error::Internal(_))),
                "out of order"
            );
        }
    }
}
