//! The event-type dictionary of the SQL backends (`event_types`): an append adds the
//! (type, schema version) pairs it names, and the store remembers only pairs a committed
//! row holds.

use chronicle::{Direction, Error, ExpectedVersion, NewEvent, RecordedEvent};
use futures::TryStreamExt;
use serde_json::json;

use crate::projections::{Totals, open_with};
use crate::support::{Kind, TestStore, execute, scalar};

crate::for_each_sql_backend!(
    a_type_added_in_a_rolled_back_transaction_is_added_again,
    a_type_row_removed_under_the_store_is_added_again,
    writers_adding_the_same_new_type_at_once_add_it_once,
);

async fn read(t: &TestStore, stream: &str) -> chronicle::Result<Vec<RecordedEvent>> {
    t.store
        .read_stream(stream, 1, Direction::Forward)
        .try_collect()
        .await
}

/// A pair added inside a transaction that then rolls back is gone with it, so the store
/// must not remember it. An inline projection's append runs in a transaction; with one
/// connection (PostgreSQL's pool of 1; SQLite's one writer) it adds its new pair in that
/// transaction. The projection refuses, and the next append of the same new type, in a
/// transaction of its own again, must add the pair once more.
async fn a_type_added_in_a_rolled_back_transaction_is_added_again(kind: Kind) {
    let test = "a_type_added_in_a_rolled_back_transaction_is_added_again";
    let projection = Totals {
        fail_on: Some(1),
        ..Totals::default()
    };
    let Some(t) = open_with(kind, test, |b| b.pool_size(1).inline_projection(projection)).await
    else {
        return;
    };
    let deposit = |n: i64| {
        vec![NewEvent::new(
            "test.deposited",
            json!({ "n": n, "amount": n }),
        )]
    };
    t.store
        .append("acct-1", ExpectedVersion::Any, deposit(1))
        .await
        .expect_err("the projection refuses n = 1");
    let pairs = scalar(
        &t,
        "SELECT count(*) FROM event_types WHERE event_type = 'test.deposited'",
    )
    .await;
    assert_eq!(pairs, 0, "the pair rolled back with the append");
    t.store
        .append("acct-1", ExpectedVersion::Any, deposit(2))
        .await
        .expect("the pair is added again");
    let events = read(&t, "acct-1").await.expect("read");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "test.deposited");
}

/// A type row removed under a running store (a database restored or replaced): the
/// events that named it read as corrupt rows naming `type_id`, not as missing events, and
/// the next append of that type adds the pair again instead of failing.
async fn a_type_row_removed_under_the_store_is_added_again(kind: Kind) {
    let Some(t) = kind
        .open("a_type_row_removed_under_the_store_is_added_again")
        .await
    else {
        return;
    };
    let gone = || vec![NewEvent::new("gone", json!({}))];
    t.store
        .append("s-1", ExpectedVersion::Any, gone())
        .await
        .expect("append");
    execute(&t, "DELETE FROM event_types WHERE event_type = 'gone'").await;
    match read(&t, "s-1").await {
        Err(Error::CorruptRow(row)) => assert_eq!(row.column, "type_id"),
        other => panic!("expected a corrupt row naming `type_id`, got {other:?}"),
    }
    t.store
        .append("s-2", ExpectedVersion::Exact(0), gone())
        .await
        .expect("the pair is added again");
    let events = read(&t, "s-2").await.expect("read");
    assert_eq!(events[0].event_type, "gone");
}

/// Eight writers, each with a store of its own (so none knows what the others added),
/// append events of the same new types at once: every append succeeds and each pair is
/// one row.
async fn writers_adding_the_same_new_type_at_once_add_it_once(kind: Kind) {
    let Some(t) = kind
        .open("writers_adding_the_same_new_type_at_once_add_it_once")
        .await
    else {
        return;
    };
    let mut writers = Vec::new();
    for n in 0..8 {
        let store = t.reopen(|b| b).await.expect("a store of its own");
        writers.push(tokio::spawn(async move {
            let events = vec![
                NewEvent::new("raced", json!({ "n": n })),
                NewEvent::new("raced", json!({ "n": n })).schema_version(2),
            ];
            store
                .append(format!("race-{n}"), ExpectedVersion::NoStream, events)
                .await
                .map(|_| ())
        }));
    }
    for writer in writers {
        writer
            .await
            .expect("writer")
            .expect("every append succeeds");
    }
    let pairs = scalar(
        &t,
        "SELECT count(*) FROM event_types WHERE event_type = 'raced'",
    )
    .await;
    assert_eq!(pairs, 2, "one row per (type, schema version)");
    for n in 0..8 {
        let events = read(&t, &format!("race-{n}")).await.expect("read");
        let versions: Vec<u32> = events.iter().map(|e| e.schema_version).collect();
        assert_eq!(versions, [1, 2]);
    }
}
