//! Opening a fresh store per test on each backend, and cleaning up after it.
//!
//! PostgreSQL tests read the server's URL from `CHRONICLE_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and each gets its own schema, dropped when
//! the test ends. Without a reachable server they skip loudly, unless
//! `CHRONICLE_REQUIRE_SERVICES=1`, where they fail.

use std::io::Write;

use chronicle::{Store, StoreBuilder, StoreTarget};

use crate::custom_backend::WrappedMemory;
use sqlx::Connection;

/// The backends every conformance test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    /// The memory backend wrapped by a backend written against the public seam
    /// (`custom_backend::WrappedMemory`).
    Custom,
    Sqlite,
    Postgres,
}

/// A store for one test plus what must outlive it (a temp dir, a schema to drop).
pub struct TestStore {
    pub store: Store,
    pub location: Location,
}

pub enum Location {
    Memory,
    Sqlite {
        url: String,
        _dir: tempfile::TempDir,
    },
    Postgres {
        url: String,
        schema: String,
    },
}

impl TestStore {
    /// Opens another store on the same database (another "process"), configured by
    /// `configure`. `None` for the memory backend, which cannot be shared.
    pub async fn reopen(
        &self,
        configure: impl FnOnce(StoreBuilder) -> StoreBuilder,
    ) -> Option<Store> {
        let builder = match &self.location {
            Location::Memory => return None,
            Location::Sqlite { url, .. } => Store::builder(url.clone()),
            Location::Postgres { url, schema } => {
                Store::builder(url.clone()).schema(schema.clone())
            }
        };
        Some(configure(builder).open().await.expect("reopen store"))
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Location::Postgres { url, schema } = &self.location {
            drop_schema(url, schema);
        }
    }
}

/// Drops a test's PostgreSQL schema when it goes out of scope, even if the test panics.
pub struct SchemaGuard(pub String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        drop_schema(&pg_url(), &self.0);
    }
}

/// Drops `schema` from a plain thread: drops run inside the test's runtime, which cannot
/// be blocked on.
fn drop_schema(url: &str, schema: &str) {
    let (url, schema) = (url.to_owned(), schema.to_owned());
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await;
            }
        });
    })
    .join();
}

pub fn pg_url() -> String {
    std::env::var("CHRONICLE_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn services_required() -> bool {
    std::env::var("CHRONICLE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Whether PostgreSQL can be reached; prints a loud skip notice (or panics when services
/// are required) when it cannot.
pub async fn postgres_available(test: &str) -> bool {
    match sqlx::PgConnection::connect(&pg_url()).await {
        Ok(conn) => {
            let _ = conn.close().await;
            true
        }
        Err(error) if services_required() => {
            panic!(
                "CHRONICLE_REQUIRE_SERVICES=1 but PostgreSQL at {} is unreachable: {error}",
                pg_url()
            )
        }
        Err(error) => {
            // Straight to stderr: libtest captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: PostgreSQL at {} is unreachable ({error}); set CHRONICLE_PG_URL",
                pg_url()
            );
            false
        }
    }
}

/// A unique schema name for one test.
pub fn fresh_schema() -> String {
    format!("t_{}", uuid::Uuid::now_v7().simple())
}

impl Kind {
    /// Whether the store lives in this process only (memory, or memory behind the seam).
    pub fn in_memory(self) -> bool {
        matches!(self, Kind::Memory | Kind::Custom)
    }

    /// A fresh, empty store with default settings.
    pub async fn open(self, test: &str) -> Option<TestStore> {
        self.open_with(test, |builder| builder).await
    }

    /// A fresh, empty store configured by `configure`; `None` when the backend's service
    /// is unavailable and not required.
    pub async fn open_with(
        self,
        test: &str,
        configure: impl FnOnce(StoreBuilder) -> StoreBuilder,
    ) -> Option<TestStore> {
        let (builder, location) = match self {
            Kind::Memory => (Store::builder("memory:"), Location::Memory),
            Kind::Custom => (
                Store::builder(StoreTarget::backend(WrappedMemory::default())),
                Location::Memory,
            ),
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("events.db").display());
                (
                    Store::builder(url.clone()),
                    Location::Sqlite { url, _dir: dir },
                )
            }
            Kind::Postgres => {
                if !postgres_available(test).await {
                    return None;
                }
                let schema = fresh_schema();
                let url = pg_url();
                (
                    Store::builder(url.clone())
                        .schema(schema.clone())
                        .pool_size(4),
                    Location::Postgres { url, schema },
                )
            }
        };
        let store = configure(builder).open().await.expect("open store");
        Some(TestStore { store, location })
    }
}

/// Instantiates `async fn name(kind: Kind)` tests once per backend, in modules `memory`,
/// `custom` (memory behind the public seam), `sqlite` and `postgres`.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::Kind::Memory).await }
            )*
        }
        mod custom {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::Kind::Custom).await }
            )*
        }
        $crate::for_each_sql_backend!($($name),*);
    };
}

/// Instantiates `async fn name(kind: Kind)` tests for the SQL backends, in
/// modules `sqlite` and `postgres`.
#[macro_export]
macro_rules! for_each_sql_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::Kind::Sqlite).await }
            )*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::Kind::Postgres).await }
            )*
        }
    };
}

/// The one integer one statement answers, read directly from the test store's database.
pub async fn scalar(t: &TestStore, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match &t.location {
        Location::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
            sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .expect("query")
        }
        Location::Postgres { .. } => sqlx::query_scalar(sql)
            .fetch_one(&mut pg_raw(t).await)
            .await
            .expect("query"),
        Location::Memory => unreachable!("SQL backends only"),
    }
}

/// Runs one statement directly on the test store's database.
pub async fn execute(t: &TestStore, sql: &str) {
    match &t.location {
        Location::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut conn)
                .await
                .expect("execute");
        }
        Location::Postgres { .. } => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut pg_raw(t).await)
                .await
                .expect("execute");
        }
        Location::Memory => unreachable!("SQL backends only"),
    }
}

/// A raw connection into a PostgreSQL test store's schema.
pub async fn pg_raw(t: &TestStore) -> sqlx::PgConnection {
    let Location::Postgres { url, schema } = &t.location else {
        unreachable!("a PostgreSQL store")
    };
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET search_path TO \"{schema}\""
    )))
    .execute(&mut conn)
    .await
    .expect("search_path");
    conn
}

/// The runtime and settings of a property test of `cases` cases against stores of
/// `kind`; `None` (the test skips) when PostgreSQL is unreachable and not required.
pub fn property_test(
    kind: Kind,
    test: &str,
    cases: u32,
) -> Option<(tokio::runtime::Runtime, proptest::test_runner::Config)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if kind == Kind::Postgres && !runtime.block_on(postgres_available(test)) {
        return None;
    }
    let config = proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    };
    Some((runtime, config))
}

/// How many migration files `backend` has: each opener must apply every one exactly once.
pub fn migration_count(backend: &str) -> i64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    std::fs::read_dir(dir)
        .expect("migrations folder")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "sql"))
        })
        .count() as i64
}
