//! [`StoreBuilder`]: every setting of a store, with the defaults a new user should get.

#[cfg(feature = "postgres")]
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgSslMode};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::SqliteConnectOptions;

use super::backend::Backend;
#[cfg(feature = "postgres")]
use super::connect::PgTls;
use super::connect::{DEFAULT_CONNECT_TIMEOUT, StoreTarget, redact_url};
use super::hooks::{AppendHook, AppendHooks};
use super::memory::MemoryBackend;
use super::migrate::Migrations;
#[cfg(feature = "postgres")]
use super::postgres::{PgSource, PostgresBackend, PostgresConfig};
use super::retry::RetryPolicy;
#[cfg(feature = "sqlite")]
use super::sqlite::{SQLITE_MAX_EVENTS_PER_APPEND, SqliteBackend, SqliteConfig, SqliteDurability};
use super::{DEFAULT_WINDOW_BYTES, Store};
use crate::codec::{Codec, Compression, KeyRing};
use crate::domain_event::DomainEvent;
use crate::error::{Result, ValidationError};
use crate::upcast::{UpcastTable, Upcasters};

/// The default `max_event_size`: 1 MiB.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 1 << 20;
/// The longest `log_settle_timeout` (longer ones are cut to it).
const MAX_SETTLE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Compressed payloads decompress to at most `max(max_event_size, this)` bytes.
const MIN_DECODE_LIMIT: usize = 16 << 20;

/// The default `max_events_per_append`.
pub const DEFAULT_MAX_EVENTS_PER_APPEND: usize = 1000;

/// Configures and opens a [`Store`]. The backend is chosen by the URL:
///
/// | URL | backend |
/// | --- | --- |
/// | `sqlite://path/to/file.db` | SQLite file, created when missing, WAL mode |
/// | `sqlite::memory:` | SQLite in memory |
/// | `postgres://user@host/db` (or `postgresql://`) | PostgreSQL |
/// | `memory:` | chronicle's in-memory store |
///
/// or by the driver's options or pool instead of a URL: see [`StoreTarget`].
///
/// ```
/// # async fn demo() -> chronicle::Result<()> {
/// use std::time::Duration;
/// use chronicle::{Compression, KeyRing, Store};
///
/// let store = Store::builder("sqlite://events.db")
///     .compression(Compression::zstd().min_size(512))
///     .encryption(KeyRing::new("2026-11", KeyRing::generate_key())?)
///     .max_event_size(256 * 1024)
///     .operation_timeout(Duration::from_secs(5))
///     .open()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `open` is awaited"]
pub struct StoreBuilder {
    target: StoreTarget,
    compression: Option<Compression>,
    keys: Option<KeyRing>,
    accept_unencrypted: bool,
    max_event_size: usize,
    max_events_per_append: usize,
    retry: RetryPolicy,
    pool_size: u32,
    schema: String,
    #[cfg(feature = "sqlite")]
    durability: SqliteDurability,
    page_size: usize,
    read_budget: usize,
    settle_timeout: Duration,
    upcasters: UpcastTable,
    inline: AppendHooks,
    per_stream_keys: bool,
    keep_undecodable: bool,
    connect_timeout: Duration,
    migrations: Migrations,
    #[cfg(feature = "postgres")]
    pg_tls: PgTls,
}

impl StoreBuilder {
    pub(crate) fn new(target: impl Into<StoreTarget>) -> Self {
        StoreBuilder {
            target: target.into(),
            compression: None,
            keys: None,
            accept_unencrypted: false,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
            max_events_per_append: DEFAULT_MAX_EVENTS_PER_APPEND,
            retry: RetryPolicy::default(),
            pool_size: 10,
            schema: "public".to_owned(),
            #[cfg(feature = "sqlite")]
            durability: SqliteDurability::Full,
            page_size: 512,
            read_budget: DEFAULT_WINDOW_BYTES,
            settle_timeout: Duration::from_secs(5),
            upcasters: UpcastTable::default(),
            inline: AppendHooks::default(),
            per_stream_keys: false,
            keep_undecodable: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            migrations: Migrations::Apply,
            #[cfg(feature = "postgres")]
            pg_tls: PgTls::default(),
        }
    }

    /// Compresses payloads with zstd (off by default).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// Encrypts payloads with XChaCha20-Poly1305 under the ring's active key (off by
    /// default). Stores that read encrypted events need a ring holding their keys.
    pub fn encryption(mut self, keys: KeyRing) -> Self {
        self.keys = Some(keys);
        self
    }

    /// With [`encryption`](Self::encryption): gives each stream a data key of its own,
    /// created on its first write and stored wrapped by the ring's active key, and
    /// encrypts the stream's payloads and snapshots with it (off by default). Needed by
    /// [`Store::forget`](crate::Store::forget) (crypto-shredding). A stream's first
    /// append costs three more round trips (the key's lookup, insert and read back);
    /// unwrapped keys are cached. So does every [`Store::raise`](crate::Store::raise),
    /// whose events each go to a new stream. Stores that only read need the ring, not
    /// this setting.
    pub fn per_stream_keys(mut self, enabled: bool) -> Self {
        self.per_stream_keys = enabled;
        self
    }

    /// With [`encryption`](Self::encryption): also read payloads that are not encrypted
    /// (rows written before encryption was turned on). Off by default: a store that
    /// encrypts refuses plain payloads with
    /// [`CodecError::NotEncrypted`](crate::CodecError::NotEncrypted), so nobody can swap a
    /// payload for plain JSON behind its back.
    pub fn accept_unencrypted_payloads(mut self, accept: bool) -> Self {
        self.accept_unencrypted = accept;
        self
    }

    /// Has the reads ([`Store::read_stream`], [`Store::read_all`], [`Store::query`],
    /// [`Store::event_by_id`]) return an event whose payload cannot be decoded (its key is
    /// not in the ring, or there is no ring; its stream was forgotten; its bytes are
    /// damaged) with an empty payload and the reason in
    /// [`RecordedEvent::payload_error`](crate::RecordedEvent::payload_error), in place of
    /// an error item (off by default). For tools that show events without being able to
    /// read them all, such as the `chronicle` command-line tool. Projections, the outbox
    /// and aggregate loads are not affected: they fail on such events as before.
    pub fn keep_undecodable_payloads(mut self, keep: bool) -> Self {
        self.keep_undecodable = keep;
        self
    }

    /// Registers the upcaster of `event_type`: given a payload and the schema version it
    /// is in, it returns the payload in the next version. Typed reads
    /// ([`Store::decode_event`](crate::Store::decode_event), repositories) apply it as
    /// many times as it takes to reach the version the code declares. Only a second
    /// upcaster for the same type is checked at open; [`StoreBuilder::upcasters`] also
    /// checks the type, the chain and the version against the event enum, and adds
    /// renames, splits and dropped types.
    ///
    /// ```
    /// # async fn demo() -> chronicle::Result<()> {
    /// use chronicle::Store;
    ///
    /// // v1 had `amount` in cents; v2 has `amount` and `currency`.
    /// let store = Store::builder("sqlite://events.db")
    ///     .upcast("account.Deposited", |mut payload, from_version| {
    ///         if from_version == 1 {
    ///             payload["currency"] = "EUR".into();
    ///         }
    ///         payload
    ///     })
    ///     .open()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn upcast(
        mut self,
        event_type: impl Into<String>,
        upcaster: impl Fn(serde_json::Value, u32) -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.upcasters.register(event_type.into(), upcaster);
        self
    }

    /// Registers the upcasters of the event type `E`: new schema versions (steps),
    /// renamed types, split events and dropped types (see [`Upcasters`]). They are
    /// checked against `E` when the store opens. Call it once per event type; the rules
    /// of all calls apply to every typed read.
    pub fn upcasters<E: DomainEvent>(mut self, upcasters: Upcasters<E>) -> Self {
        self.upcasters.register_set(upcasters);
        self
    }

    /// Adds work to every append's transaction (an inline projection: see
    /// `StoreBuilder::inline_projection` in `projection/inline.rs`).
    pub(crate) fn append_hook(mut self, hook: Arc<dyn AppendHook>) -> Self {
        self.inline.register(hook);
        self
    }

    /// The largest JSON payload accepted, in bytes (default 1 MiB).
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// The most events one append may carry (default 1000; on SQLite at most 2978).
    pub fn max_events_per_append(mut self, count: usize) -> Self {
        self.max_events_per_append = count;
        self
    }

    /// How often an operation is tried when the connection breaks (default 3 attempts), and
    /// the delay before the first retry (default 50 ms, doubling after each).
    pub fn retries(mut self, attempts: u32, delay: Duration) -> Self {
        self.retry.attempts = attempts.max(1);
        self.retry.delay = delay;
        self
    }

    /// [`StoreBuilder::retries`] with either part left as it is.
    pub(crate) fn retries_of(mut self, attempts: Option<u32>, delay: Option<Duration>) -> Self {
        if let Some(attempts) = attempts {
            self.retry.attempts = attempts.max(1);
        }
        if let Some(delay) = delay {
            self.retry.delay = delay;
        }
        self
    }

    /// Fails an operation with [`Error::Timeout`](crate::Error::Timeout) when one attempt
    /// takes longer than this (default: no limit). Also bounds waiting for a pooled
    /// connection and SQLite's wait for the write lock, and becomes PostgreSQL's
    /// `statement_timeout`, so the server stops the statement too (on chronicle's own
    /// pool: on a pool of the application's, set `statement_timeout` in its options).
    ///
    /// As with a lost connection, the caller cannot know whether a timed-out append
    /// committed in the last instant: re-send the same events (same ids) to find out; the
    /// store recognises a batch it already holds.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.retry.timeout = Some(timeout);
        self
    }

    /// How long opening the store waits for its first connection, TLS handshake and
    /// authentication included (default 5 s). A server that does not answer fails the
    /// open with [`Error::Connect`](crate::Error::Connect) of kind
    /// [`TimedOut`](crate::ConnectErrorKind::TimedOut) after this; one that refuses, or
    /// rejects the credentials, fails at once. Also bounds the connection a projection's
    /// lease opens on PostgreSQL.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// What the open does about pending migrations: apply them (the default) or only
    /// check, failing with [`Error::PendingMigrations`](crate::Error::PendingMigrations)
    /// when the database is behind. See [`StoreBuilder::migrate`] for the deploy step.
    pub fn migrations(mut self, migrations: Migrations) -> Self {
        self.migrations = migrations;
        self
    }

    /// PostgreSQL's `sslmode`, over the URL's: `Disable`, `Prefer` (sqlx's default: TLS
    /// when the server offers it, the certificate unchecked), `Require` (TLS, the
    /// certificate unchecked), `VerifyCa` (the certificate chains to a trusted root) or
    /// `VerifyFull` (and names the host connected to). The trusted roots are Mozilla's
    /// (webpki-roots) plus [`pg_ssl_root_cert`](Self::pg_ssl_root_cert).
    ///
    /// For a URL or [`PgConnectOptions`]; a pool of the application's brings its own TLS
    /// settings, and these are refused with it.
    #[cfg(feature = "postgres")]
    pub fn pg_ssl_mode(mut self, mode: PgSslMode) -> Self {
        self.pg_tls.mode = Some(mode);
        self
    }

    /// A PEM file of root certificates to trust for PostgreSQL's `verify-ca` and
    /// `verify-full` (the URL's `sslrootcert`), such as a cloud provider's CA bundle.
    #[cfg(feature = "postgres")]
    pub fn pg_ssl_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.pg_tls.root_cert = Some(path.into());
        self
    }

    /// A client certificate and its private key (PEM files: the URL's `sslcert` and
    /// `sslkey`), for servers that authenticate clients by certificate.
    #[cfg(feature = "postgres")]
    pub fn pg_ssl_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.pg_tls.client = Some((cert.into(), key.into()));
        self
    }

    /// The number of database connections (default 10; SQLite writes always use one).
    /// Ignored with a pool of the application's, which keeps its own size.
    pub fn pool_size(mut self, connections: u32) -> Self {
        self.pool_size = connections;
        self
    }

    /// The PostgreSQL schema the store lives in (default `public`); created when missing
    /// (and migrations are applied). Several stores can share one database in separate
    /// schemas. With a pool of the application's ([`StoreTarget::PgPool`]) the schema must
    /// come first on the pool's `search_path`: the open checks it.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// SQLite's durability (default [`SqliteDurability::Full`]).
    #[cfg(feature = "sqlite")]
    pub fn sqlite_durability(mut self, durability: SqliteDurability) -> Self {
        self.durability = durability;
        self
    }

    /// How many events a read fetches per round trip at most (default 512): a page of
    /// [`Store::read_stream`] or [`Store::read_all`]. An aggregate load's replay reads
    /// larger pages: 4 pages with the stream's head and snapshot, then 8, then 16 at most.
    /// A page also ends at [`read_budget_bytes`](Self::read_budget_bytes), whichever
    /// comes first.
    pub fn page_size(mut self, events: usize) -> Self {
        self.page_size = events.max(1);
        self
    }

    /// How many bytes of stored payloads a page of a read holds (default
    /// [`DEFAULT_WINDOW_BYTES`], 32 MiB; at least 1): a page of [`Store::read_stream`],
    /// [`Store::read_all`] or of an aggregate load's replay ends at the event whose stored
    /// payload reaches it, or at its [`page_size`](Self::page_size), whichever comes
    /// first. A page holds at least one event, so an event larger than the budget still
    /// reads. Reads hold about two pages in memory (the next one loads while the current
    /// one is consumed), so about twice this, plus an event, whatever the events' sizes.
    /// The bytes are as stored: a compressed payload decodes larger.
    pub fn read_budget_bytes(mut self, bytes: usize) -> Self {
        self.read_budget = bytes.max(1);
        self
    }

    /// How long [`Store::read_all`] waits, at the end of the log, for events that committed
    /// before the read began but sit behind a transaction still running (PostgreSQL only;
    /// default 5 s, at most a day).
    pub fn log_settle_timeout(mut self, timeout: Duration) -> Self {
        self.settle_timeout = timeout.min(MAX_SETTLE_TIMEOUT);
        self
    }

    /// Connects, applies pending migrations (or checks that there are none, with
    /// [`Migrations::Check`]) and returns the store.
    ///
    /// # Errors
    /// - [`ValidationError::Config`] for an unknown URL scheme or a bad setting;
    /// - [`ValidationError::Upcaster`] for upcasters that do not fit their event type;
    /// - [`Error::Connect`](crate::Error::Connect) when the database cannot be reached or
    ///   refuses the connection (within the [connect timeout](Self::connect_timeout)),
    ///   naming the host, port, database and user, and why;
    /// - [`Error::PendingMigrations`](crate::Error::PendingMigrations) with
    ///   [`Migrations::Check`] on a database that is behind.
    pub async fn open(mut self) -> Result<Store> {
        self.check_features()?;
        self.upcasters.check()?;
        self.inline.check()?;
        if self.per_stream_keys && self.keys.is_none() {
            return Err(ValidationError::Config(
                "per-stream keys are wrapped by the key ring: add encryption(ring)".to_owned(),
            )
            .into());
        }
        let backend = self.open_backend().await?;
        // Reads allow more than writes, so a store opened with a smaller limit still reads
        // what an earlier one wrote; the cap only guards against decompression bombs.
        let max_decoded = self.max_event_size.max(MIN_DECODE_LIMIT);
        let codec = Codec::new(self.compression, self.keys, max_decoded)
            .accept_unencrypted(self.accept_unencrypted);
        let store = Store::from_parts(
            backend,
            codec,
            self.retry,
            self.upcasters,
            self.inline,
            super::Limits {
                max_event_size: self.max_event_size,
                max_events_per_append: self.max_events_per_append,
                page_size: self.page_size,
                read_budget: self.read_budget,
                settle_timeout: self.settle_timeout,
                keep_undecodable: self.keep_undecodable,
            },
            self.per_stream_keys,
        );
        // The inline projections' tables, before the first append needs them.
        store.inner.inline.set_up(&store).await?;
        Ok(store)
    }

    /// Brings the database up to date without opening a store, and returns the names of
    /// the migrations it applied (`0007_lean_indexes`; empty when there were none): the
    /// step a deployment runs before it starts the application, with a role that may
    /// change the schema, so that the application can open with
    /// [`Migrations::Check`] and a role that may not. On PostgreSQL the schema
    /// ([`schema`](Self::schema)) is created when it is missing. The target, schema, TLS
    /// settings and timeouts are the builder's; the other settings are not used. Safe to
    /// run from several processes at once.
    ///
    /// ```
    /// # async fn demo() -> chronicle::Result<()> {
    /// use chronicle::Store;
    ///
    /// let applied = Store::builder("postgres://deployer@db.internal/app")
    ///     .schema("events")
    ///     .migrate()
    ///     .await?;
    /// println!("applied {applied:?}");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`open`](Self::open), and a database error when a migration fails (nothing of
    /// it is kept: each run is one transaction).
    pub async fn migrate(self) -> Result<Vec<String>> {
        match self.backend_source()? {
            Source::Memory | Source::Custom(_) => Ok(Vec::new()),
            #[cfg(feature = "sqlite")]
            Source::Sqlite(options, config) => SqliteBackend::migrate(*options, &config).await,
            #[cfg(feature = "postgres")]
            Source::Postgres(source, config) => PostgresBackend::migrate(source, &config).await,
        }
    }

    async fn open_backend(&self) -> Result<Arc<dyn Backend>> {
        Ok(match self.backend_source()? {
            Source::Memory => Arc::new(MemoryBackend::default()),
            Source::Custom(backend) => backend,
            #[cfg(feature = "sqlite")]
            Source::Sqlite(options, config) => {
                if self.max_events_per_append > SQLITE_MAX_EVENTS_PER_APPEND {
                    return Err(ValidationError::Config(format!(
                        "max_events_per_append is {}; SQLite binds at most {SQLITE_MAX_EVENTS_PER_APPEND} events in one statement",
                        self.max_events_per_append
                    ))
                    .into());
                }
                Arc::new(SqliteBackend::open(*options, &config).await?)
            }
            #[cfg(feature = "postgres")]
            Source::Postgres(source, config) => {
                Arc::new(PostgresBackend::open(source, &config).await?)
            }
        })
    }

    /// The backend the target names, with its settings.
    fn backend_source(&self) -> Result<Source> {
        match &self.target {
            StoreTarget::Url(url) if url == "memory:" => {
                self.not_postgres("in memory")?;
                Ok(Source::Memory)
            }
            StoreTarget::Url(url) if url.starts_with("sqlite:") => self.sqlite_url(url),
            StoreTarget::Url(url)
                if url.starts_with("postgres://") || url.starts_with("postgresql://") =>
            {
                self.postgres_url(url)
            }
            StoreTarget::Url(url) => Err(ValidationError::Config(format!(
                "unknown store URL `{}`: expected sqlite://, sqlite::memory:, postgres:// or memory:",
                redact_url(url)
            ))
            .into()),
            #[cfg(feature = "postgres")]
            StoreTarget::Postgres(options) => Ok(self.postgres(PgSource::Options(Box::new(
                self.pg_tls.apply(options.clone())?,
            )))),
            #[cfg(feature = "postgres")]
            StoreTarget::PgPool(pool) => {
                if self.pg_tls.is_set() {
                    return Err(ValidationError::Config(
                        "the pg_ssl_* settings cannot change a pool's connections: set TLS on the PgConnectOptions the pool was built with"
                            .to_owned(),
                    )
                    .into());
                }
                Ok(self.postgres(PgSource::Pool(pool.clone())))
            }
            #[cfg(feature = "sqlite")]
            StoreTarget::Sqlite(options) => {
                self.not_postgres("SQLite")?;
                Ok(self.sqlite(options.clone()))
            }
            StoreTarget::Backend(backend) => {
                self.not_postgres("a backend of the seam")?;
                Ok(Source::Custom(Arc::clone(backend)))
            }
        }
    }

    /// A little under the operation timeout, so that a database that cannot be reached
    /// reports a connection error rather than a timeout.
    fn acquire_timeout(&self) -> Duration {
        self.retry
            .timeout
            .map_or(Duration::from_secs(30), |timeout| timeout.mul_f64(0.9))
    }

    /// Refuses the PostgreSQL TLS settings on a store of another kind.
    fn not_postgres(&self, what: &str) -> Result<()> {
        #[cfg(feature = "postgres")]
        if self.pg_tls.is_set() {
            return Err(ValidationError::Config(format!(
                "the pg_ssl_* settings are for PostgreSQL, and this store is {what}"
            ))
            .into());
        }
        let _ = what;
        Ok(())
    }

    #[cfg(feature = "sqlite")]
    fn sqlite(&self, options: SqliteConnectOptions) -> Source {
        Source::Sqlite(
            Box::new(options),
            SqliteConfig {
                durability: self.durability,
                pool_size: self.pool_size,
                busy_timeout: self.acquire_timeout(),
                migrations: self.migrations,
            },
        )
    }

    #[cfg(feature = "sqlite")]
    fn sqlite_url(&self, url: &str) -> Result<Source> {
        self.not_postgres("SQLite")?;
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| ValidationError::Config(format!("bad SQLite URL `{url}`: {error}")))?
            .create_if_missing(true);
        Ok(self.sqlite(options))
    }

    #[cfg(not(feature = "sqlite"))]
    fn sqlite_url(&self, _: &str) -> Result<Source> {
        Err(feature_disabled("sqlite", "a `sqlite:` store URL"))
    }

    #[cfg(feature = "postgres")]
    fn postgres(&self, source: PgSource) -> Source {
        Source::Postgres(
            source,
            PostgresConfig {
                schema: self.schema.clone(),
                pool_size: self.pool_size,
                acquire_timeout: self.acquire_timeout(),
                statement_timeout: self.retry.timeout,
                connect_timeout: self.connect_timeout,
                migrations: self.migrations,
            },
        )
    }

    #[cfg(feature = "postgres")]
    fn postgres_url(&self, url: &str) -> Result<Source> {
        // The URL itself is not repeated: it may hold a password.
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| ValidationError::Config(format!("bad PostgreSQL URL: {error}")))?;
        Ok(self.postgres(PgSource::Options(Box::new(self.pg_tls.apply(options)?))))
    }

    #[cfg(not(feature = "postgres"))]
    fn postgres_url(&self, _: &str) -> Result<Source> {
        Err(feature_disabled("postgres", "a `postgres://` store URL"))
    }

    /// Refuses settings that need a cargo feature this build lacks.
    fn check_features(&self) -> Result<()> {
        if self.compression.is_some() && !cfg!(feature = "compression") {
            return Err(feature_disabled(
                "compression",
                "`StoreBuilder::compression`",
            ));
        }
        if self.keys.is_some() && !cfg!(feature = "encryption") {
            return Err(feature_disabled("encryption", "`StoreBuilder::encryption`"));
        }
        Ok(())
    }
}

fn feature_disabled(feature: &'static str, wanted: &str) -> crate::Error {
    ValidationError::FeatureDisabled {
        feature,
        wanted: wanted.to_owned(),
    }
    .into()
}

/// A backend to open, with its settings.
enum Source {
    Memory,
    Custom(Arc<dyn Backend>),
    #[cfg(feature = "sqlite")]
    Sqlite(Box<SqliteConnectOptions>, SqliteConfig),
    #[cfg(feature = "postgres")]
    Postgres(PgSource, PostgresConfig),
}
