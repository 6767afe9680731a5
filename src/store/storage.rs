//! What a store holds, for operators: [`StorageStats`] ([`Store::storage`](crate::Store::storage)).

/// Streams, events, snapshots and bytes a store holds.
///
/// - **SQLite**: exact counts; `bytes` is the database file's size (pages × page size).
/// - **PostgreSQL**: counts are the planner's estimates (`pg_class.reltuples`, kept by
///   autovacuum's `ANALYZE`), which cost nothing on tables of any size; a table never
///   analyzed yet is counted exactly. `bytes` is the size of the store's schema's tables
///   with their indexes and TOAST (`pg_total_relation_size`).
/// - **Memory**: exact counts; `bytes` is the events' payloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StorageStats {
    /// Streams, deleted ones included until they are hard-deleted.
    pub streams: u64,
    /// Events stored.
    pub events: u64,
    /// Snapshots stored.
    pub snapshots: u64,
    /// Bytes on disk (see above for what each backend counts).
    pub bytes: u64,
    /// Whether the counts are estimates (PostgreSQL) rather than exact.
    pub estimated: bool,
}
