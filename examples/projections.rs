//! A live read model on the SQLite default: a `balances` table kept by a projection, in
//! the same database as the events, so each batch's rows and its checkpoint commit
//! together (exactly-once). Then more history is written and the read model is rebuilt
//! from the start of the log, with a progress bar.
//!
//! Run it with `cargo run --example projections` (add `-- 200000` for a longer rebuild).

use std::time::Duration;

use chronicle::{
    ExpectedVersion, NewEvent, Projection, ProjectionContext, ProjectionError, ProjectionState,
    RecordedEvent, Store,
};
use serde_json::json;

/// Keeps `balances (account, balance)` from deposits and withdrawals.
struct Balances;

#[async_trait::async_trait]
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
        let amount = event.json()?["amount"].as_i64().ok_or("no amount")?;
        let delta = if event.event_type == "bank.Withdrawn" {
            -amount
        } else {
            amount
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

async fn print_balances(store_path: &str) -> Result<(), Box<dyn std::error::Error>> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(store_path).await?;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT account, balance FROM balances ORDER BY account")
            .fetch_all(&mut conn)
            .await?;
    for (account, balance) in rows {
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

    // History written before the projection starts: it catches up first.
    for (account, amount) in [("account-ada", 100), ("account-bob", 20)] {
        store
            .append(
                account,
                ExpectedVersion::Any,
                vec![NewEvent::new("bank.Deposited", json!({ "amount": amount }))],
            )
            .await?;
    }
    let balances = store
        .projections()
        .poll_interval(Duration::from_millis(200))
        .spawn(Balances);
    balances.wait_for_idle().await?;
    println!("caught up:");
    print_balances(&url).await?;

    // Then it follows live appends.
    store
        .append(
            "account-ada",
            ExpectedVersion::Any,
            vec![NewEvent::new("bank.Withdrawn", json!({ "amount": 70 }))],
        )
        .await?;
    store
        .append(
            "account-bob",
            ExpectedVersion::Any,
            vec![NewEvent::new("bank.Deposited", json!({ "amount": 70 }))],
        )
        .await?;
    balances.wait_for_idle().await?;
    println!("after a transfer of 70 from ada to bob:");
    print_balances(&url).await?;

    let status = balances.stop().await;
    println!(
        "stopped at {} after applying {} events",
        status.position, status.applied
    );

    // More history, then a rebuild of the read model from the start of the log.
    let deposits: u64 = match std::env::args().nth(1) {
        Some(count) => count.parse()?,
        None => 20_000,
    };
    for first in (0..deposits).step_by(100) {
        let events = (first..deposits.min(first + 100))
            .map(|_| NewEvent::new("bank.Deposited", json!({ "amount": 1 })))
            .collect();
        let account = format!("account-{}", first / 100 % 50);
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
    let status = rebuild.stop().await;
    let (accounts, total): (i64, i64) = {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await?;
        sqlx::query_as("SELECT count(*), sum(balance) FROM balances")
            .fetch_one(&mut conn)
            .await?
    };
    println!(
        "rebuilt from {} events: {accounts} accounts holding {total} in all",
        status.applied
    );
    Ok(())
}
