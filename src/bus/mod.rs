//! The event bus: events leaving the store for handlers in this process and, through
//! brokers, for other services.
//!
//! - [`Bus`] is what every bus implements: `publish` (returns once the bus acknowledged
//!   the event), `publish_batch`, `subscribe` (an event-type [`Pattern`], with the
//!   [`Subscribe`] options a broker's consumer group needs: a group name, a maximum of
//!   deliveries, a backoff), `close`, and `health` / `stats` for whoever watches it.
//! - [`BusEvent`] is the envelope every bus carries: id, type, source, subject (the
//!   stream), time, JSON data, [`EventMetadata`](crate::EventMetadata).
//! - [`InMemoryBus`] dispatches in this process, synchronously by default or through
//!   bounded buffers; [`RecordingBus`] and [`NoopBus`] are for tests.
//! - [`Relay`] publishes the store's events to a bus or a broker's [`EventSink`] from a
//!   checkpoint, at least once: the checkpoint moves only after the sink acknowledged.
//!   Never a second write beside the append: what is published is what was committed.
//! - [`nats`] (feature `nats`): NATS JetStream, a relay sink and a bus with durable pull
//!   consumers.
//! - [`redis`] (feature `redis`): a relay sink into Redis Streams, a bus on Streams
//!   consumer groups (at least once) and one on pub/sub (at most once).
//! - With the `kafka` feature, [`KafkaSink`] (the relay into Kafka, an idempotent
//!   producer) and [`KafkaBus`] (consumer groups): see the `kafka` module.
//! - With the `rabbitmq` feature, [`RabbitSink`] (the relay into a RabbitMQ exchange,
//!   publisher confirms) and [`RabbitBus`] (durable queues, manual acks, dead-letter
//!   queues): see the `rabbitmq` module.
//!
//! A handler ([`BusHandler`]) acknowledges an event by returning `Ok`; it asks for the
//! event again with a retryable [`HandlerError`] (the default of `?`), up to the
//! subscription's maximum of deliveries, after which the event is dead; and it sends the
//! event to the dead letters at once with [`HandlerError::fatal`]. A panic counts as a
//! retryable failure. Failures worth a person's attention go to the subscription's
//! [`ErrorReporter`], as the outbox's do.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> chronicle::Result<()> {
//! use chronicle::bus::{Bus, BusEvent, Delivery, InMemoryBus};
//! use serde_json::json;
//!
//! let bus = InMemoryBus::new();
//! let _welcome = bus
//!     .subscribe("user.*", |delivery: Delivery| async move {
//!         println!("{} for {:?}", delivery.event_type, delivery.subject);
//!         Ok(())
//!     })
//!     .await?;
//! bus.publish(BusEvent::new("user.Registered", json!({ "name": "ada" })).subject("user-1"))
//!     .await?;
//! assert_eq!(bus.stats().delivered, 1);
//! # Ok(()) }
//! ```

mod consumer;
#[cfg_attr(
    not(any(feature = "redis", feature = "kafka", feature = "rabbitmq")),
    allow(dead_code)
)]
mod dedup;
mod event;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg_attr(not(any(feature = "redis", feature = "rabbitmq")), allow(dead_code))]
mod link;
mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "redis")]
pub mod redis;
mod registry;
mod relay;
mod testing;
pub mod wire;

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

pub use event::{BusEvent, DEFAULT_SOURCE, ERROR_EVENT_TYPE};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaBus, KafkaBusBuilder, KafkaSink, KafkaSinkBuilder};
pub use memory::{Dispatch, InMemoryBus, InMemoryBusBuilder};
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::{RabbitBus, RabbitBusBuilder, RabbitSink, RabbitSinkBuilder};
pub use relay::{BusSink, Relay, RelayHandle, RelayStats, StartFrom, Topic};
pub use testing::{NoopBus, RecordingBus};

pub use crate::outbox::{Backoff, ErrorReporter, HandlerError, TracingReporter};
pub use crate::pattern::Pattern;

use crate::error::Result;

/// A bus: publish events, subscribe handlers to event types, close.
///
/// Its methods are `async fn`s returning `Send` futures, like
/// [`Projection`](crate::Projection)'s: implement them with `async fn`, no macro needed.
/// Every bus also says how it is doing ([`Bus::health`]) and what it did
/// ([`Bus::stats`]).
pub trait Bus: Send + Sync + 'static {
    /// Publishes `event` and returns once the bus acknowledged it: for the in-memory bus,
    /// once every matching handler ran (or, with [`Dispatch::Buffered`], once the event
    /// sits in every matching subscription's buffer); for a broker, once the broker
    /// acknowledged it. The event's id is its deduplication key.
    ///
    /// # Errors
    /// [`Error::BusClosed`](crate::Error::BusClosed) after [`Bus::close`];
    /// [`Error::Publish`](crate::Error::Publish) when a broker did not acknowledge.
    fn publish(&self, event: BusEvent) -> impl Future<Output = Result<()>> + Send;

    /// Publishes `events` in order, as [`Bus::publish`] does each (brokers may send them
    /// together); returns once all were acknowledged.
    ///
    /// # Errors
    /// As [`Bus::publish`]; events before the failing one may have been published.
    fn publish_batch(&self, events: Vec<BusEvent>) -> impl Future<Output = Result<()>> + Send {
        async move {
            for event in events {
                self.publish(event).await?;
            }
            Ok(())
        }
    }

    /// Runs `handler` for every event whose type matches the subscription's pattern,
    /// from now on, until the returned [`Subscription`] is closed or dropped.
    ///
    /// `subscribe` is a pattern (`"user.*"`) or a [`Subscribe`] with options.
    ///
    /// # Errors
    /// [`Error::BusClosed`](crate::Error::BusClosed) after [`Bus::close`]; a broker's
    /// failure to create the consumer.
    fn subscribe<H: BusHandler>(
        &self,
        subscribe: impl Into<Subscribe> + Send,
        handler: H,
    ) -> impl Future<Output = Result<Subscription>> + Send;

    /// Closes the bus: later publishes and subscribes fail with
    /// [`Error::BusClosed`](crate::Error::BusClosed); events already accepted are handled
    /// before it returns. Closing twice is fine.
    ///
    /// # Errors
    /// A broker's failure to flush or disconnect.
    fn close(&self) -> impl Future<Output = Result<()>> + Send;

    /// Whether the bus is usable, and how far behind it is.
    fn health(&self) -> BusHealth;

    /// What it did so far.
    fn stats(&self) -> BusStats;

    /// Publishes `error` as an event of type [`ERROR_EVENT_TYPE`] with its causes and
    /// `context` ([`BusEvent::error`]). To set its subject or metadata, build it with
    /// `BusEvent::error` and [`Bus::publish`] it.
    ///
    /// # Errors
    /// As [`Bus::publish`].
    fn publish_error(
        &self,
        error: &(dyn std::error::Error + 'static),
        context: serde_json::Value,
    ) -> impl Future<Output = Result<()>> + Send {
        self.publish(BusEvent::error(error, context))
    }

    /// **For tests only**: [`Bus::publish`], panicking when it fails, so a test reads
    /// `bus.must_publish(event).await`. Application code handles the error instead.
    ///
    /// # Panics
    /// When the publish fails.
    fn must_publish(&self, event: BusEvent) -> impl Future<Output = ()> + Send {
        let described = format!("{} ({})", event.event_type, event.id);
        let published = self.publish(event);
        async move {
            if let Err(error) = published.await {
                panic!("must_publish: publishing {described} failed: {error}");
            }
        }
    }
}

/// Runs for each event a subscription receives.
///
/// Return `Ok` to acknowledge it; a retryable [`HandlerError`] (the default of `?`) to
/// have it delivered again (up to [`Subscribe::max_deliveries`], after the subscription's
/// backoff), after which it is dead; [`HandlerError::fatal`] to make it dead at once. A
/// panic counts as a retryable failure. Closures `Fn(Delivery) -> impl Future` implement
/// it.
pub trait BusHandler: Send + Sync + 'static {
    /// Handles one delivery of an event.
    fn handle(
        &self,
        delivery: Delivery,
    ) -> impl Future<Output = std::result::Result<(), HandlerError>> + Send;
}

impl<F, Fut> BusHandler for F
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), HandlerError>> + Send,
{
    fn handle(
        &self,
        delivery: Delivery,
    ) -> impl Future<Output = std::result::Result<(), HandlerError>> + Send {
        self(delivery)
    }
}

/// [`BusHandler`] behind a pointer, its future boxed: how a bus keeps handlers of
/// different types.
pub(crate) trait DynBusHandler: Send + Sync + 'static {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'_, std::result::Result<(), HandlerError>>;
}

impl<H: BusHandler> DynBusHandler for H {
    fn handle(&self, delivery: Delivery) -> BoxFuture<'_, std::result::Result<(), HandlerError>> {
        Box::pin(BusHandler::handle(self, delivery))
    }
}

/// One delivery of an event to a handler: the event (shared by every handler that gets
/// it; the delivery dereferences to it) and which attempt this is.
#[derive(Debug, Clone)]
pub struct Delivery {
    event: Arc<BusEvent>,
    attempt: u32,
}

impl Delivery {
    /// Delivery number `attempt` (1 for the first) of `event`.
    pub fn new(event: Arc<BusEvent>, attempt: u32) -> Self {
        Delivery { event, attempt }
    }

    /// The event.
    pub fn event(&self) -> &BusEvent {
        &self.event
    }

    /// Which delivery this is: 1 for the first, more after failures.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl Deref for Delivery {
    type Target = BusEvent;

    fn deref(&self) -> &BusEvent {
        &self.event
    }
}

/// What to subscribe to, and how: an event-type pattern and the options of a consumer
/// group. A pattern converts into one with the defaults.
///
/// ```
/// use std::time::Duration;
/// use chronicle::bus::{Backoff, Subscribe};
///
/// let billing = Subscribe::to("order.*")
///     .name("billing")
///     .group("billing")
///     .max_deliveries(5)
///     .backoff(Backoff::exponential(Duration::from_millis(50), Duration::from_secs(5)));
/// assert_eq!(billing.pattern().as_str(), "order.*");
/// ```
#[derive(Clone)]
pub struct Subscribe {
    pattern: Pattern,
    name: Option<String>,
    group: Option<String>,
    max_deliveries: u32,
    backoff: Backoff,
    reporter: Option<Arc<dyn ErrorReporter>>,
}

impl Subscribe {
    /// Events whose type matches `pattern`; defaults: named after the pattern, no group,
    /// 3 deliveries, [`Backoff::exponential`] from 10 ms capped at 1 s, the bus's reporter.
    pub fn to(pattern: impl Into<Pattern>) -> Self {
        Subscribe {
            pattern: pattern.into(),
            name: None,
            group: None,
            max_deliveries: 3,
            backoff: Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1)),
            reporter: None,
        }
    }

    /// The name failures are reported under (and, on brokers, the durable consumer's).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Joins the consumer group `group`: its members share the events, each going to one
    /// of them (in-memory: in turn; on a broker: to whichever asks first).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Deliveries of one event before it is dead (at least 1; default 3).
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.max_deliveries = deliveries.max(1);
        self
    }

    /// The pause before each redelivery.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Where this subscription's failures go (default: the bus's).
    pub fn reporter(mut self, reporter: impl ErrorReporter) -> Self {
        self.reporter = Some(Arc::new(reporter));
        self
    }

    /// The pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The name failures are reported under: the one given, else the pattern.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.pattern.as_str())
    }

    /// The consumer group, if any.
    pub fn group_name(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Deliveries of one event before it is dead.
    pub fn deliveries(&self) -> u32 {
        self.max_deliveries
    }

    /// The pause before redelivery number `failures + 1`.
    pub fn retry_delay(&self, failures: u32) -> Duration {
        self.backoff.delay(failures)
    }
}

impl fmt::Debug for Subscribe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscribe")
            .field("pattern", &self.pattern)
            .field("name", &self.name)
            .field("group", &self.group)
            .field("max_deliveries", &self.max_deliveries)
            .finish_non_exhaustive()
    }
}

impl From<Pattern> for Subscribe {
    fn from(pattern: Pattern) -> Self {
        Subscribe::to(pattern)
    }
}

impl From<&str> for Subscribe {
    fn from(pattern: &str) -> Self {
        Subscribe::to(pattern)
    }
}

impl From<String> for Subscribe {
    fn from(pattern: String) -> Self {
        Subscribe::to(pattern)
    }
}

/// How a subscription is closed: the bus's part of a [`Subscription`].
type Closer = Box<dyn FnOnce() -> BoxFuture<'static, Result<()>> + Send>;

/// A running subscription. [`Subscription::close`] ends it and waits for the deliveries
/// in hand; **dropping it ends it too**, without waiting, as dropping a task's handle
/// does; [`Subscription::detach`] keeps it for as long as the bus runs.
#[must_use = "dropping a subscription ends it; call `detach` to keep it running"]
pub struct Subscription {
    pattern: Pattern,
    group: Option<String>,
    closer: Option<Closer>,
}

impl Subscription {
    /// A subscription to `pattern` (in `group`) that `close` ends: what a bus returns
    /// from [`Bus::subscribe`]. `close` is called once, by [`Subscription::close`] or on
    /// drop (then on a task of its own, when a tokio runtime is there).
    pub fn new<F>(
        pattern: Pattern,
        group: Option<String>,
        close: impl FnOnce() -> F + Send + 'static,
    ) -> Self
    where
        F: Future<Output = Result<()>> + Send + 'static,
    {
        Subscription {
            pattern,
            group,
            closer: Some(Box::new(move || Box::pin(close()))),
        }
    }

    /// The pattern subscribed to.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The consumer group, if any.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Ends the subscription: no new delivery starts. On a bus that buffers, the events
    /// already buffered for it are handled before this returns; a broker's consumer stops
    /// taking messages (a durable consumer, as NATS JetStream's, stays on the server for
    /// the group's next member: its adapter says how to delete it).
    ///
    /// # Errors
    /// A broker's failure to remove the consumer.
    pub async fn close(mut self) -> Result<()> {
        match self.closer.take() {
            Some(close) => close().await,
            None => Ok(()),
        }
    }

    /// Keeps the subscription running until the bus closes, without a handle.
    pub fn detach(mut self) {
        self.closer = None;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(close) = self.closer.take() {
            let closing = close();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(closing);
            }
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.pattern)
            .field("group", &self.group)
            .field("open", &self.closer.is_some())
            .finish()
    }
}

/// Where the relay sends events: a broker's producer (or a bus, through [`BusSink`]).
///
/// [`EventSink::send`] returns only once the receiver acknowledged every message of the
/// batch (a JetStream ack, a Kafka delivery report, an `XADD` reply): the relay moves its
/// checkpoint after that, never before, so a crash re-sends at most the batch in hand.
/// Every message carries its event's id as the deduplication key
/// ([`Outgoing::dedup_key`]) and its stream as the ordering key ([`Outgoing::order_key`]).
pub trait EventSink: Send + Sync + 'static {
    /// Sends `batch`, in order, and returns once every message is acknowledged.
    ///
    /// # Errors
    /// Any error: nothing of the batch counts as sent, and the relay sends it again
    /// (messages acknowledged before the failure are sent twice; the event id lets the
    /// broker or the consumer drop the copy).
    fn send(&self, batch: Vec<Outgoing>) -> impl Future<Output = Result<()>> + Send;

    /// Whether the sink is usable.
    fn health(&self) -> BusHealth;

    /// What it sent so far.
    fn stats(&self) -> BusStats;

    /// The relay batch this sink works best with, for a relay that was not given a
    /// [`batch_size`](crate::bus::Relay::batch_size) (`None`, the default: the relay's
    /// 1,000). A sink whose every batch waits a fixed time for its acknowledgements
    /// (Kafka's `linger.ms`) asks for larger ones.
    fn preferred_batch(&self) -> Option<usize> {
        None
    }
}

/// One message for an [`EventSink`]: the event and the topic (NATS subject, Redis stream
/// key, Kafka topic) it goes to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Outgoing {
    /// Where it goes, as the relay's [`Topic`] named it.
    pub topic: String,
    /// The event.
    pub event: BusEvent,
}

impl Outgoing {
    /// `event` for `topic`.
    pub fn new(topic: impl Into<String>, event: BusEvent) -> Self {
        Outgoing {
            topic: topic.into(),
            event,
        }
    }

    /// The deduplication key: the event's id (NATS `Nats-Msg-Id`, the idempotent Kafka
    /// producer's, a consumer's).
    pub fn dedup_key(&self) -> uuid::Uuid {
        self.event.id
    }

    /// The ordering key: the event's subject, its stream (Kafka's message key), or empty.
    /// Brokers that keep order per key keep each stream in version order.
    pub fn order_key(&self) -> &str {
        self.event.subject.as_deref().unwrap_or_default()
    }
}

/// Whether a bus or sink is usable, and how far behind it is: [`Bus::health`],
/// [`EventSink::health`], [`RelayHandle::health`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct BusHealth {
    /// Connected (a broker), or open and running (in-process).
    pub connected: bool,
    /// Reconnections since it started (brokers; 0 in-process).
    pub reconnects: u64,
    /// Events accepted but not yet handled or sent: buffered in-process, a consumer's
    /// pending messages, a relay's distance to the end of the log.
    pub lag_events: u64,
    /// How old the last event handled was when it was handled, where known (a relay).
    #[serde(rename = "lag_ms", with = "crate::millis::option")]
    pub lag: Option<Duration>,
    /// The last error met, even if a retry then succeeded.
    pub last_error: Option<String>,
}

/// What a bus or sink did so far: [`Bus::stats`], [`EventSink::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BusStats {
    /// Events published: `publish` returned `Ok` for them (a sink: they were sent and
    /// acknowledged).
    pub published: u64,
    /// Deliveries a handler acknowledged.
    pub delivered: u64,
    /// Deliveries that failed: a handler's error or panic (each try counts).
    pub failed: u64,
    /// Of those, the panics.
    pub panicked: u64,
    /// Events given up: a fatal error, or failed `max_deliveries` times.
    pub dead: u64,
}
