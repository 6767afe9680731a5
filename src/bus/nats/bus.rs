//! [`NatsBus`]: a [`Bus`] on JetStream, publishing to `<prefix>.<event type>` and
//! subscribing with durable pull consumers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use tracing::Instrument;

use super::subscription::{Fetch, Subscriber};
use super::{Connection, DEFAULT_DUPLICATE_WINDOW, Message, join};
use crate::bus::consumer::{Consumer, Shared};
use crate::bus::registry::Registry;
use crate::bus::{
    Bus, BusEvent, BusHandler, BusHealth, BusStats, ErrorReporter, Pattern, Subscribe,
    Subscription, TracingReporter,
};
use crate::error::{Error, Result};

/// The subject prefix unless told otherwise.
const DEFAULT_PREFIX: &str = "chronicle";

/// A [`Bus`] on NATS JetStream. Clones share the bus (one connection).
///
/// - [`Bus::publish`] sends the event to `<prefix>.<event type>` with the
///   [wire](crate::bus::wire) headers and `Nats-Msg-Id` = the event id, and returns once
///   the stream acknowledged it; [`Bus::publish_batch`] pipelines the batch.
/// - [`Bus::subscribe`] creates (or joins) a durable pull consumer named after the
///   subscription's group, else its name, else its pattern, with explicit acks and
///   `max_deliver` = [`Subscribe::deliveries`]; its task fetches batches and runs the
///   handler for each message in turn (so a subscription sees a subject's events in
///   order), the delivery number being JetStream's count. See [the module](super) for the
///   pattern → filter subject rule and the dead letters. Two buses (two processes)
///   subscribing with one group share its messages, each message going to one of them;
///   they subscribe with the same pattern and options (the server refuses a consumer of
///   that name with another filter).
///   The consumer stays on the server when the subscription closes (it is durable: a
///   later subscription with that name resumes where it stopped); remove it with
///   [`NatsBus::delete_consumer`].
/// - [`Bus::close`] stops fetching, finishes the messages in hand, and flushes the acks.
///   Dropping every clone of the bus ends its subscriptions' tasks the same way, without
///   waiting for them.
/// - [`Bus::health`]: the client's connection state, reconnections, and as lag the
///   consumers' pending messages as JetStream reported them with the last message each
///   subscription received (free: no request is made).
///
/// ```no_run
/// # async fn demo() -> chronicle::Result<()> {
/// use chronicle::bus::nats::NatsBus;
/// use chronicle::bus::{Bus, BusEvent, Delivery};
///
/// let bus = NatsBus::builder("nats://127.0.0.1:4222").prefix("shop").build().await?;
/// let _orders = bus
///     .subscribe("order.*", |delivery: Delivery| async move {
///         println!("{}", delivery.event_type);
///         Ok(())
///     })
///     .await?;
/// bus.publish(BusEvent::new("order.Placed", serde_json::json!({ "total": 12 }))).await?;
/// bus.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

/// Configures a [`NatsBus`]: [`NatsBus::builder`].
#[derive(Clone)]
#[must_use = "call `build` to get the bus"]
pub struct NatsBusBuilder {
    url: String,
    client: Option<async_nats::Client>,
    prefix: String,
    stream: Option<String>,
    duplicate_window: Duration,
    dead_prefix: Option<String>,
    fetch: Fetch,
    reporter: Arc<dyn ErrorReporter>,
}

struct Inner {
    connection: Connection,
    prefix: String,
    stream: String,
    dead_prefix: String,
    fetch: Fetch,
    shared: Arc<Shared>,
    /// The subscriptions' tasks, each with its consumer's pending messages (its lag).
    subscriptions: Arc<Registry<Arc<AtomicU64>>>,
}

impl NatsBus {
    /// A bus on the server at `url` (`nats://127.0.0.1:4222`).
    pub fn builder(url: impl Into<String>) -> NatsBusBuilder {
        NatsBusBuilder {
            url: url.into(),
            client: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            stream: None,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            dead_prefix: None,
            fetch: Fetch {
                batch: 100,
                expires: Duration::from_secs(1),
                ack_wait: Duration::from_secs(30),
            },
            reporter: Arc::new(TracingReporter),
        }
    }

    /// The subject events of `event_type` are published to.
    pub fn subject(&self, event_type: &str) -> String {
        join(&self.inner.prefix, event_type)
    }

    /// The subject dead letters of the consumer `consumer` go to.
    pub fn dead_letter_subject(&self, consumer: &str) -> String {
        format!("{}.{}", self.inner.dead_prefix, durable_name(consumer))
    }

    /// The JetStream stream the bus uses.
    pub fn stream_name(&self) -> &str {
        &self.inner.stream
    }

    /// The client (to share its connection).
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.connection.client
    }

    /// Removes the durable consumer `name` (a group's or subscription's name) from the
    /// server: its position and pending messages are forgotten.
    ///
    /// # Errors
    /// [`Error::Broker`] when the server refuses (no such consumer included).
    pub async fn delete_consumer(&self, name: &str) -> Result<()> {
        let inner = &self.inner;
        let durable = durable_name(name);
        let operation = format!("delete consumer `{durable}`");
        let stream = inner
            .connection
            .jetstream
            .get_stream_no_info(&inner.stream)
            .await
            .map_err(|error| inner.connection.error(&operation, true, error))?;
        stream
            .delete_consumer(&durable)
            .await
            .map_err(|error| inner.connection.error(&operation, false, error))?;
        Ok(())
    }

    fn closed_error(&self) -> Error {
        Error::BusClosed {
            bus: self.inner.connection.target.clone(),
        }
    }

    /// `event` as a message to its subject.
    fn message(&self, event: &BusEvent) -> Result<Message> {
        let inner = &self.inner;
        let subject = join(&inner.prefix, &event.event_type);
        if subject.starts_with(&format!("{}.", inner.dead_prefix)) {
            return Err(Error::Publish {
                destination: format!("{}, subject `{subject}`", inner.connection.target),
                event_id: event.id,
                event_type: event.event_type.clone(),
                retryable: false,
                source: "the subject is among the dead letters'".into(),
            });
        }
        Message::new(subject, event, &inner.connection.target)
    }

    async fn publish_events(&self, events: &[BusEvent]) -> Result<()> {
        if self.inner.subscriptions.is_closed() {
            return Err(self.closed_error());
        }
        let messages = events
            .iter()
            .map(|event| self.message(event))
            .collect::<Result<Vec<_>>>()?;
        let span = tracing::debug_span!("chronicle.bus.nats.publish", events = events.len());
        match self
            .inner
            .connection
            .publish_all(messages)
            .instrument(span)
            .await
        {
            Ok(sent) => {
                self.inner.shared.published(sent);
                Ok(())
            }
            Err(error) => {
                self.inner.shared.note_error(error.to_string());
                Err(error)
            }
        }
    }
}

impl NatsBusBuilder {
    /// The first token(s) of every subject (default `chronicle`): events go to
    /// `<prefix>.<event type>`. An empty prefix keeps the default.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix: String = prefix.into();
        let prefix = prefix.trim_matches('.');
        if !prefix.is_empty() {
            self.prefix = prefix.to_owned();
        }
        self
    }

    /// The JetStream stream (default: the prefix in capitals, `.` → `_`), created over
    /// `<prefix>.>` when `build` runs if it does not exist.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = Some(name.into());
        self
    }

    /// How long a stream the bus creates remembers a `Nats-Msg-Id` (default 2 minutes).
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Where dead letters go: `<dead prefix>.<consumer>` (default `<prefix>.dead`). Keep it
    /// inside a stream (by default, the bus's own), or dead letters cannot be published.
    pub fn dead_letter_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.dead_prefix = Some(prefix.into().trim_matches('.').to_owned());
        self
    }

    /// Messages a subscription asks for at once (at least 1; default 100).
    pub fn fetch_batch(mut self, messages: usize) -> Self {
        self.fetch.batch = messages.max(1);
        self
    }

    /// How long a pull request waits for messages (default 1 s): also how long closing a
    /// subscription may wait for the request in hand to end.
    pub fn fetch_expires(mut self, expires: Duration) -> Self {
        self.fetch.expires = expires.max(Duration::from_millis(10));
        self
    }

    /// How long the server waits for a handler's answer before delivering the message
    /// again (default 30 s; a consumer created before keeps its own).
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.fetch.ack_wait = ack_wait;
        self
    }

    /// Where failures go (default [`TracingReporter`]); a subscription can name its own.
    pub fn reporter(mut self, reporter: impl ErrorReporter) -> Self {
        self.reporter = Arc::new(reporter);
        self
    }

    /// Uses `client`'s connection instead of connecting (the URL then only names the
    /// server in errors).
    pub fn client(mut self, client: async_nats::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Connects (unless given a client) and creates the stream if it does not exist.
    ///
    /// # Errors
    /// [`Error::Broker`] when the server cannot be reached or the stream cannot be
    /// created.
    pub async fn build(self) -> Result<NatsBus> {
        let connection = match self.client {
            Some(client) => Connection::from_client(client, &self.url),
            None => Connection::open(&self.url, "chronicle bus").await?,
        };
        let stream = self.stream.unwrap_or_else(|| {
            self.prefix
                .chars()
                .map(|c| match c {
                    'a'..='z' => c.to_ascii_uppercase(),
                    'A'..='Z' | '0'..='9' | '-' | '_' => c,
                    _ => '_',
                })
                .collect()
        });
        connection
            .ensure_stream(
                &stream,
                vec![join(&self.prefix, ">")],
                self.duplicate_window,
            )
            .await?;
        let dead_prefix = self
            .dead_prefix
            .filter(|prefix| !prefix.is_empty())
            .unwrap_or_else(|| join(&self.prefix, "dead"));
        Ok(NatsBus {
            inner: Arc::new(Inner {
                connection,
                prefix: self.prefix,
                stream,
                dead_prefix,
                fetch: self.fetch,
                shared: Shared::named("nats", self.reporter),
                subscriptions: Registry::new(),
            }),
        })
    }
}

impl Bus for NatsBus {
    async fn publish(&self, event: BusEvent) -> Result<()> {
        self.publish_events(std::slice::from_ref(&event)).await
    }

    async fn publish_batch(&self, events: Vec<BusEvent>) -> Result<()> {
        self.publish_events(&events).await
    }

    async fn subscribe<H: BusHandler>(
        &self,
        subscribe: impl Into<Subscribe> + Send,
        handler: H,
    ) -> Result<Subscription> {
        let inner = &self.inner;
        if inner.subscriptions.is_closed() {
            return Err(self.closed_error());
        }
        let options: Subscribe = subscribe.into();
        let (pattern, group) = (options.pattern.clone(), options.group.clone());
        let durable = durable_name(
            options
                .group
                .as_deref()
                .unwrap_or_else(|| options.display_name()),
        );
        let filter = filter_subject(&inner.prefix, &pattern);
        let operation = format!("create consumer `{durable}` on stream `{}`", inner.stream);
        let connection = &inner.connection;
        let stream = connection
            .jetstream
            .get_stream_no_info(&inner.stream)
            .await
            .map_err(|error| connection.error(&operation, true, error))?;
        let config = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            deliver_policy: DeliverPolicy::New,
            ack_policy: AckPolicy::Explicit,
            ack_wait: inner.fetch.ack_wait,
            max_deliver: i64::from(options.max_deliveries),
            filter_subject: filter,
            ..Default::default()
        };
        let pull = stream
            .create_consumer(config)
            .await
            .map_err(|error| connection.error(&operation, false, error))?;
        let lag = Arc::new(AtomicU64::new(0));
        let consumer = Arc::new(Consumer::new(
            options,
            Box::new(handler),
            Arc::clone(&inner.shared),
        ));
        let subscriber = Subscriber {
            dead_subject: format!("{}.{durable}", inner.dead_prefix),
            dead_prefix: format!("{}.", inner.dead_prefix),
            pull,
            consumer,
            connection: connection.clone(),
            pattern: pattern.clone(),
            fetch: inner.fetch,
            lag: Arc::clone(&lag),
            shared: Arc::clone(&inner.shared),
            durable: durable.clone(),
        };
        let span = tracing::debug_span!("chronicle.bus.nats.subscription", consumer = %durable);
        Ok(inner.subscriptions.start(pattern, group, |stop| {
            let task = tokio::spawn(subscriber.run(stop).instrument(span));
            (lag, Some(task))
        }))
    }

    async fn close(&self) -> Result<()> {
        self.inner.subscriptions.close().await;
        Ok(())
    }

    fn health(&self) -> BusHealth {
        let inner = &self.inner;
        let lag = inner
            .subscriptions
            .read()
            .iter()
            .map(|lag| lag.load(Ordering::Relaxed))
            .sum();
        let connection = &inner.connection;
        let connected = connection.connected() && !inner.subscriptions.is_closed();
        inner.shared.health(connected, connection.reconnects(), lag)
    }

    fn stats(&self) -> BusStats {
        self.inner.shared.stats()
    }
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("server", &self.inner.connection.target)
            .field("prefix", &self.inner.prefix)
            .field("stream", &self.inner.stream)
            .field("stats", &self.stats())
            .finish()
    }
}

impl std::fmt::Debug for NatsBusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBusBuilder")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("stream", &self.stream)
            .field("fetch", &self.fetch)
            .finish_non_exhaustive()
    }
}

/// A durable consumer's name for `name`: characters NATS forbids in a name (`.`, `*`,
/// `>`, whitespace, …) become `_`.
fn durable_name(name: &str) -> String {
    let durable: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if durable.is_empty() {
        "_".to_owned()
    } else {
        durable
    }
}

/// The consumer's filter subject for `pattern`: the exact type's subject, or the subject
/// tree of the whole tokens before the glob's first `*` (wider than the pattern where the
/// glob goes on; the subscription checks each type too).
fn filter_subject(prefix: &str, pattern: &Pattern) -> String {
    let text = pattern.as_str();
    let valid = |tokens: &str| super::is_publish_subject(tokens);
    match text.find('*') {
        None if valid(text) => join(prefix, text),
        None => join(prefix, ">"),
        Some(at) => {
            let before = &text[..at];
            match before.rfind('.') {
                Some(dot) if valid(&before[..dot]) => {
                    join(prefix, &format!("{}.>", &before[..dot]))
                }
                _ => join(prefix, ">"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_filter_subjects() {
        let filter = |pattern: &str| filter_subject("ev", &Pattern::new(pattern));
        assert_eq!(filter("user.Registered"), "ev.user.Registered");
        assert_eq!(filter("user.*"), "ev.user.>");
        assert_eq!(filter("shop.user.*"), "ev.shop.user.>");
        assert_eq!(filter("shop.us*"), "ev.shop.>");
        assert_eq!(filter("*"), "ev.>");
        assert_eq!(filter("*.created"), "ev.>");
        assert_eq!(filter("user*"), "ev.>");
        assert_eq!(filter("bad type"), "ev.>");
        assert_eq!(filter("a..b.*"), "ev.>");
    }

    #[test]
    fn names_become_durable_names() {
        assert_eq!(durable_name("billing"), "billing");
        assert_eq!(durable_name("user.*"), "user__");
        assert_eq!(durable_name("a b>c"), "a_b_c");
        assert_eq!(durable_name(""), "_");
    }
}
