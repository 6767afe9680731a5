//! What the bus tests share (`bus`, `bus_nats`, `bus_redis`, `bus_kafka`): waiting for a
//! condition, a handler that records what it saw, numbered events, and the kill -9
//! scaffolding (a SQLite log of numbered events, a sink slow to acknowledge, a relay in a
//! child process of this test binary).
#![allow(dead_code)] // each module uses its part, the brokers' behind their features

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle::bus::{BusEvent, BusHealth, BusStats, Delivery, EventSink, HandlerError, Outgoing};
use chronicle::{ExpectedVersion, NewEvent, Store};
use serde_json::json;

use crate::support::{Kind, Location, TestStore};

/// Waits (up to a minute) until `done` holds.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An event of `event_type` whose data is `{"n": n}`.
pub fn numbered(event_type: &str, n: i64) -> BusEvent {
    BusEvent::new(event_type, json!({ "n": n }))
}

/// Appends `order.Placed` events numbered `range` to `stream`; their ids, in order.
pub async fn append_numbered(
    store: &Store,
    stream: &str,
    range: std::ops::Range<i64>,
) -> Vec<uuid::Uuid> {
    let events: Vec<NewEvent> = range
        .map(|n| NewEvent::new("order.Placed", json!({ "n": n })))
        .collect();
    let ids = events.iter().map(NewEvent::event_id).collect();
    store
        .append(stream, ExpectedVersion::Any, events)
        .await
        .expect("append");
    ids
}

/// What a handler saw: (event type, data's `n` or -1, attempt), in order.
#[derive(Clone, Default)]
pub struct Seen(pub Arc<Mutex<Vec<(String, i64, u32)>>>);

impl Seen {
    /// A handler that records each delivery and acknowledges it.
    pub fn handler(
        &self,
    ) -> impl Fn(Delivery) -> std::future::Ready<Result<(), HandlerError>> + Send + Sync + use<>
    {
        let seen = self.clone();
        move |delivery: Delivery| {
            seen.push(&delivery);
            std::future::ready(Ok(()))
        }
    }

    pub fn push(&self, delivery: &Delivery) {
        let n = delivery
            .json()
            .ok()
            .and_then(|data| data["n"].as_i64())
            .unwrap_or(-1);
        self.0
            .lock()
            .unwrap()
            .push((delivery.event_type.clone(), n, delivery.attempt()));
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn ns(&self) -> Vec<i64> {
        self.0.lock().unwrap().iter().map(|(_, n, _)| *n).collect()
    }

    pub fn all(&self) -> Vec<(String, i64, u32)> {
        self.0.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------
// Kill -9: a relay in a child process of this test binary, killed with SIGKILL mid-stream.

/// Events in a kill test's log, in streams of [`KILL_STREAM`] each, and the relay's batch.
pub const KILL_EVENTS: usize = 3_000;
pub const KILL_STREAM: usize = 500;
pub const KILL_BATCH: usize = 100;
/// The relay's name in the child and after the restart (one checkpoint).
pub const KILL_RELAY: &str = "killed";
/// Set in the child process: the SQLite database the relay reads.
pub const CHILD_DB: &str = "CHRONICLE_KILL_CHILD_DB";

/// A SQLite store holding [`KILL_EVENTS`] `order.Placed` events in streams `order-0`,
/// `order-1`, …; the ids of each stream's events, in version order.
pub async fn kill_log(label: &str) -> (TestStore, HashMap<String, Vec<uuid::Uuid>>) {
    let t = Kind::Sqlite.open(label).await.expect("sqlite");
    let mut ids = HashMap::new();
    for (n, first) in (0..KILL_EVENTS).step_by(KILL_STREAM).enumerate() {
        let stream = format!("order-{n}");
        let range = first as i64..(first + KILL_STREAM) as i64;
        ids.insert(
            stream.clone(),
            append_numbered(&t.store, &stream, range).await,
        );
    }
    (t, ids)
}

/// Runs the ignored test `child` (`module::name`) of this binary in a child process,
/// with the store's database in [`CHILD_DB`] and `env`.
pub fn spawn_child(child: &str, t: &TestStore, env: &[(&str, &str)]) -> std::process::Child {
    let Location::Sqlite { url, .. } = &t.location else {
        unreachable!("a SQLite store")
    };
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--ignored", "--test-threads", "1"])
        .env(CHILD_DB, url)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the child process")
}

/// Waits (up to a minute) until `far_enough` says the child got far enough, then kills it
/// with SIGKILL and reaps it. Fails when the child ends first.
pub async fn kill_when<F: std::future::Future<Output = bool>>(
    child: &mut std::process::Child,
    mut far_enough: impl FnMut() -> F,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !far_enough().await {
        assert!(
            std::time::Instant::now() < deadline,
            "the child did not get far enough"
        );
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// In the child: the relay [`KILL_RELAY`] from the start of the log at [`CHILD_DB`] into
/// `sink`, acknowledging each batch `pause` after the broker did (so a kill often lands
/// between the broker's ack and the checkpoint); runs until killed.
pub async fn run_killed_relay(sink: impl EventSink, pause: Duration) {
    let Ok(db) = std::env::var(CHILD_DB) else {
        return;
    };
    let store = Store::open(db).await.unwrap();
    let relay = store
        .relay(KILL_RELAY)
        .start_from(chronicle::bus::StartFrom::Beginning)
        .batch_size(KILL_BATCH)
        .spawn(SlowToAck { sink, pause });
    // Runs until killed (or, if never killed, a while after the end).
    relay.wait_for_idle().await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
}

/// In the parent, after the kill: the relay [`KILL_RELAY`] again on `t` into `sink`, until
/// idle; how many events it sent.
pub async fn restart_killed_relay(t: &TestStore, sink: impl EventSink) -> usize {
    let relay = t
        .store
        .relay(KILL_RELAY)
        .start_from(chronicle::bus::StartFrom::Beginning)
        .batch_size(KILL_BATCH)
        .spawn(sink);
    relay.wait_for_idle().await.unwrap();
    let sent = relay.stats().published as usize;
    relay.stop().await.unwrap();
    sent
}

/// A sink acknowledging each batch only `pause` after the broker did.
pub struct SlowToAck<S> {
    pub sink: S,
    pub pause: Duration,
}

impl<S: EventSink> EventSink for SlowToAck<S> {
    async fn send(&self, batch: Vec<Outgoing>) -> chronicle::Result<()> {
        self.sink.send(batch).await?;
        tokio::time::sleep(self.pause).await;
        Ok(())
    }

    fn health(&self) -> BusHealth {
        self.sink.health()
    }

    fn stats(&self) -> BusStats {
        self.sink.stats()
    }
}
