//! Where a store connects ([`StoreTarget`]: a URL, the driver's connect options, or a pool
//! the application already has), the builder's TLS settings for PostgreSQL, and the first
//! connection of an open: bounded by the connect timeout, and failing with an
//! [`Error::Connect`] that names the target (host, port, database, user; never the
//! password) and keeps the driver's error.
//!
//! Only the first connection is made here. sqlx's pool retries a refused connection until
//! its acquire timeout and then reports "pool timed out", losing the cause; connecting once
//! directly first makes a server that is down, a wrong password or an untrusted
//! certificate fail at once, with its cause. The pool is built after that.

use std::fmt;
use std::path::Path;
#[cfg(feature = "postgres")]
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "postgres")]
use sqlx::pool::PoolConnection;
#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgSslMode};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::SqliteConnectOptions;
#[cfg(feature = "postgres")]
use sqlx::{Connection, Postgres};

use super::backend::Backend;
use crate::error::{ConnectErrorKind, Error};
#[cfg(feature = "postgres")]
use crate::error::{Result, ValidationError};

/// The default connect timeout: how long opening a store waits for its first connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a store lives: what [`Store::builder`](crate::Store::builder),
/// [`Store::open`](crate::Store::open) and [`Store::migrate`](crate::Store::migrate) take.
///
/// A URL (`&str` or `String`) chooses the backend by its scheme, as before; the driver's
/// own connect options or an existing pool let an application use settings it already has
/// (certificates, IAM tokens, a `search_path`), or share its pool with its read models:
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use chronicle::Store;
/// use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
///
/// // The application's pool; chronicle's tables live in schema `events`, which must
/// // come first on the pool's search_path.
/// let options = PgConnectOptions::new()
///     .host("db.internal")
///     .database("app")
///     .options([("search_path", "events")]);
/// let pool = PgPoolOptions::new().max_connections(20).connect_with(options).await?;
/// let store = Store::builder(pool.clone()).schema("events").open().await?;
/// # Ok(()) }
/// ```
///
/// What chronicle needs from a pool it is given is in the README's "Deploying" section:
/// the schema first on its `search_path` (checked when the store opens), session-level
/// connections for LISTEN/NOTIFY and advisory locks, and on SQLite a writer connection of
/// chronicle's own (so SQLite takes options, not a pool).
#[derive(Clone)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "a builder's input, moved once; its size depends on the backends compiled in"
)]
pub enum StoreTarget {
    /// `sqlite://path`, `sqlite::memory:`, `postgres://…` / `postgresql://…` or `memory:`.
    Url(String),
    /// PostgreSQL, through a pool chronicle builds from these options (with the store's
    /// schema as `search_path`, its pool size and statement timeout).
    #[cfg(feature = "postgres")]
    Postgres(PgConnectOptions),
    /// PostgreSQL, through the application's pool: chronicle uses it as it is, and does
    /// not close it.
    #[cfg(feature = "postgres")]
    PgPool(PgPool),
    /// SQLite, through chronicle's writer connection and reader pool opened with these
    /// options (chronicle sets WAL, `synchronous`, the busy timeout and foreign keys off;
    /// whether a missing file is created stays the options' choice).
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteConnectOptions),
    /// A backend of the application's, written against [`chronicle::backend`]: see
    /// [`StoreTarget::backend`].
    ///
    /// [`chronicle::backend`]: crate::backend
    Backend(Arc<dyn Backend>),
}

impl StoreTarget {
    /// A store on `backend`, a storage engine written against the seam in
    /// [`chronicle::backend`](crate::backend). The store's settings apply as on any
    /// backend, except the PostgreSQL and SQLite ones, which are refused;
    /// [`StoreBuilder::migrate`](crate::StoreBuilder::migrate) does nothing (a backend
    /// prepares its own storage).
    pub fn backend(backend: impl Backend + 'static) -> Self {
        StoreTarget::Backend(Arc::new(backend))
    }
}

impl From<&str> for StoreTarget {
    fn from(url: &str) -> Self {
        StoreTarget::Url(url.to_owned())
    }
}

impl From<String> for StoreTarget {
    fn from(url: String) -> Self {
        StoreTarget::Url(url)
    }
}

impl From<&String> for StoreTarget {
    fn from(url: &String) -> Self {
        StoreTarget::Url(url.clone())
    }
}

#[cfg(feature = "postgres")]
impl From<PgConnectOptions> for StoreTarget {
    fn from(options: PgConnectOptions) -> Self {
        StoreTarget::Postgres(options)
    }
}

#[cfg(feature = "postgres")]
impl From<PgPool> for StoreTarget {
    fn from(pool: PgPool) -> Self {
        StoreTarget::PgPool(pool)
    }
}

#[cfg(feature = "postgres")]
impl From<&PgPool> for StoreTarget {
    fn from(pool: &PgPool) -> Self {
        StoreTarget::PgPool(pool.clone())
    }
}

#[cfg(feature = "sqlite")]
impl From<SqliteConnectOptions> for StoreTarget {
    fn from(options: SqliteConnectOptions) -> Self {
        StoreTarget::Sqlite(options)
    }
}

/// Never shows a password (sqlx's options print theirs).
impl fmt::Debug for StoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreTarget::Url(url) => f.debug_tuple("Url").field(&redact_url(url)).finish(),
            #[cfg(feature = "postgres")]
            StoreTarget::Postgres(options) => f
                .debug_tuple("Postgres")
                .field(&pg_target(options))
                .finish(),
            #[cfg(feature = "postgres")]
            StoreTarget::PgPool(pool) => f
                .debug_tuple("PgPool")
                .field(&pg_target(&pool.connect_options()))
                .finish(),
            #[cfg(feature = "sqlite")]
            StoreTarget::Sqlite(options) => f
                .debug_tuple("Sqlite")
                .field(&sqlite_target(options))
                .finish(),
            StoreTarget::Backend(backend) => f.debug_tuple("Backend").field(backend).finish(),
        }
    }
}

/// `url` with the password of its user info replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..authority_start],
                &authority[..colon],
                &url[authority_start + at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(feature = "postgres")]
/// The builder's TLS settings for PostgreSQL, laid over the URL's or the options' own
/// (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
#[derive(Debug, Clone, Default)]
pub(crate) struct PgTls {
    pub mode: Option<PgSslMode>,
    pub root_cert: Option<PathBuf>,
    pub client: Option<(PathBuf, PathBuf)>,
}

#[cfg(feature = "postgres")]
impl PgTls {
    pub(crate) fn is_set(&self) -> bool {
        self.mode.is_some() || self.root_cert.is_some() || self.client.is_some()
    }

    /// `options` with these settings. The files must be readable now: sqlx reads them
    /// only during the handshake, where a missing file looks like a broken socket.
    pub(crate) fn apply(&self, mut options: PgConnectOptions) -> Result<PgConnectOptions> {
        if let Some(mode) = self.mode {
            options = options.ssl_mode(mode);
        }
        if let Some(path) = &self.root_cert {
            readable(path, "root certificate (pg_ssl_root_cert)")?;
            options = options.ssl_root_cert(path);
        }
        if let Some((cert, key)) = &self.client {
            readable(cert, "client certificate (pg_ssl_client_cert)")?;
            readable(key, "client key (pg_ssl_client_cert)")?;
            options = options.ssl_client_cert(cert).ssl_client_key(key);
        }
        Ok(options)
    }
}

#[cfg(feature = "postgres")]
fn readable(path: &Path, what: &str) -> Result<()> {
    std::fs::File::open(path).map(drop).map_err(|error| {
        ValidationError::Config(format!(
            "the TLS {what} `{}` cannot be read: {error}",
            path.display()
        ))
        .into()
    })
}

#[cfg(feature = "postgres")]
/// How errors name a PostgreSQL target: host and port (or socket), database and user.
pub(crate) fn pg_target(options: &PgConnectOptions) -> String {
    let place = match options.get_socket() {
        Some(socket) => format!("socket {}", socket.display()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let user = options.get_username();
    // The server's default database is the user's name.
    let database = options.get_database().unwrap_or(user);
    format!("PostgreSQL at {place}, database `{database}`, user `{user}`")
}

#[cfg(feature = "sqlite")]
/// How errors name a SQLite target: its file.
pub(crate) fn sqlite_target(options: &SqliteConnectOptions) -> String {
    if sqlite_in_memory(options) {
        "SQLite in memory".to_owned()
    } else {
        format!("SQLite file `{}`", options.get_filename().display())
    }
}

#[cfg(feature = "sqlite")]
/// Whether the options open an in-memory database (`sqlite::memory:`, `mode=memory`,
/// `.in_memory(true)`, or the file name `:memory:`). sqlx has no getter for it, and its
/// `to_url_lossy` panics on the file names it gives in-memory databases, so this reads the
/// options' `Debug` form (a derived one).
pub(crate) fn sqlite_in_memory(options: &SqliteConnectOptions) -> bool {
    options.get_filename() == Path::new(":memory:")
        || format!("{options:?}").contains("in_memory: true")
}

/// The [`Error::Connect`] for a driver error raised while connecting to `target`.
pub(crate) fn connect_error(target: &str, error: sqlx::Error, unix_socket: bool) -> Error {
    Error::Connect {
        target: target.to_owned(),
        kind: ConnectErrorKind::of(&error, unix_socket),
        detail: error.to_string(),
        source: Some(error),
    }
}

#[cfg(feature = "postgres")]
fn timed_out(target: &str, after: Duration) -> Error {
    Error::Connect {
        target: target.to_owned(),
        kind: ConnectErrorKind::TimedOut,
        detail: format!("no connection within the connect timeout ({after:?})"),
        source: None,
    }
}

#[cfg(feature = "postgres")]
/// One connection with `options`, within `timeout`.
pub(crate) async fn pg_connect(
    options: &PgConnectOptions,
    timeout: Duration,
) -> Result<PgConnection> {
    let target = pg_target(options);
    match tokio::time::timeout(timeout, PgConnection::connect_with(options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(connect_error(
            &target,
            error,
            options.get_socket().is_some(),
        )),
        Err(_) => Err(timed_out(&target, timeout)),
    }
}

#[cfg(feature = "postgres")]
/// A connection from the application's `pool`, within `timeout`. When the pool gives
/// none within half of it, one direct connection with the pool's options finds out why
/// in the other half (the pool itself would only say that it timed out: it retries a
/// refused connection until its own acquire timeout).
pub(crate) async fn pg_acquire(
    pool: &PgPool,
    timeout: Duration,
) -> Result<PoolConnection<Postgres>> {
    let options = pool.connect_options();
    let target = pg_target(&options);
    if pool.is_closed() {
        return Err(Error::Connect {
            target,
            kind: ConnectErrorKind::Config,
            detail: "the pool given to the store is closed".to_owned(),
            source: None,
        });
    }
    let started = tokio::time::Instant::now();
    let failure = match tokio::time::timeout(timeout / 2, pool.acquire()).await {
        Ok(Ok(connection)) => return Ok(connection),
        Ok(Err(error)) => Some(error),
        Err(_) => None,
    };
    let left = timeout.saturating_sub(started.elapsed());
    // If this succeeds, the server answers and the pool is merely busy (or failing in a
    // way of its own, reported below).
    pg_connect(&options, left).await?;
    Err(match failure {
        Some(error) => connect_error(&target, error, options.get_socket().is_some()),
        None => Error::Connect {
            target,
            kind: ConnectErrorKind::TimedOut,
            detail: format!(
                "the pool gave no connection within {:?}, though the server answers: are all of its connections in use?",
                timeout / 2
            ),
            source: None,
        },
    })
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_debug_output() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/app?sslmode=require"),
            "postgres://app:***@db:5432/app?sslmode=require"
        );
        assert_eq!(redact_url("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
        let target = StoreTarget::from("postgres://app:s3cret@db/app");
        assert!(!format!("{target:?}").contains("s3cret"));
        let options = PgConnectOptions::new()
            .host("db")
            .username("app")
            .password("s3cret");
        let shown = format!("{:?}", StoreTarget::from(options.clone()));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("db:5432"), "{shown}");
        let builder = crate::Store::builder("postgres://app:s3cret@db/app");
        assert!(!format!("{builder:?}").contains("s3cret"));
        let builder = crate::Store::builder(options);
        assert!(!format!("{builder:?}").contains("s3cret"));
    }
}
