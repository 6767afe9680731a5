//! chronicle's aggregate benchmarks: loading an aggregate (from its events alone, and from
//! a snapshot plus a short tail) and executing commands, each beside a baseline measured in
//! the same run and interleaved with it for a few rounds, reporting medians (the method of
//! `benches/core.rs`, whose machinery is shared in `benches/harness/mod.rs`).
//!
//! ```text
//! cargo bench --bench aggregates                      # everything, 5 s per system per round
//! cargo bench --bench aggregates -- agg_load_snapshot # only workloads whose name contains this
//! CHRONICLE_BENCH_SECS=1 CHRONICLE_BENCH_QUICK=1 cargo bench --bench aggregates   # smoke run
//! ```
//!
//! Environment: `CHRONICLE_PG_URL`, `CHRONICLE_BENCH_SECS`, `CHRONICLE_BENCH_ROUNDS` and
//! `CHRONICLE_BENCH_QUICK` as in `benches/core.rs`, and:
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `CHRONICLE_BENCH_AGG_EVENTS` | `10000` (quick: `1000`) | events of a loaded aggregate, and the version of its snapshot |
//!
//! The aggregate is a bank account (opened, then deposits with a withdrawal every tenth
//! event; payloads of about 65 bytes of JSON). Streams are written with `Store::append` in
//! batches, so only the measured operations go through the repository. Every load checks
//! the version, the snapshot it started from, the number of events replayed and the state
//! it built, and fails the workload on any difference.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chronicle::{Aggregate, AggregateType, DomainEvent, ExpectedVersion, Repository, Store};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use uuid::Uuid;

use harness::{
    Config, Met, Rates, Res, Row, Schemas, fmt_rate, interleave, interleave_systems, median, op,
    ratio_row, raw_pg_insert_one, replay_raw_pg, replay_raw_sqlite, replay_row, sqlite_reader,
    sqlite_url, with_schemas,
};

/// Events per append when an account's history is written.
const FILL_BATCH: u64 = 1000;
/// Events after the snapshot in the snapshot workloads.
const SNAPSHOT_TAIL: u64 = 50;
/// Events of a loaded aggregate (default 10,000; quick: 1,000).
const AGG_EVENTS_ENV: &str = "CHRONICLE_BENCH_AGG_EVENTS";
/// Concurrent clients of `agg_execute_pg`, each with an aggregate of its own.
const CLIENTS: u32 = 8;

// ---------------------------------------------------------------------------------------
// The aggregate

#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "account.")]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64, reference: Uuid },
    Withdrawn { amount: u64, reference: Uuid },
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "account", event = AccountEvent)]
struct Account {
    owner: Option<String>,
    balance: u64,
    /// Events applied: a load that skips or repeats one shows here.
    applied: u64,
}

#[derive(Debug)]
enum AccountCommand {
    Open { owner: String },
    Deposit { amount: u64, reference: Uuid },
    Withdraw { amount: u64, reference: Uuid },
}

#[derive(Debug, thiserror::Error)]
enum AccountError {
    #[error("the account is not open")]
    NotOpen,
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("balance {balance} does not cover {requested}")]
    InsufficientFunds { balance: u64, requested: u64 },
}

impl Aggregate for Account {
    type Command = AccountCommand;
    type Error = AccountError;

    fn apply(&mut self, event: AccountEvent) {
        self.applied += 1;
        match event {
            AccountEvent::Opened { owner } => self.owner = Some(owner),
            AccountEvent::Deposited { amount, .. } => self.balance += amount,
            AccountEvent::Withdrawn { amount, .. } => self.balance -= amount,
        }
    }

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open { .. } if self.owner.is_some() => Err(AccountError::AlreadyOpen),
            AccountCommand::Open { owner } => Ok(vec![AccountEvent::Opened {
                owner: owner.clone(),
            }]),
            _ if self.owner.is_none() => Err(AccountError::NotOpen),
            AccountCommand::Deposit { amount, reference } => Ok(vec![AccountEvent::Deposited {
                amount: *amount,
                reference: *reference,
            }]),
            AccountCommand::Withdraw { amount, .. } if *amount > self.balance => {
                Err(AccountError::InsufficientFunds {
                    balance: self.balance,
                    requested: *amount,
                })
            }
            AccountCommand::Withdraw { amount, reference } => Ok(vec![AccountEvent::Withdrawn {
                amount: *amount,
                reference: *reference,
            }]),
        }
    }
}

fn deposit() -> AccountCommand {
    AccountCommand::Deposit {
        amount: 100,
        reference: Uuid::now_v7(),
    }
}

// ---------------------------------------------------------------------------------------
// Histories and checked loads

/// The event at `version` of every benchmark account: opened, then deposits, with a
/// withdrawal at every tenth version.
fn history_event(version: u64) -> AccountEvent {
    let reference = Uuid::now_v7();
    match version {
        1 => AccountEvent::Opened {
            owner: "Ada Lovelace".to_owned(),
        },
        v if v % 10 == 0 => AccountEvent::Withdrawn {
            amount: 50,
            reference,
        },
        v => AccountEvent::Deposited {
            amount: 100 + v % 900,
            reference,
        },
    }
}

/// The state of a benchmark account at `version`, folded in memory.
fn state_at(version: u64) -> Account {
    let mut account = Account::default();
    for v in 1..=version {
        account.apply(history_event(v));
    }
    account
}

/// Writes versions `from..=to` of account `id` with `Store::append`, `FILL_BATCH` events
/// per append.
async fn write_history(repo: &Repository<Account>, id: &str, from: u64, to: u64) -> Res<()> {
    let started = Instant::now();
    let stream = repo.stream_id(id)?;
    let mut version = from - 1;
    while version < to {
        let last = (version + FILL_BATCH).min(to);
        let events = (version + 1..=last)
            .map(|v| history_event(v).to_new_event())
            .collect::<Result<Vec<_>, _>>()?;
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        version = repo
            .store()
            .append(stream.as_str(), expected, events)
            .await?
            .next_expected_version();
    }
    eprintln!(
        "  wrote versions {}..={} of `{stream}` in {:.1} s",
        fmt_rate(from as f64),
        fmt_rate(to as f64),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What a load of one account must return.
#[derive(Debug)]
struct Expected {
    id: &'static str,
    version: u64,
    snapshot_version: Option<u64>,
    replayed: u64,
    state: Account,
}

impl Expected {
    fn new(id: &'static str, version: u64, snapshot_version: Option<u64>) -> Arc<Self> {
        Arc::new(Expected {
            id,
            version,
            snapshot_version,
            replayed: version - snapshot_version.unwrap_or(0),
            state: state_at(version),
        })
    }
}

/// `repo.load` of the expected account, failing unless it returns exactly the expected
/// version, snapshot, replay count and state; returns the events replayed.
async fn load_checked(repo: &Repository<Account>, expected: &Expected) -> Res<u64> {
    let loaded = repo
        .load(expected.id)
        .await?
        .ok_or_else(|| format!("load of account-{}: no such stream", expected.id))?;
    let got = (loaded.version, loaded.from_snapshot, loaded.replayed);
    let want = (
        expected.version,
        expected.snapshot_version,
        expected.replayed,
    );
    if got != want || loaded.state != expected.state {
        return Err(format!(
            "load of account-{}: (version, snapshot_version, replayed) = {got:?}, expected \
             {want:?}; state {:?}, expected {:?}",
            expected.id, loaded.state, expected.state
        )
        .into());
    }
    Ok(loaded.replayed)
}

/// Applies a raw row to `state`, as a hand-written load would.
fn apply_raw(state: &mut Account, event_type: &str, payload: &[u8]) -> Res<()> {
    state.apply(AccountEvent::decode(event_type, payload)?);
    Ok(())
}

/// Fails unless a raw load read every event and built the expected state.
fn check_raw(count: u64, state: &Account, expected: &Expected) -> Res<u64> {
    if count != expected.version || *state != expected.state {
        return Err(format!(
            "raw load of account-{}: {count} rows, expected {}; state {state:?}, expected {:?}",
            expected.id, expected.version, expected.state
        )
        .into());
    }
    Ok(count)
}

/// The ceiling of `load` on SQLite: one streamed SELECT of the stream, decoded and
/// applied row by row.
async fn raw_load_sqlite(pool: &SqlitePool, expected: &Expected) -> Res<u64> {
    let mut state = Account::default();
    let stream = format!("{}-{}", Account::NAME, expected.id);
    let count = replay_raw_sqlite(pool, &stream, |event_type, payload| {
        apply_raw(&mut state, event_type, payload)
    })
    .await?;
    check_raw(count, &state, expected)
}

/// The ceiling of `load` on PostgreSQL: one streamed SELECT of the stream, decoded and
/// applied row by row.
async fn raw_load_pg(pool: &PgPool, expected: &Expected) -> Res<u64> {
    let mut state = Account::default();
    let stream = format!("{}-{}", Account::NAME, expected.id);
    let count = replay_raw_pg(pool, &stream, |event_type, payload| {
        apply_raw(&mut state, event_type, payload)
    })
    .await?;
    check_raw(count, &state, expected)
}

// ---------------------------------------------------------------------------------------
// Workloads

/// Interleaves `raw` (a raw load of `expected`'s account) with `repo.load` of it; both
/// report the events they read.
async fn interleave_loads<R, RFut>(
    cfg: &Config,
    repo: Repository<Account>,
    expected: Arc<Expected>,
    raw: R,
) -> Res<Rates>
where
    R: Fn(Arc<Expected>) -> RFut + Send + Sync + 'static,
    RFut: Future<Output = Res<u64>> + Send + 'static,
{
    let raw_expected = Arc::clone(&expected);
    interleave(
        cfg,
        ("raw SELECT + apply", "chronicle load"),
        1,
        move |_| raw(Arc::clone(&raw_expected)),
        move |_| {
            let (repo, expected) = (repo.clone(), Arc::clone(&expected));
            async move { load_checked(&repo, &expected).await }
        },
    )
    .await
}

fn load_workload(name: &str, backend: &str, events: u64) -> String {
    format!(
        "{name}: {backend}, load of an aggregate of {} events, no snapshot (events replayed/s)",
        fmt_rate(events as f64)
    )
}

/// 1a. SQLite file: `load` of a 10,000-event aggregate without a snapshot.
async fn agg_load_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let events = cfg.size(AGG_EVENTS_ENV, 10_000)?;
    let dir = tempfile::tempdir()?;
    let url = sqlite_url(dir.path(), "load.db");
    let store = Store::open(url.clone()).await?;
    let repo = store.repository::<Account>().snapshot_every(0);
    write_history(&repo, "load", 1, events).await?;
    let raw = sqlite_reader(&url).await?;
    let rates = interleave_loads(cfg, repo, Expected::new("load", events, None), move |e| {
        let raw = raw.clone();
        async move { raw_load_sqlite(&raw, &e).await }
    })
    .await?;
    Ok(vec![replay_row(
        &load_workload("agg_load_sqlite", "SQLite", events),
        &rates,
    )])
}

/// 1b. PostgreSQL: `load` of a 10,000-event aggregate without a snapshot.
async fn agg_load_pg(cfg: &Config) -> Res<Vec<Row>> {
    let events = cfg.size(AGG_EVENTS_ENV, 10_000)?;
    let rates = with_schemas(cfg, async |schemas: &mut Schemas| {
        let store = schemas.store("agg_load", 2, |b| b).await?;
        let repo = store.repository::<Account>().snapshot_every(0);
        write_history(&repo, "load", 1, events).await?;
        let schema = schemas.names.last().cloned().unwrap_or_default();
        let raw = schemas.pool_on(&schema, 2).await?;
        interleave_loads(cfg, repo, Expected::new("load", events, None), move |e| {
            let raw = raw.clone();
            async move { raw_load_pg(&raw, &e).await }
        })
        .await
    })
    .await?;
    Ok(vec![replay_row(
        &load_workload("agg_load_pg", "PostgreSQL", events),
        &rates,
    )])
}

/// Writes two accounts of `events + SNAPSHOT_TAIL` events, `full` without a snapshot and
/// `snap` with one at `events`, then interleaves their loads (1 unit per load).
async fn interleave_snapshot_loads(
    cfg: &Config,
    repo: Repository<Account>,
    events: u64,
) -> Res<Rates> {
    let total = events + SNAPSHOT_TAIL;
    write_history(&repo, "full", 1, total).await?;
    write_history(&repo, "snap", 1, events).await?;
    let covered = repo.create_snapshot("snap").await?;
    if covered != Some(events) {
        return Err(format!("create_snapshot covered {covered:?}, expected {events}").into());
    }
    write_history(&repo, "snap", events + 1, total).await?;
    let full = Expected::new("full", total, None);
    let snap = Expected::new("snap", total, Some(events));
    let snap_repo = repo.clone();
    interleave(
        cfg,
        ("load without snapshot", "load from snapshot"),
        1,
        move |_| {
            let (repo, expected) = (repo.clone(), Arc::clone(&full));
            async move { load_checked(&repo, &expected).await.map(|_| 1) }
        },
        move |_| {
            let (repo, expected) = (snap_repo.clone(), Arc::clone(&snap));
            async move { load_checked(&repo, &expected).await.map(|_| 1) }
        },
    )
    .await
}

fn snapshot_row(name: &str, backend: &str, events: u64, rates: &Rates) -> Row {
    let total = fmt_rate((events + SNAPSHOT_TAIL) as f64);
    let speedup = rates.ratio();
    Row {
        workload: format!(
            "{name}: {backend}, load of a {total}-event aggregate, snapshot at {} vs none",
            fmt_rate(events as f64)
        ),
        chronicle: format!(
            "snapshot + {SNAPSHOT_TAIL} events: {} loads/s",
            fmt_rate(median(&rates.chronicle))
        ),
        baseline: format!(
            "no snapshot, {total} events: {} loads/s",
            fmt_rate(median(&rates.baseline))
        ),
        ratio: format!("{speedup:.0}×"),
        target: "≥ 50× faster than without".to_owned(),
        met: Met::from(speedup >= 50.0),
    }
}

/// 2a. SQLite file: `load` from a snapshot plus a 50-event tail, against a full replay.
async fn agg_load_snapshot_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let events = cfg.size(AGG_EVENTS_ENV, 10_000)?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(sqlite_url(dir.path(), "snapshot.db")).await?;
    let repo = store.repository::<Account>().snapshot_every(0);
    let rates = interleave_snapshot_loads(cfg, repo, events).await?;
    Ok(vec![snapshot_row(
        "agg_load_snapshot_sqlite",
        "SQLite",
        events,
        &rates,
    )])
}

/// 2b. PostgreSQL: `load` from a snapshot plus a 50-event tail, against a full replay.
async fn agg_load_snapshot_pg(cfg: &Config) -> Res<Vec<Row>> {
    let events = cfg.size(AGG_EVENTS_ENV, 10_000)?;
    let rates = with_schemas(cfg, async |schemas: &mut Schemas| {
        let store = schemas.store("agg_snapshot", 2, |b| b).await?;
        let repo = store.repository::<Account>().snapshot_every(0);
        interleave_snapshot_loads(cfg, repo, events).await
    })
    .await?;
    Ok(vec![snapshot_row(
        "agg_load_snapshot_pg",
        "PostgreSQL",
        events,
        &rates,
    )])
}

/// Workload 3, PostgreSQL: `execute` (a deposit) by 8 clients, each on an aggregate of its
/// own, default repository settings; raw single-row INSERTs and chronicle's plain 1-event
/// `append` to 8 existing streams in the same rounds.
async fn agg_execute_pg(cfg: &Config) -> Res<Vec<Row>> {
    let rates = with_schemas(cfg, async |schemas: &mut Schemas| {
        let raw = schemas.raw("agg_execute_raw", CLIENTS).await?;
        let store = schemas.store("agg_execute", CLIENTS, |b| b).await?;
        let repo = store.repository::<Account>();
        let ids: Arc<Vec<String>> = Arc::new((0..CLIENTS).map(|c| format!("client-{c}")).collect());
        let streams: Arc<Vec<String>> = Arc::new(
            (0..CLIENTS)
                .map(|c| format!("{}-append-{c}", Account::NAME))
                .collect(),
        );
        // The version of each client's plain-append stream.
        let versions: Arc<Vec<AtomicU64>> =
            Arc::new((0..CLIENTS).map(|_| AtomicU64::new(1)).collect());
        for (id, stream) in ids.iter().zip(streams.iter()) {
            let open = AccountCommand::Open {
                owner: format!("owner of {id}"),
            };
            // Opened once, and through every command, before the timed deposits.
            repo.execute(id, open).await?;
            repo.execute(id, deposit()).await?;
            let withdraw = AccountCommand::Withdraw {
                amount: 50,
                reference: Uuid::now_v7(),
            };
            repo.execute(id, withdraw).await?;
            let opened = history_event(1).to_new_event()?;
            store
                .append(stream.as_str(), ExpectedVersion::NoStream, vec![opened])
                .await?;
        }
        let systems = [
            (
                "raw INSERT",
                op(move |_| {
                    let raw = raw.clone();
                    async move { raw_pg_insert_one(&raw).await }
                }),
            ),
            (
                "chronicle execute",
                op(move |client| {
                    let (repo, ids) = (repo.clone(), Arc::clone(&ids));
                    async move {
                        let done = repo.execute(&ids[client], deposit()).await?;
                        if done.attempts != 1 || done.events.len() != 1 {
                            return Err(format!(
                                "execute on account-{}: {} attempts, {} events; expected 1 and 1",
                                ids[client],
                                done.attempts,
                                done.events.len()
                            )
                            .into());
                        }
                        Ok(1)
                    }
                }),
            ),
            (
                "chronicle append",
                op(move |client| {
                    let (store, streams, versions) =
                        (store.clone(), Arc::clone(&streams), Arc::clone(&versions));
                    async move {
                        let event = AccountEvent::Deposited {
                            amount: 100,
                            reference: Uuid::now_v7(),
                        }
                        .to_new_event()?;
                        // Each client is one task at a time: its version is its own.
                        let version = versions[client].load(Ordering::Relaxed);
                        let written = store
                            .append(
                                streams[client].as_str(),
                                ExpectedVersion::Exact(version),
                                vec![event],
                            )
                            .await?;
                        versions[client].store(written.next_expected_version(), Ordering::Relaxed);
                        Ok(1)
                    }
                }),
            ),
        ];
        interleave_systems(cfg, CLIENTS as usize, &systems).await
    })
    .await?;
    let [raw, execute, append] = <[Vec<f64>; 3]>::try_from(rates)
        .map_err(|rates| format!("expected 3 systems' rates, got {}", rates.len()))?;
    let execute_rates = Rates {
        baseline: raw.clone(),
        chronicle: execute,
    };
    let append_rates = Rates {
        baseline: raw,
        chronicle: append,
    };
    let execute_share = median(&execute_rates.chronicle) / median(&append_rates.chronicle);
    Ok(vec![
        Row {
            chronicle: format!("{} commands/s", fmt_rate(median(&execute_rates.chronicle))),
            baseline: format!("{} appends/s", fmt_rate(median(&execute_rates.baseline))),
            ..ratio_row(
                "agg_execute_pg: PostgreSQL, execute (deposit) on 8 aggregates, 8 clients, \
                 default settings (cache on)",
                "",
                &execute_rates,
                0.60,
                "≥ 60% of raw single-row INSERT",
            )
        },
        Row {
            target: format!("— (execute runs at {:.0}% of this)", execute_share * 100.0),
            met: Met::Info,
            ..ratio_row(
                "agg_execute_pg (same rounds): PostgreSQL, store.append of 1 event \
                 (Exact version) to 8 existing streams, 8 writers",
                "appends/s",
                &append_rates,
                0.0,
                "",
            )
        },
    ])
}

// ---------------------------------------------------------------------------------------
// Main

const WORKLOADS: &[&str] = &[
    "agg_load_sqlite",
    "agg_load_pg",
    "agg_load_snapshot_sqlite",
    "agg_load_snapshot_pg",
    "agg_execute_pg",
];

async fn run_workload(cfg: &Config, name: &str) -> Res<Vec<Row>> {
    match name {
        "agg_load_sqlite" => agg_load_sqlite(cfg).await,
        "agg_load_pg" => agg_load_pg(cfg).await,
        "agg_load_snapshot_sqlite" => agg_load_snapshot_sqlite(cfg).await,
        "agg_load_snapshot_pg" => agg_load_snapshot_pg(cfg).await,
        "agg_execute_pg" => agg_execute_pg(cfg).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

fn main() -> Res<()> {
    harness::run("chronicle aggregate benchmarks", WORKLOADS, run_workload)
}
