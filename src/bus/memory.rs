//! [`InMemoryBus`]: a [`Bus`] whose handlers run in this process, synchronously (inside
//! `publish`) or from bounded buffers, one per subscription, that `publish` waits on when
//! they are full. Nothing is ever dropped: a handler's failure or panic is caught,
//! retried, counted and reported, and never stops the other handlers or the bus.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use tracing::Instrument;

use super::consumer::{Consumer, Shared};
use super::registry::Registry;
use super::{
    Bus, BusEvent, BusHandler, BusHealth, BusStats, ErrorReporter, Subscribe, Subscription,
    TracingReporter,
};
use crate::error::{Error, Result};

/// The name of the in-memory bus in errors.
const NAME: &str = "in-memory bus";

/// How an [`InMemoryBus`] runs its handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// Inside `publish`, one matching subscription after another (in the order they
    /// subscribed): `publish` returns once every handler ran, retries included. The
    /// default.
    #[default]
    Sync,
    /// From a buffer of `capacity` events per subscription (at least 1), each drained by a
    /// task of its own, so handlers run beside the publisher and beside each other.
    /// `publish` returns once the event sits in every matching buffer, and waits while
    /// one is full: nothing is dropped. Needs a tokio runtime. A handler that publishes
    /// to its own bus may wait for room in its own buffer, which only it drains: publish
    /// from another task, or give the buffer room.
    Buffered {
        /// Events a subscription's buffer holds.
        capacity: usize,
    },
}

/// A bus in this process: handlers subscribe to event-type patterns and run when a
/// matching event is published. Clones share the bus.
///
/// **Order:** each handler sees the events of one publisher (a task publishing one event
/// after another) in publish order, in both dispatch modes. Events of two publishers
/// publishing at once interleave.
///
/// **Failures:** a handler's error or panic is caught, counted ([`BusStats`]) and, per the
/// subscription's [`Subscribe`] options, retried after a backoff, up to its maximum of
/// deliveries; panics, fatal errors and events given up ("dead") are reported to the
/// [`ErrorReporter`] (by default, [`TracingReporter`]). The other handlers, and the bus,
/// go on.
///
/// **Groups:** subscriptions in one [group](Subscribe::group) share its events: each
/// event goes to one of its members that match, in turn.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> chronicle::Result<()> {
/// use chronicle::bus::{Bus, BusEvent, Delivery, Dispatch, InMemoryBus};
///
/// let bus = InMemoryBus::builder().dispatch(Dispatch::Buffered { capacity: 1024 }).build();
/// bus.subscribe("*", |delivery: Delivery| async move {
///     println!("{}", delivery.event_type);
///     Ok(())
/// })
/// .await?
/// .detach();
/// bus.publish(BusEvent::new("user.Registered", serde_json::json!({}))).await?;
/// bus.close().await?; // the buffered events are handled first
/// assert_eq!(bus.stats().delivered, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct InMemoryBus {
    inner: Arc<Inner>,
}

/// Configures an [`InMemoryBus`]: [`InMemoryBus::builder`].
#[derive(Clone)]
#[must_use = "call `build` to get the bus"]
pub struct InMemoryBusBuilder {
    dispatch: Dispatch,
    reporter: Arc<dyn ErrorReporter>,
}

impl InMemoryBusBuilder {
    /// How handlers run (default [`Dispatch::Sync`]).
    pub fn dispatch(mut self, dispatch: Dispatch) -> Self {
        self.dispatch = match dispatch {
            Dispatch::Buffered { capacity } => Dispatch::Buffered {
                capacity: capacity.max(1),
            },
            Dispatch::Sync => Dispatch::Sync,
        };
        self
    }

    /// Where failures go (default [`TracingReporter`]); a subscription can name its own.
    pub fn reporter(mut self, reporter: impl ErrorReporter) -> Self {
        self.reporter = Arc::new(reporter);
        self
    }

    /// The bus.
    pub fn build(self) -> InMemoryBus {
        InMemoryBus {
            inner: Arc::new(Inner {
                dispatch: self.dispatch,
                shared: Shared::named("in-memory", self.reporter),
                subscriptions: Registry::new(),
                turns: Mutex::new(HashMap::new()),
            }),
        }
    }
}

struct Inner {
    dispatch: Dispatch,
    shared: Arc<Shared>,
    /// In the order they subscribed.
    subscriptions: Arc<Registry<Arc<Sub>>>,
    /// Per group, the turn of the next event.
    turns: Mutex<HashMap<String, usize>>,
}

/// A subscription as the bus keeps it.
struct Sub {
    consumer: Arc<Consumer>,
    /// The buffer's sending end ([`Dispatch::Buffered`]); dropping the last one (when the
    /// registry stops the subscription) ends the task once it drained the buffer.
    queue: Option<mpsc::Sender<Arc<BusEvent>>>,
}

impl Default for InMemoryBus {
    fn default() -> Self {
        InMemoryBus::new()
    }
}

impl InMemoryBus {
    /// A bus with [`Dispatch::Sync`] and the [`TracingReporter`].
    pub fn new() -> Self {
        InMemoryBus::builder().build()
    }

    /// Configures a bus.
    pub fn builder() -> InMemoryBusBuilder {
        InMemoryBusBuilder {
            dispatch: Dispatch::Sync,
            reporter: Arc::new(TracingReporter),
        }
    }

    /// How this bus runs its handlers.
    pub fn dispatch(&self) -> Dispatch {
        self.inner.dispatch
    }

    /// The subscriptions open now.
    pub fn subscription_count(&self) -> usize {
        self.inner.subscriptions.read().len()
    }

    fn closed_error() -> Error {
        Error::BusClosed {
            bus: NAME.to_owned(),
        }
    }
}

impl Inner {
    /// The subscriptions `event_type` goes to: every matching one without a group, and
    /// per group one of its matching members, in turn.
    fn targets(&self, event_type: &str) -> Vec<Arc<Sub>> {
        let subscriptions = self.subscriptions.read();
        let mut targets = Vec::new();
        let mut grouped: Vec<(&str, Vec<&Arc<Sub>>)> = Vec::new();
        for sub in subscriptions.iter() {
            if !sub.consumer.options().pattern.matches(event_type) {
                continue;
            }
            match sub.consumer.options().group.as_deref() {
                None => targets.push(Arc::clone(sub)),
                Some(group) => match grouped.iter_mut().find(|(name, _)| *name == group) {
                    Some((_, members)) => members.push(sub),
                    None => grouped.push((group, vec![sub])),
                },
            }
        }
        if !grouped.is_empty() {
            let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
            for (group, members) in grouped {
                let turn = turns.entry(group.to_owned()).or_default();
                targets.push(Arc::clone(members[*turn % members.len()]));
                *turn = turn.wrapping_add(1);
            }
        }
        targets
    }
}

impl Bus for InMemoryBus {
    async fn publish(&self, event: BusEvent) -> Result<()> {
        let inner = &self.inner;
        if inner.subscriptions.is_closed() {
            return Err(InMemoryBus::closed_error());
        }
        let event = Arc::new(event);
        let targets = inner.targets(&event.event_type);
        for sub in targets {
            match &sub.queue {
                None => {
                    sub.consumer.deliver_until_done(Arc::clone(&event)).await;
                }
                Some(queue) => {
                    // An error means the task is gone: the bus is being dropped.
                    let _ = queue.send(Arc::clone(&event)).await;
                }
            }
        }
        inner.shared.published(1);
        Ok(())
    }

    async fn subscribe<H: BusHandler>(
        &self,
        subscribe: impl Into<Subscribe> + Send,
        handler: H,
    ) -> Result<Subscription> {
        let inner = &self.inner;
        if inner.subscriptions.is_closed() {
            return Err(InMemoryBus::closed_error());
        }
        let options: Subscribe = subscribe.into();
        let (pattern, group) = (options.pattern.clone(), options.group.clone());
        let consumer = Arc::new(Consumer::new(
            options,
            Box::new(handler),
            Arc::clone(&inner.shared),
        ));
        let dispatch = inner.dispatch;
        Ok(inner.subscriptions.start(pattern, group, move |_stop| {
            // A buffer's task ends once its senders are gone and it is drained, not at
            // the stop signal: what was buffered is handled first.
            let (queue, task) = match dispatch {
                Dispatch::Sync => (None, None),
                Dispatch::Buffered { capacity } => {
                    let (sender, receiver) = mpsc::channel(capacity);
                    let span = tracing::debug_span!(
                        "chronicle.bus.subscription",
                        subscription = consumer.options().display_name()
                    );
                    let task =
                        tokio::spawn(drain(receiver, Arc::clone(&consumer)).instrument(span));
                    (Some(sender), Some(task))
                }
            };
            (Arc::new(Sub { consumer, queue }), task)
        }))
    }

    async fn close(&self) -> Result<()> {
        self.inner.subscriptions.close().await;
        Ok(())
    }

    fn health(&self) -> BusHealth {
        // What the buffers hold (read from the channels: a shared counter would be
        // written by the publisher and every task, one contended cache line).
        let buffered = self
            .inner
            .subscriptions
            .read()
            .iter()
            .filter_map(|sub| sub.queue.as_ref())
            .map(|queue| (queue.max_capacity() - queue.capacity()) as u64)
            .sum();
        let open = !self.inner.subscriptions.is_closed();
        self.inner.shared.health(open, 0, buffered)
    }

    fn stats(&self) -> BusStats {
        self.inner.shared.stats()
    }
}

/// A buffered subscription's task: delivers its buffer's events in order until the
/// buffer is closed and empty.
async fn drain(mut receiver: mpsc::Receiver<Arc<BusEvent>>, consumer: Arc<Consumer>) {
    while let Some(event) = receiver.recv().await {
        consumer.deliver_until_done(event).await;
    }
}

impl std::fmt::Debug for InMemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryBus")
            .field("dispatch", &self.inner.dispatch)
            .field("subscriptions", &self.subscription_count())
            .field("stats", &self.stats())
            .finish()
    }
}

impl std::fmt::Debug for InMemoryBusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryBusBuilder")
            .field("dispatch", &self.dispatch)
            .finish_non_exhaustive()
    }
}
