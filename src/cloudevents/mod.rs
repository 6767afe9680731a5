//! CloudEvents 1.0 over HTTP (cargo feature `cloudevents`): stored events leave as
//! CloudEvents, and CloudEvents from other services are received, dispatched or stored.
//!
//! - `event.rs` — the model: [`CloudEvent`], [`Data`], [`ExtensionValue`], the builder.
//! - `validate.rs` — every rule of the specification, once; `error.rs` — the typed
//!   errors, each naming its attribute.
//! - `format.rs` — the JSON event format; `binding.rs` — the HTTP binding's structured,
//!   binary and batch modes.
//! - `mapping.rs` — [`EventMapping`], chronicle's events ↔ CloudEvents, both ways.
//! - `delivery.rs` — ACK / NACK / undelivered and the retry rules; `client.rs` — the
//!   reqwest client.
//! - `receiver.rs` — the axum receiver and its handlers; `append.rs` — the handler that
//!   stores events.
//! - `webhook.rs` — an outbox handler POSTing stored events.
//!
//! The binding is written here on axum 0.8 and reqwest 0.13 rather than taken from the
//! `cloudevents-sdk` crate, which pins an older reqwest (a second HTTP stack in every
//! build) and is released about once a year.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use chronicle::cloudevents::{AppendToStream, CloudEvent, CloudEventsClient, Mode, Receiver};
//! use chronicle::{Direction, Store};
//! use futures::TryStreamExt;
//!
//! let store = Store::open("memory:").await?;
//! let server = Receiver::new()
//!     .append_to_stream("*", AppendToStream::new(store.clone()))
//!     .serve("127.0.0.1:0")
//!     .await?;
//!
//! let client = CloudEventsClient::new(&server.url())?.mode(Mode::Binary);
//! let event = CloudEvent::builder("order-1-placed", "/shop", "order.placed")
//!     .subject("order-1")
//!     .data_json(serde_json::json!({ "total": 12 }))
//!     .build()?;
//! assert!(client.send(&event).await.is_ack());
//! assert!(client.send(&event).await.is_ack()); // the same id again: stored once
//!
//! let stored: Vec<_> = store.read_stream("order-1", 1, Direction::Forward).try_collect().await?;
//! assert_eq!(stored.len(), 1);
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

mod append;
mod binding;
mod builder;
mod client;
mod delivery;
mod error;
mod event;
pub mod format;
mod mapping;
mod receiver;
mod validate;
mod webhook;

pub use append::{AppendToStream, NameFn, StreamNaming};
pub use binding::{Incoming, Mode, decode, decode_reply, encode, encode_batch};
pub use builder::CloudEventBuilder;
pub use client::{ClientError, CloudEventsClient, RequestError, http_client_builder};
pub use delivery::{Ack, Delivery, DeliveryError, Nack, RetryPolicy, Undelivered};
pub use error::{CloudEventError, MappingError};
pub use event::{CloudEvent, Data, ExtensionValue, SPEC_VERSION};
pub use mapping::{EventMapping, ID_NAMESPACE, META_EXTENSION, ORIGIN_KEY};
pub use receiver::{DEFAULT_MAX_BODY_BYTES, ReceiveError, Receiver, ServeError, ServerHandle};
pub use webhook::Webhook;

/// The HTTP server crate the receiver is built on (axum 0.8), for mounting it.
pub use axum;
/// The HTTP client crate the client is built on (reqwest 0.13), for its errors and for
/// [`CloudEventsClient::with_http_client`].
pub use reqwest;
