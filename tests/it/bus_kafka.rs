//! Kafka (feature `kafka`): the relay into `KafkaSink` and `KafkaBus`'s consumer groups,
//! against librdkafka's mock cluster (`rdkafka::mocking::MockCluster`: an in-process
//! broker speaking the Kafka protocol, with error injection). No Kafka broker runs on
//! these machines; the mock cluster is compiled in, so these tests never skip.
//!
//! What chronicle published is read back with a plain rdkafka `StreamConsumer` written
//! here, independent of chronicle's consumer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle::Error;
use chronicle::bus::{
    Backoff, Bus, BusEvent, Delivery, EventSink, HandlerError, KafkaBus, KafkaSink, Outgoing,
    StartFrom, Subscribe, Topic, wire,
};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;

use crate::bus_support::{
    KILL_BATCH, KILL_EVENTS, Seen, append_numbered, eventually, kill_log, kill_when,
    restart_killed_relay, run_killed_relay, spawn_child,
};
use crate::support::Kind;

fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::now_v7().simple())
}

/// A mock cluster of one broker with `topics` of `partitions` each.
fn cluster(
    topics: &[&str],
    partitions: i32,
) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for topic in topics {
        cluster.create_topic(topic, partitions, 1).expect("topic");
    }
    cluster
}

/// Reads `count` messages of `topic` from the start with a consumer of its own group,
/// then checks that no more come within `quiet`.
async fn read_topic(
    brokers: &str,
    topic: &str,
    count: usize,
    quiet: Duration,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut messages = Vec::new();
    while messages.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} messages on `{topic}`", messages.len()))
            .expect("a message");
        messages.push(message.detach());
    }
    if let Ok(extra) = tokio::time::timeout(quiet, consumer.recv()).await {
        panic!(
            "more than {count} messages on `{topic}`: {:?}",
            extra.map(|m| m.detach())
        );
    }
    messages
}

fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    let headers = message.headers()?;
    let found = headers.iter().find(|header| header.key == name)?;
    found
        .value
        .map(|value| String::from_utf8(value.to_vec()).expect("UTF-8 header"))
}

fn key(message: &OwnedMessage) -> String {
    String::from_utf8(message.key().expect("a key").to_vec()).unwrap()
}

fn body(message: &OwnedMessage) -> serde_json::Value {
    serde_json::from_slice(message.payload().expect("a value")).expect("JSON value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_into_kafka_keys_by_stream_with_wire_headers_in_version_order() {
    let prefix = format!("{}.", unique("t"));
    let (orders, users) = (format!("{prefix}order"), format!("{prefix}user"));
    let cluster = cluster(&[&orders, &users], 3);
    let brokers = cluster.bootstrap_servers();
    let t = Kind::Sqlite.open("kafka_relay").await.expect("sqlite");
    let mut ids = append_numbered(&t.store, "order-1", 0..20).await;
    ids.extend(append_numbered(&t.store, "order-2", 20..35).await);
    ids.extend(append_numbered(&t.store, "order-3", 35..40).await);
    let user_ids = append_numbered(&t.store, "user-1", 40..45).await;

    let sink = KafkaSink::builder(&brokers)
        .topic_prefix(&prefix)
        .build()
        .unwrap();
    assert_eq!(sink.setting("enable.idempotence"), Some("true"));
    assert_eq!(sink.setting("acks"), Some("all"));
    let relay = t
        .store
        .relay("to-kafka")
        .start_from(StartFrom::Beginning)
        .batch_size(7)
        .spawn(sink.clone());
    relay.wait_for_idle().await.unwrap();
    let live = append_numbered(&t.store, "order-2", 45..50).await;
    ids.extend(&live);
    relay.wait_for_idle().await.unwrap();

    let messages = read_topic(&brokers, &orders, 45, Duration::from_secs(1)).await;
    let mut by_stream: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
    let mut seen = HashSet::new();
    for message in &messages {
        let stream = key(message);
        assert_eq!(
            header(message, "ce-subject").as_deref(),
            Some(stream.as_str())
        );
        assert_eq!(header(message, "ce-type").as_deref(), Some("order.Placed"));
        assert_eq!(header(message, "ce-specversion").as_deref(), Some("1.0"));
        assert_eq!(
            header(message, "content-type").as_deref(),
            Some("application/json")
        );
        let id: uuid::Uuid = header(message, "ce-id").unwrap().parse().unwrap();
        assert!(seen.insert(id), "event {id} arrived twice");
        let n = body(message)["n"].as_i64().unwrap();
        by_stream
            .entry(stream)
            .or_default()
            .push((message.partition(), n));
        // The whole envelope decodes back with the wire rules.
        let lookup = |name: &str| {
            message
                .headers()?
                .iter()
                .find(|h| h.key == name)?
                .value
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        let event = wire::decode(lookup, message.payload().unwrap(), "test").unwrap();
        assert_eq!(event.id, id);
    }
    assert_eq!(seen, ids.iter().copied().collect::<HashSet<_>>());
    for (stream, sent) in &by_stream {
        let partitions: HashSet<i32> = sent.iter().map(|(p, _)| *p).collect();
        assert_eq!(partitions.len(), 1, "{stream} lives in one partition");
        let ns: Vec<i64> = sent.iter().map(|(_, n)| *n).collect();
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        assert_eq!(ns, sorted, "{stream} in version order");
    }
    assert_eq!(by_stream["order-2"].len(), 20);

    let users_read = read_topic(&brokers, &users, 5, Duration::from_millis(200)).await;
    let user_seen: Vec<uuid::Uuid> = users_read
        .iter()
        .map(|m| header(m, "ce-id").unwrap().parse().unwrap())
        .collect();
    assert_eq!(user_seen, user_ids);

    let stats = relay.stats();
    assert_eq!((stats.published, stats.failed), (50, 0));
    assert_eq!(sink.stats().published, 50);
    eventually("the sink to report a connection", || {
        sink.health().connected
    })
    .await;
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_broker_errors_are_retried_by_the_idempotent_producer_without_duplicates() {
    let topic = unique("retry");
    let cluster = cluster(&[&topic], 2);
    let brokers = cluster.bootstrap_servers();
    let sink = KafkaSink::builder(&brokers).build().unwrap();
    // The next five Produce requests fail with errors Kafka calls retriable.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        ],
    );
    let events: Vec<BusEvent> = (0..30)
        .map(|n| {
            BusEvent::new("order.Placed", json!({ "n": n })).subject(format!("order-{}", n % 4))
        })
        .collect();
    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
    sink.send(
        events
            .into_iter()
            .map(|e| Outgoing::new(&topic, e))
            .collect(),
    )
    .await
    .expect("librdkafka retries retriable errors");
    let messages = read_topic(&brokers, &topic, 30, Duration::from_secs(1)).await;
    let got: HashSet<uuid::Uuid> = messages
        .iter()
        .map(|m| header(m, "ce-id").unwrap().parse().unwrap())
        .collect();
    assert_eq!(got, ids.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_refusal_is_a_typed_publish_error_and_the_relay_sends_again() {
    let prefix = format!("{}.", unique("t"));
    let topic = format!("{prefix}order");
    let cluster = cluster(&[&topic], 1);
    let brokers = cluster.bootstrap_servers();
    let sink = KafkaSink::builder(&brokers)
        .topic_prefix(&prefix)
        .build()
        .unwrap();

    // A refusal Kafka calls permanent: the send fails, typed, not retryable.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let event = BusEvent::new("order.Placed", json!({ "n": -1 })).subject("order-0");
    let error = sink
        .send(vec![Outgoing::new("order", event.clone())])
        .await
        .expect_err("refused");
    match &error {
        Error::Publish {
            destination,
            event_id,
            retryable,
            ..
        } => {
            assert_eq!(*event_id, event.id);
            assert!(!retryable, "{error}");
            assert!(destination.contains(&topic), "{destination}");
        }
        other => panic!("not a publish error: {other:?}"),
    }
    assert!(sink.health().last_error.unwrap().contains(&topic));

    // The relay meets the same refusal, then sends the batch again: nothing is lost.
    let t = Kind::Sqlite
        .open("kafka_relay_refusal")
        .await
        .expect("sqlite");
    let ids = append_numbered(&t.store, "order-1", 0..10).await;
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let relay = t
        .store
        .relay("refused")
        .start_from(StartFrom::Beginning)
        .retries(
            u32::MAX,
            Duration::from_millis(10),
            Duration::from_millis(50),
        )
        .spawn(sink.clone());
    relay.wait_for_idle().await.unwrap();
    assert!(relay.stats().failed >= 1, "{:?}", relay.stats());
    let messages = read_topic(&brokers, &topic, 10, Duration::from_secs(1)).await;
    let got: Vec<uuid::Uuid> = messages
        .iter()
        .map(|m| header(m, "ce-id").unwrap().parse().unwrap())
        .collect();
    assert_eq!(got, ids, "every event once, in order");
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_retryable_error_and_shows_in_health() {
    let topic = unique("down");
    let cluster = cluster(&[&topic], 1);
    let brokers = cluster.bootstrap_servers();
    let sink = KafkaSink::builder(&brokers)
        .config("message.timeout.ms", "1500")
        .build()
        .unwrap();
    let one = |n: i64| {
        vec![Outgoing::new(
            &topic,
            BusEvent::new("a.B", json!(n)).subject("s-1"),
        )]
    };
    sink.send(one(1)).await.expect("broker up");
    assert!(sink.health().connected);
    cluster.broker_down(1).unwrap();
    let error = sink.send(one(2)).await.expect_err("broker down");
    assert!(
        matches!(
            error,
            Error::Publish {
                retryable: true,
                ..
            }
        ),
        "{error:?}"
    );
    eventually("health to see the broker down", || !sink.health().connected).await;
    cluster.broker_up(1).unwrap();
    // As the relay does: send again until the client reconnected.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Err(error) = sink.send(one(3)).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still failing: {error}"
        );
    }
    eventually("health to see the broker up", || sink.health().connected).await;
    assert_eq!(sink.stats().published, 2);
}

/// `order.Placed` events of stream `order-1` numbered `range`.
fn batch(range: std::ops::Range<i64>) -> Vec<BusEvent> {
    range
        .map(|n| BusEvent::new("order.Placed", json!({ "n": n })).subject("order-1"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_sees_every_message_and_commits_what_it_handled() {
    let topic = unique("group");
    let cluster = cluster(&[&topic], 3);
    let brokers = cluster.bootstrap_servers();
    let bus = KafkaBus::builder(&brokers)
        .topic(Topic::fixed(&topic))
        .subscribe_topics([&topic])
        .build()
        .unwrap();
    let events: Vec<BusEvent> = (0..40)
        .map(|n| {
            BusEvent::new("order.Placed", json!({ "n": n })).subject(format!("order-{}", n % 5))
        })
        .collect();
    bus.publish_batch(events).await.unwrap();
    // Another type on the same topic: the pattern passes it over.
    bus.publish(BusEvent::new("user.Registered", json!({ "n": 99 })))
        .await
        .unwrap();

    let group = unique("billing");
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |delivery: Delivery| {
            let seen = seen.clone();
            async move {
                seen.push(&delivery);
                Ok(())
            }
        }
    };
    let billing = bus
        .subscribe(Subscribe::to("order.*").group(&group), handler.clone())
        .await
        .unwrap();
    assert_eq!(billing.group(), Some(group.as_str()));
    eventually("40 deliveries", || seen.len() >= 40).await;
    billing.close().await.unwrap();
    let mut ns = seen.ns();
    ns.sort_unstable();
    assert_eq!(ns, (0..40).collect::<Vec<_>>(), "each message once");

    // The group committed its offsets on close: a new member sees only what is new.
    let again = bus
        .subscribe(Subscribe::to("order.*").group(&group), handler)
        .await
        .unwrap();
    bus.publish(BusEvent::new("order.Placed", json!({ "n": 40 })).subject("order-1"))
        .await
        .unwrap();
    eventually("the new event", || seen.len() >= 41).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.len(), 41, "nothing handled twice: {:?}", seen.ns());
    let stats = bus.stats();
    assert_eq!((stats.published, stats.delivered, stats.dead), (42, 41, 0));
    assert!(bus.health().connected);
    again.close().await.unwrap();
    bus.close().await.unwrap();
    assert!(matches!(
        bus.publish(BusEvent::new("a.B", json!(1))).await,
        Err(Error::BusClosed { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_handler_failed_is_handled_again_after_a_restart() {
    let topic = unique("restart");
    let cluster = cluster(&[&topic], 1);
    let brokers = cluster.bootstrap_servers();
    let bus = KafkaBus::builder(&brokers)
        .topic(Topic::fixed(&topic))
        .subscribe_topics([&topic])
        .build()
        .unwrap();
    bus.publish_batch(batch(0..6)).await.unwrap();
    let group = unique("g");

    // Event 3 fails every time: retried in place, the partition waits behind it.
    let first = Seen::default();
    let failing = {
        let seen = first.clone();
        move |delivery: Delivery| {
            let seen = seen.clone();
            async move {
                seen.push(&delivery);
                if delivery.json()?["n"] == 3 {
                    return Err(HandlerError::retry("not yet"));
                }
                Ok(())
            }
        }
    };
    let subscription = bus
        .subscribe(
            Subscribe::to("order.*")
                .group(&group)
                .max_deliveries(1_000)
                .backoff(Backoff::from_fn(|_| Duration::from_millis(20))),
            failing,
        )
        .await
        .unwrap();
    eventually("event 3 retried", || {
        first
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(_, n, attempt)| *n == 3 && *attempt >= 3)
    })
    .await;
    subscription.close().await.unwrap();
    let ns = first.ns();
    assert_eq!(&ns[..4], [0, 1, 2, 3]);
    assert!(
        ns[4..].iter().all(|n| *n == 3),
        "nothing after 3 ran: {ns:?}"
    );

    // A new member of the group starts at the message that was not acknowledged.
    let second = Seen::default();
    let ok = {
        let seen = second.clone();
        move |delivery: Delivery| {
            let seen = seen.clone();
            async move {
                seen.push(&delivery);
                Ok(())
            }
        }
    };
    let subscription = bus
        .subscribe(Subscribe::to("order.*").group(&group), ok)
        .await
        .unwrap();
    eventually("3, 4 and 5", || second.len() >= 3).await;
    assert_eq!(second.ns(), [3, 4, 5]);
    assert_eq!(second.all()[0].2, 1, "the attempt counts from 1 again");
    subscription.close().await.unwrap();
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_events_and_malformed_messages_go_to_the_dead_letter_topic() {
    let topic = unique("dead");
    let dead_topic = format!("{topic}.dead");
    let cluster = cluster(&[&topic, &dead_topic], 1);
    let brokers = cluster.bootstrap_servers();
    let bus = KafkaBus::builder(&brokers)
        .topic(Topic::fixed(&topic))
        .subscribe_topics([&topic])
        .build()
        .unwrap();
    let poison = BusEvent::new("order.Poison", json!({ "n": 1 })).subject("order-9");
    bus.publish(BusEvent::new("order.Placed", json!({ "n": 0 })).subject("order-9"))
        .await
        .unwrap();
    bus.publish(poison.clone()).await.unwrap();
    // Two messages chronicle did not write: no `ce-id`, and a value that is not JSON.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&topic)
                .key("k")
                .payload("{}")
                .headers(OwnedHeaders::new().insert(Header {
                    key: "ce-type",
                    value: Some("order.Placed"),
                })),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let not_json = BusEvent::new("order.Placed", json!({}));
    let headers = wire::headers(&not_json)
        .iter()
        .fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_str()),
            })
        });
    producer
        .send(
            FutureRecord::to(&topic)
                .key("k")
                .payload("{not json")
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    bus.publish(BusEvent::new("order.Placed", json!({ "n": 2 })).subject("order-9"))
        .await
        .unwrap();

    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |delivery: Delivery| {
            let seen = seen.clone();
            async move {
                seen.push(&delivery);
                if delivery.event_type == "order.Poison" {
                    return Err(HandlerError::fatal("poison"));
                }
                Ok(())
            }
        }
    };
    let subscription = bus
        .subscribe(Subscribe::to("order.*").group(unique("g")), handler)
        .await
        .unwrap();
    eventually("the last event", || seen.ns().contains(&2)).await;
    assert_eq!(
        seen.ns(),
        [0, 1, 2],
        "malformed messages never reach the handler"
    );

    let dead = read_topic(&brokers, &dead_topic, 3, Duration::from_secs(1)).await;
    assert_eq!(header(&dead[0], "ce-id"), Some(poison.id.to_string()));
    assert_eq!(key(&dead[0]), "order-9");
    assert_eq!(body(&dead[0]), json!({ "n": 1 }));
    assert_eq!(
        header(&dead[0], "chronicle-dead-reason").as_deref(),
        Some("poison")
    );
    for malformed in &dead[1..] {
        let reason = header(malformed, "chronicle-dead-reason").unwrap();
        assert!(reason.contains(&topic), "{reason}");
        assert_eq!(key(malformed), "k");
    }
    assert!(
        header(&dead[1], "chronicle-dead-reason")
            .unwrap()
            .contains("ce-id")
    );
    assert!(
        header(&dead[2], "chronicle-dead-reason")
            .unwrap()
            .contains("JSON")
    );
    assert_eq!(dead[2].payload(), Some(&b"{not json"[..]));
    let stats = bus.stats();
    assert_eq!((stats.delivered, stats.failed, stats.dead), (2, 1, 3));
    assert!(bus.health().last_error.is_some());
    subscription.close().await.unwrap();
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_needs_topics() {
    let cluster = cluster(&[], 1);
    let bus = KafkaBus::builder(cluster.bootstrap_servers())
        .build()
        .unwrap();
    let error = bus
        .subscribe("order.*", |_: Delivery| async { Ok(()) })
        .await
        .expect_err("no topics");
    assert!(matches!(error, Error::Validation(_)), "{error:?}");
    let error = KafkaSink::builder("localhost:9092")
        .config("acks", "not-a-number")
        .build()
        .expect_err("a bad setting");
    assert!(error.to_string().contains("acks"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_of_a_group_share_the_partitions() {
    let topic = unique("shared");
    let cluster = cluster(&[&topic], 4);
    let brokers = cluster.bootstrap_servers();
    // The mock cluster's rebalance waits out the members' session timeout (45 s by
    // default) before it assigns a joining member: shorter here.
    let bus = KafkaBus::builder(&brokers)
        .topic(Topic::fixed(&topic))
        .config("session.timeout.ms", "6000")
        .config("heartbeat.interval.ms", "500")
        .build()
        .unwrap();
    let group = unique("workers");
    let (a, b) = (Seen::default(), Seen::default());
    let member = |seen: &Seen| {
        let seen = seen.clone();
        move |delivery: Delivery| {
            let seen = seen.clone();
            async move {
                seen.push(&delivery);
                Ok(())
            }
        }
    };
    let first = bus
        .subscribe_to([&topic], Subscribe::to("*").group(&group), member(&a))
        .await
        .unwrap();
    let second = bus
        .subscribe_to([&topic], Subscribe::to("*").group(&group), member(&b))
        .await
        .unwrap();
    // Both joined: the second's assignment came from a rebalance of the whole group.
    let events: Vec<BusEvent> = (0..80)
        .map(|n| BusEvent::new("job.Queued", json!({ "n": n })).subject(format!("job-{}", n % 16)))
        .collect();
    bus.sink()
        .send(
            events
                .into_iter()
                .map(|e| Outgoing::new(&topic, e))
                .collect(),
        )
        .await
        .unwrap();
    eventually("every job handled", || {
        let all: HashSet<i64> = a.ns().into_iter().chain(b.ns()).collect();
        all.len() == 80
    })
    .await;
    assert!(
        a.len() > 0 && b.len() > 0,
        "one member took everything: {} / {}",
        a.len(),
        b.len()
    );
    first.close().await.unwrap();
    second.close().await.unwrap();
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sent_twice_is_handled_once_unless_the_dedup_window_is_off() {
    let topic = unique("copies");
    let cluster = cluster(&[&topic], 1);
    let brokers = cluster.bootstrap_servers();
    let sink = KafkaSink::builder(&brokers).build().unwrap();
    let outgoing: Vec<Outgoing> = batch(0..5)
        .into_iter()
        .map(|event| Outgoing::new(&topic, event))
        .collect();
    // As a relay restarted after a crash sends its unacknowledged batch again: a new
    // send, which the idempotent producer does not recognise as a retry.
    sink.send(outgoing.clone()).await.unwrap();
    sink.send(outgoing).await.unwrap();
    let stored = read_topic(&brokers, &topic, 10, Duration::from_millis(200)).await;
    assert_eq!(stored.len(), 10, "Kafka keeps both copies");

    for (window, handled) in [(None, 0..5), (Some(0), 0..10)] {
        let mut builder = KafkaBus::builder(&brokers).subscribe_topics([&topic]);
        if let Some(window) = window {
            builder = builder.dedup_window(window);
        }
        let bus = builder.build().unwrap();
        let seen = Seen::default();
        let subscription = bus
            .subscribe(Subscribe::to("order.*").group(unique("g")), seen.handler())
            .await
            .unwrap();
        let expected: Vec<i64> = handled.map(|n| n % 5).collect();
        eventually("the deliveries", || seen.len() >= expected.len()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        subscription.close().await.unwrap();
        assert_eq!(seen.ns(), expected, "dedup window {window:?}");
        assert_eq!(bus.stats().delivered, expected.len() as u64);
        bus.close().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Kill -9: a relay into the mock cluster (which lives in this process) runs in a child
// process of this test binary and is killed with SIGKILL mid-stream. The restarted relay
// sends the unacknowledged batch again; Kafka stores those copies (the idempotent producer
// deduplicates its own retries, not a new producer's sends), and a `KafkaBus`
// subscription drops them by `ce-id`.

/// Set in the child process: the cluster's bootstrap servers and the topic prefix.
const CHILD_BROKERS: &str = "CHRONICLE_KAFKA_CHILD_BROKERS";
const CHILD_PREFIX: &str = "CHRONICLE_KAFKA_CHILD_PREFIX";
const KILL_PARTITIONS: i32 = 3;

/// Messages in `topic` now, as `watcher` finds them: the sum of its partitions' high
/// watermarks.
async fn topic_size(watcher: &Arc<BaseConsumer>, topic: &str) -> usize {
    let (watcher, topic) = (Arc::clone(watcher), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        (0..KILL_PARTITIONS)
            .map(|partition| {
                let (_, high) = watcher
                    .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                    .expect("watermarks");
                high as usize
            })
            .sum()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_with_sigkill_sends_one_batch_again_and_the_bus_drops_the_copies() {
    let prefix = format!("{}.", unique("kill"));
    let topic = format!("{prefix}order");
    let cluster = cluster(&[&topic], KILL_PARTITIONS);
    let brokers = cluster.bootstrap_servers();
    let (t, ids) = kill_log("kafka relay kill").await;
    let watcher: Arc<BaseConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("a consumer"),
    );

    let mut child = spawn_child(
        "bus_kafka::kafka_relay_child",
        &t,
        &[(CHILD_BROKERS, &brokers), (CHILD_PREFIX, &prefix)],
    );
    // Killed once a third is stored, at the end of a batch: most likely while the relay
    // waits to acknowledge it (the child's sink pauses), before its checkpoint moves.
    kill_when(&mut child, || async {
        let stored = topic_size(&watcher, &topic).await;
        stored >= KILL_EVENTS / 3 && stored % KILL_BATCH == 0
    })
    .await;
    // A produce request the broker had in hand is stored even so: let it land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let at_kill = topic_size(&watcher, &topic).await;
    assert!(
        at_kill < KILL_EVENTS,
        "killed mid-stream ({at_kill} stored)"
    );

    // The restarted relay goes on from the checkpoint the child left.
    let sink = KafkaSink::builder(&brokers)
        .topic_prefix(&prefix)
        .build()
        .unwrap();
    let resent = restart_killed_relay(&t, sink).await;
    let stored = at_kill + resent;
    assert!(stored >= KILL_EVENTS, "{stored} stored: events lost");
    let copies = stored - KILL_EVENTS;
    println!("killed with {at_kill} stored; the restart sent {copies} of them again");
    assert!(
        copies <= KILL_BATCH,
        "{copies} sent again: more than the one unacknowledged batch"
    );

    // The topic, read by a plain consumer: every event at least once, the copies stored.
    let messages = read_topic(&brokers, &topic, stored, Duration::from_secs(1)).await;
    let in_topic: HashSet<uuid::Uuid> = messages
        .iter()
        .map(|message| header(message, wire::ID).unwrap().parse().unwrap())
        .collect();
    let all: HashSet<uuid::Uuid> = ids.values().flatten().copied().collect();
    assert_eq!(in_topic, all, "every event in the topic");

    // A KafkaBus subscription handles each event once, each stream's in version order.
    let bus = KafkaBus::builder(&brokers)
        .subscribe_topics([&topic])
        .build()
        .unwrap();
    let handled: Arc<Mutex<HashMap<String, Vec<uuid::Uuid>>>> = Arc::default();
    let handler = {
        let handled = Arc::clone(&handled);
        move |delivery: Delivery| {
            let stream = delivery.subject.clone().unwrap_or_default();
            handled
                .lock()
                .unwrap()
                .entry(stream)
                .or_default()
                .push(delivery.id);
            std::future::ready(Ok(()))
        }
    };
    let count = || {
        handled
            .lock()
            .unwrap()
            .values()
            .map(Vec::len)
            .sum::<usize>()
    };
    let subscription = bus
        .subscribe(Subscribe::to("order.*").group(unique("g")), handler)
        .await
        .unwrap();
    eventually("every event handled", || count() >= KILL_EVENTS).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    subscription.close().await.unwrap();
    assert_eq!(count(), KILL_EVENTS, "each event handled once");
    assert_eq!(*handled.lock().unwrap(), ids);
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a child process: see a_relay_killed_with_sigkill_sends_one_batch_again_and_the_bus_drops_the_copies"]
async fn kafka_relay_child() {
    let (Ok(brokers), Ok(prefix)) = (std::env::var(CHILD_BROKERS), std::env::var(CHILD_PREFIX))
    else {
        return;
    };
    let sink = KafkaSink::builder(brokers)
        .topic_prefix(prefix)
        .build()
        .unwrap();
    run_killed_relay(sink, Duration::from_millis(300)).await;
}
