//! The HTTP client: [`CloudEventsClient`] sends events to one URL in structured, binary
//! or batch mode, retries by its [`RetryPolicy`], and says what became of each send
//! ([`Delivery`]); [`CloudEventsClient::request`] sends an event and returns the event
//! the receiver answered with.
//!
//! It runs on reqwest with rustls (ring, and the webpki root certificates compiled in):
//! no OpenSSL. HTTP/1.1 with keep-alive; give it your own `reqwest::Client` with
//! [`CloudEventsClient::with_http_client`] for proxies, HTTP/2 or client certificates.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, RETRY_AFTER};
use tracing::Instrument as _;

use super::binding::{self, Mode};
use super::delivery::{Ack, Delivery, Nack, RetryPolicy, Undelivered, parse_retry_after};
use super::error::CloudEventError;
use super::event::CloudEvent;

/// The longest NACK body kept.
const MAX_NACK_BODY: usize = 4096;

/// Why [`CloudEventsClient::request`] returned no event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The receiver refused the event.
    #[error("{} refused the CloudEvent with {}", .0.url, .0.status)]
    Nack(Nack),
    /// No answer came.
    #[error(transparent)]
    Undelivered(Undelivered),
    /// The receiver accepted the event but answered with none.
    #[error("{url} accepted the CloudEvent ({status}) but answered with no event")]
    NoEvent {
        /// The URL.
        url: String,
        /// The 2xx status.
        status: http::StatusCode,
    },
    /// The receiver's answer is not a valid CloudEvent.
    #[error("the answer of {url} is not a valid CloudEvent: {source}")]
    InvalidReply {
        /// The URL.
        url: String,
        /// The rule the answer breaks.
        #[source]
        source: CloudEventError,
    },
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL does not parse, or is not http(s).
    #[error("`{url}` is not an http(s) URL")]
    Url {
        /// The URL given.
        url: String,
    },
    /// rustls or reqwest refused the configuration.
    #[error("the HTTP client cannot be built: {0}")]
    Build(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A CloudEvents HTTP client for one URL.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use chronicle::cloudevents::{CloudEvent, CloudEventsClient, Delivery, Mode};
///
/// let client = CloudEventsClient::new("http://127.0.0.1:8080/events")?.mode(Mode::Binary);
/// let event = CloudEvent::builder("1", "/shop", "com.example.order.placed").build()?;
/// match client.send(&event).await {
///     Delivery::Ack(ack) => println!("accepted: {}", ack.status),
///     Delivery::Nack(nack) => println!("refused: {} {}", nack.status, nack.body),
///     Delivery::Undelivered(undelivered) => println!("no answer: {}", undelivered.cause()),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CloudEventsClient {
    http: reqwest::Client,
    url: Arc<reqwest::Url>,
    mode: Mode,
    retry: RetryPolicy,
}

/// A reqwest client builder on rustls with ring and the webpki root certificates, with a
/// 10 s connect timeout and a 30 s request timeout: start here to configure your own
/// client for [`CloudEventsClient::with_http_client`].
///
/// chronicle builds reqwest with rustls but without a process-wide crypto provider, so a
/// `reqwest::Client::new()` in an application that adds none of its own panics; a client
/// from this builder has its TLS configured and does not.
///
/// # Errors
/// [`ClientError::Build`] when rustls refuses the configuration.
pub fn http_client_builder() -> Result<reqwest::ClientBuilder, ClientError> {
    // ring, as PostgreSQL's TLS (sqlx's `tls-rustls-ring`) uses: aws-lc-rs, which rustls
    // now prefers for its post-quantum key exchange, needs cmake and a C toolchain.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ClientError::Build(Box::new(error)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30)))
}

impl CloudEventsClient {
    /// A client for `url`, sending in structured mode with the default [`RetryPolicy`].
    ///
    /// # Errors
    /// [`ClientError::Url`] when `url` is not an http(s) URL; [`ClientError::Build`] when
    /// the TLS configuration cannot be made.
    pub fn new(url: &str) -> Result<Self, ClientError> {
        let http = http_client_builder()?
            .build()
            .map_err(|error| ClientError::Build(Box::new(error)))?;
        CloudEventsClient::with_http_client(http, url)
    }

    /// A client for `url` on your own reqwest client (its timeouts, proxies, TLS): build
    /// it from [`http_client_builder`].
    ///
    /// # Errors
    /// [`ClientError::Url`] when `url` is not an http(s) URL.
    pub fn with_http_client(http: reqwest::Client, url: &str) -> Result<Self, ClientError> {
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|parsed| matches!(parsed.scheme(), "http" | "https"))
            .ok_or_else(|| ClientError::Url {
                url: url.to_owned(),
            })?;
        Ok(CloudEventsClient {
            http,
            url: Arc::new(parsed),
            mode: Mode::Structured,
            retry: RetryPolicy::default(),
        })
    }

    /// The content mode of single events (default structured).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Which sends are retried, and when.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The URL events go to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Sends `event` in the client's mode, retrying as its policy says.
    pub async fn send(&self, event: &CloudEvent) -> Delivery {
        let (headers, body) = binding::encode(event, self.mode);
        let span = tracing::debug_span!("cloudevents.send", url = %self.url, id = event.id(), r#type = event.ty(), mode = ?self.mode);
        self.deliver(headers, body).instrument(span).await
    }

    /// Sends `events` as one batch (`application/cloudevents-batch+json`).
    pub async fn send_batch(&self, events: &[CloudEvent]) -> Delivery {
        let (headers, body) = binding::encode_batch(events);
        let span =
            tracing::debug_span!("cloudevents.send_batch", url = %self.url, events = events.len());
        self.deliver(headers, body).instrument(span).await
    }

    /// Sends `event` and returns the event the receiver answered with (in whichever mode
    /// it answered).
    ///
    /// # Errors
    /// [`RequestError`]: refused, undelivered, accepted without an event, or answered
    /// with something that is not a valid CloudEvent.
    pub async fn request(&self, event: &CloudEvent) -> Result<CloudEvent, RequestError> {
        match self.send(event).await {
            Delivery::Ack(Ack {
                reply_error: Some(source),
                ..
            }) => Err(RequestError::InvalidReply {
                url: self.url.to_string(),
                source,
            }),
            Delivery::Ack(Ack {
                reply: Some(reply), ..
            }) => Ok(reply),
            Delivery::Ack(ack) => Err(RequestError::NoEvent {
                url: self.url.to_string(),
                status: ack.status,
            }),
            Delivery::Nack(nack) => Err(RequestError::Nack(nack)),
            Delivery::Undelivered(undelivered) => Err(RequestError::Undelivered(undelivered)),
        }
    }

    async fn deliver(&self, headers: HeaderMap, body: Vec<u8>) -> Delivery {
        let body = bytes::Bytes::from(body);
        let mut attempt = 1;
        loop {
            let result = self.try_once(&headers, body.clone(), attempt).await;
            match self.retry.next_delay(attempt, &result) {
                Some(pause) if attempt < self.retry.attempts() => {
                    tracing::debug!(attempt, ?pause, "retrying the send");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                _ => return result,
            }
        }
    }

    async fn try_once(&self, headers: &HeaderMap, body: bytes::Bytes, attempt: u32) -> Delivery {
        let url = self.url.to_string();
        let response = self
            .http
            .post(self.url.as_ref().clone())
            .headers(headers.clone())
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => return Delivery::Undelivered(Undelivered::new(url, attempt, error)),
        };
        let status = response.status();
        let reply_headers = response.headers().clone();
        let retry_after = reply_headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => return Delivery::Undelivered(Undelivered::new(url, attempt, error)),
        };
        if status.is_success() {
            let (reply, reply_error) = match binding::decode_reply(&reply_headers, &body) {
                Ok(reply) => (reply, None),
                Err(error) => {
                    tracing::debug!(%error, "the receiver's answer is not a valid CloudEvent");
                    (None, Some(error))
                }
            };
            return Delivery::Ack(Ack {
                status,
                attempts: attempt,
                reply,
                reply_error,
            });
        }
        let cut = body.len().min(MAX_NACK_BODY);
        Delivery::Nack(Nack {
            status,
            body: String::from_utf8_lossy(&body[..cut]).into_owned(),
            retry_after,
            attempts: attempt,
            url,
        })
    }
}
