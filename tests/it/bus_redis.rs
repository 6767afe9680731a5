//! Redis (feature `redis`) against the real server at `CHRONICLE_REDIS_URL` (default
//! `redis://127.0.0.1:6379`): the relay from a SQLite store into Redis Streams, read
//! back with `redis-cli` (a client chronicle did not write); `MAXLEN` trimming; the
//! Streams bus (patterns, retries with their attempt numbers, dead letters, entries of
//! a dead consumer claimed with `XAUTOCLAIM`, a group shared by two buses, malformed
//! entries, copies dropped by id, close, a dropped bus, health and stats, a refused
//! `XADD`); and the pub/sub bus (at most once, retries in process, dead letters). Every
//! test uses keys of its own and deletes them at the end. Without a server the tests
//! skip loudly, unless `CHRONICLE_REQUIRE_SERVICES=1`, where they fail.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle::bus::redis::{
    DEAD_REASON_FIELD, GroupStart, RedisBus, RedisPubSubBus, RedisSink, dead_letter_key,
};
use chronicle::bus::{
    Backoff, Bus, Delivery, EventSink, HandlerError, Outgoing, StartFrom, Subscribe,
};
use chronicle::{Error, ExpectedVersion, NewEvent};
use serde_json::{Value, json};

use crate::bus_support::{Seen, eventually, numbered};
use crate::support::Kind;

fn redis_url() -> String {
    std::env::var("CHRONICLE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn services_required() -> bool {
    std::env::var("CHRONICLE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Whether Redis answers; a loud skip notice (or a panic when services are required)
/// when it does not.
fn redis_available(test: &str) -> bool {
    let answer = ::redis::Client::open(redis_url().as_str()).and_then(|client| {
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        ::redis::cmd("PING").query::<String>(&mut conn)
    });
    match answer {
        Ok(_) => true,
        Err(error) if services_required() => panic!(
            "CHRONICLE_REQUIRE_SERVICES=1 but Redis at {} is unreachable: {error}",
            redis_url()
        ),
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: Redis at {} is unreachable ({error}); set CHRONICLE_REDIS_URL",
                redis_url()
            );
            false
        }
    }
}

/// A key prefix of one test; every key under it is deleted when it is dropped.
struct Keys(String);

impl Keys {
    fn new(test: &str) -> Self {
        Keys(format!("t:{test}:{}:", uuid::Uuid::now_v7().simple()))
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.0)
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let Ok(client) = ::redis::Client::open(redis_url().as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: ::redis::RedisResult<()> = ::redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// `redis-cli --json <args>`, parsed: an independent client's view.
fn cli(args: &[&str]) -> Value {
    let binary = std::env::var("CHRONICLE_REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned());
    let output = Command::new(binary)
        .arg("-u")
        .arg(redis_url())
        .arg("--json")
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    serde_json::from_str(text.trim()).unwrap_or_else(|_| Value::String(text.trim().to_owned()))
}

/// `XRANGE key - +` as (entry id, fields in order).
fn xrange(key: &str) -> Vec<(String, Vec<(String, String)>)> {
    let entries = cli(&["XRANGE", key, "-", "+"]);
    entries
        .as_array()
        .expect("an array")
        .iter()
        .map(|entry| {
            let id = entry[0].as_str().expect("id").to_owned();
            let flat: Vec<String> = entry[1]
                .as_array()
                .expect("fields")
                .iter()
                .map(|v| v.as_str().expect("text").to_owned())
                .collect();
            let fields = flat
                .chunks(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect();
            (id, fields)
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn fixed(delay_ms: u64) -> Backoff {
    Backoff::from_fn(move |_| Duration::from_millis(delay_ms))
}

async fn bus(keys: &Keys) -> RedisBus {
    RedisBus::builder(redis_url())
        .prefix(keys.0.clone())
        .block(Duration::from_millis(50))
        .build()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_appends_to_redis_streams_that_redis_cli_and_a_redis_bus_read() {
    if !redis_available("relay_to_redis") {
        return;
    }
    let keys = Keys::new("relay");
    let t = Kind::Sqlite.open("relay_to_redis").await.expect("sqlite");
    let mut ids = Vec::new();
    for (stream, range) in [
        ("order-1", 0..30),
        ("order-2", 30..45),
        ("payment-1", 45..48),
    ] {
        let events: Vec<NewEvent> = range
            .map(|n| {
                let event_type = if stream.starts_with("order") {
                    "order.Placed"
                } else {
                    "payment.Taken"
                };
                NewEvent::new(event_type, json!({ "n": n })).correlation_id("req-7")
            })
            .collect();
        ids.extend(events.iter().map(NewEvent::event_id));
        t.store
            .append(stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let sink = RedisSink::builder(redis_url())
        .prefix(keys.0.clone())
        .build()
        .await
        .expect("connect");
    let relay = t
        .store
        .relay("to-redis")
        .start_from(StartFrom::Beginning)
        .batch_size(7)
        .spawn(sink.clone());
    relay.wait_for_idle().await.unwrap();

    // An independent client: the entries, their fields in the documented order, the body.
    let orders = xrange(&keys.key("order"));
    assert_eq!(orders.len(), 45);
    let names: Vec<&str> = orders[0].1.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ce-specversion",
            "ce-id",
            "ce-type",
            "ce-source",
            "ce-time",
            "content-type",
            "ce-subject",
            "chronicle-metadata",
            "data"
        ]
    );
    for (n, (_, fields)) in orders.iter().enumerate() {
        assert_eq!(field(fields, "ce-id"), Some(ids[n].to_string().as_str()));
        assert_eq!(field(fields, "ce-type"), Some("order.Placed"));
        let subject = if n < 30 { "order-1" } else { "order-2" };
        assert_eq!(field(fields, "ce-subject"), Some(subject));
        let body: Value = serde_json::from_str(field(fields, "data").unwrap()).unwrap();
        assert_eq!(body, json!({ "n": n }));
        let metadata: Value =
            serde_json::from_str(field(fields, "chronicle-metadata").unwrap()).unwrap();
        assert_eq!(metadata["correlation_id"], "req-7", "{metadata}");
    }
    let payments = xrange(&keys.key("payment"));
    assert_eq!(payments.len(), 3);
    assert_eq!(
        field(&payments[2].1, "ce-id"),
        Some(ids[47].to_string().as_str())
    );
    assert_eq!(relay.stats().published, 48);
    assert_eq!(sink.stats().published, 48);
    assert!(sink.health().connected);

    // A consumer group reading what the relay wrote, from the beginning.
    let bus = RedisBus::builder(redis_url())
        .prefix(keys.0.clone())
        .streams(["order", "payment"])
        .group_start(GroupStart::Beginning)
        .block(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let seen = Seen::default();
    let sub = bus
        .subscribe(Subscribe::to("order.*").group("billing"), seen.handler())
        .await
        .unwrap();
    eventually("45 orders", || seen.len() == 45).await;
    assert_eq!(seen.ns(), (0..45).collect::<Vec<_>>());
    // The payments matched no pattern: acknowledged, not handled.
    eventually("every entry acknowledged", || {
        cli(&["XPENDING", &keys.key("payment"), "billing"])[0] == json!(0)
            && cli(&["XPENDING", &keys.key("order"), "billing"])[0] == json!(0)
    })
    .await;
    assert_eq!(bus.stats().delivered, 45);
    sub.close().await.unwrap();
    relay.stop().await.unwrap();
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxlen_trims_each_stream() {
    if !redis_available("maxlen") {
        return;
    }
    let keys = Keys::new("maxlen");
    let sink = RedisSink::builder(redis_url())
        .prefix(keys.0.clone())
        .maxlen(50)
        .build()
        .await
        .unwrap();
    for batch in 0..10 {
        let messages = (0..100)
            .map(|n| Outgoing::new("trimmed", numbered("a.B", batch * 100 + n)))
            .collect();
        sink.send(messages).await.unwrap();
    }
    let length = cli(&["XLEN", &keys.key("trimmed")]).as_i64().unwrap();
    // `~`: Redis trims whole nodes (100 entries by default), never below the bound.
    assert!((50..=250).contains(&length), "XLEN {length}");
    let entries = xrange(&keys.key("trimmed"));
    let last: Value =
        serde_json::from_str(field(&entries.last().unwrap().1, "data").unwrap()).unwrap();
    assert_eq!(last, json!({ "n": 999 }));
    assert_eq!(sink.stats().published, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_bus_publishes_and_subscribes_by_pattern() {
    if !redis_available("publish_subscribe") {
        return;
    }
    let keys = Keys::new("pubsub-streams");
    let bus = bus(&keys).await;
    let (users, everything) = (Seen::default(), Seen::default());
    let a = bus.subscribe("user.*", users.handler()).await.unwrap();
    let b = bus.subscribe("*", everything.handler()).await.unwrap();
    bus.publish(numbered("user.Registered", 1)).await.unwrap();
    bus.publish_batch(vec![
        numbered("order.Placed", 2),
        numbered("user.Deleted", 3),
    ])
    .await
    .unwrap();
    eventually("three events", || everything.len() == 3 && users.len() == 2).await;
    assert_eq!(everything.ns(), [1, 2, 3]);
    assert_eq!(
        users.all(),
        [
            ("user.Registered".to_owned(), 1, 1),
            ("user.Deleted".to_owned(), 3, 1)
        ]
    );
    // Everything went to the bus's one stream.
    assert_eq!(xrange(&keys.key("chronicle")).len(), 3);
    assert_eq!(
        cli(&["XINFO", "GROUPS", &keys.key("chronicle")])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let stats = bus.stats();
    assert_eq!((stats.published, stats.delivered), (3, 5));
    a.close().await.unwrap();
    b.close().await.unwrap();
    // Groups made for unnamed subscriptions go with them.
    assert_eq!(cli(&["XINFO", "GROUPS", &keys.key("chronicle")]), json!([]));
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handlers_are_redelivered_with_their_attempts_then_dead_lettered() {
    if !redis_available("dead_letters") {
        return;
    }
    let keys = Keys::new("dead");
    let bus = bus(&keys).await;
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |delivery: Delivery| {
            seen.push(&delivery);
            let n = delivery.json().unwrap()["n"].as_i64().unwrap();
            let attempt = delivery.attempt();
            async move {
                match n {
                    // Always fails: dead after 3 deliveries.
                    1 => Err(HandlerError::retry("still down")),
                    // Fails twice, then passes.
                    2 if attempt < 3 => Err(HandlerError::retry("not yet")),
                    // Refused for good at once.
                    3 => Err(HandlerError::fatal("bad order")),
                    _ => Ok(()),
                }
            }
        }
    };
    let sub = bus
        .subscribe(
            Subscribe::to("*")
                .group("workers")
                .max_deliveries(3)
                .backoff(fixed(20)),
            handler,
        )
        .await
        .unwrap();
    bus.publish_batch(vec![
        numbered("a.B", 1),
        numbered("a.B", 2),
        numbered("a.B", 3),
    ])
    .await
    .unwrap();
    eventually("the deliveries", || {
        bus.stats().dead == 2 && bus.stats().delivered == 1
    })
    .await;
    let mut attempts: HashMap<i64, Vec<u32>> = HashMap::new();
    for (_, n, attempt) in seen.all() {
        attempts.entry(n).or_default().push(attempt);
    }
    assert_eq!(attempts[&1], [1, 2, 3]);
    assert_eq!(attempts[&2], [1, 2, 3]);
    assert_eq!(attempts[&3], [1]);
    let stats = bus.stats();
    assert_eq!((stats.failed, stats.dead, stats.delivered), (6, 2, 1));

    // The dead letters, read back: the original fields, why, the entry and the group.
    let stream = keys.key("chronicle");
    let dead = xrange(&dead_letter_key(&stream));
    assert_eq!(dead.len(), 2);
    let originals = xrange(&stream);
    let by_n = |n: i64| {
        dead.iter()
            .find(|(_, fields)| {
                field(fields, "data") == Some(json!({ "n": n }).to_string().as_str())
            })
            .unwrap_or_else(|| panic!("a dead letter for {n}"))
            .1
            .clone()
    };
    let first = by_n(1);
    assert!(
        field(&first, DEAD_REASON_FIELD)
            .unwrap()
            .contains("still down")
    );
    assert_eq!(
        field(&first, "chronicle-dead-entry"),
        Some(originals[0].0.as_str())
    );
    assert_eq!(field(&first, "chronicle-dead-group"), Some("workers"));
    assert_eq!(field(&first, "ce-id"), field(&originals[0].1, "ce-id"));
    assert!(
        field(&by_n(3), DEAD_REASON_FIELD)
            .unwrap()
            .contains("bad order")
    );
    // Nothing left pending.
    eventually("nothing pending", || {
        cli(&["XPENDING", &stream, "workers"])[0] == json!(0)
    })
    .await;
    sub.close().await.unwrap();
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_left_pending_by_a_dead_consumer_are_claimed_after_the_idle_time() {
    if !redis_available("reclaim") {
        return;
    }
    let keys = Keys::new("reclaim");
    let stream = keys.key("chronicle");
    let publisher = bus(&keys).await;
    cli(&["XGROUP", "CREATE", &stream, "g", "0", "MKSTREAM"]);
    publisher
        .publish_batch((0..6).map(|n| numbered("a.B", n)).collect())
        .await
        .unwrap();
    // A consumer reads them and dies without acknowledging anything.
    let started = tokio::time::Instant::now();
    let read = cli(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "ghost",
        "COUNT",
        "10",
        "STREAMS",
        &stream,
        ">",
    ]);
    assert_eq!(read.to_string().matches("ce-id").count(), 6, "{read}");
    // The last one was delivered twice already (say, two consumers died on it).
    let last_id = xrange(&stream)[5].0.clone();
    cli(&["XCLAIM", &stream, "g", "ghost", "0", &last_id]);

    let survivor = RedisBus::builder(redis_url())
        .prefix(keys.0.clone())
        .block(Duration::from_millis(50))
        .claim_idle(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let seen = Seen::default();
    let sub = survivor
        .subscribe(
            Subscribe::to("*").group("g").max_deliveries(2),
            seen.handler(),
        )
        .await
        .unwrap();
    eventually("the claimed entries", || {
        seen.len() == 5 && survivor.stats().dead == 1
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "claimed before idle"
    );
    // Delivery 2 of each (Redis's count); the 6th would be its third: over the maximum.
    let mut all = seen.all();
    all.sort_by_key(|(_, n, _)| *n);
    assert_eq!(
        all.iter()
            .map(|(_, n, attempt)| (*n, *attempt))
            .collect::<Vec<_>>(),
        [(0, 2), (1, 2), (2, 2), (3, 2), (4, 2)]
    );
    let dead = xrange(&dead_letter_key(&stream));
    assert_eq!(dead.len(), 1);
    assert!(
        field(&dead[0].1, DEAD_REASON_FIELD)
            .unwrap()
            .contains("delivered 3 times")
    );
    eventually("nothing pending", || {
        cli(&["XPENDING", &stream, "g"])[0] == json!(0)
    })
    .await;
    sub.close().await.unwrap();
    survivor.close().await.unwrap();
    publisher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_buses_in_one_group_share_the_entries() {
    if !redis_available("shared_group") {
        return;
    }
    let keys = Keys::new("group");
    let (one, two) = (bus(&keys).await, bus(&keys).await);
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
                // Slow enough that both members get work.
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
        tokio::time::sleep(Duration::from_millis(5)).await;
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
async fn malformed_entries_are_dead_lettered_and_never_handled() {
    if !redis_available("malformed") {
        return;
    }
    let keys = Keys::new("malformed");
    let stream = keys.key("chronicle");
    let bus = bus(&keys).await;
    let seen = Seen::default();
    let sub = bus
        .subscribe(Subscribe::to("*").name("strict"), seen.handler())
        .await
        .unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    cli(&[
        "XADD",
        &stream,
        "*",
        "ce-id",
        "not-a-uuid",
        "ce-type",
        "a.B",
        "data",
        "{}",
    ]);
    cli(&["XADD", &stream, "*", "ce-id", &id, "ce-type", "a.B"]);
    cli(&[
        "XADD",
        &stream,
        "*",
        "ce-id",
        &id,
        "ce-type",
        "a.B",
        "data",
        "{not json",
    ]);
    bus.publish(numbered("a.B", 7)).await.unwrap();
    eventually("the good event", || seen.len() == 1).await;
    eventually("three dead", || bus.stats().dead == 3).await;
    assert_eq!(seen.ns(), [7]);
    let dead = xrange(&dead_letter_key(&stream));
    let reasons: Vec<&str> = dead
        .iter()
        .map(|(_, fields)| field(fields, DEAD_REASON_FIELD).unwrap())
        .collect();
    assert_eq!(reasons.len(), 3);
    assert!(reasons[0].contains("ce-id"), "{reasons:?}");
    assert!(reasons[1].contains("data"), "{reasons:?}");
    assert!(reasons[2].contains("not JSON"), "{reasons:?}");
    assert_eq!(field(&dead[2].1, "data"), Some("{not json"));
    assert!(bus.health().last_error.unwrap().contains("malformed"));
    assert_eq!(cli(&["XPENDING", &stream, "strict"])[0], json!(0));
    sub.close().await.unwrap();
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_an_event_is_acknowledged_without_running_the_handler() {
    if !redis_available("copies") {
        return;
    }
    let keys = Keys::new("copies");
    let sink = RedisSink::builder(redis_url())
        .prefix(keys.0.clone())
        .build()
        .await
        .unwrap();
    let bus = bus(&keys).await;
    let seen = Seen::default();
    let sub = bus.subscribe("*", seen.handler()).await.unwrap();
    // A relay that crashed after sending a batch sends it again.
    let batch: Vec<Outgoing> = (0..3)
        .map(|n| Outgoing::new("chronicle", numbered("a.B", n)))
        .collect();
    sink.send(batch.clone()).await.unwrap();
    sink.send(batch).await.unwrap();
    bus.publish(numbered("a.B", 3)).await.unwrap();
    eventually("the events", || seen.len() == 4).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(seen.ns(), [0, 1, 2, 3]);
    assert_eq!(xrange(&keys.key("chronicle")).len(), 7);
    sub.close().await.unwrap();
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_handles_the_read_in_hand_and_then_refuses() {
    if !redis_available("close") {
        return;
    }
    let keys = Keys::new("close");
    let stream = keys.key("chronicle");
    let bus = RedisBus::builder(redis_url())
        .prefix(keys.0.clone())
        .group_start(GroupStart::Beginning)
        .build()
        .await
        .unwrap();
    bus.publish_batch((0..5).map(|n| numbered("a.B", n)).collect())
        .await
        .unwrap();
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
        .subscribe(Subscribe::to("*").name("slow"), handler)
        .await
        .unwrap();
    sub.detach();
    eventually("the first delivery", || seen.len() == 1).await;
    bus.close().await.unwrap();
    // The five came in one read: all handled and acknowledged before `close` returned.
    assert_eq!(seen.ns(), [0, 1, 2, 3, 4]);
    assert_eq!(cli(&["XPENDING", &stream, "slow"])[0], json!(0));
    assert!(matches!(
        bus.publish(numbered("a.B", 5)).await,
        Err(Error::BusClosed { .. })
    ));
    assert!(matches!(
        bus.subscribe("*", seen.handler()).await,
        Err(Error::BusClosed { .. })
    ));
    assert!(!bus.health().connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_bus_ends_its_detached_subscriptions() {
    if !redis_available("dropped") {
        return;
    }
    let keys = Keys::new("dropped");
    let stream = keys.key("chronicle");
    let seen = Seen::default();
    {
        let bus = bus(&keys).await;
        bus.subscribe(Subscribe::to("*").name("detached"), seen.handler())
            .await
            .unwrap()
            .detach();
        bus.publish(numbered("a.B", 1)).await.unwrap();
        eventually("the first", || seen.len() == 1).await;
    }
    // The consumer leaves the group once its task ends (nothing was pending with it).
    eventually("the consumer gone", || {
        cli(&["XINFO", "CONSUMERS", &stream, "detached"]) == json!([])
    })
    .await;
    cli(&[
        "XADD",
        &stream,
        "*",
        "ce-id",
        &uuid::Uuid::now_v7().to_string(),
        "ce-type",
        "a.B",
        "data",
        "{}",
    ]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.len(), 1, "a dropped bus's subscription still ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_the_groups_lag_and_stats_the_counts() {
    if !redis_available("health") {
        return;
    }
    let keys = Keys::new("health");
    let bus = RedisBus::builder(redis_url())
        .prefix(keys.0.clone())
        .block(Duration::from_millis(20))
        .batch_size(1)
        .claim_idle(Duration::from_secs(2))
        .group_start(GroupStart::Beginning)
        .build()
        .await
        .unwrap();
    let health = bus.health();
    assert!(health.connected);
    assert_eq!((health.reconnects, health.lag_events), (0, 0));
    bus.publish_batch((0..40).map(|n| numbered("a.B", n)).collect())
        .await
        .unwrap();
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |delivery: Delivery| {
            seen.push(&delivery);
            async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok(())
            }
        }
    };
    let sub = bus
        .subscribe(Subscribe::to("*").name("lagging"), handler)
        .await
        .unwrap();
    eventually("a lag", || bus.health().lag_events > 0).await;
    eventually("all handled", || seen.len() == 40).await;
    eventually("no lag", || bus.health().lag_events == 0).await;
    let stats = bus.stats();
    assert_eq!(
        (stats.published, stats.delivered, stats.failed, stats.dead),
        (40, 40, 0, 0)
    );
    sub.close().await.unwrap();
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_xadd_is_a_publish_error_naming_the_event() {
    if !redis_available("refused") {
        return;
    }
    let keys = Keys::new("refused");
    cli(&["SET", &keys.key("not-a-stream"), "x"]);
    let sink = RedisSink::builder(redis_url())
        .prefix(keys.0.clone())
        .build()
        .await
        .unwrap();
    let good = numbered("a.B", 1);
    let bad = numbered("a.B", 2);
    let error = sink
        .send(vec![
            Outgoing::new("fine", good),
            Outgoing::new("not-a-stream", bad.clone()),
        ])
        .await
        .expect_err("WRONGTYPE");
    match &error {
        Error::Publish {
            destination,
            event_id,
            retryable,
            ..
        } => {
            assert_eq!(*event_id, bad.id);
            assert!(destination.contains("not-a-stream"), "{destination}");
            assert!(!retryable);
        }
        other => panic!("{other:?}"),
    }
    assert!(sink.health().last_error.unwrap().contains("WRONGTYPE"));
    assert_eq!(sink.stats().published, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_typed_retryable_error() {
    let error = RedisBus::builder("redis://127.0.0.1:1")
        .build()
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(error, Error::Broker { .. }), "{error:?}");
    assert!(error.is_retryable(), "{error:?}");
    let error = RedisSink::builder("nats://127.0.0.1:4222")
        .build()
        .await
        .expect_err("not a Redis URL");
    assert!(matches!(error, Error::Validation(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_delivers_to_connected_subscribers_only() {
    if !redis_available("pub_sub") {
        return;
    }
    let keys = Keys::new("pubsub");
    let bus = RedisPubSubBus::builder(redis_url())
        .prefix(keys.0.clone())
        .build()
        .await
        .unwrap();
    // At most once: published before anyone listens, it is gone.
    bus.publish(numbered("user.Registered", 0)).await.unwrap();
    let (early, late) = (Seen::default(), Seen::default());
    let a = bus.subscribe("user.*", early.handler()).await.unwrap();
    bus.publish(numbered("user.Registered", 1)).await.unwrap();
    bus.publish(numbered("order.Placed", 2)).await.unwrap();
    eventually("the first", || early.len() == 1).await;
    // A later subscriber misses what came before it.
    let b = bus.subscribe("*", late.handler()).await.unwrap();
    bus.publish(numbered("user.Deleted", 3)).await.unwrap();
    eventually("both", || early.len() == 2 && late.len() == 1).await;
    assert_eq!(early.ns(), [1, 3]);
    assert_eq!(late.ns(), [3]);
    // A failing handler is retried in this process only, then dead-lettered.
    let tries = Arc::new(AtomicU32::new(0));
    let failing = {
        let tries = Arc::clone(&tries);
        move |_: Delivery| {
            tries.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Err(HandlerError::retry("down")))
        }
    };
    let c = bus
        .subscribe(
            Subscribe::to("audit.*").max_deliveries(2).backoff(fixed(5)),
            failing,
        )
        .await
        .unwrap();
    bus.publish(numbered("audit.Logged", 9)).await.unwrap();
    eventually("dead after two tries", || bus.stats().dead == 1).await;
    assert_eq!(tries.load(Ordering::Relaxed), 2);
    let audit = xrange(&dead_letter_key(&keys.key("audit.Logged")));
    assert_eq!(audit.len(), 1);
    assert!(
        field(&audit[0].1, DEAD_REASON_FIELD)
            .unwrap()
            .contains("down")
    );
    c.close().await.unwrap();
    // No consumer groups in pub/sub.
    let refused = bus
        .subscribe(Subscribe::to("*").group("g"), late.handler())
        .await;
    assert!(matches!(refused, Err(Error::Validation(_))), "{refused:?}");
    // Not a chronicle event: dead-lettered, never handled.
    let channel = keys.key("user.Bogus");
    assert_eq!(cli(&["PUBLISH", &channel, "{\"data\": 1}"]), json!(2));
    eventually("dead, once per subscription", || bus.stats().dead == 3).await;
    let dead = xrange(&dead_letter_key(&channel));
    assert_eq!(dead.len(), 2, "one per subscription");
    assert_eq!(field(&dead[0].1, "data"), Some("{\"data\": 1}"));
    assert_eq!(early.len() + late.len(), 4, "`*` saw the audit event too");
    let stats = bus.stats();
    assert_eq!((stats.published, stats.delivered, stats.failed), (5, 4, 2));
    assert!(bus.health().connected);
    a.close().await.unwrap();
    b.close().await.unwrap();
    bus.close().await.unwrap();
}
