//! Issue 23's measurements of chronicle's storage and appends (`cargo bench --bench lean`):
//! what each column and index of chronicle's `events` table costs per event, leaner
//! candidate schemas measured on the same log side by side with cqrs-es's table and the
//! minimal table, each table's single-row INSERT rate and WAL bytes per event beside
//! chronicle's own append and its parts, and the same byte counts on SQLite.
//!
//! ```text
//! cargo bench --bench lean              # PostgreSQL and SQLite (about 10 min)
//! cargo bench --bench lean -- postgres  # PostgreSQL only
//! cargo bench --bench lean -- sqlite    # SQLite only
//! ```
//!
//! The log: 1,000 accounts × 100 events of about 180 bytes of JSON, written by 8 writers
//! through `Store::append`, one event per append, the accounts interleaved. The variants are
//! built in scratch schemas (`bench_<pid>_lean_*`) dropped at the end; nothing here changes
//! chronicle's schema. The WAL profile reads `pg_walinspect` (installed into the run's
//! scratch schema unless the database has it) and counts only the records of the
//! transactions that touched the measured schema, so other sessions' writes do not count.
//!
//! Environment: `CHRONICLE_PG_URL`, `CHRONICLE_BENCH_SECS` (5: each system's timed window
//! per round), `CHRONICLE_BENCH_ROUNDS` (3), `CHRONICLE_BENCH_QUICK=1` (a tenth of the
//! log), `CHRONICLE_BENCH_LEAN_STREAMS` (1000), `CHRONICLE_BENCH_LEAN_PER_STREAM` (100),
//! `CHRONICLE_BENCH_LEAN_CORRELATED=1` (every event carries a correlation and a causation
//! id, 36 characters each: the metadata columns' and side table's cost when they are not
//! sparse).

mod harness;
#[path = "lean/log.rs"]
mod log;
#[path = "lean/pg.rs"]
mod pg;
#[path = "lean/sqlite.rs"]
mod sqlite;
#[path = "lean/variants.rs"]
mod variants;

use harness::{Config, Res};

fn main() -> Res<()> {
    let cfg = Config::from_env()?;
    let shape = log::Shape {
        streams: cfg.size("CHRONICLE_BENCH_LEAN_STREAMS", 1_000)?,
        per_stream: harness::env_or("CHRONICLE_BENCH_LEAN_PER_STREAM", 100)?,
        correlated: std::env::var("CHRONICLE_BENCH_LEAN_CORRELATED").is_ok_and(|v| v == "1"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!("# chronicle's storage and appends, issue 23");
        println!();
        println!(
            "- date: {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        println!(
            "- PostgreSQL: {}",
            harness::postgres_version(&cfg.pg_url).await
        );
        println!(
            "- log: {} accounts × {} events (~180 B of JSON each{}); {} s per system and round, \
             {} interleaved rounds, medians",
            shape.streams,
            shape.per_stream,
            if shape.correlated {
                ", a correlation and a causation id each"
            } else {
                ""
            },
            cfg.secs.as_secs_f64(),
            cfg.rounds
        );
        println!();
        if cfg.selected("postgres") {
            eprintln!("postgres:");
            pg::run(&cfg, shape).await?;
        }
        if cfg.selected("sqlite") {
            eprintln!("sqlite:");
            sqlite::run(shape).await?;
        }
        Ok(())
    })
}
