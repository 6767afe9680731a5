//! [`RedisSink`]: the relay's sink into Redis Streams, one pipeline of `XADD`s per batch.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{RedisResult, Value};
use tracing::Instrument;

use super::is_disconnect;
use super::{Link, connect, entry, is_transient, open_client};
use crate::bus::consumer::Shared;
use crate::bus::{BusEvent, BusHealth, BusStats, EventSink, Outgoing, TracingReporter};
use crate::error::{Error, Result};

/// Appends the relay's events to Redis Streams: each [`Outgoing`] becomes one entry of
/// the stream named by its topic (after the [prefix](RedisSinkBuilder::prefix)), with the
/// fields of [`bus::redis`](super) (the `wire` headers, then `data`).
///
/// A batch goes as **one pipeline**: every `XADD` is written, then every reply read;
/// [`EventSink::send`] returns once all came back, so the relay's checkpoint moves only
/// after Redis took the whole batch. No `MULTI`: a failure part-way leaves the entries
/// before it in place, and the relay sends the batch again (the consumer drops the copies
/// by `ce-id`; see [`RedisBus`](super::RedisBus)). Entries of one event stream go to one
/// key in version order.
///
/// ```no_run
/// # async fn demo(store: chronicle::Store) -> chronicle::Result<()> {
/// use chronicle::bus::{StartFrom, Topic};
/// use chronicle::bus::redis::RedisSink;
///
/// let sink = RedisSink::builder("redis://127.0.0.1:6379")
///     .prefix("events:")      // `events:order`, `events:payment`, …
///     .maxlen(100_000)        // XADD … MAXLEN ~ 100000
///     .build()
///     .await?;
/// let relay = store.relay("to-redis").topic(Topic::category()).start_from(StartFrom::Beginning).spawn(sink);
/// relay.wait_for_idle().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisSink {
    conn: ConnectionManager,
    target: Arc<str>,
    prefix: Arc<str>,
    maxlen: Option<usize>,
    shared: Arc<Shared>,
    link: Arc<Link>,
}

/// Configures a [`RedisSink`]: [`RedisSink::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `build` to connect"]
pub struct RedisSinkBuilder {
    url: String,
    prefix: String,
    maxlen: Option<usize>,
    response_timeout: Duration,
}

impl RedisSinkBuilder {
    /// Put before every topic to make the stream key (default: none).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Trim each stream to about `entries` (`XADD … MAXLEN ~ entries`; Redis trims whole
    /// nodes, so a stream may hold a little more). Default: no trimming.
    pub fn maxlen(mut self, entries: usize) -> Self {
        self.maxlen = Some(entries);
        self
    }

    /// How long to wait for the replies of one batch before the send fails (and is
    /// retried by the relay). Default 10 s.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects.
    ///
    /// # Errors
    /// [`ValidationError::Config`](crate::ValidationError::Config) for a URL that is not
    /// Redis's; [`Error::Broker`] when the server cannot be reached.
    pub async fn build(self) -> Result<RedisSink> {
        let (client, target) = open_client(&self.url)?;
        let conn = connect(&client, &target, self.response_timeout).await?;
        Ok(RedisSink {
            conn,
            target: target.into(),
            prefix: self.prefix.into(),
            maxlen: self.maxlen,
            shared: Shared::named("redis-sink", Arc::new(TracingReporter)),
            link: Arc::new(Link::new()),
        })
    }
}

impl RedisSink {
    /// A sink to the Redis server at `url` (`redis://host:port/db`, `rediss://` for TLS
    /// is not compiled in).
    pub fn builder(url: impl Into<String>) -> RedisSinkBuilder {
        RedisSinkBuilder {
            url: url.into(),
            prefix: String::new(),
            maxlen: None,
            response_timeout: Duration::from_secs(10),
        }
    }

    /// The stream key of `topic`: the prefix, then the topic.
    pub fn key(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }
}

impl EventSink for RedisSink {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<()> {
        let span = tracing::debug_span!(
            "chronicle.bus.redis.send",
            events = batch.len(),
            server = &*self.target
        );
        let messages: Vec<(String, &BusEvent)> = batch
            .iter()
            .map(|message| (self.key(&message.topic), &message.event))
            .collect();
        let sent = xadd_all(&self.conn, &self.target, &self.link, self.maxlen, &messages)
            .instrument(span)
            .await;
        match sent {
            Ok(()) => {
                self.shared.published(batch.len() as u64);
                Ok(())
            }
            Err(error) => {
                self.shared.note_error(error.to_string());
                Err(error)
            }
        }
    }

    fn health(&self) -> BusHealth {
        self.shared
            .health(self.link.connected(), self.link.reconnects(), 0)
    }

    fn stats(&self) -> BusStats {
        self.shared.stats()
    }
}

/// `XADD`s `messages` (stream key, event) in one pipeline and waits for every reply.
///
/// # Errors
/// [`Error::Publish`] naming the first event Redis refused, or the first of the batch
/// when the connection failed (then nothing is known of the others).
pub(crate) async fn xadd_all(
    conn: &ConnectionManager,
    target: &str,
    link: &Link,
    maxlen: Option<usize>,
    messages: &[(String, &BusEvent)],
) -> Result<()> {
    let Some((first_key, first)) = messages.first() else {
        return Ok(());
    };
    let mut pipe = ::redis::pipe();
    pipe.ignore_errors();
    for (key, event) in messages {
        pipe.add_command(entry::xadd(key, maxlen, event));
    }
    let replies: RedisResult<Vec<RedisResult<Value>>> = pipe.query_async(&mut conn.clone()).await;
    link.observe(&replies, is_disconnect);
    let publish_error = |key: &str, event: &BusEvent, error: ::redis::RedisError| Error::Publish {
        destination: format!("{target} stream `{key}`"),
        event_id: event.id,
        event_type: event.event_type.clone(),
        retryable: is_transient(&error),
        source: Box::new(error),
    };
    let replies = replies.map_err(|error| publish_error(first_key, first, error))?;
    for ((key, event), reply) in messages.iter().zip(replies) {
        if let Err(error) = reply {
            return Err(publish_error(key, event, error));
        }
    }
    Ok(())
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("server", &self.target)
            .field("prefix", &self.prefix)
            .field("maxlen", &self.maxlen)
            .field("stats", &self.shared.stats())
            .finish()
    }
}
