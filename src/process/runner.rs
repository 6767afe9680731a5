//! Running a process manager: [`ProcessRunner`] (settings, repositories, `spawn`), the
//! projection that feeds the log to the delivery, and [`ProcessHandle`] (status, waits,
//! stop) over the two tasks: the delivery (the projection runner) and the timeout
//! scheduler.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::ProcessManager;
use super::delivery::{Counters, Delivery};
use super::dispatch::Repositories;
use super::instance::{ENDED, TIMED_OUT, TIMEOUT, TimeoutNews, category, record_type};
use super::timeouts::{self, Timeouts};
use crate::aggregate::{Aggregate, Repository};
use crate::error::{Result, ValidationError};
use crate::event::RecordedEvent;
use crate::projection::{
    FailurePolicy, Projection, ProjectionContext, ProjectionError, ProjectionHandle,
    ProjectionStatus, Projections, StartFrom,
};
use crate::read::LogPosition;
use crate::store::Store;
use crate::store::batch::Flush;
use crate::task::Task;

/// The prefix of a process manager's checkpoint (and lease) name.
const CHECKPOINT_PREFIX: &str = "process:";

/// A process manager being configured: [`Store::process_manager`], then
/// [`ProcessRunner::spawn`].
#[must_use = "a process manager runs only once `spawn` is called"]
pub struct ProcessRunner<P: ProcessManager> {
    manager: Arc<P>,
    store: Store,
    repositories: Repositories,
    projections: Projections,
    timeout_retry: Duration,
}

impl Store {
    /// A runner for the process manager `manager` on this store: from the end of the log
    /// when it first starts ([`StartFrom::End`]: a process manager added to a live
    /// system does not act on history unless asked), batches of up to 100 events,
    /// failing deliveries retried forever with a backoff from 100 ms to 10 s, failing
    /// timeouts from 1 s to a minute.
    ///
    /// # Errors
    /// [`ValidationError::Config`] for a name that would not make stream ids
    /// (`P::NAME` must be non-empty, without `-`), or no event types.
    pub fn process_manager<P: ProcessManager>(&self, manager: P) -> Result<ProcessRunner<P>> {
        check_name(P::NAME)?;
        if manager.event_types().is_empty() {
            return Err(ValidationError::Config(format!(
                "the process manager `{}` reacts to no event types",
                P::NAME
            ))
            .into());
        }
        let projections = self
            .projections()
            .batch_size(100)
            .start_from(StartFrom::End)
            .retries(u32::MAX, Duration::from_millis(100))
            .max_backoff(Duration::from_secs(10))
            .flush(Flush::Wait)
            .apply_outside_tx();
        Ok(ProcessRunner {
            manager: Arc::new(manager),
            store: self.clone(),
            repositories: Repositories::new(self.clone()),
            projections,
            timeout_retry: Duration::from_secs(1),
        })
    }
}

/// Refuses a manager name that does not make `process.{NAME}-{key}` stream ids with the
/// category `process.{NAME}`.
fn check_name(name: &str) -> Result<()> {
    let fits = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if fits {
        Ok(())
    } else {
        Err(ValidationError::Config(format!(
            "the process manager name `{name}` must be letters, digits, `_` and `.`"
        ))
        .into())
    }
}

impl<P: ProcessManager> ProcessRunner<P> {
    /// Issues the commands to `A` through `repository` (its settings and cache), instead
    /// of the store's default repository of `A`.
    pub fn repository<A: Aggregate>(self, repository: Repository<A>) -> Self {
        self.repositories.insert(repository);
        self
    }

    /// Where the delivery starts when it has no checkpoint yet (default
    /// [`StartFrom::End`]). Timeouts stored before it are delivered whatever the start.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.projections = self.projections.start_from(start);
        self
    }

    /// Most events per batch (at least 1; default 100): the checkpoint moves after each.
    pub fn batch_size(mut self, events: usize) -> Self {
        self.projections = self.projections.batch_size(events);
        self
    }

    /// How often to look for events appended by other processes (default 500 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.projections = self.projections.poll_interval(interval);
        self
    }

    /// Tries per failing delivery (default: no end), the first pause, doubling after
    /// each failure up to `max_pause`.
    pub fn retries(mut self, attempts: u32, backoff: Duration, max_pause: Duration) -> Self {
        self.projections = self
            .projections
            .retries(attempts, backoff)
            .max_backoff(max_pause);
        self
    }

    /// What to do with an event whose delivery still fails after the retries: stop (the
    /// default) or step over it ([`FailurePolicy`]).
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.projections = self.projections.on_failure(policy);
        self
    }

    /// The first pause before a failing timeout is tried again (default 1 s; doubling,
    /// up to a minute).
    pub fn timeout_retry(mut self, pause: Duration) -> Self {
        self.timeout_retry = pause.max(Duration::from_millis(1));
        self
    }

    /// The name of the delivery's checkpoint and lease: `process:{NAME}`.
    pub fn checkpoint_name(&self) -> String {
        format!("{CHECKPOINT_PREFIX}{}", P::NAME)
    }

    /// Starts the delivery and the timeout scheduler as tokio tasks (call from within a
    /// tokio runtime). Keep the handle: dropping it stops both.
    pub fn spawn(self) -> ProcessHandle {
        let counters = Arc::new(Counters::default());
        let delivery = Arc::new(Delivery {
            manager: Arc::clone(&self.manager),
            store: self.store.clone(),
            repositories: self.repositories,
            counters: Arc::clone(&counters),
        });
        let timeouts = Arc::new(Timeouts::default());
        let mut types: Vec<String> = self
            .manager
            .event_types()
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        types.extend([TIMEOUT, TIMED_OUT, ENDED].map(|kind| record_type(P::NAME, kind)));
        let projection = ProcessProjection {
            name: format!("{CHECKPOINT_PREFIX}{}", P::NAME),
            records: format!("{}.", category(P::NAME)),
            delivery: Arc::clone(&delivery),
            timeouts: Arc::clone(&timeouts),
        };
        let projection = self.projections.spawn_with_types(projection, types.into());
        let span = tracing::info_span!("chronicle.process.timeouts", process = P::NAME);
        let retry = self.timeout_retry;
        let scheduler = Task::spawn(
            format!("the timeouts of process manager `{}`", P::NAME),
            span,
            {
                let timeouts = Arc::clone(&timeouts);
                move |stop| timeouts::run(timeouts, delivery, retry, stop)
            },
        );
        ProcessHandle {
            name: P::NAME,
            projection,
            scheduler,
            counters,
            timeouts,
        }
    }
}

impl<P: ProcessManager> fmt::Debug for ProcessRunner<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessRunner")
            .field("name", &P::NAME)
            .field("projections", &self.projections)
            .finish_non_exhaustive()
    }
}

/// The projection the runner runs: each event goes to the delivery; the manager's own
/// timeout records go to the scheduler.
struct ProcessProjection<P: ProcessManager> {
    name: String,
    /// The manager's record types' prefix, `process.{NAME}.`.
    records: String,
    delivery: Arc<Delivery<P>>,
    timeouts: Arc<Timeouts>,
}

impl<P: ProcessManager> Projection for ProcessProjection<P> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        _ctx: &mut ProjectionContext<'_>,
    ) -> std::result::Result<(), ProjectionError> {
        if event.event_type.starts_with(&self.records)
            && event.stream_id.category() == category(P::NAME)
        {
            if let Some(news) = TimeoutNews::read(P::NAME, event)? {
                self.timeouts.learn(news);
            }
            return Ok(());
        }
        self.delivery.event(event).await
    }
}

/// What a process manager did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProcessStats {
    /// Events and timeouts handled (each once).
    pub handled: u64,
    /// Redelivered events and timeouts that issued nothing: they had been handled.
    pub duplicates: u64,
    /// Redelivered events whose commands had been cut short: the rest were issued.
    pub recovered: u64,
    /// Events ignored: no instance (`correlate` said `None`), or a completed instance.
    pub ignored: u64,
    /// Commands executed.
    pub commands: u64,
    /// Commands the aggregate refused (logged; not retried).
    pub refused: u64,
    /// Timeouts handled.
    pub timeouts: u64,
}

/// A process manager's progress: the delivery's status, its counts, the pending
/// timeouts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProcessStatus {
    /// The delivery's status (the projection runner's: state, checkpoint, lag, last
    /// error).
    pub delivery: ProjectionStatus,
    /// What it did.
    pub stats: ProcessStats,
    /// Timeouts scheduled and not yet delivered.
    pub pending_timeouts: usize,
}

/// A running process manager: its delivery and its timeout scheduler. **Dropping the
/// handle stops both**, after the work in hand.
#[must_use = "dropping the handle stops the process manager"]
pub struct ProcessHandle {
    name: &'static str,
    projection: ProjectionHandle,
    scheduler: Task<()>,
    counters: Arc<Counters>,
    timeouts: Arc<Timeouts>,
}

impl ProcessHandle {
    /// The process manager's name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// Its progress now.
    pub fn status(&self) -> ProcessStatus {
        self.status_with(self.projection.status())
    }

    /// What it did since it started.
    pub fn stats(&self) -> ProcessStats {
        self.counters.stats()
    }

    fn status_with(&self, delivery: ProjectionStatus) -> ProcessStatus {
        ProcessStatus {
            delivery,
            stats: self.stats(),
            pending_timeouts: self.timeouts.len(),
        }
    }

    /// Waits until every event up to `position` was delivered (say, a command's
    /// [`Executed::log_position`](crate::Executed::log_position)).
    ///
    /// # Errors
    /// [`Error::ProjectionStopped`](crate::Error::ProjectionStopped) when the delivery
    /// stops or fails first.
    pub async fn wait_until(&self, position: LogPosition) -> Result<()> {
        self.projection.wait_until(position).await
    }

    /// Waits until every event committed before the call was delivered (timeouts not
    /// yet due are not waited for).
    ///
    /// # Errors
    /// As [`ProcessHandle::wait_until`].
    pub async fn wait_for_idle(&self) -> Result<()> {
        self.projection.wait_for_idle().await
    }

    /// Stops the delivery and the scheduler after the work in hand, waits for both, and
    /// returns the final status.
    ///
    /// # Errors
    /// The delivery's failure, as [`ProjectionHandle::stop`]; a panic that escaped the
    /// scheduler ([`Error::TaskPanicked`](crate::Error::TaskPanicked)).
    pub async fn stop(self) -> Result<ProcessStatus> {
        let ProcessHandle {
            projection,
            scheduler,
            counters,
            timeouts,
            ..
        } = self;
        // The scheduler first: its deliveries need the store, not the delivery task.
        let scheduled = scheduler.stop().await;
        let delivery = projection.stop().await?;
        scheduled?;
        Ok(ProcessStatus {
            delivery,
            stats: counters.stats(),
            pending_timeouts: timeouts.len(),
        })
    }
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("name", &self.name)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
