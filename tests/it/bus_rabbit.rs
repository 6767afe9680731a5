//! RabbitMQ (feature `rabbitmq`) against the real server at `CHRONICLE_AMQP_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`): the relay from SQLite and PostgreSQL into a
//! `RabbitSink`, read back with lapin's own consumer (properties, headers, body, order per
//! stream); the bus (patterns, retries then the dead-letter queue, a group shared by two
//! buses, malformed messages, copies dropped by id, close, health and stats, a connection
//! the server closed). Every test uses an exchange of its own and deletes it, and its
//! queues, at the end. Without a server the tests skip loudly, unless
//! `CHRONICLE_REQUIRE_SERVICES=1`, where they fail.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle::bus::rabbitmq::{
    DEAD_QUEUE, DEAD_REASON, dead_letter_exchange, dead_letter_queue, queue_name,
};
use chronicle::bus::{
    Backoff, Bus, Delivery, EventSink, HandlerError, Outgoing, RabbitBus, RabbitSink, StartFrom,
    Subscribe, wire,
};
use chronicle::{Error, ExpectedVersion, NewEvent};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{Value, json};

use crate::bus_support::{Seen, eventually, numbered};
use crate::support::Kind;

fn amqp_url() -> String {
    std::env::var("CHRONICLE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn services_required() -> bool {
    std::env::var("CHRONICLE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Whether RabbitMQ answers; a loud skip notice (or a panic when services are required)
/// when it does not.
async fn rabbit_available(test: &str) -> bool {
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(&amqp_url(), ConnectionProperties::default()),
    )
    .await;
    let error = match connected {
        Ok(Ok(connection)) => {
            let _ = connection.close(200, "probe".into()).await;
            return true;
        }
        Ok(Err(error)) => error.to_string(),
        Err(_) => "no answer in 5 s".to_owned(),
    };
    if services_required() {
        panic!(
            "CHRONICLE_REQUIRE_SERVICES=1 but RabbitMQ at {} is unreachable: {error}",
            amqp_url()
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: RabbitMQ at {} is unreachable ({error}); set CHRONICLE_AMQP_URL",
        amqp_url()
    );
    false
}

/// An exchange of one test and the queues it made; deleted (with the dead-letter
/// exchange) when dropped, on a thread of its own, even when the test failed.
struct Names {
    exchange: String,
    queues: Mutex<Vec<String>>,
}

impl Names {
    fn new(test: &str) -> Self {
        Names {
            exchange: format!("t.{test}.{}", uuid::Uuid::now_v7().simple()),
            queues: Mutex::default(),
        }
    }

    /// The group's queue (and its dead-letter queue), to delete at the end.
    fn group(&self, group: &str) -> String {
        let queue = queue_name(&self.exchange, group);
        self.forget_later(&queue);
        self.forget_later(&dead_letter_queue(&queue));
        queue
    }

    /// The dead-letter queue of the subscriptions without a group named `name`, to delete
    /// at the end.
    fn unnamed(&self, name: &str) {
        self.forget_later(&dead_letter_queue(&queue_name(&self.exchange, name)));
    }

    /// A queue of the test's own.
    fn queue(&self, name: &str) -> String {
        let queue = format!("{}.{name}", self.exchange);
        self.forget_later(&queue);
        queue
    }

    fn forget_later(&self, queue: &str) {
        self.queues.lock().unwrap().push(queue.to_owned());
    }

    async fn bus(&self) -> RabbitBus {
        RabbitBus::builder(amqp_url())
            .exchange(self.exchange.clone())
            .build()
            .await
            .expect("connect")
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        let exchanges = [self.exchange.clone(), dead_letter_exchange(&self.exchange)];
        let queues = std::mem::take(&mut *self.queues.lock().unwrap());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let Ok(channel) = client().await.create_channel().await else {
                    return;
                };
                for queue in queues {
                    let _ = channel
                        .queue_delete(queue.into(), QueueDeleteOptions::default())
                        .await;
                }
                for exchange in exchanges {
                    let _ = channel
                        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// lapin's own connection: an independent client's view.
async fn client() -> Connection {
    Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("lapin connects")
}

/// A durable queue `queue` bound to `exchange` with `key`, on a fresh channel.
async fn bound_queue(connection: &Connection, exchange: &str, queue: &str, key: &str) -> Channel {
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
}

/// Every message in `queue`, taken with `basic.get` and acknowledged.
async fn drain(channel: &Channel, queue: &str) -> Vec<lapin::message::Delivery> {
    let mut messages = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        message
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        messages.push(message.delivery);
    }
    messages
}

/// How many messages wait in `queue`.
async fn depth(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count()
}

fn header(delivery: &lapin::message::Delivery, name: &str) -> Option<String> {
    match delivery.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(text) => Some(String::from_utf8(text.as_bytes().to_vec()).unwrap()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        other => panic!("header {name}: {other:?}"),
    }
}

fn fixed(delay_ms: u64) -> Backoff {
    Backoff::from_fn(move |_| Duration::from_millis(delay_ms))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_confirmed_messages_that_lapins_own_consumer_reads() {
    if !rabbit_available("relay_to_rabbitmq").await {
        return;
    }
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let Some(t) = kind.open("relay_to_rabbitmq").await else {
            continue;
        };
        let names = Names::new("relay");
        let mut ids: HashMap<&str, Vec<uuid::Uuid>> = HashMap::new();
        for (stream, range) in [
            ("order-1", 0..30),
            ("order-2", 30..45),
            ("payment-1", 45..48),
        ] {
            let event_type = if stream.starts_with("order") {
                "order.Placed"
            } else {
                "payment.Taken"
            };
            let events: Vec<NewEvent> = range
                .map(|n| NewEvent::new(event_type, json!({ "n": n })).correlation_id("req-7"))
                .collect();
            ids.entry(stream)
                .or_default()
                .extend(events.iter().map(NewEvent::event_id));
            t.store
                .append(stream, ExpectedVersion::Any, events)
                .await
                .unwrap();
        }
        let sink = RabbitSink::builder(amqp_url())
            .exchange(names.exchange.clone())
            .build()
            .await
            .expect("connect");
        // Bound before the relay runs: a topic exchange drops what no queue is bound for.
        let lapin = client().await;
        let orders = names.queue("orders");
        let everything = names.queue("everything");
        let channel = bound_queue(&lapin, &names.exchange, &orders, "order").await;
        bound_queue(&lapin, &names.exchange, &everything, "#").await;
        let relay = t
            .store
            .relay("to-rabbitmq")
            .start_from(StartFrom::Beginning)
            .batch_size(7)
            .spawn(sink.clone());
        relay.wait_for_idle().await.unwrap();
        assert_eq!(relay.stats().published, 48);
        assert_eq!(sink.stats().published, 48);

        // lapin's own consumer on the `order` queue: the 45 orders, each stream in order.
        let mut consumer = channel
            .basic_consume(
                orders.as_str().into(),
                "reader".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut read = Vec::new();
        while read.len() < 45 {
            let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
                .await
                .expect("45 messages")
                .expect("a message")
                .expect("no error");
            delivery.ack(BasicAckOptions::default()).await.unwrap();
            read.push(delivery);
        }
        let mut per_stream: HashMap<String, Vec<uuid::Uuid>> = HashMap::new();
        for delivery in &read {
            let properties = &delivery.properties;
            assert_eq!(properties.delivery_mode(), &Some(2), "persistent");
            assert_eq!(
                properties.content_type().as_ref().map(|t| t.as_str()),
                Some("application/json")
            );
            let id = header(delivery, wire::ID).unwrap();
            assert_eq!(
                properties.message_id().as_ref().map(|m| m.as_str()),
                Some(id.as_str()),
                "message-id is the event id"
            );
            assert_eq!(delivery.routing_key.as_str(), "order");
            assert_eq!(
                header(delivery, wire::TYPE).as_deref(),
                Some("order.Placed")
            );
            assert_eq!(header(delivery, wire::SPECVERSION).as_deref(), Some("1.0"));
            let metadata: Value =
                serde_json::from_str(&header(delivery, wire::METADATA).unwrap()).unwrap();
            assert_eq!(metadata["correlation_id"], "req-7");
            let body: Value = serde_json::from_slice(&delivery.data).unwrap();
            assert!(body["n"].as_i64().unwrap() < 45, "{body}");
            per_stream
                .entry(header(delivery, wire::SUBJECT).unwrap())
                .or_default()
                .push(id.parse().unwrap());
        }
        assert_eq!(
            per_stream["order-1"], ids["order-1"],
            "order-1 in version order"
        );
        assert_eq!(
            per_stream["order-2"], ids["order-2"],
            "order-2 in version order"
        );
        // `#` got all 48, the payments last.
        let all = drain(&channel, &everything).await;
        assert_eq!(all.len(), 48);
        assert_eq!(all[47].routing_key.as_str(), "payment");
        assert_eq!(
            header(&all[47], wire::ID).unwrap(),
            ids["payment-1"][2].to_string()
        );
        assert!(sink.health().connected);
        relay.stop().await.unwrap();
        let _ = lapin.close(200, "done".into()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mandatory_sink_refuses_a_message_no_queue_is_bound_for() {
    if !rabbit_available("mandatory").await {
        return;
    }
    let names = Names::new("mandatory");
    let sink = RabbitSink::builder(amqp_url())
        .exchange(names.exchange.clone())
        .mandatory(true)
        .build()
        .await
        .unwrap();
    let event = numbered("a.B", 1);
    let error = sink
        .send(vec![Outgoing::new("nowhere", event.clone())])
        .await
        .expect_err("unroutable");
    match &error {
        Error::Broker {
            operation,
            retryable: true,
            ..
        } => {
            assert!(operation.contains(&names.exchange), "{operation}");
            assert!(operation.contains(&event.id.to_string()), "{operation}");
        }
        other => panic!("{other:?}"),
    }
    assert!(error.is_retryable());
    assert_eq!(sink.stats().published, 0);
    assert!(
        sink.health()
            .last_error
            .unwrap()
            .contains("no queue is bound")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbit_bus_publishes_and_subscribes_by_pattern() {
    if !rabbit_available("patterns").await {
        return;
    }
    let names = Names::new("patterns");
    for pattern in ["user.*", "*", "order.Placed"] {
        names.unnamed(pattern);
    }
    let bus = names.bus().await;
    let (users, everything, placed) = (Seen::default(), Seen::default(), Seen::default());
    let a = bus.subscribe("user.*", users.handler()).await.unwrap();
    let b = bus.subscribe("*", everything.handler()).await.unwrap();
    let c = bus
        .subscribe("order.Placed", placed.handler())
        .await
        .unwrap();
    bus.publish(numbered("user.Registered", 1)).await.unwrap();
    bus.publish_batch(vec![
        numbered("order.Placed", 2),
        numbered("user.Deleted", 3),
        numbered("user", 4),
        numbered("order.Placed.v2", 5),
    ])
    .await
    .unwrap();
    eventually("every event", || everything.len() == 5).await;
    eventually("the users", || users.len() == 2).await;
    eventually("the order", || placed.len() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(everything.ns(), [1, 2, 3, 4, 5]);
    // `user.#` lets `user` through; the pattern `user.*` does not take it.
    assert_eq!(
        users.all(),
        [
            ("user.Registered".to_owned(), 1, 1),
            ("user.Deleted".to_owned(), 3, 1)
        ]
    );
    assert_eq!(placed.ns(), [2]);
    let stats = bus.stats();
    assert_eq!((stats.published, stats.delivered), (5, 8));
    for sub in [a, b, c] {
        sub.close().await.unwrap();
    }
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handlers_are_redelivered_then_dead_lettered() {
    if !rabbit_available("dead_letters").await {
        return;
    }
    let names = Names::new("dead");
    let queue = names.group("billing");
    let bus = names.bus().await;
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |delivery: Delivery| {
            seen.push(&delivery);
            let n = delivery.json().unwrap()["n"].as_i64().unwrap();
            async move {
                match n {
                    1 => Err(HandlerError::retry("the ledger is down")),
                    2 => Err(HandlerError::fatal("no such account")),
                    3 if delivery.attempt() < 2 => Err(HandlerError::retry("once")),
                    _ => Ok(()),
                }
            }
        }
    };
    let sub = bus
        .subscribe(
            Subscribe::to("*")
                .group("billing")
                .max_deliveries(3)
                .backoff(fixed(10)),
            handler,
        )
        .await
        .unwrap();
    bus.publish_batch((1..=4).map(|n| numbered("a.B", n)).collect())
        .await
        .unwrap();
    eventually("two dead", || bus.stats().dead == 2).await;
    eventually("four acknowledged", || seen.len() == 3 + 1 + 2 + 1).await;
    assert_eq!(
        seen.all()
            .iter()
            .map(|(_, n, attempt)| (*n, *attempt))
            .collect::<Vec<_>>(),
        [(1, 1), (1, 2), (1, 3), (2, 1), (3, 1), (3, 2), (4, 1)]
    );
    let stats = bus.stats();
    assert_eq!((stats.delivered, stats.failed, stats.dead), (2, 5, 2));

    // The dead-letter queue, read with lapin: the original message and why.
    let lapin = client().await;
    let channel = lapin.create_channel().await.unwrap();
    let dead_queue = dead_letter_queue(&queue);
    let dead = drain_until(&channel, &dead_queue, 2).await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| header(d, DEAD_REASON).unwrap())
        .collect();
    assert!(reasons[0].contains("the ledger is down"), "{reasons:?}");
    assert!(reasons[1].contains("no such account"), "{reasons:?}");
    assert_eq!(
        header(&dead[0], DEAD_QUEUE).as_deref(),
        Some(queue.as_str())
    );
    let body: Value = serde_json::from_slice(&dead[0].data).unwrap();
    assert_eq!(body, json!({ "n": 1 }));
    assert_eq!(header(&dead[1], wire::TYPE).as_deref(), Some("a.B"));
    // Nothing left unacknowledged in the group's queue.
    sub.close().await.unwrap();
    assert_eq!(depth(&channel, &queue).await, 0);
    bus.close().await.unwrap();
    let _ = lapin.close(200, "done".into()).await;
}

/// The messages of `queue` (as [`drain`]), waiting up to a minute for `count` of them.
async fn drain_until(
    channel: &Channel,
    queue: &str,
    count: usize,
) -> Vec<lapin::message::Delivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut messages = Vec::new();
    while messages.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {count} messages in {queue}"
        );
        messages.extend(drain(channel, queue).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_buses_in_one_group_share_the_messages() {
    if !rabbit_available("shared_group").await {
        return;
    }
    let names = Names::new("group");
    names.group("shared");
    let build = || {
        RabbitBus::builder(amqp_url())
            .exchange(names.exchange.clone())
            .prefetch(1)
            .build()
    };
    let (one, two) = (build().await.unwrap(), build().await.unwrap());
    let counts: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let per_bus = [Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0))];
    let mut subs = Vec::new();
    for (bus, mine) in [(&one, &per_bus[0]), (&two, &per_bus[1])] {
        let (counts, mine) = (Arc::clone(&counts), Arc::clone(mine));
        let handler = move |delivery: Delivery| {
            let n = delivery.json().unwrap()["n"].as_i64().unwrap();
            *counts.lock().unwrap().entry(n).or_default() += 1;
            mine.fetch_add(1, Ordering::Relaxed);
            async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok(())
            }
        };
        subs.push(
            bus.subscribe(Subscribe::to("*").group("shared"), handler)
                .await
                .unwrap(),
        );
    }
    for batch in 0..20 {
        one.publish_batch((0..10).map(|n| numbered("a.B", batch * 10 + n)).collect())
            .await
            .unwrap();
    }
    eventually("200 events", || counts.lock().unwrap().len() == 200).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let counts = counts.lock().unwrap().clone();
    assert!(
        counts.values().all(|&count| count == 1),
        "handled twice: {counts:?}"
    );
    let (a, b) = (
        per_bus[0].load(Ordering::Relaxed),
        per_bus[1].load(Ordering::Relaxed),
    );
    assert_eq!(a + b, 200);
    assert!(a > 0 && b > 0, "one member got everything: {a} / {b}");
    for sub in subs {
        sub.close().await.unwrap();
    }
    one.close().await.unwrap();
    two.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_and_never_handled() {
    if !rabbit_available("malformed").await {
        return;
    }
    let names = Names::new("malformed");
    let queue = names.group("strict");
    let bus = names.bus().await;
    let seen = Seen::default();
    let sub = bus
        .subscribe(Subscribe::to("*").group("strict"), seen.handler())
        .await
        .unwrap();
    // A client that is not chronicle publishes what is not a chronicle event.
    let lapin = client().await;
    let channel = lapin.create_channel().await.unwrap();
    let publish = |headers: Vec<(&str, &str)>, body: &'static [u8]| {
        let channel = channel.clone();
        let exchange = names.exchange.clone();
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert(name.into(), AMQPValue::LongString(value.into()));
        }
        async move {
            channel
                .basic_publish(
                    exchange.into(),
                    "a.B".into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default().with_headers(table),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    let id = uuid::Uuid::now_v7().to_string();
    publish(vec![("ce-id", "not-a-uuid"), ("ce-type", "a.B")], b"{}").await;
    publish(vec![("ce-type", "a.B")], b"{}").await;
    publish(vec![("ce-id", &id), ("ce-type", "a.B")], b"{not json").await;
    bus.publish(numbered("a.B", 7)).await.unwrap();
    eventually("the good event", || seen.len() == 1).await;
    eventually("three dead", || bus.stats().dead == 3).await;
    assert_eq!(seen.ns(), [7]);
    let dead_queue = dead_letter_queue(&queue);
    let dead = drain_until(&channel, &dead_queue, 3).await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| header(d, DEAD_REASON).unwrap())
        .collect();
    assert!(reasons[0].contains("ce-id"), "{reasons:?}");
    assert!(reasons[1].contains("ce-id"), "{reasons:?}");
    assert!(reasons[2].contains("not JSON"), "{reasons:?}");
    assert_eq!(&dead[2].data[..], b"{not json");
    assert!(bus.health().last_error.unwrap().contains("malformed"));
    sub.close().await.unwrap();
    assert_eq!(depth(&channel, &queue).await, 0);
    bus.close().await.unwrap();
    let _ = lapin.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_an_event_is_acknowledged_without_running_the_handler() {
    if !rabbit_available("copies").await {
        return;
    }
    let names = Names::new("copies");
    names.unnamed("*");
    let bus = names.bus().await;
    let seen = Seen::default();
    let sub = bus.subscribe("*", seen.handler()).await.unwrap();
    // A relay that crashed after sending a batch sends it again.
    let sink = bus.sink();
    let batch: Vec<Outgoing> = (0..3)
        .map(|n| Outgoing::new("a.B", numbered("a.B", n)))
        .collect();
    sink.send(batch.clone()).await.unwrap();
    sink.send(batch).await.unwrap();
    bus.publish(numbered("a.B", 3)).await.unwrap();
    eventually("the events", || seen.len() == 4).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(seen.ns(), [0, 1, 2, 3]);
    sub.close().await.unwrap();
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_handles_what_was_fetched_and_then_refuses() {
    if !rabbit_available("close").await {
        return;
    }
    let names = Names::new("close");
    let queue = names.group("slow");
    let bus = names.bus().await;
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |delivery: Delivery| {
            seen.push(&delivery);
            async {
                tokio::time::sleep(Duration::from_millis(40)).await;
                Ok(())
            }
        }
    };
    let sub = bus
        .subscribe(Subscribe::to("*").group("slow"), handler)
        .await
        .unwrap();
    sub.detach();
    bus.publish_batch((0..5).map(|n| numbered("a.B", n)).collect())
        .await
        .unwrap();
    eventually("the first delivery", || seen.len() == 1).await;
    bus.close().await.unwrap();
    // The five were fetched together (prefetch 16): all handled and acknowledged before
    // `close` returned, none left in the queue.
    assert_eq!(seen.ns(), [0, 1, 2, 3, 4]);
    let lapin = client().await;
    let channel = lapin.create_channel().await.unwrap();
    assert_eq!(depth(&channel, &queue).await, 0);
    assert!(matches!(
        bus.publish(numbered("a.B", 5)).await,
        Err(Error::BusClosed { .. })
    ));
    assert!(matches!(
        bus.subscribe("*", seen.handler()).await,
        Err(Error::BusClosed { .. })
    ));
    assert!(!bus.health().connected);
    let _ = lapin.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_stats_count_what_the_bus_did() {
    if !rabbit_available("health").await {
        return;
    }
    let names = Names::new("health");
    names.unnamed("ok.*");
    names.unnamed("bad.*");
    let bus = names.bus().await;
    let health = bus.health();
    assert!(health.connected);
    assert_eq!((health.reconnects, health.last_error), (0, None));
    let seen = Seen::default();
    let failing = |_: Delivery| async { Err::<(), _>(HandlerError::fatal("refused")) };
    let a = bus.subscribe("ok.*", seen.handler()).await.unwrap();
    let b = bus.subscribe("bad.*", failing).await.unwrap();
    bus.publish_batch(vec![
        numbered("ok.A", 1),
        numbered("bad.A", 2),
        numbered("ok.B", 3),
    ])
    .await
    .unwrap();
    eventually("the deliveries", || {
        let stats = bus.stats();
        stats.delivered == 2 && stats.dead == 1
    })
    .await;
    let stats = bus.stats();
    assert_eq!((stats.published, stats.failed, stats.panicked), (3, 1, 0));
    assert!(bus.health().last_error.unwrap().contains("refused"));
    // The subscription's own queues are gone with it.
    a.close().await.unwrap();
    b.close().await.unwrap();
    bus.close().await.unwrap();
    assert!(!bus.health().connected);
}

/// The pid RabbitMQ gives the connection named `name` (`rabbitmqctl list_connections`).
fn connection_pid(name: &str) -> Option<String> {
    let output = Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "--quiet",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|line| line.contains(name))
        .and_then(|line| line.split_whitespace().next().map(str::to_owned))
}

/// Has RabbitMQ close the connection named `name`, as an operator would
/// (`rabbitmqctl close_connection`); false, after a loud skip notice, where `rabbitmqctl`
/// cannot list the connections (a remote server), unless services are required.
fn close_connection(test: &str, name: &str) -> bool {
    let Some(pid) = connection_pid(name) else {
        assert!(
            !services_required(),
            "CHRONICLE_REQUIRE_SERVICES=1 but `rabbitmqctl list_connections` does not show the connection `{name}`"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: rabbitmqctl cannot list the connections here"
        );
        return false;
    };
    let closed = Command::new("rabbitmqctl")
        .args(["close_connection", &pid, "closed by a chronicle test"])
        .output()
        .expect("rabbitmqctl");
    assert!(closed.status.success(), "{closed:?}");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_closed_is_opened_again_and_counted() {
    if !rabbit_available("reconnect").await {
        return;
    }
    let names = Names::new("reconnect");
    let queue = names.queue("all");
    let connection_name = format!("chronicle-test-{}", uuid::Uuid::now_v7().simple());
    let sink = RabbitSink::builder(amqp_url())
        .exchange(names.exchange.clone())
        .connection_name(connection_name.clone())
        .build()
        .await
        .unwrap();
    let lapin = client().await;
    let channel = bound_queue(&lapin, &names.exchange, &queue, "#").await;
    sink.send(vec![Outgoing::new("a", numbered("a.B", 1))])
        .await
        .unwrap();
    if !close_connection("reconnect", &connection_name) {
        return;
    }
    eventually("the sink sees its connection closed", || {
        !sink.health().connected
    })
    .await;
    // The next batch opens a new connection, counted.
    sink.send(vec![Outgoing::new("a", numbered("a.B", 2))])
        .await
        .unwrap();
    let health = sink.health();
    assert!(health.connected);
    assert_eq!(health.reconnects, 1);
    let messages = drain(&channel, &queue).await;
    let ns: Vec<i64> = messages
        .iter()
        .map(|m| {
            serde_json::from_slice::<Value>(&m.data).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, [1, 2]);
    let _ = lapin.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_typed_retryable_error() {
    // Port 1: nothing listens there.
    let error = RabbitSink::builder("amqp://guest:secret@127.0.0.1:1/%2f")
        .build()
        .await
        .expect_err("nothing listens");
    match &error {
        Error::Broker {
            broker, retryable, ..
        } => {
            assert!(*retryable, "{error:?}");
            assert!(!broker.contains("secret"), "{broker}");
        }
        other => panic!("{other:?}"),
    }
    let error = RabbitBus::builder("amqp://127.0.0.1:1/%2f")
        .build()
        .await
        .expect_err("nothing listens");
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_whose_connection_the_server_closed_consumes_again() {
    if !rabbit_available("bus_reconnect").await {
        return;
    }
    let names = Names::new("bus-reconnect");
    names.group("g");
    let connection_name = format!("chronicle-test-{}", uuid::Uuid::now_v7().simple());
    let bus = RabbitBus::builder(amqp_url())
        .exchange(names.exchange.clone())
        .connection_name(connection_name.clone())
        .build()
        .await
        .unwrap();
    let seen = Seen::default();
    let sub = bus
        .subscribe(Subscribe::to("*").group("g"), seen.handler())
        .await
        .unwrap();
    bus.publish(numbered("a.B", 1)).await.unwrap();
    eventually("the first event", || seen.len() == 1).await;
    if !close_connection("bus_reconnect", &connection_name) {
        return;
    }
    eventually("the bus sees its connection closed", || {
        !bus.health().connected
    })
    .await;
    bus.publish(numbered("a.B", 2)).await.unwrap();
    eventually("the second event, on the new connection", || {
        seen.len() == 2
    })
    .await;
    assert_eq!(seen.ns(), [1, 2]);
    let health = bus.health();
    assert!(health.connected);
    assert_eq!(health.reconnects, 1);
    sub.close().await.unwrap();
    bus.close().await.unwrap();
}
