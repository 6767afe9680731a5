//! The bank's events leaving a SQLite store for RabbitMQ, and read back through a
//! consumer group: a relay follows the log and publishes each committed event to a topic
//! exchange with a `RabbitSink` (publisher confirms: the checkpoint moves only once
//! RabbitMQ confirmed the batch), routed by event type; a `RabbitBus` subscriber in group
//! `ledger` consumes the group's durable queue, bound with `bank.#`, and prints what
//! arrives. The example's exchange and queues are deleted at the end.
//!
//! Needs RabbitMQ at `CHRONICLE_AMQP_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`); start one with
//! `service rabbitmq-server start`. Run it with
//! `cargo run --all-features --example rabbitmq`.

#[path = "shared/bank.rs"]
mod bank;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bank::{BankAccount, Command, transfer};
use chronicle::Store;
use chronicle::bus::rabbitmq::{dead_letter_exchange, dead_letter_queue, queue_name};
use chronicle::bus::{Bus, Delivery, RabbitBus, RabbitSink, StartFrom, Subscribe, Topic};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("CHRONICLE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let exchange = format!("chronicle-example.{}", uuid::Uuid::now_v7().simple());
    let dir = tempfile_dir()?;
    let store = Store::open(format!("sqlite://{}", dir.join("events.db").display())).await?;
    let accounts = store.repository::<BankAccount>();
    for (id, owner, deposit) in [("ada", "Ada Lovelace", 100), ("bob", "Bob Babbage", 20)] {
        let owner = owner.to_owned();
        accounts.execute(id, Command::Open { owner }).await?;
        accounts.execute(id, Command::Deposit(deposit)).await?;
    }

    // The consumer side first: the group's queue must be bound before events are routed
    // (a topic exchange drops what no queue is bound for).
    let bus = RabbitBus::builder(url.clone())
        .exchange(exchange.clone())
        .build()
        .await?;
    let received = Arc::new(AtomicU64::new(0));
    let ledger = {
        let received = Arc::clone(&received);
        bus.subscribe(
            Subscribe::to("bank.*").group("ledger"),
            move |delivery: Delivery| {
                received.fetch_add(1, Ordering::Relaxed);
                async move {
                    println!(
                        "  {:<16} {:<18} {} (delivery {})",
                        delivery.event_type,
                        delivery.subject.as_deref().unwrap_or("?"),
                        String::from_utf8_lossy(delivery.data_json()),
                        delivery.attempt()
                    );
                    Ok(())
                }
            },
        )
        .await?
    };

    // The relay: the store's log into the exchange, routed by event type, confirmed.
    let sink = RabbitSink::builder(url.clone())
        .exchange(exchange.clone())
        .build()
        .await?;
    let queue = queue_name(&exchange, "ledger");
    println!("relay → exchange {exchange} → queue {queue}:");
    let relay = store
        .relay("bank-to-rabbitmq")
        .topic(Topic::event_type())
        .start_from(StartFrom::Beginning)
        .source("examples/rabbitmq")
        .spawn(sink);
    relay.wait_for_idle().await?;
    transfer(&accounts, "ada", "bob", 70).await?;
    relay.wait_for_idle().await?;
    let sent = relay.stats().published;

    // Done when every event sent came through the group.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while received.load(Ordering::Relaxed) < sent {
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "only {} of {sent} events arrived",
                received.load(Ordering::Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.stop().await?;
    ledger.close().await?;
    bus.close().await?;
    println!(
        "sent {sent}, received {}; {:?}",
        received.load(Ordering::Relaxed),
        bus.stats()
    );

    // Tidy up with lapin itself: the group's queues and the exchanges.
    let connection =
        lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    for queue in [dead_letter_queue(&queue), queue] {
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await?;
    }
    for exchange in [dead_letter_exchange(&exchange), exchange] {
        channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await?;
    }
    connection.close(200, "done".into()).await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A fresh directory for the SQLite file.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "chronicle-rabbitmq-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
