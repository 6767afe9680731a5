//! The outbox's `handler_requests` table on the SQL backends. The statements are written
//! once, with `$n` placeholders (both sqlx drivers take them) and times as microseconds
//! computed here, and run in a [`BatchTx`]; only the claim differs between the backends
//! (PostgreSQL skips rows other executors hold; SQLite's write lock serializes claims).
//!
//! **Turns.** For a handler ordered per stream, the one request of a (handler, stream)
//! that may run is marked `ready`: the running one, else the open one earliest in the log
//! (every request of a handler not ordered is ready). A claim reads only ready requests,
//! through an index of them, so its cost does not depend on how many requests wait behind
//! a turn. Whatever ends a turn or may take it (a request done or dead, one revived, new
//! requests) calls [`BatchTx::pass_turns`] for its keys in the same transaction; on
//! PostgreSQL [`BatchTx::lock_turns`] serializes those transactions per key first (an
//! advisory lock), so none decides from a state another is changing. SQLite's write lock
//! does that already.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::batch::BatchTx;
use super::sql::{RowRef, to_i64, to_u64};
use crate::error::{Error, Result, ValidationError};
use crate::read::LogPosition;

/// Request states, as stored.
pub(crate) const PENDING: i16 = 0;
pub(crate) const RUNNING: i16 = 1;
pub(crate) const DONE: i16 = 2;
pub(crate) const DEAD: i16 = 3;

/// Most rows in one INSERT (11 parameters each: 11,000, under both databases' limits).
const INSERT_CHUNK: usize = 1000;

/// A request to create: one event for one handler.
#[derive(Debug, Clone)]
pub(crate) struct NewRequest<'a> {
    pub handler: &'a str,
    pub event_id: Uuid,
    pub position: u64,
    /// The event's transaction (the commit part of its [`LogPosition`]).
    pub commit: u64,
    pub stream: &'a str,
    pub priority: i32,
    pub ordered: bool,
}

/// The (handler, stream) of requests ordered per stream: the unit of turns.
pub(crate) type TurnKeys<'a> = BTreeSet<(&'a str, &'a str)>;

/// The class of the PostgreSQL advisory locks on turns (two-key locks: their space is
/// apart from the one-key locks of appends and leases).
#[cfg(feature = "postgres")]
const TURN_LOCK_CLASS: i32 = 0x6f62_7478;

/// A request an executor claimed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct Claimed {
    pub id: i64,
    pub handler: String,
    pub event_id: Uuid,
    pub stream_id: String,
    pub attempts: i32,
    pub errors: i32,
    pub priority: i32,
    pub event_position: i64,
    /// Whether its handler runs a stream's requests in order (it holds its stream's turn).
    pub ordered: bool,
    /// The claim's token (`locked_by`): only the claim that holds it records an outcome.
    #[sqlx(skip)]
    pub token: String,
}

/// A failed execution, as recorded: dead, or due again at `due_at` (microseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failed<'a> {
    pub error: &'a str,
    pub dead: bool,
    pub due_at: i64,
}

/// A count of one handler's requests in one state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct StateCount {
    pub handler: String,
    pub state: i16,
    /// Whether these requests have failed before (pending ones waiting for a retry).
    pub failed: bool,
    pub count: i64,
    /// When the oldest of them was created (microseconds since the epoch).
    pub oldest: i64,
}

/// A dead request, for the administration API.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct DeadRow {
    pub id: i64,
    pub handler: String,
    pub event_id: Uuid,
    pub stream_id: String,
    pub errors: i32,
    pub last_error: Option<String>,
    pub updated_at: i64,
}

/// The elements of the JSON array in parameter `param`, as a subquery's rows of
/// `pg_type` on PostgreSQL (SQLite keeps JSON's own types).
fn json_list(postgres: bool, param: &str, pg_type: &str) -> String {
    if postgres {
        format!("SELECT json_array_elements_text({param}::json)::{pg_type}")
    } else {
        format!("SELECT value FROM json_each({param})")
    }
}

/// The rows `(handler, stream_id)` of the JSON array of pairs in parameter `param`.
fn key_list(postgres: bool, param: &str) -> String {
    if postgres {
        format!(
            "SELECT k ->> 0 AS handler, k ->> 1 AS stream_id \
             FROM json_array_elements({param}::json) AS k"
        )
    } else {
        format!(
            "SELECT json_extract(value, '$[0]') AS handler, \
                 json_extract(value, '$[1]') AS stream_id FROM json_each({param})"
        )
    }
}

/// SQLite's `INDEXED BY index` (nothing on PostgreSQL). SQLite plans without statistics
/// unless someone ran `ANALYZE`, and then took `handler_requests_state` (every open request
/// of the handler, then a sort) for the claim: the indexes of turns are named.
fn indexed_by(postgres: bool, index: &str) -> String {
    if postgres {
        String::new()
    } else {
        format!("INDEXED BY {index}")
    }
}

/// `id IN ({select})`; on PostgreSQL `id = ANY (ARRAY({select}))`, which it reads through
/// the primary key whatever number of rows it guesses `select` gives (for `IN`, it guessed
/// 100 rows of a JSON list and read the whole table).
fn id_in(postgres: bool, select: &str) -> String {
    if postgres {
        format!("id = ANY (ARRAY({select}))")
    } else {
        format!("id IN ({select})")
    }
}

/// `keys` as a JSON array of `[handler, stream]` pairs.
fn keys_json(keys: &TurnKeys<'_>) -> Result<String> {
    let pairs: Vec<[&str; 2]> = keys.iter().map(|(h, s)| [*h, *s]).collect();
    serde_json::to_string(&pairs).map_err(|error| Error::Internal(error.to_string()))
}

fn unsupported() -> Error {
    ValidationError::Config(
        "the outbox keeps its requests in a SQL database: use SQLite or PostgreSQL".to_owned(),
    )
    .into()
}

/// Runs `$body` with `$conn` bound to the transaction's connection, on either SQL backend
/// (the body is compiled once per backend).
macro_rules! on_sql {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            #[cfg(feature = "sqlite")]
            BatchTx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            #[cfg(feature = "postgres")]
            BatchTx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
            BatchTx::Memory { .. } => Err(unsupported()),
        }
    };
}

impl BatchTx {
    /// Creates `requests` (due at `now`), skipping any already there, and gives the turn of
    /// each stream of an ordered handler that had no open request to its first new one.
    pub(crate) async fn insert_requests(
        &mut self,
        requests: &[NewRequest<'_>],
        now: i64,
    ) -> Result<u64> {
        let fail = |error| Error::from_sqlx("create_requests", error);
        let mut created = 0;
        for chunk in requests.chunks(INSERT_CHUNK) {
            created += on_sql!(self, |conn| {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO handler_requests (handler, event_id, event_position, \
                     event_commit, stream_id, priority, ordered, ready, due_at, created_at, \
                     updated_at) ",
                );
                insert.push_values(chunk, |mut row, request| {
                    row.push_bind(request.handler)
                        .push_bind(request.event_id)
                        .push_bind(to_i64(request.position))
                        .push_bind(to_i64(request.commit))
                        .push_bind(request.stream)
                        .push_bind(request.priority)
                        .push_bind(request.ordered)
                        .push_bind(i16::from(!request.ordered))
                        .push_bind(now)
                        .push_bind(now)
                        .push_bind(now);
                });
                insert.push(" ON CONFLICT (handler, event_id) DO NOTHING");
                insert
                    .build()
                    .execute(conn)
                    .await
                    .map(|done| done.rows_affected())
                    .map_err(fail)
            })?;
        }
        let keys: TurnKeys<'_> = requests
            .iter()
            .filter(|request| request.ordered)
            .map(|request| (request.handler, request.stream))
            .collect();
        self.lock_turns(&keys).await?;
        self.pass_turns(&keys).await?;
        Ok(created)
    }

    /// Takes the turns of `keys` for the rest of the transaction, in one order for every
    /// transaction (PostgreSQL; SQLite's write lock already serializes writers).
    pub(crate) async fn lock_turns(&mut self, keys: &TurnKeys<'_>) -> Result<()> {
        #[cfg(feature = "postgres")]
        if let Some(conn) = self.postgres()
            && !keys.is_empty()
        {
            let sql = format!(
                "SELECT count(pg_advisory_xact_lock({TURN_LOCK_CLASS}, key)) FROM ( \
                     SELECT DISTINCT hashtext(handler || chr(10) || stream_id) AS key \
                     FROM ({}) AS keys ORDER BY key) AS sorted",
                key_list(true, "$1")
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(keys_json(keys)?)
                .execute(conn)
                .await
                .map_err(|error| Error::from_sqlx("lock_turns", error))?;
        }
        #[cfg(not(feature = "postgres"))]
        let _ = keys;
        Ok(())
    }

    /// Gives each of `keys` (locked with [`BatchTx::lock_turns`]) its right turn: a
    /// pending request that holds it gives it up to an earlier open one (revived from
    /// dead), and a key with no turn gives it to its earliest open request.
    pub(crate) async fn pass_turns(&mut self, keys: &TurnKeys<'_>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let fail = |error| Error::from_sqlx("pass_turns", error);
        let postgres = self.is_postgres();
        let list = key_list(postgres, "$1");
        let (turn, stream) = (
            indexed_by(postgres, "handler_requests_turn"),
            indexed_by(postgres, "handler_requests_stream"),
        );
        // The conditions `state < 2 AND ordered` (and `ready = 1`) name the partial
        // indexes: SQLite uses a partial index only for a query that states its condition.
        // One correlated lookup per key (a nested loop through the indexes on both
        // databases, whatever they guess of the list's length).
        let give_up = format!(
            "UPDATE handler_requests SET ready = 0 WHERE state = {PENDING} AND {}",
            id_in(
                postgres,
                &format!(
                    "SELECT (SELECT r.id FROM handler_requests AS r {turn} \
                         WHERE r.handler = k.handler AND r.stream_id = k.stream_id \
                           AND r.state < {DONE} AND r.ready = 1 AND r.ordered \
                           AND r.state = {PENDING} AND EXISTS ( \
                               SELECT 1 FROM handler_requests AS e {stream} \
                               WHERE e.handler = k.handler AND e.stream_id = k.stream_id \
                                 AND e.state < {DONE} AND e.ordered \
                                 AND e.event_position < r.event_position) \
                         LIMIT 1) \
                     FROM ({list}) AS k"
                )
            )
        );
        let take = format!(
            "UPDATE handler_requests SET ready = 1 WHERE state < {DONE} AND {}",
            id_in(
                postgres,
                &format!(
                    "SELECT (SELECT e.id FROM handler_requests AS e {stream} \
                         WHERE e.handler = k.handler AND e.stream_id = k.stream_id \
                           AND e.state < {DONE} AND e.ordered AND NOT EXISTS ( \
                               SELECT 1 FROM handler_requests AS t {turn} \
                               WHERE t.handler = k.handler AND t.stream_id = k.stream_id \
                                 AND t.state < {DONE} AND t.ready = 1 AND t.ordered) \
                         ORDER BY e.event_position LIMIT 1) \
                     FROM ({list}) AS k"
                )
            )
        );
        let keys = keys_json(keys)?;
        for sql in [give_up, take] {
            on_sql!(self, |conn| {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(keys.as_str())
                    .execute(conn)
                    .await
                    .map(drop)
                    .map_err(fail)
            })?;
        }
        Ok(())
    }

    /// Claims up to `limit` due requests of `handlers` (their names as a JSON array) under
    /// `token` until `lease_until`:
    /// pending ones whose time has come and running ones whose lease ran out, by priority
    /// then log order. Only ready ones: for a handler ordered per stream, the one whose
    /// turn it is (never a request behind an open one of its stream, nor beside a running
    /// one). The claim walks the index of ready requests, so the requests waiting for their
    /// turn cost it nothing.
    pub(crate) async fn claim_requests(
        &mut self,
        handlers: &str,
        token: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>> {
        let fail = |error| Error::from_sqlx("claim_requests", error);
        let sql = |handlers: &str, lock: &str, index: &str| {
            format!(
                "WITH picked AS MATERIALIZED ( \
                     SELECT r.id FROM handler_requests AS r {index} \
                     WHERE r.state < {DONE} AND r.ready = 1 \
                       AND ((r.state = {PENDING} AND r.due_at <= $3) \
                            OR (r.state = {RUNNING} AND r.locked_until < $3)) \
                       AND r.handler IN ({handlers}) \
                     ORDER BY r.priority, r.event_position \
                     LIMIT $4 {lock}) \
                 UPDATE handler_requests SET state = {RUNNING}, attempts = attempts + 1, \
                     locked_until = $1, locked_by = $2, updated_at = $3 \
                 WHERE id IN (SELECT id FROM picked) \
                 RETURNING id, handler, event_id, stream_id, attempts, errors, priority, \
                     event_position, ordered"
            )
        };
        #[cfg(feature = "postgres")]
        if let Some(conn) = self.postgres() {
            // Walk the open requests' index in claim order and stop at `limit`. On a
            // table whose statistics lag its churn (no autovacuum, or just after a
            // burst), PostgreSQL otherwise fetched every open request and sorted them
            // for each claim: 4.9 ms instead of 1.7 ms at 10,000 open requests, and
            // growing with them. And do not wait for the claim to reach the disk: a
            // claim lost in a crash leaves its requests pending, to be claimed again,
            // which a lease running out would do anyway.
            sqlx::query(
                "SELECT set_config('enable_sort', 'off', true), \
                        set_config('enable_bitmapscan', 'off', true), \
                        set_config('synchronous_commit', 'off', true)",
            )
            .execute(conn)
            .await
            .map_err(fail)?;
        }
        let sql = if self.is_postgres() {
            sql(&json_list(true, "$5", "text"), "FOR UPDATE SKIP LOCKED", "")
        } else {
            sql(
                &json_list(false, "$5", "text"),
                "",
                &indexed_by(false, "handler_requests_ready"),
            )
        };
        let mut claimed: Vec<Claimed> = on_sql!(self, |conn| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(lease_until)
                .bind(token)
                .bind(now)
                .bind(to_i64(limit as u64))
                .bind(handlers)
                .fetch_all(conn)
                .await
                .map_err(fail)
        })?;
        claimed.sort_by_key(|request| (request.priority, request.event_position));
        for request in &mut claimed {
            request.token = token.to_owned();
        }
        Ok(claimed)
    }

    /// Records the requests `ids` claimed under `token` as done, in one statement;
    /// returns the ids recorded (a request missing from them was claimed again since).
    pub(crate) async fn finish_done(
        &mut self,
        ids: &[i64],
        token: &str,
        now: i64,
    ) -> Result<Vec<i64>> {
        let fail = |error| Error::from_sqlx("finish_request", error);
        let list = json_list(self.is_postgres(), "$2", "bigint");
        let sql = format!(
            "UPDATE handler_requests SET state = {DONE}, due_at = $1, locked_until = NULL, \
                 locked_by = NULL, updated_at = $1 \
             WHERE id IN ({list}) AND state = {RUNNING} AND locked_by = $3 \
             RETURNING id"
        );
        let ids = serde_json::to_string(ids).unwrap_or_default();
        on_sql!(self, |conn| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(ids.as_str())
                .bind(token)
                .fetch_all(conn)
                .await
                .map_err(fail)
        })
    }

    /// Records the failed execution of request `id` claimed under `token`; `false` when
    /// the request was claimed again since (its lease ran out).
    pub(crate) async fn finish_failed(
        &mut self,
        id: i64,
        token: &str,
        failed: &Failed<'_>,
        now: i64,
    ) -> Result<bool> {
        let fail = |error| Error::from_sqlx("finish_request", error);
        let state = if failed.dead { DEAD } else { PENDING };
        let sql = format!(
            "UPDATE handler_requests SET state = $1, errors = errors + 1, last_error = $2, \
                 due_at = $3, locked_until = NULL, locked_by = NULL, updated_at = $4 \
             WHERE id = $5 AND state = {RUNNING} AND locked_by = $6"
        );
        on_sql!(self, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(state)
                .bind(failed.error)
                .bind(failed.due_at)
                .bind(now)
                .bind(id)
                .bind(token)
                .execute(conn)
                .await
                .map(|done| done.rows_affected() == 1)
                .map_err(fail)
        })
    }

    /// Requests per handler and state.
    pub(crate) async fn request_counts(&mut self) -> Result<Vec<StateCount>> {
        let fail = |error| Error::from_sqlx("outbox_stats", error);
        on_sql!(self, |conn| {
            sqlx::query_as(
                "SELECT handler, state, errors > 0 AS failed, count(*) AS count, \
                        min(created_at) AS oldest \
                 FROM handler_requests GROUP BY handler, state, errors > 0",
            )
            .fetch_all(conn)
            .await
            .map_err(fail)
        })
    }

    /// Every request's handler and event, in the order they were created (for the test
    /// fixture [`OutboxTest`](crate::testing::OutboxTest)).
    pub(crate) async fn list_requests(&mut self) -> Result<Vec<(String, Uuid)>> {
        let fail = |error| Error::from_sqlx("list_requests", error);
        on_sql!(self, |conn| {
            sqlx::query_as("SELECT handler, event_id FROM handler_requests ORDER BY id")
                .fetch_all(conn)
                .await
                .map_err(fail)
        })
    }

    /// Dead requests, of `handler` when given, oldest first.
    pub(crate) async fn dead_requests(
        &mut self,
        handler: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadRow>> {
        let fail = |error| Error::from_sqlx("dead_requests", error);
        let sql = format!(
            "SELECT id, handler, event_id, stream_id, errors, last_error, updated_at \
             FROM handler_requests WHERE state = {DEAD} AND ($1 IS NULL OR handler = $1) \
             ORDER BY id LIMIT $2"
        );
        on_sql!(self, |conn| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(handler)
                .bind(to_i64(limit as u64))
                .fetch_all(conn)
                .await
                .map_err(fail)
        })
    }

    /// Makes dead requests pending again, with no errors, due at `now`: the one with `id`,
    /// or every one of `handler`. Returns how many. A revived request of an ordered handler
    /// takes its stream's turn when no request of the stream runs and it is the earliest
    /// open one; else it waits for the turn.
    pub(crate) async fn retry_dead(
        &mut self,
        id: Option<i64>,
        handler: Option<&str>,
        now: i64,
    ) -> Result<u64> {
        let fail = |error| Error::from_sqlx("retry_dead", error);
        let sql = format!(
            "UPDATE handler_requests SET state = {PENDING}, errors = 0, due_at = $1, \
                 updated_at = $1, ready = CASE WHEN ordered THEN 0 ELSE 1 END \
             WHERE state = {DEAD} AND ($2 IS NULL OR id = $2) \
               AND ($3 IS NULL OR handler = $3) \
             RETURNING handler, stream_id, ordered"
        );
        let revived: Vec<(String, String, bool)> = on_sql!(self, |conn| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(id)
                .bind(handler)
                .fetch_all(conn)
                .await
                .map_err(fail)
        })?;
        let keys: TurnKeys<'_> = revived
            .iter()
            .filter(|(_, _, ordered)| *ordered)
            .map(|(handler, stream, _)| (handler.as_str(), stream.as_str()))
            .collect();
        self.lock_turns(&keys).await?;
        self.pass_turns(&keys).await?;
        Ok(revived.len() as u64)
    }

    /// Records where each of `handlers` of outbox `outbox` starts, unless recorded
    /// already, and returns the starts recorded for the outbox (of its handlers past and
    /// present). An outbox that has a checkpoint but no recorded starts ran before starts
    /// were recorded (an upgrade): its handlers start at the beginning, whatever they ask,
    /// so that none loses the events the processor has still to read.
    pub(crate) async fn register_handlers(
        &mut self,
        outbox: &str,
        handlers: &[(&str, LogPosition)],
        now: i64,
    ) -> Result<Vec<(String, LogPosition)>> {
        let fail = |error| Error::from_sqlx("register_handlers", error);
        let upgraded: bool = on_sql!(self, |conn| {
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM projection_checkpoints WHERE name = $1) \
                    AND NOT EXISTS (SELECT 1 FROM outbox_handlers WHERE outbox = $1)",
            )
            .bind(outbox)
            .fetch_one(conn)
            .await
            .map_err(fail)
        })?;
        for (handler, start) in handlers {
            let start = if upgraded { LogPosition::START } else { *start };
            on_sql!(self, |conn| {
                sqlx::query(
                    "INSERT INTO outbox_handlers \
                         (outbox, handler, start_commit, start_position, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (outbox, handler) DO NOTHING",
                )
                .bind(outbox)
                .bind(*handler)
                .bind(to_i64(start.commit()))
                .bind(to_i64(start.position()))
                .bind(now)
                .execute(&mut *conn)
                .await
                .map(drop)
                .map_err(fail)
            })?;
        }
        let rows: Vec<(String, i64, i64)> = on_sql!(self, |conn| {
            sqlx::query_as(
                "SELECT handler, start_commit, start_position FROM outbox_handlers \
                 WHERE outbox = $1",
            )
            .bind(outbox)
            .fetch_all(conn)
            .await
            .map_err(fail)
        })?;
        rows.into_iter()
            .map(|(handler, commit, position)| {
                let at = RowRef::outbox_handler(&handler);
                let start = LogPosition::new(
                    at.unsigned("start_commit", "log position", commit)
                        .map_err(fail)?,
                    at.unsigned("start_position", "log position", position)
                        .map_err(fail)?,
                );
                Ok((handler, start))
            })
            .collect()
    }

    /// How many requests of `handlers` (their names as a JSON array) for events at or
    /// before `until` are still open: pending (waiting for a first run or a retry) or
    /// running.
    pub(crate) async fn open_requests_until(
        &mut self,
        handlers: &str,
        until: LogPosition,
    ) -> Result<u64> {
        let fail = |error| Error::from_sqlx("open_requests", error);
        let list = json_list(self.is_postgres(), "$1", "text");
        let sql = format!(
            "SELECT count(*) FROM handler_requests \
             WHERE state < {DONE} AND handler IN ({list}) \
               AND (event_commit < $2 OR (event_commit = $2 AND event_position <= $3))"
        );
        let open: i64 = on_sql!(self, |conn| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(handlers)
                .bind(to_i64(until.commit()))
                .bind(to_i64(until.position()))
                .fetch_one(conn)
                .await
                .map_err(fail)
        })?;
        Ok(to_u64(open))
    }

    /// The log position of the last event committed (and visible to this transaction):
    /// unlike [`Store::log_end`](crate::Store::log_end), not held back on PostgreSQL by
    /// transactions still running.
    pub(crate) async fn last_committed_event(&mut self) -> Result<LogPosition> {
        let fail = |error| Error::from_sqlx("last_event", error);
        let sql = if self.is_postgres() {
            "SELECT transaction_id::text::bigint, position FROM events \
             ORDER BY transaction_id DESC, position DESC LIMIT 1"
        } else {
            "SELECT 0, position FROM events ORDER BY position DESC LIMIT 1"
        };
        let row: Option<(i64, i64)> = on_sql!(self, |conn| {
            sqlx::query_as(sql).fetch_optional(conn).await.map_err(fail)
        })?;
        Ok(row.map_or(LogPosition::START, |(commit, position)| {
            LogPosition::new(to_u64(commit), to_u64(position))
        }))
    }

    /// Deletes the done requests last updated before `before`. Returns how many.
    pub(crate) async fn purge_done(&mut self, before: i64) -> Result<u64> {
        let fail = |error| Error::from_sqlx("purge_done", error);
        let sql = format!("DELETE FROM handler_requests WHERE state = {DONE} AND updated_at < $1");
        on_sql!(self, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(before)
                .execute(conn)
                .await
                .map(|done| done.rows_affected())
                .map_err(fail)
        })
    }
}

/// `attempts` as stored, as an attempt number.
pub(crate) fn attempt(stored: i32) -> u32 {
    u32::try_from(stored).unwrap_or(0)
}

/// A stored count as a count.
pub(crate) fn count(stored: i64) -> u64 {
    to_u64(stored)
}
