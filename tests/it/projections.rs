//! Projections on every backend: catch-up then live, restarts from the checkpoint, a task
//! killed mid-batch, failing handlers, and concurrent writers on PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle::{
    EventMetadata, EventParts, ExpectedVersion, FailurePolicy, NewEvent, Projection,
    ProjectionContext, ProjectionError, ProjectionHandle, ProjectionState, RecordedEvent, Store,
};
use serde_json::json;

use crate::support::{Kind, Location, TestStore};

crate::for_each_backend!(
    catch_up_then_live,
    restart_resumes_from_the_checkpoint,
    a_task_killed_mid_batch_applies_every_event_once,
    a_failing_handler_stops_the_projection,
    a_panicking_handler_fails_the_projection_which_can_restart,
    a_panicking_batch_handler_falls_back_to_apply,
    a_failing_handler_can_skip_the_event,
    a_batch_handler_writes_the_same_read_model,
    a_filtered_projection_crosses_stretches_of_other_events,
    rebuild_produces_the_live_read_model,
    large_events_end_batches_at_the_byte_budget,
    a_window_is_applied_in_batches_of_the_batch_size,
    a_lean_projection_gets_only_the_parts_it_asks_for,
);

/// Sums `amount` per stream: in the store's database (same transaction as the checkpoint)
/// on the SQL backends, in memory otherwise.
#[derive(Clone, Default)]
pub(crate) struct Totals {
    pub memory: Arc<Mutex<HashMap<String, i64>>>,
    /// Fail on events whose `n` is this.
    pub fail_on: Option<i64>,
    /// On the event whose `n` is this, after writing it, tell the test and hang.
    pub hang_on: Option<(i64, Arc<tokio::sync::Notify>)>,
    /// Write whole batches through `apply_batch` (one upsert per stream), counting them.
    pub batches: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Panic in `apply` on the event whose `n` is this.
    pub panic_on: Option<i64>,
    /// Panic in `apply_batch` on a batch holding the event whose `n` is this.
    pub panic_in_batch: Option<i64>,
}

/// The error [`Totals`] refuses an event with (its `n`): a type of the test's own, which
/// callers get back as the error's `source()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub i64);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot apply n = {}", self.0)
    }
}

impl std::error::Error for Refused {}

const CREATE_TOTALS: &str = "CREATE TABLE IF NOT EXISTS totals \
    (stream_id TEXT PRIMARY KEY, amount BIGINT NOT NULL, applied BIGINT NOT NULL)";

impl Projection for Totals {
    fn name(&self) -> &str {
        "totals"
    }

    fn event_types(&self) -> &[&str] {
        &["test.deposited"]
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let data = event.json()?;
        let n = data["n"].as_i64().ok_or("no n")?;
        let amount = data["amount"].as_i64().ok_or("no amount")?;
        if self.fail_on == Some(n) {
            return Err(Box::new(Refused(n)));
        }
        if self.panic_on == Some(n) {
            panic!("panicked at n = {n}");
        }
        let upsert = "INSERT INTO totals (stream_id, amount, applied) VALUES ($1, $2, 1) \
            ON CONFLICT (stream_id) DO UPDATE SET amount = totals.amount + excluded.amount, \
            applied = totals.applied + 1";
        if let Some(conn) = ctx.sqlite() {
            sqlx::query(CREATE_TOTALS).execute(&mut *conn).await?;
            sqlx::query(upsert)
                .bind(event.stream_id.as_str())
                .bind(amount)
                .execute(&mut *conn)
                .await?;
        } else if let Some(conn) = ctx.postgres() {
            sqlx::query(upsert)
                .bind(event.stream_id.as_str())
                .bind(amount)
                .execute(&mut *conn)
                .await?;
        } else {
            *self
                .memory
                .lock()
                .expect("lock")
                .entry(event.stream_id.to_string())
                .or_default() += amount;
        }
        if let Some((hang, reached)) = &self.hang_on
            && *hang == n
        {
            reached.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn apply_batch(
        &self,
        events: &[RecordedEvent],
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        if let Some(panic_on) = self.panic_in_batch {
            for event in events {
                if event.json()?["n"].as_i64() == Some(panic_on) {
                    panic!("the batch panicked at n = {panic_on}");
                }
            }
        }
        let Some(batches) = &self.batches else {
            for event in events {
                self.apply(event, ctx).await?;
            }
            return Ok(());
        };
        // Per stream: (sum of amounts, events).
        let mut sums: HashMap<&str, (i64, i64)> = HashMap::new();
        for event in events {
            let data = event.json()?;
            let n = data["n"].as_i64().ok_or("no n")?;
            if self.fail_on == Some(n) {
                return Err(format!("cannot apply n = {n} (in a batch)").into());
            }
            let sum = sums.entry(event.stream_id.as_str()).or_default();
            sum.0 += data["amount"].as_i64().ok_or("no amount")?;
            sum.1 += 1;
        }
        let upsert = "INSERT INTO totals (stream_id, amount, applied) VALUES ($1, $2, $3) \
            ON CONFLICT (stream_id) DO UPDATE SET amount = totals.amount + excluded.amount, \
            applied = totals.applied + excluded.applied";
        for (stream, (amount, count)) in sums {
            if let Some(conn) = ctx.sqlite() {
                sqlx::query(CREATE_TOTALS).execute(&mut *conn).await?;
                let query = sqlx::query(upsert).bind(stream).bind(amount).bind(count);
                query.execute(&mut *conn).await?;
            } else if let Some(conn) = ctx.postgres() {
                let query = sqlx::query(upsert).bind(stream).bind(amount).bind(count);
                query.execute(&mut *conn).await?;
            } else {
                let mut memory = self.memory.lock().expect("lock");
                *memory.entry(stream.to_owned()).or_default() += amount;
            }
        }
        batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn reset(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
        if let Some(conn) = ctx.sqlite() {
            sqlx::query(CREATE_TOTALS).execute(&mut *conn).await?;
            sqlx::query("DELETE FROM totals")
                .execute(&mut *conn)
                .await?;
        } else if let Some(conn) = ctx.postgres() {
            sqlx::query("DELETE FROM totals")
                .execute(&mut *conn)
                .await?;
        } else {
            self.memory.lock().expect("lock").clear();
        }
        Ok(())
    }
}

/// Appends deposits `n` in `range` (amount `n`), spread over 5 accounts, plus a
/// withdrawal the projection does not subscribe to.
pub(crate) async fn deposit(store: &Store, range: std::ops::Range<i64>) {
    for n in range {
        let stream = format!("acct-{}", n % 5);
        let events = vec![
            NewEvent::new("test.deposited", json!({ "n": n, "amount": n })),
            NewEvent::new("test.noted", json!({ "n": n })),
        ];
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
}

/// The sums a fold of deposits `0..count` gives, per stream.
pub(crate) fn expected(count: i64) -> HashMap<String, i64> {
    let mut totals = HashMap::new();
    for n in 0..count {
        *totals.entry(format!("acct-{}", n % 5)).or_default() += n;
    }
    totals
}

/// The read model: per stream, (amount, times applied).
pub(crate) async fn read_model(t: &TestStore, projection: &Totals) -> HashMap<String, (i64, i64)> {
    use sqlx::Connection;
    let sql = "SELECT stream_id, amount, applied FROM totals";
    let rows: Vec<(String, i64, i64)> = match &t.location {
        Location::Memory => {
            return projection
                .memory
                .lock()
                .expect("lock")
                .iter()
                .map(|(stream, amount)| (stream.clone(), (*amount, 0)))
                .collect();
        }
        Location::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
            sqlx::query_as(sql)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default()
        }
        Location::Postgres { url, schema } => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            let sql = format!("SELECT stream_id, amount, applied FROM \"{schema}\".totals");
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .expect("select")
        }
    };
    rows.into_iter()
        .map(|(stream, amount, applied)| (stream, (amount, applied)))
        .collect()
}

/// The read model's amounts per stream.
pub(crate) fn amounts(model: &HashMap<String, (i64, i64)>) -> HashMap<String, i64> {
    model
        .iter()
        .map(|(stream, (amount, _))| (stream.clone(), *amount))
        .collect()
}

/// Checks the read model holds the deposits `0..count`, each applied once.
pub(crate) async fn assert_totals(t: &TestStore, projection: &Totals, count: i64) {
    let model = read_model(t, projection).await;
    let amounts = amounts(&model);
    assert_eq!(amounts, expected(count));
    if !matches!(t.location, Location::Memory) {
        let applied: i64 = model.values().map(|(_, applied)| applied).sum();
        assert_eq!(applied, count, "every event applied exactly once");
    }
}

pub(crate) async fn open(kind: Kind, test: &str) -> Option<TestStore> {
    open_with(kind, test, |builder| builder).await
}

/// A fresh store configured by `configure`, with the `totals` table on PostgreSQL (SQLite
/// creates it on first use).
pub(crate) async fn open_with(
    kind: Kind,
    test: &str,
    configure: impl FnOnce(chronicle::StoreBuilder) -> chronicle::StoreBuilder,
) -> Option<TestStore> {
    let t = kind.open_with(test, configure).await?;
    if let Location::Postgres { .. } = t.location {
        crate::support::execute(
            &t,
            "CREATE TABLE totals (stream_id text PRIMARY KEY, amount bigint NOT NULL, \
             applied bigint NOT NULL)",
        )
        .await;
    }
    Some(t)
}

pub(crate) fn fast(store: &Store) -> chronicle::Projections {
    store
        .projections()
        .batch_size(16)
        .poll_interval(Duration::from_millis(50))
        .retries(2, Duration::from_millis(10))
}

async fn catch_up_then_live(kind: Kind) {
    let Some(t) = open(kind, "catch_up_then_live").await else {
        return;
    };
    deposit(&t.store, 0..100).await;
    let projection = Totals::default();
    let handle = fast(&t.store).spawn(projection.clone());
    handle.wait_for_idle().await.expect("caught up");
    assert_totals(&t, &projection, 100).await;
    let status = handle.status();
    assert_eq!(status.state, ProjectionState::Running);
    assert_eq!(status.applied, 100, "the other event type is filtered out");

    // Live: appended while the projection runs.
    deposit(&t.store, 100..130).await;
    handle.wait_for_idle().await.expect("live");
    assert_totals(&t, &projection, 130).await;
    let status = handle.stop().await.expect("stops");
    assert_eq!(status.state, ProjectionState::Stopped);
    assert_eq!(
        t.store.checkpoint("totals").await.expect("checkpoint"),
        Some(status.position)
    );
}

async fn restart_resumes_from_the_checkpoint(kind: Kind) {
    let Some(t) = open(kind, "restart_resumes_from_the_checkpoint").await else {
        return;
    };
    let projection = Totals::default();
    deposit(&t.store, 0..40).await;
    let handle = fast(&t.store).spawn(projection.clone());
    handle.wait_for_idle().await.expect("caught up");
    handle.stop().await.expect("stops");

    deposit(&t.store, 40..70).await;
    let handle = fast(&t.store).spawn(projection.clone());
    handle.wait_for_idle().await.expect("caught up again");
    assert_eq!(handle.status().applied, 30, "only the new events");
    assert_totals(&t, &projection, 70).await;
    handle.stop().await.expect("stops");
}

async fn a_task_killed_mid_batch_applies_every_event_once(kind: Kind) {
    let Some(t) = open(kind, "a_task_killed_mid_batch_applies_every_event_once").await else {
        return;
    };
    if matches!(t.location, Location::Memory) {
        return; // a memory read model is at-least-once by design
    }
    deposit(&t.store, 0..60).await;
    let reached = Arc::new(tokio::sync::Notify::new());
    let hanging = Totals {
        hang_on: Some((37, Arc::clone(&reached))),
        ..Totals::default()
    };
    let handle = fast(&t.store).spawn(hanging);
    reached.notified().await;
    // Killed after writing event 37's effect, before its batch's checkpoint.
    handle.abort();
    let _ = handle.wait_for_idle().await;

    let projection = Totals::default();
    let handle = fast(&t.store).spawn(projection.clone());
    handle.wait_for_idle().await.expect("caught up");
    assert_totals(&t, &projection, 60).await;
    handle.stop().await.expect("stops");
}

async fn a_failing_handler_stops_the_projection(kind: Kind) {
    let Some(t) = open(kind, "a_failing_handler_stops_the_projection").await else {
        return;
    };
    deposit(&t.store, 0..30).await;
    let failing = Totals {
        fail_on: Some(20),
        ..Totals::default()
    };
    let handle = fast(&t.store).spawn(failing.clone());
    let error = handle.wait_for_idle().await.expect_err("fails");
    assert!(error.to_string().contains("cannot apply n = 20"), "{error}");
    // The handler's own error, typed: the caller can downcast it.
    let source = std::error::Error::source(&error).and_then(|source| source.downcast_ref());
    assert_eq!(source, Some(&Refused(20)), "{error:?}");
    let status = handle.status();
    assert_eq!(status.state, ProjectionState::Failed);
    let last_error = status.last_error.expect("error");
    assert!(
        last_error.contains("`test.deposited` in stream `acct-0`"),
        "{last_error}"
    );
    // The checkpoint stays before the failing event's batch.
    assert!(status.applied < 20);
    let checkpoint = t.store.checkpoint("totals").await.expect("checkpoint");
    assert_eq!(
        checkpoint,
        Some(status.position).filter(|p| p.position() > 0)
    );
    // Stopping a failed projection returns its failure, the handler's error typed.
    let error = handle.stop().await.expect_err("it had failed");
    assert!(
        matches!(
            &error,
            chronicle::Error::ProjectionStopped {
                state: "failed",
                ..
            }
        ),
        "{error:?}"
    );
    let source = std::error::Error::source(&error).and_then(|source| source.downcast_ref());
    assert_eq!(source, Some(&Refused(20)), "{error:?}");
}

/// A handler that panics is a handler that fails: retried, then the projection ends as
/// failed with the panic's message; spawned again, it goes on from its checkpoint.
async fn a_panicking_handler_fails_the_projection_which_can_restart(kind: Kind) {
    let test = "a_panicking_handler_fails_the_projection_which_can_restart";
    let Some(t) = open(kind, test).await else {
        return;
    };
    deposit(&t.store, 0..30).await;
    let panicking = Totals {
        panic_on: Some(20),
        ..Totals::default()
    };
    let handle = fast(&t.store).spawn(panicking.clone());
    let error = tokio::time::timeout(Duration::from_secs(20), handle.wait_for_idle())
        .await
        .expect("the wait ends")
        .expect_err("fails");
    let message = error.to_string();
    assert!(message.contains("is failed"), "{message}");
    assert!(message.contains("panicked at n = 20"), "{message}");
    let status = handle.status();
    assert_eq!(status.state, ProjectionState::Failed);
    let last_error = status.last_error.clone().expect("the panic is kept");
    assert!(last_error.contains("panicked at n = 20"), "{last_error}");
    assert!(last_error.contains("in stream `acct-0`"), "{last_error}");
    assert!(status.applied < 20);
    let error = handle.stop().await.expect_err("it had failed");
    assert!(error.to_string().contains("panicked at n = 20"), "{error}");

    // Spawned again (the bug fixed), it continues from the checkpoint.
    let fixed = Totals {
        memory: Arc::clone(&panicking.memory),
        ..Totals::default()
    };
    let restarted = fast(&t.store).spawn(fixed.clone());
    restarted.wait_for_idle().await.expect("caught up");
    assert_eq!(restarted.status().applied, 30 - status.applied);
    if !matches!(t.location, Location::Memory) {
        assert_totals(&t, &fixed, 30).await;
    }
    let stopped = restarted.stop().await.expect("stops");
    assert_eq!(stopped.state, ProjectionState::Stopped);
}

/// A panic in `apply_batch` is a failed batch: it is applied again event by event.
async fn a_panicking_batch_handler_falls_back_to_apply(kind: Kind) {
    let test = "a_panicking_batch_handler_falls_back_to_apply";
    let Some(t) = open(kind, test).await else {
        return;
    };
    deposit(&t.store, 0..30).await;
    let projection = Totals {
        batches: Some(Arc::default()),
        panic_in_batch: Some(20),
        ..Totals::default()
    };
    let handle = fast(&t.store).spawn(projection.clone());
    tokio::time::timeout(Duration::from_secs(20), handle.wait_for_idle())
        .await
        .expect("the wait ends")
        .expect("goes on through `apply`");
    let status = handle.status();
    assert_eq!(
        (status.applied, status.state),
        (30, ProjectionState::Running)
    );
    let last_error = status.last_error.expect("the panic is noted");
    assert!(
        last_error.contains("the batch panicked at n = 20"),
        "{last_error}"
    );
    if !matches!(t.location, Location::Memory) {
        assert_totals(&t, &projection, 30).await;
    }
    handle.stop().await.expect("stops");
}

async fn a_failing_handler_can_skip_the_event(kind: Kind) {
    let Some(t) = open(kind, "a_failing_handler_can_skip_the_event").await else {
        return;
    };
    deposit(&t.store, 0..30).await;
    let failing = Totals {
        fail_on: Some(20),
        ..Totals::default()
    };
    let handle = fast(&t.store)
        .on_failure(FailurePolicy::Skip)
        .spawn(failing.clone());
    handle.wait_for_idle().await.expect("goes on");
    let status = handle.status();
    assert_eq!((status.applied, status.skipped), (29, 1));
    assert_eq!(status.state, ProjectionState::Running);
    if matches!(t.location, Location::Memory) {
        // Retried batches re-apply to a read model outside the database: at-least-once.
        handle.stop().await.expect("stops");
        return;
    }
    let mut expected_model = expected(30);
    *expected_model.get_mut("acct-0").expect("acct-0") -= 20;
    let model = read_model(&t, &failing).await;
    let amounts = amounts(&model);
    assert_eq!(amounts, expected_model);
    if let Location::Sqlite { url, .. } = &t.location {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
        let (count, error): (i64, String) =
            sqlx::query_as("SELECT count(*), max(error) FROM projection_skipped")
                .fetch_one(&mut conn)
                .await
                .expect("select");
        assert_eq!(count, 1);
        assert!(error.contains("cannot apply n = 20"), "{error}");
    }
    handle.stop().await.expect("stops");
}

/// The log is read in windows of the batch size whatever the filter: windows without a
/// single event of the projection's types are stepped over, not mistaken for the end.
async fn a_filtered_projection_crosses_stretches_of_other_events(kind: Kind) {
    let test = "a_filtered_projection_crosses_stretches_of_other_events";
    let Some(t) = open(kind, test).await else {
        return;
    };
    for n in 0..4 {
        let noise = (0..37).map(|i| NewEvent::new("test.noted", json!({ "i": i })));
        t.store
            .append("noise", ExpectedVersion::Any, noise.collect())
            .await
            .expect("noise");
        deposit_only(&t.store, n).await;
    }
    let projection = Totals::default();
    let handle = fast(&t.store).batch_size(5).spawn(projection.clone());
    handle.wait_for_idle().await.expect("caught up");
    assert_totals(&t, &projection, 4).await;
    assert_eq!(handle.status().applied, 4);

    // Live, behind more noise.
    t.store
        .append(
            "noise",
            ExpectedVersion::Any,
            (0..23)
                .map(|i| NewEvent::new("test.noted", json!({ "i": i })))
                .collect(),
        )
        .await
        .expect("noise");
    deposit_only(&t.store, 4).await;
    handle.wait_for_idle().await.expect("live");
    assert_totals(&t, &projection, 5).await;

    // An event of another type is passed over too: waiting for it returns, and the
    // checkpoint moves past it (a restart does not scan it again).
    let noted = t
        .store
        .append(
            "noise",
            ExpectedVersion::Any,
            vec![NewEvent::new("test.noted", json!({ "i": 0 }))],
        )
        .await
        .expect("noise");
    tokio::time::timeout(
        Duration::from_secs(10),
        handle.wait_until(noted.log_position()),
    )
    .await
    .expect("not stuck before an event of another type")
    .expect("passed over");
    let status = handle.stop().await.expect("stops");
    assert_eq!(status.position, noted.log_position());
    assert_eq!(
        t.store.checkpoint("totals").await.expect("checkpoint"),
        Some(noted.log_position())
    );
}

/// Appends the deposit `n` alone (amount `n`, account `n % 5`).
async fn deposit_only(store: &Store, n: i64) {
    let event = NewEvent::new("test.deposited", json!({ "n": n, "amount": n }));
    store
        .append(
            &format!("acct-{}", n % 5),
            ExpectedVersion::Any,
            vec![event],
        )
        .await
        .expect("deposit");
}

/// A projection writing whole batches (`apply_batch`) ends with the read model of one
/// applying event by event; a batch that fails is applied again event by event, which
/// pins the failure to its event (here skipped).
async fn a_batch_handler_writes_the_same_read_model(kind: Kind) {
    let Some(t) = open(kind, "a_batch_handler_writes_the_same_read_model").await else {
        return;
    };
    deposit(&t.store, 0..50).await;
    let batches = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let projection = Totals {
        fail_on: Some(20),
        batches: Some(Arc::clone(&batches)),
        ..Totals::default()
    };
    let handle = fast(&t.store)
        .on_failure(FailurePolicy::Skip)
        .spawn(projection.clone());
    handle.wait_for_idle().await.expect("caught up");
    let status = handle.status();
    assert_eq!((status.applied, status.skipped), (49, 1));
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("in stream `acct-0`")
                && error.contains("cannot apply n = 20")),
        "{status:?}"
    );
    // Batches of 16: the three without n = 20 went through `apply_batch`.
    assert!(batches.load(std::sync::atomic::Ordering::Relaxed) >= 3);
    if !matches!(t.location, Location::Memory) {
        let mut want = expected(50);
        *want.get_mut("acct-0").expect("acct-0") -= 20;
        let model = read_model(&t, &projection).await;
        let amounts = amounts(&model);
        assert_eq!(amounts, want);
        let applied: i64 = model.values().map(|(_, applied)| applied).sum();
        assert_eq!(applied, 49, "every event applied exactly once");
    }
    handle.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projection_follows_eight_concurrent_writers() {
    let Some(t) = open(
        Kind::Postgres,
        "postgres_projection_follows_eight_concurrent_writers",
    )
    .await
    else {
        return;
    };
    let projection = Totals::default();
    let handle = fast(&t.store).spawn(projection.clone());
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let store = t.store.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
                let mut n = writer;
                while tokio::time::Instant::now() < deadline {
                    deposit(&store, n..n + 1).await;
                    n += 8;
                }
                n
            })
        })
        .collect();
    let mut written = 0;
    for writer in writers {
        let next = writer.await.expect("writer");
        written = written.max(next);
    }
    handle.wait_for_idle().await.expect("caught up");
    // A fold over the whole log: every deposit in it, once.
    let log: Vec<RecordedEvent> =
        futures::TryStreamExt::try_collect(t.store.read_all(chronicle::LogPosition::START))
            .await
            .expect("read all");
    let mut fold: HashMap<String, i64> = HashMap::new();
    let mut deposits = 0;
    for event in log.iter().filter(|e| e.event_type == "test.deposited") {
        *fold.entry(event.stream_id.to_string()).or_default() +=
            event.json().expect("json")["amount"]
                .as_i64()
                .expect("amount");
        deposits += 1;
    }
    let model = read_model(&t, &projection).await;
    let amounts = amounts(&model);
    assert_eq!(amounts, fold);
    assert_eq!(
        model.values().map(|(_, applied)| applied).sum::<i64>(),
        deposits
    );
    assert!(
        deposits > 50,
        "the writers wrote ({deposits}, up to n = {written})"
    );
    handle.stop().await.expect("stops");
}

/// Records the `synchronous_commit` of the transactions it runs in, as `apply:<setting>`
/// and `reset:<setting>`.
#[derive(Clone, Default)]
struct FlushSetting(Arc<Mutex<Vec<String>>>);

impl FlushSetting {
    async fn record(
        &self,
        step: &str,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let conn = ctx.postgres().ok_or("not PostgreSQL")?;
        let setting: String = sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
            .fetch_one(conn)
            .await?;
        self.0
            .lock()
            .expect("settings")
            .push(format!("{step}:{setting}"));
        Ok(())
    }
}

impl Projection for FlushSetting {
    fn name(&self) -> &str {
        "flush-setting"
    }

    async fn apply(
        &self,
        _event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        self.record("apply", ctx).await
    }

    async fn reset(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
        self.record("reset", ctx).await
    }
}

/// A projection's batch commits without waiting for the disk (the setting is sent with
/// its `BEGIN`, for that transaction only); the rebuild's reset, like the store's other
/// transactions, keeps the server's setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_batch_commits_without_waiting_for_the_disk() {
    let test = "postgres_a_batch_commits_without_waiting_for_the_disk";
    let Some(t) = open(Kind::Postgres, test).await else {
        return;
    };
    deposit(&t.store, 0..3).await;
    let projection = FlushSetting::default();
    let handle = fast(&t.store).spawn(projection.clone());
    handle.wait_for_idle().await.expect("caught up");
    handle.stop().await.expect("stops");
    let handle = fast(&t.store)
        .rebuild(projection.clone())
        .await
        .expect("rebuild");
    handle.wait_for_idle().await.expect("caught up again");
    handle.stop().await.expect("stops");
    let seen = projection.0.lock().expect("settings").clone();
    let log: Vec<RecordedEvent> =
        futures::TryStreamExt::try_collect(t.store.read_all(chronicle::LogPosition::START))
            .await
            .expect("read all");
    let events = log.len();
    // The first start finds no checkpoint and empties the read model; the rebuild
    // empties it in its own transaction, and its task does not do it again.
    let mut want = vec!["reset:on"];
    want.extend(vec!["apply:off"; events]);
    want.push("reset:on");
    want.extend(vec!["apply:off"; events]);
    assert_eq!(seen, want);
}

/// Polls `done` every 20 ms for up to `secs` seconds.
/// The lease's session is killed under the active runner (as a server restart or a cut
/// connection would): it notices, steps down to standby, and one of the two instances
/// goes on; every event is still applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_runner_that_loses_its_lease_steps_down() {
    let test = "postgres_a_runner_that_loses_its_lease_steps_down";
    let Some(t) = open(Kind::Postgres, test).await else {
        return;
    };
    let other_node = t.reopen(|builder| builder).await.expect("second store");
    let projection = Totals::default();
    let first = fast(&t.store).spawn(projection.clone());
    first.wait_for_idle().await.expect("running");
    let second = fast(&other_node).spawn(projection.clone());
    assert!(eventually(5, || second.status().state == ProjectionState::Standby).await);
    deposit(&t.store, 0..20).await;
    first.wait_for_idle().await.expect("applied");

    // End the session holding this projection's advisory lock (key as in `try_lease`;
    // pg_locks shows a bigint key as two 32-bit halves), from the server.
    let Location::Postgres { url, schema } = &t.location else {
        unreachable!("a PostgreSQL store")
    };
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect");
    let killed: i64 = sqlx::query_scalar(
        "WITH k AS (SELECT hashtextextended('chronicle.projection:' || $1 || ':totals', 0) \
                        AS key) \
         SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l, k \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.classid = ((k.key >> 32) & 4294967295)::oid \
           AND l.objid = (k.key & 4294967295)::oid",
    )
    .bind(schema)
    .fetch_one(&mut admin)
    .await
    .expect("terminate");
    assert!(killed >= 1, "a lease session to kill");
    // It steps down at its next lease check (each second), then both compete for the
    // lease again.
    assert!(
        eventually(10, || first
            .status()
            .last_error
            .is_some_and(|error| error.contains("lost the lease")))
        .await,
        "the runner noticed: {:?}",
        first.status()
    );
    deposit(&t.store, 20..50).await;
    assert!(
        eventually(10, || first.status().applied + second.status().applied
            == 50)
        .await,
        "one of them applies the rest: {:?} / {:?}",
        first.status(),
        second.status()
    );
    let states = [first.status().state, second.status().state];
    assert!(
        states.contains(&ProjectionState::Standby)
            && (states.contains(&ProjectionState::Running)
                || states.contains(&ProjectionState::CatchingUp)),
        "one active, one on standby: {states:?}"
    );
    assert_totals(&t, &projection, 50).await;
    first.stop().await.expect("stops");
    second.stop().await.expect("stops");
}

async fn eventually(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// One projection run by two stores on one database: the first holds the lease and is
/// caught up, the second waits on standby.
async fn active_and_standby(t: &TestStore) -> (Totals, ProjectionHandle, ProjectionHandle) {
    let other_node = t.reopen(|builder| builder).await.expect("second store");
    let projection = Totals::default();
    let first = fast(&t.store).spawn(projection.clone());
    first.wait_for_idle().await.expect("running");
    let second = fast(&other_node).spawn(projection.clone());
    assert!(
        eventually(5, || second.status().state == ProjectionState::Standby).await,
        "the second instance waits: {:?}",
        second.status()
    );
    (projection, first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_runners_one_active_then_takeover() {
    let Some(t) = open(
        Kind::Postgres,
        "postgres_two_runners_one_active_then_takeover",
    )
    .await
    else {
        return;
    };
    let (projection, first, second) = active_and_standby(&t).await;

    deposit(&t.store, 0..40).await;
    first.wait_for_idle().await.expect("applied");
    assert_eq!(first.status().applied, 40);
    assert_eq!(
        second.status().applied,
        0,
        "only the lease holder applies events"
    );

    // The active instance dies; the other takes over within seconds.
    first.abort();
    deposit(&t.store, 40..60).await;
    assert!(
        eventually(10, || second.status().applied == 20).await,
        "the standby took over: {:?}",
        second.status()
    );
    assert_totals(&t, &projection, 60).await;
    second.stop().await.expect("stops");
}

async fn two_runners_without_a_lease_apply_each_event_once(kind: Kind) {
    let Some(t) = open(kind, "two_runners_without_a_lease_apply_each_event_once").await else {
        return;
    };
    deposit(&t.store, 0..80).await;
    // Both run at once here (SQLite has no leases); the checkpoint's move check lets only
    // one of them commit each batch.
    let projection = Totals::default();
    let first = fast(&t.store).batch_size(7).spawn(projection.clone());
    let second = fast(&t.store).batch_size(5).spawn(projection.clone());
    first.wait_for_idle().await.expect("first");
    second.wait_for_idle().await.expect("second");
    assert_totals(&t, &projection, 80).await;
    first.stop().await.expect("stops");
    second.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_runners_without_a_lease_apply_each_event_once() {
    two_runners_without_a_lease_apply_each_event_once(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appends_from_another_process_wake_the_projection() {
    let Some(t) = open(
        Kind::Postgres,
        "postgres_appends_from_another_process_wake_the_projection",
    )
    .await
    else {
        return;
    };
    let projection = Totals::default();
    // Polling alone would take a minute: only LISTEN/NOTIFY can wake it in time.
    let handle = t
        .store
        .projections()
        .poll_interval(Duration::from_secs(60))
        .spawn(projection.clone());
    assert!(eventually(5, || handle.status().state == ProjectionState::Running).await);
    tokio::time::sleep(Duration::from_millis(200)).await; // the listener connects
    let other_process = t.reopen(|builder| builder).await.expect("second store");
    deposit(&other_process, 0..10).await;
    assert!(
        eventually(5, || handle.status().applied == 10).await,
        "woken by the notification: {:?}",
        handle.status()
    );
    assert_totals(&t, &projection, 10).await;
    handle.stop().await.expect("stops");
}

async fn rebuild_produces_the_live_read_model(kind: Kind) {
    let Some(t) = open(kind, "rebuild_produces_the_live_read_model").await else {
        return;
    };
    let projection = Totals::default();
    deposit(&t.store, 0..50).await;
    let live = fast(&t.store).spawn(projection.clone());
    live.wait_for_idle().await.expect("live");
    deposit(&t.store, 50..90).await;
    live.wait_for_idle().await.expect("live");
    let live_model = read_model(&t, &projection).await;
    live.stop().await.expect("stops");

    let rebuilt = fast(&t.store)
        .rebuild(projection.clone())
        .await
        .expect("rebuild");
    rebuilt.wait_for_idle().await.expect("rebuilt");
    assert_eq!(
        rebuilt.status().applied,
        90,
        "every event again, from the start"
    );
    assert_eq!(read_model(&t, &projection).await, live_model);
    assert_totals(&t, &projection, 90).await;
    rebuilt.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_in_events_shrinks_while_catching_up() {
    let t = Kind::Memory.open("lag").await.expect("memory");
    deposit(&t.store, 0..200).await; // 400 events, 200 of them deposits
    let handle = t
        .store
        .projections()
        .batch_size(50)
        .spawn(Totals::default());
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while handle.status().state != ProjectionState::Running
        && tokio::time::Instant::now() < deadline
    {
        let status = handle.status();
        if status.state == ProjectionState::CatchingUp
            && status.applied > 0
            && seen.last() != Some(&status.lag_events)
        {
            seen.push(status.lag_events);
        }
        tokio::task::yield_now().await;
    }
    handle.wait_for_idle().await.expect("caught up");
    assert_eq!(handle.status().lag_events, 0);
    // Each full batch of 50 (of 400 log events, half of them deposits) leaves less to do.
    assert!(seen.windows(2).all(|pair| pair[0] >= pair[1]), "{seen:?}");
    assert!(seen.iter().all(|lag| *lag < 400), "{seen:?}");
    handle.stop().await.expect("stops");
}

/// Dropping the handle stops the projection, as `stop` would without waiting: what is
/// appended afterwards is not applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_handle_stops_the_projection() {
    let t = Kind::Memory.open("dropped_handle").await.expect("memory");
    let projection = Totals::default();
    deposit(&t.store, 0..10).await;
    let handle = fast(&t.store).spawn(projection.clone());
    handle.wait_for_idle().await.expect("caught up");
    drop(handle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let checkpoint = t.store.checkpoint("totals").await.expect("checkpoint");
    deposit(&t.store, 10..20).await;
    // Several poll intervals: a running projection would have applied them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sum: i64 = projection.memory.lock().expect("lock").values().sum();
    assert_eq!(sum, 45, "nothing applied after the drop");
    assert_eq!(
        t.store.checkpoint("totals").await.expect("checkpoint"),
        checkpoint
    );
}

/// A dropped handle's projection stops and ends its lease's session: an instance on
/// standby elsewhere takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_dropped_handle_releases_the_lease() {
    let Some(t) = open(
        Kind::Postgres,
        "postgres_a_dropped_handle_releases_the_lease",
    )
    .await
    else {
        return;
    };
    let (projection, first, second) = active_and_standby(&t).await;
    drop(first);
    deposit(&t.store, 0..20).await;
    assert!(
        eventually(10, || second.status().applied == 20).await,
        "the standby took the lease: {:?}",
        second.status()
    );
    assert_totals(&t, &projection, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_event_that_does_not_decode_fails_the_projection() {
    let t = Kind::Sqlite.open("undecodable").await.expect("sqlite");
    let keys = chronicle::KeyRing::new("k1", chronicle::KeyRing::generate_key()).expect("ring");
    let encrypting = t
        .reopen(|builder| builder.encryption(keys))
        .await
        .expect("store");
    deposit(&encrypting, 0..3).await;
    // This store lacks the key: the events cannot be read.
    let handle = fast(&t.store).spawn(Totals::default());
    let error = handle.wait_for_idle().await.expect_err("fails");
    assert!(error.to_string().contains("not in the key ring"), "{error}");
    assert_eq!(handle.status().state, ProjectionState::Failed);
    // The store's own error is the failure's source.
    let error = handle.stop().await.expect_err("it had failed");
    let source =
        std::error::Error::source(&error).and_then(|s| s.downcast_ref::<chronicle::Error>());
    assert!(
        matches!(source, Some(chronicle::Error::Codec { .. })),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_rebuild_elsewhere_restarts_the_active_instance() {
    let Some(t) = open(Kind::Postgres, "postgres_a_rebuild_elsewhere_restarts").await else {
        return;
    };
    let other_node = t.reopen(|builder| builder).await.expect("second store");
    let projection = Totals::default();
    deposit(&t.store, 0..30).await;
    let active = fast(&t.store).spawn(projection.clone());
    active.wait_for_idle().await.expect("caught up");
    // Rebuilt from the other node while the active instance idles: it notices the reset.
    let standby = fast(&other_node)
        .rebuild(projection.clone())
        .await
        .expect("rebuild");
    assert!(
        eventually(10, || active.status().applied == 60).await,
        "the active instance replayed the log: {:?}",
        active.status()
    );
    active.wait_for_idle().await.expect("caught up again");
    assert_totals(&t, &projection, 30).await;
    assert_eq!(standby.status().applied, 0);
    standby.stop().await.expect("stops");
    active.stop().await.expect("stops");
}

/// A batch as `BatchRecorder` saw it: (stream, version, JSON size) per event.
type SeenBatch = Vec<(String, u64, usize)>;

/// The (stream, version) of every event in `batches`, in the order they came.
fn events_seen(batches: &[SeenBatch]) -> Vec<(String, u64)> {
    batches
        .iter()
        .flatten()
        .map(|(stream, version, _)| (stream.clone(), *version))
        .collect()
}

/// Records the batches it is given.
#[derive(Clone)]
struct BatchRecorder {
    name: &'static str,
    types: &'static [&'static str],
    batches: Arc<Mutex<Vec<SeenBatch>>>,
}

impl Projection for BatchRecorder {
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
        self.apply_batch(std::slice::from_ref(event), _ctx).await
    }

    async fn apply_batch(
        &self,
        events: &[RecordedEvent],
        _ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let batch = events
            .iter()
            .map(|event| {
                (
                    event.stream_id.to_string(),
                    event.version,
                    event.payload_json().len(),
                )
            })
            .collect();
        self.batches.lock().expect("batches").push(batch);
        Ok(())
    }
}

/// 100 events of half a MiB (50 MiB, under a batch size of 10,000 events) come in
/// batches that end at the default byte budget (32 MiB), each at least one event, every
/// event once and in order; small events of another type in between do not count towards
/// a filtered projection's budget.
async fn large_events_end_batches_at_the_byte_budget(kind: Kind) {
    let Some(t) = kind
        .open("large_events_end_batches_at_the_byte_budget")
        .await
    else {
        return;
    };
    let blob = "x".repeat(512 * 1024);
    let mut expected_big = Vec::new();
    let mut expected_all = Vec::new();
    for n in 0..100u64 {
        let stream = format!("big-{}", n % 3);
        let written = t
            .store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![
                    NewEvent::new("test.big", json!({ "n": n, "blob": blob })),
                    NewEvent::new("test.small", json!({ "n": n })),
                ],
            )
            .await
            .expect("append");
        let version = written.next_expected_version();
        expected_big.push((stream.clone(), version - 1));
        expected_all.push((stream.clone(), version - 1));
        expected_all.push((stream, version));
    }
    // `chronicle::DEFAULT_WINDOW_BYTES`, written out so that the test also builds on code
    // without it.
    let budget: usize = 32 << 20;
    for (types, expected) in [(&["test.big"][..], expected_big), (&[][..], expected_all)] {
        let recorder = BatchRecorder {
            name: if types.is_empty() { "all" } else { "big" },
            types,
            batches: Arc::default(),
        };
        let handle = t.store.projections().spawn(recorder.clone());
        handle.wait_for_idle().await.expect("caught up");
        handle.stop().await.expect("stop");
        let batches = recorder.batches.lock().expect("batches").clone();
        assert_eq!(
            events_seen(&batches),
            expected,
            "every event once, in order ({types:?})"
        );
        assert!(
            batches.len() >= 2,
            "50 MiB in one batch of {} events ({types:?})",
            batches.first().map_or(0, Vec::len)
        );
        for batch in &batches {
            assert!(!batch.is_empty());
            let before_last: usize = batch[..batch.len() - 1].iter().map(|e| e.2).sum();
            assert!(
                before_last < budget,
                "a batch went on past its byte budget: {before_last} bytes before its last event"
            );
        }
    }
}

/// The runner reads windows of many events, but a projection's transactions hold at most
/// `batch_size` events each: 100 events with a batch size of 16 come in six full batches
/// and one of 4, every event once and in order, and the checkpoint ends at the last.
async fn a_window_is_applied_in_batches_of_the_batch_size(kind: Kind) {
    let Some(t) = kind
        .open("a_window_is_applied_in_batches_of_the_batch_size")
        .await
    else {
        return;
    };
    let mut expected = Vec::new();
    let mut last = None;
    for n in 0..10u64 {
        let stream = format!("acct-{}", n % 3);
        let events = (0..10).map(|i| NewEvent::new("test.small", json!({ "n": n * 10 + i })));
        let written = t
            .store
            .append(&stream, ExpectedVersion::Any, events.collect())
            .await
            .expect("append");
        let next = written.next_expected_version();
        expected.extend((next - 9..=next).map(|version| (stream.clone(), version)));
        last = Some(written.log_position());
    }
    let recorder = BatchRecorder {
        name: "batches",
        types: &[],
        batches: Arc::default(),
    };
    let handle = t.store.projections().batch_size(16).spawn(recorder.clone());
    handle.wait_for_idle().await.expect("caught up");
    let status = handle.stop().await.expect("stop");
    let batches = recorder.batches.lock().expect("batches").clone();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, [16, 16, 16, 16, 16, 16, 4]);
    assert_eq!(
        events_seen(&batches),
        expected,
        "every event once, in order"
    );
    assert_eq!(status.applied, 100);
    assert_eq!(Some(status.position), last);
    assert_eq!(
        t.store.checkpoint("batches").await.expect("checkpoint"),
        last
    );
}

/// A window of encrypted payloads over the offload threshold (so decrypted through
/// `spawn_blocking`) arrives decoded, in order. Which thread decoded it is not observed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_encrypted_window_arrives_decoded() {
    let keys = chronicle::KeyRing::new("k1", chronicle::KeyRing::generate_key()).expect("keys");
    let t = Kind::Memory
        .open_with("a_large_encrypted_window_decodes", |builder| {
            builder.encryption(keys)
        })
        .await
        .expect("memory store");
    let blob = "y".repeat(600 * 1024);
    for n in 0..3u64 {
        t.store
            .append(
                "big-1",
                ExpectedVersion::Any,
                vec![NewEvent::new("test.big", json!({ "n": n, "blob": blob }))],
            )
            .await
            .expect("append");
    }
    let recorder = BatchRecorder {
        name: "big",
        types: &[],
        batches: Arc::default(),
    };
    let handle = t.store.projections().spawn(recorder.clone());
    handle.wait_for_idle().await.expect("caught up");
    handle.stop().await.expect("stop");
    let batches = recorder.batches.lock().expect("batches").clone();
    let seen: Vec<(u64, usize)> = batches
        .iter()
        .flatten()
        .map(|(_, version, size)| (*version, *size))
        .collect();
    let size = json!({ "n": 0, "blob": blob }).to_string().len();
    assert_eq!(seen, [(1, size), (2, size), (3, size)]);
}

/// Checkpoints deleted from outside (an operator's reset, `Store::reset_projection`).
mod resets {
    use super::*;

    crate::for_each_sql_backend!(
        a_checkpoint_deleted_under_a_running_projection_rebuilds_it,
        a_checkpoint_deleted_while_stopped_rebuilds_on_start,
    );

    /// Deletes the `totals` checkpoint behind the runner's back, as an operator's reset does
    /// from another process.
    async fn delete_totals_checkpoint(t: &TestStore) {
        crate::support::execute(
            t,
            "DELETE FROM projection_checkpoints WHERE name = 'totals'",
        )
        .await;
    }

    /// The checkpoint of a running projection is deleted from outside (a reset by an operator):
    /// the runner notices, empties the read model through `Projection::reset`, and applies the
    /// log again from the start, so every event counts once, not twice.
    async fn a_checkpoint_deleted_under_a_running_projection_rebuilds_it(kind: Kind) {
        let test = "a_checkpoint_deleted_under_a_running_projection_rebuilds_it";
        let Some(t) = open(kind, test).await else {
            return;
        };
        let projection = Totals::default();
        deposit(&t.store, 0..40).await;
        let handle = fast(&t.store).spawn(projection.clone());
        handle.wait_for_idle().await.expect("caught up");
        assert_totals(&t, &projection, 40).await;

        delete_totals_checkpoint(&t).await;
        assert!(
            eventually(10, || handle.status().applied == 80).await,
            "the runner applied the log again: {:?}",
            handle.status()
        );
        handle.wait_for_idle().await.expect("caught up again");
        assert_totals(&t, &projection, 40).await;
        // And it goes on live from there.
        deposit(&t.store, 40..50).await;
        handle.wait_for_idle().await.expect("live");
        assert_totals(&t, &projection, 50).await;
        handle.stop().await.expect("stops");
    }

    /// The checkpoint is deleted while the projection is not running: its next start finds no
    /// checkpoint, empties the read model first, and rebuilds it.
    async fn a_checkpoint_deleted_while_stopped_rebuilds_on_start(kind: Kind) {
        let test = "a_checkpoint_deleted_while_stopped_rebuilds_on_start";
        let Some(t) = open(kind, test).await else {
            return;
        };
        let projection = Totals::default();
        deposit(&t.store, 0..30).await;
        let handle = fast(&t.store).spawn(projection.clone());
        handle.wait_for_idle().await.expect("caught up");
        handle.stop().await.expect("stops");

        delete_totals_checkpoint(&t).await;
        let handle = fast(&t.store).spawn(projection.clone());
        handle.wait_for_idle().await.expect("rebuilt");
        assert_eq!(handle.status().applied, 30, "every event again");
        assert_totals(&t, &projection, 30).await;
        handle.stop().await.expect("stops");
    }
}

/// The checkpoints as operators' tools see them, and a reset through the store's API.
mod checkpoint_admin {
    use super::*;

    crate::for_each_backend!(reset_projection_makes_the_running_projection_rebuild);

    async fn reset_projection_makes_the_running_projection_rebuild(kind: Kind) {
        let test = "reset_projection_makes_the_running_projection_rebuild";
        let Some(t) = open(kind, test).await else {
            return;
        };
        let projection = Totals::default();
        deposit(&t.store, 0..25).await;
        let handle = fast(&t.store).spawn(projection.clone());
        handle.wait_for_idle().await.expect("caught up");

        let listed = t.store.projection_checkpoints().await.expect("list");
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].name, "totals");
        assert_eq!(listed[0].position, handle.status().position);
        assert_eq!(listed[0].lag_events, 0, "caught up: {listed:?}");
        assert_eq!(listed[0].updated_at.is_some(), !kind.in_memory());
        deposit(&t.store, 25..30).await; // applied live, before or after the reset

        assert!(t.store.reset_projection("totals").await.expect("reset"));
        // 25 before, the live ones applied before the reset, then all 30 again.
        assert!(
            eventually(10, || handle.status().applied >= 55).await,
            "rebuilt from the start: {:?}",
            handle.status()
        );
        handle.wait_for_idle().await.expect("caught up again");
        assert_totals(&t, &projection, 30).await;

        assert!(
            !t.store
                .reset_projection("no-such-projection")
                .await
                .expect("reset"),
            "nothing to reset"
        );
        let outbox = t.store.reset_projection("chronicle.outbox").await;
        assert!(
            matches!(outbox, Err(chronicle::Error::Validation(_))),
            "{outbox:?}"
        );
        handle.stop().await.expect("stops");
    }
}

/// Keeps what it gets of each event, reading only `parts`.
#[derive(Clone)]
struct Parts {
    name: &'static str,
    parts: EventParts,
    seen: Arc<Mutex<Vec<RecordedEvent>>>,
}

impl Projection for Parts {
    fn name(&self) -> &str {
        self.name
    }

    fn event_parts(&self) -> EventParts {
        self.parts
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        _ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        self.seen.lock().expect("seen").push(event.clone());
        Ok(())
    }
}

/// A projection that asks for some parts of the events (`Projection::event_parts`) gets
/// those, and not the others: an empty payload, default metadata. On the SQL backends its
/// windows select only those columns; the rest of each event is there whatever it asks.
async fn a_lean_projection_gets_only_the_parts_it_asks_for(kind: Kind) {
    let keys = chronicle::KeyRing::new("k1", chronicle::KeyRing::generate_key()).expect("keys");
    let Some(t) = kind
        .open_with("a_lean_projection_gets_only_its_parts", |builder| {
            builder.encryption(keys)
        })
        .await
    else {
        return;
    };
    let metadata = EventMetadata {
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cause-1".into()),
        tenant_id: Some("tenant-1".into()),
        user_id: Some("user-1".into()),
        request_id: Some("req-1".into()),
        ..EventMetadata::default()
    };
    for n in 0..5 {
        let event = NewEvent::new("test.deposited", json!({ "n": n, "amount": n }))
            .metadata(metadata.clone());
        t.store
            .append(format!("acct-{}", n % 2), ExpectedVersion::Any, vec![event])
            .await
            .expect("append");
    }
    let whole: Vec<RecordedEvent> = {
        use futures::TryStreamExt;
        t.store
            .read_all(chronicle::LogPosition::START)
            .try_collect()
            .await
            .expect("read_all")
    };
    assert_eq!(whole.len(), 5);
    for (name, parts) in [
        ("lean-all", EventParts::ALL),
        ("lean-payload", EventParts::PAYLOAD),
        ("lean-metadata", EventParts::METADATA),
        ("lean-none", EventParts::NONE),
    ] {
        let projection = Parts {
            name,
            parts,
            seen: Arc::default(),
        };
        let handle = fast(&t.store).spawn(projection.clone());
        handle.wait_for_idle().await.expect("caught up");
        handle.stop().await.expect("stop");
        let seen = projection.seen.lock().expect("seen").clone();
        assert_eq!(seen.len(), whole.len(), "{name}");
        for (got, stored) in seen.iter().zip(&whole) {
            assert_eq!(
                (got.id, &got.stream_id, got.version, got.position),
                (
                    stored.id,
                    &stored.stream_id,
                    stored.version,
                    stored.position
                ),
                "{name}"
            );
            assert_eq!(got.log_position(), stored.log_position(), "{name}");
            assert_eq!(got.event_type, stored.event_type, "{name}");
            assert_eq!(got.schema_version, stored.schema_version, "{name}");
            assert_eq!(got.recorded_at, stored.recorded_at, "{name}");
            if parts.payload() {
                assert_eq!(got.payload_json(), stored.payload_json(), "{name}");
            } else {
                assert!(got.payload_json().is_empty(), "{name}: no payload");
                assert!(got.json().is_err(), "{name}: no payload to read");
            }
            if parts.metadata() {
                assert_eq!(got.metadata, metadata, "{name}");
            } else {
                assert_eq!(
                    got.metadata,
                    EventMetadata::default(),
                    "{name}: no metadata"
                );
            }
        }
    }
}
