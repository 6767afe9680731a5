//! [`KafkaSink`]: the relay's [`EventSink`] for Kafka, an idempotent producer that keys
//! each message by its stream and returns once every delivery report of a batch came back.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tracing::Instrument;

use super::client::{Settings, Watch, config_error, is_retryable};
use crate::bus::consumer::Shared;
use crate::bus::{BusEvent, BusHealth, BusStats, EventSink, Outgoing, TracingReporter, wire};
use crate::error::{Error, Result};

/// chronicle's producer settings, before the user's: the idempotent producer (which
/// needs `acks=all`: every in-sync replica has the message before it counts as sent) and
/// a delivery timeout short enough for a failing broker to show in the relay's status.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("message.timeout.ms", "30000"),
];

/// The pause before enqueuing again when librdkafka's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);

/// A relay's sink into Kafka: the [`EventSink`] of an idempotent producer
/// (`enable.idempotence=true`, `acks=all`).
///
/// Each message goes to the topic the relay named ([`Outgoing::topic`], after the
/// sink's [`prefix`](KafkaSinkBuilder::topic_prefix)), keyed by the event's stream
/// ([`Outgoing::order_key`]; no key without a stream), so each stream stays in version
/// order in its partition. The headers are [`wire::headers`] (`ce-id` is the event id,
/// the deduplication key), the value the event's JSON data.
///
/// [`EventSink::send`] enqueues the whole batch, then awaits every delivery report: it
/// returns `Ok` only once Kafka acknowledged every message. librdkafka retries what may
/// pass (a leader moving, a broker restarting) by itself, without duplicates (the
/// idempotent producer); what still fails is an
/// [`Error::Publish`](crate::Error::Publish) whose `retryable` says whether sending again
/// may succeed, and the relay sends the batch again. Clones share the producer.
///
/// **Copies.** The idempotent producer drops only its own retries: a batch sent again
/// by a `send` of its own (the relay after a failure, or restarted after a crash, with a
/// new producer) is stored again, at most one batch. Consumers drop those copies by
/// `ce-id`: [`KafkaBus`](crate::bus::KafkaBus) does (its
/// [`dedup_window`](crate::bus::KafkaBusBuilder::dedup_window)).
///
/// ```no_run
/// # async fn demo(store: chronicle::Store) -> chronicle::Result<()> {
/// use chronicle::bus::{KafkaSink, StartFrom};
///
/// let sink = KafkaSink::builder("kafka-1:9092,kafka-2:9092")
///     .topic_prefix("events.")           // account-42's events go to `events.account`
///     .config("linger.ms", "10")         // any librdkafka producer setting
///     .build()?;
/// let relay = store.relay("to-kafka").start_from(StartFrom::Beginning).spawn(sink);
/// relay.wait_for_idle().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KafkaSink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    producer: FutureProducer<Watch>,
    config: ClientConfig,
    watch: Watch,
    brokers: String,
    prefix: String,
    shared: Arc<Shared>,
}

/// Configures a [`KafkaSink`]: [`KafkaSink::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `build` to get the sink"]
pub struct KafkaSinkBuilder {
    settings: Settings,
    prefix: String,
}

impl KafkaSinkBuilder {
    /// A librdkafka producer setting (`linger.ms`, `compression.type`,
    /// `security.protocol`, …), applied after chronicle's, so it wins. Kafka settings are
    /// in librdkafka's `CONFIGURATION.md`.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.extra.push((key.into(), value.into()));
        self
    }

    /// Put before every topic the relay names (default none).
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The sink. Nothing is sent yet: the producer connects in the background, and a
    /// broker that cannot be reached shows in [`EventSink::health`] and as failed sends.
    ///
    /// # Errors
    /// [`ValidationError::Config`](crate::ValidationError::Config) when librdkafka
    /// refuses a setting.
    pub fn build(self) -> Result<KafkaSink> {
        KafkaSink::create(
            &self.settings,
            self.prefix,
            Shared::named("kafka-sink", Arc::new(TracingReporter)),
        )
    }
}

impl KafkaSink {
    /// Configures a sink to the cluster at `brokers` (librdkafka's `bootstrap.servers`:
    /// `host:port`, comma-separated).
    pub fn builder(brokers: impl Into<String>) -> KafkaSinkBuilder {
        KafkaSinkBuilder {
            settings: Settings::new(brokers.into()),
            prefix: String::new(),
        }
    }

    /// A sink made from `settings`, counting into `shared`.
    pub(crate) fn create(settings: &Settings, prefix: String, shared: Arc<Shared>) -> Result<Self> {
        let watch = Watch::new(Arc::clone(&shared));
        let config = settings.config(PRODUCER_DEFAULTS);
        let producer: FutureProducer<Watch> = config
            .create_with_context(watch.clone())
            .map_err(|error| config_error("producer", &error))?;
        Ok(KafkaSink {
            inner: Arc::new(SinkInner {
                producer,
                config,
                watch,
                brokers: settings.brokers.clone(),
                prefix,
                shared,
            }),
        })
    }

    /// The brokers it was given.
    pub fn brokers(&self) -> &str {
        &self.inner.brokers
    }

    /// The producer's setting `key` as the sink gave it to librdkafka (chronicle's
    /// defaults, then the builder's `config`); `None` for librdkafka's own default.
    /// `sink.setting("enable.idempotence")` is `Some("true")`.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.inner.config.get(key)
    }

    /// The producer's connection as librdkafka's statistics report it.
    pub(crate) fn watch(&self) -> &Watch {
        &self.inner.watch
    }

    /// Waits (on a blocking thread) up to `timeout` until every message enqueued was
    /// delivered or failed.
    ///
    /// # Errors
    /// [`Error::Publish`] (retryable) when messages are still in flight at the timeout.
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        let producer = self.inner.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|error| Error::Internal(format!("the Kafka flush task failed: {error}")))?;
        flushed.map_err(|error| Error::Publish {
            destination: format!("Kafka at {}", self.inner.brokers),
            event_id: uuid::Uuid::nil(),
            event_type: String::new(),
            retryable: true,
            source: Box::new(error),
        })
    }

    /// The topic `topic` is sent to: after the prefix.
    fn topic<'t>(&self, topic: &'t str) -> Cow<'t, str> {
        if self.inner.prefix.is_empty() {
            Cow::Borrowed(topic)
        } else {
            Cow::Owned(format!("{}{topic}", self.inner.prefix))
        }
    }

    /// Enqueues `record`, waiting while librdkafka's queue is full.
    async fn enqueue(
        &self,
        mut record: FutureRecord<'_, [u8], [u8]>,
    ) -> std::result::Result<DeliveryFuture, KafkaError> {
        loop {
            match self.inner.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Sends one message as it is (a dead letter) and waits for its delivery report.
    pub(crate) async fn send_raw(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> std::result::Result<(), KafkaError> {
        let mut record = FutureRecord::to(topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        match self.enqueue(record).await?.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((error, _))) => Err(error),
            Err(_) => Err(KafkaError::Canceled),
        }
    }

    fn publish_error(&self, topic: &str, event: &BusEvent, error: KafkaError) -> Error {
        self.inner
            .shared
            .note_error(format!("Kafka topic `{topic}`: {error}"));
        Error::Publish {
            destination: format!("Kafka topic `{topic}` at {}", self.inner.brokers),
            event_id: event.id,
            event_type: event.event_type.clone(),
            retryable: is_retryable(&error),
            source: Box::new(error),
        }
    }
}

/// The Kafka headers of `event`: [`wire::headers`].
pub(crate) fn kafka_headers(event: &BusEvent) -> OwnedHeaders {
    let wire = wire::headers(event);
    wire.iter().fold(
        OwnedHeaders::new_with_capacity(wire.len() + 1),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_str()),
            })
        },
    )
}

impl EventSink for KafkaSink {
    async fn send(&self, batch: Vec<Outgoing>) -> Result<()> {
        let span = tracing::debug_span!("chronicle.bus.kafka.send", messages = batch.len());
        async move {
            let topics: Vec<Cow<'_, str>> =
                batch.iter().map(|out| self.topic(&out.topic)).collect();
            let mut deliveries = Vec::with_capacity(batch.len());
            for (out, topic) in batch.iter().zip(&topics) {
                let mut record = FutureRecord::to(topic)
                    .payload(out.event.data_json())
                    .headers(kafka_headers(&out.event));
                if out.event.subject.is_some() {
                    record = record.key(out.order_key().as_bytes());
                }
                let delivery = self
                    .enqueue(record)
                    .await
                    .map_err(|error| self.publish_error(topic, &out.event, error))?;
                deliveries.push(delivery);
            }
            for ((out, topic), delivery) in batch.iter().zip(&topics).zip(deliveries) {
                let error = match delivery.await {
                    Ok(Ok(_)) => continue,
                    Ok(Err((error, _))) => error,
                    Err(_) => KafkaError::Canceled,
                };
                return Err(self.publish_error(topic, &out.event, error));
            }
            self.watch().answered();
            self.inner.shared.published(batch.len() as u64);
            Ok(())
        }
        .instrument(span)
        .await
    }

    fn health(&self) -> BusHealth {
        let watch = self.watch();
        let in_flight = self.inner.producer.in_flight_count().max(0) as u64;
        self.inner
            .shared
            .health(watch.connected(), watch.reconnects(), in_flight)
    }

    fn stats(&self) -> BusStats {
        self.inner.shared.stats()
    }

    /// 5,000: a batch counts as sent once every delivery report is in, and librdkafka
    /// holds each message up to `linger.ms` before it sends, so every batch waits about
    /// that long whatever its size; batches of 1,000 spent more time waiting than
    /// sending (BENCHMARKS.md, "Kafka relay").
    fn preferred_batch(&self) -> Option<usize> {
        Some(KAFKA_RELAY_BATCH)
    }
}

/// The relay batch [`KafkaSink`] asks for ([`EventSink::preferred_batch`]).
const KAFKA_RELAY_BATCH: usize = 5_000;

impl fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSink")
            .field("brokers", &self.inner.brokers)
            .field("prefix", &self.inner.prefix)
            .field("stats", &self.inner.shared.stats())
            .finish()
    }
}
