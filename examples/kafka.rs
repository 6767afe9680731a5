//! The bank's events leaving a SQLite store for Kafka: a relay follows the log from a
//! checkpoint and sends each committed event through `KafkaSink` (an idempotent
//! producer, keyed by the account's stream), and a `KafkaBus` consumer group reads them
//! back, committing each offset after its handler succeeded.
//!
//! With `KAFKA_BROKERS` set (`host:port,…`) it uses that cluster; without it, it starts
//! librdkafka's mock cluster in this process (a Kafka-protocol broker for tests, not a
//! real one) and says so.
//!
//! Run it with `cargo run --features kafka --example kafka`.

#[path = "shared/bank.rs"]
mod bank;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bank::{BankAccount, Command, transfer};
use chronicle::Store;
use chronicle::bus::{Bus, Delivery, KafkaBus, KafkaSink, StartFrom, Subscribe, Topic};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The topic of this run: `<prefix>bank_account`, the accounts' stream category.
    let prefix = format!("chronicle-example-{}.", uuid::Uuid::now_v7().simple());
    let topic = format!("{prefix}bank_account");
    let (_mock, brokers) = match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) => {
            println!("Kafka at {brokers} (KAFKA_BROKERS)");
            (None, brokers)
        }
        Err(_) => {
            let mock = rdkafka::mocking::MockCluster::new(1)?;
            mock.create_topic(&topic, 3, 1)?;
            let brokers = mock.bootstrap_servers();
            println!(
                "KAFKA_BROKERS is not set: using librdkafka's in-process mock cluster at {brokers}"
            );
            (Some(mock), brokers)
        }
    };

    let dir = tempfile::tempdir()?;
    let store = Store::open(format!("sqlite://{}", dir.path().join("bank.db").display())).await?;
    let accounts = store.repository::<BankAccount>();
    for (id, owner, deposit) in [("ada", "Ada Lovelace", 100), ("bob", "Bob Babbage", 20)] {
        let owner = owner.to_owned();
        accounts.execute(id, Command::Open { owner }).await?;
        accounts.execute(id, Command::Deposit(deposit)).await?;
    }

    // The relay: every event of the store, each stream category to its topic.
    let sink = KafkaSink::builder(&brokers).topic_prefix(&prefix).build()?;
    let relay = store
        .relay("bank-to-kafka")
        .start_from(StartFrom::Beginning)
        .source("examples/kafka")
        .spawn(sink.clone());

    // Another service: a consumer group on the topic.
    let bus = KafkaBus::builder(&brokers)
        .topic(Topic::category().prefixed(&prefix))
        .subscribe_topics([&topic])
        .build()?;
    let handled = Arc::new(AtomicU64::new(0));
    let audit = {
        let handled = Arc::clone(&handled);
        bus.subscribe(
            Subscribe::to("bank.*").group(format!("{prefix}audit")),
            move |delivery: Delivery| {
                let handled = Arc::clone(&handled);
                async move {
                    println!(
                        "  {:<22} {:<10} {}",
                        delivery.event_type,
                        delivery.subject.as_deref().unwrap_or("?"),
                        String::from_utf8_lossy(delivery.data_json())
                    );
                    handled.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            },
        )
        .await?
    };

    println!("the audit group reads:");
    transfer(&accounts, "ada", "bob", 70).await?;
    relay.wait_for_idle().await?;
    let sent = relay.stats().published;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while handled.load(Ordering::Relaxed) < sent {
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the group handled {} of {sent} events",
                handled.load(Ordering::Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    audit.close().await?;
    relay.stop().await?;
    bus.close().await?;

    let sink_health = chronicle::bus::EventSink::health(&sink);
    println!(
        "relay sent {sent} events to `{topic}` (connected: {}); the group handled {}, committed on close",
        sink_health.connected,
        handled.load(Ordering::Relaxed)
    );
    Ok(())
}
