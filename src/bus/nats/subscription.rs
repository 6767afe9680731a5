//! One [`NatsBus`](super::NatsBus) subscription's task: pull requests on its durable
//! consumer, each message decoded, matched and handed to [`Consumer::attempt`], and the
//! [`Verdict`] turned into an ack, a nak with a delay, or a dead letter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::PullConsumer;
use futures::StreamExt as _;
use tokio::sync::watch;

use super::{Connection, DEAD_REASON, MSG_ID};
use crate::bus::consumer::{Consumer, Shared, Verdict};
use crate::bus::{Pattern, wire};

/// How subscriptions fetch: messages per pull request, how long a request waits, and how
/// long the server waits for an ack before delivering again.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fetch {
    pub(super) batch: usize,
    pub(super) expires: Duration,
    pub(super) ack_wait: Duration,
}

/// Tries of a dead letter's publish before the message is left for redelivery.
const DEAD_LETTER_TRIES: u32 = 3;

/// What a subscription's task holds: never the bus, so dropping the bus ends nothing
/// before `close`, and the task ends when asked.
pub(super) struct Subscriber {
    pub(super) pull: PullConsumer,
    pub(super) consumer: Arc<Consumer>,
    pub(super) connection: Connection,
    pub(super) pattern: Pattern,
    /// This consumer's dead-letter subject.
    pub(super) dead_subject: String,
    /// Every dead-letter subject starts with this (the dead prefix and a dot).
    pub(super) dead_prefix: String,
    pub(super) durable: String,
    pub(super) fetch: Fetch,
    /// The consumer's pending messages, as the last message received said.
    pub(super) lag: Arc<AtomicU64>,
    pub(super) shared: Arc<Shared>,
}

impl Subscriber {
    /// Pulls and handles messages until `stop` says so, or its sender is gone (the bus
    /// was dropped); the pull request in hand is finished first, so no message fetched is
    /// left unanswered.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        while stop.has_changed().is_ok() && !*stop.borrow_and_update() {
            let batch = self
                .pull
                .batch()
                .max_messages(self.fetch.batch)
                .expires(self.fetch.expires)
                .messages()
                .await;
            let failed = match batch {
                Ok(mut batch) => {
                    let mut failed = None;
                    while let Some(message) = batch.next().await {
                        match message {
                            Ok(message) => self.handle(message).await,
                            Err(error) => {
                                failed = Some(format!("pull request ended: {error}"));
                                break;
                            }
                        }
                    }
                    failed
                }
                Err(error) => Some(format!("pull request failed: {error}")),
            };
            match failed {
                None => failures = 0,
                Some(error) => {
                    // The consumer or its stream gone, the connection down: try again
                    // after a pause that grows, not in a tight loop.
                    failures = failures.saturating_add(1);
                    self.note(error);
                    let pause = Duration::from_millis(50)
                        .saturating_mul(2u32.saturating_pow(failures.min(7)))
                        .min(Duration::from_secs(5));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
        // The acks are sent without waiting for an answer: make sure they left.
        if let Err(error) = self.connection.client.flush().await {
            self.note(format!("flushing acks on close: {error}"));
        }
    }

    /// One message: skipped (a dead letter, or a type outside the pattern), dead (it does
    /// not decode), or handled.
    async fn handle(&self, message: async_nats::jetstream::Message) {
        let (delivered, sequence) = match message.info() {
            Ok(info) => {
                self.lag.store(info.pending, Ordering::Relaxed);
                (
                    u32::try_from(info.delivered).unwrap_or(u32::MAX).max(1),
                    info.stream_sequence,
                )
            }
            Err(_) => (1, 0),
        };
        let subject = message.subject.as_str();
        if subject.starts_with(&self.dead_prefix) {
            self.answer(&message, AckKind::Ack).await;
            return;
        }
        let headers = message.headers.as_ref();
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        let event = match wire::decode(header, &message.payload, subject) {
            Ok(event) => event,
            Err(error) => {
                let reason = error.to_string();
                self.shared.dead();
                self.note(format!("malformed message: {reason}"));
                tracing::warn!(consumer = %self.durable, sequence, %reason, "malformed message: dead letter");
                self.dead_letter(&message, sequence, &reason).await;
                return;
            }
        };
        if !self.pattern.matches(&event.event_type) {
            self.answer(&message, AckKind::Ack).await;
            return;
        }
        match self.consumer.attempt(Arc::new(event), delivered).await {
            Verdict::Ack => self.answer(&message, AckKind::Ack).await,
            Verdict::Retry(delay) => {
                let delay = (!delay.is_zero()).then_some(delay);
                self.answer(&message, AckKind::Nak(delay)).await;
            }
            Verdict::Dead { reason } => self.dead_letter(&message, sequence, &reason).await,
        }
    }

    /// Publishes `message` to the dead letters (its headers, `chronicle-dead-reason`, a
    /// `Nats-Msg-Id` of its own) and terminates it. When the dead letter cannot be
    /// published, the message is left unanswered: the server delivers it again after the
    /// ack wait, if deliveries remain.
    async fn dead_letter(
        &self,
        message: &async_nats::jetstream::Message,
        sequence: u64,
        reason: &str,
    ) {
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert(DEAD_REASON, reason.replace(['\r', '\n'], " "));
        headers.insert(MSG_ID, format!("dead:{}:{sequence}", self.durable));
        let mut last_error = None;
        for attempt in 0..DEAD_LETTER_TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100) * attempt).await;
            }
            let published = async {
                self.connection
                    .jetstream
                    .publish_with_headers(
                        self.dead_subject.clone(),
                        headers.clone(),
                        message.payload.clone(),
                    )
                    .await?
                    .await
            }
            .await;
            match published {
                Ok(_) => {
                    self.answer(message, AckKind::Term).await;
                    return;
                }
                Err(error) => last_error = Some(error),
            }
        }
        if let Some(error) = last_error {
            self.note(format!(
                "dead letter to `{}` not published (the message stays on the stream): {error}",
                self.dead_subject
            ));
            tracing::error!(consumer = %self.durable, sequence, %error, "dead letter not published");
        }
    }

    /// Sends `kind` for `message`; a failure is noted (the server delivers the message
    /// again after the ack wait).
    async fn answer(&self, message: &async_nats::jetstream::Message, kind: AckKind) {
        if let Err(error) = message.ack_with(kind).await {
            self.note(format!("ack failed: {error}"));
        }
    }

    fn note(&self, message: String) {
        self.shared.note_error(format!(
            "subscription `{}`: {message}",
            self.consumer.options().display_name()
        ));
    }
}
