//! The schedulers: tasks that keep an outbox's processor and executor going until asked to
//! stop, waking early when events are appended (the store's notification) or requests
//! are created, and polling for the rest (other processes' work, retries coming due).
//! A failed step is logged and tried again later; [`SchedulerHandle::stop`] returns what
//! the scheduler did, added up.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::Outbox;
use super::executor::{ExecutionReport, Outcome};
use crate::error::Result;
use crate::read::LogPosition;
use crate::store::requests::Claimed;
use crate::task::{Task, side_by_side, stop_requested};

/// Runs the processor, then the executor, in turn on one task; when neither had anything
/// to do, waits for an append, a created request or the interval.
#[derive(Debug, Clone)]
#[must_use = "a scheduler runs only once `spawn` is called"]
pub struct CooperativeScheduler {
    outbox: Outbox,
    interval: Duration,
}

/// Runs the processor and the executor as two loops side by side; the executor keeps up
/// to `workers` handlers running, claiming as each one finishes.
#[derive(Debug, Clone)]
#[must_use = "a scheduler runs only once `spawn` is called"]
pub struct ConcurrentScheduler {
    outbox: Outbox,
}

/// What a scheduler did, from [`SchedulerHandle::stop`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchedulerReport {
    /// Handler requests the processor created.
    pub requests_created: u64,
    /// What the executor did, added up over its batches.
    pub executed: ExecutionReport,
    /// Steps that failed (a window of the log, a claim, the recording of outcomes: say,
    /// the database was unreachable) and were tried again later; each was logged.
    pub failed_steps: u64,
}

/// A running scheduler.
///
/// Stop it with [`SchedulerHandle::stop`]. **Dropping the handle stops it too**, without
/// waiting: the batch in hand is finished (its handlers complete or time out, and their
/// outcomes are recorded), then its loops end.
#[derive(Debug)]
#[must_use = "dropping the handle stops the scheduler"]
pub struct SchedulerHandle {
    task: Task<SchedulerReport>,
    /// For the waits (boxed: the handle stays small).
    outbox: Box<Outbox>,
}

impl SchedulerHandle {
    /// Asks the loops to stop and waits for them: a batch in hand is finished (its
    /// handlers complete or time out, and their outcomes are recorded); nothing is marked
    /// done that did not run. Returns what the scheduler did.
    ///
    /// # Errors
    /// [`Error::TaskPanicked`](crate::Error::TaskPanicked) when a loop panicked (a bug:
    /// handlers' panics are caught and recorded as their failures).
    pub async fn stop(self) -> Result<SchedulerReport> {
        Ok(self.task.stop().await?.unwrap_or_default())
    }

    /// [`Outbox::wait_until`] on the scheduler's outbox, failing if the scheduler's task
    /// ends first.
    ///
    /// # Errors
    /// [`Error::TaskPanicked`](crate::Error::TaskPanicked) when a loop of the scheduler
    /// panicked first (a bug); connection errors.
    pub async fn wait_until(&self, position: LogPosition) -> Result<()> {
        tokio::select! {
            waited = self.outbox.wait_until(position) => waited,
            ended = self.task.ended() => Err(ended),
        }
    }

    /// [`Outbox::wait_for_idle`] on the scheduler's outbox, failing if the scheduler's
    /// task ends first.
    ///
    /// # Errors
    /// As [`SchedulerHandle::wait_until`].
    pub async fn wait_for_idle(&self) -> Result<()> {
        tokio::select! {
            waited = self.outbox.wait_for_idle() => waited,
            ended = self.task.ended() => Err(ended),
        }
    }
}

impl Outbox {
    /// A [`CooperativeScheduler`] waking at least every `poll_interval`.
    pub fn cooperative(&self) -> CooperativeScheduler {
        CooperativeScheduler {
            outbox: self.clone(),
            interval: self.settings.poll_interval,
        }
    }

    /// A [`ConcurrentScheduler`].
    pub fn concurrent(&self) -> ConcurrentScheduler {
        ConcurrentScheduler {
            outbox: self.clone(),
        }
    }
}

impl CooperativeScheduler {
    /// The longest wait between two turns with nothing to do.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Starts the task (call from within a tokio runtime). Keep the handle: dropping it
    /// stops the scheduler.
    pub fn spawn(self) -> SchedulerHandle {
        let outbox = self.outbox;
        let waits = outbox.clone();
        let interval = self.interval;
        let name = outbox.settings.name.clone();
        let span = tracing::info_span!("chronicle.outbox.cooperative", outbox = %name);
        let task = Task::spawn(format!("outbox `{name}` scheduler"), span, |mut stopped| {
            async move {
                let mut report = SchedulerReport::default();
                let mut appends = outbox.store.appends();
                let mut purged = None;
                while !*stopped.borrow() {
                    outbox.purge_if_due(&mut purged).await;
                    appends.borrow_and_update();
                    // One window of the log, then one batch of requests: a long backlog
                    // does not starve the handlers, and a stop is seen between turns.
                    let processed = outbox.process_window().await;
                    let executed = outbox.execute().await;
                    let mut idle = true;
                    match processed {
                        Ok((created, more)) => {
                            report.requests_created += created;
                            idle &= created == 0 && !more;
                        }
                        Err(error) => report.failed(&error),
                    }
                    match executed {
                        Ok(executed) => {
                            report.executed += executed;
                            idle &= executed.claimed == 0;
                        }
                        Err(error) => report.failed(&error),
                    }
                    if idle {
                        tokio::select! {
                            _ = appends.changed() => {}
                            () = outbox.created.notified() => {}
                            () = tokio::time::sleep(interval) => {}
                            () = stop_requested(&mut stopped) => {}
                        }
                    }
                }
                Ok(report)
            }
        });
        SchedulerHandle {
            task,
            outbox: Box::new(waits),
        }
    }
}

impl ConcurrentScheduler {
    /// Starts the scheduler (call from within a tokio runtime): the processor and the
    /// executor each on a task of its own. Keep the handle: dropping it stops the
    /// scheduler.
    pub fn spawn(self) -> SchedulerHandle {
        let outbox = self.outbox;
        let waits = outbox.clone();
        let name = outbox.settings.name.clone();
        let what = format!("outbox `{name}` scheduler");
        let span = tracing::info_span!("chronicle.outbox.concurrent", outbox = %name);
        let task = Task::spawn(what.clone(), span, move |stopped| {
            let processor = {
                let outbox = outbox.clone();
                let span = tracing::info_span!("chronicle.outbox.processor", outbox = %name);
                move |mut stopped: watch::Receiver<bool>| {
                    async move {
                        let mut report = SchedulerReport::default();
                        let mut appends = outbox.store.appends();
                        let mut purged = None;
                        while !*stopped.borrow() {
                            outbox.purge_if_due(&mut purged).await;
                            appends.borrow_and_update();
                            // A window at a time, so that a stop is seen between windows.
                            let idle = match outbox.process_window().await {
                                Ok((created, more)) => {
                                    report.requests_created += created;
                                    !more
                                }
                                Err(error) => {
                                    report.failed(&error);
                                    true
                                }
                            };
                            if idle {
                                wait(
                                    appends.changed(),
                                    outbox.settings.poll_interval,
                                    &mut stopped,
                                )
                                .await;
                            }
                        }
                        report
                    }
                    .instrument(span)
                }
            };
            let executor = {
                let span = tracing::info_span!("chronicle.outbox.executor", outbox = %name);
                move |mut stopped: watch::Receiver<bool>| {
                    async move { outbox.serve(&mut stopped).await }.instrument(span)
                }
            };
            async move {
                // Both end on the stop; a loop that panicked ends the other too, and the
                // scheduler fails with the panic.
                let (processed, executed) = side_by_side(
                    &what,
                    stopped,
                    ("processor", processor),
                    ("executor", executor),
                )
                .await;
                let mut report = processed?;
                report += executed?;
                Ok(report)
            }
        });
        SchedulerHandle {
            task,
            outbox: Box::new(waits),
        }
    }
}

impl std::ops::AddAssign for SchedulerReport {
    fn add_assign(&mut self, other: SchedulerReport) {
        self.requests_created += other.requests_created;
        self.executed += other.executed;
        self.failed_steps += other.failed_steps;
    }
}

impl Outbox {
    /// Keeps up to `workers` handlers running until `stop` is requested, claiming as
    /// slots free up and recording outcomes as they come (the concurrent scheduler's
    /// executor: a slow handler holds one slot, not a batch). On a stop, claims no more
    /// and returns once the handlers in flight are done and recorded, with what it did.
    pub(crate) async fn serve(&self, stop: &mut watch::Receiver<bool>) -> SchedulerReport {
        let mut report = SchedulerReport::default();
        let mut running: JoinSet<(Claimed, Outcome)> = JoinSet::new();
        loop {
            let stopping = *stop.borrow();
            let free = self.settings.workers.saturating_sub(running.len());
            if free > 0 && !stopping {
                match self.claim(free).await {
                    Ok(claimed) => {
                        for (request, event) in claimed {
                            let outbox = self.clone();
                            running.spawn(async move {
                                let outcome = outbox.run(&request, event).await;
                                (request, outcome)
                            });
                        }
                    }
                    Err(error) => report.failed(&error),
                }
            }
            if running.is_empty() {
                if stopping {
                    return report;
                }
                let created = Arc::clone(&self.created);
                wait(created.notified(), self.settings.poll_interval, stop).await;
                continue;
            }
            let room = running.len() < self.settings.workers && !stopping;
            let created = Arc::clone(&self.created);
            tokio::select! {
                Some(joined) = running.join_next() => {
                    let mut outcomes = Vec::new();
                    let mut joined = Some(joined);
                    while let Some(result) = joined.take().or_else(|| running.try_join_next()) {
                        match result {
                            Ok(outcome) => outcomes.push(outcome),
                            // Cancelled: its lease runs out and it is claimed again.
                            Err(error) => tracing::warn!(%error, "an outbox execution task ended"),
                        }
                    }
                    match self.record(outcomes).await {
                        Ok(executed) => report.executed += executed,
                        // Not recorded: the requests run again once their leases run out.
                        Err(error) => report.failed(&error),
                    }
                }
                () = created.notified(), if room => {}
                () = tokio::time::sleep(self.settings.poll_interval), if room => {}
                () = stop_requested(stop), if !stopping => {}
            }
        }
    }
}

impl SchedulerReport {
    /// Counts a failed step, and logs it.
    pub(super) fn failed(&mut self, error: &crate::Error) {
        self.failed_steps += 1;
        tracing::warn!(%error, "outbox step failed; trying again later");
    }
}

/// Waits for `wake`, the poll interval, or a stop request.
pub(super) async fn wait<T>(
    wake: impl Future<Output = T>,
    poll: Duration,
    stopped: &mut watch::Receiver<bool>,
) {
    tokio::select! {
        _ = wake => {}
        () = tokio::time::sleep(poll) => {}
        () = stop_requested(stopped) => {}
    }
}
