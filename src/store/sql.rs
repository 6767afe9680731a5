//! SQL shared by the SQLite and PostgreSQL backends: the parts of statements that are the
//! same text on both, built with sqlx's `QueryBuilder` (which picks each database's
//! placeholders).

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::read::EventQuery;

/// Appends `WHERE …` conditions, order, limit and offset for `filter` to a
/// `SELECT … FROM events` statement. `time` turns a time into the backend's column value.
pub(crate) fn push_event_filter<DB, T>(
    query: &mut QueryBuilder<DB>,
    filter: &EventQuery,
    time: impl Fn(DateTime<Utc>) -> T,
) where
    DB: Database,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> T: Encode<'t, DB> + Type<DB>,
{
    query.push(" WHERE 1 = 1");
    if let Some(stream) = &filter.stream {
        query.push(" AND stream_id = ").push_bind(stream.as_str());
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
        .push(" ORDER BY position LIMIT ")
        .push_bind(to_i64(filter.limit as u64))
        .push(" OFFSET ")
        .push_bind(to_i64(filter.offset as u64));
}

/// A count or version as a SQL integer (saturating; no stream gets near `i64::MAX`).
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A SQL integer read back as a count or version (negative values cannot be stored).
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}
