//! The SQLite side of `cargo bench --bench lean`: the log chronicle writes to a SQLite file
//! (`synchronous = NORMAL`), its bytes per table and index from the `dbstat` virtual table,
//! and the same log copied (`ATTACH`, `INSERT … SELECT` in position order) into files of
//! leaner variants and of cqrs-es's and the minimal table.

use std::path::Path;
use std::str::FromStr;

use chronicle::{SqliteDurability, Store};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, SqlitePool};

use crate::harness::{self, Res};
use crate::log::{self, Shape};

struct Variant {
    name: &'static str,
    what: &'static str,
    /// Creates the tables, then copies from the attached `src`.
    sql: &'static str,
}

/// The keyed tables of the lean variants.
const KEYED: &str = "
CREATE TABLE streams (stream_key INTEGER PRIMARY KEY, stream_id TEXT NOT NULL UNIQUE,
    category TEXT NOT NULL, version INTEGER NOT NULL, event_count INTEGER NOT NULL,
    last_event_id BLOB, status INTEGER NOT NULL, metadata TEXT, created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL);
INSERT INTO streams (stream_id, category, version, event_count, last_event_id, status,
    metadata, created_at, updated_at)
    SELECT stream_id, category, version, event_count, last_event_id, status, metadata,
    created_at, updated_at FROM src.streams ORDER BY created_at;
CREATE TABLE event_types (type_id INTEGER PRIMARY KEY, event_type TEXT NOT NULL,
    schema_version INTEGER NOT NULL, UNIQUE (event_type, schema_version));
INSERT INTO event_types (event_type, schema_version)
    SELECT DISTINCT event_type, schema_version FROM src_events ORDER BY 1, 2;
CREATE TABLE event_metadata (position INTEGER PRIMARY KEY, correlation_id TEXT,
    causation_id TEXT, tenant_id TEXT, user_id TEXT, metadata TEXT);
CREATE TABLE events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    BLOB    NOT NULL UNIQUE,
    stream_key  INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    type_id     INTEGER NOT NULL,
    payload     BLOB    NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (stream_key, version)
);
INSERT INTO events
    SELECT e.position, e.event_id, s.stream_key, e.version, t.type_id, e.payload, e.recorded_at
    FROM src_events e JOIN streams s USING (stream_id)
    JOIN event_types t ON t.event_type = e.event_type AND t.schema_version = e.schema_version
    ORDER BY e.position;
INSERT INTO event_metadata
    SELECT position, correlation_id, causation_id, tenant_id, user_id, metadata
    FROM src_events
    WHERE coalesce(correlation_id, causation_id, tenant_id, user_id, metadata) IS NOT NULL
    ORDER BY position;
CREATE INDEX events_type ON events (type_id);
";

const VARIANTS: &[Variant] = &[
    Variant {
        name: "s1-keyed",
        what: "stream key, (type, schema version) dictionary, sparse metadata in a side \
               table; type and time indexes kept",
        sql: "CREATE INDEX events_recorded_at ON events (recorded_at);",
    },
    Variant {
        name: "s2-keyed-no-time-index",
        what: "s1 without the `recorded_at` index (time ranges found through the position \
               instead: `recorded_at` rises with it)",
        sql: "",
    },
    Variant {
        name: "cqrs-es",
        what: "sqlite-es 0.5's `events` table, the same events",
        sql: "
CREATE TABLE events (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
    sequence integer CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL,
    event_version text NOT NULL, payload text NOT NULL, metadata text NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)) STRICT;
INSERT INTO events SELECT 'Account', substr(stream_id, 9), version, substr(event_type, 9),
    '1.0', CAST(payload AS TEXT), '{}' FROM src_events ORDER BY position;",
    },
    Variant {
        name: "minimal",
        what: "position, stream, version, JSON payload; a primary key and one unique index",
        sql: "
CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT NOT NULL,
    version INTEGER NOT NULL, payload TEXT NOT NULL, UNIQUE (stream_id, version));
INSERT INTO events SELECT position, stream_id, version, CAST(payload AS TEXT)
    FROM src_events ORDER BY position;",
    },
];

async fn open(path: &Path) -> Res<SqlitePool> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true);
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?)
}

/// Bytes per table and index (`dbstat`), and the file's size.
async fn footprint(pool: &SqlitePool, path: &Path) -> Res<(Vec<(String, i64)>, u64)> {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT name, sum(pgsize) FROM dbstat GROUP BY name HAVING sum(pgsize) > 0 \
         ORDER BY 2 DESC",
    )
    .fetch_all(pool)
    .await?;
    let file = std::fs::metadata(path)?.len();
    Ok((rows, file))
}

fn line(name: &str, what: &str, rows: &[(String, i64)], file: u64, events: u64) -> String {
    let per = |bytes: i64| bytes as f64 / events as f64;
    let listing = rows
        .iter()
        .map(|(name, bytes)| format!("{name} {:.1}", per(*bytes)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "| `{name}`: {what} | {:.1} | {listing} |",
        file as f64 / events as f64
    )
}

/// The SQLite workload, printed as markdown.
pub async fn run(shape: Shape) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("chronicle.db");
    let url = harness::sqlite_url(dir.path(), "chronicle.db");
    let store = Store::builder(url)
        .sqlite_durability(SqliteDurability::Normal)
        .open()
        .await?;
    let took = log::write(&store, shape).await?;
    eprintln!(
        "  chronicle (SQLite) wrote {} events in {:.1} s",
        shape.events(),
        took.as_secs_f64()
    );
    store.close().await;
    let pool = open(&src).await?;
    let (rows, file) = footprint(&pool, &src).await?;
    let columns: Vec<(String, f64)> = {
        let mut out = Vec::new();
        for column in ["event_id", "stream_key", "payload"] {
            let avg: f64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT avg(length({column})) FROM events"
            )))
            .fetch_one(&pool)
            .await?;
            out.push((column.to_owned(), avg));
        }
        out
    };
    pool.close().await;
    let events = shape.events();
    println!("### SQLite: bytes per event by table and index (`dbstat`, after a checkpoint)");
    println!();
    println!(
        "chronicle's columns, average stored length: {}.",
        columns
            .iter()
            .map(|(c, avg)| format!("`{c}` {avg:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!("| file | B/event (file) | tables and indexes (B/event) |");
    println!("| --- | ---: | --- |");
    println!(
        "{}",
        line(
            "chronicle",
            "as written by `Store::append`",
            &rows,
            file,
            events
        )
    );
    for variant in VARIANTS {
        let path = dir.path().join(format!("{}.db", variant.name));
        let pool = open(&path).await?;
        let keyed = variant.name.starts_with('s');
        let sql = format!(
            // The log with its types and streams by name, as the variants take it.
            "ATTACH DATABASE '{}' AS src; \
             CREATE TEMP VIEW src_events AS \
             SELECT e.*, t.event_type, t.schema_version, s.stream_id \
             FROM src.events e JOIN src.event_types t USING (type_id) \
             JOIN src.streams s USING (stream_key); {}{}",
            src.display(),
            if keyed { KEYED } else { "" },
            variant.sql
        );
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&pool).await?;
        sqlx::raw_sql("DROP VIEW src_events; DETACH DATABASE src")
            .execute(&pool)
            .await?;
        let (rows, file) = footprint(&pool, &path).await?;
        pool.close().await;
        println!("{}", line(variant.name, variant.what, &rows, file, events));
    }
    println!();
    Ok(())
}
