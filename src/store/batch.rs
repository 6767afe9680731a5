//! A batch's transaction, as the seam sees it: the [`Tx`] trait a backend implements (the
//! SQL backends with `SqlTx<D>` in `sql/tx.rs`, memory with `MemoryTx`), and [`DynTx`],
//! the boxed form `Store` and the modules above it hold. A projection's batch writes its
//! read model and its checkpoint in one; the outbox's statements run in one too
//! ([`OutboxTx`], `requests.rs`), and so do `Store`'s changes of a stream's state
//! ([`StreamTx`], `stream_rows.rs`, which every transaction gives and `DynTx` passes
//! through as a supertrait).
//!
//! As with `Projection`/`DynProjection`, an implementer writes native `async fn`s that
//! return `Send` futures, with no macro; the blanket `impl<T: Tx> DynTx for T` boxes them.
//! The traits are crate-private until the seam is public (issue 21, slice 15), but they
//! name only chronicle's own types and sqlx's connections, so another crate could
//! implement them.

use std::any::Any;
use std::future::Future;

use async_trait::async_trait;
#[cfg(feature = "postgres")]
use sqlx::PgConnection;
#[cfg(feature = "sqlite")]
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::requests::{
    Claimed, DeadRow, Failed, NewRequest, OutboxTx, StateCount, TurnKeys, outbox_methods,
};
use super::stream_rows::StreamTx;
use crate::error::{Error, Result, ValidationError};
use crate::read::LogPosition;

/// A stored checkpoint, as [`Tx::checkpoints`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The projection (or outbox, or process manager) that owns it.
    pub name: String,
    /// Where it stands in the global log.
    pub position: LogPosition,
    /// When it last moved (`None` where the backend does not record it: memory).
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Whether a batch's commit waits for its log record to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
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

/// A transaction's SQL connection, for the statements of a read model (portable SQL, or
/// the driver's own through `ProjectionContext::sqlite`/`postgres`) and for an append in
/// the transaction.
#[derive(Debug)]
pub enum SqlConnection<'a> {
    #[cfg(feature = "sqlite")]
    /// SQLite's connection.
    Sqlite(&'a mut SqliteConnection),
    #[cfg(feature = "postgres")]
    /// PostgreSQL's connection.
    Postgres(&'a mut PgConnection),
    /// An embedded SQLite database that holds only the application's read models (the
    /// memory backend's): portable SQL runs on it, but it is not handed out as the
    /// store's driver connection (`ProjectionContext::sqlite` stays `None`).
    #[cfg(feature = "sqlite")]
    Embedded(&'a mut SqliteConnection),
}

/// An open write transaction of a backend: a projection's batch, the outbox's work, an
/// inline projection's append. Dropped without [`Tx::commit`], it rolls back.
pub trait Tx: StreamTx + Send + 'static {
    /// Its outbox statements: [`NoOutbox`](super::requests::NoOutbox) where the backend keeps no outbox.
    type Outbox: OutboxTx;

    /// Moves `name`'s checkpoint from `from` to `to`; `false` when the stored checkpoint
    /// is not at `from` any more (another instance moved it), in which case nothing is
    /// written and the batch must not commit.
    fn move_checkpoint(
        &mut self,
        name: &str,
        from: LogPosition,
        to: LogPosition,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// `name`'s stored checkpoint, read so that no other transaction moves it before this
    /// one ends (PostgreSQL: its row locked; SQLite and memory: a batch holds the write
    /// lock).
    fn locked_checkpoint(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<Option<LogPosition>>> + Send;

    /// Every stored checkpoint, in name order (bytewise).
    fn checkpoints(&mut self) -> impl Future<Output = Result<Vec<StoredCheckpoint>>> + Send;

    /// Deletes `name`'s checkpoint: the projection starts over. Returns whether there
    /// was one.
    fn reset_checkpoint(&mut self, name: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Records that `name` stepped over `event_id` (at `position`) after its handler kept
    /// failing with `error`; a second skip of the event records the newer error. A
    /// backend may only log it (memory).
    fn record_skip(
        &mut self,
        name: &str,
        event_id: Uuid,
        position: u64,
        error: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The transaction's outbox statements; `None` (the default) where the backend keeps
    /// no outbox.
    fn outbox(&mut self) -> Option<&mut Self::Outbox> {
        None
    }

    /// Makes [`Tx::sql`] ready before a statement of portable SQL runs: a backend whose
    /// SQL connection is not taken with the transaction takes it here (memory: its
    /// writer lock, then its embedded database's connection, always in that order).
    /// Nothing by default.
    fn prepare_sql(&mut self) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }

    /// The transaction's SQL connection; `None` (the default) where there is no SQL
    /// database.
    fn sql(&mut self) -> Option<SqlConnection<'_>> {
        None
    }

    /// Commits the transaction.
    fn commit(self) -> impl Future<Output = Result<()>> + Send;
}

/// The refusal of the outbox's statements by a backend that keeps no outbox.
fn no_outbox() -> Error {
    ValidationError::Config(
        "the outbox keeps its requests in a SQL database: use SQLite or PostgreSQL".to_owned(),
    )
    .into()
}

/// `DynTx` and its blanket impl, with the outbox's methods from their one list
/// (`requests::outbox_methods!`).
macro_rules! dyn_tx {
    ($(fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $out:ty;)*) => {
        /// [`Tx`] as an object: what `Store::begin_batch` returns and what the modules
        /// above the store call. The outbox's statements are here too, refused (a typed
        /// configuration error) where [`Tx::outbox`] is `None`.
        #[async_trait]
        pub trait DynTx: StreamTx + Send {
            /// [`Tx::move_checkpoint`].
            async fn move_checkpoint(
                &mut self,
                name: &str,
                from: LogPosition,
                to: LogPosition,
            ) -> Result<bool>;
            /// [`Tx::locked_checkpoint`].
            async fn locked_checkpoint(&mut self, name: &str) -> Result<Option<LogPosition>>;
            /// [`Tx::checkpoints`].
            async fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>>;
            /// [`Tx::reset_checkpoint`].
            async fn reset_checkpoint(&mut self, name: &str) -> Result<bool>;
            /// [`Tx::record_skip`].
            async fn record_skip(
                &mut self,
                name: &str,
                event_id: Uuid,
                position: u64,
                error: &str,
            ) -> Result<()>;
            /// [`Tx::sql`].
            fn sql(&mut self) -> Option<SqlConnection<'_>>;
            /// [`Tx::prepare_sql`].
            async fn prepare_sql(&mut self) -> Result<()>;
            /// The transaction as its own type, for its backend's `append_in` to
            /// downcast (memory: `MemoryTx`).
            fn as_any(&mut self) -> &mut dyn Any;
            /// [`Tx::commit`].
            async fn commit(self: Box<Self>) -> Result<()>;
            $(
                #[doc = concat!("[`OutboxTx::", stringify!($name), "`], through [`Tx::outbox`].")]
                async fn $name(&mut self $(, $arg: $ty)*) -> Result<$out>;
            )*
        }

        #[async_trait]
        impl<T: Tx> DynTx for T {
            async fn move_checkpoint(
                &mut self,
                name: &str,
                from: LogPosition,
                to: LogPosition,
            ) -> Result<bool> {
                Tx::move_checkpoint(self, name, from, to).await
            }

            async fn locked_checkpoint(&mut self, name: &str) -> Result<Option<LogPosition>> {
                Tx::locked_checkpoint(self, name).await
            }

            async fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>> {
                Tx::checkpoints(self).await
            }

            async fn reset_checkpoint(&mut self, name: &str) -> Result<bool> {
                Tx::reset_checkpoint(self, name).await
            }

            async fn record_skip(
                &mut self,
                name: &str,
                event_id: Uuid,
                position: u64,
                error: &str,
            ) -> Result<()> {
                Tx::record_skip(self, name, event_id, position, error).await
            }

            fn sql(&mut self) -> Option<SqlConnection<'_>> {
                Tx::sql(self)
            }

            async fn prepare_sql(&mut self) -> Result<()> {
                Tx::prepare_sql(self).await
            }

            fn as_any(&mut self) -> &mut dyn Any {
                self
            }

            async fn commit(self: Box<Self>) -> Result<()> {
                Tx::commit(*self).await
            }

            $(
                async fn $name(&mut self $(, $arg: $ty)*) -> Result<$out> {
                    self.outbox().ok_or_else(no_outbox)?.$name($($arg),*).await
                }
            )*
        }
    };
}

outbox_methods!(dyn_tx);

impl dyn DynTx + '_ {
    /// The transaction's SQLite connection, when the store is SQLite.
    #[cfg(feature = "sqlite")]
    pub(crate) fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        match self.sql()? {
            SqlConnection::Sqlite(conn) => Some(conn),
            SqlConnection::Embedded(_) => None,
            #[cfg(feature = "postgres")]
            SqlConnection::Postgres(_) => None,
        }
    }

    /// The transaction's PostgreSQL connection, when the store is PostgreSQL.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(&mut self) -> Option<&mut PgConnection> {
        match self.sql()? {
            SqlConnection::Postgres(conn) => Some(conn),
            #[cfg(feature = "sqlite")]
            SqlConnection::Sqlite(_) | SqlConnection::Embedded(_) => None,
        }
    }
}
