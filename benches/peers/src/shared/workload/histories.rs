//! Written histories and what reads them: the load workloads (an account of N events,
//! with or without a snapshot) and the log of the catch-up and storage workloads.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};

use super::{Bank, Loaded, Res, execute_retrying};
use crate::shared::bank::{self, Change, Command};
use crate::shared::record::{Better, Measured};
use crate::shared::settings::{Settings, Workload};

/// The account of the load workloads.
pub const LOAD_ACCOUNT: &str = "load";
/// Events per append when a history is written.
const APPEND_CHUNK: u64 = 1000;
/// Concurrent writers of a log.
const LOG_WRITERS: usize = 4;

/// Writes versions `1..=events` of `account`'s history, `APPEND_CHUNK` events per append.
async fn write_history<B: Bank + ?Sized>(bank: &B, account: &str, events: u64) -> Res<()> {
    let mut version = 0;
    while version < events {
        let last = (version + APPEND_CHUNK).min(events);
        bank.append(account, version, bank::history(account, version + 1, last))
            .await?;
        version = last;
    }
    Ok(())
}

/// The state the load workloads' account must load as.
fn load_expectation(settings: &Settings, workload: &Workload) -> Res<Loaded> {
    let (events, tail) = match *workload {
        Workload::Load(events) => (events, 0),
        Workload::SnapshotLoad(events) => (events, settings.snapshot_tail),
        other => return Err(format!("{} is not a load workload", other.name()).into()),
    };
    let mut account = bank::history_state(LOAD_ACCOUNT, events);
    for _ in 0..tail {
        account.apply(&Change::Deposited {
            amount: bank::DEPOSIT,
        });
    }
    Ok(Loaded {
        version: events + tail,
        account,
    })
}

async fn load_checked<B: Bank>(bank: &B, expected: &Loaded) -> Res<()> {
    match bank.load(LOAD_ACCOUNT).await? {
        Some(loaded) if loaded == *expected => Ok(()),
        loaded => Err(format!("load returned {loaded:?}, expected {expected:?}").into()),
    }
}

/// Writes the load workloads' account; for snapshot loads, takes the snapshot and adds the
/// tail of single deposits through commands.
pub(super) async fn setup_load<B: Bank>(
    bank: &B,
    settings: &Settings,
    workload: &Workload,
) -> Res<String> {
    let events = match *workload {
        Workload::Load(events) | Workload::SnapshotLoad(events) => events,
        _ => 0,
    };
    write_history(bank, LOAD_ACCOUNT, events).await?;
    if let Workload::SnapshotLoad(_) = workload {
        bank.snapshot(LOAD_ACCOUNT).await?;
        let deposit = Command::Deposit {
            amount: bank::DEPOSIT,
        };
        for _ in 0..settings.snapshot_tail {
            execute_retrying(bank, LOAD_ACCOUNT, &deposit).await?;
        }
    }
    let expected = load_expectation(settings, workload)?;
    load_checked(bank, &expected).await?;
    Ok(format!("account of {} events written", expected.version))
}

/// Loads for the warm-up, then for the load window, every load checked; the median and
/// 99th percentile of the timed ones.
pub(super) async fn measure_loads<B: Bank>(
    bank: &B,
    settings: &Settings,
    workload: &Workload,
) -> Res<Measured> {
    let expected = load_expectation(settings, workload)?;
    let warm_until = Instant::now() + settings.warmup();
    while Instant::now() < warm_until {
        load_checked(bank, &expected).await?;
    }
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < settings.load_window() || latencies.len() < 5 {
        let load = Instant::now();
        load_checked(bank, &expected).await?;
        latencies.push(load.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
    Ok(Measured {
        value: percentile(&latencies, 0.50),
        unit: "ms",
        better: Better::Lower,
        p99_ms: Some(percentile(&latencies, 0.99)),
        correct: true,
        counts: BTreeMap::from([("loads".to_owned(), latencies.len() as u64)]),
        detail: format!(
            "{} loads of {} events, mean {mean:.2} ms, each checked (version {}, balance {})",
            latencies.len(),
            expected.version,
            expected.version,
            expected.account.balance
        ),
    })
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Events per account of a log of `events` over `settings.log_accounts` accounts.
fn per_account(settings: &Settings, events: u64) -> u64 {
    events.div_ceil(settings.log_accounts.max(1))
}

/// The log of the catch-up and storage workloads: `log_accounts` accounts with a written
/// history each, `LOG_WRITERS` accounts at a time.
pub(super) async fn setup_log<B: Bank>(bank: &B, settings: &Settings, events: u64) -> Res<String> {
    let started = Instant::now();
    let each = per_account(settings, events);
    futures::stream::iter(0..settings.log_accounts)
        .map(|a| async move { write_history(bank, &format!("log-{a}"), each).await })
        .buffer_unordered(LOG_WRITERS)
        .try_collect::<()>()
        .await?;
    Ok(format!(
        "log of {} accounts × {each} events written in {:.1} s",
        settings.log_accounts,
        started.elapsed().as_secs_f64()
    ))
}

/// The events of the log and the sum of their balance changes.
fn log_expectation(settings: &Settings, events: u64) -> (u64, i64) {
    let each = per_account(settings, events);
    let sum: i64 = bank::history("log-0", 1, each)
        .iter()
        .map(Change::delta)
        .sum();
    let accounts = settings.log_accounts;
    (accounts * each, sum * accounts as i64)
}

pub(super) async fn measure_catch_up<B: Bank>(
    bank: &B,
    settings: &Settings,
    round: u32,
) -> Res<Measured> {
    let (events, sum) = log_expectation(settings, settings.catchup_events);
    let caught = bank.catch_up(round, events).await?;
    let correct = caught.events == events && caught.sum == sum;
    Ok(Measured {
        value: caught.events as f64 / caught.elapsed.as_secs_f64(),
        unit: "events/s",
        better: Better::Higher,
        p99_ms: None,
        correct,
        counts: BTreeMap::from([("events".to_owned(), caught.events)]),
        detail: format!(
            "{} events (expected {events}), sum {} (expected {sum}) in {:.2} s; {}",
            caught.events,
            caught.sum,
            caught.elapsed.as_secs_f64(),
            caught.detail
        ),
    })
}

pub(super) async fn measure_footprint<B: Bank>(bank: &B, settings: &Settings) -> Res<Measured> {
    let footprint = bank.footprint().await?;
    let (events, _) = log_expectation(settings, settings.storage_events);
    Ok(Measured {
        value: footprint.bytes as f64 / events as f64,
        unit: "B/event",
        better: Better::Lower,
        p99_ms: None,
        correct: true,
        counts: BTreeMap::from([
            ("bytes".to_owned(), footprint.bytes),
            ("events".to_owned(), events),
        ]),
        detail: format!(
            "{} bytes for {events} events: {}",
            footprint.bytes, footprint.detail
        ),
    })
}
