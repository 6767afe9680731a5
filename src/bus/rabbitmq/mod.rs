//! RabbitMQ for the bus (cargo feature `rabbitmq`, on [lapin]: AMQP 0-9-1 over plain
//! TCP): a sink for the relay and a bus whose subscriptions are durable queues.
//!
//! **The message.** Every event is one persistent message (delivery mode 2) published to
//! a topic exchange (default [`DEFAULT_EXCHANGE`], declared durable by the builders). Its
//! body is the event's JSON data; its headers table holds the [`wire`]
//! headers (`ce-id`, `ce-type`, `ce-subject`, …, as long strings); its properties say the
//! same for AMQP tools: `message-id` = the event id (the deduplication key),
//! `content-type` = `application/json`, `timestamp` = the event's time in seconds.
//!
//! - [`RabbitSink`] is the relay's [`EventSink`](super::EventSink): the routing key is
//!   the relay's [`Topic`](super::Topic) (by default the stream's category), and a batch
//!   returns only once RabbitMQ confirmed every message (publisher confirms). One stream's
//!   events go in version order on one channel; a queue keeps the order it got them in.
//! - [`RabbitBus`] implements [`Bus`](super::Bus): it publishes with the event **type**
//!   as the routing key, and each subscription consumes a queue bound to the exchange
//!   with the key [`binding_key`] makes of its pattern (`*` → `#`, `user.*` → `user.#`),
//!   the pattern itself filtering what the binding lets through. A subscription in a
//!   group consumes the durable queue `<exchange>.<group>` ([`queue_name`]), shared by
//!   the group's members; one without a group gets a queue of its own, deleted when it
//!   closes. Messages are acknowledged only after the handler succeeded; a failed one is
//!   delivered again in process after the subscription's backoff, up to its maximum of
//!   deliveries, then published (with [`DEAD_REASON`]) to the dead-letter exchange
//!   `<exchange>.dead` and its queue `<queue>.dead` ([`dead_letter_exchange`],
//!   [`dead_letter_queue`]) before it is acknowledged. Copies of an event handled lately
//!   (the same `ce-id`: a relay that sent a batch again) are acknowledged unhandled
//!   ([`RabbitBusBuilder::dedup_window`]).
//!
//! **Duplicates and crashes.** RabbitMQ does not deduplicate: a relay killed before its
//! checkpoint moved sends its last batch again, and the queue holds those messages twice
//! (the bus's dedup window drops them). A consumer killed mid-handler leaves its message
//! unacknowledged: RabbitMQ delivers it again (to the group's next consumer), counting
//! deliveries from 1 again, since a classic queue keeps no delivery count.
//!
//! **Connections.** A sink or bus holds one connection (each subscription a channel on
//! it). A lost connection is an [`Error::Broker`] or [`Error::Publish`] marked retryable;
//! the next send (the relay retries) or the subscription's next read opens a new
//! connection, which [`BusHealth::reconnects`](super::BusHealth::reconnects) counts.
//! Not handled: lapin's own automatic recovery is not used, so messages a subscription
//! had not acknowledged are delivered again after a reconnect (the dedup window drops the
//! ones it handled); a subscription without a group gets a new exclusive queue after a
//! reconnect (what was published in between is not in it); no TLS (`amqps://`) is
//! compiled in.
//!
//! **Health.** `health()` says `connected` (the connection's state, and whether the last
//! request found it lost), `reconnects`, and the last error; `lag_events` stays 0 (the
//! queues' depth is not read). `stats()` counts as every bus does.
//!
//! ```no_run
//! # async fn demo(store: chronicle::Store) -> chronicle::Result<()> {
//! use chronicle::bus::{Bus, Delivery, RabbitBus, RabbitSink, StartFrom, Subscribe, Topic};
//!
//! // The store's events into the `chronicle` exchange, routed by event type.
//! let sink = RabbitSink::builder("amqp://guest:guest@127.0.0.1:5672/%2f").build().await?;
//! let relay = store
//!     .relay("to-rabbitmq")
//!     .topic(Topic::event_type())
//!     .start_from(StartFrom::Beginning)
//!     .spawn(sink);
//!
//! // Another service: the `shipping` group's durable queue, bound with `order.#`.
//! let bus = RabbitBus::builder("amqp://guest:guest@127.0.0.1:5672/%2f").build().await?;
//! let shipping = bus
//!     .subscribe(Subscribe::to("order.*").group("shipping"), |delivery: Delivery| async move {
//!         println!("ship {:?}", delivery.subject);
//!         Ok(()) // acknowledged only now
//!     })
//!     .await?;
//! relay.wait_for_idle().await?;
//! shipping.close().await?;
//! relay.stop().await?;
//! bus.close().await?;
//! # Ok(()) }
//! ```
//!
//! [lapin]: https://docs.rs/lapin

mod bus;
mod sink;

use std::sync::{Arc, Mutex, PoisonError};

use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ConnectionStatus};

pub use bus::{RabbitBus, RabbitBusBuilder};
pub use sink::{RabbitSink, RabbitSinkBuilder};

use crate::bus::link::{Link, redact};
use crate::bus::{BusEvent, Pattern, wire};
use crate::error::{Error, Result, ValidationError};

/// The exchange a sink or bus publishes to unless its builder names another.
pub const DEFAULT_EXCHANGE: &str = "chronicle";
/// The header of a dead letter that says why the message was given up.
pub const DEAD_REASON: &str = "chronicle-dead-reason";
/// The header of a dead letter naming the queue that gave it up.
pub const DEAD_QUEUE: &str = "chronicle-dead-queue";

/// The durable queue of consumer group `group` on `exchange`: `<exchange>.<group>`.
pub fn queue_name(exchange: &str, group: &str) -> String {
    format!("{exchange}.{group}")
}

/// The dead-letter exchange of `exchange`: `<exchange>.dead` (a direct exchange; dead
/// letters are routed with the name of their dead-letter queue).
pub fn dead_letter_exchange(exchange: &str) -> String {
    format!("{exchange}.dead")
}

/// The dead-letter queue of `queue`: `<queue>.dead`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// The AMQP binding key that lets through at least the event types `pattern` matches:
/// literal words stay, a word with a `*` becomes `#` (a glob's `*` may span dots, as
/// `#` spans words). Exact for `*` (→ `#`) and literal types; for other globs the
/// subscription filters the rest with [`Pattern::matches`].
///
/// ```
/// use chronicle::bus::{Pattern, rabbitmq::binding_key};
///
/// assert_eq!(binding_key(&Pattern::any()), "#");
/// assert_eq!(binding_key(&Pattern::new("user.*")), "user.#");
/// assert_eq!(binding_key(&Pattern::new("*.created")), "#.created");
/// assert_eq!(binding_key(&Pattern::new("user.Registered")), "user.Registered");
/// ```
pub fn binding_key(pattern: &Pattern) -> String {
    let words: Vec<&str> = pattern
        .as_str()
        .split('.')
        .map(|word| if word.contains('*') { "#" } else { word })
        .collect();
    // `#.#` is `#`: collapse repeats.
    let mut key: Vec<&str> = Vec::with_capacity(words.len());
    for word in words {
        if !(word == "#" && key.last() == Some(&"#")) {
            key.push(word);
        }
    }
    key.join(".")
}

/// `text` as an AMQP short string (at most 255 bytes: exchange and queue names, routing
/// keys), else a configuration error naming `what`.
fn short(what: &str, text: &str) -> Result<ShortString> {
    ShortString::try_new(text).map_err(|error| {
        Error::Validation(ValidationError::Config(format!(
            "the RabbitMQ {what} `{text}` is too long: {error}"
        )))
    })
}

/// The properties of `event`'s message: persistent, `message-id` = the event id,
/// JSON, the event's time, and the [`wire`] headers.
fn properties(event: &BusEvent) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in wire::headers(event) {
        headers.insert(name.into(), AMQPValue::LongString(value.into()));
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(event.id.to_string().into())
        .with_content_type("application/json".into())
        .with_timestamp(event.time.timestamp().max(0) as u64)
        .with_headers(headers)
}

/// A header's text: long and short strings as they are (UTF-8), else nothing.
fn header_text<'a>(headers: Option<&'a FieldTable>, name: &str) -> Option<&'a str> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(text) => std::str::from_utf8(text.as_bytes()).ok(),
        AMQPValue::ShortString(text) => Some(text.as_str()),
        _ => None,
    }
}

/// The event a message carries ([`wire::decode`] over its headers; a message from
/// another client without `ce-id` may give its id as the `message-id` property).
fn decode(properties: &BasicProperties, body: &[u8], origin: &str) -> Result<BusEvent> {
    let headers = properties.headers().as_ref();
    let message_id = properties.message_id().as_ref().map(ShortString::as_str);
    let header = |name: &str| {
        header_text(headers, name).or_else(|| (name == wire::ID).then_some(message_id).flatten())
    };
    wire::decode(header, body, origin)
}

/// A dead letter's headers: the message's, with why and by which queue it was given up.
fn dead_headers(properties: &BasicProperties, reason: &str, queue: &str) -> FieldTable {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        DEAD_REASON.into(),
        AMQPValue::LongString(LongString::from(reason)),
    );
    headers.insert(
        DEAD_QUEUE.into(),
        AMQPValue::LongString(LongString::from(queue)),
    );
    headers
}

/// Whether doing the same again may succeed after `error`: a lost connection or
/// channel, a missed heartbeat, a server closing the connection or short of resources;
/// not a refusal (access refused, not found, a precondition such as an exchange declared
/// with another type) or a message the client cannot write.
fn is_retryable(error: &lapin::Error) -> bool {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED)
                | AMQPErrorKind::Hard(
                    AMQPHardError::CONNECTIONFORCED
                        | AMQPHardError::RESOURCEERROR
                        | AMQPHardError::INTERNALERROR
                        | AMQPHardError::CHANNELERROR
                )
        ),
        _ => error.can_be_recovered(),
    }
}

/// Whether `error` means the connection (or the channel) is gone, rather than the
/// server refusing one request.
fn is_disconnect(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::IOError(_)
            | lapin::ErrorKind::RuntimeShutdownError(_)
            | lapin::ErrorKind::InvalidConnectionState(_)
            | lapin::ErrorKind::InvalidChannelState(..)
            | lapin::ErrorKind::MissingHeartbeatError
    ) || error.is_amqp_hard_error()
}

/// The typed error for `operation` on the server `target` failing with `error`.
fn broker_error(target: &str, operation: String, error: lapin::Error) -> Error {
    Error::Broker {
        broker: target.to_owned(),
        operation,
        retryable: is_retryable(&error),
        source: Box::new(error),
    }
}

/// One connection to RabbitMQ, opened again when it is found lost: what a sink or bus
/// shares with its subscriptions. [`Link`] counts the reconnects.
struct Connector {
    url: String,
    /// The address without credentials, for errors and health.
    target: String,
    name: String,
    connection: tokio::sync::Mutex<Arc<Connection>>,
    /// The current connection's status, read without waiting (for `health`).
    status: Mutex<ConnectionStatus>,
    link: Link,
}

impl Connector {
    /// Connects to `url`, naming the connection `name` (the management UI shows it).
    async fn open(url: &str, name: &str) -> Result<Arc<Self>> {
        let target = format!("RabbitMQ at {}", redact(url));
        let connection = Self::connect(url, name, &target).await?;
        Ok(Arc::new(Connector {
            url: url.to_owned(),
            target,
            name: name.to_owned(),
            status: Mutex::new(connection.status().clone()),
            connection: tokio::sync::Mutex::new(Arc::new(connection)),
            link: Link::new(),
        }))
    }

    async fn connect(url: &str, name: &str, target: &str) -> Result<Connection> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        Connection::connect(url, properties)
            .await
            .map_err(|error| broker_error(target, "connecting".to_owned(), error))
    }

    /// A new channel (in confirm mode when `confirm`), on the connection, or on a new
    /// one when it is lost (counted as a reconnect).
    ///
    /// # Errors
    /// [`Error::Broker`] (retryable) when the server cannot be reached.
    async fn channel(&self, confirm: bool) -> Result<Channel> {
        let mut connection = self.connection.lock().await;
        if !connection.status().connected() {
            self.link.down();
            let fresh = Self::connect(&self.url, &self.name, &self.target).await?;
            *self.status.lock().unwrap_or_else(PoisonError::into_inner) = fresh.status().clone();
            *connection = Arc::new(fresh);
        }
        let opened = connection.create_channel().await;
        self.link.observe(&opened, is_disconnect);
        let channel = opened
            .map_err(|error| broker_error(&self.target, "opening a channel".into(), error))?;
        if confirm {
            let selected = channel
                .confirm_select(ConfirmSelectOptions::default())
                .await;
            self.link.observe(&selected, is_disconnect);
            selected.map_err(|error| {
                broker_error(&self.target, "enabling publisher confirms".into(), error)
            })?;
        }
        Ok(channel)
    }

    /// Declares the durable exchange `exchange` of `kind` on `channel` (nothing for the
    /// default exchange, `""`).
    async fn declare_exchange(
        &self,
        channel: &Channel,
        exchange: &str,
        kind: lapin::ExchangeKind,
    ) -> Result<()> {
        if exchange.is_empty() {
            return Ok(());
        }
        let options = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let declared = channel
            .exchange_declare(
                short("exchange", exchange)?,
                kind,
                options,
                FieldTable::default(),
            )
            .await;
        self.link.observe(&declared, is_disconnect);
        declared.map_err(|error| {
            broker_error(
                &self.target,
                format!("declaring the exchange `{exchange}`"),
                error,
            )
        })
    }

    /// Takes note of a failed request: a lost connection shows in health until a
    /// request works again.
    fn failed(&self, error: &lapin::Error) {
        if is_disconnect(error) {
            self.link.down();
        }
    }

    /// Connected: the connection says so, and the last request did not find it lost.
    fn connected(&self) -> bool {
        self.link.connected()
            && self
                .status
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .connected()
    }

    /// Closes the connection (a lost one needs nothing).
    async fn close(&self) -> Result<()> {
        let connection = self.connection.lock().await;
        if !connection.status().connected() {
            return Ok(());
        }
        connection
            .close(200, "closing".into())
            .await
            .map_err(|error| broker_error(&self.target, "closing the connection".into(), error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_keys_let_through_every_type_the_pattern_matches() {
        for (pattern, key) in [
            ("*", "#"),
            ("user.*", "user.#"),
            ("*.created", "#.created"),
            ("a.*.*", "a.#"),
            ("us*r.x", "#.x"),
            ("order.Placed", "order.Placed"),
        ] {
            assert_eq!(binding_key(&Pattern::new(pattern)), key, "{pattern}");
        }
    }

    #[test]
    fn an_event_survives_the_message_and_a_foreign_message_may_give_its_id_as_message_id() {
        let event = BusEvent::new("user.Registered", serde_json::json!({ "name": "ada" }))
            .subject("user-1")
            .correlation_id("req-1");
        let props = properties(&event);
        assert_eq!(props.delivery_mode(), &Some(2));
        let back = decode(&props, event.data_json(), "test").expect("decodes");
        assert_eq!(back, event);

        let mut headers = FieldTable::default();
        headers.insert(wire::TYPE.into(), AMQPValue::ShortString("a.B".into()));
        let foreign = BasicProperties::default()
            .with_message_id(event.id.to_string().into())
            .with_headers(headers);
        let back = decode(&foreign, b"{}", "test").expect("decodes");
        assert_eq!((back.id, back.event_type.as_str()), (event.id, "a.B"));
        let error = decode(&BasicProperties::default(), b"{}", "q").expect_err("no id");
        assert!(matches!(error, Error::MalformedMessage { .. }), "{error:?}");
    }

    #[test]
    fn names_longer_than_an_amqp_short_string_are_configuration_errors() {
        let error = short("routing key", &"x".repeat(256)).expect_err("too long");
        assert!(matches!(error, Error::Validation(_)), "{error:?}");
        assert!(short("routing key", &"x".repeat(255)).is_ok());
    }
}
