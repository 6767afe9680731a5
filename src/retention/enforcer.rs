//! The retention enforcer: passes over the streams that have a policy, removing their
//! expired events a batch of streams at a time, once ([`RetentionEnforcer::run_once`]) or
//! every interval in a background task ([`RetentionEnforcer::spawn`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::RetentionReport;
use crate::error::Result;
use crate::store::Store;
use crate::task::{Task, stop_requested};

/// Streams looked at per batch (one transaction removes their expired events).
pub const DEFAULT_ENFORCE_BATCH: usize = 500;

/// Settings of retention enforcement, from [`Store::retention_enforcer`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> chronicle::Result<()> {
/// use std::time::Duration;
/// use chronicle::{RetentionPolicy, RetentionScope, Store};
///
/// let store = Store::open("sqlite::memory:").await?;
/// store
///     .set_retention(RetentionScope::category("audit"), RetentionPolicy::new().max_count(100).ignore_snapshots())
///     .await?;
/// let enforcer = store.retention_enforcer().interval(Duration::from_secs(600));
/// let report = enforcer.run_once().await?;
/// assert_eq!(report.events_removed, 0);
/// let handle = enforcer.spawn();
/// // … later, on shutdown: the batch in hand finishes.
/// let total = handle.stop().await?;
/// # let _ = total;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RetentionEnforcer {
    store: Store,
    interval: Duration,
    batch_size: usize,
}

impl RetentionEnforcer {
    pub(crate) fn new(store: Store) -> Self {
        RetentionEnforcer {
            store,
            interval: Duration::from_secs(60),
            batch_size: DEFAULT_ENFORCE_BATCH,
        }
    }

    /// The pause between two passes of the background task (default 60 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Streams looked at per batch (default 500; at least 1).
    pub fn batch_size(mut self, streams: usize) -> Self {
        self.batch_size = streams.max(1);
        self
    }

    /// One pass over every stream with a policy.
    ///
    /// # Errors
    /// Connection errors; a stored policy that does not parse. Batches before the error
    /// stay removed.
    pub async fn run_once(&self) -> Result<RetentionReport> {
        self.pass(None, |_| {}).await
    }

    /// [`RetentionEnforcer::run_once`], calling `progress` after every batch with the
    /// totals so far (for a progress display: the number of streams with a policy is not
    /// known in advance).
    ///
    /// # Errors
    /// As [`RetentionEnforcer::run_once`].
    pub async fn run_once_with_progress(
        &self,
        progress: impl FnMut(&RetentionReport) + Send,
    ) -> Result<RetentionReport> {
        self.pass(None, progress).await
    }

    /// A pass that ends early, between batches, once `stop` says so; `progress` gets the
    /// totals after every batch.
    #[tracing::instrument(name = "chronicle.enforce_retention", skip_all)]
    async fn pass(
        &self,
        mut stop: Option<&mut watch::Receiver<bool>>,
        mut progress: impl FnMut(&RetentionReport) + Send,
    ) -> Result<RetentionReport> {
        let rules = self.store.load_retention_rules().await?;
        let mut report = RetentionReport::default();
        if rules.is_empty() {
            return Ok(report);
        }
        let mut after = String::new();
        loop {
            if stop.as_mut().is_some_and(|stop| *stop.borrow_and_update()) {
                break;
            }
            let (batch, next) = self
                .store
                .enforce_batch(&rules, &after, self.batch_size)
                .await?;
            report.add(batch);
            progress(&report);
            match next {
                Some(next) => after = next,
                None => break,
            }
        }
        tracing::debug!(
            streams = report.streams_examined,
            events = report.events_removed,
            bytes = report.bytes_freed,
            "retention pass done"
        );
        Ok(report)
    }

    /// Runs a pass every interval in a background task until [`EnforcerHandle::stop`]
    /// (or the handle is dropped). A failed pass is logged and tried again at the next
    /// interval.
    pub fn spawn(self) -> EnforcerHandle {
        let totals = Arc::new(Mutex::new(RetentionReport::default()));
        let task_totals = Arc::clone(&totals);
        let span = tracing::info_span!("chronicle.retention_enforcer");
        let task = Task::spawn("the retention enforcer", span, |mut stop| async move {
            loop {
                match self.pass(Some(&mut stop), |_| {}).await {
                    Ok(report) => task_totals
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .add(report),
                    Err(error) => tracing::warn!(%error, "retention pass failed"),
                }
                tokio::select! {
                    () = stop_requested(&mut stop) => break,
                    () = tokio::time::sleep(self.interval) => {}
                }
            }
            Ok(*task_totals.lock().unwrap_or_else(PoisonError::into_inner))
        });
        EnforcerHandle { task, totals }
    }
}

/// The running enforcer of [`RetentionEnforcer::spawn`].
///
/// Stop it with [`EnforcerHandle::stop`]. **Dropping the handle stops it too**, without
/// waiting, after the batch in hand.
#[derive(Debug)]
#[must_use = "dropping the handle stops the enforcer"]
pub struct EnforcerHandle {
    task: Task<RetentionReport>,
    totals: Arc<Mutex<RetentionReport>>,
}

impl EnforcerHandle {
    /// What the passes so far removed, added up.
    pub fn totals(&self) -> RetentionReport {
        *self.totals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the task after the batch in hand and returns the totals.
    ///
    /// # Errors
    /// [`Error::TaskPanicked`](crate::Error::TaskPanicked) when the task panicked.
    pub async fn stop(self) -> Result<RetentionReport> {
        let totals = Arc::clone(&self.totals);
        let report = self.task.stop().await?;
        Ok(report.unwrap_or_else(|| *totals.lock().unwrap_or_else(PoisonError::into_inner)))
    }
}
