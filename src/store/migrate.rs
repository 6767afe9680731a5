//! Schema migrations: named, numbered SQL files from `migrations/<backend>/`, embedded in
//! the binary, and what an open does about them ([`Migrations`]).
//!
//! Each backend records what it applied in `chronicle_migrations`. An open first reads
//! that record without a lock and without DDL, so a database that is up to date needs no
//! rights beyond reading it; only when migrations are pending (and the store applies them)
//! does the backend take an exclusive lock (a PostgreSQL advisory lock, SQLite's `BEGIN
//! IMMEDIATE`), read the record again and apply the rest, so two processes opening the
//! same database at once apply each migration exactly once.

use crate::error::{Error, Result};

/// What opening a store does about pending migrations
/// ([`StoreBuilder::migrations`](crate::StoreBuilder::migrations)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Migrations {
    /// Apply them (the default): the store's role needs the rights to change the schema
    /// while any are pending (on PostgreSQL, to create the schema when it is missing).
    #[default]
    Apply,
    /// Only check: a database that lacks any fails to open with
    /// [`Error::PendingMigrations`] listing them, and nothing is changed. For deployments
    /// where a deploy step migrates ([`StoreBuilder::migrate`](crate::StoreBuilder::migrate))
    /// and the application's role may not change the schema.
    Check,
}

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
    Migration {
        version: 8,
        name: "outbox_starts",
        sql: include_str!("../../migrations/sqlite/0008_outbox_starts.sql"),
    },
    Migration {
        version: 9,
        name: "compression_dictionaries",
        sql: include_str!("../../migrations/sqlite/0009_compression_dictionaries.sql"),
    },
    Migration {
        version: 10,
        name: "event_types",
        sql: include_str!("../../migrations/sqlite/0010_event_types.sql"),
    },
    Migration {
        version: 11,
        name: "event_stream_keys",
        sql: include_str!("../../migrations/sqlite/0011_event_stream_keys.sql"),
    },
    Migration {
        version: 12,
        name: "one_probe_guard",
        sql: include_str!("../../migrations/sqlite/0012_one_probe_guard.sql"),
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
    Migration {
        version: 9,
        name: "outbox_starts",
        sql: include_str!("../../migrations/postgres/0009_outbox_starts.sql"),
    },
    Migration {
        version: 10,
        name: "compression_dictionaries",
        sql: include_str!("../../migrations/postgres/0010_compression_dictionaries.sql"),
    },
    Migration {
        version: 11,
        name: "log_order_key",
        sql: include_str!("../../migrations/postgres/0011_log_order_key.sql"),
    },
    Migration {
        version: 12,
        name: "event_types",
        sql: include_str!("../../migrations/postgres/0012_event_types.sql"),
    },
    Migration {
        version: 13,
        name: "event_stream_keys",
        sql: include_str!("../../migrations/postgres/0013_event_stream_keys.sql"),
    },
    Migration {
        version: 14,
        name: "narrow_event_keys",
        sql: include_str!("../../migrations/postgres/0014_narrow_event_keys.sql"),
    },
];

/// The bookkeeping table, the same on both SQL backends.
pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS chronicle_migrations (
    version BIGINT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

impl Migration {
    /// The migration's name as its file's: `0007_lean_indexes`.
    pub(crate) fn file_name(&self) -> String {
        format!("{:04}_{}", self.version, self.name)
    }
}

/// Whether the pending migrations are to be applied now: `false` when there are none,
/// `true` when `mode` applies them, and [`Error::PendingMigrations`] naming `target`
/// when it only checks.
pub(crate) fn must_apply(mode: Migrations, pending: &[Migration], target: &str) -> Result<bool> {
    match (pending.is_empty(), mode) {
        (true, _) => Ok(false),
        (false, Migrations::Apply) => Ok(true),
        (false, Migrations::Check) => Err(Error::PendingMigrations {
            target: target.to_owned(),
            pending: pending.iter().map(Migration::file_name).collect(),
        }),
    }
}

/// The migrations in `all` that `applied` does not list.
pub(crate) fn pending(all: &'static [Migration], applied: &[i64]) -> Vec<Migration> {
    all.iter()
        .filter(|migration| !applied.contains(&migration.version))
        .copied()
        .collect()
}
