//! A process manager (saga) on the SQLite default (no server): orders and inventory.
//!
//! - An order is requested; the `fulfilment` process manager reserves its stock and
//!   gives the customer a payment window (a timeout).
//! - Stock reserved: the order is confirmed. No stock: the order is cancelled.
//! - Paid in time: the instance completes. Not paid: the timeout releases the stock and
//!   cancels the order, even across a restart (the timeout is stored, not in memory).
//! - Every command the manager issues carries its cause: `causation_id` is the event it
//!   reacted to, `correlation_id` the checkout's.
//!
//! Run it with `cargo run --example saga`.

use std::collections::BTreeMap;
use std::time::Duration;

use chronicle::process::{Effects, Incoming, ProcessError, ProcessManager};
use chronicle::{Aggregate, Direction, DomainEvent, EventMetadata, StartFrom, Store};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

// ----- Orders -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "order.")]
enum OrderEvent {
    Requested { sku: String, quantity: u32 },
    Confirmed,
    Paid,
    Cancelled,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "order", event = OrderEvent)]
struct Order {
    status: String,
}

#[derive(Debug, Clone, PartialEq)]
enum OrderCommand {
    Request { sku: String, quantity: u32 },
    Confirm,
    Pay,
    Cancel,
}

#[derive(Debug, thiserror::Error)]
#[error("the order is {0:?}")]
struct OrderRefused(String);

impl Aggregate for Order {
    type Command = OrderCommand;
    type Error = OrderRefused;

    fn apply(&mut self, event: OrderEvent) {
        self.status = match event {
            OrderEvent::Requested { .. } => "requested",
            OrderEvent::Confirmed => "confirmed",
            OrderEvent::Paid => "paid",
            OrderEvent::Cancelled => "cancelled",
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
            ("confirmed", OrderCommand::Pay) => Ok(vec![OrderEvent::Paid]),
            ("requested" | "confirmed", OrderCommand::Cancel) => Ok(vec![OrderEvent::Cancelled]),
            (status, _) => Err(OrderRefused(status.to_owned())),
        }
    }
}

// ----- Inventory ----------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "stock.")]
enum StockEvent {
    Restocked { quantity: u32 },
    Reserved { order: String, quantity: u32 },
    OutOfStock { order: String },
    Released { order: String, quantity: u32 },
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "stock", event = StockEvent)]
struct Stock {
    available: u32,
    reserved: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq)]
enum StockCommand {
    Restock(u32),
    Reserve { order: String, quantity: u32 },
    Release { order: String },
}

#[derive(Debug, thiserror::Error)]
#[error("nothing is reserved for order {0}")]
struct NothingReserved(String);

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
            StockEvent::OutOfStock { .. } => {}
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
            StockCommand::Reserve { order, .. } => vec![StockEvent::OutOfStock {
                order: order.clone(),
            }],
            StockCommand::Release { order } => {
                let quantity = *self
                    .reserved
                    .get(order)
                    .ok_or_else(|| NothingReserved(order.clone()))?;
                vec![StockEvent::Released {
                    order: order.clone(),
                    quantity,
                }]
            }
        })
    }
}

// ----- The process manager -------------------------------------------------------------

/// Reserves stock for each requested order, confirms it, and releases the stock when
/// the order is not paid within the payment window.
struct Fulfilment {
    payment_window: Duration,
}

/// One order's instance (stored as JSON in `process.fulfilment-{order}`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Progress {
    sku: String,
    reserved: bool,
}

enum Input {
    Requested { sku: String, quantity: u32 },
    Reserved,
    OutOfStock,
    Paid,
}

#[derive(Debug, Serialize, Deserialize)]
struct PaymentDue;

impl ProcessManager for Fulfilment {
    const NAME: &'static str = "fulfilment";
    type State = Progress;
    type Input = Input;
    type Timeout = PaymentDue;

    fn event_types(&self) -> &[&str] {
        &[
            "order.Requested",
            "order.Paid",
            "stock.Reserved",
            "stock.OutOfStock",
        ]
    }

    /// The instance is the order: its stream's id for order events, the order named in
    /// the payload for stock events.
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
            StockEvent::OutOfStock { order } => Some((order, Input::OutOfStock)),
            _ => None,
        })
    }

    fn handle(
        &self,
        progress: &mut Progress,
        input: Input,
        order: &str,
        effects: &mut Effects<PaymentDue>,
    ) {
        match input {
            Input::Requested { sku, quantity } => {
                let reserve = StockCommand::Reserve {
                    order: order.to_owned(),
                    quantity,
                };
                effects.issue::<Stock>(&sku, reserve);
                effects.schedule(self.payment_window, PaymentDue);
                progress.sku = sku;
            }
            Input::Reserved => {
                progress.reserved = true;
                effects.issue::<Order>(order, OrderCommand::Confirm);
            }
            Input::OutOfStock => {
                effects.issue::<Order>(order, OrderCommand::Cancel);
                effects.complete();
            }
            Input::Paid => effects.complete(),
        }
    }

    fn on_timeout(
        &self,
        progress: &mut Progress,
        PaymentDue: PaymentDue,
        order: &str,
        effects: &mut Effects<PaymentDue>,
    ) {
        if progress.reserved {
            let release = StockCommand::Release {
                order: order.to_owned(),
            };
            effects.issue::<Stock>(&progress.sku, release);
        }
        effects.issue::<Order>(order, OrderCommand::Cancel);
        effects.complete();
    }
}

// ----- The run ------------------------------------------------------------------------

const PAYMENT_WINDOW: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("chronicle-saga.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await?;
    let orders = store.repository::<Order>();
    let stock = store.repository::<Stock>();
    stock.execute("apple", StockCommand::Restock(5)).await?;

    let fulfilment = Fulfilment {
        payment_window: PAYMENT_WINDOW,
    };
    let running = store
        .process_manager(fulfilment)?
        .repository(orders.clone())
        .repository(stock.clone())
        .start_from(StartFrom::Beginning)
        .spawn();

    // Three checkouts: 2 apples (paid), 3 apples (never paid), 4 apples (none left).
    for (order, quantity) in [("1", 2), ("2", 3), ("3", 4)] {
        let checkout = EventMetadata {
            correlation_id: Some(format!("checkout-{order}")),
            ..EventMetadata::default()
        };
        let request = OrderCommand::Request {
            sku: "apple".into(),
            quantity,
        };
        let done = orders.execute_with(order, request, checkout).await?;
        if let Some(position) = done.log_position() {
            running.wait_until(position).await?;
        }
    }
    running.wait_for_idle().await?;
    orders.execute("1", OrderCommand::Pay).await?;
    running.wait_for_idle().await?;
    for order in ["1", "2", "3"] {
        println!("order {order}: {}", status(&orders, order).await?);
    }
    let status_now = running.stop().await?;
    println!(
        "stopped: {} handled, {} commands, {} timeout pending",
        status_now.stats.handled, status_now.stats.commands, status_now.pending_timeouts
    );

    // A restart: another store on the same file, after order 2's payment window closed.
    store.close().await;
    tokio::time::sleep(PAYMENT_WINDOW).await;
    let store = Store::open(&url).await?;
    let orders = store.repository::<Order>();
    let running = store
        .process_manager(Fulfilment {
            payment_window: PAYMENT_WINDOW,
        })?
        .spawn();
    let patience = tokio::time::Instant::now() + Duration::from_secs(30);
    while status(&orders, "2").await? != "cancelled" {
        if tokio::time::Instant::now() > patience {
            return Err("order 2's payment timeout never fired".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.wait_for_idle().await?;
    let status_now = running.stop().await?;
    println!(
        "after the restart: order 2 {}, {} timeout fired",
        status(&orders, "2").await?,
        status_now.stats.timeouts
    );
    let apples = store
        .repository::<Stock>()
        .load("apple")
        .await?
        .ok_or("no stock")?;
    println!("apples available: {}", apples.state.available);
    assert_eq!(apples.state.available, 3, "order 2's apples came back");

    // Why order 2 was cancelled: its events' causes.
    let events: Vec<_> = store
        .read_stream("order-2", 1, Direction::Forward)
        .try_collect()
        .await?;
    for event in &events {
        println!(
            "  {:<16} correlation {:<11} caused by {}",
            event.event_type,
            event.metadata.correlation_id.as_deref().unwrap_or("-"),
            event.metadata.causation_id.as_deref().unwrap_or("-"),
        );
    }
    Ok(())
}

async fn status(orders: &chronicle::Repository<Order>, id: &str) -> chronicle::Result<String> {
    Ok(orders
        .load(id)
        .await?
        .map_or_else(|| "missing".to_owned(), |loaded| loaded.state.status))
}
