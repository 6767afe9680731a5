//! [`NatsSink`]: the relay's events to JetStream subjects, each acknowledged by the stream.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::{Connection, DEFAULT_DUPLICATE_WINDOW, Message, join};
use crate::bus::consumer::Shared;
use crate::bus::{BusHealth, BusStats, EventSink, Outgoing, TracingReporter};
use crate::error::Result;

/// A relay's sink to NATS JetStream: each [`Outgoing`] is published to the subject its
/// topic names (after the [prefix](NatsSinkBuilder::subject_prefix), if any), with the
/// [wire](crate::bus::wire) headers and `Nats-Msg-Id` = the event id. A batch is
/// pipelined (every message sent, then every ack awaited) and [`EventSink::send`] returns
/// once the stream acknowledged all of it, so the relay's checkpoint never passes an event
/// JetStream does not hold.
///
/// A missing ack (the connection lost, no stream for the subject, the ack timed out) is
/// [`Error::Publish`](crate::Error::Publish) with `retryable: true`: the relay sends the
/// batch again, and the stream drops the copies of what it already took (same
/// `Nats-Msg-Id` within its duplicate window). Order per subject is the batch's, except
/// across such a failure: a message lost midway is stored, when sent again, after the
/// later ones the stream had kept. Clones share the connection.
///
/// ```no_run
/// # async fn demo(store: chronicle::Store) -> chronicle::Result<()> {
/// use chronicle::bus::nats::NatsSink;
/// use chronicle::bus::Topic;
///
/// // `account-42`'s events to `events.account`, kept by the stream EVENTS.
/// let sink = NatsSink::builder("nats://127.0.0.1:4222")
///     .subject_prefix("events")
///     .ensure_stream("EVENTS", ["events.>"])
///     .build()
///     .await?;
/// let relay = store.relay("accounts").topic(Topic::category()).spawn(sink);
/// # let _ = relay; Ok(()) }
/// ```
#[derive(Clone)]
pub struct NatsSink {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    prefix: String,
    shared: Arc<Shared>,
}

/// Configures a [`NatsSink`]: [`NatsSink::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `build` to get the sink"]
pub struct NatsSinkBuilder {
    url: String,
    client: Option<async_nats::Client>,
    prefix: String,
    stream: Option<(String, Vec<String>)>,
    duplicate_window: Duration,
}

impl NatsSink {
    /// A sink to the server at `url` (`nats://127.0.0.1:4222`).
    pub fn builder(url: impl Into<String>) -> NatsSinkBuilder {
        NatsSinkBuilder {
            url: url.into(),
            client: None,
            prefix: String::new(),
            stream: None,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
        }
    }

    /// The subject `topic` goes to.
    pub fn subject(&self, topic: &str) -> String {
        join(&self.inner.prefix, topic)
    }

    /// The client (to share its connection).
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.connection.client
    }
}

impl NatsSinkBuilder {
    /// Publishes each topic under `prefix` (`events` + `account` → `events.account`;
    /// default none: the topic is the subject).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().trim_end_matches('.').to_owned();
        self
    }

    /// Uses `client`'s connection instead of connecting (the builder's URL then only
    /// names the server in errors).
    pub fn client(mut self, client: async_nats::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Creates the stream `name` over `subjects` (`["events.>"]`) when `build` runs,
    /// unless a stream of that name exists (it is then used as it is). JetStream takes a
    /// message only on a subject some stream holds.
    pub fn ensure_stream<S: Into<String>>(
        mut self,
        name: impl Into<String>,
        subjects: impl IntoIterator<Item = S>,
    ) -> Self {
        self.stream = Some((name.into(), subjects.into_iter().map(Into::into).collect()));
        self
    }

    /// How long the stream [`ensure_stream`](Self::ensure_stream) creates remembers a
    /// `Nats-Msg-Id` (default [`DEFAULT_DUPLICATE_WINDOW`](super::DEFAULT_DUPLICATE_WINDOW),
    /// 2 minutes): a batch sent again within it is stored once.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Connects (unless given a client) and creates the stream if asked.
    ///
    /// # Errors
    /// [`Error::Broker`](crate::Error::Broker) when the server cannot be reached or the
    /// stream cannot be created.
    pub async fn build(self) -> Result<NatsSink> {
        let connection = match self.client {
            Some(client) => Connection::from_client(client, &self.url),
            None => Connection::open(&self.url, "chronicle relay").await?,
        };
        if let Some((name, subjects)) = self.stream {
            connection
                .ensure_stream(&name, subjects, self.duplicate_window)
                .await?;
        }
        Ok(NatsSink {
            inner: Arc::new(Inner {
                connection,
                prefix: self.prefix,
                shared: Shared::named("nats", Arc::new(TracingReporter)),
            }),
        })
    }
}

impl EventSink for NatsSink {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<()> {
        let inner = &self.inner;
        let span = tracing::debug_span!("chronicle.bus.nats.send", events = batch.len());
        async move {
            let target = &inner.connection.target;
            let messages = batch
                .iter()
                .map(|out| Message::new(join(&inner.prefix, &out.topic), &out.event, target))
                .collect::<Result<Vec<_>>>();
            let sent = match messages {
                Ok(messages) => inner.connection.publish_all(messages).await,
                Err(error) => Err(error),
            };
            match sent {
                Ok(sent) => {
                    inner.shared.published(sent);
                    Ok(())
                }
                Err(error) => {
                    inner.shared.note_error(error.to_string());
                    Err(error)
                }
            }
        }
        .instrument(span)
        .await
    }

    fn health(&self) -> BusHealth {
        let connection = &self.inner.connection;
        self.inner
            .shared
            .health(connection.connected(), connection.reconnects(), 0)
    }

    fn stats(&self) -> BusStats {
        self.inner.shared.stats()
    }
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("server", &self.inner.connection.target)
            .field("prefix", &self.inner.prefix)
            .field("stats", &self.stats())
            .finish()
    }
}
