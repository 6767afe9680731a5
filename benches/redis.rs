//! chronicle's Redis benchmarks (feature `redis`), against the server at
//! `CHRONICLE_REDIS_URL` (default `redis://127.0.0.1:6379`):
//!
//! 1. `relay_sqlite_to_redis`: the relay's throughput from a SQLite log of 100,000 events
//!    into a `RedisSink`, timed from `spawn` to `wait_for_idle` (a relay of a new name
//!    from the beginning, batches of 1,000, polling every 10 ms), beside **raw pipelined
//!    `XADD`** of the same messages (the same fields: the `wire` headers and `data`, to
//!    the same keys) with the same client (redis-rs's `ConnectionManager`) and the same
//!    batch size, one pipeline of 1,000 after another, the messages encoded before the
//!    clock starts. Both run in every round, interleaved; each writes keys of its own,
//!    deleted after the round. Target: the relay at ≥ 70% of raw.
//! 2. `latency_redis`: end-to-end latency from an append's commit (when `append` returns)
//!    to a `RedisBus` handler, events appended one at a time at 500 events/s for 10 s
//!    (`CHRONICLE_BENCH_REDIS_LATENCY_SECS`), through relay → `RedisSink` → stream →
//!    consumer group; p50 and p99.
//!
//! ```text
//! cargo bench --features redis --bench redis
//! cargo bench --features redis --bench redis -- latency
//! CHRONICLE_BENCH_QUICK=1 cargo bench --features redis --bench redis
//! ```
//!
//! Environment: `CHRONICLE_BENCH_ROUNDS` and `CHRONICLE_BENCH_QUICK` as in
//! `benches/core.rs`, `CHRONICLE_BENCH_REDIS_EVENTS` (default 100,000; quick 10,000) and
//! `CHRONICLE_BENCH_REDIS_BATCH` (default 1,000: the relay's batch and the raw
//! pipeline's size).
//!
//! The relay row comes with two more, so the gap to raw can be split: `RedisSink::send`
//! of the same events without a relay (what the sink adds to raw `XADD`), and the relay
//! into a `NoopBus` (what the relay costs with no broker at all), and `read_all` of the
//! log (what any relay must read).

mod harness;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronicle::bus::redis::{GroupStart, RedisBus, RedisSink};
use chronicle::bus::{
    Bus, BusEvent, BusSink, Delivery, EventSink, InMemoryBus, NoopBus, Outgoing, Subscribe, wire,
};
use chronicle::{ExpectedVersion, NewEvent, Store};
use redis::aio::ConnectionManager;
use uuid::Uuid;

use harness::{
    Config, Deposited, Met, Rates, Res, Row, Throughput, fmt_rate, info_row, interleave_units,
    log_events, next_id, ratio_row, read_log, relay_log, relay_to_idle, sqlite_url, unit_op,
};

const EVENTS_ENV: &str = "CHRONICLE_BENCH_REDIS_EVENTS";
const LATENCY_SECS_ENV: &str = "CHRONICLE_BENCH_REDIS_LATENCY_SECS";
const BATCH_ENV: &str = "CHRONICLE_BENCH_REDIS_BATCH";

/// The relay's batch, and the raw baseline's pipeline: `CHRONICLE_BENCH_REDIS_BATCH`,
/// default 1,000 (the relay's default).
fn batch() -> usize {
    harness::env_or(BATCH_ENV, 1_000_usize)
        .unwrap_or(1_000)
        .max(1)
}

fn redis_url() -> String {
    std::env::var("CHRONICLE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix of its own for one run.
fn prefix(tag: &str) -> String {
    format!("bench:{tag}:{}:", Uuid::now_v7().simple())
}

async fn connection() -> Res<ConnectionManager> {
    Ok(redis::Client::open(redis_url().as_str())?
        .get_connection_manager()
        .await?)
}

/// Deletes every key under `prefix`.
async fn drop_keys(conn: &mut ConnectionManager, prefix: &str) -> Res<()> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await?;
    if !keys.is_empty() {
        let () = redis::cmd("DEL").arg(keys).query_async(conn).await?;
    }
    Ok(())
}

/// One message as the sink writes it: the key after the prefix (the relay's default
/// topic, the category) and the fields.
type Fields = (String, Vec<(&'static str, Vec<u8>)>);

/// The log's events as the relay would send them, encoded.
fn messages(events: &[BusEvent]) -> Vec<Fields> {
    events
        .iter()
        .map(|event| {
            let mut fields: Vec<(&'static str, Vec<u8>)> = wire::headers(event)
                .into_iter()
                .map(|(name, value)| (name, value.into_bytes()))
                .collect();
            fields.push(("data", event.data_json().to_vec()));
            let topic = event.category().unwrap_or(&event.event_type).to_owned();
            (topic, fields)
        })
        .collect()
}

/// Raw pipelined `XADD`s of `messages`, `BATCH` per pipeline, one pipeline at a time.
async fn raw_xadd(messages: Arc<Vec<Fields>>) -> Res<Throughput> {
    let mut conn = connection().await?;
    let prefix = prefix("raw");
    let keys: HashMap<&str, String> = messages
        .iter()
        .map(|(topic, _)| (topic.as_str(), format!("{prefix}{topic}")))
        .collect();
    let started = Instant::now();
    for chunk in messages.chunks(batch()) {
        let mut pipe = redis::pipe();
        for (topic, fields) in chunk {
            let cmd = pipe.cmd("XADD").arg(&keys[topic.as_str()]).arg("*");
            for (name, value) in fields {
                cmd.arg(*name).arg(value.as_slice());
            }
        }
        let _: Vec<String> = pipe.query_async(&mut conn).await?;
    }
    let elapsed = started.elapsed();
    drop_keys(&mut conn, &prefix).await?;
    Ok(Throughput {
        units: messages.len() as u64,
        elapsed,
    })
}

/// `RedisSink::send` of the log's events in batches of `BATCH`, without a relay: what
/// the sink adds to raw `XADD`.
async fn sink_send(events: Arc<Vec<Outgoing>>) -> Res<Throughput> {
    let prefix = prefix("sink");
    let sink = RedisSink::builder(redis_url())
        .prefix(prefix.clone())
        .build()
        .await?;
    let started = Instant::now();
    for chunk in events.chunks(batch()) {
        sink.send(chunk.to_vec()).await?;
    }
    let elapsed = started.elapsed();
    drop_keys(&mut connection().await?, &prefix).await?;
    Ok(Throughput {
        units: events.len() as u64,
        elapsed,
    })
}

/// The relay into a `RedisSink`.
async fn relay_all(store: Store, total: u64) -> Res<Throughput> {
    let prefix = prefix("relay");
    let sink = RedisSink::builder(redis_url())
        .prefix(prefix.clone())
        .build()
        .await?;
    let throughput = relay_to_idle(&store, total, batch(), sink).await?;
    drop_keys(&mut connection().await?, &prefix).await?;
    Ok(throughput)
}

/// 1. The relay from a SQLite log into Redis, beside raw pipelined `XADD`.
async fn relay_sqlite_to_redis(cfg: &Config) -> Res<Vec<Row>> {
    let total = cfg.size(EVENTS_ENV, 100_000)?;
    let dir = tempfile::tempdir()?;
    let store = relay_log(dir.path(), total).await?;
    let events = log_events(&store).await?;
    let messages = Arc::new(messages(&events));
    let outgoing: Arc<Vec<Outgoing>> = Arc::new(
        events
            .into_iter()
            .map(|event| Outgoing::new(event.category().unwrap_or_default().to_owned(), event))
            .collect(),
    );
    let systems = [
        ("raw pipelined XADD", {
            let messages = Arc::clone(&messages);
            unit_op(move || raw_xadd(Arc::clone(&messages)))
        }),
        ("RedisSink::send", {
            let outgoing = Arc::clone(&outgoing);
            unit_op(move || sink_send(Arc::clone(&outgoing)))
        }),
        ("chronicle read_all", {
            let store = store.clone();
            unit_op(move || read_log(store.clone(), total))
        }),
        ("relay → NoopBus", {
            let store = store.clone();
            unit_op(move || {
                let store = store.clone();
                async move { relay_to_idle(&store, total, batch(), BusSink::new(NoopBus::new())).await }
            })
        }),
        ("relay → RedisSink", {
            let store = store.clone();
            unit_op(move || relay_all(store.clone(), total))
        }),
    ];
    let rates = interleave_units(cfg, &systems).await?;
    let against_raw = |chronicle: &Vec<f64>| Rates {
        baseline: rates[0].clone(),
        chronicle: chronicle.clone(),
    };
    let size = fmt_rate(total as f64);
    let info = |workload: String, rates: &Rates| info_row(&workload, "events/s", rates);
    Ok(vec![
        ratio_row(
            &format!(
                "relay_sqlite_to_redis ({size} events, batches of {})",
                batch()
            ),
            "events/s",
            &against_raw(&rates[4]),
            0.7,
            "≥ 70% of raw XADD",
        ),
        info(
            format!(
                "RedisSink::send alone ({size} events, batches of {})",
                batch()
            ),
            &against_raw(&rates[1]),
        ),
        info(
            format!("read_all of the log, no relay ({size} events)"),
            &against_raw(&rates[2]),
        ),
        info(
            format!("relay → NoopBus, no broker ({size} events)"),
            &against_raw(&rates[3]),
        ),
    ])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1_000.0)
}

/// What one latency run measured.
struct Latency {
    rate: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Appends one event at a time at 500 events/s for `secs` to a fresh SQLite store while
/// a relay sends them on: through Redis to a `RedisBus` handler (`via_redis`), or to an
/// `InMemoryBus` handler (the relay alone). Commit → handler, per event.
async fn latency_run(secs: f64, via_redis: bool) -> Res<Latency> {
    let total = (secs * 500.0) as u64;
    let dir = tempfile::tempdir()?;
    let store = Store::open(sqlite_url(dir.path(), "latency.db")).await?;
    let prefix = prefix("latency");
    let arrived: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let record = {
        let arrived = Arc::clone(&arrived);
        move |delivery: Delivery| {
            arrived.lock().unwrap().insert(delivery.id, Instant::now());
            std::future::ready(Ok(()))
        }
    };
    let (redis_bus, memory_bus) = if via_redis {
        let bus = RedisBus::builder(redis_url())
            .prefix(prefix.clone())
            .streams(["acct"])
            .group_start(GroupStart::Beginning)
            .build()
            .await?;
        bus.subscribe(Subscribe::to("*").group("latency"), record)
            .await?
            .detach();
        (Some(bus), None)
    } else {
        let bus = InMemoryBus::new();
        bus.subscribe("*", record).await?.detach();
        (None, Some(bus))
    };
    let relay = store.relay(format!("latency-{}", next_id()));
    let relay = match (&redis_bus, &memory_bus) {
        (Some(_), _) => {
            let sink = RedisSink::builder(redis_url())
                .prefix(prefix.clone())
                .build()
                .await?;
            relay.spawn(sink)
        }
        (None, Some(bus)) => relay.to_bus(bus.clone()),
        (None, None) => return Err("no bus".into()),
    };
    // One task per append, started every 2 ms: the rate holds while appends overlap.
    let committed: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let mut appends = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for n in 0..total {
        tick.tick().await;
        let (store, committed) = (store.clone(), Arc::clone(&committed));
        appends.spawn(async move {
            let event = NewEvent::from_serialize("account.Deposited", &Deposited::sample(n))?;
            let id = event.event_id();
            store
                .append(
                    format!("acct-{}", n % 10),
                    ExpectedVersion::Any,
                    vec![event],
                )
                .await?;
            committed.lock().unwrap().insert(id, Instant::now());
            Ok::<(), harness::BoxError>(())
        });
    }
    while let Some(appended) = appends.join_next().await {
        appended??;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrived.lock().unwrap().len() < total as usize {
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {total} events arrived",
                arrived.lock().unwrap().len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    relay.stop().await?;
    if let Some(bus) = redis_bus {
        bus.close().await?;
        drop_keys(&mut connection().await?, &prefix).await?;
    }
    let arrived = arrived.lock().unwrap().clone();
    let committed = committed.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = committed
        .iter()
        .map(|(id, at)| arrived[id].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    Ok(Latency {
        rate,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
    })
}

/// The second workload: append commit → handler at 500 events/s, through Redis to a
/// `RedisBus`, beside the relay alone into an in-process bus, in the same run.
async fn latency_redis(cfg: &Config) -> Res<Vec<Row>> {
    let secs: f64 = harness::env_or(LATENCY_SECS_ENV, if cfg.quick { 2.0 } else { 10.0 })?;
    let mut rows = Vec::new();
    for (name, via_redis) in [
        ("relay → InMemoryBus handler", false),
        ("relay → RedisSink → RedisBus handler", true),
    ] {
        let run = latency_run(secs, via_redis).await?;
        eprintln!(
            "  {name}: {:.0} events/s: p50 {}, p99 {}, max {}",
            run.rate,
            ms(run.p50),
            ms(run.p99),
            ms(run.max)
        );
        rows.push(Row {
            workload: format!(
                "latency_redis: commit → {name} ({:.0} events/s, {secs:.0} s)",
                run.rate
            ),
            chronicle: format!("p50 {}", ms(run.p50)),
            baseline: format!("p99 {}", ms(run.p99)),
            ratio: "—".to_owned(),
            target: "—".to_owned(),
            met: Met::Info,
        });
    }
    Ok(rows)
}

const WORKLOADS: &[&str] = &["relay_sqlite_to_redis", "latency_redis"];

async fn run_workload(cfg: &Config, name: &str) -> Res<Vec<Row>> {
    match name {
        "relay_sqlite_to_redis" => relay_sqlite_to_redis(cfg).await,
        "latency_redis" => latency_redis(cfg).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

fn main() -> Res<()> {
    harness::run_described(
        "chronicle Redis benchmarks",
        |cfg| {
            format!(
                "{} interleaved rounds of each system's whole run, medians{}",
                cfg.rounds,
                if cfg.quick { ", quick sizes" } else { "" }
            )
        },
        WORKLOADS,
        run_workload,
    )
}
