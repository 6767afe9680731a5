//! The schedulers: tasks that keep an outbox's processor and executor going until asked to
//! stop, waking early when events are appended (the store's notification) or requests
//! are created, and polling for the rest (other processes' work, retries coming due).

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::Outbox;
use crate::task::stop_requested;

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

/// Running schedulers: stop them with [`SchedulerHandle::shutdown`]. Dropping the handle
/// leaves them running until the runtime shuts down.
#[derive(Debug)]
pub struct SchedulerHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SchedulerHandle {
    /// Asks the loops to stop and waits for them: a batch in hand is finished (its
    /// handlers complete or time out, and their outcomes are recorded); nothing is marked
    /// done that did not run.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "an outbox scheduler task ended abnormally");
            }
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

    /// Starts the task (call from within a tokio runtime).
    pub fn spawn(self) -> SchedulerHandle {
        let (stop, stopped) = watch::channel(false);
        let outbox = self.outbox;
        let interval = self.interval;
        let span =
            tracing::info_span!("chronicle.outbox.cooperative", outbox = %outbox.settings.name);
        let task = tokio::spawn(
            async move {
                let mut appends = outbox.store.appends();
                let mut stopped = stopped;
                let mut purged = None;
                while !*stopped.borrow() {
                    outbox.purge_if_due(&mut purged).await;
                    appends.borrow_and_update();
                    // One window of the log, then one batch of requests: a long backlog
                    // does not starve the handlers, and a stop is seen between turns.
                    let processed = outbox.process_window().await;
                    let executed = outbox.execute().await;
                    let idle = match (&processed, &executed) {
                        (Ok((created, more)), Ok(executed)) => {
                            *created == 0 && !*more && executed.claimed == 0
                        }
                        _ => {
                            warn_on(processed.err().or(executed.err()));
                            true
                        }
                    };
                    if idle {
                        tokio::select! {
                            _ = appends.changed() => {}
                            () = outbox.created.notified() => {}
                            () = tokio::time::sleep(interval) => {}
                            () = stop_requested(&mut stopped) => {}
                        }
                    }
                }
            }
            .instrument(span),
        );
        SchedulerHandle {
            stop,
            tasks: vec![task],
        }
    }
}

impl ConcurrentScheduler {
    /// Starts the two tasks (call from within a tokio runtime).
    pub fn spawn(self) -> SchedulerHandle {
        let (stop, stopped) = watch::channel(false);
        let outbox = self.outbox;
        let name = outbox.settings.name.clone();
        let processor = {
            let outbox = outbox.clone();
            let mut stopped = stopped.clone();
            let span = tracing::info_span!("chronicle.outbox.processor", outbox = %name);
            tokio::spawn(
                async move {
                    let mut appends = outbox.store.appends();
                    let mut purged = None;
                    while !*stopped.borrow() {
                        outbox.purge_if_due(&mut purged).await;
                        appends.borrow_and_update();
                        // A window at a time, so that a stop is seen between windows.
                        let idle = match outbox.process_window().await {
                            Ok((_, more)) => !more,
                            Err(error) => {
                                warn_on(Some(error));
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
                }
                .instrument(span),
            )
        };
        let executor = {
            let mut stopped = stopped;
            let span = tracing::info_span!("chronicle.outbox.executor", outbox = %name);
            tokio::spawn(async move { outbox.serve(&mut stopped).await }.instrument(span))
        };
        SchedulerHandle {
            stop,
            tasks: vec![processor, executor],
        }
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

fn warn_on(error: Option<crate::Error>) {
    if let Some(error) = error {
        tracing::warn!(%error, "outbox step failed; trying again later");
    }
}
