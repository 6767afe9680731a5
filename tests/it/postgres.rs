//! PostgreSQL-only behaviour: out-of-order commits in the global log, concurrent openers,
//! schemas, lost connections and timeouts, on the real server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle::{
    Error, ErrorKind, ExpectedVersion, LogPosition, NewEvent, Projection, ProjectionContext,
    ProjectionError, RecordedEvent, Store, ValidationError,
};
use futures::TryStreamExt;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::support::{
    Kind, Location, SchemaGuard, TestStore, fresh_schema, pg_raw, pg_url, postgres_available,
};

async fn open(test: &str) -> Option<TestStore> {
    Kind::Postgres
        .open_with(test, |b| b.log_settle_timeout(Duration::from_millis(300)))
        .await
}

fn schema_of(t: &TestStore) -> String {
    match &t.location {
        Location::Postgres { schema, .. } => schema.clone(),
        _ => unreachable!("a PostgreSQL store"),
    }
}

/// Adds the type `slow` (schema version 1) to the store's event-type dictionary, for an
/// event inserted by hand.
async fn add_slow_type(conn: &mut sqlx::PgConnection) {
    sqlx::query("INSERT INTO event_types (event_type, schema_version) VALUES ('slow', 1)")
        .execute(conn)
        .await
        .expect("add the type");
}

#[tokio::test]
async fn a_late_commit_with_a_lower_position_is_not_skipped() {
    let Some(t) = open("a_late_commit_with_a_lower_position_is_not_skipped").await else {
        return;
    };
    // Transaction A appends (taking the lower position) and stays open.
    let mut conn = pg_raw(&t).await;
    add_slow_type(&mut conn).await;
    let mut slow = conn.begin().await.expect("begin");
    let slow_id = Uuid::now_v7();
    let slow_position: i64 = sqlx::query_scalar(
        "WITH s AS (INSERT INTO streams (stream_id, category, version, event_count) \
                    VALUES ('ooo-a', 'ooo', 1, 1) RETURNING stream_key) \
         INSERT INTO events (event_id, stream_key, version, type_id, payload) \
         SELECT $1, s.stream_key, 1, type_id, convert_to('{\"slow\":true}', 'UTF8') \
         FROM event_types, s WHERE event_type = 'slow' \
         RETURNING position",
    )
    .bind(slow_id)
    .fetch_one(&mut *slow)
    .await
    .expect("insert in an open transaction");

    // Transaction B appends and commits first, with a higher position.
    let fast = t
        .store
        .append(
            "ooo-b",
            ExpectedVersion::Any,
            vec![NewEvent::new("fast", json!({}))],
        )
        .await
        .expect("append");
    assert!(fast.events[0].position > slow_position as u64);

    // A reader now must not deliver B: a cursor past B would skip A forever.
    let early: Vec<_> = t
        .store
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .expect("read");
    assert!(
        early.is_empty(),
        "nothing may be delivered while an older transaction is open: {early:?}"
    );

    slow.commit().await.expect("commit A");
    let cursor = early
        .last()
        .map_or(LogPosition::START, |e| e.log_position());
    // Other tests' transactions on the server also hold readers back (one of them keeps a
    // row locked for seconds): this read waits for them, as a reader with the default
    // settle timeout would.
    let patient = t
        .reopen(|b| b.log_settle_timeout(Duration::from_secs(30)))
        .await
        .expect("a second store");
    let late: Vec<_> = patient.read_all(cursor).try_collect().await.expect("read");
    let ids: Vec<Uuid> = late.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        [slow_id, fast.events[0].event_id],
        "A, then B, each once"
    );
    assert_eq!(late[0].json().expect("json"), json!({ "slow": true }));
}

/// `log_end` never lies past an event whose transaction is still running: a follower that
/// starts there gets the late commit, then the event that committed before it.
#[tokio::test]
async fn log_end_leaves_a_late_commit_ahead() {
    let Some(t) = open("log_end_leaves_a_late_commit_ahead").await else {
        return;
    };
    let mut conn = pg_raw(&t).await;
    add_slow_type(&mut conn).await;
    let mut slow = conn.begin().await.expect("begin");
    let slow_id = Uuid::now_v7();
    sqlx::query(
        "WITH s AS (INSERT INTO streams (stream_id, category, version, event_count) \
                    VALUES ('end-a', 'end', 1, 1) RETURNING stream_key) \
         INSERT INTO events (event_id, stream_key, version, type_id, payload) \
         SELECT $1, s.stream_key, 1, type_id, convert_to('{}', 'UTF8') \
         FROM event_types, s WHERE event_type = 'slow'",
    )
    .bind(slow_id)
    .execute(&mut *slow)
    .await
    .expect("insert in an open transaction");
    let fast = t
        .store
        .append(
            "end-b",
            ExpectedVersion::Any,
            vec![NewEvent::new("fast", json!({}))],
        )
        .await
        .expect("append");
    let end = t.store.log_end().await.expect("end");
    assert_eq!(
        end,
        LogPosition::START,
        "nothing is behind the open transaction yet"
    );
    slow.commit().await.expect("commit");
    let patient = t
        .reopen(|b| b.log_settle_timeout(Duration::from_secs(30)))
        .await
        .expect("a second store");
    let followed: Vec<Uuid> = patient
        .read_all(end)
        .map_ok(|event| event.id)
        .try_collect()
        .await
        .expect("read");
    assert_eq!(followed, [slow_id, fast.events[0].event_id]);
    assert_eq!(
        patient.log_end().await.expect("end").position(),
        fast.events[0].position
    );
}

#[tokio::test]
async fn concurrent_openers_migrate_once() {
    if !postgres_available("concurrent_openers_migrate_once").await {
        return;
    }
    let guard = SchemaGuard(fresh_schema());
    let schema = guard.0.clone();
    let open = || {
        Store::builder(pg_url())
            .schema(schema.clone())
            .pool_size(2)
            .open()
    };
    let (a, b, c, d) = tokio::join!(open(), open(), open(), open());
    for store in [a, b, c, d] {
        store
            .expect("every opener succeeds")
            .append(
                "m-1",
                ExpectedVersion::Any,
                vec![NewEvent::new("x", json!({}))],
            )
            .await
            .expect("append");
    }
    let mut conn = PgConnection::connect(&pg_url()).await.expect("connect");
    let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema}\".chronicle_migrations"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(applied, crate::support::migration_count("postgres"));
}

#[tokio::test]
async fn schemas_keep_stores_apart() {
    let (Some(a), Some(b)) = (
        open("schemas_keep_stores_apart").await,
        open("schemas_keep_stores_apart").await,
    ) else {
        return;
    };
    let event = || vec![NewEvent::new("x", json!({}))];
    a.store
        .append("shared-1", ExpectedVersion::NoStream, event())
        .await
        .expect("a");
    b.store
        .append("shared-1", ExpectedVersion::NoStream, event())
        .await
        .expect("b");
    b.store
        .append("shared-1", ExpectedVersion::Exact(1), event())
        .await
        .expect("b");
    let a_info = a
        .store
        .stream_info("shared-1")
        .await
        .expect("info")
        .expect("some");
    let b_info = b
        .store
        .stream_info("shared-1")
        .await
        .expect("info")
        .expect("some");
    assert_eq!((a_info.version, b_info.version), (1, 2));
}

#[tokio::test]
async fn plain_payloads_are_json_in_psql() {
    let Some(t) = open("plain_payloads_are_json_in_psql").await else {
        return;
    };
    t.store
        .append(
            "p-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("x", json!({ "name": "Ada" }))],
        )
        .await
        .expect("append");
    // jsonb cannot hold \u0000: that row shows NULL instead of breaking the view.
    let nul = NewEvent::new("x", json!({ "nul": "a\u{0}b" }));
    t.store
        .append("p-2", ExpectedVersion::Any, vec![nul])
        .await
        .expect("append");
    let mut conn = pg_raw(&t).await;
    let payload: serde_json::Value =
        sqlx::query_scalar("SELECT payload FROM events_json WHERE stream_id = 'p-1'")
            .fetch_one(&mut conn)
            .await
            .expect("select");
    assert_eq!(payload, json!({ "name": "Ada" }));
    let nul: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT payload FROM events_json WHERE stream_id = 'p-2'")
            .fetch_one(&mut conn)
            .await
            .expect("select");
    assert_eq!(nul, None);
}

#[tokio::test]
async fn a_killed_connection_is_replaced() {
    let Some(t) = Kind::Postgres
        .open_with("a_killed_connection_is_replaced", |b| {
            b.pool_size(1).retries(3, Duration::from_millis(20))
        })
        .await
    else {
        return;
    };
    let event = || vec![NewEvent::new("x", json!({}))];
    t.store
        .append("k-1", ExpectedVersion::Any, event())
        .await
        .expect("append");
    let mut admin = PgConnection::connect(&pg_url()).await.expect("connect");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(format!("chronicle:{}", schema_of(&t)))
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert!(
        !killed.is_empty(),
        "the store's connection was found and killed"
    );
    t.store
        .append("k-1", ExpectedVersion::Exact(1), event())
        .await
        .expect("the store reconnects");
    assert_eq!(
        t.store
            .stream_info("k-1")
            .await
            .expect("info")
            .expect("some")
            .version,
        2
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_connection_error() {
    let error = Store::builder("postgres://postgres@127.0.0.1:1/test")
        .retries(2, Duration::from_millis(10))
        .operation_timeout(Duration::from_secs(2))
        .open()
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_blocked_append_times_out() {
    let Some(t) = Kind::Postgres
        .open_with("a_blocked_append_times_out", |b| {
            b.operation_timeout(Duration::from_secs(1))
        })
        .await
    else {
        return;
    };
    t.store
        .append(
            "lock-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("x", json!({}))],
        )
        .await
        .expect("append");
    let mut conn = pg_raw(&t).await;
    let mut blocker = conn.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM streams WHERE stream_id = 'lock-1' FOR UPDATE")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let error = t
        .store
        .append(
            "lock-1",
            ExpectedVersion::Exact(1),
            vec![NewEvent::new("x", json!({}))],
        )
        .await
        .expect_err("blocked");
    assert!(
        matches!(
            error,
            Error::Timeout {
                operation: "append",
                ..
            }
        ),
        "{error}"
    );
    // The server's statement_timeout stops the blocked statement as well.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    blocker.rollback().await.expect("rollback");
    // Nothing was written by the timed-out attempt.
    t.store
        .append(
            "lock-1",
            ExpectedVersion::Exact(1),
            vec![NewEvent::new("x", json!({}))],
        )
        .await
        .expect("append after the lock is gone");
}

/// Records the log positions it is given, in order.
#[derive(Clone)]
struct Positions {
    name: &'static str,
    types: &'static [&'static str],
    seen: Arc<Mutex<Vec<LogPosition>>>,
}

impl Positions {
    fn new(name: &'static str, types: &'static [&'static str]) -> Self {
        Positions {
            name,
            types,
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<LogPosition> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Projection for Positions {
    fn name(&self) -> &str {
        self.name
    }

    fn event_types(&self) -> &[&str] {
        self.types
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        _ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let mut seen = self.seen.lock().map_err(|_| "poisoned")?;
        seen.push(event.log_position());
        Ok(())
    }
}

#[tokio::test]
async fn long_windows_cover_the_log_once_in_order() {
    let Some(t) = open("long_windows_cover_the_log").await else {
        return;
    };
    // 9,000 events, read by projections in windows of 10,000 (the default batch) and of
    // 4,000 (the last one short): windows over 1,000 events are read in a transaction of
    // their own with the planner held to the commit-order index, filtered or not.
    for stream in 0..9 {
        let events = (0..1000)
            .map(|i| NewEvent::new(if i % 3 == 0 { "b" } else { "a" }, json!({ "i": i })))
            .collect();
        t.store
            .append(&format!("s-{stream}"), ExpectedVersion::NoStream, events)
            .await
            .expect("append");
    }
    let all: Vec<RecordedEvent> = t
        .store
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .expect("read");
    assert_eq!(all.len(), 9000);
    let every: Vec<LogPosition> = all.iter().map(RecordedEvent::log_position).collect();
    let of_b: Vec<LogPosition> = all
        .iter()
        .filter(|event| event.event_type == "b")
        .map(RecordedEvent::log_position)
        .collect();

    let runs = [
        (Positions::new("all-default", &[]), 10_000, &every),
        (Positions::new("all-4000", &[]), 4_000, &every),
        (Positions::new("b-default", &["b"]), 10_000, &of_b),
        (Positions::new("b-4000", &["b"]), 4_000, &of_b),
    ];
    for (projection, batch, expected) in runs {
        let handle = t
            .store
            .projections()
            .batch_size(batch)
            .poll_interval(Duration::from_millis(20))
            .spawn(projection.clone());
        handle.wait_for_idle().await.expect("caught up");
        let status = handle.stop().await.expect("stops");
        assert_eq!(
            &projection.seen(),
            expected,
            "{}: every event once, in the log's order",
            projection.name
        );
        assert_eq!(
            status.position,
            every[every.len() - 1],
            "{}",
            projection.name
        );
    }
}

/// A log restored into a younger cluster (its events' transaction ids not handed out by
/// this server yet) is refused at open, with what to do, rather than read out of order.
#[tokio::test]
async fn a_log_ahead_of_the_servers_transaction_ids_is_refused_at_open() {
    let Some(t) = open("a_log_ahead_of_the_servers_transaction_ids").await else {
        return;
    };
    t.store
        .append(
            "acct-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("x", json!({}))],
        )
        .await
        .expect("append");
    let schema = schema_of(&t);
    crate::support::execute(
        &t,
        &format!(
            "UPDATE \"{schema}\".events SET transaction_id = \
             (pg_snapshot_xmax(pg_current_snapshot())::text::bigint + 1000000)::text::xid8"
        ),
    )
    .await;
    let error = Store::builder(pg_url())
        .schema(schema.clone())
        .open()
        .await
        .expect_err("refused");
    let Error::Connect { kind, detail, .. } = &error else {
        panic!("expected Error::Connect, got {error:?}");
    };
    assert_eq!(*kind, chronicle::ConnectErrorKind::Config);
    assert!(detail.contains("restored into another cluster"), "{detail}");
}

/// The stream key of `stream`, read from its row.
async fn stream_key_of(conn: &mut PgConnection, stream: &str) -> i32 {
    sqlx::query_scalar("SELECT stream_key FROM streams WHERE stream_id = $1")
        .bind(stream)
        .fetch_one(conn)
        .await
        .expect("the stream's key")
}

/// Keys are 4-byte integers (migration 0014), so they must count streams: an append to a
/// stream that exists draws none, whatever its expected version.
#[tokio::test]
async fn appends_to_existing_streams_draw_no_stream_key() {
    let Some(t) = open("appends_to_existing_streams_draw_no_stream_key").await else {
        return;
    };
    let event = || vec![NewEvent::new("e", json!({}))];
    t.store
        .append("keys-a", ExpectedVersion::NoStream, event())
        .await
        .expect("create");
    for expected in [
        ExpectedVersion::Any,
        ExpectedVersion::Any,
        ExpectedVersion::Exact(3),
    ] {
        t.store
            .append("keys-a", expected, event())
            .await
            .expect("append");
    }
    // Refused appends to an existing stream draw none either, whichever statement
    // refuses them (an update for a stream that must exist, an upsert otherwise).
    for expected in [ExpectedVersion::Exact(1), ExpectedVersion::NoStream] {
        let refused = t.store.append("keys-a", expected, event()).await;
        assert!(refused.is_err(), "{expected:?}: {refused:?}");
    }
    t.store
        .append("keys-b", ExpectedVersion::Any, event())
        .await
        .expect("create another");
    let mut conn = pg_raw(&t).await;
    let first = stream_key_of(&mut conn, "keys-a").await;
    assert_eq!(stream_key_of(&mut conn, "keys-b").await, first + 1);
}

/// A version past a 4-byte integer is a typed error naming the stream, and the stream
/// is left as it was.
#[tokio::test]
async fn an_append_past_the_version_limit_is_a_typed_error() {
    let Some(t) = open("an_append_past_the_version_limit_is_a_typed_error").await else {
        return;
    };
    t.store
        .append(
            "full",
            ExpectedVersion::Any,
            vec![NewEvent::new("e", json!({}))],
        )
        .await
        .expect("create");
    let near: i64 = i64::from(i32::MAX) - 1;
    let mut conn = pg_raw(&t).await;
    sqlx::query("UPDATE streams SET version = $1 WHERE stream_id = 'full'")
        .bind(near)
        .execute(&mut conn)
        .await
        .expect("move the stream to the limit");
    let two = vec![NewEvent::new("e", json!({})), NewEvent::new("e", json!({}))];
    let error = t
        .store
        .append("full", ExpectedVersion::Any, two)
        .await
        .expect_err("past the limit");
    assert!(
        matches!(
            &error,
            Error::Validation(ValidationError::StorageLimit { stream, what: "events in a stream", limit })
                if stream == "full" && *limit == i32::MAX as u64
        ),
        "{error:?}"
    );
    let version: i64 = sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = 'full'")
        .fetch_one(&mut conn)
        .await
        .expect("version");
    assert_eq!(version, near);
    // The last version that fits is still written.
    let last = t
        .store
        .append(
            "full",
            ExpectedVersion::Any,
            vec![NewEvent::new("e", json!({}))],
        )
        .await
        .expect("the last version");
    assert_eq!(last.events[0].version, i32::MAX as u64);
}

/// A store whose stream keys are used up refuses new streams by a typed error, and goes
/// on appending to the streams it has.
#[tokio::test]
async fn a_store_out_of_stream_keys_refuses_new_streams() {
    let Some(t) = open("a_store_out_of_stream_keys_refuses_new_streams").await else {
        return;
    };
    let event = || vec![NewEvent::new("e", json!({}))];
    t.store
        .append("old", ExpectedVersion::Any, event())
        .await
        .expect("create");
    let mut conn = pg_raw(&t).await;
    sqlx::query("SELECT setval(pg_get_serial_sequence('streams', 'stream_key'), 2147483647)")
        .execute(&mut conn)
        .await
        .expect("use the keys up");
    let error = t
        .store
        .append("new", ExpectedVersion::Any, event())
        .await
        .expect_err("no key left");
    assert!(
        matches!(
            &error,
            Error::Validation(ValidationError::StorageLimit { stream, what: "streams", .. })
                if stream == "new"
        ),
        "{error:?}"
    );
    assert!(!t.store.stream_exists("new").await.expect("exists?"));
    t.store
        .append("old", ExpectedVersion::Exact(1), event())
        .await
        .expect("an existing stream takes appends");
}

/// A long window reads its stream ids after its rows, by key: an event whose stream row
/// is missing stops the projection with a corrupt-row error naming `stream_key` and the
/// event, as the short windows' and the readers' joins do.
#[tokio::test]
async fn a_long_window_names_an_event_whose_stream_row_is_missing() {
    let Some(t) = open("a_long_window_names_an_event_whose_stream_row_is_missing").await else {
        return;
    };
    // More events than a short window holds (1,000); the runner's windows are long.
    for _ in 0..2 {
        let events = (0..750)
            .map(|i| NewEvent::new("a", json!({ "i": i })))
            .collect();
        t.store
            .append("whole", ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
    let orphan = t
        .store
        .append(
            "orphan",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("a", json!({}))],
        )
        .await
        .expect("append the orphan");
    let mut conn = pg_raw(&t).await;
    sqlx::query(
        "UPDATE events SET stream_key = -1 \
         WHERE stream_key = (SELECT stream_key FROM streams WHERE stream_id = 'orphan')",
    )
    .execute(&mut conn)
    .await
    .expect("orphan the event");

    let projection = Positions::new("long", &[]);
    let handle = t
        .store
        .projections()
        .poll_interval(Duration::from_millis(20))
        .spawn(projection.clone());
    let error = handle.wait_for_idle().await.expect_err("a corrupt row");
    let text = error.to_string();
    let event_id = orphan.events[0].event_id.to_string();
    assert!(text.contains("`stream_key`"), "{text}");
    assert!(text.contains(&event_id), "{text}");
    assert!(projection.seen().len() < 1501, "the orphan is not applied");
}
