//! Schema migrations: named, numbered SQL files from `migrations/<backend>/`, embedded in
//! the binary and applied on open.
//!
//! Each backend records what it applied in `chronicle_migrations` and applies the rest
//! under an exclusive lock (a PostgreSQL advisory lock, SQLite's `BEGIN IMMEDIATE`), so two
//! processes opening the same database at once apply each migration exactly once.

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sql: include_str!("../../migrations/sqlite/0001_core.sql"),
    },
    Migration {
        version: 2,
        name: "snapshots",
        sql: include_str!("../../migrations/sqlite/0002_snapshots.sql"),
    },
    Migration {
        version: 3,
        name: "projections",
        sql: include_str!("../../migrations/sqlite/0003_projections.sql"),
    },
    Migration {
        version: 4,
        name: "outbox",
        sql: include_str!("../../migrations/sqlite/0004_outbox.sql"),
    },
    Migration {
        version: 5,
        name: "retention",
        sql: include_str!("../../migrations/sqlite/0005_retention.sql"),
    },
    Migration {
        version: 6,
        name: "stream_keys",
        sql: include_str!("../../migrations/sqlite/0006_stream_keys.sql"),
    },
    Migration {
        version: 7,
        name: "outbox_turns",
        sql: include_str!("../../migrations/sqlite/0007_outbox_turns.sql"),
    },
];

#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sql: include_str!("../../migrations/postgres/0001_core.sql"),
    },
    Migration {
        version: 2,
        name: "snapshots",
        sql: include_str!("../../migrations/postgres/0002_snapshots.sql"),
    },
    Migration {
        version: 3,
        name: "projections",
        sql: include_str!("../../migrations/postgres/0003_projections.sql"),
    },
    Migration {
        version: 4,
        name: "outbox",
        sql: include_str!("../../migrations/postgres/0004_outbox.sql"),
    },
    Migration {
        version: 5,
        name: "retention",
        sql: include_str!("../../migrations/postgres/0005_retention.sql"),
    },
    Migration {
        version: 6,
        name: "stream_keys",
        sql: include_str!("../../migrations/postgres/0006_stream_keys.sql"),
    },
    Migration {
        version: 7,
        name: "lean_indexes",
        sql: include_str!("../../migrations/postgres/0007_lean_indexes.sql"),
    },
    Migration {
        version: 8,
        name: "outbox_turns",
        sql: include_str!("../../migrations/postgres/0008_outbox_turns.sql"),
    },
];

/// The bookkeeping table, the same on both SQL backends.
pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS chronicle_migrations (
    version BIGINT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// The migrations in `all` newer than every version in `applied`.
pub(crate) fn pending(all: &'static [Migration], applied: &[i64]) -> Vec<Migration> {
    all.iter()
        .filter(|migration| !applied.contains(&migration.version))
        .copied()
        .collect()
}
