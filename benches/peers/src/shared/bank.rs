//! The bank account every system runs: open, deposit, withdraw, with the rules in one place.
//!
//! Each library wraps these in its own traits (cqrs-es and esrs aggregates, a disintegrate
//! decision, a chronicle `#[derive(Aggregate)]`), mapping its events to and from
//! [`Change`]. The histories and command sequences the workloads use are here too, so every
//! system is fed the same events and every final state can be checked against a fold.

use serde::{Deserialize, Serialize};

/// What a deposit command of the command workloads puts in.
pub const DEPOSIT: u64 = 10;
/// What a withdrawal command of the command workloads takes out.
pub const WITHDRAWAL: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Open { owner: String },
    Deposit { amount: u64 },
    Withdraw { amount: u64 },
}

/// An event of the account, in the library-neutral form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl Change {
    /// What the change does to the balance: `+amount`, `-amount`, or 0 for an opening.
    pub fn delta(&self) -> i64 {
        match self {
            Change::Opened { .. } => 0,
            Change::Deposited { amount } => *amount as i64,
            Change::Withdrawn { amount } => -(*amount as i64),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("insufficient funds: balance {balance}, asked {asked}")]
    InsufficientFunds { balance: u64, asked: u64 },
}

/// The account's state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub open: bool,
    pub balance: u64,
    /// Events applied: a load that skips or repeats one shows here.
    pub events: u64,
}

impl Account {
    pub fn apply(&mut self, change: &Change) {
        self.events += 1;
        match change {
            Change::Opened { .. } => self.open = true,
            Change::Deposited { amount } => self.balance += amount,
            Change::Withdrawn { amount } => self.balance = self.balance.saturating_sub(*amount),
        }
    }

    /// The events `command` produces on this state, or why it is refused.
    pub fn decide(&self, command: &Command) -> Result<Vec<Change>, BankError> {
        match command {
            Command::Open { .. } if self.open => Err(BankError::AlreadyOpen),
            Command::Open { owner } => Ok(vec![Change::Opened {
                owner: owner.clone(),
            }]),
            _ if !self.open => Err(BankError::NotOpen),
            Command::Deposit { amount } => Ok(vec![Change::Deposited { amount: *amount }]),
            Command::Withdraw { amount } if *amount > self.balance => {
                Err(BankError::InsufficientFunds {
                    balance: self.balance,
                    asked: *amount,
                })
            }
            Command::Withdraw { amount } => Ok(vec![Change::Withdrawn { amount: *amount }]),
        }
    }
}

/// The owner written into an account's opening event.
pub fn owner(account: &str) -> String {
    format!("owner of {account}")
}

/// The event at `version` of a written history (the load and log workloads): opened, then
/// deposits, with a withdrawal at every tenth version.
pub fn history_change(account: &str, version: u64) -> Change {
    match version {
        1 => Change::Opened {
            owner: owner(account),
        },
        v if v % 10 == 0 => Change::Withdrawn { amount: 50 },
        v => Change::Deposited {
            amount: 100 + v % 900,
        },
    }
}

/// Versions `from..=to` of `account`'s written history.
pub fn history(account: &str, from: u64, to: u64) -> Vec<Change> {
    (from..=to).map(|v| history_change(account, v)).collect()
}

/// The state of a written history at `version`, folded in memory.
pub fn history_state(account: &str, version: u64) -> Account {
    let mut state = Account::default();
    for change in history(account, 1, version) {
        state.apply(&change);
    }
    state
}

/// The `n`-th command (from 0) on an open account in the command workloads: deposits, with
/// a withdrawal every fourth command.
pub fn command_at(n: u64) -> Command {
    if n % 4 == 3 {
        Command::Withdraw { amount: WITHDRAWAL }
    } else {
        Command::Deposit { amount: DEPOSIT }
    }
}
