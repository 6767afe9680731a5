//! Inline projections: run in the append's transaction on every backend, so the read model
//! is current when the append returns, and a refusal rolls the append back.

use std::collections::HashMap;
use std::time::Duration;

use chronicle::{Error, ExpectedVersion, NewEvent, ProjectionState, RecordedEvent};
use serde_json::json;

use crate::projections::{
    Refused, Totals, amounts, assert_totals, deposit, fast, open_with, read_model,
};
use crate::support::Kind;

crate::for_each_backend!(
    the_read_model_is_current_when_the_append_returns,
    a_refusing_projection_rolls_the_append_back,
    rejected_and_replayed_appends_apply_nothing,
    wait_until_an_append_reads_your_writes,
);

async fn the_read_model_is_current_when_the_append_returns(kind: Kind) {
    let projection = Totals::default();
    let inline = projection.clone();
    let test = "the_read_model_is_current_when_the_append_returns";
    let Some(t) = open_with(kind, test, |b| b.inline_projection(inline)).await else {
        return;
    };
    for n in 0..20 {
        deposit(&t.store, n..n + 1).await;
        // No waiting: the append's transaction carried the read model's write.
        assert_totals(&t, &projection, n + 1).await;
    }
}

async fn a_refusing_projection_rolls_the_append_back(kind: Kind) {
    let projection = Totals {
        fail_on: Some(7),
        ..Totals::default()
    };
    let inline = projection.clone();
    let test = "a_refusing_projection_rolls_the_append_back";
    let Some(t) = open_with(kind, test, |b| b.inline_projection(inline)).await else {
        return;
    };
    deposit(&t.store, 0..7).await;
    let before = t.store.stream_info("acct-2").await.expect("info");
    let refused = t
        .store
        .append(
            "acct-2",
            ExpectedVersion::Any,
            vec![
                NewEvent::new("test.noted", json!({ "n": 7 })),
                NewEvent::new("test.deposited", json!({ "n": 7, "amount": 7 })),
            ],
        )
        .await
        .expect_err("the projection refuses n = 7");
    match &refused {
        Error::InlineProjection { name, stream, .. } => {
            assert_eq!((name.as_str(), stream.as_str()), ("totals", "acct-2"));
        }
        other => panic!("expected an inline projection error, got {other:?}"),
    }
    assert!(
        refused.to_string().contains("cannot apply n = 7"),
        "{refused}"
    );
    // The projection's own error, typed: the writer can downcast it.
    let source = std::error::Error::source(&refused).and_then(|source| source.downcast_ref());
    assert_eq!(source, Some(&Refused(7)), "{refused:?}");
    assert_eq!(
        t.store.stream_info("acct-2").await.expect("info"),
        before,
        "nothing written"
    );
    assert_totals(&t, &projection, 7).await;
}

async fn rejected_and_replayed_appends_apply_nothing(kind: Kind) {
    let projection = Totals::default();
    let inline = projection.clone();
    let test = "rejected_and_replayed_appends_apply_nothing";
    let Some(t) = open_with(kind, test, |b| b.inline_projection(inline)).await else {
        return;
    };
    let events = vec![NewEvent::new(
        "test.deposited",
        json!({ "n": 0, "amount": 5 }),
    )];
    let first = t
        .store
        .append("acct-0", ExpectedVersion::NoStream, events.clone())
        .await
        .expect("append");
    // A retry after a lost answer: recognised, not applied again.
    let replay = t
        .store
        .append("acct-0", ExpectedVersion::NoStream, events)
        .await
        .expect("replay");
    assert!(replay.already_stored);
    assert_eq!(replay.log_position(), first.log_position());
    // A conflict: nothing applied.
    let conflict = t
        .store
        .append(
            "acct-0",
            ExpectedVersion::Exact(7),
            vec![NewEvent::new(
                "test.deposited",
                json!({ "n": 1, "amount": 6 }),
            )],
        )
        .await
        .expect_err("conflict");
    assert!(matches!(conflict, Error::Conflict { .. }), "{conflict:?}");
    let model = read_model(&t, &projection).await;
    let amounts = amounts(&model);
    assert_eq!(amounts, HashMap::from([("acct-0".to_owned(), 5)]));
}

/// The position an append returns is one a background projection can be waited for.
async fn wait_until_an_append_reads_your_writes(kind: Kind) {
    let Some(t) = open_with(kind, "wait_until_an_append_reads_your_writes", |b| b).await else {
        return;
    };
    let projection = Totals::default();
    let handle = fast(&t.store)
        .poll_interval(Duration::from_secs(60))
        .spawn(projection.clone());
    for n in 0..5 {
        let written = t
            .store
            .append(
                "acct-1",
                ExpectedVersion::Any,
                vec![NewEvent::new(
                    "test.deposited",
                    json!({ "n": n, "amount": n }),
                )],
            )
            .await
            .expect("append");
        handle
            .wait_until(written.log_position())
            .await
            .expect("applied");
        let model = read_model(&t, &projection).await;
        assert_eq!(
            model.get("acct-1").map(|(amount, _)| *amount),
            Some((0..=n).sum())
        );
    }
    assert_eq!(
        handle.stop().await.expect("stops").state,
        ProjectionState::Stopped
    );
}

/// Eight writers on PostgreSQL with an inline projection: the read model equals a fold
/// over the log, each event applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inline_projection_under_eight_concurrent_writers() {
    let projection = Totals::default();
    let inline = projection.clone();
    let test = "postgres_inline_projection_under_eight_concurrent_writers";
    let Some(t) = open_with(Kind::Postgres, test, |b| b.inline_projection(inline)).await else {
        return;
    };
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let store = t.store.clone();
            tokio::spawn(async move {
                for n in (writer..200).step_by(8) {
                    deposit(&store, n..n + 1).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    assert_totals(&t, &projection, 200).await;
    let log: Vec<RecordedEvent> =
        futures::TryStreamExt::try_collect(t.store.read_all(chronicle::LogPosition::START))
            .await
            .expect("read all");
    assert_eq!(log.len(), 400);
}
