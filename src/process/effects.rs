//! What a process manager's handler decides: [`Effects`], the commands, timeouts and end
//! it collects. Nothing here runs anything; the delivery executes the effects after the
//! instance's record is stored.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::dispatch::{DispatchFn, dispatch};
use crate::aggregate::Aggregate;

/// The effects of one handled event or timeout: commands to issue (in order), timeouts to
/// schedule, and whether the instance is complete.
pub struct Effects<T> {
    pub(crate) commands: Vec<IssuedCommand>,
    pub(crate) timeouts: Vec<ScheduledTimeout<T>>,
    pub(crate) complete: bool,
    /// "Now" for [`Effects::schedule`]: when the handling began.
    now: DateTime<Utc>,
}

impl<T> Effects<T> {
    pub(crate) fn new(now: DateTime<Utc>) -> Self {
        Effects {
            commands: Vec::new(),
            timeouts: Vec::new(),
            complete: false,
            now,
        }
    }

    /// Issues `command` to the aggregate `A` with id `id`, through the runner's
    /// repository of `A` ([`ProcessRunner::repository`](super::ProcessRunner::repository),
    /// or a default one). Its events get the triggering event as their cause.
    pub fn issue<A: Aggregate>(&mut self, id: impl fmt::Display, command: A::Command)
    where
        A::Command: 'static,
    {
        self.commands.push(IssuedCommand {
            aggregate: A::NAME,
            id: id.to_string(),
            command: Box::new(command),
            dispatch: dispatch::<A>,
        });
    }

    /// Schedules `timeout` to come back to
    /// [`ProcessManager::on_timeout`](super::ProcessManager::on_timeout) after `delay`
    /// (counted from when the handling began).
    pub fn schedule(&mut self, delay: Duration, timeout: T) {
        let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        let due = self
            .now
            .checked_add_signed(delay)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.schedule_at(due, timeout);
    }

    /// Schedules `timeout` to come back at `due` (at once, if that has passed).
    pub fn schedule_at(&mut self, due: DateTime<Utc>, timeout: T) {
        self.timeouts.push(ScheduledTimeout { due, timeout });
    }

    /// Completes the instance: it ignores every later event, and its pending timeouts.
    pub fn complete(&mut self) {
        self.complete = true;
    }

    /// The commands issued so far, in order.
    pub fn commands(&self) -> &[IssuedCommand] {
        &self.commands
    }

    /// The timeouts scheduled so far.
    pub fn timeouts(&self) -> &[ScheduledTimeout<T>] {
        &self.timeouts
    }

    /// Whether [`Effects::complete`] was called.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}

impl<T> fmt::Debug for Effects<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Effects")
            .field("commands", &self.commands)
            .field("timeouts", &self.timeouts.len())
            .field("complete", &self.complete)
            .finish()
    }
}

/// A command a handler issued: the aggregate type, its id, and the typed command.
pub struct IssuedCommand {
    pub(crate) aggregate: &'static str,
    pub(crate) id: String,
    pub(crate) command: Box<dyn Any + Send + Sync>,
    pub(crate) dispatch: DispatchFn,
}

impl IssuedCommand {
    /// The aggregate's name (`A::NAME`).
    pub fn aggregate(&self) -> &'static str {
        self.aggregate
    }

    /// The aggregate's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The command, when it was issued to an aggregate of type `A`.
    pub fn command<A: Aggregate>(&self) -> Option<&A::Command>
    where
        A::Command: 'static,
    {
        if self.aggregate != A::NAME {
            return None;
        }
        self.command.downcast_ref()
    }
}

impl fmt::Debug for IssuedCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.aggregate, self.id)
    }
}

/// A timeout a handler scheduled.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledTimeout<T> {
    /// When it comes due.
    pub due: DateTime<Utc>,
    /// What it carries.
    pub timeout: T,
}
