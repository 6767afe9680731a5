//! The outbox fixture for users' tests: which handler requests an outbox creates for given
//! events, found by the real processor on a `memory:` store (no server, and no handler
//! runs).

use std::fmt;

use futures::TryStreamExt;

use super::HandlerMap;
use crate::domain_event::DomainEvent;
use crate::error::Result;
use crate::event::{NewEvent, RecordedEvent};
use crate::read::LogPosition;
use crate::store::Store;
use crate::store::batch::Flush;
use crate::stream::ExpectedVersion;

/// One request the outbox would create: a handler to run for an event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PlannedRequest {
    /// The handler's name.
    pub handler: String,
    /// The event, as stored (its type, stream, version, payload and metadata).
    pub event: RecordedEvent,
}

impl PlannedRequest {
    /// The handler's name and the event's type: what most tests compare.
    pub fn names(&self) -> (&str, &str) {
        (&self.handler, &self.event.event_type)
    }
}

/// Given events, the handler requests an outbox with `handlers` creates for them, in the
/// order it creates them (log order; for one event, the order the handlers were routed).
/// The events are appended to a `memory:` store and the outbox's processor runs
/// over them, so patterns, several handlers per event and start positions behave as in
/// production; no handler is executed.
///
/// Events given with [`OutboxTest::history`] are stored before the outbox first runs:
/// handlers starting from now on ([`StartFrom::End`](crate::StartFrom::End), the default)
/// get no requests for them, those starting at the beginning do. Events given with
/// [`OutboxTest::given`] arrive after it started.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> chronicle::Result<()> {
/// use chronicle::testing::OutboxTest;
/// use chronicle::{DomainEvent, Handler, HandlerMap, HandlerRequest, StartFrom};
///
/// #[derive(Debug, DomainEvent)]
/// #[event(prefix = "order.")]
/// enum OrderEvent {
///     Placed { total: u64 },
///     Shipped,
/// }
///
/// let handlers = HandlerMap::new()
///     .route(Handler::new("email", "order.Shipped", |_: HandlerRequest| async { Ok(()) }))
///     .route(Handler::new("audit", "order.*", |_: HandlerRequest| async { Ok(()) })
///         .start_from(StartFrom::Beginning));
///
/// let requests = OutboxTest::new(handlers)
///     .history("order-1", [OrderEvent::Placed { total: 5 }, OrderEvent::Shipped])
///     .given("order-2", [OrderEvent::Placed { total: 7 }, OrderEvent::Shipped])
///     .requests()
///     .await?;
/// let names: Vec<_> = requests.iter().map(|request| request.names()).collect();
/// assert_eq!(
///     names,
///     [
///         ("audit", "order.Placed"), // history: only the handler that starts at the beginning
///         ("audit", "order.Shipped"),
///         ("audit", "order.Placed"),
///         ("email", "order.Shipped"),
///         ("audit", "order.Shipped"),
///     ]
/// );
/// assert_eq!(requests[3].event.stream_id.as_str(), "order-2");
/// # Ok(()) }
/// ```
#[must_use = "the fixture does nothing until `requests` is awaited"]
pub struct OutboxTest {
    handlers: HandlerMap,
    history: Vec<(String, Result<Vec<NewEvent>>)>,
    given: Vec<(String, Result<Vec<NewEvent>>)>,
}

impl fmt::Debug for OutboxTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxTest")
            .field("handlers", &self.handlers)
            .field("history", &self.history.len())
            .field("given", &self.given.len())
            .finish()
    }
}

fn encode<E: DomainEvent>(events: impl IntoIterator<Item = E>) -> Result<Vec<NewEvent>> {
    events
        .into_iter()
        .map(|event| event.to_new_event())
        .collect()
}

impl OutboxTest {
    /// A fixture for an outbox with `handlers`.
    pub fn new(handlers: HandlerMap) -> Self {
        OutboxTest {
            handlers,
            history: Vec::new(),
            given: Vec::new(),
        }
    }

    /// `events`, appended to `stream` before the outbox first runs.
    pub fn history<E: DomainEvent>(
        mut self,
        stream: impl Into<String>,
        events: impl IntoIterator<Item = E>,
    ) -> Self {
        self.history.push((stream.into(), encode(events)));
        self
    }

    /// `events`, appended to `stream` once the outbox runs.
    pub fn given<E: DomainEvent>(
        mut self,
        stream: impl Into<String>,
        events: impl IntoIterator<Item = E>,
    ) -> Self {
        self.given.push((stream.into(), encode(events)));
        self
    }

    /// [`OutboxTest::given`] with untyped events (any type name, metadata, version).
    pub fn given_events(
        mut self,
        stream: impl Into<String>,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Self {
        self.given
            .push((stream.into(), Ok(events.into_iter().collect())));
        self
    }

    /// The requests the outbox creates for the events, in the order it creates them.
    ///
    /// # Errors
    /// A given event that does not serialize or is invalid (a bad stream id or type);
    /// the outbox's refusal of the handlers (none, or two with one name).
    pub async fn requests(self) -> Result<Vec<PlannedRequest>> {
        let store = Store::open("memory:").await?;
        let outbox = store.outbox(self.handlers)?;
        append(&store, self.history).await?;
        // The first run records where each handler starts.
        outbox.process().await?;
        append(&store, self.given).await?;
        outbox.process().await?;

        let mut tx = store.begin_batch(Flush::Wait).await?;
        let rows = tx.list_requests().await?;
        tx.commit().await?;
        let events: Vec<RecordedEvent> = store.read_all(LogPosition::START).try_collect().await?;
        Ok(rows
            .into_iter()
            .filter_map(|(handler, id)| {
                let event = events.iter().find(|event| event.id == id)?.clone();
                Some(PlannedRequest { handler, event })
            })
            .collect())
    }
}

async fn append(store: &Store, batches: Vec<(String, Result<Vec<NewEvent>>)>) -> Result<()> {
    for (stream, events) in batches {
        let events = events?;
        if !events.is_empty() {
            store.append(stream, ExpectedVersion::Any, events).await?;
        }
    }
    Ok(())
}
