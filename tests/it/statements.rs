//! Statement counts of reads, measured by counting the statements sqlx logs (each is one
//! `tracing` event at target `sqlx::query`, emitted wherever the statement ran, including
//! SQLite's worker threads).
//!
//! The counting subscriber is global to the process, so no other test may run statements
//! beside the one measuring: each count runs alone in a child process of this test binary
//! (`in_child`), as an ignored test that only such a child runs.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chronicle::{
    Aggregate, Direction, DomainEvent, EventQuery, ExpectedVersion, LogPosition, NewEvent,
    RetentionPolicy, RetentionScope, Store, StoreBuilder,
};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Connection;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// Counts the statements sqlx logs, leaving out the load of the retention rules (at most
/// once a second whatever the reads do, so a slow machine would add some: timing, not
/// cost per read) and SQLite's `PRAGMA`s of a new connection (when the pool opens one:
/// also timing).
struct StatementCounter;

static COUNTING: AtomicBool = AtomicBool::new(false);
static STATEMENTS: AtomicU64 = AtomicU64::new(0);
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The targets statements are logged under: sqlx's, and chronicle's SQLite log readers'
/// (which run their windows through SQLite's C API, not through sqlx).
const TARGETS: [&str; 2] = ["sqlx::query", "chronicle::sqlite_reader"];
/// The statement that loads the retention rules.
const RULES_LOAD: &str = "FROM retention_policies WHERE kind < 2";

#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, _: &Field, value: &str) {
        self.0.push_str(value);
        self.0.push(' ');
    }

    fn record_debug(&mut self, _: &Field, value: &dyn fmt::Debug) {
        use fmt::Write;
        let _ = write!(self.0, "{value:?} ");
    }
}

impl Subscriber for StatementCounter {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if TARGETS.contains(&metadata.target()) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        TARGETS.contains(&metadata.target())
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        if !COUNTING.load(Ordering::SeqCst) {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        if !text.0.contains(RULES_LOAD) && !text.0.contains("PRAGMA") {
            STATEMENTS.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(StatementCounter)
            .expect("no other global subscriber in this binary");
    });
}

/// The statements run by `work`.
async fn count<F: Future<Output = ()>>(work: F) -> u64 {
    STATEMENTS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    work.await;
    COUNTING.store(false, Ordering::SeqCst);
    STATEMENTS.load(Ordering::SeqCst)
}

/// The fewest statements of three runs of the reads: on PostgreSQL, a transaction of
/// another client anywhere on the server can hold `read_all` back for a moment, and it
/// then reads again (timing, not cost per read).
async fn fewest(store: &Store, after: LogPosition, id: uuid::Uuid) -> u64 {
    let mut fewest = u64::MAX;
    for _ in 0..3 {
        fewest = fewest.min(count(reads(store, after, id)).await);
    }
    fewest
}

#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "account.")]
enum AccountEvent {
    Deposited { amount: u64 },
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "account", event = AccountEvent)]
struct Account {
    balance: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Aggregate for Account {
    type Command = ();
    type Error = Never;

    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::Deposited { amount } => self.balance += amount,
        }
    }

    fn handle(&self, _: &()) -> Result<Vec<AccountEvent>, Never> {
        Ok(Vec::new())
    }
}

fn events(n: u64, event_type: &str) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent::new(event_type, json!({ "amount": i })))
        .collect()
}

/// Every kind of read of the streams `order-1` and `account-7`, none of which has a
/// policy: `read_stream` both ways, `read_all` from `after` (which leaves the stream with
/// the policy behind), `event_by_id`, `query`, `stream_info` and an aggregate load.
async fn reads(store: &Store, after: LogPosition, id: uuid::Uuid) {
    let forward: Vec<_> = store
        .read_stream("order-1", 1, Direction::Forward)
        .try_collect()
        .await
        .expect("read_stream");
    assert_eq!(forward.len(), 30);
    let backward: Vec<_> = store
        .read_stream("order-1", u64::MAX, Direction::Backward)
        .try_collect()
        .await
        .expect("read_stream backward");
    assert_eq!(backward.len(), 30);
    let log: Vec<_> = store.read_all(after).try_collect().await.expect("read_all");
    assert_eq!(log.len(), 50);
    assert!(store.event_by_id(id).await.expect("event_by_id").is_some());
    let found: Vec<_> = store
        .query(&EventQuery::new().stream("order-1"))
        .try_collect()
        .await
        .expect("query");
    assert_eq!(found.len(), 30);
    assert!(store.stream_info("order-1").await.expect("info").is_some());
    let loaded = store
        .repository::<Account>()
        .load("7")
        .await
        .expect("load")
        .expect("account exists");
    assert_eq!(loaded.state.balance, (0..20).sum::<u64>());
}

/// The statements of the same reads of streams without a policy, before and after a
/// policy is set on another stream: they must be equal (and are what the test says).
async fn unrelated_policy_costs_nothing(builder: StoreBuilder, expected: u64) {
    let _turn = TURN.lock().await;
    install();
    // Small pages: the reads take several.
    let store = builder.page_size(8).open().await.expect("open");
    store
        .append(
            "audit-1",
            ExpectedVersion::NoStream,
            events(5, "audit.noted"),
        )
        .await
        .expect("append audit");
    let audit: Vec<_> = store
        .read_stream("audit-1", 1, Direction::Forward)
        .try_collect()
        .await
        .expect("read audit");
    let after = audit.last().expect("audit events").log_position();
    store
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            events(30, "order.placed"),
        )
        .await
        .expect("append order");
    store
        .append(
            "account-7",
            ExpectedVersion::NoStream,
            events(20, "account.Deposited"),
        )
        .await
        .expect("append account");
    let order: Vec<_> = store
        .read_stream("order-1", 3, Direction::Forward)
        .try_collect()
        .await
        .expect("read order");
    let id = order[0].id;

    // Warm: pool connections open, caches filled.
    reads(&store, after, id).await;
    let without = fewest(&store, after, id).await;

    store
        .set_retention(
            RetentionScope::stream("audit-1"),
            RetentionPolicy::new().max_count(2).ignore_snapshots(),
        )
        .await
        .expect("set retention");
    let with = fewest(&store, after, id).await;
    assert_eq!(
        with, without,
        "a policy on another stream changed the statements of these reads"
    );
    assert_eq!(without, expected, "statements of the reads");

    // The stream with the policy is still filtered.
    let audit: Vec<_> = store
        .read_stream("audit-1", 1, Direction::Forward)
        .try_collect()
        .await
        .expect("read audit");
    assert_eq!(audit.len(), 2);
    store.close().await;
}

/// Set in the child process that runs one count.
const CHILD: &str = "CHRONICLE_STATEMENT_COUNT_CHILD";

/// Runs the ignored test `name` of this module alone in a child process of this test
/// binary, and fails with its output unless exactly that test ran and passed.
fn in_child(name: &str) {
    let test = format!("statements::{name}");
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            &test,
            "--ignored",
            "--test-threads",
            "1",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test} in a child process:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether this process is the child of `in_child` (otherwise the ignored tests return).
fn is_child() -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == "1")
}

#[test]
fn sqlite_reads_of_streams_without_policy_cost_the_same() {
    in_child("sqlite_count");
}

#[test]
fn postgres_reads_of_streams_without_policy_cost_the_same() {
    in_child("postgres_count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a child process: see in_child"]
async fn sqlite_count() {
    if !is_child() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    unrelated_policy_costs_nothing(Store::builder(url), 21).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a child process: see in_child"]
async fn postgres_count() {
    if !is_child() {
        return;
    }
    let url = std::env::var("CHRONICLE_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut admin = match sqlx::PgConnection::connect(&url).await {
        Ok(conn) => conn,
        Err(error) if std::env::var("CHRONICLE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!("CHRONICLE_REQUIRE_SERVICES=1 but PostgreSQL at {url} is unreachable: {error}")
        }
        Err(error) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED postgres statement counts: PostgreSQL at {url} is unreachable ({error})"
            );
            return;
        }
    };
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let builder = Store::builder(url).schema(schema.clone()).pool_size(4);
    let run = tokio::spawn(unrelated_policy_costs_nothing(builder, 22));
    let outcome = run.await;
    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(&mut admin)
        .await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
