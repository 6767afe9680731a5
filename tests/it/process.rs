//! Causation for free, and process managers: an order and stock flow (reserve stock,
//! confirm the order, release on timeout) on every backend; redelivery, timeouts across
//! restarts, completed instances.

use std::time::Duration;

use chronicle::outbox::{Handler, HandlerMap, HandlerRequest};
use chronicle::process::{Effects, Incoming, ProcessError, ProcessManager};
use chronicle::testing::ProcessTest;
use chronicle::{
    Aggregate, Direction, DomainEvent, EventMetadata, ExpectedVersion, NewEvent, RecordedEvent,
    StartFrom, Store,
};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::support::{Kind, TestStore};

// ---------------------------------------------------------------------------------------
// The domain: orders and stock.

#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "order.")]
enum OrderEvent {
    Requested { sku: String, quantity: u32 },
    Confirmed,
    Cancelled,
    Paid,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "order", event = OrderEvent)]
struct Order {
    status: String,
}

#[derive(Debug, Clone, PartialEq)]
enum OrderCommand {
    Request { sku: String, quantity: u32 },
    Confirm,
    Cancel,
    Pay,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the order is {0}")]
struct OrderRefused(String);

impl Aggregate for Order {
    type Command = OrderCommand;
    type Error = OrderRefused;

    fn apply(&mut self, event: OrderEvent) {
        self.status = match event {
            OrderEvent::Requested { .. } => "requested",
            OrderEvent::Confirmed => "confirmed",
            OrderEvent::Cancelled => "cancelled",
            OrderEvent::Paid => "paid",
        }
        .to_owned();
    }

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderRefused> {
        match (self.status.as_str(), command) {
            ("", OrderCommand::Request { sku, quantity }) => Ok(vec![OrderEvent::Requested {
                sku: sku.clone(),
                quantity: *quantity,
            }]),
            ("requested", OrderCommand::Confirm) => Ok(vec![OrderEvent::Confirmed]),
            ("requested" | "confirmed", OrderCommand::Cancel) => Ok(vec![OrderEvent::Cancelled]),
            ("confirmed", OrderCommand::Pay) => Ok(vec![OrderEvent::Paid]),
            (status, _) => Err(OrderRefused(status.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "stock.")]
enum StockEvent {
    Restocked { quantity: u32 },
    Reserved { order: String, quantity: u32 },
    Refused { order: String },
    Released { order: String, quantity: u32 },
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "stock", event = StockEvent)]
struct Stock {
    available: u32,
    reserved: std::collections::BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq)]
enum StockCommand {
    Restock(u32),
    Reserve { order: String, quantity: u32 },
    Release { order: String },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("nothing reserved for this order")]
struct NothingReserved;

impl Aggregate for Stock {
    type Command = StockCommand;
    type Error = NothingReserved;

    fn apply(&mut self, event: StockEvent) {
        match event {
            StockEvent::Restocked { quantity } => self.available += quantity,
            StockEvent::Reserved { order, quantity } => {
                self.available -= quantity;
                self.reserved.insert(order, quantity);
            }
            StockEvent::Refused { .. } => {}
            StockEvent::Released { order, quantity } => {
                self.available += quantity;
                self.reserved.remove(&order);
            }
        }
    }

    fn handle(&self, command: &StockCommand) -> Result<Vec<StockEvent>, NothingReserved> {
        Ok(match command {
            StockCommand::Restock(quantity) => vec![StockEvent::Restocked {
                quantity: *quantity,
            }],
            StockCommand::Reserve { order, quantity } if *quantity <= self.available => {
                vec![StockEvent::Reserved {
                    order: order.clone(),
                    quantity: *quantity,
                }]
            }
            StockCommand::Reserve { order, .. } => vec![StockEvent::Refused {
                order: order.clone(),
            }],
            StockCommand::Release { order } => {
                let quantity = *self.reserved.get(order).ok_or(NothingReserved)?;
                vec![StockEvent::Released {
                    order: order.clone(),
                    quantity,
                }]
            }
        })
    }
}

// ---------------------------------------------------------------------------------------
// The process manager: reserve stock for a requested order, confirm it once reserved,
// cancel it when refused; release and cancel when it is not paid in time.

struct Fulfilment {
    payment_window: Duration,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct FulfilmentState {
    sku: String,
    reserved: bool,
}

#[derive(Debug)]
enum Input {
    Requested { sku: String, quantity: u32 },
    Reserved,
    Refused,
    Paid,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Deadline {
    Payment,
}

impl ProcessManager for Fulfilment {
    const NAME: &'static str = "fulfilment";
    type State = FulfilmentState;
    type Input = Input;
    type Timeout = Deadline;

    fn event_types(&self) -> &[&str] {
        &[
            "order.Requested",
            "order.Paid",
            "stock.Reserved",
            "stock.Refused",
        ]
    }

    fn correlate(&self, event: &Incoming<'_>) -> Result<Option<(String, Input)>, ProcessError> {
        if event.event().stream_id.category() == "order" {
            let order = event.aggregate_id().to_owned();
            return Ok(match event.decode::<OrderEvent>()? {
                OrderEvent::Requested { sku, quantity } => {
                    Some((order, Input::Requested { sku, quantity }))
                }
                OrderEvent::Paid => Some((order, Input::Paid)),
                _ => None,
            });
        }
        Ok(match event.decode::<StockEvent>()? {
            StockEvent::Reserved { order, .. } => Some((order, Input::Reserved)),
            StockEvent::Refused { order } => Some((order, Input::Refused)),
            _ => None,
        })
    }

    fn handle(
        &self,
        state: &mut FulfilmentState,
        input: Input,
        order: &str,
        effects: &mut Effects<Deadline>,
    ) {
        match input {
            Input::Requested { sku, quantity } => {
                effects.issue::<Stock>(
                    &sku,
                    StockCommand::Reserve {
                        order: order.to_owned(),
                        quantity,
                    },
                );
                effects.schedule(self.payment_window, Deadline::Payment);
                state.sku = sku;
            }
            Input::Reserved => {
                state.reserved = true;
                effects.issue::<Order>(order, OrderCommand::Confirm);
            }
            Input::Refused => {
                effects.issue::<Order>(order, OrderCommand::Cancel);
                effects.complete();
            }
            Input::Paid => effects.complete(),
        }
    }

    fn on_timeout(
        &self,
        state: &mut FulfilmentState,
        Deadline::Payment: Deadline,
        order: &str,
        effects: &mut Effects<Deadline>,
    ) {
        if state.reserved {
            effects.issue::<Stock>(
                &state.sku,
                StockCommand::Release {
                    order: order.to_owned(),
                },
            );
        }
        effects.issue::<Order>(order, OrderCommand::Cancel);
        effects.complete();
    }
}

const HOUR: Duration = Duration::from_secs(3_600);

fn fulfilment(window: Duration) -> Fulfilment {
    Fulfilment {
        payment_window: window,
    }
}

async fn events_of(store: &Store, stream: &str) -> Vec<RecordedEvent> {
    match store
        .read_stream(stream, 1, Direction::Forward)
        .try_collect()
        .await
    {
        Ok(events) => events,
        Err(chronicle::Error::StreamNotFound { .. }) => Vec::new(),
        Err(error) => panic!("read {stream}: {error}"),
    }
}

fn types(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

/// Waits (up to 10 s) until the order's stream ends with `event_type`.
async fn until_last(store: &Store, stream: &str, event_type: &str) -> Vec<RecordedEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = events_of(store, stream).await;
        if events.last().is_some_and(|e| e.event_type == event_type) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{stream} never reached {event_type}: {:?}",
            types(&events)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn request(store: &Store, order: &str, sku: &str, quantity: u32, correlation: &str) {
    let metadata = EventMetadata {
        correlation_id: Some(correlation.to_owned()),
        ..EventMetadata::default()
    };
    store
        .repository::<Order>()
        .execute_with(
            order,
            OrderCommand::Request {
                sku: sku.to_owned(),
                quantity,
            },
            metadata,
        )
        .await
        .expect("request");
}

async fn restock(store: &Store, sku: &str, quantity: u32) {
    store
        .repository::<Stock>()
        .execute(sku, StockCommand::Restock(quantity))
        .await
        .expect("restock");
}

async fn open(kind: Kind, test: &str) -> Option<TestStore> {
    kind.open(test).await
}

// ---------------------------------------------------------------------------------------
// Causation for free.

async fn a_caused_command_carries_the_cause(kind: Kind) {
    let Some(t) = open(kind, "a_caused_command_carries_the_cause").await else {
        return;
    };
    let store = &t.store;
    let orders = store.repository::<Order>();
    request(store, "1", "apple", 1, "checkout-7").await;
    let requested = events_of(store, "order-1").await.remove(0);

    // Caused: the cause's id, and its correlation id.
    let stock = store.repository::<Stock>();
    stock
        .execute_caused_by(&requested, "apple", StockCommand::Restock(5))
        .await
        .expect("caused");
    let restocked = events_of(store, "stock-apple").await.remove(0);
    assert_eq!(
        restocked.metadata.causation_id,
        Some(requested.id.to_string())
    );
    assert_eq!(
        restocked.metadata.correlation_id.as_deref(),
        Some("checkout-7")
    );

    // A cause without a correlation id starts one: its own id.
    let uncorrelated = stock
        .execute("pear", StockCommand::Restock(1))
        .await
        .expect("restock");
    let cause = events_of(store, "stock-pear").await.remove(0);
    assert_eq!(cause.id, uncorrelated.events[0].event_id);
    orders
        .execute_caused_by(
            &cause,
            "2",
            OrderCommand::Request {
                sku: "pear".into(),
                quantity: 1,
            },
        )
        .await
        .expect("caused");
    let caused = events_of(store, "order-2").await.remove(0);
    assert_eq!(caused.metadata.causation_id, Some(cause.id.to_string()));
    assert_eq!(caused.metadata.correlation_id, Some(cause.id.to_string()));

    // The caller's explicit values win; the rest is filled in.
    let explicit = EventMetadata {
        causation_id: Some("cmd-1".into()),
        user_id: Some("ada".into()),
        ..EventMetadata::default()
    };
    orders
        .execute_with("1", OrderCommand::Confirm, explicit.caused_by(&requested))
        .await
        .expect("explicit");
    let confirmed = events_of(store, "order-1").await.remove(1);
    assert_eq!(confirmed.metadata.causation_id.as_deref(), Some("cmd-1"));
    assert_eq!(
        confirmed.metadata.correlation_id.as_deref(),
        Some("checkout-7")
    );
    assert_eq!(confirmed.metadata.user_id.as_deref(), Some("ada"));
    let explicit = EventMetadata {
        correlation_id: Some("mine".into()),
        ..EventMetadata::default()
    };
    orders
        .execute_with("1", OrderCommand::Cancel, explicit.caused_by(&requested))
        .await
        .expect("explicit");
    let cancelled = events_of(store, "order-1").await.remove(2);
    assert_eq!(cancelled.metadata.correlation_id.as_deref(), Some("mine"));
    assert_eq!(
        cancelled.metadata.causation_id,
        Some(requested.id.to_string())
    );
}

async fn an_outbox_handler_executes_caused_by_its_event(kind: Kind) {
    let Some(t) = open(kind, "an_outbox_handler_executes_caused_by_its_event").await else {
        return;
    };
    let store = t.store.clone();
    let handler = Handler::new("reserve", "order.Requested", {
        let store = store.clone();
        move |request: HandlerRequest| {
            let stock = store.repository::<Stock>();
            async move {
                let OrderEvent::Requested { sku, quantity } = request.decode::<OrderEvent>()?
                else {
                    return Ok(());
                };
                let order = request.event.stream_id.id().to_owned();
                request
                    .execute(&stock, sku, StockCommand::Reserve { order, quantity })
                    .await?;
                Ok(())
            }
        }
    });
    let outbox = store
        .outbox(HandlerMap::new().route(handler))
        .expect("outbox")
        .start_from(StartFrom::Beginning);
    restock(&store, "apple", 3).await;
    request(&store, "1", "apple", 2, "checkout-1").await;
    outbox.process().await.expect("process");
    let report = outbox.execute().await.expect("execute");
    assert_eq!(report.done, 1, "{report:?}");

    let requested = events_of(&store, "order-1").await.remove(0);
    let reserved = events_of(&store, "stock-apple").await.remove(1);
    assert_eq!(reserved.event_type, "stock.Reserved");
    assert_eq!(
        reserved.metadata.causation_id,
        Some(requested.id.to_string())
    );
    assert_eq!(
        reserved.metadata.correlation_id.as_deref(),
        Some("checkout-1")
    );
}

// ---------------------------------------------------------------------------------------
// Process managers.

async fn instances_follow_their_key_and_commands_carry_the_cause(kind: Kind) {
    let Some(t) = open(
        kind,
        "instances_follow_their_key_and_commands_carry_the_cause",
    )
    .await
    else {
        return;
    };
    let store = &t.store;
    restock(store, "apple", 3).await;
    let running = store
        .process_manager(fulfilment(HOUR))
        .expect("process manager")
        .start_from(StartFrom::Beginning)
        .spawn();
    request(store, "1", "apple", 2, "checkout-1").await;
    request(store, "2", "apple", 2, "checkout-2").await;

    // Order 1 is reserved and confirmed; order 2 is refused and cancelled.
    let one = until_last(store, "order-1", "order.Confirmed").await;
    let two = until_last(store, "order-2", "order.Cancelled").await;
    running.wait_for_idle().await.expect("idle");
    let stock = events_of(store, "stock-apple").await;
    assert_eq!(
        types(&stock),
        ["stock.Restocked", "stock.Reserved", "stock.Refused"]
    );

    // The chain: order.Requested → stock.Reserved → order.Confirmed, one correlation.
    let reserved = &stock[1];
    assert_eq!(reserved.metadata.causation_id, Some(one[0].id.to_string()));
    assert_eq!(
        reserved.metadata.correlation_id.as_deref(),
        Some("checkout-1")
    );
    assert_eq!(one[1].metadata.causation_id, Some(reserved.id.to_string()));
    assert_eq!(
        one[1].metadata.correlation_id.as_deref(),
        Some("checkout-1")
    );
    assert_eq!(two[1].metadata.causation_id, Some(stock[2].id.to_string()));
    assert_eq!(
        two[1].metadata.correlation_id.as_deref(),
        Some("checkout-2")
    );

    // One instance per order, each with its own stream.
    let first = events_of(store, "process.fulfilment-1").await;
    let second = events_of(store, "process.fulfilment-2").await;
    assert_eq!(
        types(&first),
        [
            "process.fulfilment.handled",
            "process.fulfilment.timeout",
            "process.fulfilment.issued",
            "process.fulfilment.handled",
            "process.fulfilment.issued",
        ]
    );
    assert_eq!(
        types(&second).last(),
        Some(&"process.fulfilment.issued"),
        "{:?}",
        types(&second)
    );
    assert!(types(&second).contains(&"process.fulfilment.ended"));

    // The instances' own records (order 2's end cancels its deadline) were appended after
    // the wait above: the runner learns them when it delivers them.
    running.wait_for_idle().await.expect("idle");
    let status = running.stop().await.expect("stop");
    assert_eq!(status.stats.handled, 4, "{status:?}");
    assert_eq!(status.stats.commands, 4, "{status:?}");
    assert_eq!(status.stats.duplicates, 0);
    assert_eq!(status.pending_timeouts, 1, "order 1's payment deadline");
}

async fn a_redelivered_event_issues_its_commands_once(kind: Kind) {
    let Some(t) = open(kind, "a_redelivered_event_issues_its_commands_once").await else {
        return;
    };
    let store = &t.store;
    restock(store, "apple", 10).await;
    let spawn = || {
        store
            .process_manager(fulfilment(HOUR))
            .expect("process manager")
            .start_from(StartFrom::Beginning)
            .spawn()
    };
    let running = spawn();
    for order in ["1", "2", "3"] {
        request(store, order, "apple", 1, order).await;
    }
    for order in ["order-1", "order-2", "order-3"] {
        until_last(store, order, "order.Confirmed").await;
    }
    running.wait_for_idle().await.expect("idle");
    running.stop().await.expect("stop");
    let stock_before = events_of(store, "stock-apple").await.len();

    // A crash after the commands, before the checkpoint: the checkpoint is gone, so every
    // event is delivered again.
    assert!(
        store
            .reset_projection("process:fulfilment")
            .await
            .expect("reset")
    );
    let running = spawn();
    running.wait_for_idle().await.expect("idle");
    let status = running.stop().await.expect("stop");
    assert_eq!(status.stats.handled, 0, "{status:?}");
    assert_eq!(status.stats.duplicates, 6, "{status:?}");
    assert_eq!(status.stats.commands, 0, "{status:?}");
    assert_eq!(events_of(store, "stock-apple").await.len(), stock_before);
    for order in ["order-1", "order-2", "order-3"] {
        assert_eq!(
            types(&events_of(store, order).await),
            ["order.Requested", "order.Confirmed"]
        );
    }
}

async fn commands_cut_short_are_issued_on_redelivery(kind: Kind) {
    let Some(t) = open(kind, "commands_cut_short_are_issued_on_redelivery").await else {
        return;
    };
    let store = &t.store;
    restock(store, "apple", 10).await;
    request(store, "1", "apple", 4, "checkout-1").await;
    let requested = events_of(store, "order-1").await.remove(0);
    // A crash after the claim, before the command: the instance says the event was
    // handled with one command, and nothing says it was issued.
    let claim = NewEvent::new(
        "process.fulfilment.handled",
        json!({
            "event": requested.id,
            "state": { "sku": "apple", "reserved": false },
            "commands": 1,
        }),
    );
    store
        .append(
            "process.fulfilment-1",
            ExpectedVersion::NoStream,
            vec![claim],
        )
        .await
        .expect("claim");

    let running = store
        .process_manager(fulfilment(HOUR))
        .expect("process manager")
        .start_from(StartFrom::Beginning)
        .spawn();
    until_last(store, "order-1", "order.Confirmed").await;
    running.wait_for_idle().await.expect("idle");
    let status = running.stop().await.expect("stop");
    assert_eq!(status.stats.recovered, 1, "{status:?}");
    let stock = events_of(store, "stock-apple").await;
    assert_eq!(
        types(&stock),
        ["stock.Restocked", "stock.Reserved"],
        "reserved once"
    );
    assert_eq!(
        stock[1].metadata.causation_id,
        Some(requested.id.to_string())
    );
    let instance = types(&events_of(store, "process.fulfilment-1").await).join(" ");
    assert_eq!(
        instance,
        "process.fulfilment.handled process.fulfilment.issued \
         process.fulfilment.handled process.fulfilment.issued"
    );
}

async fn a_completed_instance_ignores_later_events(kind: Kind) {
    let Some(t) = open(kind, "a_completed_instance_ignores_later_events").await else {
        return;
    };
    let store = &t.store;
    restock(store, "apple", 10).await;
    let running = store
        .process_manager(fulfilment(Duration::from_secs(1)))
        .expect("process manager")
        .start_from(StartFrom::Beginning)
        .spawn();
    request(store, "1", "apple", 1, "checkout-1").await;
    until_last(store, "order-1", "order.Confirmed").await;
    store
        .repository::<Order>()
        .execute("1", OrderCommand::Pay)
        .await
        .expect("pay");
    running.wait_for_idle().await.expect("idle");
    // A late reservation for the completed order (say, from a retry elsewhere).
    store
        .repository::<Stock>()
        .execute(
            "apple",
            StockCommand::Reserve {
                order: "1".into(),
                quantity: 1,
            },
        )
        .await
        .expect("late reservation");
    running.wait_for_idle().await.expect("idle");
    // And the payment deadline passes: the completed instance ignores it too.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    running.wait_for_idle().await.expect("idle");
    let status = running.stop().await.expect("stop");
    assert_eq!(status.stats.ignored, 1, "{status:?}");
    assert_eq!(status.stats.timeouts, 0, "{status:?}");
    assert_eq!(status.pending_timeouts, 0, "{status:?}");
    assert_eq!(
        types(&events_of(store, "order-1").await),
        ["order.Requested", "order.Confirmed", "order.Paid"]
    );
    assert_eq!(
        types(&events_of(store, "process.fulfilment-1").await).last(),
        Some(&"process.fulfilment.ended")
    );
}

async fn a_timeout_fires_after_a_restart(kind: Kind) {
    let Some(t) = open(kind, "a_timeout_fires_after_a_restart").await else {
        return;
    };
    restock(&t.store, "apple", 10).await;
    let window = Duration::from_secs(2);
    let running = t
        .store
        .process_manager(fulfilment(window))
        .expect("process manager")
        .start_from(StartFrom::Beginning)
        .spawn();
    request(&t.store, "1", "apple", 3, "checkout-1").await;
    until_last(&t.store, "order-1", "order.Confirmed").await;
    running.wait_for_idle().await.expect("idle");
    let status = running.stop().await.expect("stop");
    assert_eq!(status.pending_timeouts, 1, "{status:?}");
    t.store.close().await;

    // Another process, on the same database, after the deadline.
    tokio::time::sleep(window).await;
    let store = t.reopen(|builder| builder).await.expect("a SQL backend");
    let running = store
        .process_manager(fulfilment(window))
        .expect("process manager")
        .spawn();
    let order = until_last(&store, "order-1", "order.Cancelled").await;
    let stock = until_last(&store, "stock-apple", "stock.Released").await;
    let status = running.stop().await.expect("stop");
    assert_eq!(status.stats.timeouts, 1, "{status:?}");
    assert_eq!(status.pending_timeouts, 0, "{status:?}");

    // The timeout's commands follow the timeout record, in the order's correlation.
    let instance = events_of(&store, "process.fulfilment-1").await;
    let timeout = instance
        .iter()
        .find(|e| e.event_type == "process.fulfilment.timeout")
        .expect("the timeout record");
    let released = stock.last().expect("released");
    assert_eq!(released.metadata.causation_id, Some(timeout.id.to_string()));
    assert_eq!(
        released.metadata.correlation_id.as_deref(),
        Some("checkout-1")
    );
    assert_eq!(
        order.last().expect("cancelled").metadata.causation_id,
        Some(timeout.id.to_string())
    );
    let stock = store
        .repository::<Stock>()
        .load("apple")
        .await
        .expect("load")
        .expect("stock");
    assert_eq!(stock.state.available, 10);
    assert!(stock.state.reserved.is_empty());
}

crate::for_each_backend!(
    a_caused_command_carries_the_cause,
    instances_follow_their_key_and_commands_carry_the_cause,
    a_redelivered_event_issues_its_commands_once,
    commands_cut_short_are_issued_on_redelivery,
    a_completed_instance_ignores_later_events,
    an_outbox_handler_executes_caused_by_its_event,
);

mod sql {
    use super::*;

    crate::for_each_sql_backend!(a_timeout_fires_after_a_restart);
}

// ---------------------------------------------------------------------------------------
// The test helper.

#[test]
fn the_test_helper_shows_the_decisions() {
    let outcome = ProcessTest::new(fulfilment(HOUR))
        .key("7")
        .when(Input::Requested {
            sku: "apple".into(),
            quantity: 2,
        });
    outcome.then_issued::<Stock>([(
        "apple",
        StockCommand::Reserve {
            order: "7".into(),
            quantity: 2,
        },
    )]);
    outcome.then_issued::<Order>(Vec::<(String, OrderCommand)>::new());
    assert_eq!(outcome.scheduled(), vec![(HOUR, &Deadline::Payment)]);
    assert!(!outcome.is_complete());

    let requested = || Input::Requested {
        sku: "apple".into(),
        quantity: 2,
    };
    let timed_out = ProcessTest::new(fulfilment(HOUR))
        .key("7")
        .given([requested(), Input::Reserved])
        .when_timeout(Deadline::Payment);
    timed_out.then_issued::<Stock>([("apple", StockCommand::Release { order: "7".into() })]);
    timed_out.then_issued::<Order>([("7", OrderCommand::Cancel)]);
    assert_eq!(
        timed_out
            .commands()
            .iter()
            .map(|c| c.aggregate())
            .collect::<Vec<_>>(),
        ["stock", "order"]
    );
    assert!(timed_out.is_complete());

    let after_payment = ProcessTest::new(fulfilment(HOUR))
        .given([requested(), Input::Reserved, Input::Paid])
        .when(Input::Refused);
    assert!(after_payment.was_ignored());
    after_payment.then_nothing_issued();
}

#[test]
#[should_panic(expected = "the commands to `order` differ")]
fn the_test_helper_names_a_difference() {
    ProcessTest::new(fulfilment(HOUR))
        .given([Input::Requested {
            sku: "apple".into(),
            quantity: 2,
        }])
        .when(Input::Reserved)
        .then_issued::<Order>([("test", OrderCommand::Cancel)]);
}
