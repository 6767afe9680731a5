//! What became of a send: [`Delivery`] is an ACK (a 2xx), a NACK (the receiver answered
//! and refused: its status and body) or undelivered (no answer: the connection failed or
//! timed out, with the cause); and the [`RetryPolicy`] that decides which of them are
//! worth another try and after how long.
//!
//! The rules of retrying live here, once: a send is retried when it was undelivered or
//! answered 429 or 5xx ([`Nack::is_retryable`]), never for another 4xx; the pause is
//! exponential with full jitter, or the receiver's `Retry-After` when it gave one (capped).
//! An outbox webhook leaves retrying to the outbox and asks [`Nack::is_fatal`] instead.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use super::error::CloudEventError;
use super::event::CloudEvent;

/// What became of a send.
// One is made per send and matched at once: boxing the ACK would cost more than its size.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Delivery {
    /// The receiver accepted the event (a 2xx).
    Ack(Ack),
    /// The receiver answered and refused it (a 4xx or 5xx).
    Nack(Nack),
    /// No answer came: the connection failed or timed out.
    Undelivered(Undelivered),
}

impl Delivery {
    /// Whether the receiver accepted the event.
    pub fn is_ack(&self) -> bool {
        matches!(self, Delivery::Ack(_))
    }

    /// How many tries the send took.
    pub fn attempts(&self) -> u32 {
        match self {
            Delivery::Ack(ack) => ack.attempts,
            Delivery::Nack(nack) => nack.attempts,
            Delivery::Undelivered(undelivered) => undelivered.attempts,
        }
    }

    /// The ACK, or the NACK or undelivered result as an error.
    ///
    /// # Errors
    /// [`DeliveryError`] for a NACK or an undelivered send.
    pub fn into_result(self) -> Result<Ack, DeliveryError> {
        match self {
            Delivery::Ack(ack) => Ok(ack),
            Delivery::Nack(nack) => Err(DeliveryError::Nack(nack)),
            Delivery::Undelivered(undelivered) => Err(DeliveryError::Undelivered(undelivered)),
        }
    }
}

/// The receiver accepted the event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Ack {
    /// The 2xx status.
    pub status: StatusCode,
    /// How many tries the send took (1 when the first was accepted).
    pub attempts: u32,
    /// The event the receiver answered with, if it answered with one.
    pub reply: Option<CloudEvent>,
    /// Why the answer, which claimed to be a CloudEvent, could not be read as one.
    pub reply_error: Option<CloudEventError>,
}

/// The receiver answered and refused the event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Nack {
    /// The 4xx or 5xx status.
    pub status: StatusCode,
    /// The body of the answer (as text, cut to 4 KiB).
    pub body: String,
    /// The pause the receiver asked for in `Retry-After`, if any.
    pub retry_after: Option<Duration>,
    /// How many tries the send took.
    pub attempts: u32,
    /// The URL it was sent to.
    pub url: String,
}

impl Nack {
    /// Whether a client retries this answer: 429 (too many requests) and 5xx; no other
    /// 4xx ever.
    pub fn is_retryable(&self) -> bool {
        self.status == StatusCode::TOO_MANY_REQUESTS || self.status.is_server_error()
    }

    /// Whether no retry can ever help: a 4xx other than 408 (request timeout) and 429.
    /// An outbox webhook sends such a request to the dead letters at once.
    pub fn is_fatal(&self) -> bool {
        self.status.is_client_error()
            && self.status != StatusCode::REQUEST_TIMEOUT
            && self.status != StatusCode::TOO_MANY_REQUESTS
    }
}

/// No answer came.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Undelivered {
    /// How many tries the send took.
    pub attempts: u32,
    /// The URL it was sent to.
    pub url: String,
    cause: Arc<reqwest::Error>,
}

impl Undelivered {
    pub(crate) fn new(url: String, attempts: u32, cause: reqwest::Error) -> Self {
        Undelivered {
            attempts,
            url,
            cause: Arc::new(cause),
        }
    }

    /// Why: the HTTP client's error (connect, timeout, a broken connection).
    pub fn cause(&self) -> &reqwest::Error {
        &self.cause
    }

    /// Whether the send timed out.
    pub fn is_timeout(&self) -> bool {
        self.cause.is_timeout()
    }
}

/// A NACK or an undelivered send, as an error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The receiver refused the event.
    #[error("{} refused the CloudEvent with {}{}", .0.url, .0.status, body_note(&.0.body))]
    Nack(Nack),
    /// No answer came.
    #[error("the CloudEvent was not delivered to {} after {} tries: {}", .0.url, .0.attempts, .0.cause)]
    Undelivered(#[source] Undelivered),
}

impl std::error::Error for Undelivered {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.cause)
    }
}

impl fmt::Display for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no answer from {}: {}", self.url, self.cause)
    }
}

fn body_note(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// Which sends a client tries again, how often, and after how long.
///
/// Undelivered sends and answers 429 or 5xx are retried, up to `max_attempts` tries in
/// all, after an exponential pause with full jitter (a random pause between zero and
/// `min(max_delay, base × 2^(tries − 1))`), or after the receiver's `Retry-After` when it
/// gave one (at most `max_retry_after`).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    base: Duration,
    max_delay: Duration,
    max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 3 tries, pauses from 100 ms up to 5 s, `Retry-After` honoured up to 60 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// One try, no retry (what an outbox webhook uses: the outbox retries).
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Tries in all, the first included (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The exponential pause: `base × 2^(tries − 1)`, capped at `max_delay`, jittered.
    pub fn backoff(mut self, base: Duration, max_delay: Duration) -> Self {
        self.base = base;
        self.max_delay = max_delay;
        self
    }

    /// The longest `Retry-After` honoured; a longer one ends the retries (default 60 s).
    pub fn max_retry_after(mut self, limit: Duration) -> Self {
        self.max_retry_after = limit;
        self
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The pause before try `attempt + 1` after `result`, or `None` to stop.
    pub(crate) fn next_delay(&self, attempt: u32, result: &Delivery) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let retry_after = match result {
            Delivery::Ack(_) => return None,
            Delivery::Nack(nack) if !nack.is_retryable() => return None,
            Delivery::Nack(nack) => nack.retry_after,
            Delivery::Undelivered(_) => None,
        };
        match retry_after {
            Some(pause) if pause > self.max_retry_after => None,
            Some(pause) => Some(pause),
            None => {
                let ceiling = self
                    .base
                    .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(31)))
                    .min(self.max_delay);
                Some(ceiling.mul_f64(fastrand::f64()))
            }
        }
    }
}

/// A `Retry-After` value: seconds, or an HTTP date (a date in the past is no pause).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nack(status: u16, retry_after: Option<Duration>) -> Delivery {
        Delivery::Nack(Nack {
            status: StatusCode::from_u16(status).expect("status"),
            body: String::new(),
            retry_after,
            attempts: 1,
            url: "http://x".into(),
        })
    }

    #[test]
    fn which_answers_are_retried() {
        let policy = RetryPolicy::default();
        for status in [429, 500, 502, 503] {
            assert!(
                policy.next_delay(1, &nack(status, None)).is_some(),
                "{status}"
            );
        }
        for status in [400, 401, 404, 408, 409, 413, 415, 422] {
            assert!(
                policy.next_delay(1, &nack(status, None)).is_none(),
                "{status}"
            );
        }
        assert!(
            policy.next_delay(3, &nack(503, None)).is_none(),
            "tries are bounded"
        );
        assert_eq!(
            policy.next_delay(1, &nack(429, Some(Duration::from_secs(7)))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            policy.next_delay(1, &nack(429, Some(Duration::from_secs(61)))),
            None
        );
        for attempt in 1..3 {
            let delay = policy
                .next_delay(attempt, &nack(500, None))
                .expect("retried");
            assert!(delay <= Duration::from_millis(100 * 2u64.pow(attempt - 1)));
        }
    }

    #[test]
    fn fatal_answers() {
        let fatal = |status: u16| match nack(status, None) {
            Delivery::Nack(nack) => nack.is_fatal(),
            _ => unreachable!(),
        };
        assert!(fatal(400) && fatal(404) && fatal(410) && fatal(422));
        assert!(!fatal(408) && !fatal(429) && !fatal(500) && !fatal(503));
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        let header = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let wait = parse_retry_after(&header).expect("a date");
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
