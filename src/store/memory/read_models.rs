//! The memory backend's read models: an embedded SQLite database in memory (with the
//! `sqlite` feature), so that projections and inline projections written in portable SQL
//! run on `memory:` as on the SQL backends, and nothing outlives the process.
//!
//! A write transaction takes its connection only when a statement of portable SQL is
//! about to run ([`Tx::prepare_sql`](crate::store::batch::Tx::prepare_sql)), and only
//! after the memory writer lock: every transaction takes the two in that order, so none
//! waits for the connection while holding what another needs. The pool has one
//! connection, kept for the backend's life (an in-memory SQLite database lives as long as
//! its connection), as a SQLite store's writer connection is. The transaction commits
//! SQLite first: if that fails, the tables are not swapped in, and nothing of the batch
//! is kept.

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Sqlite, Transaction};

use crate::error::{Error, Result};

/// An open transaction on the read models' database.
pub(super) type ReadModelTx = Transaction<'static, Sqlite>;

/// The read models' database: one connection, opened at its first use.
#[derive(Debug, Clone)]
pub(super) struct ReadModels(SqlitePool);

impl Default for ReadModels {
    fn default() -> Self {
        let options = SqliteConnectOptions::new().in_memory(true);
        ReadModels(
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_lazy_with(options),
        )
    }
}

impl ReadModels {
    /// The pool the application reads its read models through.
    pub(super) fn pool(&self) -> &SqlitePool {
        &self.0
    }

    /// A transaction on the one connection (waits while another transaction has it).
    pub(super) async fn begin(&self) -> Result<ReadModelTx> {
        self.0
            .begin()
            .await
            .map_err(|error| Error::from_sqlx("read_models", error))
    }
}

/// Commits the read models' part of a memory transaction.
pub(super) async fn commit(tx: ReadModelTx) -> Result<()> {
    tx.commit()
        .await
        .map_err(|error| Error::from_sqlx("read_models", error))
}
