//! The HTTP receiver: a [`Receiver`] dispatches incoming CloudEvents (structured, binary
//! or batch) to handlers by the event type's [`Pattern`], and answers as the HTTP binding
//! says. Mount it in an axum app ([`Receiver::router`], [`Receiver::method_router`]) or
//! run it alone ([`Receiver::serve`]).
//!
//! | answer | when |
//! | --- | --- |
//! | 202 | handled, no event to answer with |
//! | 200 | a request-response handler's event, in the request's mode (a batch: a batch) |
//! | 400 | a malformed event; the JSON body names the attribute, or no handler for its `type` |
//! | 413 | a body above the size limit |
//! | 415 | a content type in no mode this receiver reads |
//! | 429 / 503 | a handler asked for backpressure ([`ReceiveError::busy`], [`ReceiveError::unavailable`]), or more requests are in flight than allowed |
//! | 4xx / 5xx | a handler's error: 500 unless it chose ([`ReceiveError::rejected`] 422, [`ReceiveError::with_status`]) |
//!
//! Handlers are tried in the order added; the first whose pattern matches the type
//! handles the event. A batch is handled event by event, in order, and stops at the
//! first failure (the answer says which event): a sender retries the whole batch, so
//! handlers should be idempotent, as [`AppendToStream`](super::AppendToStream) is.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use http::StatusCode;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use super::binding::{self, Incoming};
use super::error::CloudEventError;
use super::event::CloudEvent;
use crate::outbox::Pattern;
use crate::panics::CatchPanic;
use crate::task::{Task, stop_requested};

/// The default body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why a handler did not accept an event, and how the receiver answers.
///
/// Any error converts into one with `?` (a 500: the sender retries); choose another
/// answer with the constructors. The error is kept typed as [`ReceiveError::source`].
pub struct ReceiveError {
    status: StatusCode,
    retry_after: Option<Duration>,
    attribute: Option<String>,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl ReceiveError {
    /// A failure (500): the sender may retry.
    pub fn failed(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ReceiveError::with_status(StatusCode::INTERNAL_SERVER_ERROR, error)
    }

    /// The event is well formed but refused (422): retrying will not help.
    pub fn rejected(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ReceiveError::with_status(StatusCode::UNPROCESSABLE_ENTITY, error)
    }

    /// Backpressure (429): the sender should slow down, retrying after `retry_after`.
    pub fn busy(retry_after: Option<Duration>) -> Self {
        ReceiveError {
            retry_after,
            ..ReceiveError::with_status(StatusCode::TOO_MANY_REQUESTS, "the receiver is busy")
        }
    }

    /// Backpressure (503): the receiver cannot take events now; retry after `retry_after`.
    pub fn unavailable(retry_after: Option<Duration>) -> Self {
        ReceiveError {
            retry_after,
            ..ReceiveError::with_status(
                StatusCode::SERVICE_UNAVAILABLE,
                "the receiver is unavailable",
            )
        }
    }

    /// Any 4xx or 5xx answer (another status becomes 500).
    pub fn with_status(
        status: StatusCode,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        let status = if status.is_client_error() || status.is_server_error() {
            status
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ReceiveError {
            status,
            retry_after: None,
            attribute: None,
            source: error.into(),
        }
    }

    /// A malformed event (400 naming the attribute; 415 for a content type).
    pub(crate) fn malformed(error: CloudEventError) -> Self {
        let status = match error {
            CloudEventError::UnsupportedContentType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        ReceiveError {
            attribute: error.attribute().map(str::to_owned),
            ..ReceiveError::with_status(status, error)
        }
    }

    /// Names the attribute the error concerns, in the answer's body.
    pub fn attribute(mut self, attribute: impl Into<String>) -> Self {
        self.attribute = Some(attribute.into());
        self
    }

    /// Adds a `Retry-After` to the answer.
    pub fn retry_after(mut self, pause: Duration) -> Self {
        self.retry_after = Some(pause);
        self
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error as the handler gave it.
    pub fn source(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    fn into_response_with(self, context: Option<String>) -> Response {
        let message = match context {
            Some(context) => format!("{context}: {}", self.source),
            None => self.source.to_string(),
        };
        let mut body = serde_json::json!({ "error": message });
        if let Some(attribute) = &self.attribute {
            body["attribute"] = attribute.as_str().into();
        }
        let mut response = (
            self.status,
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body.to_string(),
        )
            .into_response();
        if let Some(pause) = self.retry_after {
            let seconds = pause.as_secs() + u64::from(pause.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ReceiveError {
    fn from(error: E) -> Self {
        ReceiveError::failed(error)
    }
}

impl fmt::Debug for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiveError")
            .field("status", &self.status)
            .field("attribute", &self.attribute)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.source)
    }
}

type FireFn = Arc<dyn Fn(CloudEvent) -> BoxFuture<'static, Result<(), ReceiveError>> + Send + Sync>;
type ReplyFn =
    Arc<dyn Fn(CloudEvent) -> BoxFuture<'static, Result<CloudEvent, ReceiveError>> + Send + Sync>;

#[derive(Clone)]
enum Action {
    Fire(FireFn),
    Reply(ReplyFn),
}

#[derive(Clone)]
struct Route {
    pattern: Pattern,
    action: Action,
}

/// Receives CloudEvents over HTTP and hands them to handlers by type.
///
/// ```no_run
/// # async fn demo(store: chronicle::Store) -> Result<(), Box<dyn std::error::Error>> {
/// use chronicle::cloudevents::{AppendToStream, CloudEvent, ReceiveError, Receiver};
///
/// let receiver = Receiver::new()
///     // fire-and-forget: `Ok(())` is a 202, an error a NACK
///     .on("com.example.ping", |event: CloudEvent| async move {
///         println!("ping {}", event.id());
///         Ok::<_, ReceiveError>(())
///     })
///     // request-response: the answer goes back in the request's mode
///     .on_request("com.example.question", |event: CloudEvent| async move {
///         Ok(CloudEvent::builder(format!("{}-answer", event.id()), "/answers", "com.example.answer").build()?)
///     })
///     // stored in the stream its subject names; the same id twice writes once
///     .append_to_stream("com.example.order.*", AppendToStream::new(store));
///
/// let app = axum::Router::new().nest("/events", receiver.clone().router());
/// # let _ = app;
/// let server = receiver.serve("127.0.0.1:8080").await?;
/// server.shutdown().await?; // in-flight requests finish first
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Receiver {
    routes: Vec<Route>,
    max_body_bytes: usize,
    max_in_flight: Option<usize>,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver::new()
    }
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns: Vec<String> = self.routes.iter().map(|r| r.pattern.to_string()).collect();
        f.debug_struct("Receiver")
            .field("routes", &patterns)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

impl Receiver {
    /// No handlers yet; bodies up to [`DEFAULT_MAX_BODY_BYTES`]; no limit on requests in
    /// flight.
    pub fn new() -> Self {
        Receiver {
            routes: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_in_flight: None,
        }
    }

    /// Fire-and-forget: `handler` gets the events whose type `pattern` matches (exact,
    /// glob with `*`, or `*`); `Ok(())` is a 202, an error the answer it chose.
    pub fn on<F, Fut>(mut self, pattern: impl Into<String>, handler: F) -> Self
    where
        F: Fn(CloudEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ReceiveError>> + Send + 'static,
    {
        self.routes.push(Route {
            pattern: Pattern::new(pattern),
            action: Action::Fire(Arc::new(move |event| Box::pin(handler(event)))),
        });
        self
    }

    /// Request-response: `handler` answers with an event, sent back in the request's mode
    /// (a 200).
    pub fn on_request<F, Fut>(mut self, pattern: impl Into<String>, handler: F) -> Self
    where
        F: Fn(CloudEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CloudEvent, ReceiveError>> + Send + 'static,
    {
        self.routes.push(Route {
            pattern: Pattern::new(pattern),
            action: Action::Reply(Arc::new(move |event| Box::pin(handler(event)))),
        });
        self
    }

    /// Stores the events whose type `pattern` matches, as [`AppendToStream`](super::AppendToStream) says.
    pub fn append_to_stream(
        self,
        pattern: impl Into<String>,
        append: super::AppendToStream,
    ) -> Self {
        self.on(pattern, move |event| {
            let append = append.clone();
            async move { append.handle(event).await }
        })
    }

    /// The largest body accepted (default 1 MiB); a larger one is a 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Requests handled at once (default: no limit); beyond it the receiver answers 503
    /// with `Retry-After: 1`.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = Some(requests.max(1));
        self
    }

    /// The receiver as an axum method router (POST only), to mount at any path:
    /// `app.route("/events", receiver.method_router())`.
    pub fn method_router(self) -> MethodRouter {
        let state = Arc::new(Shared {
            limit: self.max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
            receiver: self,
        });
        post(receive).with_state(state)
    }

    /// The receiver as an axum router answering POST at `/`: nest it
    /// (`app.nest("/events", receiver.router())`) or serve it as it is. A `tower`
    /// service, like any axum router.
    pub fn router(self) -> Router {
        Router::new().route("/", self.method_router())
    }

    /// Serves the receiver alone on `addr` (`"127.0.0.1:8080"`; port 0 picks one), HTTP/1.1
    /// with keep-alive, until [`ServerHandle::shutdown`] (or the handle is dropped).
    ///
    /// # Errors
    /// [`ServeError::Bind`] when the address cannot be listened on.
    pub async fn serve(
        self,
        addr: impl tokio::net::ToSocketAddrs + fmt::Display,
    ) -> Result<ServerHandle, ServeError> {
        let wanted = addr.to_string();
        let bind = |source| ServeError::Bind {
            addr: wanted.clone(),
            source,
        };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
        let local_addr = listener.local_addr().map_err(bind)?;
        let router = self.router();
        let span = tracing::info_span!("cloudevents.serve", addr = %local_addr);
        let task = Task::spawn(
            format!("the CloudEvents receiver on {local_addr}"),
            span,
            |mut stop| async move {
                let shutdown = async move { stop_requested(&mut stop).await };
                Ok(axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await)
            },
        );
        Ok(ServerHandle { local_addr, task })
    }

    async fn dispatch(&self, event: CloudEvent) -> Result<Option<CloudEvent>, ReceiveError> {
        let Some(route) = self
            .routes
            .iter()
            .find(|route| route.pattern.matches(event.ty()))
        else {
            return Err(ReceiveError::with_status(
                StatusCode::BAD_REQUEST,
                format!("no handler for the type `{}`", event.ty()),
            )
            .attribute("type"));
        };
        let span = tracing::info_span!("cloudevents.receive", id = event.id(), r#type = event.ty(), pattern = %route.pattern);
        // The sender's trace (the Distributed Tracing extension), linked.
        let mut producer = crate::EventMetadata {
            trace_id: event.extension("traceparent").map(ToString::to_string),
            ..crate::EventMetadata::default()
        };
        if let Some(state) = event.extension("tracestate") {
            producer
                .custom
                .insert("tracestate".to_owned(), state.to_string().into());
        }
        crate::telemetry::link(&span, &producer);
        let handled = match &route.action {
            Action::Fire(handler) => {
                let run = handler(event);
                CatchPanic::new(async move { run.await.map(|()| None) })
                    .instrument(span)
                    .await
            }
            Action::Reply(handler) => {
                let run = handler(event);
                CatchPanic::new(async move { run.await.map(Some) })
                    .instrument(span)
                    .await
            }
        };
        handled.unwrap_or_else(|panicked| {
            tracing::error!(panic = %panicked.message, backtrace = panicked.backtrace.as_deref(), "a CloudEvents handler panicked");
            Err(ReceiveError::failed(format!("the handler panicked: {}", panicked.message)))
        })
    }
}

struct Shared {
    receiver: Receiver,
    limit: Option<Arc<Semaphore>>,
}

/// The one axum handler: limit, read, decode, dispatch, answer.
async fn receive(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let _permit = match &shared.limit {
        None => None,
        Some(limit) => match limit.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                return ReceiveError::unavailable(Some(Duration::from_secs(1)))
                    .into_response_with(Some("too many requests in flight".to_owned()));
            }
        },
    };
    let (parts, body) = request.into_parts();
    let bytes = match read_body(&parts.headers, body, shared.receiver.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(error) => return error.into_response_with(None),
    };
    let incoming = match binding::decode(&parts.headers, &bytes) {
        Ok(incoming) => incoming,
        Err(error) => {
            tracing::debug!(%error, "a malformed CloudEvent");
            return ReceiveError::malformed(error).into_response_with(None);
        }
    };
    match incoming {
        Incoming::Event { event, mode } => match shared.receiver.dispatch(event).await {
            Ok(None) => StatusCode::ACCEPTED.into_response(),
            Ok(Some(reply)) => reply_response(binding::encode(&reply, mode)),
            Err(error) => error.into_response_with(None),
        },
        Incoming::Batch(events) => {
            let total = events.len();
            let mut replies = Vec::new();
            for (index, event) in events.into_iter().enumerate() {
                let id = event.id().to_owned();
                match shared.receiver.dispatch(event).await {
                    Ok(reply) => replies.extend(reply),
                    Err(error) => {
                        let context = format!(
                            "event {index} of the batch (id `{id}`; {index} of {total} handled before it)"
                        );
                        return error.into_response_with(Some(context));
                    }
                }
            }
            if replies.is_empty() {
                StatusCode::ACCEPTED.into_response()
            } else {
                reply_response(binding::encode_batch(&replies))
            }
        }
    }
}

fn reply_response((headers, body): (http::HeaderMap, Vec<u8>)) -> Response {
    (StatusCode::OK, headers, body).into_response()
}

/// The body, at most `limit` bytes: a larger `Content-Length` is refused before reading,
/// and a body that grows past the limit while read is cut off.
async fn read_body(
    headers: &http::HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, ReceiveError> {
    let too_large = || {
        ReceiveError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the receiver's limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    // What the sender declares (checked against the limit above), but never a large
    // allocation on its word alone.
    let reserve = declared.map_or(0, |length| length.min(64 * 1024) as usize);
    let mut bytes = Vec::with_capacity(reserve);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ReceiveError::with_status(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {error}"),
            )
        })?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Why [`Receiver::serve`] could not serve, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address cannot be listened on.
    #[error("the CloudEvents receiver cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("the CloudEvents receiver on {addr} failed: {source}")]
    Serve {
        /// The address it listened on.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The server's task panicked.
    #[error("the CloudEvents receiver on {addr} stopped: {source}")]
    Task {
        /// The address it listened on.
        addr: SocketAddr,
        /// The task's failure.
        #[source]
        source: crate::Error,
    },
}

/// A receiver served by [`Receiver::serve`]. Dropping it stops the server the same way
/// as [`ServerHandle::shutdown`], without waiting.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    task: Task<std::io::Result<()>>,
}

impl ServerHandle {
    /// The address it listens on (with the port picked, when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL of the receiver: `http://{local_addr}/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.local_addr)
    }

    /// Stops accepting connections, lets the requests in flight finish (idle keep-alive
    /// connections are closed), and waits for it.
    ///
    /// # Errors
    /// [`ServeError::Serve`] or [`ServeError::Task`] when the server had failed.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let addr = self.local_addr;
        match self.task.stop().await {
            Ok(Some(Ok(()))) | Ok(None) => Ok(()),
            Ok(Some(Err(source))) => Err(ServeError::Serve { addr, source }),
            Err(source) => Err(ServeError::Task { addr, source }),
        }
    }
}
