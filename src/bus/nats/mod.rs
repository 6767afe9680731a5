//! NATS JetStream (feature `nats`, client `async-nats`): a relay sink, [`NatsSink`], and a
//! bus, [`NatsBus`], whose subscriptions are durable pull consumers.
//!
//! **Messages.** One event is one JetStream message: the body is the event's JSON data and
//! the headers are [`wire::headers`] (`ce-id`, `ce-type`, …) plus
//! `Nats-Msg-Id` = the event id, so the stream drops a message it already holds within its
//! duplicate window (a relay that died after publishing a batch but before moving its
//! checkpoint sends the batch again; the stream keeps each message once). Every publish
//! waits for the stream's acknowledgement; a batch is pipelined (every message sent, then
//! every ack awaited).
//!
//! **Subjects.** [`NatsSink`] sends each [`Outgoing`](super::Outgoing) to the subject the
//! relay's [`Topic`](super::Topic) names, after an optional prefix (`events` + `account` →
//! `events.account`). [`NatsBus`] publishes an event of type `user.Registered` to
//! `<prefix>.user.Registered`; a relay feeds a `NatsBus`'s subscribers when it names
//! topics with [`Topic::event_type`](super::Topic::event_type) and the sink has the bus's
//! prefix. JetStream keeps order per subject. A type or topic that makes no subject
//! (whitespace, `*`, `>`, an empty token) is refused before anything is sent:
//! [`Error::Publish`] with `retryable: false`.
//!
//! **Subscriptions.** Each [`Subscribe`](super::Subscribe) is a durable pull consumer
//! named after its group (else its name, else its pattern; characters NATS forbids in a
//! name become `_`), with explicit acks and `max_deliver` = the subscription's maximum of
//! deliveries, so processes that subscribe with one group share its messages. The pattern
//! becomes the consumer's filter subject where it can: an exact type filters its subject,
//! and a glob the subject tree before its first `*` (`user.*` → `<prefix>.user.>`, `*`
//! and `*.created` → `<prefix>.>`). A glob's `*` spans dots while a NATS wildcard
//! does not, so the filter may be wider than the pattern: the subscription also checks
//! each event's type and acknowledges, without running the handler, those that do not
//! match. A handler's answer (through the bus's one consumer rule) becomes an ack, a nak
//! with the backoff's delay, or a dead letter: the message, with its headers and
//! `chronicle-dead-reason`, published to `<prefix>.dead.<consumer>` (configurable), then
//! terminated. The delivery number the handler sees is JetStream's delivery count. A message that does not decode goes to the dead letters without a handler
//! running. Event types under `dead.` are refused by [`NatsBus`]'s publish, and subscribers
//! skip the dead-letter subjects.
//!
//! **Server.** `nats-server -js` (JetStream on). JetStream needs a stream holding the
//! subjects: [`NatsBus`] creates its own (`<prefix>.>`) when missing; [`NatsSink`] creates
//! one when asked ([`NatsSinkBuilder::ensure_stream`]).
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> chronicle::Result<()> {
//! # let store = chronicle::Store::open("sqlite://events.db").await?;
//! use chronicle::bus::nats::{NatsBus, NatsSink};
//! use chronicle::bus::{Bus, Delivery, StartFrom, Subscribe, Topic};
//!
//! // The relay: the store's events to `events.<type>` in the stream EVENTS.
//! let sink = NatsSink::builder("nats://127.0.0.1:4222")
//!     .subject_prefix("events")
//!     .ensure_stream("EVENTS", ["events.>"])
//!     .build()
//!     .await?;
//! let relay = store
//!     .relay("to-nats")
//!     .topic(Topic::event_type())
//!     .start_from(StartFrom::Beginning)
//!     .spawn(sink);
//!
//! // A consumer group, in this process or any other.
//! let bus = NatsBus::builder("nats://127.0.0.1:4222").prefix("events").stream("EVENTS").build().await?;
//! bus.subscribe(
//!     Subscribe::to("order.*").group("billing").max_deliveries(5),
//!     |delivery: Delivery| async move {
//!         println!("{} (attempt {})", delivery.event_type, delivery.attempt());
//!         Ok(())
//!     },
//! )
//! .await?
//! .detach();
//! # relay.stop().await?; bus.close().await?;
//! # Ok(()) }
//! ```

mod bus;
mod sink;
mod subscription;

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use uuid::Uuid;

pub use bus::{NatsBus, NatsBusBuilder};
pub use sink::{NatsSink, NatsSinkBuilder};

use super::{BusEvent, wire};
use crate::error::{Error, Result};

/// Header: why a dead letter was given up (the handler's error, or why it did not decode).
pub const DEAD_REASON: &str = "chronicle-dead-reason";

/// Header: JetStream's deduplication key, the event id.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// The duplicate window of the streams chronicle creates, unless told otherwise: how long
/// JetStream remembers a `Nats-Msg-Id` (the server's default).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Acks awaited at once per connection, at most; a publish waits for room beyond it.
const MAX_ACKS_IN_FLIGHT: usize = 10_000;

/// A connection and its JetStream context, with the name errors give it.
#[derive(Clone)]
struct Connection {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    target: String,
}

impl Connection {
    /// Connects to `url` (a client name `name` for the server's monitoring).
    async fn open(url: &str, name: &str) -> Result<Self> {
        let target = format!("NATS at {url}");
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .connect(url)
            .await
            .map_err(|error| {
                let retryable = !matches!(
                    error.kind(),
                    async_nats::ConnectErrorKind::ServerParse
                        | async_nats::ConnectErrorKind::Authentication
                        | async_nats::ConnectErrorKind::AuthorizationViolation
                );
                Error::Broker {
                    broker: target.clone(),
                    operation: "connect".to_owned(),
                    retryable,
                    source: Box::new(error),
                }
            })?;
        Ok(Connection::from_client(client, url))
    }

    /// A connection already open (`url` names it in errors).
    fn from_client(client: async_nats::Client, url: &str) -> Self {
        let jetstream = jetstream::ContextBuilder::new()
            .max_ack_inflight(MAX_ACKS_IN_FLIGHT)
            .backpressure_on_inflight(true)
            .build(client.clone());
        Connection {
            client,
            jetstream,
            target: format!("NATS at {url}"),
        }
    }

    /// Whether the client is connected now.
    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Reconnections since the first connect.
    fn reconnects(&self) -> u64 {
        self.client
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(1)
    }

    /// An [`Error::Broker`] for `operation`.
    fn error(
        &self,
        operation: impl Into<String>,
        retryable: bool,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Broker {
            broker: self.target.clone(),
            operation: operation.into(),
            retryable,
            source: source.into(),
        }
    }

    /// Creates the stream `name` over `subjects` (deduplicating within `window`) unless a
    /// stream of that name exists, which is then used as it is.
    async fn ensure_stream(
        &self,
        name: &str,
        subjects: Vec<String>,
        window: Duration,
    ) -> Result<()> {
        let config = stream::Config {
            name: name.to_owned(),
            subjects,
            duplicate_window: window,
            ..Default::default()
        };
        self.jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|error| self.error(format!("create stream `{name}`"), true, error))?;
        Ok(())
    }

    /// Publishes `messages`, pipelined: all are sent, then every acknowledgement awaited.
    /// Returns how many the stream took (duplicates it dropped included).
    async fn publish_all(&self, messages: Vec<Message>) -> Result<u64> {
        let mut acks: Vec<(PublishAckFuture, Message)> = Vec::with_capacity(messages.len());
        let mut sent = 0;
        for mut message in messages {
            let publish = jetstream::message::PublishMessage::build()
                .payload(std::mem::take(&mut message.payload))
                .headers(std::mem::take(&mut message.headers));
            let ack = self
                .jetstream
                .send_publish(message.subject.clone(), publish)
                .await
                .map_err(|error| self.publish_error(&message, error))?;
            acks.push((ack, message));
        }
        for (ack, message) in acks {
            ack.await
                .map_err(|error| self.publish_error(&message, error))?;
            sent += 1;
        }
        Ok(sent)
    }

    fn publish_error(&self, message: &Message, error: jetstream::context::PublishError) -> Error {
        let retryable = !matches!(error.kind(), PublishErrorKind::MaxPayloadExceeded);
        Error::Publish {
            destination: format!("{}, subject `{}`", self.target, message.subject),
            event_id: message.event_id,
            event_type: message.event_type.clone(),
            retryable,
            source: Box::new(error),
        }
    }
}

/// One message ready to publish: subject, headers (with `Nats-Msg-Id`), body, and the
/// event's id and type for errors.
struct Message {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    event_id: Uuid,
    event_type: String,
}

impl Message {
    /// `event` as a message to `subject`.
    ///
    /// # Errors
    /// [`Error::Publish`] (not retryable) when `subject` is not a subject a message can go
    /// to, or a header value holds a line break (NATS headers cannot carry one).
    fn new(subject: String, event: &BusEvent, target: &str) -> Result<Self> {
        let refuse = |reason: String| Error::Publish {
            destination: format!("{target}, subject `{subject}`"),
            event_id: event.id,
            event_type: event.event_type.clone(),
            retryable: false,
            source: reason.into(),
        };
        if !is_publish_subject(&subject) {
            return Err(refuse(
                "not a NATS subject (dot-separated non-empty tokens, no spaces, `*` or `>`)"
                    .to_owned(),
            ));
        }
        let headers = nats_headers(event).map_err(refuse)?;
        Ok(Message {
            headers,
            payload: Bytes::copy_from_slice(event.data_json()),
            event_id: event.id,
            event_type: event.event_type.clone(),
            subject,
        })
    }
}

/// The message headers of `event`: [`wire::headers`] and `Nats-Msg-Id`.
fn nats_headers(event: &BusEvent) -> std::result::Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in wire::headers(event) {
        if value.contains(['\r', '\n']) {
            return Err(format!("header `{name}` holds a line break"));
        }
        headers.insert(name, value);
    }
    headers.insert(MSG_ID, event.id.to_string());
    Ok(headers)
}

/// Whether `subject` is one a message can be published to: non-empty tokens separated by
/// dots, without whitespace or wildcards.
fn is_publish_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && !token
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
        })
}

/// `prefix.rest`, or `rest` without a prefix.
fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_owned()
    } else {
        format!("{prefix}.{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked_before_publishing() {
        assert!(is_publish_subject("events.user.Registered"));
        assert!(is_publish_subject("a"));
        for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>", "a\nb"] {
            assert!(!is_publish_subject(bad), "{bad:?}");
        }
        assert_eq!(join("", "a.b"), "a.b");
        assert_eq!(join("events", "a.b"), "events.a.b");
    }

    #[test]
    fn headers_carry_the_wire_envelope_and_the_dedup_key() {
        let event = BusEvent::new("user.Registered", serde_json::json!({})).subject("user-1");
        let headers = nats_headers(&event).unwrap();
        assert_eq!(headers.get(MSG_ID).unwrap().as_str(), event.id.to_string());
        assert_eq!(headers.get(wire::TYPE).unwrap().as_str(), "user.Registered");
        assert_eq!(headers.get(wire::SUBJECT).unwrap().as_str(), "user-1");
        let broken = BusEvent::new("a\nb", serde_json::json!({}));
        assert!(nats_headers(&broken).unwrap_err().contains("ce-type"));
    }
}
