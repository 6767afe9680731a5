//! Process managers (sagas): long-running coordination between aggregates, driven by
//! events.
//!
//! A [`ProcessManager`] reacts to events of several types. Each event is correlated to an
//! **instance** by a key taken from the event ([`ProcessManager::correlate`]); the
//! instance's state lives in a stream of its own, `process.{NAME}-{key}`, written with
//! optimistic concurrency. Handling an event ([`ProcessManager::handle`]) changes the
//! state and collects [`Effects`]: commands for repositories, timeouts, the end of the
//! instance. Commands are executed with `causation_id` = the triggering event's id and its
//! correlation id ([`EventMetadata::caused_by`](crate::EventMetadata::caused_by)).
//!
//! - **Delivery** ([`Store::process_manager`](crate::Store::process_manager), then
//!   [`ProcessRunner::spawn`]) follows the global log with the projection runner, as the
//!   bus relay does: in commit order (an instance sees its events in the order they
//!   happened, which the outbox's parallel workers would not give), from a checkpoint
//!   that moves only after the batch was handled, with one active runner per name on
//!   PostgreSQL (the lease), and the status and waits of a
//!   [`ProjectionHandle`](crate::ProjectionHandle). Delivery is at least once.
//! - **Once per event**: handling an event first appends, with the expected version, a
//!   record naming the event (and the new state) to the instance's stream; only then are
//!   the commands issued, and a second record says they were. A redelivered event whose
//!   record is there issues nothing; one whose commands were cut short (a crash between
//!   the two records) issues those not yet recorded, computed again from the state before
//!   the event. Handlers must therefore be deterministic: same state and input, same
//!   commands.
//! - **Timeouts** ([`Effects::schedule`]) are events in the instance's stream. A task
//!   beside the delivery finds the pending ones when it starts (a query for this
//!   manager's timeout records) and learns of new ones from the log, and delivers each
//!   when due to [`ProcessManager::on_timeout`], once, as events are. They survive
//!   restarts: they are stored, not held in memory.
//! - **The end** ([`Effects::complete`]): a completed instance ignores every later event
//!   and its pending timeouts.
//!
//! [`ProcessTest`](crate::testing::ProcessTest) checks a manager's decisions without a
//! store: given these inputs, these commands.

mod delivery;
mod dispatch;
mod effects;
mod instance;
mod runner;
pub(crate) mod testing;
mod timeouts;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use effects::{Effects, IssuedCommand, ScheduledTimeout};
pub use runner::{ProcessHandle, ProcessRunner, ProcessStats, ProcessStatus};

use crate::domain_event::DomainEvent;
use crate::error::Result;
use crate::event::RecordedEvent;
use crate::store::Store;

/// What a process manager's [`ProcessManager::correlate`] returns when it cannot read an
/// event: the delivery retries, as for a projection's error.
pub type ProcessError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A typed process manager: the events it reacts to, how they map to instances, and
/// what an instance does with them.
///
/// ```
/// use std::time::Duration;
/// use chronicle::process::{Effects, Incoming, ProcessError, ProcessManager};
/// # use chronicle::{Aggregate, DomainEvent};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// # enum ShipmentEvent { Requested { order: String } }
/// # #[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
/// # #[aggregate(name = "shipment", event = ShipmentEvent)]
/// # struct Shipment;
/// # #[derive(Debug, thiserror::Error)]
/// # #[error("never")]
/// # struct Never;
/// # impl Aggregate for Shipment {
/// #     type Command = String;
/// #     type Error = Never;
/// #     fn apply(&mut self, _: ShipmentEvent) {}
/// #     fn handle(&self, order: &String) -> Result<Vec<ShipmentEvent>, Never> {
/// #         Ok(vec![ShipmentEvent::Requested { order: order.clone() }])
/// #     }
/// # }
///
/// /// Ships a paid order; gives up after a day without payment.
/// struct Shipping;
///
/// #[derive(Debug, Default, Clone, Serialize, Deserialize)]
/// struct ShippingState { paid: bool }
///
/// enum Input { Placed, Paid }
///
/// impl ProcessManager for Shipping {
///     const NAME: &'static str = "shipping";
///     type State = ShippingState;
///     type Input = Input;
///     type Timeout = ();
///
///     fn event_types(&self) -> &[&str] {
///         &["order.Placed", "order.Paid"]
///     }
///
///     fn correlate(&self, event: &Incoming<'_>) -> Result<Option<(String, Input)>, ProcessError> {
///         let order = event.aggregate_id().to_owned();
///         Ok(match event.event_type() {
///             "order.Placed" => Some((order, Input::Placed)),
///             "order.Paid" => Some((order, Input::Paid)),
///             _ => None,
///         })
///     }
///
///     fn handle(&self, state: &mut ShippingState, input: Input, key: &str, effects: &mut Effects<()>) {
///         match input {
///             Input::Placed => effects.schedule(Duration::from_secs(86_400), ()),
///             Input::Paid => {
///                 state.paid = true;
///                 effects.issue::<Shipment>(key, key.to_owned());
///                 effects.complete();
///             }
///         }
///     }
///
///     fn on_timeout(&self, _state: &mut ShippingState, _timeout: (), _key: &str, effects: &mut Effects<()>) {
///         effects.complete();
///     }
/// }
/// ```
pub trait ProcessManager: Send + Sync + 'static {
    /// The manager's name: instances live in streams `process.{NAME}-{key}` and the
    /// delivery keeps its checkpoint as `process:{NAME}`. Letters, digits, `_` and `.`;
    /// no `-`.
    const NAME: &'static str;

    /// An instance's state, stored (as JSON) with every event it handles.
    type State: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The events it reacts to, in its own typed form ([`ProcessManager::correlate`]
    /// makes them).
    type Input: Send + 'static;

    /// What a timeout carries back to [`ProcessManager::on_timeout`]; stored as JSON.
    type Timeout: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The event types it reacts to (exact types; at least one).
    fn event_types(&self) -> &[&str];

    /// The instance an event belongs to (its key) and the event as an input, or `None`
    /// to ignore the event.
    ///
    /// # Errors
    /// Any error (an event that does not decode): the delivery retries it.
    fn correlate(
        &self,
        event: &Incoming<'_>,
    ) -> std::result::Result<Option<(String, Self::Input)>, ProcessError>;

    /// Handles `input` for the instance `key`: changes `state`, issues commands, schedules
    /// timeouts, completes the instance. Must be deterministic (see the module's doc):
    /// no clock, no I/O; what it needs to know comes in the input and the state.
    fn handle(
        &self,
        state: &mut Self::State,
        input: Self::Input,
        key: &str,
        effects: &mut Effects<Self::Timeout>,
    );

    /// Handles a timeout that came due (the default ignores it). As deterministic as
    /// [`ProcessManager::handle`].
    fn on_timeout(
        &self,
        state: &mut Self::State,
        timeout: Self::Timeout,
        key: &str,
        effects: &mut Effects<Self::Timeout>,
    ) {
        let _ = (state, timeout, key, effects);
    }
}

/// An event offered to [`ProcessManager::correlate`]: the stored event, and typed
/// decoding with the store's upcasters.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    event: &'a RecordedEvent,
    store: &'a Store,
}

impl<'a> Incoming<'a> {
    pub(crate) fn new(event: &'a RecordedEvent, store: &'a Store) -> Self {
        Incoming { event, store }
    }

    /// The stored event.
    pub fn event(&self) -> &'a RecordedEvent {
        self.event
    }

    /// The event's type.
    pub fn event_type(&self) -> &'a str {
        &self.event.event_type
    }

    /// The id part of the event's stream (`42` for `order-42`).
    pub fn aggregate_id(&self) -> &'a str {
        self.event.stream_id.id()
    }

    /// The event as the typed event `E`.
    ///
    /// # Errors
    /// As [`Store::decode_event`].
    pub fn decode<E: DomainEvent>(&self) -> Result<E> {
        self.store.decode_event(self.event)
    }
}
