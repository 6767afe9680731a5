//! Redis as a broker (feature `redis`): a relay sink that appends to Redis Streams
//! ([`RedisSink`]), a [`Bus`](super::Bus) on Streams consumer groups ([`RedisBus`], at
//! least once), and a bus on pub/sub ([`RedisPubSubBus`], **at most once**).
//!
//! **The entry.** Every event is one stream entry (`XADD <key> [MAXLEN ~ n] * …`) whose
//! fields are the [`wire`](super::wire) headers, in their order, then the body:
//!
//! | field | value |
//! | --- | --- |
//! | `ce-specversion`, `ce-id`, `ce-type`, `ce-source`, `ce-time`, `content-type` | always |
//! | `ce-subject`, `chronicle-schemaversion`, `chronicle-metadata` | when set (see [`wire`](super::wire)) |
//! | `data` ([`DATA_FIELD`]) | the event's data, the JSON text as stored |
//!
//! so `redis-cli XRANGE orders - +` shows readable events, and any client reads them. The
//! key is the relay's topic ([`Outgoing::topic`](super::Outgoing), by default the stream
//! category: `order` for `order-42`), after an optional prefix.
//!
//! **Duplicates.** Redis Streams have no deduplication of their own. A relay that crashes
//! re-sends at most the batch it had in hand (its checkpoint moves only after every
//! `XADD` of a batch was answered), so a stream may hold an event twice, under two entry
//! ids and one `ce-id`. [`RedisBus`] drops such copies: a subscription remembers the
//! `ce-id`s it handled recently ([`RedisBusBuilder::dedup_window`], default 10,000 per
//! subscription) and acknowledges a copy without running the handler. Other consumers
//! should deduplicate by `ce-id` too.
//!
//! **Dead letters.** An entry given up (the handler's fatal error, too many deliveries, or
//! an entry that is not a chronicle event) is appended to `<key>:dead`
//! ([`dead_letter_key`]) with the original fields, plus [`DEAD_REASON_FIELD`] (why),
//! [`DEAD_ENTRY_FIELD`] (its entry id) and [`DEAD_GROUP_FIELD`] (the consumer group), and
//! then acknowledged.
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> chronicle::Result<()> {
//! use chronicle::bus::redis::{RedisBus, RedisSink};
//! use chronicle::bus::{Bus, Delivery, Subscribe};
//! use chronicle::Store;
//!
//! let store = Store::open("sqlite://events.db").await?;
//! // The relay appends each category's events to its own stream: `order`, `payment`, …
//! let sink = RedisSink::builder("redis://127.0.0.1:6379").maxlen(1_000_000).build().await?;
//! let relay = store.relay("to-redis").spawn(sink);
//!
//! // A consumer group reading the `order` stream, in another service.
//! let bus = RedisBus::builder("redis://127.0.0.1:6379").streams(["order"]).build().await?;
//! let billing = bus
//!     .subscribe(Subscribe::to("order.*").group("billing"), |delivery: Delivery| async move {
//!         println!("{} (delivery {})", delivery.event_type, delivery.attempt());
//!         Ok(())
//!     })
//!     .await?;
//! # billing.close().await?; relay.stop().await?; bus.close().await?;
//! # Ok(()) }
//! ```

mod entry;
mod pubsub;
mod reader;
mod sink;
mod streams;

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError};

pub use entry::decode_entry;
pub use pubsub::{RedisPubSubBus, RedisPubSubBusBuilder};
pub use sink::{RedisSink, RedisSinkBuilder};
pub use streams::{GroupStart, RedisBus, RedisBusBuilder};

use crate::bus::link::{Link, redact};
use crate::error::{Error, Result, ValidationError};

/// The field holding the event's data (the JSON body) in a stream entry.
pub const DATA_FIELD: &str = "data";
/// The field of a dead letter that says why the entry was given up.
pub const DEAD_REASON_FIELD: &str = "chronicle-dead-reason";
/// The field of a dead letter holding the entry's id in its stream.
pub const DEAD_ENTRY_FIELD: &str = "chronicle-dead-entry";
/// The field of a dead letter naming the consumer group that gave it up.
pub const DEAD_GROUP_FIELD: &str = "chronicle-dead-group";

/// The dead-letter stream of stream `key`: `<key>:dead`.
pub fn dead_letter_key(key: &str) -> String {
    format!("{key}:dead")
}

/// A Redis client for `url`, and the server's address for errors (no credentials).
fn open_client(url: &str) -> Result<(Client, String)> {
    let client = Client::open(url).map_err(|error| {
        Error::from(ValidationError::Config(format!(
            "`{}` is not a Redis URL: {error}",
            redact(url)
        )))
    })?;
    let target = format!("redis {}", client.get_connection_info().addr());
    Ok((client, target))
}

/// A connection (multiplexed, reconnecting) whose requests time out after
/// `response_timeout`; fails when the first connection fails.
async fn connect(
    client: &Client,
    target: &str,
    response_timeout: Duration,
) -> Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_with_config(client.clone(), config)
        .await
        .map_err(|error| broker_error(target, "connecting".to_owned(), error))
}

use crate::bus::registry::stop_requested;

/// Whether running the same request again may succeed.
fn is_transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || !matches!(error.retry_method(), ::redis::RetryMethod::NoRetry)
}

/// Whether `error` says the connection is gone (rather than the server refusing one
/// request).
fn is_disconnect(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
}

fn broker_error(target: &str, operation: String, error: RedisError) -> Error {
    Error::Broker {
        broker: target.to_owned(),
        operation,
        retryable: is_transient(&error),
        source: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_a_configuration_error() {
        let error = open_client("http://nowhere").expect_err("not redis");
        assert!(matches!(error, Error::Validation(_)), "{error:?}");
    }
}
