//! [`RabbitBus`]: a [`Bus`] on RabbitMQ. Publishing goes through the bus's
//! [`RabbitSink`] with the event type as the routing key; each subscription consumes a
//! queue bound to the exchange by its pattern, acknowledges a message only once the
//! handler acknowledged it (or it went to the dead-letter queue), and drops copies of
//! events it handled lately.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};
use tokio::sync::watch;
use tracing::Instrument;

use super::{
    Connector, RabbitSink, binding_key, broker_error, dead_headers, dead_letter_exchange,
    dead_letter_queue, decode, queue_name, short,
};
use crate::bus::consumer::{Consumer, Shared, Verdict};
use crate::bus::dedup::{self, Seen};
use crate::bus::registry::{Registry, stop_requested};
use crate::bus::{
    Bus, BusEvent, BusHandler, BusHealth, BusStats, DynBusHandler, ErrorReporter, EventSink,
    Outgoing, Subscribe, Subscription, TracingReporter,
};
use crate::error::{Error, Result};

/// The first pause before opening a lost subscription's channel again, or sending a dead
/// letter again; it doubles up to [`MAX_PAUSE`].
const PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// A [`Bus`] on RabbitMQ: events published to a topic exchange with their type as the
/// routing key, subscriptions consuming queues bound to it.
///
/// **Subscriptions.** A subscription with a [group](Subscribe::group) consumes the durable
/// queue [`queue_name`]`(exchange, group)`, declared by `subscribe` and bound with
/// [`binding_key`]`(pattern)`: the group's members (in this process or others) share its
/// messages, RabbitMQ handing each to one of them, and messages published while no member
/// runs wait in it. A subscription without a group gets a queue of its own (exclusive,
/// deleted when the subscription closes): it sees what is published from now on.
///
/// **Deliveries.** A subscription takes up to [`prefetch`](RabbitBusBuilder::prefetch)
/// messages at a time and handles them one by one, in queue order. A message is
/// acknowledged once its handler returned `Ok`; after a retryable failure it is handled
/// again after the subscription's backoff, up to its maximum of deliveries; then (or at
/// once for a fatal error, or for a message that is not a chronicle event) it is
/// published to the dead-letter exchange [`dead_letter_exchange`]`(exchange)`, routed to
/// the durable queue [`dead_letter_queue`]`(queue)` with [`DEAD_REASON`](super::DEAD_REASON)
/// and [`DEAD_QUEUE`](super::DEAD_QUEUE) headers, confirmed, and only then acknowledged.
/// (A subscription without a group dead-letters to the queue of its name,
/// `dead_letter_queue(queue_name(exchange, name))`, which outlives it.)
///
/// **Closing.** [`Subscription::close`] (and [`Bus::close`]) lets the message in hand
/// finish and handles the ones already fetched, then cancels the consumer; a message in
/// its backoff goes back to the queue, for the group's next member.
#[derive(Clone)]
pub struct RabbitBus {
    inner: Arc<Inner>,
}

struct Inner {
    sink: RabbitSink,
    connector: Arc<Connector>,
    exchange: String,
    declare: bool,
    prefetch: u16,
    dedup_window: usize,
    shared: Arc<Shared>,
    running: Arc<Registry<()>>,
}

/// Configures a [`RabbitBus`]: [`RabbitBus::builder`].
#[must_use = "call `build` to connect"]
pub struct RabbitBusBuilder {
    url: String,
    exchange: String,
    declare: bool,
    prefetch: u16,
    dedup_window: usize,
    reporter: Arc<dyn ErrorReporter>,
    connection_name: String,
}

impl RabbitBusBuilder {
    /// The connection's name, as RabbitMQ's tools list it (default `chronicle-bus`).
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// The exchange to publish to and bind queues to (default
    /// [`DEFAULT_EXCHANGE`](super::DEFAULT_EXCHANGE)).
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = exchange.into();
        self
    }

    /// Whether `build` declares the exchange (durable, `topic`; default yes). Queues, the
    /// dead-letter exchange and queues are declared by `subscribe` whatever this says.
    pub fn declare_exchange(mut self, declare: bool) -> Self {
        self.declare = declare;
        self
    }

    /// How many unacknowledged messages a subscription holds at most (AMQP `basic.qos`;
    /// default 16, at least 1). Lower shares a group's messages more evenly.
    pub fn prefetch(mut self, messages: u16) -> Self {
        self.prefetch = messages.max(1);
        self
    }

    /// How many handled event ids a subscription remembers to drop copies (default
    /// 10,000; 0 keeps none): a message whose `ce-id` is among them is acknowledged
    /// unhandled.
    pub fn dedup_window(mut self, events: usize) -> Self {
        self.dedup_window = events;
        self
    }

    /// Where failures go (default [`TracingReporter`]); a subscription can name its own.
    pub fn reporter(mut self, reporter: impl ErrorReporter) -> Self {
        self.reporter = Arc::new(reporter);
        self
    }

    /// Connects, opens the publishing channel (confirm mode) and declares the exchange.
    ///
    /// # Errors
    /// As [`RabbitSinkBuilder::build`](super::RabbitSinkBuilder::build).
    pub async fn build(self) -> Result<RabbitBus> {
        let connector = Connector::open(&self.url, &self.connection_name).await?;
        let shared = Shared::named("rabbitmq", self.reporter);
        let sink = RabbitSink::create(
            Arc::clone(&connector),
            self.exchange.clone(),
            self.declare,
            false,
            Arc::clone(&shared),
        )
        .await?;
        Ok(RabbitBus {
            inner: Arc::new(Inner {
                sink,
                connector,
                exchange: self.exchange,
                declare: self.declare,
                prefetch: self.prefetch,
                dedup_window: self.dedup_window,
                shared,
                running: Registry::new(),
            }),
        })
    }
}

impl RabbitBus {
    /// Configures a bus on the server at `url` (`amqp://user:password@host:port/vhost`).
    pub fn builder(url: impl Into<String>) -> RabbitBusBuilder {
        RabbitBusBuilder {
            url: url.into(),
            exchange: super::DEFAULT_EXCHANGE.to_owned(),
            declare: true,
            prefetch: 16,
            dedup_window: dedup::DEFAULT_WINDOW,
            reporter: Arc::new(TracingReporter),
            connection_name: "chronicle-bus".to_owned(),
        }
    }

    /// The bus's publisher as a relay's sink (routing by the relay's
    /// [`Topic`](crate::bus::Topic): give it [`Topic::event_type`](crate::bus::Topic::event_type)
    /// for this bus's subscriptions to see the events).
    pub fn sink(&self) -> RabbitSink {
        self.inner.sink.clone()
    }

    /// The exchange.
    pub fn exchange(&self) -> &str {
        &self.inner.exchange
    }

    async fn start(
        &self,
        options: Subscribe,
        handler: Box<dyn DynBusHandler>,
    ) -> Result<Subscription> {
        let inner = &self.inner;
        if inner.running.is_closed() {
            return Err(self.closed_error());
        }
        let named = options.group_name().map(str::to_owned);
        // A subscription without a group: a queue of its own, and the dead-letter queue
        // of its name (kept, shared by the runs of that name).
        let (queue, dead_queue) = match &named {
            Some(group) => {
                let queue = queue_name(&inner.exchange, group);
                let dead = dead_letter_queue(&queue);
                (queue, dead)
            }
            None => (
                queue_name(
                    &inner.exchange,
                    &format!(
                        "{}-{}",
                        options.display_name(),
                        uuid::Uuid::now_v7().simple()
                    ),
                ),
                dead_letter_queue(&queue_name(&inner.exchange, options.display_name())),
            ),
        };
        let setup = Setup {
            connector: Arc::clone(&inner.connector),
            exchange: inner.exchange.clone(),
            declare: inner.declare,
            dead_queue,
            queue,
            key: binding_key(options.pattern()),
            durable: named.is_some(),
            prefetch: inner.prefetch,
        };
        let (channel, deliveries) = setup.open().await?;
        let pattern = options.pattern().clone();
        let span = tracing::debug_span!(
            "chronicle.bus.rabbitmq.subscription",
            subscription = options.display_name(),
            queue = setup.queue.as_str(),
        );
        let runner = Consumer::new(options, handler, Arc::clone(&inner.shared));
        let seen = Seen::new(inner.dedup_window);
        let shared = Arc::clone(&inner.shared);
        Ok(inner.running.start(pattern, named, |stop| {
            let task = tokio::spawn(
                Subscriber {
                    setup,
                    channel,
                    runner,
                    seen,
                    shared,
                    stop,
                }
                .run(deliveries)
                .instrument(span),
            );
            ((), Some(task))
        }))
    }

    fn closed_error(&self) -> Error {
        Error::BusClosed {
            bus: format!(
                "{} exchange `{}`",
                self.inner.connector.target, self.inner.exchange
            ),
        }
    }
}

impl Bus for RabbitBus {
    async fn publish(&self, event: BusEvent) -> Result<()> {
        self.publish_batch(vec![event]).await
    }

    async fn publish_batch(&self, events: Vec<BusEvent>) -> Result<()> {
        if self.inner.running.is_closed() {
            return Err(self.closed_error());
        }
        let batch = events
            .into_iter()
            .map(|event| Outgoing::new(event.event_type.clone(), event))
            .collect();
        self.inner.sink.send(batch).await
    }

    async fn subscribe<H: BusHandler>(
        &self,
        subscribe: impl Into<Subscribe> + Send,
        handler: H,
    ) -> Result<Subscription> {
        self.start(subscribe.into(), Box::new(handler)).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.running.close().await;
        self.inner.connector.close().await
    }

    fn health(&self) -> BusHealth {
        let connector = &self.inner.connector;
        let open = !self.inner.running.is_closed();
        self.inner.shared.health(
            open && connector.connected(),
            connector.link.reconnects(),
            0,
        )
    }

    fn stats(&self) -> BusStats {
        self.inner.shared.stats()
    }
}

/// What a subscription declares, and how it opens its channel again after a loss.
struct Setup {
    connector: Arc<Connector>,
    exchange: String,
    declare: bool,
    queue: String,
    dead_queue: String,
    key: String,
    /// A group's queue (durable, shared); else the subscription's own (exclusive).
    durable: bool,
    prefetch: u16,
}

impl Setup {
    /// A confirm-mode channel (for dead letters) with the topology declared, the prefetch
    /// set, and a consumer on the queue.
    async fn open(&self) -> Result<(Channel, lapin::Consumer)> {
        let connector = &self.connector;
        let channel = connector.channel(true).await?;
        let fail = |operation: String| {
            let target = connector.target.clone();
            move |error: lapin::Error| {
                connector.failed(&error);
                broker_error(&target, operation, error)
            }
        };
        if self.declare {
            connector
                .declare_exchange(&channel, &self.exchange, ExchangeKind::Topic)
                .await?;
        }
        let dead_exchange = dead_letter_exchange(&self.exchange);
        connector
            .declare_exchange(&channel, &dead_exchange, ExchangeKind::Direct)
            .await?;
        let queue = short("queue", &self.queue)?;
        let dead_queue = short("queue", &self.dead_queue)?;
        let options = QueueDeclareOptions {
            durable: self.durable,
            exclusive: !self.durable,
            auto_delete: !self.durable,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.clone(), options, FieldTable::default())
            .await
            .map_err(fail(format!("declaring the queue `{}`", self.queue)))?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(dead_queue.clone(), durable, FieldTable::default())
            .await
            .map_err(fail(format!("declaring the queue `{}`", self.dead_queue)))?;
        channel
            .queue_bind(
                queue.clone(),
                short("exchange", &self.exchange)?,
                short("binding key", &self.key)?,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(fail(format!(
                "binding the queue `{}` to `{}` with `{}`",
                self.queue, self.exchange, self.key
            )))?;
        channel
            .queue_bind(
                dead_queue.clone(),
                short("exchange", &dead_exchange)?,
                dead_queue,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(fail(format!("binding the queue `{}`", self.dead_queue)))?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(fail(format!("setting the prefetch of `{}`", self.queue)))?;
        let consumer = channel
            .basic_consume(
                queue,
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(fail(format!("consuming the queue `{}`", self.queue)))?;
        Ok((channel, consumer))
    }
}

/// What became of one message.
enum Handled {
    /// Acknowledged (handled, passed over, or dead-lettered).
    Done,
    /// A stop came first: back to the queue.
    Left,
    /// The channel is gone: RabbitMQ delivers the message again once it is open again.
    Lost,
}

/// A subscription's task.
struct Subscriber {
    setup: Setup,
    channel: Channel,
    runner: Consumer,
    seen: Seen,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

impl Subscriber {
    /// Handles messages one at a time until stopped, opening the channel again when it is
    /// lost; then handles what was already fetched, cancels the consumer and closes the
    /// channel (deleting a queue of its own).
    async fn run(mut self, mut deliveries: lapin::Consumer) {
        loop {
            let next = tokio::select! {
                biased;
                () = stop_requested(&mut self.stop) => break,
                next = deliveries.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    self.setup.connector.link.up();
                    if let Handled::Left = self.handle(&delivery).await {
                        break;
                    }
                }
                lost => {
                    let why = match lost {
                        Some(Err(error)) => {
                            self.setup.connector.failed(&error);
                            error.to_string()
                        }
                        _ => "the server cancelled the consumer".to_owned(),
                    };
                    self.shared
                        .note_error(format!("RabbitMQ queue `{}`: {why}", self.setup.queue));
                    match self.reopen().await {
                        Some(reopened) => deliveries = reopened,
                        None => break,
                    }
                }
            }
        }
        // Stopping: what was fetched already, then the consumer and the channel.
        while let Some(Some(Ok(delivery))) = deliveries.next().now_or_never() {
            if let Handled::Left = self.handle(&delivery).await {
                break;
            }
        }
        self.close(&deliveries).await;
    }

    /// Opens the channel and the consumer again, pausing between tries, until it works or
    /// a stop comes (`None`).
    async fn reopen(&mut self) -> Option<lapin::Consumer> {
        let mut pause = PAUSE;
        loop {
            tokio::select! {
                biased;
                () = stop_requested(&mut self.stop) => return None,
                () = tokio::time::sleep(pause) => {}
            }
            match self.setup.open().await {
                Ok((channel, deliveries)) => {
                    self.channel = channel;
                    return Some(deliveries);
                }
                Err(error) => {
                    self.shared.note_error(error.to_string());
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
    }

    /// Handles one message: decode, match, drop a copy of an event seen already, run the
    /// handler until it acknowledges or the event is dead, dead-letter when it must, then
    /// acknowledge; or, when a stop comes first, put it back.
    async fn handle(&mut self, delivery: &AmqpDelivery) -> Handled {
        let origin = format!(
            "RabbitMQ queue `{}` (routing key `{}`)",
            self.setup.queue, delivery.routing_key
        );
        let event = match decode(&delivery.properties, &delivery.data, &origin) {
            Ok(event) => Arc::new(event),
            Err(error) => {
                self.shared.dead();
                self.shared.note_error(error.to_string());
                tracing::warn!(%error, "a RabbitMQ message that does not decode goes to the dead letters");
                return self.dead_letter(delivery, &error.to_string()).await;
            }
        };
        if !self.runner.options().pattern().matches(&event.event_type)
            || self.seen.contains(&event.id)
        {
            return self.ack(delivery).await;
        }
        let verdict = self
            .runner
            .deliver_until_stopped(Arc::clone(&event), &mut self.stop)
            .await;
        let handled = match verdict {
            None => return self.put_back(delivery).await,
            Some(Verdict::Dead { reason }) => self.dead_letter(delivery, &reason).await,
            Some(_) => self.ack(delivery).await,
        };
        if matches!(handled, Handled::Done) {
            self.seen.insert(event.id);
        }
        handled
    }

    /// Acknowledges `delivery`. A failure is noted: the message comes again later (to this
    /// subscription, whose dedup window drops it, or to another member).
    async fn ack(&self, delivery: &AmqpDelivery) -> Handled {
        if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
            self.setup.connector.failed(&error);
            self.shared.note_error(format!(
                "RabbitMQ: acknowledging a message of `{}` failed: {error}",
                self.setup.queue
            ));
        }
        Handled::Done
    }

    /// Gives `delivery` back to the queue (a stop came during its backoff).
    async fn put_back(&self, delivery: &AmqpDelivery) -> Handled {
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        // A failure closes the channel, which requeues it as well.
        let _ = delivery.acker.nack(requeue).await;
        Handled::Left
    }

    /// Publishes `delivery` as it came, with `reason`, to the dead-letter queue (confirmed),
    /// then acknowledges it; tries again until that works or a stop comes (then it goes
    /// back to the queue).
    async fn dead_letter(&mut self, delivery: &AmqpDelivery, reason: &str) -> Handled {
        let setup = &self.setup;
        let exchange = dead_letter_exchange(&setup.exchange);
        let mut pause = PAUSE;
        loop {
            let sent = self.publish_dead(delivery, &exchange, reason).await;
            match sent {
                Ok(()) => return self.ack(delivery).await,
                Err(error) => {
                    self.shared.note_error(format!(
                        "RabbitMQ: a dead letter to `{exchange}` failed: {error}"
                    ));
                    if !self.channel.status().connected() {
                        return Handled::Lost;
                    }
                    tokio::select! {
                        biased;
                        () = stop_requested(&mut self.stop) => return self.put_back(delivery).await,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
    }

    async fn publish_dead(
        &self,
        delivery: &AmqpDelivery,
        exchange: &str,
        reason: &str,
    ) -> std::result::Result<(), String> {
        let queue = &self.setup.queue;
        let properties = delivery
            .properties
            .clone()
            .with_delivery_mode(2)
            .with_headers(dead_headers(&delivery.properties, reason, queue));
        let routing = (
            short("exchange", exchange),
            short("queue", &self.setup.dead_queue),
        );
        let (exchange_name, routing_key) = match routing {
            (Ok(exchange), Ok(queue)) => (exchange, queue),
            (Err(error), _) | (_, Err(error)) => return Err(error.to_string()),
        };
        let confirmed = async {
            self.channel
                .basic_publish(
                    exchange_name,
                    routing_key,
                    BasicPublishOptions::default(),
                    &delivery.data,
                    properties,
                )
                .await?
                .await
        }
        .await;
        match confirmed {
            Ok(confirmation) if confirmation.is_ack() => Ok(()),
            Ok(_) => Err("the broker nacked it".to_owned()),
            Err(error) => {
                self.setup.connector.failed(&error);
                Err(error.to_string())
            }
        }
    }

    /// Cancels the consumer (what it fetched and did not handle goes back to the queue)
    /// and closes the channel, deleting the queue first when it was the subscription's own.
    async fn close(&self, deliveries: &lapin::Consumer) {
        let channel = &self.channel;
        if !channel.status().connected() {
            return;
        }
        let cancelled = channel
            .basic_cancel(deliveries.tag(), BasicCancelOptions::default())
            .await;
        if let Err(error) = cancelled {
            self.shared
                .note_error(format!("RabbitMQ: cancelling the consumer failed: {error}"));
        }
        if !self.setup.durable
            && let Ok(queue) = short("queue", &self.setup.queue)
            && let Err(error) = channel
                .queue_delete(queue, QueueDeleteOptions::default())
                .await
        {
            self.shared.note_error(format!(
                "RabbitMQ: deleting the queue `{}` failed: {error}",
                self.setup.queue
            ));
        }
        let _ = channel.close(200, "closing".into()).await;
    }
}

impl fmt::Debug for RabbitBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitBus")
            .field("server", &self.inner.connector.target)
            .field("exchange", &self.inner.exchange)
            .field("stats", &self.inner.shared.stats())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RabbitBusBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitBusBuilder")
            .field("exchange", &self.exchange)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}
