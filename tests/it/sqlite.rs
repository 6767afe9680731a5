//! SQLite-only behaviour: files, WAL, durability settings and several openers of one file.

use chronicle::{Direction, ExpectedVersion, NewEvent, SqliteDurability, Store};
use futures::TryStreamExt;
use serde_json::json;
use sqlx::Connection;

#[tokio::test]
async fn a_missing_file_is_created_in_wal_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested-name.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await.expect("open");
    store
        .append(
            "f-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("x", json!({}))],
        )
        .await
        .expect("append");
    assert!(path.exists());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn concurrent_openers_of_one_file_migrate_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let open = || Store::builder(url.clone()).open();
    let (a, b, c, d) = tokio::join!(open(), open(), open(), open());
    let stores: Vec<Store> = [a, b, c, d]
        .into_iter()
        .map(|store| store.expect("every opener succeeds"))
        .collect();
    // All of them write to the same file, interleaved.
    for (n, store) in stores.iter().enumerate() {
        store
            .append(
                "shared-1",
                ExpectedVersion::Exact(n as u64),
                vec![NewEvent::new("x", json!({ "n": n }))],
            )
            .await
            .expect("append");
    }
    let info = stores[0]
        .stream_info("shared-1")
        .await
        .expect("info")
        .expect("some");
    assert_eq!(info.version, 4);
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM chronicle_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(applied, crate::support::migration_count("sqlite"));
}

#[tokio::test]
async fn normal_durability_and_reopening_keep_the_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("normal.db").display());
    {
        let store = Store::builder(url.clone())
            .sqlite_durability(SqliteDurability::Normal)
            .open()
            .await
            .expect("open");
        store
            .append(
                "d-1",
                ExpectedVersion::NoStream,
                vec![NewEvent::new("x", json!({}))],
            )
            .await
            .expect("append");
        store.close().await;
        let error = store
            .append(
                "d-1",
                ExpectedVersion::Any,
                vec![NewEvent::new("x", json!({}))],
            )
            .await
            .expect_err("closed");
        assert_eq!(error.kind(), chronicle::ErrorKind::Connection, "{error}");
    }
    let reopened = Store::open(&url).await.expect("reopen");
    assert_eq!(
        reopened
            .stream_info("d-1")
            .await
            .expect("info")
            .expect("some")
            .version,
        1
    );
}

#[tokio::test]
async fn batches_sqlite_cannot_bind_are_refused_at_open() {
    let error = Store::builder("sqlite::memory:")
        .max_events_per_append(5000)
        .open()
        .await
        .expect_err("too many parameters per statement");
    assert_eq!(error.kind(), chronicle::ErrorKind::Validation);
    assert!(
        error.to_string().contains("max_events_per_append"),
        "{error}"
    );
}

/// The largest batch SQLite binds in one statement appends whole, in version order.
#[tokio::test]
async fn the_largest_batch_sqlite_binds_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("big.db").display());
    let largest = 2978;
    let store = Store::builder(&url)
        .max_events_per_append(largest)
        .open()
        .await
        .expect("open");
    let events = (0..largest)
        .map(|i| NewEvent::new("x", json!({ "i": i })))
        .collect();
    let written = store
        .append("big", ExpectedVersion::NoStream, events)
        .await
        .expect("append");
    assert_eq!(written.events.len(), largest);
    let read: Vec<_> = store
        .read_stream("big", 1, Direction::Forward)
        .try_collect()
        .await
        .expect("read");
    let order: Vec<u64> = read.iter().map(|e| e.version).collect();
    assert_eq!(order, (1..=largest as u64).collect::<Vec<_>>());
    let last = read[largest - 1].json().expect("json");
    assert_eq!(last["i"], largest - 1);
    let too_many = Store::builder(&url)
        .max_events_per_append(largest + 1)
        .open()
        .await;
    assert!(too_many.is_err(), "one more does not bind");
}

#[tokio::test]
async fn in_memory_sqlite_works() {
    let store = Store::open("sqlite::memory:").await.expect("open");
    store
        .append(
            "m-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("x", json!({}))],
        )
        .await
        .expect("append");
    assert!(store.stream_exists("m-1").await.expect("exists"));
    // Its log is read through the pool: no other connection reaches it.
    let all: Vec<_> = store
        .read_all(chronicle::LogPosition::START)
        .try_collect()
        .await
        .expect("read_all");
    assert_eq!(all.len(), 1);
}

/// A file's log windows are read on connections of their own (`sqlite_reader`): each
/// window sees every commit before it, none keeps a read transaction open after it (a
/// window cut by the byte budget, its statement's other rows unread, included), and after
/// `close` a read fails as any read of a closed store does.
#[tokio::test]
async fn log_windows_see_each_commit_and_end_with_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("log.db").display());
    let store = Store::builder(url.clone())
        .page_size(3)
        .read_budget_bytes(1)
        .open()
        .await
        .expect("open");
    async fn read(store: &Store) -> chronicle::Result<Vec<String>> {
        store
            .read_all(chronicle::LogPosition::START)
            .map_ok(|event| event.event_type)
            .try_collect()
            .await
    }
    assert!(read(&store).await.expect("empty log").is_empty());
    for n in 0..5 {
        store
            .append(
                "w-1",
                ExpectedVersion::Any,
                vec![NewEvent::new(format!("e{n}"), json!({ "n": n }))],
            )
            .await
            .expect("append");
        let seen = read(&store).await.expect("read_all");
        let expected: Vec<String> = (0..=n).map(|n| format!("e{n}")).collect();
        assert_eq!(seen, expected, "every commit is seen by the next read");
    }
    // No window left a read transaction open: a checkpoint can take the whole WAL back.
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut conn)
        .await
        .expect("checkpoint");
    assert_eq!(busy, 0, "a reader still holds a snapshot");
    store.close().await;
    let error = read(&store).await.expect_err("closed");
    assert_eq!(error.kind(), chronicle::ErrorKind::Connection, "{error}");
}

#[tokio::test]
async fn unknown_urls_are_configuration_errors() {
    let error = Store::open("mysql://localhost/db")
        .await
        .expect_err("unsupported");
    assert_eq!(error.kind(), chronicle::ErrorKind::Validation);
    assert!(error.to_string().contains("mysql://"), "{error}");
}

/// The append's guard (the `events_guard` trigger) holds for any writer of the file, not
/// only chronicle's append: an event row that does not continue its stream, names a
/// deleted stream or a key no stream has, is refused with the check's message and writes
/// nothing, and one that continues it moves the stream row along.
#[tokio::test]
async fn the_guard_refuses_event_rows_that_do_not_continue_their_stream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("guard.db");
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("open");
    let two = vec![NewEvent::new("x", json!({})), NewEvent::new("x", json!({}))];
    store
        .append("guarded-1", ExpectedVersion::NoStream, two)
        .await
        .expect("append");
    store.close().await;

    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("connect");
    let (key, type_id): (i64, i64) = sqlx::query_as(
        "SELECT stream_key, (SELECT type_id FROM event_types) FROM streams \
         WHERE stream_id = 'guarded-1'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("key");
    let insert = |key: Option<i64>, version: i64| {
        sqlx::query(
            "INSERT INTO events (event_id, stream_key, version, type_id, payload, recorded_at) \
             VALUES (randomblob(16), ?, ?, ?, CAST('{}' AS BLOB), 0)",
        )
        .bind(key)
        .bind(version)
        .bind(type_id)
    };
    let refusal = |result: Result<_, sqlx::Error>| match result {
        Err(sqlx::Error::Database(error)) => error.message().to_owned(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let cases = [
        (Some(key), 2, "chronicle: wrong expected version"),
        (Some(key), 4, "chronicle: wrong expected version"),
        (Some(key + 1), 1, "chronicle: no such stream"),
        (None, 1, "chronicle: no such stream"),
    ];
    for (key, version, message) in cases {
        let result = insert(key, version).execute(&mut conn).await;
        assert_eq!(refusal(result), message, "key {key:?}, version {version}");
    }
    insert(Some(key), 3)
        .execute(&mut conn)
        .await
        .expect("the next version");
    let (version, count): (i64, i64) =
        sqlx::query_as("SELECT version, event_count FROM streams WHERE stream_key = ?")
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .expect("stream row");
    assert_eq!((version, count), (3, 3));
    sqlx::query("UPDATE streams SET status = 1 WHERE stream_key = ?")
        .bind(key)
        .execute(&mut conn)
        .await
        .expect("delete");
    for version in [4, 2] {
        let result = insert(Some(key), version).execute(&mut conn).await;
        assert_eq!(
            refusal(result),
            "chronicle: stream deleted",
            "version {version}"
        );
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(events, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_never_conflicts_across_openers_of_one_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("many.db").display());
    let mut tasks = Vec::new();
    for opener in 0..4 {
        let store = Store::open(&url).await.expect("open");
        tasks.push(tokio::spawn(async move {
            for n in 0..40 {
                let expected = if n % 2 == 0 {
                    ExpectedVersion::Any
                } else {
                    ExpectedVersion::StreamExists
                };
                let expected = if n == 0 {
                    ExpectedVersion::Any
                } else {
                    expected
                };
                store
                    .append(
                        "busy-1",
                        expected,
                        vec![NewEvent::new("x", json!({ "opener": opener }))],
                    )
                    .await
                    .expect("Any and StreamExists wait for the lock instead of conflicting");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let store = Store::open(&url).await.expect("open");
    assert_eq!(
        store
            .stream_info("busy-1")
            .await
            .expect("info")
            .expect("some")
            .version,
        160
    );
}

#[tokio::test]
async fn a_file_in_a_missing_directory_is_an_error_naming_the_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-dir");
    let path = missing.join("events.db");
    let error = Store::open(format!("sqlite://{}", path.display()))
        .await
        .expect_err("the directory is missing");
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "names the file: {message}"
    );
    assert!(
        message.contains(&format!("directory `{}` does not exist", missing.display())),
        "says what is wrong: {message}"
    );
    assert!(!missing.exists(), "nothing was created");
}
