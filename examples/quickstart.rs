//! The quickstart: an aggregate on a SQLite file. Derive `DomainEvent` on the events and
//! `Aggregate` on the state, write the domain logic, then execute commands and load.
//!
//! Run it with `cargo run --example quickstart`; it needs no server.

use chronicle::{Aggregate, CommandError, DomainEvent, Store};
use serde::{Deserialize, Serialize};

/// What can happen to an account. Stored as `account.Deposited` with payload
/// `{"amount":100}`, and so on.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "account.")]
enum AccountEvent {
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

/// The account's state, rebuilt from its events (and snapshotted every 100 of them).
#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "account", event = AccountEvent, snapshot_every = 100)]
struct Account {
    balance: u64,
}

/// What callers ask an account to do.
#[derive(Debug)]
enum Command {
    Deposit(u64),
    Withdraw(u64),
}

#[derive(Debug, thiserror::Error)]
enum AccountError {
    #[error("insufficient funds: balance {balance}, asked {asked}")]
    InsufficientFunds { balance: u64, asked: u64 },
}

impl Aggregate for Account {
    type Command = Command;
    type Error = AccountError;

    // How an event changes the state.
    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }

    // How a command becomes events, or is refused.
    fn handle(&self, command: &Command) -> Result<Vec<AccountEvent>, AccountError> {
        match *command {
            Command::Deposit(amount) => Ok(vec![AccountEvent::Deposited { amount }]),
            Command::Withdraw(asked) if asked > self.balance => {
                Err(AccountError::InsufficientFunds {
                    balance: self.balance,
                    asked,
                })
            }
            Command::Withdraw(amount) => Ok(vec![AccountEvent::Withdrawn { amount }]),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("chronicle-quickstart.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = Store::open(format!("sqlite://{}", path.display())).await?;
    println!("opened {}", path.display());

    let accounts = store.repository::<Account>();
    accounts.execute("ada", Command::Deposit(100)).await?;
    let done = accounts.execute("ada", Command::Withdraw(30)).await?;
    println!(
        "account-ada is at version {} with balance {}",
        done.version, done.state.balance
    );

    // A refused command writes nothing and comes back typed.
    match accounts.execute("ada", Command::Withdraw(500)).await {
        Err(CommandError::Domain(error)) => println!("refused: {error}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }

    // Loading replays the stream (from the newest snapshot, when there is one).
    let loaded = accounts
        .load("ada")
        .await?
        .ok_or("account-ada is missing")?;
    println!(
        "loaded account-ada: balance {} at version {} ({} events replayed)",
        loaded.state.balance, loaded.version, loaded.replayed
    );
    Ok(())
}
