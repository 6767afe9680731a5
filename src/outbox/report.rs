//! Where the outbox (and the bus's subscriptions, [`crate::bus`]) report what a person
//! should look at: errors no retry cures, panics, and requests or events going dead.

use uuid::Uuid;

/// Why a failure is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The handler said no retry will help ([`HandlerError::fatal`](crate::HandlerError::fatal)),
    /// or the event could not be read: the request is dead.
    NonRetryable,
    /// The handler panicked (counted as a failure; retried unless that was the last try).
    Panic,
    /// The request failed `max_errors` times and is dead.
    Dead,
}

/// A failure of one execution, as reported.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Failure<'a> {
    /// Why it is reported.
    pub kind: FailureKind,
    /// The handler that failed (a bus subscription: its name, else its pattern).
    pub handler: &'a str,
    /// The request's id in `handler_requests` (0 for a bus delivery, which has none).
    pub request_id: i64,
    /// The event it ran for.
    pub event_id: Uuid,
    /// That event's stream (a bus event: its subject, or empty).
    pub stream: &'a str,
    /// Which execution failed (1 for the first).
    pub attempt: u32,
    /// Whether the request is dead now.
    pub dead: bool,
    /// What went wrong.
    pub error: &'a str,
    /// The handler's own error, typed, when it returned one
    /// ([`HandlerError::source`](crate::HandlerError::source)): downcast it to its type.
    /// `None` for a panic, a timeout, or an event that could not be read.
    pub source: Option<&'a (dyn std::error::Error + Send + Sync + 'static)>,
    /// The panic's backtrace (panics only). The executor captures it with a panic hook it
    /// installs once, which chains to the hook before it and only records panics raised
    /// inside handlers.
    pub backtrace: Option<&'a str>,
}

/// Receives the failures worth a person's attention.
pub trait ErrorReporter: Send + Sync + 'static {
    /// Reports `failure`; returns whether it was reported.
    fn report(&self, failure: &Failure<'_>) -> bool;
}

/// Reports failures as `tracing` errors (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingReporter;

impl ErrorReporter for TracingReporter {
    fn report(&self, failure: &Failure<'_>) -> bool {
        tracing::error!(
            kind = ?failure.kind,
            handler = failure.handler,
            request = failure.request_id,
            event_id = %failure.event_id,
            stream = failure.stream,
            attempt = failure.attempt,
            dead = failure.dead,
            backtrace = failure.backtrace,
            "event handler failed: {}",
            failure.error
        );
        true
    }
}
