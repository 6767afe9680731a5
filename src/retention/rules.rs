//! The policies in force, as reads see them: the default and category policies and the
//! streams that have one of their own, cached for a short while (reads check them on
//! every page). Only a page touching a stream that some policy applies to pays for a
//! lookup of those streams, so a policy never taxes reads of the streams it does not
//! cover.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{AppliedRetention, RetentionPolicy, RetentionScope};
use crate::error::{Error, Result};
use crate::stream::category_of;

/// A stored policy, as the backends return it: its scope and its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// The scope the policy applies to.
    pub scope: RetentionScope,
    /// The policy as stored, JSON text (`Store` parses it).
    pub json: String,
}

/// Most stream ids with a policy of their own that the rules list (they are reloaded
/// every second while reads run). With more, reads look up every stream they touch, as
/// if each might have one.
pub const MAX_LISTED_STREAM_POLICIES: usize = 4096;

/// The default and category policies, and the streams with their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRows {
    /// The default policy and the categories' ones.
    pub general: Vec<StoredPolicy>,
    /// The streams with a policy of their own: up to [`MAX_LISTED_STREAM_POLICIES`] + 1
    /// ids (one more than the most listed tells that there are too many to list).
    pub streams: Vec<String>,
}

/// What the retention of one stream depends on, from the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRetention {
    /// The stream's id.
    pub stream: String,
    /// The stream's version (its last event's).
    pub head: u64,
    /// The stream's own policy, as JSON text.
    pub own: Option<String>,
    /// The newest snapshot's version.
    pub snapshot: Option<u64>,
}

/// Parses a stored policy.
pub(crate) fn parse(scope: &RetentionScope, json: &str) -> Result<RetentionPolicy> {
    serde_json::from_str(json).map_err(|error| {
        Error::Internal(format!(
            "the stored retention policy of {scope} does not parse: {error}"
        ))
    })
}

/// The policies in force.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RetentionRules {
    default: Option<RetentionPolicy>,
    categories: HashMap<String, RetentionPolicy>,
    /// The streams with a policy of their own (empty when `unlisted`).
    streams: HashSet<String>,
    /// More streams have their own policy than are listed: any stream may have one.
    unlisted: bool,
}

impl RetentionRules {
    pub(crate) fn from_rows(rows: PolicyRows) -> Result<Self> {
        let unlisted = rows.streams.len() > MAX_LISTED_STREAM_POLICIES;
        let mut rules = RetentionRules {
            streams: if unlisted {
                HashSet::new()
            } else {
                rows.streams.into_iter().collect()
            },
            unlisted,
            ..RetentionRules::default()
        };
        for row in rows.general {
            let policy = parse(&row.scope, &row.json)?;
            match row.scope {
                RetentionScope::Default => rules.default = Some(policy),
                RetentionScope::Category(category) => {
                    rules.categories.insert(category, policy);
                }
                RetentionScope::Stream(_) => {}
            }
        }
        Ok(rules)
    }

    /// Whether no policy is set anywhere: reads need not look.
    pub(crate) fn is_empty(&self) -> bool {
        self.default.is_none()
            && self.categories.is_empty()
            && self.streams.is_empty()
            && !self.unlisted
    }

    /// Whether a policy may apply to `stream`: the default, its category's or its own
    /// (always true when the streams with their own are too many to list).
    pub(crate) fn may_apply(&self, stream: &str) -> bool {
        self.default.is_some()
            || self.unlisted
            || self.streams.contains(stream)
            || self.categories.contains_key(category_of(stream))
    }

    /// The categories with a policy.
    pub(crate) fn categories(&self) -> Vec<String> {
        self.categories.keys().cloned().collect()
    }

    /// Whether a default policy is set.
    pub(crate) fn has_default(&self) -> bool {
        self.default.is_some()
    }

    /// The policy in force for `stream`, whose own policy is `own`.
    pub(crate) fn applied(
        &self,
        stream: &str,
        own: Option<&str>,
    ) -> Result<Option<AppliedRetention>> {
        if let Some(json) = own {
            let scope = RetentionScope::Stream(stream.to_owned());
            let policy = parse(&scope, json)?;
            return Ok(Some(AppliedRetention { policy, scope }));
        }
        let category = category_of(stream);
        if let Some(policy) = self.categories.get(category) {
            return Ok(Some(AppliedRetention {
                policy: *policy,
                scope: RetentionScope::Category(category.to_owned()),
            }));
        }
        Ok(self.default.map(|policy| AppliedRetention {
            policy,
            scope: RetentionScope::Default,
        }))
    }
}

/// The rules, reloaded when older than `refresh` or after this process changed a policy.
///
/// A load that began before a change in this process must not cache what it read: every
/// change bumps the generation, and a load stores its rules only if the generation is
/// still the one it began in.
#[derive(Debug)]
pub(crate) struct RulesCache {
    refresh: Duration,
    slot: Mutex<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u64,
    cached: Option<(Instant, Arc<RetentionRules>)>,
}

impl RulesCache {
    pub(crate) fn new(refresh: Duration) -> Self {
        RulesCache {
            refresh,
            slot: Mutex::new(Slot::default()),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached rules, when still fresh.
    pub(crate) fn fresh(&self) -> Option<Arc<RetentionRules>> {
        self.slot()
            .cached
            .as_ref()
            .filter(|(loaded, _)| loaded.elapsed() < self.refresh)
            .map(|(_, rules)| Arc::clone(rules))
    }

    /// The generation a load begins in (pass it to [`RulesCache::store`]).
    pub(crate) fn generation(&self) -> u64 {
        self.slot().generation
    }

    /// Caches `rules`, loaded in `generation`, unless a change came since.
    pub(crate) fn store(&self, generation: u64, rules: Arc<RetentionRules>) {
        let mut slot = self.slot();
        if slot.generation == generation {
            slot.cached = Some((Instant::now(), rules));
        }
    }

    /// Forgets the rules after a change of this process.
    pub(crate) fn invalidate(&self) {
        let mut slot = self.slot();
        slot.generation += 1;
        slot.cached = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(streams: usize) -> RetentionRules {
        RetentionRules::from_rows(PolicyRows {
            general: Vec::new(),
            streams: (0..streams).map(|n| format!("log-{n}")).collect(),
        })
        .expect("rules")
    }

    #[test]
    fn a_load_that_began_before_a_change_is_not_cached() {
        let cache = RulesCache::new(Duration::from_secs(60));
        let began = cache.generation();
        cache.invalidate();
        cache.store(began, Arc::new(rules(0)));
        assert!(cache.fresh().is_none(), "stale rules were cached");
        let began = cache.generation();
        cache.store(began, Arc::new(rules(0)));
        assert!(cache.fresh().is_some());
    }

    #[test]
    fn only_listed_streams_are_looked_up() {
        let listed = rules(2);
        assert!(!listed.is_empty());
        assert!(listed.may_apply("log-1"));
        assert!(!listed.may_apply("log-2"));
        assert!(!listed.may_apply("order-1"));
        assert!(rules(0).is_empty());
    }

    #[test]
    fn too_many_to_list_means_any_stream_may_have_one() {
        let unlisted = rules(MAX_LISTED_STREAM_POLICIES + 1);
        assert!(unlisted.may_apply("order-1"));
        assert!(unlisted.streams.is_empty());
        assert!(rules(MAX_LISTED_STREAM_POLICIES).streams.len() == MAX_LISTED_STREAM_POLICIES);
    }
}
