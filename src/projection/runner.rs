//! The projection runner: one tokio task per projection that catches up from its
//! checkpoint in batches, then follows new appends, and the handle that watches and stops
//! it.
//!
//! The runner reads the log in windows, with the store's gap-safe `read_all` machinery
//! (`Store::read_window`): up to [`READ_WINDOW`] events (the batch size when larger),
//! fewer at the byte budget. A window's events of the projection's types are applied in
//! batches of at most `batch_size`, each in one transaction closed by moving the
//! checkpoint to its last event (the window's last batch: to the window's end), whose
//! commit does not wait for the disk (`Flush::Defer`). While catching up, the next window
//! is read on a task of its own while the current one is applied and committed. The task
//! wakes on appends
//! (this process's, and on PostgreSQL other processes' through LISTEN/NOTIFY) and polls as
//! a fallback. A failing batch is rolled back and retried with backoff, event by event
//! after a failed `apply_batch`; after the bound, the runner stops as failed or steps over
//! the failing event, as configured. A panic in `apply` or `apply_batch` is caught and
//! counts as that call's failure; a panic anywhere else in the task ends it as failed.
//! The failure keeps the projection's own error, for [`ProjectionHandle::stop`] and the
//! waits to return as their error's `source()`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, PoisonError};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{Projection, ProjectionContext, ProjectionError};
use crate::error::{Error, Result, SharedError};
use crate::event::RecordedEvent;
use crate::panics::CatchPanic;
use crate::read::LogPosition;
use crate::store::backend::Lease;
use crate::store::batch::Flush;
use crate::store::read::LogWindow;
use crate::store::{DEFAULT_WINDOW_BYTES, ShreddedEvents, Store, WindowLimit};
use crate::task::{Task, stop_requested};
use crate::telemetry;

/// The events a read of the log asks for, or the batch size when larger (a window ends
/// earlier at `window_bytes` or at the log's end). While catching up, each read pays for
/// a statement and its first row: windows larger than the batches measured faster
/// (BENCHMARKS.md, "The projection runner's windows"). A window is applied in batches of
/// `batch_size`.
const READ_WINDOW: usize = 50_000;
/// How often an instance on standby tries to take the lease.
const LEASE_RETRY: Duration = Duration::from_secs(1);
/// How often the active instance checks its lease still holds, and how long it waits for
/// the answer.
const LEASE_CHECK: Duration = Duration::from_secs(1);

/// What the runner does with an event whose handler still fails after the retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Stop the projection as failed, naming the event (the default). Its checkpoint stays
    /// before the event; a restart tries it again.
    #[default]
    Stop,
    /// Step over the event: record it (SQL backends: in `projection_skipped`, with the
    /// error), log a warning, count it in the status, and go on.
    Skip,
}

/// Where a projection (or a relay) starts reading the log when it has no checkpoint yet.
/// Once it committed a batch, it resumes from its checkpoint whatever this says; a
/// [rebuild](Projections::rebuild) starts from the beginning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The first event of the log (the default of projections).
    #[default]
    Beginning,
    /// The end of the log when it first starts: only events committed from then on
    /// ("from now on"). On PostgreSQL the end is the last event behind every transaction
    /// still running, so an event appended just before the start may come too; none
    /// appended after it is missed.
    End,
    /// After this position (say, an event's [`RecordedEvent::log_position`]).
    After(LogPosition),
}

/// Where a projection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionState {
    /// Reading its checkpoint.
    Starting,
    /// Another instance runs the projection (PostgreSQL lease); this one takes over when
    /// that one stops or dies.
    Standby,
    /// Applying batches of older events.
    CatchingUp,
    /// Caught up with the log, following new appends.
    Running,
    /// Stopped on request.
    Stopped,
    /// Stopped by an event its handler could not apply (an error or a panic, after the
    /// retries), an event that could not be read, or a panic in the task; see
    /// `last_error`, and [`ProjectionHandle::stop`] for the error itself.
    Failed,
}

/// A snapshot of a projection's progress, from [`ProjectionHandle::status`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// Where it is in its life.
    pub state: ProjectionState,
    /// The checkpoint: every event up to here is applied.
    pub position: LogPosition,
    /// Events applied since the task started.
    pub applied: u64,
    /// Events stepped over since the task started ([`FailurePolicy::Skip`]).
    pub skipped: u64,
    /// How old the last applied event was when it was applied (zero once caught up).
    #[serde(rename = "lag_ms", with = "crate::millis")]
    pub lag: Duration,
    /// About how many events are still to apply: the distance from the checkpoint's
    /// position to the log's last position, measured after each full batch (0 once caught
    /// up). Positions freed by hard deletes or rolled-back appends count too.
    pub lag_events: u64,
    /// Events applied per second, over about the last second (falls to 0 when idle).
    pub rate: f64,
    /// The last error met, even if a retry then succeeded.
    pub last_error: Option<String>,
    /// How many times the task found the log exhausted.
    #[serde(skip)]
    idle_passes: u64,
}

/// Configures and starts projections on a store: `store.projections()`.
#[derive(Debug, Clone)]
#[must_use = "a projection runs only once `spawn` is called"]
pub struct Projections {
    store: Store,
    settings: Settings,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    batch_size: usize,
    window_bytes: usize,
    poll_interval: Duration,
    max_attempts: u32,
    backoff: Duration,
    on_failure: FailurePolicy,
    shredded: ShreddedEvents,
    start: StartFrom,
    /// The longest pause between retries of a failing batch.
    max_backoff: Duration,
    /// Whether a batch's commit waits for the disk.
    flush: Flush,
    /// Whether the projection applies a batch before its transaction opens (it then has
    /// no connection): the relay, whose sink's answer must not hold SQLite's write lock.
    apply_outside_tx: bool,
}

impl Store {
    /// Starts projections on this store: events in batches of up to 10,000, a poll every
    /// 500 ms besides the wake-up on this process's appends, 3 tries per batch with a 100 ms
    /// backoff that doubles, and [`FailurePolicy::Stop`].
    pub fn projections(&self) -> Projections {
        Projections {
            store: self.clone(),
            settings: Settings {
                batch_size: 10_000,
                window_bytes: DEFAULT_WINDOW_BYTES,
                poll_interval: Duration::from_millis(500),
                max_attempts: 3,
                backoff: Duration::from_millis(100),
                on_failure: FailurePolicy::Stop,
                shredded: ShreddedEvents::Skip,
                start: StartFrom::Beginning,
                max_backoff: Duration::MAX,
                flush: Flush::Defer,
                apply_outside_tx: false,
            },
        }
    }
}

impl Projections {
    /// Most events applied per transaction (at least 1; default 10,000). While catching
    /// up, every batch is full and pays for a transaction and a checkpoint, so small
    /// batches cost throughput; once live, a batch holds whatever was appended since the
    /// last one. The log is read in windows of up to 50,000 events
    /// (or this size, when larger; either way ended early by
    /// [`window_bytes`](Projections::window_bytes)), applied batch by batch; a window is
    /// held in memory, twice while catching up (the next one is read during the apply).
    /// On SQLite a batch's transaction holds the write lock while the projection applies
    /// it.
    pub fn batch_size(mut self, events: usize) -> Self {
        self.settings.batch_size = events.max(1);
        self
    }

    /// Most bytes of stored payloads per window of the log (default
    /// [`DEFAULT_WINDOW_BYTES`], 32 MiB): a window, and so its last batch, ends early at
    /// the event whose payload reaches it, so large events do not make windows of 50,000
    /// × their size (held twice while catching up). A window always holds at least one
    /// event, and never skips one.
    pub fn window_bytes(mut self, bytes: usize) -> Self {
        self.settings.window_bytes = bytes.max(1);
        self
    }

    /// How often to look for events appended by other processes.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll_interval = interval;
        self
    }

    /// Tries per failing batch (at least 1), and the pause after the first failure
    /// (doubling after each).
    pub fn retries(mut self, attempts: u32, backoff: Duration) -> Self {
        self.settings.max_attempts = attempts.max(1);
        self.settings.backoff = backoff;
        self
    }

    /// What to do with an event whose handler still fails after the retries.
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.settings.on_failure = policy;
        self
    }

    /// What to do with events of forgotten streams ([`Store::forget`]): pass over them
    /// (the default), or fail like an event that does not decode.
    pub fn on_shredded(mut self, shredded: ShreddedEvents) -> Self {
        self.settings.shredded = shredded;
        self
    }

    /// Where a projection without a checkpoint starts (default
    /// [`StartFrom::Beginning`]). The start is stored as its checkpoint before the first
    /// batch, so a restart resumes from there.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.settings.start = start;
        self
    }

    /// The longest pause between retries of a failing batch (default: none, the pause
    /// doubles after each failure).
    pub(crate) fn max_backoff(mut self, pause: Duration) -> Self {
        self.settings.max_backoff = pause;
        self
    }

    /// Whether a batch's commit waits for the disk (default: it does not).
    pub(crate) fn flush(mut self, flush: Flush) -> Self {
        self.settings.flush = flush;
        self
    }

    /// Applies batches before their transaction opens (see `Settings`).
    pub(crate) fn apply_outside_tx(mut self) -> Self {
        self.settings.apply_outside_tx = true;
        self
    }

    /// Rebuilds `projection`'s read model from the start of the log: in one transaction,
    /// calls its [`Projection::reset`] hook and deletes its checkpoint; then starts it
    /// like [`Projections::spawn`]. Follow the progress with
    /// [`ProjectionStatus::applied`] and [`ProjectionStatus::lag_events`]. The read model
    /// is rebuilt in place: readers see it fill up again (there is no blue/green swap).
    ///
    /// The projection's [`Projection::setup`] hook runs first, in a transaction of its
    /// own, so that the reset finds its tables.
    ///
    /// **With the projection still running** (a handle of this process not stopped, or
    /// another instance): the rebuild is safe, but stop the running handle first to get
    /// what you expect. The running runner notices the deleted checkpoint at its next
    /// batch (or within its poll interval when idle), calls `reset` again and rebuilds
    /// from the start itself. On PostgreSQL it holds the projection's lease, so the handle
    /// returned here waits in [`ProjectionState::Standby`] (its waits do not return) until
    /// that runner stops, then takes over. On SQLite, which has no lease, both runners
    /// run, and a batch commits only where the stored checkpoint is still where its runner
    /// left it: each batch is applied by one of them, and a read model in the store's
    /// database never gets an event twice. A read model elsewhere (at-least-once) may see
    /// the batches of both.
    ///
    /// # Errors
    /// [`Error::ProjectionSetup`] when the setup hook fails, [`Error::ProjectionReset`]
    /// when the reset hook fails (nothing is reset either way); connection errors.
    pub async fn rebuild<P: Projection>(&self, projection: P) -> Result<ProjectionHandle> {
        let name = projection.name().to_owned();
        // The tables first, so that the reset finds them.
        super::set_up(&projection, &self.store).await?;
        let mut tx = self.store.begin_batch(Flush::Wait).await?;
        // The checkpoint first: its row lock makes a batch in flight elsewhere finish
        // before the hook clears the read model, so none of its writes survive the reset.
        let _had_one = tx.reset_checkpoint(&name).await?;
        {
            let mut ctx = ProjectionContext::new(&mut *tx, &self.store);
            projection
                .reset(&mut ctx)
                .await
                .map_err(|source| Error::ProjectionReset {
                    name: name.clone(),
                    source,
                })?;
        }
        tx.commit().await?;
        tracing::info!(projection = %name, "projection reset; rebuilding from the start");
        let types = types_of(&projection);
        Ok(self.start(projection, types, Start::AlreadyReset))
    }

    /// Runs `projection`'s [`Projection::setup`] hook now, in a transaction of its own:
    /// for an application that reads the read model before the runner's first start has
    /// created its tables (the runner runs the hook again when it starts, so it must be
    /// idempotent anyway).
    ///
    /// # Errors
    /// [`Error::ProjectionSetup`] when the hook fails (nothing of it is kept); connection
    /// errors.
    pub async fn setup<P: Projection>(&self, projection: &P) -> Result<()> {
        super::set_up(projection, &self.store).await
    }

    /// Starts `projection` as a tokio task (call from within a tokio runtime). Keep the
    /// handle: dropping it stops the projection (see [`ProjectionHandle`]).
    ///
    /// Before anything else the task runs the projection's [`Projection::setup`] hook
    /// (on PostgreSQL once it holds the lease), retried like a batch; a hook that keeps
    /// failing fails the projection with [`Error::ProjectionSetup`].
    ///
    /// The read model always matches the stored checkpoint. Where no checkpoint is stored
    /// (the projection's first start, or after a reset: [`Projections::rebuild`],
    /// [`Store::reset_projection`], `chronicle projections reset`), the task first empties
    /// the read model with [`Projection::reset`], in a transaction that finds the
    /// checkpoint still missing, then applies the log from the start. A checkpoint deleted
    /// while the task runs is noticed at its next batch, or within a poll interval when
    /// idle, and handled the same way: the read model is emptied and rebuilt. A hook that
    /// keeps failing fails the projection with [`Error::ProjectionReset`].
    pub fn spawn<P: Projection>(&self, projection: P) -> ProjectionHandle {
        let types = types_of(&projection);
        self.spawn_with_types(projection, types)
    }

    /// [`Projections::spawn`], reading only events of `types` (all when empty) whatever
    /// the projection's [`Projection::event_types`] says.
    pub(crate) fn spawn_with_types<P: Projection>(
        &self,
        projection: P,
        types: Arc<[String]>,
    ) -> ProjectionHandle {
        self.start(projection, types, Start::FromStore)
    }

    fn start<P: Projection>(
        &self,
        projection: P,
        types: Arc<[String]>,
        start: Start,
    ) -> ProjectionHandle {
        let name = projection.name().to_owned();
        let (status_tx, status) = watch::channel(ProjectionStatus {
            state: ProjectionState::Starting,
            position: LogPosition::START,
            applied: 0,
            skipped: 0,
            lag: Duration::ZERO,
            lag_events: 0,
            rate: 0.0,
            last_error: None,
            idle_passes: 0,
        });
        let failure = Arc::new(OnceLock::new());
        let span = tracing::info_span!("chronicle.projection", projection = %name);
        let task = Task::spawn(format!("projection `{name}`"), span, |stop| {
            let runner = Runner {
                store: self.store.clone(),
                projection,
                name: name.clone(),
                types,
                settings: self.settings,
                status: status_tx,
                stop,
                failure: Arc::clone(&failure),
                start: std::sync::Mutex::new(start),
                set_up: AtomicBool::new(false),
            };
            async move {
                runner.run().await;
                Ok(())
            }
        });
        ProjectionHandle {
            name,
            status,
            failure,
            task,
        }
    }
}

/// The event types `projection` reads (all when empty).
fn types_of<P: Projection>(projection: &P) -> Arc<[String]> {
    projection
        .event_types()
        .iter()
        .map(|event_type| (*event_type).to_owned())
        .collect()
}

/// How a runner's first pass treats a missing checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Empty the read model first ([`Projection::reset`]).
    FromStore,
    /// [`Projections::rebuild`] just did, in the transaction that deleted the checkpoint.
    AlreadyReset,
}

/// A running projection: watch it, wait for it, stop it.
///
/// **Dropping the handle stops the projection**, as [`ProjectionHandle::stop`] does but
/// without waiting: the batch in hand is finished (or rolled back) and the task ends. On
/// PostgreSQL its lease's connection is closed with it, which ends the session holding
/// the advisory lock, so an instance on standby elsewhere takes over (within a second).
/// A handler that never returns keeps the task, and the lease, until
/// [`ProjectionHandle::abort`].
#[derive(Debug)]
#[must_use = "dropping the handle stops the projection"]
pub struct ProjectionHandle {
    name: String,
    status: watch::Receiver<ProjectionStatus>,
    /// What failed the projection, once it failed.
    failure: Arc<OnceLock<SharedError>>,
    task: Task<()>,
}

impl ProjectionHandle {
    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its progress now.
    pub fn status(&self) -> ProjectionStatus {
        self.status.borrow().clone()
    }

    /// Waits until every event up to `position` is applied (for example, to read your own
    /// writes in a test or an API, with [`AppendResult::log_position`]). Events of types
    /// the projection does not subscribe to count as applied once the runner has passed
    /// them.
    ///
    /// [`AppendResult::log_position`]: crate::AppendResult::log_position
    ///
    /// # Errors
    /// [`Error::ProjectionStopped`] when the projection stops or fails first.
    pub async fn wait_until(&self, position: LogPosition) -> Result<()> {
        self.wait_for(|status| status.position >= position).await
    }

    /// Waits until the projection has applied every event committed before the call.
    ///
    /// # Errors
    /// [`Error::ProjectionStopped`] when the projection stops or fails first.
    pub async fn wait_for_idle(&self) -> Result<()> {
        // A pass that began before the call may have missed what was just committed; the
        // one after it began after the call.
        let start = self.status.borrow().idle_passes;
        self.wait_for(|status| status.idle_passes >= start + 2)
            .await
    }

    async fn wait_for(&self, mut done: impl FnMut(&ProjectionStatus) -> bool) -> Result<()> {
        let mut status = self.status.clone();
        let stopped = |status: &ProjectionStatus| match status.state {
            ProjectionState::Stopped => Some("stopped"),
            ProjectionState::Failed => Some("failed"),
            _ => None,
        };
        loop {
            {
                let current = status.borrow_and_update();
                if done(&current) {
                    return Ok(());
                }
                if let Some(state) = stopped(&current) {
                    return Err(self.stopped(state, &current));
                }
            }
            if status.changed().await.is_err() {
                // The task is gone (aborted) without saying so.
                return Err(Error::ProjectionStopped {
                    name: self.name.clone(),
                    state: "stopped",
                    last_error: status.borrow().last_error.clone(),
                    source: None,
                });
            }
        }
    }

    /// The error of a projection that stopped in `state`.
    fn stopped(&self, state: &'static str, status: &ProjectionStatus) -> Error {
        Error::ProjectionStopped {
            name: self.name.clone(),
            state,
            last_error: status.last_error.clone(),
            source: self.failure.get().cloned(),
        }
    }

    /// Asks the task to stop after the batch in hand, waits for it, and returns the final
    /// status (state [`ProjectionState::Stopped`]).
    ///
    /// # Errors
    /// When the projection had failed ([`ProjectionState::Failed`]):
    /// [`Error::ProjectionStopped`] with `state` "failed", the failure in `last_error`,
    /// and what failed it as the error's [`source`](std::error::Error::source): the
    /// projection's own error, downcastable to its type (or chronicle's error for an
    /// event that could not be read; none after a panic).
    pub async fn stop(self) -> Result<ProjectionStatus> {
        let ProjectionHandle {
            name,
            status,
            failure,
            task,
        } = self;
        let aborted = task.stop().await?.is_none();
        let mut last = status.borrow().clone();
        if last.state == ProjectionState::Failed {
            return Err(Error::ProjectionStopped {
                name,
                state: "failed",
                last_error: last.last_error,
                source: failure.get().cloned(),
            });
        }
        if aborted {
            // Killed where it was: it did not get to say so.
            last.state = ProjectionState::Stopped;
        }
        Ok(last)
    }

    /// Kills the task at once, wherever it is: an open batch is rolled back, so a read
    /// model in the store's database keeps exactly what the checkpoint says. A later
    /// [`ProjectionHandle::stop`] returns the status it had.
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// The task behind a [`ProjectionHandle`].
struct Runner<P> {
    store: Store,
    projection: P,
    name: String,
    /// The projection's event types, filtered in the query (all when empty).
    types: Arc<[String]>,
    settings: Settings,
    status: watch::Sender<ProjectionStatus>,
    stop: watch::Receiver<bool>,
    /// What failed the run, set once, before the state turns `Failed`.
    failure: Arc<OnceLock<SharedError>>,
    /// How the next pass treats a missing checkpoint (the first pass after a rebuild does
    /// not reset again).
    start: std::sync::Mutex<Start>,
    /// Whether the projection's setup hook ran in this run (once, under the lease).
    set_up: AtomicBool,
}

/// What became of a batch.
enum Batch {
    /// Committed: events applied and skipped.
    Applied { applied: u64, skipped: u64 },
    /// Not committed: the stored checkpoint was not where this runner left it (another
    /// instance moved it, or it was reset).
    CheckpointMoved,
}

/// Why a batch did not commit.
enum BatchFailure {
    /// The database failed (begin, checkpoint, commit): retried until it comes back.
    Store(Error),
    /// See [`Batch::CheckpointMoved`].
    CheckpointMoved,
    /// The handler refused the event at this index of the batch (`None`: the batch as a
    /// whole, through `Projection::apply_batch`), or panicked.
    Handler {
        index: Option<usize>,
        error: Refusal,
    },
}

/// Why a handler call failed: its error, or its panic.
enum Refusal {
    Error(ProjectionError),
    Panic(String),
}

impl Refusal {
    /// The message for `last_error`.
    fn message(&self) -> String {
        match self {
            Refusal::Error(error) => error.to_string(),
            Refusal::Panic(message) => format!("panicked: {message}"),
        }
    }

    /// What to keep as the failure's source.
    fn into_source(self) -> Option<SharedError> {
        match self {
            Refusal::Error(error) => Some(SharedError::new(error)),
            Refusal::Panic(_) => None,
        }
    }
}

/// A handler call's outcome, a panic included.
fn refusal<T>(
    called: std::result::Result<Result<T, ProjectionError>, crate::panics::Panicked>,
) -> Result<T, Refusal> {
    match called {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(error)) => Err(Refusal::Error(error)),
        Err(panicked) => Err(Refusal::Panic(panicked.message)),
    }
}

/// The runner gave up: it was asked to stop, or it failed.
struct Halt;

/// The lease's session ended under the runner (PostgreSQL): another instance may run the
/// projection now.
struct LeaseLost;

impl<P: Projection> Runner<P> {
    async fn run(self) {
        if let Err(error) = crate::text::check_name("projection name", &self.name) {
            tracing::error!(projection = %self.name, %error, "projection refused");
            return self.fail(error.to_string(), Some(SharedError::new(error)));
        }
        loop {
            let Some(mut lease) = self.acquire_lease().await else {
                return self.finish(ProjectionState::Stopped);
            };
            // A panic that escapes the handler's own catch (in the runner itself) ends the
            // run as failed, and drops the lease with it.
            match CatchPanic::new(self.follow(&mut *lease)).await {
                Ok(Ok(Halt)) => return,
                // Dropping the lost lease closes its connection; then wait to take it again.
                Ok(Err(LeaseLost)) => self.status.send_modify(|status| {
                    status.state = ProjectionState::Standby;
                }),
                Err(panicked) => {
                    let message = format!("the projection's task panicked: {}", panicked.message);
                    tracing::error!(
                        projection = %self.name,
                        %message,
                        backtrace = panicked.backtrace.as_deref(),
                        "projection failed"
                    );
                    self.fail(message, None);
                    return;
                }
            }
        }
    }

    /// Waits until this instance holds the projection's lease; `None` when asked to stop
    /// first.
    async fn acquire_lease(&self) -> Option<Box<dyn Lease>> {
        loop {
            match self.store.try_lease(&self.name).await {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) => self.status.send_modify(|status| {
                    status.state = ProjectionState::Standby;
                }),
                Err(error) => self.note_error(error.to_string()),
            }
            self.pause(LEASE_RETRY).await.ok()?;
        }
    }

    /// Runs the projection under `lease`, from the stored checkpoint: catches up, then
    /// follows the log. Returns when the runner stops, fails, or loses the lease.
    async fn follow(&self, lease: &mut dyn Lease) -> Result<Halt, LeaseLost> {
        if !self.set_up.load(Ordering::Relaxed) {
            if self.set_up_with_retries().await.is_none() {
                return Ok(self.halted());
            }
            self.set_up.store(true, Ordering::Relaxed);
        }
        let stored = loop {
            match self.store.checkpoint(&self.name).await {
                Ok(stored) => break stored,
                Err(error) => {
                    self.note_error(error.to_string());
                    if self.pause(self.settings.backoff).await.is_err() {
                        return Ok(self.halt(ProjectionState::Stopped));
                    }
                }
            }
        };
        let start = std::mem::replace(
            &mut *self.start.lock().unwrap_or_else(PoisonError::into_inner),
            Start::FromStore,
        );
        let mut cursor = match (stored, start) {
            (Some(stored), _) => stored,
            (None, Start::AlreadyReset) => LogPosition::START,
            (None, Start::FromStore) => match self.start_over().await {
                Some(cursor) => cursor,
                None => return Ok(self.halted()),
            },
        };
        self.status.send_modify(|status| {
            status.position = cursor;
            status.state = ProjectionState::CatchingUp;
        });
        // `cursor` is the stored checkpoint; `scan`, where the next window starts, runs
        // ahead of it over windows without events of the projection's types.
        let mut scan = cursor;
        let mut appends = self.store.appends();
        // Reads in a row that failed for something other than the database's absence.
        let mut unreadable = 0;
        // The window after `scan`, when it was read while the previous one was applied.
        let mut prefetched: Option<ReadAhead> = None;
        let mut last_check = tokio::time::Instant::now();
        let mut meter = RateMeter::new();
        loop {
            if *self.stop.borrow() {
                return Ok(self.halt(ProjectionState::Stopped));
            }
            if last_check.elapsed() >= LEASE_CHECK {
                if let Err(error) = lease.check(LEASE_CHECK).await {
                    self.note_error(format!(
                        "lost the lease ({error}); waiting to take it again"
                    ));
                    return Err(LeaseLost);
                }
                last_check = tokio::time::Instant::now();
            }
            // A read ahead that failed is simply read again.
            let ahead = match prefetched.take() {
                Some(next) => next.window().await,
                None => None,
            };
            let read = match ahead {
                Some(window) => Ok(window),
                None => {
                    // Appends from here on wake the wait below, even if this read misses
                    // them.
                    appends.borrow_and_update();
                    self.read_window(scan).await
                }
            };
            let window = match read {
                Ok(window) => {
                    unreadable = 0;
                    window
                }
                Err(error) => {
                    // An event that does not decode (say, a key the store lacks) will not
                    // decode on the next try either: after the retries, stop as failed.
                    if !error.is_retryable() {
                        unreadable += 1;
                    }
                    self.note_error(error.to_string());
                    if unreadable >= self.settings.max_attempts {
                        tracing::error!(projection = %self.name, %error, "projection failed");
                        self.fail(error.to_string(), Some(SharedError::new(error)));
                        return Ok(Halt);
                    }
                    if self.pause(self.settings.backoff).await.is_err() {
                        return Ok(self.halt(ProjectionState::Stopped));
                    }
                    continue;
                }
            };
            let to = window.scanned_to;
            let Some(last) = window.events.last() else {
                if window.more {
                    // Nothing of the projection's types here: on to the next window,
                    // without a commit.
                    scan = to;
                    continue;
                }
                // Caught up. A reset (the checkpoint deleted) or another instance may
                // have moved the stored checkpoint meanwhile: follow it.
                if let Ok(stored) = self.store.checkpoint(&self.name).await {
                    let moved = match stored {
                        Some(stored) => stored != cursor,
                        // Missing at the start is where this runner is.
                        None => cursor != LogPosition::START,
                    };
                    if moved {
                        match self.follow_stored(cursor, stored).await {
                            Some(stored) => (cursor, scan) = (stored, stored),
                            None => return Ok(self.halted()),
                        }
                        continue;
                    }
                }
                if to != cursor {
                    // Only events of other types since the checkpoint: move it past them,
                    // so that a restart does not scan them again and `wait_until` their
                    // positions returns.
                    match self.apply_window(&[], &mut cursor, to).await {
                        Ok(Batch::Applied { .. }) => scan = to,
                        Ok(Batch::CheckpointMoved) => {
                            match self.checkpoint_moved(cursor).await {
                                Some(stored) => (cursor, scan) = (stored, stored),
                                None => return Ok(self.halted()),
                            }
                            continue;
                        }
                        Err(Halt) => return Ok(self.halted()),
                    }
                }
                let rate = meter.add(0);
                self.record_lag(0, Duration::ZERO);
                self.status.send_modify(|status| {
                    status.state = ProjectionState::Running;
                    status.lag = Duration::ZERO;
                    status.lag_events = 0;
                    status.rate = rate;
                    status.idle_passes += 1;
                });
                let mut stop = self.stop.clone();
                tokio::select! {
                    _ = appends.changed() => {}
                    () = tokio::time::sleep(self.settings.poll_interval) => {}
                    () = stop_requested(&mut stop) => {}
                }
                continue;
            };
            let lag = age(last);
            // A full window means catching up: read the next one, on another task (so on
            // another thread: decoding rows is most of a read's cost), and the log's end
            // while this batch is applied.
            let (outcome, next, log_end) = if window.more {
                appends.borrow_and_update();
                let next = self.read_ahead(to);
                let (outcome, log_end) = tokio::join!(
                    self.apply_window(&window.events, &mut cursor, to),
                    self.store.last_position(),
                );
                (outcome, Some(next), log_end)
            } else {
                let outcome = self.apply_window(&window.events, &mut cursor, to).await;
                (outcome, None, Ok(to.position()))
            };
            match outcome {
                Ok(Batch::CheckpointMoved) => match self.checkpoint_moved(cursor).await {
                    Some(stored) => (cursor, scan) = (stored, stored),
                    None => return Ok(self.halted()),
                },
                Ok(Batch::Applied { applied, .. }) => {
                    (cursor, scan) = (to, to);
                    prefetched = next;
                    let lag_events = log_end.map_or(0, |end| end.saturating_sub(to.position()));
                    // `apply_window` counted the events and moved the position, batch by
                    // batch.
                    let rate = meter.add(applied);
                    self.record_lag(lag_events, lag);
                    self.status.send_modify(|status| {
                        status.lag_events = lag_events;
                        status.rate = rate;
                        status.lag = lag;
                        status.state = if window.more {
                            ProjectionState::CatchingUp
                        } else {
                            ProjectionState::Running
                        };
                    });
                }
                Err(Halt) => return Ok(self.halted()),
            }
        }
    }

    /// After a batch found the stored checkpoint elsewhere than `cursor`: where to go on
    /// from (see [`Runner::follow_stored`]); `None` when the runner stopped or failed.
    async fn checkpoint_moved(&self, cursor: LogPosition) -> Option<LogPosition> {
        match self.store.checkpoint(&self.name).await {
            Ok(stored) => self.follow_stored(cursor, stored).await,
            Err(error) => {
                // The next batch finds out again.
                self.note_error(error.to_string());
                Some(cursor)
            }
        }
    }

    /// The stored checkpoint is `stored`, not `cursor`: another instance moved it ahead
    /// (go on from there), or it was deleted (a reset: empty the read model and start
    /// over, [`Runner::start_over`]). `None` when the runner stopped or failed.
    async fn follow_stored(
        &self,
        cursor: LogPosition,
        stored: Option<LogPosition>,
    ) -> Option<LogPosition> {
        let Some(stored) = stored else {
            tracing::info!(
                projection = %self.name,
                %cursor,
                "the checkpoint was deleted (a reset); rebuilding from the start"
            );
            return self.start_over().await;
        };
        self.note_error(format!(
            "the stored checkpoint moved from {cursor} to {stored}; following it"
        ));
        self.status.send_modify(|status| status.position = stored);
        Some(stored)
    }

    /// Runs the projection's setup hook ([`Projection::setup`]); a failing hook is retried
    /// like a batch, then fails the projection with [`Error::ProjectionSetup`] (a database
    /// that is away is waited for). `None` when the runner stopped or failed.
    async fn set_up_with_retries(&self) -> Option<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match super::set_up(&self.projection, &self.store).await {
                Ok(()) => return Some(()),
                Err(error) => error,
            };
            self.note_error(error.to_string());
            if !error.is_retryable() && attempt >= self.settings.max_attempts {
                tracing::error!(projection = %self.name, %error, "projection failed");
                self.fail(error.to_string(), Some(SharedError::new(error)));
                return None;
            }
            let pause = self.settings.backoff
                * 2u32.saturating_pow(attempt.min(self.settings.max_attempts).min(16) - 1);
            self.pause(pause).await.ok()?;
        }
    }

    /// No checkpoint is stored: empties the read model ([`Projection::reset`]) in a
    /// transaction that finds the checkpoint still missing, and returns the start of the
    /// log; or, when a checkpoint appeared meanwhile (another instance's first batch),
    /// returns it without resetting. A failing hook is retried like a batch, then fails
    /// the projection; `None` when the runner stopped or failed.
    async fn start_over(&self) -> Option<LogPosition> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.try_reset().await {
                Ok(start) => {
                    self.status.send_modify(|status| {
                        status.position = start;
                        status.state = ProjectionState::CatchingUp;
                    });
                    return Some(start);
                }
                Err(error) => error,
            };
            self.note_error(error.to_string());
            if !error.is_retryable() && attempt >= self.settings.max_attempts {
                tracing::error!(projection = %self.name, %error, "projection failed");
                self.fail(error.to_string(), Some(SharedError::new(error)));
                return None;
            }
            let pause = self.settings.backoff
                * 2u32.saturating_pow(attempt.min(self.settings.max_attempts).min(16) - 1);
            self.pause(pause).await.ok()?;
        }
    }

    /// One try of [`Runner::start_over`].
    async fn try_reset(&self) -> Result<LogPosition> {
        // Where to start ([`StartFrom`]), read before the transaction takes SQLite's
        // write lock.
        let start = match self.settings.start {
            StartFrom::Beginning => LogPosition::START,
            StartFrom::End => self.store.log_end().await?,
            StartFrom::After(position) => position,
        };
        let mut tx = self.store.begin_batch(Flush::Wait).await?;
        if let Some(stored) = tx.locked_checkpoint(&self.name).await? {
            // Dropping the transaction rolls it back.
            return Ok(stored);
        }
        {
            let mut ctx = ProjectionContext::new(&mut *tx, &self.store);
            let called = CatchPanic::new(self.projection.reset(&mut ctx)).await;
            let refused: Option<ProjectionError> = match called {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error),
                Err(panicked) => Some(format!("panicked: {}", panicked.message).into()),
            };
            if let Some(source) = refused {
                return Err(Error::ProjectionReset {
                    name: self.name.clone(),
                    source,
                });
            }
        }
        // A start other than the beginning is stored with the reset, so that a restart
        // resumes there (and the caught-up check, which follows the stored checkpoint,
        // does not rewind).
        if start != LogPosition::START
            && !tx
                .move_checkpoint(&self.name, LogPosition::START, start)
                .await?
        {
            // Another instance stored one meanwhile: roll the reset back and resume there.
            drop(tx);
            return Ok(self
                .store
                .checkpoint(&self.name)
                .await?
                .unwrap_or(LogPosition::START));
        }
        tx.commit().await?;
        if start != LogPosition::START {
            tracing::info!(projection = %self.name, %start, "no checkpoint yet: starting there");
        }
        Ok(start)
    }

    /// The end of a run that stopped or failed in a batch.
    fn halted(&self) -> Halt {
        if self.status.borrow().state != ProjectionState::Failed {
            self.finish(ProjectionState::Stopped);
        }
        Halt
    }

    /// [`Runner::read_window`] on a task of its own.
    fn read_ahead(&self, after: LogPosition) -> ReadAhead {
        ReadAhead(tokio::spawn(self.read_window(after).in_current_span()))
    }

    /// The next window of the log after `after`: its events of the projection's types.
    /// The read owns what it needs, so it can also run on a task of its own.
    fn read_window(
        &self,
        after: LogPosition,
    ) -> impl Future<Output = Result<LogWindow>> + Send + 'static {
        let (store, types) = (self.store.clone(), Arc::clone(&self.types));
        let parts = self.projection.event_parts();
        let limit = WindowLimit {
            events: self.settings.batch_size.max(READ_WINDOW),
            bytes: Some(self.settings.window_bytes),
        };
        let shredded = self.settings.shredded;
        async move {
            store
                .read_window(after, types, parts, limit, shredded)
                .await
        }
    }

    /// Applies a window's `events` in batches of at most `batch_size`, each committed with
    /// the checkpoint moved to its last event, the last one's to `to` (the window's end).
    /// `cursor` follows the commits: on [`Batch::CheckpointMoved`] it is where the refused
    /// batch began. Returns the events applied and skipped in all.
    async fn apply_window(
        &self,
        events: &[RecordedEvent],
        cursor: &mut LogPosition,
        to: LogPosition,
    ) -> Result<Batch, Halt> {
        let (mut applied, mut skipped) = (0, 0);
        let mut batches = events.chunks(self.settings.batch_size).peekable();
        // A window without events (only others' types, once idle) still moves the
        // checkpoint.
        let mut empty = events.is_empty().then_some(&[][..]);
        while let Some(batch) = batches.next().or_else(|| empty.take()) {
            let end = match (batches.peek(), batch.last()) {
                (Some(_), Some(last)) => last.log_position(),
                _ => to,
            };
            match self.apply_with_retries(batch, *cursor, end).await? {
                Batch::Applied {
                    applied: more,
                    skipped: stepped_over,
                } => {
                    applied += more;
                    skipped += stepped_over;
                    *cursor = end;
                    metrics::counter!(telemetry::PROJECTION_APPLIED, "projection" => self.name.clone())
                        .increment(more);
                    // Committed: waits for a position inside the window return now, and
                    // the counts hold if a later batch fails.
                    self.status.send_modify(|status| {
                        status.position = end;
                        status.applied += more;
                        status.skipped += stepped_over;
                    });
                }
                Batch::CheckpointMoved => return Ok(Batch::CheckpointMoved),
            }
        }
        Ok(Batch::Applied { applied, skipped })
    }

    /// Applies `batch`, retrying failures, and moves the checkpoint from `from` to `to`;
    /// returns the events applied and skipped.
    async fn apply_with_retries(
        &self,
        batch: &[RecordedEvent],
        from: LogPosition,
        to: LogPosition,
    ) -> Result<Batch, Halt> {
        let mut skips = BTreeMap::new();
        // The first try hands the whole batch to `Projection::apply_batch`; after a failure,
        // events go one by one through `Projection::apply`, to find the failing one.
        let mut whole = true;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.apply_batch(batch, &skips, (from, to), whole).await {
                Ok(applied) => {
                    let skipped = skips.len() as u64;
                    return Ok(Batch::Applied { applied, skipped });
                }
                Err(failure) => failure,
            };
            let pause = (self.settings.backoff * 2u32.saturating_pow(attempt.min(16) - 1))
                .min(self.settings.max_backoff);
            match failure {
                BatchFailure::CheckpointMoved => return Ok(Batch::CheckpointMoved),
                BatchFailure::Store(error) if error.is_retryable() => {
                    // The database will come back; keep trying at the longest pause.
                    self.note_error(error.to_string());
                    attempt = attempt.min(self.settings.max_attempts);
                }
                BatchFailure::Store(error) => {
                    // The database refused the batch itself (say, a read-model constraint
                    // at commit): no single event to skip, so it counts as a failure.
                    let message = format!("batch after {from}: {error}");
                    self.note_error(message.clone());
                    if attempt >= self.settings.max_attempts {
                        tracing::error!(projection = %self.name, %message, "projection failed");
                        self.fail(message, Some(SharedError::new(error)));
                        return Err(Halt);
                    }
                }
                BatchFailure::Handler { index: None, error } => {
                    self.note_error(format!("batch after {from}: {}", error.message()));
                    whole = false;
                    attempt -= 1;
                    continue;
                }
                BatchFailure::Handler {
                    index: Some(index),
                    error,
                } => {
                    let event = &batch[index];
                    let message = format!(
                        "event {} (`{}` in stream `{}`, position {}): {}",
                        event.id,
                        event.event_type,
                        event.stream_id,
                        event.log_position(),
                        error.message()
                    );
                    self.note_error(message.clone());
                    if attempt >= self.settings.max_attempts {
                        match self.settings.on_failure {
                            FailurePolicy::Stop => {
                                tracing::error!(projection = %self.name, %message, "projection failed");
                                self.fail(message, error.into_source());
                                return Err(Halt);
                            }
                            FailurePolicy::Skip => {
                                tracing::warn!(projection = %self.name, %message, "skipping the event");
                                skips.insert(index, message);
                                attempt = 0;
                                continue;
                            }
                        }
                    }
                }
            }
            self.pause(pause).await?;
        }
    }

    /// Applies `batch` (except the `skips`) and moves the checkpoint `from` → `to`, in one
    /// transaction: `whole`, through one `Projection::apply_batch` call (there are no
    /// skips then), else event by event. With `apply_outside_tx`, the batch is applied
    /// first and the transaction only records the skips and the checkpoint.
    async fn apply_batch(
        &self,
        batch: &[RecordedEvent],
        skips: &BTreeMap<usize, String>,
        (from, to): (LogPosition, LogPosition),
        whole: bool,
    ) -> Result<u64, BatchFailure> {
        let begin = || async {
            self.store
                .begin_batch(self.settings.flush)
                .await
                .map_err(BatchFailure::Store)
        };
        let (applied, mut tx) = if self.settings.apply_outside_tx {
            let mut ctx = ProjectionContext::without_tx(&self.store);
            let applied = self.apply_events(batch, skips, whole, &mut ctx).await?;
            (applied, begin().await?)
        } else {
            let mut tx = begin().await?;
            let mut ctx = ProjectionContext::new(&mut *tx, &self.store);
            let applied = self.apply_events(batch, skips, whole, &mut ctx).await?;
            (applied, tx)
        };
        for (&index, error) in skips {
            let event = &batch[index];
            tx.record_skip(&self.name, event.id, event.position, error)
                .await
                .map_err(BatchFailure::Store)?;
        }
        let moved = tx
            .move_checkpoint(&self.name, from, to)
            .await
            .map_err(BatchFailure::Store)?;
        if !moved {
            return Err(BatchFailure::CheckpointMoved);
        }
        tx.commit().await.map_err(BatchFailure::Store)?;
        Ok(applied)
    }

    /// Hands `batch` (except the `skips`) to the projection: `whole`, through one
    /// `Projection::apply_batch` call, else event by event. Returns the events applied.
    async fn apply_events(
        &self,
        batch: &[RecordedEvent],
        skips: &BTreeMap<usize, String>,
        whole: bool,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<u64, BatchFailure> {
        if batch.is_empty() {
            // Only the checkpoint moves.
            return Ok(0);
        }
        if whole && skips.is_empty() {
            // One span for the batch, linked to every event's producer.
            let span = tracing::info_span!(
                "chronicle.projection.batch",
                projection = %self.name,
                events = batch.len(),
                first_position = batch.first().map(|event| event.position),
                last_position = batch.last().map(|event| event.position),
            );
            for event in batch {
                telemetry::link(&span, &event.metadata);
            }
            // A panic is caught like an error; the transaction is then dropped, so
            // rolled back, whatever state the handler left it in.
            let called = CatchPanic::new(self.projection.apply_batch(batch, ctx))
                .instrument(span)
                .await;
            refusal(called).map_err(|error| BatchFailure::Handler { index: None, error })?;
            return Ok(batch.len() as u64);
        }
        let mut applied = 0;
        for (index, event) in batch.iter().enumerate() {
            if skips.contains_key(&index) {
                continue;
            }
            let span = telemetry::event_span!("chronicle.projection.apply", event, projection = %self.name);
            let called = CatchPanic::new(self.projection.apply(event, ctx))
                .instrument(span)
                .await;
            refusal(called).map_err(|error| BatchFailure::Handler {
                index: Some(index),
                error,
            })?;
            applied += 1;
        }
        Ok(applied)
    }

    /// The lag gauges.
    fn record_lag(&self, events: u64, age: Duration) {
        #[allow(clippy::cast_precision_loss)]
        let events = events as f64;
        metrics::gauge!(telemetry::PROJECTION_LAG_EVENTS, "projection" => self.name.clone())
            .set(events);
        metrics::gauge!(telemetry::PROJECTION_LAG_SECONDS, "projection" => self.name.clone())
            .set(age.as_secs_f64());
    }

    fn note_error(&self, error: String) {
        tracing::debug!(projection = %self.name, %error, "projection error");
        self.status
            .send_modify(|status| status.last_error = Some(error));
    }

    /// Sleeps for `duration`, or less when asked to stop (then `Err`).
    async fn pause(&self, duration: Duration) -> Result<(), Halt> {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            () = stop_requested(&mut stop) => Err(Halt),
        }
    }

    fn finish(&self, state: ProjectionState) {
        self.status.send_modify(|status| status.state = state);
    }

    /// Ends the run as failed: `message` as the last error, `source` kept for the handle.
    fn fail(&self, message: String, source: Option<SharedError>) {
        if let Some(source) = source {
            // Set once: a run fails once.
            let _ = self.failure.set(source);
        }
        self.status.send_modify(|status| {
            status.last_error = Some(message);
            status.state = ProjectionState::Failed;
        });
    }

    /// [`Runner::finish`], as the end of the run.
    fn halt(&self, state: ProjectionState) -> Halt {
        self.finish(state);
        Halt
    }
}

/// The next window, being read on a task of its own ([`Runner::read_ahead`]); dropping it
/// (the batch did not commit, or the runner stops) ends the read.
struct ReadAhead(JoinHandle<Result<LogWindow>>);

impl ReadAhead {
    /// The window, or `None` when the read failed (the runner reads it again).
    async fn window(mut self) -> Option<LogWindow> {
        (&mut self.0).await.ok().and_then(Result::ok)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Measures events applied per second over windows of about a second.
struct RateMeter {
    since: tokio::time::Instant,
    applied: u64,
    rate: f64,
}

impl RateMeter {
    /// Shortest stretch a rate is computed over, and the window's length.
    const MIN: Duration = Duration::from_millis(100);
    const WINDOW: Duration = Duration::from_secs(1);

    fn new() -> Self {
        RateMeter {
            since: tokio::time::Instant::now(),
            applied: 0,
            rate: 0.0,
        }
    }

    /// Counts `applied` more events and returns the current rate.
    fn add(&mut self, applied: u64) -> f64 {
        self.applied += applied;
        let elapsed = self.since.elapsed();
        if elapsed >= Self::MIN {
            self.rate = self.applied as f64 / elapsed.as_secs_f64();
        }
        if elapsed >= Self::WINDOW {
            *self = RateMeter {
                rate: self.rate,
                ..RateMeter::new()
            };
        }
        self.rate
    }
}

/// How long ago `event` was recorded.
fn age(event: &RecordedEvent) -> Duration {
    (Utc::now() - event.recorded_at)
        .to_std()
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_covers_about_the_last_second() {
        let mut meter = RateMeter::new();
        assert_eq!(meter.add(50), 0.0, "too soon to say");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(meter.add(50), 200.0);
        tokio::time::advance(Duration::from_millis(600)).await;
        let rate = meter.add(100);
        assert!((rate - 200.0 / 1.1).abs() < 1e-6, "{rate}");
        // A new window: nothing applied in it.
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(meter.add(0), 0.0);
    }
}
