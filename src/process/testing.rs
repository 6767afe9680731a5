//! Given/when/then tests for process managers, without a store:
//! `ProcessTest::new(manager).given(inputs).when(input).then_issued::<A>(commands)`.
//! Re-exported from [`chronicle::testing`](crate::testing).

use std::fmt::{self, Debug};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Effects, IssuedCommand, ProcessManager, ScheduledTimeout};
use crate::aggregate::Aggregate;

/// A given/when/then test of process manager `P`'s decisions, for one instance.
///
/// The given inputs (and timeouts) are handled in order from the default state, their
/// effects dropped, as the delivery would have handled them; inputs after the instance
/// completed are ignored, as the delivery ignores them. Then `when` handles one more and
/// returns what it decided.
///
/// ```
/// # use std::time::Duration;
/// # use chronicle::process::{Effects, Incoming, ProcessError, ProcessManager};
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
/// #     fn handle(&self, order: &String) -> Result<Vec<ShipmentEvent>, Never> { Ok(vec![]) }
/// # }
/// # struct Shipping;
/// # #[derive(Debug)]
/// # enum Input { Placed, Paid }
/// # impl ProcessManager for Shipping {
/// #     const NAME: &'static str = "shipping";
/// #     type State = ();
/// #     type Input = Input;
/// #     type Timeout = ();
/// #     fn event_types(&self) -> &[&str] { &["order.Placed", "order.Paid"] }
/// #     fn correlate(&self, _: &Incoming<'_>) -> Result<Option<(String, Input)>, ProcessError> { Ok(None) }
/// #     fn handle(&self, _: &mut (), input: Input, key: &str, effects: &mut Effects<()>) {
/// #         match input {
/// #             Input::Placed => effects.schedule(Duration::from_secs(60), ()),
/// #             Input::Paid => { effects.issue::<Shipment>(key, key.to_owned()); effects.complete(); }
/// #         }
/// #     }
/// # }
/// use chronicle::testing::ProcessTest;
///
/// let outcome = ProcessTest::new(Shipping).key("o-1").given([Input::Placed]).when(Input::Paid);
/// outcome.then_issued::<Shipment>([("o-1", "o-1".to_owned())]);
/// assert!(outcome.is_complete());
///
/// let placed = ProcessTest::new(Shipping).when(Input::Placed);
/// placed.then_nothing_issued();
/// assert_eq!(placed.scheduled(), vec![(Duration::from_secs(60), &())]);
/// ```
pub struct ProcessTest<P: ProcessManager> {
    manager: P,
    state: P::State,
    key: String,
    complete: bool,
    now: DateTime<Utc>,
    given: usize,
}

impl<P: ProcessManager> ProcessTest<P> {
    /// A test of `manager`, for an instance with the key `test`, at the current time.
    pub fn new(manager: P) -> Self {
        ProcessTest {
            manager,
            state: P::State::default(),
            key: "test".to_owned(),
            complete: false,
            now: Utc::now(),
            given: 0,
        }
    }

    /// The instance's key (default `test`), as the handlers receive it.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// The instance after handling `inputs`, in order.
    pub fn given(mut self, inputs: impl IntoIterator<Item = P::Input>) -> Self {
        for input in inputs {
            if !self.complete {
                let mut effects = Effects::new(self.now);
                self.manager
                    .handle(&mut self.state, input, &self.key, &mut effects);
                self.complete = effects.complete;
            }
            self.given += 1;
        }
        self
    }

    /// The instance after `timeout` came due.
    pub fn given_timeout(mut self, timeout: P::Timeout) -> Self {
        if !self.complete {
            let mut effects = Effects::new(self.now);
            self.manager
                .on_timeout(&mut self.state, timeout, &self.key, &mut effects);
            self.complete = effects.complete;
        }
        self.given += 1;
        self
    }

    /// Handles `input` and returns what the manager decided.
    pub fn when(self, input: P::Input) -> ProcessOutcome<P> {
        self.decide(|manager, state, key, effects| manager.handle(state, input, key, effects))
    }

    /// Delivers `timeout` and returns what the manager decided.
    pub fn when_timeout(self, timeout: P::Timeout) -> ProcessOutcome<P> {
        self.decide(|manager, state, key, effects| {
            manager.on_timeout(state, timeout, key, effects);
        })
    }

    fn decide(
        self,
        run: impl FnOnce(&P, &mut P::State, &str, &mut Effects<P::Timeout>),
    ) -> ProcessOutcome<P> {
        let ProcessTest {
            manager,
            mut state,
            key,
            complete,
            now,
            given,
        } = self;
        let mut effects = Effects::new(now);
        if !complete {
            run(&manager, &mut state, &key, &mut effects);
        }
        ProcessOutcome {
            state,
            effects,
            ignored: complete,
            now,
            context: format!("process manager `{}` given {given} input(s)", P::NAME),
        }
    }
}

impl<P: ProcessManager> Debug for ProcessTest<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessTest")
            .field("name", &P::NAME)
            .field("key", &self.key)
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

/// What a process manager decided in a [`ProcessTest`].
pub struct ProcessOutcome<P: ProcessManager> {
    state: P::State,
    effects: Effects<P::Timeout>,
    ignored: bool,
    now: DateTime<Utc>,
    context: String,
}

impl<P: ProcessManager> ProcessOutcome<P> {
    /// Every command issued, in order (aggregate, id, and the typed command through
    /// [`IssuedCommand::command`]).
    pub fn commands(&self) -> &[IssuedCommand] {
        self.effects.commands()
    }

    /// The commands issued to aggregates `A`, in order, with their ids.
    pub fn issued<A: Aggregate>(&self) -> Vec<(&str, &A::Command)>
    where
        A::Command: 'static,
    {
        self.commands()
            .iter()
            .filter_map(|command| Some((command.id(), command.command::<A>()?)))
            .collect()
    }

    /// Asserts that the commands issued to aggregates `A` are exactly `expected` (id,
    /// command), in order.
    ///
    /// # Panics
    /// When they differ; the message lists both.
    #[track_caller]
    pub fn then_issued<A: Aggregate>(
        &self,
        expected: impl IntoIterator<Item = (impl Into<String>, A::Command)>,
    ) where
        A::Command: PartialEq + Debug + 'static,
    {
        let expected: Vec<(String, A::Command)> = expected
            .into_iter()
            .map(|(id, command)| (id.into(), command))
            .collect();
        let issued = self.issued::<A>();
        let same = issued.len() == expected.len()
            && issued
                .iter()
                .zip(&expected)
                .all(|((id, command), (want_id, want))| id == want_id && *command == want);
        if !same {
            let expected: Vec<(&str, &A::Command)> = expected
                .iter()
                .map(|(id, command)| (id.as_str(), command))
                .collect();
            panic!(
                "{}: the commands to `{}` differ\n{}",
                self.context,
                A::NAME,
                crate::testing::diff::diff(&expected, &issued)
            );
        }
    }

    /// Asserts that no command was issued.
    ///
    /// # Panics
    /// When one was; the message names each.
    #[track_caller]
    pub fn then_nothing_issued(&self) {
        assert!(
            self.commands().is_empty(),
            "{}: expected no command, got {:?}",
            self.context,
            self.commands()
        );
    }

    /// The timeouts scheduled: how long after the handling each comes due, and what it
    /// carries.
    pub fn scheduled(&self) -> Vec<(Duration, &P::Timeout)> {
        self.effects
            .timeouts()
            .iter()
            .map(|ScheduledTimeout { due, timeout }| {
                ((*due - self.now).to_std().unwrap_or_default(), timeout)
            })
            .collect()
    }

    /// Whether the instance completed.
    pub fn is_complete(&self) -> bool {
        self.effects.is_complete()
    }

    /// Whether the input was ignored because the instance had completed before it.
    pub fn was_ignored(&self) -> bool {
        self.ignored
    }

    /// The instance's state after the input.
    pub fn state(&self) -> &P::State {
        &self.state
    }
}

impl<P: ProcessManager> Debug for ProcessOutcome<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessOutcome")
            .field("effects", &self.effects)
            .field("ignored", &self.ignored)
            .finish_non_exhaustive()
    }
}
