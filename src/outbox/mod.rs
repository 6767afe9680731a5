//! The outbox: every appended event can trigger side effects (emails, calls to other
//! services), executed at least once, with retries, in the same database as the events.
//!
//! - The **processor** ([`Outbox::process`]) reads the global log from its checkpoint
//!   (gap-safe, in windows, as projections do) and creates one request per (event,
//!   matching handler) in `handler_requests`, moving its checkpoint in the same
//!   transaction: no event gets its requests twice, or never.
//! - The **executor** ([`Outbox::execute`]) claims due requests (by priority, then log
//!   order) under a lease, runs their handlers on a bounded set of workers, and records
//!   each outcome: done; failed, to be retried after the handler's backoff; or dead, after
//!   too many failures or a [fatal](HandlerError::fatal) error. A request whose executor
//!   died is claimed again when its lease runs out.
//! - **Schedulers** run both until shut down: [`CooperativeScheduler`] in turn on one
//!   task, [`ConcurrentScheduler`] as two loops.
//!
//! - **Start positions**: a handler gets requests only for events after its start
//!   ([`Handler::start_from`], a [`StartFrom`]), recorded when the processor first sees
//!   it. **The default is from now on** ([`StartFrom::End`]): side effects do not replay
//!   history. The processor's first run starts at the earliest start of its handlers.
//!   (Projections default to the beginning.)
//! - **Waiting**: [`Outbox::wait_until`] a log position and [`Outbox::wait_for_idle`]
//!   return once the requests up to there are done or dead; [`SchedulerHandle`] has both
//!   too, failing if its task ends first.
//!
//! Every backend keeps the requests with the events: SQLite and PostgreSQL in their
//! database, the memory backend in its tables (for tests without a server).

mod admin;
mod executor;
mod handlers;
mod processor;
mod report;
mod scheduler;
pub(crate) mod testing;
mod wait;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use admin::{DeadRequest, HandlerStats, OutboxAdmin, OutboxStats};
pub use executor::ExecutionReport;
pub use handlers::{Backoff, Handler, HandlerError, HandlerMap, HandlerRequest, Pattern};
pub use report::{ErrorReporter, Failure, FailureKind, TracingReporter};
pub use scheduler::{ConcurrentScheduler, CooperativeScheduler, SchedulerHandle, SchedulerReport};

use crate::error::Result;
use crate::projection::StartFrom;
use crate::read::LogPosition;
use crate::store::{ShreddedEvents, Store};

/// The default name of the processor's checkpoint.
pub(crate) const DEFAULT_NAME: &str = "chronicle.outbox";

/// An outbox on a store: its handlers and settings. Build it with
/// [`Store::outbox`](crate::Store::outbox); run it with a scheduler, or step it by hand
/// with [`Outbox::process`] and [`Outbox::execute`].
///
/// ```
/// # async fn demo(store: chronicle::Store) -> chronicle::Result<()> {
/// use chronicle::{Handler, HandlerMap, HandlerRequest};
///
/// let handlers = HandlerMap::new().route(Handler::new(
///     "welcome-email",
///     "account.Opened",
///     |request: HandlerRequest| async move {
///         println!("welcome, {}", request.event.stream_id);
///         Ok(())
///     },
/// ));
/// let outbox = store.outbox(handlers)?.workers(8);
/// let running = outbox.concurrent().spawn();
/// // …
/// let report = running.stop().await?; // the batch in hand finishes first
/// # let _ = report;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    handlers: Arc<HandlerMap>,
    /// The handlers' names as a JSON array, as claims take them (computed once).
    handler_names: Arc<str>,
    /// The event types the processor reads (all when empty; computed once).
    event_types: Arc<[String]>,
    settings: Settings,
    reporter: Arc<dyn ErrorReporter>,
    /// Wakes the executor when the processor created requests (in this process).
    created: Arc<tokio::sync::Notify>,
    /// This outbox's executor id, written on the requests it claims.
    executor_id: Arc<str>,
    /// Where each handler starts, as recorded in the database (read once, by the first
    /// window the processor reads).
    starts: Arc<tokio::sync::OnceCell<Arc<HashMap<String, LogPosition>>>>,
}

#[derive(Debug, Clone)]
struct Settings {
    name: String,
    batch_size: usize,
    workers: usize,
    lease: Duration,
    poll_interval: Duration,
    /// Done requests older than this are deleted by the schedulers.
    purge_done_after: Option<Duration>,
    /// What becomes of requests for events of forgotten streams.
    shredded: ShreddedEvents,
    /// Where handlers without a start of their own start.
    start: StartFrom,
}

impl Store {
    /// An outbox running `handlers` on this store, with its checkpoint named
    /// `chronicle.outbox`, batches of 1,000 events, 4 workers, a 60 s lease and a 500 ms
    /// poll.
    ///
    /// # Errors
    /// [`ValidationError::Config`](crate::ValidationError::Config) for an empty map or two
    /// handlers with one name; [`ValidationError::Unsupported`](crate::ValidationError::Unsupported)
    /// on a store whose backend keeps no outbox (every backend of chronicle's keeps one).
    pub fn outbox(&self, handlers: HandlerMap) -> Result<Outbox> {
        handlers.check()?;
        outbox_kept(self)?;
        let handler_names = serde_json::to_string(&handlers.names())
            .map_err(|error| crate::Error::Internal(error.to_string()))?;
        Ok(Outbox {
            store: self.clone(),
            handler_names: handler_names.into(),
            event_types: handlers.event_types().into(),
            handlers: Arc::new(handlers),
            settings: Settings {
                name: DEFAULT_NAME.to_owned(),
                batch_size: 1000,
                workers: 4,
                lease: Duration::from_secs(60),
                poll_interval: Duration::from_millis(500),
                purge_done_after: None,
                shredded: ShreddedEvents::Skip,
                start: StartFrom::End,
            },
            reporter: Arc::new(TracingReporter),
            created: Arc::new(tokio::sync::Notify::new()),
            executor_id: Arc::from(uuid::Uuid::now_v7().to_string()),
            starts: Arc::new(tokio::sync::OnceCell::new()),
        })
    }
}

impl Outbox {
    /// The processor's checkpoint name: outboxes with different handlers on one store need
    /// different names.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// The processor's checkpoint name ([`Outbox::name`]; `chronicle.outbox` by default).
    pub fn checkpoint_name(&self) -> &str {
        &self.settings.name
    }

    /// Events the processor reads per transaction (at least 1).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.settings.batch_size = events.max(1);
        self
    }

    /// Handlers run at once by this outbox's executor (at least 1): also the most requests
    /// it claims at a time.
    pub fn workers(mut self, workers: usize) -> Self {
        self.settings.workers = workers.max(1);
        self
    }

    /// How long a claimed request stays this executor's (at least 1 s; default 60 s): if
    /// the process dies, another executor runs the request again after this. Handlers
    /// are stopped at 90% of it, whatever their timeout.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.settings.lease = lease.max(Duration::from_secs(1));
        self
    }

    /// How often the schedulers look for work nobody told them about (events appended by
    /// other processes without a notification, retries coming due).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Has the schedulers delete done requests older than `age`, at most once a minute
    /// (default: kept until [`Outbox::purge_done`] is called).
    pub fn purge_done_after(mut self, age: Duration) -> Self {
        self.settings.purge_done_after = Some(age);
        self
    }

    /// What becomes of requests for events of forgotten streams ([`Store::forget`]): done
    /// without running the handler (the default), or dead at once
    /// ([`ShreddedEvents::Fail`]).
    pub fn on_shredded(mut self, shredded: ShreddedEvents) -> Self {
        self.settings.shredded = shredded;
        self
    }

    /// Where the handlers that do not set their own start
    /// ([`Handler::start_from`]) start. **Default: [`StartFrom::End`], from now on**: a
    /// handler gets requests only for events appended after the processor first saw it,
    /// so that turning an outbox on, or adding a handler, on a store with history does
    /// not replay side effects. [`StartFrom::Beginning`] gives them every event.
    ///
    /// The processor itself, on its first run (no checkpoint yet), starts at the earliest
    /// of its handlers' starts: the end of the log unless a handler asks for more.
    /// (Projections, by contrast, start at the beginning by default.)
    ///
    /// "Now" is when the processor first reads the log: a scheduler's first turn, which
    /// runs on its own task, or [`Outbox::process`]. To fix it before appending, call
    /// `outbox.process().await?` before spawning the scheduler.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.settings.start = start;
        self
    }

    /// Where non-retryable errors, panics and dead requests are reported (default:
    /// [`TracingReporter`]).
    pub fn error_reporter(mut self, reporter: impl ErrorReporter) -> Self {
        self.reporter = Arc::new(reporter);
        self
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("handlers", &self.handlers)
            .field("settings", &self.settings)
            .field("executor_id", &self.executor_id)
            .finish_non_exhaustive()
    }
}

/// Refuses a store whose backend keeps no outbox (its capabilities say so).
fn outbox_kept(store: &Store) -> Result<()> {
    if store.keeps_outbox() {
        Ok(())
    } else {
        Err(crate::ValidationError::Unsupported {
            backend: store.backend_kind(),
            feature: "the outbox",
        }
        .into())
    }
}

/// Microseconds since the Unix epoch, as `handler_requests` stores times.
fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// `duration` in microseconds, saturating.
fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}
