//! The outbox's requests as the seam sees them: their rows, their states, and
//! [`OutboxTx`], the statements a backend that keeps an outbox runs in a transaction (the
//! SQL backends: `sql/outbox.rs`, over the `handler_requests` table; memory:
//! `memory/outbox.rs`, over its tables). A backend without one names [`NoOutbox`].
//!
//! **Turns.** For a handler ordered per stream, the one request of a (handler, stream)
//! that may run is marked `ready`: the running one, else the open one earliest in the log
//! (every request of a handler not ordered is ready). A claim reads only ready requests,
//! through an index of them, so its cost does not depend on how many requests wait behind
//! a turn. Whatever ends a turn or may take it (a request done or dead, one revived, new
//! requests) calls [`OutboxTx::pass_turns`] for its keys in the same transaction; on
//! PostgreSQL [`OutboxTx::lock_turns`] serializes those transactions per key first (an
//! advisory lock), so none decides from a state another is changing. SQLite's write lock
//! does that already. Memory keeps no flag: it finds the turn by the rule whenever a
//! (handler, stream) changes, so its `pass_turns` and `lock_turns` do nothing.

use std::collections::BTreeSet;
use std::future::Future;

use uuid::Uuid;

use crate::error::Result;
use crate::read::LogPosition;

/// A request state, as stored: waiting for an executor (or for its retry).
pub const PENDING: i16 = 0;
/// A request an executor is running.
pub const RUNNING: i16 = 1;
/// A request done.
pub const DONE: i16 = 2;
/// A request that failed for good (dead-lettered).
pub const DEAD: i16 = 3;

/// A request to create: one event for one handler.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    /// The handler's name.
    pub handler: &'a str,
    /// The event's id.
    pub event_id: Uuid,
    /// The event's position in the global log.
    pub position: u64,
    /// The event's transaction (the commit part of its [`LogPosition`]).
    pub commit: u64,
    /// The event's stream.
    pub stream: &'a str,
    /// The handler's priority (higher first).
    pub priority: i32,
    /// Whether the handler runs a stream's requests in order.
    pub ordered: bool,
}

/// The (handler, stream) of requests ordered per stream: the unit of turns.
pub type TurnKeys<'a> = BTreeSet<(&'a str, &'a str)>;

/// A request an executor claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The request's id.
    pub id: i64,
    /// The handler's name.
    pub handler: String,
    /// The event's id.
    pub event_id: Uuid,
    /// The event's stream.
    pub stream_id: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Failed attempts so far.
    pub errors: i32,
    /// The handler's priority.
    pub priority: i32,
    /// The event's position in the global log.
    pub event_position: i64,
    /// Whether its handler runs a stream's requests in order (it holds its stream's turn).
    pub ordered: bool,
    /// The claim's token (`locked_by`): only the claim that holds it records an outcome.
    pub token: String,
}

/// A claimed request as the claim returns it: id, handler, event id, stream, attempts,
/// errors, priority, event position, ordered.
pub(crate) type ClaimedRow = (i64, String, Uuid, String, i32, i32, i32, i64, bool);

impl Claimed {
    pub(crate) fn from_row(row: ClaimedRow, token: &str) -> Self {
        let (id, handler, event_id, stream_id, attempts, errors, priority, event_position, ordered) =
            row;
        Claimed {
            id,
            handler,
            event_id,
            stream_id,
            attempts,
            errors,
            priority,
            event_position,
            ordered,
            token: token.to_owned(),
        }
    }
}

/// A failed execution, as recorded: dead, or due again at `due_at` (microseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed<'a> {
    /// The error, as text.
    pub error: &'a str,
    /// Whether the request is dead (no attempt left).
    pub dead: bool,
    /// When it is due again (microseconds since the epoch).
    pub due_at: i64,
}

/// A count of one handler's requests in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCount {
    /// The handler's name.
    pub handler: String,
    /// The state: [`PENDING`], [`RUNNING`], [`DONE`] or [`DEAD`].
    pub state: i16,
    /// Whether these requests have failed before (pending ones waiting for a retry).
    pub failed: bool,
    /// How many.
    pub count: u64,
    /// When the oldest of them was created (microseconds since the epoch).
    pub oldest: i64,
}

/// A dead request, for the administration API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRow {
    /// The request's id.
    pub id: i64,
    /// The handler's name.
    pub handler: String,
    /// The event's id.
    pub event_id: Uuid,
    /// The event's stream.
    pub stream_id: String,
    /// Failed attempts.
    pub errors: i32,
    /// The last error, as text.
    pub last_error: Option<String>,
    /// When it died (microseconds since the epoch).
    pub updated_at: i64,
}

/// A dead request as stored, in [`DeadRow`]'s order.
pub(crate) type DeadTuple = (i64, String, Uuid, String, i32, Option<String>, i64);

impl From<DeadTuple> for DeadRow {
    fn from(row: DeadTuple) -> Self {
        let (id, handler, event_id, stream_id, errors, last_error, updated_at) = row;
        DeadRow {
            id,
            handler,
            event_id,
            stream_id,
            errors,
            last_error,
            updated_at,
        }
    }
}

/// The outbox's statements in a transaction ([`Tx::outbox`](super::batch::Tx::outbox)),
/// for a backend that keeps an outbox. See the module for turns.
pub trait OutboxTx: Send {
    /// Creates `requests` (due at `now`), skipping any already there, and gives the turn
    /// of each stream of an ordered handler that had no open request to its first new
    /// one. Returns how many it created.
    fn insert_requests(
        &mut self,
        requests: &[NewRequest<'_>],
        now: i64,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Takes the turns of `keys` for the rest of the transaction, in one order for every
    /// transaction (nothing where writers are serialized already).
    fn lock_turns(&mut self, keys: &TurnKeys<'_>) -> impl Future<Output = Result<()>> + Send;

    /// Gives each of `keys` (locked with [`OutboxTx::lock_turns`]) its right turn: a
    /// pending request that holds it gives it up to an earlier open one (revived from
    /// dead), and a key with no turn gives it to its earliest open request.
    fn pass_turns(&mut self, keys: &TurnKeys<'_>) -> impl Future<Output = Result<()>> + Send;

    /// Claims up to `limit` due requests of `handlers` (their names as a JSON array)
    /// under `token` until `lease_until`: pending ones whose time has come and running
    /// ones whose lease ran out, by priority then log order, only ready ones. Executors
    /// claiming at once never claim one request twice.
    fn claim_requests(
        &mut self,
        handlers: &str,
        token: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Claimed>>> + Send;

    /// Records the requests `ids` claimed under `token` as done; returns the ids recorded
    /// (a request missing from them was claimed again since).
    fn finish_done(
        &mut self,
        ids: &[i64],
        token: &str,
        now: i64,
    ) -> impl Future<Output = Result<Vec<i64>>> + Send;

    /// Records the failed execution of request `id` claimed under `token`; `false` when
    /// the request was claimed again since (its lease ran out).
    fn finish_failed(
        &mut self,
        id: i64,
        token: &str,
        failed: &Failed<'_>,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Requests per handler and state.
    fn request_counts(&mut self) -> impl Future<Output = Result<Vec<StateCount>>> + Send;

    /// Every request's handler and event, in the order they were created (for the test
    /// fixture [`OutboxTest`](crate::testing::OutboxTest)).
    fn list_requests(&mut self) -> impl Future<Output = Result<Vec<(String, Uuid)>>> + Send;

    /// Dead requests, of `handler` when given, oldest first.
    fn dead_requests(
        &mut self,
        handler: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadRow>>> + Send;

    /// Makes dead requests pending again, with no errors, due at `now`: the one with
    /// `id`, or every one of `handler`. Returns how many. A revived request of an ordered
    /// handler takes its stream's turn when no request of the stream runs and it is the
    /// earliest open one; else it waits for the turn.
    fn retry_dead(
        &mut self,
        id: Option<i64>,
        handler: Option<&str>,
        now: i64,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Records where each of `handlers` of outbox `outbox` starts, unless recorded
    /// already, and returns the starts recorded for the outbox (of its handlers past and
    /// present). An outbox that has a checkpoint but no recorded starts ran before starts
    /// were recorded (an upgrade): its handlers start at the beginning, whatever they ask.
    fn register_handlers(
        &mut self,
        outbox: &str,
        handlers: &[(&str, LogPosition)],
        now: i64,
    ) -> impl Future<Output = Result<Vec<(String, LogPosition)>>> + Send;

    /// How many requests of `handlers` (their names as a JSON array) for events at or
    /// before `until` are still open (pending or running).
    fn open_requests_until(
        &mut self,
        handlers: &str,
        until: LogPosition,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// The log position of the last event committed (and visible to this transaction):
    /// unlike [`Store::log_end`](crate::Store::log_end), not held back by transactions
    /// still running.
    fn last_committed_event(&mut self) -> impl Future<Output = Result<LogPosition>> + Send;

    /// Deletes the done requests last updated before `before`. Returns how many.
    fn purge_done(&mut self, before: i64) -> impl Future<Output = Result<u64>> + Send;
}

/// The outbox of a backend that keeps none: no value of it exists, so
/// [`Tx::outbox`](super::batch::Tx::outbox) can only say `None`. Every backend of
/// chronicle's keeps one; this is for a backend written against the seam that does not.
#[derive(Debug)]
pub enum NoOutbox {}

/// Calls `$then!` with the signatures of [`OutboxTx`]'s methods: the one list that the
/// forwarding impls are written from ([`NoOutbox`]'s here, `DynTx`'s in `batch.rs`).
macro_rules! outbox_methods {
    ($then:ident) => {
        $then! {
            fn insert_requests(&mut self, requests: &[NewRequest<'_>], now: i64) -> u64;
            fn lock_turns(&mut self, keys: &TurnKeys<'_>) -> ();
            fn pass_turns(&mut self, keys: &TurnKeys<'_>) -> ();
            fn claim_requests(&mut self, handlers: &str, token: &str, now: i64, lease_until: i64, limit: usize) -> Vec<Claimed>;
            fn finish_done(&mut self, ids: &[i64], token: &str, now: i64) -> Vec<i64>;
            fn finish_failed(&mut self, id: i64, token: &str, failed: &Failed<'_>, now: i64) -> bool;
            fn request_counts(&mut self) -> Vec<StateCount>;
            fn list_requests(&mut self) -> Vec<(String, Uuid)>;
            fn dead_requests(&mut self, handler: Option<&str>, limit: usize) -> Vec<DeadRow>;
            fn retry_dead(&mut self, id: Option<i64>, handler: Option<&str>, now: i64) -> u64;
            fn register_handlers(&mut self, outbox: &str, handlers: &[(&str, LogPosition)], now: i64) -> Vec<(String, LogPosition)>;
            fn open_requests_until(&mut self, handlers: &str, until: LogPosition) -> u64;
            fn last_committed_event(&mut self) -> LogPosition;
            fn purge_done(&mut self, before: i64) -> u64;
        }
    };
}

pub(crate) use outbox_methods;

macro_rules! no_outbox {
    ($(fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $out:ty;)*) => {
        impl OutboxTx for NoOutbox {
            $(
                async fn $name(&mut self $(, _: $ty)*) -> Result<$out> {
                    match *self {}
                }
            )*
        }
    };
}

outbox_methods!(no_outbox);

/// `attempts` as stored, as an attempt number.
pub(crate) fn attempt(stored: i32) -> u32 {
    u32::try_from(stored).unwrap_or(0)
}
