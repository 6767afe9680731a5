//! The `compression_dictionaries` statements of the SQL backends, and the sample of recent
//! payloads a dictionary is trained on, written once: `dictionary_statements!` expands
//! them for each database with its `dialect` in scope.

use chrono::Utc;
use uuid::Uuid;

use crate::codec::StoredDictionary;
use crate::error::{Error, Result};

const DICTIONARY: &str =
    "SELECT id, key_id, content, sha256, samples FROM compression_dictionaries WHERE id = $1";

const LATEST_DICTIONARY: &str = "SELECT max(id) FROM compression_dictionaries";

const RECENT_PAYLOADS: &str =
    "SELECT event_id, stream_id, payload FROM events ORDER BY position DESC LIMIT $1";

type DictionaryRow = (i64, Option<String>, Vec<u8>, Vec<u8>, i64);

fn fail(operation: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| Error::from_sqlx(operation, error)
}

/// A stored integer read back: a dictionary's id is a positive `u32`, its sample count
/// not negative.
fn checked<T: TryFrom<i64>>(value: i64, column: &str) -> Result<T> {
    T::try_from(value).map_err(|_| {
        Error::Internal(format!(
            "compression_dictionaries.{column} holds {value}, which chronicle never writes"
        ))
    })
}

fn dictionary(row: DictionaryRow) -> Result<StoredDictionary> {
    let (id, key_id, content, sha256, samples) = row;
    Ok(StoredDictionary {
        id: checked(id, "id")?,
        key_id,
        content,
        sha256,
        samples: checked(samples, "samples")?,
    })
}

/// The statements for one database, expanded where its `dialect` module is in scope;
/// `$now` is its SQL for "now", given the microseconds bound as `$6`.
macro_rules! dictionary_statements {
    ($now:literal) => {
        /// The stored dictionaries of these ids (missing ones are left out).
        pub(crate) async fn dictionaries(
            pool: &Pool,
            ids: &[u32],
        ) -> Result<Vec<StoredDictionary>> {
            // A page rarely needs more than one that this process has not loaded yet.
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                let row: Option<DictionaryRow> = sqlx::query_as(DICTIONARY)
                    .bind(i64::from(*id))
                    .fetch_optional(pool)
                    .await
                    .map_err(fail("dictionaries"))?;
                if let Some(row) = row {
                    found.push(dictionary(row)?);
                }
            }
            Ok(found)
        }

        pub(crate) async fn latest_dictionary(pool: &Pool) -> Result<Option<u32>> {
            let latest: Option<i64> = sqlx::query_scalar(LATEST_DICTIONARY)
                .fetch_one(pool)
                .await
                .map_err(fail("dictionaries"))?;
            latest.map(|id| checked(id, "id")).transpose()
        }

        /// Stores `stored` unless its id is taken; whether it was stored.
        pub(crate) async fn insert_dictionary(
            pool: &Pool,
            stored: &StoredDictionary,
        ) -> Result<bool> {
            let done = sqlx::query(concat!(
                "INSERT INTO compression_dictionaries \
                 (id, key_id, content, sha256, samples, created_at) VALUES ($1, $2, $3, $4, $5, ",
                $now,
                ") ON CONFLICT (id) DO NOTHING"
            ))
            .bind(i64::from(stored.id))
            .bind(&stored.key_id)
            .bind(&stored.content)
            .bind(&stored.sha256)
            .bind(i64::try_from(stored.samples).unwrap_or(i64::MAX))
            .bind(Utc::now().timestamp_micros())
            .execute(pool)
            .await
            .map_err(fail("train_dictionary"))?;
            Ok(done.rows_affected() == 1)
        }

        /// The newest `limit` events' ids, streams and stored payloads, newest first.
        pub(crate) async fn recent_payloads(
            pool: &Pool,
            limit: usize,
        ) -> Result<Vec<(Uuid, String, Vec<u8>)>> {
            sqlx::query_as(RECENT_PAYLOADS)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await
                .map_err(fail("train_dictionary"))
        }
    };
}

#[cfg(feature = "sqlite")]
pub(super) mod sqlite {
    use super::*;
    use crate::store::dialect::sqlite::*;

    dictionary_statements!("$6");
}

#[cfg(feature = "postgres")]
pub(super) mod postgres {
    use super::*;
    use crate::store::dialect::postgres::*;

    dictionary_statements!("to_timestamp($6::float8 / 1000000)");
}
