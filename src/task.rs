//! What the background tasks (projection runners, outbox schedulers) share: how they are
//! told to stop.

use tokio::sync::watch;

/// Resolves once a stop is requested on `stop`; never, when its sender was dropped
/// without one (the task then runs on, detached, until the runtime shuts down).
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
