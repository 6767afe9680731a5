//! Reads that page (`read_stream` both ways, `read_all`, aggregate loads) bounded by a
//! byte budget of stored payloads as well as by a count, on every backend: streams of
//! events large against a small budget (`read_budget_bytes`) read completely and in
//! order, a page ends at the event that reaches the budget, an event larger than the
//! budget still reads, and pages joined are the whole stream whatever the sizes.
//!
//! Pages are not visible through the API; their bounds are seen through retention: a
//! policy set while a read is under way hides events from every page fetched after it,
//! and a read holds the page being consumed and at most the next one.

use chronicle::{
    Aggregate, Direction, DomainEvent, ExpectedVersion, LogPosition, NewEvent, RecordedEvent,
    RetentionPolicy, RetentionScope, Store,
};
use futures::{StreamExt, TryStreamExt};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::support::Kind;

crate::for_each_backend!(
    large_events_read_in_pages_of_the_budget,
    an_event_larger_than_the_budget_reads,
    loads_of_large_events_rebuild_the_state,
);

/// Characters of text in an event of [`TEXT`] size: about 1 KiB stored.
const TEXT: usize = 1000;
/// A budget that three such events reach and two do not.
const BUDGET: usize = 2500;

#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "note.")]
enum NoteEvent {
    Noted { n: u64, text: String },
}

/// The notes of one stream: which events were applied, in order, and their text's bytes.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "notes", event = NoteEvent)]
struct Notes {
    seen: Vec<u64>,
    bytes: u64,
}

impl Aggregate for Notes {
    type Command = ();
    type Error = std::convert::Infallible;

    fn apply(&mut self, event: NoteEvent) {
        let NoteEvent::Noted { n, text } = event;
        self.seen.push(n);
        self.bytes += text.len() as u64;
    }

    fn handle(&self, _: &()) -> Result<Vec<NoteEvent>, Self::Error> {
        Ok(Vec::new())
    }
}

/// Event `n` of a notes stream, with `len` characters of text.
fn note(n: u64, len: usize) -> NewEvent {
    NewEvent::new("note.Noted", json!({ "n": n, "text": "x".repeat(len) }))
}

/// Appends notes `first..` of these text lengths to `notes-1`, one append each.
async fn write(store: &Store, first: u64, lens: &[usize]) {
    for (n, len) in (first..).zip(lens) {
        store
            .append("notes-1", ExpectedVersion::Any, vec![note(n, *len)])
            .await
            .expect("append");
    }
}

fn numbers(events: &[RecordedEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|event| {
            assert_eq!(event.json().expect("json")["n"], event.version);
            event.version
        })
        .collect()
}

async fn read(store: &Store, from: u64, direction: Direction) -> Vec<u64> {
    let events: Vec<RecordedEvent> = store
        .read_stream("notes-1", from, direction)
        .try_collect()
        .await
        .expect("read_stream");
    numbers(&events)
}

async fn read_log(store: &Store) -> Vec<u64> {
    let events: Vec<RecordedEvent> = store
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .expect("read_all");
    numbers(&events)
}

/// Reads `read` by taking one event, setting `policy` on `notes-1`, then taking the rest.
async fn read_around_a_policy(
    store: &Store,
    read: impl futures::Stream<Item = chronicle::Result<RecordedEvent>>,
    policy: RetentionPolicy,
) -> Vec<u64> {
    let mut read = std::pin::pin!(read);
    let first = read.next().await.expect("an event").expect("read");
    store
        .set_retention(RetentionScope::stream("notes-1"), policy)
        .await
        .expect("set retention");
    let rest: Vec<RecordedEvent> = read.try_collect().await.expect("read the rest");
    let mut seen = numbers(&[first]);
    seen.extend(numbers(&rest));
    seen
}

async fn large_events_read_in_pages_of_the_budget(kind: Kind) {
    let Some(t) = kind
        .open_with("large_events_read_in_pages_of_the_budget", |b| {
            b.read_budget_bytes(BUDGET)
        })
        .await
    else {
        return;
    };
    let store = &t.store;
    write(store, 1, &[TEXT; 10]).await;
    let all: Vec<u64> = (1..=10).collect();
    assert_eq!(read(store, 1, Direction::Forward).await, all);
    assert_eq!(
        read(store, 4, Direction::Forward).await,
        (4..=10).collect::<Vec<_>>()
    );
    let down: Vec<u64> = (1..=10).rev().collect();
    assert_eq!(read(store, u64::MAX, Direction::Backward).await, down);
    assert_eq!(read(store, 8, Direction::Backward).await, down[2..]);
    assert_eq!(read_log(store).await, all);

    // Pages of three events (the third reaches the budget): once the first event is
    // taken, only the second page may be loaded already, so a policy set then hides
    // events from the third page (versions 7 to 9) on.
    let newest_only = RetentionPolicy::new().max_count(1).ignore_snapshots();
    let forward = store.read_stream("notes-1", 1, Direction::Forward);
    let seen = read_around_a_policy(store, forward, newest_only).await;
    assert!(
        seen == [1, 2, 3, 10] || seen == [1, 2, 3, 4, 5, 6, 10],
        "read_stream held more than two pages of three events: {seen:?}"
    );
    store
        .clear_retention(RetentionScope::stream("notes-1"))
        .await
        .expect("clear retention");
    let log = store.read_all(LogPosition::START);
    let seen = read_around_a_policy(store, log, newest_only).await;
    assert!(
        seen == [1, 2, 3, 10] || seen == [1, 2, 3, 4, 5, 6, 10],
        "read_all held more than two pages of three events: {seen:?}"
    );
    store
        .clear_retention(RetentionScope::stream("notes-1"))
        .await
        .expect("clear retention");
    // Backward: pages 10–8, 7–5, 4–2, 1; a cut below 5 hides the third page on.
    let backward = store.read_stream("notes-1", u64::MAX, Direction::Backward);
    let below_five = RetentionPolicy::new().truncate_before(5).ignore_snapshots();
    let seen = read_around_a_policy(store, backward, below_five).await;
    assert_eq!(
        seen,
        [10, 9, 8, 7, 6, 5],
        "a backward read held more than two pages of three events"
    );
}

async fn an_event_larger_than_the_budget_reads(kind: Kind) {
    let Some(t) = kind
        .open_with("an_event_larger_than_the_budget_reads", |b| {
            b.read_budget_bytes(100)
        })
        .await
    else {
        return;
    };
    let store = &t.store;
    write(store, 1, &[TEXT, 10, TEXT, TEXT, 10]).await;
    let all: Vec<u64> = (1..=5).collect();
    assert_eq!(read(store, 1, Direction::Forward).await, all);
    assert_eq!(
        read(store, u64::MAX, Direction::Backward).await,
        [5, 4, 3, 2, 1]
    );
    assert_eq!(read_log(store).await, all);
    let loaded = store
        .repository::<Notes>()
        .load("1")
        .await
        .expect("load")
        .expect("the stream exists");
    assert_eq!(loaded.state.seen, all);
    assert_eq!(loaded.state.bytes, 3 * TEXT as u64 + 20);
    assert_eq!((loaded.version, loaded.replayed), (5, 5));
}

async fn loads_of_large_events_rebuild_the_state(kind: Kind) {
    // Pages of 2 events: a load's first page asks for 8 with the head, the next ones for
    // 16 and 32; the budget cuts each at 3.
    let Some(t) = kind
        .open_with("loads_of_large_events_rebuild_the_state", |b| {
            b.read_budget_bytes(BUDGET).page_size(2)
        })
        .await
    else {
        return;
    };
    let store = &t.store;
    let notes = store.repository::<Notes>();
    write(store, 1, &[TEXT; 25]).await;
    let loaded = notes.load("1").await.expect("load").expect("exists");
    assert_eq!(loaded.state.seen, (1..=25).collect::<Vec<_>>());
    assert_eq!(loaded.state.bytes, 25 * TEXT as u64);
    assert_eq!((loaded.version, loaded.replayed), (25, 25));
    assert_eq!(loaded.from_snapshot, None);

    let at = notes
        .load_at("1", 11)
        .await
        .expect("load_at")
        .expect("exists");
    assert_eq!(at.state.seen, (1..=11).collect::<Vec<_>>());
    assert_eq!(at.version, 11);

    // From a snapshot, with a tail of ten events.
    assert_eq!(
        notes.create_snapshot("1").await.expect("snapshot"),
        Some(25)
    );
    write(store, 26, &[TEXT; 10]).await;
    let loaded = notes.load("1").await.expect("load").expect("exists");
    assert_eq!(loaded.state.seen, (1..=35).collect::<Vec<_>>());
    assert_eq!(loaded.from_snapshot, Some(25));
    assert_eq!((loaded.version, loaded.replayed), (35, 10));

    // Under a policy that may expire the events replayed (none is old enough), the load
    // reads whole rows and filters them: the same pages, the same state.
    store
        .delete_snapshots("notes-1", None)
        .await
        .expect("delete snapshots");
    store
        .set_retention(
            RetentionScope::stream("notes-1"),
            RetentionPolicy::new()
                .max_age(std::time::Duration::from_secs(86_400))
                .ignore_snapshots(),
        )
        .await
        .expect("set retention");
    let loaded = notes.load("1").await.expect("load").expect("exists");
    assert_eq!(loaded.state.seen, (1..=35).collect::<Vec<_>>());
    assert_eq!((loaded.version, loaded.replayed), (35, 35));
}

/// One case of the property: text lengths of the stream's events, the store's budget and
/// page size, where a read starts and its direction.
#[derive(Debug, Clone)]
struct Case {
    lens: Vec<usize>,
    budget: usize,
    page_size: usize,
    from: u64,
    direction: Direction,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(0..400usize, 1..16),
        1..1500usize,
        1..6usize,
        0..20u64,
        any::<bool>(),
    )
        .prop_map(|(lens, budget, page_size, from, forward)| Case {
            lens,
            budget,
            page_size,
            from,
            direction: if forward {
                Direction::Forward
            } else {
                Direction::Backward
            },
        })
}

/// The pages of every read, joined, are the stream: the versions a read from `from` in
/// its direction covers, in order, each once, with its payload; and a load folds them all.
async fn check(store: &Store, case: &Case) -> Result<(), TestCaseError> {
    write(store, 1, &case.lens).await;
    let last = case.lens.len() as u64;
    let expected: Vec<u64> = match case.direction {
        Direction::Forward => (case.from.max(1)..=last).collect(),
        Direction::Backward => (1..=case.from.min(last)).rev().collect(),
    };
    let events: Vec<RecordedEvent> = store
        .read_stream("notes-1", case.from, case.direction)
        .try_collect()
        .await
        .map_err(|error| TestCaseError::fail(error.to_string()))?;
    prop_assert_eq!(numbers(&events), expected);
    for event in &events {
        let len = case.lens[event.version as usize - 1];
        prop_assert_eq!(
            event.json().expect("json")["text"].as_str().map(str::len),
            Some(len)
        );
    }
    prop_assert_eq!(read_log(store).await, (1..=last).collect::<Vec<_>>());
    let loaded = store
        .repository::<Notes>()
        .load("1")
        .await
        .map_err(|error| TestCaseError::fail(error.to_string()))?
        .expect("exists");
    prop_assert_eq!(loaded.state.seen, (1..=last).collect::<Vec<_>>());
    prop_assert_eq!(loaded.state.bytes, case.lens.iter().sum::<usize>() as u64);
    Ok(())
}

fn pages_join_into_the_stream(kind: Kind, cases: u32) {
    let Some((runtime, config)) =
        crate::support::property_test(kind, "pages_join_into_the_stream", cases)
    else {
        return;
    };
    proptest!(config, |(case in case())| {
        runtime.block_on(async {
            let t = kind
                .open_with("pages_join_into_the_stream", |b| {
                    b.read_budget_bytes(case.budget).page_size(case.page_size)
                })
                .await
                .expect("service checked above");
            check(&t.store, &case).await
        })?;
    });
}

#[test]
fn memory_pages_join_into_the_stream() {
    pages_join_into_the_stream(Kind::Memory, 128);
}

#[test]
fn custom_pages_join_into_the_stream() {
    pages_join_into_the_stream(Kind::Custom, 32);
}

#[test]
fn sqlite_pages_join_into_the_stream() {
    pages_join_into_the_stream(Kind::Sqlite, 32);
}

#[test]
fn postgres_pages_join_into_the_stream() {
    pages_join_into_the_stream(Kind::Postgres, 24);
}
