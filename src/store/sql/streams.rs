//! A stream's rows in a SQL write transaction: [`StreamTx`] for `SqlTx<D>`, written once
//! over the dialect. What differs is only the lock ([`Dialect::LOCK_STREAM`] and
//! [`Dialect::FOR_UPDATE`]), how JSON is bound ([`Dialect::JSON_PARAM`]) and "now".

use async_trait::async_trait;
use chrono::Utc;

use super::dialect::sql_impl;
use super::event_joins::of_stream;
use super::tx::SqlTx;
use super::{RowRef, to_i64};
use crate::error::{Error, Result};
use crate::store::stream_rows::SnapshotWrite;
use crate::store::stream_rows::{LockedStream, SnapshotCut, StreamTx, StreamWrite};
use crate::stream::{StreamId, StreamStatus};

fn fail(operation: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| Error::from_sqlx(operation, error)
}

/// The condition and the bound version of a [`SnapshotCut`], after `stream_id = $1`.
fn snapshot_cut(cut: SnapshotCut) -> (&'static str, Option<i64>) {
    match cut {
        SnapshotCut::All => ("", None),
        SnapshotCut::At(version) => (" AND version = $2", Some(to_i64(version))),
        SnapshotCut::AtOrBelow(version) => (" AND version <= $2", Some(to_i64(version))),
    }
}

sql_impl! {
    #[async_trait]
    impl<D> StreamTx for SqlTx<D> {
        async fn lock_stream(&mut self, stream: &StreamId) -> Result<Option<LockedStream>> {
            let fail = fail("lock_stream");
            if let Some(lock) = D::LOCK_STREAM {
                sqlx::query(lock)
                    .bind(stream.as_str())
                    .execute(&mut *self.0)
                    .await
                    .map_err(&fail)?;
            }
            let sql = format!(
                "SELECT version, status FROM streams WHERE stream_id = $1{}",
                D::FOR_UPDATE
            );
            let row: Option<(i64, i16)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(stream.as_str())
                .fetch_optional(&mut *self.0)
                .await
                .map_err(&fail)?;
            let Some((version, status)) = row else {
                return Ok(None);
            };
            let at = RowRef::stream(stream.as_str());
            Ok(Some(LockedStream {
                version: at.version(version).map_err(&fail)?,
                status: at.status(i64::from(status)).map_err(&fail)?,
            }))
        }

        async fn write_stream(&mut self, stream: &StreamId, write: StreamWrite<'_>) -> Result<()> {
            let now = Utc::now().timestamp_micros();
            let status = StreamStatus::after(write).to_code();
            let query = match write {
                StreamWrite::Insert(spec) => {
                    let sql = format!(
                        "INSERT INTO streams (stream_id, category, aggregate_type, display_name, \
                         metadata, status, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5{json}, $6, {now}, {now})",
                        json = D::JSON_PARAM,
                        now = D::now("$7"),
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(stream.as_str())
                        .bind(stream.category())
                        .bind(spec.aggregate_type.as_deref())
                        .bind(spec.display_name.as_deref())
                        .bind(spec.stored_metadata())
                }
                StreamWrite::Reactivate(spec) => {
                    let sql = format!(
                        "UPDATE streams SET aggregate_type = $2, display_name = $3, \
                         metadata = $4{json}, status = $5, created_at = {now}, \
                         updated_at = {now} WHERE stream_id = $1",
                        json = D::JSON_PARAM,
                        now = D::now("$6"),
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(stream.as_str())
                        .bind(spec.aggregate_type.as_deref())
                        .bind(spec.display_name.as_deref())
                        .bind(spec.stored_metadata())
                }
                StreamWrite::SoftDelete => {
                    let sql = format!(
                        "UPDATE streams SET status = $2, updated_at = {} WHERE stream_id = $1",
                        D::now("$3")
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(stream.as_str())
                }
                StreamWrite::Tombstone => {
                    let sql = format!(
                        "UPDATE streams SET status = $2, event_count = 0, updated_at = {} \
                         WHERE stream_id = $1",
                        D::now("$3")
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(stream.as_str())
                }
            };
            query
                .bind(status)
                .bind(now)
                .execute(&mut *self.0)
                .await
                .map_err(fail("write_stream"))?;
            Ok(())
        }

        async fn remove_events(&mut self, stream: &StreamId) -> Result<u64> {
            let done = sqlx::query(concat!("DELETE FROM events WHERE ", of_stream!("$1")))
                .bind(stream.as_str())
                .execute(&mut *self.0)
                .await
                .map_err(fail("remove_events"))?;
            Ok(D::rows_affected(&done))
        }

        async fn put_snapshot(
            &mut self,
            stream: &StreamId,
            snapshot: SnapshotWrite<'_>,
        ) -> Result<()> {
            let sql = format!(
                "INSERT INTO snapshots (stream_id, version, schema_version, payload, created_at) \
                 VALUES ($1, $2, $3, $4, {}) \
                 ON CONFLICT (stream_id, version) DO UPDATE SET \
                     schema_version = excluded.schema_version, payload = excluded.payload, \
                     created_at = excluded.created_at",
                D::now("$5")
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(stream.as_str())
                .bind(to_i64(snapshot.version))
                .bind(i64::from(snapshot.schema_version))
                .bind(snapshot.payload)
                .bind(Utc::now().timestamp_micros())
                .execute(&mut *self.0)
                .await
                .map_err(fail("save_snapshot"))?;
            Ok(())
        }

        async fn snapshot_versions(&mut self, stream: &StreamId, newest: usize) -> Result<Vec<u64>> {
            let fail = fail("snapshot_versions");
            let versions: Vec<i64> = sqlx::query_scalar(
                "SELECT version FROM snapshots WHERE stream_id = $1 \
                 ORDER BY version DESC LIMIT $2",
            )
            .bind(stream.as_str())
            .bind(to_i64(newest as u64))
            .fetch_all(&mut *self.0)
            .await
            .map_err(&fail)?;
            let at = RowRef::snapshot(stream.as_str(), None);
            versions
                .into_iter()
                .map(|version| at.version(version).map_err(&fail))
                .collect()
        }

        async fn delete_snapshots(&mut self, stream: &StreamId, cut: SnapshotCut) -> Result<u64> {
            let (condition, version) = snapshot_cut(cut);
            let sql = format!("DELETE FROM snapshots WHERE stream_id = $1{condition}");
            let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(stream.as_str());
            let query = match version {
                Some(version) => query.bind(version),
                None => query,
            };
            let done = query
                .execute(&mut *self.0)
                .await
                .map_err(fail("delete_snapshots"))?;
            Ok(D::rows_affected(&done))
        }

        async fn insert_key(
            &mut self,
            stream: &StreamId,
            key_id: &str,
            wrapped: &[u8],
        ) -> Result<()> {
            let sql = format!(
                "INSERT INTO stream_keys (stream_id, created_at, key_id, wrapped) \
                 VALUES ($1, {}, $3, $4) ON CONFLICT (stream_id) DO NOTHING",
                D::now("$2")
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(stream.as_str())
                .bind(Utc::now().timestamp_micros())
                .bind(key_id)
                .bind(wrapped)
                .execute(&mut *self.0)
                .await
                .map_err(fail("stream_key"))?;
            Ok(())
        }

        async fn delete_key(&mut self, stream: &StreamId) -> Result<()> {
            sqlx::query("DELETE FROM stream_keys WHERE stream_id = $1")
                .bind(stream.as_str())
                .execute(&mut *self.0)
                .await
                .map_err(fail("delete_stream"))?;
            Ok(())
        }
    }
}
