//! Crypto-shredding and key rotation: `forget` makes one stream unreadable for good (the
//! raw rows prove it), projections and the outbox skip or fail on its events as
//! configured, and rotations interrupted midway finish when run again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chronicle::{
    Direction, Error, ExpectedVersion, Handler, HandlerMap, HandlerRequest, KeyRing, LogPosition,
    NewEvent, NewSnapshot, ProjectionState, RecordedEvent, RetentionPolicy, RetentionScope,
    ShreddedEvents, Store, StoreBuilder,
};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use sqlx::Connection;

use crate::retention::Seen;
use crate::support::{Kind, Location, TestStore};

mod every_backend {
    use super::*;
    crate::for_each_backend!(forget_shreds_one_stream);
}
crate::for_each_sql_backend!(
    raw_rows_of_a_forgotten_stream_do_not_decrypt,
    projections_skip_or_fail_on_forgotten_streams,
    the_outbox_skips_or_fails_on_forgotten_streams,
    rewrapping_interrupted_then_resumed,
    reencryption_interrupted_then_resumed,
    a_missing_ring_key_names_the_stream_and_key,
    a_store_without_the_ring_reads_around_stream_keyed_events,
    a_tools_store_keeps_the_events_it_cannot_decode,
);

const OLD: [u8; 32] = [1; 32];
const NEW: [u8; 32] = [2; 32];

fn old_ring() -> KeyRing {
    KeyRing::new("old", OLD).expect("ring")
}

fn rotated_ring() -> KeyRing {
    KeyRing::new("new", NEW)
        .and_then(|ring| ring.with_key("old", OLD))
        .expect("ring")
}

fn new_only_ring() -> KeyRing {
    KeyRing::new("new", NEW).expect("ring")
}

fn shredding(builder: StoreBuilder) -> StoreBuilder {
    builder.encryption(old_ring()).per_stream_keys(true)
}

async fn write(store: &Store, stream: &str, count: u64) -> LogPosition {
    let events = (0..count)
        .map(|n| NewEvent::new("user.noted", json!({ "n": n, "email": "ada@example.com" })))
        .collect();
    store
        .append(stream, ExpectedVersion::Any, events)
        .await
        .expect("append")
        .log_position()
}

async fn read(store: &Store, stream: &str) -> Result<Vec<RecordedEvent>, Error> {
    store
        .read_stream(stream, 1, Direction::Forward)
        .try_collect()
        .await
}

fn is_shredded(result: Result<impl std::fmt::Debug, Error>, stream: &str) -> bool {
    matches!(result, Err(Error::Shredded { stream: ref s, .. }) if s == stream)
}

async fn forget_shreds_one_stream(kind: Kind) {
    let Some(t) = kind.open_with("forget_shreds_one_stream", shredding).await else {
        return;
    };
    let store = &t.store;
    write(store, "user-1", 3).await;
    write(store, "user-2", 2).await;
    store
        .save_snapshot(
            "user-1",
            NewSnapshot::from_serialize(3, 1, &json!({ "seen": 3 })).expect("json"),
        )
        .await
        .expect("snapshot");
    assert_eq!(read(store, "user-1").await.expect("readable").len(), 3);

    store.forget("user-1").await.expect("forget");
    assert!(is_shredded(read(store, "user-1").await, "user-1"));
    assert!(is_shredded(
        store.latest_snapshot("user-1", u64::MAX).await,
        "user-1"
    ));
    let append = store
        .append(
            "user-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("user.noted", json!({}))],
        )
        .await;
    assert!(
        is_shredded(append, "user-1"),
        "a forgotten stream takes no writes"
    );
    assert_eq!(read(store, "user-2").await.expect("untouched").len(), 2);
    let error = store
        .read_all(LogPosition::START)
        .try_collect::<Vec<_>>()
        .await
        .expect_err("the log holds shredded events");
    assert_eq!(error.kind(), chronicle::ErrorKind::NotFound);

    // A hard delete takes the key, and the tombstoned stream never gets another.
    write(store, "user-3", 1).await;
    store
        .delete_stream("user-3", chronicle::DeleteMode::Hard)
        .await
        .expect("hard delete");
    let append = store
        .append(
            "user-3",
            ExpectedVersion::Any,
            vec![NewEvent::new("user.noted", json!({}))],
        )
        .await;
    assert!(
        matches!(append, Err(Error::StreamDeleted { hard: true, .. })),
        "{append:?}"
    );
    if !matches!(t.location, Location::Memory) {
        assert_eq!(raw_rows(&t, "user-3").await, (Vec::new(), None));
    }

    // Another process, with the same ring, cannot read them either.
    if let Some(other) = t.reopen(|b| b.encryption(old_ring())).await {
        assert!(is_shredded(read(&other, "user-1").await, "user-1"));
        assert_eq!(read(&other, "user-2").await.expect("readable").len(), 2);
    }
}

/// Raw rows of the test's database: every payload of `stream` (id, bytes) and its key row.
async fn raw_rows(
    t: &TestStore,
    stream: &str,
) -> (
    Vec<(uuid::Uuid, Vec<u8>)>,
    Option<(Option<String>, Option<Vec<u8>>)>,
) {
    let events = "SELECT event_id, payload FROM events \
         WHERE stream_key = (SELECT stream_key FROM streams WHERE stream_id = $1) \
         ORDER BY version";
    let key = "SELECT key_id, wrapped FROM stream_keys WHERE stream_id = $1";
    match &t.location {
        Location::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
            let payloads = sqlx::query_as(events)
                .bind(stream)
                .fetch_all(&mut conn)
                .await
                .expect("events");
            let key = sqlx::query_as(key)
                .bind(stream)
                .fetch_optional(&mut conn)
                .await
                .expect("key");
            (payloads, key)
        }
        Location::Postgres { .. } => {
            let mut conn = crate::support::pg_raw(t).await;
            let payloads = sqlx::query_as(events)
                .bind(stream)
                .fetch_all(&mut conn)
                .await
                .expect("events");
            let key = sqlx::query_as(key)
                .bind(stream)
                .fetch_optional(&mut conn)
                .await
                .expect("key");
            (payloads, key)
        }
        Location::Memory => unreachable!("SQL backends only"),
    }
}

/// Decrypts a raw stored payload of `stream` with `key`, as chronicle's format says: a
/// header of magic, version, flags, key id length, key id and nonce, authenticated with
/// the event's id and stream.
fn open_payload(
    key: &[u8; 32],
    stored: &[u8],
    event_id: uuid::Uuid,
    stream: &str,
) -> Option<Vec<u8>> {
    let key_len = usize::from(*stored.get(3)?);
    let header_len = 4 + key_len + 24;
    let nonce = XNonce::try_from(stored.get(4 + key_len..header_len)?).ok()?;
    let aad = [
        &stored[..header_len],
        event_id.as_bytes(),
        stream.as_bytes(),
    ]
    .concat();
    XChaCha20Poly1305::new(&(*key).into())
        .decrypt(
            &nonce,
            Payload {
                msg: &stored[header_len..],
                aad: &aad,
            },
        )
        .ok()
}

/// Unwraps a raw wrapped data key of `stream` with the ring key `key`.
fn unwrap_key(key: &[u8; 32], wrapped: &[u8], stream: &str) -> Option<[u8; 32]> {
    let nonce = XNonce::try_from(wrapped.get(..24)?).ok()?;
    let aad = [b"stream-key\0".as_slice(), stream.as_bytes()].concat();
    XChaCha20Poly1305::new(&(*key).into())
        .decrypt(
            &nonce,
            Payload {
                msg: &wrapped[24..],
                aad: &aad,
            },
        )
        .ok()?
        .try_into()
        .ok()
}

async fn raw_rows_of_a_forgotten_stream_do_not_decrypt(kind: Kind) {
    let Some(t) = kind
        .open_with("raw_rows_of_a_forgotten_stream", shredding)
        .await
    else {
        return;
    };
    write(&t.store, "user-1", 3).await;
    write(&t.store, "user-2", 1).await;

    // Before: the wrapped key opens with the ring key, and the payloads with it.
    let (payloads, key) = raw_rows(&t, "user-1").await;
    let (Some(key_id), Some(wrapped)) = key.expect("a key row") else {
        panic!("a live key");
    };
    assert_eq!(key_id, "old");
    let data_key = unwrap_key(&OLD, &wrapped, "user-1").expect("unwraps");
    for (id, payload) in &payloads {
        let json = open_payload(&data_key, payload, *id, "user-1").expect("decrypts");
        assert!(String::from_utf8_lossy(&json).contains("ada@example.com"));
        assert!(
            open_payload(&OLD, payload, *id, "user-1").is_none(),
            "not under the ring key"
        );
    }

    t.store.forget("user-1").await.expect("forget");

    // After: the rows are unchanged, the key row holds no key, and no key the store holds
    // opens the payloads.
    let (after, key) = raw_rows(&t, "user-1").await;
    assert_eq!(after, payloads, "the log was not rewritten");
    assert_eq!(key, Some((None, None)));
    let (other, other_key) = raw_rows(&t, "user-2").await;
    let (_, Some(other_wrapped)) = other_key.expect("a key row") else {
        panic!("a live key");
    };
    let other_key = unwrap_key(&OLD, &other_wrapped, "user-2").expect("unwraps");
    for (id, payload) in &after {
        for key in [&OLD, &other_key] {
            assert!(open_payload(key, payload, *id, "user-1").is_none());
        }
    }
    assert!(open_payload(&other_key, &other[0].1, other[0].0, "user-2").is_some());
    assert!(is_shredded(read(&t.store, "user-1").await, "user-1"));
}

async fn projections_skip_or_fail_on_forgotten_streams(kind: Kind) {
    let Some(t) = kind
        .open_with("projections_and_forgotten_streams", shredding)
        .await
    else {
        return;
    };
    let store = &t.store;
    write(store, "user-1", 3).await;
    let last = write(store, "user-2", 2).await;
    store.forget("user-1").await.expect("forget");

    let seen = Seen::default();
    let handle = crate::projections::fast(store).spawn(seen.clone());
    handle
        .wait_until(last)
        .await
        .expect("skips the forgotten stream");
    assert_eq!(seen.counts(), HashMap::from([("user-2".to_owned(), 2)]));
    handle.stop().await.expect("stops");

    let strict = crate::projections::fast(store)
        .on_shredded(ShreddedEvents::Fail)
        .rebuild(Seen::default())
        .await
        .expect("rebuild");
    let waited = tokio::time::timeout(Duration::from_secs(20), strict.wait_until(last)).await;
    assert!(matches!(waited, Ok(Err(_))), "{waited:?}");
    let status = strict.status();
    assert_eq!(status.state, ProjectionState::Failed);
    assert!(status.last_error.unwrap_or_default().contains("forgotten"));
}

async fn the_outbox_skips_or_fails_on_forgotten_streams(kind: Kind) {
    let Some(t) = kind
        .open_with("outbox_and_forgotten_streams", shredding)
        .await
    else {
        return;
    };
    let store = &t.store;
    write(store, "user-1", 3).await;
    write(store, "user-2", 2).await;
    store.forget("user-1").await.expect("forget");

    for (handler, shredded, done, dead) in [
        ("mailer", ShreddedEvents::Skip, 5, 0),
        ("strict", ShreddedEvents::Fail, 2, 3),
    ] {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&calls);
        let handlers = HandlerMap::new().route(Handler::new(
            handler,
            "user.*",
            move |_request: HandlerRequest| {
                counter.fetch_add(1, Ordering::Relaxed);
                async { Ok(()) }
            },
        ));
        let outbox = store
            .outbox(handlers)
            .expect("outbox")
            .start_from(chronicle::StartFrom::Beginning)
            .name(format!("{handler}-processor"))
            .on_shredded(shredded);
        assert_eq!(outbox.process().await.expect("process"), 5);
        let (mut done_now, mut dead_now) = (0, 0);
        loop {
            let report = outbox.execute().await.expect("execute");
            if report.claimed == 0 {
                break;
            }
            done_now += report.done;
            dead_now += report.dead;
        }
        assert_eq!((done_now, dead_now), (done, dead), "{handler}");
        assert_eq!(
            calls.load(Ordering::Relaxed),
            2,
            "{handler}: only user-2's events ran"
        );
    }
}

/// Runs `rotation` until its first progress report, then drops it: a run cut short.
async fn interrupted<F>(rotation: F, first: Arc<tokio::sync::Notify>)
where
    F: std::future::Future<Output = chronicle::Result<chronicle::RotationProgress>>,
{
    tokio::select! {
        done = rotation => panic!("the rotation should not finish in one batch: {done:?}"),
        () = first.notified() => {}
    }
}

async fn rewrapping_interrupted_then_resumed(kind: Kind) {
    let Some(t) = kind.open_with("rewrapping_interrupted", shredding).await else {
        return;
    };
    for n in 0..30 {
        write(&t.store, &format!("user-{n}"), 2).await;
    }
    t.store.forget("user-7").await.expect("forget");

    let rotating = t
        .reopen(|b| b.encryption(rotated_ring()).per_stream_keys(true))
        .await
        .expect("sql");
    let first = Arc::new(tokio::sync::Notify::new());
    let signal = Arc::clone(&first);
    let rotation = rotating
        .key_rotation()
        .batch_size(4)
        .on_progress(move |_| signal.notify_one());
    interrupted(rotation.rewrap_stream_keys(), first).await;
    let rest = rotation.rewrap_stream_keys().await.expect("resumed");
    assert!((1..29).contains(&rest.keys_rewrapped), "{rest:?}");
    assert_eq!(
        rotation
            .rewrap_stream_keys()
            .await
            .expect("again")
            .keys_rewrapped,
        0
    );

    // Without the old ring key, every event still decrypts (but the forgotten stream's).
    let fresh = t
        .reopen(|b| b.encryption(new_only_ring()))
        .await
        .expect("sql");
    for n in (0..30).filter(|n| *n != 7) {
        assert_eq!(
            read(&fresh, &format!("user-{n}"))
                .await
                .expect("decrypts")
                .len(),
            2
        );
    }
    assert!(is_shredded(read(&fresh, "user-7").await, "user-7"));
}

async fn reencryption_interrupted_then_resumed(kind: Kind) {
    let Some(t) = kind
        .open_with("reencryption_interrupted", |b| {
            b.encryption(old_ring())
                .compression(chronicle::Compression::zstd().min_size(0))
        })
        .await
    else {
        return;
    };
    for n in 0..10 {
        write(&t.store, &format!("order-{n}"), 10).await;
    }
    let rotating = t
        .reopen(|b| b.encryption(rotated_ring()))
        .await
        .expect("sql");
    write(&rotating, "order-new", 5).await; // already under the new key
    let snapshot = NewSnapshot::from_serialize(10, 1, &json!({ "total": 10 })).expect("json");
    t.store
        .save_snapshot("order-1", snapshot)
        .await
        .expect("snapshot under the old key");

    // Events a retention policy hides are still stored: they are re-encrypted too.
    let hidden = RetentionPolicy::new().max_count(1).ignore_snapshots();
    rotating
        .set_retention(RetentionScope::stream("order-3"), hidden)
        .await
        .expect("set");

    let first = Arc::new(tokio::sync::Notify::new());
    let signal = Arc::clone(&first);
    let reached = Arc::new(Mutex::new(LogPosition::START));
    let last = Arc::clone(&reached);
    let rotation = rotating
        .key_rotation()
        .batch_size(15)
        .on_progress(move |progress| {
            *last.lock().expect("lock") = progress.position;
            signal.notify_one();
        });
    interrupted(rotation.reencrypt_events(), first).await;
    let resume_at = *reached.lock().expect("lock");
    assert_ne!(resume_at, LogPosition::START);
    let rest = rotation
        .clone()
        .start_after(resume_at)
        .reencrypt_events()
        .await
        .expect("resumed");
    assert!(rest.events_reencrypted < 100, "{rest:?}");
    let again = rotation.reencrypt_events().await.expect("again");
    assert_eq!(
        (
            again.events_scanned,
            again.events_reencrypted,
            again.snapshots_reencrypted
        ),
        (105, 0, 0)
    );

    rotating
        .clear_retention(RetentionScope::stream("order-3"))
        .await
        .expect("clear");
    let fresh = t
        .reopen(|b| b.encryption(new_only_ring()))
        .await
        .expect("sql");
    let all: Vec<RecordedEvent> = fresh
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .expect("every event decrypts with the new key alone");
    assert_eq!(all.len(), 105);
    let snapshot = fresh
        .latest_snapshot("order-1", u64::MAX)
        .await
        .expect("the snapshot decrypts with the new key alone")
        .expect("stored");
    let state: serde_json::Value = snapshot.data().expect("json");
    assert_eq!(state["total"], 10);
    assert_eq!(all[0].json().expect("json")["email"], "ada@example.com");
}

/// A stream whose data key was wrapped by a ring key the store no longer has: the error
/// names the stream and that key (not an event id it cannot know).
async fn a_missing_ring_key_names_the_stream_and_key(kind: Kind) {
    let Some(t) = kind
        .open_with("a_missing_ring_key_names_the_stream_and_key", shredding)
        .await
    else {
        return;
    };
    write(&t.store, "user-7", 2).await;
    let store = t
        .reopen(|b| b.encryption(new_only_ring()).per_stream_keys(true))
        .await
        .expect("an SQL store reopens");
    let error = read(&store, "user-7").await.expect_err("the key is gone");
    let message = error.to_string();
    assert_eq!(error.kind(), chronicle::ErrorKind::Codec, "{message}");
    assert!(
        message.contains("`user-7`") && message.contains("`old`"),
        "names the stream and the ring key: {message}"
    );
    assert!(
        !message.contains("00000000-0000"),
        "no nil event id: {message}"
    );
}

/// A store opened without the key ring (an operator's tool without the key file) reads a
/// log that holds events under per-stream keys: each such event is an error of its own
/// (the key is missing), a forgotten stream's are `Shredded`, and the plain events around
/// them still come.
async fn a_store_without_the_ring_reads_around_stream_keyed_events(kind: Kind) {
    let Some(t) = kind
        .open_with("a_store_without_the_ring_reads_around", shredding)
        .await
    else {
        return;
    };
    write(&t.store, "user-1", 2).await;
    write(&t.store, "user-2", 1).await;
    t.store.forget("user-2").await.expect("forget");
    let plain = t.reopen(|b| b).await.expect("an SQL store reopens");
    write(&plain, "note-1", 1).await;

    let all: Vec<Result<RecordedEvent, Error>> = plain.read_all(LogPosition::START).collect().await;
    let outcomes: Vec<String> = all
        .iter()
        .map(|item| match item {
            Ok(event) => format!("ok {}", event.stream_id),
            Err(Error::Codec {
                stream,
                source: chronicle::CodecError::MissingKey { .. },
                ..
            }) => format!("no key {stream}"),
            Err(Error::Shredded { stream, .. }) => format!("shredded {stream}"),
            Err(other) => format!("other {other}"),
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            "no key user-1",
            "no key user-1",
            "shredded user-2",
            "ok note-1"
        ]
    );
    let stream: Vec<Result<RecordedEvent, Error>> = plain
        .read_stream("user-1", 1, Direction::Forward)
        .collect()
        .await;
    assert_eq!(stream.len(), 2);
    assert!(stream.iter().all(Result::is_err), "{stream:?}");
}

/// A store built with `keep_undecodable_payloads` (a tool without the keys) returns every
/// event: those it cannot decode with an empty payload and the reason.
async fn a_tools_store_keeps_the_events_it_cannot_decode(kind: Kind) {
    let Some(t) = kind
        .open_with("a_tools_store_keeps_the_events_it_cannot_decode", shredding)
        .await
    else {
        return;
    };
    write(&t.store, "user-1", 1).await;
    write(&t.store, "user-2", 1).await;
    t.store.forget("user-2").await.expect("forget");
    let ring_keyed = t
        .reopen(|b| b.encryption(old_ring()))
        .await
        .expect("reopen");
    write(&ring_keyed, "order-1", 1).await;
    let plain = t.reopen(|b| b).await.expect("reopen");
    write(&plain, "note-1", 1).await;

    let tool = t
        .reopen(|b| b.keep_undecodable_payloads(true))
        .await
        .expect("reopen");
    let all: Vec<RecordedEvent> = tool
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .expect("every event");
    let seen: Vec<(String, u64, Option<chronicle::CodecError>, usize)> = all
        .iter()
        .map(|event| {
            (
                event.stream_id.to_string(),
                event.version,
                event.payload_error().cloned(),
                event.payload_json().len(),
            )
        })
        .collect();
    let no_key = |key_id: &str| chronicle::CodecError::MissingKey {
        key_id: key_id.to_owned(),
    };
    assert_eq!(
        seen,
        [
            (
                "user-1".to_owned(),
                1,
                Some(no_key("(the stream's data key)")),
                0
            ),
            (
                "user-2".to_owned(),
                1,
                Some(chronicle::CodecError::Shredded),
                0
            ),
            ("order-1".to_owned(), 1, Some(no_key("old")), 0),
            ("note-1".to_owned(), 1, None, all[3].payload_json().len()),
        ]
    );
    assert_eq!(all[3].json().expect("plain")["n"], 0);
    let by_id = tool
        .event_by_id(all[2].id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(by_id.payload_error(), Some(&no_key("old")));
    // A store without the setting reports them as errors, as before.
    let strict = plain.event_by_id(all[2].id).await;
    assert!(matches!(strict, Err(Error::Codec { .. })), "{strict:?}");
}
