//! The `compression_dictionaries` statements of the SQL backends, and the sample of recent
//! payloads a dictionary is trained on, written once over a `Dialect`, as methods of
//! `sql::reads::Sql`.

use chrono::Utc;
use uuid::Uuid;

use super::sql::dialect::sql_impl;
use super::sql::reads::Sql;
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

sql_impl! {
    impl<D> Sql<'_, D> {
        /// The stored dictionaries of these ids (missing ones are left out).
        pub(crate) async fn dictionaries(self, ids: &[u32]) -> Result<Vec<StoredDictionary>> {
            // A page rarely needs more than one that this process has not loaded yet.
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                let row: Option<DictionaryRow> = sqlx::query_as(DICTIONARY)
                    .bind(i64::from(*id))
                    .fetch_optional(self.0)
                    .await
                    .map_err(fail("dictionaries"))?;
                if let Some(row) = row {
                    found.push(dictionary(row)?);
                }
            }
            Ok(found)
        }

        /// The newest dictionary's id.
        pub(crate) async fn latest_dictionary(self) -> Result<Option<u32>> {
            let latest: Option<i64> = sqlx::query_scalar(LATEST_DICTIONARY)
                .fetch_one(self.0)
                .await
                .map_err(fail("dictionaries"))?;
            latest.map(|id| checked(id, "id")).transpose()
        }

        /// Stores `stored` unless its id is taken; whether it was stored.
        pub(crate) async fn insert_dictionary(self, stored: &StoredDictionary) -> Result<bool> {
            let sql = format!(
                "INSERT INTO compression_dictionaries \
                 (id, key_id, content, sha256, samples, created_at) VALUES ($1, $2, $3, $4, $5, {}) \
                 ON CONFLICT (id) DO NOTHING",
                D::now("$6")
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(i64::from(stored.id))
                .bind(stored.key_id.clone())
                .bind(stored.content.as_slice())
                .bind(stored.sha256.as_slice())
                .bind(i64::try_from(stored.samples).unwrap_or(i64::MAX))
                .bind(Utc::now().timestamp_micros())
                .execute(self.0)
                .await
                .map_err(fail("train_dictionary"))?;
            Ok(D::rows_affected(&done) == 1)
        }

        /// The newest `limit` events' ids, streams and stored payloads, newest first.
        pub(crate) async fn recent_payloads(
            self,
            limit: usize,
        ) -> Result<Vec<(Uuid, String, Vec<u8>)>> {
            sqlx::query_as(RECENT_PAYLOADS)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(self.0)
                .await
                .map_err(fail("train_dictionary"))
        }
    }
}
