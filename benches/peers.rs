//! chronicle beside its Rust peers: the same bank account (open, deposit, withdraw) on
//! chronicle, cqrs-es 0.5 (postgres-es and sqlite-es, with and without snapshots), esrs 0.18
//! and disintegrate 4, against the same PostgreSQL server and SQLite files, in one run, the
//! systems taking turns round after round so that the machine's drift hits all of them.
//!
//! ```text
//! cargo bench --bench peers                                   # everything (about 30 min)
//! cargo bench --bench peers -- load                           # workloads whose name has `load`
//! CHRONICLE_BENCH_SECS=2 CHRONICLE_BENCH_QUICK=1 cargo bench --bench peers    # smoke run
//! CHRONICLE_BENCH_PEERS_REPORT=last cargo bench --bench peers # tables of the last run again
//! ```
//!
//! The peers pin sqlx 0.8 and chronicle uses sqlx 0.9 (two libsqlite3-sys cannot link into
//! one binary), so they live in a cargo project of their own, `benches/peers/` (its own
//! `[workspace]`, lock file and target directory), which this bench builds first and runs
//! one process per phase. The workloads are written once, in `benches/peers/src/shared/`,
//! which both sides compile; this target's own code is in `benches/peers/driver/`.
//!
//! Workloads (`benches/peers/src/shared/workload/` has the details):
//!
//! | name | what |
//! | --- | --- |
//! | `throughput` | 8 clients, each on accounts of its own, a fresh account every 100 commands; commands/s |
//! | `throughput-short` | the same with a fresh account every 10 commands: reloads cost the peers little, the append decides |
//! | `contention` | 8 clients on one account at a time, a fresh one every 100 commands; successful commands/s and conflicts |
//! | `load-1000`, `load-10000` | loads of an account of that many events, no snapshots; p50 / p99 |
//! | `snapload-1000`, `snapload-10000` | loads of that many events + 50, from a snapshot (one every 100) |
//! | `catchup` | a projection catching up on 200,000 events |
//! | `storage` | bytes on disk per event for 100,000 events |
//!
//! Two ceilings run beside the command workloads on PostgreSQL: raw single-row INSERTs into
//! chronicle's own `events` table (`raw-pg`: what chronicle's schema costs) and into a
//! minimal table of position, stream, version and jsonb payload with a primary key and one
//! unique index (`raw-min-pg`: the limit). Every pool, the peers' and the ceilings', hands
//! out connections without a ping before checkout.
//!
//! Every command workload ends by loading every account it touched and comparing version
//! and balance with what the clients were told was written; every load is checked; every
//! catch-up's count and sum are checked.
//!
//! Environment:
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `CHRONICLE_PG_URL` | `postgres://postgres@127.0.0.1:5432/test` | the server |
//! | `CHRONICLE_BENCH_SECS` | `20` | timed window of the command workloads, per system and round |
//! | `CHRONICLE_BENCH_LOAD_SECS` | `5` (quick: `1`) | timed window of the load workloads |
//! | `CHRONICLE_BENCH_ROUNDS` | `3` | rounds |
//! | `CHRONICLE_BENCH_QUICK` | — | `1`: a tenth of every event count and account count |
//! | `CHRONICLE_BENCH_CLIENTS` | `8` | clients of the command workloads |
//! | `CHRONICLE_BENCH_STREAM_LEN` | `100` | commands per account in the command workloads |
//! | `CHRONICLE_BENCH_SHORT_STREAM_LEN` | `10` | commands per account in `throughput-short` |
//! | `CHRONICLE_BENCH_PROJ_EVENTS` | `200000` | events of the catch-up log |
//! | `CHRONICLE_BENCH_STORAGE_EVENTS` | `100000` | events of the storage workload |
//! | `CHRONICLE_BENCH_PEERS_SYSTEMS` | all | comma-separated system names to run |
//! | `CHRONICLE_BENCH_PEERS_RESULTS` | `target/peers.jsonl` | the results file (appended) |
//! | `CHRONICLE_BENCH_PEERS_REPORT` | — | a run id (or `last`): print its tables from the results file, measure nothing |

#[path = "peers/driver/mod.rs"]
mod driver;
mod harness;
#[path = "peers/src/shared/mod.rs"]
mod shared;

fn main() -> harness::Res<()> {
    driver::main()
}
