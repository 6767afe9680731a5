//! The ready-made receiver handler that stores incoming CloudEvents: [`AppendToStream`]
//! maps each event to a [`NewEvent`](crate::NewEvent) (see `mapping.rs`) and appends it
//! to the stream [`StreamNaming`] picks.
//!
//! Idempotent on the event id: the same CloudEvent always maps to the same event (its id
//! from the CloudEvent's `id`, or a UUID v5 of `source` and `id`), and appending a stored
//! event again is a replay that succeeds and writes nothing. The same id with other
//! content is a 409.

use std::fmt;
use std::sync::Arc;

use http::StatusCode;

use super::event::CloudEvent;
use super::mapping::EventMapping;
use super::receiver::ReceiveError;
use crate::error::{Error, ErrorKind};
use crate::store::Store;
use crate::stream::{ExpectedVersion, StreamId};

/// A function naming the stream of an event.
pub type NameFn = Arc<dyn Fn(&CloudEvent) -> Option<String> + Send + Sync>;

/// Which stream an incoming event goes to.
#[derive(Clone)]
pub enum StreamNaming {
    /// The event's `subject` (an event without one is a 400 naming `subject`).
    Subject,
    /// One stream for every event.
    Fixed(String),
    /// A function of the event; `None` is a 400.
    With(NameFn),
}

impl StreamNaming {
    /// The stream `name` returns for the event (`None` is a 400).
    pub fn with(name: impl Fn(&CloudEvent) -> Option<String> + Send + Sync + 'static) -> Self {
        StreamNaming::With(Arc::new(name))
    }
}

impl fmt::Debug for StreamNaming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamNaming::Subject => f.write_str("Subject"),
            StreamNaming::Fixed(stream) => f.debug_tuple("Fixed").field(stream).finish(),
            StreamNaming::With(_) => f.write_str("With(..)"),
        }
    }
}

/// Stores incoming events in a stream named from the event; mount it with
/// [`Receiver::append_to_stream`](super::Receiver::append_to_stream).
///
/// ```
/// # fn demo(store: chronicle::Store) {
/// use chronicle::cloudevents::{AppendToStream, StreamNaming};
///
/// // `subject` names the stream (the default) …
/// let by_subject = AppendToStream::new(store.clone());
/// // … or any function of the event does.
/// let by_source = AppendToStream::new(store).stream(StreamNaming::with(|event| {
///     Some(format!("inbox-{}", event.source().trim_start_matches('/')))
/// }));
/// # let _ = (by_subject, by_source);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AppendToStream {
    store: Store,
    mapping: EventMapping,
    naming: StreamNaming,
}

impl AppendToStream {
    /// Appends to `store`, in the stream the event's `subject` names.
    pub fn new(store: Store) -> Self {
        AppendToStream {
            store,
            mapping: EventMapping::new(),
            naming: StreamNaming::Subject,
        }
    }

    /// Which stream each event goes to.
    pub fn stream(mut self, naming: StreamNaming) -> Self {
        self.naming = naming;
        self
    }

    /// The mapping of CloudEvents to chronicle's events.
    pub fn mapping(mut self, mapping: EventMapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// Stores `event` (what the receiver calls).
    ///
    /// # Errors
    /// A 400 naming `subject` (or the stream) when no valid stream id comes of the event,
    /// or naming the attribute the store refused; 409 when its id is stored with other
    /// content; 503 when the database is unreachable or timed out; 500 otherwise.
    pub async fn handle(&self, event: CloudEvent) -> Result<(), ReceiveError> {
        let name = match &self.naming {
            StreamNaming::Subject => event.subject().map(str::to_owned),
            StreamNaming::Fixed(stream) => Some(stream.clone()),
            StreamNaming::With(name) => name(&event),
        };
        let Some(name) = name else {
            return Err(ReceiveError::with_status(
                StatusCode::BAD_REQUEST,
                "the event names no stream: it has no `subject`",
            )
            .attribute("subject"));
        };
        let stream = StreamId::new(name).map_err(|error| {
            ReceiveError::with_status(StatusCode::BAD_REQUEST, error).attribute("subject")
        })?;
        let new_event = self.mapping.to_new_event(&event).map_err(|error| {
            let attribute = error.attribute().map(str::to_owned);
            let rejection = ReceiveError::with_status(StatusCode::BAD_REQUEST, error);
            match attribute {
                Some(attribute) => rejection.attribute(attribute),
                None => rejection,
            }
        })?;
        let written = self
            .store
            .append(stream.as_str(), ExpectedVersion::Any, vec![new_event])
            .await
            .map_err(refusal)?;
        tracing::debug!(stream = %stream, replay = written.already_stored, "stored a CloudEvent");
        Ok(())
    }
}

/// The answer for a store error.
fn refusal(error: Error) -> ReceiveError {
    let status = match error.kind() {
        ErrorKind::Validation => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::NotFound => StatusCode::GONE,
        ErrorKind::Connection | ErrorKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ReceiveError::with_status(status, error)
}
