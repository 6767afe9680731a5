//! The command workloads: clients sending commands to sequences of accounts (one sequence
//! per client for throughput, one for all clients for contention), and the check that
//! every account loads as the commands that were written say it must.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};

use super::{Bank, BoxError, Loaded, Outcome, Res, execute_retrying};
use crate::shared::bank::{self, Account, Command};
use crate::shared::record::{Better, Measured};
use crate::shared::settings::{Settings, Workload};

/// Concurrent loads when final states are checked.
const CHECKERS: usize = 8;

/// One account of a command workload and what the commands on it did.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub account: String,
    pub deposits: u64,
    pub withdrawals: u64,
    pub refused: u64,
    pub retries: u64,
}

impl Tally {
    /// Successful commands, the opening included.
    pub fn commands(&self) -> u64 {
        1 + self.deposits + self.withdrawals
    }

    /// The version and state the account must have.
    pub fn expected(&self) -> (u64, Account) {
        let events = self.commands();
        let account = Account {
            open: true,
            balance: self.deposits * bank::DEPOSIT - self.withdrawals * bank::WITHDRAWAL,
            events,
        };
        (events, account)
    }
}

/// What a check of final states found.
#[derive(Debug, Clone)]
pub struct Check {
    pub correct: bool,
    /// Accounts found in the wrong state.
    pub wrong: u64,
    pub detail: String,
}

/// Loads every account and compares it with its tally; lists the first mismatches.
pub async fn verify_by_loading<B: Bank + ?Sized>(bank: &B, tallies: Vec<Tally>) -> Res<Check> {
    let accounts = tallies.len();
    let mut wrong: Vec<String> = futures::stream::iter(tallies)
        .map(|tally| async move {
            let (version, account) = tally.expected();
            let want = Loaded { version, account };
            let got = bank.load(&tally.account).await?;
            Ok::<_, BoxError>(match got {
                Some(got) if got == want => None,
                got => Some(format!(
                    "{}: loaded {got:?}, expected {want:?}",
                    tally.account
                )),
            })
        })
        .buffer_unordered(CHECKERS)
        .try_filter_map(|mismatch| async move { Ok(mismatch) })
        .try_collect()
        .await?;
    let correct = wrong.is_empty();
    let wrong_count = wrong.len() as u64;
    let detail = if correct {
        format!("all {accounts} accounts load with the expected version and balance")
    } else {
        let count = wrong.len();
        wrong.truncate(3);
        format!(
            "{count} of {accounts} accounts WRONG (lost or repeated updates): {}",
            wrong.join("; ")
        )
    };
    Ok(Check {
        correct,
        wrong: wrong_count,
        detail,
    })
}

/// A sequence of accounts that one or more clients work on: each takes `stream_len`
/// commands, then a fresh account is opened and the clients move to it.
struct Group {
    prefix: String,
    stream_len: u64,
    inner: Mutex<GroupInner>,
}

#[derive(Default)]
struct GroupInner {
    accounts: Vec<Tally>,
    /// Commands handed out on the newest account.
    issued: u64,
    /// A client is opening the next account.
    opening: bool,
}

enum Step {
    Open(String),
    Command(usize, String, Command),
    /// The first account is being opened.
    Wait,
}

impl Group {
    fn new(prefix: String, stream_len: u64) -> Arc<Group> {
        Arc::new(Group {
            prefix,
            stream_len,
            inner: Mutex::new(GroupInner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GroupInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next(&self) -> Step {
        let mut inner = self.lock();
        let newest = inner.accounts.len();
        if !inner.opening && (newest == 0 || inner.issued >= self.stream_len) {
            inner.opening = true;
            return Step::Open(format!("{}-{newest}", self.prefix));
        }
        if newest == 0 {
            return Step::Wait;
        }
        let n = inner.issued;
        inner.issued += 1;
        let account = inner.accounts[newest - 1].account.clone();
        Step::Command(newest - 1, account, bank::command_at(n))
    }

    fn opened(&self, account: String, retries: u32) {
        let mut inner = self.lock();
        inner.accounts.push(Tally {
            account,
            retries: u64::from(retries),
            ..Tally::default()
        });
        inner.issued = 0;
        inner.opening = false;
    }

    fn record(&self, index: usize, command: &Command, outcome: Outcome, retries: u32) {
        let mut inner = self.lock();
        let tally = &mut inner.accounts[index];
        tally.retries += u64::from(retries);
        match (outcome, command) {
            (Outcome::Done { .. }, Command::Deposit { .. }) => tally.deposits += 1,
            (Outcome::Done { .. }, Command::Withdraw { .. }) => tally.withdrawals += 1,
            _ => tally.refused += 1,
        }
    }

    fn tallies(&self) -> Vec<Tally> {
        self.lock().accounts.clone()
    }
}

/// One command of a client of `group`; returns 1 when it was written.
async fn client_step<B: Bank>(bank: &B, group: &Group) -> Res<u64> {
    match group.next() {
        Step::Wait => {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(0)
        }
        Step::Open(account) => {
            let open = Command::Open {
                owner: bank::owner(&account),
            };
            match execute_retrying(bank, &account, &open).await {
                Ok((Outcome::Done { .. }, retries)) => {
                    group.opened(account, retries);
                    Ok(1)
                }
                Ok((outcome, _)) => Err(format!("opening {account}: {outcome:?}").into()),
                Err(error) => Err(error),
            }
        }
        Step::Command(index, account, command) => {
            let (outcome, retries) = execute_retrying(bank, &account, &command).await?;
            group.record(index, &command, outcome, retries);
            Ok(u64::from(matches!(outcome, Outcome::Done { .. })))
        }
    }
}

/// What a command window did.
struct Commands {
    written: u64,
    elapsed: Duration,
    tallies: Vec<Tally>,
}

/// Runs `clients` clients for `window`, client `i` working on group `i % groups.len()`.
/// A command still running when the time is up finishes and counts.
async fn run_commands<B: Bank>(
    bank: &Arc<B>,
    groups: &[Arc<Group>],
    clients: usize,
    window: Duration,
) -> Res<Commands> {
    let started = Instant::now();
    let deadline = started + window;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let bank = Arc::clone(bank);
            let group = Arc::clone(&groups[client % groups.len()]);
            tokio::spawn(async move {
                let mut written = 0;
                while Instant::now() < deadline {
                    written += client_step(bank.as_ref(), &group).await?;
                }
                Ok::<u64, BoxError>(written)
            })
        })
        .collect();
    let mut written = 0;
    for task in tasks {
        written += task.await??;
    }
    let elapsed = started.elapsed();
    Ok(Commands {
        written,
        elapsed,
        tallies: groups.iter().flat_map(|group| group.tallies()).collect(),
    })
}

/// The groups of a command workload: one per client (throughput) or one for all
/// (contention).
fn groups(settings: &Settings, workload: &Workload, tag: &str) -> Vec<Arc<Group>> {
    let count = match workload {
        Workload::Contention => 1,
        _ => settings.clients,
    };
    (0..count)
        .map(|g| Group::new(format!("{tag}-g{g}"), settings.stream_len_of(workload)))
        .collect()
}

/// A warm-up window, then a timed window of commands, then a check of every account.
pub(super) async fn measure<B: Bank>(
    bank: &Arc<B>,
    settings: &Settings,
    workload: &Workload,
    round: u32,
) -> Res<Measured> {
    let warm = groups(settings, workload, &format!("w{round}"));
    run_commands(bank, &warm, settings.clients, settings.warmup()).await?;
    let timed = groups(settings, workload, &format!("r{round}"));
    let commands = run_commands(bank, &timed, settings.clients, settings.window()).await?;
    let tallies = commands.tallies;
    let retries: u64 = tallies.iter().map(|t| t.retries).sum();
    let refused: u64 = tallies.iter().map(|t| t.refused).sum();
    let accounts = tallies.len();
    let check = bank.verify(tallies).await?;
    let counts = BTreeMap::from([
        ("commands".to_owned(), commands.written),
        ("conflicts".to_owned(), retries),
        ("refused".to_owned(), refused),
        ("accounts".to_owned(), accounts as u64),
        ("wrong".to_owned(), check.wrong),
    ]);
    Ok(Measured {
        value: commands.written as f64 / commands.elapsed.as_secs_f64(),
        unit: "commands/s",
        better: Better::Higher,
        p99_ms: None,
        correct: check.correct,
        counts,
        detail: format!(
            "{} commands written on {accounts} accounts in {:.1} s, {retries} conflicts \
             retried, {refused} refused; {}",
            commands.written,
            commands.elapsed.as_secs_f64(),
            check.detail
        ),
    })
}
