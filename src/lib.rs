//! # chronicle
//!
//! Event sourcing for Rust. Every change is stored as an immutable event in a stream with
//! optimistic concurrency; state is rebuilt by replaying the stream. SQLite is the embedded
//! default, PostgreSQL the backend for production, and an in-memory store serves tests.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> chronicle::Result<()> {
//! use chronicle::{Error, ExpectedVersion, NewEvent, Store};
//! use serde_json::json;
//!
//! let store = Store::open("memory:").await?;
//! let opened = NewEvent::new("account.opened", json!({ "owner": "ada" }));
//! let written = store.append("account-1", ExpectedVersion::NoStream, vec![opened]).await?;
//! assert_eq!(written.next_expected_version(), 1);
//!
//! // A writer that read version 0 loses the race and writes nothing.
//! let late = NewEvent::new("account.deposited", json!({ "amount": 5 }));
//! let error = store.append("account-1", ExpectedVersion::Exact(0), vec![late]).await;
//! assert!(matches!(error, Err(Error::Conflict { actual: Some(1), .. })));
//! # Ok(()) }
//! ```
//!
//! The modules, the path the data takes and the invariants are mapped in
//! `ARCHITECTURE.md` at the root of the repository.

#![warn(missing_docs)]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!(
    "chronicle needs a database: turn on its `sqlite` feature, its `postgres` feature, or both \
     (the in-memory store, `memory:`, comes with either)"
);

mod aggregate;
pub mod backend;
pub mod bus;
#[cfg(feature = "cloudevents")]
pub mod cloudevents;
mod codec;
mod domain_event;
mod error;
mod event;
mod expected_version;
pub mod manager;
mod millis;
#[cfg(feature = "otel")]
pub mod otel;
pub mod outbox;
mod panics;
mod pattern;
mod portable;
pub mod process;
mod projection;
mod read;
mod retention;
mod snapshot;
mod store;
mod stream;
mod task;
mod telemetry;
pub mod testing;
mod text;
mod upcast;

pub use aggregate::{
    Aggregate, AggregateType, CommandError, DEFAULT_CACHE_CAPACITY, DEFAULT_COMMAND_ATTEMPTS,
    Executed, Loaded, Repository,
};
pub use chronicle_derive::{Aggregate, DomainEvent};
pub use codec::{CodecError, Compression, KeyRing};
pub use domain_event::{DecodeError, DomainEvent, EventType};
pub use error::{
    ConnectErrorKind, CorruptRow, CorruptValue, Error, ErrorKind, Result, SharedError,
    ValidationError,
};
pub use event::{EventMetadata, NewEvent, RecordedEvent};
pub use outbox::{Handler, HandlerError, HandlerMap, HandlerRequest, Outbox};
pub use pattern::Pattern;
pub use portable::{FromSql, IntoSql, Sql, SqlRow, SqlType, SqlValue};
pub use process::{ProcessHandle, ProcessManager};
pub use projection::{
    FailurePolicy, Projection, ProjectionCheckpoint, ProjectionContext, ProjectionError,
    ProjectionHandle, ProjectionState, ProjectionStatus, Projections, StartFrom,
};
pub use read::{EventParts, EventQuery, LogPosition};
pub use retention::{
    AppliedRetention, EnforcerHandle, RetentionEnforcer, RetentionPolicy, RetentionReport,
    RetentionScope,
};
pub use snapshot::{NewSnapshot, Snapshot, SnapshotInfo};
/// PostgreSQL's `sslmode`, for [`StoreBuilder::pg_ssl_mode`] (sqlx's type).
#[cfg(feature = "postgres")]
pub use sqlx::postgres::PgSslMode;
#[cfg(feature = "sqlite")]
pub use store::SqliteDurability;
pub use store::{
    AppendResult, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_EVENT_SIZE, DEFAULT_MAX_EVENTS_PER_APPEND,
    DEFAULT_WINDOW_BYTES, DICTIONARY_MAX_BYTES, DICTIONARY_SAMPLE_EVENTS, KeyRotation, Migrations,
    RotationProgress, ShreddedEvents, StorageStats, Store, StoreBuilder, StoreTarget,
    TrainedDictionary, WrittenEvent,
};
pub use stream::{
    DeleteMode, Direction, ExpectedVersion, MAX_STREAM_ID_LEN, NewStream, StreamId, StreamInfo,
    StreamListQuery, StreamStatus,
};
pub use text::{MAX_EVENT_TYPE_LEN, MAX_METADATA_ID_LEN, MAX_NAME_LEN, TextProblem};
pub use upcast::{UpcastEvent, UpcasterProblem, Upcasters};

// The crates whose types appear in chronicle's API, re-exported so that an application
// names the very versions chronicle was built with (a second sqlx in the build would not
// fit `ProjectionContext::sqlite`'s connection, for one).
pub use futures;
pub use serde_json;
/// sqlx 0.9, with the drivers of the backends compiled in.
pub use sqlx;
pub use uuid;

/// What the derive macros' generated code refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use serde_json;
}

/// The README's code blocks, compiled as doctests so the quickstart cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
