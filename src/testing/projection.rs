//! A fixture for tests of a projection and its read model: given these events, the
//! projection built this read model.
//!
//! [`ProjectionTest`] appends the events to a fresh in-memory SQLite store (or a store of
//! the test's), runs the projection over them with the real runner (its `setup` and
//! `reset` hooks, `apply_batch`, one transaction per batch) until it is idle, stops it,
//! and hands back the store and the projection ([`Projected`]), so that the test reads
//! the read model with the application's own statements.

use std::sync::Arc;
use std::time::Duration;

use crate::domain_event::DomainEvent;
use crate::error::Result;
use crate::event::{NewEvent, RecordedEvent};
use crate::portable::{Sql, SqlRow};
use crate::projection::{Projection, ProjectionContext, ProjectionError, ProjectionStatus};
use crate::store::Store;
use crate::stream::ExpectedVersion;

/// Runs a projection over given events, for a test of its read model.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> chronicle::Result<()> {
/// use chronicle::testing::ProjectionTest;
/// use chronicle::{DomainEvent, Projection, ProjectionContext, ProjectionError, RecordedEvent, Sql};
///
/// #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// #[event(prefix = "bank.")]
/// enum AccountEvent {
///     Deposited { amount: i64 },
/// }
///
/// struct Balances;
///
/// impl Projection for Balances {
///     fn name(&self) -> &str {
///         "balances"
///     }
///
///     async fn setup(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
///         ctx.execute("CREATE TABLE IF NOT EXISTS balances \
///                      (account TEXT PRIMARY KEY, balance BIGINT NOT NULL)").await?;
///         Ok(())
///     }
///
///     async fn apply(&self, event: &RecordedEvent, ctx: &mut ProjectionContext<'_>)
///         -> Result<(), ProjectionError>
///     {
///         let AccountEvent::Deposited { amount } = ctx.decode(event)?;
///         ctx.execute(
///             Sql::new("INSERT INTO balances (account, balance) VALUES ($1, $2) \
///                       ON CONFLICT (account) DO UPDATE SET balance = balances.balance + $2")
///                 .bind(event.stream_id.as_str())
///                 .bind(amount),
///         )
///         .await?;
///         Ok(())
///     }
/// }
///
/// let projected = ProjectionTest::new(Balances)
///     .given("account-ada", [AccountEvent::Deposited { amount: 5 }, AccountEvent::Deposited { amount: 7 }])
///     .given("account-bob", [AccountEvent::Deposited { amount: 1 }])
///     .run()
///     .await?;
/// let rows = projected.fetch_all("SELECT account, balance FROM balances ORDER BY account").await?;
/// assert_eq!(rows.len(), 2);
/// assert_eq!(rows[0].get::<String>("account")?, "account-ada");
/// assert_eq!(rows[0].get::<i64>("balance")?, 12);
/// assert_eq!(projected.status().applied, 3);
/// # Ok(()) }
/// ```
#[must_use = "the projection runs only once `run` is awaited"]
pub struct ProjectionTest<P: Projection> {
    projection: P,
    given: Vec<(String, Result<Vec<NewEvent>>)>,
    store: Option<Store>,
}

impl<P: Projection> ProjectionTest<P> {
    /// A test of `projection`, with no events yet.
    pub fn new(projection: P) -> Self {
        ProjectionTest {
            projection,
            given: Vec::new(),
            store: None,
        }
    }

    /// Typed events, appended to `stream` in order (after the events given before).
    pub fn given<E: DomainEvent>(
        mut self,
        stream: impl Into<String>,
        events: impl IntoIterator<Item = E>,
    ) -> Self {
        let events = events
            .into_iter()
            .map(|event| event.to_new_event())
            .collect();
        self.given.push((stream.into(), events));
        self
    }

    /// Events as stored ([`NewEvent`]: any type, payload and metadata), appended to
    /// `stream` in order (after the events given before).
    pub fn given_events(
        mut self,
        stream: impl Into<String>,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Self {
        self.given
            .push((stream.into(), Ok(events.into_iter().collect())));
        self
    }

    /// Runs on `store` instead of a fresh in-memory SQLite store: a PostgreSQL test
    /// database, a store with the application's upcasters. The events are appended to
    /// what it already holds.
    pub fn on(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Appends the given events, runs the projection until it has applied all of them,
    /// and stops it.
    ///
    /// # Errors
    /// A given event that does not encode; the store's errors; and when the projection
    /// fails (its `setup`, `reset` or `apply` returns an error, tried once),
    /// [`Error::ProjectionStopped`](crate::Error::ProjectionStopped), whose `source()` is
    /// the projection's own error.
    pub async fn run(self) -> Result<Projected<P>> {
        let store = match self.store {
            Some(store) => store,
            None => Store::open("sqlite::memory:").await?,
        };
        for (stream, events) in self.given {
            let events = events?;
            if !events.is_empty() {
                store.append(&stream, ExpectedVersion::Any, events).await?;
            }
        }
        let projection = Arc::new(self.projection);
        let handle = store
            .projections()
            .poll_interval(Duration::from_millis(10))
            .retries(1, Duration::ZERO)
            .spawn(Shared(Arc::clone(&projection)));
        let waited = handle.wait_for_idle().await;
        let stopped = handle.stop().await;
        waited?;
        let status = stopped?;
        Ok(Projected {
            store,
            projection,
            status,
        })
    }
}

impl<P: Projection + std::fmt::Debug> std::fmt::Debug for ProjectionTest<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionTest")
            .field("projection", &self.projection)
            .field("streams", &self.given.len())
            .finish_non_exhaustive()
    }
}

/// What [`ProjectionTest::run`] built: the store holding the events and the read model,
/// and the projection (for a read model it keeps in memory).
#[derive(Debug)]
pub struct Projected<P> {
    store: Store,
    projection: Arc<P>,
    status: ProjectionStatus,
}

impl<P> Projected<P> {
    /// The store: its events, and the read model in its database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The projection, as the run left it.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The projection's final status (`applied`, `skipped`, `position`).
    pub fn status(&self) -> &ProjectionStatus {
        &self.status
    }

    /// Reads the read model: [`Store::fetch_all`] on the test's store.
    ///
    /// # Errors
    /// As [`Store::fetch_all`].
    pub async fn fetch_all(&self, sql: impl Into<Sql>) -> Result<Vec<SqlRow>> {
        self.store.fetch_all(sql).await
    }

    /// Reads one row of the read model: [`Store::fetch_optional`] on the test's store.
    ///
    /// # Errors
    /// As [`Store::fetch_all`].
    pub async fn fetch_optional(&self, sql: impl Into<Sql>) -> Result<Option<SqlRow>> {
        self.store.fetch_optional(sql).await
    }
}

/// The projection under test, shared so that [`Projected`] can hand it back.
struct Shared<P>(Arc<P>);

impl<P: Projection> Projection for Shared<P> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn event_types(&self) -> &[&str] {
        self.0.event_types()
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        self.0.apply(event, ctx).await
    }

    async fn apply_batch(
        &self,
        events: &[RecordedEvent],
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        self.0.apply_batch(events, ctx).await
    }

    async fn reset(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
        self.0.reset(ctx).await
    }

    async fn setup(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
        self.0.setup(ctx).await
    }
}
