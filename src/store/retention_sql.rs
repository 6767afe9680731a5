//! The retention statements of the SQL backends: policies in `retention_policies`, the
//! streams' retention state (version, own policy, newest snapshot), and the removal of
//! expired events. All but the removal are written once over a `Dialect` (methods of
//! `sql::reads::Sql`); the removal is a loop of `DELETE … RETURNING` on SQLite and one
//! statement on PostgreSQL.

use chrono::Utc;

use super::backend::ExpiryCut;
use super::sql::dialect::sql_impl;
#[cfg(feature = "sqlite")]
use super::sql::event_joins::of_stream;
use super::sql::reads::Sql;
use super::sql::{RowRef, to_i64, to_u64};
use crate::error::{Error, Result};
use crate::retention::RetentionScope;
use crate::retention::rules::{
    MAX_LISTED_STREAM_POLICIES, PolicyRows, StoredPolicy, StreamRetention,
};

/// The default and category policies, then up to `$1` ids of streams with their own (the
/// primary key's order: no sort).
const POLICIES: &str = "SELECT kind, name, policy FROM retention_policies WHERE kind < 2 \
     UNION ALL SELECT * FROM ( \
         SELECT kind, name, '' FROM retention_policies WHERE kind = 2 ORDER BY kind, name \
         LIMIT $1) AS s";

/// A page of policies after the key ($1, $2), in key order.
const LIST_POLICIES: &str = "SELECT kind, name, policy FROM retention_policies \
     WHERE kind > $1 OR (kind = $1 AND name > $2) ORDER BY kind, name LIMIT $3";

const POLICY: &str = "SELECT policy FROM retention_policies WHERE kind = $1 AND name = $2";

const DELETE_POLICY: &str = "DELETE FROM retention_policies WHERE kind = $1 AND name = $2";

/// A stream's retention columns, for the streams chosen by the condition that follows.
const STREAM_RETENTION: &str = "SELECT s.stream_id, s.version, p.policy, \
         (SELECT max(n.version) FROM snapshots n WHERE n.stream_id = s.stream_id) \
     FROM streams s \
     LEFT JOIN retention_policies p ON p.kind = 2 AND p.name = s.stream_id \
     WHERE ";

fn fail(operation: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| Error::from_sqlx(operation, error)
}

fn policy_rows(rows: Vec<(i32, String, String)>) -> PolicyRows {
    let mut out = PolicyRows::default();
    for (kind, name, json) in rows {
        if kind == 2 {
            out.streams.push(name);
        } else {
            out.general.push(StoredPolicy {
                scope: RetentionScope::from_key(i64::from(kind), name),
                json,
            });
        }
    }
    out
}

/// The streams' retention rows; a negative stream or snapshot version is an error naming
/// the stream (expiry is judged on them).
fn retention_rows(
    operation: &'static str,
    rows: Vec<(String, i64, Option<String>, Option<i64>)>,
) -> Result<Vec<StreamRetention>> {
    rows.into_iter()
        .map(|(stream, head, own, snapshot)| {
            let head = RowRef::stream(&stream).version(head);
            let snapshot = snapshot
                .map(|version| RowRef::snapshot(&stream, None).version(version))
                .transpose();
            let (head, snapshot) = head
                .and_then(|head| Ok((head, snapshot?)))
                .map_err(fail(operation))?;
            Ok(StreamRetention {
                stream,
                head,
                own,
                snapshot,
            })
        })
        .collect()
}

sql_impl! {
    impl<D> Sql<'_, D> {
        /// The default and category policies, and the ids of streams with their own.
        pub(crate) async fn retention_policies(self) -> Result<PolicyRows> {
            let rows = sqlx::query_as(POLICIES)
                .bind(to_i64(MAX_LISTED_STREAM_POLICIES as u64 + 1))
                .fetch_all(self.0)
                .await
                .map_err(fail("retention_policies"))?;
            Ok(policy_rows(rows))
        }

        /// A page of policies after the key `after`, in key order.
        pub(crate) async fn list_retention(
            self,
            after: Option<(i16, &str)>,
            limit: usize,
        ) -> Result<Vec<StoredPolicy>> {
            let (kind, name) = after.unwrap_or((-1, ""));
            let rows: Vec<(i32, String, String)> = sqlx::query_as(LIST_POLICIES)
                .bind(i32::from(kind))
                .bind(name)
                .bind(to_i64(limit as u64))
                .fetch_all(self.0)
                .await
                .map_err(fail("list_retention"))?;
            Ok(rows
                .into_iter()
                .map(|(kind, name, json)| StoredPolicy {
                    scope: RetentionScope::from_key(i64::from(kind), name),
                    json,
                })
                .collect())
        }

        /// The policy set on `scope`, as stored.
        pub(crate) async fn retention_policy(self, scope: &RetentionScope) -> Result<Option<String>> {
            let (kind, name) = scope.key();
            let row: Option<(String,)> = sqlx::query_as(POLICY)
                .bind(i32::from(kind))
                .bind(name)
                .fetch_optional(self.0)
                .await
                .map_err(fail("retention_policy"))?;
            Ok(row.map(|(json,)| json))
        }

        /// Sets the policy of `scope`, or with `None` removes it.
        pub(crate) async fn set_retention(
            self,
            scope: &RetentionScope,
            json: Option<&str>,
        ) -> Result<()> {
            let (kind, name) = scope.key();
            let result = match json {
                Some(json) => {
                    let sql = format!(
                        "INSERT INTO retention_policies (kind, name, policy, updated_at) \
                         VALUES ($1, $2, $3, {}) \
                         ON CONFLICT (kind, name) DO UPDATE SET policy = excluded.policy, \
                             updated_at = excluded.updated_at",
                        D::now("$4")
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(i32::from(kind))
                        .bind(name)
                        .bind(json)
                        .bind(Utc::now().timestamp_micros())
                        .execute(self.0)
                        .await
                }
                None => {
                    sqlx::query(DELETE_POLICY)
                        .bind(i32::from(kind))
                        .bind(name)
                        .execute(self.0)
                        .await
                }
            };
            result.map_err(fail("set_retention"))?;
            Ok(())
        }

        /// The retention state of `streams`.
        pub(crate) async fn stream_retention(
            self,
            streams: &[&str],
        ) -> Result<Vec<StreamRetention>> {
            let sql = format!("{STREAM_RETENTION}{}", D::in_list("s.stream_id", "$1"));
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(D::list(streams)?)
                .fetch_all(self.0)
                .await
                .map_err(fail("stream_retention"))?;
            retention_rows("stream_retention", rows)
        }

        /// Up to `limit` streams after `after` that a policy may reach: all with `all`,
        /// else those with their own policy or in `categories`. Never a tombstoned one.
        pub(crate) async fn retention_candidates(
            self,
            after: &str,
            limit: usize,
            categories: &[String],
            all: bool,
        ) -> Result<Vec<StreamRetention>> {
            let sql = format!(
                "{STREAM_RETENTION}s.stream_id > $1 AND s.status < 2 \
                     AND ($2 OR p.policy IS NOT NULL OR {}) \
                 ORDER BY s.stream_id LIMIT $4",
                D::in_list("s.category", "$3")
            );
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(after)
                .bind(all)
                .bind(D::list(categories)?)
                .bind(to_i64(limit as u64))
                .fetch_all(self.0)
                .await
                .map_err(fail("retention_candidates"))?;
            retention_rows("retention_candidates", rows)
        }
    }
}

#[cfg(feature = "sqlite")]
pub(super) mod sqlite {
    use sqlx::{Sqlite, SqlitePool};

    use super::*;
    use crate::store::sql::dialect::Dialect;

    /// One `DELETE … RETURNING` per stream, all in one write transaction. An event is
    /// removed for its age only when its time reads (an integer in chrono's range): one
    /// whose age cannot be read stays, and its reads report it.
    pub(crate) async fn remove_expired(
        writer: &SqlitePool,
        cuts: &[ExpiryCut],
    ) -> Result<(u64, u64)> {
        let fail = fail("enforce_retention");
        let mut tx = Sqlite::begin_write(writer).await?;
        let (mut events, mut bytes) = (0, 0);
        let earliest = chrono::DateTime::<Utc>::MIN_UTC.timestamp_micros();
        for cut in cuts {
            let removed: Vec<(i64,)> = sqlx::query_as(concat!(
                "DELETE FROM events WHERE ",
                of_stream!("$1"),
                " AND version <= $2 \
                 AND (version < $3 OR (recorded_at < $4 AND recorded_at >= $5 \
                                       AND typeof(recorded_at) = 'integer')) \
                 RETURNING length(payload)"
            ))
            .bind(&cut.stream)
            .bind(to_i64(cut.up_to))
            .bind(to_i64(cut.below))
            .bind(cut.before.map(|time| time.timestamp_micros()))
            .bind(earliest)
            .fetch_all(&mut *tx)
            .await
            .map_err(&fail)?;
            if removed.is_empty() {
                continue;
            }
            sqlx::query("UPDATE streams SET event_count = event_count - $1 WHERE stream_id = $2")
                .bind(removed.len() as i64)
                .bind(&cut.stream)
                .execute(&mut *tx)
                .await
                .map_err(&fail)?;
            events += removed.len() as u64;
            bytes += removed.iter().map(|(len,)| to_u64(*len)).sum::<u64>();
        }
        tx.commit().await.map_err(&fail)?;
        Ok((events, bytes))
    }
}

#[cfg(feature = "postgres")]
pub(super) mod postgres {
    use sqlx::PgPool;

    use super::*;

    /// One statement for all the cuts: the doomed rows are found stream by stream through
    /// the (stream, version) index (a lateral join, whatever the table's statistics say),
    /// removed by the primary key (transaction, position), and the streams' counts follow. An event is removed for its
    /// age only when its time is finite: `-infinity`, which no reader can date, stays.
    pub(crate) async fn remove_expired(pool: &PgPool, cuts: &[ExpiryCut]) -> Result<(u64, u64)> {
        let streams: Vec<&str> = cuts.iter().map(|cut| cut.stream.as_str()).collect();
        let up_to: Vec<i64> = cuts.iter().map(|cut| to_i64(cut.up_to)).collect();
        let below: Vec<i64> = cuts.iter().map(|cut| to_i64(cut.below)).collect();
        let before: Vec<Option<chrono::DateTime<Utc>>> =
            cuts.iter().map(|cut| cut.before).collect();
        let (events, bytes): (i64, i64) = sqlx::query_as(
            "WITH cut AS ( \
                 SELECT s.stream_key, c.up_to, c.below, c.before \
                 FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[]) \
                     AS c(stream_id, up_to, below, before) \
                 JOIN streams s USING (stream_id)), \
             doomed AS ( \
                 SELECT e.transaction_id, e.position FROM cut CROSS JOIN LATERAL ( \
                     SELECT transaction_id, position FROM events \
                     WHERE events.stream_key = cut.stream_key AND events.version <= cut.up_to \
                       AND (events.version < cut.below \
                            OR (events.recorded_at < cut.before \
                                AND isfinite(events.recorded_at)))) e), \
             removed AS ( \
                 DELETE FROM events WHERE (transaction_id, position) IN \
                     (SELECT transaction_id, position FROM doomed) \
                 RETURNING stream_key, octet_length(payload) AS bytes), \
             per_stream AS ( \
                 SELECT stream_key, count(*) AS n, sum(bytes) AS bytes FROM removed \
                 GROUP BY stream_key), \
             counted AS ( \
                 UPDATE streams s SET event_count = s.event_count - per_stream.n \
                 FROM per_stream WHERE s.stream_key = per_stream.stream_key) \
             SELECT COALESCE(sum(n), 0)::bigint, COALESCE(sum(bytes), 0)::bigint \
             FROM per_stream",
        )
        .bind(streams)
        .bind(up_to)
        .bind(below)
        .bind(before)
        .fetch_one(pool)
        .await
        .map_err(fail("enforce_retention"))?;
        Ok((to_u64(events), to_u64(bytes)))
    }
}
