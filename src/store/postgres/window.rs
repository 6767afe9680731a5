//! PostgreSQL's log windows (`Engine::read_all`): the statement of a window of the global
//! log, and how its rows become events.
//!
//! A window reads `events` by its primary key, (transaction, position), behind every
//! running transaction. It joins no other table, because without statistics of `events`
//! (right after a bulk load) the planner probed the other table's key for every event
//! (BENCHMARKS.md, "The projection runner's windows" and "The stream key"):
//! - the type dictionary is read once per statement ([`WINDOW_TYPES`]);
//! - a window of at most [`INDEX_SAFE_WINDOW`] events finds each stream id by its key in
//!   the statement (a key probe per row costs less than a round trip);
//! - a longer window returns each event's stream key, and its stream ids are read after it
//!   in one statement by `streams`' key, then filled in ([`Arrived`]). A key names one
//!   stream for good (keys are never handed out again), so the ids need not come from the
//!   window's snapshot.

use std::collections::HashMap;

use futures::StreamExt;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row};

use crate::error::{Error, Result};
use crate::read::{EventParts, LogPosition};
use crate::store::backend::{LogPage, StoredEvent, WindowLimit, WindowRow};
use crate::store::sql::backend::SqlBackend;
use crate::store::sql::{self, dialect, rows, to_i64};
use crate::stream::StreamId;

/// The longest log window read with the planner left to itself, and whose stream ids are
/// found in its statement (see [`SqlBackend::<Postgres>::window_rows`]).
const INDEX_SAFE_WINDOW: usize = 1000;

/// The type dictionary as a log window reads it: `event_types` once per statement, the
/// names as a JSON object keyed by `type_id` (found by binary search, whatever the
/// dictionary's size: an array of names is searched from its start) and the schema
/// versions as an array indexed by it (`NULL` where no row has the id). Joined row by row
/// instead, a window probed the dictionary's key per event whenever the planner had no
/// statistics of `events` to choose its cache (`Memoize`) by, as after a bulk load
/// (BENCHMARKS.md, "The projection runner's windows"). Read by the statement itself, it is
/// always the one the events were written with.
const WINDOW_TYPES: &str = "types AS MATERIALIZED (SELECT \
     (SELECT jsonb_object_agg(type_id, event_type) FROM event_types) AS names, \
     (SELECT array_agg(t.schema_version ORDER BY g) \
      FROM generate_series(1, (SELECT max(type_id) FROM event_types)) AS g \
      LEFT JOIN event_types t ON t.type_id = g) AS versions)";

/// The events of a log window: after the cursor ($1, $2), behind every running
/// transaction, at most $3, in the log's order (by the primary key).
const WINDOW_RANGE: &str = "FROM events \
     WHERE (transaction_id, position) > ($1::text::xid8, $2) \
       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY transaction_id, position LIMIT $3";

/// `Dialect::EVENT_HEAD` of a log window, its stream column aside: the type and schema
/// version from [`WINDOW_TYPES`] (an id it lacks reads as `NULL`, as through the join: a
/// corrupt row).
fn window_head(stream: &str) -> String {
    format!(
        "position, transaction_id AS commit_id, event_id, {stream}, version, \
         (SELECT names FROM types) ->> type_id::text AS event_type, \
         (SELECT versions FROM types)[type_id] AS schema_version"
    )
}

/// The stream column of a short window: the id, by a probe of `streams`' key (`NULL`
/// when no row has the key: a corrupt row).
const STREAM_ID: &str =
    "(SELECT stream_id FROM streams s WHERE s.stream_key = events.stream_key) AS stream_id";

/// The stream column of a long window: the key (`Arrived`).
const STREAM_KEY: &str = "stream_key";

/// Where the stream id of a window's row comes from.
#[derive(Clone)]
enum StreamOf {
    /// The row's own stream column (a short window's).
    Column,
    /// Given: found by the row's key, or `None` when no stream row has it.
    Known(Option<String>),
}

/// A row of a long log window as it arrives: decoded as it comes out of the driver (so
/// decoding overlaps the fetch), all but its stream's id, which is filled in from the
/// window's ids ([`Arrived::finish`]). A row that does not decode is kept as it came and
/// decoded again once its stream's id is known, so that the error names the stream. A
/// short window's rows are decoded whole (`Decoded(None, _)`).
enum Arrived<T> {
    Decoded(Option<i32>, T),
    Undecoded(PgRow),
}

/// The stream key of a long window's row (its fourth column).
fn stream_key(row: &PgRow) -> std::result::Result<i32, sqlx::Error> {
    row.try_get_unchecked(3)
}

impl<T> Arrived<T> {
    /// `row` decoded by `decode`: whole when `keyed` is false, else without its stream id.
    fn new(
        row: PgRow,
        keyed: bool,
        decode: impl Fn(&PgRow, StreamOf) -> std::result::Result<T, sqlx::Error>,
    ) -> std::result::Result<Self, sqlx::Error> {
        if !keyed {
            return Ok(Arrived::Decoded(None, decode(&row, StreamOf::Column)?));
        }
        let key = stream_key(&row)?;
        Ok(match decode(&row, StreamOf::Known(Some(String::new()))) {
            Ok(decoded) => Arrived::Decoded(Some(key), decoded),
            Err(_) => Arrived::Undecoded(row),
        })
    }

    /// The stream key whose id the row waits for.
    fn key(&self) -> Option<std::result::Result<i32, sqlx::Error>> {
        match self {
            Arrived::Decoded(key, _) => key.map(Ok),
            Arrived::Undecoded(row) => Some(stream_key(row)),
        }
    }

    /// The rows with their streams' ids from `ids` (a key without a stream row is a
    /// corrupt row naming `stream_key`, as through the readers' join); `event` is the
    /// event of a decoded row.
    fn finish(
        arrived: Vec<Self>,
        ids: &HashMap<i32, String>,
        decode: impl Fn(&PgRow, StreamOf) -> std::result::Result<T, sqlx::Error>,
        event: impl Fn(&mut T) -> &mut StoredEvent,
    ) -> std::result::Result<Vec<T>, sqlx::Error> {
        arrived
            .into_iter()
            .map(|arrived| match arrived {
                Arrived::Decoded(None, decoded) => Ok(decoded),
                Arrived::Decoded(Some(key), mut decoded) => {
                    let event = event(&mut decoded);
                    let id = rows::stream_of(ids.get(&key).cloned(), event.id)?;
                    event.stream_id = StreamId::trusted(id);
                    Ok(decoded)
                }
                Arrived::Undecoded(row) => {
                    let id = ids.get(&stream_key(&row)?).cloned();
                    decode(&row, StreamOf::Known(id))
                }
            })
            .collect()
    }
}

impl SqlBackend<Postgres> {
    /// A window of the global log after `after`, within `limit`: every event, or (with
    /// `types`) the events of those types and the window's last event.
    pub(super) async fn log_window(
        &self,
        after: LogPosition,
        limit: WindowLimit,
        types: &[String],
        parts: EventParts,
    ) -> Result<LogPage> {
        let fail = |error| Error::from_sqlx("read_all", error);
        let keyed = limit.events > INDEX_SAFE_WINDOW;
        let head = window_head(if keyed { STREAM_KEY } else { STREAM_ID });
        let columns = dialect::event_columns::<Postgres>(&head, parts);
        let window = format!("WITH {WINDOW_TYPES} SELECT {columns} {WINDOW_RANGE}");
        let decode = move |row: &PgRow, of: StreamOf| {
            rows::postgres_event_row(row, parts, |row| match of {
                StreamOf::Column => row.try_get_unchecked(3),
                StreamOf::Known(id) => Ok(id),
            })
        };
        if types.is_empty() {
            let arrived = self
                .window_rows(
                    window,
                    (after, limit),
                    None,
                    |row| Arrived::new(row, keyed, decode),
                    |arrived| match arrived {
                        Arrived::Decoded(_, event) => Some(event.payload.len()),
                        Arrived::Undecoded(row) => rows::postgres_payload_len(row, parts),
                    },
                )
                .await
                .map_err(fail)?;
            let ids = self.window_stream_ids(&arrived).await.map_err(fail)?;
            let events = Arrived::finish(arrived, &ids, decode, |event| event).map_err(fail)?;
            return Ok(LogPage::all(events, limit));
        }
        // The window by the commit-order index, then its events of the types and its last
        // event. (With the type condition in the scan, and statistics from before a bulk
        // load, PostgreSQL fetched every later event of the types and sorted them: 70 ms a
        // page at 200k events.)
        let sql = format!(
            "WITH w AS MATERIALIZED ({window}), \
             last AS ( \
                 SELECT commit_id, position, (SELECT count(*) FROM w) AS scanned FROM w \
                 ORDER BY commit_id DESC, position DESC LIMIT 1) \
             SELECT w.*, w.event_type = ANY($4) AS wanted, last.scanned AS scanned \
             FROM w, last \
             WHERE w.event_type = ANY($4) OR w.position = last.position \
             ORDER BY w.commit_id, w.position"
        );
        let decode_row =
            move |row: &PgRow, of: StreamOf| sql::window_row(row, |row| decode(row, of.clone()));
        let arrived = self
            .window_rows(
                sql,
                (after, limit),
                Some(types),
                |row| Arrived::new(row, keyed, decode_row),
                |arrived| match arrived {
                    Arrived::Decoded(_, row) => row.budget_bytes(),
                    // Counted as wanted: its error ends the read anyway.
                    Arrived::Undecoded(row) => rows::postgres_payload_len(row, parts),
                },
            )
            .await
            .map_err(fail)?;
        let ids = self.window_stream_ids(&arrived).await.map_err(fail)?;
        let rows = Arrived::finish(arrived, &ids, decode_row, |row: &mut WindowRow| {
            &mut row.event
        })
        .map_err(fail)?;
        Ok(LogPage::filtered(rows, limit))
    }

    /// The rows of a log window query (`sql`, with `after` and `limit` as $1–$3 and the
    /// types, if any, as $4), each through `decode`, read one by one up to the one whose
    /// `size` (the stored payload of a wanted event, else `None`) reaches the byte budget.
    /// A window longer than [`INDEX_SAFE_WINDOW`] is read in a read-only transaction that
    /// keeps the planner off sorts and bitmap scans: without fresh statistics (right after
    /// a bulk load, or with autovacuum off) PostgreSQL answered a window of 10,000 with a
    /// bitmap scan and a sort of the rest of the log (57 ms, against 0.5 ms a thousand
    /// events by the index). And off JIT: a filtered window still ends in a sort (of the
    /// window), whose cost, made huge by `enable_sort = off`, crosses the JIT thresholds;
    /// compiling took 180 ms of a 190 ms query.
    ///
    /// (A running sum of `octet_length(payload)` in the statement would stop the rows at
    /// the server, but its window aggregate made every window of 10,000 small events
    /// several times slower.)
    async fn window_rows<T: Send + Unpin>(
        &self,
        sql: String,
        (after, limit): (LogPosition, WindowLimit),
        types: Option<&[String]>,
        mut decode: impl FnMut(PgRow) -> std::result::Result<T, sqlx::Error> + Send,
        size: impl Fn(&T) -> Option<usize>,
    ) -> std::result::Result<Vec<T>, sqlx::Error> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.commit().to_string())
            .bind(to_i64(after.position()))
            .bind(to_i64(limit.events as u64));
        if let Some(types) = types {
            query = query.bind(types);
        }
        // Each row is decoded as it comes out of the driver's stream, not through
        // `try_map`: a decoded event is a large value, which every layer of that stream
        // would move again (`memmove` was a sixth of a catch-up's samples in the process:
        // BENCHMARKS.md, "The projection runner's windows").
        let mut decoded = |row: std::result::Result<PgRow, sqlx::Error>| row.and_then(&mut decode);
        if limit.events <= INDEX_SAFE_WINDOW {
            let rows = query.fetch(&self.reader).map(&mut decoded);
            return sql::cut_at_budget(rows, limit, size).await;
        }
        let mut tx = self
            .reader
            .begin_with(
                "BEGIN READ ONLY; SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off; \
                 SET LOCAL jit = off",
            )
            .await?;
        let rows = query.fetch(&mut *tx).map(&mut decoded);
        let rows = sql::cut_at_budget(rows, limit, size).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The ids of the streams whose keys the rows of a long log window wait for, read in
    /// one statement by `streams`' key. (Looked up in the window's own statement instead,
    /// as a JSON object of the window's ids, they cost the server a second pass over the
    /// window and a lookup per row, and the catch-up ran at a third of its rate:
    /// BENCHMARKS.md, "The stream key".)
    async fn window_stream_ids<T>(
        &self,
        rows: &[Arrived<T>],
    ) -> std::result::Result<HashMap<i32, String>, sqlx::Error> {
        let mut keys = rows
            .iter()
            .filter_map(Arrived::key)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<(i32, String)> =
            sqlx::query_as("SELECT stream_key, stream_id FROM streams WHERE stream_key = ANY($1)")
                .bind(keys)
                .fetch_all(&self.reader)
                .await?;
        Ok(ids.into_iter().collect())
    }
}
