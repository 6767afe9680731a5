//! The backend-conformance suite: every invariant of the store, run on memory, SQLite and
//! PostgreSQL alike.

use chronicle::{
    DeleteMode, Direction, Error, ErrorKind, EventMetadata, EventQuery, ExpectedVersion,
    LogPosition, NewEvent, NewStream, RecordedEvent, Store, StreamListQuery, StreamStatus,
    ValidationError,
};
use futures::TryStreamExt;
use serde_json::json;

use crate::support::Kind;

crate::for_each_backend!(
    versions_start_at_one_without_gaps,
    expected_version_rules,
    conflicts_write_nothing,
    batches_are_atomic,
    resent_batches_are_idempotent,
    reused_ids_with_other_content_are_rejected,
    bad_input_is_a_validation_error,
    stream_lifecycle,
    soft_delete_and_recreate,
    hard_delete_tombstones,
    list_streams_pages_by_category,
    read_stream_pages_both_ways,
    read_all_resumes_from_a_cursor,
    event_by_id_and_metadata_round_trip,
    query_filters,
    compressed_and_encrypted_payloads_round_trip,
    log_end_is_where_a_follower_starts,
    a_query_stops_at_its_visible_default_limit,
);

fn event(n: u64) -> NewEvent {
    NewEvent::new("test.happened", json!({ "n": n }))
}

fn events(range: std::ops::RangeInclusive<u64>) -> Vec<NewEvent> {
    range.map(event).collect()
}

async fn read(store: &Store, stream: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, 1, Direction::Forward)
        .try_collect()
        .await
        .expect("read stream")
}

async fn read_log(store: &Store) -> Vec<RecordedEvent> {
    store
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .expect("read all")
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

async fn versions_start_at_one_without_gaps(kind: Kind) {
    let Some(t) = kind.open("versions_start_at_one_without_gaps").await else {
        return;
    };
    let store = &t.store;
    let first = store
        .append("order-1", ExpectedVersion::Any, events(1..=3))
        .await
        .expect("append");
    assert_eq!(
        first.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let second = store
        .append("order-1", ExpectedVersion::Exact(3), events(4..=5))
        .await
        .expect("append");
    assert_eq!(second.next_expected_version(), 5);
    assert!(
        second.events[0].position > first.events[2].position,
        "positions grow"
    );
    let stored = read(store, "order-1").await;
    assert_eq!(versions(&stored), [1, 2, 3, 4, 5]);
    for (stored, n) in stored.iter().zip(1..) {
        assert_eq!(stored.json().expect("json")["n"], n);
        assert_eq!(stored.stream_id.as_str(), "order-1");
    }
}

async fn expected_version_rules(kind: Kind) {
    let Some(t) = kind.open("expected_version_rules").await else {
        return;
    };
    let store = &t.store;
    let conflict = |result: chronicle::Result<_>| match result {
        Err(Error::Conflict { actual, .. }) => actual,
        other => panic!("expected a conflict, got {other:?}"),
    };
    // Missing stream.
    assert_eq!(
        conflict(
            store
                .append("s-1", ExpectedVersion::StreamExists, events(1..=1))
                .await
        ),
        None
    );
    assert_eq!(
        conflict(
            store
                .append("s-1", ExpectedVersion::Exact(2), events(1..=1))
                .await
        ),
        None
    );
    store
        .append("s-1", ExpectedVersion::NoStream, events(1..=1))
        .await
        .expect("NoStream on a missing stream");
    store
        .append("s-2", ExpectedVersion::Exact(0), events(1..=1))
        .await
        .expect("Exact(0) on a missing stream");
    store
        .append("s-3", ExpectedVersion::Any, events(1..=1))
        .await
        .expect("Any on a missing stream");
    // Existing stream at version 1.
    assert_eq!(
        conflict(
            store
                .append("s-1", ExpectedVersion::NoStream, events(2..=2))
                .await
        ),
        Some(1)
    );
    assert_eq!(
        conflict(
            store
                .append("s-1", ExpectedVersion::Exact(0), events(2..=2))
                .await
        ),
        Some(1)
    );
    store
        .append("s-1", ExpectedVersion::StreamExists, events(2..=2))
        .await
        .expect("StreamExists");
    store
        .append("s-1", ExpectedVersion::Exact(2), events(3..=3))
        .await
        .expect("Exact(2)");
    store
        .append("s-1", ExpectedVersion::Any, events(4..=4))
        .await
        .expect("Any");
    // A stream created empty exists, and has no events.
    store
        .create_stream("s-4", NewStream::new())
        .await
        .expect("create");
    store
        .append("s-4", ExpectedVersion::StreamExists, events(1..=1))
        .await
        .expect("StreamExists on an empty stream");
    store
        .create_stream("s-5", NewStream::new())
        .await
        .expect("create");
    store
        .append("s-5", ExpectedVersion::NoStream, events(1..=1))
        .await
        .expect("NoStream on an empty stream");
    assert_eq!(versions(&read(store, "s-1").await), [1, 2, 3, 4]);
    // A version no stream reaches is a conflict, not an overflow.
    assert_eq!(
        conflict(
            store
                .append("s-1", ExpectedVersion::Exact(u64::MAX), events(9..=9))
                .await
        ),
        Some(4)
    );
}

async fn conflicts_write_nothing(kind: Kind) {
    let Some(t) = kind.open("conflicts_write_nothing").await else {
        return;
    };
    let store = &t.store;
    store
        .append("acct-1", ExpectedVersion::NoStream, events(1..=2))
        .await
        .expect("append");
    let error = store
        .append("acct-1", ExpectedVersion::Exact(1), events(3..=5))
        .await
        .expect_err("stale version");
    assert_eq!(error.kind(), ErrorKind::Conflict);
    assert!(!error.is_retryable());
    let message = error.to_string();
    assert!(
        message.contains("acct-1")
            && message.contains("version 1")
            && message.contains("version 2"),
        "{message}"
    );
    assert_eq!(read(store, "acct-1").await.len(), 2);
    assert_eq!(read_log(store).await.len(), 2);
    let info = store
        .stream_info("acct-1")
        .await
        .expect("info")
        .expect("exists");
    assert_eq!((info.version, info.event_count), (2, 2));
}

async fn batches_are_atomic(kind: Kind) {
    let Some(t) = kind.open("batches_are_atomic").await else {
        return;
    };
    let store = &t.store;
    let taken = event(1);
    store
        .append("a-1", ExpectedVersion::Any, vec![taken.clone()])
        .await
        .expect("append");
    // The third event reuses an id stored elsewhere: the whole batch fails.
    let batch = vec![event(2), event(3), taken.clone().id(taken.event_id())];
    let error = store
        .append("b-1", ExpectedVersion::Any, batch)
        .await
        .expect_err("reused id");
    assert!(
        matches!(&error, Error::EventIdReused { event_id, existing_stream, .. } if *event_id == taken.event_id() && existing_stream == "a-1"),
        "{error:?}"
    );
    assert!(!store.stream_exists("b-1").await.expect("exists"));
    assert_eq!(read_log(store).await.len(), 1);
}

async fn resent_batches_are_idempotent(kind: Kind) {
    let Some(t) = kind.open("resent_batches_are_idempotent").await else {
        return;
    };
    let store = &t.store;
    let batch = events(1..=3);
    let first = store
        .append("pay-1", ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("append");
    assert!(!first.already_stored);
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Any,
    ] {
        let again = store
            .append("pay-1", expected, batch.clone())
            .await
            .expect("a replay succeeds");
        assert!(again.already_stored);
        assert_eq!(
            again.events, first.events,
            "replay returns the stored positions"
        );
    }
    // A later batch and its replay.
    let next = events(4..=4);
    store
        .append("pay-1", ExpectedVersion::Exact(3), next.clone())
        .await
        .expect("append");
    let replay = store
        .append("pay-1", ExpectedVersion::Exact(3), next)
        .await
        .expect("replay");
    assert!(replay.already_stored);
    // Replayed at the wrong version: not the same append.
    let error = store
        .append("pay-1", ExpectedVersion::Exact(1), batch.clone())
        .await
        .expect_err("wrong place");
    assert_eq!(error.kind(), ErrorKind::Conflict);
    assert_eq!(versions(&read(store, "pay-1").await), [1, 2, 3, 4]);
    assert_eq!(read_log(store).await.len(), 4);
}

async fn reused_ids_with_other_content_are_rejected(kind: Kind) {
    let Some(t) = kind
        .open("reused_ids_with_other_content_are_rejected")
        .await
    else {
        return;
    };
    let store = &t.store;
    let original = event(1);
    store
        .append("x-1", ExpectedVersion::NoStream, vec![original.clone()])
        .await
        .expect("append");
    let altered = NewEvent::new("test.happened", json!({ "n": 99 })).id(original.event_id());
    let error = store
        .append("x-1", ExpectedVersion::NoStream, vec![altered])
        .await
        .expect_err("different content");
    assert!(matches!(error, Error::EventIdReused { .. }), "{error:?}");
    // Only part of the batch stored: not a replay either.
    let error = store
        .append(
            "x-1",
            ExpectedVersion::NoStream,
            vec![original.clone(), event(2)],
        )
        .await
        .expect_err("partial overlap");
    assert!(matches!(error, Error::EventIdReused { .. }), "{error:?}");
    // The same id in another stream.
    let error = store
        .append("y-1", ExpectedVersion::Any, vec![original])
        .await
        .expect_err("other stream");
    assert!(
        matches!(&error, Error::EventIdReused { existing_stream, .. } if existing_stream == "x-1"),
        "{error:?}"
    );
    assert_eq!(read_log(store).await.len(), 1);
}

async fn bad_input_is_a_validation_error(kind: Kind) {
    let Some(t) = kind
        .open_with("bad_input_is_a_validation_error", |b| {
            b.max_event_size(64).max_events_per_append(3)
        })
        .await
    else {
        return;
    };
    let store = &t.store;
    let validation = |result: chronicle::Result<_>| match result {
        Err(Error::Validation(error)) => error,
        other => panic!("expected a validation error, got {other:?}"),
    };
    let error = validation(store.append("v-1", ExpectedVersion::Any, vec![]).await);
    assert_eq!(
        error,
        ValidationError::EmptyBatch {
            stream: "v-1".into()
        }
    );
    let error = validation(
        store
            .append("v-1", ExpectedVersion::Any, events(1..=4))
            .await,
    );
    assert!(matches!(
        error,
        ValidationError::BatchTooLarge {
            count: 4,
            limit: 3,
            ..
        }
    ));
    assert!(error.to_string().contains("max_events_per_append"));
    let big = NewEvent::new("test.big", json!({ "blob": "x".repeat(100) }));
    let error = validation(store.append("v-1", ExpectedVersion::Any, vec![big]).await);
    assert!(matches!(
        error,
        ValidationError::EventTooLarge { limit: 64, .. }
    ));
    assert!(error.to_string().contains("max_event_size"));
    let error = validation(store.append("", ExpectedVersion::Any, events(1..=1)).await);
    assert_eq!(error, ValidationError::EmptyStreamId);
    let error = validation(
        store
            .append("a\nb", ExpectedVersion::Any, events(1..=1))
            .await,
    );
    assert!(matches!(error, ValidationError::StreamIdControlChar { .. }));
    let long = "x".repeat(chronicle::MAX_STREAM_ID_LEN + 1);
    let error = validation(
        store
            .append(&long, ExpectedVersion::Any, events(1..=1))
            .await,
    );
    assert!(matches!(error, ValidationError::StreamIdTooLong { .. }));
    let error = validation(
        store
            .append(
                "v-1",
                ExpectedVersion::Any,
                vec![NewEvent::new("", json!({}))],
            )
            .await,
    );
    assert!(matches!(error, ValidationError::EmptyEventType { .. }));
    let twice = event(1);
    let error = validation(
        store
            .append("v-1", ExpectedVersion::Any, vec![twice.clone(), twice])
            .await,
    );
    assert!(matches!(error, ValidationError::DuplicateIdInBatch { .. }));
    assert!(read_log(store).await.is_empty(), "nothing was written");
}

async fn stream_lifecycle(kind: Kind) {
    let Some(t) = kind.open("stream_lifecycle").await else {
        return;
    };
    let store = &t.store;
    assert!(!store.stream_exists("cart-1").await.expect("exists"));
    assert!(store.stream_info("cart-1").await.expect("info").is_none());
    store
        .create_stream(
            "cart-1",
            NewStream::new()
                .aggregate_type("cart")
                .display_name("Ada's cart")
                .metadata(json!({ "region": "eu" })),
        )
        .await
        .expect("create");
    assert!(store.stream_exists("cart-1").await.expect("exists"));
    let info = store
        .stream_info("cart-1")
        .await
        .expect("info")
        .expect("some");
    assert_eq!(info.category, "cart");
    assert_eq!(info.aggregate_type.as_deref(), Some("cart"));
    assert_eq!(info.display_name.as_deref(), Some("Ada's cart"));
    assert_eq!(info.metadata, json!({ "region": "eu" }));
    assert_eq!(
        (info.version, info.event_count, info.last_event_id),
        (0, 0, None)
    );
    let error = store
        .create_stream("cart-1", NewStream::new())
        .await
        .expect_err("exists");
    assert!(
        matches!(&error, Error::StreamAlreadyExists { stream } if stream == "cart-1"),
        "{error:?}"
    );
    assert_eq!(error.kind(), ErrorKind::Conflict);

    let batch = events(1..=2);
    let last_id = batch[1].event_id();
    store
        .append("cart-1", ExpectedVersion::Exact(0), batch)
        .await
        .expect("append");
    let after = store
        .stream_info("cart-1")
        .await
        .expect("info")
        .expect("some");
    assert_eq!((after.version, after.event_count), (2, 2));
    assert_eq!(after.last_event_id, Some(last_id));
    assert!(after.updated_at >= info.updated_at);
    assert_eq!(after.created_at, info.created_at);
    assert_eq!(
        after.aggregate_type.as_deref(),
        Some("cart"),
        "append keeps the stream's data"
    );

    let missing = store
        .read_stream("cart-404", 1, Direction::Forward)
        .try_collect::<Vec<_>>()
        .await
        .expect_err("missing");
    assert!(matches!(missing, Error::StreamNotFound { .. }));
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let error = store
        .delete_stream("cart-404", DeleteMode::Soft)
        .await
        .expect_err("missing");
    assert!(matches!(error, Error::StreamNotFound { .. }));
}

async fn soft_delete_and_recreate(kind: Kind) {
    let Some(t) = kind.open("soft_delete_and_recreate").await else {
        return;
    };
    let store = &t.store;
    store
        .append("doc-1", ExpectedVersion::NoStream, events(1..=2))
        .await
        .expect("append");
    store
        .delete_stream("doc-1", DeleteMode::Soft)
        .await
        .expect("delete");
    assert!(!store.stream_exists("doc-1").await.expect("exists"));
    let info = store
        .stream_info("doc-1")
        .await
        .expect("info")
        .expect("row kept");
    assert_eq!(info.status, StreamStatus::Deleted);
    let error = store
        .read_stream("doc-1", 1, Direction::Forward)
        .try_collect::<Vec<_>>()
        .await
        .expect_err("deleted");
    assert!(
        matches!(error, Error::StreamDeleted { hard: false, .. }),
        "{error:?}"
    );
    let error = store
        .append("doc-1", ExpectedVersion::Any, events(3..=3))
        .await
        .expect_err("deleted");
    assert!(
        matches!(error, Error::StreamDeleted { hard: false, .. }),
        "{error:?}"
    );
    assert_eq!(
        read_log(store).await.len(),
        2,
        "the log keeps soft-deleted events"
    );

    store
        .create_stream("doc-1", NewStream::new().aggregate_type("doc"))
        .await
        .expect("re-create");
    store
        .append("doc-1", ExpectedVersion::Exact(2), events(3..=3))
        .await
        .expect("versions continue");
    assert_eq!(versions(&read(store, "doc-1").await), [1, 2, 3]);
}

async fn hard_delete_tombstones(kind: Kind) {
    let Some(t) = kind.open("hard_delete_tombstones").await else {
        return;
    };
    let store = &t.store;
    let gone = store
        .append("tmp-1", ExpectedVersion::NoStream, events(1..=3))
        .await
        .expect("append");
    store
        .append("keep-1", ExpectedVersion::NoStream, events(1..=1))
        .await
        .expect("append");
    store
        .delete_stream("tmp-1", DeleteMode::Hard)
        .await
        .expect("delete");
    let log = read_log(store).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].stream_id.as_str(), "keep-1");
    assert!(
        store
            .event_by_id(gone.events[0].event_id)
            .await
            .expect("lookup")
            .is_none()
    );
    let info = store
        .stream_info("tmp-1")
        .await
        .expect("info")
        .expect("tombstone");
    assert_eq!(
        (info.status, info.event_count),
        (StreamStatus::Tombstoned, 0)
    );
    let error = store
        .append("tmp-1", ExpectedVersion::Any, events(4..=4))
        .await
        .expect_err("tombstoned");
    assert!(
        matches!(error, Error::StreamDeleted { hard: true, .. }),
        "{error:?}"
    );
    let error = store
        .create_stream("tmp-1", NewStream::new())
        .await
        .expect_err("tombstoned");
    assert!(
        matches!(error, Error::StreamDeleted { hard: true, .. }),
        "{error:?}"
    );
    // Positions are never reused.
    let next = store
        .append("keep-1", ExpectedVersion::Any, events(2..=2))
        .await
        .expect("append");
    assert!(next.events[0].position > gone.events[2].position);
}

async fn list_streams_pages_by_category(kind: Kind) {
    let Some(t) = kind.open("list_streams_pages_by_category").await else {
        return;
    };
    let store = &t.store;
    for id in [
        "user-3", "user-1", "order-1", "user-2", "plain", "user-4", "user", "user!x", "users-1",
    ] {
        store
            .append(id, ExpectedVersion::Any, events(1..=1))
            .await
            .expect("append");
    }
    store
        .delete_stream("user-4", DeleteMode::Soft)
        .await
        .expect("delete");
    let ids = |page: Vec<chronicle::StreamInfo>| -> Vec<String> {
        page.into_iter().map(|i| i.stream_id.to_string()).collect()
    };
    let first = store
        .list_streams(&StreamListQuery::new().category("user").limit(2))
        .await
        .expect("list");
    assert_eq!(ids(first), ["user", "user-1"]);
    let second = store
        .list_streams(
            &StreamListQuery::new()
                .category("user")
                .limit(3)
                .after("user-1"),
        )
        .await
        .expect("list");
    assert_eq!(
        ids(second),
        ["user-2", "user-3"],
        "`user!x` is not of category `user`"
    );
    let with_deleted = store
        .list_streams(
            &StreamListQuery::new()
                .category("user")
                .include_deleted(true),
        )
        .await
        .expect("list");
    assert_eq!(ids(with_deleted).len(), 5);
    let all = store
        .list_streams(&StreamListQuery::new())
        .await
        .expect("list");
    assert_eq!(
        ids(all),
        [
            "order-1", "plain", "user", "user!x", "user-1", "user-2", "user-3", "users-1"
        ]
    );
    let plain = store
        .list_streams(&StreamListQuery::new().category("plain"))
        .await
        .expect("list");
    assert_eq!(ids(plain), ["plain"]);
}

async fn read_stream_pages_both_ways(kind: Kind) {
    let Some(t) = kind
        .open_with("read_stream_pages_both_ways", |b| b.page_size(3))
        .await
    else {
        return;
    };
    let store = &t.store;
    for chunk in 0..4 {
        let first = chunk * 3 + 1;
        store
            .append("page-1", ExpectedVersion::Any, events(first..=first + 2))
            .await
            .expect("append");
    }
    store
        .append("page-2", ExpectedVersion::Any, events(1..=2))
        .await
        .expect("append");
    let forward = read(store, "page-1").await;
    assert_eq!(versions(&forward), (1..=12).collect::<Vec<_>>());
    let middle: Vec<_> = store
        .read_stream("page-1", 5, Direction::Forward)
        .try_collect()
        .await
        .expect("read");
    assert_eq!(versions(&middle), (5..=12).collect::<Vec<_>>());
    let backward: Vec<_> = store
        .read_stream("page-1", u64::MAX, Direction::Backward)
        .try_collect()
        .await
        .expect("read");
    assert_eq!(versions(&backward), (1..=12).rev().collect::<Vec<_>>());
    let down_from_7: Vec<_> = store
        .read_stream("page-1", 7, Direction::Backward)
        .try_collect()
        .await
        .expect("read");
    assert_eq!(versions(&down_from_7), (1..=7).rev().collect::<Vec<_>>());
    let past_end: Vec<_> = store
        .read_stream("page-1", 13, Direction::Forward)
        .try_collect()
        .await
        .expect("read");
    assert!(past_end.is_empty());
}

async fn read_all_resumes_from_a_cursor(kind: Kind) {
    let Some(t) = kind
        .open_with("read_all_resumes_from_a_cursor", |b| b.page_size(4))
        .await
    else {
        return;
    };
    let store = &t.store;
    let mut written = Vec::new();
    for n in 1..=10 {
        let stream = format!("log-{}", n % 3);
        let result = store
            .append(&stream, ExpectedVersion::Any, events(n..=n))
            .await
            .expect("append");
        written.push(result.events[0].event_id);
    }
    let log = read_log(store).await;
    assert_eq!(log.iter().map(|e| e.id).collect::<Vec<_>>(), written);
    assert!(
        log.windows(2)
            .all(|w| w[0].log_position() < w[1].log_position())
    );
    let cursor = log[5].log_position();
    let rest: Vec<_> = store.read_all(cursor).try_collect().await.expect("read");
    assert_eq!(rest.iter().map(|e| e.id).collect::<Vec<_>>(), written[6..]);
    let resumed: LogPosition = cursor.to_string().parse().expect("parse");
    assert_eq!(resumed, cursor);
    let last = log[9].log_position();
    let none: Vec<_> = store.read_all(last).try_collect().await.expect("read");
    assert!(none.is_empty());
}

async fn event_by_id_and_metadata_round_trip(kind: Kind) {
    let Some(t) = kind.open("event_by_id_and_metadata_round_trip").await else {
        return;
    };
    let store = &t.store;
    let mut metadata = EventMetadata {
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cause-1".into()),
        user_id: Some("ada".into()),
        tenant_id: Some("acme".into()),
        request_id: Some("req-1".into()),
        trace_id: Some("trace-1".into()),
        ..EventMetadata::default()
    };
    metadata.custom.insert("ip".into(), json!("10.0.0.1"));
    let new = NewEvent::new("meta.test", json!({ "x": [1, 2, 3] }))
        .schema_version(3)
        .metadata(metadata.clone());
    let id = new.event_id();
    store
        .append("meta-1", ExpectedVersion::Any, vec![new])
        .await
        .expect("append");
    let found = store.event_by_id(id).await.expect("lookup").expect("found");
    assert_eq!(found.id, id);
    assert_eq!(found.event_type, "meta.test");
    assert_eq!(found.schema_version, 3);
    assert_eq!(found.metadata, metadata);
    assert_eq!(found.json().expect("json"), json!({ "x": [1, 2, 3] }));
    assert_eq!(found.data::<serde_json::Value>().expect("data")["x"][2], 3);
    let age = chrono::Utc::now() - found.recorded_at;
    assert!(
        age.num_seconds().abs() < 60,
        "recorded_at is now: {}",
        found.recorded_at
    );
    assert!(
        store
            .event_by_id(uuid::Uuid::now_v7())
            .await
            .expect("lookup")
            .is_none()
    );
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Wrong {
        y: String,
    }
    let error = found.data::<Wrong>().expect_err("wrong shape");
    assert!(matches!(&error, Error::Payload { event_id, .. } if *event_id == id));
}

async fn query_filters(kind: Kind) {
    let Some(t) = kind.open("query_filters").await else {
        return;
    };
    let store = &t.store;
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    for n in 1..=6u64 {
        let event_type = if n % 2 == 0 { "even" } else { "odd" };
        let mut new = NewEvent::new(event_type, json!({ "n": n }));
        if n <= 2 {
            new = new.correlation_id("c-1");
        }
        let metadata = EventMetadata {
            tenant_id: Some(if n <= 3 { "t-a" } else { "t-b" }.into()),
            ..new.event_metadata().clone()
        };
        store
            .append(
                format!("q-{}", n % 2),
                ExpectedVersion::Any,
                vec![new.metadata(metadata)],
            )
            .await
            .expect("append");
    }
    let ns = |events: Vec<RecordedEvent>| -> Vec<u64> {
        events
            .iter()
            .map(|e| e.json().expect("json")["n"].as_u64().expect("n"))
            .collect()
    };
    let q = |query: EventQuery| async move {
        ns(store.query(&query).try_collect().await.expect("query"))
    };
    assert_eq!(q(EventQuery::new()).await, [1, 2, 3, 4, 5, 6]);
    assert_eq!(q(EventQuery::new().stream("q-1")).await, [1, 3, 5]);
    assert_eq!(q(EventQuery::new().event_types(["even"])).await, [2, 4, 6]);
    assert_eq!(
        q(EventQuery::new()
            .event_types(["even", "odd"])
            .limit(2)
            .offset(3))
        .await,
        [4, 5]
    );
    assert_eq!(q(EventQuery::new().correlation_id("c-1")).await, [1, 2]);
    assert_eq!(
        q(EventQuery::new().tenant_id("t-b").event_types(["odd"])).await,
        [5]
    );
    let now = chrono::Utc::now() + chrono::Duration::seconds(5);
    assert_eq!(q(EventQuery::new().time_range(before, now)).await.len(), 6);
    assert!(
        q(EventQuery::new().time_range(now, now + chrono::Duration::hours(1)))
            .await
            .is_empty()
    );
}

async fn compressed_and_encrypted_payloads_round_trip(kind: Kind) {
    let ring = chronicle::KeyRing::new("k1", chronicle::KeyRing::generate_key()).expect("ring");
    let Some(t) = kind
        .open_with("compressed_and_encrypted_payloads_round_trip", |b| {
            b.compression(chronicle::Compression::zstd().min_size(64))
                .encryption(ring)
        })
        .await
    else {
        return;
    };
    let store = &t.store;
    let small = NewEvent::new("doc.small", json!({ "a": 1 }));
    let large = NewEvent::new("doc.large", json!({ "text": "lorem ipsum ".repeat(200) }));
    let batch = vec![small.clone(), large.clone()];
    store
        .append("doc-9", ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("append");
    let stored = read(store, "doc-9").await;
    assert_eq!(stored[0].payload_json(), small.payload_json());
    assert_eq!(stored[1].payload_json(), large.payload_json());
    // Idempotent replays compare decrypted content, not ciphertext.
    let replay = store
        .append("doc-9", ExpectedVersion::NoStream, batch)
        .await
        .expect("replay");
    assert!(replay.already_stored);
}

/// `log_end` is a cursor that splits the log: the events up to it, and what `read_all`
/// from it returns (everything after, nothing twice).
async fn log_end_is_where_a_follower_starts(kind: Kind) {
    let Some(t) = kind.open("log_end_is_where_a_follower_starts").await else {
        return;
    };
    let store = &t.store;
    assert_eq!(store.log_end().await.expect("end"), LogPosition::START);
    store
        .append("tail-1", ExpectedVersion::Any, events(1..=3))
        .await
        .expect("append");
    store
        .append("tail-2", ExpectedVersion::Any, events(4..=5))
        .await
        .expect("append");
    let end = store.log_end().await.expect("end");
    let all: Vec<RecordedEvent> = store
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .expect("all");
    if kind != Kind::Postgres {
        // Positions commit in order: the end is the last event.
        assert_eq!(end, all[4].log_position());
    }
    store
        .append("tail-1", ExpectedVersion::Any, events(6..=6))
        .await
        .expect("append");
    let after: Vec<RecordedEvent> = store.read_all(end).try_collect().await.expect("after");
    let all: Vec<RecordedEvent> = store
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .expect("all");
    let before = all
        .iter()
        .filter(|event| event.log_position() <= end)
        .count();
    assert_eq!(after, all[before..], "the rest of the log, once");
    assert_eq!(after.last().map(|event| event.version), Some(4));
}

async fn a_query_stops_at_its_visible_default_limit(kind: Kind) {
    let Some(t) = kind.open("query_default_limit").await else {
        return;
    };
    t.store
        .append("many-1", ExpectedVersion::NoStream, events(1..=120))
        .await
        .expect("append");
    assert_eq!(EventQuery::DEFAULT_LIMIT, 100);
    assert_eq!(EventQuery::new().limit, EventQuery::DEFAULT_LIMIT);
    let count = |query: EventQuery| {
        let store = t.store.clone();
        async move {
            let found: Vec<RecordedEvent> = store.query(&query).try_collect().await.expect("query");
            found.len()
        }
    };
    assert_eq!(count(EventQuery::new()).await, EventQuery::DEFAULT_LIMIT);
    assert_eq!(count(EventQuery::new().limit(1000)).await, 120);
    assert_eq!(
        count(EventQuery::new().offset(100)).await,
        20,
        "the next page"
    );
}
