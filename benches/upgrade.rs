//! Issue 23, section 5: how long upgrading a PostgreSQL store in place takes. A scratch
//! schema gets chronicle's migrations up to 0010 and a log of N events (default 1,000,000:
//! 10,000 accounts, ~180 bytes of JSON each, written in transactions of 10,000 events);
//! then the migrations since run as the store's open runs them, in one transaction, timed.
//! While it runs, `events` is locked exclusively: readers and writers wait for all of it.
//!
//! ```text
//! cargo bench --bench upgrade
//! CHRONICLE_BENCH_UPGRADE_EVENTS=100000 cargo bench --bench upgrade
//! ```
//!
//! It prints the time, and each relation of `events` before and after, in bytes per event.

mod harness;

use std::path::Path;
use std::time::Instant;

use harness::Res;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// The last migration of the schema being upgraded.
const FROM: &str = "0010";
const STREAMS: u64 = 10_000;
const PER_TRANSACTION: u64 = 10_000;

fn main() -> Res<()> {
    let url = std::env::var("CHRONICLE_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let events: u64 = harness::env_or("CHRONICLE_BENCH_UPGRADE_EVENTS", 1_000_000)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let schema = format!("bench_{}_upgrade", std::process::id());
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await?;
        pool.execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await?;
        let result = measure(&url, &schema, events).await;
        pool.execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .await?;
        result
    })
}

async fn measure(url: &str, schema: &str, events: u64) -> Res<()> {
    let mut conn = PgConnection::connect(url).await?;
    conn.execute(AssertSqlSafe(format!("SET search_path = {schema}")))
        .await?;
    let (before, after) = migration_files()?;
    for (_, sql) in &before {
        conn.execute(AssertSqlSafe(sql.clone())).await?;
    }
    println!("# Upgrading in place: {events} events, PostgreSQL");
    println!();
    println!("- {}", harness::postgres_version(url).await);
    println!(
        "- migrations applied before: up to {FROM}; upgrading with: {}",
        after
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let filled = Instant::now();
    fill(&mut conn, events).await?;
    println!("- filled in {:.1} s", filled.elapsed().as_secs_f64());
    println!();
    let sizes_before = sizes(&mut conn, events).await?;

    let started = Instant::now();
    let mut tx = conn.begin().await?;
    for (_, sql) in &after {
        (&mut *tx).execute(AssertSqlSafe(sql.clone())).await?;
    }
    tx.commit().await?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "upgrade: {took:.2} s for {events} events ({:.2} s per million), `events` locked throughout",
        took * 1e6 / events as f64
    );
    println!();
    let sizes_after = sizes(&mut conn, events).await?;
    println!("| relation | before, B/event | after, B/event |");
    println!("| --- | ---: | ---: |");
    let mut names: Vec<&String> = sizes_before.iter().map(|(name, _)| name).collect();
    for (name, _) in &sizes_after {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let of = |list: &[(String, f64)], name: &str| {
        list.iter()
            .find(|(n, _)| n == name)
            .map_or("—".to_owned(), |(_, b)| format!("{b:.1}"))
    };
    for name in names {
        println!(
            "| {name} | {} | {} |",
            of(&sizes_before, name),
            of(&sizes_after, name)
        );
    }
    Ok(())
}

/// The PostgreSQL migration files, split into those up to [`FROM`] and those after.
type Files = Vec<(String, String)>;

fn migration_files() -> Res<(Files, Files)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "sql") {
            let name = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .unwrap_or_default()
                .to_owned();
            files.push((name, std::fs::read_to_string(&path)?));
        }
    }
    files.sort();
    // Files are named by a four-digit number first (`0010_compression_dictionaries`).
    Ok(files
        .into_iter()
        .partition(|(name, _)| name.get(..FROM.len()).is_some_and(|number| number <= FROM)))
}

/// `events` events over [`STREAMS`] streams, one transaction per [`PER_TRANSACTION`]
/// events (so the log holds many transaction ids), with the streams' rows.
async fn fill(conn: &mut PgConnection, events: u64) -> Res<()> {
    let per_stream = events.div_ceil(STREAMS);
    sqlx::query(
        "INSERT INTO streams (stream_id, category, version, event_count) \
         SELECT 'account-' || s, 'account', $1, $1 FROM generate_series(0, $2 - 1) s",
    )
    .bind(per_stream as i64)
    .bind(STREAMS as i64)
    .execute(&mut *conn)
    .await?;
    let mut from = 0;
    while from < events {
        let to = (from + PER_TRANSACTION).min(events);
        sqlx::query(
            "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, payload) \
             SELECT gen_random_uuid(), 'account-' || (i % $3), i / $3 + 1, 'Deposited', 1, \
                    convert_to(json_build_object( \
                        'account', 'ACC-' || lpad((i % 997)::text, 8, '0'), \
                        'amount', json_build_object('value', 100 + i % 9000, 'currency', 'EUR'), \
                        'reference', 'transfer ' || md5(i::text), \
                        'channel', 'mobile', \
                        'balance_after', (i * 7919) % 100000)::text, 'UTF8') \
             FROM generate_series($1, $2 - 1) i",
        )
        .bind(from as i64)
        .bind(to as i64)
        .bind(STREAMS as i64)
        .execute(&mut *conn)
        .await?;
        from = to;
    }
    conn.execute("VACUUM ANALYZE events").await?;
    Ok(())
}

/// The heap and each index of `events`, in bytes per event.
async fn sizes(conn: &mut PgConnection, events: u64) -> Res<Vec<(String, f64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT 'events (heap)', pg_relation_size('events'::regclass) \
         UNION ALL \
         SELECT c.relname::text, pg_relation_size(c.oid) FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = 'events'::regclass ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, bytes)| (name, bytes as f64 / events as f64))
        .collect())
}
