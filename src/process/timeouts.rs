//! The timeout scheduler: which timeouts are pending, and the task that delivers each
//! when due.
//!
//! The timeouts are stored (as `timeout` records in the instances' streams), never only
//! held here: at start the task queries the store for this manager's `timeout`,
//! `timed_out` and `ended` records and folds them into the pending set; from then on the
//! delivery, which reads the same records from the log, keeps the set current (also for
//! timeouts other processes schedule). A timeout delivered twice (by two processes, or
//! after a restart) is handled once: the delivery checks the instance's stream.
//!
//! The scan and the delivery run at once, so the scan may read a `timeout` record after
//! the delivery has already learned that it was handled or its instance ended. While
//! the scan runs, what the delivery retires is kept aside, and the scan's stale news
//! does not bring it back.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::ProcessManager;
use super::delivery::Delivery;
use super::instance::{ENDED, TIMED_OUT, TIMEOUT, TimeoutNews, record_type};
use crate::error::Result;
use crate::panics::CatchPanic;
use crate::read::EventQuery;
use crate::store::Store;
use crate::stream::StreamId;
use crate::task::stop_requested;

/// Records read per query while scanning at start.
const SCAN_PAGE: usize = 1_000;
/// The longest pause before a failing timeout is tried again.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);

/// The pending timeouts of one manager, soonest first.
#[derive(Debug, Default)]
pub(crate) struct Timeouts {
    set: Mutex<PendingSet>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct PendingSet {
    by_due: BTreeSet<(DateTime<Utc>, Uuid)>,
    by_id: HashMap<Uuid, (DateTime<Utc>, StreamId)>,
    failures: HashMap<Uuid, u32>,
    /// While the start's scan runs: what the delivery retired meanwhile.
    retired: Option<Retired>,
}

/// Timeouts handled and instances ended, learned from the delivery during the scan.
#[derive(Debug, Default)]
struct Retired {
    timeouts: HashSet<Uuid>,
    instances: HashSet<StreamId>,
}

impl PendingSet {
    fn insert(&mut self, id: Uuid, stream: StreamId, due: DateTime<Utc>) {
        self.remove(id);
        self.by_due.insert((due, id));
        self.by_id.insert(id, (due, stream));
    }

    fn remove(&mut self, id: Uuid) {
        if let Some((due, _)) = self.by_id.remove(&id) {
            self.by_due.remove(&(due, id));
        }
    }

    /// Takes in what a record says (`Scheduled` only if neither the timeout nor its
    /// instance is retired), and says whether a timeout was scheduled.
    fn learn(&mut self, news: TimeoutNews) -> bool {
        match news {
            TimeoutNews::Scheduled { id, stream, due } => {
                let retired = self.retired.as_ref().is_some_and(|retired| {
                    retired.timeouts.contains(&id) || retired.instances.contains(&stream)
                });
                if retired {
                    return false;
                }
                self.insert(id, stream, due);
                return true;
            }
            TimeoutNews::Handled(id) => {
                self.remove(id);
                self.failures.remove(&id);
                if let Some(retired) = &mut self.retired {
                    retired.timeouts.insert(id);
                }
            }
            TimeoutNews::Ended(stream) => {
                let ended: Vec<Uuid> = self
                    .by_id
                    .iter()
                    .filter(|(_, (_, of))| *of == stream)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ended {
                    self.remove(id);
                    self.failures.remove(&id);
                }
                if let Some(retired) = &mut self.retired {
                    retired.instances.insert(stream);
                }
            }
        }
        false
    }
}

impl Timeouts {
    fn set(&self) -> std::sync::MutexGuard<'_, PendingSet> {
        self.set.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes in what a record says.
    pub(crate) fn learn(&self, news: TimeoutNews) {
        let scheduled = self.set().learn(news);
        if scheduled {
            self.changed.notify_one();
        }
    }

    /// How many timeouts are pending.
    pub(crate) fn len(&self) -> usize {
        self.set().by_id.len()
    }

    /// Reads every timeout record of the manager `name` from the store. What the
    /// delivery retires while it runs stays retired.
    async fn scan(&self, store: &Store, name: &str) -> Result<()> {
        self.scanning(true);
        self.scan_pages(store, name).await?;
        self.scanning(false);
        Ok(())
    }

    /// Keeps what the delivery retires aside (from the scan's start to its end).
    fn scanning(&self, running: bool) {
        let mut set = self.set();
        if !running {
            set.retired = None;
        } else if set.retired.is_none() {
            set.retired = Some(Retired::default());
        }
    }

    async fn scan_pages(&self, store: &Store, name: &str) -> Result<()> {
        let types = [TIMEOUT, TIMED_OUT, ENDED].map(|kind| record_type(name, kind));
        let mut offset = 0;
        loop {
            let query = EventQuery::new()
                .event_types(types.iter().cloned())
                .limit(SCAN_PAGE)
                .offset(offset);
            let page: Vec<_> = store.query(&query).try_collect().await?;
            for event in &page {
                if let Some(news) = TimeoutNews::read(name, event)? {
                    self.learn(news);
                }
            }
            if page.len() < SCAN_PAGE {
                return Ok(());
            }
            offset += page.len();
        }
    }

    /// The soonest pending timeout.
    fn next(&self) -> Option<(DateTime<Utc>, Uuid, StreamId)> {
        let set = self.set();
        let &(due, id) = set.by_due.first()?;
        let (_, stream) = set.by_id.get(&id)?;
        Some((due, id, stream.clone()))
    }

    /// `id` was delivered.
    fn done(&self, id: Uuid) {
        let mut set = self.set();
        set.remove(id);
        set.failures.remove(&id);
    }

    /// `id` failed: try again after a pause that doubles with each failure.
    fn postpone(&self, id: Uuid, stream: StreamId, first_pause: Duration) {
        let mut set = self.set();
        let failures = set.failures.entry(id).or_insert(0);
        *failures += 1;
        let pause = first_pause
            .saturating_mul(2u32.saturating_pow((*failures - 1).min(16)))
            .min(MAX_RETRY_PAUSE);
        let due = Utc::now() + chrono::Duration::from_std(pause).unwrap_or_default();
        set.insert(id, stream, due);
    }
}

/// The scheduler task's body: scan, then deliver each timeout when due, until stopped.
pub(crate) async fn run<P: ProcessManager>(
    timeouts: Arc<Timeouts>,
    delivery: Arc<Delivery<P>>,
    retry: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut pause = retry;
    loop {
        tokio::select! {
            biased;
            () = stop_requested(&mut stop) => return Ok(()),
            scanned = timeouts.scan(&delivery.store, P::NAME) => match scanned {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, "could not read the pending timeouts; trying again");
                }
            },
        }
        tokio::select! {
            () = stop_requested(&mut stop) => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
        pause = pause.saturating_mul(2).min(MAX_RETRY_PAUSE);
    }
    loop {
        let wait = match timeouts.next() {
            Some((due, id, stream)) => {
                let now = Utc::now();
                if due <= now {
                    deliver(&timeouts, &delivery, id, stream, retry).await;
                    if *stop.borrow() {
                        return Ok(());
                    }
                    continue;
                }
                (due - now).to_std().unwrap_or_default()
            }
            None => Duration::from_secs(3_600),
        };
        tokio::select! {
            () = stop_requested(&mut stop) => return Ok(()),
            () = timeouts.changed.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Delivers the timeout `id`; a failure (or a panic in the handler) postpones it.
async fn deliver<P: ProcessManager>(
    timeouts: &Timeouts,
    delivery: &Delivery<P>,
    id: Uuid,
    stream: StreamId,
    retry: Duration,
) {
    let span = tracing::info_span!("chronicle.process.timeout", process = P::NAME, instance = %stream, timeout = %id);
    let delivered = CatchPanic::new(tracing::Instrument::instrument(
        delivery.timeout(&stream, id),
        span,
    ))
    .await;
    match delivered {
        Ok(Ok(())) => timeouts.done(id),
        Ok(Err(error)) => {
            tracing::warn!(instance = %stream, timeout = %id, %error, "a timeout could not be delivered; trying again");
            timeouts.postpone(id, stream, retry);
        }
        Err(panicked) => {
            tracing::error!(instance = %stream, timeout = %id, panic = %panicked.message, "a timeout's handler panicked; trying again");
            timeouts.postpone(id, stream, retry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduled(id: Uuid, stream: &StreamId) -> TimeoutNews {
        TimeoutNews::Scheduled {
            id,
            stream: stream.clone(),
            due: Utc::now(),
        }
    }

    #[test]
    fn a_stale_scan_does_not_bring_back_what_the_delivery_retired() {
        let timeouts = Timeouts::default();
        let (ended, handled, open) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let one = StreamId::new("process.p-1").expect("stream");
        let two = StreamId::new("process.p-2").expect("stream");
        timeouts.scanning(true);
        // The delivery: two timeouts scheduled; the first's instance ends, the second
        // is handled.
        timeouts.learn(scheduled(ended, &one));
        timeouts.learn(scheduled(handled, &two));
        timeouts.learn(TimeoutNews::Ended(one.clone()));
        timeouts.learn(TimeoutNews::Handled(handled));
        // The scan, which read its page before those records were appended.
        timeouts.learn(scheduled(ended, &one));
        timeouts.learn(scheduled(handled, &two));
        timeouts.learn(scheduled(open, &two));
        timeouts.scanning(false);
        assert_eq!(timeouts.len(), 1);
        assert_eq!(timeouts.next().map(|(_, id, _)| id), Some(open));
        // After the scan, nothing is kept aside.
        timeouts.learn(scheduled(ended, &one));
        assert_eq!(timeouts.len(), 2);
    }
}
