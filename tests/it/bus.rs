//! The event bus: the in-memory bus (patterns, both dispatch modes, backpressure,
//! failing and panicking handlers, order per publisher, groups), the test buses with
//! `AggregateTest`, and the relay from the log on every backend (start positions,
//! mapping and filtering, a failing sink, stats and health, SQLite appends while a sink
//! is slow, PostgreSQL's end of the log while a transaction is open, and a relay killed
//! with SIGKILL in a child process).

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle::bus::{
    Bus, BusEvent, BusStats, Delivery, Dispatch, EventSink, HandlerError, InMemoryBus, NoopBus,
    Outgoing, RecordingBus, StartFrom, Subscribe, Topic,
};
use chronicle::outbox::{ErrorReporter, Failure, FailureKind};
use chronicle::testing::AggregateTest;
use chronicle::{
    Error, ExpectedVersion, LogPosition, NewEvent, Projection, ProjectionContext, ProjectionError,
    ProjectionState, RecordedEvent, Store,
};
use serde_json::json;

use crate::domain::{Account, AccountCommand, AccountEvent};
use crate::support::{Kind, TestStore};

/// A handler that keeps the types (and data's `n`) it saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, i64)>>>);

impl Seen {
    fn handler(
        &self,
    ) -> impl Fn(Delivery) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + use<>
    {
        let seen = self.clone();
        move |delivery: Delivery| {
            let n = delivery
                .json()
                .ok()
                .and_then(|data| data["n"].as_i64())
                .unwrap_or(-1);
            seen.0
                .lock()
                .unwrap()
                .push((delivery.event_type.clone(), n));
            std::future::ready(Ok(()))
        }
    }

    fn types(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }

    fn ns(&self) -> Vec<i64> {
        self.0.lock().unwrap().iter().map(|(_, n)| *n).collect()
    }
}

fn event(event_type: &str, n: i64) -> BusEvent {
    BusEvent::new(event_type, json!({ "n": n }))
}

/// A failure as reported: kind, handler, attempt, dead, the `Refused` source's text.
type Report = (FailureKind, String, u32, bool, Option<String>);

/// Keeps every failure reported.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<Report>>>);

impl ErrorReporter for Reports {
    fn report(&self, failure: &Failure<'_>) -> bool {
        let source = failure
            .source
            .and_then(|source| source.downcast_ref::<Refused>())
            .map(|refused| refused.0.clone());
        self.0.lock().unwrap().push((
            failure.kind,
            failure.handler.to_owned(),
            failure.attempt,
            failure.dead,
            source,
        ));
        true
    }
}

#[derive(Debug, Clone)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused: {}", self.0)
    }
}

impl std::error::Error for Refused {}

#[tokio::test]
async fn patterns_route_exact_glob_and_every_type() {
    let bus = InMemoryBus::new();
    let (exact, prefix, suffix, all) = (
        Seen::default(),
        Seen::default(),
        Seen::default(),
        Seen::default(),
    );
    let _a = bus
        .subscribe("user.Registered", exact.handler())
        .await
        .unwrap();
    let _b = bus.subscribe("user.*", prefix.handler()).await.unwrap();
    let _c = bus.subscribe("*.Deleted", suffix.handler()).await.unwrap();
    let _d = bus.subscribe("*", all.handler()).await.unwrap();
    for event_type in [
        "user.Registered",
        "user.Deleted",
        "order.Deleted",
        "order.Placed",
    ] {
        bus.publish(event(event_type, 0)).await.unwrap();
    }
    assert_eq!(exact.types(), ["user.Registered"]);
    assert_eq!(prefix.types(), ["user.Registered", "user.Deleted"]);
    assert_eq!(suffix.types(), ["user.Deleted", "order.Deleted"]);
    assert_eq!(all.types().len(), 4);
    let stats = bus.stats();
    assert_eq!(
        (stats.published, stats.delivered, stats.failed),
        (4, 1 + 2 + 2 + 4, 0)
    );
}

#[tokio::test]
async fn sync_dispatch_runs_every_handler_inside_publish() {
    let bus = InMemoryBus::new();
    assert_eq!(bus.dispatch(), Dispatch::Sync);
    let count = Arc::new(AtomicU64::new(0));
    for _ in 0..3 {
        let count = Arc::clone(&count);
        bus.subscribe("*", move |_: Delivery| {
            let count = Arc::clone(&count);
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                count.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .await
        .unwrap()
        .detach();
    }
    bus.publish(event("a", 1)).await.unwrap();
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "all ran before publish returned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_dispatch_runs_handlers_beside_the_publisher_and_close_drains() {
    let bus = InMemoryBus::builder()
        .dispatch(Dispatch::Buffered { capacity: 64 })
        .build();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let seen = Seen::default();
    {
        let (gate, seen) = (Arc::clone(&gate), seen.clone());
        bus.subscribe("*", move |delivery: Delivery| {
            let (gate, handler) = (Arc::clone(&gate), seen.handler());
            async move {
                gate.acquire().await.unwrap().forget();
                handler(delivery).await
            }
        })
        .await
        .unwrap()
        .detach();
    }
    for n in 0..10 {
        // Returns although the handler is held at the gate.
        tokio::time::timeout(Duration::from_secs(5), bus.publish(event("a", n)))
            .await
            .expect("publish does not wait for the handler")
            .unwrap();
    }
    assert!(seen.ns().is_empty());
    let lag = bus.health().lag_events;
    assert!(
        (9..=10).contains(&lag),
        "buffered: {lag} (one may be in the handler)"
    );
    gate.add_permits(10);
    bus.close().await.unwrap();
    assert_eq!(
        seen.ns(),
        (0..10).collect::<Vec<_>>(),
        "close waited for all"
    );
    assert!(matches!(
        bus.publish(event("a", 11)).await,
        Err(Error::BusClosed { .. })
    ));
    assert!(!bus.health().connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_makes_publish_wait_and_drops_nothing() {
    let bus = InMemoryBus::builder()
        .dispatch(Dispatch::Buffered { capacity: 2 })
        .build();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let seen = Seen::default();
    {
        let (gate, seen) = (Arc::clone(&gate), seen.clone());
        bus.subscribe("*", move |delivery: Delivery| {
            let (gate, handler) = (Arc::clone(&gate), seen.handler());
            async move {
                gate.acquire().await.unwrap().forget();
                handler(delivery).await
            }
        })
        .await
        .unwrap()
        .detach();
    }
    // One in the handler, two in the buffer: the fourth waits.
    for n in 0..3 {
        bus.publish(event("a", n)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for n in 3..20 {
                bus.publish(event("a", n)).await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !publisher.is_finished(),
        "publish waits while the buffer is full"
    );
    assert_eq!(
        bus.stats().published,
        3,
        "the waiting publish is not acknowledged yet"
    );
    gate.add_permits(100);
    publisher.await.unwrap();
    bus.close().await.unwrap();
    assert_eq!(seen.ns(), (0..20).collect::<Vec<_>>());
    let stats = bus.stats();
    assert_eq!((stats.published, stats.delivered), (20, 20));
}

async fn failures_are_caught_counted_and_reported(dispatch: Dispatch) {
    let reports = Reports::default();
    let bus = InMemoryBus::builder()
        .dispatch(dispatch)
        .reporter(reports.clone())
        .build();
    let healthy = Seen::default();
    let quick =
        |name: &str| {
            Subscribe::to("*").name(name).max_deliveries(2).backoff(
                chronicle::bus::Backoff::from_fn(|_| Duration::from_millis(1)),
            )
        };
    bus.subscribe(quick("panics"), |delivery: Delivery| async move {
        if delivery.attempt() == 1 {
            panic!("handler bug on {}", delivery.event_type);
        }
        Ok(())
    })
    .await
    .unwrap()
    .detach();
    bus.subscribe(quick("fatal"), |_: Delivery| async {
        Err(HandlerError::fatal(Refused("never".into())))
    })
    .await
    .unwrap()
    .detach();
    bus.subscribe(quick("flaky"), |_: Delivery| async {
        Err(HandlerError::retry(Refused("down".into())))
    })
    .await
    .unwrap()
    .detach();
    bus.subscribe("*", healthy.handler())
        .await
        .unwrap()
        .detach();
    for n in 0..3 {
        bus.publish(event("a", n)).await.unwrap();
    }
    bus.close().await.unwrap();

    assert_eq!(healthy.ns(), [0, 1, 2], "the others never stopped it");
    let stats = bus.stats();
    // Per event: a panic then an ack; a fatal error; two retryable failures.
    assert_eq!(
        (
            stats.published,
            stats.delivered,
            stats.failed,
            stats.panicked,
            stats.dead
        ),
        (3, 3 + 3, 3 * (1 + 1 + 2), 3, 3 * 2)
    );
    let reports = reports.0.lock().unwrap().clone();
    let of = |kind| reports.iter().filter(|r| r.0 == kind).collect::<Vec<_>>();
    let panics = of(FailureKind::Panic);
    assert_eq!(panics.len(), 3);
    assert!(panics.iter().all(|r| r.1 == "panics" && r.2 == 1 && !r.3));
    let fatal = of(FailureKind::NonRetryable);
    assert_eq!(fatal.len(), 3);
    assert!(
        fatal
            .iter()
            .all(|r| r.1 == "fatal" && r.3 && r.4.as_deref() == Some("never")),
        "the handler's own error, typed: {fatal:?}"
    );
    let dead = of(FailureKind::Dead);
    assert_eq!(dead.len(), 3);
    assert!(dead.iter().all(|r| r.1 == "flaky" && r.2 == 2 && r.3));
    assert!(bus.health().last_error.is_some());
}

#[tokio::test]
async fn failing_and_panicking_handlers_are_caught_counted_and_reported_sync() {
    failures_are_caught_counted_and_reported(Dispatch::Sync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_panicking_handlers_are_caught_counted_and_reported_buffered() {
    failures_are_caught_counted_and_reported(Dispatch::Buffered { capacity: 4 }).await;
}

#[tokio::test]
async fn a_retried_event_is_delivered_again_with_its_attempt() {
    let bus = InMemoryBus::new();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    {
        let attempts = Arc::clone(&attempts);
        bus.subscribe(
            Subscribe::to("*").backoff(chronicle::bus::Backoff::from_fn(|_| Duration::ZERO)),
            move |delivery: Delivery| {
                let attempts = Arc::clone(&attempts);
                async move {
                    attempts.lock().unwrap().push(delivery.attempt());
                    if delivery.attempt() < 3 {
                        return Err(HandlerError::retry(Refused("later".into())));
                    }
                    Ok(())
                }
            },
        )
        .await
        .unwrap()
        .detach();
    }
    bus.publish(event("a", 1)).await.unwrap();
    assert_eq!(*attempts.lock().unwrap(), [1, 2, 3]);
    let stats = bus.stats();
    assert_eq!((stats.delivered, stats.failed, stats.dead), (1, 2, 0));
}

/// Each publisher's events reach each handler in publish order.
async fn order_per_publisher(dispatch: Dispatch, publishers: u32, events: u32, handlers: u32) {
    let bus = InMemoryBus::builder().dispatch(dispatch).build();
    // Per handler, the (publisher, n) pairs in the order seen.
    type Log = Arc<Mutex<Vec<(u32, u32)>>>;
    let seen: Vec<Log> = (0..handlers)
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();
    for log in &seen {
        let log = Arc::clone(log);
        bus.subscribe("*", move |delivery: Delivery| {
            let data = delivery.json().unwrap();
            let pair = (
                data["p"].as_u64().unwrap() as u32,
                data["n"].as_u64().unwrap() as u32,
            );
            log.lock().unwrap().push(pair);
            async { Ok(()) }
        })
        .await
        .unwrap()
        .detach();
    }
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for n in 0..events {
                    bus.publish(BusEvent::new("e", json!({ "p": p, "n": n })))
                        .await
                        .unwrap();
                    if n % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    bus.close().await.unwrap();
    for log in seen {
        let log = log.lock().unwrap();
        assert_eq!(log.len() as u32, publishers * events, "nothing lost");
        let mut next: HashMap<u32, u32> = HashMap::new();
        for &(p, n) in log.iter() {
            let expected = next.entry(p).or_default();
            assert_eq!(n, *expected, "publisher {p}'s events out of order");
            *expected += 1;
        }
    }
}

#[test]
fn handlers_see_each_publishers_events_in_order() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        buffered in proptest::option::of(1usize..8),
        publishers in 1u32..5,
        events in 1u32..60,
        handlers in 1u32..4,
    )| {
        let dispatch = match buffered {
            Some(capacity) => Dispatch::Buffered { capacity },
            None => Dispatch::Sync,
        };
        runtime.block_on(order_per_publisher(dispatch, publishers, events, handlers));
    });
}

#[tokio::test]
async fn a_group_shares_its_events_between_members() {
    let bus = InMemoryBus::new();
    let (first, second, alone) = (Seen::default(), Seen::default(), Seen::default());
    let _first = bus
        .subscribe(Subscribe::to("*").group("billing"), first.handler())
        .await
        .unwrap();
    let _second = bus
        .subscribe(Subscribe::to("*").group("billing"), second.handler())
        .await
        .unwrap();
    let _alone = bus.subscribe("*", alone.handler()).await.unwrap();
    for n in 0..6 {
        bus.publish(event("a", n)).await.unwrap();
    }
    assert_eq!(first.ns(), [0, 2, 4]);
    assert_eq!(second.ns(), [1, 3, 5]);
    assert_eq!(alone.ns(), [0, 1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn a_closed_or_dropped_subscription_gets_nothing_more() {
    let bus = InMemoryBus::new();
    let (closed, dropped) = (Seen::default(), Seen::default());
    let closing = bus.subscribe("*", closed.handler()).await.unwrap();
    let dropping = bus.subscribe("*", dropped.handler()).await.unwrap();
    bus.publish(event("a", 1)).await.unwrap();
    closing.close().await.unwrap();
    drop(dropping);
    // The drop closes on a task of its own.
    for _ in 0..100 {
        if bus.subscription_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bus.publish(event("a", 2)).await.unwrap();
    assert_eq!(closed.ns(), [1]);
    assert_eq!(dropped.ns(), [1]);
    assert_eq!(bus.subscription_count(), 0);
}

#[tokio::test]
async fn error_events_and_must_publish() {
    let bus = RecordingBus::new();
    let failure = Refused("card declined".into());
    bus.publish_error(&failure, json!({ "order": 7 }))
        .await
        .unwrap();
    let errors = bus.events_of_type(chronicle::bus::ERROR_EVENT_TYPE);
    assert_eq!(errors.len(), 1);
    let data = errors[0].json().unwrap();
    assert_eq!(data["message"], "refused: card declined");
    assert_eq!(data["context"]["order"], 7);

    bus.must_publish(event("a", 1)).await;
    assert!(bus.has_event("a"));
    bus.close().await.unwrap();
    let panicked = tokio::spawn(async move { bus.must_publish(event("a", 2)).await });
    let message = panicked
        .await
        .expect_err("must_publish panics on a closed bus");
    assert!(message.is_panic());
}

#[tokio::test]
async fn recording_and_noop_buses_take_a_commands_events() {
    let bus = RecordingBus::new();
    let subscribed = Seen::default();
    bus.subscribe("account.*", subscribed.handler())
        .await
        .unwrap()
        .detach();
    let state = AggregateTest::<Account>::given([AccountEvent::Opened {
        owner: "ada".into(),
    }])
    .id("42")
    .when(AccountCommand::Deposit(30))
    .publish_to(&bus)
    .await
    .then([AccountEvent::Deposited { amount: 30 }]);
    assert_eq!(state.balance, 30);
    assert!(bus.has_event("account.Deposited"));
    assert!(
        !bus.has_event("account.Opened"),
        "given events are history, not published"
    );
    let deposited = bus.events_of_type("account.Deposited");
    assert_eq!(deposited.len(), 1);
    assert_eq!(deposited[0].subject.as_deref(), Some("account-42"));
    assert_eq!(deposited[0].json().unwrap(), json!({ "amount": 30 }));
    assert_eq!(
        subscribed.types(),
        ["account.Deposited"],
        "subscribers got it"
    );

    // A refused command publishes nothing.
    bus.clear();
    AggregateTest::<Account>::given([])
        .when(AccountCommand::Deposit(5))
        .publish_to(&bus)
        .await
        .then_error(crate::domain::AccountError::NotOpen);
    assert!(bus.events().is_empty());

    let noop = NoopBus::new();
    AggregateTest::<Account>::given([])
        .when(AccountCommand::Open {
            owner: "bob".into(),
        })
        .publish_to(&noop)
        .await
        .then([AccountEvent::Opened {
            owner: "bob".into(),
        }]);
    assert_eq!(noop.publish_count(), 1);
    assert_eq!(Bus::stats(&noop).published, 1);
}

// ---------------------------------------------------------------------------------------
// The relay.

crate::for_each_backend!(
    relay_sends_every_event_in_order_with_its_id,
    relay_starts_at_the_end_of_the_log_by_default,
    relay_starts_after_a_position,
    relay_resumes_from_its_checkpoint,
    relay_maps_filters_and_names_topics,
    relay_retries_a_failing_sink_without_losing_events,
);

fn numbered(n: i64) -> NewEvent {
    NewEvent::new("order.Placed", json!({ "n": n }))
}

async fn append(store: &Store, stream: &str, range: std::ops::Range<i64>) -> Vec<uuid::Uuid> {
    let events: Vec<NewEvent> = range.map(numbered).collect();
    let ids = events.iter().map(NewEvent::event_id).collect();
    store
        .append(stream, ExpectedVersion::Any, events)
        .await
        .unwrap();
    ids
}

/// Waits until `relay` is idle past the newest event of `store`. `wait_for_idle` alone
/// can return while an event just appended sits, on PostgreSQL, behind another test's
/// transaction (a reader of the log is idle when it caught up with what it may read).
async fn idle(relay: &chronicle::bus::RelayHandle, store: &Store) {
    use futures::StreamExt as _;
    let streams = store
        .list_streams(&chronicle::StreamListQuery::new())
        .await
        .unwrap();
    let mut newest = None;
    for info in streams {
        let last = std::pin::pin!(store.read_stream(
            info.stream_id.as_str(),
            u64::MAX,
            chronicle::Direction::Backward,
        ))
        .next()
        .await;
        if let Some(Ok(event)) = last {
            newest = newest.max(Some(event.log_position()));
        }
    }
    if let Some(newest) = newest {
        // Bounded: a relay that must stop short (a failing sink) then ends as before.
        let _ = tokio::time::timeout(Duration::from_secs(60), relay.wait_until(newest)).await;
    }
    relay.wait_for_idle().await.unwrap();
}

async fn open(kind: Kind, test: &str) -> Option<TestStore> {
    kind.open(test).await
}

async fn relay_sends_every_event_in_order_with_its_id(kind: Kind) {
    let Some(t) = open(kind, "relay_sends_every_event").await else {
        return;
    };
    let mut ids = append(&t.store, "order-1", 0..30).await;
    ids.extend(append(&t.store, "order-2", 30..45).await);
    let sink = RecordingBus::new();
    let relay = t
        .store
        .relay("all")
        .start_from(StartFrom::Beginning)
        .batch_size(7)
        .spawn(sink.clone());
    idle(&relay, &t.store).await;
    let live = append(&t.store, "order-1", 45..50).await;
    ids.extend(&live);
    idle(&relay, &t.store).await;
    let sent = sink.events();
    assert_eq!(sent.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(sent[0].subject.as_deref(), Some("order-1"));
    assert_eq!(sent[0].event_type, "order.Placed");
    assert_eq!(sent[0].json().unwrap(), json!({ "n": 0 }));
    assert!(sink.topics().iter().all(|topic| topic == "order"));
    let stats = relay.stats();
    assert_eq!((stats.published, stats.dropped, stats.failed), (50, 0, 0));
    let health = relay.health();
    assert!(health.connected);
    assert_eq!(health.lag_events, 0);
    let status = relay.stop().await.unwrap();
    assert_eq!(status.state, ProjectionState::Stopped);
    assert_eq!(
        t.store.checkpoint("relay:all").await.unwrap(),
        Some(status.position)
    );
}

async fn relay_starts_at_the_end_of_the_log_by_default(kind: Kind) {
    let Some(t) = open(kind, "relay_starts_at_the_end").await else {
        return;
    };
    append(&t.store, "order-1", 0..20).await;
    // On PostgreSQL the end of the log stays behind transactions still running anywhere
    // on the server (other tests'), and a relay starting at the end then sends what
    // committed after them (documented). Wait until the history is behind the end.
    let history: Vec<_> = futures::TryStreamExt::try_collect(t.store.read_stream(
        "order-1",
        1,
        chronicle::Direction::Forward,
    ))
    .await
    .unwrap();
    let last = history.last().unwrap().log_position();
    let settled = tokio::time::timeout(Duration::from_secs(120), async {
        while t.store.log_end().await.unwrap() < last {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "the end of the log never passed {last}");
    let sink = RecordingBus::new();
    let relay = t.store.relay("from-now").spawn(sink.clone());
    idle(&relay, &t.store).await;
    assert!(sink.is_empty(), "history is not sent unless asked");
    let new = append(&t.store, "order-1", 20..23).await;
    idle(&relay, &t.store).await;
    assert_eq!(
        sink.events().iter().map(|e| e.id).collect::<Vec<_>>(),
        new,
        "{:?}",
        relay.status()
    );
    relay.stop().await.unwrap();

    // A restart resumes from the checkpoint: what was appended meanwhile comes, not the
    // history before the first start.
    let meanwhile = append(&t.store, "order-1", 23..25).await;
    let relay = t.store.relay("from-now").spawn(sink.clone());
    idle(&relay, &t.store).await;
    assert_eq!(
        sink.events()
            .iter()
            .map(|e| e.id)
            .skip(3)
            .collect::<Vec<_>>(),
        meanwhile
    );
    relay.stop().await.unwrap();
}

async fn relay_starts_after_a_position(kind: Kind) {
    let Some(t) = open(kind, "relay_starts_after").await else {
        return;
    };
    append(&t.store, "order-1", 0..10).await;
    let log: Vec<RecordedEvent> = {
        use futures::TryStreamExt;
        t.store
            .read_all(LogPosition::START)
            .try_collect()
            .await
            .unwrap()
    };
    let sink = RecordingBus::new();
    let relay = t
        .store
        .relay("after-6")
        .start_from(StartFrom::After(log[5].log_position()))
        .spawn(sink.clone());
    idle(&relay, &t.store).await;
    let ns: Vec<i64> = sink
        .events()
        .iter()
        .map(|e| e.json().unwrap()["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [6, 7, 8, 9]);
    relay.stop().await.unwrap();
}

async fn relay_resumes_from_its_checkpoint(kind: Kind) {
    let Some(t) = open(kind, "relay_resumes").await else {
        return;
    };
    append(&t.store, "order-1", 0..10).await;
    let sink = NoopBus::new();
    let relay = t
        .store
        .relay("resume")
        .start_from(StartFrom::Beginning)
        .spawn(sink.clone());
    idle(&relay, &t.store).await;
    relay.stop().await.unwrap();
    assert_eq!(sink.publish_count(), 10);
    append(&t.store, "order-1", 10..15).await;
    // Beginning only counts without a checkpoint.
    let relay = t
        .store
        .relay("resume")
        .start_from(StartFrom::Beginning)
        .spawn(sink.clone());
    idle(&relay, &t.store).await;
    relay.stop().await.unwrap();
    assert_eq!(sink.publish_count(), 15, "nothing sent twice");
}

async fn relay_maps_filters_and_names_topics(kind: Kind) {
    let Some(t) = open(kind, "relay_maps").await else {
        return;
    };
    t.store
        .append(
            "order-1",
            ExpectedVersion::Any,
            vec![
                NewEvent::new("order.Placed", json!({ "n": 1, "secret": "x" })),
                NewEvent::new("order.Noted", json!({ "n": 2 })),
                NewEvent::new("user.Registered", json!({ "n": 3 })),
                NewEvent::new("order.Shipped", json!({ "n": 4 })),
            ],
        )
        .await
        .unwrap();
    let sink = RecordingBus::new();
    let relay = t
        .store
        .relay("public")
        .start_from(StartFrom::Beginning)
        .event_types(["order.*"])
        .map(|event| {
            if event.event_type == "order.Noted" {
                return None; // private
            }
            let data = event.json().ok()?;
            Some(
                BusEvent::from(event)
                    .event_type(format!("public.{}", event.event_type))
                    .with_data(json!({ "n": data["n"] })),
            )
        })
        .topic(Topic::event_type().prefixed("events."))
        .spawn(sink.clone());
    idle(&relay, &t.store).await;
    let sent = sink.events();
    let types: Vec<&str> = sent.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["public.order.Placed", "public.order.Shipped"]);
    assert_eq!(sent[0].json().unwrap(), json!({ "n": 1 }), "mapped data");
    assert_eq!(
        sink.topics(),
        ["events.public.order.Placed", "events.public.order.Shipped"]
    );
    let stats = relay.stats();
    assert_eq!((stats.published, stats.dropped), (2, 2));
    relay.stop().await.unwrap();

    // The one-line setup: every event of a category to a topic named after it.
    let sink = RecordingBus::new();
    t.store
        .append("user-9", ExpectedVersion::Any, vec![numbered(5)])
        .await
        .unwrap();
    let relay = t
        .store
        .relay("by-category")
        .start_from(StartFrom::Beginning)
        .spawn(sink.clone());
    idle(&relay, &t.store).await;
    assert_eq!(sink.topics(), ["order", "order", "order", "order", "user"]);
    relay.stop().await.unwrap();
}

/// A sink that fails its first `failures` sends, then records.
#[derive(Clone)]
struct Flaky {
    failures: Arc<AtomicU32>,
    inner: RecordingBus,
}

impl EventSink for Flaky {
    async fn send(&self, batch: Vec<Outgoing>) -> chronicle::Result<()> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            let first = &batch[0].event;
            return Err(Error::Publish {
                destination: "a flaky test sink".into(),
                event_id: first.id,
                event_type: first.event_type.clone(),
                retryable: true,
                source: Box::new(Refused("broker down".into())),
            });
        }
        EventSink::send(&self.inner, batch).await
    }

    fn health(&self) -> chronicle::bus::BusHealth {
        EventSink::health(&self.inner)
    }

    fn stats(&self) -> BusStats {
        EventSink::stats(&self.inner)
    }
}

async fn relay_retries_a_failing_sink_without_losing_events(kind: Kind) {
    let Some(t) = open(kind, "relay_retries").await else {
        return;
    };
    let ids = append(&t.store, "order-1", 0..12).await;
    let sink = Flaky {
        failures: Arc::new(AtomicU32::new(3)),
        inner: RecordingBus::new(),
    };
    let relay = t
        .store
        .relay("flaky")
        .start_from(StartFrom::Beginning)
        .retries(
            u32::MAX,
            Duration::from_millis(5),
            Duration::from_millis(20),
        )
        .spawn(sink.clone());
    idle(&relay, &t.store).await;
    let sent: Vec<uuid::Uuid> = sink.inner.events().iter().map(|e| e.id).collect();
    let distinct: HashSet<_> = sent.iter().collect();
    assert_eq!(distinct.len(), 12, "every event arrived");
    assert!(ids.iter().all(|id| distinct.contains(id)));
    let stats = relay.stats();
    assert_eq!(stats.failed, 3);
    assert!(relay.status().last_error.unwrap().contains("broker down"));
    relay.stop().await.unwrap();
}

/// A sink that blocks until released.
#[derive(Clone)]
struct Held {
    entered: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Semaphore>,
}

impl EventSink for Held {
    async fn send(&self, _batch: Vec<Outgoing>) -> chronicle::Result<()> {
        self.entered.notify_one();
        self.release.acquire().await.unwrap().forget();
        Ok(())
    }

    fn health(&self) -> chronicle::bus::BusHealth {
        chronicle::bus::BusHealth::default()
    }

    fn stats(&self) -> BusStats {
        BusStats::default()
    }
}

/// The relay sends before its batch's transaction opens: on SQLite, whose batches hold
/// the write lock, appends go on while a broker takes its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_appends_go_on_while_the_sink_is_slow() {
    let t = Kind::Sqlite
        .open("sqlite_appends_while_slow")
        .await
        .unwrap();
    append(&t.store, "order-1", 0..5).await;
    let sink = Held {
        entered: Arc::new(tokio::sync::Notify::new()),
        release: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let relay = t
        .store
        .relay("slow")
        .start_from(StartFrom::Beginning)
        .spawn(sink.clone());
    sink.entered.notified().await;
    tokio::time::timeout(Duration::from_secs(2), append(&t.store, "order-2", 5..6))
        .await
        .expect("an append does not wait for the sink");
    sink.release.add_permits(100);
    idle(&relay, &t.store).await;
    relay.stop().await.unwrap();
}

/// A projection can start from the end of the log too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_can_start_from_the_end() {
    struct Count(Arc<AtomicU64>);
    impl Projection for Count {
        fn name(&self) -> &str {
            "count"
        }
        async fn apply(
            &self,
            _event: &RecordedEvent,
            _ctx: &mut ProjectionContext<'_>,
        ) -> Result<(), ProjectionError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
    let t = Kind::Sqlite.open("projection_from_end").await.unwrap();
    append(&t.store, "order-1", 0..10).await;
    let count = Arc::new(AtomicU64::new(0));
    let handle = t
        .store
        .projections()
        .start_from(StartFrom::End)
        .spawn(Count(Arc::clone(&count)));
    handle.wait_for_idle().await.unwrap();
    append(&t.store, "order-1", 10..12).await;
    handle.wait_for_idle().await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 2);
    handle.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Kill -9: a relay in a child process of this test binary, killed with SIGKILL mid-stream.

/// Set in the child process, with the database and the output file.
const CHILD_DB: &str = "CHRONICLE_RELAY_CHILD_DB";
const CHILD_OUT: &str = "CHRONICLE_RELAY_CHILD_OUT";
/// Events in the log, and the relay's batch size.
const KILL_EVENTS: i64 = 3_000;
const KILL_BATCH: usize = 100;

/// Appends each batch's event ids to a file, one per line, in one write, then syncs it;
/// then waits a little before acknowledging (so that a kill often lands between the
/// write and the checkpoint).
struct FileSink {
    file: Mutex<std::fs::File>,
    pause: Duration,
}

impl FileSink {
    fn open(path: &str, pause: Duration) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        FileSink {
            file: Mutex::new(file),
            pause,
        }
    }
}

impl EventSink for FileSink {
    async fn send(&self, batch: Vec<Outgoing>) -> chronicle::Result<()> {
        let lines: String = batch
            .iter()
            .map(|sent| format!("{}\n", sent.dedup_key()))
            .collect();
        {
            let mut file = self.file.lock().unwrap();
            file.write_all(lines.as_bytes()).unwrap();
            file.sync_data().unwrap();
        }
        tokio::time::sleep(self.pause).await;
        Ok(())
    }

    fn health(&self) -> chronicle::bus::BusHealth {
        chronicle::bus::BusHealth::default()
    }

    fn stats(&self) -> BusStats {
        BusStats::default()
    }
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_with_sigkill_resends_at_most_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("events.db").display());
    let out = dir.path().join("sent.txt");
    let store = Store::open(db.clone()).await.unwrap();
    let mut ids = Vec::new();
    for start in (0..KILL_EVENTS).step_by(500) {
        ids.extend(append(&store, &format!("order-{start}"), start..start + 500).await);
    }

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "bus::relay_child",
            "--ignored",
            "--test-threads",
            "1",
            "--nocapture",
        ])
        .env(CHILD_DB, &db)
        .env(CHILD_OUT, &out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a third of the log is out.
    crate::bus_support::kill_when(&mut child, || {
        std::future::ready(lines(&out).len() >= KILL_EVENTS as usize / 3)
    })
    .await;
    let at_kill = lines(&out).len();
    assert!(
        at_kill < KILL_EVENTS as usize,
        "killed mid-stream ({at_kill} sent)"
    );

    // The restarted relay picks up from the checkpoint.
    let relay = store
        .relay("killed")
        .start_from(StartFrom::Beginning)
        .batch_size(KILL_BATCH)
        .spawn(FileSink::open(out.to_str().unwrap(), Duration::ZERO));
    idle(&relay, &store).await;
    relay.stop().await.unwrap();

    let sent = lines(&out);
    let distinct: HashSet<&str> = sent.iter().map(String::as_str).collect();
    for id in &ids {
        assert!(distinct.contains(id.to_string().as_str()), "{id} was lost");
    }
    assert_eq!(distinct.len(), ids.len(), "nothing but the log's events");
    let duplicates = sent.len() - distinct.len();
    println!("killed after {at_kill} lines; {duplicates} sent again after the restart");
    assert!(
        duplicates <= KILL_BATCH,
        "{duplicates} duplicates: more than the one unacknowledged batch"
    );
    // Order: the first copy of each event comes in log order.
    let mut first_seen = Vec::new();
    let mut met = HashSet::new();
    for id in &sent {
        if met.insert(id.as_str()) {
            first_seen.push(id.clone());
        }
    }
    let expected: Vec<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(first_seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a child process: see a_relay_killed_with_sigkill_resends_at_most_one_batch"]
async fn relay_child() {
    let (Ok(db), Ok(out)) = (std::env::var(CHILD_DB), std::env::var(CHILD_OUT)) else {
        return;
    };
    let store = Store::open(db).await.unwrap();
    let relay = store
        .relay("killed")
        .start_from(StartFrom::Beginning)
        .batch_size(KILL_BATCH)
        .spawn(FileSink::open(&out, Duration::from_millis(30)));
    // Runs until killed (or, if never killed, a while after the end).
    idle(&relay, &store).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
}

/// On PostgreSQL "the end of the log" is the last event behind every running transaction:
/// a relay started while a transaction is open sends no history before it, and misses
/// nothing committed after it (events committed behind the open transaction come too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_relay_from_the_end_with_a_transaction_open() {
    use sqlx::Connection as _;
    let Some(t) = Kind::Postgres.open("relay_end_open_tx").await else {
        return;
    };
    append(&t.store, "order-1", 0..5).await;
    let mut blocker = crate::support::pg_raw(&t).await;
    let mut open_tx = blocker.begin().await.unwrap();
    let open_xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *open_tx)
        .await
        .unwrap();
    let behind = append(&t.store, "order-1", 5..8).await;
    // The end of the log is behind the oldest transaction running on the server: wait
    // until that is this test's (another test's, older, would put the end before the
    // history).
    let mut probe = crate::support::pg_raw(&t).await;
    let oldest = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text";
    for _ in 0..600 {
        let xmin: String = sqlx::query_scalar(oldest)
            .fetch_one(&mut probe)
            .await
            .unwrap();
        if xmin == open_xid {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sink = RecordingBus::new();
    let relay = t.store.relay("end-open-tx").spawn(sink.clone());
    // Not `idle`: the newest events sit behind this test's own transaction, and every
    // other test on the server waits while it is open.
    relay.wait_for_idle().await.unwrap();
    let after = append(&t.store, "order-1", 8..10).await;
    open_tx.rollback().await.unwrap();
    idle(&relay, &t.store).await;
    let sent: Vec<uuid::Uuid> = sink.events().iter().map(|e| e.id).collect();
    assert_eq!(sent, [behind, after].concat(), "no history, nothing missed");
    relay.stop().await.unwrap();
}

/// A sink that asks for batches of `preferred` and records each batch's size.
#[derive(Clone, Default)]
struct Batches {
    preferred: Option<usize>,
    sizes: Arc<Mutex<Vec<usize>>>,
    inner: RecordingBus,
}

impl EventSink for Batches {
    async fn send(&self, batch: Vec<Outgoing>) -> chronicle::Result<()> {
        self.sizes.lock().unwrap().push(batch.len());
        EventSink::send(&self.inner, batch).await
    }

    fn health(&self) -> chronicle::bus::BusHealth {
        EventSink::health(&self.inner)
    }

    fn stats(&self) -> BusStats {
        EventSink::stats(&self.inner)
    }

    fn preferred_batch(&self) -> Option<usize> {
        self.preferred
    }
}

#[tokio::test]
async fn a_relay_takes_the_sinks_preferred_batch_unless_told_otherwise() {
    let store = Store::open("memory:").await.unwrap();
    append(&store, "order-1", 0..25).await;
    for (preferred, chosen, expected) in [
        (Some(10), None, vec![10, 10, 5]),
        (Some(10), Some(4), vec![4, 4, 4, 4, 4, 4, 1]),
        (None, None, vec![25]),
    ] {
        let sink = Batches {
            preferred,
            ..Batches::default()
        };
        let relay = store
            .relay(format!("batches-{preferred:?}-{chosen:?}"))
            .start_from(StartFrom::Beginning);
        let relay = match chosen {
            Some(size) => relay.batch_size(size),
            None => relay,
        };
        let relay = relay.spawn(sink.clone());
        idle(&relay, &store).await;
        relay.stop().await.unwrap();
        assert_eq!(
            *sink.sizes.lock().unwrap(),
            expected,
            "{preferred:?} {chosen:?}"
        );
    }
}
