//! Given/when/then tests for aggregates, without a store:
//! `AggregateTest::<A>::given(events).when(command).then(expected_events)`.
//!
//! The aggregate's [`Aggregate::apply`] folds the given events into a state, its
//! [`Aggregate::handle`] runs the command, and the outcome is compared with what the test
//! expects. A mismatch panics with a line per event, so the difference is easy to spot.
//!
//! [`OutboxTest`] tells which handler requests an outbox creates for given events (on
//! SQLite in memory, no handler run).
//!
//! [`Outcome::publish_to`] hands the command's events to a bus, as the relay would once
//! they are stored, so a test can assert what would be published with the test buses
//! ([`RecordingBus`](crate::bus::RecordingBus), [`NoopBus`](crate::bus::NoopBus)).
//!
//! [`ProcessTest`] does the same for process managers: given these inputs, these commands.
//!
//! [`ProjectionTest`] does the same for a projection: given these events, the projection
//! built this read model (run for real, on an in-memory SQLite store).

use std::fmt::{self, Debug, Write as _};

pub use crate::process::testing::{ProcessOutcome, ProcessTest};

use crate::aggregate::Aggregate;
use crate::bus::{Bus, BusEvent};
use crate::domain_event::DomainEvent;
pub use crate::outbox::testing::{OutboxTest, PlannedRequest};

pub(crate) mod diff;
mod projection;

use self::diff::diff;

pub use projection::{Projected, ProjectionTest};

/// A given/when/then test of aggregate `A`'s domain logic.
///
/// ```
/// # use chronicle::{Aggregate, DomainEvent};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// # enum CounterEvent { Incremented { by: u32 } }
/// # #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
/// # #[aggregate(name = "counter", event = CounterEvent)]
/// # struct Counter { total: u64 }
/// # #[derive(Debug, PartialEq, thiserror::Error)]
/// # #[error("zero")]
/// # struct Zero;
/// # impl Aggregate for Counter {
/// #     type Command = u32;
/// #     type Error = Zero;
/// #     fn apply(&mut self, CounterEvent::Incremented { by }: CounterEvent) { self.total += u64::from(by) }
/// #     fn handle(&self, by: &u32) -> Result<Vec<CounterEvent>, Zero> {
/// #         if *by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by: *by }]) }
/// #     }
/// # }
/// use chronicle::testing::AggregateTest;
///
/// let after = AggregateTest::<Counter>::given([CounterEvent::Incremented { by: 2 }])
///     .when(3)
///     .then([CounterEvent::Incremented { by: 3 }]);
/// assert_eq!(after.total, 5);
///
/// AggregateTest::<Counter>::given([]).when(0).then_error(Zero);
/// ```
pub struct AggregateTest<A: Aggregate> {
    state: A,
    given: usize,
    id: String,
}

impl<A: Aggregate> AggregateTest<A> {
    /// The aggregate after `events`, applied in order to its default state.
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let mut state = A::default();
        let mut given = 0;
        for event in events {
            state.apply(event);
            given += 1;
        }
        AggregateTest {
            state,
            given,
            id: "test".to_owned(),
        }
    }

    /// The aggregate's id (default `test`): its stream, `{NAME}-{id}`, is the subject of
    /// the events [`Outcome::publish_to`] publishes.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Runs `command` against the aggregate.
    pub fn when(self, command: A::Command) -> Outcome<A>
    where
        A::Command: Debug,
    {
        let result = self.state.handle(&command);
        Outcome {
            state: self.state,
            context: format!("given {}, when {command:?}", events(self.given)),
            stream: format!("{}-{}", A::NAME, self.id),
            result,
        }
    }
}

/// What the command did in an [`AggregateTest`]; assert on it with `then…`.
pub struct Outcome<A: Aggregate> {
    state: A,
    context: String,
    /// The aggregate's stream.
    stream: String,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Outcome<A> {
    /// Publishes the events the command produced (none when it was refused) to `bus`, as
    /// the relay would publish them once stored: their types, payloads and schema
    /// versions, the aggregate's stream as the subject. Then assert on the bus, and on
    /// the outcome as usual.
    ///
    /// ```
    /// # use chronicle::{Aggregate, DomainEvent};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
    /// # #[event(prefix = "counter.")]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
    /// # #[aggregate(name = "counter", event = CounterEvent)]
    /// # struct Counter { total: u64 }
    /// # #[derive(Debug, PartialEq, thiserror::Error)]
    /// # #[error("zero")]
    /// # struct Zero;
    /// # impl Aggregate for Counter {
    /// #     type Command = u32;
    /// #     type Error = Zero;
    /// #     fn apply(&mut self, CounterEvent::Incremented { by }: CounterEvent) { self.total += u64::from(by) }
    /// #     fn handle(&self, by: &u32) -> Result<Vec<CounterEvent>, Zero> {
    /// #         if *by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by: *by }]) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use chronicle::bus::RecordingBus;
    /// use chronicle::testing::AggregateTest;
    ///
    /// let bus = RecordingBus::new();
    /// AggregateTest::<Counter>::given([])
    ///     .id("7")
    ///     .when(3)
    ///     .publish_to(&bus)
    ///     .await
    ///     .then([CounterEvent::Incremented { by: 3 }]);
    /// let published = bus.events_of_type("counter.Incremented");
    /// assert_eq!(published[0].subject.as_deref(), Some("counter-7"));
    /// # }
    /// ```
    ///
    /// # Panics
    /// When an event does not serialize, or the bus refuses it (test code).
    pub async fn publish_to<B: Bus>(self, bus: &B) -> Self {
        if let Ok(events) = &self.result {
            let mut published = Vec::with_capacity(events.len());
            for event in events {
                let new_event = match event.to_new_event() {
                    Ok(new_event) => new_event,
                    Err(error) => panic!("{}: an event does not serialize: {error}", self.context),
                };
                published.push(BusEvent::from_new_event(self.stream.clone(), &new_event));
            }
            if let Err(error) = bus.publish_batch(published).await {
                panic!("{}: the bus refused the events: {error}", self.context);
            }
        }
        self
    }
}

impl<A: Aggregate> Outcome<A>
where
    A::Event: Debug + PartialEq,
    A::Error: Debug,
{
    /// Asserts that the command produced exactly `expected`, in order, and returns the
    /// state after applying them.
    ///
    /// # Panics
    /// When the command was refused or produced other events; the message lists each
    /// event expected and produced.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        let produced = match self.result {
            Ok(produced) => produced,
            Err(error) => panic!(
                "{}: expected events, but the command was refused: {error:?}\n{}",
                self.context,
                list("expected", &expected)
            ),
        };
        if produced != expected {
            panic!(
                "{}: events differ\n{}",
                self.context,
                diff(&expected, &produced)
            );
        }
        let mut state = self.state;
        for event in produced {
            state.apply(event);
        }
        state
    }

    /// Asserts that the command was refused with `expected`.
    ///
    /// # Panics
    /// When the command produced events, or was refused with another error.
    #[track_caller]
    pub fn then_error(self, expected: A::Error)
    where
        A::Error: PartialEq,
    {
        match self.result {
            Ok(produced) => panic!(
                "{}: expected the error {expected:?}, but the command produced events\n{}",
                self.context,
                list("produced", &produced)
            ),
            Err(error) if error != expected => panic!(
                "{}: errors differ\n  expected: {expected:?}\n  actual:   {error:?}",
                self.context
            ),
            Err(_) => {}
        }
    }

    /// The raw outcome, for assertions the `then…` methods do not cover.
    pub fn result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }
}

/// `count` events in words: "no events", "1 event", "2 events".
fn events(count: usize) -> String {
    match count {
        0 => "no events".to_owned(),
        1 => "1 event".to_owned(),
        count => format!("{count} events"),
    }
}

fn list<T: Debug>(label: &str, events: &[T]) -> String {
    let mut out = String::new();
    if events.is_empty() {
        let _ = writeln!(out, "  {label}: no events");
    }
    for (index, event) in events.iter().enumerate() {
        let _ = writeln!(out, "  #{index} {label}: {event:?}");
    }
    out
}

impl<A: Aggregate + Debug> Debug for AggregateTest<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateTest")
            .field("state", &self.state)
            .field("given", &self.given)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::events;

    #[test]
    fn event_counts_are_in_words_with_the_right_plural() {
        assert_eq!(events(0), "no events");
        assert_eq!(events(1), "1 event");
        assert_eq!(events(2), "2 events");
    }
}
