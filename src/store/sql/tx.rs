//! A transaction on a SQL store, seen through its dialect: [`SqlTx`], the SQL backends'
//! [`Tx`]. The statements that run in a batch's transaction are written once, generic
//! over `D: Dialect`: the projections' checkpoints and skip records (here) and the
//! outbox's requests (`outbox.rs`).

use std::fmt;

use chrono::Utc;
use sqlx::{Database, Transaction};
use uuid::Uuid;

use super::dialect::sql_impl;
use super::{RowRef, checkpoint, to_i64};
use crate::error::{CorruptValue, Error, Result};
use crate::read::LogPosition;
use crate::store::batch::{SqlConnection, StoredCheckpoint, Tx};

/// An open transaction on a SQL store (SQLite: on the writer, holding the write lock, or
/// a reader's; PostgreSQL: on a pool connection). Dropped, it rolls back.
pub(crate) struct SqlTx<D: Database>(pub(crate) Transaction<'static, D>);

impl<D: Database> fmt::Debug for SqlTx<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SqlTx").field(&D::NAME).finish()
    }
}

sql_impl! {
    impl<D> Tx for SqlTx<D> {
        type Outbox = Self;

        async fn move_checkpoint(
            &mut self,
            name: &str,
            from: LogPosition,
            to: LogPosition,
        ) -> Result<bool> {
            // From START, an upsert: the first batch inserts the row (or moves one still at
            // START). From anywhere else, an update of the row only where it still holds
            // `from`: a row deleted meanwhile (a reset) is not written again, even by a
            // transaction that began before the delete committed (PostgreSQL's UPDATE waits
            // for the deleter, then finds no row), so the runner sees the reset.
            let statements = D::statements();
            let sql = if from == LogPosition::START {
                statements.insert_checkpoint.as_str()
            } else {
                statements.move_checkpoint.as_str()
            };
            let done = sqlx::query(sql)
                .bind(name)
                .bind(to_i64(from.commit()))
                .bind(to_i64(from.position()))
                .bind(to_i64(to.commit()))
                .bind(to_i64(to.position()))
                .bind(Utc::now().timestamp_micros())
                .execute(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("save_checkpoint", error))?;
            Ok(D::rows_affected(&done) > 0)
        }

        async fn locked_checkpoint(&mut self, name: &str) -> Result<Option<LogPosition>> {
            let fail = |error| Error::from_sqlx("checkpoint", error);
            let row: Option<(i64, i64)> =
                sqlx::query_as(D::statements().locked_checkpoint.as_str())
                    .bind(name)
                    .fetch_optional(&mut *self.0)
                    .await
                    .map_err(fail)?;
            row.map(|row| checkpoint(name, row)).transpose().map_err(fail)
        }

        async fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>> {
            let fail = |error| Error::from_sqlx("checkpoints", error);
            let rows: Vec<(String, i64, i64, D::StoredTime)> =
                sqlx::query_as(D::statements().checkpoints.as_str())
                    .fetch_all(&mut *self.0)
                    .await
                    .map_err(fail)?;
            rows.into_iter()
                .map(|(name, commit, position, updated)| {
                    let at = RowRef::checkpoint(&name);
                    let updated_at = D::stored_time(updated)
                        .map_err(|stored| at.corrupt("updated_at", CorruptValue::Time(stored)))
                        .map_err(fail)?;
                    let position = checkpoint(&name, (commit, position)).map_err(fail)?;
                    Ok(StoredCheckpoint {
                        name,
                        position,
                        updated_at: Some(updated_at),
                    })
                })
                .collect()
        }

        async fn reset_checkpoint(&mut self, name: &str) -> Result<bool> {
            let done = sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
                .bind(name)
                .execute(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("reset_checkpoint", error))?;
            Ok(D::rows_affected(&done) > 0)
        }

        async fn record_skip(
            &mut self,
            name: &str,
            event_id: Uuid,
            position: u64,
            error: &str,
        ) -> Result<()> {
            sqlx::query(D::statements().record_skip.as_str())
                .bind(name)
                .bind(event_id)
                .bind(to_i64(position))
                .bind(error)
                .bind(Utc::now().timestamp_micros())
                .execute(&mut *self.0)
                .await
                .map_err(|error| Error::from_sqlx("record_skip", error))?;
            Ok(())
        }

        fn outbox(&mut self) -> Option<&mut Self> {
            Some(self)
        }

        fn sql(&mut self) -> Option<SqlConnection<'_>> {
            Some(D::connection(&mut self.0))
        }

        async fn commit(self) -> Result<()> {
            self.0
                .commit()
                .await
                .map_err(|error| Error::from_sqlx("commit_batch", error))
        }
    }
}
