//! NATS JetStream against the real server (`CHRONICLE_NATS_URL`, default
//! `nats://127.0.0.1:4222`): the relay from SQLite into `NatsSink`, read back with
//! async-nats's own consumer (headers, body, `Nats-Msg-Id`, order per stream); a batch
//! sent twice stored once; `NatsBus` patterns, redelivery with attempt numbers, dead
//! letters read back, panics, a group shared by two buses, a malformed message, close
//! draining, health and stats; and, on a `nats-server -js` of the test's own that it
//! stops and starts again, a retryable send failure and the reconnect counted; a relay
//! killed with SIGKILL in a child process, whose re-sent batch JetStream deduplicates. Each
//! test has its own prefix and streams, deleted at its end (even when it fails).

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use chronicle::bus::nats::{DEAD_REASON, MSG_ID, NatsBus, NatsSink};
use chronicle::bus::{
    Backoff, Bus, BusEvent, Delivery, EventSink, HandlerError, Outgoing, StartFrom, Subscribe,
    Topic, wire,
};
use chronicle::{Error, ExpectedVersion, NewEvent};
use futures::StreamExt as _;
use serde_json::json;

use crate::bus_support::{
    KILL_BATCH, KILL_EVENTS, Seen, eventually, kill_log, kill_when, numbered, restart_killed_relay,
    run_killed_relay, spawn_child,
};
use crate::support::Kind;

fn nats_url() -> String {
    std::env::var("CHRONICLE_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A raw client (async-nats's own API, nothing of chronicle's), or `None` with a loud
/// skip notice; a panic when `CHRONICLE_REQUIRE_SERVICES=1`.
async fn raw_client(test: &str) -> Option<async_nats::Client> {
    match async_nats::connect(nats_url()).await {
        Ok(client) => Some(client),
        Err(error) if std::env::var("CHRONICLE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!(
                "CHRONICLE_REQUIRE_SERVICES=1 but NATS at {} is unreachable: {error}",
                nats_url()
            )
        }
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: NATS at {} is unreachable ({error}); set CHRONICLE_NATS_URL",
                nats_url()
            );
            None
        }
    }
}

/// One test's names (a fresh prefix and stream) and the raw client; deletes its streams
/// when dropped, from a thread of its own (drops run inside the test's runtime).
struct Nats {
    js: jetstream::Context,
    prefix: String,
    stream: String,
}

impl Nats {
    async fn open(test: &str) -> Option<Nats> {
        let client = raw_client(test).await?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        Some(Nats {
            js: jetstream::new(client),
            prefix: format!("t{id}"),
            stream: format!("T{id}"),
        })
    }

    async fn bus(&self) -> NatsBus {
        NatsBus::builder(nats_url())
            .prefix(&self.prefix)
            .stream(&self.stream)
            .fetch_expires(Duration::from_millis(200))
            .build()
            .await
            .expect("NatsBus")
    }

    /// Every message of the stream on `filter`, in stream order, read by an ephemeral
    /// pull consumer of async-nats's own.
    async fn read(&self, filter: &str) -> Vec<async_nats::jetstream::Message> {
        let stream = self.js.get_stream(&self.stream).await.expect("stream");
        let reader = stream
            .create_consumer(consumer::pull::Config {
                filter_subject: filter.to_owned(),
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("reader");
        let mut messages = Vec::new();
        loop {
            let mut batch = reader
                .fetch()
                .max_messages(500)
                .messages()
                .await
                .expect("fetch");
            let before = messages.len();
            while let Some(message) = batch.next().await {
                messages.push(message.expect("message"));
            }
            if messages.len() == before {
                return messages;
            }
        }
    }

    async fn message_count(&self) -> u64 {
        let mut stream = self.js.get_stream(&self.stream).await.expect("stream");
        stream.info().await.expect("info").state.messages
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let (url, stream) = (nats_url(), self.stream.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(client) = async_nats::connect(url).await {
                    let _ = jetstream::new(client).delete_stream(&stream).await;
                }
            });
        })
        .join();
    }
}

fn header<'m>(message: &'m async_nats::jetstream::Message, name: &str) -> Option<&'m str> {
    message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(name))
        .map(|value| value.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_from_sqlite_publishes_what_async_nats_reads_back() {
    let Some(nats) = Nats::open("relay_from_sqlite_publishes").await else {
        return;
    };
    let t = Kind::Sqlite.open("nats relay").await.expect("sqlite");
    let mut ids = HashMap::new();
    for (stream, range) in [
        ("order-1", 0..40),
        ("invoice-7", 40..55),
        ("order-2", 55..70),
    ] {
        let events: Vec<NewEvent> = range
            .map(|n| NewEvent::new("order.Placed", json!({ "n": n })))
            .collect();
        ids.insert(
            stream,
            events.iter().map(NewEvent::event_id).collect::<Vec<_>>(),
        );
        t.store
            .append(stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let sink = NatsSink::builder(nats_url())
        .subject_prefix(&nats.prefix)
        .ensure_stream(&nats.stream, [format!("{}.>", nats.prefix)])
        .build()
        .await
        .unwrap();
    assert_eq!(sink.subject("order"), format!("{}.order", nats.prefix));
    let relay = t
        .store
        .relay("to-nats")
        .start_from(StartFrom::Beginning)
        .batch_size(16)
        .topic(Topic::category())
        .spawn(sink.clone());
    relay.wait_for_idle().await.unwrap();
    assert_eq!(relay.stats().published, 70);

    let messages = nats.read(&format!("{}.>", nats.prefix)).await;
    assert_eq!(messages.len(), 70);
    let mut per_stream: HashMap<String, Vec<uuid::Uuid>> = HashMap::new();
    for message in &messages {
        let id: uuid::Uuid = header(message, wire::ID).unwrap().parse().unwrap();
        assert_eq!(header(message, MSG_ID), Some(id.to_string().as_str()));
        assert_eq!(header(message, wire::TYPE), Some("order.Placed"));
        assert_eq!(header(message, wire::SPECVERSION), Some("1.0"));
        assert_eq!(
            header(message, wire::CONTENT_TYPE),
            Some("application/json")
        );
        let stream = header(message, wire::SUBJECT).unwrap().to_owned();
        let category = stream.split('-').next().unwrap();
        assert_eq!(
            message.subject.as_str(),
            format!("{}.{category}", nats.prefix)
        );
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert!(body["n"].is_i64(), "{body}");
        per_stream.entry(stream).or_default().push(id);
    }
    // JetStream keeps each stream's events in version order.
    for (stream, expected) in &ids {
        assert_eq!(&per_stream[*stream], expected, "{stream}");
    }
    let health = EventSink::health(&sink);
    assert!(health.connected);
    assert_eq!(health.reconnects, 0);
    assert_eq!(EventSink::stats(&sink).published, 70);
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sent_again_is_stored_once_by_its_msg_id() {
    let Some(nats) = Nats::open("a_batch_sent_again").await else {
        return;
    };
    let sink = NatsSink::builder(nats_url())
        .subject_prefix(&nats.prefix)
        .ensure_stream(&nats.stream, [format!("{}.>", nats.prefix)])
        .duplicate_window(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let batch: Vec<Outgoing> = (0..50)
        .map(|n| {
            Outgoing::new(
                "order",
                numbered("order.Placed", n).subject(format!("order-{}", n % 3)),
            )
        })
        .collect();
    // A relay killed after the broker took the batch, before its checkpoint moved, sends
    // the same batch again when it restarts.
    sink.send(batch[..30].to_vec()).await.unwrap();
    sink.send(batch.clone()).await.unwrap();
    assert_eq!(nats.message_count().await, 50);
    let stored: Vec<String> = nats
        .read(&format!("{}.order", nats.prefix))
        .await
        .iter()
        .map(|message| header(message, MSG_ID).unwrap().to_owned())
        .collect();
    let sent: Vec<String> = batch.iter().map(|out| out.event.id.to_string()).collect();
    assert_eq!(stored, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_without_a_stream_fails_with_a_retryable_publish_error() {
    let Some(nats) = Nats::open("a_sink_without_a_stream").await else {
        return;
    };
    let sink = NatsSink::builder(nats_url())
        .subject_prefix(&nats.prefix)
        .build()
        .await
        .unwrap();
    let event = numbered("order.Placed", 1);
    let error = sink
        .send(vec![Outgoing::new("order", event.clone())])
        .await
        .unwrap_err();
    match &error {
        Error::Publish {
            event_id,
            retryable,
            ..
        } => {
            assert_eq!(*event_id, event.id);
            assert!(*retryable);
        }
        other => panic!("{other:?}"),
    }
    // A topic that is no subject is refused before anything is sent.
    let error = sink
        .send(vec![Outgoing::new("bad topic", event)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Publish {
                retryable: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(EventSink::health(&sink).last_error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_subscriptions_get_the_types_their_patterns_match() {
    let Some(nats) = Nats::open("bus_subscriptions_patterns").await else {
        return;
    };
    let bus = nats.bus().await;
    let (exact, glob, every, suffix) = (
        Seen::default(),
        Seen::default(),
        Seen::default(),
        Seen::default(),
    );
    let _exact = bus
        .subscribe("user.Registered", exact.handler())
        .await
        .unwrap();
    let _glob = bus.subscribe("user.*", glob.handler()).await.unwrap();
    let _every = bus.subscribe("*", every.handler()).await.unwrap();
    let _suffix = bus.subscribe("*.Closed", suffix.handler()).await.unwrap();
    let events = [
        numbered("user.Registered", 0),
        numbered("user.Closed", 1),
        numbered("order.Closed", 2),
        numbered("order.Placed", 3),
        numbered("user.profile.Changed", 4),
    ];
    bus.publish_batch(events[..3].to_vec()).await.unwrap();
    for event in &events[3..] {
        bus.publish(event.clone()).await.unwrap();
    }
    eventually("every delivery", || {
        (exact.len(), glob.len(), every.len(), suffix.len()) == (1, 3, 5, 2)
    })
    .await;
    assert_eq!(exact.ns(), [0]);
    assert_eq!(glob.ns(), [0, 1, 4]);
    assert_eq!(every.ns(), [0, 1, 2, 3, 4]);
    assert_eq!(suffix.ns(), [1, 2]);
    // The messages are where the module doc says, with their ids as Nats-Msg-Id.
    let stored = nats.read(&format!("{}.user.Registered", nats.prefix)).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        header(&stored[0], MSG_ID),
        Some(events[0].id.to_string().as_str())
    );
    assert_eq!(bus.stats().published, 5);
    assert_eq!(bus.stats().delivered, 11);
    // Types outside subjects, or among the dead letters, are refused.
    for bad in ["user registered", "dead.x", "a.*"] {
        let error = bus.publish(numbered(bad, 9)).await.unwrap_err();
        assert!(
            matches!(
                error,
                Error::Publish {
                    retryable: false,
                    ..
                }
            ),
            "{bad}: {error:?}"
        );
    }
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_redelivered_then_dead_lettered() {
    let Some(nats) = Nats::open("a_failing_handler").await else {
        return;
    };
    let bus = nats.bus().await;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&attempts);
    let _failing = bus
        .subscribe(
            Subscribe::to("order.*")
                .group("billing")
                .max_deliveries(3)
                .backoff(Backoff::from_fn(|_| Duration::from_millis(30))),
            move |delivery: Delivery| {
                seen.lock().unwrap().push(delivery.attempt());
                async move { Err::<(), _>(HandlerError::retry("card declined")) }
            },
        )
        .await
        .unwrap();
    let panics = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&panics);
    let _panicky = bus
        .subscribe(
            Subscribe::to("order.Placed")
                .name("panicky")
                .backoff(Backoff::from_fn(|_| Duration::ZERO)),
            move |delivery: Delivery| {
                let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    assert!(!first, "boom on the first delivery");
                    assert_eq!(delivery.attempt(), 2);
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
    let event = numbered("order.Placed", 7).subject("order-7");
    bus.publish(event.clone()).await.unwrap();
    eventually("the dead letter", || bus.stats().dead == 1).await;
    eventually("the panicking handler's second try", || {
        bus.stats().delivered == 1
    })
    .await;
    assert_eq!(*attempts.lock().unwrap(), [1, 2, 3]);
    let stats = bus.stats();
    assert_eq!((stats.failed, stats.panicked, stats.dead), (4, 1, 1));

    let dead_subject = bus.dead_letter_subject("billing");
    assert_eq!(dead_subject, format!("{}.dead.billing", nats.prefix));
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = nats.read(&dead_subject).await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(
        header(letter, wire::ID),
        Some(event.id.to_string().as_str())
    );
    assert_eq!(header(letter, wire::TYPE), Some("order.Placed"));
    assert_eq!(header(letter, wire::SUBJECT), Some("order-7"));
    assert!(
        header(letter, DEAD_REASON)
            .unwrap()
            .contains("card declined")
    );
    let back = wire::decode(|name| header(letter, name), &letter.payload, "dead").unwrap();
    assert_eq!(back, event);
    // Nothing more comes: the message was terminated.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(attempts.lock().unwrap().len(), 3);
    assert_eq!(panics.load(Ordering::SeqCst), 2);
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_buses_in_one_group_share_its_messages() {
    let Some(nats) = Nats::open("two_buses_in_one_group").await else {
        return;
    };
    let (first, second) = (nats.bus().await, nats.bus().await);
    let (a, b) = (Seen::default(), Seen::default());
    let group = || Subscribe::to("job.*").group("workers");
    let _a = first.subscribe(group(), a.handler()).await.unwrap();
    let _b = second.subscribe(group(), b.handler()).await.unwrap();
    let events: Vec<BusEvent> = (0..300).map(|n| numbered("job.Queued", n)).collect();
    for chunk in events.chunks(20) {
        first.publish_batch(chunk.to_vec()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eventually("all jobs", || a.len() + b.len() >= 300).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (from_a, from_b): (HashSet<i64>, HashSet<i64>) =
        (a.ns().into_iter().collect(), b.ns().into_iter().collect());
    assert_eq!(a.len() + b.len(), 300, "none twice");
    assert!(from_a.is_disjoint(&from_b));
    assert_eq!(
        from_a.union(&from_b).count(),
        300,
        "together, every message"
    );
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "each gets some: {} and {}",
        from_a.len(),
        from_b.len()
    );
    first.close().await.unwrap();
    second.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_dead_lettered_never_handled() {
    let Some(nats) = Nats::open("a_malformed_message").await else {
        return;
    };
    let bus = nats.bus().await;
    let seen = Seen::default();
    let _all = bus
        .subscribe(Subscribe::to("*").group("audit"), seen.handler())
        .await
        .unwrap();
    // Raw publishes of chronicle's client-less peers: no headers, and a body that is not
    // JSON with otherwise good headers.
    let subject = format!("{}.user.Registered", nats.prefix);
    nats.js
        .publish(subject.clone(), "no headers".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let good = numbered("user.Registered", 1);
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in wire::headers(&good) {
        headers.insert(name, value);
    }
    nats.js
        .publish_with_headers(subject.clone(), headers, "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    bus.publish(numbered("user.Registered", 2)).await.unwrap();
    eventually("two dead and one handled", || {
        bus.stats().dead == 2 && seen.len() == 1
    })
    .await;
    assert_eq!(seen.ns(), [2]);
    let dead = nats.read(&bus.dead_letter_subject("audit")).await;
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].payload.as_ref(), b"no headers");
    assert!(header(&dead[0], DEAD_REASON).unwrap().contains("ce-id"));
    assert_eq!(dead[1].payload.as_ref(), b"{not json");
    assert!(header(&dead[1], DEAD_REASON).unwrap().contains("JSON"));
    let health = bus.health();
    assert!(health.last_error.unwrap().contains("malformed"));
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drains_and_health_reports() {
    let Some(nats) = Nats::open("close_drains").await else {
        return;
    };
    // Small pull requests, so the consumer has messages pending while the first run.
    let bus = NatsBus::builder(nats_url())
        .prefix(&nats.prefix)
        .stream(&nats.stream)
        .fetch_batch(5)
        .fetch_expires(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let health = bus.health();
    assert!(health.connected, "{health:?}");
    assert_eq!((health.reconnects, health.lag_events), (0, 0));
    let (started, finished) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (s, f) = (Arc::clone(&started), Arc::clone(&finished));
    let _slow = bus
        .subscribe(
            Subscribe::to("task.Run").name("slow"),
            move |_delivery: Delivery| {
                let (s, f) = (Arc::clone(&s), Arc::clone(&f));
                async move {
                    s.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    f.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
    let events: Vec<BusEvent> = (0..40).map(|n| numbered("task.Run", n)).collect();
    bus.publish_batch(events).await.unwrap();
    eventually("a first handler", || started.load(Ordering::SeqCst) > 0).await;
    // The pending messages as the next pull's first message reports them.
    eventually("pending messages in health", || {
        (1..40).contains(&bus.health().lag_events)
    })
    .await;
    bus.close().await.unwrap();
    let (s, f) = (
        started.load(Ordering::SeqCst),
        finished.load(Ordering::SeqCst),
    );
    assert_eq!(s, f, "every handler started finished before close returned");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        s,
        "nothing runs after close"
    );
    assert_eq!(bus.stats().delivered, u64::from(f));
    // Every message handled was acknowledged; the rest wait on the server for the next
    // subscriber of `slow`.
    let stream = nats.js.get_stream(&nats.stream).await.unwrap();
    let mut info = stream.consumer_info("slow").await.unwrap();
    for _ in 0..50 {
        if info.num_ack_pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        info = stream.consumer_info("slow").await.unwrap();
    }
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(info.num_pending + u64::from(f), 40, "{info:?}");
    assert!(!bus.health().connected);
    let error = bus.publish(numbered("task.Run", 99)).await.unwrap_err();
    assert!(matches!(error, Error::BusClosed { .. }), "{error:?}");
    let error = bus
        .subscribe("task.Run", |_: Delivery| async { Ok(()) })
        .await
        .unwrap_err();
    assert!(matches!(error, Error::BusClosed { .. }), "{error:?}");
    // The durable consumer stayed: a later bus resumes where this one stopped.
    let again = nats.bus().await;
    let rest = Seen::default();
    let _rest = again
        .subscribe(Subscribe::to("task.Run").name("slow"), rest.handler())
        .await
        .unwrap();
    eventually("the rest", || rest.len() as u32 + f == 40).await;
    again.delete_consumer("slow").await.unwrap();
    again.close().await.unwrap();
}

/// A `nats-server -js` of this test's own (a free port, a temporary store), so it can be
/// stopped and started again without touching the shared server.
struct OwnServer {
    child: Option<std::process::Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnServer {
    /// Starts one, or `None` with a loud skip notice (a panic when services are required)
    /// when no `nats-server` binary is there (`CHRONICLE_NATS_SERVER` names it).
    async fn start(test: &str) -> Option<OwnServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = OwnServer {
            child: None,
            port,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        if let Err(error) = server.run() {
            if std::env::var("CHRONICLE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!("CHRONICLE_REQUIRE_SERVICES=1 but nats-server cannot start: {error}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: nats-server cannot start ({error}); set CHRONICLE_NATS_SERVER"
            );
            return None;
        }
        Some(server)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn run(&mut self) -> std::io::Result<()> {
        let binary = std::env::var("CHRONICLE_NATS_SERVER").unwrap_or_else(|_| {
            if std::path::Path::new("/usr/sbin/nats-server").exists() {
                "/usr/sbin/nats-server".to_owned()
            } else {
                "nats-server".to_owned()
            }
        });
        let child = std::process::Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(std::io::Error::other(
            "nats-server did not listen within 5 s",
        ))
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_fails_sends_retryably_then_counts_a_reconnect() {
    let Some(mut server) = OwnServer::start("a_server_restart").await else {
        return;
    };
    let sink = NatsSink::builder(server.url())
        .subject_prefix("events")
        .ensure_stream("EVENTS", ["events.>"])
        .build()
        .await
        .unwrap();
    let batch: Vec<Outgoing> = (0..20)
        .map(|n| Outgoing::new("order", numbered("order.Placed", n)))
        .collect();
    sink.send(batch[..10].to_vec()).await.unwrap();
    assert_eq!(EventSink::health(&sink).reconnects, 0);

    server.stop();
    eventually("the sink to see the server gone", || {
        !EventSink::health(&sink).connected
    })
    .await;
    let error = sink.send(batch[10..].to_vec()).await.unwrap_err();
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
    assert!(error.is_retryable());

    server.run().unwrap();
    eventually("the sink to reconnect", || {
        EventSink::health(&sink).connected
    })
    .await;
    let health = EventSink::health(&sink);
    assert!(health.reconnects >= 1, "{health:?}");
    assert!(health.last_error.is_some());
    // What the relay does after a failure: the whole batch again.
    sink.send(batch[10..].to_vec()).await.unwrap();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let mut stream = js.get_stream("EVENTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_bus_ends_its_detached_subscriptions() {
    let Some(nats) = Nats::open("dropping_the_bus").await else {
        return;
    };
    let bus = nats.bus().await;
    let seen = Seen::default();
    bus.subscribe(Subscribe::to("ping.*").name("pinger"), seen.handler())
        .await
        .unwrap()
        .detach();
    bus.publish(numbered("ping.Sent", 1)).await.unwrap();
    eventually("the first ping", || seen.len() == 1).await;
    drop(bus);
    // The task finishes its pull request (200 ms here), then ends.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let other = nats.bus().await;
    other.publish(numbered("ping.Sent", 2)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.ns(), [1]);
    let stream = nats.js.get_stream(&nats.stream).await.unwrap();
    let info = stream.consumer_info("pinger").await.unwrap();
    assert_eq!((info.num_pending, info.num_ack_pending), (1, 0), "{info:?}");
    other.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Kill -9 with the real broker: a relay into JetStream in a child process of this test
// binary, killed with SIGKILL mid-stream; the restarted relay sends the unacknowledged
// batch again, and JetStream's `Nats-Msg-Id` deduplication stores each event once.

/// Set in the child process: the subject prefix and the stream.
const CHILD_PREFIX: &str = "CHRONICLE_NATS_CHILD_PREFIX";
const CHILD_STREAM: &str = "CHRONICLE_NATS_CHILD_STREAM";

async fn kill_sink(prefix: &str, stream: &str) -> NatsSink {
    NatsSink::builder(nats_url())
        .subject_prefix(prefix)
        .ensure_stream(stream, [format!("{prefix}.>")])
        .build()
        .await
        .expect("NatsSink")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_with_sigkill_is_deduplicated_by_jetstream() {
    let Some(nats) = Nats::open("a_relay_killed_with_sigkill").await else {
        return;
    };
    let (t, ids) = kill_log("nats relay kill").await;
    // The stream exists before the child starts (its duplicate window: two minutes).
    drop(kill_sink(&nats.prefix, &nats.stream).await);

    let mut child = spawn_child(
        "bus_nats::nats_relay_child",
        &t,
        &[(CHILD_PREFIX, &nats.prefix), (CHILD_STREAM, &nats.stream)],
    );
    kill_when(&mut child, || async {
        nats.message_count().await >= (KILL_EVENTS / 3) as u64
    })
    .await;
    let at_kill = nats.message_count().await as usize;
    assert!(
        at_kill < KILL_EVENTS,
        "killed mid-stream ({at_kill} stored)"
    );

    // The restarted relay goes on from the checkpoint the child left.
    let resent = restart_killed_relay(&t, kill_sink(&nats.prefix, &nats.stream).await).await;
    let sent_again = resent - (KILL_EVENTS - at_kill);
    println!("killed with {at_kill} stored; the restart sent {sent_again} of them again");
    assert!(
        sent_again <= KILL_BATCH,
        "{sent_again} sent again: more than the one unacknowledged batch"
    );
    // JetStream kept each event once, each stream's in version order.
    let messages = nats.read(&format!("{}.>", nats.prefix)).await;
    assert_eq!(messages.len(), KILL_EVENTS, "each event stored once");
    let mut per_stream: HashMap<String, Vec<uuid::Uuid>> = HashMap::new();
    for message in &messages {
        let id = header(message, MSG_ID).unwrap().parse().unwrap();
        let stream = header(message, wire::SUBJECT).unwrap().to_owned();
        per_stream.entry(stream).or_default().push(id);
    }
    assert_eq!(per_stream, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a child process: see a_relay_killed_with_sigkill_is_deduplicated_by_jetstream"]
async fn nats_relay_child() {
    let (Ok(prefix), Ok(stream)) = (std::env::var(CHILD_PREFIX), std::env::var(CHILD_STREAM))
    else {
        return;
    };
    run_killed_relay(kill_sink(&prefix, &stream).await, Duration::from_millis(30)).await;
}
