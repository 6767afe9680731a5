//! The event-type dictionary of the SQL logs: `event_types` holds each (type, schema
//! version) pair once under an integer id, and each event row holds the id (migrations
//! `0012_event_types` on PostgreSQL, `0010_event_types` on SQLite).
//!
//! An append names an event's pair and its `INSERT` looks the id up, so ids never travel
//! through the process; the pair must exist before the insert runs. [`KnownTypes`]
//! remembers the pairs this process has seen committed, and [`add`] adds the others first
//! (the shared `SqlBackend` does, before it hands an append to its engine). A pair is remembered only once a committed row holds it: a pair added inside a
//! transaction that then rolls back is gone, and remembering it would make the next
//! append fail. An append that finds a pair missing anyway (the database was replaced
//! under the process) is told by [`is_type_missing`]; the backend then forgets what it
//! remembered. Readers join the dictionary (`event_joins`).

use std::collections::{HashMap, HashSet};
use std::sync::{PoisonError, RwLock};

use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::dialect::Dialect;
use crate::error::{Error, Result};
use crate::store::backend::EncodedEvent;

/// The (type, schema version) pairs this process knows `event_types` holds, committed.
#[derive(Debug, Default)]
pub(crate) struct KnownTypes {
    /// Type names by schema version (so that a lookup borrows the event's name).
    pairs: RwLock<HashMap<u32, HashSet<String>>>,
}

impl KnownTypes {
    /// The pairs of `events` not known yet, each once.
    pub(crate) fn missing(&self, events: &[EncodedEvent<'_>]) -> Vec<(String, u32)> {
        let known = self.pairs.read().unwrap_or_else(PoisonError::into_inner);
        let mut missing: Vec<(String, u32)> = Vec::new();
        for event in events {
            let (name, version) = (&event.source.event_type, event.source.schema_version);
            let is_known = known
                .get(&version)
                .is_some_and(|names| names.contains(name.as_str()));
            if !is_known && !missing.iter().any(|(n, v)| n == name && *v == version) {
                missing.push((name.clone(), version));
            }
        }
        missing
    }

    /// Remembers `pairs` as committed.
    fn remember(&self, pairs: Vec<(String, u32)>) {
        let mut known = self.pairs.write().unwrap_or_else(PoisonError::into_inner);
        for (name, version) in pairs {
            known.entry(version).or_default().insert(name);
        }
    }

    /// Forgets every pair: an append found one missing, so none is trusted until added
    /// again.
    pub(crate) fn forget(&self) {
        self.pairs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Adds to `event_types` the `missing` pairs ([`KnownTypes::missing`]) it lacks, through
/// `conn` (`Dialect::ADD_EVENT_TYPES`). `committed` says whether `conn` commits each
/// statement itself (no transaction open on it): only then are the pairs remembered.
pub(crate) async fn add<D>(
    conn: &mut D::Connection,
    known: &KnownTypes,
    missing: Vec<(String, u32)>,
    committed: bool,
) -> Result<()>
where
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    <D as Database>::Arguments: IntoArguments<D>,
    for<'t> String: Encode<'t, D> + Type<D>,
{
    let pairs = serde_json::to_string(&missing)
        .map_err(|error| Error::Internal(format!("event types: {error}")))?;
    sqlx::query(D::ADD_EVENT_TYPES)
        .bind(pairs)
        .execute(&mut *conn)
        .await
        .map_err(|error| Error::from_sqlx("append", error))?;
    if committed {
        known.remember(missing);
    }
    Ok(())
}

/// Whether an append failed because an event's pair has no row in `event_types`: its
/// looked-up `type_id` came out null.
pub(crate) fn is_type_missing(error: &Error) -> bool {
    matches!(error, Error::Database { source: sqlx::Error::Database(db), .. }
        if db.kind() == sqlx::error::ErrorKind::NotNullViolation
            && db.message().contains("type_id"))
}
