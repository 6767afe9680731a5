//! The one error type of chronicle, and its coarse classification.
//!
//! Every fallible operation returns [`Error`]. Messages name what was involved (the stream,
//! the event, the limit), and [`Error::kind`] sorts errors into the few classes a caller
//! branches on. [`Error::is_retryable`] says whether running the same operation again may
//! succeed (a dropped connection or a timeout), as opposed to errors that will repeat.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::codec::CodecError;
use crate::expected_version::ExpectedVersion;

/// A `Result` whose error is chronicle's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The coarse class of an [`Error`], for callers that branch on what went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The database could not be reached or the connection broke.
    Connection,
    /// The input was rejected before anything was written.
    Validation,
    /// The stream or event does not exist (or no longer does).
    NotFound,
    /// An optimistic-concurrency check failed, or an event id is already taken.
    Conflict,
    /// The operation did not finish within the configured time.
    Timeout,
    /// Stored bytes could not be decoded, decompressed or decrypted, or a stored row holds
    /// a value chronicle never writes ([`Error::CorruptRow`]).
    Codec,
    /// Anything else: an unexpected database answer or a broken invariant.
    Internal,
}

/// Everything that can go wrong in chronicle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream was not at the version the append expected. Nothing was written.
    #[error("wrong expected version on stream `{stream}`: expected {expected}, actual {}", describe_version(*actual))]
    Conflict {
        /// The stream appended to.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version at the time of the append; `None` when it did not exist.
        actual: Option<u64>,
    },

    /// An event id is already stored, and this append is not a replay of the append that
    /// stored it (other content, another stream or version, or only part of the batch).
    #[error(
        "event id {event_id} is already stored in stream `{existing_stream}`, and this append to `{stream}` is not a replay of it"
    )]
    EventIdReused {
        /// The stream appended to.
        stream: String,
        /// The id that is taken.
        event_id: Uuid,
        /// The stream that holds the stored event with that id.
        existing_stream: String,
    },

    /// [`Store::create_stream`](crate::Store::create_stream) found the stream already there.
    #[error("stream `{stream}` already exists")]
    StreamAlreadyExists {
        /// The stream asked for.
        stream: String,
    },

    /// The input was rejected before anything was written.
    #[error(transparent)]
    Validation(#[from] ValidationError),

    /// The stream does not exist.
    #[error("stream `{stream}` not found")]
    StreamNotFound {
        /// The stream asked for.
        stream: String,
    },

    /// The stream was deleted: soft-deleted streams reject appends until re-created,
    /// hard-deleted ones forever.
    #[error("stream `{stream}` is {}", if *hard { "hard-deleted (tombstoned)" } else { "deleted" })]
    StreamDeleted {
        /// The stream asked for.
        stream: String,
        /// Whether the deletion was permanent.
        hard: bool,
    },

    /// The database could not be reached or the connection broke during `operation`.
    #[error("connection failed during {operation}: {source}")]
    Connection {
        /// The store operation that was running.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// Opening a store (or [migrating](crate::StoreBuilder::migrate) one) could not connect
    /// to its database, or found the connection unusable for chronicle: the server refused
    /// or did not answer within the connect timeout, rejected the credentials or the
    /// database, the TLS handshake failed, or the configuration is wrong (say, a pool whose
    /// `search_path` is not the store's schema). `target` names the host, port, database and
    /// user (never the password), and the message says what to change. Retryable only when
    /// [`ConnectErrorKind::is_transient`].
    #[error("cannot connect to {target}: {kind}: {detail}{}", kind.hint().map(|hint| format!(" ({hint})")).unwrap_or_default())]
    Connect {
        /// What was connected to: `PostgreSQL at host:port, database `db`, user `u`` or
        /// `SQLite file `path``.
        target: String,
        /// What went wrong.
        kind: ConnectErrorKind,
        /// The cause in words: the driver's message, or chronicle's.
        detail: String,
        /// The driver's error, when the driver raised one.
        #[source]
        source: Option<sqlx::Error>,
    },

    /// The store was opened with [`Migrations::Check`](crate::Migrations::Check) and its
    /// database lacks migrations this version of chronicle needs. Nothing was changed: run
    /// the deploy step ([`StoreBuilder::migrate`](crate::StoreBuilder::migrate)), or open
    /// with [`Migrations::Apply`](crate::Migrations::Apply).
    #[error("{target} lacks migrations {}: run the deploy step (StoreBuilder::migrate) or open with Migrations::Apply", pending.join(", "))]
    PendingMigrations {
        /// The database (and on PostgreSQL the schema), named as in [`Error::Connect`].
        target: String,
        /// The missing migrations, oldest first, named as their files (`0007_lean_indexes`).
        pending: Vec<String>,
    },

    /// The database answered `operation` with an error chronicle did not expect.
    #[error("database error during {operation}: {source}")]
    Database {
        /// The store operation that was running.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// `operation` did not finish within the configured operation timeout.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// The store operation that was running.
        operation: &'static str,
        /// The configured limit.
        after: Duration,
    },

    /// A stored payload could not be decoded.
    #[error("cannot decode event {event_id} of stream `{stream}`: {source}")]
    Codec {
        /// The stream holding the event.
        stream: String,
        /// The event whose payload is unreadable.
        event_id: Uuid,
        /// What exactly failed.
        #[source]
        source: CodecError,
    },

    /// A stream's data key could not be wrapped, unwrapped or re-wrapped by the key ring:
    /// the ring lacks the key that wrapped it, or the stored key is damaged.
    #[error("the data key of stream `{stream}` (ring key `{key_id}`) is unusable: {source}")]
    StreamKey {
        /// The stream whose key it is.
        stream: String,
        /// The ring key that wraps it (or was to wrap it).
        key_id: String,
        /// What exactly failed.
        #[source]
        source: CodecError,
    },

    /// A stored compression dictionary cannot be used: its row fails its check
    /// ([`CodecError::DictionaryTampered`]) or is sealed by a key the ring lacks.
    #[error("compression dictionary {id} is unusable: {source}")]
    Dictionary {
        /// The dictionary's id.
        id: u32,
        /// What exactly failed.
        #[source]
        source: CodecError,
    },

    /// No compression dictionary could be trained
    /// ([`Store::train_compression_dictionary`](crate::Store::train_compression_dictionary)):
    /// too few events, or zstd's trainer failed on them.
    #[error("cannot train a compression dictionary on {samples} events: {source}")]
    DictionaryTraining {
        /// How many events' payloads were sampled.
        samples: u64,
        /// What failed.
        #[source]
        source: CodecError,
    },

    /// The stream was forgotten ([`Store::forget`](crate::Store::forget)): its data key is
    /// destroyed, and its events and snapshots can never be read again; nor can it be
    /// written.
    #[error("stream `{stream}` was forgotten{}: its data key is destroyed", event_id.map(|id| format!(" (event {id})")).unwrap_or_default())]
    Shredded {
        /// The forgotten stream.
        stream: String,
        /// The event whose payload was asked for, if any.
        event_id: Option<Uuid>,
    },

    /// An aggregate cannot be loaded: events it needs were removed by a retention policy
    /// (or hidden by one), and no snapshot it can use covers them. A snapshot-aware
    /// policy counts the newest snapshot whatever its schema version: write a snapshot of
    /// the current schema before enforcing after changing it.
    #[error(
        "stream `{stream}` cannot be loaded: its event at version {version} is gone (retention) and no usable snapshot covers it"
    )]
    HistoryUnavailable {
        /// The aggregate's stream.
        stream: String,
        /// The first version missing.
        version: u64,
    },

    /// A payload decoded fine but is not the JSON the caller asked for.
    #[error(
        "payload of event {event_id} (`{event_type}` in stream `{stream}`) does not deserialize: {source}"
    )]
    Payload {
        /// The stream holding the event.
        stream: String,
        /// The event.
        event_id: Uuid,
        /// Its type.
        event_type: String,
        /// serde_json's account of the mismatch.
        #[source]
        source: serde_json::Error,
    },

    /// A stored event's type is not one the [`DomainEvent`](crate::DomainEvent) being
    /// decoded knows.
    #[error(
        "event {event_id} in stream `{stream}` has type `{event_type}`, which `{expected}` does not know"
    )]
    UnknownEventType {
        /// The stream holding the event.
        stream: String,
        /// The event.
        event_id: Uuid,
        /// Its stored type.
        event_type: String,
        /// The Rust type it was decoded into.
        expected: &'static str,
    },

    /// A stored event's schema version cannot be brought to the version the code reads:
    /// it is newer than the code (or the variant lost its `#[event(version = n)]`), or an
    /// upcaster on the way is missing. The message says which, and what to register.
    #[error("{}", schema_version_message(stream, *event_id, event_type, *stored, *current))]
    SchemaVersion {
        /// The stream holding the event.
        stream: String,
        /// The event.
        event_id: Uuid,
        /// Its type.
        event_type: String,
        /// The version stored (or reached by upcasting).
        stored: u32,
        /// The version the code reads.
        current: u32,
    },

    /// A payload stored in the schema version the code declares lacks a field the code
    /// needs: the variant's fields most likely changed without a new
    /// `#[event(version = n)]` (and an upcaster for the old version).
    #[error(
        "payload of event {event_id} (`{event_type}` in stream `{stream}`, schema version {version}) does not deserialize: {source}. \
         If the variant's fields changed since it was written, raise its version with `#[event(version = {})]` \
         and register an upcaster from version {version} (`Upcasters::step`)", version + 1
    )]
    UndeclaredSchemaChange {
        /// The stream holding the event.
        stream: String,
        /// The event.
        event_id: Uuid,
        /// Its type.
        event_type: String,
        /// The version stored, which the code also declares.
        version: u32,
        /// serde_json's account of the missing field.
        #[source]
        source: serde_json::Error,
    },

    /// An upcaster returned something it may not: a split's event of a type it does not
    /// declare, or renames and splits nested too deep.
    #[error("cannot upcast event {event_id} (`{event_type}` in stream `{stream}`): {reason}")]
    Upcast {
        /// The stream holding the event.
        stream: String,
        /// The event.
        event_id: Uuid,
        /// Its stored type.
        event_type: String,
        /// What went wrong.
        reason: String,
    },

    /// [`Store::decode_event`](crate::Store::decode_event) was asked for one domain event,
    /// and the upcasters turn the stored event into another number (a split, or a dropped
    /// type): use [`Store::decode_events`](crate::Store::decode_events).
    #[error(
        "event {event_id} (`{event_type}` in stream `{stream}`) decodes to {count} domain events (split or dropped by an upcaster); use `decode_events`"
    )]
    NotOneEvent {
        /// The stream holding the event.
        stream: String,
        /// The event.
        event_id: Uuid,
        /// Its stored type.
        event_type: String,
        /// How many domain events it decodes to.
        count: usize,
    },

    /// A stored row holds a value chronicle never writes (edited behind the store's back, or
    /// damaged): a negative or overflowing integer, a time no [`chrono::DateTime`] can hold,
    /// metadata that is not chronicle's JSON, an unknown stream status. It is never read as
    /// a default. The details are boxed to keep [`Error`] small.
    #[error(transparent)]
    CorruptRow(Box<CorruptRow>),

    /// A stored snapshot could not be decoded.
    #[error("cannot decode the snapshot of stream `{stream}` at version {version}: {source}")]
    SnapshotCodec {
        /// The stream.
        stream: String,
        /// The version the snapshot covers.
        version: u64,
        /// What exactly failed.
        #[source]
        source: CodecError,
    },

    /// A snapshot decoded fine but is not the JSON the caller asked for.
    #[error("snapshot of stream `{stream}` at version {version} does not deserialize: {source}")]
    SnapshotPayload {
        /// The stream.
        stream: String,
        /// The version the snapshot covers.
        version: u64,
        /// serde_json's account of the mismatch.
        #[source]
        source: serde_json::Error,
    },

    /// A projection is no longer running, so what was waited for will not happen; or,
    /// from [`ProjectionHandle::stop`](crate::ProjectionHandle::stop), it failed.
    #[error("projection `{name}` is {state}{}", last_error.as_deref().map(|error| format!(": {error}")).unwrap_or_default())]
    ProjectionStopped {
        /// The projection.
        name: String,
        /// `stopped` or `failed`.
        state: &'static str,
        /// The error that stopped it, if any, with the event it failed on.
        last_error: Option<String>,
        /// What failed it, as [`std::error::Error::source`]: the projection's own error
        /// (downcast it to its type), or chronicle's [`Error`] (say, an event that does not
        /// decode); `None` after a panic (its message is in `last_error`) or a stop.
        source: Option<SharedError>,
    },

    /// A projection's reset hook failed, so its rebuild did not start.
    #[error("projection `{name}` could not be reset for a rebuild: {source}")]
    ProjectionReset {
        /// The projection.
        name: String,
        /// The hook's error, as returned (downcast it to its type).
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A projection's [`setup`](crate::Projection::setup) hook failed: the projection did
    /// not start (an inline projection's store did not open).
    #[error("projection `{name}` could not be set up: {source}")]
    ProjectionSetup {
        /// The projection.
        name: String,
        /// The hook's error, as returned (downcast it to its type).
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A statement run through chronicle's portable SQL ([`Sql`](crate::Sql)) failed in
    /// the database: a syntax error, a missing table, a constraint, a lost connection.
    #[error("SQL statement `{statement}` failed: {source}")]
    Sql {
        /// The statement's text.
        statement: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// Portable SQL ([`Sql`](crate::Sql)) was run where there is no SQL database: on the
    /// memory store of a build without the `sqlite` feature, or from a projection context
    /// without a transaction.
    #[error("cannot run SQL statement `{statement}`: {reason}")]
    SqlUnavailable {
        /// The statement's text.
        statement: String,
        /// Why: "this projection context has no transaction", ….
        reason: &'static str,
    },

    /// A row of portable SQL ([`SqlRow::get`](crate::SqlRow::get)) has no column of that
    /// name.
    #[error("no column `{column}` in the rows of `{statement}`")]
    ColumnNotFound {
        /// The column asked for.
        column: String,
        /// The statement's text.
        statement: String,
    },

    /// A column of portable SQL ([`SqlRow::get`](crate::SqlRow::get)) holds a value that
    /// is not of the Rust type asked for (or out of its range).
    #[error("column `{column}` of `{statement}` holds {found}, which is not {expected}")]
    ColumnType {
        /// The column asked for.
        column: String,
        /// The statement's text.
        statement: String,
        /// The Rust type asked for: `i64`, `String`, … (for an `Option<T>`, `T`'s).
        expected: &'static str,
        /// What the column holds: `TEXT 'ada'`, `NULL`, an unsupported type.
        found: String,
    },

    /// An inline projection could not apply an append's events, so the append was rolled
    /// back: nothing was written.
    #[error("inline projection `{name}` refused the append to `{stream}`: {source}")]
    InlineProjection {
        /// The projection.
        name: String,
        /// The stream appended to.
        stream: String,
        /// The projection's error, as returned (downcast it to its type).
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A background task (an outbox scheduler, the retention enforcer, a window decoded off
    /// the runtime) panicked: a bug.
    #[error("{task} panicked: {message}")]
    TaskPanicked {
        /// The task.
        task: String,
        /// The panic's message.
        message: String,
    },

    /// A bus or a sink was used after it was closed.
    #[error("the {bus} is closed")]
    BusClosed {
        /// Which bus: "in-memory bus", a broker's address.
        bus: String,
    },

    /// A bus or a sink did not take an event: a broker that did not acknowledge it, a
    /// sink that failed.
    #[error("publishing event {event_id} (`{event_type}`) to {destination} failed: {source}")]
    Publish {
        /// Where it was going: a broker's address and subject, topic or stream key.
        destination: String,
        /// The event.
        event_id: Uuid,
        /// Its type.
        event_type: String,
        /// Whether sending it again may succeed (a connection lost, an ack that timed out).
        retryable: bool,
        /// The client's error, as it came (downcast it to its type).
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A broker did something other than publish fail: connecting, creating a consumer
    /// group or a subscription, acknowledging, closing.
    #[error("{operation} on {broker} failed: {source}")]
    Broker {
        /// Which broker: its address (without credentials).
        broker: String,
        /// What was being done, naming the stream, subject or group involved.
        operation: String,
        /// Whether doing it again may succeed (a connection refused or lost, a timeout).
        retryable: bool,
        /// The client's error, as it came (downcast it to its type).
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A message a broker delivered is not a chronicle event: a header is missing or does
    /// not parse, or the body is not JSON ([`bus::wire`](crate::bus::wire)). The message is
    /// dead-lettered, never handled.
    #[error("malformed message from {origin}: {reason}")]
    MalformedMessage {
        /// Where it came from: a subject, topic or stream key.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A backend written against [`chronicle::backend`](crate::backend) failed during
    /// `operation` with an error of its own ([`Error::backend`]).
    #[error("{backend} backend failed during {operation}: {source}")]
    Backend {
        /// The backend, as its [`Capabilities::kind`](crate::backend::Capabilities) names it.
        backend: &'static str,
        /// The store operation that was running.
        operation: &'static str,
        /// Whether running the operation again may succeed (a connection that broke,
        /// a timeout).
        retryable: bool,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A bug or a broken invariant; the message says which.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a store could not connect ([`Error::Connect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// Nothing listens at the host and port (or the Unix socket): the server is down or
    /// starting, or the address is wrong. Transient.
    Refused,
    /// The host cannot be reached: no route to it, or its name does not resolve.
    /// Transient.
    Unreachable,
    /// No answer within the connect timeout: the host is down or behind a firewall that
    /// drops packets, or the server is stalled. Transient.
    TimedOut,
    /// The server answered but cannot take a session now: starting up, shutting down, or
    /// out of connection slots. Transient.
    Unavailable,
    /// The connection broke during the handshake. Transient.
    Dropped,
    /// The server rejected the user or password, or the role may not log in or connect to
    /// the database.
    Authentication,
    /// The database does not exist on the server.
    UnknownDatabase,
    /// The TLS handshake failed: the server's certificate is not trusted by the root
    /// certificate given (or by the built-in roots), does not name the host (`verify-full`),
    /// or the server does not speak TLS while the settings require it.
    Tls,
    /// The settings are wrong or do not fit what chronicle needs: an unreadable certificate
    /// or key file, a server parameter the server refuses, a pool whose `search_path` is
    /// not the store's schema.
    Config,
    /// SQLite: the database file cannot be opened (a missing folder, no permission) or is
    /// not a database.
    File,
}

impl ConnectErrorKind {
    /// Whether connecting again unchanged may succeed (the server may come up, the network
    /// may heal); the other kinds repeat until a setting changes.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ConnectErrorKind::Refused
                | ConnectErrorKind::Unreachable
                | ConnectErrorKind::TimedOut
                | ConnectErrorKind::Unavailable
                | ConnectErrorKind::Dropped
        )
    }

    /// What to check or change, when that is known.
    fn hint(self) -> Option<&'static str> {
        Some(match self {
            ConnectErrorKind::Refused => {
                "is the server running and listening on that host and port?"
            }
            ConnectErrorKind::Unreachable => "check the host name and the network route to it",
            ConnectErrorKind::TimedOut => {
                "is the host up, and does a firewall let the port through? .connect_timeout(…) sets the wait"
            }
            ConnectErrorKind::Unavailable => {
                "the server is starting, stopping or full; try again later"
            }
            ConnectErrorKind::Dropped => return None,
            ConnectErrorKind::Authentication => {
                "check the user and password, pg_hba.conf, and the role's LOGIN and CONNECT rights"
            }
            ConnectErrorKind::UnknownDatabase => "create the database, or fix its name in the URL",
            ConnectErrorKind::Tls => {
                "check sslmode, the root certificate (sslrootcert, .pg_ssl_root_cert) and, for verify-full, that the certificate names the host you connect to"
            }
            ConnectErrorKind::Config | ConnectErrorKind::File => return None,
        })
    }

    /// The kind of a driver error raised while connecting. `unix_socket`: the target is a
    /// Unix socket, where a missing file means that no server runs.
    ///
    /// TLS failures under rustls come out of sqlx as I/O errors of kind `InvalidData`
    /// (rustls reports through the socket's I/O); a plain TCP socket never raises that
    /// kind, so while connecting it means that TLS refused the peer.
    pub(crate) fn of(error: &sqlx::Error, unix_socket: bool) -> Self {
        use std::io::ErrorKind as Io;
        match error {
            sqlx::Error::Io(io) => match io.kind() {
                Io::ConnectionRefused => ConnectErrorKind::Refused,
                Io::NotFound if unix_socket => ConnectErrorKind::Refused,
                Io::NetworkUnreachable | Io::HostUnreachable | Io::AddrNotAvailable => {
                    ConnectErrorKind::Unreachable
                }
                Io::TimedOut => ConnectErrorKind::TimedOut,
                Io::InvalidData => ConnectErrorKind::Tls,
                // A certificate or key file named in the settings.
                Io::NotFound | Io::PermissionDenied => ConnectErrorKind::Config,
                // The resolver's failure has no kind of its own in std.
                _ if io.to_string().contains("lookup address") => ConnectErrorKind::Unreachable,
                _ => ConnectErrorKind::Dropped,
            },
            sqlx::Error::Tls(_) => ConnectErrorKind::Tls,
            sqlx::Error::PoolTimedOut => ConnectErrorKind::TimedOut,
            sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => ConnectErrorKind::Dropped,
            sqlx::Error::Database(db) => {
                if let Some(code) = sqlite_primary_code(error) {
                    return match code {
                        SQLITE_BUSY | SQLITE_LOCKED => ConnectErrorKind::Unavailable,
                        _ => ConnectErrorKind::File,
                    };
                }
                let code = db.code();
                let code = code.as_deref().unwrap_or_default();
                if code.starts_with("28") || code == "42501" {
                    ConnectErrorKind::Authentication
                } else if code == "3D000" {
                    ConnectErrorKind::UnknownDatabase
                } else if code.starts_with("08") || code.starts_with("57P0") || code == "53300" {
                    ConnectErrorKind::Unavailable
                } else {
                    ConnectErrorKind::Config
                }
            }
            _ => ConnectErrorKind::Config,
        }
    }
}

impl fmt::Display for ConnectErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectErrorKind::Refused => "connection refused",
            ConnectErrorKind::Unreachable => "host unreachable",
            ConnectErrorKind::TimedOut => "no answer in time",
            ConnectErrorKind::Unavailable => "server unavailable",
            ConnectErrorKind::Dropped => "connection dropped during the handshake",
            ConnectErrorKind::Authentication => "authentication failed",
            ConnectErrorKind::UnknownDatabase => "unknown database",
            ConnectErrorKind::Tls => "TLS failed",
            ConnectErrorKind::Config => "bad configuration",
            ConnectErrorKind::File => "cannot open the database file",
        })
    }
}

/// An error kept where several may see it: the one that failed a projection, handed to
/// every wait on its handle.
///
/// It dereferences to the original error, and that error (not this wrapper) is what
/// [`std::error::Error::source`] returns, so it downcasts to its own type:
///
/// ```
/// # fn check(error: &chronicle::Error) {
/// # #[derive(Debug)] struct MyError;
/// # impl std::fmt::Display for MyError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("mine") } }
/// # impl std::error::Error for MyError {}
/// use std::error::Error as _;
/// if let Some(mine) = error.source().and_then(|source| source.downcast_ref::<MyError>()) {
///     // the projection's own error
/// #   let _ = mine;
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct SharedError(Arc<dyn std::error::Error + Send + Sync>);

impl SharedError {
    pub(crate) fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        SharedError(Arc::from(error.into()))
    }
}

impl Deref for SharedError {
    type Target = dyn std::error::Error + Send + Sync;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

/// The row and column of an [`Error::CorruptRow`], and what is wrong with the value.
#[derive(Debug, thiserror::Error)]
#[error("corrupt row in `{table}` ({}): column `{column}` {problem}", describe_row(table, stream, *version, *event_id))]
#[non_exhaustive]
pub struct CorruptRow {
    /// The table: `events`, `streams`, `snapshots`, `projection_checkpoints` or
    /// `outbox_handlers`.
    pub table: &'static str,
    /// The stream the row belongs to (or describes); for `projection_checkpoints`, the
    /// projection's name; for `outbox_handlers`, the handler's.
    pub stream: String,
    /// The event's or snapshot's version, when the row has one and it reads.
    pub version: Option<u64>,
    /// The event's id, for a row of `events`.
    pub event_id: Option<Uuid>,
    /// The column that holds the value.
    pub column: &'static str,
    /// What is wrong with it.
    #[source]
    pub problem: CorruptValue,
}

/// What is wrong with the value of a [`CorruptRow`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptValue {
    /// An integer outside the range of what the column holds (a negative version or
    /// count, a schema version above `u32::MAX`).
    #[error("holds {value}, which is no {expected}")]
    OutOfRange {
        /// The stored value.
        value: i64,
        /// What the column holds: `version`, `count`, `schema version`, `position`.
        expected: &'static str,
    },
    /// A stream status other than 0 (active), 1 (deleted) or 2 (tombstoned).
    #[error("holds {0}, which is no stream status (0, 1 or 2)")]
    UnknownStatus(i64),
    /// A time outside what [`chrono::DateTime`] represents (SQLite: microseconds out of
    /// range; PostgreSQL: `infinity` or `-infinity`).
    #[error("holds {0}, which is not a time")]
    Time(String),
    /// Metadata that is not valid JSON, or not of the shape chronicle writes.
    #[error("holds metadata that does not parse: {0}")]
    Json(#[source] serde_json::Error),
    /// An event's `type_id` that names no row of the event-type dictionary
    /// (`event_types`, on the SQL backends).
    #[error("names no row of the event-type dictionary (`event_types`)")]
    NoEventType,
    /// An event's `stream_key` that names no row of `streams` (on the SQL backends).
    #[error("names no row of `streams`")]
    NoStream,
    /// A value of another type than the column's (SQLite stores any type in any column).
    #[error("holds a value of the wrong type: {0}")]
    Type(#[source] sqlx::Error),
}

/// Input rejected before anything was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// Stream ids must not be empty.
    #[error("stream id is empty")]
    EmptyStreamId,
    /// Stream ids are bounded.
    #[error("stream id is {len} bytes long; the limit is {limit}")]
    StreamIdTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Stream ids are printable.
    #[error("stream id {stream:?} contains a control character")]
    StreamIdControlChar {
        /// The offending id.
        stream: String,
    },
    /// An append needs at least one event.
    #[error("append to `{stream}` has no events")]
    EmptyBatch {
        /// The stream appended to.
        stream: String,
    },
    /// An append carries at most `max_events_per_append` events.
    #[error(
        "append to `{stream}` has {count} events; the limit (max_events_per_append) is {limit}"
    )]
    BatchTooLarge {
        /// The stream appended to.
        stream: String,
        /// Events in the batch.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An event's JSON payload is bounded by `max_event_size`.
    #[error(
        "event {event_id} for `{stream}` is {size} bytes; the limit (max_event_size) is {limit}"
    )]
    EventTooLarge {
        /// The stream appended to.
        stream: String,
        /// The event.
        event_id: Uuid,
        /// The JSON payload's size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Event types must not be empty.
    #[error("event {event_id} for `{stream}` has an empty event type")]
    EmptyEventType {
        /// The stream appended to.
        stream: String,
        /// The event.
        event_id: Uuid,
    },
    /// A text field breaks its rule: longer than its limit
    /// ([`MAX_EVENT_TYPE_LEN`](crate::MAX_EVENT_TYPE_LEN),
    /// [`MAX_METADATA_ID_LEN`](crate::MAX_METADATA_ID_LEN)), holding NUL (no field may), or,
    /// in an event type, a control character.
    #[error("{field}{} {problem}", place(stream.as_deref(), *event_id))]
    InvalidText {
        /// The field: `event type`, `correlation_id`, `custom metadata`, `display_name`, ….
        field: &'static str,
        /// The stream written to, when the text was bound for one.
        stream: Option<String>,
        /// The event that carries it, if any.
        event_id: Option<Uuid>,
        /// What is wrong with it.
        problem: TextProblem,
    },
    /// One batch cannot carry the same event id twice.
    #[error("append to `{stream}` carries event id {event_id} more than once")]
    DuplicateIdInBatch {
        /// The stream appended to.
        stream: String,
        /// The repeated id.
        event_id: Uuid,
    },
    /// The backend's columns cannot hold what the append would write. PostgreSQL keeps an
    /// event's version and its stream's key as 4-byte integers: at most 2,147,483,647
    /// events in a stream, and about as many streams in a store.
    #[error("append to `{stream}` would exceed the store's limit of {limit} {what}")]
    StorageLimit {
        /// The stream appended to.
        stream: String,
        /// What is counted: `events in a stream` or `streams`.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// A payload's `Serialize` implementation failed.
    #[error("payload of `{event_type}` does not serialize: {reason}")]
    Unserializable {
        /// The event type being built.
        event_type: String,
        /// serde_json's account.
        reason: String,
    },
    /// A snapshot must cover a version the stream has reached, and the stream must be
    /// active.
    #[error(
        "snapshot at version {version} of `{stream}` is rejected: the stream is missing, deleted or not that far"
    )]
    SnapshotAhead {
        /// The stream.
        stream: String,
        /// The snapshot's version.
        version: u64,
    },
    /// Text that should be a [`LogPosition`](crate::LogPosition) is not one.
    #[error("`{0}` is not a log position (expected `<transaction>/<position>`)")]
    InvalidLogPosition(String),
    /// An upcaster registered with [`Upcasters`](crate::Upcasters) does not fit the event
    /// type it was registered for (checked when the store opens).
    #[error("upcaster for `{event_type}` (of `{events}`): {problem}")]
    Upcaster {
        /// The Rust type the upcasters were registered for (empty for
        /// [`StoreBuilder::upcast`](crate::StoreBuilder::upcast)'s).
        events: &'static str,
        /// The stored event type the rule names.
        event_type: String,
        /// What is wrong.
        problem: UpcasterProblem,
    },
    /// The store URL or a builder setting is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The store's backend does not support `feature`: its
    /// [`Capabilities`](crate::backend::Capabilities) say so. Every backend of chronicle's
    /// supports every feature; a backend written against the seam may not.
    #[error("the {backend} backend does not support {feature}")]
    Unsupported {
        /// The backend, as its capabilities name it.
        backend: &'static str,
        /// What was asked of it (`the outbox`).
        feature: &'static str,
    },
    /// A [`Manager`](crate::manager::Manager) has no provider of that name.
    #[error("no provider named `{name}` (the manager has: {})", known.join(", "))]
    UnknownProvider {
        /// The name asked for.
        name: String,
        /// The providers registered.
        known: Vec<String>,
    },
    /// A [`Manager`](crate::manager::Manager) already has a provider of that name.
    #[error("a provider named `{name}` is already registered")]
    DuplicateProvider {
        /// The name.
        name: String,
    },
    /// A [`Manager`](crate::manager::Manager) was asked for its default provider, and none
    /// was named (it never picks one itself).
    #[error("no default provider is set (name one with `default`)")]
    NoDefaultProvider,
    /// The configuration asks for something this build of chronicle leaves out: rebuild
    /// with the named cargo feature.
    #[error("{wanted} needs chronicle's `{feature}` cargo feature, which this build lacks")]
    FeatureDisabled {
        /// The cargo feature to turn on.
        feature: &'static str,
        /// What asked for it: a URL scheme or a builder setting.
        wanted: String,
    },
}

impl Error {
    /// The coarse class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Conflict { .. }
            | Error::EventIdReused { .. }
            | Error::StreamAlreadyExists { .. } => ErrorKind::Conflict,
            Error::Validation(_)
            | Error::PendingMigrations { .. }
            | Error::SqlUnavailable { .. }
            | Error::ColumnNotFound { .. }
            | Error::ColumnType { .. }
            | Error::DictionaryTraining { .. } => ErrorKind::Validation,
            Error::StreamNotFound { .. }
            | Error::StreamDeleted { .. }
            | Error::Shredded { .. }
            | Error::HistoryUnavailable { .. } => ErrorKind::NotFound,
            Error::Sql { source, .. } if is_transient(source) => ErrorKind::Connection,
            Error::Connection { .. }
            | Error::Connect { .. }
            | Error::Publish {
                retryable: true, ..
            }
            | Error::Broker {
                retryable: true, ..
            }
            | Error::Backend {
                retryable: true, ..
            } => ErrorKind::Connection,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Codec { .. }
            | Error::StreamKey { .. }
            | Error::Dictionary { .. }
            | Error::Payload { .. }
            | Error::UnknownEventType { .. }
            | Error::SchemaVersion { .. }
            | Error::UndeclaredSchemaChange { .. }
            | Error::Upcast { .. }
            | Error::NotOneEvent { .. }
            | Error::SnapshotCodec { .. }
            | Error::SnapshotPayload { .. }
            | Error::CorruptRow(_)
            | Error::MalformedMessage { .. } => ErrorKind::Codec,
            Error::Database { .. }
            | Error::Internal(_)
            | Error::ProjectionStopped { .. }
            | Error::ProjectionReset { .. }
            | Error::ProjectionSetup { .. }
            | Error::Sql { .. }
            | Error::InlineProjection { .. }
            | Error::TaskPanicked { .. }
            | Error::BusClosed { .. }
            | Error::Publish {
                retryable: false, ..
            }
            | Error::Broker {
                retryable: false, ..
            }
            | Error::Backend {
                retryable: false, ..
            } => ErrorKind::Internal,
        }
    }

    /// Whether the same operation, run again unchanged, may succeed.
    ///
    /// True for broken connections and timeouts, and for the [`Error::Connect`] failures
    /// that may pass ([`ConnectErrorKind::is_transient`]: refused, unreachable, no answer in
    /// time, a server starting or full). False for those that repeat until a setting
    /// changes: credentials, an unknown database, TLS, configuration. A [`Error::Conflict`]
    /// is not retryable as is: the caller must reload the stream and decide again (the
    /// repository does that).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { kind, .. } => kind.is_transient(),
            _ => matches!(self.kind(), ErrorKind::Connection | ErrorKind::Timeout),
        }
    }

    /// An error of a backend written against [`chronicle::backend`](crate::backend):
    /// `backend` names it, `operation` is the store operation that was running, and
    /// `retryable` says whether running it again may succeed (a broken connection, a
    /// timeout), which [`is_retryable`](Self::is_retryable) and the store's retries
    /// follow.
    pub fn backend(
        backend: &'static str,
        operation: &'static str,
        retryable: bool,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Backend {
            backend,
            operation,
            retryable,
            source: source.into(),
        }
    }

    /// Whether the store was closed: a connection error that no retry cures.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(
            self,
            Error::Connection {
                source: sqlx::Error::PoolClosed,
                ..
            }
        )
    }

    /// Classifies a driver error raised during `operation`. A [`CorruptRow`] found while
    /// decoding a row travels through the driver as `sqlx::Error::Decode` (row decoders run
    /// inside sqlx's streams) and comes out here as [`Error::CorruptRow`].
    pub(crate) fn from_sqlx(operation: &'static str, source: sqlx::Error) -> Self {
        let source = match source {
            sqlx::Error::Decode(inner) => match inner.downcast::<CorruptRow>() {
                Ok(corrupt) => return Error::CorruptRow(corrupt),
                Err(inner) => sqlx::Error::Decode(inner),
            },
            source => source,
        };
        if is_transient(&source) {
            Error::Connection { operation, source }
        } else {
            Error::Database { operation, source }
        }
    }
}

/// Whether the server cancelled the statement (PostgreSQL's `statement_timeout`, 57014).
pub(crate) fn is_statement_timeout(error: &Error) -> bool {
    matches!(error, Error::Database { source: sqlx::Error::Database(db), .. } if db.code().as_deref() == Some("57014"))
}

/// Where a bad text field was bound: " of event … for `stream`", " of stream `…`", or
/// nothing (a query's filter).
fn place(stream: Option<&str>, event_id: Option<Uuid>) -> String {
    match (stream, event_id) {
        (Some(stream), Some(event)) => format!(" of event {event} for `{stream}`"),
        (Some(stream), None) => format!(" of stream `{stream}`"),
        (None, Some(event)) => format!(" of event {event}"),
        (None, None) => String::new(),
    }
}

fn describe_row(table: &str, stream: &str, version: Option<u64>, event_id: Option<Uuid>) -> String {
    let mut row = if table == "projection_checkpoints" {
        format!("projection `{stream}`")
    } else if stream.is_empty() {
        "an unknown stream".to_owned()
    } else {
        format!("stream `{stream}`")
    };
    if let Some(version) = version {
        row.push_str(&format!(", version {version}"));
    }
    if let Some(id) = event_id {
        row.push_str(&format!(", event {id}"));
    }
    row
}

fn describe_version(actual: Option<u64>) -> String {
    match actual {
        Some(version) => format!("version {version}"),
        None => "no stream".to_owned(),
    }
}

/// Errors after which the same statement may succeed on a fresh connection. A TLS
/// handshake that fails (a certificate not trusted, no TLS support) fails again, and so
/// does a bad setting (`Configuration`): neither is transient. Under rustls a refused
/// certificate comes as an I/O error of kind `InvalidData` (see
/// [`ConnectErrorKind::of`]), which a plain socket never raises.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(io) => io.kind() != std::io::ErrorKind::InvalidData,
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or_default();
            // PostgreSQL: connection exceptions (08…), admin shutdown / crash (57P0…),
            // serialization failures and deadlocks (40001, 40P01), too many connections.
            code.starts_with("08")
                || code.starts_with("57P0")
                || code == "40001"
                || code == "40P01"
                || code == "53300"
                // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6) outlived the busy timeout.
                || matches!(sqlite_primary_code(error), Some(SQLITE_BUSY | SQLITE_LOCKED))
        }
        _ => false,
    }
}

/// SQLite's "database is busy / locked" primary result codes.
pub(crate) const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;

/// The primary SQLite result code of a database error. SQLite reports extended codes
/// (`SQLITE_BUSY_SNAPSHOT` = 517); the low byte is the primary code.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_primary_code(error: &sqlx::Error) -> Option<i64> {
    match error {
        // Only SQLite's: PostgreSQL codes are text that can parse as numbers too.
        sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
        {
            db.code()?.parse::<i64>().ok().map(|code| code & 0xff)
        }
        // The log reader's own connections (`store/sql/sqlite_reader.rs`).
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<crate::store::sql::sqlite_code::SqliteCodeError>()
            .map(|error| error.code() & 0xff),
        _ => None,
    }
}

/// Without SQLite compiled in, no error is SQLite's.
#[cfg(not(feature = "sqlite"))]
pub(crate) fn sqlite_primary_code(_: &sqlx::Error) -> Option<i64> {
    None
}

/// [`Error::SchemaVersion`]'s message: what the versions are, and what to do.
fn schema_version_message(
    stream: &str,
    event_id: Uuid,
    event_type: &str,
    stored: u32,
    current: u32,
) -> String {
    let head = format!(
        "event {event_id} (`{event_type}` in stream `{stream}`) has schema version {stored}; \
         the code reads version {current}"
    );
    if stored > current {
        format!(
            "{head}: it was written by newer code, or the variant lacks its \
             `#[event(version = {stored})]`"
        )
    } else {
        format!(
            "{head}, and no upcaster brings `{event_type}` from version {stored} to {}: \
             register one on the StoreBuilder (`Upcasters::step(\"{event_type}\", {stored}, ...)` \
             with `upcasters`, or `upcast(\"{event_type}\", ...)`)",
            stored + 1
        )
    }
}

/// What is wrong with a piece of caller text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextProblem {
    /// Longer than the field's limit.
    #[error("is {len} bytes long; the limit is {limit}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The field's limit.
        limit: usize,
    },
    /// Holds a NUL character, which no text field may.
    #[error("contains a NUL character")]
    Nul,
    /// Holds a control character, which event types may not.
    #[error("contains the control character {0:?}")]
    ControlChar(char),
}

/// What is wrong with an upcaster, found when the store opens
/// ([`ValidationError::Upcaster`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpcasterProblem {
    /// The type is not a variant of the event enum (a typo, or the variant was renamed).
    UnknownType,
    /// Upcasting needs a schema version above 1, and the type is declared at version 1:
    /// the variant lacks `#[event(version = 2)]`.
    NothingToUpcast,
    /// A step upcasts from a version the type already reads (or beyond).
    StepBeyondCurrent {
        /// The step's version.
        from: u32,
        /// The version the type declares.
        current: u32,
    },
    /// The steps do not reach the declared version: the step from `missing` is absent.
    Gap {
        /// The version with no step.
        missing: u32,
    },
    /// A type renamed, split or dropped is still a variant: its rows would never reach it.
    StillKnown,
    /// A rename or split target leads to no variant of the event enum.
    UnknownTarget {
        /// The name followed.
        target: String,
    },
    /// Renames or splits lead back to the type.
    Cycle,
    /// Two rules name the type (they would replace each other).
    Duplicate,
}

impl fmt::Display for UpcasterProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpcasterProblem::UnknownType => f.write_str("no variant has this type"),
            UpcasterProblem::NothingToUpcast => f.write_str(
                "the variant is at schema version 1, so nothing is upcast: did the variant \
                 lose (or never get) its `#[event(version = 2)]`?",
            ),
            UpcasterProblem::StepBeyondCurrent { from, current } => write!(
                f,
                "a step upcasts from version {from}, but the variant is at version {current}: \
                 did you forget `#[event(version = {})]`?",
                from + 1
            ),
            UpcasterProblem::Gap { missing } => write!(
                f,
                "the chain has a gap: no step from version {missing} to {}",
                missing + 1
            ),
            UpcasterProblem::StillKnown => f.write_str(
                "it is renamed, split or dropped, but a variant still has this name; \
                 remove the variant or the rule",
            ),
            UpcasterProblem::UnknownTarget { target } => {
                write!(f, "it leads to `{target}`, which no variant has")
            }
            UpcasterProblem::Cycle => f.write_str("renames or splits lead back to it"),
            UpcasterProblem::Duplicate => f.write_str(
                "two upcasters are registered for it; register one chain (steps, or one \
                 function that handles every version step), or one rename, split or drop",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_corrupt_row_names_its_row_and_column_and_keeps_its_source() {
        let json = serde_json::from_str::<serde_json::Value>("{not json").unwrap_err();
        let event_id = Uuid::nil();
        let error = Error::from_sqlx(
            "read_stream",
            sqlx::Error::Decode(Box::new(CorruptRow {
                table: "events",
                stream: "account-1".into(),
                version: Some(3),
                event_id: Some(event_id),
                column: "metadata",
                problem: CorruptValue::Json(json),
            })),
        );
        assert_eq!(
            error.to_string(),
            format!(
                "corrupt row in `events` (stream `account-1`, version 3, event {event_id}): \
                 column `metadata` holds metadata that does not parse: key must be a string at line 1 column 2"
            )
        );
        assert_eq!(error.kind(), ErrorKind::Codec);
        assert!(!error.is_retryable());
        let problem = error.source().expect("the value's problem");
        assert!(
            problem
                .source()
                .is_some_and(|json| json.is::<serde_json::Error>())
        );
    }

    #[test]
    fn a_failed_tls_handshake_is_not_retried() {
        let error = Error::from_sqlx(
            "append",
            sqlx::Error::Tls("server does not support TLS".into()),
        );
        assert!(!error.is_retryable(), "{error:?}");
        let error = Error::from_sqlx("append", sqlx::Error::Configuration("bad option".into()));
        assert!(!error.is_retryable(), "{error:?}");
        // How rustls reports a certificate it refuses, on a reconnect.
        let error = Error::from_sqlx(
            "append",
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "invalid peer certificate: UnknownIssuer",
            )),
        );
        assert!(!error.is_retryable(), "{error:?}");
        // A dropped connection still is.
        let error = Error::from_sqlx(
            "append",
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        );
        assert!(error.is_retryable(), "{error:?}");
    }

    #[test]
    fn connect_errors_are_classified_by_their_cause() {
        use std::io::{Error as IoError, ErrorKind as Io};
        let io = |kind| sqlx::Error::Io(IoError::from(kind));
        let cases = [
            (io(Io::ConnectionRefused), false, ConnectErrorKind::Refused),
            (io(Io::NotFound), true, ConnectErrorKind::Refused),
            (
                io(Io::NetworkUnreachable),
                false,
                ConnectErrorKind::Unreachable,
            ),
            (
                io(Io::HostUnreachable),
                false,
                ConnectErrorKind::Unreachable,
            ),
            (
                sqlx::Error::Io(IoError::other(
                    "failed to lookup address information: Name or service not known",
                )),
                false,
                ConnectErrorKind::Unreachable,
            ),
            (io(Io::TimedOut), false, ConnectErrorKind::TimedOut),
            (io(Io::ConnectionReset), false, ConnectErrorKind::Dropped),
            (io(Io::InvalidData), false, ConnectErrorKind::Tls),
            (io(Io::NotFound), false, ConnectErrorKind::Config),
            (
                sqlx::Error::Tls("no TLS".into()),
                false,
                ConnectErrorKind::Tls,
            ),
            (sqlx::Error::PoolTimedOut, false, ConnectErrorKind::TimedOut),
            (
                sqlx::Error::Configuration("bad".into()),
                false,
                ConnectErrorKind::Config,
            ),
        ];
        for (error, unix_socket, expected) in cases {
            assert_eq!(
                ConnectErrorKind::of(&error, unix_socket),
                expected,
                "{error:?}"
            );
        }
        let transient: Vec<_> = [
            ConnectErrorKind::Refused,
            ConnectErrorKind::Unreachable,
            ConnectErrorKind::TimedOut,
            ConnectErrorKind::Unavailable,
            ConnectErrorKind::Dropped,
            ConnectErrorKind::Authentication,
            ConnectErrorKind::UnknownDatabase,
            ConnectErrorKind::Tls,
            ConnectErrorKind::Config,
            ConnectErrorKind::File,
        ]
        .into_iter()
        .filter(|kind| kind.is_transient())
        .collect();
        assert_eq!(transient.len(), 5, "{transient:?}");
        let error = Error::Connect {
            target: "PostgreSQL at db:5432, database `app`, user `app`".into(),
            kind: ConnectErrorKind::Authentication,
            detail: "password authentication failed".into(),
            source: None,
        };
        assert_eq!(error.kind(), ErrorKind::Connection);
        assert!(!error.is_retryable());
    }

    #[test]
    fn other_decode_errors_stay_database_errors() {
        let error = Error::from_sqlx("read_all", sqlx::Error::Decode("bad bytes".into()));
        assert!(matches!(error, Error::Database { .. }), "{error:?}");
    }
}
