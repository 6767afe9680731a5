//! An instance's stream: the records written to it, and the instance they fold into.
//!
//! Stream `process.{NAME}-{key}`; event types `process.{NAME}.{kind}`:
//!
//! - `handled` — an event was handled: its id, the state after it, how many commands it
//!   issued. Written before the commands are issued; it is the claim that makes a
//!   redelivery issue nothing.
//! - `timed_out` — the same, for a timeout that came due (its id is the timeout's).
//! - `issued` — the first `count` commands of an event were issued.
//! - `timeout` — a timeout scheduled: when it is due and what it carries. Its event id is
//!   the timeout's id.
//! - `ended` — the instance completed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ProcessManager;
use crate::error::{Error, Result};
use crate::event::{EventMetadata, NewEvent, RecordedEvent};
use crate::store::Store;
use crate::stream::{Direction, StreamId};

/// The kinds of record, as the suffix of their event type.
pub(crate) const HANDLED: &str = "handled";
pub(crate) const TIMED_OUT: &str = "timed_out";
pub(crate) const ISSUED: &str = "issued";
pub(crate) const TIMEOUT: &str = "timeout";
pub(crate) const ENDED: &str = "ended";

/// The event type of a record of `kind` for the manager `name`.
pub(crate) fn record_type(name: &str, kind: &str) -> String {
    format!("process.{name}.{kind}")
}

/// The stream prefix (category) of the manager `name`'s instances.
pub(crate) fn category(name: &str) -> String {
    format!("process.{name}")
}

/// The stream of the instance `key` of the manager `name`.
pub(crate) fn stream_of(name: &str, key: &str) -> Result<StreamId> {
    StreamId::new(format!("{}-{key}", category(name)))
}

/// `handled` and `timed_out`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandledRecord<S> {
    pub(crate) event: Uuid,
    pub(crate) state: S,
    pub(crate) commands: u32,
}

/// `issued`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IssuedRecord {
    pub(crate) event: Uuid,
    pub(crate) count: u32,
}

/// `timeout`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TimeoutRecord<T> {
    pub(crate) due: DateTime<Utc>,
    pub(crate) timeout: T,
}

/// A record to append, with the metadata of what caused it.
pub(crate) fn record<T: Serialize>(
    name: &str,
    kind: &str,
    payload: &T,
    metadata: &EventMetadata,
) -> Result<NewEvent> {
    Ok(NewEvent::from_serialize(record_type(name, kind), payload)?.metadata(metadata.clone()))
}

/// An event the instance handled, as far as a redelivery needs to know.
#[derive(Debug)]
pub(crate) struct Handling<S> {
    /// The state before the event, kept while some of its commands are not recorded as
    /// issued (to compute them again).
    pub(crate) before: Option<S>,
    pub(crate) commands: u32,
    pub(crate) issued: u32,
}

/// A timeout scheduled.
#[derive(Debug)]
pub(crate) struct Pending<T> {
    pub(crate) timeout: T,
    /// The `timeout` record's metadata: what the timeout's commands follow.
    pub(crate) metadata: EventMetadata,
}

/// An instance, folded from its stream.
#[derive(Debug)]
pub(crate) struct Instance<P: ProcessManager> {
    pub(crate) stream: StreamId,
    /// The stream's version (0: no stream yet).
    pub(crate) version: u64,
    pub(crate) state: P::State,
    pub(crate) ended: bool,
    pub(crate) handled: HashMap<Uuid, Handling<P::State>>,
    /// Every timeout scheduled, handled or not (a handled one is in `handled` too).
    pub(crate) timeouts: HashMap<Uuid, Pending<P::Timeout>>,
}

impl<P: ProcessManager> Instance<P> {
    /// Reads the instance `stream` (a new one when it does not exist).
    pub(crate) async fn load(store: &Store, stream: StreamId) -> Result<Self> {
        let mut instance = Instance {
            stream,
            version: 0,
            state: P::State::default(),
            ended: false,
            handled: HashMap::new(),
            timeouts: HashMap::new(),
        };
        let events = store.read_stream(instance.stream.as_str(), 1, Direction::Forward);
        futures::pin_mut!(events);
        loop {
            match events.try_next().await {
                Ok(Some(event)) => instance.fold(&event)?,
                Ok(None) => break,
                Err(Error::StreamNotFound { .. }) => break,
                Err(error) => return Err(error),
            }
        }
        Ok(instance)
    }

    fn fold(&mut self, event: &RecordedEvent) -> Result<()> {
        self.version = event.version;
        let kind = event
            .event_type
            .strip_prefix(&record_type(P::NAME, ""))
            .unwrap_or_default();
        match kind {
            HANDLED | TIMED_OUT => {
                let record: HandledRecord<P::State> = event.data()?;
                let before = std::mem::replace(&mut self.state, record.state);
                let handling = Handling {
                    before: (record.commands > 0).then_some(before),
                    commands: record.commands,
                    issued: 0,
                };
                self.handled.insert(record.event, handling);
            }
            ISSUED => {
                let record: IssuedRecord = event.data()?;
                if let Some(handling) = self.handled.get_mut(&record.event) {
                    handling.issued = handling.issued.max(record.count);
                    if handling.issued >= handling.commands {
                        handling.before = None;
                    }
                }
            }
            TIMEOUT => {
                let record: TimeoutRecord<P::Timeout> = event.data()?;
                self.timeouts.insert(
                    event.id,
                    Pending {
                        timeout: record.timeout,
                        metadata: event.metadata.clone(),
                    },
                );
            }
            ENDED => {
                self.ended = true;
            }
            _ => {
                return Err(Error::Internal(format!(
                    "event {} of type `{}` in the process instance stream `{}`",
                    event.id, event.event_type, self.stream
                )));
            }
        }
        Ok(())
    }
}

/// What the timeout scheduler needs of a record it reads from the log: the timeouts
/// scheduled, handled, and the instances ended.
#[derive(Debug)]
pub(crate) enum TimeoutNews {
    Scheduled {
        id: Uuid,
        stream: StreamId,
        due: DateTime<Utc>,
    },
    Handled(Uuid),
    Ended(StreamId),
}

impl TimeoutNews {
    /// What `event` (a record of the manager `name`) says about timeouts, if anything.
    pub(crate) fn read(name: &str, event: &RecordedEvent) -> Result<Option<Self>> {
        let kind = event
            .event_type
            .strip_prefix(&record_type(name, ""))
            .unwrap_or_default();
        Ok(match kind {
            TIMEOUT => {
                let record: TimeoutRecord<IgnoredAny> = event.data()?;
                Some(TimeoutNews::Scheduled {
                    id: event.id,
                    stream: event.stream_id.clone(),
                    due: record.due,
                })
            }
            TIMED_OUT => {
                let record: HandledRecord<IgnoredAny> = event.data()?;
                Some(TimeoutNews::Handled(record.event))
            }
            ENDED => Some(TimeoutNews::Ended(event.stream_id.clone())),
            _ => None,
        })
    }
}
