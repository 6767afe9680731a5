//! The outbox on the SQLite default (no server): side effects of events, run at least
//! once, with retries.
//!
//! - An outbox turned on in a store that already has history starts from now: last
//!   year's orders get no email.
//! - Two handlers: `email` succeeds; `erp` fails (its service is down), is retried with
//!   backoff, and goes dead after 3 failures.
//! - `wait_for_idle` waits until every request is done or dead.
//! - The admin counts, the dead request with its last error, and a retry of it once the
//!   service is back.
//! - A handler added later (`invoice`) starts from when it was added, too.
//!
//! Run it with `cargo run --example outbox`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chronicle::outbox::Backoff;
use chronicle::{
    ExpectedVersion, Handler, HandlerError, HandlerMap, HandlerRequest, NewEvent, Outbox, Store,
};
use serde_json::json;

/// The longest the example waits for the outbox.
const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("chronicle-outbox.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = Store::open(format!("sqlite://{}", path.display())).await?;

    // Last year's orders, written before there was an outbox.
    for id in 1..=3 {
        place(&store, id).await?;
    }

    // Two handlers. The ERP's service is down until we say otherwise.
    let emails = Arc::new(AtomicU64::new(0));
    let erp_up = Arc::new(AtomicBool::new(false));
    let email = {
        let emails = Arc::clone(&emails);
        Handler::new("email", "order.Placed", move |request: HandlerRequest| {
            emails.fetch_add(1, Ordering::SeqCst);
            println!("  email: thank you for {}", request.event.stream_id);
            async { Ok(()) }
        })
    };
    let erp = |erp_up: Arc<AtomicBool>| {
        Handler::new("erp", "order.*", move |request: HandlerRequest| {
            let up = erp_up.load(Ordering::SeqCst);
            println!(
                "  erp: {} (attempt {}): {}",
                request.event.stream_id,
                request.attempt,
                if up { "sent" } else { "the ERP is down" }
            );
            async move {
                if up {
                    Ok(())
                } else {
                    Err(HandlerError::retry("the ERP answered 503"))
                }
            }
        })
        .max_errors(3)
        .backoff(Backoff::exponential(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
    };
    let handlers = HandlerMap::new()
        .route(email.clone())
        .route(erp(Arc::clone(&erp_up)));
    // Default start: from now on. `.start_from(StartFrom::Beginning)` would replay history.
    let outbox = store
        .outbox(handlers)?
        .name("shop")
        .poll_interval(Duration::from_millis(20));
    // "Now" is when the processor first reads the log: do it here, so that the order
    // placed next comes after it whatever the scheduler's task does first.
    assert_eq!(outbox.process().await?, 0, "history gets no requests");
    let running = outbox.concurrent().spawn();

    println!("an order after the outbox was turned on:");
    place(&store, 4).await?;
    idle(&outbox).await?;
    assert_eq!(emails.load(Ordering::SeqCst), 1, "history gets no email");

    let stats = outbox.stats().await?;
    for (handler, counts) in &stats.handlers {
        println!(
            "stats: {handler}: {} done, {} dead, {} waiting",
            counts.done,
            counts.dead,
            counts.pending + counts.failed_waiting + counts.running
        );
    }
    let dead = outbox.dead_requests(Some("erp"), 10).await?;
    assert_eq!(dead.len(), 1);
    let request = &dead[0];
    println!(
        "dead: request {} for {} after {} errors, last: {:?}",
        request.id, request.stream_id, request.errors, request.last_error
    );

    println!("the ERP is back; retrying the dead request:");
    erp_up.store(true, Ordering::SeqCst);
    outbox.retry_dead(request.id).await?;
    idle(&outbox).await?;
    let erp_stats = outbox.stats().await?.handlers["erp"];
    assert_eq!((erp_stats.done, erp_stats.dead), (1, 0));
    running.stop().await?;

    println!("a handler added later starts from when it was added:");
    place(&store, 5).await?; // before `invoice` exists: email and erp only
    let invoices = Arc::new(AtomicU64::new(0));
    let invoice = {
        let invoices = Arc::clone(&invoices);
        Handler::new("invoice", "order.Placed", move |request: HandlerRequest| {
            invoices.fetch_add(1, Ordering::SeqCst);
            println!("  invoice for {}", request.event.stream_id);
            async { Ok(()) }
        })
    };
    let outbox = store
        .outbox(
            HandlerMap::new()
                .route(email)
                .route(erp(erp_up))
                .route(invoice),
        )?
        .name("shop")
        .poll_interval(Duration::from_millis(20));
    // The first window of the new processor records `invoice`'s start: the end of the log.
    outbox.process().await?;
    let running = outbox.concurrent().spawn();
    place(&store, 6).await?;
    idle(&outbox).await?;
    running.stop().await?;
    assert_eq!(invoices.load(Ordering::SeqCst), 1, "only order-6");
    assert_eq!(emails.load(Ordering::SeqCst), 3, "orders 4, 5 and 6");
    println!(
        "emails: {}, invoices: {}",
        emails.load(Ordering::SeqCst),
        invoices.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Places order `id`.
async fn place(store: &Store, id: u32) -> chronicle::Result<()> {
    let event = NewEvent::new("order.Placed", json!({ "order": id, "total": 10 * id }));
    store
        .append(
            format!("order-{id}"),
            ExpectedVersion::NoStream,
            vec![event],
        )
        .await?;
    Ok(())
}

/// Waits until every request so far is done or dead.
async fn idle(outbox: &Outbox) -> Result<(), Box<dyn std::error::Error>> {
    tokio::time::timeout(PATIENCE, outbox.wait_for_idle()).await??;
    Ok(())
}
