//! A bank account, the aggregate the repository tests run commands against.

use chronicle::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "account.")]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
    Closed,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "account", event = AccountEvent, snapshot_every = 10)]
pub struct Account {
    pub owner: Option<String>,
    pub balance: u64,
    pub closed: bool,
    /// Events applied, to catch an event applied twice or skipped.
    pub applied: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AccountCommand {
    Open { owner: String },
    Deposit(u64),
    Withdraw(u64),
    Close,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccountError {
    #[error("the account is not open")]
    NotOpen,
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("balance {balance} does not cover {requested}")]
    InsufficientFunds { balance: u64, requested: u64 },
    #[error("amounts must be positive")]
    ZeroAmount,
}

impl Aggregate for Account {
    type Command = AccountCommand;
    type Error = AccountError;

    fn apply(&mut self, event: AccountEvent) {
        self.applied += 1;
        match event {
            AccountEvent::Opened { owner } => self.owner = Some(owner),
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
            AccountEvent::Closed => self.closed = true,
        }
    }

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        let open = self.owner.is_some() && !self.closed;
        match command {
            AccountCommand::Open { owner } if self.owner.is_none() => {
                Ok(vec![AccountEvent::Opened {
                    owner: owner.clone(),
                }])
            }
            AccountCommand::Open { .. } => Err(AccountError::AlreadyOpen),
            _ if !open => Err(AccountError::NotOpen),
            AccountCommand::Deposit(0) | AccountCommand::Withdraw(0) => {
                Err(AccountError::ZeroAmount)
            }
            AccountCommand::Deposit(amount) => {
                Ok(vec![AccountEvent::Deposited { amount: *amount }])
            }
            AccountCommand::Withdraw(amount) if *amount > self.balance => {
                Err(AccountError::InsufficientFunds {
                    balance: self.balance,
                    requested: *amount,
                })
            }
            AccountCommand::Withdraw(amount) => {
                Ok(vec![AccountEvent::Withdrawn { amount: *amount }])
            }
            AccountCommand::Close if self.balance > 0 => Ok(vec![
                AccountEvent::Withdrawn {
                    amount: self.balance,
                },
                AccountEvent::Closed,
            ]),
            AccountCommand::Close => Ok(vec![AccountEvent::Closed]),
        }
    }
}

/// The account state folded from `events` from scratch: what every load must equal.
pub fn fold(events: impl IntoIterator<Item = AccountEvent>) -> Account {
    let mut account = Account::default();
    for event in events {
        account.apply(event);
    }
    account
}
