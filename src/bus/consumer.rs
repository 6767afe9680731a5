//! One subscription's handler run for one delivery: the rule every bus shares for what a
//! handler's answer means (acknowledge, deliver again after a pause, or give up), with
//! the panics caught, the counts kept and the failures reported.
//!
//! The in-memory bus loops over [`Consumer::attempt`] itself ([`Consumer::deliver`]); a
//! broker's consumer calls it once per message it receives and turns the [`Verdict`] into
//! the broker's ack, nak-with-delay or dead letter, the broker counting the deliveries.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::registry::stop_requested;
use super::{BusEvent, BusHealth, BusStats, Delivery, DynBusHandler, ErrorReporter, Subscribe};
use crate::outbox::{Failure, FailureKind};
use crate::panics::CatchPanic;
use crate::telemetry;
use tracing::Instrument;

/// What a delivery's outcome asks of the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The handler acknowledged the event.
    Ack,
    /// Deliver it again after this pause.
    Retry(Duration),
    /// Give it up: a fatal error, or the last delivery failed. `reason` says why (for a
    /// dead-letter message).
    Dead { reason: String },
}

/// What a bus and its subscriptions share: the reporter, the counts and the last error.
/// Subscriptions' tasks hold this, never the bus, so dropping the bus ends them.
pub(crate) struct Shared {
    /// The bus's name in metrics (`bus` label).
    name: String,
    reporter: Arc<dyn ErrorReporter>,
    counters: Counters,
    last_error: Mutex<Option<String>>,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    dead: AtomicU64,
}

impl Shared {
    /// Counts from zero for the bus called `name` in metrics (`in-memory`, `nats`, …),
    /// failures going to `reporter` unless a subscription names its own.
    pub(crate) fn named(name: &str, reporter: Arc<dyn ErrorReporter>) -> Arc<Self> {
        Arc::new(Shared {
            name: name.to_owned(),
            reporter,
            counters: Counters::default(),
            last_error: Mutex::new(None),
        })
    }

    /// Counts `events` published (acknowledged by the bus or broker).
    pub(crate) fn published(&self, events: u64) {
        self.counters.published.fetch_add(events, Ordering::Relaxed);
        metrics::counter!(telemetry::BUS_PUBLISHED, "bus" => self.name.clone()).increment(events);
    }

    fn delivery(&self, outcome: &'static str) {
        metrics::counter!(telemetry::BUS_DELIVERIES, "bus" => self.name.clone(), "outcome" => outcome)
            .increment(1);
    }

    /// Counts an event given up without a handler's verdict (a malformed message that
    /// went to the dead letters).
    #[cfg_attr(
        not(any(
            feature = "redis",
            feature = "nats",
            feature = "kafka",
            feature = "rabbitmq"
        )),
        allow(dead_code)
    )]
    pub(crate) fn dead(&self) {
        self.counters.dead.fetch_add(1, Ordering::Relaxed);
        self.delivery("dead");
    }

    /// Keeps `message` as the last error, for [`BusHealth::last_error`].
    pub(crate) fn note_error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(message);
    }

    /// The last error met, if any.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The counts so far.
    pub(crate) fn stats(&self) -> BusStats {
        let counters = &self.counters;
        BusStats {
            published: counters.published.load(Ordering::Relaxed),
            delivered: counters.delivered.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            panicked: counters.panicked.load(Ordering::Relaxed),
            dead: counters.dead.load(Ordering::Relaxed),
        }
    }

    /// A health report: `connected`, `reconnects` and `lag_events` as the bus knows them,
    /// the last error from here.
    pub(crate) fn health(&self, connected: bool, reconnects: u64, lag_events: u64) -> BusHealth {
        BusHealth {
            connected,
            reconnects,
            lag_events,
            lag: None,
            last_error: self.last_error(),
        }
    }
}

/// Runs one subscription's deliveries: its handler and options, the bus's shared state.
pub(crate) struct Consumer {
    options: Subscribe,
    handler: Box<dyn DynBusHandler>,
    shared: Arc<Shared>,
}

impl Consumer {
    pub(crate) fn new(
        options: Subscribe,
        handler: Box<dyn DynBusHandler>,
        shared: Arc<Shared>,
    ) -> Self {
        Consumer {
            options,
            handler,
            shared,
        }
    }

    /// The subscription's options.
    pub(crate) fn options(&self) -> &Subscribe {
        &self.options
    }

    /// Runs the handler for delivery number `attempt` (1 for the first) of `event`, and
    /// says what the bus does next. Counts the outcome, and reports panics, fatal errors
    /// and events given up.
    pub(crate) async fn attempt(&self, event: Arc<BusEvent>, attempt: u32) -> Verdict {
        let span = tracing::info_span!(
            "chronicle.bus.deliver",
            subscription = self.options.display_name(),
            event.id = %event.id,
            event.r#type = %event.event_type,
            event.subject = event.subject.as_deref(),
            attempt,
        );
        telemetry::link(&span, &event.metadata);
        let verdict = self.attempt_in_span(event, attempt).instrument(span).await;
        self.shared.delivery(match verdict {
            Verdict::Ack => "delivered",
            Verdict::Retry(_) => "failed",
            Verdict::Dead { .. } => "dead",
        });
        verdict
    }

    async fn attempt_in_span(&self, event: Arc<BusEvent>, attempt: u32) -> Verdict {
        let counters = &self.shared.counters;
        let delivery = Delivery::new(Arc::clone(&event), attempt);
        let called = CatchPanic::new(self.handler.handle(delivery)).await;
        let last = attempt >= self.options.max_deliveries;
        match called {
            Ok(Ok(())) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                Verdict::Ack
            }
            Ok(Err(error)) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                self.note_error(error.message());
                let kind = match (error.is_retryable(), last) {
                    (false, _) => FailureKind::NonRetryable,
                    (true, true) => FailureKind::Dead,
                    (true, false) => return Verdict::Retry(self.retry_delay(attempt)),
                };
                counters.dead.fetch_add(1, Ordering::Relaxed);
                let message = error.message().to_owned();
                self.report(&event, kind, attempt, &message, Some(error.source()), None);
                Verdict::Dead { reason: message }
            }
            Err(panicked) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                counters.panicked.fetch_add(1, Ordering::Relaxed);
                let message = format!("panicked: {}", panicked.message);
                self.note_error(&message);
                let backtrace = panicked.backtrace.as_deref();
                self.report(
                    &event,
                    FailureKind::Panic,
                    attempt,
                    &message,
                    None,
                    backtrace,
                );
                if last {
                    counters.dead.fetch_add(1, Ordering::Relaxed);
                    Verdict::Dead { reason: message }
                } else {
                    Verdict::Retry(self.retry_delay(attempt))
                }
            }
        }
    }

    /// Gives `event` up without running the handler: a broker delivered it `attempt`
    /// times, more than the subscription's maximum (consumers died while handling it).
    /// Counts it dead and reports it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn give_up(&self, event: &BusEvent, attempt: u32, reason: &str) {
        self.shared.dead();
        self.note_error(reason);
        self.report(event, FailureKind::Dead, attempt, reason, None, None);
    }

    /// Delivers `event` until the handler acknowledges it or it is dead, pausing between
    /// deliveries (the in-process bus's loop, and a bus that dead-letters after retrying
    /// in process); returns the last verdict ([`Verdict::Ack`] or [`Verdict::Dead`]).
    pub(crate) async fn deliver_until_done(&self, event: Arc<BusEvent>) -> Verdict {
        // A stop signal that never comes: its sender lives as long as the loop.
        let (_open, mut never) = watch::channel(false);
        loop {
            if let Some(verdict) = self
                .deliver_until_stopped(Arc::clone(&event), &mut never)
                .await
            {
                return verdict;
            }
        }
    }

    /// As [`Consumer::deliver_until_done`], unless `stop` says to stop (or its sender is
    /// gone) during a pause before a redelivery: then `None`, and the broker's consumer
    /// leaves the event unacknowledged, for the group's next consumer.
    pub(crate) async fn deliver_until_stopped(
        &self,
        event: Arc<BusEvent>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Verdict> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(Arc::clone(&event), attempt).await {
                verdict @ (Verdict::Ack | Verdict::Dead { .. }) => return Some(verdict),
                Verdict::Retry(delay) => {
                    tokio::select! {
                        biased;
                        () = stop_requested(stop) => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    fn note_error(&self, message: &str) {
        self.shared.note_error(format!(
            "subscription `{}`: {message}",
            self.options.display_name()
        ));
    }

    /// The backoff before delivery number `failures + 1` (a panicking backoff: none).
    fn retry_delay(&self, failures: u32) -> Duration {
        catch_unwind(AssertUnwindSafe(|| self.options.retry_delay(failures))).unwrap_or_default()
    }

    /// Hands a failure to the subscription's reporter, else the bus's (a panicking
    /// reporter is ignored).
    fn report(
        &self,
        event: &BusEvent,
        kind: FailureKind,
        attempt: u32,
        error: &str,
        source: Option<&(dyn std::error::Error + Send + Sync + 'static)>,
        backtrace: Option<&str>,
    ) {
        let failure = Failure {
            kind,
            handler: self.options.display_name(),
            request_id: 0,
            event_id: event.id,
            stream: event.subject.as_deref().unwrap_or_default(),
            attempt,
            dead: kind != FailureKind::Panic || attempt >= self.options.max_deliveries,
            error,
            source,
            backtrace,
        };
        let reporter = self
            .options
            .reporter
            .as_ref()
            .unwrap_or(&self.shared.reporter);
        let _ = catch_unwind(AssertUnwindSafe(|| reporter.report(&failure)));
    }
}
