//! A small application built with only the dependencies README tells a new user to add:
//! an aggregate, a read model in the store's own SQLite database created and written by a
//! projection (its `setup` hook and portable SQL, which would run unchanged on
//! PostgreSQL), and a read of that model by the application through the store.
//!
//! `cargo run -p chronicle-app-example` runs it; it needs no server.

use chronicle::futures::TryStreamExt;
use chronicle::{
    Aggregate, DomainEvent, Projection, ProjectionContext, ProjectionError, RecordedEvent, Sql,
    Store,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "account.")]
enum AccountEvent {
    Deposited { amount: u64 },
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "account", event = AccountEvent)]
struct Account {
    balance: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("deposits must be positive")]
struct ZeroDeposit;

impl Aggregate for Account {
    type Command = u64;
    type Error = ZeroDeposit;

    fn apply(&mut self, event: AccountEvent) {
        let AccountEvent::Deposited { amount } = event;
        self.balance += amount;
    }

    fn handle(&self, amount: &u64) -> Result<Vec<AccountEvent>, ZeroDeposit> {
        match *amount {
            0 => Err(ZeroDeposit),
            amount => Ok(vec![AccountEvent::Deposited { amount }]),
        }
    }
}

/// The read model: one row per account with its deposits' total, in the store's database,
/// committed with the projection's checkpoint.
struct Totals;

impl Projection for Totals {
    fn name(&self) -> &str {
        "totals"
    }

    /// The table, in the store's database (every start: `IF NOT EXISTS`).
    async fn setup(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
        ctx.execute(
            "CREATE TABLE IF NOT EXISTS totals \
             (stream TEXT PRIMARY KEY, total BIGINT NOT NULL, last_event UUID NOT NULL)",
        )
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let amount = event.json()?["amount"].as_i64().unwrap_or_default();
        // Portable SQL: the same statement on SQLite and PostgreSQL.
        ctx.execute(
            Sql::new(
                "INSERT INTO totals (stream, total, last_event) VALUES ($1, $2, $3) \
                 ON CONFLICT (stream) DO UPDATE SET total = totals.total + $2, last_event = $3",
            )
            .bind(event.stream_id.as_str())
            .bind(amount)
            .bind(event.id),
        )
        .await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        std::env::temp_dir().join(format!("chronicle-app-{}", chronicle::uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("app.db").display());
    let store = Store::open(url.as_str()).await?;

    let accounts = store.repository::<Account>();
    accounts.execute("ada", 100).await?;
    accounts.execute("ada", 20).await?;

    let projection = store.projections().spawn(Totals);
    let events: Vec<RecordedEvent> = store
        .read_all(chronicle::LogPosition::START)
        .try_collect()
        .await?;
    let last = events.last().ok_or("no events")?;
    let expected = chronicle::serde_json::json!({ "amount": 20 });
    assert_eq!(last.json()?, expected);

    // Wait until the projection has applied the last event (its setup hook created the
    // table before that), then read the model.
    projection.wait_until(last.log_position()).await?;
    let row = store
        .fetch_optional(
            Sql::new("SELECT total, last_event FROM totals WHERE stream = $1").bind("account-ada"),
        )
        .await?
        .ok_or("no row for account-ada")?;
    assert_eq!(row.get::<chronicle::uuid::Uuid>("last_event")?, last.id);
    let total: i64 = row.get("total")?;
    projection.stop().await?;
    println!("account-ada has {total} in deposits");
    assert_eq!(total, 120);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
