//! What the outbox runs: handlers, the event types they answer to, their options, and
//! the request a handler receives.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::aggregate::{Aggregate, CommandError, Executed, Repository};
use crate::domain_event::DomainEvent;
use crate::error::{Result, ValidationError};
use crate::event::{EventMetadata, RecordedEvent};
use crate::projection::StartFrom;
use crate::store::Store;
use crate::text;

pub use crate::pattern::Pattern;

/// Why a handler could not do its work, and whether trying again may help.
///
/// Any error converts into a retryable one with `?`; mark one that never will succeed
/// with [`HandlerError::fatal`]: the request goes dead at once. The error is kept as it
/// was given, typed: the [`ErrorReporter`](crate::outbox::ErrorReporter) gets it as
/// [`Failure::source`](crate::outbox::Failure::source), to downcast to its type. (What
/// is stored with the request is its message.)
pub struct HandlerError {
    source: Box<dyn std::error::Error + Send + Sync>,
    message: String,
    retryable: bool,
}

impl HandlerError {
    /// An error worth retrying (the default of `?`): an error value, or a message.
    pub fn retry(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        HandlerError::new(error.into(), true)
    }

    /// An error no retry cures: the request is dead at once, and the error reported.
    pub fn fatal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        HandlerError::new(error.into(), false)
    }

    fn new(source: Box<dyn std::error::Error + Send + Sync>, retryable: bool) -> Self {
        HandlerError {
            message: source.to_string(),
            source,
            retryable,
        }
    }

    /// Whether the request should be tried again.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error as the handler gave it (downcast it to its type; a message given as
    /// text is a private type).
    pub fn source(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        HandlerError::retry(error)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("source", &self.source)
            .field("retryable", &self.retryable)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One execution of a handler for one event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HandlerRequest {
    /// The request's id (its row in `handler_requests`).
    pub id: i64,
    /// The handler it is for.
    pub handler: String,
    /// Which execution this is: 1 for the first.
    pub attempt: u32,
    /// The event: id, type, stream, position, metadata and decoded payload.
    pub event: RecordedEvent,
    store: Store,
}

impl HandlerRequest {
    pub(crate) fn new(
        id: i64,
        handler: String,
        attempt: u32,
        event: RecordedEvent,
        store: Store,
    ) -> Self {
        HandlerRequest {
            id,
            handler,
            attempt,
            event,
            store,
        }
    }

    /// The payload deserialized into `T`.
    ///
    /// # Errors
    /// As [`RecordedEvent::data`].
    pub fn data<T: DeserializeOwned>(&self) -> Result<T> {
        self.event.data()
    }

    /// The event as the typed event `E` (with the store's upcasters).
    ///
    /// # Errors
    /// As [`Store::decode_event`].
    pub fn decode<E: DomainEvent>(&self) -> Result<E> {
        self.store.decode_event(&self.event)
    }

    /// Every domain event the event stands for (several when an upcaster splits it, none
    /// when its type was dropped).
    ///
    /// # Errors
    /// As [`Store::decode_events`].
    pub fn decode_events<E: DomainEvent>(&self) -> Result<Vec<E>> {
        self.store.decode_events(&self.event)
    }

    /// Metadata for what this handler writes because of the event: causation and
    /// correlation set from it ([`EventMetadata::caused_by`]). Pass it to
    /// [`Repository::execute_with`] or [`NewEvent::metadata`](crate::NewEvent::metadata)
    /// after setting your own fields.
    pub fn caused_metadata(&self) -> EventMetadata {
        EventMetadata::default().caused_by(&self.event)
    }

    /// Runs `command` on the aggregate `id` through `repository`, caused by this request's
    /// event: [`Repository::execute_caused_by`].
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub async fn execute<A: Aggregate>(
        &self,
        repository: &Repository<A>,
        id: impl fmt::Display,
        command: A::Command,
    ) -> std::result::Result<Executed<A>, CommandError<A::Error>> {
        repository.execute_caused_by(&self.event, id, command).await
    }
}

/// How long to wait before the next try, from the number of failures so far (1 after the
/// first).
#[derive(Clone)]
pub struct Backoff(Arc<dyn Fn(u32) -> Duration + Send + Sync>);

impl Backoff {
    /// Exponential with full jitter: a random pause between zero and
    /// `min(cap, base × 2^(failures − 1))`, so that requests failing together do not
    /// retry together.
    pub fn exponential(base: Duration, cap: Duration) -> Self {
        Backoff(Arc::new(move |failures| {
            let ceiling = base
                .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(31)))
                .min(cap);
            ceiling.mul_f64(fastrand::f64())
        }))
    }

    /// Any function of the number of failures.
    pub fn from_fn(delay: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        Backoff(Arc::new(delay))
    }

    pub(crate) fn delay(&self, failures: u32) -> Duration {
        (self.0)(failures)
    }
}

impl Default for Backoff {
    /// [`Backoff::exponential`] from 500 ms, capped at 5 minutes.
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(500), Duration::from_secs(300))
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Backoff(..)")
    }
}

type HandlerFn = Arc<
    dyn Fn(HandlerRequest) -> BoxFuture<'static, std::result::Result<(), HandlerError>>
        + Send
        + Sync,
>;

/// A named handler, the event types it answers to, and how its requests run.
///
/// ```
/// use std::time::Duration;
/// use chronicle::{Handler, HandlerError, HandlerRequest};
///
/// let welcome = Handler::new("welcome-email", "account.Opened", |request: HandlerRequest| async move {
///     let owner: String = request.event.json()?["owner"].as_str().unwrap_or_default().into();
///     if owner.is_empty() {
///         return Err(HandlerError::fatal("an account without an owner"));
///     }
///     // send the email …
///     Ok(())
/// })
/// .max_errors(3)
/// .priority(10)
/// .timeout(Duration::from_secs(5));
/// ```
#[derive(Clone)]
pub struct Handler {
    pub(crate) name: String,
    pub(crate) pattern: Pattern,
    pub(crate) run: HandlerFn,
    pub(crate) max_errors: u32,
    pub(crate) priority: i32,
    pub(crate) backoff: Backoff,
    pub(crate) timeout: Duration,
    pub(crate) ordered: bool,
    /// Where it starts; `None`: the outbox's [`Outbox::start_from`](crate::Outbox::start_from).
    pub(crate) start: Option<StartFrom>,
}

impl Handler {
    /// `run` under the stable `name` (requests are stored under it), for the event types
    /// `pattern` matches. Defaults: 5 errors before a request is dead, priority 50, the
    /// default [`Backoff`], a 30 s timeout, requests of one stream in any order.
    pub fn new<F, Fut>(name: impl Into<String>, pattern: impl Into<String>, run: F) -> Self
    where
        F: Fn(HandlerRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
    {
        Handler {
            name: name.into(),
            pattern: Pattern::new(pattern),
            run: Arc::new(move |request| Box::pin(run(request))),
            max_errors: 5,
            priority: 50,
            backoff: Backoff::default(),
            timeout: Duration::from_secs(30),
            ordered: false,
            start: None,
        }
    }

    /// Which events this handler gets requests for, fixed when an outbox's processor
    /// first sees the handler (by its name) and kept from then on:
    ///
    /// - [`StartFrom::End`] (**the default**, through
    ///   [`Outbox::start_from`](crate::Outbox::start_from)): only events appended after
    ///   that moment ("from now on"). A handler added to a store with history does not
    ///   send last year's emails again.
    /// - [`StartFrom::Beginning`]: every event the processor reads. On an outbox that
    ///   runs for the first time, the processor then starts at the beginning of the log;
    ///   on one that already ran, it reads on from its checkpoint, so history before it
    ///   is not replayed: to replay it into a new handler, give the handler an outbox of
    ///   its own ([`Outbox::name`](crate::Outbox::name)).
    /// - [`StartFrom::After`]: events after that position (with the same limit).
    ///
    /// The handlers of an outbox that ran before chronicle recorded starts (a database
    /// upgraded from such a version) start at the beginning: they lose none of the
    /// events their processor has still to read.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = Some(start);
        self
    }

    /// Failures after which a request is dead (at least 1; default 5).
    pub fn max_errors(mut self, errors: u32) -> Self {
        self.max_errors = errors.max(1);
        self
    }

    /// Lower runs first (default 50): due requests are claimed by priority, then in log
    /// order.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// The pause before each retry.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long one execution may take, counted from the handler's start; past it, it
    /// counts as a failure (default 30 s). The executor cuts it to end before its lease
    /// does (90% of it, counted from the claim, once the claim holds the database's write
    /// lock), so that no other executor claims the request while it still runs; a handler
    /// that blocks its thread cannot be stopped, though, so do not.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs this handler's requests of one stream one at a time, in log order: a request
    /// waits until the earlier ones of its stream are done or dead.
    pub fn ordered_per_stream(mut self) -> Self {
        self.ordered = true;
        self
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("name", &self.name)
            .field("pattern", &self.pattern)
            .field("max_errors", &self.max_errors)
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .field("ordered", &self.ordered)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

/// The outbox's handlers, by name.
///
/// ```
/// use chronicle::{Handler, HandlerMap, HandlerRequest};
///
/// let handlers = HandlerMap::new()
///     .route(Handler::new("audit", "*", |_request: HandlerRequest| async { Ok(()) }))
///     .route(Handler::new("crm", "account.*", |_request: HandlerRequest| async { Ok(()) }));
/// assert_eq!(handlers.matching("account.Opened").count(), 2);
/// assert_eq!(handlers.matching("order.Placed").count(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct HandlerMap {
    handlers: Vec<Handler>,
}

impl HandlerMap {
    /// No handlers yet.
    pub fn new() -> Self {
        HandlerMap::default()
    }

    /// Adds `handler`.
    pub fn route(mut self, handler: Handler) -> Self {
        self.handlers.push(handler);
        self
    }

    /// The handlers whose pattern matches `event_type`.
    pub fn matching<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = &'a Handler> {
        self.handlers
            .iter()
            .filter(move |handler| handler.pattern.matches(event_type))
    }

    /// Every handler, in the order routed.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Handler> {
        self.handlers.iter()
    }

    /// The handler named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Handler> {
        self.handlers.iter().find(|handler| handler.name == name)
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.handlers.iter().map(|h| h.name.clone()).collect()
    }

    /// The event types worth reading from the log ([`Pattern::exact_types`]).
    pub(crate) fn event_types(&self) -> Vec<String> {
        Pattern::exact_types(self.handlers.iter().map(|handler| &handler.pattern))
    }

    /// Rejects an empty map and two handlers with one name.
    pub(crate) fn check(&self) -> Result<()> {
        if self.handlers.is_empty() {
            return Err(ValidationError::Config("the outbox has no handlers".to_owned()).into());
        }
        for (index, handler) in self.handlers.iter().enumerate() {
            if handler.name.is_empty() {
                return Err(ValidationError::Config("a handler without a name".to_owned()).into());
            }
            text::check_name("handler name", &handler.name)?;
            if self.handlers[..index]
                .iter()
                .any(|h| h.name == handler.name)
            {
                return Err(ValidationError::Config(format!(
                    "two outbox handlers are named `{}`",
                    handler.name
                ))
                .into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_name_with_nul_is_refused_by_field() {
        let handler = Handler::new("audit\0", "*", |_: HandlerRequest| async { Ok(()) });
        let error = HandlerMap::new().route(handler).check().expect_err("NUL");
        assert!(
            matches!(
                &error,
                crate::Error::Validation(ValidationError::InvalidText {
                    field: "handler name",
                    ..
                })
            ),
            "{error}"
        );
    }
}
