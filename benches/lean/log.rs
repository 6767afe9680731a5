//! The log every table of `cargo bench --bench lean` holds: `streams` accounts of
//! `per_stream` events each, about 180 bytes of JSON an event, written through chronicle's
//! `Store::append` one event per append, the writers' streams interleaved (as commands on
//! many aggregates arrive), so the indexes split as they do under a command load.

use std::time::{Duration, Instant};

use chronicle::{ExpectedVersion, NewEvent, Store};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use uuid::Uuid;

use crate::harness::Res;

/// Concurrent writers of the log.
const WRITERS: u64 = 8;

/// An account booking: the ~180-byte JSON payload of every event.
#[derive(Debug, Serialize)]
pub struct Booked {
    pub account: String,
    pub amount: u64,
    pub currency: &'static str,
    pub reference: Uuid,
    pub memo: String,
    pub booked_at: String,
}

impl Booked {
    pub fn sample(stream: u64, version: u64) -> Self {
        let amount = 100 + (stream * 7 + version * 13) % 9_000;
        Booked {
            account: stream_id(stream),
            amount,
            currency: "EUR",
            reference: Uuid::now_v7(),
            memo: format!("invoice {stream:06}-{amount:04}"),
            booked_at: chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string(),
        }
    }

    pub fn json(stream: u64, version: u64) -> Res<Vec<u8>> {
        Ok(serde_json::to_vec(&Booked::sample(stream, version))?)
    }
}

/// The stream id of account `n` (14 characters).
pub fn stream_id(n: u64) -> String {
    format!("account-{n:06}")
}

/// The event type at `version`: opened, then deposits, a withdrawal every tenth.
pub fn event_type(version: u64) -> &'static str {
    match version {
        1 => "account.Opened",
        v if v % 10 == 0 => "account.Withdrawn",
        _ => "account.Deposited",
    }
}

/// The shape of the log.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub streams: u64,
    pub per_stream: u64,
    /// Whether every event carries a correlation and a causation id (the id of the
    /// command that wrote it, a UUID's 36 characters, in both), as in a log whose writers
    /// tag each command; otherwise no event carries metadata.
    pub correlated: bool,
}

impl Shape {
    pub fn events(&self) -> u64 {
        self.streams * self.per_stream
    }
}

/// Writes the log through `store`: writer `w` appends one event at a time to each of its
/// streams (`s % WRITERS == w`) in turn, version by version.
pub async fn write(store: &Store, shape: Shape) -> Res<Duration> {
    let started = Instant::now();
    futures::stream::iter(0..WRITERS)
        .map(|writer| async move {
            for version in 1..=shape.per_stream {
                for stream in (writer..shape.streams).step_by(WRITERS as usize) {
                    let mut event = NewEvent::from_serialize(
                        event_type(version),
                        &Booked::sample(stream, version),
                    )?;
                    if shape.correlated {
                        let command = Uuid::now_v7().to_string();
                        event = event.correlation_id(command.clone()).causation_id(command);
                    }
                    store
                        .append(
                            stream_id(stream),
                            ExpectedVersion::Exact(version - 1),
                            vec![event],
                        )
                        .await?;
                }
            }
            Ok::<(), crate::harness::BoxError>(())
        })
        .buffer_unordered(WRITERS as usize)
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed())
}
