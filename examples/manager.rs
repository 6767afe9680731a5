//! One manager runs and watches everything, on the SQLite default (no server): it opens
//! the store a configuration file names, runs a projection, the outbox and a relay into an
//! in-process bus, prints its stats and health, and closes in order.
//!
//! Run it with `cargo run --features config --example manager`.

#[path = "shared/bank.rs"]
mod bank;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bank::{BankAccount, Command, transfer};
use chronicle::bus::{Bus, Delivery, InMemoryBus, StartFrom};
use chronicle::manager::{Manager, ManagerConfig};
use chronicle::{
    Handler, HandlerMap, HandlerRequest, Projection, ProjectionContext, ProjectionError,
    RecordedEvent,
};

/// Counts the bank's events (in memory: the point here is the manager).
#[derive(Clone, Default)]
struct EventCount(Arc<AtomicU64>);

impl Projection for EventCount {
    fn name(&self) -> &str {
        "event-count"
    }

    async fn apply(
        &self,
        _event: &RecordedEvent,
        _ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("chronicle-manager-example");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("chronicle.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"default = "bank"

[providers.bank]
url = "sqlite://{}?mode=rwc"

[settings]
retry_attempts = 5
retry_delay = "100ms"
operation_timeout = "10s"
snapshot_threshold = 20

[health]
projection_lag_events = 1000
"#,
            dir.join("bank.db").display()
        ),
    )?;

    // The configuration file (plus CHRONICLE_… variables) → the manager.
    let manager = Manager::from_config(ManagerConfig::load(&config_path)?).await?;
    let store = manager.default()?;
    let accounts = manager.repository::<BankAccount>("bank")?;
    for (id, owner) in [("ada", "Ada Lovelace"), ("bob", "Bob Babbage")] {
        accounts
            .execute(
                id,
                Command::Open {
                    owner: owner.into(),
                },
            )
            .await?;
        accounts.execute(id, Command::Deposit(100)).await?;
    }

    // What runs in the background, handed to the manager.
    let count = EventCount::default();
    manager.run("bank", store.projections().spawn(count.clone()))?;
    let outbox = store
        .outbox(HandlerMap::new().route(Handler::new(
            "welcome-email",
            "bank.Opened",
            |request: HandlerRequest| async move {
                println!("  email: welcome to {}", request.event.stream_id);
                Ok(())
            },
        )))?
        // Every account's email, including those opened before the outbox first ran.
        .start_from(chronicle::StartFrom::Beginning);
    manager.run("bank", (outbox.clone(), outbox.cooperative().spawn()))?;
    let bus = InMemoryBus::new();
    bus.subscribe("bank.*", |delivery: Delivery| async move {
        println!("  bus: {} on {:?}", delivery.event_type, delivery.subject);
        Ok(())
    })
    .await?
    .detach();
    let relay = store
        .relay("bank-to-bus")
        .start_from(StartFrom::Beginning)
        .to_bus(bus.clone());
    relay.wait_for_idle().await?;
    manager.run("bank", relay)?;
    manager.add_bus("local", bus)?;

    transfer(&accounts, "ada", "bob", 30).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stats = manager.stats().await;
    println!("stats: {}", serde_json::to_string_pretty(&stats)?);
    let health = manager.health().await;
    println!("health: {}", health.status.as_str());
    for component in &health.components {
        println!(
            "  {} {}: {} {}",
            component.kind,
            component.name,
            component.status.as_str(),
            component.reason.as_deref().unwrap_or_default()
        );
    }

    let report = manager.close(Duration::from_secs(10)).await;
    println!("closed: {:?}", report.stopped);
    if !report.is_clean() {
        return Err(format!("did not close cleanly: {report:?}").into());
    }
    println!(
        "events counted by the projection: {}",
        count.0.load(Ordering::Relaxed)
    );
    Ok(())
}
