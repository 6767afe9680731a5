//! Bytes on disk: the SQL both sides run and how its answers become a [`Footprint`].

use std::path::Path;

use super::{Footprint, Res};

/// Every relation of the connection's current schema with its size, largest first: each
/// table with its TOAST but without its indexes, and each index on its own, so that the
/// sizes add up to the tables' `pg_total_relation_size`.
pub const PG_FOOTPRINT_SQL: &str = "SELECT c.relname::text, \
         CASE WHEN c.relkind = 'i' THEN pg_relation_size(c.oid) \
              ELSE pg_total_relation_size(c.oid) - pg_indexes_size(c.oid) END::bigint \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'S', 'm', 'i') \
     ORDER BY 2 DESC, 1";

/// Sums `(relation, bytes)` rows of [`PG_FOOTPRINT_SQL`].
pub fn pg_footprint(rows: Vec<(String, i64)>) -> Footprint {
    let bytes = rows.iter().map(|(_, size)| *size as u64).sum();
    let detail = rows
        .iter()
        .filter(|(_, size)| *size > 0)
        .map(|(relation, size)| format!("{relation} {}", human_bytes(*size as u64)))
        .collect::<Vec<_>>()
        .join(", ");
    Footprint { bytes, detail }
}

/// The checkpoint that moves a SQLite file's WAL into the file before it is measured.
pub const SQLITE_CHECKPOINT_SQL: &str = "PRAGMA wal_checkpoint(TRUNCATE)";

/// The bytes of a SQLite database file and its WAL (checkpointed first).
pub fn sqlite_footprint(path: &Path) -> Res<Footprint> {
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |meta| meta.len());
    let db = size(path);
    let mut wal_path = path.as_os_str().to_owned();
    wal_path.push("-wal");
    let wal = size(Path::new(&wal_path));
    Ok(Footprint {
        bytes: db + wal,
        detail: format!("file {}, WAL {}", human_bytes(db), human_bytes(wal)),
    })
}

pub fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}
