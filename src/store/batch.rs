//! A projection's batch: one database transaction that carries the read model's writes
//! and the projection's checkpoint, so both commit together or not at all. The SQL that
//! runs in it is written once, over the dialect (`sql/tx.rs`: checkpoints and skips;
//! `requests.rs`: the outbox); [`BatchTx`] picks the backend's transaction once per call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

#[cfg(feature = "postgres")]
use sqlx::{PgConnection, Postgres};
#[cfg(feature = "sqlite")]
use sqlx::{Sqlite, SqliteConnection};
use uuid::Uuid;

use super::requests::{Claimed, DeadRow, Failed, NewRequest, StateCount, TurnKeys};
use super::sql::tx::SqlTx;
use crate::error::{Error, Result, ValidationError};
use crate::read::LogPosition;

/// The memory backend's checkpoints, shared with its batches.
pub(crate) type MemoryCheckpoints = Arc<Mutex<HashMap<String, LogPosition>>>;

/// A stored checkpoint, as [`BatchTx::checkpoints`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredCheckpoint {
    pub name: String,
    pub position: LogPosition,
    /// When it last moved (`None` where the backend does not record it: memory).
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
    Sqlite(SqlTx<Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(SqlTx<Postgres>),
    /// The memory backend has no transactions: the checkpoint is kept aside and stored on
    /// commit.
    Memory {
        checkpoints: MemoryCheckpoints,
        /// The checkpoint move to make on commit: name, expected position, new position.
        pending: Option<(String, LogPosition, LogPosition)>,
    },
}

/// Calls `$call` on the batch's SQL transaction (bound to `$tx`), or evaluates `$memory`
/// on the memory backend's.
macro_rules! on_backend {
    ($batch:expr, |$tx:ident| $call:expr, $memory:pat => $otherwise:expr) => {
        match $batch {
            #[cfg(feature = "sqlite")]
            BatchTx::Sqlite($tx) => $call,
            #[cfg(feature = "postgres")]
            BatchTx::Postgres($tx) => $call,
            $memory => $otherwise,
        }
    };
}

/// The memory backend keeps no outbox.
fn unsupported() -> Error {
    ValidationError::Config(
        "the outbox keeps its requests in a SQL database: use SQLite or PostgreSQL".to_owned(),
    )
    .into()
}

impl BatchTx {
    /// The transaction's SQLite connection, when the store is SQLite.
    #[cfg(feature = "sqlite")]
    pub(crate) fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        match self {
            BatchTx::Sqlite(tx) => Some(tx.connection()),
            _ => None,
        }
    }

    /// The transaction's PostgreSQL connection, when the store is PostgreSQL.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(&mut self) -> Option<&mut PgConnection> {
        match self {
            BatchTx::Postgres(tx) => Some(tx.connection()),
            _ => None,
        }
    }

    /// Where portable SQL runs in this transaction.
    pub(crate) fn sql_target(&mut self) -> crate::portable::Target<'_> {
        match self {
            #[cfg(feature = "sqlite")]
            BatchTx::Sqlite(tx) => crate::portable::Target::SqliteConnection(tx.connection()),
            #[cfg(feature = "postgres")]
            BatchTx::Postgres(tx) => crate::portable::Target::PgConnection(tx.connection()),
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
        on_backend!(self, |tx| tx.move_checkpoint(name, from, to).await,
            BatchTx::Memory { checkpoints, pending } => {
                let stored = checkpoints
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(name)
                    .copied()
                    .unwrap_or_default();
                *pending = Some((name.to_owned(), from, to));
                Ok(stored == from)
            }
        )
    }

    /// `name`'s stored checkpoint, read in this transaction (PostgreSQL: its row, when
    /// there is one, stays locked until the transaction ends; SQLite: a batch holds the
    /// write lock).
    pub(crate) async fn locked_checkpoint(&mut self, name: &str) -> Result<Option<LogPosition>> {
        on_backend!(self, |tx| tx.locked_checkpoint(name).await,
            BatchTx::Memory { checkpoints, .. } => Ok(checkpoints
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(name)
                .copied())
        )
    }

    /// Every stored checkpoint in name order: name, cursor, and when it last moved (`None`
    /// on the memory backend, which does not record it).
    pub(crate) async fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>> {
        on_backend!(self, |tx| tx.checkpoints().await,
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
        )
    }

    /// Deletes `name`'s checkpoint, in this transaction: the projection starts over.
    /// Returns whether there was one.
    pub(crate) async fn reset_checkpoint(&mut self, name: &str) -> Result<bool> {
        on_backend!(self, |tx| tx.reset_checkpoint(name).await,
            BatchTx::Memory { checkpoints, .. } => Ok(checkpoints
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name)
                .is_some())
        )
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
        on_backend!(self, |tx| tx.record_skip(name, event_id, position, error).await,
            BatchTx::Memory { .. } => Ok(())
        )
    }

    /// Commits the batch: the read model's writes and the checkpoint.
    pub(crate) async fn commit(self) -> Result<()> {
        on_backend!(self, |tx| tx.commit().await,
            BatchTx::Memory { checkpoints, pending } => {
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
        )
    }
}

/// The outbox's statements (`requests.rs`), on the SQL backends; the memory backend
/// refuses them.
macro_rules! outbox_methods {
    ($(fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $out:ty;)*) => {
        impl BatchTx {
            $(
                pub(crate) async fn $name(&mut self $(, $arg: $ty)*) -> Result<$out> {
                    on_backend!(self, |tx| tx.$name($($arg),*).await,
                        BatchTx::Memory { .. } => Err(unsupported()))
                }
            )*
        }
    };
}

outbox_methods! {
    fn insert_requests(&mut self, requests: &[NewRequest<'_>], now: i64) -> u64;
    fn lock_turns(&mut self, keys: &TurnKeys<'_>) -> ();
    fn pass_turns(&mut self, keys: &TurnKeys<'_>) -> ();
    fn claim_requests(&mut self, handlers: &str, token: &str, now: i64, lease_until: i64, limit: usize) -> Vec<Claimed>;
    fn finish_done(&mut self, ids: &[i64], token: &str, now: i64) -> Vec<i64>;
    fn finish_failed(&mut self, id: i64, token: &str, failed: &Failed<'_>, now: i64) -> bool;
    fn request_counts(&mut self) -> Vec<StateCount>;
    fn list_requests(&mut self) -> Vec<(String, Uuid)>;
    fn dead_requests(&mut self, handler: Option<&str>, limit: usize) -> Vec<DeadRow>;
    fn retry_dead(&mut self, id: Option<i64>, handler: Option<&str>, now: i64) -> u64;
    fn register_handlers(&mut self, outbox: &str, handlers: &[(&str, LogPosition)], now: i64) -> Vec<(String, LogPosition)>;
    fn open_requests_until(&mut self, handlers: &str, until: LogPosition) -> u64;
    fn last_committed_event(&mut self) -> LogPosition;
    fn purge_done(&mut self, before: i64) -> u64;
}
