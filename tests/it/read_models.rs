//! Read models in the store's database, written once for both SQL backends: the
//! projection's setup hook, portable SQL (`Sql`) on the batch's transaction and on the
//! store, the store's pools, and the projection fixture.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle::testing::ProjectionTest;
use chronicle::{
    Error, ExpectedVersion, NewEvent, Projection, ProjectionContext, ProjectionError,
    RecordedEvent, Sql, SqlRow, Store,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::{Kind, Location};

/// `balances (account, balance)`, one SQL text for both backends.
struct Balances;

impl Projection for Balances {
    fn name(&self) -> &str {
        "balances"
    }

    fn event_types(&self) -> &[&str] {
        &["bank.Deposited"]
    }

    async fn setup(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
        ctx.execute(
            "CREATE TABLE IF NOT EXISTS balances \
             (account TEXT PRIMARY KEY, balance BIGINT NOT NULL)",
        )
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let amount = event.json()?["amount"].as_i64().ok_or("no amount")?;
        ctx.execute(
            Sql::new(
                "INSERT INTO balances (account, balance) VALUES ($1, $2) \
                 ON CONFLICT (account) DO UPDATE SET balance = balances.balance + $2",
            )
            .bind(event.stream_id.as_str())
            .bind(amount),
        )
        .await?;
        Ok(())
    }

    async fn reset(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
        ctx.execute("DELETE FROM balances").await?;
        Ok(())
    }
}

fn deposit(amount: i64) -> NewEvent {
    NewEvent::new("bank.Deposited", json!({ "amount": amount }))
}

async fn balances(store: &Store) -> Vec<(String, i64)> {
    store
        .fetch_all("SELECT account, balance FROM balances ORDER BY account")
        .await
        .expect("read balances")
        .iter()
        .map(|row| {
            (
                row.get::<String>("account").expect("account"),
                row.get::<i64>("balance").expect("balance"),
            )
        })
        .collect()
}

/// The setup hook creates the table in the store's database (on PostgreSQL in the
/// store's schema, not `public`), through the store's own connections; the application
/// reads it through the store, unqualified; a second start runs the hook again harmlessly.
async fn setup_creates_the_read_model_in_the_store_schema(kind: Kind) {
    let Some(t) = kind
        .open("setup_creates_the_read_model_in_the_store_schema")
        .await
    else {
        return;
    };
    let store = &t.store;
    // No table before the hook ran; `Projections::setup` runs it on request.
    let missing = store.fetch_all("SELECT account FROM balances").await;
    assert!(matches!(missing, Err(Error::Sql { .. })), "{missing:?}");
    store.projections().setup(&Balances).await.expect("setup");
    assert!(balances(store).await.is_empty());
    store
        .append(
            "acct-ada",
            ExpectedVersion::Any,
            vec![deposit(5), deposit(7)],
        )
        .await
        .expect("append");
    store
        .append("acct-bob", ExpectedVersion::Any, vec![deposit(1)])
        .await
        .expect("append");

    let handle = store.projections().spawn(Balances);
    handle.wait_for_idle().await.expect("idle");
    handle.stop().await.expect("stop");
    assert_eq!(
        balances(store).await,
        [("acct-ada".to_owned(), 12), ("acct-bob".to_owned(), 1)]
    );

    // Started again: the hook runs again (IF NOT EXISTS), the checkpoint holds.
    store
        .append("acct-bob", ExpectedVersion::Any, vec![deposit(2)])
        .await
        .expect("append");
    let handle = store.projections().spawn(Balances);
    handle.wait_for_idle().await.expect("idle again");
    let status = handle.stop().await.expect("stop");
    assert_eq!(status.applied, 1, "only the new event");
    assert_eq!(
        balances(store).await,
        [("acct-ada".to_owned(), 12), ("acct-bob".to_owned(), 3)]
    );

    match &t.location {
        Location::Postgres { schema, .. } => {
            let pool = store
                .postgres_pool()
                .expect("a PostgreSQL store has a pool");
            assert!(store.sqlite_pool().is_none());
            // (Other tests' schemas may hold a `balances` too.)
            let schemas: Vec<String> = sqlx::query_scalar(
                "SELECT table_schema::text FROM information_schema.tables \
                 WHERE table_name = 'balances' AND table_schema IN ($1, 'public')",
            )
            .bind(schema)
            .fetch_all(pool)
            .await
            .expect("catalog");
            assert_eq!(
                schemas,
                std::slice::from_ref(schema),
                "in the store's schema only"
            );
            // The application's own sqlx queries, unqualified, through the store's pool.
            let total: i64 = sqlx::query_scalar("SELECT sum(balance)::bigint FROM balances")
                .fetch_one(pool)
                .await
                .expect("unqualified read through the pool");
            assert_eq!(total, 15);
        }
        // Memory keeps its read models in an embedded SQLite database.
        Location::Sqlite { .. } | Location::Memory => {
            let pool = store
                .sqlite_pool()
                .expect("a SQLite or memory store has a pool");
            assert!(store.postgres_pool().is_none());
            let total: i64 = sqlx::query_scalar("SELECT sum(balance) FROM balances")
                .fetch_one(pool)
                .await
                .expect("read through the pool");
            assert_eq!(total, 15);
        }
    }
}

/// A rebuild runs the setup hook before the reset, so it works on a database that never
/// had the table (the reset deletes from it).
async fn rebuild_sets_up_before_it_resets(kind: Kind) {
    let Some(t) = kind.open("rebuild_sets_up_before_it_resets").await else {
        return;
    };
    t.store
        .append("acct-ada", ExpectedVersion::Any, vec![deposit(4)])
        .await
        .expect("append");
    let handle = t
        .store
        .projections()
        .rebuild(Balances)
        .await
        .expect("rebuild on a fresh database");
    handle.wait_for_idle().await.expect("idle");
    handle.stop().await.expect("stop");
    assert_eq!(balances(&t.store).await, [("acct-ada".to_owned(), 4)]);
}

/// A rebuild while the projection runs (here, in this process): on SQLite both runners
/// run, and each batch commits on one of them only; on PostgreSQL the running one holds
/// the lease, notices the reset and rebuilds, while the new handle waits on standby. Either
/// way the read model ends as the log says, nothing applied twice.
async fn rebuild_while_running_applies_nothing_twice(kind: Kind) {
    let Some(t) = kind
        .open("rebuild_while_running_applies_nothing_twice")
        .await
    else {
        return;
    };
    let store = &t.store;
    for amount in 1..=20 {
        store
            .append("acct-ada", ExpectedVersion::Any, vec![deposit(amount)])
            .await
            .expect("append");
    }
    let running = store
        .projections()
        .poll_interval(Duration::from_millis(20))
        .spawn(Balances);
    running.wait_for_idle().await.expect("idle");
    let rebuilt = store
        .projections()
        .poll_interval(Duration::from_millis(20))
        .rebuild(Balances)
        .await
        .expect("rebuild");
    store
        .append("acct-bob", ExpectedVersion::Any, vec![deposit(100)])
        .await
        .expect("append");
    // The running instance rebuilds (it notices the reset) and follows the log.
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if balances(store).await == [("acct-ada".to_owned(), 210), ("acct-bob".to_owned(), 100)]
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the read model catches up");
    running.stop().await.expect("stop the running one");
    // The rebuild's handle runs on (PostgreSQL: it takes the lease over).
    store
        .append("acct-bob", ExpectedVersion::Any, vec![deposit(1)])
        .await
        .expect("append");
    tokio::time::timeout(Duration::from_secs(20), rebuilt.wait_for_idle())
        .await
        .expect("the rebuild's handle takes over")
        .expect("idle");
    rebuilt.stop().await.expect("stop");
    assert_eq!(
        balances(store).await,
        [("acct-ada".to_owned(), 210), ("acct-bob".to_owned(), 101)]
    );
}

/// A setup hook that fails fails the projection with `Error::ProjectionSetup`, its source
/// the hook's error; a rebuild returns it.
async fn a_failing_setup_fails_the_projection(kind: Kind) {
    struct Broken;
    impl Projection for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        async fn setup(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
            ctx.execute("CREATE TABLE IF NOT EXISTS broken (id BIGINT PRIMARY KEY)")
                .await?;
            ctx.execute("THIS IS NOT SQL").await?;
            Ok(())
        }
        async fn apply(
            &self,
            _: &RecordedEvent,
            _: &mut ProjectionContext<'_>,
        ) -> Result<(), ProjectionError> {
            Ok(())
        }
    }
    let Some(t) = kind.open("a_failing_setup_fails_the_projection").await else {
        return;
    };
    let error = t
        .store
        .projections()
        .rebuild(Broken)
        .await
        .expect_err("the hook fails");
    let Error::ProjectionSetup { name, source } = &error else {
        panic!("expected ProjectionSetup, got {error:?}");
    };
    assert_eq!(name, "broken");
    let inner = source.downcast_ref::<Error>().expect("chronicle's error");
    assert!(
        matches!(inner, Error::Sql { statement, .. } if statement == "THIS IS NOT SQL"),
        "{inner:?}"
    );
    // Nothing of the hook's transaction is kept: the table of its first statement is gone.
    let missing = t.store.fetch_all("SELECT id FROM broken").await;
    assert!(matches!(missing, Err(Error::Sql { .. })), "{missing:?}");

    let handle = t
        .store
        .projections()
        .retries(2, Duration::from_millis(1))
        .spawn(Broken);
    let stopped = handle
        .wait_for_idle()
        .await
        .expect_err("the projection fails");
    let Error::ProjectionStopped { state, source, .. } = &stopped else {
        panic!("expected ProjectionStopped, got {stopped:?}");
    };
    assert_eq!(*state, "failed");
    let source = source.as_ref().expect("a source");
    assert!(
        matches!(
            source.downcast_ref::<Error>(),
            Some(Error::ProjectionSetup { .. })
        ),
        "{source:?}"
    );
}

/// Every portable type binds and reads back, NULLs included, on both backends with the
/// same statements; mismatches and missing columns are typed errors.
async fn portable_sql_round_trips_every_type(kind: Kind) {
    /// Runs the statements in its setup hook (the store opens with it inline), keeping
    /// what `execute` returned.
    struct Script(Arc<Mutex<Vec<u64>>>);
    impl Projection for Script {
        fn name(&self) -> &str {
            "script"
        }
        async fn setup(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
            ctx.execute(
                "CREATE TABLE kinds (n BIGINT PRIMARY KEY, f DOUBLE PRECISION, t TEXT, \
                 b BOOLEAN, u UUID, j JSONB, raw BYTEA, small INTEGER)",
            )
            .await?;
            let insert = "INSERT INTO kinds (n, f, t, b, u, j, raw, small) \
                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
            let inserted = ctx
                .execute(
                    Sql::new(insert)
                        .bind(1_i64)
                        .bind(2.5_f64)
                        .bind("ada")
                        .bind(true)
                        .bind(Uuid::from_u128(7))
                        .bind(json!({ "tags": ["a", 1] }))
                        .bind(vec![0_u8, 255, 3])
                        .bind(42_i32),
                )
                .await?;
            let nulls = ctx
                .execute(
                    Sql::new(insert)
                        .bind(2_i64)
                        .bind(None::<f64>)
                        .bind(None::<String>)
                        .bind(None::<bool>)
                        .bind(None::<Uuid>)
                        .bind(None::<serde_json::Value>)
                        .bind(None::<Vec<u8>>)
                        .bind(None::<i32>),
                )
                .await?;
            // Placeholders out of order and repeated.
            let updated = ctx
                .execute(
                    Sql::new("UPDATE kinds SET t = $2 WHERE n = $1 OR n = $1 + 1")
                        .bind(1_i64)
                        .bind("both"),
                )
                .await?;
            let seen = ctx
                .fetch_optional(Sql::new("SELECT t FROM kinds WHERE n = $1").bind(2_i64))
                .await?
                .ok_or("the transaction sees its own writes")?
                .get::<String>("t")?;
            assert_eq!(seen, "both");
            ctx.execute(Sql::new("UPDATE kinds SET t = NULL WHERE n = $1").bind(2_i64))
                .await?;
            let mut done = self.0.lock().expect("lock");
            done.extend([inserted, nulls, updated]);
            Ok(())
        }
        async fn apply(
            &self,
            _: &RecordedEvent,
            _: &mut ProjectionContext<'_>,
        ) -> Result<(), ProjectionError> {
            Ok(())
        }
    }

    let counts = Arc::new(Mutex::new(Vec::new()));
    let script = Script(Arc::clone(&counts));
    let Some(t) = kind
        .open_with("portable_sql_round_trips_every_type", |builder| {
            builder.inline_projection(script)
        })
        .await
    else {
        return;
    };
    assert_eq!(*counts.lock().expect("lock"), [1, 1, 2]);

    let rows = t
        .store
        .fetch_all("SELECT n, f, t, b, u, j, raw, small FROM kinds ORDER BY n")
        .await
        .expect("select");
    assert_eq!(rows.len(), 2);
    let full: &SqlRow = &rows[0];
    assert_eq!(
        full.columns().collect::<Vec<_>>(),
        ["n", "f", "t", "b", "u", "j", "raw", "small"]
    );
    assert_eq!(full.get::<i64>("n").unwrap(), 1);
    assert_eq!(full.get::<f64>("f").unwrap(), 2.5);
    assert_eq!(full.get::<String>("t").unwrap(), "both");
    assert!(full.get::<bool>("b").unwrap());
    assert_eq!(full.get::<Uuid>("u").unwrap(), Uuid::from_u128(7));
    assert_eq!(
        full.get::<serde_json::Value>("j").unwrap(),
        json!({ "tags": ["a", 1] })
    );
    assert_eq!(full.get::<Vec<u8>>("raw").unwrap(), [0, 255, 3]);
    assert_eq!(full.get::<i32>("small").unwrap(), 42);
    assert_eq!(full.get::<Option<i64>>("small").unwrap(), Some(42));

    let nulls = &rows[1];
    assert_eq!(nulls.get::<Option<f64>>("f").unwrap(), None);
    assert_eq!(nulls.get::<Option<String>>("t").unwrap(), None);
    assert_eq!(nulls.get::<Option<bool>>("b").unwrap(), None);
    assert_eq!(nulls.get::<Option<Uuid>>("u").unwrap(), None);
    assert_eq!(nulls.get::<Option<serde_json::Value>>("j").unwrap(), None);
    assert_eq!(nulls.get::<Option<Vec<u8>>>("raw").unwrap(), None);
    assert_eq!(nulls.get::<Option<i32>>("small").unwrap(), None);

    // Type mismatches, a NULL read as a plain value, a missing column: typed errors.
    match full.get::<i64>("t") {
        Err(Error::ColumnType {
            column,
            expected,
            found,
            statement,
        }) => {
            assert_eq!(column, "t");
            assert_eq!(expected, "i64");
            assert!(found.contains("both"), "{found}");
            assert!(statement.starts_with("SELECT n, f"), "{statement}");
        }
        other => panic!("expected ColumnType, got {other:?}"),
    }
    assert!(matches!(
        nulls.get::<String>("t"),
        Err(Error::ColumnType { ref found, .. }) if found == "NULL"
    ));
    assert!(matches!(
        full.get::<bool>("f"),
        Err(Error::ColumnType { .. })
    ));
    assert!(matches!(
        full.get::<i64>("missing"),
        Err(Error::ColumnNotFound { ref column, .. }) if column == "missing"
    ));
    assert_eq!(
        full.get::<i64>("t").unwrap_err().kind(),
        chronicle::ErrorKind::Validation
    );

    // Binds on the store's read side, out of order; no row; a failing statement.
    let row = t
        .store
        .fetch_optional(
            Sql::new("SELECT n FROM kinds WHERE t = $2 AND n = $1")
                .bind(1_i64)
                .bind("both"),
        )
        .await
        .expect("select")
        .expect("a row");
    assert_eq!(row.get::<i64>("n").unwrap(), 1);
    let none = t
        .store
        .fetch_optional(Sql::new("SELECT n FROM kinds WHERE n = $1").bind(99_i64))
        .await
        .expect("select");
    assert!(none.is_none());
    match t.store.fetch_all("SELECT nope FROM kinds").await {
        Err(Error::Sql { statement, source }) => {
            assert_eq!(statement, "SELECT nope FROM kinds");
            assert!(matches!(source, sqlx::Error::Database(_)), "{source:?}");
        }
        other => panic!("expected Error::Sql, got {other:?}"),
    }
    // A type the executor does not read is named, with the cast to use.
    if kind == Kind::Postgres {
        let row = t
            .store
            .fetch_optional("SELECT 1.5::numeric AS x, now() AS at")
            .await
            .expect("select")
            .expect("a row");
        match row.get::<f64>("x") {
            Err(Error::ColumnType { found, .. }) => {
                assert!(found.contains("NUMERIC"), "{found}")
            }
            other => panic!("expected ColumnType, got {other:?}"),
        }
    }
}

/// An inline projection's setup hook runs when the store opens: its table exists before
/// the first append.
async fn inline_projections_are_set_up_at_open(kind: Kind) {
    let Some(t) = kind
        .open_with("inline_projections_are_set_up_at_open", |builder| {
            builder.inline_projection(Balances)
        })
        .await
    else {
        return;
    };
    assert!(balances(&t.store).await.is_empty(), "the table exists");
    t.store
        .append(
            "acct-ada",
            ExpectedVersion::Any,
            vec![deposit(3), deposit(4)],
        )
        .await
        .expect("append");
    assert_eq!(balances(&t.store).await, [("acct-ada".to_owned(), 7)]);
    // Opened again (another process): the hook runs again, harmlessly.
    if let Some(again) = t
        .reopen(|builder| builder.inline_projection(Balances))
        .await
    {
        assert_eq!(balances(&again).await, [("acct-ada".to_owned(), 7)]);
    }
}

/// The projection fixture runs the projection over the given events, on SQLite in memory
/// by default or on the test's store.
async fn the_fixture_runs_a_projection_over_given_events(kind: Kind) {
    let Some(t) = kind
        .open("the_fixture_runs_a_projection_over_given_events")
        .await
    else {
        return;
    };
    let projected = ProjectionTest::new(Balances)
        .given_events("acct-ada", [deposit(2), deposit(3)])
        .given_events(
            "acct-bob",
            [
                deposit(10),
                NewEvent::new("bank.Opened", json!({ "owner": "bob" })),
            ],
        )
        .on(t.store.clone())
        .run()
        .await
        .expect("run");
    assert_eq!(projected.status().applied, 3, "only its event types");
    assert_eq!(
        balances(projected.store()).await,
        [("acct-ada".to_owned(), 5), ("acct-bob".to_owned(), 10)]
    );
}

crate::for_each_backend!(
    setup_creates_the_read_model_in_the_store_schema,
    rebuild_sets_up_before_it_resets,
    rebuild_while_running_applies_nothing_twice,
    a_failing_setup_fails_the_projection,
    portable_sql_round_trips_every_type,
    inline_projections_are_set_up_at_open,
    the_fixture_runs_a_projection_over_given_events,
);

/// The fixture's default store is SQLite in memory; a failing projection's error comes
/// back with its own error as the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_returns_the_projection_and_its_failure() {
    /// Counts in memory.
    #[derive(Debug, Default)]
    struct Count(std::sync::atomic::AtomicU64);
    impl Projection for Count {
        fn name(&self) -> &str {
            "count"
        }
        async fn apply(
            &self,
            event: &RecordedEvent,
            _: &mut ProjectionContext<'_>,
        ) -> Result<(), ProjectionError> {
            if event.event_type == "bad" {
                return Err(Box::new(std::io::Error::other("refused")));
            }
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }
    let projected = ProjectionTest::new(Count::default())
        .given_events("s-1", [deposit(1), deposit(2)])
        .run()
        .await
        .expect("run");
    assert_eq!(projected.store().backend_kind(), "sqlite");
    assert_eq!(
        projected
            .projection()
            .0
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );

    let error = ProjectionTest::new(Count::default())
        .given_events("s-1", [deposit(1), NewEvent::new("bad", json!({}))])
        .run()
        .await
        .expect_err("the projection fails");
    let Error::ProjectionStopped { source, .. } = &error else {
        panic!("expected ProjectionStopped, got {error:?}");
    };
    let source = source.as_ref().expect("its error");
    assert!(
        source.downcast_ref::<std::io::Error>().is_some(),
        "{source:?}"
    );
}

/// The memory store keeps its read models in an embedded SQLite database: a projection's
/// portable SQL commits with its checkpoint, and a batch that fails keeps none of its
/// statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_keeps_read_models_in_sql() {
    let store = Store::open("memory:").await.expect("open");
    assert!(store.sqlite_pool().is_some());
    assert!(store.postgres_pool().is_none());
    for (stream, amount) in [("acct-ada", 5), ("acct-bob", 7), ("acct-ada", 1)] {
        store
            .append(stream, ExpectedVersion::Any, vec![deposit(amount)])
            .await
            .expect("append");
    }
    let handle = store.projections().spawn(Balances);
    handle.wait_for_idle().await.expect("idle");
    handle.stop().await.expect("stop");
    assert_eq!(
        balances(&store).await,
        [("acct-ada".to_owned(), 6), ("acct-bob".to_owned(), 7)]
    );
    let checkpoint = store.checkpoint("balances").await.expect("checkpoint");
    assert_eq!(checkpoint.map(|at| at.position()), Some(3));

    // An inline projection whose second statement fails: neither the append nor the
    // first statement is kept.
    let failing = Store::builder("memory:")
        .inline_projection(Balances)
        .inline_projection(Refuses)
        .open()
        .await
        .expect("open");
    let error = failing
        .append("acct-ada", ExpectedVersion::Any, vec![deposit(3)])
        .await
        .expect_err("the inline projection refuses");
    assert!(matches!(error, Error::InlineProjection { .. }), "{error:?}");
    assert!(balances(&failing).await.is_empty(), "the SQL rolled back");
    assert!(
        failing
            .stream_info("acct-ada")
            .await
            .expect("info")
            .is_none(),
        "the append rolled back"
    );
}

/// An inline projection that writes nothing of its own and refuses every event.
struct Refuses;

impl Projection for Refuses {
    fn name(&self) -> &str {
        "refuses"
    }

    async fn apply(
        &self,
        _: &RecordedEvent,
        _: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        Err("refused".into())
    }
}

/// An inline projection in portable SQL runs on memory as on the SQL backends: its table
/// is set up at open and follows every append.
#[tokio::test]
async fn an_inline_projection_in_sql_runs_on_memory() {
    let store = Store::builder("memory:")
        .inline_projection(Balances)
        .open()
        .await
        .expect("open");
    store
        .append(
            "acct-ada",
            ExpectedVersion::Any,
            vec![deposit(2), deposit(9)],
        )
        .await
        .expect("append");
    assert_eq!(balances(&store).await, [("acct-ada".to_owned(), 11)]);
}
