//! The bank's events leaving the store for an in-process bus, on the SQLite default (no
//! server): a relay follows the log from a checkpoint and publishes each committed event
//! to an `InMemoryBus`, where handlers subscribed by pattern run from bounded buffers.
//! History written before the relay starts is sent because it is asked to start from the
//! beginning; a restarted relay resumes from its checkpoint and sends nothing twice.
//!
//! Run it with `cargo run --example bus`.

#[path = "shared/bank.rs"]
mod bank;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bank::{BankAccount, Command, transfer};
use chronicle::Store;
use chronicle::bus::{Bus, BusEvent, Delivery, Dispatch, HandlerError, InMemoryBus, StartFrom};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("chronicle-bus.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = Store::open(format!("sqlite://{}", path.display())).await?;
    let accounts = store.repository::<BankAccount>();

    // History written before anything is published.
    for (id, owner, deposit) in [("ada", "Ada Lovelace", 100), ("bob", "Bob Babbage", 20)] {
        let owner = owner.to_owned();
        accounts.execute(id, Command::Open { owner }).await?;
        accounts.execute(id, Command::Deposit(deposit)).await?;
    }

    // The bus: each subscription drains a buffer of its own on a task.
    let bus = InMemoryBus::builder()
        .dispatch(Dispatch::Buffered { capacity: 256 })
        .build();
    let moved = Arc::new(AtomicU64::new(0));
    {
        let moved = Arc::clone(&moved);
        bus.subscribe("bank.*", move |delivery: Delivery| {
            let moved = Arc::clone(&moved);
            async move {
                let amount = delivery.json()?["amount"].as_u64().unwrap_or_default();
                moved.fetch_add(amount, Ordering::Relaxed);
                Ok(())
            }
        })
        .await?
        .detach();
    }
    bus.subscribe("*.Opened", |delivery: Delivery| async move {
        let owner = delivery.json()?["owner"].as_str().unwrap_or("?").to_owned();
        println!(
            "  welcome, {owner} ({})",
            delivery.subject.as_deref().unwrap_or("?")
        );
        if owner.is_empty() {
            return Err(HandlerError::fatal("an account without an owner"));
        }
        Ok(())
    })
    .await?
    .detach();

    // The relay, from the start of the log (the default is "from now on").
    println!("relay catching up:");
    let relay = store
        .relay("bank-to-bus")
        .start_from(StartFrom::Beginning)
        .source("examples/bus")
        .to_bus(bus.clone());
    relay.wait_for_idle().await?;

    // Live commands: published once committed.
    transfer(&accounts, "ada", "bob", 70).await?;
    accounts
        .execute(
            "cy",
            Command::Open {
                owner: "Cy Young".into(),
            },
        )
        .await?;
    relay.wait_for_idle().await?;
    let status = relay.stop().await?;
    println!(
        "relay stopped at {} after {} events; {:?}",
        status.position,
        status.applied,
        bus.stats()
    );

    // A restart resumes from the checkpoint: nothing is sent twice.
    let relay = store
        .relay("bank-to-bus")
        .start_from(StartFrom::Beginning)
        .to_bus(bus.clone());
    relay.wait_for_idle().await?;
    println!("after a restart: {} more sent", relay.stats().published);
    relay.stop().await?;

    // An event that is never stored goes straight to the bus.
    bus.publish(BusEvent::new(
        "bank.Audited",
        serde_json::json!({ "amount": 0 }),
    ))
    .await?;
    bus.close().await?;
    println!(
        "money moved through the bus: {}; {:?}",
        moved.load(Ordering::Relaxed),
        bus.stats()
    );
    Ok(())
}
