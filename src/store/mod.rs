//! The [`Store`]: appends, reads and stream management on any backend.
//!
//! `Store` is the one place where policy lives: it validates input, runs payloads through
//! the codec, retries transient failures, applies timeouts, recognises idempotent
//! replays, pages long reads and opens a `tracing` span per operation. The backends under
//! it (`memory`, `sqlite`, `postgres`) only move rows; see `backend`.
//!
//! Here: the `Store` itself (opening, its shared state, the accessors and the transactions
//! it hands to projections and the outbox). By idea beside it: `append` (the append path),
//! `read` (reads and their pages), `decode` (stored events into `RecordedEvent`s),
//! `notify` (appends seen by other tasks and processes), `streams` (a stream's life),
//! `snapshots`, `stream_keys`, `retention` and `rotation`.

mod append;
pub(crate) mod backend;
pub(crate) mod batch;
mod builder;
mod connect;
pub(crate) mod decode;
mod dictionaries;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod dictionaries_sql;
pub(crate) mod hooks;
pub(crate) mod key_cache;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod keys_sql;
pub(crate) mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod migrate;
mod notify;
mod paging;
#[cfg(feature = "postgres")]
mod postgres;
pub(crate) mod read;
mod replay;
pub(crate) mod requests;
mod retention;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod retention_sql;
mod retry;
mod rotation;
mod snapshots;
pub(crate) mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
pub(crate) mod storage;
mod stream_keys;
pub(crate) mod stream_rows;
mod streams;

use std::sync::Arc;
use std::time::Duration;

pub use append::{AppendResult, WrittenEvent};
pub use builder::{DEFAULT_MAX_EVENT_SIZE, DEFAULT_MAX_EVENTS_PER_APPEND, StoreBuilder};
pub use connect::{DEFAULT_CONNECT_TIMEOUT, StoreTarget};
pub use dictionaries::{DICTIONARY_MAX_BYTES, DICTIONARY_SAMPLE_EVENTS, TrainedDictionary};
pub use migrate::Migrations;
pub use rotation::{KeyRotation, RotationProgress};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteDurability;
pub use storage::StorageStats;
pub use stream_keys::ShreddedEvents;

pub(crate) use self::key_cache::PageKeys;

use self::backend::Backend;
pub(crate) use self::backend::StoredSnapshot;
pub(crate) use self::backend::WindowLimit;
use self::paging::RowsHint;
use self::retry::RetryPolicy;
use crate::codec::Codec;
use crate::error::Result;
use crate::read::LogPosition;
use crate::retention::rules::RulesCache;
use crate::text;
use crate::upcast::UpcastTable;

/// The default byte budget of a page of a read (a page of [`Store::read_stream`],
/// [`Store::read_all`] or an aggregate's replay; see
/// [`StoreBuilder::read_budget_bytes`]) and of a window of the log (a projection's batch,
/// an outbox processor's or a re-encryption's window): 32 MiB of stored payloads. A page
/// ends at the event that reaches it, or at its event count, whichever comes first.
pub const DEFAULT_WINDOW_BYTES: usize = 32 << 20;

/// The store's limits and read settings, from the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest JSON payload an append accepts, in bytes.
    pub max_event_size: usize,
    /// Most events in one append.
    pub max_events_per_append: usize,
    /// Events fetched per round trip by reads.
    pub page_size: usize,
    /// Bytes of stored payloads a page of a read stops at (the event that reaches them is
    /// the page's last).
    pub read_budget: usize,
    /// How long `read_all` waits for events held back by running transactions.
    pub settle_timeout: Duration,
    /// Whether the public reads return undecodable events (payload left out) rather than
    /// an error item.
    pub keep_undecodable: bool,
}

/// An event store. Cheap to clone: clones share the connection pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> chronicle::Result<()> {
/// use chronicle::{Direction, ExpectedVersion, NewEvent, Store};
/// use futures::TryStreamExt;
/// use serde_json::json;
///
/// let store = Store::open("sqlite::memory:").await?;
/// store
///     .append("account-1", ExpectedVersion::NoStream, vec![
///         NewEvent::new("account.opened", json!({ "owner": "ada" })),
///     ])
///     .await?;
///
/// let events: Vec<_> = store
///     .read_stream("account-1", 1, Direction::Forward)
///     .try_collect()
///     .await?;
/// assert_eq!(events[0].json()?["owner"], "ada");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Arc<dyn Backend>,
    /// What the backend can do, read once at open.
    capabilities: backend::Capabilities,
    codec: Codec,
    retry: RetryPolicy,
    upcasters: UpcastTable,
    /// Projections run inside every append's transaction.
    inline: hooks::AppendHooks,
    limits: Limits,
    /// Bumped after every append that wrote events (and, on PostgreSQL, on every
    /// notification of another process's append): wakes the projections.
    appended: tokio::sync::watch::Sender<u64>,
    /// Whether a task forwards the backend's append feed into `appended`.
    listening: std::sync::Mutex<bool>,
    /// The retention policies in force, as reads check them.
    retention: RulesCache,
    /// Per-stream data keys: whether streams get one, and the unwrapped ones.
    keys: key_cache::StreamKeys,
    /// The compression dictionaries loaded, and the active one.
    dictionaries: dictionaries::DictionaryCache,
    /// Wakes the task that announces this store's appends to other processes, where the
    /// backend can (PostgreSQL).
    announcer: Option<Arc<tokio::sync::Notify>>,
    /// How many rows a page of one stream asks for (on a backend that sends every row).
    stream_rows: RowsHint,
    /// How many rows a window of the log asks for (on a backend that sends every row).
    log_rows: RowsHint,
}

impl Store {
    /// Opens the store at `target` (a URL, or the driver's options or pool: see
    /// [`StoreTarget`]) with default settings; see [`StoreBuilder`] for the URLs and
    /// settings.
    ///
    /// # Errors
    /// As [`StoreBuilder::open`].
    pub async fn open(target: impl Into<StoreTarget>) -> Result<Store> {
        Store::builder(target).open().await
    }

    /// A builder for a store at `target`: a URL (`&str`, `String`), a `PgPool`,
    /// `PgConnectOptions` or `SqliteConnectOptions` ([`StoreTarget`]).
    pub fn builder(target: impl Into<StoreTarget>) -> StoreBuilder {
        StoreBuilder::new(target)
    }

    /// Applies the pending migrations at `target` without opening a store (the deploy
    /// step), and returns their names; for a PostgreSQL schema other than `public`, or TLS
    /// settings, use [`StoreBuilder::migrate`].
    ///
    /// # Errors
    /// As [`StoreBuilder::migrate`].
    pub async fn migrate(target: impl Into<StoreTarget>) -> Result<Vec<String>> {
        Store::builder(target).migrate().await
    }

    fn from_parts(
        backend: Arc<dyn Backend>,
        codec: Codec,
        retry: RetryPolicy,
        upcasters: UpcastTable,
        inline: hooks::AppendHooks,
        limits: Limits,
        per_stream_keys: bool,
    ) -> Self {
        let capabilities = backend.capabilities();
        let announcer = (capabilities.append_notices == backend::AppendNotices::OtherProcesses)
            .then(|| Arc::new(tokio::sync::Notify::new()));
        let sends_every_row = capabilities.answers == backend::Answers::Whole;
        let store = Store {
            inner: Arc::new(Inner {
                backend,
                capabilities,
                codec,
                retry,
                upcasters,
                inline,
                limits,
                appended: tokio::sync::watch::Sender::new(0),
                listening: std::sync::Mutex::new(false),
                announcer: announcer.clone(),
                retention: RulesCache::new(Duration::from_secs(1)),
                keys: key_cache::StreamKeys::new(per_stream_keys),
                dictionaries: dictionaries::DictionaryCache::default(),
                stream_rows: RowsHint::new(
                    sends_every_row,
                    RowsHint::first_stream_rows(limits.read_budget, limits.max_event_size),
                ),
                log_rows: RowsHint::new(sends_every_row, paging::FIRST_WINDOW_ROWS),
            }),
        };
        if let Some(wake) = announcer {
            tokio::spawn(notify::announce_appends(Arc::downgrade(&store.inner), wake));
        }
        store
    }

    /// The checkpoint of the projection `name`: where in the global log it stopped, or
    /// `None` when it has not committed a batch yet.
    ///
    /// # Errors
    /// [`ValidationError::InvalidText`](crate::ValidationError::InvalidText) for a name
    /// no projection can have (see [`MAX_NAME_LEN`](crate::MAX_NAME_LEN)); connection
    /// errors.
    pub async fn checkpoint(&self, name: &str) -> Result<Option<LogPosition>> {
        text::check_name("checkpoint name", name)?;
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("checkpoint", || backend.checkpoint(name))
            .await
    }

    /// The end of the global log now: the cursor after the last event that
    /// [`Store::read_all`] from [`LogPosition::START`] would return. To follow the log
    /// from here on (a `tail -f`), pass it to `read_all` and go on from the last event
    /// read. On PostgreSQL, events of transactions still running, or committed behind one
    /// still running, lie after it: they come with the reads that follow.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn log_end(&self) -> Result<LogPosition> {
        let backend = &self.inner.backend;
        self.inner.retry.run("log_end", || backend.log_end()).await
    }

    /// `sqlite`, `postgres` or `memory`.
    pub fn backend_kind(&self) -> &'static str {
        self.inner.capabilities.kind
    }

    /// The pool an application reads its read models through, when the store is SQLite
    /// or memory (`None` otherwise). On memory: the read models' embedded database (one
    /// connection, held by a projection's batch that runs portable SQL). On SQLite: the store's readers' pool, in WAL mode never blocked by the
    /// writer. Writing through it is possible (your own tables) but waits for chronicle's
    /// write lock, up to the busy timeout; an in-memory database (`sqlite::memory:`) has a
    /// single connection, shared with chronicle's writes, so do not hold one from it.
    /// For statements that also run on PostgreSQL, see [`Store::fetch_all`].
    #[cfg(feature = "sqlite")]
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        self.inner.backend.sqlite_pool()
    }

    /// The store's pool, when the store is PostgreSQL (`None` otherwise). Its connections
    /// have the store's [schema](StoreBuilder::schema) first on their `search_path`
    /// (chronicle sets it on a pool of its own, and checks it on one it is given), so read
    /// models a projection created without naming a schema (in its
    /// [`setup`](crate::Projection::setup) hook) are found by unqualified names here too.
    /// Closed by [`Store::close`] when chronicle opened it.
    #[cfg(feature = "postgres")]
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        self.inner.backend.postgres_pool()
    }

    /// Runs a read of [portable SQL](crate::Sql) on the store's database and returns its
    /// rows: the application's side of a read model that a projection writes with the
    /// same statements ([`ProjectionContext::execute`](crate::ProjectionContext::execute)).
    /// On SQLite it runs on the readers' pool (on an in-memory database, the one
    /// connection, which waits while a projection's batch holds it), on PostgreSQL in the
    /// store's schema ([`Store::postgres_pool`]).
    ///
    /// # Errors
    /// [`Error::Sql`](crate::Error::Sql) when the database refuses or fails the statement (its source is
    /// sqlx's error); [`Error::SqlUnavailable`](crate::Error::SqlUnavailable) on the memory store
    /// built without the `sqlite` feature. The memory store keeps its read models in an
    /// embedded SQLite database in memory ([`Store::sqlite_pool`] is its pool).
    pub async fn fetch_all(&self, sql: impl Into<crate::Sql>) -> Result<Vec<crate::SqlRow>> {
        self.sql_target().fetch_all(sql.into()).await
    }

    /// [`Store::fetch_all`], for the first row only (`None` when there is none).
    ///
    /// # Errors
    /// As [`Store::fetch_all`].
    pub async fn fetch_optional(
        &self,
        sql: impl Into<crate::Sql>,
    ) -> Result<Option<crate::SqlRow>> {
        self.sql_target().fetch_optional(sql.into()).await
    }

    /// Where the application's portable SQL runs.
    fn sql_target(&self) -> crate::portable::Target<'_> {
        #[cfg(feature = "sqlite")]
        if let Some(pool) = self.sqlite_pool() {
            return crate::portable::Target::SqlitePool(pool);
        }
        #[cfg(feature = "postgres")]
        if let Some(pool) = self.postgres_pool() {
            return crate::portable::Target::PgPool(pool);
        }
        crate::portable::Target::None(
            "no SQL database: the memory store keeps read models only with the `sqlite` feature",
        )
    }

    /// One round trip to the database, timed: what a health check asks. The memory store
    /// answers at once.
    ///
    /// # Errors
    /// Connection errors (retried as every operation is).
    #[tracing::instrument(name = "chronicle.ping", skip(self), err(level = "debug"))]
    pub async fn ping(&self) -> Result<std::time::Duration> {
        let backend = &self.inner.backend;
        let started = std::time::Instant::now();
        self.inner.retry.run("ping", || backend.ping()).await?;
        Ok(started.elapsed())
    }

    /// What the store holds: streams, events, snapshots and bytes ([`StorageStats`] says
    /// which backend estimates and which counts).
    ///
    /// # Errors
    /// Connection errors.
    #[tracing::instrument(name = "chronicle.storage", skip(self), err(level = "debug"))]
    pub async fn storage(&self) -> Result<StorageStats> {
        let backend = &self.inner.backend;
        self.inner.retry.run("storage", || backend.storage()).await
    }

    /// Tries to take projection `name`'s lease; `None` while another instance holds it.
    pub(crate) async fn try_lease(&self, name: &str) -> Result<Option<Box<dyn backend::Lease>>> {
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("lease", || backend.try_lease(name))
            .await
    }

    /// Whether the store keeps the outbox's requests: every backend of chronicle's does
    /// (memory since slice 17); a backend written against the seam may not.
    pub(crate) fn keeps_outbox(&self) -> bool {
        self.inner.capabilities.outbox == backend::Support::Supported
    }

    /// The highest global position taken so far.
    pub(crate) async fn last_position(&self) -> Result<u64> {
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("last_position", || backend.last_position())
            .await
    }

    /// Opens a batch's transaction (a projection's, the outbox's).
    pub(crate) async fn begin_batch(&self, flush: batch::Flush) -> Result<Box<dyn batch::DynTx>> {
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("begin_batch", || backend.begin_batch(flush))
            .await
    }

    /// Opens a transaction that only reads (never SQLite's write lock).
    pub(crate) async fn begin_read(&self) -> Result<Box<dyn batch::DynTx>> {
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("begin_read", || backend.begin_read())
            .await
    }

    /// Closes the store's connections, waiting for operations in flight to return them.
    /// Every clone of the store is closed; on the SQL backends later operations fail with
    /// [`Error::Connection`](crate::Error::Connection) (the memory backend has nothing to close). Dropping the last clone closes the connections too, without
    /// waiting.
    pub async fn close(&self) {
        self.inner.backend.close().await;
    }
}
