//! The quickstart: a SQLite file, two streams, a conflict caught, everything read back.
//!
//! Run it with `cargo run --example quickstart`; it needs no server.

use chronicle::{Direction, Error, ExpectedVersion, LogPosition, NewEvent, Store};
use futures::TryStreamExt;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("chronicle-quickstart.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = Store::open(format!("sqlite://{}", path.display())).await?;
    println!("opened {}", path.display());

    // Two new streams: `NoStream` says "I expect to be the first writer".
    let opened = store
        .append(
            "account-ada",
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new("account.opened", json!({ "owner": "Ada" })),
                NewEvent::new("account.deposited", json!({ "amount": 100 })),
            ],
        )
        .await?;
    println!(
        "account-ada: wrote versions 1..={} at positions {:?}",
        opened.next_expected_version(),
        opened.events.iter().map(|e| e.position).collect::<Vec<_>>()
    );
    store
        .append(
            "account-bob",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("account.opened", json!({ "owner": "Bob" }))],
        )
        .await?;
    println!("account-bob: wrote version 1");

    // Two writers both read version 2 of Ada's account; the second one loses.
    let version = opened.next_expected_version();
    store
        .append(
            "account-ada",
            ExpectedVersion::Exact(version),
            vec![NewEvent::new("account.withdrawn", json!({ "amount": 30 }))],
        )
        .await?;
    match store
        .append(
            "account-ada",
            ExpectedVersion::Exact(version),
            vec![NewEvent::new("account.withdrawn", json!({ "amount": 80 }))],
        )
        .await
    {
        Err(Error::Conflict {
            stream,
            expected,
            actual,
        }) => println!(
            "conflict caught on {stream}: expected {expected}, stream is at {actual:?}; nothing written"
        ),
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }

    println!("account-ada, oldest first:");
    let events: Vec<_> = store
        .read_stream("account-ada", 1, Direction::Forward)
        .try_collect()
        .await?;
    for event in &events {
        println!(
            "  v{} {} {}",
            event.version,
            event.event_type,
            event.json()?
        );
    }

    println!("the global log:");
    let log: Vec<_> = store.read_all(LogPosition::START).try_collect().await?;
    for event in &log {
        println!(
            "  #{} {} v{} {}",
            event.position, event.stream_id, event.version, event.event_type
        );
    }
    Ok(())
}
