//! The relay's throughput into Kafka: a relay from a SQLite log of 100,000 events into a
//! `KafkaSink`, beside raw rdkafka `FutureProducer` sends of the same messages (same
//! topic, key, value and headers; the same client settings), interleaved in one run.
//!
//! ```text
//! cargo bench --features kafka --bench kafka
//! CHRONICLE_BENCH_QUICK=1 cargo bench --features kafka --bench kafka
//! ```
//!
//! Environment: `CHRONICLE_BENCH_ROUNDS` and `CHRONICLE_BENCH_QUICK` as in
//! `benches/core.rs`, and `CHRONICLE_BENCH_KAFKA_EVENTS` (default 100,000; quick
//! 10,000): the events of the log; `CHRONICLE_BENCH_KAFKA_CONFIG=key=value,…`: more
//! librdkafka settings for both clients.
//!
//! **The broker is librdkafka's mock cluster** (`test.mock.num.brokers=1`: each client
//! starts one in its own process, so every run starts empty): an in-process
//! Kafka-protocol broker that keeps messages in memory and replicates nothing. Its
//! figures say what the client side costs (chronicle's relay against the bare producer),
//! not what a real cluster would take.
//!
//! Two more rows explain the ratio: the relay with batches of 1,000 (every other sink's
//! default; `KafkaSink` asks for 5,000), and the relay into a
//! sink that does nothing (`NoopBus`), its own ceiling on this machine (reading the log,
//! a checkpoint committed to disk per batch).
//!
//! Each run creates its client and sends one message and waits for it (connected, the
//! topic's metadata known, the idempotent producer's id assigned), then is timed: the relay (a new name, from the beginning,
//! the sink's batches, polling every 10 ms) from `spawn` until `wait_for_idle`; the raw
//! producer from the first enqueue (all messages, waiting when librdkafka's queue is
//! full) until the last delivery report.

mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle::Store;
use chronicle::bus::{BusEvent, BusSink, EventSink, KafkaSink, NoopBus, wire};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use harness::{
    Config, Rates, Res, Row, Throughput, fmt_rate, info_row, interleave_units, log_events,
    ratio_row, relay_log, relay_to_idle, unit_op,
};

const EVENTS_ENV: &str = "CHRONICLE_BENCH_KAFKA_EVENTS";
/// The topic of every message: the category of the log's `acct-N` streams.
const TOPIC: &str = "acct";

/// The settings both clients get: a mock broker of their own, and what `KafkaSink` sets
/// before the user's settings.
const CLIENT: &[(&str, &str)] = &[
    ("bootstrap.servers", "localhost:9092"),
    ("test.mock.num.brokers", "1"),
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("message.timeout.ms", "30000"),
    ("statistics.interval.ms", "1000"),
];

/// `CHRONICLE_BENCH_KAFKA_CONFIG` (`key=value,key=value`): more settings for both clients.
fn extra_settings() -> Vec<(String, String)> {
    std::env::var("CHRONICLE_BENCH_KAFKA_CONFIG")
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// One message as the relay sends it.
struct Prepared {
    topic: String,
    key: String,
    value: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

/// The log's events as the relay's messages (topic: the stream category).
async fn prepare(store: &Store) -> Res<Vec<Prepared>> {
    let mut prepared = Vec::new();
    for event in log_events(store).await? {
        prepared.push(Prepared {
            topic: event.category().unwrap_or_default().to_owned(),
            key: event.subject.clone().unwrap_or_default(),
            value: event.data_json().to_vec(),
            headers: wire::headers(&event),
        });
    }
    Ok(prepared)
}

/// A relay of a new name from the start of the log into a new `KafkaSink`, in batches of
/// `batch` events (`None`: the sink's preferred batch, the default).
async fn relay(store: Store, total: u64, batch: Option<usize>) -> Res<Throughput> {
    let mut builder = KafkaSink::builder("localhost:9092");
    for (key, value) in &CLIENT[1..] {
        builder = builder.config(*key, *value);
    }
    for (key, value) in extra_settings() {
        builder = builder.config(key, value);
    }
    let sink = builder.build()?;
    // Connected, the topic's metadata known, the producer id assigned: as `raw`.
    let warm = BusEvent::new("bench.Warm", serde_json::json!({})).subject("warm-up");
    sink.send(vec![chronicle::bus::Outgoing::new(TOPIC, warm)])
        .await?;
    let throughput = relay_to_idle(&store, total, batch, sink.clone()).await?;
    let sent = sink.stats().published;
    if sent != total + 1 {
        return Err(
            format!("the sink sent {sent} events, expected {total} and the warm-up").into(),
        );
    }
    Ok(throughput)
}

/// The same messages through a bare `FutureProducer`: all enqueued, then every delivery
/// report awaited.
async fn raw(messages: Arc<Vec<Prepared>>) -> Res<Throughput> {
    let mut config = ClientConfig::new();
    for (key, value) in CLIENT {
        config.set(*key, *value);
    }
    for (key, value) in extra_settings() {
        config.set(key, value);
    }
    let producer: FutureProducer = config.create()?;
    let warm = FutureRecord::<str, str>::to(TOPIC)
        .key("warm-up")
        .payload("{}");
    producer
        .send(warm, Duration::from_secs(30))
        .await
        .map_err(|(error, _)| error)?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(messages.len());
    for message in messages.iter() {
        let headers = message.headers.iter().fold(
            OwnedHeaders::new_with_capacity(message.headers.len()),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value.as_str()),
                })
            },
        );
        let mut record = FutureRecord::to(&message.topic)
            .key(&message.key)
            .payload(&message.value)
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break deliveries.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(error, _)| error)?;
    }
    Ok(Throughput {
        units: messages.len() as u64,
        elapsed: started.elapsed(),
    })
}

async fn relay_sqlite_to_kafka(cfg: &Config) -> Res<Vec<Row>> {
    let total = cfg.size(EVENTS_ENV, 100_000)?;
    let dir = tempfile::tempdir()?;
    let store = relay_log(dir.path(), total).await?;
    let messages = Arc::new(prepare(&store).await?);
    let systems = [
        ("raw FutureProducer", {
            let messages = Arc::clone(&messages);
            unit_op(move || raw(Arc::clone(&messages)))
        }),
        ("relay → KafkaSink (its preferred batches, 5,000)", {
            let store = store.clone();
            unit_op(move || relay(store.clone(), total, None))
        }),
        ("relay → KafkaSink, batches of 1,000", {
            let store = store.clone();
            unit_op(move || relay(store.clone(), total, Some(1_000)))
        }),
        ("relay → NoopBus", {
            let store = store.clone();
            unit_op(move || {
                let store = store.clone();
                async move { relay_to_idle(&store, total, 1_000, BusSink::new(NoopBus::new())).await }
            })
        }),
    ];
    let mut rates = interleave_units(cfg, &systems).await?.into_iter();
    let raw = rates.next().unwrap_or_default();
    let mut rows = Vec::new();
    let names = [
        "relay_sqlite_to_kafka (default: the sink's batches of 5,000)",
        "relay_sqlite_to_kafka, batch_size(1000)",
        "relay_sqlite_to_noop (the relay's ceiling)",
    ];
    for (index, (name, chronicle)) in names.into_iter().zip(rates).enumerate() {
        let rates = Rates {
            baseline: raw.clone(),
            chronicle,
        };
        let workload = format!("{name} ({} events, mock cluster)", fmt_rate(total as f64));
        rows.push(if index == 0 {
            ratio_row(&workload, "events/s", &rates, 0.7, "≥ 70% of raw")
        } else {
            info_row(&workload, "events/s", &rates)
        });
    }
    Ok(rows)
}

const WORKLOADS: &[&str] = &["relay_sqlite_to_kafka"];

async fn run_workload(cfg: &Config, name: &str) -> Res<Vec<Row>> {
    match name {
        "relay_sqlite_to_kafka" => relay_sqlite_to_kafka(cfg).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

fn main() -> Res<()> {
    harness::run("chronicle Kafka relay benchmark", WORKLOADS, run_workload)
}
