//! The subscriptions a bus runs, written once for every bus: each one's stop signal, its
//! task and what the bus keeps of it (a buffer, a lag counter), the [`Subscription`]
//! handle whose close stops it, and the bus's closed flag.
//!
//! A bus keeps one [`Registry`] behind an `Arc`; its subscriptions' handles hold it
//! weakly, so dropping every clone of the bus drops the registry, and with it the stop
//! signals' senders: each task sees its signal gone and ends, as when asked to stop.
//! A subscription's task never holds the registry.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, Weak};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Pattern, Subscription};

/// The running subscriptions of one bus, in the order they started, each with a `T`:
/// what the bus reads of it while it runs.
pub(crate) struct Registry<T> {
    closed: AtomicBool,
    next_id: AtomicU64,
    running: RwLock<Vec<Running<T>>>,
}

/// One subscription as the registry keeps it.
struct Running<T> {
    id: u64,
    value: T,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl<T: Send + Sync + 'static> Registry<T> {
    /// No subscription yet, open.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Registry {
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            running: RwLock::new(Vec::new()),
        })
    }

    /// Whether [`Registry::close`] ran: the bus takes no more publishes or subscriptions.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Starts a subscription to `pattern` (in `group`): `start` gets its stop signal (true
    /// once it is to stop; an error once the bus is gone: stop then too) and returns what
    /// the bus keeps of it and its task, if it has one. The returned handle's close (or
    /// drop) stops it through [`Registry::stop`].
    pub(crate) fn start(
        self: &Arc<Self>,
        pattern: Pattern,
        group: Option<String>,
        start: impl FnOnce(watch::Receiver<bool>) -> (T, Option<JoinHandle<()>>),
    ) -> Subscription {
        let (stop, stopped) = watch::channel(false);
        let (value, task) = start(stopped);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.write().push(Running {
            id,
            value,
            stop,
            task,
        });
        let registry: Weak<Self> = Arc::downgrade(self);
        Subscription::new(pattern, group, move || async move {
            if let Some(registry) = registry.upgrade() {
                registry.stop(Some(id)).await;
            }
            Ok(())
        })
    }

    /// What the bus keeps of each running subscription, in the order they started
    /// (read-locked while the guard lives: do not hold it across an `await`).
    pub(crate) fn read(&self) -> Entries<'_, T> {
        Entries(self.running.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Stops subscription `id` (every one when `None`): takes it off the registry, sends
    /// its stop signal, drops what the bus kept of it, and waits for its task to end.
    pub(crate) async fn stop(&self, id: Option<u64>) {
        let stopped: Vec<Running<T>> = {
            let mut running = self.write();
            let (stopped, kept) = std::mem::take(&mut *running)
                .into_iter()
                .partition(|run| id.is_none_or(|id| run.id == id));
            *running = kept;
            stopped
        };
        let mut tasks = Vec::with_capacity(stopped.len());
        for run in stopped {
            let _ = run.stop.send(true);
            tasks.extend(run.task);
            // `value` (an in-memory buffer's sender, say) and the signal go here.
        }
        for task in tasks {
            // A task's deliveries catch their panics; an error here is an abort.
            let _ = task.await;
        }
    }

    /// Closes the registry (later [`Registry::is_closed`] is true) and stops every
    /// subscription, waiting for their tasks.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.stop(None).await;
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Running<T>>> {
        self.running.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running subscriptions, read: [`Registry::read`].
pub(crate) struct Entries<'a, T>(RwLockReadGuard<'a, Vec<Running<T>>>);

impl<T> Entries<'_, T> {
    /// What the bus keeps of each, in the order they started.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|run| &run.value)
    }

    /// How many run.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Returns once `stop` says to stop, or its sender is gone (the bus was dropped).
pub(crate) async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closing_a_subscription_stops_its_task_and_only_its() {
        let registry: Arc<Registry<u32>> = Registry::new();
        let spawn = |value: u32| {
            move |mut stop: watch::Receiver<bool>| {
                let task = tokio::spawn(async move { stop_requested(&mut stop).await });
                (value, Some(task))
            }
        };
        let first = registry.start(Pattern::new("a"), None, spawn(1));
        let _second = registry.start(Pattern::new("b"), None, spawn(2));
        assert_eq!(registry.read().iter().copied().collect::<Vec<_>>(), [1, 2]);
        first.close().await.unwrap();
        assert_eq!(registry.read().iter().copied().collect::<Vec<_>>(), [2]);
        registry.close().await;
        assert!(registry.is_closed());
        assert_eq!(registry.read().len(), 0);
    }

    #[tokio::test]
    async fn dropping_the_registry_ends_the_tasks() {
        let registry: Arc<Registry<()>> = Registry::new();
        let (ended, ending) = tokio::sync::oneshot::channel();
        registry
            .start(Pattern::new("a"), None, |mut stop| {
                let task = tokio::spawn(async move {
                    stop_requested(&mut stop).await;
                    let _ = ended.send(*stop.borrow());
                });
                ((), Some(task))
            })
            .detach();
        drop(registry);
        let asked = tokio::time::timeout(std::time::Duration::from_secs(5), ending)
            .await
            .expect("the task ended")
            .expect("it said so");
        assert!(!asked, "ended because the bus was gone, not asked");
    }
}
