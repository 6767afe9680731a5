//! Random sequences of appends (random expected versions, batch sizes, re-sent and altered
//! batches) run against each backend and against a model written from the rules alone;
//! every outcome and every read must agree.

use std::collections::HashMap;

use chronicle::{Direction, Error, ExpectedVersion, LogPosition, NewEvent, Store};
use futures::TryStreamExt;
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

use crate::support::Kind;

const STREAMS: [&str; 3] = ["m-a", "m-b", "other"];

#[derive(Debug, Clone)]
enum Op {
    /// A fresh batch of `size` events.
    Append {
        stream: usize,
        expected: ExpectedVersion,
        size: usize,
    },
    /// Send an earlier batch again, as it was (a retry).
    Resend { earlier: prop::sample::Index },
    /// Send an earlier batch's ids with other payloads.
    Alter { earlier: prop::sample::Index },
}

fn expected_version() -> impl Strategy<Value = ExpectedVersion> {
    prop_oneof![
        Just(ExpectedVersion::Any),
        Just(ExpectedVersion::NoStream),
        Just(ExpectedVersion::StreamExists),
        (0u64..6).prop_map(ExpectedVersion::Exact),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..STREAMS.len(), expected_version(), 1usize..4)
            .prop_map(|(stream, expected, size)| Op::Append { stream, expected, size }),
        2 => any::<prop::sample::Index>().prop_map(|earlier| Op::Resend { earlier }),
        1 => any::<prop::sample::Index>().prop_map(|earlier| Op::Alter { earlier }),
    ]
}

/// What the model predicts for one append.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Written(Vec<u64>),
    AlreadyStored(Vec<u64>),
    Conflict(Option<u64>),
    IdReused,
}

#[derive(Debug, Clone)]
struct Sent {
    stream: &'static str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
}

/// Streams as lists of (id, type, payload); the rules of `Store::append` restated.
#[derive(Default)]
struct Model {
    streams: HashMap<&'static str, Vec<(Uuid, Vec<u8>)>>,
    /// Every stored id: (stream, version).
    ids: HashMap<Uuid, (&'static str, u64)>,
    log: Vec<(&'static str, u64)>,
}

impl Model {
    fn append(&mut self, sent: &Sent) -> Outcome {
        let current = self.streams.get(sent.stream).map(|s| s.len() as u64);
        let accepted = match sent.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.unwrap_or(0) == 0,
            ExpectedVersion::StreamExists => current.is_some(),
            ExpectedVersion::Exact(v) => current.unwrap_or(0) == v,
        };
        let stored: Vec<_> = sent
            .events
            .iter()
            .filter_map(|e| self.ids.get(&e.event_id()))
            .collect();
        if accepted && stored.is_empty() {
            let stream = self.streams.entry(sent.stream).or_default();
            let mut versions = Vec::new();
            for event in &sent.events {
                stream.push((event.event_id(), event.payload_json().to_vec()));
                let version = stream.len() as u64;
                self.ids.insert(event.event_id(), (sent.stream, version));
                self.log.push((sent.stream, version));
                versions.push(version);
            }
            return Outcome::Written(versions);
        }
        if stored.is_empty() {
            return Outcome::Conflict(current);
        }
        // A replay: all ids stored in this stream, consecutively, same content, at a place
        // that fits the expected version.
        let Some(&(stream, first)) = self.ids.get(&sent.events[0].event_id()) else {
            return Outcome::IdReused;
        };
        let fits = match sent.expected {
            ExpectedVersion::Exact(v) => first == v + 1,
            ExpectedVersion::NoStream => first == 1,
            _ => true,
        };
        let same = stream == sent.stream
            && fits
            && sent.events.iter().zip(first..).all(|(event, version)| {
                self.streams[stream]
                    .get(version as usize - 1)
                    .is_some_and(|(id, payload)| {
                        *id == event.event_id() && payload == event.payload_json()
                    })
            });
        if same {
            Outcome::AlreadyStored((first..first + sent.events.len() as u64).collect())
        } else {
            Outcome::IdReused
        }
    }
}

fn observe(result: chronicle::Result<chronicle::AppendResult>) -> Outcome {
    match result {
        Ok(written) => {
            let versions = written.events.iter().map(|e| e.version).collect();
            if written.already_stored {
                Outcome::AlreadyStored(versions)
            } else {
                Outcome::Written(versions)
            }
        }
        Err(Error::Conflict { actual, .. }) => Outcome::Conflict(actual),
        Err(Error::EventIdReused { .. }) => Outcome::IdReused,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

async fn check(store: &Store, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut sent: Vec<Sent> = Vec::new();
    let mut counter = 0u64;
    for op in ops {
        let batch = match op {
            Op::Append {
                stream,
                expected,
                size,
            } => Sent {
                stream: STREAMS[*stream],
                expected: *expected,
                events: (0..*size)
                    .map(|_| {
                        counter += 1;
                        NewEvent::new("model.event", json!({ "n": counter }))
                    })
                    .collect(),
            },
            Op::Resend { earlier } if !sent.is_empty() => sent[earlier.index(sent.len())].clone(),
            Op::Alter { earlier } if !sent.is_empty() => {
                let mut batch = sent[earlier.index(sent.len())].clone();
                batch.events = batch
                    .events
                    .iter()
                    .map(|e| {
                        NewEvent::new("model.event", json!({ "altered": true })).id(e.event_id())
                    })
                    .collect();
                batch
            }
            _ => continue,
        };
        let predicted = model.append(&batch);
        let actual = observe(
            store
                .append(batch.stream, batch.expected, batch.events.clone())
                .await,
        );
        prop_assert_eq!(actual, predicted, "append {:?}", batch);
        sent.push(batch);
    }
    for stream in STREAMS {
        let expected: Vec<(Uuid, Vec<u8>)> = model.streams.get(stream).cloned().unwrap_or_default();
        let read: Vec<_> = match store
            .read_stream(stream, 1, Direction::Forward)
            .try_collect()
            .await
        {
            Ok(events) => events,
            Err(Error::StreamNotFound { .. }) => Vec::new(),
            Err(other) => return Err(TestCaseError::fail(other.to_string())),
        };
        let read: Vec<(Uuid, Vec<u8>)> = read
            .iter()
            .map(|e| (e.id, e.payload_json().to_vec()))
            .collect();
        prop_assert_eq!(read, expected, "stream {}", stream);
    }
    let log: Vec<_> = store
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let log: Vec<(String, u64)> = log
        .iter()
        .map(|e| (e.stream_id.to_string(), e.version))
        .collect();
    let expected: Vec<(String, u64)> = model.log.iter().map(|(s, v)| (s.to_string(), *v)).collect();
    prop_assert_eq!(log, expected);
    Ok(())
}

fn run(kind: Kind, cases: u32) {
    let Some((runtime, config)) = crate::support::property_test(kind, "model", cases) else {
        return;
    };
    proptest!(config, |(ops in prop::collection::vec(op(), 1..40))| {
        runtime.block_on(async {
            let t = kind.open("model").await.expect("service checked above");
            check(&t.store, &ops).await
        })?;
    });
}

#[test]
fn memory_matches_the_model() {
    run(Kind::Memory, 64);
}

#[test]
fn a_backend_of_the_seam_matches_the_model() {
    run(Kind::Custom, 32);
}

#[test]
fn sqlite_matches_the_model() {
    run(Kind::Sqlite, 24);
}

#[test]
fn postgres_matches_the_model() {
    run(Kind::Postgres, 24);
}
