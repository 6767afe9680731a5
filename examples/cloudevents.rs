//! CloudEvents over HTTP with no other server: a receiver storing events in SQLite, and a
//! client and an outbox webhook sending to it.
//!
//! 1. The "warehouse" serves a receiver on 127.0.0.1: order events are appended to the
//!    stream their `subject` names, quotes are answered (request-response).
//! 2. A client sends in binary, structured and batch mode (twice: stored once), asks for a
//!    quote, and sends one bad event to show a NACK.
//! 3. The "shop" appends to its own SQLite store; its outbox webhook POSTs the stored
//!    events to the warehouse as CloudEvents.
//!
//! Run it with `cargo run --example cloudevents --features cloudevents`.

use std::time::Duration;

use chronicle::cloudevents::{
    AppendToStream, CloudEvent, CloudEventsClient, Data, Delivery, EventMapping, Mode,
    ReceiveError, Receiver, Webhook,
};
use chronicle::{Direction, ExpectedVersion, HandlerMap, NewEvent, Store};
use futures::TryStreamExt;
use serde_json::json;

/// A fresh SQLite store in the temp directory.
async fn sqlite(name: &str) -> Result<Store, chronicle::Error> {
    let path = std::env::temp_dir().join(format!("chronicle-cloudevents-{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Store::open(&format!("sqlite://{}", path.display())).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The warehouse's receiver.
    let warehouse = sqlite("warehouse").await?;
    let receiver = Receiver::new()
        .on_request(
            "com.example.quote.requested",
            |request: CloudEvent| async move {
                let items = match request.data() {
                    Some(Data::Json(order)) => order["items"].as_u64().unwrap_or(0),
                    _ => 0,
                };
                let quote = CloudEvent::builder(
                    format!("{}-quote", request.id()),
                    "/warehouse",
                    "com.example.quote.given",
                )
                .subject(request.subject().unwrap_or("unknown"))
                .data_json(json!({ "days": 1 + items / 10 }))
                .build()
                .map_err(ReceiveError::failed)?;
                Ok(quote)
            },
        )
        .append_to_stream(
            "com.example.order.*",
            AppendToStream::new(warehouse.clone()),
        )
        .append_to_stream("order.*", AppendToStream::new(warehouse.clone()));
    let server = receiver.serve("127.0.0.1:0").await?;
    println!("warehouse receiver on {}", server.url());

    // 2. A client, in each mode.
    let structured = CloudEventsClient::new(&server.url())?;
    let binary = structured.clone().mode(Mode::Binary);
    let placed = CloudEvent::builder("order-1-placed", "/shop", "com.example.order.placed")
        .subject("order-1")
        .extension("tenantid", "acme")
        .data_json(json!({ "items": 3 }))
        .build()?;
    let paid = CloudEvent::builder("order-1-paid", "/shop", "com.example.order.paid")
        .subject("order-1")
        .data_json(json!({ "amount": 1200 }))
        .build()?;
    for _ in 0..2 {
        println!(
            "binary:     {:?}",
            binary.send(&placed).await.into_result()?.status
        );
        println!(
            "structured: {:?}",
            structured.send(&paid).await.into_result()?.status
        );
        println!(
            "batch:      {:?}",
            structured
                .send_batch(&[placed.clone(), paid.clone()])
                .await
                .into_result()?
                .status
        );
    }
    let question = CloudEvent::builder("q-1", "/shop", "com.example.quote.requested")
        .subject("order-1")
        .data_json(json!({ "items": 25 }))
        .build()?;
    let quote = binary.request(&question).await?;
    println!("quote:      {} {:?}", quote.ty(), quote.data());
    let stray = CloudEvent::builder("s-1", "/shop", "com.example.unknown").build()?;
    if let Delivery::Nack(nack) = structured.send(&stray).await {
        println!("a NACK:     {} {}", nack.status, nack.body);
    }

    // 3. The shop's stored events leave through an outbox webhook.
    let shop = sqlite("shop").await?;
    let webhook = Webhook::new("warehouse", "order.*", &server.url())?
        .mode(Mode::Binary)
        .mapping(EventMapping::new().source("https://shop.example.com"))
        .ordered_per_stream();
    let outbox = shop
        .outbox(HandlerMap::new().route(webhook.handler()))?
        .start_from(chronicle::StartFrom::Beginning);
    shop.append(
        "order-2",
        ExpectedVersion::NoStream,
        vec![
            NewEvent::new("order.placed", json!({ "items": 1 })).correlation_id("checkout-7"),
            NewEvent::new("order.paid", json!({ "amount": 300 })),
        ],
    )
    .await?;
    let running = outbox.concurrent().spawn();
    for _ in 0..100 {
        let delivered: Vec<_> = warehouse
            .read_stream("order-2", 1, Direction::Forward)
            .try_collect()
            .await
            .unwrap_or_default();
        if delivered.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = running.stop().await?;
    println!("webhook:    {report:?}");

    // What the warehouse stored: each event once.
    for stream in ["order-1", "order-2"] {
        let events: Vec<_> = warehouse
            .read_stream(stream, 1, Direction::Forward)
            .try_collect()
            .await?;
        for event in events {
            println!(
                "stored {stream} v{}: {} {} (correlation {:?})",
                event.version,
                event.event_type,
                String::from_utf8_lossy(event.payload_json()),
                event.metadata.correlation_id
            );
        }
    }
    server.shutdown().await?;
    Ok(())
}
