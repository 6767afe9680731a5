//! [`RedisBus`]: a [`Bus`] on Redis Streams and consumer groups, at least once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::Client;
use ::redis::aio::ConnectionManager;
use tracing::Instrument;

use super::is_disconnect;
use super::reader::{Reader, Settings};
use super::sink::xadd_all;
use super::{Link, broker_error, connect, open_client};
use crate::bus::consumer::{Consumer, Shared};
use crate::bus::registry::Registry;
use crate::bus::{
    Bus, BusEvent, BusHandler, BusHealth, BusStats, ErrorReporter, Subscribe, Subscription, Topic,
    TracingReporter,
};
use crate::error::{Error, Result, ValidationError};

/// Where a consumer group that does not exist yet starts reading its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupStart {
    /// With the entries added after it is created (`XGROUP CREATE … $`): a new
    /// subscriber does not receive the stream's history. The default.
    #[default]
    New,
    /// With the stream's first entry (`XGROUP CREATE … 0`).
    Beginning,
}

/// A [`Bus`] on Redis Streams: `publish` appends an entry (`XADD`), and each subscription
/// reads its streams through a consumer group, at least once.
///
/// **Streams and patterns.** A subscription reads one or more stream **keys** and filters
/// the entries by its event-type [`Pattern`](crate::Pattern) on this side: an entry whose
/// type does not match is acknowledged without running the handler. [`Bus::subscribe`]
/// reads the keys given to [`RedisBusBuilder::streams`] (default: `chronicle`);
/// [`RedisBus::subscribe_streams`] names them per subscription. The relay writes one key
/// per topic (by default the stream category: `order`), so a consumer of the relay's
/// events lists the categories it wants. [`Bus::publish`] appends to the key its
/// [`Topic`] names (default: `chronicle`, for every event), after the prefix.
///
/// **Groups.** A subscription's consumer group is its [`Subscribe::group`]; else its
/// [`Subscribe::name`] (a durable group of one); else a group made for it and destroyed
/// when it closes. Groups are created with `MKSTREAM`, starting per [`GroupStart`].
/// Members of a group (subscriptions of any bus, in any process) share its entries: each
/// goes to one of them. Each subscription is a consumer of its own name
/// (`<bus id>-<n>`).
///
/// **Deliveries.** A subscription reads with `XREADGROUP … BLOCK`, runs the handler
/// ([`BusHandler`]), and then:
/// - `Ok` → `XACK` (the acks of one read go together, after its handlers);
/// - a retryable error or a panic → the entry stays pending; after the subscription's
///   backoff it is claimed again by the same consumer (`XCLAIM`, which counts the
///   delivery in Redis) and handled again, its [`Delivery::attempt`](crate::bus::Delivery)
///   one more. Other entries go on meanwhile, so a retried entry is handled after later
///   ones. Keep the backoff below the claim idle time, or another member may take it;
/// - a fatal error, or a failure of the last delivery ([`Subscribe::max_deliveries`]) →
///   the entry goes to the dead letters (`<key>:dead`, see [`bus::redis`](super)), then
///   `XACK`.
///
/// An entry that is not a chronicle event ([`decode_entry`](super::decode_entry) fails)
/// goes to the dead letters too, counted as dead, and is never handled.
///
/// **Consumers that die.** Entries a consumer received and never acknowledged (its
/// process died) are claimed by another member with `XAUTOCLAIM` once idle for
/// [`RedisBusBuilder::claim_idle`] (default 30 s); the delivery number is Redis's count
/// (`XPENDING`), and an entry already delivered more than the maximum goes to the dead
/// letters without being handled.
///
/// **Duplicates.** An event the relay sent twice (after a crash) is two entries with one
/// `ce-id`: a subscription remembers the last ids it handled
/// ([`RedisBusBuilder::dedup_window`]) and acknowledges a copy without handling it. Two
/// members of a group may still each handle one copy.
///
/// **Closing.** [`Subscription::close`] and [`Bus::close`] let the read in hand finish
/// (at most [`RedisBusBuilder::block`]): its handlers run and its acks are sent. Entries
/// waiting for a retry stay pending in Redis, for another member to claim.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> chronicle::Result<()> {
/// use std::time::Duration;
/// use chronicle::bus::redis::{GroupStart, RedisBus};
/// use chronicle::bus::{Bus, BusEvent, Delivery, HandlerError, Subscribe, Topic};
///
/// let bus = RedisBus::builder("redis://127.0.0.1:6379")
///     .prefix("app:")
///     .topic(Topic::category())            // publish `user-1`'s events to `app:user`
///     .streams(["user"])                   // subscriptions read `app:user`
///     .group_start(GroupStart::Beginning)
///     .claim_idle(Duration::from_secs(60))
///     .build()
///     .await?;
/// let mailer = bus
///     .subscribe(
///         Subscribe::to("user.Registered").group("mailer").max_deliveries(5),
///         |delivery: Delivery| async move {
///             if delivery.attempt() < 2 {
///                 return Err(HandlerError::retry("SMTP busy"));
///             }
///             Ok(())
///         },
///     )
///     .await?;
/// bus.publish(BusEvent::new("user.Registered", serde_json::json!({})).subject("user-1"))
///     .await?;
/// # mailer.close().await?;
/// bus.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

/// Configures a [`RedisBus`]: [`RedisBus::builder`].
#[derive(Clone)]
#[must_use = "call `build` to connect"]
pub struct RedisBusBuilder {
    url: String,
    prefix: String,
    topic: Topic,
    streams: Vec<String>,
    maxlen: Option<usize>,
    settings: Settings,
    response_timeout: Duration,
    reporter: Arc<dyn ErrorReporter>,
}

/// The stream key of a bus that names none.
const DEFAULT_STREAM: &str = "chronicle";

impl RedisBusBuilder {
    /// Put before every stream key, published to or read (default: none).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The key each published event goes to, before the prefix (default
    /// `Topic::fixed("chronicle")`).
    pub fn topic(mut self, topic: Topic) -> Self {
        self.topic = topic;
        self
    }

    /// The keys [`Bus::subscribe`] reads, before the prefix (default `["chronicle"]`).
    pub fn streams<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.streams = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Trim each stream published to at about `entries` (`MAXLEN ~`; default: none).
    pub fn maxlen(mut self, entries: usize) -> Self {
        self.maxlen = Some(entries);
        self
    }

    /// Where a new consumer group starts (default [`GroupStart::New`]).
    pub fn group_start(mut self, start: GroupStart) -> Self {
        self.settings.start = start;
        self
    }

    /// How long one read waits for entries (`BLOCK`, default 200 ms): what closing may
    /// wait. At least 1 ms.
    pub fn block(mut self, block: Duration) -> Self {
        self.settings.block = block.max(Duration::from_millis(1));
        self
    }

    /// Most entries per read (`COUNT`, default 100).
    pub fn batch_size(mut self, entries: usize) -> Self {
        self.settings.batch = entries.max(1);
        self
    }

    /// How long an entry stays pending with a consumer before another member claims it
    /// (`XAUTOCLAIM`, default 30 s). Members look for such entries every half of it (at
    /// most every second, at least every 10 ms). Longer than the slowest handler, else an
    /// entry being handled is handled twice.
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.settings.claim_idle = idle.max(Duration::from_millis(1));
        self
    }

    /// How many handled event ids a subscription remembers to drop copies (default
    /// 10,000; 0 keeps none).
    pub fn dedup_window(mut self, events: usize) -> Self {
        self.settings.dedup_window = events;
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
    pub async fn build(self) -> Result<RedisBus> {
        let (client, target) = open_client(&self.url)?;
        let conn = connect(&client, &target, self.response_timeout).await?;
        Ok(RedisBus {
            inner: Arc::new(Inner {
                client,
                conn,
                target: target.into(),
                prefix: self.prefix,
                topic: self.topic,
                streams: self.streams,
                maxlen: self.maxlen,
                settings: self.settings,
                response_timeout: self.response_timeout,
                id: format!("chronicle-{}", uuid::Uuid::now_v7().simple()),
                shared: Shared::named("redis", self.reporter),
                link: Arc::new(Link::new()),
                next_consumer: AtomicU64::new(1),
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
    topic: Topic,
    streams: Vec<String>,
    maxlen: Option<usize>,
    settings: Settings,
    response_timeout: Duration,
    /// This bus's consumer names start with it.
    id: String,
    shared: Arc<Shared>,
    link: Arc<Link>,
    /// The number in the next consumer's name.
    next_consumer: AtomicU64,
    /// The subscriptions' tasks, each with its group's lag.
    subscriptions: Arc<Registry<Arc<AtomicU64>>>,
}

impl RedisBus {
    /// A bus on the Redis server at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisBusBuilder {
        RedisBusBuilder {
            url: url.into(),
            prefix: String::new(),
            topic: Topic::fixed(DEFAULT_STREAM),
            streams: vec![DEFAULT_STREAM.to_owned()],
            maxlen: None,
            settings: Settings::default(),
            response_timeout: Duration::from_secs(10),
            reporter: Arc::new(TracingReporter),
        }
    }

    /// The stream key `event` is published to.
    pub fn key_of(&self, event: &BusEvent) -> String {
        format!("{}{}", self.inner.prefix, self.inner.topic.of(event))
    }

    /// This bus's id: its consumers are named `<id>-<n>`.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// [`Bus::subscribe`] reading the stream `keys` (before the prefix) instead of the
    /// bus's.
    ///
    /// # Errors
    /// [`Error::BusClosed`] after [`Bus::close`]; [`ValidationError::Config`] for no
    /// keys; [`Error::Broker`] when a consumer group cannot be created.
    pub async fn subscribe_streams<S: Into<String>, H: BusHandler>(
        &self,
        keys: impl IntoIterator<Item = S>,
        subscribe: impl Into<Subscribe> + Send,
        handler: H,
    ) -> Result<Subscription> {
        let inner = &self.inner;
        if inner.subscriptions.is_closed() {
            return Err(self.closed_error());
        }
        let keys: Vec<String> = keys
            .into_iter()
            .map(|key| format!("{}{}", inner.prefix, key.into()))
            .collect();
        if keys.is_empty() {
            return Err(ValidationError::Config(
                "a Redis subscription needs at least one stream key".to_owned(),
            )
            .into());
        }
        let options: Subscribe = subscribe.into();
        let n = inner.next_consumer.fetch_add(1, Ordering::Relaxed);
        let consumer_name = format!("{}-{n}", inner.id);
        let (group, ephemeral) = match (options.group_name(), &options.name) {
            (Some(group), _) => (group.to_owned(), false),
            (None, Some(name)) => (name.clone(), false),
            (None, None) => (consumer_name.clone(), true),
        };
        let span = tracing::debug_span!(
            "chronicle.bus.redis.subscribe",
            subscription = options.display_name(),
            group = group.as_str(),
        );
        let start = match inner.settings.start {
            GroupStart::New => "$",
            GroupStart::Beginning => "0",
        };
        for key in &keys {
            create_group(&inner.conn, &inner.target, &inner.link, key, &group, start)
                .instrument(span.clone())
                .await?;
        }
        // Its own connection: a blocking read holds the connection it is sent on.
        let read_timeout = inner.settings.block + inner.response_timeout;
        let read_conn = connect(&inner.client, &inner.target, read_timeout).await?;
        let (pattern, label) = (options.pattern().clone(), options.display_name().to_owned());
        let lag = Arc::new(AtomicU64::new(0));
        let task_span = tracing::debug_span!(
            "chronicle.bus.subscription",
            subscription = label.as_str(),
            group = group.as_str(),
        );
        let start = |stopped| {
            let reader = Reader::new(
                inner.conn.clone(),
                read_conn,
                Arc::clone(&inner.target),
                keys,
                group.clone(),
                consumer_name,
                ephemeral,
                Consumer::new(options, Box::new(handler), Arc::clone(&inner.shared)),
                Arc::clone(&inner.shared),
                Arc::clone(&inner.link),
                inner.settings.clone(),
                Arc::clone(&lag),
                stopped,
            );
            let task = tokio::spawn(reader.run().instrument(task_span));
            (lag, Some(task))
        };
        Ok(inner
            .subscriptions
            .start(pattern, Some(group.clone()), start))
    }

    fn closed_error(&self) -> Error {
        Error::BusClosed {
            bus: self.inner.target.to_string(),
        }
    }
}

/// `XGROUP CREATE key group start MKSTREAM`; a group that exists already is fine.
async fn create_group(
    conn: &ConnectionManager,
    target: &str,
    link: &Link,
    key: &str,
    group: &str,
    start: &str,
) -> Result<()> {
    let created: ::redis::RedisResult<()> = ::redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg(start)
        .arg("MKSTREAM")
        .query_async(&mut conn.clone())
        .await;
    link.observe(&created, is_disconnect);
    match created {
        Ok(()) => Ok(()),
        Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
        Err(error) => Err(broker_error(
            target,
            format!("creating consumer group `{group}` on stream `{key}`"),
            error,
        )),
    }
}

impl Bus for RedisBus {
    async fn publish(&self, event: BusEvent) -> Result<()> {
        self.publish_batch(vec![event]).await
    }

    async fn publish_batch(&self, events: Vec<BusEvent>) -> Result<()> {
        let inner = &self.inner;
        if inner.subscriptions.is_closed() {
            return Err(self.closed_error());
        }
        let span = tracing::debug_span!("chronicle.bus.redis.publish", events = events.len());
        let messages: Vec<(String, &BusEvent)> = events
            .iter()
            .map(|event| (self.key_of(event), event))
            .collect();
        let sent = xadd_all(
            &inner.conn,
            &inner.target,
            &inner.link,
            inner.maxlen,
            &messages,
        )
        .instrument(span)
        .await;
        match sent {
            Ok(()) => {
                inner.shared.published(events.len() as u64);
                Ok(())
            }
            Err(error) => {
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
        let keys = self.inner.streams.clone();
        self.subscribe_streams(keys, subscribe, handler).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.subscriptions.close().await;
        Ok(())
    }

    /// Connected as the last requests found it; `lag_events` is, summed over the open
    /// subscriptions, their groups' entries not yet delivered (`XINFO GROUPS` `lag`) and
    /// delivered but not acknowledged (`pending`), as of each one's last look (every
    /// half claim idle time, at most every second).
    fn health(&self) -> BusHealth {
        let inner = &self.inner;
        let lag = inner
            .subscriptions
            .read()
            .iter()
            .map(|lag| lag.load(Ordering::Relaxed))
            .sum();
        let open = !inner.subscriptions.is_closed();
        inner
            .shared
            .health(open && inner.link.connected(), inner.link.reconnects(), lag)
    }

    fn stats(&self) -> BusStats {
        self.inner.shared.stats()
    }
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("server", &self.inner.target)
            .field("id", &self.inner.id)
            .field("streams", &self.inner.streams)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RedisBusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBusBuilder")
            .field("prefix", &self.prefix)
            .field("streams", &self.streams)
            .field("maxlen", &self.maxlen)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
