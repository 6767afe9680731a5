//! The store's seam, for writing a backend of your own: the traits a storage engine
//! implements so that [`Store`](crate::Store) runs on it, and the rows that cross them.
//!
//! chronicle's own backends (memory, SQLite, PostgreSQL) implement these same traits;
//! `docs/backends.md` in the repository walks through them method by method. In short:
//!
//! - [`Backend`] stores and fetches rows: appends under an [`AppendGuard`], stream and
//!   log reads, snapshots, retention, keys and dictionaries. It holds no rule: `Store`
//!   decides every change of a stream's state, checks every input, runs the codec and
//!   retries, and only asks the backend for rows.
//! - [`Tx`] is a write transaction ([`Backend::begin_batch`]): projections' checkpoints,
//!   and, through its supertrait [`StreamTx`], the row primitives of a stream's state
//!   (lock, write, remove events, snapshots, keys). [`Tx::outbox`] gives the outbox's
//!   statements ([`OutboxTx`]) when the backend keeps one; else name [`NoOutbox`].
//!   `Store` holds a transaction as a [`DynTx`], which every `Tx` is.
//! - [`Capabilities`] says what the backend can do beyond the required methods;
//!   `Store` reads it once, when it opens.
//!
//! Open a store on a backend with [`StoreTarget::backend`](crate::StoreTarget::backend):
//!
//! ```
//! # async fn demo() -> chronicle::Result<()> {
//! use chronicle::{Store, StoreTarget, backend::MemoryBackend};
//!
//! let store = Store::open(StoreTarget::backend(MemoryBackend::default())).await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! **Stability.** The seam is young: its traits and rows may change in a minor release
//! until chronicle 1.0, and such changes are named in the changelog. Errors a backend
//! raises of its own are [`Error::backend`](crate::Error::backend).

/// The attribute the seam's object-safe traits ([`Backend`], [`StreamTx`], [`Lease`],
/// [`AppendFeed`]) are implemented with (the `async-trait` crate's).
pub use async_trait::async_trait;

pub use crate::expected_version::AppendGuard;
pub use crate::retention::rules::{
    MAX_LISTED_STREAM_POLICIES, PolicyRows, StoredPolicy, StreamRetention,
};
pub use crate::store::backend::{
    Answers, AppendFeed, AppendNotices, AppendOutcome, Backend, Capabilities, EncodedEvent,
    ExpiryCut, HeldBack, InProcessLease, Lease, LogPage, ReplayedEvent, StoredEvent,
    StoredSnapshot, StoredStream, StreamStart, Support, WindowLimit, WindowRow, Written,
};
pub use crate::store::batch::{DynTx, Flush, SqlConnection, StoredCheckpoint, Tx};
pub use crate::store::key_cache::StoredKey;
pub use crate::store::memory::MemoryBackend;
pub use crate::store::requests::{
    Claimed, DEAD, DONE, DeadRow, Failed, NewRequest, NoOutbox, OutboxTx, PENDING, RUNNING,
    StateCount, TurnKeys,
};
pub use crate::store::stream_rows::{
    LockedStream, SnapshotCut, SnapshotWrite, StreamTx, StreamWrite,
};

/// A compression dictionary's row (`Backend::dictionaries` and friends).
pub use crate::codec::dictionary::StoredDictionary;
