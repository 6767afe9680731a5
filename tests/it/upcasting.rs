//! Typed decoding of stored events: payloads of older schema versions are upcast on read,
//! and types or versions the code does not know are typed errors.

use chronicle::{Aggregate, DomainEvent, Error, ExpectedVersion, NewEvent, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Version 2 of the account events: deposits gained a currency.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "account.")]
enum AccountEventV2 {
    Opened {
        owner: String,
    },
    #[event(version = 2)]
    Deposited {
        amount: u64,
        currency: String,
    },
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "account", event = AccountEventV2)]
struct Wallet {
    deposits: Vec<(u64, String)>,
}

#[derive(Debug, thiserror::Error)]
#[error("read only")]
struct ReadOnly;

impl Aggregate for Wallet {
    type Command = ();
    type Error = ReadOnly;

    fn apply(&mut self, event: AccountEventV2) {
        if let AccountEventV2::Deposited { amount, currency } = event {
            self.deposits.push((amount, currency));
        }
    }

    fn handle(&self, (): &()) -> Result<Vec<AccountEventV2>, ReadOnly> {
        Err(ReadOnly)
    }
}

/// v1 → v2: deposits were all in euros.
fn add_currency(mut payload: serde_json::Value, from_version: u32) -> serde_json::Value {
    if from_version == 1 {
        payload["currency"] = json!("EUR");
    }
    payload
}

async fn store_with_v1_events(upcast: bool) -> Store {
    let mut builder = Store::builder("memory:");
    if upcast {
        builder = builder.upcast("account.Deposited", add_currency);
    }
    let store = builder.open().await.expect("open");
    let v1 = vec![
        NewEvent::new("account.Opened", json!({ "owner": "ada" })),
        NewEvent::new("account.Deposited", json!({ "amount": 5 })).schema_version(1),
        NewEvent::from_serialize(
            "account.Deposited",
            &json!({ "amount": 7, "currency": "USD" }),
        )
        .expect("json")
        .schema_version(2),
    ];
    store
        .append("account-1", ExpectedVersion::NoStream, v1)
        .await
        .expect("append");
    store
}

#[tokio::test]
async fn v1_payloads_load_as_v2_structs() {
    let store = store_with_v1_events(true).await;
    let wallet = store
        .repository::<Wallet>()
        .load("1")
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(
        wallet.state.deposits,
        [(5, "EUR".to_owned()), (7, "USD".to_owned())]
    );
}

#[tokio::test]
async fn a_missing_upcaster_is_a_schema_version_error() {
    let store = store_with_v1_events(false).await;
    let error = store
        .repository::<Wallet>()
        .load("1")
        .await
        .expect_err("no upcaster");
    assert!(
        matches!(&error, Error::SchemaVersion { stored: 1, current: 2, event_type, .. } if event_type == "account.Deposited"),
        "{error}"
    );
}

#[tokio::test]
async fn future_versions_and_unknown_types_are_typed_errors() {
    let store = Store::builder("memory:")
        .upcast("account.Deposited", add_currency)
        .open()
        .await
        .expect("open");
    let events = vec![
        NewEvent::new(
            "account.Deposited",
            json!({ "amount": 1, "currency": "EUR" }),
        )
        .schema_version(3),
        NewEvent::new("account.Frozen", json!({})),
    ];
    store
        .append("account-2", ExpectedVersion::NoStream, events)
        .await
        .expect("append");
    let recorded: Vec<chronicle::RecordedEvent> = futures::TryStreamExt::try_collect(
        store.query(&chronicle::EventQuery::new().stream("account-2")),
    )
    .await
    .expect("read");

    let future = store
        .decode_event::<AccountEventV2>(&recorded[0])
        .expect_err("newer than the code");
    assert!(matches!(
        future,
        Error::SchemaVersion {
            stored: 3,
            current: 2,
            ..
        }
    ));
    assert!(future.to_string().contains("newer code"), "{future}");

    let unknown = store
        .decode_event::<AccountEventV2>(&recorded[1])
        .expect_err("unknown type");
    assert!(
        matches!(&unknown, Error::UnknownEventType { stream, event_type, .. } if stream == "account-2" && event_type == "account.Frozen"),
        "{unknown}"
    );
    assert_eq!(unknown.kind(), chronicle::ErrorKind::Codec);
}

#[tokio::test]
async fn two_upcasters_for_one_type_are_refused() {
    let error = Store::builder("memory:")
        .upcast("account.Deposited", add_currency)
        .upcast("account.Deposited", add_currency)
        .open()
        .await
        .expect_err("duplicate");
    assert!(error.to_string().contains("two upcasters"), "{error}");
}
