//! Projections: background tasks that turn the global log into read models.
//!
//! A [`Projection`] has a unique name and applies one event at a time. The runner
//! ([`Store::projections`](crate::Store::projections)) reads the log from the projection's
//! checkpoint in batches, then follows new appends. Each batch runs in one database
//! transaction that also records the checkpoint:
//!
//! - **Read models in the store's database** (written through
//!   [`ProjectionContext::sqlite`] / [`ProjectionContext::postgres`]) commit together with
//!   the checkpoint: every event's effect is applied exactly once, even when the process
//!   dies mid-batch.
//! - **Read models elsewhere** (another database, a cache, an HTTP call) are at-least-once:
//!   after a crash the batch is applied again. Use the event's id or
//!   [`RecordedEvent::log_position`] to make the writes idempotent.

mod admin;
pub(crate) mod inline;
mod runner;

use std::future::Future;

use futures::future::BoxFuture;
#[cfg(feature = "postgres")]
use sqlx::PgConnection;
#[cfg(feature = "sqlite")]
use sqlx::SqliteConnection;
use tracing::Instrument;

pub use admin::ProjectionCheckpoint;
pub use runner::{
    FailurePolicy, ProjectionHandle, ProjectionState, ProjectionStatus, Projections, StartFrom,
};

use crate::domain_event::DomainEvent;
use crate::error::Result;
use crate::event::RecordedEvent;
use crate::store::Store;
use crate::store::batch::BatchTx;

/// What a projection's handler returns when it cannot apply an event.
pub type ProjectionError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A read model fed from the global log.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use chronicle::{Projection, ProjectionContext, ProjectionError, RecordedEvent};
///
/// /// Counts deposits, in memory (at-least-once: a restart starts from the checkpoint).
/// #[derive(Default)]
/// struct Deposits(AtomicU64);
///
/// impl Projection for Deposits {
///     fn name(&self) -> &str {
///         "deposits"
///     }
///
///     fn event_types(&self) -> &[&str] {
///         &["account.Deposited"]
///     }
///
///     async fn apply(
///         &self,
///         _event: &RecordedEvent,
///         _ctx: &mut ProjectionContext<'_>,
///     ) -> Result<(), ProjectionError> {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         Ok(())
///     }
/// }
/// ```
/// Its methods are `async fn`s that return `Send` futures: implement them with
/// `async fn`, no macro needed.
pub trait Projection: Send + Sync + 'static {
    /// The projection's unique name: its checkpoint is stored under it.
    fn name(&self) -> &str;

    /// The event types this projection applies; empty (the default) means all.
    fn event_types(&self) -> &[&str] {
        &[]
    }

    /// Applies one event to the read model.
    ///
    /// # Errors
    /// Any error: the batch is rolled back and retried, then the runner stops or skips
    /// the event as its [`FailurePolicy`] says.
    fn apply(
        &self,
        event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// Applies a batch of events, in log order. Override it to write a whole batch at
    /// once (one multi-row upsert instead of a statement per event); the default calls
    /// [`Projection::apply`] for each event.
    ///
    /// `apply` stays the reference: when this fails, the runner rolls the batch back and
    /// applies it again event by event through `apply`, so that the failure is pinned to
    /// its event for the retries and the [`FailurePolicy`](crate::FailurePolicy). Both
    /// must therefore have the same effect.
    ///
    /// # Errors
    /// Any error: the batch is rolled back and applied again through `apply`.
    fn apply_batch(
        &self,
        events: &[RecordedEvent],
        ctx: &mut ProjectionContext<'_>,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        async move {
            for event in events {
                let span = crate::telemetry::event_span!("chronicle.projection.apply", event);
                self.apply(event, ctx).instrument(span).await?;
            }
            Ok(())
        }
    }

    /// Empties the read model before it is built from the start of the log: in
    /// [`Projections::rebuild`](crate::Projections::rebuild)'s transaction that deletes
    /// the checkpoint, and whenever the runner finds no checkpoint stored (a first start,
    /// a reset with [`Store::reset_projection`](crate::Store::reset_projection), a rebuild
    /// started elsewhere), before its first batch. It must leave the read model as the
    /// empty log would; on a read model that is already empty it should do nothing
    /// harmful. The default does nothing.
    ///
    /// # Errors
    /// Any error: nothing is reset; `rebuild` returns
    /// [`Error::ProjectionReset`](crate::Error::ProjectionReset), the runner retries and
    /// then fails the projection with it.
    fn reset(
        &self,
        ctx: &mut ProjectionContext<'_>,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }
}

/// [`Projection`] behind a pointer: its futures boxed, so that projections of different
/// types can sit in one list (inline projections).
pub(crate) trait DynProjection: Send + Sync + 'static {
    fn name(&self) -> &str;

    fn event_types(&self) -> &[&str];

    fn apply_batch<'a>(
        &'a self,
        events: &'a [RecordedEvent],
        ctx: &'a mut ProjectionContext<'_>,
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;
}

impl<P: Projection> DynProjection for P {
    fn name(&self) -> &str {
        Projection::name(self)
    }

    fn event_types(&self) -> &[&str] {
        Projection::event_types(self)
    }

    fn apply_batch<'a>(
        &'a self,
        events: &'a [RecordedEvent],
        ctx: &'a mut ProjectionContext<'_>,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(Projection::apply_batch(self, events, ctx))
    }
}

/// What a projection's handler can reach while applying an event: the batch's open
/// transaction (writes through it commit with the checkpoint) and the store.
pub struct ProjectionContext<'a> {
    /// `None` for the runner's internal users that apply before the batch's transaction
    /// opens (the bus relay, which must not hold SQLite's write lock while a broker
    /// answers).
    tx: Option<&'a mut BatchTx>,
    store: &'a Store,
}

impl<'a> ProjectionContext<'a> {
    pub(crate) fn new(tx: &'a mut BatchTx, store: &'a Store) -> Self {
        ProjectionContext {
            tx: Some(tx),
            store,
        }
    }

    /// A context without a transaction: `sqlite` and `postgres` give `None`.
    pub(crate) fn without_tx(store: &'a Store) -> Self {
        ProjectionContext { tx: None, store }
    }

    /// The batch transaction's connection when the store is SQLite.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        self.tx.as_deref_mut()?.sqlite()
    }

    /// The batch transaction's connection when the store is PostgreSQL.
    #[cfg(feature = "postgres")]
    pub fn postgres(&mut self) -> Option<&mut PgConnection> {
        self.tx.as_deref_mut()?.postgres()
    }

    /// `event` decoded into the typed event `E` (with the store's upcasters).
    ///
    /// # Errors
    /// As [`Store::decode_event`].
    pub fn decode<E: DomainEvent>(&self, event: &RecordedEvent) -> Result<E> {
        self.store.decode_event(event)
    }

    /// Every domain event `event` stands for (several when an upcaster splits it, none
    /// when its type was dropped).
    ///
    /// # Errors
    /// As [`Store::decode_events`].
    pub fn decode_events<E: DomainEvent>(&self, event: &RecordedEvent) -> Result<Vec<E>> {
        self.store.decode_events(event)
    }
}

impl std::fmt::Debug for ProjectionContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionContext").finish_non_exhaustive()
    }
}
