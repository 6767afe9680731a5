//! The outbox's statements on the SQL backends: [`OutboxTx`] for [`SqlTx`], written once
//! over the dialect, with `$n` placeholders (both sqlx drivers take them) and times as
//! microseconds computed in Rust. The dialect gives the few fragments that differ: JSON
//! lists, SQLite's index hints, and PostgreSQL's claim (`FOR UPDATE SKIP LOCKED`, planner
//! settings) and turn locks. SQLite's write lock serializes claims and turns.

use uuid::Uuid;

use super::dialect::sql_impl;
use super::tx::SqlTx;
use super::{RowRef, to_i64, to_u64};
use crate::error::{Error, Result};
use crate::read::LogPosition;
use crate::store::requests::{
    Claimed, ClaimedRow, DEAD, DONE, DeadRow, DeadTuple, Failed, NewRequest, OutboxTx, PENDING,
    RUNNING, StateCount, TurnKeys,
};

/// Most rows in one INSERT (11 parameters each: 11,000, under both databases' limits).
const INSERT_CHUNK: usize = 1000;

/// `keys` as a JSON array of `[handler, stream]` pairs.
fn keys_json(keys: &TurnKeys<'_>) -> Result<String> {
    let pairs: Vec<[&str; 2]> = keys.iter().map(|(h, s)| [*h, *s]).collect();
    serde_json::to_string(&pairs).map_err(|error| Error::Internal(error.to_string()))
}

sql_impl! {
    impl<D> OutboxTx for SqlTx<D> {
        async fn insert_requests(
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

        async fn lock_turns(&mut self, keys: &TurnKeys<'_>) -> Result<()> {
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

        async fn pass_turns(&mut self, keys: &TurnKeys<'_>) -> Result<()> {
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

        async fn claim_requests(
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

        async fn finish_done(
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

        async fn finish_failed(
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

        async fn request_counts(&mut self) -> Result<Vec<StateCount>> {
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
                    count: to_u64(count),
                    oldest,
                })
                .collect())
        }

        async fn list_requests(&mut self) -> Result<Vec<(String, Uuid)>> {
            sqlx::query_as("SELECT handler, event_id FROM handler_requests ORDER BY id")
                .fetch_all(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("list_requests", error))
        }

        async fn dead_requests(
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

        async fn retry_dead(
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

        async fn register_handlers(
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

        async fn open_requests_until(
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

        async fn last_committed_event(&mut self) -> Result<LogPosition> {
            let row: Option<(i64, i64)> = sqlx::query_as(D::LAST_COMMITTED)
                .fetch_optional(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("last_event", error))?;
            Ok(row.map_or(LogPosition::START, |(commit, position)| {
                LogPosition::new(to_u64(commit), to_u64(position))
            }))
        }

        async fn purge_done(&mut self, before: i64) -> Result<u64> {
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
