//! Kafka for the bus (cargo feature `kafka`, on [rdkafka], librdkafka compiled in): a
//! sink for the relay and a bus whose subscriptions are consumer groups.
//!
//! - [`KafkaSink`] is the relay's [`EventSink`](crate::bus::EventSink): an idempotent
//!   producer (`enable.idempotence=true`, `acks=all`); each event is a message keyed by
//!   its stream (so each stream keeps version order in its partition), with the
//!   [`wire`](crate::bus::wire) headers (`ce-id` = the event id) and the JSON data as its
//!   value. A batch returns once every delivery report came back, and only then does the
//!   relay move its checkpoint. The producer drops its own retries, not a batch a
//!   restarted relay sends again: Kafka stores that one twice.
//! - [`KafkaBus`] implements [`Bus`](crate::bus::Bus): publishing through its sink, and
//!   subscriptions that are consumers in a consumer group. An offset is stored (then
//!   committed) only after the handler acknowledged the message, or after the message
//!   went to the dead-letter topic `<topic>.dead` ([`DEAD_REASON`] says why). A
//!   subscription drops copies of the events it handled lately (by `ce-id`, within
//!   [`KafkaBusBuilder::dedup_window`]).
//! - `health()` reads librdkafka's statistics (brokers up, disconnections, a consumer's
//!   lag) and error callbacks; `stats()` counts as every bus does.
//!
//! Nothing here is Kafka-specific about events: what goes over the wire is
//! [`wire`](crate::bus::wire), as for every broker.
//!
//! ```no_run
//! # async fn demo(store: chronicle::Store) -> chronicle::Result<()> {
//! use chronicle::bus::{Bus, Delivery, KafkaBus, KafkaSink, StartFrom, Subscribe, Topic};
//!
//! // The store's events, every stream category to its topic, keyed by stream.
//! let sink = KafkaSink::builder("localhost:9092").build()?;
//! let relay = store.relay("to-kafka").start_from(StartFrom::Beginning).spawn(sink);
//!
//! // Another service: a consumer group on the `order` topic.
//! let bus = KafkaBus::builder("localhost:9092").subscribe_topics(["order"]).build()?;
//! let shipping = bus
//!     .subscribe(Subscribe::to("order.*").group("shipping"), |delivery: Delivery| async move {
//!         println!("ship {:?}", delivery.subject);
//!         Ok(()) // the offset is committed only now
//!     })
//!     .await?;
//! relay.wait_for_idle().await?;
//! shipping.close().await?;
//! relay.stop().await?;
//! # Ok(()) }
//! ```
//!
//! [rdkafka]: https://docs.rs/rdkafka

mod bus;
mod client;
mod sink;

pub use bus::{DEAD_REASON, DEAD_SUFFIX, KafkaBus, KafkaBusBuilder};
pub use sink::{KafkaSink, KafkaSinkBuilder};
