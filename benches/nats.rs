//! chronicle's NATS JetStream benchmarks, against the server at `CHRONICLE_NATS_URL`
//! (default `nats://127.0.0.1:4222`, `nats-server -js`):
//!
//! - `relay_sqlite_to_nats`: the relay's throughput from a SQLite log of 100,000 events
//!   into `NatsSink`, beside the raw JetStream publish rate of the same messages (same
//!   subjects, headers and bodies, prepared before the clock starts) through the same
//!   client, pipelined in the relay's batch size (1,000: all sent, then all acks
//!   awaited). Each round gives each side a fresh stream, so no `Nats-Msg-Id` is a
//!   duplicate. Target: the relay at ≥ 70% of raw.
//! - `nats_latency`: end-to-end latency from an append's commit (its `append` returned)
//!   to the `NatsBus` handler (SQLite store → relay → `NatsSink` → JetStream → durable
//!   pull consumer), one event per append at 500 events/s for 10 s; p50 and p99.
//!
//! ```text
//! cargo bench --features nats --bench nats
//! cargo bench --features nats --bench nats -- nats_latency
//! ```
//!
//! Environment: `CHRONICLE_BENCH_ROUNDS` and `CHRONICLE_BENCH_QUICK` as in
//! `benches/core.rs`; `CHRONICLE_BENCH_NATS_EVENTS` (default 100,000; quick 10,000), the
//! relay's log; `CHRONICLE_BENCH_NATS_LATENCY_SECS` (default 10; quick 2) and
//! `CHRONICLE_BENCH_NATS_RATE` (default 500 events/s).

mod harness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use chronicle::bus::nats::{MSG_ID, NatsBus, NatsSink};
use chronicle::bus::{
    Bus, BusEvent, BusSink, Delivery, EventSink, NoopBus, Outgoing, StartFrom, Topic, wire,
};
use chronicle::{ExpectedVersion, NewEvent, Store};

use harness::{
    Config, Deposited, Met, Rates, Res, Row, Throughput, env_or, fmt_rate, info_row,
    interleave_units, log_events, next_id, ratio_row, relay_log, relay_to_idle, sqlite_url,
    unit_op,
};

const EVENTS_ENV: &str = "CHRONICLE_BENCH_NATS_EVENTS";
/// The relay's batch, and the raw side's pipeline (default 1,000, the relay's default).
fn batch() -> usize {
    env_or("CHRONICLE_BENCH_NATS_BATCH", 1_000_usize)
        .unwrap_or(1_000)
        .max(1)
}

fn nats_url() -> String {
    std::env::var("CHRONICLE_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A fresh subject prefix and stream over it; the stream is deleted by [`drop_stream`].
async fn fresh_stream(js: &jetstream::Context) -> Res<(String, String)> {
    let id = next_id();
    let run = uuid::Uuid::now_v7().simple().to_string();
    let (prefix, name) = (format!("bench{id}x{run}"), format!("BENCH{id}X{run}"));
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{prefix}.>")],
        ..Default::default()
    })
    .await?;
    Ok((prefix, name))
}

async fn drop_stream(js: &jetstream::Context, name: &str, expected: u64) -> Res<()> {
    let mut stream = js.get_stream(name).await?;
    let held = stream.info().await?.state.messages;
    js.delete_stream(name).await?;
    if held != expected {
        return Err(format!("stream {name} holds {held} messages, expected {expected}").into());
    }
    Ok(())
}

/// A message as the sink sends it, prepared: topic (the category), headers, body.
struct Prepared {
    event: BusEvent,
    topic: String,
    headers: async_nats::HeaderMap,
    body: Bytes,
}

/// The log's events as the relay would send them.
async fn prepare(store: &Store) -> Res<Vec<Prepared>> {
    let mut prepared = Vec::new();
    for event in log_events(store).await? {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in wire::headers(&event) {
            headers.insert(name, value);
        }
        headers.insert(MSG_ID, event.id.to_string());
        prepared.push(Prepared {
            event: event.clone(),
            topic: Topic::category().of(&event),
            headers,
            body: Bytes::copy_from_slice(event.data_json()),
        });
    }
    Ok(prepared)
}

/// The same client's JetStream context as the sink's (the same in-flight bound).
fn context(client: &async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .max_ack_inflight(10_000)
        .backpressure_on_inflight(true)
        .build(client.clone())
}

/// Raw JetStream: every prepared message to a fresh stream, pipelined per batch.
async fn raw_publish(client: async_nats::Client, messages: Arc<Vec<Prepared>>) -> Res<Throughput> {
    let js = context(&client);
    let (prefix, name) = fresh_stream(&js).await?;
    let subjects: Vec<String> = messages
        .iter()
        .map(|m| format!("{prefix}.{}", m.topic))
        .collect();
    let started = Instant::now();
    for (chunk, subjects) in messages.chunks(batch()).zip(subjects.chunks(batch())) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (message, subject) in chunk.iter().zip(subjects) {
            let publish = jetstream::message::PublishMessage::build()
                .payload(message.body.clone())
                .headers(message.headers.clone());
            acks.push(js.send_publish(subject.clone(), publish).await?);
        }
        for ack in acks {
            ack.await?;
        }
    }
    let elapsed = started.elapsed();
    drop_stream(&js, &name, messages.len() as u64).await?;
    Ok(Throughput {
        units: messages.len() as u64,
        elapsed,
    })
}

/// `NatsSink::send` of the prepared events in batches, to a fresh stream: the sink's own
/// cost, without the relay's reads and checkpoints.
async fn sink_send(client: async_nats::Client, messages: Arc<Vec<Prepared>>) -> Res<Throughput> {
    let js = context(&client);
    let (prefix, name) = fresh_stream(&js).await?;
    let sink = NatsSink::builder(nats_url())
        .client(client)
        .subject_prefix(&prefix)
        .build()
        .await?;
    let batches: Vec<Vec<Outgoing>> = messages
        .chunks(batch())
        .map(|chunk| {
            chunk
                .iter()
                .map(|m| Outgoing::new(m.topic.clone(), m.event.clone()))
                .collect()
        })
        .collect();
    let started = Instant::now();
    for batch in batches {
        sink.send(batch).await?;
    }
    let elapsed = started.elapsed();
    drop_stream(&js, &name, messages.len() as u64).await?;
    Ok(Throughput {
        units: messages.len() as u64,
        elapsed,
    })
}

/// A relay of a new name from the start of the log into a `NatsSink` on `client`, to a
/// fresh stream, until it is idle.
async fn relay_publish(store: Store, client: async_nats::Client, total: u64) -> Res<Throughput> {
    let js = context(&client);
    let (prefix, name) = fresh_stream(&js).await?;
    let sink = NatsSink::builder(nats_url())
        .client(client)
        .subject_prefix(&prefix)
        .build()
        .await?;
    let throughput = relay_to_idle(&store, total, batch(), sink).await?;
    drop_stream(&js, &name, total).await?;
    Ok(throughput)
}

/// 1. The relay from a SQLite log into NATS, beside raw JetStream publishes.
async fn relay_sqlite_to_nats(cfg: &Config) -> Res<Vec<Row>> {
    let total = cfg.size(EVENTS_ENV, 100_000)?;
    let client = async_nats::connect(nats_url()).await?;
    let dir = tempfile::tempdir()?;
    let store = relay_log(dir.path(), total).await?;
    let messages = Arc::new(prepare(&store).await?);
    eprintln!(
        "  {} bytes of body and {} header bytes per message",
        messages[0].body.len(),
        header_bytes(&messages[0].headers)
    );
    let systems = [
        ("raw JetStream publish", {
            let (client, messages) = (client.clone(), Arc::clone(&messages));
            unit_op(move || raw_publish(client.clone(), Arc::clone(&messages)))
        }),
        ("relay → NatsSink", {
            let (store, client) = (store.clone(), client.clone());
            unit_op(move || relay_publish(store.clone(), client.clone(), total))
        }),
        ("relay → NoopBus", {
            let store = store.clone();
            unit_op(move || {
                let store = store.clone();
                async move { relay_to_idle(&store, total, batch(), BusSink::new(NoopBus::new())).await }
            })
        }),
        ("NatsSink::send alone", {
            let (client, messages) = (client.clone(), Arc::clone(&messages));
            unit_op(move || sink_send(client.clone(), Arc::clone(&messages)))
        }),
    ];
    let mut rates = interleave_units(cfg, &systems).await?.into_iter();
    let raw = rates.next().unwrap_or_default();
    let beside_raw = |rates: Option<Vec<f64>>| Rates {
        baseline: raw.clone(),
        chronicle: rates.unwrap_or_default(),
    };
    let (relay, relay_alone, sink_alone) = (
        beside_raw(rates.next()),
        beside_raw(rates.next()),
        beside_raw(rates.next()),
    );
    let events = fmt_rate(total as f64);
    let info = |workload: String, rates: &Rates| info_row(&workload, "events/s", rates);
    Ok(vec![
        ratio_row(
            &format!("relay_sqlite_to_nats ({events} events)"),
            "events/s",
            &relay,
            0.7,
            "≥ 70% of raw",
        ),
        info(
            format!("  the relay alone, into a NoopBus ({events} events)"),
            &relay_alone,
        ),
        info(
            format!("  NatsSink::send alone, prepared batches ({events} events)"),
            &sink_alone,
        ),
    ])
}

fn header_bytes(headers: &async_nats::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, values)| {
            values
                .iter()
                .map(|value| name.to_string().len() + value.as_str().len() + 4)
                .sum::<usize>()
        })
        .sum()
}

/// 2. Append commit → `NatsBus` handler, at a steady rate.
async fn nats_latency(cfg: &Config) -> Res<Vec<Row>> {
    let secs: f64 = env_or(
        "CHRONICLE_BENCH_NATS_LATENCY_SECS",
        if cfg.quick { 2.0 } else { 10.0 },
    )?;
    let rate: f64 = env_or("CHRONICLE_BENCH_NATS_RATE", 500.0)?;
    let count = (secs * rate).round().max(1.0) as u64;
    let dir = tempfile::tempdir()?;
    let store = Store::open(sqlite_url(dir.path(), "latency.db")).await?;
    let client = async_nats::connect(nats_url()).await?;
    let js = context(&client);
    let (prefix, name) = fresh_stream(&js).await?;

    // Commit and arrival times by event id, matched once the run is over (an event may
    // reach the handler before its append's caller notes the commit).
    let committed: Arc<Mutex<HashMap<uuid::Uuid, Instant>>> = Arc::default();
    let arrived: Arc<Mutex<HashMap<uuid::Uuid, Instant>>> = Arc::default();
    let received = Arc::new(AtomicU64::new(0));
    let bus = NatsBus::builder(nats_url())
        .prefix(&prefix)
        .stream(&name)
        .build()
        .await?;
    {
        let (arrived, received) = (Arc::clone(&arrived), Arc::clone(&received));
        bus.subscribe("account.*", move |delivery: Delivery| {
            let now = Instant::now();
            if let Ok(mut arrived) = arrived.lock() {
                arrived.insert(delivery.id, now);
            }
            received.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok(()))
        })
        .await?
        .detach();
    }
    let sink = NatsSink::builder(nats_url())
        .client(client.clone())
        .subject_prefix(&prefix)
        .build()
        .await?;
    let relay = store
        .relay("latency")
        .topic(Topic::event_type())
        .start_from(StartFrom::Beginning)
        .spawn(sink);

    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..count {
        ticks.tick().await;
        let event = NewEvent::from_serialize("account.Deposited", &Deposited::sample(n))?;
        let id = event.event_id();
        store
            .append(
                format!("acct-{}", n % 100),
                ExpectedVersion::Any,
                vec![event],
            )
            .await?;
        if let Ok(mut committed) = committed.lock() {
            committed.insert(id, Instant::now());
        }
    }
    for _ in 0..1_000 {
        if received.load(Ordering::Relaxed) >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    relay.stop().await?;
    bus.close().await?;
    js.delete_stream(&name).await?;
    let committed = committed.lock().map_err(|_| "poisoned")?;
    let arrived = arrived.lock().map_err(|_| "poisoned")?;
    let mut latencies: Vec<Duration> = committed
        .iter()
        .filter_map(|(id, at)| Some(arrived.get(id)?.saturating_duration_since(*at)))
        .collect();
    eprintln!(
        "  {count} appends at {rate} events/s; {} received, {} matched",
        received.load(Ordering::Relaxed),
        latencies.len()
    );
    if (latencies.len() as u64) < count {
        return Err(format!("{} of {count} events came back", latencies.len()).into());
    }
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    Ok(vec![Row {
        workload: format!("nats_latency ({rate} events/s, {secs} s)"),
        chronicle: format!("p50 {:.2} ms, p99 {:.2} ms", at(0.5), at(0.99)),
        baseline: "—".to_owned(),
        ratio: "—".to_owned(),
        target: "—".to_owned(),
        met: Met::Info,
    }])
}

const WORKLOADS: &[&str] = &["relay_sqlite_to_nats", "nats_latency"];

async fn run_workload(cfg: &Config, name: &str) -> Res<Vec<Row>> {
    match name {
        "relay_sqlite_to_nats" => relay_sqlite_to_nats(cfg).await,
        "nats_latency" => nats_latency(cfg).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

fn main() -> Res<()> {
    harness::run("chronicle NATS benchmarks", WORKLOADS, run_workload)
}
