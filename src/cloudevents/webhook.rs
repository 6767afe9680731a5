//! Outgoing webhooks: an outbox [`Handler`] that POSTs stored events, as CloudEvents, to a
//! URL. The outbox gives it its guarantees: at-least-once, retries with the handler's
//! backoff, dead letters, ordering per stream when asked.
//!
//! What the answers do to the request: an ACK (2xx) is done; a NACK 4xx other than 408
//! and 429 is fatal (dead at once: retrying cannot help); a 408, 429, 5xx or an
//! undelivered send is retried. The client itself does not retry here: the outbox does.

use std::sync::Arc;

use super::binding::Mode;
use super::client::{ClientError, CloudEventsClient};
use super::delivery::{Delivery, DeliveryError, RetryPolicy};
use super::mapping::EventMapping;
use crate::outbox::{Handler, HandlerError, HandlerRequest};

/// A webhook: the events whose type matches a pattern, POSTed to one URL.
///
/// ```
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use chronicle::HandlerMap;
/// use chronicle::cloudevents::{EventMapping, Mode, Webhook};
///
/// let handlers = HandlerMap::new()
///     .route(
///         Webhook::new("billing-hook", "invoice.*", "https://billing.example.com/events")?
///             .mode(Mode::Binary)
///             .mapping(EventMapping::new().source("https://shop.example.com"))
///             .ordered_per_stream()
///             .handler()
///             .max_errors(10),
///     );
/// # let _ = handlers;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Webhook {
    name: String,
    pattern: String,
    client: CloudEventsClient,
    mapping: EventMapping,
    ordered: bool,
}

impl Webhook {
    /// The outbox handler `name` (its requests are stored under it), POSTing the events
    /// whose type `pattern` matches to `url` in structured mode.
    ///
    /// # Errors
    /// [`ClientError`] when `url` is not an http(s) URL or the HTTP client cannot be built.
    pub fn new(
        name: impl Into<String>,
        pattern: impl Into<String>,
        url: &str,
    ) -> Result<Self, ClientError> {
        Ok(Webhook {
            name: name.into(),
            pattern: pattern.into(),
            client: CloudEventsClient::new(url)?.retry(RetryPolicy::none()),
            mapping: EventMapping::new(),
            ordered: false,
        })
    }

    /// The content mode (default structured).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.client = self.client.mode(mode);
        self
    }

    /// The mapping of stored events to CloudEvents (their `source`).
    pub fn mapping(mut self, mapping: EventMapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// Sends through `client` (its URL and mode; its retry policy is replaced by none,
    /// since the outbox retries).
    pub fn client(mut self, client: CloudEventsClient) -> Self {
        self.client = client.retry(RetryPolicy::none());
        self
    }

    /// Delivers the events of one stream one at a time, in log order.
    pub fn ordered_per_stream(mut self) -> Self {
        self.ordered = true;
        self
    }

    /// The outbox handler (set its retries, backoff and timeout on it).
    pub fn handler(self) -> Handler {
        let Webhook {
            name,
            pattern,
            client,
            mapping,
            ordered,
        } = self;
        let shared = Arc::new((client, mapping));
        let handler = Handler::new(name, pattern, move |request: HandlerRequest| {
            let shared = shared.clone();
            async move {
                let (client, mapping) = &*shared;
                let event = mapping
                    .to_cloud_event(&request.event)
                    .map_err(HandlerError::fatal)?;
                match client.send(&event).await {
                    Delivery::Ack(_) => Ok(()),
                    Delivery::Nack(nack) if nack.is_fatal() => {
                        Err(HandlerError::fatal(DeliveryError::Nack(nack)))
                    }
                    Delivery::Nack(nack) => Err(HandlerError::retry(DeliveryError::Nack(nack))),
                    Delivery::Undelivered(undelivered) => {
                        Err(HandlerError::retry(DeliveryError::Undelivered(undelivered)))
                    }
                }
            }
        });
        if ordered {
            handler.ordered_per_stream()
        } else {
            handler
        }
    }
}

impl From<Webhook> for Handler {
    fn from(webhook: Webhook) -> Self {
        webhook.handler()
    }
}
