//! Typed aggregates: the traits a domain type implements, and the [`Repository`] that loads
//! them and executes commands against them.
//!
//! `#[derive(Aggregate)]` implements [`AggregateType`] (the stream name, the event type
//! and the snapshot policy); the application implements [`Aggregate`] (its domain logic:
//! how an event changes the state, and how a command becomes events or an error).

mod cache;
mod repository;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use repository::{
    CommandError, DEFAULT_CACHE_CAPACITY, DEFAULT_COMMAND_ATTEMPTS, Executed, Loaded, Repository,
};

use crate::domain_event::DomainEvent;

/// The facts about an aggregate that `#[derive(Aggregate)]` writes from its attribute:
/// `#[aggregate(name = "account", event = AccountEvent, snapshot_every = 100,
/// snapshot_version = 1)]`. Despite its name, the derive implements this trait, not
/// [`Aggregate`]: the domain logic is written by hand.
///
/// The state is `Default` (the aggregate before its first event), `Clone` (the repository
/// caches states) and serde (snapshots store it).
pub trait AggregateType:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The stream name prefix: an aggregate with id `42` lives in stream `{NAME}-42`.
    const NAME: &'static str;

    /// Take a snapshot whenever the stream passes a multiple of this many events; `None`
    /// (the default) takes none unless the repository is told to.
    const SNAPSHOT_EVERY: Option<u64> = None;

    /// The shape of the snapshot. Bump it when the state's fields change: snapshots of
    /// another version are ignored and replaced, never deserialized into the new shape.
    const SNAPSHOT_VERSION: u32 = 1;

    /// The events this aggregate's stream holds.
    type Event: DomainEvent;
}

/// An aggregate's domain logic, written by hand: `#[derive(Aggregate)]` does not implement
/// it (it implements [`AggregateType`], the stream name, event type and snapshot policy
/// this trait builds on). Derive, then write `impl Aggregate for …` as below.
///
/// ```
/// use chronicle::{Aggregate, DomainEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// #[event(prefix = "counter.")]
/// enum CounterEvent {
///     Incremented { by: u32 },
/// }
///
/// #[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
/// #[aggregate(name = "counter", event = CounterEvent)]
/// struct Counter {
///     total: u64,
/// }
///
/// #[derive(Debug, PartialEq, thiserror::Error)]
/// #[error("the counter only goes up")]
/// struct ZeroIncrement;
///
/// impl Aggregate for Counter {
///     type Command = u32;
///     type Error = ZeroIncrement;
///
///     fn apply(&mut self, event: CounterEvent) {
///         match event {
///             CounterEvent::Incremented { by } => self.total += u64::from(by),
///         }
///     }
///
///     fn handle(&self, by: &u32) -> Result<Vec<CounterEvent>, ZeroIncrement> {
///         if *by == 0 {
///             return Err(ZeroIncrement);
///         }
///         Ok(vec![CounterEvent::Incremented { by: *by }])
///     }
/// }
/// ```
pub trait Aggregate: AggregateType {
    /// What callers ask the aggregate to do (often an enum).
    type Command: Send + Sync;

    /// Why the aggregate refuses a command.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Changes the state by one event. Must not fail: the event already happened.
    fn apply(&mut self, event: Self::Event);

    /// Decides what happens: the events a command produces, or why it is refused.
    /// The repository may call it more than once for one command: after a conflict it
    /// reloads the state and asks again.
    ///
    /// # Errors
    /// The domain's reason to refuse the command; nothing is written.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
}
