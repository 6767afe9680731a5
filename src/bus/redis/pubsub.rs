//! [`RedisPubSubBus`]: a [`Bus`] on Redis pub/sub. **At most once.**

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, PubSub};
use ::redis::{Client, RedisResult};
use futures::StreamExt;
use tokio::sync::watch;
use tracing::Instrument;

use super::entry::{decode_message, message};
use super::is_disconnect;
use super::{DATA_FIELD, DEAD_REASON_FIELD};
use super::{Link, broker_error, connect, dead_letter_key, open_client, stop_requested};
use crate::bus::consumer::{Consumer, Shared, Verdict};
use crate::bus::registry::Registry;
use crate::bus::{
    Bus, BusEvent, BusHandler, BusHealth, BusStats, ErrorReporter, Pattern, Subscribe,
    Subscription, TracingReporter,
};
use crate::error::{Error, Result, ValidationError};

/// A [`Bus`] on Redis pub/sub: `publish` is `PUBLISH <prefix><event type>`, and a
/// subscription is `PSUBSCRIBE` of its pattern, mapped to a channel pattern (`user.*` →
/// `<prefix>user.*`; Redis's own glob characters `?`, `[`, `]`, `\` are escaped, so only
/// `*` is a wildcard, as in [`Pattern`]).
///
/// # At most once
///
/// **Redis keeps nothing for pub/sub.** An event reaches the subscriptions connected
/// when it is published, and no other: a subscriber that connects later, or that was
/// disconnected at the time (it reconnects by itself, and counts it in
/// [`BusHealth::reconnects`]), never sees it. There is no acknowledgement and no
/// redelivery: a failing handler is retried **in this process only** (per its
/// [`Subscribe`] options), and an event given up is reported and appended to the
/// dead-letter stream `<channel>:dead` (the message as `data`, with
/// `chronicle-dead-reason`), as is a message that is not a chronicle event. Use
/// [`RedisBus`](super::RedisBus) (Streams) for events that must arrive; this bus suits
/// notifications whose loss is harmless (cache invalidation, live views).
///
/// Consumer groups do not exist in pub/sub: a [`Subscribe::group`] is refused.
///
/// **The message.** A pub/sub message has no fields, so it is the stream entry's fields
/// as one JSON object: each [`wire`](crate::bus::wire) header a string member, `data` the
/// event's data as JSON: `{"ce-specversion":"1.0","ce-id":"…",…,"data":{…}}`.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> chronicle::Result<()> {
/// use chronicle::bus::redis::RedisPubSubBus;
/// use chronicle::bus::{Bus, BusEvent, Delivery};
///
/// let bus = RedisPubSubBus::builder("redis://127.0.0.1:6379").prefix("app:").build().await?;
/// let live = bus
///     .subscribe("cache.*", |delivery: Delivery| async move {
///         println!("drop {:?} from the cache", delivery.subject);
///         Ok(())
///     })
///     .await?; // PSUBSCRIBE app:cache.*
/// bus.publish(BusEvent::new("cache.Invalidated", serde_json::json!({})).subject("user-7"))
///     .await?; // PUBLISH app:cache.Invalidated …
/// # live.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisPubSubBus {
    inner: Arc<Inner>,
}

/// Configures a [`RedisPubSubBus`]: [`RedisPubSubBus::builder`].
#[derive(Clone)]
#[must_use = "call `build` to connect"]
pub struct RedisPubSubBusBuilder {
    url: String,
    prefix: String,
    response_timeout: Duration,
    reporter: Arc<dyn ErrorReporter>,
}

impl RedisPubSubBusBuilder {
    /// Put before every channel (default `chronicle:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long to wait for an answer to one request before it fails (default 10 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Where failures go (default [`TracingReporter`]); a subscription can name its own.
    pub fn reporter(mut self, reporter: impl ErrorReporter) -> Self {
        self.reporter = Arc::new(reporter);
        self
    }

    /// Connects.
    ///
    /// # Errors
    /// [`ValidationError::Config`] for a URL that is not Redis's; [`Error::Broker`] when
    /// the server cannot be reached.
    pub async fn build(self) -> Result<RedisPubSubBus> {
        let (client, target) = open_client(&self.url)?;
        let conn = connect(&client, &target, self.response_timeout).await?;
        Ok(RedisPubSubBus {
            inner: Arc::new(Inner {
                client,
                conn,
                target: target.into(),
                prefix: self.prefix,
                shared: Shared::named("redis-pubsub", self.reporter),
                link: Arc::new(Link::new()),
                subscriptions: Registry::new(),
            }),
        })
    }
}

struct Inner {
    client: Client,
    conn: ConnectionManager,
    target: Arc<str>,
    prefix: String,
    shared: Arc<Shared>,
    link: Arc<Link>,
    /// The listeners' tasks.
    subscriptions: Arc<Registry<()>>,
}

impl RedisPubSubBus {
    /// A pub/sub bus on the Redis server at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisPubSubBusBuilder {
        RedisPubSubBusBuilder {
            url: url.into(),
            prefix: "chronicle:".to_owned(),
            response_timeout: Duration::from_secs(10),
            reporter: Arc::new(TracingReporter),
        }
    }

    /// The channel `event` is published on: the prefix, then its type.
    pub fn channel_of(&self, event: &BusEvent) -> String {
        format!("{}{}", self.inner.prefix, event.event_type)
    }

    /// The channel pattern a subscription to `pattern` listens on.
    pub fn channel_pattern(&self, pattern: &Pattern) -> String {
        let mut channel = escape_glob(&self.inner.prefix, true);
        channel.push_str(&escape_glob(pattern.as_str(), false));
        channel
    }

    fn closed_error(&self) -> Error {
        Error::BusClosed {
            bus: format!("{} pub/sub", self.inner.target),
        }
    }
}

/// `text` with Redis's glob characters escaped: `?`, `[`, `]`, `\` always, `*` too
/// when `literal`.
fn escape_glob(text: &str, literal: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '?' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '*' if literal => out.push_str("\\*"),
            _ => out.push(c),
        }
    }
    out
}

/// A connection in subscriber mode, listening on `channel_pattern`.
async fn listen(client: &Client, target: &str, channel_pattern: &str) -> Result<PubSub> {
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .map_err(|error| broker_error(target, "connecting for pub/sub".to_owned(), error))?;
    pubsub
        .psubscribe(channel_pattern)
        .await
        .map_err(|error| broker_error(target, format!("PSUBSCRIBE {channel_pattern}"), error))?;
    Ok(pubsub)
}

impl Bus for RedisPubSubBus {
    async fn publish(&self, event: BusEvent) -> Result<()> {
        self.publish_batch(vec![event]).await
    }

    async fn publish_batch(&self, events: Vec<BusEvent>) -> Result<()> {
        let inner = &self.inner;
        if inner.subscriptions.is_closed() {
            return Err(self.closed_error());
        }
        let Some(first) = events.first() else {
            return Ok(());
        };
        let span = tracing::debug_span!("chronicle.bus.redis.publish", events = events.len());
        let mut pipe = ::redis::pipe();
        for event in &events {
            pipe.cmd("PUBLISH")
                .arg(self.channel_of(event))
                .arg(message(event))
                .ignore();
        }
        let sent: RedisResult<()> = pipe
            .query_async(&mut inner.conn.clone())
            .instrument(span)
            .await;
        inner.link.observe(&sent, is_disconnect);
        match sent {
            Ok(()) => {
                inner.shared.published(events.len() as u64);
                Ok(())
            }
            Err(error) => {
                let error = Error::Publish {
                    destination: format!("{} channel `{}`", inner.target, self.channel_of(first)),
                    event_id: first.id,
                    event_type: first.event_type.clone(),
                    retryable: super::is_transient(&error),
                    source: Box::new(error),
                };
                inner.shared.note_error(error.to_string());
                Err(error)
            }
        }
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
        if let Some(group) = options.group_name() {
            return Err(ValidationError::Config(format!(
                "Redis pub/sub has no consumer groups (subscription group `{group}`): use RedisBus"
            ))
            .into());
        }
        let channel_pattern = self.channel_pattern(options.pattern());
        let span = tracing::debug_span!(
            "chronicle.bus.redis.subscribe",
            subscription = options.display_name(),
            channel = channel_pattern.as_str(),
        );
        let pubsub = listen(&inner.client, &inner.target, &channel_pattern)
            .instrument(span)
            .await?;
        let pattern = options.pattern().clone();
        let start = |stopped| {
            let listener = Listener {
                client: inner.client.clone(),
                conn: inner.conn.clone(),
                target: Arc::clone(&inner.target),
                channel_pattern,
                consumer: Consumer::new(options, Box::new(handler), Arc::clone(&inner.shared)),
                shared: Arc::clone(&inner.shared),
                link: Arc::clone(&inner.link),
                stop: stopped,
            };
            let task_span = tracing::debug_span!(
                "chronicle.bus.subscription",
                subscription = listener.consumer.options().display_name(),
            );
            let task = tokio::spawn(listener.run(pubsub).instrument(task_span));
            ((), Some(task))
        };
        Ok(inner.subscriptions.start(pattern, None, start))
    }

    async fn close(&self) -> Result<()> {
        self.inner.subscriptions.close().await;
        Ok(())
    }

    /// Connected as the last requests found it; `lag_events` is always 0 (nothing waits
    /// anywhere: what is not delivered at once is lost).
    fn health(&self) -> BusHealth {
        let inner = &self.inner;
        let open = !inner.subscriptions.is_closed();
        inner
            .shared
            .health(open && inner.link.connected(), inner.link.reconnects(), 0)
    }

    fn stats(&self) -> BusStats {
        self.inner.shared.stats()
    }
}

/// One pub/sub subscription's task.
struct Listener {
    client: Client,
    conn: ConnectionManager,
    target: Arc<str>,
    channel_pattern: String,
    consumer: Consumer,
    shared: Arc<Shared>,
    link: Arc<Link>,
    stop: watch::Receiver<bool>,
}

impl Listener {
    /// Handles messages until asked to stop (the message in hand is finished), listening
    /// again after the connection is lost.
    async fn run(mut self, mut pubsub: PubSub) {
        loop {
            let lost = {
                let mut messages = pubsub.on_message();
                let mut stop = self.stop.clone();
                loop {
                    tokio::select! {
                        biased;
                        () = stop_requested(&mut stop) => return,
                        received = messages.next() => match received {
                            Some(received) => {
                                let channel = received.get_channel_name().to_owned();
                                self.handle(&channel, received.get_payload_bytes()).await;
                            }
                            None => break true,
                        },
                    }
                }
            };
            if lost {
                self.link.down();
                match self.reconnect().await {
                    Some(again) => pubsub = again,
                    None => return,
                }
            }
        }
    }

    /// Listens again, pausing between tries; `None` when asked to stop meanwhile.
    async fn reconnect(&mut self) -> Option<PubSub> {
        let mut pause = Duration::from_millis(50);
        loop {
            let mut stop = self.stop.clone();
            if tokio::time::timeout(pause, stop_requested(&mut stop))
                .await
                .is_ok()
            {
                return None;
            }
            match listen(&self.client, &self.target, &self.channel_pattern).await {
                Ok(pubsub) => {
                    self.link.up();
                    return Some(pubsub);
                }
                Err(error) => {
                    self.shared.note_error(error.to_string());
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn handle(&mut self, channel: &str, payload: &[u8]) {
        let event = match decode_message(payload, channel) {
            Ok(event) => event,
            Err(error) => {
                self.shared.dead();
                self.shared.note_error(format!(
                    "subscription `{}`: {error}",
                    self.consumer.options().display_name()
                ));
                self.dead_letter(channel, payload, &error.to_string()).await;
                return;
            }
        };
        // Redis matched the channel; the pattern has the last word.
        if !self.consumer.options().pattern().matches(&event.event_type) {
            return;
        }
        if let Verdict::Dead { reason } = self.consumer.deliver_until_done(Arc::new(event)).await {
            self.dead_letter(channel, payload, &reason).await;
        }
    }

    async fn dead_letter(&mut self, channel: &str, payload: &[u8], reason: &str) {
        let added: RedisResult<()> = ::redis::cmd("XADD")
            .arg(dead_letter_key(channel))
            .arg("*")
            .arg(DATA_FIELD)
            .arg(payload)
            .arg(DEAD_REASON_FIELD)
            .arg(reason)
            .query_async(&mut self.conn)
            .await;
        self.link.observe(&added, is_disconnect);
        if let Err(error) = added {
            tracing::warn!(%channel, %reason, "dead-lettering a pub/sub message failed: {error}");
            self.shared
                .note_error(format!("dead-lettering on {channel}: {error}"));
        }
    }
}

impl std::fmt::Debug for RedisPubSubBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPubSubBus")
            .field("server", &self.inner.target)
            .field("prefix", &self.inner.prefix)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RedisPubSubBusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPubSubBusBuilder")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::escape_glob;

    #[test]
    fn only_star_is_a_wildcard_in_channel_patterns() {
        assert_eq!(escape_glob("user.*", false), "user.*");
        assert_eq!(escape_glob("a?[b]\\", false), "a\\?\\[b\\]\\\\");
        assert_eq!(escape_glob("app*:", true), "app\\*:");
    }
}
