//! CloudEvents over HTTP (feature `cloudevents`): the mapping's round trips, the receiver
//! and client against each other over real sockets, the outbox webhook, curl, and the
//! official Python SDK (`tests/interop/`).

mod client;
mod interop;
mod mapping;
mod receiver;
mod webhook;

use std::sync::{Arc, Mutex};

use chronicle::cloudevents::{CloudEvent, ReceiveError, Receiver, ServerHandle};

/// A valid event of type `ty` with the id `id`, about `subject`, with JSON data.
pub fn event(id: &str, ty: &str, subject: &str) -> CloudEvent {
    CloudEvent::builder(id, "/tests", ty)
        .subject(subject)
        .data_json(serde_json::json!({ "id": id }))
        .build()
        .expect("a valid event")
}

/// The events a handler saw, in order.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<CloudEvent>>>);

impl Captured {
    pub fn push(&self, event: CloudEvent) {
        self.0.lock().expect("captured").push(event);
    }

    pub fn all(&self) -> Vec<CloudEvent> {
        self.0.lock().expect("captured").clone()
    }

    /// A fire-and-forget handler that records what it gets.
    pub fn receiver(&self) -> Receiver {
        let captured = self.clone();
        Receiver::new().on("*", move |event| {
            captured.push(event);
            async { Ok::<_, ReceiveError>(()) }
        })
    }
}

/// `receiver` served on a free port of 127.0.0.1.
pub async fn serve(receiver: Receiver) -> ServerHandle {
    receiver.serve("127.0.0.1:0").await.expect("serve")
}

/// A plain HTTP client, for requests chronicle's client would never send.
pub fn raw() -> chronicle::cloudevents::reqwest::Client {
    chronicle::cloudevents::http_client_builder()
        .expect("builder")
        .build()
        .expect("client")
}
