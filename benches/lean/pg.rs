//! The PostgreSQL side of `cargo bench --bench lean`: the log chronicle writes, the bytes
//! of each of its columns and indexes, the same log copied into every variant of
//! [`variants::VARIANTS`], and then, side by side in interleaved rounds, each table's
//! single-row INSERT rate and the WAL each writes per event, with chronicle's own append
//! and its parts beside them.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chronicle::{ExpectedVersion, NewEvent, Store};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use crate::harness::{self, Config, Op, Res, Schemas, fmt_rate, median, next_id};
use crate::log::{self, Booked, Shape};
use crate::variants::{INSERT_TYPE, REGISTER_STREAM, StreamRef, VARIANTS, Variant};

/// Connections of every pool, as the peers benchmark gives every system.
const POOL_SIZE: u32 = 10;
/// Concurrent writers of the timed inserts.
const CLIENTS: usize = 8;
/// Events a writer appends to a stream before it opens the next (short streams).
const STREAM_LEN: u64 = 10;
/// Appends per WAL measurement (after a quarter as many to warm up).
const WAL_APPENDS: u64 = 2_000;

/// A pool on `schema` that hands out connections without a ping (what chronicle's pool
/// does for connections used in the last 500 ms). Idle connections close after a second,
/// so the many tables' pools, used in turn, stay within the server's connection limit.
async fn pool(url: &str, schema: &str, size: u32) -> Res<PgPool> {
    let options = PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
    Ok(PgPoolOptions::new()
        .max_connections(size)
        .min_connections(0)
        .idle_timeout(Duration::from_secs(1))
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(options)
        .await?)
}

/// Runs `sql` (several statements) on the server, outside any schema.
async fn admin(url: &str, sql: &str) -> Res<()> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Bytes of one relation of a schema.
#[derive(Debug, Clone)]
struct Relation {
    name: String,
    /// `r` table (heap + TOAST + free-space and visibility maps), `i` index.
    kind: String,
    bytes: i64,
}

const RELATIONS_SQL: &str = "SELECT c.relname::text, c.relkind::text, \
         CASE WHEN c.relkind = 'i' THEN pg_relation_size(c.oid) \
              ELSE pg_total_relation_size(c.oid) - pg_indexes_size(c.oid) END::bigint \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'i', 'S', 'm') \
     ORDER BY 3 DESC, 1";

async fn relations(pool: &PgPool, schema: &str) -> Res<Vec<Relation>> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(RELATIONS_SQL)
        .bind(schema)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(name, kind, bytes)| Relation { name, kind, bytes })
        .collect())
}

/// A schema's footprint, per event.
struct Footprint {
    relations: Vec<Relation>,
    events: u64,
}

impl Footprint {
    fn per_event(&self, bytes: i64) -> f64 {
        bytes as f64 / self.events as f64
    }

    fn total(&self) -> f64 {
        self.per_event(self.relations.iter().map(|r| r.bytes).sum())
    }

    fn of(&self, name: &str) -> f64 {
        self.relations
            .iter()
            .filter(|r| r.name == name)
            .map(|r| self.per_event(r.bytes))
            .sum()
    }

    /// The `events` table's heap (with TOAST and maps), its indexes, everything else.
    fn split(&self) -> (f64, f64, f64) {
        let heap = self.of("events");
        let indexes: i64 = self
            .relations
            .iter()
            .filter(|r| r.kind == "i" && is_event_index(&r.name))
            .map(|r| r.bytes)
            .sum();
        let indexes = self.per_event(indexes);
        (heap, indexes, self.total() - heap - indexes)
    }

    fn listing(&self) -> String {
        self.relations
            .iter()
            .filter(|r| r.bytes > 0)
            .map(|r| format!("{} {:.1}", r.name, self.per_event(r.bytes)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn is_event_index(name: &str) -> bool {
    name.starts_with("events_")
}

/// Each column's average stored size in `events`, and how many rows have it.
async fn columns(pool: &PgPool, schema: &str) -> Res<Vec<(String, f64, i64)>> {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'events' ORDER BY ordinal_position",
    )
    .bind(schema)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for (name,) in names {
        let sql = format!(
            "SELECT avg(coalesce(pg_column_size(\"{name}\"), 0))::float8, count(\"{name}\") \
             FROM events"
        );
        let (avg, count): (f64, i64) = sqlx::query_as(AssertSqlSafe(sql)).fetch_one(pool).await?;
        out.push((name, avg, count));
    }
    let (row, tuples): (f64, i64) =
        sqlx::query_as("SELECT avg(pg_column_size(e.*))::float8, count(*) FROM events e")
            .fetch_one(pool)
            .await?;
    out.push((
        "(whole row, pg_column_size(events.*))".to_owned(),
        row,
        tuples,
    ));
    Ok(out)
}

/// One table of the comparison, filled and open.
struct Table {
    variant: &'static Variant,
    schema: String,
    pool: PgPool,
    /// How long the copy of the log took (its indexes in place, as in a migration that
    /// copies into the new table and swaps it in).
    copy: Duration,
}

/// Creates `variant`'s schema and copies the log of `src` in.
async fn build(
    schemas: &mut Schemas,
    url: &str,
    src: &str,
    variant: &'static Variant,
) -> Res<Table> {
    let schema = Schemas::schema_name(&format!("lean_{}", variant.name.replace('-', "_")));
    schemas.names.push(schema.clone());
    admin(
        url,
        &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""),
    )
    .await?;
    let pool = pool(url, &schema, POOL_SIZE).await?;
    let ddl: Vec<String> = if variant.ddl.is_empty() {
        harness::migrations("postgres")?
    } else {
        variant.ddl.iter().map(|s| (*s).to_owned()).collect()
    };
    let mut conn = pool.acquire().await?;
    for sql in ddl {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await?;
    }
    let started = std::time::Instant::now();
    for sql in variant.fill {
        let sql = sql.replace("{src}", &format!("\"{src}\""));
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await?;
    }
    drop(conn);
    Ok(Table {
        variant,
        schema,
        pool,
        copy: started.elapsed(),
    })
}

/// A writer's current stream in the timed inserts.
#[derive(Default, Clone)]
struct Cursor {
    /// The stream's number, text id and (keyed variants) key.
    stream: Option<(u64, String, i64)>,
    version: u64,
}

/// The per-task cursors of one system.
struct Cursors(Mutex<Vec<Cursor>>);

impl Cursors {
    fn new() -> Arc<Cursors> {
        Arc::new(Cursors(Mutex::new(vec![Cursor::default(); CLIENTS])))
    }

    fn take(&self, task: usize) -> Cursor {
        let cursors = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cursors[task % CLIENTS].clone()
    }

    fn put(&self, task: usize, cursor: Cursor) {
        let mut cursors = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cursors[task % CLIENTS] = cursor;
    }
}

/// The next (stream, version) of task `task`: a fresh stream every [`STREAM_LEN`] events,
/// registered first when `register` is given.
async fn advance(
    cursors: &Cursors,
    task: usize,
    register: Option<&PgPool>,
) -> Res<(u64, String, i64, u64)> {
    let mut cursor = cursors.take(task);
    if cursor.stream.is_none() || cursor.version >= STREAM_LEN {
        // Far above the log's streams.
        let n = 1_000_000 + next_id();
        let id = log::stream_id(n);
        let key = match register {
            Some(pool) => {
                sqlx::query_scalar(REGISTER_STREAM)
                    .bind(&id)
                    .fetch_one(pool)
                    .await?
            }
            None => 0,
        };
        cursor = Cursor {
            stream: Some((n, id, key)),
            version: 0,
        };
    }
    cursor.version += 1;
    let (n, id, key) = cursor.stream.clone().ok_or("no stream")?;
    let version = cursor.version;
    cursors.put(task, cursor);
    Ok((n, id, key, version))
}

/// One event into `table` by its variant's INSERT; 1 unit.
async fn insert_one(table: &Table, cursors: &Cursors, task: usize) -> Res<u64> {
    let variant = table.variant;
    let register = (variant.stream == StreamRef::Key).then_some(&table.pool);
    let (n, id, key, version) = advance(cursors, task, register).await?;
    let payload = Booked::json(n, version)?;
    let mut query = sqlx::query(variant.insert);
    if variant.event_id {
        query = query.bind(Uuid::now_v7());
    }
    query = match variant.stream {
        StreamRef::Text => query.bind(id),
        StreamRef::Key => query.bind(key),
    };
    query
        .bind(version as i64)
        .bind(payload)
        .execute(&table.pool)
        .await?;
    Ok(1)
}

/// chronicle's append on the V0 copy, built up by hand: the stream-row upsert that
/// checks the expected version, then with it the per-stream advisory lock first
/// (chronicle's `append_sql!` in `src/store/postgres.rs`, single-event form, reduced to
/// the columns the inserts here set).
macro_rules! upsert_then_insert {
    ($lock:literal, $values:literal) => {
        concat!(
            "WITH ",
            $lock,
            "base AS ( \
                 INSERT INTO streams AS s (stream_id, category, version, event_count, \
                     last_event_id) ",
            $values,
            " ON CONFLICT (stream_id) DO UPDATE SET version = s.version + 1, \
                 event_count = s.event_count + 1, last_event_id = $1, updated_at = now() \
                 WHERE s.status = 0 AND s.version = $3 - 1 \
                 RETURNING s.version - 1 AS base, s.stream_key) \
             INSERT INTO events (event_id, stream_key, version, type_id, payload) \
             SELECT $1, base.stream_key, base.base + 1, \
                    (SELECT type_id FROM event_types \
                     WHERE event_type = 'account.Deposited' AND schema_version = 1), \
                    $4 FROM base"
        )
    };
}

const UPSERT_THEN_INSERT: &str = upsert_then_insert!("", "VALUES ($2, 'account', 1, 1, $1)");

const LOCK_UPSERT_INSERT: &str = upsert_then_insert!(
    "stream_lock AS MATERIALIZED ( \
         SELECT pg_advisory_xact_lock(hashtextextended($2, 0)) AS locked), ",
    "SELECT $2, 'account', 1, 1, $1 FROM stream_lock"
);

/// One event by one of the hand-built appends on the V0 copy; fails when it wrote nothing.
async fn append_by_hand(
    table: &Table,
    sql: &'static str,
    cursors: &Cursors,
    task: usize,
) -> Res<u64> {
    let (n, id, _, version) = advance(cursors, task, None).await?;
    let done = sqlx::query(sql)
        .bind(Uuid::now_v7())
        .bind(id)
        .bind(version as i64)
        .bind(Booked::json(n, version)?)
        .execute(&table.pool)
        .await?;
    if done.rows_affected() != 1 {
        return Err(format!("{sql}: wrote {} rows", done.rows_affected()).into());
    }
    Ok(1)
}

/// One event through chronicle's `Store::append`.
async fn append_chronicle(store: &Store, cursors: &Cursors, task: usize) -> Res<u64> {
    let (n, id, _, version) = advance(cursors, task, None).await?;
    let event = NewEvent::from_serialize(INSERT_TYPE, &Booked::sample(n, version))?;
    store
        .append(id, ExpectedVersion::Exact(version - 1), vec![event])
        .await?;
    Ok(1)
}

/// A system of the timed comparison: its name, what it runs, the schema whose WAL is its.
struct System {
    name: String,
    what: String,
    schema: String,
    op: Op,
}

fn systems(tables: &Arc<Vec<Table>>, store: &Store, store_schema: &str) -> Vec<System> {
    let mut out = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let cursors = Cursors::new();
        let all = Arc::clone(tables);
        out.push(System {
            name: table.variant.name.to_owned(),
            what: format!(
                "single-row INSERT: `{}`",
                table.variant.insert.replace("  ", "")
            ),
            schema: table.schema.clone(),
            op: harness::op(move |task| {
                let (all, cursors) = (Arc::clone(&all), Arc::clone(&cursors));
                async move { insert_one(&all[i], &cursors, task).await }
            }),
        });
    }
    if let Some(v0) = tables.iter().position(|t| t.variant.name == "v0-today") {
        for (name, sql, what) in [
            (
                "v0+upsert",
                UPSERT_THEN_INSERT,
                "V0: the stream-row upsert checking the version, then the INSERT (one statement)",
            ),
            (
                "v0+lock+upsert",
                LOCK_UPSERT_INSERT,
                "V0: the advisory lock, the stream-row upsert, the INSERT (chronicle's statement)",
            ),
        ] {
            let cursors = Cursors::new();
            let all = Arc::clone(tables);
            out.push(System {
                name: name.to_owned(),
                what: what.to_owned(),
                schema: tables[v0].schema.clone(),
                op: harness::op(move |task| {
                    let (all, cursors) = (Arc::clone(&all), Arc::clone(&cursors));
                    async move { append_by_hand(&all[v0], sql, &cursors, task).await }
                }),
            });
        }
    }
    let cursors = Cursors::new();
    let store = store.clone();
    out.push(System {
        name: "chronicle".to_owned(),
        what: "`Store::append` of one event (`ExpectedVersion::Exact`)".to_owned(),
        schema: store_schema.to_owned(),
        op: harness::op(move |task| {
            let (store, cursors) = (store.clone(), Arc::clone(&cursors));
            async move { append_chronicle(&store, &cursors, task).await }
        }),
    });
    out
}

/// What the WAL of one system's appends held, per event.
#[derive(Debug, Clone, Default)]
struct Wal {
    /// Bytes of every WAL record of the appends' transactions (commit records included).
    records: f64,
    /// Of which full-page images.
    fpi: f64,
    /// The server's LSN difference over the appends (every session's WAL, so noisy).
    lsn: f64,
    /// Record bytes per event by relation (or resource manager for records without one).
    parts: BTreeMap<String, f64>,
}

/// The WAL records of the transactions that touched `schema` between two LSNs, grouped by
/// the relation of their first block (or their resource manager and type).
const WAL_SQL: &str = "WITH w AS ( \
         SELECT xid, resource_manager, record_type, record_length, fpi_length, \
                substring(block_ref from 'rel \\d+/\\d+/(\\d+)')::oid AS node \
         FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn)), \
     rels AS ( \
         SELECT c.relfilenode AS node, c.relname::text AS name FROM pg_class c \
         WHERE c.relnamespace = $3::regnamespace AND c.relfilenode <> 0 \
         UNION ALL \
         SELECT t.relfilenode, 'TOAST of ' || c.relname FROM pg_class c \
         JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.relnamespace = $3::regnamespace), \
     mine AS (SELECT DISTINCT xid FROM w JOIN rels USING (node) WHERE xid <> 0) \
     SELECT coalesce(r.name, w.resource_manager || ' ' || split_part(w.record_type, ' ', 1)), \
            sum(w.record_length)::bigint, sum(w.fpi_length)::bigint \
     FROM w LEFT JOIN rels r USING (node) \
     WHERE w.xid IN (SELECT xid FROM mine) GROUP BY 1 ORDER BY 2 DESC";

async fn lsn(pool: &PgPool) -> Res<String> {
    Ok(sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(pool)
        .await?)
}

/// [`WAL_APPENDS`] appends of `system` by one task, after a quarter as many to warm up.
async fn measure_wal(admin_pool: &PgPool, system: &System) -> Res<Wal> {
    for _ in 0..WAL_APPENDS / 4 {
        (system.op)(0).await?;
    }
    let start = lsn(admin_pool).await?;
    for _ in 0..WAL_APPENDS {
        (system.op)(0).await?;
    }
    let end = lsn(admin_pool).await?;
    let lsn_bytes: f64 =
        sqlx::query_scalar("SELECT pg_wal_lsn_diff($2::text::pg_lsn, $1::text::pg_lsn)::float8")
            .bind(&start)
            .bind(&end)
            .fetch_one(admin_pool)
            .await?;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(WAL_SQL)
        .bind(&start)
        .bind(&end)
        .bind(format!("\"{}\"", system.schema))
        .fetch_all(admin_pool)
        .await?;
    let n = WAL_APPENDS as f64;
    let mut wal = Wal {
        lsn: lsn_bytes / n,
        ..Wal::default()
    };
    for (part, bytes, fpi) in rows {
        wal.records += bytes as f64 / n;
        wal.fpi += fpi as f64 / n;
        *wal.parts.entry(part).or_default() += bytes as f64 / n;
    }
    Ok(wal)
}

/// The PostgreSQL workload: everything this module measures, printed as markdown.
pub async fn run(cfg: &Config, shape: Shape) -> Res<()> {
    harness::with_schemas(cfg, async |schemas: &mut Schemas| {
        let url = cfg.pg_url.clone();
        // chronicle's store and its log.
        let store = schemas.store("lean_chronicle", POOL_SIZE, |b| b).await?;
        let src = Schemas::schema_name("lean_chronicle");
        let took = log::write(&store, shape).await?;
        eprintln!(
            "  chronicle wrote {} events in {:.1} s",
            shape.events(),
            took.as_secs_f64()
        );
        let src_pool = pool(&url, &src, 2).await?;
        let native = Footprint {
            relations: relations(&src_pool, &src).await?,
            events: shape.events(),
        };
        print_columns(&columns(&src_pool, &src).await?, &native);
        // The log with its types and streams by name, as the candidates take it:
        // `{src}.events_flat`.
        sqlx::raw_sql(
            "CREATE VIEW events_flat AS \
             SELECT e.*, t.event_type, t.schema_version, s.stream_id FROM events e \
             JOIN event_types t USING (type_id) JOIN streams s USING (stream_key)",
        )
        .execute(&src_pool)
        .await?;

        // Every variant, filled with the same log.
        let mut tables = Vec::new();
        for variant in VARIANTS {
            let table = build(schemas, &url, &src, variant).await?;
            eprintln!("  {} built", variant.name);
            tables.push(table);
        }
        let mut footprints = Vec::new();
        for table in &tables {
            footprints.push(Footprint {
                relations: relations(&table.pool, &table.schema).await?,
                events: shape.events(),
            });
        }
        print_storage(&native, &tables, &footprints);

        // Inserts side by side.
        let tables = Arc::new(tables);
        let systems = systems(&tables, &store, &src);
        let ops: Vec<(&str, Op)> = systems
            .iter()
            .map(|s| (s.name.as_str(), Arc::clone(&s.op)))
            .collect();
        let rates = harness::interleave_systems(cfg, CLIENTS, &ops).await?;

        // WAL per event, one writer, interleaved rounds.
        let walinspect = ensure_walinspect(&url, &src).await?;
        let mut wals: Vec<Vec<Wal>> = vec![Vec::new(); systems.len()];
        if walinspect {
            for round in 1..=cfg.rounds {
                for (i, system) in systems.iter().enumerate() {
                    let wal = measure_wal(&src_pool, system).await?;
                    eprintln!(
                        "  wal round {round} {}: {:.0} B/event in records ({:.0} FPI), LSN {:.0}",
                        system.name, wal.records, wal.fpi, wal.lsn
                    );
                    wals[i].push(wal);
                }
            }
        }
        print_writes(&systems, &rates, &wals);
        for table in tables.iter() {
            table.pool.close().await;
        }
        src_pool.close().await;
        store.close().await;
        Ok(())
    })
    .await
}

/// Installs `pg_walinspect` in `schema` unless the database has it; false if it cannot.
async fn ensure_walinspect(url: &str, schema: &str) -> Res<bool> {
    let mut conn = PgConnection::connect(url).await?;
    let installed: Option<String> = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname = 'pg_walinspect'",
    )
    .fetch_optional(&mut conn)
    .await?;
    let ok = match installed {
        Some(_) => true,
        None => sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE EXTENSION pg_walinspect SCHEMA \"{schema}\""
        )))
        .execute(&mut conn)
        .await
        .map_err(|error| eprintln!("  no pg_walinspect, no WAL profile: {error}"))
        .is_ok(),
    };
    conn.close().await?;
    Ok(ok)
}

fn print_columns(columns: &[(String, f64, i64)], native: &Footprint) {
    println!("### chronicle's `events` table by column");
    println!();
    println!(
        "`avg(pg_column_size(col))` over the {} rows (NULL counts 0; a NULL costs a bit",
        native.events
    );
    println!("of the row's null bitmap).");
    println!();
    println!("| column | bytes (avg) | non-null rows |");
    println!("| --- | ---: | ---: |");
    for (name, avg, count) in columns {
        println!("| `{name}` | {avg:.1} | {count} |");
    }
    println!();
    println!("### chronicle's schema by relation, bytes per event");
    println!();
    println!("| relation | B/event |");
    println!("| --- | ---: |");
    for relation in &native.relations {
        println!(
            "| `{}` ({}) | {:.1} |",
            relation.name,
            if relation.kind == "i" {
                "index"
            } else {
                "table: heap, TOAST, maps"
            },
            native.per_event(relation.bytes)
        );
    }
    println!("| **total** | **{:.1}** |", native.total());
    println!();
}

fn print_storage(native: &Footprint, tables: &[Table], footprints: &[Footprint]) {
    println!("### The variants: bytes per event, the same log copied in position order");
    println!();
    println!(
        "| variant | total | `events` heap | `events` indexes | other tables | copy of the log, s | relations (B/event) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    let (h, i, o) = native.split();
    println!(
        "| chronicle as written by `Store::append` | {:.1} | {h:.1} | {i:.1} | {o:.1} | — | {} |",
        native.total(),
        native.listing()
    );
    for (table, footprint) in tables.iter().zip(footprints) {
        let (h, i, o) = footprint.split();
        println!(
            "| `{}`: {} | {:.1} | {h:.1} | {i:.1} | {o:.1} | {:.1} | {} |",
            table.variant.name,
            table.variant.what,
            footprint.total(),
            table.copy.as_secs_f64(),
            footprint.listing()
        );
    }
    println!();
}

fn print_writes(systems: &[System], rates: &[Vec<f64>], wals: &[Vec<Wal>]) {
    let minimal = systems
        .iter()
        .position(|s| s.name == "minimal")
        .map(|i| median(&rates[i]));
    println!(
        "### Writes: {CLIENTS} clients, one event per statement, a fresh stream every \
         {STREAM_LEN} events; WAL of {WAL_APPENDS} appends by one writer"
    );
    println!();
    println!(
        "| system | events/s (median) | per round | × minimal | WAL B/event (records) | of which FPI | LSN diff B/event | what |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |");
    for (i, system) in systems.iter().enumerate() {
        let rate = median(&rates[i]);
        let rounds = rates[i]
            .iter()
            .map(|r| fmt_rate(*r))
            .collect::<Vec<_>>()
            .join(" / ");
        let ratio = minimal.map_or("—".to_owned(), |m| format!("{:.2}", rate / m));
        let wal = |f: fn(&Wal) -> f64| {
            let values: Vec<f64> = wals[i].iter().map(f).collect();
            if values.is_empty() {
                "—".to_owned()
            } else {
                format!("{:.0}", median(&values))
            }
        };
        println!(
            "| `{}` | {} | {rounds} | {ratio} | {} | {} | {} | {} |",
            system.name,
            fmt_rate(rate),
            wal(|w| w.records),
            wal(|w| w.fpi),
            wal(|w| w.lsn),
            system.what.replace('|', "/")
        );
    }
    println!();
    println!("WAL record bytes per event by relation (median round by record bytes):");
    println!();
    for (i, system) in systems.iter().enumerate() {
        let mut rounds = wals[i].clone();
        if rounds.is_empty() {
            continue;
        }
        rounds.sort_by(|a, b| a.records.total_cmp(&b.records));
        let wal = &rounds[rounds.len() / 2];
        let mut parts: Vec<(&String, &f64)> = wal.parts.iter().collect();
        parts.sort_by(|a, b| b.1.total_cmp(a.1));
        let parts = parts
            .iter()
            .map(|(name, bytes)| format!("{name} {bytes:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!("- `{}`: {parts}", system.name);
    }
    println!();
}
