//! The store's side of retention: setting and reading policies, leaving expired events
//! out of reads, and one enforcement batch. The policy types and the enforcer live in
//! `crate::retention`.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;

use super::Store;
use super::backend::{ExpiryCut, StoredEvent};
use crate::error::{Error, Result, ValidationError};
use crate::retention::rules::{RetentionRules, StreamRetention, parse};
use crate::retention::{
    AppliedRetention, RetentionEnforcer, RetentionPolicy, RetentionReport, RetentionScope,
    StreamPlace,
};
use crate::stream::StreamId;

impl Store {
    /// Sets the retention policy of `scope` (replacing the one it had). Reads leave the
    /// events it expires out at once; [`Store::enforce_retention`] removes them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> chronicle::Result<()> {
    /// use chronicle::{RetentionPolicy, RetentionScope, Store};
    ///
    /// let store = Store::open("sqlite::memory:").await?;
    /// store
    ///     .set_retention(RetentionScope::category("account"), RetentionPolicy::new().max_count(500))
    ///     .await?;
    /// assert_eq!(
    ///     store.retention(&RetentionScope::category("account")).await?,
    ///     Some(RetentionPolicy::new().max_count(500))
    /// );
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Validation`] for a bad stream id or category (a category holds no `-`);
    /// connection errors.
    #[tracing::instrument(name = "chronicle.set_retention", skip(self))]
    pub async fn set_retention(
        &self,
        scope: RetentionScope,
        policy: RetentionPolicy,
    ) -> Result<()> {
        validate_scope(&scope)?;
        let json = serde_json::to_string(&policy)
            .map_err(|error| Error::Internal(format!("retention policy: {error}")))?;
        self.store_retention(&scope, Some(&json)).await
    }

    /// Removes the retention policy of `scope`; its streams fall back to the next one (a
    /// stream's to its category's, a category's to the default).
    ///
    /// # Errors
    /// As [`Store::set_retention`].
    #[tracing::instrument(name = "chronicle.clear_retention", skip(self))]
    pub async fn clear_retention(&self, scope: RetentionScope) -> Result<()> {
        validate_scope(&scope)?;
        self.store_retention(&scope, None).await
    }

    /// The policy set on `scope` itself (not inherited), if any. The policy in force for a
    /// stream is in [`StreamInfo::retention`](crate::StreamInfo::retention).
    ///
    /// # Errors
    /// Connection errors; a stored policy that does not parse.
    pub async fn retention(&self, scope: &RetentionScope) -> Result<Option<RetentionPolicy>> {
        let backend = &self.inner.backend;
        let json = self
            .inner
            .retry
            .run("retention", || backend.retention_policy(scope))
            .await?;
        json.map(|json| parse(scope, &json)).transpose()
    }

    /// Up to `limit` stored policies after `after` (`None`: from the first), in order: the
    /// default, then categories and then streams, each by name. For the next page, pass
    /// the last scope returned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> chronicle::Result<()> {
    /// use chronicle::{RetentionPolicy, RetentionScope, Store};
    ///
    /// let store = Store::open("sqlite::memory:").await?;
    /// store.set_retention(RetentionScope::stream("audit-1"), RetentionPolicy::new().max_count(9)).await?;
    /// store.set_retention(RetentionScope::Default, RetentionPolicy::new().max_count(500)).await?;
    /// let listed = store.list_retention(None, 100).await?;
    /// assert_eq!(listed[0].0, RetentionScope::Default);
    /// assert_eq!(listed[1], (RetentionScope::stream("audit-1"), RetentionPolicy::new().max_count(9)));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors; a stored policy that does not parse.
    #[tracing::instrument(name = "chronicle.list_retention", skip(self))]
    pub async fn list_retention(
        &self,
        after: Option<&RetentionScope>,
        limit: usize,
    ) -> Result<Vec<(RetentionScope, RetentionPolicy)>> {
        let backend = &self.inner.backend;
        let after = after.map(RetentionScope::key);
        let stored = self
            .inner
            .retry
            .run("list_retention", || backend.list_retention(after, limit))
            .await?;
        stored
            .into_iter()
            .map(|stored| {
                let policy = parse(&stored.scope, &stored.json)?;
                Ok((stored.scope, policy))
            })
            .collect()
    }

    /// One enforcement pass with the default settings: removes every expired event of
    /// every stream with a policy. See [`Store::retention_enforcer`] for batch size and a
    /// background task.
    ///
    /// # Errors
    /// As [`RetentionEnforcer::run_once`].
    pub async fn enforce_retention(&self) -> Result<crate::retention::RetentionReport> {
        self.retention_enforcer().run_once().await
    }

    /// Enforcement settings: batch size, and the interval of a background task.
    pub fn retention_enforcer(&self) -> RetentionEnforcer {
        RetentionEnforcer::new(self.clone())
    }

    async fn store_retention(&self, scope: &RetentionScope, json: Option<&str>) -> Result<()> {
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("set_retention", || backend.set_retention(scope, json))
            .await?;
        self.inner.retention.invalidate();
        Ok(())
    }

    /// The rules as stored now, bypassing the cache.
    pub(crate) async fn load_retention_rules(&self) -> Result<Arc<RetentionRules>> {
        let backend = &self.inner.backend;
        let generation = self.inner.retention.generation();
        let rows = self
            .inner
            .retry
            .run("retention_policies", || backend.retention_policies())
            .await?;
        let rules = Arc::new(RetentionRules::from_rows(rows)?);
        self.inner.retention.store(generation, Arc::clone(&rules));
        Ok(rules)
    }

    /// The rules, from the cache when fresh.
    async fn retention_rules(&self) -> Result<Arc<RetentionRules>> {
        match self.inner.retention.fresh() {
            Some(rules) => Ok(rules),
            None => self.load_retention_rules().await,
        }
    }

    /// The policy in force for each of `streams` that has one, with what it needs to know
    /// of the stream.
    async fn policies_of(
        &self,
        rules: &RetentionRules,
        streams: &[&str],
    ) -> Result<HashMap<String, (AppliedRetention, StreamPlace)>> {
        let backend = &self.inner.backend;
        let states: Vec<StreamRetention> = self
            .inner
            .retry
            .run("stream_retention", || backend.stream_retention(streams))
            .await?;
        let mut policies = HashMap::new();
        for state in states {
            if let Some(applied) = rules.applied(&state.stream, state.own.as_deref())? {
                let place = StreamPlace {
                    head: state.head,
                    snapshot: state.snapshot,
                };
                policies.insert(state.stream, (applied, place));
            }
        }
        Ok(policies)
    }

    /// The policy in force for `stream`, if any, and the stream's place.
    pub(crate) async fn stream_policy(
        &self,
        stream: &str,
    ) -> Result<Option<(AppliedRetention, StreamPlace)>> {
        let rules = self.retention_rules().await?;
        if !rules.may_apply(stream) {
            return Ok(None);
        }
        Ok(self.policies_of(&rules, &[stream]).await?.remove(stream))
    }

    /// `events` without those a policy has expired.
    pub(crate) async fn without_expired(
        &self,
        mut events: Vec<StoredEvent>,
    ) -> Result<Vec<StoredEvent>> {
        if events.is_empty() {
            return Ok(events);
        }
        let rules = self.retention_rules().await?;
        if rules.is_empty() {
            return Ok(events);
        }
        let mut streams: Vec<&str> = events
            .iter()
            .map(|event| event.stream_id.as_str())
            .filter(|stream| rules.may_apply(stream))
            .collect();
        streams.sort_unstable();
        streams.dedup();
        if streams.is_empty() {
            return Ok(events);
        }
        let policies = self.policies_of(&rules, &streams).await?;
        if policies.is_empty() {
            return Ok(events);
        }
        let now = Utc::now();
        events.retain(|event| {
            policies
                .get(event.stream_id.as_str())
                .is_none_or(|(applied, place)| {
                    !applied
                        .policy
                        .expires(event.version, event.recorded_at, *place, now)
                })
        });
        Ok(events)
    }

    /// The policies in force for stream infos, filled in.
    pub(crate) async fn with_retention(
        &self,
        mut infos: Vec<crate::stream::StreamInfo>,
    ) -> Result<Vec<crate::stream::StreamInfo>> {
        let rules = self.retention_rules().await?;
        let streams: Vec<&str> = infos
            .iter()
            .map(|info| info.stream_id.as_str())
            .filter(|stream| rules.may_apply(stream))
            .collect();
        if streams.is_empty() {
            return Ok(infos);
        }
        let mut policies = self.policies_of(&rules, &streams).await?;
        for info in &mut infos {
            info.retention = policies
                .remove(info.stream_id.as_str())
                .map(|(applied, _)| applied);
        }
        Ok(infos)
    }

    /// One batch of enforcement: up to `limit` streams after `after` that a policy may
    /// apply to, their expired events removed. Returns what it did and where the next
    /// batch starts (`None`: this was the last).
    pub(crate) async fn enforce_batch(
        &self,
        rules: &RetentionRules,
        after: &str,
        limit: usize,
    ) -> Result<(RetentionReport, Option<String>)> {
        let backend = &self.inner.backend;
        let categories = rules.categories();
        let all = rules.has_default();
        let candidates = self
            .inner
            .retry
            .run("enforce_retention", || {
                backend.retention_candidates(after, limit, &categories, all)
            })
            .await?;
        let next = (candidates.len() >= limit)
            .then(|| candidates.last().map(|state| state.stream.clone()))
            .flatten();
        let now = Utc::now();
        let mut report = RetentionReport {
            streams_examined: candidates.len() as u64,
            ..RetentionReport::default()
        };
        let mut cuts = Vec::new();
        for state in candidates {
            let Some(applied) = rules.applied(&state.stream, state.own.as_deref())? else {
                continue;
            };
            let policy = applied.policy;
            let place = StreamPlace {
                head: state.head,
                snapshot: state.snapshot,
            };
            let cut = ExpiryCut {
                up_to: policy.removable_up_to(place),
                below: policy.version_cut(state.head),
                before: policy.age_bound(now),
                stream: state.stream,
            };
            if cut.up_to > 0 && (cut.below > 1 || cut.before.is_some()) {
                cuts.push(cut);
            }
        }
        if !cuts.is_empty() {
            let (events, bytes) = self
                .inner
                .retry
                .run("enforce_retention", || backend.remove_expired(&cuts))
                .await?;
            report.events_removed = events;
            report.bytes_freed = bytes;
        }
        Ok((report, next))
    }
}

fn validate_scope(scope: &RetentionScope) -> Result<()> {
    match scope {
        RetentionScope::Default => Ok(()),
        RetentionScope::Stream(stream) => StreamId::new(stream.as_str()).map(|_| ()),
        RetentionScope::Category(category) if category.is_empty() || category.contains('-') => {
            Err(ValidationError::Config(format!(
                "`{category}` is not a category: categories are non-empty and hold no `-`"
            ))
            .into())
        }
        // A category is the start of stream ids: the same text rules hold.
        RetentionScope::Category(category) => StreamId::new(category.as_str()).map(|_| ()),
    }
}
