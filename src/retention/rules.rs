//! The policies in force, as reads see them: the default and category policies, cached
//! for a short while (reads check them on every page), and whether any stream has one of
//! its own (then the streams a page touches are looked up).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{AppliedRetention, RetentionPolicy, RetentionScope};
use crate::error::{Error, Result};
use crate::stream::category_of;

/// A stored policy, as the backends return it: its scope and its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredPolicy {
    pub scope: RetentionScope,
    pub json: String,
}

/// The default and category policies, and whether streams have their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PolicyRows {
    pub general: Vec<StoredPolicy>,
    pub any_stream_policy: bool,
}

/// What the retention of one stream depends on, from the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamRetention {
    pub stream: String,
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
    any_stream_policy: bool,
}

impl RetentionRules {
    pub(crate) fn from_rows(rows: PolicyRows) -> Result<Self> {
        let mut rules = RetentionRules {
            any_stream_policy: rows.any_stream_policy,
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
        self.default.is_none() && self.categories.is_empty() && !self.any_stream_policy
    }

    /// Whether a policy may apply to `stream` (its own ones are not known here).
    pub(crate) fn may_apply(&self, stream: &str) -> bool {
        self.any_stream_policy
            || self.default.is_some()
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
#[derive(Debug)]
pub(crate) struct RulesCache {
    refresh: Duration,
    slot: Mutex<Option<(Instant, Arc<RetentionRules>)>>,
}

impl RulesCache {
    pub(crate) fn new(refresh: Duration) -> Self {
        RulesCache {
            refresh,
            slot: Mutex::new(None),
        }
    }

    /// The cached rules, when still fresh.
    pub(crate) fn fresh(&self) -> Option<Arc<RetentionRules>> {
        let slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref()
            .filter(|(loaded, _)| loaded.elapsed() < self.refresh)
            .map(|(_, rules)| Arc::clone(rules))
    }

    pub(crate) fn store(&self, rules: Arc<RetentionRules>) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), rules));
    }

    pub(crate) fn invalidate(&self) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
