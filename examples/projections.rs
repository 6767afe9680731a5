//! A live read model beside the bank example, on the SQLite default: a `balances` table
//! kept by a projection from the bank's typed events, in the same database as the events,
//! so each batch's rows and its checkpoint commit together (exactly-once). Then more
//! history is written and the read model is rebuilt from the start of the log, with a
//! progress bar.
//!
//! Run it with `cargo run --example projections` (add `-- 200000` for a longer rebuild).

#[path = "shared/bank.rs"]
mod bank;

use std::time::Duration;

use bank::{AccountEvent, BankAccount, Command, transfer};
use chronicle::{
    DomainEvent, ExpectedVersion, Projection, ProjectionContext, ProjectionError, ProjectionState,
    RecordedEvent, Store,
};

/// Keeps `balances (account, balance)` from the bank's deposits and withdrawals.
struct Balances;

impl Projection for Balances {
    fn name(&self) -> &str {
        "balances"
    }

    fn event_types(&self) -> &[&str] {
        &["bank.Deposited", "bank.Withdrawn"]
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let delta = match ctx.decode::<AccountEvent>(event)? {
            AccountEvent::Deposited { amount } => i64::try_from(amount)?,
            AccountEvent::Withdrawn { amount } => -i64::try_from(amount)?,
            AccountEvent::Opened { .. } => return Ok(()),
        };
        let conn = ctx.sqlite().ok_or("this example runs on SQLite")?;
        sqlx::query(
            "INSERT INTO balances (account, balance) VALUES (?, ?) \
             ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance",
        )
        .bind(event.stream_id.as_str())
        .bind(delta)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// A rebuild starts from an empty table.
    async fn reset(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
        let conn = ctx.sqlite().ok_or("this example runs on SQLite")?;
        sqlx::query("DELETE FROM balances")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// The read model, as a reader outside the projection sees it.
async fn balances(url: &str) -> Result<Vec<(String, i64)>, sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await?;
    sqlx::query_as("SELECT account, balance FROM balances ORDER BY account")
        .fetch_all(&mut conn)
        .await
}

async fn print_balances(url: &str) -> Result<(), sqlx::Error> {
    for (account, balance) in balances(url).await? {
        println!("  {account}: {balance}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("chronicle-projections.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await?;
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await?;
        sqlx::query("CREATE TABLE balances (account TEXT PRIMARY KEY, balance INTEGER NOT NULL)")
            .execute(&mut conn)
            .await?;
    }
    let accounts = store.repository::<BankAccount>();

    // History written before the projection starts: it catches up first.
    for (id, owner, deposit) in [("ada", "Ada Lovelace", 100), ("bob", "Bob Babbage", 20)] {
        let owner = owner.to_owned();
        accounts.execute(id, Command::Open { owner }).await?;
        accounts.execute(id, Command::Deposit(deposit)).await?;
    }
    let projection = store
        .projections()
        .poll_interval(Duration::from_millis(200))
        .spawn(Balances);
    projection.wait_for_idle().await?;
    println!("caught up:");
    print_balances(&url).await?;

    // Then it follows live commands: a transfer is a withdrawal and a deposit.
    transfer(&accounts, "ada", "bob", 70).await?;
    projection.wait_for_idle().await?;
    println!("after a transfer of 70 from ada to bob:");
    print_balances(&url).await?;
    let status = projection.stop().await?;
    println!(
        "stopped at {} after applying {} events",
        status.position, status.applied
    );

    // More history (appended in bulk, as an import would), then a rebuild of the read
    // model from the start of the log.
    let deposits: u64 = match std::env::args().nth(1) {
        Some(count) => count.parse()?,
        None => 20_000,
    };
    for first in (0..deposits).step_by(100) {
        let events = (first..deposits.min(first + 100))
            .map(|_| AccountEvent::Deposited { amount: 1 }.to_new_event())
            .collect::<chronicle::Result<Vec<_>>>()?;
        let account = format!("bank_account-customer{}", first / 100 % 50);
        store.append(&account, ExpectedVersion::Any, events).await?;
    }
    let rebuild = store.projections().rebuild(Balances).await?;
    let bar = indicatif::ProgressBar::new(1).with_style(indicatif::ProgressStyle::with_template(
        "rebuilding {bar:40} {pos}/{len} events, {per_sec}, {eta} left",
    )?);
    loop {
        let status = rebuild.status();
        bar.set_length(status.applied + status.lag_events);
        bar.set_position(status.applied);
        // Caught up (or stopped by an error, which `wait_for_idle` returns).
        if !matches!(
            status.state,
            ProjectionState::Starting | ProjectionState::CatchingUp
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rebuild.wait_for_idle().await?;
    bar.finish();
    let status = rebuild.stop().await?;
    let rebuilt = balances(&url).await?;
    let total: i64 = rebuilt.iter().map(|(_, balance)| balance).sum();
    println!(
        "rebuilt from {} events: {} accounts holding {total} in all",
        status.applied,
        rebuilt.len()
    );
    assert_eq!(
        total,
        120 + i64::try_from(deposits)?,
        "no event lost or doubled"
    );
    Ok(())
}
