//! Waiting for an outbox: until every request for the events up to a log position is
//! finished (done or dead), with the processor past that position.

use std::time::Duration;

use tracing::Instrument;

use super::Outbox;
use crate::error::Result;
use crate::read::LogPosition;
use crate::store::batch::Flush;

/// How often a wait looks at the requests again.
const WAIT_POLL: Duration = Duration::from_millis(20);

impl Outbox {
    /// Waits until the processor has passed `position` (say, an
    /// [`AppendResult::log_position`](crate::AppendResult::log_position)) and every
    /// request of this outbox's handlers for the events up to it is finished: done, or
    /// dead. Requests pending, running or waiting for a retry are not finished, so a
    /// failing handler delays the wait until its request goes dead. Events before a
    /// handler's start have no requests to wait for.
    ///
    /// The wait reads the database (every 20 ms): whichever process runs the outbox
    /// (a scheduler here, or elsewhere), it sees its progress. It does not run the
    /// outbox itself, and waits as long as it takes: bound it with
    /// [`tokio::time::timeout`] where nothing may be running.
    ///
    /// ```no_run
    /// # async fn demo(store: chronicle::Store, outbox: chronicle::Outbox) -> chronicle::Result<()> {
    /// use std::time::Duration;
    /// use chronicle::{ExpectedVersion, NewEvent};
    ///
    /// let running = outbox.concurrent().spawn();
    /// let appended = store
    ///     .append("account-1", ExpectedVersion::Any, vec![NewEvent::new("account.Opened", serde_json::json!({}))])
    ///     .await?;
    /// tokio::time::timeout(Duration::from_secs(10), outbox.wait_until(appended.log_position()))
    ///     .await
    ///     .expect("the outbox is running")?;
    /// running.stop().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub async fn wait_until(&self, position: LogPosition) -> Result<()> {
        let name = &self.settings.name;
        let span = tracing::debug_span!("chronicle.outbox.wait", outbox = %name, %position);
        async {
            loop {
                let processed = self
                    .store
                    .checkpoint(name)
                    .await?
                    .unwrap_or(LogPosition::START);
                if processed >= position && self.open_requests_until(position).await? == 0 {
                    return Ok(());
                }
                tokio::time::sleep(WAIT_POLL).await;
            }
        }
        .instrument(span)
        .await
    }

    /// Waits until every request for the events committed before the call is finished
    /// (done or dead): [`Outbox::wait_until`] the last event committed at the call.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn wait_for_idle(&self) -> Result<()> {
        let mut tx = self.store.begin_batch(Flush::Wait).await?;
        let last = tx.last_committed_event().await?;
        tx.commit().await?;
        self.wait_until(last).await
    }

    /// The open requests of this outbox's handlers for events up to `position`.
    async fn open_requests_until(&self, position: LogPosition) -> Result<u64> {
        let mut tx = self.store.begin_batch(Flush::Wait).await?;
        let open = tx
            .open_requests_until(&self.handler_names, position)
            .await?;
        tx.commit().await?;
        Ok(open)
    }
}
