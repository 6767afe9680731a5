//! chronicle's in-process bus benchmarks: events per second through an `InMemoryBus`
//! with one synchronous no-op handler and with eight buffered no-op handlers, each beside
//! the plain machinery it adds to (a direct call of the handler; eight tokio channels
//! drained by eight tasks); and the relay's throughput from a SQLite log of 100,000
//! events into the in-process bus, beside chronicle's `read_all` of the same log.
//!
//! ```text
//! cargo bench --bench bus                 # everything
//! cargo bench --bench bus -- bus_publish  # only workloads whose name contains this
//! CHRONICLE_BENCH_QUICK=1 cargo bench --bench bus
//! ```
//!
//! Environment: `CHRONICLE_BENCH_SECS`, `CHRONICLE_BENCH_ROUNDS` and
//! `CHRONICLE_BENCH_QUICK` as in `benches/core.rs`, and `CHRONICLE_BENCH_BUS_EVENTS`
//! (default 100,000; quick 10,000): the events of the relay's log.
//!
//! The publish workloads publish clones of one prepared event (type, subject, 110 bytes
//! of JSON) from one task, 100 per timed call; the buffered bus has a buffer of 1,024
//! events per subscription, and what is still buffered when a window ends (at most 8 ×
//! 1,024 events) is counted as published. The relay is timed from `spawn` (a relay of a
//! new name, from the beginning of the log, default batches of 1,000, polling every
//! 10 ms) until `wait_for_idle` returns, after checking that its handler saw every event.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chronicle::Store;
use chronicle::bus::{Bus, BusEvent, Delivery, Dispatch, HandlerError, InMemoryBus, StartFrom};

use harness::{
    Config, Deposited, Rates, Res, Row, Throughput, fmt_rate, info_row, interleave,
    interleave_units, next_id, read_log, relay_log, unit_op,
};

const EVENTS_ENV: &str = "CHRONICLE_BENCH_BUS_EVENTS";
/// Events published per timed call.
const PER_CALL: u64 = 100;
/// Buffered handlers, and each one's buffer.
const HANDLERS: usize = 8;
const BUFFER: usize = 1_024;

fn sample_event() -> Res<BusEvent> {
    Ok(BusEvent::from_serialize("account.Deposited", &Deposited::sample(7))?.subject("acct-7"))
}

/// A no-op handler that counts what it saw.
fn counting(
    seen: &Arc<AtomicU64>,
) -> impl Fn(Delivery) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + use<> {
    let seen = Arc::clone(seen);
    move |delivery: Delivery| {
        std::hint::black_box(&delivery);
        seen.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(()))
    }
}

/// 1. One synchronous no-op handler: `publish` beside calling the handler directly.
async fn bus_publish_sync(cfg: &Config) -> Res<Vec<Row>> {
    let event = sample_event()?;
    let seen = Arc::new(AtomicU64::new(0));
    let handler = Arc::new(counting(&seen));
    let bus = InMemoryBus::new();
    bus.subscribe("account.*", counting(&seen)).await?.detach();
    let direct = {
        let (event, handler) = (event.clone(), Arc::clone(&handler));
        move |_task: usize| {
            let (event, handler) = (event.clone(), Arc::clone(&handler));
            async move {
                for _ in 0..PER_CALL {
                    let delivery = Delivery::new(Arc::new(event.clone()), 1);
                    handler(delivery).await.map_err(|error| error.to_string())?;
                }
                Ok(PER_CALL)
            }
        }
    };
    let published = {
        let (event, bus) = (event.clone(), bus.clone());
        move |_task: usize| {
            let (event, bus) = (event.clone(), bus.clone());
            async move {
                for _ in 0..PER_CALL {
                    bus.publish(event.clone()).await?;
                }
                Ok(PER_CALL)
            }
        }
    };
    let rates = interleave(
        cfg,
        ("direct call", "InMemoryBus sync"),
        1,
        direct,
        published,
    )
    .await?;
    // No target for the in-process bus: rows for information.
    Ok(vec![info_row(
        "bus_publish_sync (1 handler)",
        "events/s",
        &rates,
    )])
}

/// 2. Eight buffered no-op handlers: `publish` beside eight tokio channels of the
///    same capacity, each drained by a task of its own.
async fn bus_publish_buffered(cfg: &Config) -> Res<Vec<Row>> {
    let event = Arc::new(sample_event()?);
    let seen = Arc::new(AtomicU64::new(0));
    let bus = InMemoryBus::builder()
        .dispatch(Dispatch::Buffered { capacity: BUFFER })
        .build();
    for _ in 0..HANDLERS {
        bus.subscribe("account.*", counting(&seen)).await?.detach();
    }
    let senders: Arc<Vec<tokio::sync::mpsc::Sender<Arc<BusEvent>>>> = Arc::new(
        (0..HANDLERS)
            .map(|_| {
                let (sender, mut receiver) = tokio::sync::mpsc::channel::<Arc<BusEvent>>(BUFFER);
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    while let Some(event) = receiver.recv().await {
                        std::hint::black_box(&event);
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                });
                sender
            })
            .collect(),
    );
    let channels = {
        let event = Arc::clone(&event);
        move |_task: usize| {
            let (event, senders) = (Arc::clone(&event), Arc::clone(&senders));
            async move {
                for _ in 0..PER_CALL {
                    let shared = Arc::new(BusEvent::clone(&event));
                    for sender in senders.iter() {
                        sender.send(Arc::clone(&shared)).await?;
                    }
                }
                Ok(PER_CALL)
            }
        }
    };
    let published = {
        let bus = bus.clone();
        move |_task: usize| {
            let (event, bus) = (Arc::clone(&event), bus.clone());
            async move {
                for _ in 0..PER_CALL {
                    bus.publish(BusEvent::clone(&event)).await?;
                }
                Ok(PER_CALL)
            }
        }
    };
    let rates = interleave(
        cfg,
        ("8 tokio channels", "InMemoryBus buffered"),
        1,
        channels,
        published,
    )
    .await?;
    bus.close().await?;
    Ok(vec![info_row(
        "bus_publish_buffered (8 handlers)",
        "events/s",
        &rates,
    )])
}

/// A relay of a new name from the start of the log into a synchronous in-process bus with
/// one no-op handler, until it is idle.
async fn relay_all(store: Store, total: u64) -> Res<Throughput> {
    let seen = Arc::new(AtomicU64::new(0));
    let bus = InMemoryBus::new();
    bus.subscribe("*", counting(&seen)).await?.detach();
    let started = Instant::now();
    let relay = store
        .relay(format!("bench-{}", next_id()))
        .start_from(StartFrom::Beginning)
        .poll_interval(std::time::Duration::from_millis(10))
        .to_bus(bus);
    relay.wait_for_idle().await?;
    let elapsed = started.elapsed();
    relay.stop().await?;
    let seen = seen.load(Ordering::Relaxed);
    if seen != total {
        return Err(format!("the relay delivered {seen} events, expected {total}").into());
    }
    Ok(Throughput {
        units: total,
        elapsed,
    })
}

/// 3. The relay from a SQLite log into the in-process bus, beside `read_all`.
async fn relay_sqlite_to_bus(cfg: &Config) -> Res<Vec<Row>> {
    let total = cfg.size(EVENTS_ENV, 100_000)?;
    let dir = tempfile::tempdir()?;
    let store = relay_log(dir.path(), total).await?;
    let systems = [
        ("chronicle read_all", {
            let store = store.clone();
            unit_op(move || read_log(store.clone(), total))
        }),
        ("relay → InMemoryBus", {
            let store = store.clone();
            unit_op(move || relay_all(store.clone(), total))
        }),
    ];
    let mut rates = interleave_units(cfg, &systems).await?.into_iter();
    let rates = Rates {
        baseline: rates.next().unwrap_or_default(),
        chronicle: rates.next().unwrap_or_default(),
    };
    Ok(vec![info_row(
        &format!("relay_sqlite_to_bus ({} events)", fmt_rate(total as f64)),
        "events/s",
        &rates,
    )])
}

const WORKLOADS: &[&str] = &[
    "bus_publish_sync",
    "bus_publish_buffered",
    "relay_sqlite_to_bus",
];

async fn run_workload(cfg: &Config, name: &str) -> Res<Vec<Row>> {
    match name {
        "bus_publish_sync" => bus_publish_sync(cfg).await,
        "bus_publish_buffered" => bus_publish_buffered(cfg).await,
        "relay_sqlite_to_bus" => relay_sqlite_to_bus(cfg).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

fn main() -> Res<()> {
    harness::run("chronicle bus benchmarks", WORKLOADS, run_workload)
}
