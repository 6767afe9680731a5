//! The `compression_dictionaries` statements of the SQL backends, and the sample of recent
//! payloads a dictionary is trained on, written once over a `Dialect`, as methods of
//! `sql::reads::Sql`.

use chrono::Utc;
use uuid::Uuid;

use super::sql::dialect::sql_impl;
use super::sql::event_joins::EVENT_JOINS;
use super::sql::reads::Sql;
use crate::codec::StoredDictionary;
use crate::error::{Error, Result};

const DICTIONARIES: &str =
    "SELECT id, key_id, content, sha256, samples FROM compression_dictionaries WHERE ";

const RESEAL_DICTIONARY: &str = "UPDATE compression_dictionaries SET key_id = $1, content = $2 \
     WHERE id = $3 AND content = $4";

const LATEST_DICTIONARY: &str = "SELECT max(id) FROM compression_dictionaries";

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
            // The ids as texts, the one list type of both dialects: the table holds a
            // dictionary per training, so comparing as text scans a handful of rows.
            let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
            let sql = format!("{DICTIONARIES}{}", D::in_list("CAST(id AS TEXT)", "$1"));
            let rows: Vec<DictionaryRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(D::list(&ids)?)
                .fetch_all(self.0)
                .await
                .map_err(fail("dictionaries"))?;
            rows.into_iter().map(dictionary).collect()
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

        /// Replaces dictionary `old.id`'s seal with `new`'s if its row is still as `old`
        /// was read; whether it was replaced.
        pub(crate) async fn reseal_dictionary(
            self,
            old: &StoredDictionary,
            new: &StoredDictionary,
        ) -> Result<bool> {
            let done = sqlx::query(RESEAL_DICTIONARY)
                .bind(new.key_id.clone())
                .bind(new.content.as_slice())
                .bind(i64::from(old.id))
                .bind(old.content.as_slice())
                .execute(self.0)
                .await
                .map_err(fail("reseal_dictionary"))?;
            Ok(D::rows_affected(&done) == 1)
        }

        /// The newest `limit` events' ids, streams and stored payloads, newest first.
        pub(crate) async fn recent_payloads(
            self,
            limit: usize,
        ) -> Result<Vec<(Uuid, String, Vec<u8>)>> {
            let newest = format!(
                "SELECT event_id, stream_id, payload FROM events{} ORDER BY {} LIMIT $1",
                EVENT_JOINS,
                D::NEWEST_FIRST
            );
            sqlx::query_as(sqlx::AssertSqlSafe(newest))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(self.0)
                .await
                .map_err(fail("train_dictionary"))
        }
    }
}
