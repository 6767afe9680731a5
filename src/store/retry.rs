//! Retries of transient connection errors and the per-attempt timeout.
//!
//! Retrying an append is safe: if the first attempt committed but its answer was lost, the
//! retry carries the same event ids and the store recognises it as an idempotent replay.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result, is_statement_timeout};

/// How store operations are retried and timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, at least 1.
    pub attempts: u32,
    /// Delay before the first retry; doubles after each.
    pub delay: Duration,
    /// Limit for one attempt.
    pub timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            delay: Duration::from_millis(50),
            timeout: None,
        }
    }
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails with an error that is not a retryable
    /// connection error ([`Error::is_retryable`] decides), or the attempts run out.
    pub(crate) async fn run<T, F, Fut>(&self, operation: &'static str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut delay = self.delay;
        let mut tries = 1;
        loop {
            let result = match self.timeout {
                Some(after) => tokio::time::timeout(after, attempt())
                    .await
                    .unwrap_or(Err(Error::Timeout { operation, after })),
                None => attempt().await,
            };
            let result = match (result, self.timeout) {
                (Err(error), Some(after)) if is_statement_timeout(&error) => {
                    Err(Error::Timeout { operation, after })
                }
                (result, _) => result,
            };
            match result {
                Err(error)
                    if error.kind() == ErrorKind::Connection
                        && error.is_retryable()
                        && !error.is_closed()
                        && tries < self.attempts =>
                {
                    tracing::warn!(operation, attempt = tries, %error, "transient error; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    tries += 1;
                }
                other => return other,
            }
        }
    }
}
