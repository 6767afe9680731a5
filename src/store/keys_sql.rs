//! The `stream_keys` statements of the SQL backends (per-stream data keys, forgetting,
//! rotation) and the payload swap of re-encryption. Most are the same text on both
//! databases (`$n` placeholders); lists travel as arrays on PostgreSQL and as JSON on
//! SQLite, and times are `now()` on one and microseconds on the other.

use chrono::Utc;
use sqlx::{PgPool, SqlitePool};

use super::sql::to_i64;
use super::stream_keys::StoredKey;
use crate::error::{Error, Result};

const KEYS_TO_REWRAP: &str = "SELECT stream_id, key_id, wrapped FROM stream_keys \
     WHERE key_id IS NOT NULL AND key_id <> $1 LIMIT $2";

const REWRAP: &str = "UPDATE stream_keys SET key_id = $1, wrapped = $2 \
     WHERE stream_id = $3 AND key_id = $4 AND wrapped = $5";

const REPLACE_PAYLOAD: &str = "UPDATE events SET payload = $1 WHERE position = $2 AND payload = $3";

const FORGOTTEN: &str = "key_id = NULL, wrapped = NULL";

type KeyRow = (String, Option<String>, Option<Vec<u8>>);

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
    ) -> Result<StoredKey> {
        // The upsert's no-op update makes RETURNING give the stored row either way.
        let row: KeyRow = sqlx::query_as(
            "INSERT INTO stream_keys (stream_id, key_id, wrapped, created_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (stream_id) DO UPDATE SET stream_id = stream_keys.stream_id \
             RETURNING stream_id, key_id, wrapped",
        )
        .bind(stream)
        .bind(key_id)
        .bind(wrapped)
        .bind(Utc::now().timestamp_micros())
        .fetch_one(writer)
        .await
        .map_err(fail("stream_key"))?;
        Ok(key(row))
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
    ) -> Result<StoredKey> {
        let row: KeyRow = sqlx::query_as(
            "INSERT INTO stream_keys (stream_id, key_id, wrapped) VALUES ($1, $2, $3) \
             ON CONFLICT (stream_id) DO UPDATE SET stream_id = stream_keys.stream_id \
             RETURNING stream_id, key_id, wrapped",
        )
        .bind(stream)
        .bind(key_id)
        .bind(wrapped)
        .fetch_one(pool)
        .await
        .map_err(fail("stream_key"))?;
        Ok(key(row))
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
}
