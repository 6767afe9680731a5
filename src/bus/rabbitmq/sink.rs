//! [`RabbitSink`]: the relay's [`EventSink`] for RabbitMQ, publishing persistent
//! messages to a topic exchange on a channel in confirm mode, and returning once
//! RabbitMQ confirmed every message of a batch.

use std::fmt;
use std::sync::Arc;

use lapin::options::BasicPublishOptions;
use lapin::{Channel, Confirmation, ExchangeKind, PublisherConfirm};
use tracing::Instrument;

use super::{Connector, is_retryable, properties, short};
use crate::bus::consumer::Shared;
use crate::bus::{BusEvent, BusHealth, BusStats, EventSink, Outgoing, TracingReporter};
use crate::error::{Error, Result};

/// A relay's sink into RabbitMQ: each [`Outgoing`] becomes one persistent message
/// (delivery mode 2) on the sink's topic exchange, its routing key the relay's topic
/// ([`Outgoing::topic`]), `message-id` the event id, the [`wire`](crate::bus::wire)
/// headers in its headers table and the event's JSON data as its body.
///
/// **Confirms.** The sink's channel is in confirm mode: [`EventSink::send`] publishes the
/// whole batch, then waits for RabbitMQ's confirm of every message, and returns `Ok` only
/// once all were acknowledged: only then does the relay move its checkpoint. A message
/// RabbitMQ nacks (it could not take it: a queue full, a node going down) fails the
/// batch with a retryable [`Error::Broker`] naming the exchange and the event, and the
/// relay sends the batch again. A message no queue is bound for is confirmed and dropped
/// by RabbitMQ, as AMQP says, unless the sink is
/// [`mandatory`](RabbitSinkBuilder::mandatory): then it is an error too.
///
/// **Order.** One channel publishes a batch in order, so the messages of one stream
/// arrive in each queue in version order. **Copies**: RabbitMQ does not deduplicate; a
/// batch sent again is queued again, and consumers drop the copies by `ce-id` (as
/// [`RabbitBus`](super::RabbitBus) does). Clones share the connection and the channel.
///
/// ```no_run
/// # async fn demo(store: chronicle::Store) -> chronicle::Result<()> {
/// use chronicle::bus::{RabbitSink, StartFrom, Topic};
///
/// let sink = RabbitSink::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
///     .exchange("events")   // a durable topic exchange, declared by `build`
///     .build()
///     .await?;
/// let relay = store.relay("to-rabbitmq").topic(Topic::event_type()).start_from(StartFrom::Beginning).spawn(sink);
/// relay.wait_for_idle().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RabbitSink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    connector: Arc<Connector>,
    exchange: String,
    declare: bool,
    mandatory: bool,
    /// The confirm-mode channel, opened again after it was lost; held for a whole batch.
    channel: tokio::sync::Mutex<Option<Channel>>,
    shared: Arc<Shared>,
}

/// Configures a [`RabbitSink`]: [`RabbitSink::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `build` to connect"]
pub struct RabbitSinkBuilder {
    url: String,
    exchange: String,
    declare: bool,
    mandatory: bool,
    connection_name: String,
}

impl RabbitSinkBuilder {
    /// The connection's name, as RabbitMQ's tools list it (default `chronicle-sink`).
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// The exchange to publish to (default [`DEFAULT_EXCHANGE`](super::DEFAULT_EXCHANGE)).
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = exchange.into();
        self
    }

    /// Whether `build` declares the exchange (durable, of type `topic`; default yes). Say
    /// no where a deploy step owns the broker's topology and the user may not declare.
    pub fn declare_exchange(mut self, declare: bool) -> Self {
        self.declare = declare;
        self
    }

    /// Publish as `mandatory`: a message no queue is bound for fails the batch (a
    /// retryable [`Error::Broker`]) instead of being dropped by RabbitMQ. Default no.
    pub fn mandatory(mut self, mandatory: bool) -> Self {
        self.mandatory = mandatory;
        self
    }

    /// Connects, opens the confirm-mode channel and declares the exchange.
    ///
    /// # Errors
    /// [`Error::Broker`] when the server cannot be reached (retryable) or refuses the
    /// exchange (one of that name exists with another type: not retryable);
    /// [`ValidationError::Config`](crate::ValidationError::Config) for an exchange name
    /// longer than 255 bytes.
    pub async fn build(self) -> Result<RabbitSink> {
        let connector = Connector::open(&self.url, &self.connection_name).await?;
        let shared = Shared::named("rabbitmq-sink", Arc::new(TracingReporter));
        RabbitSink::create(
            connector,
            self.exchange,
            self.declare,
            self.mandatory,
            shared,
        )
        .await
    }
}

impl RabbitSink {
    /// Configures a sink to the server at `url` (`amqp://user:password@host:port/vhost`,
    /// the vhost `/` written `%2f`).
    pub fn builder(url: impl Into<String>) -> RabbitSinkBuilder {
        RabbitSinkBuilder {
            url: url.into(),
            exchange: super::DEFAULT_EXCHANGE.to_owned(),
            declare: true,
            mandatory: false,
            connection_name: "chronicle-sink".to_owned(),
        }
    }

    /// A sink on `connector` publishing to `exchange`, counting into `shared`: its channel
    /// opened, the exchange declared when `declare`.
    pub(super) async fn create(
        connector: Arc<Connector>,
        exchange: String,
        declare: bool,
        mandatory: bool,
        shared: Arc<Shared>,
    ) -> Result<Self> {
        short("exchange", &exchange)?;
        let sink = RabbitSink {
            inner: Arc::new(SinkInner {
                connector,
                exchange,
                declare,
                mandatory,
                channel: tokio::sync::Mutex::new(None),
                shared,
            }),
        };
        let channel = sink.open_channel().await?;
        *sink.inner.channel.lock().await = Some(channel);
        Ok(sink)
    }

    /// The exchange it publishes to.
    pub fn exchange(&self) -> &str {
        &self.inner.exchange
    }

    /// A confirm-mode channel, the exchange declared on it when the sink declares.
    async fn open_channel(&self) -> Result<Channel> {
        let inner = &self.inner;
        let channel = inner.connector.channel(true).await?;
        if inner.declare {
            inner
                .connector
                .declare_exchange(&channel, &inner.exchange, ExchangeKind::Topic)
                .await?;
        }
        Ok(channel)
    }

    /// Publishes `batch` to the exchange and waits for every confirm.
    async fn publish_all(&self, channel: &Channel, batch: &[Outgoing]) -> Result<()> {
        let inner = &self.inner;
        let exchange = short("exchange", &inner.exchange)?;
        let options = BasicPublishOptions {
            mandatory: inner.mandatory,
            ..BasicPublishOptions::default()
        };
        let mut confirms: Vec<PublisherConfirm> = Vec::with_capacity(batch.len());
        for out in batch {
            let routing_key = short("routing key", &out.topic)?;
            let published = channel
                .basic_publish(
                    exchange.clone(),
                    routing_key,
                    options,
                    out.event.data_json(),
                    properties(&out.event),
                )
                .await
                .map_err(|error| self.publish_error(&out.event, error))?;
            confirms.push(published);
        }
        for (out, confirm) in batch.iter().zip(confirms) {
            let confirmation = confirm
                .await
                .map_err(|error| self.publish_error(&out.event, error))?;
            match confirmation {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(returned)) => {
                    return Err(self.refused(
                        &out.event,
                        format!(
                            "returned it: no queue is bound for routing key `{}` ({})",
                            out.topic, returned.reply_text
                        ),
                    ));
                }
                Confirmation::Nack(_) => {
                    return Err(self.refused(&out.event, "nacked it".to_owned()));
                }
                Confirmation::NotRequested => {
                    return Err(Error::Internal(format!(
                        "the RabbitMQ sink's channel to exchange `{}` is not in confirm mode",
                        inner.exchange
                    )));
                }
            }
        }
        inner.connector.link.up();
        Ok(())
    }

    /// The error for `event`, which the broker did not take (`what` it did): retryable.
    fn refused(&self, event: &BusEvent, what: String) -> Error {
        let operation = format!(
            "publishing event {} (`{}`) to exchange `{}`: the broker {what}",
            event.id, event.event_type, self.inner.exchange
        );
        Error::Broker {
            broker: self.inner.connector.target.clone(),
            retryable: true,
            source: operation.clone().into(),
            operation,
        }
    }

    /// The error for `event`, which could not be published (the channel or connection
    /// failed): [`Error::Publish`], retryable when a retry may pass.
    fn publish_error(&self, event: &BusEvent, error: lapin::Error) -> Error {
        self.inner.connector.failed(&error);
        Error::Publish {
            destination: format!(
                "{} exchange `{}`",
                self.inner.connector.target, self.inner.exchange
            ),
            event_id: event.id,
            event_type: event.event_type.clone(),
            retryable: is_retryable(&error),
            source: Box::new(error),
        }
    }
}

impl EventSink for RabbitSink {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<()> {
        let inner = &self.inner;
        let span = tracing::debug_span!(
            "chronicle.bus.rabbitmq.send",
            messages = batch.len(),
            exchange = inner.exchange.as_str()
        );
        async move {
            if batch.is_empty() {
                return Ok(());
            }
            let mut held = inner.channel.lock().await;
            let channel = match held.as_ref().filter(|channel| channel.status().connected()) {
                Some(channel) => channel.clone(),
                None => {
                    *held = None;
                    let channel = self.open_channel().await.inspect_err(|error| {
                        inner.shared.note_error(error.to_string());
                    })?;
                    held.insert(channel).clone()
                }
            };
            match self.publish_all(&channel, &batch).await {
                Ok(()) => {
                    inner.shared.published(batch.len() as u64);
                    Ok(())
                }
                Err(error) => {
                    inner.shared.note_error(error.to_string());
                    if !channel.status().connected() {
                        *held = None;
                    }
                    Err(error)
                }
            }
        }
        .instrument(span)
        .await
    }

    fn health(&self) -> BusHealth {
        let connector = &self.inner.connector;
        self.inner
            .shared
            .health(connector.connected(), connector.link.reconnects(), 0)
    }

    fn stats(&self) -> BusStats {
        self.inner.shared.stats()
    }
}

impl fmt::Debug for RabbitSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitSink")
            .field("server", &self.inner.connector.target)
            .field("exchange", &self.inner.exchange)
            .field("stats", &self.inner.shared.stats())
            .finish()
    }
}
