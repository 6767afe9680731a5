//! chronicle's benchmark harness: every workload beside a baseline measured in the same run,
//! on the same server, interleaved (baseline, chronicle, baseline, chronicle, …) for a few
//! rounds, reporting medians.
//!
//! ```text
//! cargo bench --bench core                       # everything, 5 s per system per round
//! cargo bench --bench core -- pg_append          # only workloads whose name contains this
//! CHRONICLE_BENCH_SECS=1 CHRONICLE_BENCH_QUICK=1 cargo bench --bench core   # smoke run
//! ```
//!
//! Environment:
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `CHRONICLE_PG_URL` | `postgres://postgres@127.0.0.1:5432/test` | PostgreSQL server |
//! | `CHRONICLE_BENCH_SECS` | `5` | seconds per system per round of a timed workload |
//! | `CHRONICLE_BENCH_ROUNDS` | `3` | interleaved rounds |
//! | `CHRONICLE_BENCH_QUICK` | unset | `1` shrinks the replay sizes tenfold |
//! | `CHRONICLE_BENCH_REPLAY_EVENTS` | `100000` (quick: `10000`) | events in the replay workloads |
//! | `CHRONICLE_BENCH_BIG_REPLAY_EVENTS` | `1000000` (quick: `100000`) | events in the memory workload |
//! | `CHRONICLE_BENCH_LARGE_EVENTS` | `300` (quick: `30`) | 1 MiB events in the large-event memory workload |
//!
//! The raw baselines write the same rows into tables built from chronicle's own migration
//! files (`migrations/<backend>/*.sql`, run in a schema or file of their own), so columns
//! and indexes are identical. Every PostgreSQL schema is named `bench_<pid>_<tag>` and
//! dropped afterwards; SQLite files live in a temporary directory. Progress goes to
//! stderr, the results table to stdout.
//!
//! The machinery shared with `benches/aggregates.rs` (configuration, timing, the table,
//! schemas and the raw baselines) is in `benches/harness/mod.rs`.

mod harness;

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chronicle::{
    Compression, Direction, ExpectedVersion, KeyRing, NewEvent, SqliteDurability, Store,
    StoreBuilder,
};
use futures::TryStreamExt;
use sqlx::sqlite::SqlitePool;
use uuid::Uuid;

use harness::{
    Config, Deposited, Met, Rates, Res, Row, Schemas, expect_count, fmt_rate, interleave, median,
    next_id, ratio_row, raw_pg_insert_batch, raw_pg_insert_one, raw_sqlite,
    raw_sqlite_insert_batch, raw_sqlite_insert_one, replay_raw_pg, replay_raw_sqlite, replay_row,
    sqlite_reader, sqlite_url, with_schemas,
};

/// Events per append when a replay stream is written.
const FILL_BATCH: usize = 1000;
/// The stream every replay workload reads.
const REPLAY_STREAM: &str = "replay-1";
/// Set in the child process that measures one replay's memory (see `replay_memory`).
const CHILD_ENV: &str = "CHRONICLE_BENCH_CHILD";
/// Events in the replay workloads (default 100,000; quick: 10,000).
const REPLAY_EVENTS_ENV: &str = "CHRONICLE_BENCH_REPLAY_EVENTS";
/// Events in the memory workload (default 1,000,000; quick: 100,000).
const BIG_REPLAY_EVENTS_ENV: &str = "CHRONICLE_BENCH_BIG_REPLAY_EVENTS";
/// 1 MiB events in the large-event memory workload (default 300; quick: 30).
const LARGE_EVENTS_ENV: &str = "CHRONICLE_BENCH_LARGE_EVENTS";
/// The payload of a large event: a JSON string of this many bytes.
const LARGE_EVENT_BYTES: usize = 1 << 20;
/// The one stream of the large-event workload: caught up by a projection, and replayed.
const LARGE_STREAM: &str = "large-1";

/// The events of [`LARGE_STREAM`] as an aggregate sees them (`large-1` is the stream of
/// the `LargeLog` with id 1).
#[derive(Debug, Clone, PartialEq, chronicle::DomainEvent)]
enum LargeEvent {
    #[event(rename = "large.logged")]
    Logged { n: u64, blob: String },
}

/// An aggregate over 1 MiB events: the child of `large_events_memory` that loads it
/// measures an aggregate's replay.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize, chronicle::Aggregate)]
#[aggregate(name = "large", event = LargeEvent)]
struct LargeLog {
    events: u64,
    bytes: u64,
}

impl chronicle::Aggregate for LargeLog {
    type Command = ();
    type Error = std::convert::Infallible;

    fn apply(&mut self, event: LargeEvent) {
        let LargeEvent::Logged { n, blob } = event;
        black_box(n);
        self.events += 1;
        self.bytes += blob.len() as u64;
    }

    fn handle(&self, _: &()) -> Result<Vec<LargeEvent>, Self::Error> {
        Ok(Vec::new())
    }
}

// ---------------------------------------------------------------------------------------
// Payloads

/// An order of about 1 KiB of JSON: nested objects, numbers, ids and some prose, so zstd
/// has realistic (not trivial) work.
fn order_payload() -> serde_json::Value {
    let lines: Vec<_> = (1..=6)
        .map(|i| {
            serde_json::json!({
                "sku": format!("SKU-{:05}", 1000 + i * 37),
                "description": format!("Widget model {i}, anodised, {} mm", 10 * i),
                "quantity": i,
                "unit_price_cents": 1999 + i * 250,
            })
        })
        .collect();
    let mut order = serde_json::json!({
        "order_id": Uuid::now_v7(),
        "customer": {
            "id": Uuid::now_v7(),
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "address": { "street": "12 Analytical Row", "city": "London", "postcode": "NW1 2AB", "country": "GB" },
        },
        "lines": lines,
        "currency": "GBP",
        "note": "",
    });
    let base = serde_json::to_vec(&order).map_or(0, |json| json.len());
    let prose = "Please leave the parcel with the concierge if nobody answers. ";
    let note: String = prose
        .chars()
        .cycle()
        .take(1024_usize.saturating_sub(base))
        .collect();
    order["note"] = serde_json::Value::String(note);
    order
}

// ---------------------------------------------------------------------------------------
// Operations shared by the workloads

/// Appends one small event to a new stream.
async fn append_one(store: &Store) -> Res<u64> {
    let n = next_id();
    let event = NewEvent::from_serialize("deposited", &Deposited::sample(n))?;
    store
        .append(format!("acct-{n}"), ExpectedVersion::NoStream, vec![event])
        .await?;
    Ok(1)
}

/// Appends `count` small events to a new stream in one append.
async fn append_batch(store: &Store, count: usize) -> Res<u64> {
    let n = next_id();
    let events = (0..count)
        .map(|_| NewEvent::from_serialize("deposited", &Deposited::sample(n)))
        .collect::<Result<Vec<_>, _>>()?;
    store
        .append(format!("batch-{n}"), ExpectedVersion::NoStream, events)
        .await?;
    Ok(count as u64)
}

/// Appends one event carrying `payload` to a new stream.
async fn append_payload(store: &Store, payload: &serde_json::Value) -> Res<u64> {
    let n = next_id();
    let event = NewEvent::from_serialize("order.placed", payload)?;
    store
        .append(format!("order-{n}"), ExpectedVersion::NoStream, vec![event])
        .await?;
    Ok(1)
}

/// Writes `total` small events to `stream` in appends of `FILL_BATCH`.
async fn fill_stream(store: &Store, stream: &str, total: u64) -> Res<()> {
    let started = Instant::now();
    let mut version = 0;
    while version < total {
        let count = (total - version).min(FILL_BATCH as u64);
        let events = (0..count)
            .map(|i| NewEvent::from_serialize("deposited", &Deposited::sample(version + i)))
            .collect::<Result<Vec<_>, _>>()?;
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        version = store
            .append(stream, expected, events)
            .await?
            .next_expected_version();
    }
    eprintln!(
        "  wrote {} events to `{stream}` in {:.1} s",
        fmt_rate(total as f64),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The raw replays' decoding: the payload into `Deposited`, as `replay_chronicle` does.
fn decode_deposited(_event_type: &str, payload: &[u8]) -> Res<Deposited> {
    Ok(serde_json::from_slice(payload)?)
}

/// Reads `stream` through chronicle, decoding every payload into `Deposited`.
async fn replay_chronicle(store: &Store, stream: &str) -> Res<u64> {
    let mut events = std::pin::pin!(store.read_stream(stream, 1, Direction::Forward));
    let mut count = 0;
    while let Some(event) = events.try_next().await? {
        black_box(event.data::<Deposited>()?);
        count += 1;
    }
    Ok(count)
}

// ---------------------------------------------------------------------------------------
// Workloads

/// 1. PostgreSQL, 1-event appends to distinct streams, 8 writers.
async fn pg_append_1(cfg: &Config) -> Res<Vec<Row>> {
    const WRITERS: u32 = 8;
    let rates = with_schemas(cfg, async |schemas: &mut Schemas| {
        let raw = schemas.raw("append1_raw", WRITERS).await?;
        let store = schemas.store("append1_chronicle", WRITERS, |b| b).await?;
        interleave(
            cfg,
            ("raw INSERT", "chronicle"),
            WRITERS as usize,
            move |_| {
                let raw = raw.clone();
                async move { raw_pg_insert_one(&raw).await }
            },
            move |_| {
                let store = store.clone();
                async move { append_one(&store).await }
            },
        )
        .await
    })
    .await?;
    Ok(vec![ratio_row(
        "pg_append_1: PostgreSQL, 1-event appends, 8 writers",
        "appends/s",
        &rates,
        0.75,
        "≥ 75% of raw single-row INSERT",
    )])
}

/// 2. PostgreSQL, 100-event appends, 4 writers.
async fn pg_append_100(cfg: &Config) -> Res<Vec<Row>> {
    const WRITERS: u32 = 4;
    const BATCH: usize = 100;
    let rates = with_schemas(cfg, async |schemas: &mut Schemas| {
        let raw = schemas.raw("append100_raw", WRITERS).await?;
        let store = schemas.store("append100_chronicle", WRITERS, |b| b).await?;
        interleave(
            cfg,
            ("raw multi-row INSERT", "chronicle"),
            WRITERS as usize,
            move |_| {
                let raw = raw.clone();
                async move { raw_pg_insert_batch(&raw, BATCH).await }
            },
            move |_| {
                let store = store.clone();
                async move { append_batch(&store, BATCH).await }
            },
        )
        .await
    })
    .await?;
    Ok(vec![ratio_row(
        "pg_append_100: PostgreSQL, 100-event appends, 4 writers",
        "events/s",
        &rates,
        0.60,
        "≥ 60% of raw multi-row INSERT",
    )])
}

/// The raw baseline's SQLite file and chronicle's, side by side in `dir`, both with
/// `synchronous = FULL`.
async fn sqlite_pair(dir: &std::path::Path) -> Res<(SqlitePool, Store)> {
    let raw = raw_sqlite(&sqlite_url(dir, "raw.db")).await?;
    let store = Store::builder(sqlite_url(dir, "chronicle.db"))
        .sqlite_durability(SqliteDurability::Full)
        .open()
        .await?;
    Ok((raw, store))
}

/// 3. SQLite file, 1-event appends, 1 writer, `synchronous = FULL` on both sides.
async fn sqlite_append_1(cfg: &Config) -> Res<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let (raw, store) = sqlite_pair(dir.path()).await?;
    let rates = interleave(
        cfg,
        ("raw INSERT", "chronicle"),
        1,
        move |_| {
            let raw = raw.clone();
            async move { raw_sqlite_insert_one(&raw).await }
        },
        move |_| {
            let store = store.clone();
            async move { append_one(&store).await }
        },
    )
    .await?;
    Ok(vec![ratio_row(
        "sqlite_append_1: SQLite file (FULL), 1-event appends, 1 writer",
        "appends/s",
        &rates,
        0.75,
        "≥ 75% of raw single-row INSERT",
    )])
}

/// 3b. SQLite file, 100-event appends, 1 writer, `synchronous = FULL` on both sides:
/// chronicle's triggers check and advance the stream row once per event.
async fn sqlite_append_100(cfg: &Config) -> Res<Vec<Row>> {
    const BATCH: usize = 100;
    let dir = tempfile::tempdir()?;
    let (raw, store) = sqlite_pair(dir.path()).await?;
    let rates = interleave(
        cfg,
        ("raw multi-row INSERT", "chronicle"),
        1,
        move |_| {
            let raw = raw.clone();
            async move { raw_sqlite_insert_batch(&raw, BATCH).await }
        },
        move |_| {
            let store = store.clone();
            async move { append_batch(&store, BATCH).await }
        },
    )
    .await?;
    Ok(vec![ratio_row(
        "sqlite_append_100: SQLite file (FULL), 100-event appends, 1 writer",
        "events/s",
        &rates,
        0.60,
        "≥ 60% of raw multi-row INSERT (as pg_append_100)",
    )])
}

/// Interleaves a raw replay of `REPLAY_STREAM` (the ceiling) with chronicle's, checking
/// that each read every one of the `total` events.
async fn interleave_replays<R, RFut>(cfg: &Config, store: Store, total: u64, raw: R) -> Res<Rates>
where
    R: Fn() -> RFut + Send + Sync + 'static,
    RFut: Future<Output = Res<u64>> + Send + 'static,
{
    interleave(
        cfg,
        ("raw SELECT + serde", "chronicle read_stream"),
        1,
        move |_| {
            let got = raw();
            async move { expect_count("raw", got.await?, total) }
        },
        move |_| {
            let store = store.clone();
            async move {
                let got = replay_chronicle(&store, REPLAY_STREAM).await?;
                expect_count("chronicle", got, total)
            }
        },
    )
    .await
}

/// 4a. Replay of a stream on SQLite, decoded into typed structs.
async fn replay_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let total = cfg.size(REPLAY_EVENTS_ENV, 100_000)?;
    let dir = tempfile::tempdir()?;
    let url = sqlite_url(dir.path(), "replay.db");
    let store = Store::open(url.clone()).await?;
    fill_stream(&store, REPLAY_STREAM, total).await?;
    let raw = sqlite_reader(&url).await?;
    let rates = interleave_replays(cfg, store, total, move || {
        let raw = raw.clone();
        async move { replay_raw_sqlite(&raw, REPLAY_STREAM, decode_deposited).await }
    })
    .await?;
    Ok(vec![replay_row(
        &format!(
            "replay_sqlite: SQLite, read_stream of {} events → typed",
            fmt_rate(total as f64)
        ),
        &rates,
    )])
}

/// 4b. Replay of a stream on PostgreSQL, decoded into typed structs.
async fn replay_pg(cfg: &Config) -> Res<Vec<Row>> {
    let total = cfg.size(REPLAY_EVENTS_ENV, 100_000)?;
    let rates = with_schemas(cfg, async |schemas: &mut Schemas| {
        let store = schemas.store("replay", 2, |b| b).await?;
        fill_stream(&store, REPLAY_STREAM, total).await?;
        let schema = schemas.names.last().cloned().unwrap_or_default();
        let raw = schemas.pool_on(&schema, 2).await?;
        interleave_replays(cfg, store, total, move || {
            let raw = raw.clone();
            async move { replay_raw_pg(&raw, REPLAY_STREAM, decode_deposited).await }
        })
        .await
    })
    .await?;
    Ok(vec![replay_row(
        &format!(
            "replay_pg: PostgreSQL, read_stream of {} events → typed",
            fmt_rate(total as f64)
        ),
        &rates,
    )])
}

/// Turns on zstd (chronicle's defaults: level 3, payloads from 256 bytes) and
/// XChaCha20-Poly1305 on a store builder.
fn codec_on(builder: StoreBuilder, keys: KeyRing) -> StoreBuilder {
    builder.compression(Compression::zstd()).encryption(keys)
}

fn codec_row(workload: &str, rates: &Rates) -> Row {
    Row {
        chronicle: format!("on: {} appends/s", fmt_rate(median(&rates.chronicle))),
        baseline: format!("off: {} appends/s", fmt_rate(median(&rates.baseline))),
        ..ratio_row(workload, "", rates, 0.85, "on ≤ 15% slower than off")
    }
}

/// 5a. PostgreSQL, 1 KiB payloads, compression + encryption on vs off, 8 writers.
async fn codec_pg(cfg: &Config) -> Res<Vec<Row>> {
    const WRITERS: u32 = 8;
    let payload = Arc::new(order_payload());
    let keys = KeyRing::new("k1", KeyRing::generate_key())?;
    let rates = with_schemas(cfg, async |schemas: &mut Schemas| {
        let off = schemas.store("codec_off", WRITERS, |b| b).await?;
        let on = schemas
            .store("codec_on", WRITERS, |b| codec_on(b, keys))
            .await?;
        let payload_on = Arc::clone(&payload);
        interleave(
            cfg,
            ("off", "on"),
            WRITERS as usize,
            move |_| {
                let (store, payload) = (off.clone(), Arc::clone(&payload));
                async move { append_payload(&store, &payload).await }
            },
            move |_| {
                let (store, payload) = (on.clone(), Arc::clone(&payload_on));
                async move { append_payload(&store, &payload).await }
            },
        )
        .await
    })
    .await?;
    Ok(vec![codec_row(
        "codec_pg: PostgreSQL, 1 KiB payloads, zstd + encryption on vs off, 8 writers",
        &rates,
    )])
}

/// 5b. SQLite file, 1 KiB payloads, compression + encryption on vs off, 1 writer.
async fn codec_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let payload = Arc::new(order_payload());
    let dir = tempfile::tempdir()?;
    let off = Store::open(sqlite_url(dir.path(), "off.db")).await?;
    let keys = KeyRing::new("k1", KeyRing::generate_key())?;
    let on = codec_on(Store::builder(sqlite_url(dir.path(), "on.db")), keys)
        .open()
        .await?;
    let payload_on = Arc::clone(&payload);
    let rates = interleave(
        cfg,
        ("off", "on"),
        1,
        move |_| {
            let (store, payload) = (off.clone(), Arc::clone(&payload));
            async move { append_payload(&store, &payload).await }
        },
        move |_| {
            let (store, payload) = (on.clone(), Arc::clone(&payload_on));
            async move { append_payload(&store, &payload).await }
        },
    )
    .await?;
    Ok(vec![codec_row(
        "codec_sqlite: SQLite file (FULL), 1 KiB payloads, zstd + encryption on vs off, 1 writer",
        &rates,
    )])
}

/// Workload 6: peak memory growth of replaying a large SQLite stream, each replay measured
/// in a fresh child process (so memory the writer freed cannot hide the reader's growth).
async fn replay_memory(cfg: &Config) -> Res<Vec<Row>> {
    let total = cfg.size(BIG_REPLAY_EVENTS_ENV, 1_000_000)?;
    let dir = tempfile::tempdir()?;
    let url = sqlite_url(dir.path(), "big.db");
    {
        let store = Store::builder(url.clone())
            .sqlite_durability(SqliteDurability::Normal)
            .open()
            .await?;
        fill_stream(&store, REPLAY_STREAM, total).await?;
    }
    let chronicle = measure_in_child("chronicle", &url, total).await?;
    let raw = measure_in_child("raw", &url, total).await?;
    let limit_kib = 64 * 1024;
    Ok(vec![Row {
        workload: format!(
            "replay_1m_memory: SQLite, read_stream of {} events, peak RSS growth",
            fmt_rate(total as f64)
        ),
        chronicle: chronicle.describe(),
        baseline: format!("raw streamed SELECT: {}", raw.describe()),
        ratio: "—".to_owned(),
        target: "growth < 64 MiB".to_owned(),
        met: Met::from(chronicle.growth_kib() < limit_kib),
    }])
}

/// A projection catching up over 1 MiB events, on SQLite and on PostgreSQL, in a child
/// process each: with windows bounded by count only (10,000 events: the whole log in one
/// window, as before the byte budget), and with the default byte budget.
async fn large_events_memory(cfg: &Config) -> Res<Vec<Row>> {
    let total = cfg.size(LARGE_EVENTS_ENV, 300)?;
    let dir = tempfile::tempdir()?;
    let url = sqlite_url(dir.path(), "large.db");
    let store = large_event_store(&url).await?;
    fill_large(&store, total).await?;
    store.close().await;
    let mut rows = large_events_rows("SQLite", &url, total).await?;
    let pg = with_schemas(cfg, async |schemas| {
        let store = schemas
            .store("large", 4, |builder| {
                builder.max_event_size(LARGE_EVENT_BYTES + 1024)
            })
            .await?;
        fill_large(&store, total).await?;
        store.close().await;
        let url = format!("{}|{}", cfg.pg_url, Schemas::schema_name("large"));
        large_events_rows("PostgreSQL", &url, total).await
    })
    .await?;
    rows.extend(pg);
    Ok(rows)
}

async fn fill_large(store: &Store, total: u64) -> Res<()> {
    let blob = "x".repeat(LARGE_EVENT_BYTES);
    for n in 0..total {
        let event = NewEvent::new("large.logged", serde_json::json!({ "n": n, "blob": blob }));
        store
            .append(LARGE_STREAM, ExpectedVersion::Any, vec![event])
            .await?;
    }
    Ok(())
}

async fn large_events_rows(database: &str, url: &str, total: u64) -> Res<Vec<Row>> {
    let count_only = measure_in_child(&format!("projection-{}", usize::MAX), url, total).await?;
    let budget = chronicle::DEFAULT_WINDOW_BYTES;
    let bounded = measure_in_child(&format!("projection-{budget}"), url, total).await?;
    let replay = measure_in_child("read-stream", url, total).await?;
    let load = measure_in_child("load", url, total).await?;
    Ok(vec![
        Row {
            workload: format!(
                "large_events_memory: {database}, projection catch-up over {total} events of \
                 1 MiB, peak RSS growth"
            ),
            chronicle: format!("window_bytes 32 MiB: {}", bounded.describe()),
            baseline: format!("count-only windows: {}", count_only.describe()),
            ratio: "—".to_owned(),
            target: "growth < 160 MiB".to_owned(),
            met: Met::from(bounded.growth_kib() < 160 * 1024),
        },
        Row {
            workload: format!(
                "large_events_memory: {database}, read_stream of one stream of {total} events \
                 of 1 MiB, peak RSS growth"
            ),
            chronicle: replay.describe(),
            baseline: "—".to_owned(),
            ratio: "—".to_owned(),
            target: "—".to_owned(),
            met: Met::Info,
        },
        Row {
            workload: format!(
                "large_events_memory: {database}, aggregate load (replay) of that stream, peak \
                 RSS growth"
            ),
            chronicle: load.describe(),
            baseline: "—".to_owned(),
            ratio: "—".to_owned(),
            target: "—".to_owned(),
            met: Met::Info,
        },
    ])
}

/// A store for the large-event workload (`url`, or `url|schema` on PostgreSQL): payloads
/// of 1 MiB plus their JSON wrapping.
async fn large_event_store(url: &str) -> Res<Store> {
    let builder = match url.split_once('|') {
        Some((url, schema)) => Store::builder(url).schema(schema),
        None => Store::builder(url).sqlite_durability(SqliteDurability::Normal),
    };
    Ok(builder
        .max_event_size(LARGE_EVENT_BYTES + 1024)
        .open()
        .await?)
}

/// A projection that only counts (named apart per run: each starts from the beginning).
struct CountEvents(String, Arc<AtomicU64>);

impl chronicle::Projection for CountEvents {
    fn name(&self) -> &str {
        &self.0
    }

    fn event_types(&self) -> &[&str] {
        &["large.logged"]
    }

    async fn apply(
        &self,
        event: &chronicle::RecordedEvent,
        _ctx: &mut chronicle::ProjectionContext<'_>,
    ) -> Result<(), chronicle::ProjectionError> {
        black_box(event.payload_json().len());
        self.1.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The child side of `large_events_memory`: a projection's catch-up with `window_bytes`.
async fn catch_up_in_child(url: &str, window_bytes: usize) -> Res<u64> {
    let store = large_event_store(url).await?;
    let count = Arc::new(AtomicU64::new(0));
    let handle = store
        .projections()
        .window_bytes(window_bytes)
        .spawn(CountEvents(
            format!("count-{window_bytes}"),
            Arc::clone(&count),
        ));
    handle.wait_for_idle().await?;
    handle.stop().await?;
    Ok(count.load(Ordering::Relaxed))
}

/// The child side of `large_events_memory`'s replay: `read_stream` of the one stream.
async fn read_large_in_child(url: &str) -> Res<u64> {
    let store = large_event_store(url).await?;
    let mut events = std::pin::pin!(store.read_stream(LARGE_STREAM, 1, Direction::Forward));
    let mut count = 0;
    while let Some(event) = events.try_next().await? {
        black_box(event.payload_json().len());
        count += 1;
    }
    Ok(count)
}

/// The child side of `large_events_memory`'s aggregate load: the `LargeLog` of the stream,
/// from its events (no snapshot).
async fn load_large_in_child(url: &str) -> Res<u64> {
    let store = large_event_store(url).await?;
    let loaded = store
        .repository::<LargeLog>()
        .load("1")
        .await?
        .ok_or("the large stream is missing")?;
    if loaded.state.bytes != loaded.state.events * LARGE_EVENT_BYTES as u64 {
        return Err(format!(
            "loaded {} bytes in {} events",
            loaded.state.bytes, loaded.state.events
        )
        .into());
    }
    Ok(loaded.state.events)
}

/// What a child process reported about one replay.
struct MemoryReport {
    before_kib: u64,
    peak_kib: u64,
    events: u64,
    secs: f64,
    method: String,
}

impl MemoryReport {
    fn growth_kib(&self) -> u64 {
        self.peak_kib.saturating_sub(self.before_kib)
    }

    fn describe(&self) -> String {
        format!(
            "+{:.1} MiB ({:.1} → {:.1} MiB, {}; {} events/s)",
            self.growth_kib() as f64 / 1024.0,
            self.before_kib as f64 / 1024.0,
            self.peak_kib as f64 / 1024.0,
            self.method,
            fmt_rate(self.events as f64 / self.secs),
        )
    }
}

async fn measure_in_child(system: &str, url: &str, total: u64) -> Res<MemoryReport> {
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, format!("{system} {total} {url}"))
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|line| line.strip_prefix("RESULT "));
    let (true, Some(line)) = (output.status.success(), line) else {
        return Err(format!(
            "memory child ({system}) failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [before, peak, events, secs, method] = fields[..] else {
        return Err(format!("memory child ({system}) printed `{line}`").into());
    };
    let report = MemoryReport {
        before_kib: before.parse()?,
        peak_kib: peak.parse()?,
        events: events.parse()?,
        secs: secs.parse()?,
        method: method.replace('_', " "),
    };
    eprintln!("  {system}: {}", report.describe());
    expect_count(system, report.events, total)?;
    Ok(report)
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// The child side of `replay_memory`: opens the database, notes VmRSS, resets the peak,
/// replays while sampling VmRSS every 10 ms, and prints
/// `RESULT <before KiB> <peak KiB> <events> <seconds> <method>`.
fn child_main(spec: &str) -> Res<()> {
    let mut parts = spec.splitn(3, ' ');
    let (Some(system), Some(total), Some(url)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("bad {CHILD_ENV} `{spec}`").into());
    };
    let total: u64 = total.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        enum Reader {
            Chronicle(Store),
            Raw(SqlitePool),
            Projection(usize),
            ReadStream,
            Load,
        }
        let reader = match system {
            "read-stream" => Reader::ReadStream,
            "load" => Reader::Load,
            _ if system.starts_with("projection-") => {
                Reader::Projection(system["projection-".len()..].parse()?)
            }
            "chronicle" => Reader::Chronicle(
                Store::builder(url)
                    .sqlite_durability(SqliteDurability::Normal)
                    .open()
                    .await?,
            ),
            _ => Reader::Raw(sqlite_reader(url).await?),
        };
        let rss = || proc_status_kib("VmRSS").unwrap_or(0);
        let before = rss();
        let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let sampled = Arc::new(AtomicU64::new(before));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (sampled, stop) = (Arc::clone(&sampled), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    sampled.fetch_max(rss(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let started = Instant::now();
        let events = match &reader {
            Reader::Chronicle(store) => replay_chronicle(store, REPLAY_STREAM).await?,
            Reader::Raw(pool) => replay_raw_sqlite(pool, REPLAY_STREAM, decode_deposited).await?,
            Reader::Projection(window_bytes) => catch_up_in_child(url, *window_bytes).await?,
            Reader::ReadStream => read_large_in_child(url).await?,
            Reader::Load => load_large_in_child(url).await?,
        };
        let secs = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        sampler.await?;
        let sampled = sampled.load(Ordering::Relaxed).max(rss());
        let (peak, method) = match proc_status_kib("VmHWM") {
            Some(hwm) if hwm_reset => (hwm.max(sampled), "VmHWM_after_clear_refs"),
            _ => (sampled, "VmRSS_sampled_every_10_ms"),
        };
        if events != total {
            eprintln!("replayed {events} events, expected {total}");
        }
        println!("RESULT {before} {peak} {events} {secs:.3} {method}");
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// Main

const WORKLOADS: &[&str] = &[
    "pg_append_1",
    "pg_append_100",
    "sqlite_append_1",
    "sqlite_append_100",
    "replay_sqlite",
    "replay_pg",
    "codec_pg",
    "codec_sqlite",
    "replay_1m_memory",
    "large_events_memory",
];

async fn run_workload(cfg: &Config, name: &str) -> Res<Vec<Row>> {
    match name {
        "pg_append_1" => pg_append_1(cfg).await,
        "pg_append_100" => pg_append_100(cfg).await,
        "sqlite_append_1" => sqlite_append_1(cfg).await,
        "sqlite_append_100" => sqlite_append_100(cfg).await,
        "replay_sqlite" => replay_sqlite(cfg).await,
        "replay_pg" => replay_pg(cfg).await,
        "codec_pg" => codec_pg(cfg).await,
        "codec_sqlite" => codec_sqlite(cfg).await,
        "replay_1m_memory" => replay_memory(cfg).await,
        "large_events_memory" => large_events_memory(cfg).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

fn main() -> Res<()> {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return child_main(&spec);
    }
    harness::run("chronicle benchmarks", WORKLOADS, run_workload)
}
