//! Issue 23, section 5: how long upgrading a store in place takes. A scratch PostgreSQL
//! schema gets chronicle's migrations up to 0010, and a SQLite file its migrations up to
//! 0009, then a log of N events (default 1,000,000: 10,000 accounts, ~180 bytes of JSON
//! each, written in transactions of 10,000 events); then the migrations since run as the
//! store's open runs them, in one transaction, timed. While it runs, `events` is locked:
//! readers and writers wait for all of it (on SQLite, writers; readers of the WAL go on
//! reading the old table until the commit).
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
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, SqliteConnection};

/// The last migration of the schema being upgraded, on PostgreSQL and on SQLite.
const FROM: &str = "0010";
const SQLITE_FROM: &str = "0009";
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
        result?;
        println!();
        measure_sqlite(events).await
    })
}

async fn measure(url: &str, schema: &str, events: u64) -> Res<()> {
    let mut conn = PgConnection::connect(url).await?;
    conn.execute(AssertSqlSafe(format!("SET search_path = {schema}")))
        .await?;
    let (before, after) = migration_files("postgres", FROM)?;
    for (_, sql) in &before {
        conn.execute(AssertSqlSafe(sql.clone())).await?;
    }
    println!("# Upgrading in place: {events} events, PostgreSQL");
    println!();
    println!("- {}", harness::postgres_version(url).await);
    print_migrations(FROM, &after);
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
    print_time(started, events, "`events` locked throughout");
    let sizes_after = sizes(&mut conn, events).await?;
    print_sizes(&sizes_before, &sizes_after);
    Ok(())
}

/// The same on a SQLite file (`synchronous = NORMAL`, as a store asked for
/// `SqliteDurability::Normal`), in one `BEGIN IMMEDIATE` transaction as the store's open
/// runs it.
async fn measure_sqlite(events: u64) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("upgrade.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let (before, after) = migration_files("sqlite", SQLITE_FROM)?;
    for (_, sql) in &before {
        conn.execute(AssertSqlSafe(sql.clone())).await?;
    }
    println!("# Upgrading in place: {events} events, SQLite");
    println!();
    print_migrations(SQLITE_FROM, &after);
    let filled = Instant::now();
    fill_sqlite(&mut conn, events).await?;
    println!("- filled in {:.1} s", filled.elapsed().as_secs_f64());
    println!();
    let sizes_before = sqlite_sizes(&mut conn, events).await?;
    let started = Instant::now();
    conn.execute("BEGIN IMMEDIATE").await?;
    for (_, sql) in &after {
        conn.execute(AssertSqlSafe(sql.clone())).await?;
    }
    conn.execute("COMMIT").await?;
    print_time(started, events, "writers locked out throughout");
    let sizes_after = sqlite_sizes(&mut conn, events).await?;
    print_sizes(&sizes_before, &sizes_after);
    Ok(())
}

/// The migrations the upgrade starts from and applies.
fn print_migrations(from: &str, after: &Files) {
    let names: Vec<&str> = after.iter().map(|(name, _)| name.as_str()).collect();
    println!(
        "- migrations applied before: up to {from}; upgrading with: {}",
        names.join(", ")
    );
}

/// How long the upgrade that started at `started` took, and what it locked.
fn print_time(started: Instant, events: u64, locked: &str) {
    let took = started.elapsed().as_secs_f64();
    println!(
        "upgrade: {took:.2} s for {events} events ({:.2} s per million), {locked}",
        took * 1e6 / events as f64
    );
    println!();
}

/// The relations of `events` before and after, in bytes per event.
fn print_sizes(sizes_before: &[(String, f64)], sizes_after: &[(String, f64)]) {
    println!("| relation | before, B/event | after, B/event |");
    println!("| --- | ---: | ---: |");
    let mut names: Vec<&String> = sizes_before.iter().map(|(name, _)| name).collect();
    for (name, _) in sizes_after {
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
            of(sizes_before, name),
            of(sizes_after, name)
        );
    }
}

/// The migration files of `backend`, split into those up to `from` and those after.
type Files = Vec<(String, String)>;

fn migration_files(backend: &str, from: &str) -> Res<(Files, Files)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
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
        .partition(|(name, _)| name.get(..from.len()).is_some_and(|number| number <= from)))
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

/// [`fill`] on SQLite: the same events and streams, written as bare rows (the append's
/// guard triggers are dropped first: they check appends, not this data, and the migration
/// makes them again).
async fn fill_sqlite(conn: &mut SqliteConnection, events: u64) -> Res<()> {
    conn.execute("DROP TRIGGER events_guard; DROP TRIGGER events_advance_stream")
        .await?;
    let per_stream = events.div_ceil(STREAMS);
    sqlx::query(
        "WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < $2) \
         INSERT INTO streams (stream_id, category, version, event_count, created_at, updated_at) \
         SELECT 'account-' || n, 'account', $1, $1, 0, 0 FROM s",
    )
    .bind(per_stream as i64)
    .bind(STREAMS as i64)
    .execute(&mut *conn)
    .await?;
    let mut from = 0;
    while from < events {
        let to = (from + PER_TRANSACTION).min(events);
        sqlx::query(
            "WITH RECURSIVE r(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM r WHERE i + 1 < $2) \
             INSERT INTO events (event_id, stream_id, version, event_type, schema_version, \
                                 payload, recorded_at) \
             SELECT randomblob(16), 'account-' || (i % $3), i / $3 + 1, 'Deposited', 1, \
                    CAST(json_object( \
                        'account', 'ACC-' || substr('00000000' || (i % 997), -8), \
                        'amount', json_object('value', 100 + i % 9000, 'currency', 'EUR'), \
                        'reference', 'transfer ' || hex(randomblob(16)), \
                        'channel', 'mobile', \
                        'balance_after', (i * 7919) % 100000) AS BLOB), \
                    1700000000000000 + i \
             FROM r",
        )
        .bind(from as i64)
        .bind(to as i64)
        .bind(STREAMS as i64)
        .execute(&mut *conn)
        .await?;
        from = to;
    }
    Ok(())
}

/// `events` and its indexes on SQLite (`dbstat`), in bytes per event.
async fn sqlite_sizes(conn: &mut SqliteConnection, events: u64) -> Res<Vec<(String, f64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.name, sum(d.pgsize) FROM dbstat d JOIN sqlite_schema m ON m.name = d.name \
         WHERE m.tbl_name = 'events' GROUP BY d.name ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, bytes)| (name, bytes as f64 / events as f64))
        .collect())
}
