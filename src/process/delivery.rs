//! Handling one event or timeout for its instance, once: load the instance, decide,
//! claim (append the record with the expected version; a conflict starts over), issue
//! the commands with their cause, record that they were issued. A redelivery finds the
//! claim and issues only what was not recorded as issued.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use super::dispatch::{Dispatched, Repositories};
use super::effects::{Effects, IssuedCommand};
use super::instance::{
    ENDED, HANDLED, HandledRecord, ISSUED, Instance, IssuedRecord, TIMED_OUT, TIMEOUT,
    TimeoutRecord, record, stream_of,
};
use super::{Incoming, ProcessError, ProcessManager};
use crate::error::Error;
use crate::event::{EventMetadata, RecordedEvent};
use crate::store::Store;
use crate::stream::{ExpectedVersion, StreamId};

/// Tries of one handling that meets conflicts on its instance's stream.
const MAX_ATTEMPTS: u32 = 20;

/// What became of one delivery, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Handled now; its commands issued.
    Handled,
    /// Handled before (a redelivery): nothing issued.
    Duplicate,
    /// Handled before, but some commands were not recorded as issued: those were issued.
    Recovered,
    /// The instance had completed: ignored.
    Ended,
    /// `correlate` gave no instance, or the timeout is unknown: ignored.
    Ignored,
}

/// The counts a running manager keeps ([`ProcessStats`](super::ProcessStats)).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) handled: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) recovered: AtomicU64,
    pub(crate) ignored: AtomicU64,
    pub(crate) commands: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) timeouts: AtomicU64,
}

impl Counters {
    /// The counts now.
    pub(crate) fn stats(&self) -> super::ProcessStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        super::ProcessStats {
            handled: get(&self.handled),
            duplicates: get(&self.duplicates),
            recovered: get(&self.recovered),
            ignored: get(&self.ignored),
            commands: get(&self.commands),
            refused: get(&self.refused),
            timeouts: get(&self.timeouts),
        }
    }

    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Handled => &self.handled,
            Outcome::Duplicate => &self.duplicates,
            Outcome::Recovered => &self.recovered,
            Outcome::Ended | Outcome::Ignored => &self.ignored,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a handling follows: the triggering event's (or timeout's) id and metadata.
struct Cause {
    id: Uuid,
    metadata: EventMetadata,
}

impl Cause {
    /// Metadata for what this cause makes happen.
    fn metadata(&self) -> EventMetadata {
        let mut metadata = EventMetadata::default();
        metadata.follow(self.id, &self.metadata);
        metadata
    }
}

/// Delivers events and timeouts to the instances of `P`.
pub(crate) struct Delivery<P: ProcessManager> {
    pub(crate) manager: Arc<P>,
    pub(crate) store: Store,
    pub(crate) repositories: Repositories,
    pub(crate) counters: Arc<Counters>,
}

impl<P: ProcessManager> Delivery<P> {
    /// Handles `event` for the instance it correlates to.
    pub(crate) async fn event(&self, event: &RecordedEvent) -> Result<(), ProcessError> {
        let cause = Cause {
            id: event.id,
            metadata: event.metadata.clone(),
        };
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            // Correlated again on each try: the input is consumed by the handler.
            let Some((key, input)) = self.manager.correlate(&Incoming::new(event, &self.store))?
            else {
                break Outcome::Ignored;
            };
            let instance = Instance::<P>::load(&self.store, stream_of(P::NAME, &key)?).await?;
            if instance.ended {
                break Outcome::Ended;
            }
            if instance.handled.contains_key(&event.id) {
                let decide = |state: &mut P::State, effects: &mut Effects<P::Timeout>| {
                    self.manager.handle(state, input, &key, effects);
                };
                break self.redelivered(&instance, &cause, decide).await?;
            }
            let mut state = instance.state.clone();
            let mut effects = Effects::new(Utc::now());
            self.manager.handle(&mut state, input, &key, &mut effects);
            if self
                .claim(&instance, HANDLED, &cause, &state, &effects, attempt)
                .await?
            {
                self.issue(&instance.stream, &cause, effects.commands, 0)
                    .await?;
                break Outcome::Handled;
            }
        };
        self.counters.count(outcome);
        Ok(())
    }

    /// Handles the timeout `id` of the instance `stream`, if it is still pending.
    pub(crate) async fn timeout(&self, stream: &StreamId, id: Uuid) -> Result<(), ProcessError> {
        let key = stream.id();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let mut instance = Instance::<P>::load(&self.store, stream.clone()).await?;
            if instance.ended {
                break Outcome::Ended;
            }
            let Some(pending) = instance.timeouts.remove(&id) else {
                break Outcome::Ignored;
            };
            let cause = Cause {
                id,
                metadata: pending.metadata,
            };
            let timeout = pending.timeout;
            if instance.handled.contains_key(&id) {
                let decide = |state: &mut P::State, effects: &mut Effects<P::Timeout>| {
                    self.manager.on_timeout(state, timeout, key, effects);
                };
                break self.redelivered(&instance, &cause, decide).await?;
            }
            let mut state = instance.state.clone();
            let mut effects = Effects::new(Utc::now());
            self.manager
                .on_timeout(&mut state, timeout, key, &mut effects);
            if self
                .claim(&instance, TIMED_OUT, &cause, &state, &effects, attempt)
                .await?
            {
                self.issue(&instance.stream, &cause, effects.commands, 0)
                    .await?;
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                break Outcome::Handled;
            }
        };
        self.counters.count(outcome);
        Ok(())
    }

    /// For a cause the instance handled already: issues the commands not recorded as
    /// issued (computed again by `decide` from the state before it), if any.
    async fn redelivered(
        &self,
        instance: &Instance<P>,
        cause: &Cause,
        decide: impl FnOnce(&mut P::State, &mut Effects<P::Timeout>),
    ) -> Result<Outcome, ProcessError> {
        let Some(handling) = instance.handled.get(&cause.id) else {
            return Ok(Outcome::Ignored);
        };
        let Some(before) = handling
            .before
            .as_ref()
            .filter(|_| handling.issued < handling.commands)
        else {
            return Ok(Outcome::Duplicate);
        };
        let mut state = before.clone();
        let mut effects = Effects::new(Utc::now());
        decide(&mut state, &mut effects);
        tracing::info!(
            stream = %instance.stream,
            event = %cause.id,
            issued = handling.issued,
            commands = handling.commands,
            "a redelivered event's commands were cut short; issuing the rest"
        );
        self.issue(&instance.stream, cause, effects.commands, handling.issued)
            .await?;
        Ok(Outcome::Recovered)
    }

    /// Appends the record of `cause` (`kind`: handled or timed out), the timeouts
    /// scheduled and the end, expecting the instance's version. `false` after a conflict
    /// (paused: the caller loads again and retries).
    ///
    /// # Errors
    /// The store's errors; the conflict of the last try.
    async fn claim(
        &self,
        instance: &Instance<P>,
        kind: &str,
        cause: &Cause,
        state: &P::State,
        effects: &Effects<P::Timeout>,
        attempt: u32,
    ) -> Result<bool, ProcessError> {
        let metadata = cause.metadata();
        let commands = u32::try_from(effects.commands.len()).unwrap_or(u32::MAX);
        let handled = HandledRecord {
            event: cause.id,
            state,
            commands,
        };
        let mut records = vec![record(P::NAME, kind, &handled, &metadata)?];
        for scheduled in &effects.timeouts {
            let timeout = TimeoutRecord {
                due: scheduled.due,
                timeout: &scheduled.timeout,
            };
            records.push(record(P::NAME, TIMEOUT, &timeout, &metadata)?);
        }
        if effects.complete {
            records.push(record(P::NAME, ENDED, &serde_json::json!({}), &metadata)?);
        }
        match self
            .store
            .append(
                instance.stream.as_str(),
                ExpectedVersion::Exact(instance.version),
                records,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(stream = %instance.stream, attempt, "conflict on the instance; loading it again");
                tokio::time::sleep(conflict_pause(attempt)).await;
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Issues `commands` from the `from`-th on, each caused by `cause`, then records how
    /// many were issued. A store error stops it (after recording the ones before, if it
    /// can): the delivery retries, and the redelivery issues the rest. A refusal by the
    /// aggregate is logged and counted, not retried.
    async fn issue(
        &self,
        stream: &StreamId,
        cause: &Cause,
        commands: Vec<IssuedCommand>,
        from: u32,
    ) -> Result<(), ProcessError> {
        let total = u32::try_from(commands.len()).unwrap_or(u32::MAX);
        if from >= total {
            return Ok(());
        }
        let mut issued = from;
        for command in commands.into_iter().skip(from as usize) {
            let IssuedCommand {
                id,
                command: typed,
                dispatch,
                ..
            } = command;
            match dispatch(&self.repositories, &id, typed, cause.metadata()).await {
                Ok(Dispatched::Done) => {
                    self.counters.commands.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Dispatched::Refused(reason)) => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(instance = %stream, event = %cause.id, %reason, "the aggregate refused a process manager's command");
                }
                Err(error) => {
                    if issued > from {
                        let _ = self.record_issued(stream, cause, issued).await;
                    }
                    return Err(error.into());
                }
            }
            issued += 1;
        }
        self.record_issued(stream, cause, issued).await?;
        Ok(())
    }

    /// Records that the first `count` commands of `cause` were issued.
    async fn record_issued(
        &self,
        stream: &StreamId,
        cause: &Cause,
        count: u32,
    ) -> crate::error::Result<()> {
        let issued = IssuedRecord {
            event: cause.id,
            count,
        };
        let event = record(P::NAME, ISSUED, &issued, &cause.metadata())?;
        self.store
            .append(stream.as_str(), ExpectedVersion::StreamExists, vec![event])
            .await?;
        Ok(())
    }
}

/// A random pause before the next try after the `attempt`-th conflict: up to 1, 2, 4 …
/// 32 ms, so that competing deliveries spread out.
fn conflict_pause(attempt: u32) -> Duration {
    let ceiling = 1u64 << attempt.saturating_sub(1).min(5);
    Duration::from_micros(fastrand::u64(0..=ceiling * 1000))
}
