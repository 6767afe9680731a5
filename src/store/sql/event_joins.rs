//! How statements on `events` reach what an event row names by key: its type and schema
//! version (the dictionary `event_types`, by `type_id`) and its stream's id (`streams`, by
//! `stream_key`: PostgreSQL's migration 0013, SQLite's 0011). Reads that return events join
//! both ([`EVENT_JOINS`]); statements that pick a stream's events find its key once
//! ([`of_stream!`]), and appends find it the same way ([`stream_key_open!`]). PostgreSQL's
//! log windows join neither (`store/postgres/window.rs`).

use sqlx::{Database, Encode, QueryBuilder, Type};

macro_rules! types_join {
    () => {
        " LEFT JOIN event_types USING (type_id)"
    };
}

/// What follows `events` (or `events e`) in a read's `FROM` so that `event_type` and
/// `schema_version` are columns. A left join, so that an event whose type row is missing
/// reads as a corrupt row naming `type_id`, never as no row.
pub(crate) const TYPES_JOIN: &str = types_join!();

/// [`TYPES_JOIN`], then the stream ids, so that `stream_id` is a column too. The ids'
/// table is narrowed to its key and id, so that its other columns (`version`, `metadata`)
/// do not shadow the event's; a left join, so that an event whose stream row is missing
/// reads as a corrupt row naming `stream_key`.
pub(crate) const EVENT_JOINS: &str = concat!(
    types_join!(),
    " LEFT JOIN (SELECT stream_key, stream_id FROM streams) AS stream_ids USING (stream_key)"
);

/// The opening of "the key of the stream bound next", found once through `streams`' index
/// of ids: a parenthesized `SELECT`, closed by `)` after the bound id, that serves as a
/// scalar subquery (PostgreSQL's append upsert) or as a CTE's body (SQLite's append,
/// `WITH stream AS …`). The one spelling of how a statement finds a stream's key from its
/// id.
macro_rules! stream_key_open {
    () => {
        "(SELECT stream_key FROM streams WHERE stream_id = "
    };
}

/// The opening of the condition "the event is one of the stream bound next": its key,
/// found once ([`stream_key_open!`]). (A condition on the joined id instead made
/// PostgreSQL sort a stream's every event to read its first page.)
macro_rules! of_stream_open {
    () => {
        concat!(
            "stream_key = ",
            $crate::store::sql::event_joins::stream_key_open!()
        )
    };
}

/// The condition "the event is one of the stream bound as `$param`" on `events`, as a
/// literal, so that statements using it stay constants.
macro_rules! of_stream {
    ($param:literal) => {
        concat!(
            $crate::store::sql::event_joins::of_stream_open!(),
            $param,
            ")"
        )
    };
}

pub(crate) use {of_stream, of_stream_open, stream_key_open};

/// Appends the condition of [`of_stream!`] on `stream` to `query`, binding it.
pub(crate) fn push_of_stream<DB>(query: &mut QueryBuilder<DB>, stream: &str)
where
    DB: Database,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    query.push(of_stream_open!()).push_bind(stream).push(")");
}
