//! The `stream_keys` statements of the SQL backends (per-stream data keys, forgetting,
//! rotation) and the payload swaps of re-encryption, written once over a `Dialect`, as
//! methods of `sql::reads::Sql`.

use chrono::{DateTime, Utc};

use super::backend::StoredSnapshot;
use super::key_cache::StoredKey;
use super::sql::dialect::sql_impl;
use super::sql::event_joins::of_stream;
use super::sql::reads::Sql;
use super::sql::{RowRef, to_i64};
use crate::error::{CorruptValue, Error, Result};
use crate::stream::StreamId;

const KEY_COLUMNS: &str = "SELECT stream_id, key_id, wrapped FROM stream_keys";

const KEYS_TO_REWRAP: &str = "SELECT stream_id, key_id, wrapped FROM stream_keys \
     WHERE key_id IS NOT NULL AND wrapped IS NOT NULL AND key_id <> $1 LIMIT $2";

const REWRAP: &str = "UPDATE stream_keys SET key_id = $1, wrapped = $2 \
     WHERE stream_id = $3 AND key_id = $4 AND wrapped = $5";

const REPLACE_PAYLOAD: &str = concat!(
    "UPDATE events SET payload = $1 WHERE ",
    of_stream!("$2"),
    " AND version = $3 AND payload = $4"
);

const SNAPSHOTS_AFTER: &str = "SELECT stream_id, version, schema_version, payload, created_at \
     FROM snapshots WHERE stream_id > $1 OR (stream_id = $1 AND version > $2) \
     ORDER BY stream_id, version LIMIT $3";

const REPLACE_SNAPSHOT: &str = "UPDATE snapshots SET payload = $1 \
     WHERE stream_id = $2 AND version = $3 AND payload = $4";

type KeyRow = (String, Option<String>, Option<Vec<u8>>);

/// A snapshot row: stream, version, schema version, payload, creation time (`T`: the
/// backend's time column).
type SnapshotRow<T> = (String, i64, i64, Vec<u8>, T);

fn fail(operation: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| Error::from_sqlx(operation, error)
}

fn key(row: KeyRow) -> StoredKey {
    StoredKey {
        stream: row.0,
        key_id: row.1,
        wrapped: row.2,
    }
}

/// A snapshot row, its stored integers and time checked (a corrupt one is an error naming
/// the row).
fn snapshot_row<T>(
    row: SnapshotRow<T>,
    time: impl Fn(T) -> std::result::Result<DateTime<Utc>, String>,
) -> Result<(StreamId, StoredSnapshot)> {
    let (stream, version, schema_version, payload, created_at) = row;
    let checked = || {
        let at = RowRef::snapshot(&stream, None);
        let version = at.version(version)?;
        let at = at.at_version(version);
        Ok(StoredSnapshot {
            version,
            schema_version: at.schema_version(schema_version)?,
            payload,
            created_at: time(created_at)
                .map_err(|stored| at.corrupt("created_at", CorruptValue::Time(stored)))?,
        })
    };
    let snapshot = checked().map_err(fail("reencrypt"))?;
    Ok((StreamId::trusted(stream), snapshot))
}

/// Runs `sql` once per item of `items` in transaction `tx`, with what `bind` binds of
/// the item; the rows it changed, added up.
macro_rules! each_in {
    ($tx:expr, $items:expr, $sql:expr, |$item:pat_param| $($bind:expr),+ $(,)?) => {{
        let fail = fail("swap");
        let mut done = 0;
        for $item in $items {
            done += D::rows_affected(
                &sqlx::query($sql)
                    $(.bind($bind))+
                    .execute(&mut *$tx)
                    .await
                    .map_err(&fail)?,
            );
        }
        done
    }};
}

sql_impl! {
    impl<D> Sql<'_, D> {
        /// The stored keys of `streams`.
        pub(crate) async fn stream_keys(self, streams: &[&str]) -> Result<Vec<StoredKey>> {
            let sql = format!("{KEY_COLUMNS} WHERE {}", D::in_list("stream_id", "$1"));
            let rows: Vec<KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(D::list(streams)?)
                .fetch_all(self.0)
                .await
                .map_err(fail("stream_key"))?;
            Ok(rows.into_iter().map(key).collect())
        }

        /// Clears the key material and keeps the row, marked forgotten.
        pub(crate) async fn forget_stream_key(self, stream: &str) -> Result<()> {
            let sql = format!(
                "INSERT INTO stream_keys (stream_id, created_at, forgotten_at) \
                 VALUES ($1, {now}, {now}) \
                 ON CONFLICT (stream_id) DO UPDATE SET key_id = NULL, wrapped = NULL, \
                     forgotten_at = COALESCE(stream_keys.forgotten_at, excluded.forgotten_at)",
                now = D::now("$2")
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(stream)
                .bind(Utc::now().timestamp_micros())
                .execute(self.0)
                .await
                .map_err(fail("forget"))?;
            Ok(())
        }

        /// Up to `limit` keys wrapped by another key than `active`.
        pub(crate) async fn keys_to_rewrap(
            self,
            active: &str,
            limit: usize,
        ) -> Result<Vec<StoredKey>> {
            let rows: Vec<KeyRow> = sqlx::query_as(KEYS_TO_REWRAP)
                .bind(active)
                .bind(to_i64(limit as u64))
                .fetch_all(self.0)
                .await
                .map_err(fail("rotate_keys"))?;
            Ok(rows.into_iter().map(key).collect())
        }

        /// Replaces each old key by its new one, where the row still holds the old one.
        pub(crate) async fn rewrap_stream_keys(self, keys: &[(StoredKey, StoredKey)]) -> Result<u64> {
            let mut tx = D::begin_write(self.0).await?;
            let done = each_in!(tx, keys, REWRAP, |(old, new)| &new.key_id, &new.wrapped, &old.stream, &old.key_id, &old.wrapped);
            tx.commit().await.map_err(fail("rotate_keys"))?;
            Ok(done)
        }

        /// Replaces each event's payload, where it still holds the old one.
        pub(crate) async fn replace_payloads(
            self,
            payloads: &[(String, u64, Vec<u8>, Vec<u8>)],
        ) -> Result<u64> {
            let mut tx = D::begin_write(self.0).await?;
            let done = each_in!(tx, payloads, REPLACE_PAYLOAD, |(stream, version, old, new)| new, stream.as_str(), to_i64(*version), old);
            tx.commit().await.map_err(fail("reencrypt"))?;
            Ok(done)
        }

        /// Up to `limit` snapshots after (stream, version) `after`, in that order.
        pub(crate) async fn snapshots_after(
            self,
            after: (&str, u64),
            limit: usize,
        ) -> Result<Vec<(StreamId, StoredSnapshot)>> {
            let rows: Vec<SnapshotRow<D::StoredTime>> = sqlx::query_as(SNAPSHOTS_AFTER)
                .bind(after.0)
                .bind(to_i64(after.1))
                .bind(to_i64(limit as u64))
                .fetch_all(self.0)
                .await
                .map_err(fail("reencrypt"))?;
            rows.into_iter()
                .map(|row| snapshot_row(row, D::stored_time))
                .collect()
        }

        /// Replaces each snapshot's payload, where it still holds the old one.
        pub(crate) async fn replace_snapshot_payloads(
            self,
            payloads: &[(String, u64, Vec<u8>, Vec<u8>)],
        ) -> Result<u64> {
            let mut tx = D::begin_write(self.0).await?;
            let done = each_in!(tx, payloads, REPLACE_SNAPSHOT, |(stream, version, old, new)| new, stream, to_i64(*version), old);
            tx.commit().await.map_err(fail("reencrypt"))?;
            Ok(done)
        }
    }
}
