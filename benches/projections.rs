//! chronicle's projection benchmarks: a projection catching up on a log written beforehand
//! (doing nothing with each event, or upserting a row per event in the same database),
//! beside chronicle's own `read_all` of the same log in the same rounds; a projection
//! reading type and payload with the lean read (`EventParts::PAYLOAD`) beside the same
//! reading every part and beside a raw streamed SELECT of the columns the lean read
//! fetches (the ceiling), on a log whose events carry metadata; the cost of an
//! inline projection to appends (8 tasks appending single events for `CHRONICLE_BENCH_SECS`
//! per system and round, without and with an inline upsert); and the lag of a live
//! projection behind a writer.
//!
//! ```text
//! cargo bench --bench projections                      # everything
//! cargo bench --bench projections -- proj_catchup_noop # only workloads whose name contains this
//! CHRONICLE_BENCH_QUICK=1 cargo bench --bench projections   # smoke run
//! ```
//!
//! Environment: `CHRONICLE_PG_URL`, `CHRONICLE_BENCH_ROUNDS` and `CHRONICLE_BENCH_QUICK`
//! as in `benches/core.rs` (`CHRONICLE_BENCH_SECS` is not used: a round runs each system
//! once), and:
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `CHRONICLE_BENCH_PROJ_EVENTS` | `200000` (quick: `20000`) | events in the log of the catch-up workloads |
//! | `CHRONICLE_BENCH_LAG_SECS` | `10` (quick: `1`) | seconds of appends per system per round of the lag workloads |
//! | `CHRONICLE_BENCH_LAG_RATE` | `200` | appends per second in the lag workloads |
//!
//! The log is written with `Store::append` in appends of 100 events, one stream of 1,000
//! after another, so consecutive batches of a projection touch different rows (a batch of
//! 1,000 spans ten streams' appends). A catch-up is timed from `spawn` until
//! `wait_for_idle` returns, by a projection with a name of its own (so it starts at the
//! beginning of the log); it is checked to have applied every event and to end at the
//! log's last position. Catch-up projections poll every 10 ms instead of 500 ms: the poll
//! interval only matters once the log is exhausted, and `wait_for_idle` waits for the pass
//! after the one that found it exhausted, which with the default would add up to half a
//! second of sleep to every catch-up.
//!
//! A lag run spawns a projection with the default settings, lets it catch up, then
//! appends single events at a steady rate and notes, per event, when `append` returned to
//! the writer and when `apply` saw the event (both `Instant`s in this process). Each round
//! has three runs: the writer on the projection's store, whose log already holds the
//! catch-up workloads' log (the realistic case, and the one with the target); the same on
//! a store whose log started empty; and the writer on a second store opened on the first
//! one's database, as another process would: on PostgreSQL its appends reach the
//! projection through LISTEN/NOTIFY, on SQLite at the projection's next poll.

mod harness;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chronicle::{
    EventMetadata, EventParts, ExpectedVersion, LogPosition, NewEvent, Projection,
    ProjectionContext, ProjectionError, RecordedEvent, Store,
};
use futures::TryStreamExt;
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

use harness::{
    Config, Deposited, Met, Rates, Res, Row, Schemas, Throughput, fmt_rate, interleave,
    interleave_units, median, next_id, ratio_row, sqlite_reader, sqlite_url, unit_op, with_schemas,
};

/// Events per append when the log is written.
const FILL_BATCH: u64 = 100;
/// Streams the log's appends go to, in turn.
const STREAMS: u64 = 1_000;
/// Events in the log of the catch-up workloads (default 200,000; quick: 20,000).
const PROJ_EVENTS_ENV: &str = "CHRONICLE_BENCH_PROJ_EVENTS";
/// Seconds of appends per system per round of the lag workloads (default 10; quick: 1).
const LAG_SECS_ENV: &str = "CHRONICLE_BENCH_LAG_SECS";
/// Appends per second in the lag workloads (default 200).
const LAG_RATE_ENV: &str = "CHRONICLE_BENCH_LAG_RATE";
/// The runner's default batch size, and a smaller one shown for information.
const BATCH_DEFAULT: usize = 10_000;
const BATCH_SMALL: usize = 1_000;
/// The poll interval of the catch-up projections (see the module's documentation).
const CATCHUP_POLL: Duration = Duration::from_millis(10);
/// The upsert projection's table, in the store's own database (schema or file).
const BALANCES: &str = "proj_balances";
const CREATE_BALANCES: &str =
    "CREATE TABLE proj_balances (stream_id TEXT PRIMARY KEY, amount BIGINT NOT NULL)";
const UPSERT_PG: &str = "INSERT INTO proj_balances (stream_id, amount) VALUES ($1, $2) \
     ON CONFLICT (stream_id) DO UPDATE SET amount = proj_balances.amount + excluded.amount";
const UPSERT_BATCH_PG: &str = "INSERT INTO proj_balances (stream_id, amount) \
     SELECT * FROM unnest($1::text[], $2::bigint[]) \
     ON CONFLICT (stream_id) DO UPDATE SET amount = proj_balances.amount + excluded.amount";
const UPSERT_SQLITE: &str = "INSERT INTO proj_balances (stream_id, amount) VALUES (?1, ?2) \
     ON CONFLICT (stream_id) DO UPDATE SET amount = proj_balances.amount + excluded.amount";

// ---------------------------------------------------------------------------------------
// The log

/// What the catch-up workloads' log holds.
#[derive(Debug, Clone, Copy)]
struct Log {
    events: u64,
    /// The position of its last event.
    last: LogPosition,
    /// The sum of every event's `amount`.
    amounts: u64,
}

/// Writes `total` `Deposited` events in appends of `FILL_BATCH`, the appends going to the
/// `STREAMS` streams in turn, then reads the log once (which warms the caches) to find
/// its last position and check its length.
async fn fill_log(store: &Store, total: u64) -> Res<Log> {
    fill_log_with(store, total, false).await
}

/// [`fill_log`], each event carrying metadata when `metadata` says so: correlation,
/// causation, tenant and user ids, and a request id (in the extra metadata's JSON), as
/// an application that traces its commands writes them.
async fn fill_log_with(store: &Store, total: u64, metadata: bool) -> Res<Log> {
    let started = Instant::now();
    let mut written = 0;
    let mut amounts = 0;
    let mut append = 0;
    while written < total {
        let count = (total - written).min(FILL_BATCH);
        let samples: Vec<Deposited> = (written..written + count).map(Deposited::sample).collect();
        amounts += samples.iter().map(|d| d.amount).sum::<u64>();
        let events = samples
            .iter()
            .map(|d| {
                let event = NewEvent::from_serialize("deposited", d)?;
                Ok::<_, chronicle::Error>(if metadata {
                    event.metadata(EventMetadata {
                        correlation_id: Some(format!("order-{append:08}")),
                        causation_id: Some(format!("command-{append:08}")),
                        tenant_id: Some("tenant-eu-1".to_owned()),
                        user_id: Some("user-4711".to_owned()),
                        request_id: Some(format!("request-{append:08}")),
                        ..EventMetadata::default()
                    })
                } else {
                    event
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        store
            .append(
                format!("acct-{}", append % STREAMS),
                ExpectedVersion::Any,
                events,
            )
            .await?;
        written += count;
        append += 1;
    }
    let wrote = started.elapsed();
    let (read, last) = read_log(store).await?;
    if read.units != total {
        return Err(format!("read_all returned {} events, expected {total}", read.units).into());
    }
    eprintln!(
        "  wrote {} events to {STREAMS} streams in {:.1} s; first read_all {:.2} s",
        fmt_rate(total as f64),
        wrote.as_secs_f64(),
        read.elapsed.as_secs_f64()
    );
    Ok(Log {
        events: total,
        last,
        amounts,
    })
}

/// The baseline: chronicle's `read_all` from the start, every event consumed (not
/// decoded: the no-op projection does not decode either); returns the last position too.
async fn read_log(store: &Store) -> Res<(Throughput, LogPosition)> {
    let started = Instant::now();
    let mut events = std::pin::pin!(store.read_all(LogPosition::START));
    let mut units = 0;
    let mut last = LogPosition::START;
    while let Some(event) = events.try_next().await? {
        last = std::hint::black_box(&event).log_position();
        units += 1;
    }
    let read = Throughput {
        units,
        elapsed: started.elapsed(),
    };
    Ok((read, last))
}

/// [`read_log`], failing unless it read the whole log.
async fn read_log_checked(store: Store, log: Log) -> Res<Throughput> {
    let (read, last) = read_log(&store).await?;
    if read.units != log.events || last != log.last {
        return Err(format!(
            "read_all returned {} events up to {last}, expected {} up to {}",
            read.units, log.events, log.last
        )
        .into());
    }
    Ok(read)
}

// ---------------------------------------------------------------------------------------
// Projections

/// A name no projection of this process has had: its checkpoint starts at the beginning.
fn fresh_name(kind: &str) -> String {
    format!("bench-{kind}-{}", next_id())
}

/// Does nothing with each event: what is left is the runner's own work.
struct Noop {
    name: String,
}

impl Projection for Noop {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        _ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        std::hint::black_box(event);
        Ok(())
    }
}

/// Adds each event's `amount` to its stream's row of `proj_balances`, through the batch's
/// transaction: one upsert statement per event, or, when `batched`, one statement per
/// batch (`apply_batch`, the amounts summed per stream first).
struct Upsert {
    name: String,
    batched: bool,
}

impl Projection for Upsert {
    fn name(&self) -> &str {
        &self.name
    }

    fn event_types(&self) -> &[&str] {
        &["deposited"]
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let amount = i64::try_from(event.data::<Deposited>()?.amount)?;
        if let Some(conn) = ctx.postgres() {
            sqlx::query(UPSERT_PG)
                .bind(event.stream_id.as_str())
                .bind(amount)
                .execute(conn)
                .await?;
        } else if let Some(conn) = ctx.sqlite() {
            sqlx::query(UPSERT_SQLITE)
                .bind(event.stream_id.as_str())
                .bind(amount)
                .execute(conn)
                .await?;
        } else {
            return Err("the upsert projection needs a SQL store".into());
        }
        Ok(())
    }

    async fn apply_batch(
        &self,
        events: &[RecordedEvent],
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        if !self.batched {
            for event in events {
                self.apply(event, ctx).await?;
            }
            return Ok(());
        }
        // One row per stream: a statement may not update the same row twice.
        let mut sums: HashMap<&str, i64> = HashMap::new();
        for event in events {
            let amount = i64::try_from(event.data::<Deposited>()?.amount)?;
            *sums.entry(event.stream_id.as_str()).or_default() += amount;
        }
        if let Some(conn) = ctx.postgres() {
            let (streams, amounts): (Vec<&str>, Vec<i64>) = sums.into_iter().unzip();
            sqlx::query(UPSERT_BATCH_PG)
                .bind(streams)
                .bind(amounts)
                .execute(conn)
                .await?;
        } else if let Some(conn) = ctx.sqlite() {
            let mut insert =
                sqlx::QueryBuilder::new("INSERT INTO proj_balances (stream_id, amount) ");
            insert.push_values(sums, |mut row, (stream, amount)| {
                row.push_bind(stream).push_bind(amount);
            });
            insert.push(
                " ON CONFLICT (stream_id) DO UPDATE \
                 SET amount = proj_balances.amount + excluded.amount",
            );
            insert.build().execute(conn).await?;
        } else {
            return Err("the upsert projection needs a SQL store".into());
        }
        Ok(())
    }
}

/// Reads each event's type and payload, asking the runner for `parts` of the events.
struct TypePayload {
    name: String,
    parts: EventParts,
}

impl Projection for TypePayload {
    fn name(&self) -> &str {
        &self.name
    }

    fn event_parts(&self) -> EventParts {
        self.parts
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        _ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        std::hint::black_box((event.event_type.as_str(), event.payload_json()));
        Ok(())
    }
}

/// When each event reached `apply`, by event id.
type Seen = Arc<Mutex<HashMap<Uuid, Instant>>>;

/// Notes when each event reaches `apply`.
struct Stamp {
    name: String,
    seen: Seen,
}

impl Projection for Stamp {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        _ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let now = Instant::now();
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(event.id, now);
        Ok(())
    }
}

/// One catch-up of `log` by `projection` (which must start at the beginning), timed from
/// `spawn` until `wait_for_idle` returns; fails unless it applied every event and its
/// checkpoint is the log's last position.
async fn catch_up<P: Projection>(
    store: &Store,
    projection: P,
    batch_size: usize,
    log: Log,
) -> Res<Throughput> {
    let started = Instant::now();
    let handle = store
        .projections()
        .batch_size(batch_size)
        .poll_interval(CATCHUP_POLL)
        .spawn(projection);
    // Both from the start: the last batch's commit, and the idle pass after the one that
    // found the log exhausted.
    let at_last = async {
        handle.wait_until(log.last).await?;
        Ok::<_, chronicle::Error>(started.elapsed())
    };
    let at_idle = async {
        handle.wait_for_idle().await?;
        Ok::<_, chronicle::Error>(started.elapsed())
    };
    let (at_last, at_idle) = futures::try_join!(at_last, at_idle)?;
    let status = handle.stop().await?;
    if status.applied != log.events || status.position != log.last {
        return Err(format!(
            "catch-up applied {} events up to {}, expected {} up to {}",
            status.applied, status.position, log.events, log.last
        )
        .into());
    }
    eprintln!(
        "    batch {batch_size}: last batch committed at {:.2} s, idle at {:.2} s",
        at_last.as_secs_f64(),
        at_idle.as_secs_f64()
    );
    Ok(Throughput {
        units: status.applied,
        elapsed: at_idle,
    })
}

// ---------------------------------------------------------------------------------------
// The read model's table

/// Where the upsert projection's table can be reached outside the projection.
#[derive(Clone)]
enum Balances {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Balances {
    async fn execute(&self, sql: &str) -> Res<()> {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Balances::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ())?,
            Balances::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ())?,
        }
        Ok(())
    }

    /// Empties the table before a catch-up (not timed).
    async fn clear(&self) -> Res<()> {
        self.execute(&format!("DELETE FROM {BALANCES}")).await
    }

    /// Fails unless the table holds one row per stream and every amount of the log.
    async fn check(&self, log: Log) -> Res<()> {
        let sql = format!("SELECT COUNT(*), CAST(SUM(amount) AS BIGINT) FROM {BALANCES}");
        let sql = AssertSqlSafe(sql);
        let (rows, sum): (i64, Option<i64>) = match self {
            Balances::Postgres(pool) => sqlx::query_as(sql).fetch_one(pool).await?,
            Balances::Sqlite(pool) => sqlx::query_as(sql).fetch_one(pool).await?,
        };
        let want_rows = STREAMS.min(log.events.div_ceil(FILL_BATCH));
        if u64::try_from(rows)? != want_rows
            || sum.map(u64::try_from).transpose()? != Some(log.amounts)
        {
            return Err(format!(
                "{BALANCES} holds {rows} rows summing to {sum:?}, expected {want_rows} rows \
                 summing to {}",
                log.amounts
            )
            .into());
        }
        Ok(())
    }
}

/// One catch-up by a fresh [`Upsert`] projection on an emptied table, then the table
/// checked.
async fn upsert_catch_up(
    store: &Store,
    balances: &Balances,
    batched: bool,
    log: Log,
) -> Res<Throughput> {
    balances.clear().await?;
    let name = fresh_name("upsert");
    let done = catch_up(store, Upsert { name, batched }, BATCH_DEFAULT, log).await?;
    balances.check(log).await?;
    Ok(done)
}

// ---------------------------------------------------------------------------------------
// Catch-up workloads

fn catchup_workload(name: &str, backend: &str, what: &str, batch: usize, log: Log) -> String {
    format!(
        "{name}: {backend}, catch-up of {} events by a {what} projection, batch {} \
         (events/s, spawn to idle)",
        fmt_rate(log.events as f64),
        fmt_rate(batch as f64)
    )
}

/// Workload 1: `read_all`, then no-op catch-ups with batches of 10,000 (the default) and
/// 1,000, in every round.
async fn noop_rows(cfg: &Config, name: &str, backend: &str, store: Store) -> Res<Vec<Row>> {
    let events = cfg.size(PROJ_EVENTS_ENV, 200_000)?;
    let log = fill_log(&store, events).await?;
    let (s1, s2) = (store.clone(), store.clone());
    let systems = [
        (
            "chronicle read_all",
            unit_op(move || read_log_checked(store.clone(), log)),
        ),
        (
            "no-op projection, batch 10,000 (default)",
            unit_op(move || {
                let store = s1.clone();
                async move {
                    let noop = Noop {
                        name: fresh_name("noop"),
                    };
                    catch_up(&store, noop, BATCH_DEFAULT, log).await
                }
            }),
        ),
        (
            "no-op projection, batch 1,000",
            unit_op(move || {
                let store = s2.clone();
                async move {
                    let noop = Noop {
                        name: fresh_name("noop"),
                    };
                    catch_up(&store, noop, BATCH_SMALL, log).await
                }
            }),
        ),
    ];
    let [read_all, default, small] = three(interleave_units(cfg, &systems).await?)?;
    let default = Rates {
        baseline: read_all.clone(),
        chronicle: default,
    };
    let small = Rates {
        baseline: read_all,
        chronicle: small,
    };
    Ok(vec![
        ratio_row(
            &catchup_workload(name, backend, "no-op", BATCH_DEFAULT, log),
            "events/s",
            &default,
            0.80,
            "≥ 80% of chronicle read_all",
        ),
        Row {
            met: Met::Info,
            target: "—".to_owned(),
            ..ratio_row(
                &catchup_workload(name, backend, "no-op", BATCH_SMALL, log),
                "events/s",
                &small,
                0.0,
                "",
            )
        },
    ])
}

fn three(rates: Vec<Vec<f64>>) -> Res<[Vec<f64>; 3]> {
    <[Vec<f64>; 3]>::try_from(rates)
        .map_err(|rates| format!("expected 3 systems' rates, got {}", rates.len()).into())
}

/// 1a. SQLite file (default durability): no-op catch-up against `read_all`.
async fn proj_catchup_noop_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(sqlite_url(dir.path(), "noop.db")).await?;
    noop_rows(cfg, "proj_catchup_noop_sqlite", "SQLite", store).await
}

/// 1b. PostgreSQL: no-op catch-up against `read_all`.
async fn proj_catchup_noop_pg(cfg: &Config) -> Res<Vec<Row>> {
    with_schemas(cfg, async |schemas: &mut Schemas| {
        let store = schemas.store("proj_noop", 4, |b| b).await?;
        noop_rows(cfg, "proj_catchup_noop_pg", "PostgreSQL", store).await
    })
    .await
}

/// Workload 2: `read_all`, then an upsert catch-up with batches of 100, in every round.
/// Workload 2: `read_all`, then catch-ups by the upsert projection writing one statement
/// per event and one per batch, in every round.
async fn upsert_rows(
    cfg: &Config,
    name: &str,
    backend: &str,
    store: Store,
    balances: Balances,
    target: Option<f64>,
) -> Res<Vec<Row>> {
    let events = cfg.size(PROJ_EVENTS_ENV, 200_000)?;
    let log = fill_log(&store, events).await?;
    balances.execute(CREATE_BALANCES).await?;
    let (s1, s2, b1, b2) = (store.clone(), store.clone(), balances.clone(), balances);
    let systems = [
        (
            "chronicle read_all",
            unit_op(move || read_log_checked(store.clone(), log)),
        ),
        (
            "upsert projection, a statement per event",
            unit_op(move || {
                let (store, balances) = (s1.clone(), b1.clone());
                async move { upsert_catch_up(&store, &balances, false, log).await }
            }),
        ),
        (
            "upsert projection, a statement per batch",
            unit_op(move || {
                let (store, balances) = (s2.clone(), b2.clone());
                async move { upsert_catch_up(&store, &balances, true, log).await }
            }),
        ),
    ];
    let [read_all, per_event, per_batch] = three(interleave_units(cfg, &systems).await?)?;
    let row = |what: &str, chronicle: Vec<f64>| {
        let rates = Rates {
            baseline: read_all.clone(),
            chronicle,
        };
        let upserts = median(&rates.chronicle);
        let workload = catchup_workload(name, backend, what, BATCH_DEFAULT, log);
        let (met, target) = match target {
            Some(target) => (
                Met::from(upserts >= target),
                format!("≥ {} events/s", fmt_rate(target)),
            ),
            None => (Met::Info, "—".to_owned()),
        };
        Row {
            met,
            target,
            ..ratio_row(&workload, "events/s", &rates, 0.0, "")
        }
    };
    Ok(vec![
        row("1-upsert-per-event", per_event),
        row("1-upsert-per-batch (`apply_batch`)", per_batch),
    ])
}

/// 2a. PostgreSQL: upsert catch-up, against the absolute target.
async fn proj_catchup_upsert_pg(cfg: &Config) -> Res<Vec<Row>> {
    with_schemas(cfg, async |schemas: &mut Schemas| {
        let store = schemas.store("proj_upsert", 4, |b| b).await?;
        let schema = schemas.names.last().cloned().unwrap_or_default();
        let pool = schemas.pool_on(&schema, 1).await?;
        let balances = Balances::Postgres(pool);
        let name = "proj_catchup_upsert_pg";
        upsert_rows(cfg, name, "PostgreSQL", store, balances, Some(20_000.0)).await
    })
    .await
}

/// 2b. SQLite file: upsert catch-up, for information.
async fn proj_catchup_upsert_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let url = sqlite_url(dir.path(), "upsert.db");
    let store = Store::open(url.clone()).await?;
    let balances = Balances::Sqlite(sqlite_reader(&url).await?);
    upsert_rows(
        cfg,
        "proj_catchup_upsert_sqlite",
        "SQLite",
        store,
        balances,
        None,
    )
    .await
}

/// The columns a lean read (`EventParts::PAYLOAD`) fetches for real, in position order:
/// the ceiling of a type + payload catch-up is one streamed SELECT of them.
const RAW_LEAN_PG: &str = "SELECT position, transaction_id, event_id, stream_id, version, \
     event_type, schema_version, payload, recorded_at \
     FROM events JOIN event_types USING (type_id) \
     JOIN (SELECT stream_key, stream_id FROM streams) AS s USING (stream_key) \
     ORDER BY transaction_id, position";
const RAW_LEAN_SQLITE: &str = "SELECT position, event_id, stream_id, version, event_type, \
     schema_version, payload, recorded_at FROM events JOIN event_types USING (type_id) \
     JOIN (SELECT stream_key, stream_id FROM streams) AS s USING (stream_key) \
     ORDER BY position";

/// The ceiling of a type + payload catch-up: one streamed sqlx SELECT of the columns the
/// lean read fetches, every value decoded, on the store's database.
#[derive(Clone)]
enum RawLog {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl RawLog {
    async fn scan(&self, log: Log) -> Res<Throughput> {
        use sqlx::Row as _;
        let started = Instant::now();
        let mut units = 0;
        match self {
            RawLog::Postgres(pool) => {
                let mut rows = sqlx::query(RAW_LEAN_PG).fetch(pool);
                while let Some(row) = rows.try_next().await? {
                    std::hint::black_box((
                        row.try_get::<i64, _>(0)?,
                        row.try_get_unchecked::<i64, _>(1)?,
                        row.try_get::<Uuid, _>(2)?,
                        row.try_get::<&str, _>(3)?,
                        row.try_get::<i32, _>(4)?,
                        row.try_get::<&str, _>(5)?,
                        row.try_get::<i64, _>(6)?,
                        row.try_get::<&[u8], _>(7)?,
                        row.try_get::<chrono::DateTime<chrono::Utc>, _>(8)?,
                    ));
                    units += 1;
                }
            }
            RawLog::Sqlite(pool) => {
                let mut rows = sqlx::query(RAW_LEAN_SQLITE).fetch(pool);
                while let Some(row) = rows.try_next().await? {
                    std::hint::black_box((
                        row.try_get::<i64, _>(0)?,
                        row.try_get::<Uuid, _>(1)?,
                        row.try_get::<&str, _>(2)?,
                        row.try_get::<i64, _>(3)?,
                        row.try_get::<&str, _>(4)?,
                        row.try_get::<i64, _>(5)?,
                        row.try_get::<&[u8], _>(6)?,
                        row.try_get::<i64, _>(7)?,
                    ));
                    units += 1;
                }
            }
        }
        if units != log.events {
            return Err(format!("the raw scan read {units} events of {}", log.events).into());
        }
        Ok(Throughput {
            units,
            elapsed: started.elapsed(),
        })
    }
}

/// Workload 3: catch-ups of a log whose events carry metadata by a projection that reads
/// the type and payload, asking for every part of the events, then for the payload only
/// (`EventParts::PAYLOAD`, the lean read), beside the raw streamed SELECT of the same
/// columns, in every round.
async fn lean_rows(
    cfg: &Config,
    name: &str,
    backend: &str,
    store: Store,
    raw: RawLog,
) -> Res<Vec<Row>> {
    let events = cfg.size(PROJ_EVENTS_ENV, 200_000)?;
    let log = fill_log_with(&store, events, true).await?;
    let catch_up_with = move |store: Store, parts: EventParts| {
        move || {
            let store = store.clone();
            async move {
                let projection = TypePayload {
                    name: fresh_name("type-payload"),
                    parts,
                };
                catch_up(&store, projection, BATCH_DEFAULT, log).await
            }
        }
    };
    let systems = [
        (
            "type+payload projection, every part",
            unit_op(catch_up_with(store.clone(), EventParts::ALL)),
        ),
        (
            "type+payload projection, lean (payload only)",
            unit_op(catch_up_with(store, EventParts::PAYLOAD)),
        ),
        (
            "raw streamed SELECT of the same columns",
            unit_op(move || {
                let raw = raw.clone();
                async move { raw.scan(log).await }
            }),
        ),
    ];
    let rates = interleave_units(cfg, &systems).await?;
    let [full, lean, raw] = <[Vec<f64>; 3]>::try_from(rates)
        .map_err(|rates| format!("expected 3 systems' rates, got {}", rates.len()))?;
    let against_full = Rates {
        baseline: full,
        chronicle: lean.clone(),
    };
    let against_raw = Rates {
        baseline: raw,
        chronicle: lean,
    };
    let what =
        "type+payload (lean: EventParts::PAYLOAD; baseline: every part; events with metadata)";
    let what_raw = "type+payload, lean (baseline: raw streamed SELECT of the same columns)";
    Ok(vec![
        Row {
            met: Met::Info,
            target: "—".to_owned(),
            ..ratio_row(
                &catchup_workload(name, backend, what, BATCH_DEFAULT, log),
                "events/s",
                &against_full,
                0.0,
                "",
            )
        },
        ratio_row(
            &catchup_workload(name, backend, what_raw, BATCH_DEFAULT, log),
            "events/s",
            &against_raw,
            0.9,
            "≥ 90% of raw (issue 23)",
        ),
    ])
}

/// 3a. PostgreSQL: the lean read against the whole one.
async fn proj_catchup_lean_pg(cfg: &Config) -> Res<Vec<Row>> {
    with_schemas(cfg, async |schemas: &mut Schemas| {
        let store = schemas.store("proj_lean", 4, |b| b).await?;
        let schema = schemas.names.last().cloned().unwrap_or_default();
        let raw = RawLog::Postgres(schemas.pool_on(&schema, 1).await?);
        lean_rows(cfg, "proj_catchup_lean_pg", "PostgreSQL", store, raw).await
    })
    .await
}

/// 3b. SQLite file: the lean read against the whole one.
async fn proj_catchup_lean_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let url = sqlite_url(dir.path(), "lean.db");
    let store = Store::open(url.clone()).await?;
    let raw = RawLog::Sqlite(sqlite_reader(&url).await?);
    lean_rows(cfg, "proj_catchup_lean_sqlite", "SQLite", store, raw).await
}

// ---------------------------------------------------------------------------------------
// Inline mode

/// Appenders in the inline workloads.
const INLINE_TASKS: usize = 8;

/// Appends one `Deposited` event to one of 100 streams of task `task`.
async fn append_one(store: &Store, task: usize) -> Res<u64> {
    let n = next_id();
    let event = NewEvent::from_serialize("deposited", &Deposited::sample(n))?;
    let stream = format!("inline-{task}-{}", n % 100);
    store
        .append(stream, ExpectedVersion::Any, vec![event])
        .await?;
    Ok(1)
}

/// Workload 4: single-event appends by 8 tasks on a store without, then with, an inline
/// projection upserting a row per event in the append's transaction.
async fn inline_rows(
    cfg: &Config,
    name: &str,
    backend: &str,
    plain: Store,
    inline: Store,
) -> Res<Vec<Row>> {
    let rates = interleave(
        cfg,
        ("append", "append + inline upsert"),
        INLINE_TASKS,
        move |task| {
            let store = plain.clone();
            async move { append_one(&store, task).await }
        },
        move |task| {
            let store = inline.clone();
            async move { append_one(&store, task).await }
        },
    )
    .await?;
    Ok(vec![Row {
        met: Met::Info,
        target: "—".to_owned(),
        ..ratio_row(
            &format!(
                "{name}: {backend}, single-event appends by {INLINE_TASKS} tasks with an inline \
                 projection upserting a row per event (baseline: the same appends without it)"
            ),
            "appends/s",
            &rates,
            0.0,
            "",
        )
    }])
}

/// The upsert projection, inline.
fn inline_upsert() -> Upsert {
    Upsert {
        name: "inline-balances".to_owned(),
        batched: false,
    }
}

/// 4a. PostgreSQL.
async fn proj_inline_append_pg(cfg: &Config) -> Res<Vec<Row>> {
    with_schemas(cfg, async |schemas: &mut Schemas| {
        let plain = schemas.store("inline_plain", 8, |b| b).await?;
        let inline = schemas
            .store("inline_upsert", 8, |b| b.inline_projection(inline_upsert()))
            .await?;
        let schema = schemas.names.last().cloned().unwrap_or_default();
        Balances::Postgres(schemas.pool_on(&schema, 1).await?)
            .execute(CREATE_BALANCES)
            .await?;
        inline_rows(cfg, "proj_inline_append_pg", "PostgreSQL", plain, inline).await
    })
    .await
}

/// 4b. SQLite files.
async fn proj_inline_append_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let plain = Store::open(sqlite_url(dir.path(), "plain.db")).await?;
    let url = sqlite_url(dir.path(), "inline.db");
    let inline = Store::builder(url.clone())
        .inline_projection(inline_upsert())
        .open()
        .await?;
    Balances::Sqlite(sqlite_reader(&url).await?)
        .execute(CREATE_BALANCES)
        .await?;
    inline_rows(cfg, "proj_inline_append_sqlite", "SQLite", plain, inline).await
}

// ---------------------------------------------------------------------------------------
// Live lag

/// The lag workloads' settings.
#[derive(Debug, Clone, Copy)]
struct LagSettings {
    duration: Duration,
    rate: u64,
}

impl LagSettings {
    fn from_cfg(cfg: &Config) -> Res<Self> {
        Ok(LagSettings {
            duration: Duration::from_secs(cfg.size(LAG_SECS_ENV, 10)?.max(1)),
            rate: harness::env_or(LAG_RATE_ENV, 200_u64)?.max(1),
        })
    }
}

/// The lags of one run: from `append` returning to `apply` seeing the event.
struct Lags {
    lags: Vec<Duration>,
    /// Events `apply` saw before their `append` had returned to the writer (counted as 0).
    early: usize,
}

/// Spawns the projection `name` on `projected` (default batch size and poll interval) and
/// lets it catch up (the first time, with the whole history), then appends single events
/// through `writer` at `settings.rate` for `settings.duration`, and returns each event's
/// lag.
async fn lag_run(
    projected: &Store,
    writer: &Store,
    name: &str,
    settings: LagSettings,
) -> Res<Lags> {
    let seen: Seen = Arc::default();
    let handle = projected.projections().spawn(Stamp {
        name: name.to_owned(),
        seen: Arc::clone(&seen),
    });
    handle.wait_for_idle().await?;
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / settings.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = Instant::now() + settings.duration;
    while Instant::now() < deadline {
        tick.tick().await;
        let n = next_id();
        let event = NewEvent::from_serialize("deposited", &Deposited::sample(n))?;
        let id = event.event_id();
        writer
            .append(
                format!("lag-{}", n % STREAMS),
                ExpectedVersion::Any,
                vec![event],
            )
            .await?;
        sent.push((id, Instant::now()));
    }
    handle.wait_for_idle().await?;
    handle.stop().await?;
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
    let mut lags = Vec::with_capacity(sent.len());
    let mut early = 0;
    for (id, returned) in sent {
        let at = seen
            .get(&id)
            .ok_or_else(|| format!("the projection never applied event {id}"))?;
        if *at < returned {
            early += 1;
        }
        lags.push(at.saturating_duration_since(returned));
    }
    Ok(Lags { lags, early })
}

/// The `p`-th quantile (0 to 1) of `sorted`, by nearest rank, in milliseconds.
fn quantile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// The lags of one system over every round.
#[derive(Default)]
struct LagSeries {
    lags: Vec<Duration>,
    early: usize,
}

impl LagSeries {
    fn add(&mut self, run: Lags) -> String {
        let text = lag_text(&run.lags);
        self.lags.extend(run.lags);
        self.early += run.early;
        text
    }
}

/// p50, p99 and max of `lags`, and how many there are.
fn lag_text(lags: &[Duration]) -> String {
    let mut sorted = lags.to_vec();
    sorted.sort();
    format!(
        "p50 {:.1} ms, p99 {:.1} ms (max {:.1} ms, {} events)",
        quantile_ms(&sorted, 0.50),
        quantile_ms(&sorted, 0.99),
        quantile_ms(&sorted, 1.0),
        sorted.len()
    )
}

fn p99_ms(lags: &[Duration]) -> f64 {
    let mut sorted = lags.to_vec();
    sorted.sort();
    quantile_ms(&sorted, 0.99)
}

/// The stores of a lag workload: `fresh` starts with an empty log; `history` holds the
/// catch-up workloads' log before the first run, and `second` is another store on
/// `history`'s database (as another process would open it).
struct LagStores {
    fresh: Store,
    history: Store,
    second: Store,
}

/// In every round, three runs: the writer on the projection's store with a log of
/// `CHRONICLE_BENCH_PROJ_EVENTS` events beforehand, the same on a store whose log started
/// empty, and a writer on a second store. Returns their rows; the first has `target_ms`
/// as its p99 target when given.
async fn lag_rows(
    cfg: &Config,
    name: &str,
    backend: &str,
    stores: LagStores,
    target_ms: Option<f64>,
) -> Res<Vec<Row>> {
    let settings = LagSettings::from_cfg(cfg)?;
    let events = cfg.size(PROJ_EVENTS_ENV, 200_000)?;
    fill_log(&stores.history, events).await?;
    let (mut history, mut fresh, mut second) = Default::default();
    for round in 1..=cfg.rounds {
        let h = LagSeries::add(
            &mut history,
            lag_run(&stores.history, &stores.history, "lag-history", settings).await?,
        );
        let f = LagSeries::add(
            &mut fresh,
            lag_run(&stores.fresh, &stores.fresh, "lag-fresh", settings).await?,
        );
        let s = LagSeries::add(
            &mut second,
            lag_run(&stores.history, &stores.second, "lag-second", settings).await?,
        );
        eprintln!("  round {round}: history {h}; fresh log {f}; second store {s}");
    }
    let early = history.early + fresh.early + second.early;
    if early > 0 {
        eprintln!("  {early} events reached apply before their append returned (lag 0)");
    }
    let writes = format!(
        "{} appends/s of 1 event for {} s × {} rounds",
        settings.rate,
        settings.duration.as_secs(),
        cfg.rounds
    );
    let row = |workload: String, series: &LagSeries, target: String, met: Met| Row {
        workload,
        chronicle: lag_text(&series.lags),
        baseline: "—".to_owned(),
        ratio: "—".to_owned(),
        target,
        met,
    };
    let (target, met) = match target_ms {
        Some(ms) => (
            format!("p99 < {ms:.0} ms"),
            Met::from(p99_ms(&history.lags) < ms),
        ),
        None => ("—".to_owned(), Met::Info),
    };
    Ok(vec![
        row(
            format!(
                "{name}: {backend}, lag from append returning to apply, writer on the \
                 projection's store (in-process wake-up), log of {} events beforehand, {writes}",
                fmt_rate(events as f64)
            ),
            &history,
            target,
            met,
        ),
        row(
            format!(
                "{name} (same rounds): {backend}, the same on a store whose log started empty \
                 (at most {} events)",
                fmt_rate((settings.rate * settings.duration.as_secs() * cfg.rounds as u64) as f64)
            ),
            &fresh,
            "—".to_owned(),
            Met::Info,
        ),
        row(
            format!(
                "{name} (same rounds): {backend}, writer on a second store on the database \
                 with the log, as another process would (woken by LISTEN/NOTIFY on \
                 PostgreSQL, by the 500 ms poll on SQLite)"
            ),
            &second,
            "—".to_owned(),
            Met::Info,
        ),
    ])
}

/// 3a. PostgreSQL: live lag (with a history, without, and from a second store).
async fn proj_live_lag_pg(cfg: &Config) -> Res<Vec<Row>> {
    with_schemas(cfg, async |schemas: &mut Schemas| {
        let fresh = schemas.store("proj_lag_fresh", 4, |b| b).await?;
        let history = schemas.store("proj_lag", 4, |b| b).await?;
        let schema = schemas.names.last().cloned().unwrap_or_default();
        let second = Store::builder(cfg.pg_url.clone())
            .schema(schema)
            .pool_size(4)
            .open()
            .await?;
        let stores = LagStores {
            fresh,
            history,
            second,
        };
        lag_rows(cfg, "proj_live_lag_pg", "PostgreSQL", stores, Some(50.0)).await
    })
    .await
}

/// 3b. SQLite file: live lag (with a history, without, and from a second store), for
/// information.
async fn proj_live_lag_sqlite(cfg: &Config) -> Res<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let url = sqlite_url(dir.path(), "lag.db");
    let stores = LagStores {
        fresh: Store::open(sqlite_url(dir.path(), "fresh.db")).await?,
        history: Store::open(url.clone()).await?,
        second: Store::open(url).await?,
    };
    lag_rows(cfg, "proj_live_lag_sqlite", "SQLite", stores, None).await
}

// ---------------------------------------------------------------------------------------
// Main

const WORKLOADS: &[&str] = &[
    "proj_catchup_noop_sqlite",
    "proj_catchup_noop_pg",
    "proj_catchup_upsert_pg",
    "proj_catchup_upsert_sqlite",
    "proj_catchup_lean_pg",
    "proj_catchup_lean_sqlite",
    "proj_inline_append_pg",
    "proj_inline_append_sqlite",
    "proj_live_lag_pg",
    "proj_live_lag_sqlite",
];

async fn run_workload(cfg: &Config, name: &str) -> Res<Vec<Row>> {
    match name {
        "proj_catchup_noop_sqlite" => proj_catchup_noop_sqlite(cfg).await,
        "proj_catchup_noop_pg" => proj_catchup_noop_pg(cfg).await,
        "proj_catchup_upsert_pg" => proj_catchup_upsert_pg(cfg).await,
        "proj_catchup_upsert_sqlite" => proj_catchup_upsert_sqlite(cfg).await,
        "proj_catchup_lean_pg" => proj_catchup_lean_pg(cfg).await,
        "proj_catchup_lean_sqlite" => proj_catchup_lean_sqlite(cfg).await,
        "proj_inline_append_pg" => proj_inline_append_pg(cfg).await,
        "proj_inline_append_sqlite" => proj_inline_append_sqlite(cfg).await,
        "proj_live_lag_pg" => proj_live_lag_pg(cfg).await,
        "proj_live_lag_sqlite" => proj_live_lag_sqlite(cfg).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

/// The header's method line: a round runs each system once.
fn method(cfg: &Config) -> String {
    let lag = LagSettings::from_cfg(cfg).map_or_else(
        |error| format!("lag settings: {error}"),
        |lag| {
            format!(
                "a lag run appends {} events/s for {} s",
                lag.rate,
                lag.duration.as_secs()
            )
        },
    );
    format!(
        "each round runs every system once (a catch-up: the whole log; {lag}), {} \
         interleaved rounds, medians{}",
        cfg.rounds,
        if cfg.quick { ", quick sizes" } else { "" }
    )
}

fn main() -> Res<()> {
    harness::run_described(
        "chronicle projection benchmarks",
        method,
        WORKLOADS,
        run_workload,
    )
}
