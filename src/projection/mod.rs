//! Projections: background tasks that turn the global log into read models.
//!
//! A [`Projection`] has a unique name and applies one event at a time. The runner
//! ([`Store::projections`](crate::Store::projections)) reads the log from the projection's
//! checkpoint in batches, then follows new appends. Each batch runs in one database
//! transaction that also records the checkpoint:
//!
//! - **Read models in the store's database** (written through
//!   [`ProjectionContext::execute`] with [portable SQL](crate::Sql), or
//!   [`ProjectionContext::sqlite`] / [`ProjectionContext::postgres`]) commit together with
//!   the checkpoint: every event's effect is applied exactly once, even when the process
//!   dies mid-batch. The projection creates its tables in its [`Projection::setup`] hook,
//!   through the same connection: on PostgreSQL they land in the store's schema, which
//!   comes first on the `search_path` of every connection of the store's pool, so the
//!   application reads them unqualified ([`Store::fetch_all`],
//!   [`Store::postgres_pool`](crate::Store::postgres_pool)).
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
use crate::panics::CatchPanic;
use crate::portable::{Sql, SqlRow, Target};
use crate::read::EventParts;
use crate::store::Store;
use crate::store::batch::{DynTx, Flush};

/// What a projection's handler returns when it cannot apply an event.
pub type ProjectionError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A read model fed from the global log: implement [`name`](Projection::name) and
/// [`apply`](Projection::apply), and, for a read model in the store's database,
/// [`setup`](Projection::setup) (create its tables) and [`reset`](Projection::reset)
/// (empty them for a rebuild). With [portable SQL](crate::Sql) the statements are written
/// once for SQLite and PostgreSQL:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> chronicle::Result<()> {
/// use chronicle::{ExpectedVersion, NewEvent, Projection, ProjectionContext, ProjectionError,
///                 RecordedEvent, Sql, Store};
///
/// /// `deposits (account, total)`, in the store's database (on PostgreSQL, its schema).
/// struct Deposits;
///
/// impl Projection for Deposits {
///     fn name(&self) -> &str {
///         "deposits" // its checkpoint's name
///     }
///
///     fn event_types(&self) -> &[&str] {
///         &["account.Deposited"] // the default, empty, is every type
///     }
///
///     async fn setup(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
///         ctx.execute("CREATE TABLE IF NOT EXISTS deposits \
///                      (account TEXT PRIMARY KEY, total BIGINT NOT NULL)").await?;
///         Ok(())
///     }
///
///     async fn apply(
///         &self,
///         event: &RecordedEvent,
///         ctx: &mut ProjectionContext<'_>,
///     ) -> Result<(), ProjectionError> {
///         let amount = event.json()?["amount"].as_i64().ok_or("no amount")?;
///         ctx.execute(
///             Sql::new("INSERT INTO deposits (account, total) VALUES ($1, $2) \
///                       ON CONFLICT (account) DO UPDATE SET total = deposits.total + $2")
///                 .bind(event.stream_id.as_str())
///                 .bind(amount),
///         )
///         .await?;
///         Ok(())
///     }
///
///     async fn reset(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
///         ctx.execute("DELETE FROM deposits").await?;
///         Ok(())
///     }
/// }
///
/// let store = Store::open("sqlite::memory:").await?;
/// let deposit = NewEvent::new("account.Deposited", serde_json::json!({ "amount": 5 }));
/// store.append("account-ada", ExpectedVersion::Any, vec![deposit]).await?;
///
/// let handle = store.projections().spawn(Deposits);
/// handle.wait_for_idle().await?;
/// let row = store
///     .fetch_optional(Sql::new("SELECT total FROM deposits WHERE account = $1").bind("account-ada"))
///     .await?
///     .expect("a row");
/// assert_eq!(row.get::<i64>("total")?, 5);
/// handle.stop().await?;
/// # Ok(()) }
/// ```
///
/// A read model kept elsewhere (in memory, another database, a cache) needs only `name`
/// and `apply`, and is at-least-once: after a crash its last batch is applied again. Its
/// methods are `async fn`s that return `Send` futures: implement them with `async fn`, no
/// macro needed. To test a projection over given events, see
/// [`testing::ProjectionTest`](crate::testing::ProjectionTest).
pub trait Projection: Send + Sync + 'static {
    /// The projection's unique name: its checkpoint is stored under it.
    fn name(&self) -> &str;

    /// The event types this projection applies; empty (the default) means all.
    fn event_types(&self) -> &[&str] {
        &[]
    }

    /// The parts of each event this projection reads: [`EventParts::ALL`] (the default),
    /// or less, for a leaner read of the log. The runner then fetches only those columns
    /// (on SQLite and PostgreSQL), and what was not asked for is absent from the events
    /// `apply` gets: without [`EventParts::PAYLOAD`] the payload is empty (so
    /// [`RecordedEvent::data`] and [`ProjectionContext::decode`] fail), without
    /// [`EventParts::METADATA`] the metadata is [`EventMetadata::default`]. The id,
    /// stream, version, log position, type, schema version and time always come.
    ///
    /// Without the payload nothing is decrypted, so the events of a forgotten stream
    /// ([`Store::forget`](crate::Store::forget)) come like the others, empty:
    /// [`ShreddedEvents`](crate::ShreddedEvents) applies to projections that read payloads.
    ///
    /// Only the runner's reads of the log are lean: an inline projection gets the events
    /// its append wrote, whole.
    ///
    /// [`EventMetadata::default`]: crate::EventMetadata
    fn event_parts(&self) -> EventParts {
        EventParts::ALL
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

    /// Creates or migrates the read model's tables, before the projection applies
    /// anything. The default does nothing.
    ///
    /// It runs in a transaction of its own on the store's database, through `ctx` (as
    /// `apply` does: [`ProjectionContext::execute`] with portable SQL, or
    /// [`ProjectionContext::sqlite`] / [`ProjectionContext::postgres`]), so on PostgreSQL
    /// a table created without a schema lands in the store's [schema](crate::StoreBuilder::schema),
    /// where [`Store::postgres_pool`](crate::Store::postgres_pool) and
    /// [`Store::fetch_all`](crate::Store::fetch_all) find it; no second pool is needed.
    ///
    /// **It runs every time a runner starts** (on PostgreSQL once this instance holds the
    /// projection's lease, so two instances never run it at once), before
    /// [`Projections::rebuild`](crate::Projections::rebuild)'s reset, and, for an inline
    /// projection, when the store opens. So it must be idempotent: `CREATE TABLE IF NOT
    /// EXISTS`, `CREATE INDEX IF NOT EXISTS`, a migration that checks what is there. It
    /// runs before [`Projection::reset`], which may then rely on the tables.
    ///
    /// # Errors
    /// Any error: nothing of the hook's transaction is kept. The runner retries it like a
    /// batch, then fails the projection with
    /// [`Error::ProjectionSetup`](crate::Error::ProjectionSetup); `rebuild` and an
    /// inline projection's store open return that error.
    fn setup(
        &self,
        ctx: &mut ProjectionContext<'_>,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        let _ = ctx;
        async { Ok(()) }
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

    fn setup<'a>(
        &'a self,
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

    fn setup<'a>(
        &'a self,
        ctx: &'a mut ProjectionContext<'_>,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(Projection::setup(self, ctx))
    }
}

/// Runs `projection`'s [`Projection::setup`] in a transaction of its own, committed when
/// the hook succeeds (a panic in it counts as its error).
///
/// # Errors
/// [`Error::ProjectionSetup`](crate::Error::ProjectionSetup) when the hook fails; the
/// store's errors opening or committing the transaction.
pub(crate) async fn set_up<P: DynProjection + ?Sized>(projection: &P, store: &Store) -> Result<()> {
    let span = tracing::info_span!("chronicle.projection.setup", projection = %projection.name());
    async {
        let mut tx = store.begin_batch(Flush::Wait).await?;
        {
            let mut ctx = ProjectionContext::new(&mut *tx, store);
            let refused: Option<ProjectionError> =
                match CatchPanic::new(projection.setup(&mut ctx)).await {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error),
                    Err(panicked) => Some(format!("panicked: {}", panicked.message).into()),
                };
            if let Some(source) = refused {
                return Err(crate::error::Error::ProjectionSetup {
                    name: projection.name().to_owned(),
                    source,
                });
            }
        }
        tx.commit().await
    }
    .instrument(span)
    .await
}

/// What a projection's hooks can reach: the batch's open transaction (writes through it
/// commit with the checkpoint), with [portable SQL](crate::Sql)
/// ([`execute`](Self::execute), [`fetch_all`](Self::fetch_all),
/// [`fetch_optional`](Self::fetch_optional)) or the driver's connection
/// ([`sqlite`](Self::sqlite), [`postgres`](Self::postgres)); and the store, for typed
/// decoding ([`decode`](Self::decode)).
pub struct ProjectionContext<'a> {
    /// `None` for the runner's internal users that apply before the batch's transaction
    /// opens (the bus relay, which must not hold SQLite's write lock while a broker
    /// answers).
    tx: Option<&'a mut dyn DynTx>,
    store: &'a Store,
}

impl<'a> ProjectionContext<'a> {
    pub(crate) fn new(tx: &'a mut dyn DynTx, store: &'a Store) -> Self {
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

    /// The batch transaction's connection when the store is PostgreSQL. Its `search_path`
    /// starts with the store's [schema](crate::StoreBuilder::schema): tables named without
    /// a schema are the store's.
    #[cfg(feature = "postgres")]
    pub fn postgres(&mut self) -> Option<&mut PgConnection> {
        self.tx.as_deref_mut()?.postgres()
    }

    /// Runs a statement of [portable SQL](crate::Sql) in the batch's transaction (so it
    /// commits with the checkpoint), the same text on SQLite and PostgreSQL; returns the
    /// number of rows it changed. On PostgreSQL it runs in the store's schema: tables
    /// named without a schema are the store's.
    ///
    /// # Errors
    /// [`Error::Sql`](crate::Error::Sql) when the database refuses or fails it;
    /// [`Error::SqlUnavailable`](crate::Error::SqlUnavailable) on the memory store built without the
    /// `sqlite` feature, or in
    /// a context without a transaction (a relay's).
    pub async fn execute(&mut self, sql: impl Into<Sql>) -> Result<u64> {
        self.prepare_sql().await?;
        self.sql_target().execute(sql.into()).await
    }

    /// Runs a query of [portable SQL](crate::Sql) in the batch's transaction and returns
    /// its rows (it sees the batch's own writes).
    ///
    /// # Errors
    /// As [`ProjectionContext::execute`].
    pub async fn fetch_all(&mut self, sql: impl Into<Sql>) -> Result<Vec<SqlRow>> {
        self.prepare_sql().await?;
        self.sql_target().fetch_all(sql.into()).await
    }

    /// [`ProjectionContext::fetch_all`], for the first row only (`None` when there is
    /// none).
    ///
    /// # Errors
    /// As [`ProjectionContext::execute`].
    pub async fn fetch_optional(&mut self, sql: impl Into<Sql>) -> Result<Option<SqlRow>> {
        self.prepare_sql().await?;
        self.sql_target().fetch_optional(sql.into()).await
    }

    /// Lets the batch's transaction take its SQL connection, if it takes it late.
    async fn prepare_sql(&mut self) -> Result<()> {
        match self.tx.as_deref_mut() {
            Some(tx) => tx.prepare_sql().await,
            None => Ok(()),
        }
    }

    fn sql_target(&mut self) -> Target<'_> {
        match self.tx.as_deref_mut() {
            Some(tx) => tx.sql().map_or(
                Target::None("no SQL database: the memory store keeps read models only with the `sqlite` feature"),
                Target::from,
            ),
            None => Target::None("this projection context has no transaction"),
        }
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
