//! The processor: turns the global log into handler requests, one transaction per window
//! of events, with the checkpoint moved in that transaction.
//!
//! Several processors may run on one database (one per process): they read the same
//! window, and only the first to move the checkpoint from where it was commits; the
//! others roll back and read on from the new checkpoint. `UNIQUE (handler, event_id)`
//! guards the rest.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::Instrument;

use super::{Outbox, now_micros};
use crate::error::Result;
use crate::projection::StartFrom;
use crate::read::{EventParts, LogPosition};
use crate::store::batch::Flush;
use crate::store::read::Expired;
use crate::store::requests::NewRequest;
use crate::store::{DEFAULT_WINDOW_BYTES, WindowLimit};

impl Outbox {
    /// Processes the log up to its end: creates the requests of every event after the
    /// checkpoint, a window at a time. Returns how many requests it created.
    ///
    /// # Errors
    /// Connection errors, and
    /// [`ValidationError::InvalidText`](crate::ValidationError::InvalidText) for an outbox
    /// name no checkpoint can have (see [`MAX_NAME_LEN`](crate::MAX_NAME_LEN)).
    pub async fn process(&self) -> Result<u64> {
        let mut created = 0;
        loop {
            let (batch, more) = self.process_window().await?;
            created += batch;
            if !more {
                return Ok(created);
            }
        }
    }

    /// Where each handler starts, recorded in the database by the first call (and, on an
    /// outbox without a checkpoint, the processor's own start stored as its checkpoint).
    async fn starts(&self) -> Result<Arc<HashMap<String, LogPosition>>> {
        self.starts
            .get_or_try_init(|| self.register())
            .await
            .map(Arc::clone)
    }

    /// Records the handlers' starts (those not recorded yet) and, when the processor has
    /// no checkpoint, moves it to the earliest start of this map's handlers.
    async fn register(&self) -> Result<Arc<HashMap<String, LogPosition>>> {
        let name = &self.settings.name;
        crate::text::check_name("outbox name", name)?;
        let span = tracing::debug_span!("chronicle.outbox.register", outbox = %name);
        async {
            let asked: Vec<(&str, StartFrom)> = self
                .handlers
                .iter()
                .map(|handler| {
                    let start = handler.start.unwrap_or(self.settings.start);
                    (handler.name.as_str(), start)
                })
                .collect();
            loop {
                // Read before the transaction takes SQLite's write lock.
                let end = if asked.iter().any(|(_, start)| *start == StartFrom::End) {
                    self.store.log_end().await?
                } else {
                    LogPosition::START
                };
                let wanted: Vec<(&str, LogPosition)> = asked
                    .iter()
                    .map(|(handler, start)| {
                        let position = match start {
                            StartFrom::Beginning => LogPosition::START,
                            StartFrom::End => end,
                            StartFrom::After(position) => *position,
                        };
                        (*handler, position)
                    })
                    .collect();
                let mut tx = self.store.begin_batch(Flush::Wait).await?;
                let stored: HashMap<String, LogPosition> = tx
                    .register_handlers(name, &wanted, now_micros())
                    .await?
                    .into_iter()
                    .collect();
                if tx.locked_checkpoint(name).await?.is_none() {
                    let first = asked
                        .iter()
                        .filter_map(|(handler, _)| stored.get(*handler).copied())
                        .min()
                        .unwrap_or(LogPosition::START);
                    if first != LogPosition::START
                        && !tx.move_checkpoint(name, LogPosition::START, first).await?
                    {
                        // Another processor stored one meanwhile: read again.
                        continue;
                    }
                    if first != LogPosition::START {
                        tracing::info!(outbox = %name, start = %first, "no checkpoint yet: starting there");
                    }
                }
                tx.commit().await?;
                return Ok(Arc::new(stored));
            }
        }
        .instrument(span)
        .await
    }

    /// One window: its requests and the checkpoint move, in one transaction. Returns the
    /// requests created and whether more of the log may follow.
    pub(crate) async fn process_window(&self) -> Result<(u64, bool)> {
        let store = &self.store;
        let name = &self.settings.name;
        let starts = self.starts().await?;
        let from = store.checkpoint(name).await?.unwrap_or(LogPosition::START);
        let span = tracing::debug_span!("chronicle.outbox.process", outbox = %name, %from);
        async {
            let types = Arc::clone(&self.event_types);
            let window = WindowLimit {
                events: self.settings.batch_size,
                bytes: Some(DEFAULT_WINDOW_BYTES),
            };
            // Requests need the events' ids, types, streams and places: no payload, no
            // metadata.
            let window = store
                .read_window_encoded(from, types, EventParts::NONE, window, Expired::Hide)
                .await?;
            if window.scanned_to == from {
                return Ok((0, false));
            }
            let starts: &HashMap<String, LogPosition> = &starts;
            let requests: Vec<NewRequest<'_>> = window
                .events
                .iter()
                .flat_map(|event| {
                    let at = event.log_position();
                    self.handlers
                        .matching(&event.event_type)
                        // Not for events at or before the handler's start.
                        .filter(move |handler| starts.get(&handler.name).is_none_or(|s| at > *s))
                        .map(move |handler| NewRequest {
                            handler: &handler.name,
                            event_id: event.id,
                            position: event.position,
                            commit: at.commit(),
                            stream: event.stream_id.as_str(),
                            priority: handler.priority,
                            ordered: handler.ordered,
                        })
                })
                .collect();
            let mut tx = store.begin_batch(Flush::Wait).await?;
            let created = tx.insert_requests(&requests, now_micros()).await?;
            if !tx.move_checkpoint(name, from, window.scanned_to).await? {
                // Another processor took this window first.
                tracing::debug!(outbox = %name, "window processed elsewhere");
                return Ok((0, true));
            }
            tx.commit().await?;
            metrics::counter!("chronicle_outbox_processed_events_total", "outbox" => name.clone())
                .increment(window.events.len() as u64);
            metrics::counter!("chronicle_outbox_requests_created_total", "outbox" => name.clone())
                .increment(created);
            if created > 0 {
                self.created.notify_one();
            }
            Ok((created, window.more))
        }
        .instrument(span)
        .await
    }
}
