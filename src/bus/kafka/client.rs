//! What the sink and the bus share about librdkafka clients: the configuration every
//! client starts from, the context that watches a client's connection (librdkafka's
//! statistics and error callbacks), and which of librdkafka's errors may pass on a retry.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::Deserialize;
use tokio::sync::Notify;

use crate::bus::consumer::Shared;
use crate::error::{Error, ValidationError};

/// How often librdkafka reports its statistics (the connection state `health` reads),
/// unless the configuration says otherwise.
const STATISTICS_INTERVAL_MS: &str = "1000";

/// The address and the extra settings every client of one sink or bus is made from.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) brokers: String,
    pub(crate) extra: Vec<(String, String)>,
}

impl Settings {
    pub(crate) fn new(brokers: String) -> Self {
        Settings {
            brokers,
            extra: Vec::new(),
        }
    }

    /// A client configuration: the brokers, then `defaults` (chronicle's), then the
    /// user's settings, which win.
    pub(crate) fn config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}

/// The error for a client librdkafka refused to create (a bad setting).
pub(crate) fn config_error(what: &str, error: &KafkaError) -> Error {
    Error::Validation(ValidationError::Config(format!(
        "Kafka {what} cannot be created: {error}"
    )))
}

/// Whether sending again may succeed after `error`: false for what repeats until a
/// setting or the message changes (too large, an invalid topic, no authorization, an
/// unsupported feature, a producer librdkafka declared fatal), true for the rest
/// (brokers down, timeouts, leaders moving, a full queue).
pub(crate) fn is_retryable(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as Code;
    match error {
        KafkaError::Canceled => true,
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Nul(_) => false,
        _ => !matches!(
            error.rdkafka_error_code(),
            Some(
                Code::MessageSizeTooLarge
                    | Code::InvalidMessageSize
                    | Code::InvalidMessage
                    | Code::MessageBatchTooLarge
                    | Code::InvalidTopic
                    | Code::InvalidRequiredAcks
                    | Code::InvalidRequest
                    | Code::InvalidConfig
                    | Code::InvalidArgument
                    | Code::TopicAuthorizationFailed
                    | Code::ClusterAuthorizationFailed
                    | Code::TransactionalIdAuthorizationFailed
                    | Code::Authentication
                    | Code::SaslAuthenticationFailed
                    | Code::UnsupportedVersion
                    | Code::UnsupportedForMessageFormat
                    | Code::UnsupportedCompressionType
                    | Code::UnsupportedFeature
                    | Code::PolicyViolation
                    | Code::KeySerialization
                    | Code::ValueSerialization
                    | Code::Fatal
                    | Code::Fenced
                    | Code::InvalidProducerEpoch
                    | Code::OutOfOrderSequenceNumber
                    | Code::NotImplemented
            )
        ),
    }
}

/// A librdkafka client's context: keeps what its callbacks say about the connection
/// (brokers up, disconnections, a consumer's lag, errors) for `health`. Clones share it
/// (the client owns one, the sink or bus keeps another).
#[derive(Clone)]
pub(crate) struct Watch(Arc<WatchState>);

pub(crate) struct WatchState {
    shared: Arc<Shared>,
    connected: AtomicBool,
    reconnects: AtomicU64,
    lag: AtomicU64,
    /// A consumer: whether partitions were assigned once.
    assigned: AtomicBool,
    assigned_signal: Notify,
}

impl Watch {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Watch(Arc::new(WatchState {
            shared,
            connected: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            lag: AtomicU64::new(0),
            assigned: AtomicBool::new(false),
            assigned_signal: Notify::new(),
        }))
    }
}

impl std::ops::Deref for Watch {
    type Target = WatchState;

    fn deref(&self) -> &WatchState {
        &self.0
    }
}

impl WatchState {
    /// A broker answered (a delivery report, a message): connected.
    pub(crate) fn answered(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }

    /// Connected to a broker, as the last statistics (or an answer since) said.
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Broker disconnections seen, each followed by a reconnection attempt.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// A consumer's lag: messages in its partitions after its position.
    pub(crate) fn lag(&self) -> u64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// Waits until the consumer got its first partition assignment.
    pub(crate) async fn assigned(&self) {
        loop {
            let notified = self.assigned_signal.notified();
            if self.assigned.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// The parts of librdkafka's statistics `health` reads.
#[derive(Deserialize)]
struct Statistics {
    #[serde(default)]
    brokers: HashMap<String, BrokerStatistics>,
    #[serde(default)]
    topics: HashMap<String, TopicStatistics>,
}

#[derive(Deserialize)]
struct BrokerStatistics {
    state: String,
    #[serde(default)]
    disconnects: u64,
}

#[derive(Deserialize)]
struct TopicStatistics {
    #[serde(default)]
    partitions: HashMap<String, PartitionStatistics>,
}

#[derive(Deserialize)]
struct PartitionStatistics {
    partition: i32,
    #[serde(default)]
    consumer_lag: i64,
}

impl ClientContext for Watch {
    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(statistics) = serde_json::from_slice::<Statistics>(statistics) else {
            return;
        };
        let up = statistics
            .brokers
            .values()
            .any(|broker| broker.state == "UP");
        self.connected.store(up, Ordering::Relaxed);
        let disconnects = statistics.brokers.values().map(|b| b.disconnects).sum();
        self.reconnects.store(disconnects, Ordering::Relaxed);
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|topic| topic.partitions.values())
            .filter(|partition| partition.partition >= 0)
            .map(|partition| partition.consumer_lag.max(0))
            .sum();
        self.lag.store(lag.max(0) as u64, Ordering::Relaxed);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.connected.store(false, Ordering::Relaxed);
        }
        tracing::warn!(%error, reason, "Kafka client error");
        self.shared.note_error(format!("Kafka: {error} ({reason})"));
    }
}

impl ConsumerContext for Watch {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.assigned.store(true, Ordering::Release);
            self.assigned_signal.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_repeat_are_not_retryable_and_the_rest_are() {
        let produce = KafkaError::MessageProduction;
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::InvalidTopic,
            RDKafkaErrorCode::Fatal,
        ] {
            assert!(!is_retryable(&produce(code)), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::QueueFull,
        ] {
            assert!(is_retryable(&produce(code)), "{code:?}");
        }
        assert!(is_retryable(&KafkaError::Canceled));
        assert!(!is_retryable(&KafkaError::ClientCreation("bad".into())));
    }

    #[test]
    fn statistics_say_whether_a_broker_is_up_and_how_far_behind_a_consumer_is() {
        let watch = Watch::new(Shared::named(
            "kafka",
            Arc::new(crate::bus::TracingReporter),
        ));
        assert!(!watch.connected());
        watch.stats_raw(
            br#"{"brokers": {"b1": {"state": "UP", "disconnects": 2}, "b0": {"state": "INIT"}},
                 "topics": {"t": {"partitions": {"0": {"partition": 0, "consumer_lag": 5},
                                                 "-1": {"partition": -1, "consumer_lag": 9}}}}}"#,
        );
        assert!(watch.connected());
        assert_eq!((watch.reconnects(), watch.lag()), (2, 5));
        watch.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "all down",
        );
        assert!(!watch.connected());
        watch.stats_raw(b"not json");
        assert!(!watch.connected(), "unreadable statistics change nothing");
    }
}
