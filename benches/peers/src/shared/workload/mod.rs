//! The workloads, written once against [`Bank`], the face every system shows the benchmark:
//! execute a command as the library does, load an account as the library does, append a
//! written history through the library's store, and (where the library has one) catch a
//! projection up and report its bytes on disk.
//!
//! A workload has phases: [`setup`] writes its data (untimed, once per run), [`run`]
//! measures one round and checks what it measured. Peer processes run one phase per
//! process; chronicle's side runs them in the driver's process.
//!
//! Conflicts: chronicle retries a conflicting command itself; the peers return
//! [`Outcome::Conflict`] and [`execute_retrying`] sends the command again (a fresh load and
//! decision), as their documentation asks the caller to.
//!
//! - [`commands`]: the throughput and contention workloads, and the check of final states.
//! - [`histories`]: written histories, the load workloads, the log of the catch-up and
//!   storage workloads.
//! - [`footprint`]: bytes on disk.

pub mod commands;
pub mod footprint;
pub mod histories;

pub use commands::{Check, Tally, verify_by_loading};
pub use footprint::{PG_FOOTPRINT_SQL, SQLITE_CHECKPOINT_SQL, pg_footprint, sqlite_footprint};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::bank::{Account, Change, Command};
use super::record::{Message, Record};
use super::settings::{Phase, Settings, Workload};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, BoxError>;

/// Sends of one command before a run of conflicts counts as a failure.
const MAX_ATTEMPTS: u32 = 1000;

/// What a command came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written, after this many conflicts the library retried itself.
    Done { retries: u32 },
    /// Refused by the domain (nothing written).
    Refused,
    /// Another writer got there first; nothing written.
    Conflict,
}

/// An account as a load returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The stream's version as the library reports it (disintegrate, whose versions are
    /// global event ids, reports the events applied).
    pub version: u64,
    pub account: Account,
}

/// A catch-up of the whole log by a projection.
#[derive(Debug, Clone)]
pub struct Caught {
    pub events: u64,
    /// The sum of the balance changes the projection saw.
    pub sum: i64,
    pub elapsed: Duration,
    pub detail: String,
}

/// Bytes on disk and what they are made of.
#[derive(Debug, Clone)]
pub struct Footprint {
    pub bytes: u64,
    pub detail: String,
}

/// One system under test.
pub trait Bank: Send + Sync + 'static {
    /// Runs one command on `account` as the library runs commands.
    fn execute(&self, account: &str, command: Command)
    -> impl Future<Output = Res<Outcome>> + Send;

    /// Loads `account` as the library loads for a command (caches bypassed).
    fn load(&self, account: &str) -> impl Future<Output = Res<Option<Loaded>>> + Send;

    /// Appends `changes` to `account`, which holds `version` events, through the library's
    /// store (no command).
    fn append(
        &self,
        account: &str,
        version: u64,
        changes: Vec<Change>,
    ) -> impl Future<Output = Res<()>> + Send;

    /// Makes the next loads of `account` start from a snapshot of its current state. By
    /// default one load, which is when disintegrate stores its snapshots (cqrs-es stores
    /// them as it commits).
    fn snapshot(&self, account: &str) -> impl Future<Output = Res<()>> + Send {
        async move { self.load(account).await.map(|_| ()) }
    }

    /// Checks the final state of every account of a command workload; by default by
    /// loading each one.
    fn verify(&self, tallies: Vec<Tally>) -> impl Future<Output = Res<Check>> + Send {
        async move { verify_by_loading(self, tallies).await }
    }

    /// Readies the projection of [`Bank::catch_up`] once the log is written (untimed).
    fn prepare_catch_up(&self) -> impl Future<Output = Res<()>> + Send {
        async { Ok(()) }
    }

    /// A projection of the library catching up on the whole log of `events` events from
    /// its start, as a projection never run before (`round` makes its name new).
    fn catch_up(&self, _round: u32, _events: u64) -> impl Future<Output = Res<Caught>> + Send {
        async { Err("no projection catch-up".into()) }
    }

    /// Bytes on disk of everything the system stored.
    fn footprint(&self) -> impl Future<Output = Res<Footprint>> + Send {
        async { Err("no footprint".into()) }
    }

    /// Closes the system's pools (at the end of a phase).
    fn close(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Sends `command` until it is written or refused, counting the conflicts on the way.
pub async fn execute_retrying<B: Bank>(
    bank: &B,
    account: &str,
    command: &Command,
) -> Res<(Outcome, u32)> {
    let mut conflicts = 0;
    while conflicts < MAX_ATTEMPTS {
        match bank.execute(account, command.clone()).await? {
            Outcome::Conflict => conflicts += 1,
            done @ Outcome::Done { retries } => return Ok((done, conflicts + retries)),
            Outcome::Refused => return Ok((Outcome::Refused, conflicts)),
        }
    }
    Err(format!("{command:?} on {account}: {MAX_ATTEMPTS} conflicts in a row").into())
}

// ---------------------------------------------------------------------------------------
// Phases

/// Writes what `workload` needs before its rounds; returns a line for the log.
pub async fn setup<B: Bank>(bank: &B, settings: &Settings, workload: &Workload) -> Res<String> {
    match workload {
        Workload::Throughput | Workload::ShortThroughput | Workload::Contention => {
            Ok("empty store".to_owned())
        }
        Workload::Load(_) | Workload::SnapshotLoad(_) => {
            histories::setup_load(bank, settings, workload).await
        }
        Workload::CatchUp => {
            let written = histories::setup_log(bank, settings, settings.catchup_events).await?;
            bank.prepare_catch_up().await?;
            Ok(written)
        }
        Workload::Storage => histories::setup_log(bank, settings, settings.storage_events).await,
    }
}

/// Measures round `round` of `workload` on `system`.
pub async fn run<B: Bank>(
    bank: &Arc<B>,
    settings: &Settings,
    workload: &Workload,
    system: &str,
    round: u32,
) -> Res<Record> {
    let measured = match workload {
        Workload::Throughput | Workload::ShortThroughput | Workload::Contention => {
            commands::measure(bank, settings, workload, round).await?
        }
        Workload::Load(_) | Workload::SnapshotLoad(_) => {
            histories::measure_loads(bank.as_ref(), settings, workload).await?
        }
        Workload::CatchUp => histories::measure_catch_up(bank.as_ref(), settings, round).await?,
        Workload::Storage => histories::measure_footprint(bank.as_ref(), settings).await?,
    };
    Ok(Record::new(
        &settings.run,
        system,
        &workload.name(),
        round,
        measured,
    ))
}

/// Runs the set-up or run `phase` of `workload` on `bank` (a system opened for it) and
/// closes it: the answer a peer process prints, and what the driver gets in-process.
pub async fn serve<B: Bank>(
    bank: B,
    settings: &Settings,
    workload: &Workload,
    system: &str,
    phase: Phase,
    round: u32,
) -> Res<Message> {
    let bank = Arc::new(bank);
    let message = match phase {
        Phase::Setup => setup(bank.as_ref(), settings, workload)
            .await
            .map(|detail| Message::Ready { detail }),
        Phase::Run => run(&bank, settings, workload, system, round)
            .await
            .map(|record| Message::Measured { record }),
        Phase::Teardown => Ok(Message::Done),
    };
    bank.close().await;
    message
}
