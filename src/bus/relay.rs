//! The relay: the store's events, from a checkpoint in the global log, to a bus or a
//! broker's [`EventSink`], at least once.
//!
//! A relay is a projection run by the projection runner (`projection/runner.rs`), so it
//! reads the log as projections do (gap-safe windows, woken by appends), keeps a
//! checkpoint, reports status, lag and rate, and holds the projection lease (one active
//! instance across processes on PostgreSQL). Its batch goes to the sink **before** the
//! batch's transaction opens (no lock is held while a broker answers), and that
//! transaction only moves the checkpoint, after the sink acknowledged the whole batch. So:
//!
//! - nothing is published that was not committed, and nothing committed is skipped;
//! - a relay killed mid-batch sends that batch again when it restarts, and nothing
//!   before it: duplicates are bounded by one batch, and carry the event id as their
//!   deduplication key;
//! - a sink that fails is retried with a backoff (by default forever: a broker that is
//!   down delays the relay, it does not stop it).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Bus, BusEvent, BusHealth, BusStats, EventSink, Outgoing, Pattern};
use crate::error::Result;
use crate::event::RecordedEvent;
use crate::projection::{
    FailurePolicy, Projection, ProjectionContext, ProjectionError, ProjectionHandle,
    ProjectionState, ProjectionStatus, Projections,
};
use crate::read::LogPosition;
use crate::store::Store;
use crate::store::batch::Flush;
use crate::telemetry;

pub use crate::projection::StartFrom;

/// The prefix of a relay's checkpoint (and lease) name: a relay named `orders` keeps its
/// place as the projection `relay:orders`.
const CHECKPOINT_PREFIX: &str = "relay:";

/// Most events per batch when neither the user nor the sink says otherwise.
const DEFAULT_BATCH: usize = 1_000;

type MapFn = Arc<dyn Fn(&RecordedEvent) -> Option<BusEvent> + Send + Sync>;
type TopicFn = Arc<dyn Fn(&BusEvent) -> String + Send + Sync>;

/// Names the topic (NATS subject, Redis stream key, Kafka topic) of each event a relay
/// sends. The default is [`Topic::category`]: every event of a stream category goes to a
/// topic named after it.
#[derive(Clone)]
pub struct Topic(TopicFn);

impl Topic {
    /// The category of the event's stream (`account` for `account-42`); events without a
    /// subject go to their event type.
    pub fn category() -> Self {
        Topic(Arc::new(|event: &BusEvent| {
            event
                .category()
                .unwrap_or(event.event_type.as_str())
                .to_owned()
        }))
    }

    /// The event's type.
    pub fn event_type() -> Self {
        Topic(Arc::new(|event: &BusEvent| event.event_type.clone()))
    }

    /// The same topic for every event.
    pub fn fixed(topic: impl Into<String>) -> Self {
        let topic: String = topic.into();
        Topic(Arc::new(move |_: &BusEvent| topic.clone()))
    }

    /// Any function of the event (after the relay's mapping).
    pub fn from_fn(topic: impl Fn(&BusEvent) -> String + Send + Sync + 'static) -> Self {
        Topic(Arc::new(topic))
    }

    /// This topic with `prefix` before it: `Topic::category().prefixed("events.")` sends
    /// `account-42`'s events to `events.account`.
    pub fn prefixed(self, prefix: impl Into<String>) -> Self {
        let prefix: String = prefix.into();
        let inner = self.0;
        Topic(Arc::new(move |event: &BusEvent| {
            format!("{prefix}{}", inner(event))
        }))
    }

    /// The topic of `event`.
    pub fn of(&self, event: &BusEvent) -> String {
        (self.0)(event)
    }
}

impl Default for Topic {
    fn default() -> Self {
        Topic::category()
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Topic(..)")
    }
}

/// A relay being configured: `store.relay(name)`, then [`Relay::spawn`] with a sink.
///
/// ```no_run
/// # async fn demo(store: chronicle::Store) -> chronicle::Result<()> {
/// use chronicle::bus::{Bus, BusEvent, Delivery, InMemoryBus, StartFrom, Topic};
///
/// let bus = InMemoryBus::new();
/// bus.subscribe("order.*", |delivery: Delivery| async move {
///     println!("{} at {:?}", delivery.event_type, delivery.subject);
///     Ok(())
/// })
/// .await?
/// .detach();
///
/// // Public events only, renamed; from the start of the log.
/// let relay = store
///     .relay("orders-out")
///     .event_types(["order.*"])
///     .map(|event| {
///         (event.event_type != "order.InternalNote")
///             .then(|| BusEvent::from(event).event_type(format!("public.{}", event.event_type)))
///     })
///     .start_from(StartFrom::Beginning)
///     .to_bus(bus.clone());
/// relay.wait_for_idle().await?;
/// let status = relay.stop().await?;
/// # let _ = status; Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "a relay runs only once `spawn` is called"]
pub struct Relay {
    name: String,
    patterns: Vec<Pattern>,
    map: Option<MapFn>,
    topic: Topic,
    source: Option<String>,
    /// The batch size the user chose; else the sink's preferred one, else 1,000.
    batch_size: Option<usize>,
    projections: Projections,
}

impl Store {
    /// A relay named `name` (its checkpoint is kept under `relay:{name}`) that publishes
    /// this store's events to a sink: every event, to its stream category's topic, from
    /// the end of the log when it first starts ([`StartFrom::End`]), in batches of up to
    /// 1,000 (or the sink's [preferred batch](EventSink::preferred_batch)), retrying a
    /// failing sink forever with a backoff from 100 ms to 10 s.
    pub fn relay(&self, name: impl Into<String>) -> Relay {
        let projections = self
            .projections()
            .start_from(StartFrom::End)
            .retries(u32::MAX, Duration::from_millis(100))
            .max_backoff(Duration::from_secs(10))
            // The checkpoint is what says what was sent: it waits for the disk.
            .flush(Flush::Wait)
            .apply_outside_tx();
        Relay {
            name: name.into(),
            patterns: Vec::new(),
            map: None,
            topic: Topic::default(),
            source: None,
            batch_size: None,
            projections,
        }
    }
}

impl Relay {
    /// Only events whose type matches one of `patterns` (exact types, globs, `*`; all
    /// when none is given). When every pattern is exact, the log is read for those types
    /// only.
    pub fn event_types<P: Into<Pattern>>(mut self, patterns: impl IntoIterator<Item = P>) -> Self {
        self.patterns.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// What each stored event (that passed the type filter) becomes on the way out:
    /// `Some` integration event (say, a private domain event mapped to a public
    /// contract), or `None` to send nothing for it. The default is
    /// `BusEvent::from(event)`. A panic in `map` counts as a failed send.
    pub fn map(
        mut self,
        map: impl Fn(&RecordedEvent) -> Option<BusEvent> + Send + Sync + 'static,
    ) -> Self {
        self.map = Some(Arc::new(map));
        self
    }

    /// The topic of each event (default [`Topic::category`]).
    pub fn topic(mut self, topic: Topic) -> Self {
        self.topic = topic;
        self
    }

    /// The `source` of the events the default mapping makes (default
    /// [`DEFAULT_SOURCE`](super::DEFAULT_SOURCE)).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Where the relay starts when it has no checkpoint yet (default [`StartFrom::End`]:
    /// a relay added to a live system does not send its history unless asked).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.projections = self.projections.start_from(start);
        self
    }

    /// Most events per batch (at least 1; default 1,000, or the sink's
    /// [preferred batch](EventSink::preferred_batch)): what the sink gets at once, and what
    /// a crash may send twice.
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = Some(events);
        self
    }

    /// How often to look for events appended by other processes (default 500 ms; this
    /// process's appends wake the relay at once, and on PostgreSQL other processes' too).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.projections = self.projections.poll_interval(interval);
        self
    }

    /// Tries per failing batch (default: no end), and the first pause (doubling after
    /// each failure, up to `max_pause`).
    pub fn retries(mut self, attempts: u32, backoff: Duration, max_pause: Duration) -> Self {
        self.projections = self
            .projections
            .retries(attempts, backoff)
            .max_backoff(max_pause);
        self
    }

    /// What to do with an event the sink still refuses after the retries: stop the relay
    /// as failed (the default), or step over it (see [`FailurePolicy`]).
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.projections = self.projections.on_failure(policy);
        self
    }

    /// The name of the relay's checkpoint and lease.
    pub fn checkpoint_name(&self) -> String {
        format!("{CHECKPOINT_PREFIX}{}", self.name)
    }

    /// Starts the relay into `bus` ([`BusSink`]). Keep the handle: dropping it stops the
    /// relay.
    pub fn to_bus<B: Bus>(self, bus: B) -> RelayHandle {
        self.spawn(BusSink::new(bus))
    }

    /// Starts the relay into `sink` as a tokio task (call from within a tokio runtime).
    /// Keep the handle: dropping it stops the relay.
    pub fn spawn<S: EventSink>(self, sink: S) -> RelayHandle {
        let sink = Arc::new(sink);
        let counters = Arc::new(RelayCounters::default());
        let types = Pattern::exact_types(&self.patterns).into();
        let source = self.source.clone();
        let map = self.map.unwrap_or_else(|| {
            Arc::new(move |event: &RecordedEvent| {
                let bus_event = BusEvent::from(event);
                Some(match &source {
                    Some(source) => bus_event.source(source.clone()),
                    None => bus_event,
                })
            })
        });
        let projection = RelayProjection {
            name: format!("{CHECKPOINT_PREFIX}{}", self.name),
            patterns: self.patterns,
            map,
            topic: self.topic,
            sink: Arc::clone(&sink),
            counters: Arc::clone(&counters),
        };
        let batch = self
            .batch_size
            .or_else(|| sink.preferred_batch())
            .unwrap_or(DEFAULT_BATCH);
        let projection = self
            .projections
            .batch_size(batch)
            .spawn_with_types(projection, types);
        RelayHandle {
            name: self.name,
            projection,
            sink,
            counters,
        }
    }
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("name", &self.name)
            .field("patterns", &self.patterns)
            .field("mapped", &self.map.is_some())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// A [`Bus`] as a relay's sink: each batch is [`Bus::publish_batch`]ed, and counts as
/// acknowledged once that returns (the in-memory bus: once its handlers ran, or the
/// events sit in their buffers). Topics are not used: subscribers match event types.
#[derive(Debug, Clone)]
pub struct BusSink<B>(B);

impl<B: Bus> BusSink<B> {
    /// `bus` as a sink.
    pub fn new(bus: B) -> Self {
        BusSink(bus)
    }

    /// The bus.
    pub fn bus(&self) -> &B {
        &self.0
    }
}

impl<B: Bus> EventSink for BusSink<B> {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<()> {
        self.0
            .publish_batch(batch.into_iter().map(|sent| sent.event).collect())
            .await
    }

    fn health(&self) -> BusHealth {
        self.0.health()
    }

    fn stats(&self) -> BusStats {
        self.0.stats()
    }
}

/// What a relay did since it started: [`RelayHandle::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RelayStats {
    /// Messages the sink acknowledged (sent again after a failure: counted again).
    pub published: u64,
    /// Events the mapping turned into nothing, or whose type no pattern matches.
    pub dropped: u64,
    /// Sends that failed (each is retried).
    pub failed: u64,
    /// The sink's own counts.
    pub sink: BusStats,
}

#[derive(Default)]
struct RelayCounters {
    published: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// What a relay's handle asks its sink, whatever the sink's type.
trait SinkWatch: Send + Sync + 'static {
    fn health(&self) -> BusHealth;
    fn stats(&self) -> BusStats;
}

impl<S: EventSink> SinkWatch for S {
    fn health(&self) -> BusHealth {
        EventSink::health(self)
    }

    fn stats(&self) -> BusStats {
        EventSink::stats(self)
    }
}

/// A running relay: watch it, wait for it, stop it, as a [`ProjectionHandle`] (it is one
/// inside). **Dropping the handle stops the relay**: the batch in hand is finished (or
/// left unacknowledged, to be sent again by the next run).
#[must_use = "dropping the handle stops the relay"]
pub struct RelayHandle {
    name: String,
    projection: ProjectionHandle,
    sink: Arc<dyn SinkWatch>,
    counters: Arc<RelayCounters>,
}

impl RelayHandle {
    /// The relay's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its progress: state, checkpoint, events handled, lag, rate, last error (the
    /// runner's status; `applied` counts the events read, sent or dropped).
    pub fn status(&self) -> ProjectionStatus {
        self.projection.status()
    }

    /// Whether it runs (or waits on standby while another instance does), how far behind
    /// the log it is, and its sink's connection.
    pub fn health(&self) -> BusHealth {
        let status = self.status();
        let sink = self.sink.health();
        let running = matches!(
            status.state,
            ProjectionState::Starting
                | ProjectionState::Standby
                | ProjectionState::CatchingUp
                | ProjectionState::Running
        );
        BusHealth {
            connected: running && sink.connected,
            reconnects: sink.reconnects,
            lag_events: status.lag_events,
            lag: Some(status.lag),
            last_error: status.last_error.or(sink.last_error),
        }
    }

    /// What it sent, dropped and failed to send, and its sink's counts.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            published: self.counters.published.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            sink: self.sink.stats(),
        }
    }

    /// Waits until every event up to `position` was sent (or dropped).
    ///
    /// # Errors
    /// [`Error::ProjectionStopped`](crate::Error::ProjectionStopped) when the relay stops
    /// or fails first.
    pub async fn wait_until(&self, position: LogPosition) -> Result<()> {
        self.projection.wait_until(position).await
    }

    /// Waits until every event committed before the call was sent (or dropped).
    ///
    /// # Errors
    /// As [`RelayHandle::wait_until`].
    pub async fn wait_for_idle(&self) -> Result<()> {
        self.projection.wait_for_idle().await
    }

    /// Asks the relay to stop after the batch in hand, waits for it, and returns its
    /// final status.
    ///
    /// # Errors
    /// As [`ProjectionHandle::stop`]: when it had failed, the sink's error as the
    /// error's `source()`.
    pub async fn stop(self) -> Result<ProjectionStatus> {
        self.projection.stop().await
    }

    /// Kills the task at once: a batch in flight is not acknowledged, and the next run
    /// sends it again.
    pub fn abort(&self) {
        self.projection.abort();
    }
}

impl fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayHandle")
            .field("name", &self.name)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// The relay as the runner sees it: a projection whose batch is a send.
struct RelayProjection<S> {
    name: String,
    patterns: Vec<Pattern>,
    map: MapFn,
    topic: Topic,
    sink: Arc<S>,
    counters: Arc<RelayCounters>,
}

impl<S: EventSink> RelayProjection<S> {
    /// The messages for `events`: those of the patterns' types, mapped, with topics.
    fn messages(&self, events: &[RecordedEvent]) -> Vec<Outgoing> {
        events
            .iter()
            .filter(|event| {
                self.patterns.is_empty()
                    || self
                        .patterns
                        .iter()
                        .any(|pattern| pattern.matches(&event.event_type))
            })
            .filter_map(|event| (self.map)(event))
            .map(|event| Outgoing::new(self.topic.of(&event), event))
            .collect()
    }
}

impl<S: EventSink> Projection for RelayProjection<S> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> std::result::Result<(), ProjectionError> {
        self.apply_batch(std::slice::from_ref(event), ctx).await
    }

    async fn apply_batch(
        &self,
        events: &[RecordedEvent],
        _ctx: &mut ProjectionContext<'_>,
    ) -> std::result::Result<(), ProjectionError> {
        let batch = self.messages(events);
        let (sent, dropped) = (batch.len() as u64, (events.len() - batch.len()) as u64);
        if sent > 0
            && let Err(error) = self.sink.send(batch).await
        {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(telemetry::RELAY_FAILED, "relay" => self.name.clone()).increment(1);
            return Err(Box::new(error));
        }
        self.counters.published.fetch_add(sent, Ordering::Relaxed);
        metrics::counter!(telemetry::RELAY_PUBLISHED, "relay" => self.name.clone()).increment(sent);
        self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
        Ok(())
    }
}
