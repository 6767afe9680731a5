//! How statements on `events` reach what an event row names by key: its type and schema
//! version (the dictionary `event_types`, by `type_id`) and its stream's id (`streams`, by
//! `stream_key`: PostgreSQL's migration 0013, SQLite's 0011). Reads that return events join
//! both ([`EVENT_JOINS`]); statements that pick a stream's events find its key once
//! ([`of_stream`]). PostgreSQL's log windows join neither (`store/postgres/window.rs`).

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

/// What goes around a bound stream id to make the condition "the event is one of that
/// stream" on `events`: its key, found once through `streams`' index of ids. (A condition
/// on the joined id instead made PostgreSQL sort a stream's every event to read its first
/// page.)
pub(crate) const OF_STREAM: (&str, &str) = (
    "stream_key = (SELECT stream_key FROM streams WHERE stream_id = ",
    ")",
);

/// [`OF_STREAM`] around the placeholder `param`.
pub(crate) fn of_stream(param: &str) -> String {
    let (open, close) = OF_STREAM;
    format!("{open}{param}{close}")
}
