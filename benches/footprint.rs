//! chronicle's storage footprint: bytes on disk per event for small JSON events (about
//! 180 bytes, bank accounts of 10 events), stored plain, with plain zstd, and with a
//! trained zstd dictionary (also encrypted), on PostgreSQL and SQLite; and, beside it,
//! what one dictionary for the whole store compresses against one per event type.
//!
//! ```text
//! cargo bench --bench footprint                  # both backends and the per-type comparison
//! cargo bench --bench footprint -- footprint_pg  # only PostgreSQL
//! CHRONICLE_BENCH_QUICK=1 cargo bench --bench footprint
//! ```
//!
//! Environment: `CHRONICLE_PG_URL` as in `benches/core.rs`, and
//! `CHRONICLE_BENCH_FOOTPRINT_EVENTS` (default 100,000; quick 10,000): the events measured.
//!
//! Each configuration gets a fresh store. It first writes 10,000 events (the sample a
//! dictionary is trained on; the dictionary configurations train then), then measures
//! what the next events add: [`Store::storage`]'s bytes after less before (PostgreSQL: the
//! schema's tables with indexes and TOAST; SQLite: the database's pages), divided by the
//! events, and the stored payloads' average length. The ratio column compares each
//! configuration with the plain one of the same run.

mod harness;

use chronicle::{Compression, ExpectedVersion, KeyRing, NewEvent, Store, StoreBuilder};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;

use harness::{Config, Met, Res, Row, Schemas, fmt_rate, sqlite_url, with_schemas};

const EVENTS_ENV: &str = "CHRONICLE_BENCH_FOOTPRINT_EVENTS";
const WARM_UP_EVENTS: u64 = 10_000;
const EVENTS_PER_ACCOUNT: u64 = 10;

/// The event at `version` of account `account`: opened, then deposits, a withdrawal every
/// fourth; about 180 bytes of JSON each, varied as real ones are.
fn bank_event(account: u64, version: u64) -> (&'static str, Value) {
    let n = account * EVENTS_PER_ACCOUNT + version;
    let currency = ["EUR", "USD", "GBP"][(account % 3) as usize];
    let channel = ["mobile", "web", "branch", "api"][(n % 4) as usize];
    let at = format!(
        "2026-12-05T{:02}:{:02}:{:02}.{:03}Z",
        n % 24,
        n % 60,
        (n * 7) % 60,
        n % 1000
    );
    let reference = format!("{:016x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    match version {
        1 => (
            "account.opened",
            json!({
                "account": format!("ACC-{account:08}"),
                "owner": format!("Customer {account}"),
                "email": format!("customer{account}@example.com"),
                "currency": currency,
                "channel": channel,
                "opened_at": at,
            }),
        ),
        v if v % 4 == 0 => (
            "account.withdrawn",
            json!({
                "account": format!("ACC-{account:08}"),
                "amount": { "value": 20 + (n * 13) % 500, "currency": currency },
                "atm": format!("ATM-{:05}", n % 4099),
                "reference": reference,
                "booked_at": at,
                "balance_after": (n * 7919) % 100_000,
            }),
        ),
        _ => (
            "account.deposited",
            json!({
                "account": format!("ACC-{account:08}"),
                "amount": { "value": 100 + (n * 37) % 9000, "currency": currency },
                "reference": reference,
                "channel": channel,
                "booked_at": at,
                "balance_after": (n * 7919) % 100_000,
            }),
        ),
    }
}

/// Writes the accounts `from..to`, 10 events each, one append per account, 8 at a time.
async fn write_accounts(store: &Store, from: u64, to: u64) -> Res<()> {
    futures::stream::iter(from..to)
        .map(|account| async move {
            let events = (1..=EVENTS_PER_ACCOUNT)
                .map(|version| {
                    let (kind, payload) = bank_event(account, version);
                    NewEvent::new(kind, payload)
                })
                .collect();
            store
                .append(
                    format!("account-{account}"),
                    ExpectedVersion::NoStream,
                    events,
                )
                .await?;
            Ok::<(), harness::BoxError>(())
        })
        .buffer_unordered(8)
        .try_collect()
        .await
}

#[derive(Clone, Copy)]
enum Setup {
    Plain,
    Zstd,
    Dictionary,
    DictionaryEncrypted,
}

impl Setup {
    const ALL: [Setup; 4] = [
        Setup::Plain,
        Setup::Zstd,
        Setup::Dictionary,
        Setup::DictionaryEncrypted,
    ];

    fn name(self) -> &'static str {
        match self {
            Setup::Plain => "no compression",
            Setup::Zstd => "zstd",
            Setup::Dictionary => "zstd + dictionary",
            Setup::DictionaryEncrypted => "zstd + dictionary, encrypted",
        }
    }

    fn configure(self, builder: StoreBuilder) -> StoreBuilder {
        match self {
            Setup::Plain => builder,
            Setup::Zstd | Setup::Dictionary => builder.compression(Compression::zstd()),
            Setup::DictionaryEncrypted => builder
                .compression(Compression::zstd())
                .encryption(KeyRing::new("k1", [7; 32]).expect("a valid key id")),
        }
    }

    fn trains(self) -> bool {
        matches!(self, Setup::Dictionary | Setup::DictionaryEncrypted)
    }
}

/// What one configuration stored per event: (bytes on disk, payload bytes).
async fn measure(store: Store, setup: Setup, events: u64, average: &str) -> Res<(f64, f64)> {
    let warm_up = WARM_UP_EVENTS / EVENTS_PER_ACCOUNT;
    write_accounts(&store, 0, warm_up).await?;
    if setup.trains() {
        let trained = store.train_compression_dictionary().await?;
        eprintln!(
            "  dictionary {}: {} bytes from {} events",
            trained.id, trained.bytes, trained.samples
        );
    }
    let before = store.storage().await?.bytes;
    write_accounts(&store, warm_up, warm_up + events / EVENTS_PER_ACCOUNT).await?;
    let after = store.storage().await?.bytes;
    // The measured events' payloads only, not the first ones'.
    let payload_sql = format!(
        "SELECT {average} FROM (SELECT payload FROM events ORDER BY position DESC LIMIT {events}) AS measured"
    );
    let payload: f64 = match (store.postgres_pool(), store.sqlite_pool()) {
        (Some(pool), _) => {
            sqlx::query_scalar(AssertSqlSafe(payload_sql.clone()))
                .fetch_one(pool)
                .await?
        }
        (_, Some(pool)) => {
            sqlx::query_scalar(AssertSqlSafe(payload_sql))
                .fetch_one(pool)
                .await?
        }
        _ => return Err("a SQL store".into()),
    };
    store.close().await;
    Ok(((after - before) as f64 / events as f64, payload))
}

fn rows(backend: &str, measured: &[(Setup, (f64, f64))], target: &str) -> Vec<Row> {
    let plain = measured
        .iter()
        .find(|(setup, _)| matches!(setup, Setup::Plain))
        .map_or(f64::NAN, |(_, (bytes, _))| *bytes);
    measured
        .iter()
        .map(|(setup, (bytes, payload))| Row {
            workload: format!("{backend}: {}", setup.name()),
            chronicle: format!("{bytes:.0} bytes/event (payload {payload:.0})"),
            baseline: format!("{plain:.0} bytes/event"),
            ratio: format!("{:.0}%", bytes / plain * 100.0),
            target: match setup {
                Setup::Dictionary => target.to_owned(),
                _ => String::new(),
            },
            met: match setup {
                Setup::Dictionary if backend.starts_with("PostgreSQL") => {
                    Met::from(*bytes <= 200.0)
                }
                _ => Met::Info,
            },
        })
        .collect()
}

async fn footprint_pg(cfg: &Config, events: u64) -> Res<Vec<Row>> {
    let mut measured = Vec::new();
    for setup in Setup::ALL {
        eprintln!("  PostgreSQL, {}", setup.name());
        let result = with_schemas(cfg, async |schemas: &mut Schemas| {
            let store = schemas
                .store("footprint", 8, |builder| setup.configure(builder))
                .await?;
            measure(store, setup, events, "avg(octet_length(payload))::float8").await
        })
        .await?;
        measured.push((setup, result));
    }
    Ok(rows(
        "PostgreSQL",
        &measured,
        "≤ 200 bytes/event (issue 23)",
    ))
}

async fn footprint_sqlite(events: u64) -> Res<Vec<Row>> {
    let mut measured = Vec::new();
    for setup in Setup::ALL {
        eprintln!("  SQLite, {}", setup.name());
        let dir = tempfile::tempdir()?;
        let store = setup
            .configure(Store::builder(sqlite_url(dir.path(), "footprint.db")))
            .open()
            .await?;
        let result = measure(store, setup, events, "CAST(avg(length(payload)) AS REAL)").await?;
        measured.push((setup, result));
    }
    Ok(rows("SQLite", &measured, "same ratio as PostgreSQL"))
}

/// zstd alone on the payloads: one dictionary trained on every type against one per
/// type, each on the first 10,000 events and measured on the next `events`.
fn per_type(events: u64) -> Res<Vec<Row>> {
    let json = |from: u64, to: u64| {
        (from..to).flat_map(|account| {
            (1..=EVENTS_PER_ACCOUNT).map(move |version| {
                let (kind, payload) = bank_event(account, version);
                (kind, payload.to_string().into_bytes())
            })
        })
    };
    let warm_up = WARM_UP_EVENTS / EVENTS_PER_ACCOUNT;
    let samples: Vec<_> = json(0, warm_up).collect();
    let measured: Vec<_> = json(warm_up, warm_up + events / EVENTS_PER_ACCOUNT).collect();
    let size = chronicle::DICTIONARY_MAX_BYTES;
    let all: Vec<&[u8]> = samples.iter().map(|(_, bytes)| bytes.as_slice()).collect();
    let store_wide = zstd::dict::from_samples(&all, size)?;
    let mut per_type = std::collections::HashMap::new();
    for kind in ["account.opened", "account.deposited", "account.withdrawn"] {
        let of_kind: Vec<&[u8]> = samples
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, bytes)| bytes.as_slice())
            .collect();
        per_type.insert(kind, zstd::dict::from_samples(&of_kind, size)?);
    }
    let compressed = |dictionary: &[u8], json: &[u8]| -> Res<usize> {
        let mut compressor = zstd::bulk::Compressor::with_dictionary(3, dictionary)?;
        compressor.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))?;
        // The stored frame drops zstd's 4-byte magic number.
        Ok(compressor.compress(json)?.len() - 4)
    };
    let (mut json_bytes, mut wide, mut typed) = (0, 0, 0);
    for (kind, json) in &measured {
        json_bytes += json.len();
        wide += compressed(&store_wide, json)?;
        typed += compressed(&per_type[kind], json)?;
    }
    let n = measured.len() as f64;
    Ok(vec![Row {
        workload: "dictionary per type vs per store (zstd only, bytes per payload)".to_owned(),
        chronicle: format!("per type {:.1}", typed as f64 / n),
        baseline: format!("per store {:.1}", wide as f64 / n),
        ratio: format!("{:.0}%", typed as f64 / wide as f64 * 100.0),
        target: format!("(JSON {:.1})", json_bytes as f64 / n),
        met: Met::Info,
    }])
}

fn main() -> Res<()> {
    harness::run_described(
        "chronicle storage footprint",
        |cfg| {
            format!(
                "one run per configuration, fresh store each, {} events measured after {} written first{}",
                fmt_rate(cfg.size(EVENTS_ENV, 100_000).unwrap_or(0) as f64),
                fmt_rate(WARM_UP_EVENTS as f64),
                if cfg.quick { ", quick sizes" } else { "" }
            )
        },
        &["footprint_pg", "footprint_sqlite", "footprint_per_type"],
        async |cfg, workload| {
            let events = cfg.size(EVENTS_ENV, 100_000)?;
            match workload {
                "footprint_pg" => footprint_pg(cfg, events).await,
                "footprint_sqlite" => footprint_sqlite(events).await,
                _ => per_type(events),
            }
        },
    )
}
