//! The bank's events leaving a SQLite store for NATS JetStream, and coming back through a
//! `NatsBus` subscription in the same program: the relay follows the log and publishes
//! each committed event to `<prefix>.<event type>` (acknowledged by the stream, with
//! `Nats-Msg-Id` = the event id); a durable pull consumer hands them to a handler.
//!
//! Needs `nats-server -js` at `CHRONICLE_NATS_URL` (default `nats://127.0.0.1:4222`).
//! Run it with `cargo run --features nats --example nats`. It uses a prefix and stream of
//! its own and deletes the stream before it exits.

#[path = "shared/bank.rs"]
mod bank;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bank::{BankAccount, Command, transfer};
use chronicle::Store;
use chronicle::bus::nats::{NatsBus, NatsSink};
use chronicle::bus::{Bus, Delivery, StartFrom, Subscribe, Topic};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("CHRONICLE_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let dir = tempfile::tempdir()?;
    let store = Store::open(format!(
        "sqlite://{}",
        dir.path().join("events.db").display()
    ))
    .await?;
    let accounts = store.repository::<BankAccount>();
    for (id, owner, deposit) in [("ada", "Ada Lovelace", 100), ("bob", "Bob Babbage", 20)] {
        let owner = owner.to_owned();
        accounts.execute(id, Command::Open { owner }).await?;
        accounts.execute(id, Command::Deposit(deposit)).await?;
    }

    // The bus creates its stream (`<prefix>.>`) when missing; a subscription is a durable
    // consumer that gets what is published from now on.
    let prefix = format!("example-{}", uuid::Uuid::now_v7().simple());
    let bus = NatsBus::builder(&url).prefix(&prefix).build().await?;
    let received = Arc::new(AtomicU64::new(0));
    {
        let received = Arc::clone(&received);
        bus.subscribe(
            Subscribe::to("bank.*").group("printer"),
            move |delivery: Delivery| {
                let received = Arc::clone(&received);
                async move {
                    println!(
                        "  {} {} on {}",
                        delivery.event_type,
                        delivery.json()?,
                        delivery.subject.as_deref().unwrap_or("?")
                    );
                    received.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            },
        )
        .await?
        .detach();
    }

    // The relay: every event to `<prefix>.<event type>`, from the start of the log.
    let sink = NatsSink::builder(&url)
        .subject_prefix(&prefix)
        .client(bus.client().clone())
        .build()
        .await?;
    let relay = store
        .relay("bank-to-nats")
        .topic(Topic::event_type())
        .start_from(StartFrom::Beginning)
        .source("examples/nats")
        .spawn(sink);
    println!("relay catching up, then live commands:");
    relay.wait_for_idle().await?;
    transfer(&accounts, "ada", "bob", 70).await?;
    relay.wait_for_idle().await?;
    let sent = relay.stats().published;
    relay.stop().await?;

    // Wait (bounded) for every event to come back through the subscription.
    for _ in 0..500 {
        if received.load(Ordering::Relaxed) >= sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus.close().await?;
    println!(
        "sent {sent}, received {}; bus {:?}, health {:?}",
        received.load(Ordering::Relaxed),
        bus.stats(),
        bus.health()
    );
    let stream = bus.stream_name().to_owned();
    async_nats::jetstream::new(bus.client().clone())
        .delete_stream(&stream)
        .await?;
    if received.load(Ordering::Relaxed) != sent {
        return Err(format!(
            "{sent} sent but {} received",
            received.load(Ordering::Relaxed)
        )
        .into());
    }
    Ok(())
}
