//! A bank on the SQLite default: accounts that open, take deposits and withdrawals, and
//! transfers between two accounts as a small saga (the domain is in `shared/bank.rs`).
//!
//! Run it with `cargo run --example bank`.

#[path = "shared/bank.rs"]
mod bank;

use bank::{BankAccount, Command, transfer};
use chronicle::{CommandError, Repository, Store};

async fn balance(accounts: &Repository<BankAccount>, id: &str) -> chronicle::Result<u64> {
    Ok(accounts
        .load(id)
        .await?
        .map_or(0, |loaded| loaded.state.balance))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("chronicle-bank.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = Store::open(format!("sqlite://{}", path.display())).await?;
    let accounts = store.repository::<BankAccount>();

    for (id, owner) in [("ada", "Ada Lovelace"), ("bob", "Bob Babbage")] {
        accounts
            .execute(
                id,
                Command::Open {
                    owner: owner.into(),
                },
            )
            .await?;
    }
    accounts.execute("ada", Command::Deposit(100)).await?;
    accounts.execute("bob", Command::Deposit(20)).await?;
    println!("opened: ada 100, bob 20");

    transfer(&accounts, "ada", "bob", 70).await?;
    println!(
        "transferred 70 from ada to bob: ada {}, bob {}",
        balance(&accounts, "ada").await?,
        balance(&accounts, "bob").await?
    );

    match transfer(&accounts, "ada", "bob", 500).await {
        Err(CommandError::Domain(error)) => println!("transfer of 500 refused: {error}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    match transfer(&accounts, "bob", "carol", 10).await {
        Err(CommandError::Domain(error)) => {
            println!("transfer to carol refused ({error}); the money went back to bob")
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    let (ada, bob) = (
        balance(&accounts, "ada").await?,
        balance(&accounts, "bob").await?,
    );
    println!("final balances: ada {ada}, bob {bob} (total {})", ada + bob);
    assert_eq!(ada + bob, 120, "transfers never create or lose money");
    Ok(())
}
