//! The executor: claims due requests under a lease, runs their handlers (each on a task of
//! its own, with the handler's timeout; a panic is caught by the task), and records the
//! outcomes in one transaction.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use super::handlers::{Handler, HandlerError, HandlerRequest};
use super::report::{Failure, FailureKind};
use super::{Outbox, micros, now_micros};
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::panics::CatchPanic;
use crate::store::ShreddedEvents;
use crate::store::batch::Flush;
use crate::store::requests::{self, Claimed, TurnKeys, attempt};

/// What one [`Outbox::execute`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutionReport {
    /// Requests claimed and run.
    pub claimed: u64,
    /// Handlers that succeeded.
    pub done: u64,
    /// Failures that will be retried.
    pub retrying: u64,
    /// Requests that went dead.
    pub dead: u64,
    /// Outcomes not recorded because the lease had run out and another executor had
    /// claimed the request (it runs again there: at-least-once).
    pub lost: u64,
}

impl std::ops::AddAssign for ExecutionReport {
    fn add_assign(&mut self, other: ExecutionReport) {
        self.claimed += other.claimed;
        self.done += other.done;
        self.retrying += other.retrying;
        self.dead += other.dead;
        self.lost += other.lost;
    }
}

/// How one execution failed.
pub(super) struct Failed {
    kind: Option<FailureKind>,
    error: String,
    /// A panic's backtrace.
    backtrace: Option<String>,
    /// The handler's own error, when it returned one.
    source: Option<HandlerError>,
}

/// How one execution ended.
pub(super) type Outcome = std::result::Result<(), Failed>;

/// A claimed request's event and the time its handler must be done by (`None`: nothing to
/// run, the request is done: the event was removed, or its stream was forgotten and such
/// events are skipped), or why it cannot run.
type Prepared = std::result::Result<Option<(RecordedEvent, Instant)>, Failed>;

impl Failed {
    fn new(kind: Option<FailureKind>, error: String) -> Self {
        Failed {
            kind,
            error,
            backtrace: None,
            source: None,
        }
    }
}

impl Outbox {
    /// Claims up to `workers` due requests, runs them side by side, and records their
    /// outcomes. Returns what it did (nothing claimed: nothing was due).
    ///
    /// # Errors
    /// Connection errors (outcomes not recorded are run again after the lease).
    pub async fn execute(&self) -> Result<ExecutionReport> {
        let claimed = self.claim(self.settings.workers).await?;
        if claimed.is_empty() {
            return Ok(ExecutionReport::default());
        }
        // Each handler runs on a task of its own (see `run_handler`).
        let runs = claimed.into_iter().map(|(request, event)| async move {
            let outcome = self.run(&request, event).await;
            (request, outcome)
        });
        let outcomes = futures::future::join_all(runs).await;
        self.record(outcomes).await
    }

    /// Claims up to `limit` due requests under a token of their own and fetches their
    /// events. An event that cannot be read is its request's non-retryable failure; a
    /// fetch that fails as a whole is every request's retryable one.
    pub(super) async fn claim(&self, limit: usize) -> Result<Vec<(Claimed, Prepared)>> {
        let span = tracing::debug_span!("chronicle.outbox.claim", limit);
        let started = Instant::now();
        let token = format!("{}/{}", self.executor_id, uuid::Uuid::now_v7());
        let (claimed, deadline) = async {
            let mut tx = self.store.begin_batch(Flush::Wait).await?;
            // The lease runs from here, once the transaction holds SQLite's write lock:
            // the wait for it is charged neither to the lease nor to the handlers, which
            // must be done before the lease runs out.
            let now = now_micros();
            let deadline = Instant::now() + self.settings.lease.mul_f64(0.9);
            let claimed = tx
                .claim_requests(
                    &self.handler_names,
                    &token,
                    now,
                    now.saturating_add(micros(self.settings.lease)),
                    limit,
                )
                .await?;
            tx.commit().await?;
            Ok::<_, Error>((claimed, deadline))
        }
        .instrument(span)
        .await?;
        metrics::histogram!("chronicle_outbox_claim_seconds")
            .record(started.elapsed().as_secs_f64());
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<uuid::Uuid> = claimed.iter().map(|request| request.event_id).collect();
        let events = match self.store.events_by_ids(&ids).await {
            Ok(events) => events,
            Err(error) => {
                let failure = || Failed::new(None, format!("the event could not be read: {error}"));
                return Ok(claimed
                    .into_iter()
                    .map(|request| (request, Err(failure())))
                    .collect());
            }
        };
        Ok(claimed
            .into_iter()
            .map(|request| {
                // Several handlers' requests may share an event.
                let event = match events.get(&request.event_id) {
                    Some(Ok(event)) => Ok(Some((event.clone(), deadline))),
                    Some(Err(Error::Shredded { .. }))
                        if self.settings.shredded == ShreddedEvents::Skip =>
                    {
                        Ok(None)
                    }
                    Some(Err(error)) => Err(Failed::new(
                        Some(FailureKind::NonRetryable),
                        error.to_string(),
                    )),
                    None => {
                        // Removed since (a hard delete, retention): nothing left to run.
                        tracing::info!(
                            handler = %request.handler,
                            event = %request.event_id,
                            "the request's event is no longer in the store; marked done"
                        );
                        Ok(None)
                    }
                };
                (request, event)
            })
            .collect())
    }

    /// Runs `request`'s handler on `event`, within its timeout.
    pub(super) async fn run(&self, request: &Claimed, prepared: Prepared) -> Outcome {
        let Some(handler) = self.handlers.get(&request.handler) else {
            // Not claimable: claims only ask for this map's handlers.
            return Err(Failed::new(
                Some(FailureKind::NonRetryable),
                format!("no handler `{}` here", request.handler),
            ));
        };
        let Some((event, deadline)) = prepared? else {
            return Ok(());
        };
        let span = crate::telemetry::event_span!(
            "chronicle.outbox.execute",
            &event,
            handler = %handler.name,
            attempt = request.attempts,
        );
        let started = Instant::now();
        let outcome = self
            .run_handler(handler, request, event, deadline)
            .instrument(span)
            .await;
        let labels = [
            ("handler", handler.name.clone()),
            (
                "outcome",
                match &outcome {
                    Ok(()) => "done",
                    Err(Failed {
                        kind: Some(FailureKind::Panic),
                        ..
                    }) => "panic",
                    Err(Failed { kind: Some(_), .. }) => "fatal",
                    Err(Failed { kind: None, .. }) => "failed",
                }
                .to_owned(),
            ),
        ];
        metrics::histogram!("chronicle_outbox_execution_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("chronicle_outbox_executions_total", &labels).increment(1);
        outcome
    }

    async fn run_handler(
        &self,
        handler: &Handler,
        request: &Claimed,
        event: RecordedEvent,
        deadline: Instant,
    ) -> Outcome {
        let call = HandlerRequest::new(
            request.id,
            handler.name.clone(),
            attempt(request.attempts),
            event,
            self.store.clone(),
        );
        // A task of its own, so handlers run in parallel; its panics (in the handler's
        // function as in its future) are caught with their backtrace. The timeout ends
        // the call before the lease does, so no other executor claims the request while
        // it still runs here (unless the handler blocks its thread past the abort).
        let run = Arc::clone(&handler.run);
        // The handler's timeout counts from here, its own start; the lease's end may come
        // first.
        let lease_left = deadline.saturating_duration_since(Instant::now());
        let timeout = handler.timeout.min(lease_left);
        let task = tokio::spawn(CatchPanic::new(async move { run(call).await }));
        let abort = task.abort_handle();
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Ok(Ok(())))) => Ok(()),
            Ok(Ok(Ok(Err(error)))) => Err(Failed {
                kind: (!error.is_retryable()).then_some(FailureKind::NonRetryable),
                error: error.message().to_owned(),
                backtrace: None,
                source: Some(error),
            }),
            Ok(Ok(Err(panicked))) => Err(Failed {
                kind: Some(FailureKind::Panic),
                error: format!("panicked: {}", panicked.message),
                backtrace: panicked.backtrace,
                source: None,
            }),
            Ok(Err(join)) => Err(Failed::new(
                None,
                format!("the handler's task ended: {join}"),
            )),
            Err(_) => {
                abort.abort();
                let error = if timeout < handler.timeout {
                    format!("stopped after {timeout:?}: the request's lease runs out")
                } else {
                    format!("timed out after {timeout:?}")
                };
                Err(Failed::new(None, error))
            }
        }
    }

    /// Records the outcomes in one transaction, and reports what needs reporting.
    pub(super) async fn record(
        &self,
        outcomes: Vec<(Claimed, Outcome)>,
    ) -> Result<ExecutionReport> {
        let now = now_micros();
        let mut executed = ExecutionReport {
            claimed: outcomes.len() as u64,
            ..ExecutionReport::default()
        };
        let mut reports = Vec::new();
        let mut tx = self.store.begin_batch(Flush::Wait).await?;
        // The streams whose turn these outcomes may pass on, locked before any row is
        // touched (PostgreSQL); only those recorded done or dead pass it.
        let ordered: TurnKeys<'_> = outcomes
            .iter()
            .filter(|(request, _)| request.ordered)
            .map(|(request, _)| (request.handler.as_str(), request.stream_id.as_str()))
            .collect();
        tx.lock_turns(&ordered).await?;
        let mut ended = TurnKeys::new();
        let mut done: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (request, outcome) in &outcomes {
            if outcome.is_ok() {
                done.entry(&request.token).or_default().push(request.id);
                if request.ordered {
                    ended.insert((request.handler.as_str(), request.stream_id.as_str()));
                }
            }
        }
        for (token, ids) in &done {
            let recorded = tx.finish_done(ids, token, now).await?;
            executed.done += recorded.len() as u64;
            executed.lost += (ids.len() - recorded.len()) as u64;
        }
        for (request, outcome) in &outcomes {
            let Err(failed) = outcome else { continue };
            let errors = u32::try_from(request.errors).unwrap_or(0).saturating_add(1);
            let (max_errors, delay) = match self.handlers.get(&request.handler) {
                // The backoff is the user's code: a panic in it means no pause.
                Some(handler) => (
                    handler.max_errors,
                    catch_unwind(AssertUnwindSafe(|| handler.backoff.delay(errors)))
                        .unwrap_or(Duration::ZERO),
                ),
                None => (1, Duration::ZERO),
            };
            let dead = failed.kind == Some(FailureKind::NonRetryable) || errors >= max_errors;
            let record = requests::Failed {
                error: &failed.error,
                dead,
                due_at: now.saturating_add(micros(delay)),
            };
            if !tx
                .finish_failed(request.id, &request.token, &record, now)
                .await?
            {
                executed.lost += 1;
                continue;
            }
            if dead {
                executed.dead += 1;
                if request.ordered {
                    ended.insert((request.handler.as_str(), request.stream_id.as_str()));
                }
            } else {
                executed.retrying += 1;
            }
            if failed.kind.is_some() || dead {
                reports.push((request, failed, dead));
            }
        }
        tx.pass_turns(&ended).await?;
        tx.commit().await?;
        for (request, failed, dead) in reports {
            let failure = Failure {
                kind: failed.kind.unwrap_or(FailureKind::Dead),
                handler: &request.handler,
                request_id: request.id,
                event_id: request.event_id,
                stream: &request.stream_id,
                attempt: attempt(request.attempts),
                dead,
                error: &failed.error,
                backtrace: failed.backtrace.as_deref(),
                source: failed.source.as_ref().map(HandlerError::source),
            };
            // The reporter is the user's code too.
            let reported = catch_unwind(AssertUnwindSafe(|| self.reporter.report(&failure)));
            if reported.is_err() {
                tracing::error!(request = request.id, "the outbox error reporter panicked");
            }
        }
        Ok(executed)
    }
}
