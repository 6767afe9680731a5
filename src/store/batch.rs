//! A projection's batch: one database transaction that carries the read model's writes
//! and the projection's checkpoint, so both commit together or not at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

#[cfg(feature = "sqlite")]
use chrono::Utc;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use sqlx::Transaction;
#[cfg(feature = "postgres")]
use sqlx::{PgConnection, Postgres};
#[cfg(feature = "sqlite")]
use sqlx::{Sqlite, SqliteConnection};
use uuid::Uuid;

use super::sql::to_i64;
use crate::error::{Error, Result};
use crate::read::LogPosition;

/// The memory backend's checkpoints, shared with its batches.
pub(crate) type MemoryCheckpoints = Arc<Mutex<HashMap<String, LogPosition>>>;

/// A stored checkpoint, as [`BatchTx::checkpoints`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredCheckpoint {
    pub name: String,
    pub position: LogPosition,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Whether a batch's commit waits for its log record to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// The commit returns once the transaction is durable (the database's setting).
    Wait,
    /// The commit may return first (PostgreSQL: `SET LOCAL synchronous_commit = off`,
    /// sent with the `BEGIN`; the other backends ignore it). A crash may then lose the
    /// last such commits, whole: a projection's checkpoint together with the read
    /// model's writes of its batch, which are applied again on restart. A projection's
    /// batch is derived data, so its commit need not wait for the disk, which on
    /// PostgreSQL costs a batch more than its reads do.
    Defer,
}

/// An open batch transaction on one of the backends.
#[derive(Debug)]
pub(crate) enum BatchTx {
    #[cfg(feature = "sqlite")]
    Sqlite(Transaction<'static, Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(Transaction<'static, Postgres>),
    /// The memory backend has no transactions: the checkpoint is kept aside and stored on
    /// commit.
    Memory {
        checkpoints: MemoryCheckpoints,
        /// The checkpoint move to make on commit: name, expected position, new position.
        pending: Option<(String, LogPosition, LogPosition)>,
    },
}

impl BatchTx {
    /// The transaction's SQLite connection, when the store is SQLite.
    #[cfg(feature = "sqlite")]
    pub(crate) fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        match self {
            BatchTx::Sqlite(tx) => Some(&mut **tx),
            _ => None,
        }
    }

    /// Whether the store is PostgreSQL (whose statements differ in places).
    pub(crate) fn is_postgres(&self) -> bool {
        #[cfg(feature = "postgres")]
        if let BatchTx::Postgres(_) = self {
            return true;
        }
        false
    }

    /// The transaction's PostgreSQL connection, when the store is PostgreSQL.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(&mut self) -> Option<&mut PgConnection> {
        match self {
            BatchTx::Postgres(tx) => Some(&mut **tx),
            _ => None,
        }
    }

    /// Where portable SQL runs in this transaction.
    pub(crate) fn sql_target(&mut self) -> crate::portable::Target<'_> {
        match self {
            #[cfg(feature = "sqlite")]
            BatchTx::Sqlite(tx) => crate::portable::Target::SqliteConnection(tx),
            #[cfg(feature = "postgres")]
            BatchTx::Postgres(tx) => crate::portable::Target::PgConnection(tx),
            BatchTx::Memory { .. } => {
                crate::portable::Target::None("the memory store has no SQL database")
            }
        }
    }

    /// Moves `name`'s checkpoint from `from` to `to`, in this transaction; `false` when
    /// the stored checkpoint is not at `from` any more (another instance moved it), in
    /// which case nothing is written and the batch must not commit.
    pub(crate) async fn move_checkpoint(
        &mut self,
        name: &str,
        from: LogPosition,
        to: LogPosition,
    ) -> Result<bool> {
        let fail = |error| Error::from_sqlx("save_checkpoint", error);
        // From START, an upsert: the first batch inserts the row (or moves one still at
        // START). From anywhere else, an update of the row only where it still holds
        // `from`: a row deleted meanwhile (a reset) is not written again, even by a
        // transaction that began before the delete committed (PostgreSQL's UPDATE waits
        // for the deleter, then finds no row), so the runner sees the reset.
        let first = from == crate::read::LogPosition::START;
        let moved =
            match self {
                #[cfg(feature = "sqlite")]
                BatchTx::Sqlite(tx) => sqlx::query(if first {
                    "INSERT INTO projection_checkpoints (name, commit_id, position, updated_at) \
                     VALUES (?1, ?4, ?5, ?6) \
                     ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, \
                         position = excluded.position, updated_at = excluded.updated_at \
                     WHERE projection_checkpoints.commit_id = ?2 \
                       AND projection_checkpoints.position = ?3"
                } else {
                    "UPDATE projection_checkpoints SET commit_id = ?4, position = ?5, \
                         updated_at = ?6 \
                     WHERE name = ?1 AND commit_id = ?2 AND position = ?3"
                })
                .bind(name)
                .bind(to_i64(from.commit()))
                .bind(to_i64(from.position()))
                .bind(to_i64(to.commit()))
                .bind(to_i64(to.position()))
                .bind(Utc::now().timestamp_micros())
                .execute(&mut **tx)
                .await
                .map_err(fail)?
                .rows_affected()
                    > 0,
                #[cfg(feature = "postgres")]
                BatchTx::Postgres(tx) => {
                    sqlx::query(if first {
                        "INSERT INTO projection_checkpoints (name, commit_id, position) \
                         VALUES ($1, $4, $5) \
                         ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, \
                             position = excluded.position, updated_at = now() \
                         WHERE projection_checkpoints.commit_id = $2 \
                           AND projection_checkpoints.position = $3"
                    } else {
                        "UPDATE projection_checkpoints SET commit_id = $4, position = $5, \
                             updated_at = now() \
                         WHERE name = $1 AND commit_id = $2 AND position = $3"
                    })
                    .bind(name)
                    .bind(to_i64(from.commit()))
                    .bind(to_i64(from.position()))
                    .bind(to_i64(to.commit()))
                    .bind(to_i64(to.position()))
                    .execute(&mut **tx)
                    .await
                    .map_err(fail)?
                    .rows_affected()
                        > 0
                }
                BatchTx::Memory {
                    checkpoints,
                    pending,
                } => {
                    let stored = checkpoints
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(name)
                        .copied()
                        .unwrap_or_default();
                    *pending = Some((name.to_owned(), from, to));
                    stored == from
                }
            };
        Ok(moved)
    }

    /// `name`'s stored checkpoint, read in this transaction (PostgreSQL: its row, when
    /// there is one, stays locked until the transaction ends; SQLite: a batch holds the
    /// write lock).
    pub(crate) async fn locked_checkpoint(&mut self, name: &str) -> Result<Option<LogPosition>> {
        let fail = |error| Error::from_sqlx("checkpoint", error);
        let row: Option<(i64, i64)> = match self {
            #[cfg(feature = "sqlite")]
            BatchTx::Sqlite(tx) => sqlx::query_as(
                "SELECT commit_id, position FROM projection_checkpoints WHERE name = ?",
            )
            .bind(name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(fail)?,
            #[cfg(feature = "postgres")]
            BatchTx::Postgres(tx) => sqlx::query_as(
                "SELECT commit_id, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
            )
            .bind(name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(fail)?,
            BatchTx::Memory { checkpoints, .. } => {
                return Ok(checkpoints
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(name)
                    .copied());
            }
        };
        row.map(|row| super::sql::checkpoint(name, row))
            .transpose()
            .map_err(fail)
    }

    /// Every stored checkpoint in name order: name, cursor, and when it last moved (`None`
    /// on the memory backend, which does not record it).
    pub(crate) async fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>> {
        let fail = |error| Error::from_sqlx("checkpoints", error);
        match self {
            #[cfg(feature = "sqlite")]
            BatchTx::Sqlite(tx) => {
                let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT name, commit_id, position, updated_at FROM projection_checkpoints \
                     ORDER BY name",
                )
                .fetch_all(&mut **tx)
                .await
                .map_err(fail)?;
                rows.into_iter()
                    .map(|(name, commit, position, updated)| {
                        let at = super::sql::RowRef::checkpoint(&name);
                        let updated_at = at.micros("updated_at", updated).map_err(fail)?;
                        let position =
                            super::sql::checkpoint(&name, (commit, position)).map_err(fail)?;
                        Ok(StoredCheckpoint {
                            name,
                            position,
                            updated_at: Some(updated_at),
                        })
                    })
                    .collect()
            }
            #[cfg(feature = "postgres")]
            BatchTx::Postgres(tx) => {
                use super::sql::dialect::{Dialect, StoredTime};
                let rows: Vec<(String, i64, i64, StoredTime)> = sqlx::query_as(
                    "SELECT name, commit_id, position, updated_at FROM projection_checkpoints \
                     ORDER BY name COLLATE \"C\"",
                )
                .fetch_all(&mut **tx)
                .await
                .map_err(fail)?;
                rows.into_iter()
                    .map(|(name, commit, position, updated)| {
                        let at = super::sql::RowRef::checkpoint(&name);
                        let updated_at = Postgres::stored_time(updated)
                            .map_err(|stored| {
                                at.corrupt("updated_at", crate::error::CorruptValue::Time(stored))
                            })
                            .map_err(fail)?;
                        let position =
                            super::sql::checkpoint(&name, (commit, position)).map_err(fail)?;
                        Ok(StoredCheckpoint {
                            name,
                            position,
                            updated_at: Some(updated_at),
                        })
                    })
                    .collect()
            }
            BatchTx::Memory { checkpoints, .. } => {
                let checkpoints = checkpoints.lock().unwrap_or_else(PoisonError::into_inner);
                let mut listed: Vec<StoredCheckpoint> = checkpoints
                    .iter()
                    .map(|(name, position)| StoredCheckpoint {
                        name: name.clone(),
                        position: *position,
                        updated_at: None,
                    })
                    .collect();
                listed.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(listed)
            }
        }
    }

    /// Deletes `name`'s checkpoint, in this transaction: the projection starts over.
    /// Returns whether there was one.
    pub(crate) async fn reset_checkpoint(&mut self, name: &str) -> Result<bool> {
        let fail = |error| Error::from_sqlx("reset_checkpoint", error);
        let deleted = match self {
            #[cfg(feature = "sqlite")]
            BatchTx::Sqlite(tx) => sqlx::query("DELETE FROM projection_checkpoints WHERE name = ?")
                .bind(name)
                .execute(&mut **tx)
                .await
                .map_err(fail)?
                .rows_affected(),
            #[cfg(feature = "postgres")]
            BatchTx::Postgres(tx) => {
                sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
                    .bind(name)
                    .execute(&mut **tx)
                    .await
                    .map_err(fail)?
                    .rows_affected()
            }
            BatchTx::Memory { checkpoints, .. } => checkpoints
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name)
                .map_or(0, |_| 1),
        };
        Ok(deleted > 0)
    }

    /// Records that `name` stepped over `event` after its handler kept failing with
    /// `error` (the memory backend only logs it).
    pub(crate) async fn record_skip(
        &mut self,
        name: &str,
        event_id: Uuid,
        position: u64,
        error: &str,
    ) -> Result<()> {
        let fail = |error| Error::from_sqlx("record_skip", error);
        match self {
            #[cfg(feature = "sqlite")]
            BatchTx::Sqlite(tx) => {
                sqlx::query(
                    "INSERT OR REPLACE INTO projection_skipped \
                     (name, event_id, position, error, skipped_at) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(name)
                .bind(event_id)
                .bind(to_i64(position))
                .bind(error)
                .bind(Utc::now().timestamp_micros())
                .execute(&mut **tx)
                .await
                .map_err(fail)?;
            }
            #[cfg(feature = "postgres")]
            BatchTx::Postgres(tx) => {
                sqlx::query(
                    "INSERT INTO projection_skipped (name, event_id, position, error) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (name, event_id) DO UPDATE SET \
                     error = excluded.error, skipped_at = now()",
                )
                .bind(name)
                .bind(event_id)
                .bind(to_i64(position))
                .bind(error)
                .execute(&mut **tx)
                .await
                .map_err(fail)?;
            }
            BatchTx::Memory { .. } => {}
        }
        Ok(())
    }

    /// Commits the batch: the read model's writes and the checkpoint.
    pub(crate) async fn commit(self) -> Result<()> {
        let fail = |error| Error::from_sqlx("commit_batch", error);
        match self {
            #[cfg(feature = "sqlite")]
            BatchTx::Sqlite(tx) => tx.commit().await.map_err(fail),
            #[cfg(feature = "postgres")]
            BatchTx::Postgres(tx) => tx.commit().await.map_err(fail),
            BatchTx::Memory {
                checkpoints,
                pending,
            } => {
                if let Some((name, from, to)) = pending {
                    let mut checkpoints =
                        checkpoints.lock().unwrap_or_else(PoisonError::into_inner);
                    let stored = checkpoints.entry(name).or_default();
                    if *stored != from {
                        return Err(Error::Internal(
                            "a projection checkpoint moved during the batch".into(),
                        ));
                    }
                    *stored = to;
                }
                Ok(())
            }
        }
    }
}
