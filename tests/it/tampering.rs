//! Stored bytes that were damaged, moved or encrypted under a key the reader lacks: every
//! read gives a typed error naming the event, never a panic or wrong data. Run on the SQL
//! backends, whose rows can be edited behind the store's back.

use chronicle::{
    CodecError, Direction, Error, ExpectedVersion, KeyRing, NewEvent, RecordedEvent, Store,
};
use futures::TryStreamExt;
use serde_json::json;
use sqlx::Connection;

use crate::support::{Kind, Location, TestStore, execute};

mod sqlite {
    use crate::support::Kind;

    #[tokio::test]
    async fn keys_and_moved_payloads() {
        super::keys_and_moved_payloads(Kind::Sqlite).await;
    }

    #[tokio::test]
    async fn damaged_bytes() {
        super::damaged_bytes(Kind::Sqlite).await;
    }

    #[tokio::test]
    async fn plain_payloads_are_json_text() {
        super::plain_payloads_are_json_text(Kind::Sqlite).await;
    }
}

mod postgres {
    use crate::support::Kind;

    #[tokio::test]
    async fn keys_and_moved_payloads() {
        super::keys_and_moved_payloads(Kind::Postgres).await;
    }

    #[tokio::test]
    async fn damaged_bytes() {
        super::damaged_bytes(Kind::Postgres).await;
    }

    #[tokio::test]
    async fn plain_payloads_are_json_text() {
        super::plain_payloads_are_json_text(Kind::Postgres).await;
    }
}

/// Overwrites the stored payload of the event at `position`.
async fn set_payload(t: &TestStore, position: i64, bytes: &[u8]) {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let sql = match t.location {
        Location::Postgres { .. } => {
            format!("UPDATE events SET payload = '\\x{hex}'::bytea WHERE position = {position}")
        }
        _ => format!("UPDATE events SET payload = X'{hex}' WHERE position = {position}"),
    };
    execute(t, &sql).await;
}

/// The stored payload bytes of the event at `position`.
async fn stored_payload(t: &TestStore, position: i64) -> Vec<u8> {
    match &t.location {
        Location::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
            sqlx::query_scalar("SELECT payload FROM events WHERE position = ?")
                .bind(position)
                .fetch_one(&mut conn)
                .await
                .expect("select")
        }
        Location::Postgres { url, schema } => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            let sql = format!("SELECT payload FROM \"{schema}\".events WHERE position = $1");
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(position)
                .fetch_one(&mut conn)
                .await
                .expect("select")
        }
        Location::Memory => unreachable!("SQL backends only"),
    }
}

async fn read(store: &Store, stream: &str) -> chronicle::Result<Vec<RecordedEvent>> {
    store
        .read_stream(stream, 1, Direction::Forward)
        .try_collect()
        .await
}

fn codec_error(result: chronicle::Result<Vec<RecordedEvent>>, event_id: uuid::Uuid) -> CodecError {
    match result {
        Err(Error::Codec {
            event_id: id,
            source,
            ..
        }) if id == event_id => source,
        other => panic!("expected a codec error naming {event_id}, got {other:?}"),
    }
}

/// Writes two encrypted events (positions 1 and 2) under key `k1`.
async fn encrypted_store(
    kind: Kind,
    test: &str,
    key: [u8; 32],
) -> Option<(TestStore, [uuid::Uuid; 2])> {
    let ring = KeyRing::new("k1", key).expect("ring");
    let t = kind.open_with(test, |b| b.encryption(ring)).await?;
    let mut ids = Vec::new();
    for stream in ["enc-1", "enc-2"] {
        let event = NewEvent::new("secret", json!({ "stream": stream }));
        ids.push(event.event_id());
        t.store
            .append(stream, ExpectedVersion::NoStream, vec![event])
            .await
            .expect("append");
    }
    Some((t, [ids[0], ids[1]]))
}

async fn keys_and_moved_payloads(kind: Kind) {
    let key = KeyRing::generate_key();
    let Some((t, ids)) = encrypted_store(kind, "keys_and_moved_payloads", key).await else {
        return;
    };
    // The right key reads; the stored bytes are not the JSON.
    assert_eq!(
        read(&t.store, "enc-1").await.expect("read")[0]
            .json()
            .expect("json"),
        json!({ "stream": "enc-1" })
    );
    assert!(!String::from_utf8_lossy(&stored_payload(&t, 1).await).contains("enc-1"));

    // A ring with another key under the same id: authentication fails.
    let wrong = KeyRing::new("k1", KeyRing::generate_key()).expect("ring");
    let other = t.reopen(|b| b.encryption(wrong)).await.expect("reopen");
    assert_eq!(
        codec_error(read(&other, "enc-1").await, ids[0]),
        CodecError::Decrypt {
            key_id: "k1".into()
        }
    );

    // No ring, or a ring without `k1`: the key is missing, and named.
    let plain = t.reopen(|b| b).await.expect("reopen");
    assert_eq!(
        codec_error(read(&plain, "enc-1").await, ids[0]),
        CodecError::MissingKey {
            key_id: "k1".into()
        }
    );
    let rotated_away = KeyRing::new("k2", KeyRing::generate_key()).expect("ring");
    let other = t
        .reopen(|b| b.encryption(rotated_away))
        .await
        .expect("reopen");
    assert!(matches!(
        codec_error(read(&other, "enc-2").await, ids[1]),
        CodecError::MissingKey { .. }
    ));

    // A ring that rotated to a new key but kept `k1` still reads.
    let rotated = KeyRing::new("k2", KeyRing::generate_key())
        .and_then(|ring| ring.with_key("k1", key))
        .expect("ring");
    let other = t.reopen(|b| b.encryption(rotated)).await.expect("reopen");
    assert_eq!(read(&other, "enc-2").await.expect("read").len(), 1);

    // Swap the two rows' payloads: each is bound to its own event and stream.
    let (first, second) = (stored_payload(&t, 1).await, stored_payload(&t, 2).await);
    set_payload(&t, 1, &second).await;
    set_payload(&t, 2, &first).await;
    assert_eq!(
        codec_error(read(&t.store, "enc-1").await, ids[0]),
        CodecError::Decrypt {
            key_id: "k1".into()
        }
    );
    assert_eq!(
        codec_error(read(&t.store, "enc-2").await, ids[1]),
        CodecError::Decrypt {
            key_id: "k1".into()
        }
    );
    let error = t
        .store
        .event_by_id(ids[0])
        .await
        .expect_err("moved payload");
    assert!(
        error.to_string().contains(&ids[0].to_string()) && error.to_string().contains("enc-1"),
        "{error}"
    );
}

async fn damaged_bytes(kind: Kind) {
    let Some((t, ids)) = encrypted_store(kind, "damaged_bytes", KeyRing::generate_key()).await
    else {
        return;
    };
    let whole = stored_payload(&t, 1).await;
    set_payload(&t, 1, &whole[..10]).await;
    assert!(matches!(
        codec_error(read(&t.store, "enc-1").await, ids[0]),
        CodecError::Truncated { .. }
    ));

    // Flip one byte of the ciphertext's tail.
    let mut bytes = stored_payload(&t, 2).await;
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    set_payload(&t, 2, &bytes).await;
    assert!(matches!(
        codec_error(read(&t.store, "enc-2").await, ids[1]),
        CodecError::Decrypt { .. }
    ));

    // A header from the future.
    set_payload(&t, 2, &[0xC7, 9, 0]).await;
    assert_eq!(
        codec_error(read(&t.store, "enc-2").await, ids[1]),
        CodecError::UnknownFormat(9)
    );

    // Plain JSON in place of an encrypted payload: an encrypting store refuses it.
    set_payload(&t, 2, br#"{"stream":"forged"}"#).await;
    assert_eq!(
        codec_error(read(&t.store, "enc-2").await, ids[1]),
        CodecError::NotEncrypted
    );
    let migrating = t
        .reopen(|b| {
            b.encryption(KeyRing::new("k1", KeyRing::generate_key()).expect("ring"))
                .accept_unencrypted_payloads(true)
        })
        .await
        .expect("reopen");
    assert_eq!(
        read(&migrating, "enc-2").await.expect("read")[0]
            .json()
            .expect("json"),
        json!({ "stream": "forged" })
    );
}

async fn plain_payloads_are_json_text(kind: Kind) {
    let Some(t) = kind.open("plain_payloads_are_json_text").await else {
        return;
    };
    let event = NewEvent::new("note", json!({ "text": "héllo" }));
    t.store
        .append("note-1", ExpectedVersion::Any, vec![event])
        .await
        .expect("append");
    let bytes = stored_payload(&t, 1).await;
    let text = String::from_utf8(bytes).expect("UTF-8 text");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).expect("JSON"),
        json!({ "text": "héllo" })
    );

    // Corrupt plain JSON decodes to bytes but fails to parse, naming the event.
    set_payload(&t, 1, b"{{{").await;
    let events = read(&t.store, "note-1").await.expect("read");
    let error = events[0].json().expect_err("not JSON");
    assert!(matches!(error, Error::Payload { .. }), "{error}");
}
