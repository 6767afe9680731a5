//! Administration of an outbox: how much work is where, the dead requests, retrying them,
//! and purging what is done; with the handlers ([`Outbox`]) or without
//! ([`OutboxAdmin`], for operators' tools).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{DEFAULT_NAME, Outbox, micros, now_micros};
use crate::error::Result;
use crate::read::LogPosition;
use crate::store::Store;
use crate::store::batch::Flush;
use crate::store::requests::{DEAD, DONE, PENDING, RUNNING};

/// The state of an outbox's work, from [`Outbox::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct OutboxStats {
    /// About how many events the processor has still to read: the log's positions after
    /// its checkpoint (positions freed by hard deletes count too).
    pub unprocessed_events: u64,
    /// Per handler of the map, by name.
    pub handlers: BTreeMap<String, HandlerStats>,
}

/// One handler's requests by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct HandlerStats {
    /// Waiting for their first run.
    pub pending: u64,
    /// Claimed by an executor.
    pub running: u64,
    /// Failed, waiting for a retry.
    pub failed_waiting: u64,
    /// Failed for good.
    pub dead: u64,
    /// Done (until purged).
    pub done: u64,
    /// When the oldest request still to run (pending, failed-waiting or running) was
    /// created: how long the handler has been behind.
    pub oldest_open: Option<DateTime<Utc>>,
}

/// A dead request, from [`Outbox::dead_requests`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadRequest {
    /// The request's id (pass it to [`Outbox::retry_dead`]).
    pub id: i64,
    /// Its handler.
    pub handler: String,
    /// The event it was for.
    pub event_id: Uuid,
    /// That event's stream.
    pub stream_id: String,
    /// Failures recorded.
    pub errors: u32,
    /// The last failure's error.
    pub last_error: Option<String>,
    /// When it went dead.
    pub dead_since: DateTime<Utc>,
}

/// An outbox's administration without its handlers, from [`Store::outbox_admin`]: for
/// operators' tools (the `chronicle outbox` commands) that see the requests but do not
/// run them. [`Outbox`] has the same methods.
#[derive(Debug, Clone)]
pub struct OutboxAdmin {
    store: Store,
    name: String,
}

impl Store {
    /// The administration of the outbox whose processor's checkpoint is `chronicle.outbox`
    /// (the default; see [`OutboxAdmin::name`]). The requests of every outbox on the store
    /// share one table: stats, dead requests, retries and purges cover them all.
    pub fn outbox_admin(&self) -> OutboxAdmin {
        OutboxAdmin {
            store: self.clone(),
            name: DEFAULT_NAME.to_owned(),
        }
    }
}

impl OutboxAdmin {
    /// The outbox's processor checkpoint name, as given to [`Outbox::name`]: it only
    /// changes [`OutboxStats::unprocessed_events`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Unprocessed events, and the requests by state of every handler that has any.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn stats(&self) -> Result<OutboxStats> {
        self.stats_of(std::iter::empty()).await
    }

    /// [`OutboxAdmin::stats`], with `handlers` listed even without requests.
    async fn stats_of(&self, handlers: impl Iterator<Item = String>) -> Result<OutboxStats> {
        super::outbox_kept(&self.store)?;
        let checkpoint = self
            .store
            .checkpoint(&self.name)
            .await?
            .unwrap_or(LogPosition::START);
        let last = self.store.last_position().await?;
        // Reads only: never SQLite's write lock.
        let mut tx = self.store.begin_read().await?;
        let counts = tx.request_counts().await?;
        tx.commit().await?;
        let mut handlers: BTreeMap<String, HandlerStats> = handlers
            .map(|name| (name, HandlerStats::default()))
            .collect();
        for row in counts {
            let stats = handlers.entry(row.handler).or_default();
            let count = row.count;
            if row.state != DONE && row.state != DEAD {
                let created = DateTime::from_timestamp_micros(row.oldest).unwrap_or_default();
                stats.oldest_open = Some(stats.oldest_open.map_or(created, |o| o.min(created)));
            }
            match (row.state, row.failed) {
                (PENDING, false) => stats.pending += count,
                (PENDING, true) => stats.failed_waiting += count,
                (RUNNING, _) => stats.running += count,
                (DONE, _) => stats.done += count,
                (DEAD, _) => stats.dead += count,
                _ => {}
            }
        }
        Ok(OutboxStats {
            unprocessed_events: last.saturating_sub(checkpoint.position()),
            handlers,
        })
    }

    /// Up to `limit` dead requests, of `handler` or of all, oldest first, with their last
    /// error.
    ///
    /// # Errors
    /// As [`OutboxAdmin::stats`].
    pub async fn dead_requests(
        &self,
        handler: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadRequest>> {
        let mut tx = self.store.begin_read().await?;
        let rows = tx.dead_requests(handler, limit).await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|row| DeadRequest {
                id: row.id,
                handler: row.handler,
                event_id: row.event_id,
                stream_id: row.stream_id,
                errors: u32::try_from(row.errors).unwrap_or(0),
                last_error: row.last_error,
                dead_since: DateTime::from_timestamp_micros(row.updated_at).unwrap_or_default(),
            })
            .collect())
    }

    /// Makes the dead request `id` pending again, with its error count reset; `false` when
    /// it is not dead. Executors find it at their next poll.
    ///
    /// # Errors
    /// As [`OutboxAdmin::stats`].
    pub async fn retry_dead(&self, id: i64) -> Result<bool> {
        Ok(self.revive(Some(id), None).await? == 1)
    }

    /// Makes every dead request of `handler` pending again. Returns how many.
    ///
    /// # Errors
    /// As [`OutboxAdmin::stats`].
    pub async fn retry_all_dead(&self, handler: &str) -> Result<u64> {
        self.revive(None, Some(handler)).await
    }

    async fn revive(&self, id: Option<i64>, handler: Option<&str>) -> Result<u64> {
        let mut tx = self.store.begin_batch(Flush::Wait).await?;
        let revived = tx.retry_dead(id, handler, now_micros()).await?;
        tx.commit().await?;
        Ok(revived)
    }

    /// Deletes the done requests finished more than `older_than` ago. Returns how many.
    ///
    /// # Errors
    /// As [`OutboxAdmin::stats`].
    pub async fn purge_done(&self, older_than: Duration) -> Result<u64> {
        let mut tx = self.store.begin_batch(Flush::Wait).await?;
        let purged = tx
            .purge_done(now_micros().saturating_sub(micros(older_than)))
            .await?;
        tx.commit().await?;
        Ok(purged)
    }
}

impl Outbox {
    /// This outbox's administration ([`Store::outbox_admin`] under its name).
    fn admin(&self) -> OutboxAdmin {
        self.store.outbox_admin().name(self.settings.name.clone())
    }

    /// Unprocessed events, and every handler's requests by state.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn stats(&self) -> Result<OutboxStats> {
        self.admin()
            .stats_of(self.handlers.names().into_iter())
            .await
    }

    /// Up to `limit` dead requests, of `handler` or of all, oldest first, with their last
    /// error.
    ///
    /// # Errors
    /// As [`Outbox::stats`].
    pub async fn dead_requests(
        &self,
        handler: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadRequest>> {
        self.admin().dead_requests(handler, limit).await
    }

    /// Makes the dead request `id` pending again, with its error count reset; `false` when
    /// it is not dead.
    ///
    /// # Errors
    /// As [`Outbox::stats`].
    pub async fn retry_dead(&self, id: i64) -> Result<bool> {
        let revived = self.admin().retry_dead(id).await?;
        if revived {
            self.created.notify_one();
        }
        Ok(revived)
    }

    /// Makes every dead request of `handler` pending again. Returns how many.
    ///
    /// # Errors
    /// As [`Outbox::stats`].
    pub async fn retry_all_dead(&self, handler: &str) -> Result<u64> {
        let revived = self.admin().retry_all_dead(handler).await?;
        if revived > 0 {
            self.created.notify_one();
        }
        Ok(revived)
    }

    /// The schedulers' purge: [`Outbox::purge_done`] with the age set by
    /// [`Outbox::purge_done_after`], when it is due (once a minute, or as often as the age
    /// when shorter). `last` is when it last ran.
    pub(crate) async fn purge_if_due(&self, last: &mut Option<tokio::time::Instant>) {
        let Some(age) = self.settings.purge_done_after else {
            return;
        };
        let every = age.min(Duration::from_secs(60));
        if last.is_some_and(|last| last.elapsed() < every) {
            return;
        }
        *last = Some(tokio::time::Instant::now());
        match self.purge_done(age).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "done outbox requests purged"),
            Err(error) => tracing::warn!(%error, "purging done outbox requests failed"),
        }
    }

    /// Deletes the done requests finished more than `older_than` ago. Returns how many.
    ///
    /// # Errors
    /// As [`Outbox::stats`].
    pub async fn purge_done(&self, older_than: Duration) -> Result<u64> {
        self.admin().purge_done(older_than).await
    }
}
