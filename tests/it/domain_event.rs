//! `#[derive(DomainEvent)]` and `#[derive(Aggregate)]` as a user sees them: event type
//! names and versions, the JSON each kind of variant is stored as, serde attributes on
//! variants and fields, decoding errors, and the constants of `AggregateType`.

use chronicle::{
    Aggregate, AggregateType, DecodeError, Direction, DomainEvent, EventType, ExpectedVersion,
    Store,
};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A value stored as a JSON string (`5` ↔ `"5"`), to check `#[serde(with = ...)]`.
mod as_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Owner {
    name: String,
    age: u8,
}

/// Every kind of variant. The enum itself does not implement serde's traits: only the
/// generated mirrors of its variants do.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "account.")]
enum AccountEvent {
    Opened {
        owner: String,
    },
    #[event(rename = "account.money_deposited", version = 3)]
    Deposited {
        #[serde(rename = "amt")]
        amount: u64,
        #[serde(default)]
        memo: String,
    },
    OwnerChanged(Owner),
    Moved(u32, String),
    Limited(#[serde(with = "as_string")] u64),
    #[serde(rename_all = "camelCase")]
    LimitSet {
        daily_limit: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(with = "as_string")]
        weekly_limit: u64,
    },
    #[event(version = 2)]
    Frozen {},
    Closed,
}

fn round_trip(event: &AccountEvent) -> Value {
    let payload = event.encode().expect("encodes");
    let back = AccountEvent::decode(event.event_type(), &payload).expect("decodes");
    assert_eq!(&back, event);
    serde_json::from_slice(&payload).expect("the payload is JSON")
}

#[test]
fn struct_variants_store_their_fields_as_an_object() {
    let opened = AccountEvent::Opened {
        owner: "ada".into(),
    };
    assert_eq!(opened.event_type(), "account.Opened");
    assert_eq!(opened.schema_version(), 1);
    assert_eq!(opened.encode().unwrap(), br#"{"owner":"ada"}"#);
    assert_eq!(round_trip(&opened), json!({ "owner": "ada" }));
}

#[test]
fn a_rename_is_the_full_name_and_the_version_is_kept() {
    let deposited = AccountEvent::Deposited {
        amount: 5,
        memo: "rent".into(),
    };
    assert_eq!(deposited.event_type(), "account.money_deposited");
    assert_eq!(deposited.schema_version(), 3);
    assert_eq!(
        AccountEvent::current_version("account.money_deposited"),
        Some(3)
    );
    assert_eq!(AccountEvent::current_version("account.Deposited"), None);
}

#[test]
fn field_attributes_are_honoured() {
    let deposited = AccountEvent::Deposited {
        amount: 5,
        memo: "rent".into(),
    };
    assert_eq!(round_trip(&deposited), json!({ "amt": 5, "memo": "rent" }));

    // `#[serde(default)]`: a missing field takes its default.
    let decoded = AccountEvent::decode("account.money_deposited", br#"{"amt":7}"#).unwrap();
    assert_eq!(
        decoded,
        AccountEvent::Deposited {
            amount: 7,
            memo: String::new(),
        }
    );

    // `rename_all` on the variant, `skip_serializing_if` and `with` on fields.
    let limit = AccountEvent::LimitSet {
        daily_limit: 10,
        note: None,
        weekly_limit: 50,
    };
    assert_eq!(
        round_trip(&limit),
        json!({ "dailyLimit": 10, "weeklyLimit": "50" })
    );
    let noted = AccountEvent::LimitSet {
        daily_limit: 10,
        note: Some("raised".into()),
        weekly_limit: 50,
    };
    assert_eq!(
        round_trip(&noted),
        json!({ "dailyLimit": 10, "note": "raised", "weeklyLimit": "50" })
    );
}

#[test]
fn a_newtype_variant_stores_the_inner_value() {
    let changed = AccountEvent::OwnerChanged(Owner {
        name: "ada".into(),
        age: 36,
    });
    assert_eq!(round_trip(&changed), json!({ "name": "ada", "age": 36 }));
    // A field attribute on the newtype's field applies to the value itself.
    assert_eq!(round_trip(&AccountEvent::Limited(5)), json!("5"));
}

#[test]
fn a_tuple_variant_stores_an_array() {
    let moved = AccountEvent::Moved(3, "north".into());
    assert_eq!(moved.event_type(), "account.Moved");
    assert_eq!(round_trip(&moved), json!([3, "north"]));
}

#[test]
fn variants_without_fields_store_an_empty_object_and_ignore_the_payload() {
    assert_eq!(AccountEvent::Closed.encode().unwrap(), b"{}");
    assert_eq!(round_trip(&AccountEvent::Closed), json!({}));
    assert_eq!(round_trip(&AccountEvent::Frozen {}), json!({}));
    assert_eq!(AccountEvent::Frozen {}.schema_version(), 2);
    assert_eq!(
        AccountEvent::decode("account.Closed", b"not even json").unwrap(),
        AccountEvent::Closed
    );
}

#[test]
fn event_types_are_listed_in_declaration_order() {
    let expected = [
        ("account.Opened", 1),
        ("account.money_deposited", 3),
        ("account.OwnerChanged", 1),
        ("account.Moved", 1),
        ("account.Limited", 1),
        ("account.LimitSet", 1),
        ("account.Frozen", 2),
        ("account.Closed", 1),
    ]
    .map(|(name, version)| EventType { name, version });
    assert_eq!(AccountEvent::EVENT_TYPES, expected);
}

#[test]
fn an_unknown_event_type_is_refused() {
    let error = AccountEvent::decode("account.Vanished", b"{}").unwrap_err();
    assert!(matches!(error, DecodeError::UnknownType), "{error:?}");
    // The variant's own name is not a name once the variant is renamed.
    let error = AccountEvent::decode("account.Deposited", br#"{"amt":1}"#).unwrap_err();
    assert!(matches!(error, DecodeError::UnknownType), "{error:?}");
}

#[test]
fn a_payload_that_does_not_fit_is_a_json_error() {
    for (event_type, payload) in [
        ("account.Opened", &b"{\"owner\":5}"[..]),
        ("account.Opened", b"{}"),
        ("account.money_deposited", b"not json"),
        ("account.Moved", b"[1]"),
        ("account.OwnerChanged", b"[]"),
        ("account.Limited", b"5"),
    ] {
        let error = AccountEvent::decode(event_type, payload).unwrap_err();
        assert!(
            matches!(error, DecodeError::Json(_)),
            "{event_type}: {error:?}"
        );
    }
}

/// An enum that derives serde's traits as well: both derives read `#[serde]`, and a field
/// may mention `Self`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum TreeEvent {
    Leaf(u32),
    Grown {
        #[serde(default)]
        children: Vec<Self>,
    },
}

#[test]
fn an_enum_may_also_derive_serde_and_name_itself() {
    let grown = TreeEvent::Grown {
        children: vec![TreeEvent::Leaf(1)],
    };
    assert_eq!(grown.event_type(), "Grown");
    let payload = grown.encode().unwrap();
    assert_eq!(payload, br#"{"children":[{"Leaf":1}]}"#);
    assert_eq!(TreeEvent::decode("Grown", &payload).unwrap(), grown);
}

/// Raw identifiers, a field serde skips, and an enum without variants.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum EdgeEvent {
    r#Move {
        r#type: String,
    },
    Cached {
        kept: u32,
        #[serde(skip)]
        cache: Option<u32>,
    },
}

#[derive(Debug, DomainEvent)]
enum NoEvent {}

#[test]
fn edge_cases_compile_and_round_trip() {
    let moved = EdgeEvent::Move {
        r#type: "walk".into(),
    };
    assert_eq!(moved.event_type(), "Move");
    assert_eq!(moved.encode().unwrap(), br#"{"type":"walk"}"#);
    assert_eq!(
        EdgeEvent::decode("Move", br#"{"type":"walk"}"#).unwrap(),
        moved
    );

    let cached = EdgeEvent::Cached {
        kept: 1,
        cache: Some(9),
    };
    assert_eq!(cached.encode().unwrap(), br#"{"kept":1}"#);
    assert_eq!(
        EdgeEvent::decode("Cached", br#"{"kept":1}"#).unwrap(),
        EdgeEvent::Cached {
            kept: 1,
            cache: None
        }
    );

    assert!(NoEvent::EVENT_TYPES.is_empty());
    assert!(matches!(
        NoEvent::decode("Anything", b"{}"),
        Err(DecodeError::UnknownType)
    ));
}

/// A struct that is one event type; it is its own payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(rename = "user.registered", version = 2)]
struct UserRegistered {
    email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
struct Pinged {
    at: u64,
}

#[test]
fn a_struct_is_a_single_event_type() {
    let registered = UserRegistered {
        email: "ada@example.com".into(),
    };
    assert_eq!(
        UserRegistered::EVENT_TYPES,
        [EventType {
            name: "user.registered",
            version: 2
        }]
    );
    assert_eq!(registered.event_type(), "user.registered");
    assert_eq!(registered.schema_version(), 2);
    let payload = registered.encode().unwrap();
    assert_eq!(payload, br#"{"email":"ada@example.com"}"#);
    assert_eq!(
        UserRegistered::decode("user.registered", &payload).unwrap(),
        registered
    );
    assert!(matches!(
        UserRegistered::decode("UserRegistered", &payload),
        Err(DecodeError::UnknownType)
    ));
    assert!(matches!(
        UserRegistered::decode("user.registered", b"{}"),
        Err(DecodeError::Json(_))
    ));

    // Without `rename`, the struct's name.
    assert_eq!(Pinged { at: 1 }.event_type(), "Pinged");
    assert_eq!(Pinged { at: 1 }.schema_version(), 1);
}

#[tokio::test]
async fn to_new_event_carries_type_version_and_payload() {
    let deposited = AccountEvent::Deposited {
        amount: 5,
        memo: "rent".into(),
    };
    let new_event = deposited.to_new_event().unwrap();
    assert_eq!(new_event.event_type(), "account.money_deposited");
    assert_eq!(new_event.payload_json(), br#"{"amt":5,"memo":"rent"}"#);

    // The schema version has no getter on `NewEvent`; read it back from a store.
    let store = Store::open("memory:").await.unwrap();
    store
        .append(
            "account-1",
            ExpectedVersion::NoStream,
            vec![new_event, AccountEvent::Closed.to_new_event().unwrap()],
        )
        .await
        .unwrap();
    let recorded: Vec<_> = store
        .read_stream("account-1", 0, Direction::Forward)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].event_type, "account.money_deposited");
    assert_eq!(recorded[0].schema_version, 3);
    assert_eq!(
        recorded[0].data::<Value>().unwrap(),
        json!({ "amt": 5, "memo": "rent" })
    );
    assert_eq!(recorded[1].event_type, "account.Closed");
    assert_eq!(recorded[1].schema_version, 1);
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(event = AccountEvent)]
struct BankAccount {
    balance: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(
    name = "account",
    event = AccountEvent,
    snapshot_every = 100,
    snapshot_version = 4
)]
struct Account {
    balance: u64,
}

/// Keys may also be spread over several attributes.
#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(event = self::UserRegistered)]
#[aggregate(snapshot_every = 1)]
struct HTTPUser {
    email: String,
}

/// The names of `A`'s event types, reached through the trait as generic code would.
fn event_names<A: AggregateType>() -> Vec<&'static str> {
    <A::Event as DomainEvent>::EVENT_TYPES
        .iter()
        .map(|event_type| event_type.name)
        .collect()
}

#[test]
fn aggregate_constants_follow_the_attribute() {
    assert_eq!(BankAccount::NAME, "bank_account");
    assert_eq!(BankAccount::SNAPSHOT_EVERY, None);
    assert_eq!(BankAccount::SNAPSHOT_VERSION, 1);

    assert_eq!(Account::NAME, "account");
    assert_eq!(Account::SNAPSHOT_EVERY, Some(100));
    assert_eq!(Account::SNAPSHOT_VERSION, 4);
    assert_eq!(event_names::<Account>()[0], "account.Opened");

    assert_eq!(HTTPUser::NAME, "http_user");
    assert_eq!(HTTPUser::SNAPSHOT_EVERY, Some(1));
    assert_eq!(event_names::<HTTPUser>(), ["user.registered"]);
}

/// The derive covers `AggregateType`; the domain logic stays the user's.
impl Aggregate for Account {
    type Command = u64;
    type Error = std::convert::Infallible;

    fn apply(&mut self, event: AccountEvent) {
        if let AccountEvent::Deposited { amount, .. } = event {
            self.balance += amount;
        }
    }

    fn handle(&self, amount: &u64) -> Result<Vec<AccountEvent>, Self::Error> {
        Ok(vec![AccountEvent::Deposited {
            amount: *amount,
            memo: String::new(),
        }])
    }
}

#[test]
fn a_derived_aggregate_applies_its_events() {
    let mut account = Account::default();
    for event in account.handle(&5).unwrap() {
        account.apply(event);
    }
    assert_eq!(account.balance, 5);
}
