//! A live read model beside the bank example: a `balances` table kept by a projection
//! from the bank's typed events, in the same database as the events, so each batch's rows
//! and its checkpoint commit together (exactly-once). The projection creates its table
//! in its `setup` hook and writes it with portable SQL (`ctx.execute(Sql::new(…))`): the
//! same statements run on SQLite and PostgreSQL, through the store's own connections
//! (on PostgreSQL, in the store's schema). The application reads it with
//! `store.fetch_all`. Then more history is written and the read model is rebuilt from the
//! start of the log, with a progress bar.
//!
//! Run it with `cargo run --example projections` (a SQLite file; add `-- 200000` for a
//! longer rebuild), or on PostgreSQL with
//! `CHRONICLE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --example projections`
//! (in a schema `projections_example`, emptied first).

#[path = "shared/bank.rs"]
mod bank;

use std::time::Duration;

use bank::{AccountEvent, BankAccount, Command, transfer};
use chronicle::{
    DomainEvent, ExpectedVersion, Projection, ProjectionContext, ProjectionError, ProjectionState,
    RecordedEvent, Sql, Store,
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

    /// The table, created in the store's database before the first batch (every start:
    /// hence `IF NOT EXISTS`).
    async fn setup(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
        ctx.execute(
            "CREATE TABLE IF NOT EXISTS balances \
             (account TEXT PRIMARY KEY, balance BIGINT NOT NULL)",
        )
        .await?;
        Ok(())
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
        // `$n` placeholders on both backends.
        ctx.execute(
            Sql::new(
                "INSERT INTO balances (account, balance) VALUES ($1, $2) \
                 ON CONFLICT (account) DO UPDATE SET balance = balances.balance + $2",
            )
            .bind(event.stream_id.as_str())
            .bind(delta),
        )
        .await?;
        Ok(())
    }

    /// A rebuild starts from an empty table.
    async fn reset(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
        ctx.execute("DELETE FROM balances").await?;
        Ok(())
    }
}

/// The read model, as the application reads it: through the store, on either backend.
async fn balances(store: &Store) -> chronicle::Result<Vec<(String, i64)>> {
    store
        .fetch_all("SELECT account, balance FROM balances ORDER BY account")
        .await?
        .iter()
        .map(|row| Ok((row.get("account")?, row.get("balance")?)))
        .collect()
}

async fn print_balances(store: &Store) -> chronicle::Result<()> {
    for (account, balance) in balances(store).await? {
        println!("  {account}: {balance}");
    }
    Ok(())
}

/// A fresh store: a new SQLite file, or a PostgreSQL schema emptied first.
async fn open_store() -> Result<Store, Box<dyn std::error::Error>> {
    if let Ok(url) = std::env::var("CHRONICLE_URL") {
        let schema = "projections_example";
        let store = Store::builder(url.as_str()).schema(schema).open().await?;
        #[cfg(feature = "postgres")]
        if let Some(pool) = store.postgres_pool() {
            // Start from nothing: drop what an earlier run left, then open again.
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(pool)
                .await?;
            store.close().await;
            return Ok(Store::builder(url.as_str()).schema(schema).open().await?);
        }
        return Ok(store);
    }
    let path = std::env::temp_dir().join("chronicle-projections.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(Store::open(format!("sqlite://{}", path.display())).await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = open_store().await?;
    println!("on {}", store.backend_kind());
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
    print_balances(&store).await?;

    // Then it follows live commands: a transfer is a withdrawal and a deposit.
    transfer(&accounts, "ada", "bob", 70).await?;
    projection.wait_for_idle().await?;
    println!("after a transfer of 70 from ada to bob:");
    print_balances(&store).await?;
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
    let rebuilt = balances(&store).await?;
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
