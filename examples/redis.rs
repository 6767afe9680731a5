//! The bank's events leaving a SQLite store for Redis Streams, and read back through a
//! consumer group: a relay follows the log and appends each committed event to the
//! stream of its category (`bank_account`) with a `RedisSink`; a `RedisBus` subscriber
//! in group `ledger` prints what arrives. The keys live under a prefix of their own and
//! are deleted at the end.
//!
//! Needs Redis at `CHRONICLE_REDIS_URL` (default `redis://127.0.0.1:6379`); start one with
//! `redis-server --save "" --appendonly no`. Run it with
//! `cargo run --all-features --example redis`.

#[path = "shared/bank.rs"]
mod bank;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bank::{BankAccount, Command, transfer};
use chronicle::Store;
use chronicle::bus::redis::{GroupStart, RedisBus, RedisSink};
use chronicle::bus::{Bus, Delivery, StartFrom, Subscribe};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("CHRONICLE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("chronicle-example:{}:", uuid::Uuid::now_v7().simple());
    let dir = tempfile_dir()?;
    let store = Store::open(format!("sqlite://{}", dir.join("events.db").display())).await?;
    let accounts = store.repository::<BankAccount>();
    for (id, owner, deposit) in [("ada", "Ada Lovelace", 100), ("bob", "Bob Babbage", 20)] {
        let owner = owner.to_owned();
        accounts.execute(id, Command::Open { owner }).await?;
        accounts.execute(id, Command::Deposit(deposit)).await?;
    }

    // The consumer side: group `ledger` on the `bank_account` stream, from its start.
    let bus = RedisBus::builder(url.clone())
        .prefix(prefix.clone())
        .streams(["bank_account"])
        .group_start(GroupStart::Beginning)
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

    // The relay: the store's log into Redis, one pipeline of XADDs per batch.
    let sink = RedisSink::builder(url.clone())
        .prefix(prefix.clone())
        .maxlen(10_000)
        .build()
        .await?;
    println!("relay → {prefix}bank_account → group `ledger`:");
    let relay = store
        .relay("bank-to-redis")
        .start_from(StartFrom::Beginning)
        .source("examples/redis")
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

    // Tidy up: the example's stream and its consumer group.
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}bank_account"))
        .query_async(&mut conn)
        .await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A fresh directory for the SQLite file.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("chronicle-redis-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
