//! Buses for tests: [`RecordingBus`] keeps what was published, to assert on;
//! [`NoopBus`] only counts. Both are also [`EventSink`]s, so a relay can feed them, and
//! both take the events of an [`AggregateTest`](crate::testing::AggregateTest)
//! (`Outcome::publish_to`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{
    Bus, BusEvent, BusHandler, BusHealth, BusStats, EventSink, InMemoryBus, Outgoing, Subscribe,
    Subscription,
};
use crate::error::Result;

/// A bus that records every event published to it (and every message a relay sends it),
/// in order, and also delivers them to its subscribers, synchronously, as an
/// [`InMemoryBus`] does. Clones share the record.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use chronicle::bus::{Bus, BusEvent, RecordingBus};
///
/// let bus = RecordingBus::new();
/// bus.must_publish(BusEvent::new("user.Registered", serde_json::json!({ "name": "ada" })))
///     .await;
/// assert!(bus.has_event("user.Registered"));
/// assert_eq!(bus.events_of_type("user.Registered").len(), 1);
/// bus.clear();
/// assert!(bus.events().is_empty());
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct RecordingBus {
    recorded: Arc<Mutex<Vec<Outgoing>>>,
    bus: InMemoryBus,
}

impl RecordingBus {
    /// An empty record.
    pub fn new() -> Self {
        RecordingBus::default()
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Vec<Outgoing>> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every event recorded, in order.
    pub fn events(&self) -> Vec<BusEvent> {
        self.record()
            .iter()
            .map(|sent| sent.event.clone())
            .collect()
    }

    /// Whether an event of type `event_type` was recorded.
    pub fn has_event(&self, event_type: &str) -> bool {
        self.record()
            .iter()
            .any(|sent| sent.event.event_type == event_type)
    }

    /// The events of type `event_type`, in order.
    pub fn events_of_type(&self, event_type: &str) -> Vec<BusEvent> {
        self.record()
            .iter()
            .filter(|sent| sent.event.event_type == event_type)
            .map(|sent| sent.event.clone())
            .collect()
    }

    /// The topic each recorded event was sent to by a relay (empty for events published
    /// on the bus), in order.
    pub fn topics(&self) -> Vec<String> {
        self.record()
            .iter()
            .map(|sent| sent.topic.clone())
            .collect()
    }

    /// How many events are recorded.
    pub fn len(&self) -> usize {
        self.record().len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.record().is_empty()
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        self.record().clear();
    }
}

impl Bus for RecordingBus {
    async fn publish(&self, event: BusEvent) -> Result<()> {
        // Recorded before the handlers run (they may publish too), unless closed.
        if Bus::health(&self.bus).connected {
            self.record().push(Outgoing::new("", event.clone()));
        }
        self.bus.publish(event).await
    }

    async fn subscribe<H: BusHandler>(
        &self,
        subscribe: impl Into<Subscribe> + Send,
        handler: H,
    ) -> Result<Subscription> {
        self.bus.subscribe(subscribe, handler).await
    }

    async fn close(&self) -> Result<()> {
        self.bus.close().await
    }

    fn health(&self) -> BusHealth {
        self.bus.health()
    }

    fn stats(&self) -> BusStats {
        self.bus.stats()
    }
}

impl EventSink for RecordingBus {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<()> {
        let events: Vec<BusEvent> = batch.iter().map(|sent| sent.event.clone()).collect();
        self.record().extend(batch);
        self.bus.publish_batch(events).await
    }

    fn health(&self) -> BusHealth {
        self.bus.health()
    }

    fn stats(&self) -> BusStats {
        self.bus.stats()
    }
}

/// A bus that drops every event after counting it: for code that needs a bus where a
/// test does not care what is published. Subscriptions receive nothing. Clones share the
/// count.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use chronicle::bus::{Bus, BusEvent, NoopBus};
///
/// let bus = NoopBus::new();
/// bus.must_publish(BusEvent::new("user.Registered", serde_json::json!({}))).await;
/// assert_eq!(bus.publish_count(), 1);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct NoopBus {
    published: Arc<AtomicU64>,
}

impl NoopBus {
    /// A bus with a count of 0.
    pub fn new() -> Self {
        NoopBus::default()
    }

    /// How many events were published (or sent by a relay).
    pub fn publish_count(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    fn stats(&self) -> BusStats {
        BusStats {
            published: self.publish_count(),
            ..BusStats::default()
        }
    }

    fn health() -> BusHealth {
        BusHealth {
            connected: true,
            ..BusHealth::default()
        }
    }
}

impl Bus for NoopBus {
    async fn publish(&self, _event: BusEvent) -> Result<()> {
        self.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn subscribe<H: BusHandler>(
        &self,
        subscribe: impl Into<Subscribe> + Send,
        _handler: H,
    ) -> Result<Subscription> {
        let subscribe = subscribe.into();
        Ok(Subscription::new(
            subscribe.pattern,
            subscribe.group,
            || async { Ok(()) },
        ))
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }

    fn health(&self) -> BusHealth {
        NoopBus::health()
    }

    fn stats(&self) -> BusStats {
        NoopBus::stats(self)
    }
}

impl EventSink for NoopBus {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<()> {
        self.published
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn health(&self) -> BusHealth {
        NoopBus::health()
    }

    fn stats(&self) -> BusStats {
        NoopBus::stats(self)
    }
}
