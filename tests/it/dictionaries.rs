//! Trained compression dictionaries: payloads name the dictionary they were compressed
//! with and read back after newer ones are trained, in stores that encrypt and stores
//! that do not; a missing dictionary and a tampered dictionary row are typed errors
//! naming it; any JSON round-trips with a dictionary.

use chronicle::{
    CodecError, Compression, Error, ExpectedVersion, KeyRing, LogPosition, NewEvent, Store,
    StoreBuilder, ValidationError,
};
use futures::TryStreamExt;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::{Kind, Location, TestStore};

mod every_backend {
    use super::*;
    crate::for_each_backend!(
        payloads_read_back_after_a_newer_dictionary,
        encrypted_payloads_read_back_after_a_newer_dictionary,
        training_refuses_what_it_cannot_do,
    );
}
crate::for_each_sql_backend!(
    a_missing_dictionary_is_a_typed_error_naming_it,
    a_tampered_dictionary_row_is_detected,
    a_tampered_dictionary_row_is_detected_when_encrypting,
    a_key_rotation_reseals_the_dictionaries,
);

const KEY: [u8; 32] = [9; 32];

fn compressing(builder: StoreBuilder) -> StoreBuilder {
    builder.compression(Compression::zstd())
}

fn encrypting(builder: StoreBuilder) -> StoreBuilder {
    compressing(builder).encryption(KeyRing::new("k1", KEY).expect("ring"))
}

/// A bank event of about 180 bytes of JSON, varied the way real ones are.
fn bank_event(n: u64) -> Value {
    let currency = ["EUR", "USD", "GBP"][(n % 3) as usize];
    let channel = ["mobile", "web", "branch", "api"][(n % 4) as usize];
    json!({
        "account": format!("ACC-{:08}", n % 997),
        "amount": { "value": 100 + (n * 37) % 9000, "currency": currency },
        "reference": format!("transfer {:016x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        "channel": channel,
        "booked_at": format!("2026-12-05T{:02}:{:02}:{:02}.{:03}Z", n % 24, n % 60, (n * 7) % 60, n % 1000),
        "balance_after": (n * 7919) % 100_000,
    })
}

/// Appends events `from..to`, one per append, over ten accounts.
async fn write(store: &Store, from: u64, to: u64) {
    for n in from..to {
        store
            .append(
                format!("account-{}", n % 10),
                ExpectedVersion::Any,
                vec![NewEvent::new("account.deposited", bank_event(n))],
            )
            .await
            .expect("append");
    }
}

/// Every event's payload, in log order.
async fn read(store: &Store) -> Result<Vec<Value>, Error> {
    let events: Vec<_> = store.read_all(LogPosition::START).try_collect().await?;
    Ok(events
        .iter()
        .map(|event| event.json().expect("JSON"))
        .collect())
}

/// Every stored payload as the database holds it, in log order.
async fn raw_payloads(t: &TestStore) -> Vec<Vec<u8>> {
    let sql = "SELECT payload FROM events ORDER BY position";
    match &t.location {
        Location::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
            sqlx::query_scalar(sql)
                .fetch_all(&mut conn)
                .await
                .expect("payloads")
        }
        Location::Postgres { .. } => sqlx::query_scalar(sql)
            .fetch_all(&mut crate::support::pg_raw(t).await)
            .await
            .expect("payloads"),
        Location::Memory => unreachable!("SQL backends only"),
    }
}

/// The dictionary a stored payload's header names, read as the format says (magic,
/// version, flags with bit 3, then the id; ids below 128 take one byte).
fn named_dictionary(stored: &[u8]) -> Option<u8> {
    match stored {
        [0xC7, 1, flags, id, ..] if flags & 0b1000 != 0 => Some(*id),
        _ => None,
    }
}

async fn payloads_read_back_after_a_newer_dictionary(kind: Kind) {
    read_back_after_a_newer_dictionary(kind, compressing, false).await;
}

async fn encrypted_payloads_read_back_after_a_newer_dictionary(kind: Kind) {
    read_back_after_a_newer_dictionary(kind, encrypting, true).await;
}

/// 60 events without a dictionary, 60 with dictionary 1, 60 with dictionary 2: all read
/// back, here and in a new store on the same database (which loads the dictionaries).
async fn read_back_after_a_newer_dictionary(
    kind: Kind,
    configure: fn(StoreBuilder) -> StoreBuilder,
    encrypted: bool,
) {
    let Some(t) = kind
        .open_with("read_back_after_a_newer_dictionary", configure)
        .await
    else {
        return;
    };
    let store = &t.store;
    write(store, 0, 60).await;
    let first = store.train_compression_dictionary().await.expect("trains");
    assert_eq!((first.id, first.samples), (1, 60));
    write(store, 60, 120).await;
    // The second is trained on payloads compressed with the first, too.
    let second = store.train_compression_dictionary().await.expect("trains");
    assert_eq!((second.id, second.samples), (2, 120));
    write(store, 120, 180).await;

    let expected: Vec<Value> = (0..180).map(bank_event).collect();
    assert_eq!(read(store).await.expect("reads"), expected);
    let Some(fresh) = t.reopen(configure).await else {
        return; // memory: one store only
    };
    assert_eq!(read(&fresh).await.expect("reads"), expected);

    let raw = raw_payloads(&t).await;
    let named: Vec<Option<u8>> = raw.iter().map(|stored| named_dictionary(stored)).collect();
    assert!(named[..60].iter().all(Option::is_none), "{named:?}");
    assert!(named[60..120].iter().all(|id| *id == Some(1)), "{named:?}");
    assert!(named[120..].iter().all(|id| *id == Some(2)), "{named:?}");
    // What dictionaries are for: small events stored in a fraction of their size.
    let json: usize = expected[120..]
        .iter()
        .map(|value| value.to_string().len())
        .sum();
    let stored: usize = raw[120..].iter().map(Vec::len).sum();
    let overhead = if encrypted {
        60 * (3 + 1 + 1 + 2 + 24 + 16)
    } else {
        0
    };
    assert!(
        (stored - overhead) * 2 < json,
        "{stored} bytes stored ({overhead} of them encryption's) for {json} bytes of JSON"
    );
}

async fn training_refuses_what_it_cannot_do(kind: Kind) {
    let Some(plain) = kind.open("training_refuses_what_it_cannot_do").await else {
        return;
    };
    write(&plain.store, 0, 40).await;
    assert!(matches!(
        plain.store.train_compression_dictionary().await,
        Err(Error::Validation(ValidationError::Config(_)))
    ));
    let shredding = |builder: StoreBuilder| encrypting(builder).per_stream_keys(true);
    let Some(t) = kind.open_with("training_refuses", shredding).await else {
        return;
    };
    write(&t.store, 0, 40).await;
    assert!(matches!(
        t.store.train_compression_dictionary().await,
        Err(Error::Validation(ValidationError::Config(_)))
    ));
    let Some(t) = kind.open_with("training_refuses", compressing).await else {
        return;
    };
    write(&t.store, 0, 3).await;
    match t.store.train_compression_dictionary().await {
        Err(Error::DictionaryTraining { samples: 3, .. }) => {}
        other => panic!("expected DictionaryTraining on 3 samples, got {other:?}"),
    }
}

/// A fresh store holding 40 events, dictionary 1 trained on them, then `more` events
/// compressed with it.
async fn with_dictionary_1(
    kind: Kind,
    test: &str,
    configure: fn(StoreBuilder) -> StoreBuilder,
    more: u64,
) -> Option<TestStore> {
    let t = kind.open_with(test, configure).await?;
    write(&t.store, 0, 40).await;
    let trained = t
        .store
        .train_compression_dictionary()
        .await
        .expect("trains");
    assert_eq!(trained.id, 1);
    write(&t.store, 40, 40 + more).await;
    Some(t)
}

async fn a_missing_dictionary_is_a_typed_error_naming_it(kind: Kind) {
    let Some(t) = with_dictionary_1(kind, "a_missing_dictionary", compressing, 1).await else {
        return;
    };
    crate::support::execute(&t, "DELETE FROM compression_dictionaries WHERE id = 1").await;

    let fresh = t.reopen(compressing).await.expect("a SQL store");
    let error = read(&fresh).await.expect_err("dictionary 1 is gone");
    match &error {
        Error::Codec {
            source: CodecError::MissingDictionary { id: 1 },
            ..
        } => {}
        other => panic!("expected MissingDictionary 1, got {other:?}"),
    }
    assert!(error.to_string().contains("dictionary 1"), "{error}");
    // The store that trained it keeps it loaded; events without one still read.
    assert_eq!(read(&t.store).await.expect("reads").len(), 41);
}

/// Overwrites the stored dictionary 1 with as many zero bytes.
const FLIP_SQLITE: &str =
    "UPDATE compression_dictionaries SET content = zeroblob(length(content)) WHERE id = 1";
const FLIP_POSTGRES: &str = "UPDATE compression_dictionaries \
     SET content = decode(repeat('00', length(content)), 'hex') WHERE id = 1";

fn flip(kind: Kind) -> &'static str {
    match kind {
        Kind::Sqlite => FLIP_SQLITE,
        _ => FLIP_POSTGRES,
    }
}

/// Reading the events compressed with dictionary 1, and appending while it is active,
/// from a store that has not loaded it, both fail naming it as tampered.
async fn tampering_is_detected(t: &TestStore, configure: fn(StoreBuilder) -> StoreBuilder) {
    let fresh = t.reopen(configure).await.expect("a SQL store");
    match read(&fresh).await {
        Err(Error::Codec {
            source: CodecError::DictionaryTampered { id: 1 },
            ..
        }) => {}
        other => panic!("expected DictionaryTampered 1, got {other:?}"),
    }
    match fresh
        .append(
            "account-x",
            ExpectedVersion::Any,
            vec![NewEvent::new("account.deposited", bank_event(7))],
        )
        .await
    {
        Err(Error::Dictionary {
            id: 1,
            source: CodecError::DictionaryTampered { id: 1 },
        }) => {}
        other => panic!("expected Dictionary 1 tampered, got {other:?}"),
    }
}

async fn a_tampered_dictionary_row_is_detected(kind: Kind) {
    let Some(t) = with_dictionary_1(kind, "a_tampered_dictionary", compressing, 10).await else {
        return;
    };
    crate::support::execute(&t, flip(kind)).await;
    tampering_is_detected(&t, compressing).await;
}

async fn a_tampered_dictionary_row_is_detected_when_encrypting(kind: Kind) {
    let Some(t) = with_dictionary_1(kind, "a_tampered_dictionary", encrypting, 10).await else {
        return;
    };
    t.store
        .train_compression_dictionary()
        .await
        .expect("trains");
    let swap = "UPDATE compression_dictionaries SET \
         content = (SELECT content FROM compression_dictionaries WHERE id = 2), \
         sha256 = (SELECT sha256 FROM compression_dictionaries WHERE id = 2) WHERE id = 1";
    // Another id's sealed row, changed bytes, and a row said to be unsealed: the seal
    // binds the dictionary to its id and to the ring, and an encrypting store takes no
    // unsealed dictionary.
    for tamper in [
        swap,
        flip(kind),
        "UPDATE compression_dictionaries SET key_id = NULL",
    ] {
        crate::support::execute(&t, tamper).await;
        crate::support::execute(&t, "DELETE FROM compression_dictionaries WHERE id = 2").await;
        tampering_is_detected(&t, encrypting).await;
    }
}

/// A rotation moves the dictionaries off the retired ring key with the payloads: after it,
/// a store whose ring holds only the new key reads every event, and a second run finds
/// nothing left to move.
async fn a_key_rotation_reseals_the_dictionaries(kind: Kind) {
    let Some(t) = with_dictionary_1(kind, "rotation_reseals", encrypting, 10).await else {
        return;
    };
    let written = read(&t.store).await.expect("reads");
    const NEW: [u8; 32] = [4; 32];
    let rotating = t
        .reopen(|builder| {
            compressing(builder).encryption(
                KeyRing::new("k2", NEW)
                    .and_then(|ring| ring.with_key("k1", KEY))
                    .expect("ring"),
            )
        })
        .await
        .expect("a SQL store");
    let done = rotating
        .key_rotation()
        .reencrypt_events()
        .await
        .expect("rotates");
    assert_eq!(done.events_reencrypted, 50);
    assert_eq!(done.dictionaries_resealed, 1);
    let again = rotating
        .key_rotation()
        .reencrypt_events()
        .await
        .expect("rotates again");
    assert_eq!(
        (again.events_reencrypted, again.dictionaries_resealed),
        (0, 0)
    );

    let rotated = t
        .reopen(|builder| compressing(builder).encryption(KeyRing::new("k2", NEW).expect("ring")))
        .await
        .expect("a SQL store");
    assert_eq!(read(&rotated).await.expect("reads with k2 only"), written);
    assert!(
        raw_payloads(&t)
            .await
            .iter()
            .skip(40)
            .all(|stored| named_dictionary(stored) == Some(1)),
        "the events after the training still name dictionary 1"
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
                prop::collection::btree_map(".{1,12}", inner, 0..8)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_json_round_trips_with_a_dictionary(values in prop::collection::vec(any_json(), 1..6), encrypted: bool) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let read_back = runtime.block_on(async {
                let configure = if encrypted { encrypting } else { compressing };
                let t = Kind::Memory.open_with("any_json_round_trips", configure).await.expect("memory");
                write(&t.store, 0, 40).await;
                t.store.train_compression_dictionary().await.expect("trains");
                let events = values.iter().map(|value| NewEvent::new("any", value.clone())).collect();
                t.store.append("any-1", ExpectedVersion::NoStream, events).await.expect("append");
                read(&t.store).await.expect("reads")
            });
            prop_assert_eq!(&read_back[40..], values.as_slice());
        }
    }
}
