//! The repository on every backend: commands and loads, snapshots, history, metadata,
//! concurrent commands, and a property test against a fold of the stored events.

use std::sync::Arc;

use chronicle::{CommandError, Direction, Error, EventMetadata, NewSnapshot, Repository, Store};
use futures::TryStreamExt;
use proptest::prelude::*;
use serde_json::json;

use crate::domain::{Account, AccountCommand, AccountError, AccountEvent, fold};
use crate::support::{Kind, Location, TestStore, execute};

crate::for_each_backend!(
    execute_and_load_round_trip,
    domain_errors_write_nothing,
    metadata_flows_onto_every_event,
    snapshot_taken_at_threshold_and_used_with_the_tail,
    stale_snapshot_version_is_ignored_and_replaced,
    undecodable_snapshot_falls_back_to_a_full_replay,
    damaged_newest_snapshot_falls_back_to_the_older_one,
    load_at_gives_history,
    manual_snapshot_api,
    commands_in_one_repository_queue_without_conflicts,
    concurrent_repositories_retry_on_conflicts,
    loads_span_several_pages,
    executed_tells_its_log_position_and_domain_events,
);

/// The events stored in `stream`, decoded.
async fn stored_events(store: &Store, stream: &str) -> Vec<AccountEvent> {
    let recorded: Vec<_> = store
        .read_stream(stream, 1, Direction::Forward)
        .try_collect()
        .await
        .expect("read stream");
    recorded
        .iter()
        .map(|event| store.decode_event(event).expect("decode"))
        .collect()
}

async fn open_account(accounts: &Repository<Account>, id: &str, deposits: u64) {
    accounts
        .execute(
            id,
            AccountCommand::Open {
                owner: "ada".into(),
            },
        )
        .await
        .expect("open");
    for _ in 0..deposits {
        accounts
            .execute(id, AccountCommand::Deposit(10))
            .await
            .expect("deposit");
    }
}

async fn execute_and_load_round_trip(kind: Kind) {
    let Some(t) = kind.open("execute_and_load_round_trip").await else {
        return;
    };
    let accounts = t.store.repository::<Account>();
    assert_eq!(accounts.load("1").await.expect("load"), None);

    let opened = accounts
        .execute(
            "1",
            AccountCommand::Open {
                owner: "ada".into(),
            },
        )
        .await
        .expect("open");
    assert_eq!((opened.version, opened.attempts), (1, 1));
    accounts
        .execute("1", AccountCommand::Deposit(50))
        .await
        .expect("deposit");
    let closed = accounts
        .execute("1", AccountCommand::Close)
        .await
        .expect("close");
    assert_eq!(
        closed.version, 4,
        "close writes a withdrawal and the closing"
    );
    assert_eq!(closed.events.len(), 2);
    assert!(closed.state.closed);

    // Streams are named `{name}-{id}`.
    let events = stored_events(&t.store, "account-1").await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[3], AccountEvent::Closed);

    let loaded = t
        .store
        .repository::<Account>()
        .load("1")
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(loaded.version, 4);
    assert_eq!(loaded.state, fold(events));
    assert_eq!(loaded.state, closed.state);
}

async fn domain_errors_write_nothing(kind: Kind) {
    let Some(t) = kind.open("domain_errors_write_nothing").await else {
        return;
    };
    let accounts = t.store.repository::<Account>();
    let error = accounts
        .execute("2", AccountCommand::Deposit(5))
        .await
        .expect_err("not open");
    assert!(matches!(error, CommandError::Domain(AccountError::NotOpen)));
    assert!(!t.store.stream_exists("account-2").await.expect("exists"));

    open_account(&accounts, "2", 1).await;
    let error = accounts
        .execute("2", AccountCommand::Withdraw(11))
        .await
        .expect_err("overdrawn");
    assert_eq!(
        error.domain(),
        Some(&AccountError::InsufficientFunds {
            balance: 10,
            requested: 11
        })
    );
    assert_eq!(stored_events(&t.store, "account-2").await.len(), 2);
    // The refusal left the cached state usable.
    let next = accounts
        .execute("2", AccountCommand::Withdraw(10))
        .await
        .expect("withdraw");
    assert_eq!((next.version, next.state.balance), (3, 0));
}

async fn metadata_flows_onto_every_event(kind: Kind) {
    let Some(t) = kind.open("metadata_flows_onto_every_event").await else {
        return;
    };
    let accounts = t.store.repository::<Account>();
    open_account(&accounts, "3", 1).await;
    let metadata = EventMetadata {
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cmd-9".into()),
        user_id: Some("user-7".into()),
        tenant_id: Some("tenant-a".into()),
        ..EventMetadata::default()
    };
    let done = accounts
        .execute_with("3", AccountCommand::Close, metadata.clone())
        .await
        .expect("close");
    for written in &done.events {
        let event = t
            .store
            .event_by_id(written.event_id)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(event.metadata, metadata);
    }
    assert_eq!(done.events.len(), 2);
}

async fn snapshot_taken_at_threshold_and_used_with_the_tail(kind: Kind) {
    let Some(t) = kind
        .open("snapshot_taken_at_threshold_and_used_with_the_tail")
        .await
    else {
        return;
    };
    // `snapshot_every = 10` comes from the derive attribute.
    let accounts = t.store.repository::<Account>();
    open_account(&accounts, "4", 8).await;
    assert!(accounts.list_snapshots("4").await.expect("list").is_empty());
    open_more(&accounts, "4", 1).await; // version 10
    let snapshots = accounts.list_snapshots("4").await.expect("list");
    assert_eq!(snapshots.len(), 1);
    assert_eq!((snapshots[0].version, snapshots[0].schema_version), (10, 1));

    open_more(&accounts, "4", 5).await; // version 15
    let loaded = t
        .store
        .repository::<Account>()
        .load("4")
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(loaded.from_snapshot, Some(10));
    assert_eq!(
        loaded.replayed, 5,
        "the snapshot plus the 5 events after it"
    );
    assert_eq!(loaded.version, 15);
    assert_eq!(
        loaded.state,
        fold(stored_events(&t.store, "account-4").await)
    );

    // Only the newest two are kept.
    open_more(&accounts, "4", 20).await; // version 35
    let versions: Vec<u64> = accounts
        .list_snapshots("4")
        .await
        .expect("list")
        .iter()
        .map(|snapshot| snapshot.version)
        .collect();
    assert_eq!(versions, [30, 20]);
    assert_eq!(accounts.snapshot_failures(), 0);

    // The repository's policy overrides the attribute.
    let without = t.store.repository::<Account>().snapshot_every(0);
    open_account(&without, "5", 30).await;
    assert!(without.list_snapshots("5").await.expect("list").is_empty());
}

async fn open_more(accounts: &Repository<Account>, id: &str, deposits: u64) {
    for _ in 0..deposits {
        accounts
            .execute(id, AccountCommand::Deposit(1))
            .await
            .expect("deposit");
    }
}

async fn stale_snapshot_version_is_ignored_and_replaced(kind: Kind) {
    let Some(t) = kind
        .open("stale_snapshot_version_is_ignored_and_replaced")
        .await
    else {
        return;
    };
    let accounts = t.store.repository::<Account>().snapshot_every(0);
    open_account(&accounts, "6", 11).await; // version 12, no snapshots
    // A snapshot of another shape, as an older release of the code would have written.
    let old_shape = NewSnapshot::from_serialize(12, 7, &json!({ "money": "lots" })).expect("json");
    t.store
        .save_snapshot("account-6", old_shape)
        .await
        .expect("save");

    let accounts = t.store.repository::<Account>();
    let loaded = accounts.load("6").await.expect("load").expect("exists");
    assert_eq!(loaded.from_snapshot, None, "the stale snapshot is not used");
    assert_eq!(loaded.replayed, 12);
    assert_eq!(loaded.state.balance, 110);

    let latest = t
        .store
        .latest_snapshot("account-6", u64::MAX)
        .await
        .expect("read")
        .expect("replaced");
    assert_eq!((latest.version, latest.schema_version), (12, 1));
    assert_eq!(latest.data::<Account>().expect("state"), loaded.state);
    let again = accounts.load("6").await.expect("load").expect("exists");
    assert_eq!((again.from_snapshot, again.replayed), (Some(12), 0));
}

async fn undecodable_snapshot_falls_back_to_a_full_replay(kind: Kind) {
    let Some(t) = kind
        .open("undecodable_snapshot_falls_back_to_a_full_replay")
        .await
    else {
        return;
    };
    let accounts = t.store.repository::<Account>().snapshot_every(0);
    open_account(&accounts, "7", 4).await; // version 5
    // Right schema version, wrong shape.
    let wrong = NewSnapshot::from_serialize(5, 1, &json!({ "balance": "many" })).expect("json");
    t.store
        .save_snapshot("account-7", wrong)
        .await
        .expect("save");
    let loaded = accounts.load("7").await.expect("load").expect("exists");
    assert_eq!((loaded.from_snapshot, loaded.replayed), (None, 5));
    assert_eq!(loaded.state.balance, 40);

    // Bytes that are not a payload at all: a codec header with a truncated body.
    if !matches!(t.location, Location::Memory) {
        accounts.create_snapshot("7").await.expect("snapshot");
        corrupt_snapshots(&t).await;
        assert!(matches!(
            t.store.latest_snapshot("account-7", u64::MAX).await,
            Err(Error::SnapshotCodec { version: 5, .. })
        ));
        let loaded = accounts.load("7").await.expect("load").expect("exists");
        assert_eq!((loaded.from_snapshot, loaded.replayed), (None, 5));
        assert_eq!(loaded.state.balance, 40);
    }
}

/// A newest snapshot that does not decode is stepped over: the load starts from the next
/// older usable one, not from the stream's first event.
async fn damaged_newest_snapshot_falls_back_to_the_older_one(kind: Kind) {
    let Some(t) = kind
        .open("damaged_newest_snapshot_falls_back_to_the_older_one")
        .await
    else {
        return;
    };
    let accounts = t.store.repository::<Account>();
    open_account(&accounts, "9", 24).await; // version 25, snapshots at 10 and 20
    let versions: Vec<u64> = accounts
        .list_snapshots("9")
        .await
        .expect("list")
        .iter()
        .map(|snapshot| snapshot.version)
        .collect();
    assert_eq!(versions, [20, 10]);
    let expected = fold(stored_events(&t.store, "account-9").await);

    // Version 20's snapshot, of the current schema version, no longer fits the state.
    let wrong = NewSnapshot::from_serialize(20, 1, &json!({ "balance": "many" })).expect("json");
    t.store
        .save_snapshot("account-9", wrong)
        .await
        .expect("save");
    let loaded = accounts.load("9").await.expect("load").expect("exists");
    assert_eq!((loaded.from_snapshot, loaded.replayed), (Some(10), 15));
    assert_eq!((loaded.version, &loaded.state), (25, &expected));

    // Loading replaced the damaged snapshot with one at version 25.
    let again = accounts.load("9").await.expect("load").expect("exists");
    assert_eq!((again.from_snapshot, again.replayed), (Some(25), 0));

    // Bytes that are not a payload at all, at version 20 only.
    if !matches!(t.location, Location::Memory) {
        open_account(&accounts, "10", 24).await; // version 25, snapshots at 10 and 20
        let sql = match t.location {
            Location::Postgres { .. } => {
                "UPDATE snapshots SET payload = '\\xc70101ffff'::bytea \
                 WHERE stream_id = 'account-10' AND version = 20"
            }
            _ => {
                "UPDATE snapshots SET payload = X'c70101ffff' \
                 WHERE stream_id = 'account-10' AND version = 20"
            }
        };
        execute(&t, sql).await;
        let loaded = accounts.load("10").await.expect("load").expect("exists");
        assert_eq!((loaded.from_snapshot, loaded.replayed), (Some(10), 15));
        assert_eq!(loaded.version, 25);
        assert_eq!(
            loaded.state,
            fold(stored_events(&t.store, "account-10").await)
        );
    }
}

async fn corrupt_snapshots(t: &TestStore) {
    let sql = match t.location {
        Location::Postgres { .. } => "UPDATE snapshots SET payload = '\\xc70101ffff'::bytea",
        _ => "UPDATE snapshots SET payload = X'c70101ffff'",
    };
    execute(t, sql).await;
}

async fn load_at_gives_history(kind: Kind) {
    let Some(t) = kind.open("load_at_gives_history").await else {
        return;
    };
    let accounts = t.store.repository::<Account>();
    open_account(&accounts, "8", 24).await; // version 25, snapshots at 10 and 20
    let events = stored_events(&t.store, "account-8").await;
    for version in [0, 1, 9, 10, 11, 20, 24, 25] {
        let at = accounts
            .load_at("8", version)
            .await
            .expect("load_at")
            .expect("exists");
        assert_eq!(at.version, version);
        let expected = fold(events.iter().take(version as usize).cloned());
        assert_eq!(at.state, expected, "state at version {version}");
    }
    let at = accounts
        .load_at("8", 15)
        .await
        .expect("load_at")
        .expect("exists");
    assert_eq!((at.from_snapshot, at.replayed), (Some(10), 5));
    let past_end = accounts
        .load_at("8", 99)
        .await
        .expect("load_at")
        .expect("exists");
    assert_eq!(past_end.version, 25);
    assert_eq!(accounts.load_at("missing", 3).await.expect("load_at"), None);
}

async fn manual_snapshot_api(kind: Kind) {
    let Some(t) = kind.open("manual_snapshot_api").await else {
        return;
    };
    let accounts = t.store.repository::<Account>().snapshot_every(0);
    assert_eq!(accounts.create_snapshot("9").await.expect("create"), None);
    open_account(&accounts, "9", 2).await;
    assert_eq!(
        accounts.create_snapshot("9").await.expect("create"),
        Some(3)
    );
    let (state, version) = accounts
        .latest_snapshot("9")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((state.balance, version), (20, 3));
    open_more(&accounts, "9", 1).await;
    assert_eq!(
        accounts.create_snapshot("9").await.expect("create"),
        Some(4)
    );
    let listed = accounts.list_snapshots("9").await.expect("list");
    assert_eq!(listed.iter().map(|s| s.version).collect::<Vec<_>>(), [4, 3]);
    assert!(listed.iter().all(|s| s.stored_size > 0));

    // A snapshot past the stream's version is refused.
    let ahead = NewSnapshot::from_serialize(40, 1, &state).expect("json");
    assert!(matches!(
        t.store.save_snapshot("account-9", ahead).await,
        Err(Error::Validation(
            chronicle::ValidationError::SnapshotAhead { version: 40, .. }
        ))
    ));

    // Pruning keeps the newest `keep`, whatever the order of saves.
    let older = NewSnapshot::from_serialize(2, 1, &state)
        .expect("json")
        .keep_latest(2);
    t.store
        .save_snapshot("account-9", older)
        .await
        .expect("save");
    let listed = accounts.list_snapshots("9").await.expect("list");
    assert_eq!(listed.iter().map(|s| s.version).collect::<Vec<_>>(), [4, 3]);

    assert_eq!(
        accounts
            .delete_snapshots("9", Some(3))
            .await
            .expect("delete"),
        1
    );
    assert_eq!(
        accounts.delete_snapshots("9", None).await.expect("delete"),
        1
    );
    assert_eq!(accounts.latest_snapshot("9").await.expect("get"), None);

    // A hard delete takes the snapshots along.
    accounts.create_snapshot("9").await.expect("create");
    t.store
        .delete_stream("account-9", chronicle::DeleteMode::Hard)
        .await
        .expect("delete");
    assert!(accounts.list_snapshots("9").await.expect("list").is_empty());
}

async fn commands_in_one_repository_queue_without_conflicts(kind: Kind) {
    let Some(t) = kind
        .open("commands_in_one_repository_queue_without_conflicts")
        .await
    else {
        return;
    };
    let accounts = t.store.repository::<Account>();
    open_account(&accounts, "10", 0).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let accounts = accounts.clone();
            tokio::spawn(async move { accounts.execute("10", AccountCommand::Deposit(1)).await })
        })
        .collect();
    for task in tasks {
        let done = task.await.expect("task").expect("deposit");
        assert_eq!(done.attempts, 1, "queued commands never conflict");
    }
    let loaded = accounts.load("10").await.expect("load").expect("exists");
    assert_eq!((loaded.version, loaded.state.balance), (17, 16));
}

async fn concurrent_repositories_retry_on_conflicts(kind: Kind) {
    let Some(t) = kind
        .open("concurrent_repositories_retry_on_conflicts")
        .await
    else {
        return;
    };
    open_account(&t.store.repository::<Account>(), "11", 0).await;
    // Sixteen repositories (as in sixteen processes), no caches: every command races.
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let accounts = t.store.repository::<Account>().cache_capacity(0);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                accounts.execute("11", AccountCommand::Deposit(1)).await
            })
        })
        .collect();
    let (mut succeeded, mut retried) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(done) => {
                succeeded += 1;
                retried += u64::from(done.attempts > 1);
            }
            Err(error) => assert!(error.is_conflict(), "only conflicts may fail: {error}"),
        }
    }
    assert!(succeeded > 0);
    let events = stored_events(&t.store, "account-11").await;
    assert_eq!(
        events.len() as u64,
        succeeded + 1,
        "one deposit per success"
    );
    let loaded = t
        .store
        .repository::<Account>()
        .load("11")
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(loaded.state, fold(events));
    assert_eq!(loaded.state.balance, succeeded);
    eprintln!("{succeeded} of 16 racing commands succeeded, {retried} after retries");

    // Deterministically: a repository whose cached state went stale (another writer
    // appended since) conflicts once, reloads and succeeds on its second try.
    let mine = t.store.repository::<Account>();
    mine.execute("11", AccountCommand::Deposit(1))
        .await
        .expect("deposit");
    let theirs = t.store.repository::<Account>();
    theirs
        .execute("11", AccountCommand::Deposit(1))
        .await
        .expect("deposit");
    let done = mine
        .execute("11", AccountCommand::Deposit(1))
        .await
        .expect("deposit");
    assert_eq!(done.attempts, 2);
    assert_eq!(done.state.balance, succeeded + 3);
    // With one try allowed, the stale state is a conflict error.
    let strict = t.store.repository::<Account>().max_attempts(1);
    strict.load("11").await.expect("load");
    strict
        .execute("11", AccountCommand::Deposit(1))
        .await
        .expect("deposit");
    theirs
        .execute("11", AccountCommand::Deposit(1))
        .await
        .expect("deposit");
    let error = strict
        .execute("11", AccountCommand::Deposit(1))
        .await
        .expect_err("stale");
    assert!(error.is_conflict(), "{error}");
}

fn command() -> impl Strategy<Value = AccountCommand> {
    prop_oneof![
        1 => Just(AccountCommand::Open { owner: "ada".into() }),
        6 => (0u64..50).prop_map(AccountCommand::Deposit),
        4 => (0u64..80).prop_map(AccountCommand::Withdraw),
        1 => Just(AccountCommand::Close),
    ]
}

/// Runs random commands through a repository, then checks that a fresh load (with and
/// without snapshots) equals a fold of the stored events from scratch.
async fn load_equals_fold(url: &str, commands: Vec<AccountCommand>, snapshot_every: u64) {
    let store = Store::open(url).await.expect("open");
    let accounts = store.repository::<Account>().snapshot_every(snapshot_every);
    for command in commands {
        match accounts.execute("p", command).await {
            Ok(_) | Err(CommandError::Domain(_)) => {}
            Err(error) => panic!("store error: {error}"),
        }
    }
    let Some(loaded) = store.repository::<Account>().load("p").await.expect("load") else {
        return;
    };
    let events = stored_events(&store, "account-p").await;
    assert_eq!(loaded.version, events.len() as u64);
    assert_eq!(loaded.state, fold(events));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn load_equals_a_fold_of_the_stored_events(
        commands in proptest::collection::vec(command(), 0..60),
        snapshot_every in prop_oneof![Just(0u64), 1u64..8],
        sqlite in any::<bool>(),
    ) {
        let url = if sqlite { "sqlite::memory:" } else { "memory:" };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(load_equals_fold(url, commands, snapshot_every));
    }
}

mod sql_only {
    use crate::support::Kind;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_snapshot_failures_never_fail_the_command() {
        super::snapshot_failures_never_fail_the_command(Kind::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_snapshot_failures_never_fail_the_command() {
        super::snapshot_failures_never_fail_the_command(Kind::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_snapshots_are_encoded_like_events() {
        super::snapshots_are_encoded_like_events(Kind::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_snapshots_are_encoded_like_events() {
        super::snapshots_are_encoded_like_events(Kind::Postgres).await;
    }
}

async fn snapshot_failures_never_fail_the_command(kind: Kind) {
    let Some(t) = kind.open("snapshot_failures_never_fail_the_command").await else {
        return;
    };
    let accounts = t.store.repository::<Account>();
    open_account(&accounts, "12", 5).await;
    // The snapshot table vanishes behind the store's back.
    execute(&t, "DROP TABLE snapshots").await;
    open_more(&accounts, "12", 5).await; // crosses version 10
    assert_eq!(accounts.snapshot_failures(), 1);
    let loaded = accounts.load("12").await;
    assert!(loaded.is_err(), "loading needs the snapshot table");
    assert_eq!(stored_events(&t.store, "account-12").await.len(), 11);
}

/// The stored bytes of the snapshot of `stream` at `version`, read past the store.
async fn raw_snapshot(t: &TestStore, stream: &str, version: i64) -> Vec<u8> {
    use sqlx::Connection;
    let sql = "SELECT payload FROM snapshots WHERE stream_id = $1 AND version = $2";
    match &t.location {
        Location::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
            sqlx::query_scalar(sql)
                .bind(stream)
                .bind(version)
                .fetch_one(&mut conn)
                .await
                .expect("select")
        }
        Location::Postgres { url, schema } => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            let sql = format!(
                "SELECT payload FROM \"{schema}\".snapshots WHERE stream_id = $1 AND version = $2"
            );
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(stream)
                .bind(version)
                .fetch_one(&mut conn)
                .await
                .expect("select")
        }
        Location::Memory => unreachable!("SQL backends only"),
    }
}

async fn snapshots_are_encoded_like_events(kind: Kind) {
    let keys = chronicle::KeyRing::new("k1", chronicle::KeyRing::generate_key()).expect("ring");
    let Some(t) = kind
        .open_with("snapshots_are_encoded_like_events", |builder| {
            builder
                .compression(chronicle::Compression::zstd())
                .encryption(keys)
        })
        .await
    else {
        return;
    };
    let accounts = t.store.repository::<Account>();
    open_account(&accounts, "13", 2).await;
    open_account(&accounts, "14", 2).await;
    accounts.create_snapshot("13").await.expect("snapshot");
    accounts.create_snapshot("14").await.expect("snapshot");

    let stored = raw_snapshot(&t, "account-13", 3).await;
    assert_eq!(stored[0], 0xC7, "codec header");
    assert_eq!(stored[2] & 0b10, 0b10, "encrypted");
    assert!(!String::from_utf8_lossy(&stored).contains("ada"));
    let loaded = accounts.load("13").await.expect("load").expect("exists");
    assert_eq!((loaded.from_snapshot, loaded.replayed), (Some(3), 0));

    // A snapshot moved onto another stream does not decrypt there.
    let hex: String = stored.iter().map(|b| format!("{b:02x}")).collect();
    let sql = match t.location {
        Location::Postgres { .. } => format!(
            "UPDATE snapshots SET payload = '\\x{hex}'::bytea WHERE stream_id = 'account-14'"
        ),
        _ => format!("UPDATE snapshots SET payload = X'{hex}' WHERE stream_id = 'account-14'"),
    };
    execute(&t, &sql).await;
    assert!(matches!(
        t.store.latest_snapshot("account-14", u64::MAX).await,
        Err(Error::SnapshotCodec {
            source: chronicle::CodecError::Decrypt { .. },
            ..
        })
    ));
    let loaded = accounts.load("14").await.expect("load").expect("exists");
    assert_eq!((loaded.from_snapshot, loaded.replayed), (None, 3));
    assert_eq!(loaded.state.balance, 20);
}

mod given_when_then {
    use chronicle::testing::AggregateTest;

    use crate::domain::{Account, AccountCommand, AccountError, AccountEvent};

    fn opened() -> AccountEvent {
        AccountEvent::Opened {
            owner: "ada".into(),
        }
    }

    #[test]
    fn passes_on_the_expected_events_and_returns_the_state() {
        let after =
            AggregateTest::<Account>::given([opened(), AccountEvent::Deposited { amount: 9 }])
                .when(AccountCommand::Close)
                .then([AccountEvent::Withdrawn { amount: 9 }, AccountEvent::Closed]);
        assert!(after.closed);
        AggregateTest::<Account>::given([])
            .when(AccountCommand::Deposit(1))
            .then_error(AccountError::NotOpen);
    }

    #[test]
    #[should_panic(
        expected = "- #0 expected: Withdrawn { amount: 5 }\n  + #0 actual:   Withdrawn { amount: 9 }\n  - #1 missing:  Closed"
    )]
    fn a_mismatch_lists_expected_and_actual_events() {
        AggregateTest::<Account>::given([opened(), AccountEvent::Deposited { amount: 9 }])
            .when(AccountCommand::Withdraw(9))
            .then([AccountEvent::Withdrawn { amount: 5 }, AccountEvent::Closed]);
    }

    #[test]
    #[should_panic(expected = "expected events, but the command was refused: NotOpen")]
    fn a_refusal_where_events_were_expected_says_so() {
        AggregateTest::<Account>::given([])
            .when(AccountCommand::Deposit(3))
            .then([AccountEvent::Deposited { amount: 3 }]);
    }

    /// One given event is "1 event", not "1 events".
    #[test]
    #[should_panic(expected = "given 1 event, when Deposit(3): expected the error NotOpen")]
    fn one_given_event_is_singular_in_the_message() {
        AggregateTest::<Account>::given([opened()])
            .when(AccountCommand::Deposit(3))
            .then_error(AccountError::NotOpen);
    }

    #[test]
    #[should_panic(expected = "given no events, when Deposit(3): expected events")]
    fn no_given_events_say_so_in_the_message() {
        AggregateTest::<Account>::given([])
            .when(AccountCommand::Deposit(3))
            .then([AccountEvent::Deposited { amount: 3 }]);
    }
}

mod read_back {
    use chronicle::{Aggregate, DomainEvent, Store};
    use serde::{Deserialize, Serialize};

    /// An event with a field that is never stored.
    #[derive(Debug, Clone, PartialEq, DomainEvent)]
    enum NoteEvent {
        Noted {
            text: String,
            #[serde(skip)]
            scratch: String,
        },
    }

    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
    #[aggregate(name = "note", event = NoteEvent)]
    struct Notes {
        texts: Vec<String>,
        scratch: Vec<String>,
    }

    impl Aggregate for Notes {
        type Command = String;
        type Error = std::convert::Infallible;

        fn apply(&mut self, NoteEvent::Noted { text, scratch }: NoteEvent) {
            self.texts.push(text);
            self.scratch.push(scratch);
        }

        fn handle(&self, text: &String) -> Result<Vec<NoteEvent>, Self::Error> {
            Ok(vec![NoteEvent::Noted {
                text: text.clone(),
                scratch: "not stored".into(),
            }])
        }
    }

    #[tokio::test]
    async fn the_state_after_a_command_is_the_state_a_load_gives() {
        let store = Store::open("memory:").await.expect("open");
        let notes = store.repository::<Notes>();
        notes.execute("1", "a".to_owned()).await.expect("execute");
        let done = notes.execute("1", "b".to_owned()).await.expect("execute");
        let loaded = notes.load("1").await.expect("load").expect("exists");
        assert_eq!(done.state, loaded.state);
        assert_eq!(
            done.state.scratch,
            ["", ""],
            "what was not stored is not applied"
        );
    }
}

async fn loads_span_several_pages(kind: Kind) {
    let Some(t) = kind
        .open_with("loads_span_several_pages", |builder| builder.page_size(3))
        .await
    else {
        return;
    };
    let accounts = t.store.repository::<Account>();
    open_account(&accounts, "15", 24).await; // version 25, snapshots at 10 and 20
    let events = stored_events(&t.store, "account-15").await;
    let fresh = t.store.repository::<Account>();
    let loaded = fresh.load("15").await.expect("load").expect("exists");
    assert_eq!((loaded.from_snapshot, loaded.replayed), (Some(20), 5));
    assert_eq!(loaded.state, fold(events.clone()));
    let at = fresh
        .load_at("15", 17)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(
        (at.from_snapshot, at.replayed, at.version),
        (Some(10), 7, 17)
    );
    assert_eq!(at.state, fold(events.iter().take(17).cloned()));

    // Without snapshots, and after a snapshot that does not decode, every page is read.
    fresh.delete_snapshots("15", None).await.expect("delete");
    let wrong = NewSnapshot::from_serialize(25, 1, &json!({ "balance": "many" })).expect("json");
    t.store
        .save_snapshot("account-15", wrong)
        .await
        .expect("save");
    let loaded = fresh.load("15").await.expect("load").expect("exists");
    assert_eq!((loaded.from_snapshot, loaded.replayed), (None, 25));
    assert_eq!(loaded.state, fold(events));
}

async fn executed_tells_its_log_position_and_domain_events(kind: Kind) {
    let Some(t) = kind.open("executed_log_position").await else {
        return;
    };
    let accounts = t.store.repository::<Account>();
    open_account(&accounts, "7-b", 1).await;
    let closed = accounts
        .execute("7-b", AccountCommand::Close)
        .await
        .expect("close");
    assert_eq!(
        closed.domain_events,
        [AccountEvent::Withdrawn { amount: 10 }, AccountEvent::Closed]
    );
    let last: Vec<_> = t
        .store
        .read_stream("account-7-b", 1, Direction::Forward)
        .try_collect()
        .await
        .expect("read stream");
    let last = last.last().expect("events");
    assert_eq!(closed.log_position(), Some(last.log_position()));
    assert_eq!(closed.events[1].event_id, last.id);
    // The id part of the stream id is the repository's id.
    assert_eq!(
        (last.stream_id.category(), last.stream_id.id()),
        ("account", "7-b")
    );
}
