//! The smoke test of a feature set: what this build compiled in works, end to end, on a
//! real database, and what it left out is refused with an error naming the cargo feature.
//!
//! CI runs it once per feature set it checks (`--no-default-features --features …`); the
//! integration tests (`tests/it`) need every backend and run with all features.
//!
//! PostgreSQL: `CHRONICLE_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! one schema per test, dropped at the end. Without a server the PostgreSQL test skips,
//! unless `CHRONICLE_REQUIRE_SERVICES=1`.

use chronicle::{Direction, Error, ExpectedVersion, NewEvent, Store, StoreBuilder};
use futures::TryStreamExt;
use serde_json::json;

/// Appends to a stream, reads it back and reads the log: the core path.
async fn round_trip(store: &Store) {
    let events = (1..=3)
        .map(|n| NewEvent::new("counter.Added", json!({ "n": n, "pad": "x".repeat(600) })))
        .collect();
    store
        .append("counter-1", ExpectedVersion::NoStream, events)
        .await
        .expect("append");
    let read: Vec<_> = store
        .read_stream("counter-1", 1, Direction::Forward)
        .try_collect()
        .await
        .expect("read_stream");
    let numbers: Vec<_> = read
        .iter()
        .map(|event| event.json().expect("json")["n"].clone())
        .collect();
    assert_eq!(numbers, [json!(1), json!(2), json!(3)]);
    let log: Vec<_> = store
        .read_all(chronicle::LogPosition::START)
        .try_collect()
        .await
        .expect("read_all");
    assert_eq!(log.len(), 3);
}

/// What this build has of the codec, turned on.
fn with_codec(builder: StoreBuilder) -> StoreBuilder {
    #[cfg(feature = "compression")]
    let builder = builder.compression(chronicle::Compression::zstd().min_size(64));
    #[cfg(feature = "encryption")]
    let builder = builder.encryption(
        chronicle::KeyRing::new("smoke", chronicle::KeyRing::generate_key()).expect("ring"),
    );
    builder
}

fn feature_of(error: &Error) -> Option<&'static str> {
    match error {
        Error::Validation(chronicle::ValidationError::FeatureDisabled { feature, .. }) => {
            Some(feature)
        }
        Error::Codec {
            source: chronicle::CodecError::FeatureDisabled { feature },
            ..
        } => Some(feature),
        _ => None,
    }
}

/// The error of a call that must fail.
fn refused<T>(result: Result<T, Error>) -> Error {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn memory_store_works() {
    let store = with_codec(Store::builder("memory:"))
        .open()
        .await
        .expect("memory store");
    round_trip(&store).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_file_store_works() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("smoke.db").display());
    let store = with_codec(Store::builder(url))
        .open()
        .await
        .expect("sqlite store");
    round_trip(&store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_store_works() {
    use sqlx::Connection;

    let url = std::env::var("CHRONICLE_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut admin = match sqlx::PgConnection::connect(&url).await {
        Ok(admin) => admin,
        Err(error) if std::env::var_os("CHRONICLE_REQUIRE_SERVICES").is_none() => {
            eprintln!("skipping: PostgreSQL at {url} is unreachable: {error}");
            return;
        }
        Err(error) => panic!("PostgreSQL at {url} is unreachable: {error}"),
    };
    let schema = format!("smoke_{}", uuid::Uuid::now_v7().simple());
    let store = with_codec(Store::builder(url.as_str()).schema(schema.as_str()))
        .open()
        .await
        .expect("postgres store");
    round_trip(&store).await;
    drop(store);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&mut admin)
    .await
    .expect("drop schema");
}

#[cfg(not(feature = "sqlite"))]
#[tokio::test]
async fn sqlite_urls_name_the_missing_feature() {
    let error = refused(Store::open("sqlite::memory:").await);
    assert_eq!(feature_of(&error), Some("sqlite"), "{error}");
    assert!(error.to_string().contains("`sqlite`"), "{error}");
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn postgres_urls_name_the_missing_feature() {
    let error = refused(Store::open("postgres://postgres@127.0.0.1/test").await);
    assert_eq!(feature_of(&error), Some("postgres"), "{error}");
}

#[cfg(not(feature = "compression"))]
#[tokio::test]
async fn compression_names_the_missing_feature() {
    let error = refused(
        Store::builder("memory:")
            .compression(chronicle::Compression::zstd())
            .open()
            .await,
    );
    assert_eq!(feature_of(&error), Some("compression"), "{error}");
}

#[cfg(not(feature = "encryption"))]
#[tokio::test]
async fn encryption_names_the_missing_feature() {
    let ring = chronicle::KeyRing::new("k1", [7; 32]).expect("ring");
    let error = refused(Store::builder("memory:").encryption(ring).open().await);
    assert_eq!(feature_of(&error), Some("encryption"), "{error}");
}

/// A payload written by a build with the codec (here, a compressed and an encrypted
/// header put in place with SQL) is a typed error in a build without it, never garbage.
#[cfg(all(
    feature = "sqlite",
    not(all(feature = "compression", feature = "encryption"))
))]
#[tokio::test]
async fn payloads_this_build_cannot_read_name_the_feature() {
    use sqlx::Connection;

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("smoke.db").display());
    let store = Store::open(url.as_str()).await.expect("store");
    store
        .append(
            "s-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("t", json!({}))],
        )
        .await
        .expect("append");
    // chronicle's header: magic, format 1, flags (1: zstd, 2: encrypted), then a body.
    let (flags, feature): (u8, _) = if cfg!(feature = "compression") {
        (2, "encryption")
    } else {
        (1, "compression")
    };
    let mut header = vec![0xC7, 1, flags, 0];
    header.extend([0; 40]);
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query("UPDATE events SET payload = ?")
        .bind(header)
        .execute(&mut conn)
        .await
        .expect("update");
    let read: Result<Vec<_>, _> = store
        .read_stream("s-1", 1, Direction::Forward)
        .try_collect()
        .await;
    let error = refused(read);
    assert_eq!(feature_of(&error), Some(feature), "{error}");
}

/// A scheme chronicle has no backend for is a configuration error, not a missing feature.
#[tokio::test]
async fn unknown_url_schemes_name_no_feature() {
    let error = refused(Store::open("mysql://root@127.0.0.1/test").await);
    assert!(
        matches!(
            error,
            Error::Validation(chronicle::ValidationError::Config(_))
        ),
        "{error}"
    );
    assert_eq!(feature_of(&error), None);
}
