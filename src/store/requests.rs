//! The outbox's `handler_requests` table on the SQL backends. The statements are written
//! once, as methods of [`SqlTx`] generic over the dialect, with `$n` placeholders (both
//! sqlx drivers take them) and times as microseconds computed here; the dialect gives the
//! few fragments that differ (JSON lists, index hints, the claim's row locks and planner
//! settings, the turn locks). PostgreSQL's claim skips rows other executors hold; SQLite's
//! write lock serializes claims.
//!
//! **Turns.** For a handler ordered per stream, the one request of a (handler, stream)
//! that may run is marked `ready`: the running one, else the open one earliest in the log
//! (every request of a handler not ordered is ready). A claim reads only ready requests,
//! through an index of them, so its cost does not depend on how many requests wait behind
//! a turn. Whatever ends a turn or may take it (a request done or dead, one revived, new
//! requests) calls [`SqlTx::pass_turns`] for its keys in the same transaction; on
//! PostgreSQL [`SqlTx::lock_turns`] serializes those transactions per key first (an
//! advisory lock), so none decides from a state another is changing. SQLite's write lock
//! does that already.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::sql::dialect::sql_impl;
use super::sql::tx::SqlTx;
use super::sql::{RowRef, to_i64, to_u64};
use crate::error::{Error, Result};
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

/// A request an executor claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub token: String,
}

/// A claimed request as the claim returns it: id, handler, event id, stream, attempts,
/// errors, priority, event position, ordered.
type ClaimedRow = (i64, String, Uuid, String, i32, i32, i32, i64, bool);

impl Claimed {
    fn from_row(row: ClaimedRow, token: &str) -> Self {
        let (id, handler, event_id, stream_id, attempts, errors, priority, event_position, ordered) =
            row;
        Claimed {
            id,
            handler,
            event_id,
            stream_id,
            attempts,
            errors,
            priority,
            event_position,
            ordered,
            token: token.to_owned(),
        }
    }
}

/// A failed execution, as recorded: dead, or due again at `due_at` (microseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failed<'a> {
    pub error: &'a str,
    pub dead: bool,
    pub due_at: i64,
}

/// A count of one handler's requests in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadRow {
    pub id: i64,
    pub handler: String,
    pub event_id: Uuid,
    pub stream_id: String,
    pub errors: i32,
    pub last_error: Option<String>,
    pub updated_at: i64,
}

/// A dead request as stored, in [`DeadRow`]'s order.
type DeadTuple = (i64, String, Uuid, String, i32, Option<String>, i64);

impl From<DeadTuple> for DeadRow {
    fn from(row: DeadTuple) -> Self {
        let (id, handler, event_id, stream_id, errors, last_error, updated_at) = row;
        DeadRow {
            id,
            handler,
            event_id,
            stream_id,
            errors,
            last_error,
            updated_at,
        }
    }
}

/// `keys` as a JSON array of `[handler, stream]` pairs.
fn keys_json(keys: &TurnKeys<'_>) -> Result<String> {
    let pairs: Vec<[&str; 2]> = keys.iter().map(|(h, s)| [*h, *s]).collect();
    serde_json::to_string(&pairs).map_err(|error| Error::Internal(error.to_string()))
}

sql_impl! {
    impl<D> SqlTx<D> {
        /// Creates `requests` (due at `now`), skipping any already there, and gives the turn
        /// of each stream of an ordered handler that had no open request to its first new
        /// one.
        pub(crate) async fn insert_requests(
            &mut self,
            requests: &[NewRequest<'_>],
            now: i64,
        ) -> Result<u64> {
            let fail = |error| Error::from_sqlx("create_requests", error);
            let mut created = 0;
            for chunk in requests.chunks(INSERT_CHUNK) {
                let mut insert = sqlx::QueryBuilder::<D>::new(
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
                let done = insert.build().execute(&mut *self.0).await.map_err(fail)?;
                created += D::rows_affected(&done);
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
            if keys.is_empty() {
                return Ok(());
            }
            if let Some(sql) = D::lock_turns(&D::json_pairs("$1")) {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(keys_json(keys)?)
                    .execute(&mut *self.0)
                    .await
                    .map_err(|error| Error::from_sqlx("lock_turns", error))?;
            }
            Ok(())
        }

        /// Gives each of `keys` (locked with `lock_turns`) its right turn: a pending request
        /// that holds it gives it up to an earlier open one (revived from dead), and a key
        /// with no turn gives it to its earliest open request.
        pub(crate) async fn pass_turns(&mut self, keys: &TurnKeys<'_>) -> Result<()> {
            if keys.is_empty() {
                return Ok(());
            }
            let fail = |error| Error::from_sqlx("pass_turns", error);
            let list = D::json_pairs("$1");
            let (turn, stream) = (
                D::indexed_by("handler_requests_turn"),
                D::indexed_by("handler_requests_stream"),
            );
            // The conditions `state < 2 AND ordered` (and `ready = 1`) name the partial
            // indexes: SQLite uses a partial index only for a query that states its
            // condition. One correlated lookup per key (a nested loop through the indexes
            // on both databases, whatever they guess of the list's length).
            let give_up = format!(
                "UPDATE handler_requests SET ready = 0 WHERE state = {PENDING} AND {}",
                D::id_in(&format!(
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
                ))
            );
            let take = format!(
                "UPDATE handler_requests SET ready = 1 WHERE state < {DONE} AND {}",
                D::id_in(&format!(
                    "SELECT (SELECT e.id FROM handler_requests AS e {stream} \
                         WHERE e.handler = k.handler AND e.stream_id = k.stream_id \
                           AND e.state < {DONE} AND e.ordered AND NOT EXISTS ( \
                               SELECT 1 FROM handler_requests AS t {turn} \
                               WHERE t.handler = k.handler AND t.stream_id = k.stream_id \
                                 AND t.state < {DONE} AND t.ready = 1 AND t.ordered) \
                         ORDER BY e.event_position LIMIT 1) \
                     FROM ({list}) AS k"
                ))
            );
            let keys = keys_json(keys)?;
            for sql in [give_up, take] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(keys.as_str())
                    .execute(&mut *self.0)
                    .await
                    .map_err(fail)?;
            }
            Ok(())
        }

        /// Claims up to `limit` due requests of `handlers` (their names as a JSON array)
        /// under `token` until `lease_until`: pending ones whose time has come and running
        /// ones whose lease ran out, by priority then log order. Only ready ones: for a
        /// handler ordered per stream, the one whose turn it is (never a request behind an
        /// open one of its stream, nor beside a running one). The claim walks the index of
        /// ready requests, so the requests waiting for their turn cost it nothing.
        pub(crate) async fn claim_requests(
            &mut self,
            handlers: &str,
            token: &str,
            now: i64,
            lease_until: i64,
            limit: usize,
        ) -> Result<Vec<Claimed>> {
            let fail = |error| Error::from_sqlx("claim_requests", error);
            if let Some(settings) = D::BEFORE_CLAIM {
                sqlx::query(settings)
                    .execute(&mut *self.0)
                    .await
                    .map_err(fail)?;
            }
            let sql = format!(
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
                     event_position, ordered",
                index = D::indexed_by("handler_requests_ready"),
                handlers = D::json_elements("$5", "text"),
                lock = D::SKIP_LOCKED,
            );
            let rows: Vec<ClaimedRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(lease_until)
                .bind(token)
                .bind(now)
                .bind(to_i64(limit as u64))
                .bind(handlers)
                .fetch_all(&mut *self.0)
                .await
                .map_err(fail)?;
            let mut claimed: Vec<Claimed> = rows
                .into_iter()
                .map(|row| Claimed::from_row(row, token))
                .collect();
            claimed.sort_by_key(|request| (request.priority, request.event_position));
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
            let sql = format!(
                "UPDATE handler_requests SET state = {DONE}, due_at = $1, locked_until = NULL, \
                     locked_by = NULL, updated_at = $1 \
                 WHERE id IN ({}) AND state = {RUNNING} AND locked_by = $3 \
                 RETURNING id",
                D::json_elements("$2", "bigint")
            );
            let ids = serde_json::to_string(ids).unwrap_or_default();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(ids.as_str())
                .bind(token)
                .fetch_all(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("finish_request", error))
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
            let state = if failed.dead { DEAD } else { PENDING };
            let sql = format!(
                "UPDATE handler_requests SET state = $1, errors = errors + 1, last_error = $2, \
                     due_at = $3, locked_until = NULL, locked_by = NULL, updated_at = $4 \
                 WHERE id = $5 AND state = {RUNNING} AND locked_by = $6"
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(state)
                .bind(failed.error)
                .bind(failed.due_at)
                .bind(now)
                .bind(id)
                .bind(token)
                .execute(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("finish_request", error))?;
            Ok(D::rows_affected(&done) == 1)
        }

        /// Requests per handler and state.
        pub(crate) async fn request_counts(&mut self) -> Result<Vec<StateCount>> {
            let rows: Vec<(String, i16, bool, i64, i64)> = sqlx::query_as(
                "SELECT handler, state, errors > 0 AS failed, count(*) AS count, \
                        min(created_at) AS oldest \
                 FROM handler_requests GROUP BY handler, state, errors > 0",
            )
            .fetch_all(&mut *self.0)
            .await
            .map_err(|error| Error::from_sqlx("outbox_stats", error))?;
            Ok(rows
                .into_iter()
                .map(|(handler, state, failed, count, oldest)| StateCount {
                    handler,
                    state,
                    failed,
                    count,
                    oldest,
                })
                .collect())
        }

        /// Every request's handler and event, in the order they were created (for the test
        /// fixture [`OutboxTest`](crate::testing::OutboxTest)).
        pub(crate) async fn list_requests(&mut self) -> Result<Vec<(String, Uuid)>> {
            sqlx::query_as("SELECT handler, event_id FROM handler_requests ORDER BY id")
                .fetch_all(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("list_requests", error))
        }

        /// Dead requests, of `handler` when given, oldest first.
        pub(crate) async fn dead_requests(
            &mut self,
            handler: Option<&str>,
            limit: usize,
        ) -> Result<Vec<DeadRow>> {
            let sql = format!(
                "SELECT id, handler, event_id, stream_id, errors, last_error, updated_at \
                 FROM handler_requests WHERE state = {DEAD} AND ($1 IS NULL OR handler = $1) \
                 ORDER BY id LIMIT $2"
            );
            let rows: Vec<DeadTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(handler)
                .bind(to_i64(limit as u64))
                .fetch_all(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("dead_requests", error))?;
            Ok(rows.into_iter().map(DeadRow::from).collect())
        }

        /// Makes dead requests pending again, with no errors, due at `now`: the one with
        /// `id`, or every one of `handler`. Returns how many. A revived request of an ordered
        /// handler takes its stream's turn when no request of the stream runs and it is the
        /// earliest open one; else it waits for the turn.
        pub(crate) async fn retry_dead(
            &mut self,
            id: Option<i64>,
            handler: Option<&str>,
            now: i64,
        ) -> Result<u64> {
            let sql = format!(
                "UPDATE handler_requests SET state = {PENDING}, errors = 0, due_at = $1, \
                     updated_at = $1, ready = CASE WHEN ordered THEN 0 ELSE 1 END \
                 WHERE state = {DEAD} AND ($2 IS NULL OR id = $2) \
                   AND ($3 IS NULL OR handler = $3) \
                 RETURNING handler, stream_id, ordered"
            );
            let revived: Vec<(String, String, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(id)
                .bind(handler)
                .fetch_all(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("retry_dead", error))?;
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
        /// already, and returns the starts recorded for the outbox (of its handlers past
        /// and present). An outbox that has a checkpoint but no recorded starts ran before
        /// starts were recorded (an upgrade): its handlers start at the beginning, whatever
        /// they ask, so that none loses the events the processor has still to read.
        pub(crate) async fn register_handlers(
            &mut self,
            outbox: &str,
            handlers: &[(&str, LogPosition)],
            now: i64,
        ) -> Result<Vec<(String, LogPosition)>> {
            let fail = |error| Error::from_sqlx("register_handlers", error);
            let upgraded: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM projection_checkpoints WHERE name = $1) \
                    AND NOT EXISTS (SELECT 1 FROM outbox_handlers WHERE outbox = $1)",
            )
            .bind(outbox)
            .fetch_one(&mut *self.0)
            .await
            .map_err(fail)?;
            for (handler, start) in handlers {
                let start = if upgraded { LogPosition::START } else { *start };
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
                .execute(&mut *self.0)
                .await
                .map_err(fail)?;
            }
            let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                "SELECT handler, start_commit, start_position FROM outbox_handlers \
                 WHERE outbox = $1",
            )
            .bind(outbox)
            .fetch_all(&mut *self.0)
            .await
            .map_err(fail)?;
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
            let sql = format!(
                "SELECT count(*) FROM handler_requests \
                 WHERE state < {DONE} AND handler IN ({}) \
                   AND (event_commit < $2 OR (event_commit = $2 AND event_position <= $3))",
                D::json_elements("$1", "text")
            );
            let open: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(handlers)
                .bind(to_i64(until.commit()))
                .bind(to_i64(until.position()))
                .fetch_one(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("open_requests", error))?;
            Ok(to_u64(open))
        }

        /// The log position of the last event committed (and visible to this transaction):
        /// unlike [`Store::log_end`](crate::Store::log_end), not held back on PostgreSQL by
        /// transactions still running.
        pub(crate) async fn last_committed_event(&mut self) -> Result<LogPosition> {
            let row: Option<(i64, i64)> = sqlx::query_as(D::LAST_COMMITTED)
                .fetch_optional(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("last_event", error))?;
            Ok(row.map_or(LogPosition::START, |(commit, position)| {
                LogPosition::new(to_u64(commit), to_u64(position))
            }))
        }

        /// Deletes the done requests last updated before `before`. Returns how many.
        pub(crate) async fn purge_done(&mut self, before: i64) -> Result<u64> {
            let sql =
                format!("DELETE FROM handler_requests WHERE state = {DONE} AND updated_at < $1");
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(before)
                .execute(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("purge_done", error))?;
            Ok(D::rows_affected(&done))
        }
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
