//! The `stream_keys` statements of the SQL backends (per-stream data keys, forgetting,
//! rotation) and the payload swap of re-encryption. Most are the same text on both
//! databases (`$n` placeholders); lists travel as arrays on PostgreSQL and as JSON on
//! SQLite, and times are `now()` on one and microseconds on the other.

use chrono::Utc;
use sqlx::{PgPool, SqlitePool};

use super::backend::StoredSnapshot;
use super::sql::{to_i64, to_u32, to_u64};
use super::stream_keys::StoredKey;
use crate::error::{Error, Result};
use crate::stream::StreamId;

/// A new key, unless the stream has one (or was forgotten) or is tombstoned (a hard
/// delete took its key, and it takes no writes). `$created` is the creation time.
macro_rules! insert_key_sql {
    ($created:literal) => {
        concat!(
            "INSERT INTO stream_keys (stream_id, key_id, wrapped, created_at) \
             SELECT $1, $2, $3, ",
            $created,
            " WHERE NOT EXISTS (SELECT 1 FROM streams WHERE stream_id = $1 AND status = 2) \
             ON CONFLICT (stream_id) DO NOTHING"
        )
    };
}

const KEY: &str = "SELECT stream_id, key_id, wrapped FROM stream_keys WHERE stream_id = $1";

const KEYS_TO_REWRAP: &str = "SELECT stream_id, key_id, wrapped FROM stream_keys \
     WHERE key_id IS NOT NULL AND wrapped IS NOT NULL AND key_id <> $1 LIMIT $2";

const REWRAP: &str = "UPDATE stream_keys SET key_id = $1, wrapped = $2 \
     WHERE stream_id = $3 AND key_id = $4 AND wrapped = $5";

const REPLACE_PAYLOAD: &str = "UPDATE events SET payload = $1 WHERE position = $2 AND payload = $3";

const SNAPSHOTS_AFTER: &str = "SELECT stream_id, version, schema_version, payload, created_at \
     FROM snapshots WHERE stream_id > $1 OR (stream_id = $1 AND version > $2) \
     ORDER BY stream_id, version LIMIT $3";

const REPLACE_SNAPSHOT: &str = "UPDATE snapshots SET payload = $1 \
     WHERE stream_id = $2 AND version = $3 AND payload = $4";

const FORGOTTEN: &str = "key_id = NULL, wrapped = NULL";

type KeyRow = (String, Option<String>, Option<Vec<u8>>);

/// A snapshot row: stream, version, schema version, payload, creation time (`T`: the
/// backend's time column).
type SnapshotRow<T> = (String, i64, i64, Vec<u8>, T);

fn fail(operation: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| Error::from_sqlx(operation, error)
}

fn snapshot_row(
    stream: String,
    version: i64,
    schema_version: i64,
    payload: Vec<u8>,
    created_at: chrono::DateTime<Utc>,
) -> (StreamId, StoredSnapshot) {
    let snapshot = StoredSnapshot {
        version: to_u64(version),
        schema_version: to_u32(schema_version),
        payload,
        created_at,
    };
    (StreamId::trusted(stream), snapshot)
}

fn key(row: KeyRow) -> StoredKey {
    StoredKey {
        stream: row.0,
        key_id: row.1,
        wrapped: row.2,
    }
}

/// Runs `$sql` once per item in transaction `$tx`, binding what `$binds` take from the
/// item; the rows it changed, added up.
macro_rules! each_in {
    ($tx:expr, $items:expr, $sql:expr, |$item:pat_param| $($bind:expr),+ $(,)?) => {{
        let fail = fail("swap");
        let mut done = 0;
        for $item in $items {
            done += sqlx::query($sql)
                $(.bind($bind))+
                .execute(&mut *$tx)
                .await
                .map_err(&fail)?
                .rows_affected();
        }
        done
    }};
}

pub(super) mod sqlite {
    use super::*;

    pub(crate) async fn stream_keys(
        reader: &SqlitePool,
        streams: &[&str],
    ) -> Result<Vec<StoredKey>> {
        let list = serde_json::to_string(streams)
            .map_err(|error| Error::Internal(format!("stream list: {error}")))?;
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT stream_id, key_id, wrapped FROM stream_keys \
             WHERE stream_id IN (SELECT value FROM json_each($1))",
        )
        .bind(list)
        .fetch_all(reader)
        .await
        .map_err(fail("stream_key"))?;
        Ok(rows.into_iter().map(key).collect())
    }

    pub(crate) async fn insert_stream_key(
        writer: &SqlitePool,
        stream: &str,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<Option<StoredKey>> {
        sqlx::query(insert_key_sql!("$4"))
            .bind(stream)
            .bind(key_id)
            .bind(wrapped)
            .bind(Utc::now().timestamp_micros())
            .execute(writer)
            .await
            .map_err(fail("stream_key"))?;
        let row: Option<KeyRow> = sqlx::query_as(KEY)
            .bind(stream)
            .fetch_optional(writer)
            .await
            .map_err(fail("stream_key"))?;
        Ok(row.map(key))
    }

    pub(crate) async fn forget(writer: &SqlitePool, stream: &str) -> Result<()> {
        let now = Utc::now().timestamp_micros();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO stream_keys (stream_id, created_at, forgotten_at) VALUES ($1, $2, $2) \
             ON CONFLICT (stream_id) DO UPDATE SET {FORGOTTEN}, \
                 forgotten_at = COALESCE(stream_keys.forgotten_at, excluded.forgotten_at)"
        )))
        .bind(stream)
        .bind(now)
        .execute(writer)
        .await
        .map_err(fail("forget"))?;
        Ok(())
    }

    pub(crate) async fn keys_to_rewrap(
        reader: &SqlitePool,
        active: &str,
        limit: usize,
    ) -> Result<Vec<StoredKey>> {
        let rows: Vec<KeyRow> = sqlx::query_as(KEYS_TO_REWRAP)
            .bind(active)
            .bind(to_i64(limit as u64))
            .fetch_all(reader)
            .await
            .map_err(fail("rotate_keys"))?;
        Ok(rows.into_iter().map(key).collect())
    }

    pub(crate) async fn rewrap(
        writer: &SqlitePool,
        keys: &[(StoredKey, StoredKey)],
    ) -> Result<u64> {
        let fail = fail("rotate_keys");
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(&fail)?;
        let done = each_in!(
            tx,
            keys,
            REWRAP,
            |(old, new)| &new.key_id,
            &new.wrapped,
            &old.stream,
            &old.key_id,
            &old.wrapped
        );
        tx.commit().await.map_err(&fail)?;
        Ok(done)
    }

    pub(crate) async fn replace_payloads(
        writer: &SqlitePool,
        payloads: &[(u64, Vec<u8>, Vec<u8>)],
    ) -> Result<u64> {
        let fail = fail("reencrypt");
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(&fail)?;
        let done = each_in!(
            tx,
            payloads,
            REPLACE_PAYLOAD,
            |(position, old, new)| new,
            to_i64(*position),
            old
        );
        tx.commit().await.map_err(&fail)?;
        Ok(done)
    }

    pub(crate) async fn snapshots_after(
        reader: &SqlitePool,
        after: (&str, u64),
        limit: usize,
    ) -> Result<Vec<(StreamId, StoredSnapshot)>> {
        let rows: Vec<SnapshotRow<i64>> = sqlx::query_as(SNAPSHOTS_AFTER)
            .bind(after.0)
            .bind(to_i64(after.1))
            .bind(to_i64(limit as u64))
            .fetch_all(reader)
            .await
            .map_err(fail("reencrypt"))?;
        Ok(rows
            .into_iter()
            .map(|(stream, version, schema, payload, created)| {
                let created_at =
                    chrono::DateTime::from_timestamp_micros(created).unwrap_or_default();
                snapshot_row(stream, version, schema, payload, created_at)
            })
            .collect())
    }

    pub(crate) async fn replace_snapshot_payloads(
        writer: &SqlitePool,
        payloads: &[(String, u64, Vec<u8>, Vec<u8>)],
    ) -> Result<u64> {
        let fail = fail("reencrypt");
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(&fail)?;
        let done = each_in!(
            tx,
            payloads,
            REPLACE_SNAPSHOT,
            |(stream, version, old, new)| new,
            stream,
            to_i64(*version),
            old
        );
        tx.commit().await.map_err(&fail)?;
        Ok(done)
    }
}

pub(super) mod postgres {
    use super::*;

    pub(crate) async fn stream_keys(pool: &PgPool, streams: &[&str]) -> Result<Vec<StoredKey>> {
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT stream_id, key_id, wrapped FROM stream_keys WHERE stream_id = ANY($1)",
        )
        .bind(streams)
        .fetch_all(pool)
        .await
        .map_err(fail("stream_key"))?;
        Ok(rows.into_iter().map(key).collect())
    }

    pub(crate) async fn insert_stream_key(
        pool: &PgPool,
        stream: &str,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<Option<StoredKey>> {
        sqlx::query(insert_key_sql!("now()"))
            .bind(stream)
            .bind(key_id)
            .bind(wrapped)
            .execute(pool)
            .await
            .map_err(fail("stream_key"))?;
        let row: Option<KeyRow> = sqlx::query_as(KEY)
            .bind(stream)
            .fetch_optional(pool)
            .await
            .map_err(fail("stream_key"))?;
        Ok(row.map(key))
    }

    pub(crate) async fn forget(pool: &PgPool, stream: &str) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO stream_keys (stream_id, forgotten_at) VALUES ($1, now()) \
             ON CONFLICT (stream_id) DO UPDATE SET {FORGOTTEN}, \
                 forgotten_at = COALESCE(stream_keys.forgotten_at, excluded.forgotten_at)"
        )))
        .bind(stream)
        .execute(pool)
        .await
        .map_err(fail("forget"))?;
        Ok(())
    }

    pub(crate) async fn keys_to_rewrap(
        pool: &PgPool,
        active: &str,
        limit: usize,
    ) -> Result<Vec<StoredKey>> {
        let rows: Vec<KeyRow> = sqlx::query_as(KEYS_TO_REWRAP)
            .bind(active)
            .bind(to_i64(limit as u64))
            .fetch_all(pool)
            .await
            .map_err(fail("rotate_keys"))?;
        Ok(rows.into_iter().map(key).collect())
    }

    pub(crate) async fn rewrap(pool: &PgPool, keys: &[(StoredKey, StoredKey)]) -> Result<u64> {
        let fail = fail("rotate_keys");
        let mut tx = pool.begin().await.map_err(&fail)?;
        let done = each_in!(
            tx,
            keys,
            REWRAP,
            |(old, new)| &new.key_id,
            &new.wrapped,
            &old.stream,
            &old.key_id,
            &old.wrapped
        );
        tx.commit().await.map_err(&fail)?;
        Ok(done)
    }

    pub(crate) async fn replace_payloads(
        pool: &PgPool,
        payloads: &[(u64, Vec<u8>, Vec<u8>)],
    ) -> Result<u64> {
        let fail = fail("reencrypt");
        let mut tx = pool.begin().await.map_err(&fail)?;
        let done = each_in!(
            tx,
            payloads,
            REPLACE_PAYLOAD,
            |(position, old, new)| new,
            to_i64(*position),
            old
        );
        tx.commit().await.map_err(&fail)?;
        Ok(done)
    }

    pub(crate) async fn snapshots_after(
        pool: &PgPool,
        after: (&str, u64),
        limit: usize,
    ) -> Result<Vec<(StreamId, StoredSnapshot)>> {
        let rows: Vec<SnapshotRow<chrono::DateTime<Utc>>> = sqlx::query_as(SNAPSHOTS_AFTER)
            .bind(after.0)
            .bind(to_i64(after.1))
            .bind(to_i64(limit as u64))
            .fetch_all(pool)
            .await
            .map_err(fail("reencrypt"))?;
        Ok(rows
            .into_iter()
            .map(|(stream, version, schema, payload, created_at)| {
                snapshot_row(stream, version, schema, payload, created_at)
            })
            .collect())
    }

    pub(crate) async fn replace_snapshot_payloads(
        pool: &PgPool,
        payloads: &[(String, u64, Vec<u8>, Vec<u8>)],
    ) -> Result<u64> {
        let fail = fail("reencrypt");
        let mut tx = pool.begin().await.map_err(&fail)?;
        let done = each_in!(
            tx,
            payloads,
            REPLACE_SNAPSHOT,
            |(stream, version, old, new)| new,
            stream,
            to_i64(*version),
            old
        );
        tx.commit().await.map_err(&fail)?;
        Ok(done)
    }
}
