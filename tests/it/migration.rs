//! Upgrades in place (issue 23, section 5). `fixtures/pg_0010.sql` is a PostgreSQL schema
//! as chronicle left it at migration 0010 and `fixtures/sqlite_0009.sql` a SQLite database
//! at its migration 0009, each filled through chronicle's own API in the same way (events with
//! metadata, compressed and encrypted payloads, a trained dictionary, per-stream keys, a
//! snapshot, a soft-deleted and a tombstoned stream, a retention policy, the outbox's
//! checkpoint and its done and dead requests); `*.expected.json` is what every read
//! returned then. Today's chronicle opens each, applies the migrations since, and must
//! read back exactly that, then go on appending.
//!
//! The fixtures were written by `write_the_fixture` and `write_the_sqlite_fixture`
//! (ignored) at the last commit before PostgreSQL's migration 0011 and SQLite's 0010;
//! run at a later commit they record that commit's schema instead.

use chronicle::{
    Compression, DeleteMode, EventMetadata, ExpectedVersion, Handler, HandlerError, HandlerMap,
    KeyRing, LogPosition, NewEvent, NewSnapshot, NewStream, RetentionPolicy, RetentionScope,
    StartFrom, Store, StoreBuilder, StreamListQuery,
};
use futures::TryStreamExt;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::{SchemaGuard, fresh_schema, pg_url, postgres_available};

const FIXTURE_SCHEMA: &str = "fixture_0010";
const FIXTURE: &str = include_str!("fixtures/pg_0010.sql");
const EXPECTED: &str = include_str!("fixtures/pg_0010.expected.json");
const SQLITE_FIXTURE: &str = include_str!("fixtures/sqlite_0009.sql");
const SQLITE_EXPECTED: &str = include_str!("fixtures/sqlite_0009.expected.json");
const KEY: [u8; 32] = [5; 32];

/// The fixture's store settings: compression and encryption, per-stream keys as asked
/// (a store with them trains no dictionary, so the fixture was written in two phases).
fn settings(builder: StoreBuilder, per_stream_keys: bool) -> StoreBuilder {
    builder
        .compression(Compression::zstd().min_size(16))
        .encryption(KeyRing::new("k1", KEY).expect("ring"))
        .per_stream_keys(per_stream_keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_migration_0010_upgrades_in_place() {
    if !postgres_available("a_store_of_migration_0010_upgrades_in_place").await {
        return;
    }
    let schema = fresh_schema();
    let _guard = SchemaGuard(schema.clone());
    let mut conn = sqlx::PgConnection::connect(&pg_url())
        .await
        .expect("connect");
    // psql's meta-commands (`\restrict`) are not SQL.
    let dump: String = FIXTURE
        .lines()
        .filter(|line| !line.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(FIXTURE_SCHEMA, &schema);
    sqlx::raw_sql(sqlx::AssertSqlSafe(dump))
        .execute(&mut conn)
        .await
        .expect("load the fixture");
    let recorded: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT max(version) FROM \"{schema}\".chronicle_migrations"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("migrations");
    assert_eq!(recorded, Some(10), "the fixture stops at migration 0010");
    let handed_out: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT pg_sequence_last_value(pg_get_serial_sequence('\"{schema}\".events', 'position'))"
    )))
    .fetch_one(&mut conn)
    .await
    .expect("the position counter");
    advance_transaction_ids_past(&mut conn, &schema).await;

    let store = settings(Store::builder(pg_url()).schema(schema.clone()), true)
        .open()
        .await
        .expect("opens, applying the migrations since 0010");
    reads_the_same_and_goes_on(&store, EXPECTED, handed_out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_of_migration_0009_upgrades_in_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("fixture.db").display());
    let options: sqlx::sqlite::SqliteConnectOptions = url
        .parse::<sqlx::sqlite::SqliteConnectOptions>()
        .expect("url")
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("create");
    sqlx::raw_sql(sqlx::AssertSqlSafe(SQLITE_FIXTURE))
        .execute(&mut conn)
        .await
        .expect("load the fixture");
    let recorded: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM chronicle_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("migrations");
    assert_eq!(recorded, Some(9), "the fixture stops at migration 0009");
    let handed_out: i64 =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
            .fetch_one(&mut conn)
            .await
            .expect("the position counter");
    conn.close().await.expect("close");

    let store = settings(Store::builder(url), true)
        .open()
        .await
        .expect("opens, applying the migrations since 0009");
    reads_the_same_and_goes_on(&store, SQLITE_EXPECTED, handed_out).await;
}

/// `store`, upgraded, reads back `expected` (a fixture's reads, as JSON), then takes an
/// append after every position the fixture handed out (`handed_out`: its counter, past
/// the events a hard delete removed) and reads it back.
async fn reads_the_same_and_goes_on(store: &Store, expected: &str, handed_out: i64) {
    let expected: Value = serde_json::from_str(expected).expect("expected reads");
    assert_eq!(reads(store).await, expected);

    // It goes on: the next append lands after every position handed out, and reads back.
    let last = expected["events"]
        .as_array()
        .and_then(|events| events.last())
        .and_then(|event| event["position"].as_u64())
        .expect("a last position");
    assert!(
        handed_out as u64 > last,
        "the fixture's hard delete freed the last positions"
    );
    let written = store
        .append(
            "account-1",
            ExpectedVersion::Exact(10),
            vec![NewEvent::new("Deposited", json!({ "amount": 7 }))],
        )
        .await
        .expect("append after the upgrade");
    assert_eq!(written.events[0].position, handed_out as u64 + 1);
    let events: Vec<_> = store
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .expect("read all");
    assert_eq!(
        events.len(),
        expected["events"].as_array().map_or(0, Vec::len) + 1
    );
    assert_eq!(
        events.last().map(|event| event.json().expect("json")),
        Some(json!({ "amount": 7 }))
    );
}

/// The fixture's events carry the transaction ids of the server that wrote them. On a
/// server whose transaction counter is still below them (a fresh cluster), they would
/// look like transactions not yet finished, and later appends would sort before them:
/// the counter is first moved past them, one subtransaction (one id) at a time.
async fn advance_transaction_ids_past(conn: &mut sqlx::PgConnection, schema: &str) {
    let (highest, next): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT max(transaction_id::text::bigint) FROM \"{schema}\".events), \
                pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
    )))
    .fetch_one(&mut *conn)
    .await
    .expect("transaction ids");
    let missing = highest + 1 - next;
    if missing <= 0 {
        return;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TEMP TABLE chronicle_spent_ids (n int); \
         DO $$ BEGIN FOR i IN 1..{missing} LOOP \
             BEGIN INSERT INTO chronicle_spent_ids VALUES (i); \
             EXCEPTION WHEN OTHERS THEN RAISE; END; \
         END LOOP; END $$; \
         DROP TABLE chronicle_spent_ids"
    )))
    .execute(&mut *conn)
    .await
    .expect("spend transaction ids");
}

/// Everything the fixture holds, as the public API reads it.
async fn reads(store: &Store) -> Value {
    let events: Vec<_> = store
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .expect("read all");
    let events: Vec<Value> = events
        .iter()
        .map(|event| {
            json!({
                "id": event.id,
                "stream": event.stream_id.as_str(),
                "version": event.version,
                "position": event.position,
                "type": event.event_type,
                "schema_version": event.schema_version,
                "metadata": event.metadata,
                "payload": event.json().expect("decodes"),
            })
        })
        .collect();
    let streams: Vec<Value> = store
        .list_streams(&StreamListQuery::new().include_deleted(true))
        .await
        .expect("streams")
        .iter()
        .map(|info| {
            json!({
                "id": info.stream_id.as_str(),
                "aggregate_type": info.aggregate_type,
                "display_name": info.display_name,
                "version": info.version,
                "event_count": info.event_count,
                "status": format!("{:?}", info.status),
                "metadata": info.metadata,
                "last_event_id": info.last_event_id,
            })
        })
        .collect();
    let snapshot = store
        .latest_snapshot("account-1", u64::MAX)
        .await
        .expect("snapshot")
        .map(|snapshot| {
            json!({
                "version": snapshot.version,
                "schema_version": snapshot.schema_version,
                "state": snapshot.data::<Value>().expect("state"),
            })
        });
    let retention = store
        .retention(&RetentionScope::category("order"))
        .await
        .expect("retention");
    let admin = store.outbox_admin();
    let stats = admin.stats().await.expect("outbox stats");
    let dead: Vec<Value> = admin
        .dead_requests(None, 100)
        .await
        .expect("dead requests")
        .iter()
        .map(|dead| {
            json!({
                "handler": dead.handler,
                "event_id": dead.event_id,
                "stream": dead.stream_id,
                "errors": dead.errors,
                "last_error": dead.last_error,
            })
        })
        .collect();
    json!({
        "events": events,
        "streams": streams,
        "snapshot": snapshot,
        "retention": retention,
        "outbox_checkpoint": store.checkpoint("chronicle.outbox").await.expect("checkpoint").map(|at| at.to_string()),
        "outbox": serde_json::to_value(&stats.handlers).expect("stats"),
        "dead": dead,
    })
}

/// Writes `fixtures/pg_0010.sql` and its expected reads into `CHRONICLE_FIXTURE_OUT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the fixture: run by hand, at the release whose schema it records"]
async fn write_the_fixture() {
    let out = std::env::var("CHRONICLE_FIXTURE_OUT").expect("CHRONICLE_FIXTURE_OUT");
    let mut conn = sqlx::PgConnection::connect(&pg_url())
        .await
        .expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {FIXTURE_SCHEMA} CASCADE"
    )))
    .execute(&mut conn)
    .await
    .expect("drop");
    let expected = fill(|per_stream_keys| {
        settings(
            Store::builder(pg_url()).schema(FIXTURE_SCHEMA),
            per_stream_keys,
        )
        .open()
    })
    .await;
    std::fs::write(
        format!("{out}/pg_0010.expected.json"),
        serde_json::to_string_pretty(&expected).expect("json") + "\n",
    )
    .expect("write the expected reads");
    let dump = std::process::Command::new("pg_dump")
        .args([
            "--schema",
            FIXTURE_SCHEMA,
            "--inserts",
            "--no-owner",
            "--no-privileges",
            "--no-comments",
            &pg_url(),
        ])
        .output()
        .expect("pg_dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    std::fs::write(format!("{out}/pg_0010.sql"), dump.stdout).expect("write the fixture");
}

/// Writes `fixtures/sqlite_0009.sql` (the database as SQL text, by Python's
/// `sqlite3.Connection.iterdump`) and its expected reads into `CHRONICLE_FIXTURE_OUT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the fixture: run by hand, at the release whose schema it records"]
async fn write_the_sqlite_fixture() {
    let out = std::env::var("CHRONICLE_FIXTURE_OUT").expect("CHRONICLE_FIXTURE_OUT");
    let file = format!("{out}/sqlite_0009.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{file}{suffix}"));
    }
    let url = format!("sqlite://{file}");
    let expected =
        fill(|per_stream_keys| settings(Store::builder(url.clone()), per_stream_keys).open()).await;
    std::fs::write(
        format!("{out}/sqlite_0009.expected.json"),
        serde_json::to_string_pretty(&expected).expect("json") + "\n",
    )
    .expect("write the expected reads");
    let dump = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\n\
             for line in sqlite3.connect(sys.argv[1]).iterdump(): print(line)",
            &file,
        ])
        .output()
        .expect("python3");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    std::fs::write(format!("{out}/sqlite_0009.sql"), dump.stdout).expect("write the fixture");
}

/// Fills a store opened by `open` (asked for per-stream keys or not) with everything a
/// fixture holds, and returns its reads.
async fn fill<F>(open: impl Fn(bool) -> F) -> Value
where
    F: std::future::Future<Output = chronicle::Result<Store>>,
{
    // Phase 1: store-wide keys; a dictionary trained on the first events.
    let store = open(false).await.expect("open");
    store
        .create_stream(
            "account-1",
            NewStream::new()
                .aggregate_type("Account")
                .display_name("Ada's account")
                .metadata(json!({ "branch": "north" })),
        )
        .await
        .expect("create");
    for n in 0..40_u64 {
        let stream = format!("account-{}", n % 4 + 1);
        let event = NewEvent::new(
            if n % 5 == 0 { "Withdrawn" } else { "Deposited" },
            json!({ "amount": 100 + n * 7, "currency": "EUR", "reference": format!("ref-{n:04}") }),
        )
        .metadata(EventMetadata {
            correlation_id: Some(format!("corr-{}", n % 3)),
            tenant_id: Some("tenant-a".to_owned()),
            user_id: (n % 2 == 0).then(|| "user-7".to_owned()),
            ..EventMetadata::default()
        });
        store
            .append(stream, ExpectedVersion::Any, vec![event])
            .await
            .expect("append");
    }
    store.train_compression_dictionary().await.expect("train");
    for n in 40..50_u64 {
        store
            .append(
                format!("order-{}", n % 2 + 1),
                ExpectedVersion::Any,
                vec![
                    NewEvent::new("Placed", json!({ "order": n, "lines": [n, n + 1] }))
                        .schema_version(2),
                ],
            )
            .await
            .expect("append");
    }
    store
        .save_snapshot(
            "account-1",
            NewSnapshot::from_serialize(10, 1, &json!({ "balance": 1234 })).expect("snapshot"),
        )
        .await
        .expect("save snapshot");
    store
        .set_retention(
            RetentionScope::category("order"),
            RetentionPolicy::new().max_count(100),
        )
        .await
        .expect("retention");
    store
        .delete_stream("order-2", DeleteMode::Soft)
        .await
        .expect("soft delete");
    store.close().await;

    // Phase 2: per-stream keys; one stream forgotten by a hard delete.
    let store = open(true).await.expect("reopen");
    for n in 0..6_u64 {
        store
            .append(
                format!("user-{}", n % 3 + 1),
                ExpectedVersion::Any,
                vec![NewEvent::new(
                    "Registered",
                    json!({ "email": format!("u{n}@example.com") }),
                )],
            )
            .await
            .expect("append");
    }
    store
        .delete_stream("user-3", DeleteMode::Hard)
        .await
        .expect("hard delete");
    let handlers = HandlerMap::new()
        .route(Handler::new("mailer", "Registered", |_| async { Ok(()) }))
        .route(Handler::new("auditor", "Withdrawn", |_| async {
            Err(HandlerError::fatal(std::io::Error::other(
                "audit service refused",
            )))
        }));
    let outbox = store
        .outbox(handlers)
        .expect("outbox")
        .start_from(StartFrom::Beginning);
    outbox.process().await.expect("process");
    while outbox.execute().await.expect("execute").claimed > 0 {}

    let expected = reads(&store).await;
    store.close().await;
    expected
}
