//! Which systems run which workload: the comparison's matrix, and what each system name
//! stands for.

use crate::shared::settings::Workload;

/// Where a system runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// In the driver's process: chronicle and the raw sqlx ceilings (sqlx 0.9).
    Driver,
    /// In processes of the peers binary (`benches/peers/`, sqlx 0.8).
    Peer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone, Copy)]
pub struct System {
    pub name: &'static str,
    pub side: Side,
    pub backend: Backend,
    /// chronicle itself (the reference of the ratios), not a peer or a ceiling.
    pub chronicle: bool,
    pub label: &'static str,
}

const fn system(
    name: &'static str,
    side: Side,
    backend: Backend,
    chronicle: bool,
    label: &'static str,
) -> System {
    System {
        name,
        side,
        backend,
        chronicle,
        label,
    }
}

use Backend::{Postgres, Sqlite};
use Side::{Driver, Peer};

/// Every system, in the order the tables list them.
pub const SYSTEMS: &[System] = &[
    system(
        "raw-pg",
        Driver,
        Postgres,
        false,
        "raw sqlx on chronicle's `events` table (ceiling)",
    ),
    system(
        "raw-min-pg",
        Driver,
        Postgres,
        false,
        "raw sqlx on a minimal table: position, stream, version, jsonb payload (ceiling)",
    ),
    system("chronicle-pg", Driver, Postgres, true, "chronicle"),
    system(
        "chronicle-pg-snap",
        Driver,
        Postgres,
        true,
        "chronicle, `snapshot_every(100)`",
    ),
    system(
        "chronicle-pg-zstd",
        Driver,
        Postgres,
        true,
        "chronicle, `Compression::zstd()`",
    ),
    system(
        "chronicle-pg-zstd-dict",
        Driver,
        Postgres,
        true,
        "chronicle, `Compression::zstd()`, a dictionary trained after a tenth of the log",
    ),
    system(
        "cqrs-pg",
        Peer,
        Postgres,
        false,
        "cqrs-es 0.5 + postgres-es 0.5, `postgres_cqrs`",
    ),
    system(
        "cqrs-pg-snap",
        Peer,
        Postgres,
        false,
        "cqrs-es 0.5 + postgres-es 0.5, `postgres_snapshot_cqrs(…, 100)`",
    ),
    system(
        "esrs-pg",
        Peer,
        Postgres,
        false,
        "esrs 0.18, `PgStore` + `AggregateManager`",
    ),
    system(
        "disintegrate-pg",
        Peer,
        Postgres,
        false,
        "disintegrate 4 + disintegrate-postgres 4, `NoSnapshot`",
    ),
    system(
        "disintegrate-pg-snap",
        Peer,
        Postgres,
        false,
        "disintegrate 4 + disintegrate-postgres 4, `WithPgSnapshot` (100)",
    ),
    system(
        "raw-sqlite",
        Driver,
        Sqlite,
        false,
        "raw sqlx on chronicle's `events` table (ceiling)",
    ),
    system("chronicle-sqlite", Driver, Sqlite, true, "chronicle"),
    system(
        "chronicle-sqlite-snap",
        Driver,
        Sqlite,
        true,
        "chronicle, `snapshot_every(100)`",
    ),
    system(
        "chronicle-sqlite-zstd",
        Driver,
        Sqlite,
        true,
        "chronicle, `Compression::zstd()`",
    ),
    system(
        "chronicle-sqlite-zstd-dict",
        Driver,
        Sqlite,
        true,
        "chronicle, `Compression::zstd()`, a dictionary trained after a tenth of the log",
    ),
    system(
        "cqrs-sqlite",
        Peer,
        Sqlite,
        false,
        "cqrs-es 0.5 + sqlite-es 0.5, `sqlite_cqrs`",
    ),
    system(
        "cqrs-sqlite-snap",
        Peer,
        Sqlite,
        false,
        "cqrs-es 0.5 + sqlite-es 0.5, `sqlite_snapshot_cqrs(…, 100)`",
    ),
];

pub fn find(name: &str) -> Option<&'static System> {
    SYSTEMS.iter().find(|system| system.name == name)
}

/// The systems of `workload`, in table order. A system that cannot run it is listed all
/// the same, so the table says why.
pub fn for_workload(workload: &Workload) -> Vec<&'static System> {
    let names: &[&str] = match workload {
        Workload::Throughput | Workload::ShortThroughput => &[
            "raw-min-pg",
            "raw-pg",
            "chronicle-pg",
            "cqrs-pg",
            "cqrs-pg-snap",
            "esrs-pg",
            "disintegrate-pg",
            "raw-sqlite",
            "chronicle-sqlite",
            "cqrs-sqlite",
        ],
        Workload::Contention => &[
            "chronicle-pg",
            "cqrs-pg",
            "cqrs-pg-snap",
            "esrs-pg",
            "disintegrate-pg",
            "chronicle-sqlite",
            "cqrs-sqlite",
        ],
        Workload::Load(_) | Workload::CatchUp => &[
            "raw-pg",
            "chronicle-pg",
            "cqrs-pg",
            "esrs-pg",
            "disintegrate-pg",
            "raw-sqlite",
            "chronicle-sqlite",
            "cqrs-sqlite",
        ],
        Workload::SnapshotLoad(_) => &[
            "chronicle-pg-snap",
            "cqrs-pg-snap",
            "esrs-pg",
            "disintegrate-pg-snap",
            "chronicle-sqlite-snap",
            "cqrs-sqlite-snap",
        ],
        Workload::Storage => &[
            "chronicle-pg",
            "chronicle-pg-zstd",
            "chronicle-pg-zstd-dict",
            "cqrs-pg",
            "esrs-pg",
            "disintegrate-pg",
            "chronicle-sqlite",
            "chronicle-sqlite-zstd",
            "chronicle-sqlite-zstd-dict",
            "cqrs-sqlite",
        ],
    };
    names.iter().filter_map(|name| find(name)).collect()
}
