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

// ---------------------------------------------------------------------------------------
// Renames, splits and dropped types, on every backend, with old rows stored through the
// store's API under the old names and versions.

use std::sync::{Arc, Mutex};

use chronicle::{
    EventQuery, Projection, ProjectionContext, ProjectionError, RecordedEvent, UpcastEvent,
    UpcasterProblem, Upcasters, ValidationError,
};
use futures::TryStreamExt;

use crate::support::Kind;

/// The ledger's events today. History: `Deposited` was stored as `ledger.Credited` at
/// versions 1 (`amount`) and 2 (`currency` added), renamed at version 3 (`note` added);
/// `ledger.Transferred` (an outgoing transfer with a fee) is now a withdrawal and a
/// cashback deposit; `ledger.Audited` no longer exists.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "ledger.")]
enum LedgerEvent {
    Opened {
        owner: String,
    },
    #[event(version = 3)]
    Deposited {
        amount: u64,
        currency: String,
        note: String,
    },
    Withdrawn {
        amount: u64,
    },
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "ledger", event = LedgerEvent)]
struct Ledger {
    owner: String,
    entries: Vec<String>,
}

impl Aggregate for Ledger {
    type Command = u64;
    type Error = ReadOnly;

    fn apply(&mut self, event: LedgerEvent) {
        match event {
            LedgerEvent::Opened { owner } => self.owner = owner,
            LedgerEvent::Deposited {
                amount,
                currency,
                note,
            } => self.entries.push(format!("+{amount} {currency} {note}")),
            LedgerEvent::Withdrawn { amount } => self.entries.push(format!("-{amount}")),
        }
    }

    fn handle(&self, amount: &u64) -> Result<Vec<LedgerEvent>, ReadOnly> {
        Ok(vec![LedgerEvent::Withdrawn { amount: *amount }])
    }
}

fn ledger_upcasters() -> Upcasters<LedgerEvent> {
    Upcasters::<LedgerEvent>::new()
        .step("ledger.Deposited", 1, |mut payload| {
            payload["currency"] = json!("EUR");
            payload
        })
        .step("ledger.Deposited", 2, |mut payload| {
            payload["note"] = json!("");
            payload
        })
        .rename("ledger.Credited", "ledger.Deposited")
        .split(
            "ledger.Transferred",
            ["ledger.Withdrawn", "ledger.Credited"],
            |payload, _version| {
                vec![
                    UpcastEvent::new("ledger.Withdrawn", json!({ "amount": payload["amount"] })),
                    // A split part may be of an old name and version: it is upcast too.
                    UpcastEvent::new(
                        "ledger.Credited",
                        json!({ "amount": payload["cashback"], "currency": "USD" }),
                    )
                    .schema_version(2),
                ]
            },
        )
        .drop_type("ledger.Audited")
}

/// The ledger's history as older code wrote it, then one event of today's code.
fn old_ledger_rows() -> Vec<NewEvent> {
    vec![
        NewEvent::new("ledger.Opened", json!({ "owner": "ada" })),
        NewEvent::new("ledger.Credited", json!({ "amount": 5 })).schema_version(1),
        NewEvent::new("ledger.Credited", json!({ "amount": 6, "currency": "USD" }))
            .schema_version(2),
        NewEvent::new("ledger.Transferred", json!({ "amount": 10, "cashback": 1 })),
        NewEvent::new("ledger.Audited", json!({ "by": "bob" })),
        NewEvent::new(
            "ledger.Deposited",
            json!({ "amount": 7, "currency": "CHF", "note": "new" }),
        )
        .schema_version(3),
    ]
}

const LEDGER_ENTRIES: [&str; 5] = ["+5 EUR ", "+6 USD ", "-10", "+1 USD ", "+7 CHF new"];

async fn ledger_store(kind: Kind, test: &str) -> Option<crate::support::TestStore> {
    let t = kind
        .open_with(test, |builder| builder.upcasters(ledger_upcasters()))
        .await?;
    t.store
        .append("ledger-1", ExpectedVersion::NoStream, old_ledger_rows())
        .await
        .expect("append the old rows");
    Some(t)
}

crate::for_each_backend!(
    renamed_split_and_dropped_events_load_into_todays_aggregate,
    raw_reads_keep_the_stored_rows_and_typed_decoding_follows_the_rules,
    a_projection_of_the_new_name_gets_the_rows_of_the_old_names,
);

/// The aggregate folds the old rows as today's events; its version is the stream's (6
/// rows: the split one counts once, the dropped one too), so the next command appends at
/// version 7 without a conflict.
async fn renamed_split_and_dropped_events_load_into_todays_aggregate(kind: Kind) {
    let Some(t) = ledger_store(kind, "renamed_split_and_dropped_load").await else {
        return;
    };
    let ledgers = t.store.repository::<Ledger>();
    let loaded = ledgers.load("1").await.expect("load").expect("exists");
    assert_eq!(loaded.state.owner, "ada");
    assert_eq!(loaded.state.entries, LEDGER_ENTRIES);
    assert_eq!((loaded.version, loaded.replayed), (6, 6));

    let done = ledgers
        .clone()
        .cache_capacity(0)
        .execute("1", 3)
        .await
        .expect("a command after old events");
    assert_eq!(done.version, 7);
    assert_eq!(done.state.entries.last().map(String::as_str), Some("-3"));
    // Loading at a version inside the history counts rows too.
    let at = ledgers
        .load_at("1", 4)
        .await
        .expect("load_at")
        .expect("exists");
    assert_eq!(at.version, 4);
    assert_eq!(at.state.entries, LEDGER_ENTRIES[..4]);
}

/// `read_stream` returns the rows as stored (old names, old versions, one row per stored
/// event); `decode_events` turns each into today's events, all of a split row's sharing
/// its version and id; `decode_event` refuses a row that is not one event.
async fn raw_reads_keep_the_stored_rows_and_typed_decoding_follows_the_rules(kind: Kind) {
    let Some(t) = ledger_store(kind, "raw_reads_keep_the_stored_rows").await else {
        return;
    };
    let store = &t.store;
    let rows: Vec<RecordedEvent> = store
        .read_stream("ledger-1", 1, chronicle::Direction::Forward)
        .try_collect()
        .await
        .expect("read");
    let stored: Vec<(&str, u32, u64)> = rows
        .iter()
        .map(|row| (row.event_type.as_str(), row.schema_version, row.version))
        .collect();
    assert_eq!(
        stored,
        [
            ("ledger.Opened", 1, 1),
            ("ledger.Credited", 1, 2),
            ("ledger.Credited", 2, 3),
            ("ledger.Transferred", 1, 4),
            ("ledger.Audited", 1, 5),
            ("ledger.Deposited", 3, 6),
        ]
    );

    let renamed: LedgerEvent = store.decode_event(&rows[1]).expect("renamed");
    assert_eq!(
        renamed,
        LedgerEvent::Deposited {
            amount: 5,
            currency: "EUR".into(),
            note: String::new()
        }
    );
    let split: Vec<LedgerEvent> = store.decode_events(&rows[3]).expect("split");
    assert_eq!(
        split,
        [
            LedgerEvent::Withdrawn { amount: 10 },
            LedgerEvent::Deposited {
                amount: 1,
                currency: "USD".into(),
                note: String::new()
            }
        ]
    );
    let dropped: Vec<LedgerEvent> = store.decode_events(&rows[4]).expect("dropped");
    assert!(dropped.is_empty());

    let error = store
        .decode_event::<LedgerEvent>(&rows[3])
        .expect_err("a split row is two events");
    assert!(
        matches!(&error, Error::NotOneEvent { count: 2, event_type, .. } if event_type == "ledger.Transferred"),
        "{error}"
    );
    assert!(error.to_string().contains("decode_events"), "{error}");
    let error = store
        .decode_event::<LedgerEvent>(&rows[4])
        .expect_err("a dropped row is no event");
    assert!(
        matches!(error, Error::NotOneEvent { count: 0, .. }),
        "{error}"
    );
}

/// Collects the decoded events of the types it lists.
#[derive(Clone, Default)]
struct Deposits(Arc<Mutex<Vec<(u64, LedgerEvent)>>>);

impl Projection for Deposits {
    fn name(&self) -> &str {
        "deposits"
    }

    fn event_types(&self) -> &[&str] {
        &["ledger.Deposited"]
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let decoded: Vec<LedgerEvent> = ctx.decode_events(event)?;
        let mut seen = self.0.lock().expect("lock");
        seen.extend(decoded.into_iter().map(|decoded| (event.version, decoded)));
        Ok(())
    }
}

/// A projection listing `ledger.Deposited` is also given the rows stored as
/// `ledger.Credited` (renamed into it) and `ledger.Transferred` (split into it).
async fn a_projection_of_the_new_name_gets_the_rows_of_the_old_names(kind: Kind) {
    let Some(t) = ledger_store(kind, "projection_of_the_new_name").await else {
        return;
    };
    let deposits = Deposits::default();
    let handle = t.store.projections().spawn(deposits.clone());
    handle.wait_for_idle().await.expect("caught up");
    handle.stop().await.expect("stop");
    let seen: Vec<u64> = deposits
        .0
        .lock()
        .expect("lock")
        .iter()
        .map(|(version, _)| *version)
        .collect();
    // Row 4 (the transfer) comes whole: its withdrawal too.
    assert_eq!(seen, [2, 3, 4, 4, 6]);

    // The filter still reads only what was asked for and its sources.
    let other: Vec<RecordedEvent> = t
        .store
        .query(&EventQuery::new().event_types(["ledger.Opened"]))
        .try_collect()
        .await
        .expect("query");
    assert_eq!(other.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Checks when the store opens.

async fn open_error(upcasters: Upcasters<LedgerEvent>) -> ValidationError {
    match Store::builder("memory:").upcasters(upcasters).open().await {
        Err(Error::Validation(error)) => error,
        Err(other) => panic!("not a validation error: {other}"),
        Ok(_) => panic!("the store opened"),
    }
}

fn problem_of(error: &ValidationError) -> (&str, &UpcasterProblem) {
    match error {
        ValidationError::Upcaster {
            event_type,
            problem,
            events,
        } => {
            assert!(events.ends_with("LedgerEvent"), "{events}");
            (event_type.as_str(), problem)
        }
        other => panic!("not an upcaster error: {other}"),
    }
}

#[tokio::test]
async fn an_upcaster_for_a_type_the_enum_does_not_know_is_refused_at_open() {
    let error = open_error(Upcasters::new().step("ledger.Depositted", 1, |payload| payload)).await;
    assert_eq!(
        problem_of(&error),
        ("ledger.Depositted", &UpcasterProblem::UnknownType)
    );
    assert!(error.to_string().contains("ledger.Depositted"), "{error}");

    let error = open_error(Upcasters::new().rename("ledger.Credited", "ledger.Deposit")).await;
    assert_eq!(
        problem_of(&error),
        (
            "ledger.Credited",
            &UpcasterProblem::UnknownTarget {
                target: "ledger.Deposit".into()
            }
        )
    );
    let error = open_error(Upcasters::new().split(
        "ledger.Transferred",
        ["ledger.Withdrawn", "ledger.Refunded"],
        |_, _| Vec::new(),
    ))
    .await;
    assert!(
        matches!(problem_of(&error).1, UpcasterProblem::UnknownTarget { target } if target == "ledger.Refunded")
    );
}

/// `ledger.Deposited` is at version 3: a chain from version 1 needs the steps from 1
/// and 2.
#[tokio::test]
async fn a_gap_in_a_chain_is_refused_at_open() {
    let error = open_error(Upcasters::new().step("ledger.Deposited", 1, |payload| payload)).await;
    assert_eq!(
        problem_of(&error),
        ("ledger.Deposited", &UpcasterProblem::Gap { missing: 2 })
    );
    assert!(
        error.to_string().contains("no step from version 2 to 3"),
        "{error}"
    );

    let error = open_error(
        Upcasters::new()
            .step("ledger.Deposited", 1, |payload| payload)
            .step("ledger.Deposited", 2, |payload| payload)
            .step("ledger.Deposited", 3, |payload| payload),
    )
    .await;
    assert_eq!(
        problem_of(&error),
        (
            "ledger.Deposited",
            &UpcasterProblem::StepBeyondCurrent {
                from: 3,
                current: 3
            }
        )
    );
    assert!(
        error.to_string().contains("#[event(version = 4)]"),
        "{error}"
    );

    let error = open_error(
        Upcasters::new()
            .step("ledger.Deposited", 1, |payload| payload)
            .step("ledger.Deposited", 1, |payload| payload),
    )
    .await;
    assert_eq!(problem_of(&error).1, &UpcasterProblem::Duplicate);

    // A chain may start above 1 (a type first written at version 2).
    Store::builder("memory:")
        .upcasters(Upcasters::<LedgerEvent>::new().step("ledger.Deposited", 2, |payload| payload))
        .open()
        .await
        .expect("a chain from version 2 reaches 3");
}

#[tokio::test]
async fn renaming_or_dropping_a_type_the_enum_still_has_is_refused_at_open() {
    let error = open_error(Upcasters::new().drop_type("ledger.Withdrawn")).await;
    assert_eq!(
        problem_of(&error),
        ("ledger.Withdrawn", &UpcasterProblem::StillKnown)
    );
    let error = open_error(
        Upcasters::new()
            .rename("ledger.A", "ledger.B")
            .rename("ledger.B", "ledger.A"),
    )
    .await;
    assert_eq!(problem_of(&error).1, &UpcasterProblem::Cycle);
}

/// An upcaster registered for a type the enum declares at version 1 never runs: the
/// variant most likely lacks its `#[event(version = 2)]`.
#[tokio::test]
async fn an_upcaster_for_a_version_1_type_names_the_forgotten_attribute() {
    let error = open_error(Upcasters::new().upcast("ledger.Withdrawn", |payload, _| payload)).await;
    assert_eq!(
        problem_of(&error),
        ("ledger.Withdrawn", &UpcasterProblem::NothingToUpcast)
    );
    assert!(
        error.to_string().contains("#[event(version = 2)]"),
        "{error}"
    );
}

#[tokio::test]
async fn valid_upcasters_open_on_sqlite_too() {
    let Some(t) = Kind::Sqlite
        .open_with("valid_upcasters_open_on_sqlite", |builder| {
            builder.upcasters(ledger_upcasters())
        })
        .await
    else {
        return;
    };
    assert_eq!(t.store.backend_kind(), "sqlite");
}

// ---------------------------------------------------------------------------------------
// Error messages that say what to do.

#[tokio::test]
async fn a_missing_upcaster_says_which_type_and_versions_and_to_register_one() {
    let store = store_with_v1_events(false).await;
    let error = store
        .repository::<Wallet>()
        .load("1")
        .await
        .expect_err("no upcaster");
    let message = error.to_string();
    assert!(message.contains("`account.Deposited`"), "{message}");
    assert!(message.contains("schema version 1"), "{message}");
    assert!(message.contains("reads version 2"), "{message}");
    assert!(message.contains("from version 1 to 2"), "{message}");
    assert!(
        message.contains("register one")
            && message.contains("Upcasters::step(\"account.Deposited\", 1"),
        "{message}"
    );
}

/// The variant gained `currency` but kept schema version 1: today's code declares the
/// version the old rows have, and serde reports a missing field. The error says to add
/// the attribute.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "account.")]
enum ForgotTheVersion {
    Opened { owner: String },
    Deposited { amount: u64, currency: String },
}

#[tokio::test]
async fn a_forgotten_version_attribute_is_named_in_the_error() {
    let store = store_with_v1_events(false).await;
    let recorded: Vec<RecordedEvent> = store
        .query(&EventQuery::new().stream("account-1"))
        .try_collect()
        .await
        .expect("read");
    // Row 2: `account.Deposited` v1 `{ "amount": 5 }`.
    let error = store
        .decode_event::<ForgotTheVersion>(&recorded[1])
        .expect_err("missing field");
    assert!(
        matches!(&error, Error::UndeclaredSchemaChange { version: 1, event_type, .. } if event_type == "account.Deposited"),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("missing field `currency`"), "{message}");
    assert!(message.contains("#[event(version = 2)]"), "{message}");
    assert_eq!(error.kind(), chronicle::ErrorKind::Codec);

    // Row 3 was written with version 2 (by code that had the attribute): newer than what
    // this enum declares.
    let error = store
        .decode_event::<ForgotTheVersion>(&recorded[2])
        .expect_err("stored version above the declared one");
    assert!(
        matches!(
            error,
            Error::SchemaVersion {
                stored: 2,
                current: 1,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("#[event(version = 2)]"),
        "{error}"
    );
}
