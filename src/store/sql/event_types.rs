//! The event-type dictionary of PostgreSQL's log: `event_types` holds each (type, schema
//! version) pair once under a 4-byte id, and each event row holds the id (migration
//! `0012_event_types`).
//!
//! The append names an event's pair and its statement looks the id up, so the id never
//! travels through the process; the pair must exist before the statement runs.
//! [`KnownTypes`] remembers the pairs this process has seen committed, and
//! [`ensure`] adds the others in a statement of their own. A pair is remembered only once
//! a committed row holds it: a pair added inside an application's transaction that then
//! rolls back is gone, and remembering it would make the next append fail. Readers join
//! the dictionary (`Dialect::EVENT_TYPES_JOIN`), so they need nothing from here.

use std::collections::{HashMap, HashSet};
use std::sync::{PoisonError, RwLock};

use sqlx::PgConnection;

use crate::error::{Error, Result};
use crate::store::backend::EncodedEvent;

/// Adds the pairs `$1`/`$2` (arrays, one element per pair) that `event_types` lacks. The
/// `NOT EXISTS` keeps present pairs from drawing an id from the identity (an `INSERT … ON
/// CONFLICT` draws one for every row it tries); `ON CONFLICT` covers a writer adding the
/// same pair at the same time, whose commit this statement waits for.
const ADD_MISSING: &str = "INSERT INTO event_types (event_type, schema_version) \
     SELECT w.event_type, w.schema_version \
     FROM unnest($1::text[], $2::bigint[]) AS w(event_type, schema_version) \
     WHERE NOT EXISTS (SELECT 1 FROM event_types t \
                       WHERE t.event_type = w.event_type AND t.schema_version = w.schema_version) \
     ON CONFLICT (event_type, schema_version) DO NOTHING";

/// The (type, schema version) pairs this process knows `event_types` holds, committed.
#[derive(Debug, Default)]
pub(crate) struct KnownTypes {
    /// Type names by schema version (so that a lookup borrows the event's name).
    pairs: RwLock<HashMap<u32, HashSet<String>>>,
}

impl KnownTypes {
    /// The pairs of `events` not known yet, each once.
    fn missing(&self, events: &[EncodedEvent<'_>]) -> Vec<(String, u32)> {
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

    /// Forgets every pair: an append found one missing (the database was replaced or
    /// restored under the process), so none is trusted until seen again.
    pub(crate) fn forget(&self) {
        self.pairs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Makes sure `event_types` holds the pair of every event of `events`, through `conn`.
/// `committed` says whether `conn` commits each statement itself (no transaction open on
/// it): only then are the pairs remembered.
pub(crate) async fn ensure(
    conn: &mut PgConnection,
    known: &KnownTypes,
    events: &[EncodedEvent<'_>],
    committed: bool,
) -> Result<()> {
    let missing = known.missing(events);
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|(name, _)| name.as_str()).collect();
    let versions: Vec<i64> = missing.iter().map(|(_, v)| i64::from(*v)).collect();
    sqlx::query(ADD_MISSING)
        .bind(names)
        .bind(versions)
        .execute(&mut *conn)
        .await
        .map_err(|error| Error::from_sqlx("append", error))?;
    if committed {
        known.remember(missing);
    }
    Ok(())
}
