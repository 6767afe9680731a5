//! Retention on every backend: each policy hides the right events before enforcement and
//! enforcement removes exactly those; snapshot-aware policies keep aggregates loading to
//! the same state; a projection follows the log across removals; deletion semantics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle::{
    DeleteMode, Direction, Error, ExpectedVersion, LogPosition, NewEvent, NewStream, Projection,
    ProjectionContext, ProjectionError, RecordedEvent, RetentionPolicy, RetentionScope, Store,
};
use futures::TryStreamExt;
use serde_json::json;

use crate::domain::{Account, AccountCommand};
use crate::support::Kind;

crate::for_each_backend!(
    max_count_hides_then_enforcement_removes,
    truncate_before_by_category_and_overrides,
    max_age_by_default_policy,
    snapshot_aware_retention_keeps_aggregates_loading,
    a_projection_follows_the_log_across_enforcement,
    hard_delete_takes_snapshots_and_tombstones,
    the_background_enforcer_removes_and_stops,
    policies_are_listed_in_pages_and_enforcement_reports_progress,
);

async fn write(store: &Store, stream: &str, count: u64) -> LogPosition {
    let events = (0..count)
        .map(|n| NewEvent::new("test.logged", json!({ "n": n })))
        .collect();
    let written = store
        .append(stream, ExpectedVersion::Any, events)
        .await
        .expect("append");
    written.log_position()
}

async fn versions(store: &Store, stream: &str) -> Vec<u64> {
    store
        .read_stream(stream, 1, Direction::Forward)
        .map_ok(|event| event.version)
        .try_collect()
        .await
        .expect("read stream")
}

/// The versions of each stream in the global log.
async fn log(store: &Store) -> HashMap<String, Vec<u64>> {
    let events: Vec<RecordedEvent> = store
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .expect("read all");
    let mut streams: HashMap<String, Vec<u64>> = HashMap::new();
    for event in events {
        streams
            .entry(event.stream_id.to_string())
            .or_default()
            .push(event.version);
    }
    streams
}

async fn max_count_hides_then_enforcement_removes(kind: Kind) {
    let Some(t) = kind.open("max_count_hides").await else {
        return;
    };
    let store = &t.store;
    write(store, "log-1", 10).await;
    write(store, "log-2", 4).await;
    let policy = RetentionPolicy::new().max_count(3).ignore_snapshots();
    store
        .set_retention(RetentionScope::stream("log-1"), policy)
        .await
        .expect("set");
    assert_eq!(
        store
            .retention(&RetentionScope::stream("log-1"))
            .await
            .expect("get"),
        Some(policy)
    );

    // Hidden before the enforcer ran, everywhere a read can see them.
    assert_eq!(versions(store, "log-1").await, [8, 9, 10]);
    let before = log(store).await;
    assert_eq!(before["log-1"], [8, 9, 10]);
    assert_eq!(before["log-2"], [1, 2, 3, 4], "other streams untouched");
    let info = store
        .stream_info("log-1")
        .await
        .expect("info")
        .expect("row");
    let applied = info.retention.expect("policy in force");
    assert_eq!(applied.scope, RetentionScope::stream("log-1"));
    assert_eq!(applied.policy, policy);
    assert_eq!(info.event_count, 10, "nothing removed yet");

    let report = store.enforce_retention().await.expect("enforce");
    assert_eq!(report.events_removed, 7);
    assert_eq!(report.streams_examined, 1, "only the stream with a policy");
    assert!(report.bytes_freed >= 7 * 7, "{report:?}");
    assert_eq!(log(store).await, before, "reads look the same");
    let info = store
        .stream_info("log-1")
        .await
        .expect("info")
        .expect("row");
    assert_eq!((info.version, info.event_count), (10, 3));

    // Appends go on from the head; the policy keeps sliding.
    write(store, "log-1", 2).await;
    assert_eq!(versions(store, "log-1").await, [10, 11, 12]);
    let again = store.enforce_retention().await.expect("enforce");
    assert_eq!(again.events_removed, 2);
    assert_eq!(
        store
            .enforce_retention()
            .await
            .expect("enforce")
            .events_removed,
        0
    );

    // Without the policy, what is left shows again.
    store
        .clear_retention(RetentionScope::stream("log-1"))
        .await
        .expect("clear");
    assert_eq!(versions(store, "log-1").await, [10, 11, 12]);
    let info = store
        .stream_info("log-1")
        .await
        .expect("info")
        .expect("row");
    assert_eq!(info.retention, None);
}

async fn truncate_before_by_category_and_overrides(kind: Kind) {
    let Some(t) = kind.open("truncate_before_by_category").await else {
        return;
    };
    let store = &t.store;
    write(store, "audit-1", 6).await;
    write(store, "audit-2", 3).await;
    write(store, "other-1", 6).await;
    let category = RetentionPolicy::new().truncate_before(5).ignore_snapshots();
    store
        .set_retention(RetentionScope::category("audit"), category)
        .await
        .expect("set");
    // A stream's own policy wins over its category's.
    let own = RetentionPolicy::new().truncate_before(3).ignore_snapshots();
    store
        .set_retention(RetentionScope::stream("audit-2"), own)
        .await
        .expect("set");
    assert!(matches!(
        store
            .set_retention(RetentionScope::category("au-dit"), category)
            .await,
        Err(Error::Validation(_))
    ));

    assert_eq!(versions(store, "audit-1").await, [5, 6]);
    assert_eq!(versions(store, "audit-2").await, [3]);
    assert_eq!(versions(store, "other-1").await, [1, 2, 3, 4, 5, 6]);
    let info = store
        .stream_info("audit-1")
        .await
        .expect("info")
        .expect("row");
    assert_eq!(
        info.retention.map(|applied| applied.scope),
        Some(RetentionScope::category("audit"))
    );
    let listed = store
        .list_streams(&chronicle::StreamListQuery::new())
        .await
        .expect("list");
    let scopes: Vec<_> = listed
        .iter()
        .map(|info| info.retention.as_ref().map(|applied| applied.scope.clone()))
        .collect();
    assert_eq!(
        scopes,
        [
            Some(RetentionScope::category("audit")),
            Some(RetentionScope::stream("audit-2")),
            None
        ]
    );

    let report = store.enforce_retention().await.expect("enforce");
    assert_eq!(report.events_removed, 4 + 2);
    assert_eq!(report.streams_examined, 2);
    assert_eq!(versions(store, "audit-1").await, [5, 6]);
    assert_eq!(versions(store, "audit-2").await, [3]);
    assert_eq!(log(store).await["other-1"].len(), 6);
}

async fn max_age_by_default_policy(kind: Kind) {
    let Some(t) = kind.open("max_age_by_default_policy").await else {
        return;
    };
    let store = &t.store;
    write(store, "old-1", 3).await;
    write(store, "mixed-1", 2).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    write(store, "mixed-1", 2).await;
    write(store, "new-1", 1).await;
    store
        .set_retention(
            RetentionScope::Default,
            RetentionPolicy::new()
                .max_age(Duration::from_secs(2))
                .ignore_snapshots(),
        )
        .await
        .expect("set");

    let visible = log(store).await;
    assert!(!visible.contains_key("old-1"), "{visible:?}");
    assert_eq!(visible["mixed-1"], [3, 4]);
    assert_eq!(visible["new-1"], [1]);
    assert_eq!(versions(store, "old-1").await, Vec::<u64>::new());
    assert!(store.stream_exists("old-1").await.expect("exists"));

    let report = store.enforce_retention().await.expect("enforce");
    assert_eq!(report.events_removed, 5);
    assert_eq!(report.streams_examined, 3);
    assert_eq!(log(store).await, visible);
    // The stream lives on: it takes appends at its next version.
    let next = store
        .append(
            "old-1",
            ExpectedVersion::Exact(3),
            vec![NewEvent::new("test.logged", json!({}))],
        )
        .await
        .expect("append after expiry");
    assert_eq!(next.next_expected_version(), 4);
}

async fn snapshot_aware_retention_keeps_aggregates_loading(kind: Kind) {
    let Some(t) = kind.open("snapshot_aware_retention").await else {
        return;
    };
    // `snapshot_every = 10` comes from the derive attribute.
    let accounts = t.store.repository::<Account>();
    let owner = || AccountCommand::Open {
        owner: "ada".into(),
    };
    accounts.execute("1", owner()).await.expect("open");
    for amount in 1..25 {
        accounts
            .execute("1", AccountCommand::Deposit(amount))
            .await
            .expect("deposit");
    }
    accounts.execute("2", owner()).await.expect("open"); // no snapshot yet
    for amount in 1..5 {
        accounts
            .execute("2", AccountCommand::Deposit(amount))
            .await
            .expect("deposit");
    }
    let before_1 = fresh_load(&t.store, "1").await;
    let before_2 = fresh_load(&t.store, "2").await;
    assert_eq!(before_1.version, 25);

    t.store
        .set_retention(
            RetentionScope::category("account"),
            RetentionPolicy::new().max_count(2),
        )
        .await
        .expect("set");
    // Expired: covered by the newest snapshot (20) and older than the last two.
    assert_eq!(
        versions(&t.store, "account-1").await,
        (21..=25).collect::<Vec<_>>()
    );
    assert_eq!(versions(&t.store, "account-2").await, [1, 2, 3, 4, 5]);
    assert_eq!(fresh_load(&t.store, "1").await.state, before_1.state);

    let report = t.store.enforce_retention().await.expect("enforce");
    assert_eq!(report.events_removed, 20);
    let after_1 = fresh_load(&t.store, "1").await;
    assert_eq!(after_1.state, before_1.state);
    assert_eq!((after_1.version, after_1.from_snapshot), (25, Some(20)));
    assert_eq!(fresh_load(&t.store, "2").await.state, before_2.state);

    // Commands go on.
    accounts
        .execute("1", AccountCommand::Withdraw(1))
        .await
        .expect("withdraw after enforcement");
    assert_eq!(
        fresh_load(&t.store, "1").await.state.balance,
        before_1.state.balance - 1
    );

    // A policy that ignores snapshots hides events the load needs: a typed error, never
    // a state the account did not have.
    t.store
        .set_retention(
            RetentionScope::stream("account-2"),
            RetentionPolicy::new().max_count(2).ignore_snapshots(),
        )
        .await
        .expect("set");
    let error = t
        .store
        .repository::<Account>()
        .load("2")
        .await
        .expect_err("history gone");
    assert!(
        matches!(error, Error::HistoryUnavailable { version: 1, .. }),
        "{error:?}"
    );
}

/// A load through a new repository (no cached state).
async fn fresh_load(store: &Store, id: &str) -> chronicle::Loaded<Account> {
    store
        .repository::<Account>()
        .load(id)
        .await
        .expect("load")
        .expect("exists")
}

/// Counts the events it sees per stream, in memory.
#[derive(Clone, Default)]
pub(crate) struct Seen(Arc<Mutex<HashMap<String, u64>>>);

impl Projection for Seen {
    fn name(&self) -> &str {
        "seen"
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        _ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let mut seen = self.0.lock().map_err(|_| "poisoned")?;
        *seen.entry(event.stream_id.to_string()).or_default() += 1;
        Ok(())
    }
}

impl Seen {
    pub(crate) fn counts(&self) -> HashMap<String, u64> {
        self.0.lock().expect("lock").clone()
    }
}

async fn a_projection_follows_the_log_across_enforcement(kind: Kind) {
    let Some(t) = kind.open("a_projection_follows_the_log").await else {
        return;
    };
    let store = &t.store;
    let last = write(store, "log-1", 50).await;
    let seen = Seen::default();
    let handle = crate::projections::fast(store).spawn(seen.clone());
    handle.wait_until(last).await.expect("caught up");

    store
        .set_retention(
            RetentionScope::stream("log-1"),
            RetentionPolicy::new().max_count(5).ignore_snapshots(),
        )
        .await
        .expect("set");
    let report = store.enforce_retention().await.expect("enforce");
    assert_eq!(report.events_removed, 45);
    write(store, "log-1", 10).await;
    let last = write(store, "other-1", 5).await;
    handle.wait_until(last).await.expect("follows on");
    // Of the 10 new events, the policy already expires the first 5 (only the last 5
    // versions are kept), so the projection never sees them.
    assert_eq!(
        seen.counts(),
        HashMap::from([("log-1".to_owned(), 55), ("other-1".to_owned(), 5)])
    );
    let status = handle.stop().await.expect("stops");
    assert_eq!(
        store.checkpoint("seen").await.expect("checkpoint"),
        Some(status.position)
    );

    // From the start again, it sees what is left (and visible).
    let fresh = Seen::default();
    let rebuilt = crate::projections::fast(store)
        .rebuild(fresh.clone())
        .await
        .expect("rebuild");
    rebuilt.wait_until(last).await.expect("rebuilt");
    assert_eq!(
        fresh.counts(),
        HashMap::from([("log-1".to_owned(), 5), ("other-1".to_owned(), 5)])
    );
    rebuilt.stop().await.expect("stops");
}

async fn hard_delete_takes_snapshots_and_tombstones(kind: Kind) {
    // Soft deletes and re-creation: `conformance::soft_delete_and_recreate`.
    let Some(t) = kind.open("hard_delete_takes_snapshots").await else {
        return;
    };
    let store = &t.store;
    let accounts = store.repository::<Account>();
    accounts
        .execute("9", AccountCommand::Open { owner: "bo".into() })
        .await
        .expect("open");
    for _ in 0..10 {
        accounts
            .execute("9", AccountCommand::Deposit(1))
            .await
            .expect("deposit");
    }
    assert_eq!(accounts.list_snapshots("9").await.expect("list").len(), 1);

    // Hard: events and snapshots go, the id can never be written again.
    store
        .delete_stream("account-9", DeleteMode::Hard)
        .await
        .expect("hard");
    assert!(accounts.list_snapshots("9").await.expect("list").is_empty());
    assert!(!log(store).await.contains_key("account-9"));
    let error = store
        .append(
            "account-9",
            ExpectedVersion::Any,
            vec![NewEvent::new("test.logged", json!({}))],
        )
        .await
        .expect_err("tombstoned");
    assert!(
        matches!(error, Error::StreamDeleted { hard: true, .. }),
        "{error:?}"
    );
    let error = store
        .create_stream("account-9", NewStream::new())
        .await
        .expect_err("tombstoned");
    assert!(
        matches!(error, Error::StreamDeleted { hard: true, .. }),
        "{error:?}"
    );
    assert!(accounts.load("9").await.is_err());
}

async fn the_background_enforcer_removes_and_stops(kind: Kind) {
    let Some(t) = kind.open("background_enforcer").await else {
        return;
    };
    let store = &t.store;
    for n in 0..30 {
        write(store, &format!("tmp-{n}"), 4).await;
    }
    store
        .set_retention(
            RetentionScope::category("tmp"),
            RetentionPolicy::new().max_count(1).ignore_snapshots(),
        )
        .await
        .expect("set");
    let handle = store
        .retention_enforcer()
        .batch_size(7)
        .interval(Duration::from_millis(50))
        .spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while handle.totals().events_removed < 90 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            handle.totals()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let totals = handle.stop().await.expect("stops");
    assert_eq!(totals.events_removed, 90);
    assert!(totals.streams_examined >= 30);
    let left: usize = log(store).await.values().map(Vec::len).sum();
    assert_eq!(left, 30);
}

/// `list_retention` pages through every stored policy in (default, categories, streams)
/// order; `run_once_with_progress` reports the totals after each batch.
async fn policies_are_listed_in_pages_and_enforcement_reports_progress(kind: Kind) {
    let Some(t) = kind.open("policies_are_listed_in_pages").await else {
        return;
    };
    let store = &t.store;
    let keep = |count| RetentionPolicy::new().max_count(count).ignore_snapshots();
    let scopes = [
        RetentionScope::stream("log-b"),
        RetentionScope::category("audit"),
        RetentionScope::stream("log-a"),
        RetentionScope::Default,
        RetentionScope::category("log"),
    ];
    for (n, scope) in scopes.iter().enumerate() {
        store
            .set_retention(scope.clone(), keep(10 + n as u64))
            .await
            .expect("set");
    }
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_retention(after.as_ref(), 2).await.expect("list");
        assert!(page.len() <= 2);
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        listed.extend(page);
    }
    assert_eq!(
        listed,
        [
            (RetentionScope::Default, keep(13)),
            (RetentionScope::category("audit"), keep(11)),
            (RetentionScope::category("log"), keep(14)),
            (RetentionScope::stream("log-a"), keep(12)),
            (RetentionScope::stream("log-b"), keep(10)),
        ]
    );
    store
        .clear_retention(RetentionScope::Default)
        .await
        .expect("clear");
    assert_eq!(store.list_retention(None, 10).await.expect("list").len(), 4);

    for stream in ["log-a", "log-b", "log-c"] {
        write(store, stream, 20).await;
    }
    let mut seen = Vec::new();
    let report = store
        .retention_enforcer()
        .batch_size(1)
        .run_once_with_progress(|so_far| seen.push(*so_far))
        .await
        .expect("enforce");
    // log-a keeps 12, log-b 10, log-c (the category's) 14.
    assert_eq!(report.events_removed, 8 + 10 + 6);
    assert_eq!(seen.last(), Some(&report));
    assert!(
        seen.len() >= 3,
        "a report per batch of one stream: {seen:?}"
    );
    assert!(
        seen.windows(2)
            .all(|pair| pair[0].streams_examined <= pair[1].streams_examined),
        "{seen:?}"
    );
}
