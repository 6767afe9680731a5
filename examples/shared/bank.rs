//! The bank of the examples (`bank.rs`, `projections.rs`): accounts that open, take
//! deposits and withdrawals, and transfers between two accounts.
//!
//! A transfer touches two aggregates, and each command is its own transaction, so it runs
//! as a small saga: withdraw from the source, deposit into the target, and if the deposit
//! is refused, put the money back. All three commands carry the transfer's correlation id,
//! so the log shows which events belong together.

use chronicle::{Aggregate, CommandError, DomainEvent, EventMetadata, Repository};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "bank.")]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "bank_account", event = AccountEvent, snapshot_every = 50)]
pub struct BankAccount {
    pub owner: Option<String>,
    pub balance: u64,
}

#[derive(Debug)]
pub enum Command {
    Open { owner: String },
    Deposit(u64),
    Withdraw(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("insufficient funds: balance {balance}, asked {asked}")]
    InsufficientFunds { balance: u64, asked: u64 },
}

impl Aggregate for BankAccount {
    type Command = Command;
    type Error = BankError;

    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner = Some(owner),
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }

    fn handle(&self, command: &Command) -> Result<Vec<AccountEvent>, BankError> {
        match (command, &self.owner) {
            (Command::Open { .. }, Some(_)) => Err(BankError::AlreadyOpen),
            (Command::Open { owner }, None) => Ok(vec![AccountEvent::Opened {
                owner: owner.clone(),
            }]),
            (_, None) => Err(BankError::NotOpen),
            (Command::Deposit(amount), _) => Ok(vec![AccountEvent::Deposited { amount: *amount }]),
            (Command::Withdraw(asked), _) if *asked > self.balance => {
                Err(BankError::InsufficientFunds {
                    balance: self.balance,
                    asked: *asked,
                })
            }
            (Command::Withdraw(amount), _) => Ok(vec![AccountEvent::Withdrawn { amount: *amount }]),
        }
    }
}

pub type BankResult<T> = Result<T, CommandError<BankError>>;

/// Moves `amount` from one account to another: withdraw, deposit, and put the money back
/// if the deposit is refused.
pub async fn transfer(
    accounts: &Repository<BankAccount>,
    from: &str,
    to: &str,
    amount: u64,
) -> BankResult<()> {
    let transfer_id = uuid::Uuid::now_v7().to_string();
    let metadata = EventMetadata {
        correlation_id: Some(transfer_id),
        ..EventMetadata::default()
    };
    accounts
        .execute_with(from, Command::Withdraw(amount), metadata.clone())
        .await?;
    if let Err(error) = accounts
        .execute_with(to, Command::Deposit(amount), metadata.clone())
        .await
    {
        accounts
            .execute_with(from, Command::Deposit(amount), metadata)
            .await?;
        return Err(error);
    }
    Ok(())
}
