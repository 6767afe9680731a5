//! What the background tasks (projection runners, outbox schedulers, the retention
//! enforcer) share: how they are told to stop, how a stop waits for them, and what a
//! dropped handle does.
//!
//! Each public handle ([`ProjectionHandle`](crate::ProjectionHandle),
//! [`SchedulerHandle`](crate::outbox::SchedulerHandle),
//! [`EnforcerHandle`](crate::EnforcerHandle)) wraps a [`Task`] and has the same way to
//! stop: `async fn stop(self) -> Result<Report>`, which asks the task to stop after the
//! work in hand, waits for it, and returns what it did or why it failed. A panic that
//! escapes the task's own handling ends it as [`Error::TaskPanicked`].
//!
//! **Dropping a handle stops its task** the same way, without waiting: the task finishes
//! the work in hand and ends, and what it holds goes with it (on PostgreSQL, a
//! projection's lease: its dedicated connection is closed, which ends the session and
//! its advisory lock, so another instance takes over).

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::panics::{CatchPanic, Panicked};

/// Resolves once a stop is requested on `stop`; never, when its sender was dropped
/// without one ([`Task`] always sends one before its sender goes).
pub(crate) async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A spawned background task returning `T`, with its stop signal. Dropping it asks the
/// task to stop (see the module's doc).
#[derive(Debug)]
pub(crate) struct Task<T> {
    /// What the task is, for errors: "projection `totals`", "the retention enforcer".
    what: String,
    stop: watch::Sender<bool>,
    join: JoinHandle<Result<T>>,
}

impl<T: Send + 'static> Task<T> {
    /// Spawns `body` (given the stop signal to watch) on the current tokio runtime, in
    /// `span`. A panic in it becomes [`Error::TaskPanicked`].
    pub(crate) fn spawn<F>(
        what: impl Into<String>,
        span: tracing::Span,
        body: impl FnOnce(watch::Receiver<bool>) -> F,
    ) -> Self
    where
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let what = what.into();
        let (stop, stopped) = watch::channel(false);
        let task_name = what.clone();
        let run = CatchPanic::new(body(stopped));
        let join = tokio::spawn(
            async move {
                match run.await {
                    Ok(done) => done,
                    Err(panicked) => Err(panic_error(task_name, panicked)),
                }
            }
            .instrument(span),
        );
        Task { what, stop, join }
    }
}

/// Logs the panic of the task `what` (with its backtrace) and makes it
/// [`Error::TaskPanicked`].
fn panic_error(what: String, panicked: Panicked) -> Error {
    tracing::error!(
        task = %what,
        panic = %panicked.message,
        backtrace = panicked.backtrace.as_deref(),
        "background task panicked"
    );
    Error::TaskPanicked {
        task: what,
        message: panicked.message,
    }
}

/// Runs the two loops of one task (`what`) side by side, each on a tokio task of its own
/// and given a stop signal of their own, and returns both results. Both are asked to stop
/// when `stopped` asks, **and when either one ends first**: a loop that panicked (its
/// result is then [`Error::TaskPanicked`], logged at once) does not leave the other
/// running alone, so the task ends, and its handle reports the failure.
pub(crate) async fn side_by_side<A, B, FA, FB>(
    what: &str,
    mut stopped: watch::Receiver<bool>,
    (a_name, a): (&str, impl FnOnce(watch::Receiver<bool>) -> FA),
    (b_name, b): (&str, impl FnOnce(watch::Receiver<bool>) -> FB),
) -> (Result<A>, Result<B>)
where
    A: Send + 'static,
    B: Send + 'static,
    FA: Future<Output = A> + Send + 'static,
    FB: Future<Output = B> + Send + 'static,
{
    let (stop, parts_stopped) = watch::channel(false);
    let a = spawn_part(format!("{what}'s {a_name}"), a(parts_stopped.clone()));
    let b = spawn_part(format!("{what}'s {b_name}"), b(parts_stopped));
    tokio::pin!(a, b);
    let (a, b) = tokio::select! {
        () = stop_requested(&mut stopped) => {
            stop.send_replace(true);
            tokio::join!(a, b)
        }
        a_done = &mut a => {
            stop.send_replace(true);
            (a_done, b.await)
        }
        b_done = &mut b => {
            stop.send_replace(true);
            (a.await, b_done)
        }
    };
    (a, b)
}

/// Spawns `part`, one loop of a task (`what`), on a tokio task of its own. Awaited, it is
/// the loop's result; a panic in it is logged at once and becomes [`Error::TaskPanicked`].
fn spawn_part<T: Send + 'static>(
    what: String,
    part: impl Future<Output = T> + Send + 'static,
) -> impl Future<Output = Result<T>> {
    let join = tokio::spawn(CatchPanic::new(part));
    async move {
        match join.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(panicked)) => Err(panic_error(what, panicked)),
            Err(error) => Err(Error::TaskPanicked {
                task: what,
                message: error.to_string(),
            }),
        }
    }
}

impl<T> Task<T> {
    /// Asks the task to stop after the work in hand.
    pub(crate) fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Asks the task to stop and waits for it: its result, or `None` when it was aborted
    /// ([`Task::abort`]) before it ended.
    ///
    /// # Errors
    /// The task's own failure, or [`Error::TaskPanicked`].
    pub(crate) async fn stop(mut self) -> Result<Option<T>> {
        self.request_stop();
        match (&mut self.join).await {
            Ok(result) => result.map(Some),
            Err(error) if error.is_cancelled() => Ok(None),
            // Panics are caught in the task; this one escaped the catch itself.
            Err(error) => Err(Error::TaskPanicked {
                task: self.what.clone(),
                message: error.to_string(),
            }),
        }
    }

    /// Returns once the task has ended (polled: the join handle stays for `stop`), with
    /// the error to give a caller that waited for it to do something.
    pub(crate) async fn ended(&self) -> Error {
        while !self.join.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Error::TaskPanicked {
            task: self.what.clone(),
            message: "it ended before what was waited for happened (see the log)".to_owned(),
        }
    }

    /// Kills the task at once, wherever it is.
    pub(crate) fn abort(&self) {
        self.join.abort();
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        // A dropped handle stops its task (the receivers see `true`, then the sender goes).
        self.request_stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_the_task_is_its_failure() {
        let task: Task<()> = Task::spawn("a test task", tracing::Span::none(), |_stop| async {
            panic!("the task broke");
        });
        match task.stop().await {
            Err(Error::TaskPanicked { task, message }) => {
                assert_eq!(task, "a test task");
                assert_eq!(message, "the task broke");
            }
            other => panic!("expected a panic, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_loop_that_panics_stops_the_loop_beside_it() {
        let (_stop, stopped) = watch::channel(false);
        let looping = |mut stop: watch::Receiver<bool>| async move {
            stop_requested(&mut stop).await;
            "stopped"
        };
        let panicking = |_stop: watch::Receiver<bool>| async move {
            tokio::task::yield_now().await;
            panic!("the loop broke");
        };
        let ended = side_by_side(
            "a scheduler",
            stopped,
            ("looping part", looping),
            ("panicking part", panicking),
        );
        let (looped, panicked): (Result<&str>, Result<()>) =
            tokio::time::timeout(std::time::Duration::from_secs(5), ended)
                .await
                .expect("the panic ends both loops");
        assert_eq!(looped.expect("stopped cleanly"), "stopped");
        match panicked {
            Err(Error::TaskPanicked { task, message }) => {
                assert_eq!(task, "a scheduler's panicking part");
                assert_eq!(message, "the loop broke");
            }
            other => panic!("expected the panic, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn stop_returns_what_the_task_did_and_a_drop_stops_it() {
        let (ended, mut ended_rx) = tokio::sync::mpsc::channel(1);
        let counting = |mut stop: watch::Receiver<bool>| {
            let ended = ended.clone();
            async move {
                stop_requested(&mut stop).await;
                let _ = ended.send(()).await;
                Ok(7)
            }
        };
        let task = Task::spawn("counting", tracing::Span::none(), counting);
        assert_eq!(task.stop().await.expect("stops"), Some(7));
        assert!(ended_rx.recv().await.is_some());

        let task = Task::spawn("counting", tracing::Span::none(), counting);
        drop(task);
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), ended_rx.recv());
        assert!(stopped.await.expect("the drop stops it").is_some());

        let task = Task::spawn("counting", tracing::Span::none(), counting);
        task.abort();
        assert_eq!(task.stop().await.expect("aborted"), None);
    }
}
