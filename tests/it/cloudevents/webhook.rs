//! The outbox webhook on every backend: stored events leave as CloudEvents, at least
//! once; a NACK 4xx other than 408 and 429 is dead at once; 408, 429, 5xx and undelivered
//! sends are retried; ordered per stream when asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle::cloudevents::{
    CloudEvent, EventMapping, Mode, ReceiveError, Receiver, ServerHandle, Webhook,
};
use chronicle::outbox::{Backoff, Outbox};
use chronicle::{Direction, ExpectedVersion, HandlerMap, NewEvent, Store};
use futures::TryStreamExt;
use http::StatusCode;
use serde_json::json;

use super::{Captured, serve};
use crate::support::Kind;

/// A receiver that answers each event id with the statuses scripted for it, in turn,
/// then accepts it; it records the accepted events in order, and every try.
#[derive(Clone, Default)]
struct Scripted {
    script: Arc<Mutex<HashMap<String, Vec<u16>>>>,
    tries: Arc<Mutex<Vec<String>>>,
    accepted: Captured,
}

impl Scripted {
    fn fail(self, subject_and_version: &str, statuses: &[u16]) -> Self {
        self.script
            .lock()
            .expect("script")
            .insert(subject_and_version.to_owned(), statuses.to_vec());
        self
    }

    async fn serve(&self) -> ServerHandle {
        let this = self.clone();
        serve(Receiver::new().on("*", move |event: CloudEvent| {
            let this = this.clone();
            async move {
                let key = format!(
                    "{}#{}",
                    event.subject().unwrap_or_default(),
                    event.data_bytes().len()
                );
                let key = event.extension("seq").map_or(key, |seq| {
                    format!("{}/{seq}", event.subject().unwrap_or_default())
                });
                this.tries.lock().expect("tries").push(key.clone());
                let next = this
                    .script
                    .lock()
                    .expect("script")
                    .get_mut(&key)
                    .and_then(|statuses| (!statuses.is_empty()).then(|| statuses.remove(0)));
                if let Some(status) = next {
                    let status = StatusCode::from_u16(status).expect("status");
                    return Err(ReceiveError::with_status(
                        status,
                        format!("scripted {status}"),
                    ));
                }
                this.accepted.push(event);
                Ok(())
            }
        }))
        .await
    }

    fn tries(&self) -> Vec<String> {
        self.tries.lock().expect("tries").clone()
    }
}

/// Appends events `stream/1`, `stream/2`, … (their `seq` custom metadata says which).
async fn append(store: &Store, stream: &str, count: u32) {
    let events = (1..=count)
        .map(|seq| {
            let mut metadata = chronicle::EventMetadata::default();
            metadata.custom.insert("seq".into(), json!(seq.to_string()));
            NewEvent::new("order.changed", json!({ "seq": seq })).metadata(metadata)
        })
        .collect();
    store
        .append(stream, ExpectedVersion::Any, events)
        .await
        .expect("append");
}

/// Processes the log until the outbox made at least `requests` requests (on PostgreSQL a
/// transaction another test holds open keeps later events back from the log's readers for
/// a while), then executes until none is left.
async fn drain(outbox: &Outbox, requests: u64) {
    let mut created = 0;
    for _ in 0..200 {
        created += outbox.process().await.expect("process");
        if created < requests {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        if outbox.execute().await.expect("execute").claimed == 0 {
            return;
        }
    }
    panic!("the outbox did not drain ({created} of {requests} requests made)");
}

fn outbox(store: &Store, webhook: Webhook) -> Outbox {
    let handler = webhook
        .handler()
        .max_errors(5)
        .backoff(Backoff::from_fn(|_| Duration::ZERO));
    store
        .outbox(HandlerMap::new().route(handler))
        .expect("outbox")
        .start_from(chronicle::StartFrom::Beginning)
}

async fn stored_events_leave_as_cloud_events(kind: Kind) {
    let Some(t) = kind.open("cloudevents_webhook_delivers").await else {
        return;
    };
    let receiver = Scripted::default();
    let server = receiver.serve().await;
    let mapping = EventMapping::new().source("https://shop.example.com");
    let mut outboxes = Vec::new();
    for (name, mode) in [
        ("hook-structured", Mode::Structured),
        ("hook-binary", Mode::Binary),
    ] {
        let webhook = Webhook::new(name, "order.*", &server.url())
            .expect("webhook")
            .mode(mode)
            .mapping(mapping.clone());
        outboxes.push(outbox(&t.store, webhook).name(name));
        append(&t.store, &format!("order-{name}"), 2).await;
    }
    for outbox in &outboxes {
        // At least its own stream's two events.
        drain(outbox, 2).await;
    }
    let stored: Vec<_> = t
        .store
        .read_all(chronicle::LogPosition::START)
        .try_collect()
        .await
        .expect("read");
    let expected: Vec<CloudEvent> = stored
        .iter()
        .map(|event| mapping.to_cloud_event(event).expect("maps"))
        .collect();
    let mut accepted = receiver.accepted.all();
    // Each outbox sends every order event: 2 outboxes × 4 events.
    assert_eq!(accepted.len(), 8);
    accepted.sort_by(|a, b| a.id().cmp(b.id()));
    accepted.dedup_by(|a, b| a.id() == b.id());
    let mut expected = expected;
    expected.sort_by(|a, b| a.id().cmp(b.id()));
    // Binary mode carries extensions as strings; `seq` is a string already, so both
    // modes deliver the very event the mapping makes.
    assert_eq!(accepted, expected);
    server.shutdown().await.expect("shutdown");
}

async fn a_4xx_is_dead_at_once_and_the_rest_is_retried(kind: Kind) {
    let Some(t) = kind.open("cloudevents_webhook_retries").await else {
        return;
    };
    let receiver = Scripted::default()
        .fail("gone/1", &[400])
        .fail("gone/2", &[404])
        .fail("flaky/1", &[503, 500])
        .fail("flaky/2", &[429, 408]);
    let server = receiver.serve().await;
    let outbox = outbox(
        &t.store,
        Webhook::new("hook", "*", &server.url()).expect("webhook"),
    );
    append(&t.store, "gone", 2).await;
    append(&t.store, "flaky", 2).await;
    drain(&outbox, 4).await;

    let dead = outbox.dead_requests(None, 10).await.expect("dead");
    let mut dead_streams: Vec<(String, u32)> = dead
        .iter()
        .map(|d| (d.stream_id.clone(), d.errors))
        .collect();
    dead_streams.sort();
    assert_eq!(
        dead_streams,
        [("gone".to_owned(), 1), ("gone".to_owned(), 1)],
        "dead at the first 4xx"
    );
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("refused")),
        "{:?}",
        dead[0].last_error
    );
    let tries = receiver.tries();
    let count = |key: &str| tries.iter().filter(|k| *k == key).count();
    assert_eq!((count("gone/1"), count("gone/2")), (1, 1));
    assert_eq!(
        (count("flaky/1"), count("flaky/2")),
        (3, 3),
        "retried past 5xx, 429, 408"
    );
    let accepted: Vec<Option<String>> = receiver
        .accepted
        .all()
        .iter()
        .map(|e| e.subject().map(str::to_owned))
        .collect();
    assert_eq!(
        accepted,
        [Some("flaky".to_owned()), Some("flaky".to_owned())]
    );
    server.shutdown().await.expect("shutdown");
}

async fn an_undelivered_send_is_retried_until_the_receiver_is_up(kind: Kind) {
    let Some(t) = kind.open("cloudevents_webhook_undelivered").await else {
        return;
    };
    // Nothing listens on the port yet.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let outbox = outbox(
        &t.store,
        Webhook::new("hook", "*", &format!("http://{addr}/")).expect("webhook"),
    );
    append(&t.store, "late", 1).await;
    outbox.process().await.expect("process");
    let report = outbox.execute().await.expect("execute");
    assert_eq!(
        (report.claimed, report.retrying),
        (1, 1),
        "undelivered: retried"
    );

    let receiver = Scripted::default();
    let server = serve_on(addr, &receiver).await;
    // Its one request was made above.
    drain(&outbox, 0).await;
    assert_eq!(receiver.accepted.all().len(), 1);
    assert!(
        outbox
            .dead_requests(None, 10)
            .await
            .expect("dead")
            .is_empty()
    );
    server.shutdown().await.expect("shutdown");
}

async fn serve_on(addr: std::net::SocketAddr, receiver: &Scripted) -> ServerHandle {
    let accepted = receiver.accepted.clone();
    Receiver::new()
        .on("*", move |event| {
            accepted.push(event);
            async { Ok::<_, ReceiveError>(()) }
        })
        .serve(addr.to_string())
        .await
        .expect("serve on the same port")
}

async fn ordered_webhooks_deliver_a_stream_in_order(kind: Kind) {
    let Some(t) = kind.open("cloudevents_webhook_ordered").await else {
        return;
    };
    let receiver = Scripted::default()
        .fail("a/1", &[503, 503])
        .fail("b/2", &[500]);
    let server = receiver.serve().await;
    let webhook = Webhook::new("hook", "*", &server.url())
        .expect("webhook")
        .ordered_per_stream();
    let outbox = outbox(&t.store, webhook).workers(4);
    append(&t.store, "a", 4).await;
    append(&t.store, "b", 4).await;
    drain(&outbox, 8).await;
    let seqs = |stream: &str| -> Vec<String> {
        receiver
            .accepted
            .all()
            .iter()
            .filter(|e| e.subject() == Some(stream))
            .filter_map(|e| e.extension("seq").map(ToString::to_string))
            .collect()
    };
    assert_eq!(seqs("a"), ["1", "2", "3", "4"]);
    assert_eq!(seqs("b"), ["1", "2", "3", "4"]);
    let stored: Vec<_> = t
        .store
        .read_stream("a", 1, Direction::Forward)
        .try_collect()
        .await
        .expect("read");
    assert_eq!(stored.len(), 4);
    server.shutdown().await.expect("shutdown");
}

crate::for_each_backend!(
    stored_events_leave_as_cloud_events,
    a_4xx_is_dead_at_once_and_the_rest_is_retried,
    an_undelivered_send_is_retried_until_the_receiver_is_up,
    ordered_webhooks_deliver_a_stream_in_order
);
