//! The outbox on SQLite and PostgreSQL: routing, retries with backoff, dead letters,
//! fatal errors and panics, priorities, ordered-per-stream handlers, leases after a
//! killed executor, a processor that fails mid-transaction, both schedulers, and three
//! executors sharing 5,000 requests on PostgreSQL.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle::outbox::{
    Backoff, ErrorReporter, ExecutionReport, Failure, FailureKind, HandlerStats, OutboxStats,
};
use chronicle::{
    ExpectedVersion, Handler, HandlerError, HandlerMap, HandlerRequest, NewEvent, Outbox,
    StartFrom, Store,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::Kind;

crate::for_each_backend!(
    each_pattern_kind_routes_to_the_right_handlers,
    raised_application_events_reach_the_handlers,
    retries_follow_the_backoff_then_the_request_is_dead,
    fatal_errors_and_panics_are_caught_and_reported,
    lower_priorities_run_first,
    ordered_handlers_run_a_stream_in_order,
    a_killed_executors_request_runs_again_after_the_lease,
    both_schedulers_drain_the_same_workload_alike,
    dead_requests_can_be_retried_and_done_ones_purged,
    the_admin_without_handlers_sees_and_revives_dead_requests,
    ordered_turns_pass_while_requests_are_created_and_run_at_once,
    a_new_outbox_and_new_handlers_start_from_now_by_default,
    handlers_start_from_the_beginning_or_after_a_position_when_asked,
    wait_until_returns_once_every_request_is_done_or_dead,
    shutdown_finishes_the_handlers_in_flight,
    a_slow_handler_does_not_hold_back_the_other_workers,
    a_panic_in_the_handler_function_is_caught,
    a_revived_request_never_runs_beside_a_running_one_of_its_stream,
    the_schedulers_purge_done_requests,
    a_dropped_scheduler_stops,
);

/// Tests that write the SQL tables directly: a failure injected with a trigger, the
/// starts table of an older release emptied.
mod sql_tables {
    use super::*;

    crate::for_each_sql_backend!(
        a_processor_failing_mid_transaction_creates_no_duplicates,
        an_outbox_that_ran_before_starts_were_recorded_loses_no_event,
    );
}

/// What the handlers saw: (handler, event type, attempt), in order.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<(String, String, u32)>>>);

impl Calls {
    fn push(&self, request: &HandlerRequest) {
        let call = (
            request.handler.clone(),
            request.event.event_type.clone(),
            request.attempt,
        );
        self.0.lock().expect("calls").push(call);
    }

    fn all(&self) -> Vec<(String, String, u32)> {
        self.0.lock().expect("calls").clone()
    }

    /// A handler that records its calls and succeeds.
    fn handler(&self, name: &str, pattern: &str) -> Handler {
        let calls = self.clone();
        Handler::new(name, pattern, move |request: HandlerRequest| {
            calls.push(&request);
            async { Ok(()) }
        })
    }
}

/// Collects the reports, and the backtraces and the typed errors apart.
#[derive(Clone, Default)]
struct Reports(
    Arc<Mutex<Vec<(FailureKind, String, bool)>>>,
    Arc<Mutex<Vec<String>>>,
    Arc<Mutex<Vec<NoSuchCustomer>>>,
);

/// A handler's error of the test's own type, which the reporter gets back typed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NoSuchCustomer(u32);

impl std::fmt::Display for NoSuchCustomer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no such customer")
    }
}

impl std::error::Error for NoSuchCustomer {}

impl ErrorReporter for Reports {
    fn report(&self, failure: &Failure<'_>) -> bool {
        let report = (failure.kind, failure.error.to_owned(), failure.dead);
        self.0.lock().expect("reports").push(report);
        if let Some(typed) = failure.source.and_then(|source| source.downcast_ref()) {
            self.2
                .lock()
                .expect("typed")
                .push(NoSuchCustomer::clone(typed));
        }
        if let Some(backtrace) = failure.backtrace {
            self.1
                .lock()
                .expect("backtraces")
                .push(backtrace.to_owned());
        }
        true
    }
}

impl Reports {
    fn all(&self) -> Vec<(FailureKind, String, bool)> {
        self.0.lock().expect("reports").clone()
    }
}

/// Appends events of `types` to `stream`; returns the last one's log position.
async fn append(store: &Store, stream: &str, types: &[&str]) -> chronicle::LogPosition {
    let events = types
        .iter()
        .map(|event_type| NewEvent::new(*event_type, json!({ "stream": stream })))
        .collect();
    store
        .append(stream, ExpectedVersion::Any, events)
        .await
        .expect("append")
        .log_position()
}

/// Runs the executor until nothing is due; returns the reports summed.
async fn drain(outbox: &Outbox) -> ExecutionReport {
    let mut total = ExecutionReport::default();
    loop {
        let executed = outbox.execute().await.expect("execute");
        if executed.claimed == 0 {
            return total;
        }
        total.claimed += executed.claimed;
        total.done += executed.done;
        total.retrying += executed.retrying;
        total.dead += executed.dead;
        total.lost += executed.lost;
    }
}

fn stats_of(stats: &OutboxStats, handler: &str) -> HandlerStats {
    stats.handlers.get(handler).copied().unwrap_or_default()
}

async fn each_pattern_kind_routes_to_the_right_handlers(kind: Kind) {
    let Some(t) = kind
        .open("each_pattern_kind_routes_to_the_right_handlers")
        .await
    else {
        return;
    };
    let calls = Calls::default();
    let handlers = HandlerMap::new()
        .route(calls.handler("exact", "acct.Opened"))
        .route(calls.handler("glob", "acct.*"))
        .route(calls.handler("suffix", "*.Closed"))
        .route(calls.handler("all", "*"));
    let outbox = t
        .store
        .outbox(handlers)
        .expect("outbox")
        .start_from(StartFrom::Beginning);
    append(&t.store, "acct-1", &["acct.Opened", "acct.Closed"]).await;
    append(&t.store, "order-1", &["order.Placed"]).await;

    assert_eq!(outbox.process().await.expect("process"), 1 + 2 + 1 + 3);
    assert_eq!(outbox.process().await.expect("again"), 0, "nothing twice");
    let stats = outbox.stats().await.expect("stats");
    assert_eq!(stats.unprocessed_events, 0);
    let pending = |handler| stats_of(&stats, handler).pending;
    assert_eq!(
        [
            pending("exact"),
            pending("glob"),
            pending("suffix"),
            pending("all")
        ],
        [1, 2, 1, 3]
    );

    let executed = drain(&outbox).await;
    assert_eq!((executed.claimed, executed.done), (7, 7));
    let mut seen: Vec<(String, String)> = calls
        .all()
        .into_iter()
        .map(|(handler, event_type, attempt)| {
            assert_eq!(attempt, 1);
            (handler, event_type)
        })
        .collect();
    seen.sort();
    let expected: Vec<(String, String)> = [
        ("all", "acct.Closed"),
        ("all", "acct.Opened"),
        ("all", "order.Placed"),
        ("exact", "acct.Opened"),
        ("glob", "acct.Closed"),
        ("glob", "acct.Opened"),
        ("suffix", "acct.Closed"),
    ]
    .iter()
    .map(|(h, e)| ((*h).to_owned(), (*e).to_owned()))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        stats_of(&outbox.stats().await.expect("stats"), "all").done,
        3
    );
}

async fn raised_application_events_reach_the_handlers(kind: Kind) {
    let Some(t) = kind.open("raised_application_events").await else {
        return;
    };
    let calls = Calls::default();
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(calls.handler("ops", "ops.*")))
        .expect("outbox")
        .start_from(StartFrom::Beginning);
    let event = NewEvent::new("ops.ImportFinished", json!({ "rows": 12 }));
    let raised = t.store.raise(event.clone()).await.expect("raise");
    assert_eq!(raised.stream_id.category(), "app");
    let again = t.store.raise(event).await.expect("a retried raise");
    assert!(again.already_stored, "raising is idempotent by event id");
    outbox.process().await.expect("process");
    assert_eq!(drain(&outbox).await.done, 1);
    assert_eq!(
        calls.all(),
        [("ops".to_owned(), "ops.ImportFinished".to_owned(), 1)]
    );
}

async fn retries_follow_the_backoff_then_the_request_is_dead(kind: Kind) {
    let Some(t) = kind.open("retries_follow_the_backoff").await else {
        return;
    };
    let calls = Calls::default();
    let seen = calls.clone();
    let reports = Reports::default();
    // The first failure waits an hour (a second on memory, whose rows no statement
    // changes); the later ones not at all.
    let first_wait = if kind.in_memory() {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3600)
    };
    let backoff = Backoff::from_fn(move |failures| {
        if failures == 1 {
            first_wait
        } else {
            Duration::ZERO
        }
    });
    let failing = Handler::new("flaky", "*", move |request: HandlerRequest| {
        seen.push(&request);
        async { Err(HandlerError::retry("the service is down")) }
    })
    .max_errors(3)
    .backoff(backoff);
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(failing))
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .error_reporter(reports.clone());
    append(&t.store, "acct-1", &["acct.Opened"]).await;
    outbox.process().await.expect("process");

    let first = outbox.execute().await.expect("first");
    assert_eq!((first.claimed, first.retrying), (1, 1));
    assert_eq!(
        outbox.execute().await.expect("too early").claimed,
        0,
        "not due before its backoff"
    );
    let stats = stats_of(&outbox.stats().await.expect("stats"), "flaky");
    assert_eq!((stats.failed_waiting, stats.pending), (1, 0));
    assert!(
        reports.all().is_empty(),
        "a retryable failure is not reported"
    );

    // Bring the retry forward, as if the hour had passed (on memory, wait it out).
    if kind.in_memory() {
        tokio::time::sleep(first_wait + Duration::from_millis(100)).await;
    } else {
        crate::support::execute(&t, "UPDATE handler_requests SET due_at = 0").await;
    }
    let second = outbox.execute().await.expect("second");
    assert_eq!(second.retrying, 1, "failure 2 of 3");
    let third = outbox.execute().await.expect("third");
    assert_eq!(third.dead, 1, "failure 3 of 3: dead");
    assert_eq!(outbox.execute().await.expect("after").claimed, 0);

    let attempts: Vec<u32> = calls.all().into_iter().map(|(_, _, a)| a).collect();
    assert_eq!(attempts, [1, 2, 3]);
    let dead = outbox.dead_requests(None, 10).await.expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].errors, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("the service is down"));
    assert_eq!(dead[0].stream_id, "acct-1");
    assert_eq!(
        reports.all(),
        [(FailureKind::Dead, "the service is down".to_owned(), true)]
    );
}

async fn fatal_errors_and_panics_are_caught_and_reported(kind: Kind) {
    let Some(t) = kind.open("fatal_errors_and_panics").await else {
        return;
    };
    let reports = Reports::default();
    let fatal = Handler::new("fatal", "acct.Opened", |_request: HandlerRequest| async {
        Err(HandlerError::fatal(NoSuchCustomer(7)))
    });
    let panics = Handler::new("panics", "acct.Opened", |_request: HandlerRequest| async {
        panic!("the handler broke");
    })
    .max_errors(2)
    .backoff(Backoff::from_fn(|_| Duration::ZERO));
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(fatal).route(panics))
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .error_reporter(reports.clone());
    append(&t.store, "acct-1", &["acct.Opened"]).await;
    outbox.process().await.expect("process");

    let first = outbox.execute().await.expect("first");
    assert_eq!((first.claimed, first.dead, first.retrying), (2, 1, 1));
    let second = outbox.execute().await.expect("second");
    assert_eq!((second.claimed, second.dead), (1, 1));

    let mut reported = reports.all();
    reported.sort_by_key(|(kind, _, dead)| (format!("{kind:?}"), *dead));
    assert_eq!(reported.len(), 3, "{reported:?}");
    assert_eq!(
        reported[0],
        (
            FailureKind::NonRetryable,
            "no such customer".to_owned(),
            true
        )
    );
    assert_eq!(reported[1].0, FailureKind::Panic);
    assert!(reported[1].1.contains("the handler broke"), "{reported:?}");
    assert!(!reported[1].2, "the first panic is retried");
    // The handler's own error reaches the reporter typed.
    assert_eq!(*reports.2.lock().expect("typed"), [NoSuchCustomer(7)]);
    assert!(reported[2].2, "the second is the last try");
    let backtraces = reports.1.lock().expect("backtraces").clone();
    assert_eq!(backtraces.len(), 2, "each panic with its backtrace");
    assert!(
        backtraces.iter().all(|b| b.contains("outbox")),
        "{backtraces:?}"
    );
    let stats = outbox.stats().await.expect("stats");
    assert_eq!(stats_of(&stats, "fatal").dead, 1);
    assert_eq!(stats_of(&stats, "panics").dead, 1);
}

async fn lower_priorities_run_first(kind: Kind) {
    let Some(t) = kind.open("lower_priorities_run_first").await else {
        return;
    };
    let calls = Calls::default();
    let handlers = HandlerMap::new()
        .route(calls.handler("late", "*").priority(90))
        .route(calls.handler("early", "*").priority(10))
        .route(calls.handler("default", "*"));
    let outbox = t
        .store
        .outbox(handlers)
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .workers(1);
    for n in 0..3 {
        append(&t.store, &format!("acct-{n}"), &["acct.Opened"]).await;
    }
    outbox.process().await.expect("process");
    drain(&outbox).await;
    let order: Vec<String> = calls.all().into_iter().map(|(h, _, _)| h).collect();
    assert_eq!(
        order,
        [
            "early", "early", "early", "default", "default", "default", "late", "late", "late"
        ]
    );
}

async fn ordered_handlers_run_a_stream_in_order(kind: Kind) {
    let Some(t) = kind.open("ordered_handlers_run_a_stream_in_order").await else {
        return;
    };
    // Per stream: the versions handled, and whether one is running.
    let seen: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let running: Arc<Mutex<HashSet<String>>> = Arc::default();
    let overlaps = Arc::new(AtomicU32::new(0));
    let fails = Arc::new(AtomicU32::new(0));
    let handler = {
        let (seen, running, overlaps, fails) = (
            Arc::clone(&seen),
            Arc::clone(&running),
            Arc::clone(&overlaps),
            Arc::clone(&fails),
        );
        Handler::new("ordered", "*", move |request: HandlerRequest| {
            let (seen, running, overlaps, fails) = (
                Arc::clone(&seen),
                Arc::clone(&running),
                Arc::clone(&overlaps),
                Arc::clone(&fails),
            );
            async move {
                let stream = request.event.stream_id.to_string();
                if !running.lock().expect("running").insert(stream.clone()) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                // Every third event of a stream fails once: the next ones must wait.
                let retry = request.event.version.is_multiple_of(3) && request.attempt == 1;
                if !retry {
                    let mut seen = seen.lock().expect("seen");
                    seen.entry(stream.clone())
                        .or_default()
                        .push(request.event.version);
                }
                running.lock().expect("running").remove(&stream);
                if retry {
                    fails.fetch_add(1, Ordering::SeqCst);
                    return Err(HandlerError::retry("once"));
                }
                Ok(())
            }
        })
        .ordered_per_stream()
        .backoff(Backoff::from_fn(|_| Duration::ZERO))
    };
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(handler))
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .workers(4);
    for round in 0..6 {
        for stream in ["a-1", "b-1", "c-1"] {
            append(&t.store, stream, &[&format!("t.E{round}")]).await;
        }
    }
    outbox.process().await.expect("process");
    drain(&outbox).await;
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "one stream ran twice at once"
    );
    assert_eq!(fails.load(Ordering::SeqCst), 6);
    let seen = seen.lock().expect("seen").clone();
    for stream in ["a-1", "b-1", "c-1"] {
        assert_eq!(seen.get(stream), Some(&vec![1, 2, 3, 4, 5, 6]), "{stream}");
    }
}

async fn a_killed_executors_request_runs_again_after_the_lease(kind: Kind) {
    let Some(t) = kind.open("a_killed_executors_request_runs_again").await else {
        return;
    };
    let calls = Calls::default();
    let reached = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let (calls, reached) = (calls.clone(), Arc::clone(&reached));
        Handler::new("slow", "*", move |request: HandlerRequest| {
            calls.push(&request);
            let reached = Arc::clone(&reached);
            async move {
                if request.attempt == 1 {
                    // The first executor "dies" here.
                    reached.notify_one();
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        })
        .timeout(Duration::from_secs(60))
    };
    let handlers = HandlerMap::new().route(handler);
    let first = t
        .store
        .outbox(handlers.clone())
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .lease(Duration::from_secs(1));
    append(&t.store, "acct-1", &["acct.Opened"]).await;
    first.process().await.expect("process");
    let killed = tokio::spawn(async move { first.execute().await });
    reached.notified().await;
    killed.abort();

    let second = t
        .store
        .outbox(handlers)
        .expect("outbox")
        .start_from(StartFrom::Beginning);
    assert_eq!(
        second.execute().await.expect("leased").claimed,
        0,
        "still leased to the first executor"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let executed = second.execute().await.expect("after the lease");
    assert_eq!((executed.claimed, executed.done), (1, 1));
    let attempts: Vec<u32> = calls.all().into_iter().map(|(_, _, a)| a).collect();
    assert_eq!(attempts, [1, 2]);
    assert_eq!(
        stats_of(&second.stats().await.expect("stats"), "slow").done,
        1
    );
}

async fn a_processor_failing_mid_transaction_creates_no_duplicates(kind: Kind) {
    let Some(t) = kind.open("a_processor_failing_mid_transaction").await else {
        return;
    };
    let calls = Calls::default();
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(calls.handler("all", "*")))
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .batch_size(4);
    for n in 0..10 {
        append(&t.store, &format!("acct-{n}"), &["acct.Opened"]).await;
    }
    // The checkpoint write fails after the window's requests were inserted.
    let (fail, heal) = match kind {
        Kind::Postgres => (
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'checkpoint refused'; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON projection_checkpoints \
             FOR EACH ROW EXECUTE FUNCTION refuse();",
            "DROP TRIGGER refuse ON projection_checkpoints",
        ),
        _ => (
            "CREATE TRIGGER refuse_insert BEFORE INSERT ON projection_checkpoints \
             BEGIN SELECT RAISE(ABORT, 'checkpoint refused'); END; \
             CREATE TRIGGER refuse_update BEFORE UPDATE ON projection_checkpoints \
             BEGIN SELECT RAISE(ABORT, 'checkpoint refused'); END;",
            "DROP TRIGGER refuse_insert; DROP TRIGGER refuse_update;",
        ),
    };
    crate::support::execute(&t, fail).await;
    let error = outbox.process().await.expect_err("the checkpoint fails");
    assert!(error.to_string().contains("checkpoint refused"), "{error}");
    let stats = outbox.stats().await.expect("stats");
    assert_eq!(
        stats_of(&stats, "all"),
        HandlerStats::default(),
        "rolled back"
    );

    crate::support::execute(&t, heal).await;
    assert_eq!(outbox.process().await.expect("process"), 10);
    assert_eq!(drain(&outbox).await.done, 10);
    assert_eq!(calls.all().len(), 10, "each event once");
}

async fn both_schedulers_drain_the_same_workload_alike(kind: Kind) {
    let mut finals = Vec::new();
    for cooperative in [true, false] {
        let Some(t) = kind.open("both_schedulers_drain_alike").await else {
            return;
        };
        let calls = Calls::default();
        let refuses = Handler::new("refuses", "acct.Closed", |_request: HandlerRequest| async {
            Err(HandlerError::fatal("closed accounts are not audited"))
        });
        let handlers = HandlerMap::new()
            .route(calls.handler("audit", "*"))
            .route(calls.handler("crm", "acct.*"))
            .route(refuses);
        let outbox = t
            .store
            .outbox(handlers)
            .expect("outbox")
            .start_from(StartFrom::Beginning)
            .workers(3)
            .batch_size(7)
            .poll_interval(Duration::from_millis(50));
        let running = if cooperative {
            outbox.cooperative().spawn()
        } else {
            outbox.concurrent().spawn()
        };
        for n in 0..20u32 {
            let types: &[&str] = if n.is_multiple_of(4) {
                &["acct.Opened", "acct.Closed"]
            } else {
                &["acct.Opened", "order.Placed"]
            };
            append(&t.store, &format!("acct-{n}"), types).await;
        }
        let drained = |stats: &OutboxStats| {
            stats.unprocessed_events == 0
                && stats
                    .handlers
                    .values()
                    .all(|h| h.pending == 0 && h.running == 0 && h.failed_waiting == 0)
                && stats
                    .handlers
                    .values()
                    .map(|h| h.done + h.dead)
                    .sum::<u64>()
                    == 40 + 25 + 5
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let stats = loop {
            let stats = outbox.stats().await.expect("stats");
            if drained(&stats) || tokio::time::Instant::now() > deadline {
                break stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let report = running.stop().await.expect("stops");
        assert!(drained(&stats), "cooperative = {cooperative}: {stats:?}");
        // What the scheduler did: every request created and run once.
        assert_eq!(report.requests_created, 70, "{report:?}");
        assert_eq!(
            (report.executed.done, report.executed.dead),
            (65, 5),
            "{report:?}"
        );
        let mut seen = calls.all();
        seen.sort();
        finals.push((stats.handlers, seen));
    }
    if let [cooperative, concurrent] = finals.as_slice() {
        assert_eq!(cooperative, concurrent);
        let handlers: &BTreeMap<String, HandlerStats> = &cooperative.0;
        assert_eq!(handlers["refuses"].dead, 5);
        assert_eq!(handlers["audit"].done, 40);
        assert_eq!(handlers["crm"].done, 25);
    }
}

async fn dead_requests_can_be_retried_and_done_ones_purged(kind: Kind) {
    let Some(t) = kind.open("dead_requests_can_be_retried").await else {
        return;
    };
    let healthy = Arc::new(AtomicU32::new(0));
    let handler = {
        let healthy = Arc::clone(&healthy);
        Handler::new("mailer", "*", move |_request: HandlerRequest| {
            let up = healthy.load(Ordering::SeqCst) > 0;
            async move {
                if up {
                    Ok(())
                } else {
                    Err(HandlerError::fatal("mail server rejected us"))
                }
            }
        })
    };
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(handler))
        .expect("outbox")
        .start_from(StartFrom::Beginning);
    for n in 0..3 {
        append(&t.store, &format!("acct-{n}"), &["acct.Opened"]).await;
    }
    outbox.process().await.expect("process");
    assert_eq!(drain(&outbox).await.dead, 3);
    let dead = outbox
        .dead_requests(Some("mailer"), 10)
        .await
        .expect("dead");
    assert_eq!(dead.len(), 3);

    healthy.store(1, Ordering::SeqCst);
    assert!(outbox.retry_dead(dead[0].id).await.expect("retry one"));
    assert!(!outbox.retry_dead(dead[0].id).await.expect("not dead now"));
    assert_eq!(drain(&outbox).await.done, 1);
    assert_eq!(outbox.retry_all_dead("mailer").await.expect("retry all"), 2);
    assert_eq!(drain(&outbox).await.done, 2);
    let stats = stats_of(&outbox.stats().await.expect("stats"), "mailer");
    assert_eq!((stats.done, stats.dead), (3, 0));

    assert_eq!(
        outbox
            .purge_done(Duration::from_secs(3600))
            .await
            .expect("none old"),
        0
    );
    assert_eq!(outbox.purge_done(Duration::ZERO).await.expect("purge"), 3);
    assert_eq!(
        stats_of(&outbox.stats().await.expect("stats"), "mailer").done,
        0
    );
}

/// `Store::outbox_admin`, as an operator's tool uses it from another process that has no
/// handlers: it sees the running outbox's requests, revives dead ones (which the outbox's
/// executor then runs) and purges done ones.
async fn the_admin_without_handlers_sees_and_revives_dead_requests(kind: Kind) {
    let Some(t) = kind.open("the_admin_without_handlers").await else {
        return;
    };
    let healthy = Arc::new(AtomicU32::new(0));
    let handler = {
        let healthy = Arc::clone(&healthy);
        Handler::new("mailer", "acct.*", move |_request: HandlerRequest| {
            let up = healthy.load(Ordering::SeqCst) > 0;
            async move {
                if up {
                    Ok(())
                } else {
                    Err(HandlerError::fatal("mail server rejected us"))
                }
            }
        })
    };
    let calls = Calls::default();
    let outbox = t
        .store
        .outbox(
            HandlerMap::new()
                .route(handler)
                .route(calls.handler("audit", "nothing.*")),
        )
        .expect("outbox")
        .start_from(StartFrom::Beginning);
    for n in 0..3 {
        append(&t.store, &format!("acct-{n}"), &["acct.Opened"]).await;
    }
    // Another process; on memory, which no other process can open, the same store.
    let operator = match t.reopen(|builder| builder).await {
        Some(store) => store,
        None => t.store.clone(),
    };
    let admin = operator.outbox_admin();
    let before = admin.stats().await.expect("stats");
    assert_eq!(before.unprocessed_events, 3);
    assert!(before.handlers.is_empty(), "no requests yet: {before:?}");

    outbox.process().await.expect("process");
    assert_eq!(drain(&outbox).await.dead, 3);
    let stats = admin.stats().await.expect("stats");
    assert_eq!(stats.unprocessed_events, 0);
    // Handlers without requests are not known here; the outbox itself lists them.
    assert_eq!(stats.handlers.keys().collect::<Vec<_>>(), ["mailer"]);
    assert_eq!(stats_of(&stats, "mailer").dead, 3);
    assert!(
        outbox
            .stats()
            .await
            .expect("stats")
            .handlers
            .contains_key("audit")
    );
    let dead = admin.dead_requests(Some("mailer"), 10).await.expect("dead");
    assert_eq!(dead.len(), 3);
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("mail server rejected us")
    );
    assert!(
        admin
            .dead_requests(Some("audit"), 10)
            .await
            .expect("dead")
            .is_empty()
    );

    healthy.store(1, Ordering::SeqCst);
    assert!(admin.retry_dead(dead[0].id).await.expect("retry one"));
    assert!(!admin.retry_dead(dead[0].id).await.expect("not dead now"));
    assert!(!admin.retry_dead(-1).await.expect("no such request"));
    assert_eq!(admin.retry_all_dead("mailer").await.expect("retry all"), 2);
    assert_eq!(drain(&outbox).await.done, 3);
    assert_eq!(admin.purge_done(Duration::ZERO).await.expect("purge"), 3);
    assert_eq!(
        stats_of(&admin.stats().await.expect("stats"), "mailer"),
        HandlerStats::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_map_needs_distinct_names() {
    let store = Store::open("sqlite::memory:").await.expect("open");
    let calls = Calls::default();
    let twice = HandlerMap::new()
        .route(calls.handler("same", "*"))
        .route(calls.handler("same", "acct.*"));
    assert!(store.outbox(twice).is_err());
    assert!(store.outbox(HandlerMap::new()).is_err());
}

/// Three executors (three stores, as three processes would have) share 5,000 requests:
/// every request runs exactly once (the handler always succeeds), never twice at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_executors_share_the_work_exactly_once() {
    let Some(t) = Kind::Postgres.open("postgres_three_executors").await else {
        return;
    };
    let runs: Arc<Mutex<HashMap<Uuid, u32>>> = Arc::default();
    let running: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let overlaps = Arc::new(AtomicU32::new(0));
    let handler = {
        let (runs, running, overlaps) = (
            Arc::clone(&runs),
            Arc::clone(&running),
            Arc::clone(&overlaps),
        );
        Handler::new("count", "*", move |request: HandlerRequest| {
            let (runs, running, overlaps) = (
                Arc::clone(&runs),
                Arc::clone(&running),
                Arc::clone(&overlaps),
            );
            async move {
                let id = request.event.id;
                if !running.lock().expect("running").insert(id) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
                *runs.lock().expect("runs").entry(id).or_default() += 1;
                running.lock().expect("running").remove(&id);
                Ok(())
            }
        })
    };
    for batch in 0..50 {
        let events = (0..100)
            .map(|n| NewEvent::new("t.Happened", json!({ "n": n })))
            .collect();
        t.store
            .append(&format!("s-{batch}"), ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
    let handlers = HandlerMap::new().route(handler);
    let processor = t
        .store
        .outbox(handlers.clone())
        .expect("outbox")
        .start_from(StartFrom::Beginning);
    assert_eq!(processor.process().await.expect("process"), 5000);

    let mut executors = Vec::new();
    for _ in 0..3 {
        let store: Store = t.reopen(|b| b).await.expect("another process");
        let outbox = store
            .outbox(handlers.clone())
            .expect("outbox")
            .start_from(StartFrom::Beginning)
            .workers(16);
        executors.push(tokio::spawn(async move { drain(&outbox).await }));
    }
    let mut done = 0;
    let mut each = Vec::new();
    for executor in executors {
        let executed = executor.await.expect("executor");
        done += executed.done;
        each.push(executed.done);
    }
    assert_eq!(done, 5000, "per executor: {each:?}");
    assert!(
        each.iter().filter(|&&n| n > 0).count() >= 2,
        "shared: {each:?}"
    );
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    let runs = runs.lock().expect("runs");
    assert_eq!(runs.len(), 5000);
    assert!(runs.values().all(|&n| n == 1), "exactly once");
}

/// Shutting a scheduler down lets the handler in flight finish, and records it as done;
/// nothing not yet run is marked done.
async fn shutdown_finishes_the_handlers_in_flight(kind: Kind) {
    let Some(t) = kind.open("shutdown_finishes_the_handlers_in_flight").await else {
        return;
    };
    let started = Arc::new(tokio::sync::Notify::new());
    let finished = Arc::new(AtomicU32::new(0));
    let handler = {
        let (started, finished) = (Arc::clone(&started), Arc::clone(&finished));
        Handler::new("slow", "*", move |_request: HandlerRequest| {
            let (started, finished) = (Arc::clone(&started), Arc::clone(&finished));
            async move {
                started.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
    };
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(handler))
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .workers(1);
    for n in 0..3 {
        append(&t.store, &format!("acct-{n}"), &["acct.Opened"]).await;
    }
    let running = outbox.concurrent().spawn();
    started.notified().await;
    running.stop().await.expect("stops");
    let stats = stats_of(&outbox.stats().await.expect("stats"), "slow");
    let finished = u64::from(finished.load(Ordering::SeqCst));
    assert!(finished >= 1, "the handler in flight finished");
    assert_eq!(stats.done, finished, "done means it ran: {stats:?}");
    assert_eq!((stats.running, stats.pending), (0, 3 - finished));
}

/// The concurrent scheduler's executor keeps its workers busy: a slow handler holds one
/// worker while the others go on claiming and running.
async fn a_slow_handler_does_not_hold_back_the_other_workers(kind: Kind) {
    let Some(t) = kind.open("a_slow_handler_does_not_hold_back").await else {
        return;
    };
    let release = Arc::new(tokio::sync::Notify::new());
    let slow = {
        let release = Arc::clone(&release);
        Handler::new("slow", "slow.*", move |_request: HandlerRequest| {
            let release = Arc::clone(&release);
            async move {
                release.notified().await;
                Ok(())
            }
        })
    };
    let calls = Calls::default();
    let outbox = t
        .store
        .outbox(
            HandlerMap::new()
                .route(slow)
                .route(calls.handler("fast", "fast.*")),
        )
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .workers(2)
        .poll_interval(Duration::from_millis(20));
    append(&t.store, "job-1", &["slow.Started"]).await;
    let running = outbox.concurrent().spawn();
    for n in 0..10 {
        append(&t.store, &format!("job-{n}"), &["fast.Done"]).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while calls.all().len() < 10 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        calls.all().len(),
        10,
        "the fast requests ran beside the slow one"
    );
    let stats = outbox.stats().await.expect("stats");
    assert_eq!(stats_of(&stats, "slow").running, 1, "still running");
    release.notify_one();
    running.stop().await.expect("stops");
    let stats = outbox.stats().await.expect("stats");
    assert_eq!(stats_of(&stats, "slow").done, 1);
    assert_eq!(stats_of(&stats, "fast").done, 10);
}

/// A panic in the handler's function itself (before it returns its future) is caught and
/// reported like one inside the future.
async fn a_panic_in_the_handler_function_is_caught(kind: Kind) {
    let Some(t) = kind.open("a_panic_in_the_handler_function").await else {
        return;
    };
    let reports = Reports::default();
    let early = Handler::new("early", "*", |request: HandlerRequest| {
        if request.attempt > 0 {
            panic!("before any future");
        }
        async { Ok(()) }
    })
    .max_errors(1);
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(early))
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .error_reporter(reports.clone());
    append(&t.store, "acct-1", &["acct.Opened"]).await;
    outbox.process().await.expect("process");
    let executed = outbox.execute().await.expect("the executor survives");
    assert_eq!((executed.claimed, executed.dead), (1, 1));
    let reported = reports.all();
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0].0, FailureKind::Panic);
    assert!(reported[0].1.contains("before any future"), "{reported:?}");
}

/// A dead request revived while a later request of its stream runs, for a handler ordered
/// per stream, waits for that run to end (then goes before the requests still waiting).
async fn a_revived_request_never_runs_beside_a_running_one_of_its_stream(kind: Kind) {
    let Some(t) = kind.open("a_revived_request_never_runs_beside").await else {
        return;
    };
    let release = Arc::new(tokio::sync::Notify::new());
    // (version, attempt) in the order the handler saw them.
    let seen: Arc<Mutex<Vec<(u64, u32)>>> = Arc::default();
    let handler = {
        let (release, seen) = (Arc::clone(&release), Arc::clone(&seen));
        Handler::new("ordered", "*", move |request: HandlerRequest| {
            let (release, seen) = (Arc::clone(&release), Arc::clone(&seen));
            async move {
                let version = request.event.version;
                seen.lock().expect("seen").push((version, request.attempt));
                match (version, request.attempt) {
                    (1, 1) => Err(HandlerError::fatal("not yet")),
                    (2, _) => {
                        release.notified().await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        })
        .ordered_per_stream()
    };
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(handler))
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .workers(4)
        .poll_interval(Duration::from_millis(20));
    append(&t.store, "s-1", &["t.A", "t.B", "t.C"]).await;
    let running = outbox.concurrent().spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().expect("seen").len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *seen.lock().expect("seen"),
        [(1, 1), (2, 1)],
        "v1 dead, v2 running"
    );
    let dead = outbox.dead_requests(None, 10).await.expect("dead");
    assert!(outbox.retry_dead(dead[0].id).await.expect("revive"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seen.lock().expect("seen").len(),
        2,
        "the revived request waits while v2 runs"
    );
    release.notify_one();
    while seen.lock().expect("seen").len() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await.expect("stops");
    assert_eq!(
        *seen.lock().expect("seen"),
        [(1, 1), (2, 1), (1, 2), (3, 1)],
        "then the revived one, then the rest"
    );
}

/// With `purge_done_after`, the schedulers delete old done requests by themselves.
async fn the_schedulers_purge_done_requests(kind: Kind) {
    let Some(t) = kind.open("the_schedulers_purge_done_requests").await else {
        return;
    };
    let calls = Calls::default();
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(calls.handler("all", "*")))
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .poll_interval(Duration::from_millis(20))
        .purge_done_after(Duration::from_millis(100));
    for n in 0..5 {
        append(&t.store, &format!("acct-{n}"), &["acct.Opened"]).await;
    }
    let running = outbox.concurrent().spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while calls.all().len() < 5 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls.all().len(), 5);
    let mut stats = stats_of(&outbox.stats().await.expect("stats"), "all");
    while stats.done > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = stats_of(&outbox.stats().await.expect("stats"), "all");
    }
    running.stop().await.expect("stops");
    assert_eq!(stats, HandlerStats::default(), "done requests purged");
}

/// Dropping a scheduler's handle stops it, like `stop` without the wait: events appended
/// afterwards are neither processed nor run.
async fn a_dropped_scheduler_stops(kind: Kind) {
    let Some(t) = kind.open("a_dropped_scheduler_stops").await else {
        return;
    };
    let calls = Calls::default();
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(calls.handler("audit", "*")))
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .poll_interval(Duration::from_millis(20));
    // Round one leaves one event behind; round two runs it and its own, and leaves one.
    for (round, cooperative) in [(0, true), (1, false)] {
        let running = if cooperative {
            outbox
                .cooperative()
                .interval(Duration::from_millis(20))
                .spawn()
        } else {
            outbox.concurrent().spawn()
        };
        append(&t.store, &format!("held-{round}"), &["acct.Opened"]).await;
        let ran = 1 + 2 * round;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while calls.all().len() < ran {
            assert!(tokio::time::Instant::now() < deadline, "runs while held");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(running);
        tokio::time::sleep(Duration::from_millis(200)).await;
        append(&t.store, &format!("dropped-{round}"), &["acct.Opened"]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = outbox.stats().await.expect("stats");
        assert_eq!(stats.unprocessed_events, 1, "cooperative = {cooperative}");
        assert_eq!(calls.all().len(), ran, "cooperative = {cooperative}");
    }
}

/// A raw connection to the test's SQLite file holding the write lock (`BEGIN IMMEDIATE`)
/// until dropped or committed, as another process's writer would.
async fn hold_sqlite_write_lock(t: &crate::support::TestStore) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let crate::support::Location::Sqlite { url, .. } = &t.location else {
        panic!("a SQLite store");
    };
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .expect("take the write lock");
    conn
}

/// A backlog of 4,000 requests for a handler ordered per stream drains on SQLite with none
/// going dead. A claim's cost does not grow with the backlog (once, every blocked request
/// of the backlog was checked with a scan of the handler's requests, inside the write
/// lock: seconds per claim), so a short lease (handlers are stopped at 90% of it) is not
/// spent before the handlers start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_backlog_of_ordered_requests_drains() {
    let Some(t) = Kind::Sqlite
        .open("sqlite_a_backlog_of_ordered_requests_drains")
        .await
    else {
        return;
    };
    let handler = Handler::new("ordered", "*", |_request: HandlerRequest| async { Ok(()) })
        .ordered_per_stream()
        .timeout(Duration::from_secs(1))
        .max_errors(2);
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(handler))
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .workers(16)
        .lease(Duration::from_secs(2));
    for batch in 0..40 {
        let events = (0..100)
            .map(|n| NewEvent::new("t.Happened", json!({ "n": n })))
            .collect();
        t.store
            .append(&format!("s-{}", batch % 8), ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
    assert_eq!(outbox.process().await.expect("process"), 4000);
    let drained = tokio::time::timeout(Duration::from_secs(60), drain(&outbox))
        .await
        .expect("the backlog drains within 60 s");
    assert_eq!((drained.done, drained.dead), (4000, 0), "{drained:?}");
    let stats = stats_of(&outbox.stats().await.expect("stats"), "ordered");
    assert_eq!((stats.done, stats.dead, stats.pending), (4000, 0, 0));
}

/// A handler's timeout counts only its own run, and the lease's clock (handlers are
/// stopped at 90% of it) starts once the claim holds the write lock: a claim that waits
/// 1.5 s for SQLite's write lock, with a 2 s lease, leaves a handler of 600 ms its whole
/// 1 s timeout. A handler running past its timeout still fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_wait_for_the_write_lock_is_not_charged_to_the_handlers() {
    let Some(t) = Kind::Sqlite
        .open("sqlite_the_wait_for_the_write_lock_is_not_charged")
        .await
    else {
        return;
    };
    let sleeper = |name: &str, pattern: &str, millis: u64| {
        Handler::new(name, pattern, move |_request: HandlerRequest| async move {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            Ok(())
        })
        .timeout(Duration::from_secs(1))
    };
    let outbox = t
        .store
        .outbox(
            HandlerMap::new()
                .route(sleeper("fits", "t.Fits", 600))
                .route(sleeper("overruns", "t.Overruns", 1500)),
        )
        .expect("outbox")
        .start_from(StartFrom::Beginning)
        .lease(Duration::from_secs(2));
    append(&t.store, "s-1", &["t.Fits", "t.Overruns"]).await;
    assert_eq!(outbox.process().await.expect("process"), 2);

    let mut lock = hold_sqlite_write_lock(&t).await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sqlx::raw_sql("COMMIT")
            .execute(&mut lock)
            .await
            .expect("release the write lock");
    });
    let executed = outbox.execute().await.expect("execute");
    release.await.expect("released");
    assert_eq!(
        (executed.claimed, executed.done, executed.retrying),
        (2, 1, 1),
        "{executed:?}"
    );
    let stats = outbox.stats().await.expect("stats");
    assert_eq!(stats_of(&stats, "fits").done, 1, "{stats:?}");
    assert_eq!(stats_of(&stats, "overruns").failed_waiting, 1, "{stats:?}");
}

/// `stats` and `dead_requests` only read: they answer while another connection holds
/// SQLite's write lock (once, each took the write lock and waited for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_admin_reads_do_not_take_the_write_lock() {
    let Some(t) = Kind::Sqlite
        .open("sqlite_admin_reads_do_not_take_the_write_lock")
        .await
    else {
        return;
    };
    let fatal = Handler::new("fatal", "*", |_request: HandlerRequest| async {
        Err(HandlerError::fatal("no"))
    });
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(fatal))
        .expect("outbox")
        .start_from(StartFrom::Beginning);
    append(&t.store, "s-1", &["t.A"]).await;
    outbox.process().await.expect("process");
    assert_eq!(outbox.execute().await.expect("execute").dead, 1);

    let lock = hold_sqlite_write_lock(&t).await;
    let within = Duration::from_secs(2);
    let stats = tokio::time::timeout(within, outbox.stats())
        .await
        .expect("stats does not wait for the write lock")
        .expect("stats");
    assert_eq!(stats_of(&stats, "fatal").dead, 1);
    let dead = tokio::time::timeout(within, outbox.dead_requests(None, 10))
        .await
        .expect("dead_requests does not wait for the write lock")
        .expect("dead_requests");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("no"));
    drop(lock);
}

/// Turns of ordered streams pass correctly while the processor creates requests and three
/// executors (three stores, as three processes) run them, all at once: every request runs
/// once, each stream in log order and never twice at once, and no stream is left waiting
/// for a turn nobody gave (on PostgreSQL, the per-stream turn locks).
async fn ordered_turns_pass_while_requests_are_created_and_run_at_once(kind: Kind) {
    let Some(t) = kind
        .open("ordered_turns_pass_while_requests_are_created")
        .await
    else {
        return;
    };
    const STREAMS: u64 = 12;
    const ROUNDS: u64 = 25;
    let seen: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let running: Arc<Mutex<HashSet<String>>> = Arc::default();
    let overlaps = Arc::new(AtomicU32::new(0));
    let handler = {
        let (seen, running, overlaps) = (
            Arc::clone(&seen),
            Arc::clone(&running),
            Arc::clone(&overlaps),
        );
        Handler::new("ordered", "*", move |request: HandlerRequest| {
            let (seen, running, overlaps) = (
                Arc::clone(&seen),
                Arc::clone(&running),
                Arc::clone(&overlaps),
            );
            async move {
                let stream = request.event.stream_id.to_string();
                if !running.lock().expect("running").insert(stream.clone()) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
                seen.lock()
                    .expect("seen")
                    .entry(stream.clone())
                    .or_default()
                    .push(request.event.version);
                running.lock().expect("running").remove(&stream);
                Ok(())
            }
        })
        .ordered_per_stream()
    };
    let handlers = HandlerMap::new().route(handler);
    let total = STREAMS * ROUNDS;
    let writer = {
        let store = t.store.clone();
        tokio::spawn(async move {
            for _ in 0..ROUNDS {
                for stream in 0..STREAMS {
                    append(&store, &format!("s-{stream}"), &["t.Happened"]).await;
                }
            }
        })
    };
    let processor = {
        let outbox = t
            .store
            .outbox(handlers.clone())
            .expect("outbox")
            .start_from(StartFrom::Beginning);
        tokio::spawn(async move {
            let mut created = 0;
            while created < total {
                created += outbox.process().await.expect("process");
                tokio::task::yield_now().await;
            }
        })
    };
    let mut executors = Vec::new();
    for _ in 0..3 {
        // Another process; on memory, the same store.
        let store = match t.reopen(|b| b).await {
            Some(store) => store,
            None => t.store.clone(),
        };
        let outbox = store
            .outbox(handlers.clone())
            .expect("outbox")
            .start_from(StartFrom::Beginning)
            .workers(4);
        let seen = Arc::clone(&seen);
        executors.push(tokio::spawn(async move {
            loop {
                let done: usize = seen.lock().expect("seen").values().map(Vec::len).sum();
                if done as u64 >= total {
                    return;
                }
                if outbox.execute().await.expect("execute").claimed == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    let all = async {
        writer.await.expect("writer");
        processor.await.expect("processor");
        for executor in executors {
            executor.await.expect("executor");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("every request ran within 60 s: no stream waits for a lost turn");
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "one stream ran twice at once"
    );
    let seen = seen.lock().expect("seen").clone();
    let in_order: Vec<u64> = (1..=ROUNDS).collect();
    for stream in 0..STREAMS {
        assert_eq!(
            seen.get(&format!("s-{stream}")),
            Some(&in_order),
            "s-{stream}"
        );
    }
}

/// Migration 0007 gives the requests open before it their turns as claims saw them: per
/// ordered (handler, stream), the running request, else the earliest open one; every
/// request of an unordered handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_turns_migration_marks_the_open_requests() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .expect("migrations")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    sqlx::raw_sql(
        "CREATE TABLE chronicle_migrations (version BIGINT NOT NULL PRIMARY KEY, \
         name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .expect("bookkeeping");
    // The schema as it was before the turns: migrations 1 to 6.
    for (n, file) in files.iter().take(6).enumerate() {
        let sql = std::fs::read_to_string(file).expect("read migration");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("apply");
        sqlx::query("INSERT INTO chronicle_migrations VALUES (?, 'old', '')")
            .bind(n as i64 + 1)
            .execute(&mut conn)
            .await
            .expect("record");
    }
    // (handler, stream, position, ordered, state)
    let rows = [
        ("h", "s1", 1, true, 0),
        ("h", "s1", 2, true, 0),
        ("h", "s1", 3, true, 1),
        ("h", "s2", 4, true, 3),
        ("h", "s2", 5, true, 0),
        ("h", "s2", 6, true, 0),
        ("h", "s3", 7, true, 2),
        ("u", "s1", 8, false, 0),
        ("u", "s1", 9, false, 0),
    ];
    for (handler, stream, position, ordered, state) in rows {
        sqlx::query(
            "INSERT INTO handler_requests (handler, event_id, event_position, stream_id, \
             priority, ordered, state, due_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, 0, ?, ?, 0, 0, 0)",
        )
        .bind(handler)
        .bind(Uuid::now_v7())
        .bind(position)
        .bind(stream)
        .bind(ordered)
        .bind(state)
        .execute(&mut conn)
        .await
        .expect("insert request");
    }
    conn.close().await.expect("close");

    let store = Store::open(&url)
        .await
        .expect("open: applies the turns migration");
    store.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    let ready: Vec<i64> = sqlx::query_scalar(
        "SELECT event_position FROM handler_requests WHERE state < 2 AND ready = 1 \
         ORDER BY event_position",
    )
    .fetch_all(&mut conn)
    .await
    .expect("ready");
    assert_eq!(
        ready,
        [3, 5, 8, 9],
        "s1: the running one; s2: the earliest open one"
    );
}

/// Waits until the end of the log ([`Store::log_end`], where "from now on" starts) has
/// reached `last`: on PostgreSQL, other tests' transactions running in the same database
/// hold it back (a start may then take in events appended just before it, as
/// documented).
async fn settle(store: &Store, last: chronicle::LogPosition) {
    for _ in 0..1000 {
        if store.log_end().await.expect("log end") >= last {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the end of the log did not reach {last}");
}

async fn a_new_outbox_and_new_handlers_start_from_now_by_default(kind: Kind) {
    let Some(t) = kind.open("outbox_starts_from_now").await else {
        return;
    };
    // Last year's orders.
    let last = append(&t.store, "order-1", &["order.Placed", "order.Shipped"]).await;
    settle(&t.store, last).await;
    let calls = Calls::default();
    let outbox = t
        .store
        .outbox(HandlerMap::new().route(calls.handler("email", "order.*")))
        .expect("outbox");
    assert_eq!(
        outbox.process().await.expect("first run"),
        0,
        "a new outbox does not replay history"
    );
    assert_eq!(outbox.stats().await.expect("stats").unprocessed_events, 0);
    append(&t.store, "order-2", &["order.Placed"]).await;
    assert_eq!(outbox.process().await.expect("process"), 1);
    drain(&outbox).await;
    assert_eq!(
        calls.all(),
        [("email".to_owned(), "order.Placed".to_owned(), 1)]
    );

    // Events the processor has not read yet (a backlog), then a new handler is added:
    // it gets nothing before it was added; the old one gets the backlog.
    let last = append(&t.store, "order-3", &["order.Placed"]).await;
    settle(&t.store, last).await;
    let calls = Calls::default();
    let outbox = t
        .store
        .outbox(
            HandlerMap::new()
                .route(calls.handler("email", "order.*"))
                .route(calls.handler("crm", "order.*")),
        )
        .expect("outbox");
    assert_eq!(outbox.process().await.expect("backlog"), 1, "email only");
    append(&t.store, "order-4", &["order.Placed"]).await;
    assert_eq!(outbox.process().await.expect("new event"), 2, "both");
    drain(&outbox).await;
    let mut seen: Vec<(String, String)> = calls
        .all()
        .into_iter()
        .map(|(handler, _, _)| (handler, String::new()))
        .collect();
    seen.sort();
    let expected: Vec<(String, String)> = [("crm", ""), ("email", ""), ("email", "")]
        .iter()
        .map(|(h, e)| ((*h).to_owned(), (*e).to_owned()))
        .collect();
    assert_eq!(seen, expected);

    // The start is kept: a restart (a new Outbox value) does not move it.
    let again = t
        .store
        .outbox(
            HandlerMap::new()
                .route(calls.handler("email", "order.*"))
                .route(calls.handler("crm", "order.*")),
        )
        .expect("outbox");
    assert_eq!(again.process().await.expect("restart"), 0);
}

async fn handlers_start_from_the_beginning_or_after_a_position_when_asked(kind: Kind) {
    let Some(t) = kind.open("outbox_starts_when_asked").await else {
        return;
    };
    append(&t.store, "order-1", &["order.Placed"]).await;
    let second = t
        .store
        .append(
            "order-2",
            ExpectedVersion::Any,
            vec![NewEvent::new("order.Placed", json!({}))],
        )
        .await
        .expect("append");
    let last = append(&t.store, "order-3", &["order.Placed"]).await;
    settle(&t.store, last).await;
    let calls = Calls::default();
    let handlers = HandlerMap::new()
        .route(calls.handler("email", "order.*"))
        .route(
            calls
                .handler("audit", "order.*")
                .start_from(StartFrom::Beginning),
        )
        .route(
            calls
                .handler("crm", "order.*")
                .start_from(StartFrom::After(second.log_position())),
        );
    let outbox = t.store.outbox(handlers).expect("outbox");
    // The processor starts at the earliest start its handlers ask for: the beginning.
    assert_eq!(outbox.process().await.expect("process"), 3 + 1);
    let stats = outbox.stats().await.expect("stats");
    let pending = |handler| stats_of(&stats, handler).pending;
    assert_eq!(
        [pending("email"), pending("audit"), pending("crm")],
        [0, 3, 1]
    );

    // An outbox-wide default for the handlers that set none.
    let everything = t
        .store
        .outbox(HandlerMap::new().route(calls.handler("archive", "*")))
        .expect("outbox")
        .name("archive")
        .start_from(StartFrom::Beginning);
    assert_eq!(everything.process().await.expect("archive"), 3);
}

async fn wait_until_returns_once_every_request_is_done_or_dead(kind: Kind) {
    let Some(t) = kind.open("outbox_wait_until").await else {
        return;
    };
    let calls = Calls::default();
    let seen = calls.clone();
    let failing = Handler::new("flaky", "order.*", move |request: HandlerRequest| {
        seen.push(&request);
        async { Err(HandlerError::retry("the service is down")) }
    })
    .max_errors(3)
    .backoff(Backoff::from_fn(|_| Duration::from_millis(30)));
    let outbox = t
        .store
        .outbox(
            HandlerMap::new()
                .route(calls.handler("email", "order.*"))
                .route(failing),
        )
        .expect("outbox")
        .poll_interval(Duration::from_millis(10));
    // Nothing running: the wait does not return on its own.
    outbox.process().await.expect("first run");
    append(&t.store, "order-1", &["order.Placed"]).await;
    let waited = tokio::time::timeout(Duration::from_millis(300), outbox.wait_for_idle()).await;
    assert!(waited.is_err(), "nothing processed the event yet");

    let running = outbox.concurrent().spawn();
    // The handle waits too (and fails if the scheduler's task ends first).
    tokio::time::timeout(Duration::from_secs(30), running.wait_for_idle())
        .await
        .expect("idle in time")
        .expect("wait");
    let stats = outbox.stats().await.expect("stats");
    assert_eq!(stats_of(&stats, "email").done, 1);
    assert_eq!(stats_of(&stats, "flaky").dead, 1, "dead counts as finished");
    assert_eq!(calls.all().len(), 1 + 3, "one run, three failures");

    // A position: its requests, not later ones'.
    let appended = t
        .store
        .append(
            "order-2",
            ExpectedVersion::Any,
            vec![NewEvent::new("order.Placed", json!({}))],
        )
        .await
        .expect("append");
    // Events no handler subscribes to at the end of the log are passed too.
    append(&t.store, "misc-1", &["misc.Noted"]).await;
    tokio::time::timeout(
        Duration::from_secs(30),
        running.wait_until(appended.log_position()),
    )
    .await
    .expect("in time")
    .expect("wait");
    let stats = outbox.stats().await.expect("stats");
    assert_eq!(stats_of(&stats, "email").done, 2);
    assert_eq!(stats_of(&stats, "flaky").dead, 2);
    tokio::time::timeout(Duration::from_secs(30), outbox.wait_for_idle())
        .await
        .expect("idle in time")
        .expect("wait");
    running.stop().await.expect("stop");
}

async fn an_outbox_that_ran_before_starts_were_recorded_loses_no_event(kind: Kind) {
    let Some(t) = kind.open("outbox_upgrade_starts").await else {
        return;
    };
    let calls = Calls::default();
    let handlers = || HandlerMap::new().route(calls.handler("email", "order.*"));
    append(&t.store, "order-1", &["order.Placed"]).await;
    let before = t
        .store
        .outbox(handlers())
        .expect("outbox")
        .start_from(StartFrom::Beginning);
    assert_eq!(before.process().await.expect("process"), 1);
    // As a database migrated from a version that recorded no starts: a checkpoint, no
    // starts; and a backlog the old processor had not read yet.
    crate::support::execute(&t, "DELETE FROM outbox_handlers").await;
    let last = append(&t.store, "order-2", &["order.Placed"]).await;
    settle(&t.store, last).await;
    let after = t.store.outbox(handlers()).expect("outbox");
    assert_eq!(
        after.process().await.expect("after the upgrade"),
        1,
        "the backlog is not skipped"
    );
}

/// The fixture for users' tests: the requests the processor creates for given events,
/// without a database server and without running a handler.
mod fixture {
    use chronicle::testing::OutboxTest;
    use chronicle::{
        DomainEvent, Error, Handler, HandlerError, HandlerMap, HandlerRequest, NewEvent, StartFrom,
    };
    use serde_json::json;

    #[derive(Debug, DomainEvent)]
    #[event(prefix = "shop.")]
    enum ShopEvent {
        Ordered { sku: String },
        Paid { amount: u64 },
        Shipped,
    }

    fn never_run(_: HandlerRequest) -> std::future::Ready<Result<(), HandlerError>> {
        panic!("the fixture runs no handler")
    }

    fn handlers() -> HandlerMap {
        HandlerMap::new()
            .route(Handler::new("receipt", "shop.Paid", never_run))
            .route(Handler::new("tracking", "shop.Shipped", never_run).priority(5))
            .route(Handler::new("ledger", "shop.*", never_run).start_from(StartFrom::Beginning))
    }

    #[tokio::test]
    async fn lists_which_handler_gets_which_event_in_log_order() {
        let requests = OutboxTest::new(handlers())
            .history("shop-1", [ShopEvent::Paid { amount: 3 }])
            .given(
                "shop-2",
                [
                    ShopEvent::Ordered { sku: "a".into() },
                    ShopEvent::Paid { amount: 9 },
                    ShopEvent::Shipped,
                ],
            )
            .given_events("other-1", [NewEvent::new("other.Noted", json!({}))])
            .requests()
            .await
            .expect("requests");
        let names: Vec<(&str, &str)> = requests.iter().map(|request| request.names()).collect();
        assert_eq!(
            names,
            [
                // History: only the handler that starts at the beginning.
                ("ledger", "shop.Paid"),
                ("ledger", "shop.Ordered"),
                ("receipt", "shop.Paid"),
                ("ledger", "shop.Paid"),
                ("tracking", "shop.Shipped"),
                ("ledger", "shop.Shipped"),
            ]
        );
        assert_eq!(requests[0].event.stream_id.as_str(), "shop-1");
        assert_eq!(requests[2].event.stream_id.as_str(), "shop-2");
        assert_eq!(requests[2].event.json().expect("json")["amount"], json!(9));
    }

    #[tokio::test]
    async fn no_matching_handler_means_no_request() {
        let requests = OutboxTest::new(HandlerMap::new().route(Handler::new(
            "receipt",
            "shop.Paid",
            never_run,
        )))
        .given("shop-1", [ShopEvent::Shipped])
        .requests()
        .await
        .expect("requests");
        assert!(requests.is_empty());
    }

    #[tokio::test]
    async fn the_outbox_refusals_are_returned() {
        let error = OutboxTest::new(HandlerMap::new())
            .given("shop-1", [ShopEvent::Shipped])
            .requests()
            .await
            .expect_err("no handlers");
        assert!(matches!(error, Error::Validation(_)), "{error}");
    }
}
