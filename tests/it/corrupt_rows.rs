//! Rows edited behind the store's back so that a column holds a value chronicle never
//! writes: a negative or overflowing integer, a time no `DateTime` can hold, metadata that
//! is not chronicle's JSON, an unknown stream status. Each read of such a row is a typed
//! error naming the row and the column, never a default; retention never removes an event
//! whose age it cannot read.
//!
//! Some corruptions cannot be stored on PostgreSQL, whose column types refuse them: a
//! `timestamptz` always holds a time (only `infinity` and `-infinity` are unreadable, and
//! tested), `jsonb` is always valid JSON (so only JSON of the wrong shape is tested, and a
//! stream's free-form metadata cannot be corrupt at all), and an identity `position` cannot
//! be updated.

use std::time::Duration;

use chronicle::{
    Direction, Error, ErrorKind, EventMetadata, ExpectedVersion, NewEvent, NewSnapshot,
    RecordedEvent, RetentionPolicy, RetentionScope, Store,
};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use sqlx::Connection;

use crate::domain::Account;
use crate::support::{Kind, Location, TestStore, execute};

crate::for_each_sql_backend!(
    corrupt_event_columns,
    corrupt_stream_columns,
    corrupt_snapshot_columns,
    corrupt_snapshot_met_by_reencryption,
    corrupt_checkpoint,
    corrupt_outbox_handler_start,
    corrupt_event_in_an_aggregate_load,
    retention_keeps_events_of_unreadable_age,
    query_reports_a_bad_event_and_goes_on,
    an_event_whose_stream_row_is_missing_reads_as_corrupt,
);

/// One value of `i64::MAX` microseconds: past the last time chrono represents.
const SQLITE_UNREADABLE_TIME: &str = "9223372036854775807";

/// Asserts that `result` is a corrupt-row error naming `column` and each of `names`.
#[track_caller]
fn expect_corrupt<T: std::fmt::Debug>(result: chronicle::Result<T>, column: &str, names: &[&str]) {
    match result {
        Err(error @ Error::CorruptRow(_)) => {
            let text = error.to_string();
            assert_eq!(error.kind(), ErrorKind::Codec, "{error}");
            assert!(!error.is_retryable(), "{error}");
            assert!(text.contains(&format!("`{column}`")), "{column}: {error}");
            for name in names {
                assert!(text.contains(name), "{name} not named: {error}");
            }
        }
        other => {
            panic!("expected a corrupt-row error on `{column}` naming {names:?}, got {other:?}")
        }
    }
}

/// A number from the test store's database.
async fn scalar(t: &TestStore, sql: &str) -> i64 {
    match &t.location {
        Location::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&mut conn)
                .await
                .expect("select")
        }
        Location::Postgres { .. } => {
            let mut conn = crate::support::pg_raw(t).await;
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&mut conn)
                .await
                .expect("select")
        }
        Location::Memory => unreachable!("SQL backends only"),
    }
}

fn is_postgres(t: &TestStore) -> bool {
    matches!(t.location, Location::Postgres { .. })
}

/// The condition "a row of `events` is of `stream`": rows name their stream by its key.
fn of_stream(stream: &str) -> String {
    format!("stream_key = (SELECT stream_key FROM streams WHERE stream_id = '{stream}')")
}

async fn append_one(store: &Store, stream: &str) -> uuid::Uuid {
    let event = NewEvent::new("thing.happened", json!({ "n": 1 })).metadata(EventMetadata {
        request_id: Some("req-1".into()),
        ..EventMetadata::default()
    });
    let id = event.event_id();
    store
        .append(stream, ExpectedVersion::Any, vec![event])
        .await
        .expect("append");
    id
}

async fn read(store: &Store, stream: &str) -> chronicle::Result<Vec<RecordedEvent>> {
    store
        .read_stream(stream, 1, Direction::Forward)
        .try_collect()
        .await
}

/// The statement that stores `value` in `column` of the events of `stream`. An event's
/// schema version is its type's row in `event_types`: changed there, it changes for every
/// event of that type (the case deletes its events afterwards, and the next append adds
/// the pair again).
fn corrupt_column(stream: &str, column: &str, value: &str) -> String {
    let of_stream = of_stream(stream);
    if column == "schema_version" {
        format!(
            "UPDATE event_types SET schema_version = {value} \
             WHERE type_id IN (SELECT type_id FROM events WHERE {of_stream})"
        )
    } else {
        format!("UPDATE events SET {column} = {value} WHERE {of_stream}")
    }
}

async fn corrupt_event_columns(kind: Kind) {
    let Some(t) = kind.open("corrupt_event_columns").await else {
        return;
    };
    let pg = is_postgres(&t);
    let mut cases = vec![
        ("version", "-5"),
        ("schema_version", "-1"),
        ("schema_version", "5000000000"),
        ("type_id", "2147483647"),
    ];
    if pg {
        cases.extend([
            ("recorded_at", "'infinity'"),
            ("recorded_at", "'-infinity'"),
            ("metadata", "'{\"request_id\": 5}'"),
            ("metadata", "'[1, 2]'"),
        ]);
    } else {
        cases.extend([
            ("recorded_at", SQLITE_UNREADABLE_TIME),
            ("recorded_at", "-9223372036854775808"),
            ("recorded_at", "'yesterday'"),
            ("metadata", "'{not json'"),
            ("metadata", "'{\"request_id\": 5}'"),
            ("position", "-7"),
            ("version", "'two'"),
        ]);
    }
    for (i, (column, value)) in cases.into_iter().enumerate() {
        let stream = format!("corrupt-{i}");
        let id = append_one(&t.store, &stream).await;
        execute(&t, &corrupt_column(&stream, column, value)).await;
        let names = [stream.as_str(), &id.to_string()];
        expect_corrupt(t.store.event_by_id(id).await, column, &names);
        // The log is read by position: a negative one is before its start.
        if column != "position" {
            let all: chronicle::Result<Vec<RecordedEvent>> = t
                .store
                .read_all(chronicle::LogPosition::START)
                .try_collect()
                .await;
            expect_corrupt(all, column, &names);
        }
        if column != "version" {
            expect_corrupt(read(&t.store, &stream).await, column, &names);
        }
        // Put the row back, so the next case's log reads meet only their own row.
        execute(
            &t,
            &format!("DELETE FROM events WHERE {}", of_stream(&stream)),
        )
        .await;
    }
}

async fn corrupt_stream_columns(kind: Kind) {
    let Some(t) = kind.open("corrupt_stream_columns").await else {
        return;
    };
    let pg = is_postgres(&t);
    let mut cases = vec![("version", "-1"), ("event_count", "-3"), ("status", "7")];
    if pg {
        cases.extend([("created_at", "'-infinity'"), ("updated_at", "'infinity'")]);
    } else {
        cases.extend([
            ("created_at", SQLITE_UNREADABLE_TIME),
            ("updated_at", "-9223372036854775808"),
            ("metadata", "'{not json'"),
        ]);
    }
    for (i, (column, value)) in cases.into_iter().enumerate() {
        let stream = format!("stream-{i}");
        append_one(&t.store, &stream).await;
        execute(
            &t,
            &format!("UPDATE streams SET {column} = {value} WHERE stream_id = '{stream}'"),
        )
        .await;
        expect_corrupt(t.store.stream_info(&stream).await, column, &[&stream]);
        expect_corrupt(read(&t.store, &stream).await, column, &[&stream]);
        let listed = t
            .store
            .list_streams(&chronicle::StreamListQuery::new().include_deleted(true))
            .await;
        expect_corrupt(listed, column, &[&stream]);
        if column == "status" {
            // An unknown status is not a tombstone: the append says what it found.
            let append = t
                .store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new("thing.happened", json!({}))],
                )
                .await;
            expect_corrupt(append, column, &[&stream]);
        }
        execute(
            &t,
            &format!("DELETE FROM streams WHERE stream_id = '{stream}'"),
        )
        .await;
    }
}

async fn corrupt_snapshot_columns(kind: Kind) {
    let Some(t) = kind.open("corrupt_snapshot_columns").await else {
        return;
    };
    let time = if is_postgres(&t) {
        "'infinity'"
    } else {
        SQLITE_UNREADABLE_TIME
    };
    let cases = [
        ("version", "-1"),
        ("schema_version", "-2"),
        ("schema_version", "5000000000"),
        ("created_at", time),
    ];
    for (i, (column, value)) in cases.into_iter().enumerate() {
        let stream = format!("snap-{i}");
        append_one(&t.store, &stream).await;
        let snapshot = NewSnapshot::from_serialize(1, 1, &json!({ "n": 1 })).expect("json");
        t.store
            .save_snapshot(&stream, snapshot)
            .await
            .expect("save");
        execute(
            &t,
            &format!("UPDATE snapshots SET {column} = {value} WHERE stream_id = '{stream}'"),
        )
        .await;
        expect_corrupt(
            t.store.latest_snapshot(&stream, u64::MAX).await,
            column,
            &[&stream],
        );
        expect_corrupt(t.store.list_snapshots(&stream).await, column, &[&stream]);
    }
}

/// Re-encryption reads snapshots in its own statement: a time that does not read is named
/// there too (on PostgreSQL, sqlx's own decoding panicked on `infinity`).
async fn corrupt_snapshot_met_by_reencryption(kind: Kind) {
    let old_key = chronicle::KeyRing::generate_key();
    let ring = chronicle::KeyRing::new("k1", old_key).expect("ring");
    let Some(t) = kind
        .open_with("corrupt_snapshot_met_by_reencryption", |b| {
            b.encryption(ring)
        })
        .await
    else {
        return;
    };
    append_one(&t.store, "rot-1").await;
    let snapshot = NewSnapshot::from_serialize(1, 1, &json!({ "n": 1 })).expect("json");
    t.store
        .save_snapshot("rot-1", snapshot)
        .await
        .expect("save");
    let time = if is_postgres(&t) {
        "'infinity'"
    } else {
        SQLITE_UNREADABLE_TIME
    };
    execute(
        &t,
        &format!("UPDATE snapshots SET created_at = {time} WHERE stream_id = 'rot-1'"),
    )
    .await;
    let rotated = chronicle::KeyRing::new("k2", chronicle::KeyRing::generate_key())
        .and_then(|ring| ring.with_key("k1", old_key))
        .expect("ring");
    let store = t.reopen(|b| b.encryption(rotated)).await.expect("reopen");
    let outcome = tokio::spawn(async move { store.key_rotation().reencrypt_events().await })
        .await
        .expect("no panic");
    expect_corrupt(outcome, "created_at", &["rot-1"]);
}

/// A projection's checkpoint with a negative position is not the start of the log (read as
/// 0, it sent the projection back to replay everything).
async fn corrupt_checkpoint(kind: Kind) {
    let Some(t) = kind.open("corrupt_checkpoint").await else {
        return;
    };
    let time = if is_postgres(&t) { "now()" } else { "0" };
    execute(
        &t,
        &format!(
            "INSERT INTO projection_checkpoints (name, commit_id, position, updated_at) \
             VALUES ('balances', 0, -12, {time})"
        ),
    )
    .await;
    expect_corrupt(
        t.store.checkpoint("balances").await,
        "position",
        &["balances"],
    );
}

/// An outbox handler's recorded start with a negative position is not the start of the
/// log: read as 0, it sent the handler back over the whole history (every old email again).
async fn corrupt_outbox_handler_start(kind: Kind) {
    use chronicle::{Handler, HandlerMap, HandlerRequest};
    let Some(t) = kind.open("corrupt_outbox_handler_start").await else {
        return;
    };
    append_one(&t.store, "order-1").await;
    let handlers = || {
        HandlerMap::new().route(Handler::new(
            "mailer",
            "*",
            |_request: HandlerRequest| async { Ok(()) },
        ))
    };
    // The first run records the handler's start (the end of the log: from now on).
    t.store.outbox(handlers()).unwrap().process().await.unwrap();
    let pending = || async {
        let stats = t.store.outbox_admin().stats().await.unwrap();
        stats
            .handlers
            .get("mailer")
            .map_or(0, |mailer| mailer.pending)
    };
    // (On PostgreSQL "now" may still be before the append: another test's transaction
    // can hold the log's visible end back.)
    let before = pending().await;
    append_one(&t.store, "order-2").await;
    execute(
        &t,
        "UPDATE outbox_handlers SET start_position = -5 WHERE handler = 'mailer'",
    )
    .await;
    let outbox = t.store.outbox(handlers()).unwrap();
    expect_corrupt(outbox.process().await, "start_position", &["mailer"]);
    assert_eq!(pending().await, before, "no request was created");
}

/// An aggregate load reads the stream row, the snapshot and the events in its own
/// statements (`replay_start`, then narrow pages): each names the corrupt row too.
async fn corrupt_event_in_an_aggregate_load(kind: Kind) {
    let Some(t) = kind.open("corrupt_event_in_an_aggregate_load").await else {
        return;
    };
    let accounts = t.store.repository::<Account>().snapshot_every(0);
    let open = |id: &'static str| {
        let accounts = accounts.clone();
        async move {
            accounts
                .execute(
                    id,
                    crate::domain::AccountCommand::Open {
                        owner: "ada".into(),
                    },
                )
                .await
                .expect("open");
        }
    };
    let corrupt_type = corrupt_column("account-1", "schema_version", "-1");
    for (id, sql, column) in [
        ("1", corrupt_type.as_str(), "schema_version"),
        (
            "2",
            "UPDATE streams SET status = 9 WHERE stream_id = 'account-2'",
            "status",
        ),
        (
            "3",
            "UPDATE streams SET version = -4 WHERE stream_id = 'account-3'",
            "version",
        ),
    ] {
        open(id).await;
        execute(&t, sql).await;
        let stream = format!("account-{id}");
        expect_corrupt(accounts.load(id).await, column, &[&stream]);
    }
}

/// A policy with an age bound removes the events it can date, and keeps (and reports) the
/// one whose time does not read.
async fn retention_keeps_events_of_unreadable_age(kind: Kind) {
    let Some(t) = kind.open("retention_keeps_events_of_unreadable_age").await else {
        return;
    };
    let stream = "aged-1";
    for _ in 0..3 {
        append_one(&t.store, stream).await;
    }
    let (unreadable, old) = if is_postgres(&t) {
        ("'-infinity'", "now() - interval '2 days'".to_owned())
    } else {
        let micros = (chrono::Utc::now() - chrono::Duration::days(2)).timestamp_micros();
        ("-9223372036854775808", micros.to_string())
    };
    execute(
        &t,
        &format!(
            "UPDATE events SET recorded_at = {unreadable} WHERE {} AND version = 1",
            of_stream(stream)
        ),
    )
    .await;
    execute(
        &t,
        &format!(
            "UPDATE events SET recorded_at = {old} WHERE {} AND version = 2",
            of_stream(stream)
        ),
    )
    .await;
    t.store
        .set_retention(
            RetentionScope::stream(stream),
            RetentionPolicy::new()
                .max_age(Duration::from_secs(3600))
                .ignore_snapshots(),
        )
        .await
        .expect("policy");

    let report = t.store.enforce_retention().await.expect("enforce");
    assert_eq!(report.events_removed, 1, "only the event two days old goes");
    let left = scalar(
        &t,
        &format!(
            "SELECT count(*) FROM events WHERE {} AND version = 1",
            of_stream(stream)
        ),
    )
    .await;
    assert_eq!(left, 1, "the event whose age does not read is kept");
    // Reads do not hide it as expired either: they report it.
    expect_corrupt(read(&t.store, stream).await, "recorded_at", &[stream]);
}

/// `query`, like `read_stream`, reports an event whose payload does not decode and goes on
/// with the others.
async fn query_reports_a_bad_event_and_goes_on(kind: Kind) {
    let Some(t) = kind.open("query_reports_a_bad_event_and_goes_on").await else {
        return;
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(append_one(&t.store, "q-1").await);
    }
    let payload = if is_postgres(&t) {
        "'\\xc70101ffff'::bytea"
    } else {
        "X'c70101ffff'"
    };
    let sql = format!(
        "UPDATE events SET payload = {payload} WHERE {} AND version = 2",
        of_stream("q-1")
    );
    execute(&t, &sql).await;
    let results: Vec<chronicle::Result<RecordedEvent>> = t
        .store
        .query(&chronicle::EventQuery::new().stream("q-1"))
        .collect()
        .await;
    assert_eq!(results.len(), 3, "{results:?}");
    assert_eq!(results[0].as_ref().expect("first").id, ids[0]);
    assert!(
        matches!(&results[1], Err(Error::Codec { event_id, .. }) if *event_id == ids[1]),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2].as_ref().expect("third").id, ids[2]);
}

/// Events name their stream by its key. One whose key names no row of `streams` is a
/// corrupt row naming the event and the column, through the log window, the lookup by id
/// and a query: never an event that is silently missing.
async fn an_event_whose_stream_row_is_missing_reads_as_corrupt(kind: Kind) {
    let Some(t) = kind
        .open("an_event_whose_stream_row_is_missing_reads_as_corrupt")
        .await
    else {
        return;
    };
    let id = append_one(&t.store, "orphan-1").await;
    let orphan = format!(
        "UPDATE events SET stream_key = -1 WHERE {}",
        of_stream("orphan-1")
    );
    execute(&t, &orphan).await;

    let id_text = id.to_string();
    expect_corrupt(t.store.event_by_id(id).await, "stream_key", &[&id_text]);
    let log: chronicle::Result<Vec<RecordedEvent>> = t
        .store
        .read_all(chronicle::LogPosition::START)
        .try_collect()
        .await;
    expect_corrupt(log, "stream_key", &[&id_text]);
    let query: chronicle::Result<Vec<RecordedEvent>> = t
        .store
        .query(&chronicle::EventQuery::new())
        .try_collect()
        .await;
    expect_corrupt(query, "stream_key", &[&id_text]);
}
