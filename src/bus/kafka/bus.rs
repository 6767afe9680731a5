//! [`KafkaBus`]: a [`Bus`] on Kafka. Publishing goes through the bus's [`KafkaSink`];
//! each subscription is a consumer in a consumer group whose task runs the handler per
//! message and stores the message's offset only once the handler acknowledged it (or the
//! message went to the dead letters), so a restarted group starts at the first message
//! not yet handled. Copies of an event it handled lately (the same `ce-id`) are passed
//! over (the window of [`KafkaBusBuilder::dedup_window`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message};
use tokio::sync::watch;
use tracing::Instrument;

use super::client::{Settings, Watch, config_error};
use super::sink::KafkaSink;
use crate::bus::consumer::{Consumer, Shared, Verdict};
use crate::bus::dedup::{self, Seen};
use crate::bus::registry::{Registry, stop_requested};
use crate::bus::{
    Bus, BusEvent, BusHandler, BusHealth, BusStats, ErrorReporter, EventSink, Outgoing, Subscribe,
    Subscription, Topic, TracingReporter, wire,
};
use crate::error::{Error, Result, ValidationError};

/// The header a dead letter carries: why the message was given up.
pub const DEAD_REASON: &str = "chronicle-dead-reason";

/// What a dead-letter topic's name adds to the topic the message came from.
pub const DEAD_SUFFIX: &str = ".dead";

/// The pause after a consumer error, and the first pause before sending a dead letter
/// again (doubling up to [`MAX_PAUSE`]).
const PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// A [`Bus`] on a Kafka cluster.
///
/// - **Publishing** ([`Bus::publish`], [`Bus::publish_batch`]) goes through the bus's
///   [`KafkaSink`] (the idempotent producer, keyed by stream) to the topic its [`Topic`]
///   names (default [`Topic::category`]), and returns once Kafka acknowledged.
/// - **Subscribing** starts a consumer in a consumer group (the subscription's
///   [`group`](Subscribe::group); without one, a group of its own) reading the bus's
///   [`subscribe_topics`](KafkaBusBuilder::subscribe_topics) (or the topics given to
///   [`KafkaBus::subscribe_to`]). Members of one group share the topics' partitions.
///   Each message is decoded ([`wire::decode`]); those whose type the pattern does not
///   match are passed over, and so are **copies**: a message whose `ce-id` the
///   subscription handled among its last
///   [`dedup_window`](KafkaBusBuilder::dedup_window) events (the relay re-sends a batch
///   after a crash, and Kafka stores it again). The handler runs through the subscription's rules: `Ok`
///   stores the offset (committed by librdkafka's auto-commit, and on close); a
///   retryable error runs it again in place after the backoff (Kafka has no per-message
///   redelivery: the attempt is counted here, and the partition waits, keeping its
///   order); a dead event, or a message that does not decode, goes to the dead-letter
///   topic `<topic>.dead` (its key, value and headers, plus [`DEAD_REASON`]) and then
///   its offset is stored. **An offset is stored only after the handler succeeded or
///   the message was dead-lettered**: a consumer that stops or crashes before that
///   leaves the message to the group's next consumer.
/// - **Where a group starts**: a named group with no committed offset starts at the
///   oldest retained message (`auto.offset.reset=earliest`); a subscription without a
///   group starts at the end (`latest`), and `subscribe` returns once its partitions are
///   assigned (or after [`assign_timeout`](KafkaBusBuilder::assign_timeout)); the end is
///   looked up just after that, so an event published in that instant may be missed:
///   give a subscription that must see everything a group. Set `auto.offset.reset` with
///   [`KafkaBusBuilder::config`] to choose.
///
/// One task per subscription handles its messages one at a time, so a slow or retrying
/// handler holds up its other partitions too; run more members of the group to spread
/// them. Clones share the bus.
///
/// ```no_run
/// # async fn demo() -> chronicle::Result<()> {
/// use chronicle::bus::{Bus, BusEvent, Delivery, KafkaBus, Subscribe};
///
/// let bus = KafkaBus::builder("localhost:9092")
///     .subscribe_topics(["order"])
///     .build()?;
/// let billing = bus
///     .subscribe(Subscribe::to("order.*").group("billing").max_deliveries(5), |delivery: Delivery| async move {
///         println!("{} of {:?}", delivery.event_type, delivery.subject);
///         Ok(())
///     })
///     .await?;
/// bus.publish(BusEvent::new("order.Placed", serde_json::json!({ "total": 12 })).subject("order-7"))
///     .await?;
/// billing.close().await?;
/// bus.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

/// Configures a [`KafkaBus`]: [`KafkaBus::builder`].
#[must_use = "call `build` to get the bus"]
pub struct KafkaBusBuilder {
    settings: Settings,
    topic: Topic,
    topics: Vec<String>,
    reporter: Arc<dyn ErrorReporter>,
    assign_timeout: Duration,
    dedup_window: usize,
}

impl KafkaBusBuilder {
    /// A librdkafka setting for the bus's producer and consumers (`security.protocol`,
    /// `session.timeout.ms`, …), applied after chronicle's, so it wins.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.extra.push((key.into(), value.into()));
        self
    }

    /// The topic each published event goes to (default [`Topic::category`]).
    pub fn topic(mut self, topic: Topic) -> Self {
        self.topic = topic;
        self
    }

    /// The topics [`Bus::subscribe`] reads (none by default: then only
    /// [`KafkaBus::subscribe_to`] subscribes).
    pub fn subscribe_topics<T: Into<String>>(
        mut self,
        topics: impl IntoIterator<Item = T>,
    ) -> Self {
        self.topics.extend(topics.into_iter().map(Into::into));
        self
    }

    /// Where failures go (default [`TracingReporter`]); a subscription can name its own.
    pub fn reporter(mut self, reporter: impl ErrorReporter) -> Self {
        self.reporter = Arc::new(reporter);
        self
    }

    /// How long `subscribe` waits for its first partition assignment (default 30 s);
    /// after that it returns anyway and the consumer goes on joining.
    pub fn assign_timeout(mut self, timeout: Duration) -> Self {
        self.assign_timeout = timeout;
        self
    }

    /// How many handled event ids a subscription remembers to drop copies (default
    /// 10,000; 0 keeps none): a message whose `ce-id` is among them is passed over
    /// unhandled (its offset stored). Kafka stores the copies a restarted relay sends
    /// again (its idempotent producer drops only its own retries); this drops them.
    pub fn dedup_window(mut self, events: usize) -> Self {
        self.dedup_window = events;
        self
    }

    /// The bus. Its producer connects in the background.
    ///
    /// # Errors
    /// [`ValidationError::Config`](crate::ValidationError::Config) when librdkafka
    /// refuses a setting.
    pub fn build(self) -> Result<KafkaBus> {
        let shared = Shared::named("kafka", self.reporter);
        let sink = KafkaSink::create(&self.settings, String::new(), Arc::clone(&shared))?;
        Ok(KafkaBus {
            inner: Arc::new(Inner {
                sink,
                settings: self.settings,
                topic: self.topic,
                topics: self.topics,
                assign_timeout: self.assign_timeout,
                dedup_window: self.dedup_window,
                shared,
                running: Registry::new(),
            }),
        })
    }
}

struct Inner {
    sink: KafkaSink,
    settings: Settings,
    topic: Topic,
    topics: Vec<String>,
    assign_timeout: Duration,
    dedup_window: usize,
    shared: Arc<Shared>,
    /// The subscriptions' tasks, each with its consumer's statistics.
    running: Arc<Registry<Watch>>,
}

impl KafkaBus {
    /// Configures a bus on the cluster at `brokers` (librdkafka's `bootstrap.servers`).
    pub fn builder(brokers: impl Into<String>) -> KafkaBusBuilder {
        KafkaBusBuilder {
            settings: Settings::new(brokers.into()),
            topic: Topic::default(),
            topics: Vec::new(),
            reporter: Arc::new(TracingReporter),
            assign_timeout: Duration::from_secs(30),
            dedup_window: dedup::DEFAULT_WINDOW,
        }
    }

    /// The bus's producer as a relay's sink: `store.relay(name).spawn(bus.sink())`.
    pub fn sink(&self) -> KafkaSink {
        self.inner.sink.clone()
    }

    /// Subscribes to `topics` (rather than the bus's
    /// [`subscribe_topics`](KafkaBusBuilder::subscribe_topics)), as [`Bus::subscribe`].
    ///
    /// # Errors
    /// [`Error::BusClosed`] after [`Bus::close`];
    /// [`ValidationError::Config`](crate::ValidationError::Config) when no topic is given
    /// or librdkafka refuses the consumer's settings.
    pub async fn subscribe_to<T: Into<String>, H: BusHandler>(
        &self,
        topics: impl IntoIterator<Item = T>,
        subscribe: impl Into<Subscribe>,
        handler: H,
    ) -> Result<Subscription> {
        let topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        self.start(topics, subscribe.into(), Box::new(handler))
            .await
    }

    async fn start(
        &self,
        topics: Vec<String>,
        options: Subscribe,
        handler: Box<dyn crate::bus::DynBusHandler>,
    ) -> Result<Subscription> {
        let inner = &self.inner;
        if inner.running.is_closed() {
            return Err(self.closed_error());
        }
        if topics.is_empty() {
            return Err(Error::Validation(ValidationError::Config(format!(
                "the Kafka subscription `{}` names no topic: give the bus `subscribe_topics` or call `subscribe_to`",
                options.display_name()
            ))));
        }
        let named = options.group_name().map(str::to_owned);
        let group = named.clone().unwrap_or_else(|| {
            format!(
                "chronicle-{}-{}",
                options.display_name(),
                uuid::Uuid::now_v7().simple()
            )
        });
        let reset = if named.is_some() {
            "earliest"
        } else {
            "latest"
        };
        let consumer: StreamConsumer<Watch> = inner
            .settings
            .config(&[
                ("group.id", group.as_str()),
                ("enable.auto.commit", "true"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", reset),
            ])
            .create_with_context(Watch::new(Arc::clone(&inner.shared)))
            .map_err(|error| config_error("consumer", &error))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|error| config_error("subscription", &error))?;
        let watch = Watch::clone(consumer.context());
        let pattern = options.pattern().clone();
        let span = tracing::debug_span!(
            "chronicle.bus.kafka.subscription",
            subscription = options.display_name(),
            group = group.as_str(),
        );
        let runner = Consumer::new(options, handler, Arc::clone(&inner.shared));
        let seen = Seen::new(inner.dedup_window);
        let subscription = inner.running.start(pattern, named, |stop| {
            let task = tokio::spawn(
                consume(
                    consumer,
                    runner,
                    seen,
                    inner.sink.clone(),
                    Arc::clone(&inner.shared),
                    stop,
                )
                .instrument(span),
            );
            (watch.clone(), Some(task))
        });
        if tokio::time::timeout(inner.assign_timeout, watch.assigned())
            .await
            .is_err()
        {
            tracing::warn!(
                group,
                "no Kafka partition assignment yet; the consumer keeps joining"
            );
        }
        Ok(subscription)
    }

    fn closed_error(&self) -> Error {
        Error::BusClosed {
            bus: format!("Kafka bus at {}", self.inner.settings.brokers),
        }
    }
}

impl Bus for KafkaBus {
    async fn publish(&self, event: BusEvent) -> Result<()> {
        self.publish_batch(vec![event]).await
    }

    async fn publish_batch(&self, events: Vec<BusEvent>) -> Result<()> {
        if self.inner.running.is_closed() {
            return Err(self.closed_error());
        }
        let batch = events
            .into_iter()
            .map(|event| Outgoing::new(self.inner.topic.of(&event), event))
            .collect();
        self.inner.sink.send(batch).await
    }

    async fn subscribe<H: BusHandler>(
        &self,
        subscribe: impl Into<Subscribe> + Send,
        handler: H,
    ) -> Result<Subscription> {
        let topics = self.inner.topics.clone();
        self.start(topics, subscribe.into(), Box::new(handler))
            .await
    }

    async fn close(&self) -> Result<()> {
        self.inner.running.close().await;
        self.inner.sink.flush(Duration::from_secs(10)).await
    }

    fn health(&self) -> BusHealth {
        let producer = self.inner.sink.watch();
        let (mut connected, mut reconnects, mut lag) =
            (producer.connected(), producer.reconnects(), 0);
        for watch in self.inner.running.read().iter() {
            connected &= watch.connected();
            reconnects += watch.reconnects();
            lag += watch.lag();
        }
        let open = !self.inner.running.is_closed();
        self.inner.shared.health(open && connected, reconnects, lag)
    }

    fn stats(&self) -> BusStats {
        self.inner.shared.stats()
    }
}

/// A subscription's task: handles messages one at a time until stopped, then commits
/// the offsets stored and leaves the group.
async fn consume(
    consumer: StreamConsumer<Watch>,
    runner: Consumer,
    mut seen: Seen,
    dead: KafkaSink,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            biased;
            () = stop_requested(&mut stop) => break,
            received = consumer.recv() => received,
        };
        match received {
            Ok(message) => {
                consumer.context().answered();
                let done = handle(&message, &runner, &mut seen, &dead, &shared, &mut stop).await;
                if !done {
                    break;
                }
                if let Err(error) = consumer.store_offset_from_message(&message) {
                    shared.note_error(format!("Kafka: storing an offset failed: {error}"));
                }
            }
            Err(error) => {
                shared.note_error(format!("Kafka consumer: {error}"));
                tokio::select! {
                    () = stop_requested(&mut stop) => break,
                    () = tokio::time::sleep(PAUSE) => {}
                }
            }
        }
    }
    // Committing and leaving the group block: on a blocking thread.
    let left = tokio::task::spawn_blocking(move || {
        let committed = consumer.commit_consumer_state(CommitMode::Sync);
        drop(consumer);
        committed
    })
    .await;
    match left {
        Ok(Ok(())) | Ok(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) => {}
        Ok(Err(error)) => shared.note_error(format!("Kafka: committing offsets failed: {error}")),
        Err(error) => shared.note_error(format!("Kafka: the consumer's close failed: {error}")),
    }
}

/// Handles one message: decode, match, drop a copy of an event `seen` already, run the
/// handler until it acknowledges or the event is dead, dead-letter when it must. `true`
/// when its offset may be stored; `false` when a stop came first (the message is left
/// for the group's next consumer).
async fn handle(
    message: &BorrowedMessage<'_>,
    runner: &Consumer,
    seen: &mut Seen,
    dead: &KafkaSink,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let origin = format!(
        "Kafka topic `{}` partition {} offset {}",
        message.topic(),
        message.partition(),
        message.offset()
    );
    let header = |name: &str| {
        message
            .headers()?
            .iter()
            .find(|header| header.key == name)?
            .value
            .and_then(|value| std::str::from_utf8(value).ok())
    };
    let event = match wire::decode(header, message.payload().unwrap_or_default(), &origin) {
        Ok(event) => Arc::new(event),
        Err(error) => {
            shared.dead();
            shared.note_error(error.to_string());
            tracing::warn!(%error, "a Kafka message that does not decode goes to the dead letters");
            return dead_letter(message, &error.to_string(), dead, shared, stop).await;
        }
    };
    if !runner.options().pattern().matches(&event.event_type) || seen.contains(&event.id) {
        return true;
    }
    match runner.deliver_until_stopped(Arc::clone(&event), stop).await {
        None => false,
        Some(Verdict::Dead { reason }) => {
            let sent = dead_letter(message, &reason, dead, shared, stop).await;
            if sent {
                seen.insert(event.id);
            }
            sent
        }
        Some(_) => {
            seen.insert(event.id);
            true
        }
    }
}

/// Sends `message` as it came, with [`DEAD_REASON`], to its topic's dead letters, trying
/// again until it is acknowledged (`true`) or a stop is asked for (`false`).
async fn dead_letter(
    message: &BorrowedMessage<'_>,
    reason: &str,
    dead: &KafkaSink,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let topic = format!("{}{DEAD_SUFFIX}", message.topic());
    let mut pause = PAUSE;
    loop {
        let headers = message
            .headers()
            .map(|headers| headers.detach())
            .unwrap_or_default()
            .insert(Header {
                key: DEAD_REASON,
                value: Some(reason),
            });
        let sent = dead
            .send_raw(&topic, message.key(), message.payload(), headers)
            .await;
        match sent {
            Ok(()) => return true,
            Err(error) => {
                shared.note_error(format!("Kafka: a dead letter to `{topic}` failed: {error}"));
                tokio::select! {
                    biased;
                    () = stop_requested(stop) => return false,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

impl fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.inner.settings.brokers)
            .field("subscribe_topics", &self.inner.topics)
            .field("stats", &self.inner.shared.stats())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for KafkaBusBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaBusBuilder")
            .field("brokers", &self.settings.brokers)
            .field("subscribe_topics", &self.topics)
            .finish_non_exhaustive()
    }
}
