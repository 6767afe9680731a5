//! Upcasting: reading events written by older code with the types the code has now.
//!
//! Stored rows are never rewritten; decoding brings them up to date. Four kinds of
//! change are supported, registered per [`DomainEvent`] type with [`Upcasters`] on the
//! [`StoreBuilder`](crate::StoreBuilder) (and checked against that type when the store
//! opens):
//!
//! - **a new schema version** of a type ([`Upcasters::step`], one step per version, or
//!   [`Upcasters::upcast`], one function for every step): a payload of version 1 goes
//!   v1 → v2 → v3 until the version the type declares (`#[event(version = n)]`);
//! - **a renamed type** ([`Upcasters::rename`]): rows stored under the old name decode as
//!   the new one, and its version chain continues (a row of the old name at version 2 is
//!   the new name's version 2, upcast from there by the new name's steps);
//! - **a split** ([`Upcasters::split`]): one stored row becomes several domain events;
//! - **a removed type** ([`Upcasters::drop_type`]): its rows decode to no domain event
//!   (counted in `chronicle_upcast_dropped_events_total` and traced at debug level).
//!
//! **Versions and positions.** Upcasting changes what a row decodes to, never the rows:
//! [`Store::read_stream`](crate::Store::read_stream), [`Store::read_all`](crate::Store::read_all)
//! and the other raw reads return the stored rows (old type names, old versions, one row
//! per stored event). The events a split row becomes all carry that row's stream version,
//! log position and event id; a dropped row still takes its stream version. So a loaded
//! aggregate's version is its stream's version (what the next append expects), and
//! [`Loaded::replayed`](crate::Loaded::replayed) counts stored rows.
//!
//! **Filters.** A projection listing a type by its new name also gets the rows stored
//! under the names renamed or split into it (the log read asks for them too); decode
//! them with [`Store::decode_events`](crate::Store::decode_events). A raw event's
//! `event_type` stays the stored name, and outbox handlers match that name.

use std::any::type_name;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde_json::Value;

use crate::domain_event::{DecodeError, DomainEvent, EventView, decode_error};
pub use crate::error::UpcasterProblem;
use crate::error::{Error, Result, ValidationError};
use crate::telemetry;

/// Brings one event type's payload from the given version to the next.
type ChainFn = Arc<dyn Fn(Value, u32) -> Value + Send + Sync>;
/// Brings one event type's payload from one version to the next.
type StepFn = Arc<dyn Fn(Value) -> Value + Send + Sync>;
/// Turns one stored payload (and its version) into several events.
type SplitFn = Arc<dyn Fn(Value, u32) -> Vec<UpcastEvent> + Send + Sync>;
/// Checks a set of upcasters against its event type, given every rule of the store.
type CheckFn = Arc<dyn Fn(&UpcastTable) -> Result<(), ValidationError> + Send + Sync>;

/// How deep renames and splits may nest when one stored row is decoded (a cycle is
/// refused when the store opens; this guards the untyped paths).
const MAX_DEPTH: usize = 16;

/// One event made by a [`split`](Upcasters::split): a type name, the schema version its
/// payload is in, and the payload. It is then upcast like a stored event of that type
/// and version (renames and steps apply).
#[derive(Debug, Clone, PartialEq)]
pub struct UpcastEvent {
    event_type: String,
    schema_version: u32,
    payload: Value,
}

impl UpcastEvent {
    /// An event of `event_type` with `payload`, in schema version 1.
    pub fn new(event_type: impl Into<String>, payload: Value) -> Self {
        UpcastEvent {
            event_type: event_type.into(),
            schema_version: 1,
            payload,
        }
    }

    /// The schema version `payload` is in (1 by default).
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }
}

/// What a stored event type becomes.
#[derive(Clone)]
enum Rule {
    /// One function for every version step (it receives the version to upcast from).
    Chain(ChainFn),
    /// One function per version step, by the version it upcasts from.
    Steps(BTreeMap<u32, StepFn>),
    Rename(String),
    Split {
        into: Vec<String>,
        split: SplitFn,
    },
    Drop,
}

impl Rule {
    fn kind(&self) -> &'static str {
        match self {
            Rule::Chain(_) => "upcast",
            Rule::Steps(_) => "steps",
            Rule::Rename(_) => "rename",
            Rule::Split { .. } => "split",
            Rule::Drop => "drop",
        }
    }

    /// The names this rule sends rows to (a rename's or a split's targets).
    fn targets(&self) -> &[String] {
        match self {
            Rule::Rename(target) => std::slice::from_ref(target),
            Rule::Split { into, .. } => into,
            _ => &[],
        }
    }
}

/// The upcasters of the [`DomainEvent`] type `E`, registered with
/// [`StoreBuilder::upcasters`](crate::StoreBuilder::upcasters). The store checks them
/// against `E` when it opens: a type `E` does not know, a gap in a chain of steps, a
/// step from a version `E` already reads, a rename or split that leads nowhere are
/// [`ValidationError::Upcaster`] errors then, not when an old event is first read.
///
/// The rules apply to every typed read of the store (repositories, projections, the
/// outbox, [`Store::decode_event`](crate::Store::decode_event)), whatever type decodes
/// the event.
///
/// ```
/// # async fn demo() -> chronicle::Result<()> {
/// use chronicle::{DomainEvent, Store, UpcastEvent, Upcasters};
/// use serde_json::json;
///
/// #[derive(Debug, DomainEvent)]
/// #[event(prefix = "account.")]
/// enum AccountEvent {
///     Opened { owner: String },
///     // v1 had no currency; v2 added it. Once stored as `account.Credited`.
///     #[event(version = 2)]
///     Deposited { amount: u64, currency: String },
///     Withdrawn { amount: u64 },
/// }
///
/// let store = Store::builder("sqlite::memory:")
///     .upcasters(
///         Upcasters::<AccountEvent>::new()
///             .step("account.Deposited", 1, |mut payload| {
///                 payload["currency"] = json!("EUR");
///                 payload
///             })
///             .rename("account.Credited", "account.Deposited")
///             // One stored transfer is now a withdrawal and a deposit.
///             .split(
///                 "account.Transferred",
///                 ["account.Withdrawn", "account.Deposited"],
///                 |payload, _version| {
///                     vec![
///                         UpcastEvent::new("account.Withdrawn", json!({ "amount": payload["fee"] })),
///                         UpcastEvent::new("account.Deposited", json!({ "amount": payload["amount"] })),
///                     ]
///                 },
///             )
///             .drop_type("account.Audited"),
///     )
///     .open()
///     .await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
pub struct Upcasters<E: DomainEvent> {
    rules: Vec<(String, Rule)>,
    event: PhantomData<fn() -> E>,
}

impl<E: DomainEvent> Default for Upcasters<E> {
    fn default() -> Self {
        Upcasters {
            rules: Vec::new(),
            event: PhantomData,
        }
    }
}

impl<E: DomainEvent> fmt::Debug for Upcasters<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules: Vec<_> = self
            .rules
            .iter()
            .map(|(name, rule)| (name.as_str(), rule.kind()))
            .collect();
        f.debug_struct("Upcasters")
            .field("events", &type_name::<E>())
            .field("rules", &rules)
            .finish()
    }
}

impl<E: DomainEvent> Upcasters<E> {
    /// No upcasters yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the step of `event_type` from schema version `from_version` to the next:
    /// given a payload in `from_version`, it returns it in `from_version + 1`. The steps of
    /// a type must reach the version `E` declares without a gap.
    pub fn step(
        mut self,
        event_type: impl Into<String>,
        from_version: u32,
        step: impl Fn(Value) -> Value + Send + Sync + 'static,
    ) -> Self {
        let event_type = event_type.into();
        let step: StepFn = Arc::new(step);
        let existing = self
            .rules
            .iter_mut()
            .find(|(name, rule)| *name == event_type && matches!(rule, Rule::Steps(_)));
        match existing {
            Some((_, Rule::Steps(steps))) if !steps.contains_key(&from_version) => {
                steps.insert(from_version, step);
            }
            // A second step from one version is a duplicate: registered as a rule of its
            // own, so the store refuses it when it opens.
            _ => self.rules.push((
                event_type,
                Rule::Steps(BTreeMap::from([(from_version, step)])),
            )),
        }
        self
    }

    /// Registers one function for every version step of `event_type`: given a payload and
    /// the version it is in, it returns the payload in the next version (as
    /// [`StoreBuilder::upcast`](crate::StoreBuilder::upcast) does, with the checks).
    pub fn upcast(
        mut self,
        event_type: impl Into<String>,
        upcaster: impl Fn(Value, u32) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.rules
            .push((event_type.into(), Rule::Chain(Arc::new(upcaster))));
        self
    }

    /// Rows stored as `old` decode as `new`, their schema version unchanged: the version
    /// chain continues under the new name (register its steps under `new`).
    pub fn rename(mut self, old: impl Into<String>, new: impl Into<String>) -> Self {
        self.rules.push((old.into(), Rule::Rename(new.into())));
        self
    }

    /// Rows stored as `event_type` become the events `split` returns, each of a type among
    /// `into` (then upcast from the version it is given). They share the row's stream
    /// version, log position and event id.
    pub fn split<S: Into<String>>(
        mut self,
        event_type: impl Into<String>,
        into: impl IntoIterator<Item = S>,
        split: impl Fn(Value, u32) -> Vec<UpcastEvent> + Send + Sync + 'static,
    ) -> Self {
        let into = into.into_iter().map(Into::into).collect();
        let rule = Rule::Split {
            into,
            split: Arc::new(split),
        };
        self.rules.push((event_type.into(), rule));
        self
    }

    /// Rows stored as `event_type`, a type that no longer exists, decode to no event.
    pub fn drop_type(mut self, event_type: impl Into<String>) -> Self {
        self.rules.push((event_type.into(), Rule::Drop));
        self
    }

    /// Checks these rules against `E`, given the store's whole table (renames and splits
    /// may lead through rules of other sets).
    fn check(names: &[String], table: &UpcastTable) -> Result<(), ValidationError> {
        let problem = |event_type: &str, problem| ValidationError::Upcaster {
            events: type_name::<E>(),
            event_type: event_type.to_owned(),
            problem,
        };
        for name in names {
            let Some(rule) = table.rules.get(name) else {
                continue;
            };
            let current = E::current_version(name);
            match rule {
                Rule::Chain(_) | Rule::Steps(_) => {
                    let current =
                        current.ok_or_else(|| problem(name, UpcasterProblem::UnknownType))?;
                    if current == 1 {
                        return Err(problem(name, UpcasterProblem::NothingToUpcast));
                    }
                    if let Rule::Steps(steps) = rule {
                        check_steps(steps, current).map_err(|found| problem(name, found))?;
                    }
                }
                Rule::Rename(_) | Rule::Split { .. } | Rule::Drop => {
                    if current.is_some() {
                        return Err(problem(name, UpcasterProblem::StillKnown));
                    }
                    let mut path = vec![name.as_str()];
                    check_targets::<E>(table, rule, &mut path)
                        .map_err(|found| problem(name, found))?;
                }
            }
        }
        Ok(())
    }
}

/// The steps of a chain reach `current` from their first without a gap, and none starts
/// at `current` or beyond.
fn check_steps(steps: &BTreeMap<u32, StepFn>, current: u32) -> Result<(), UpcasterProblem> {
    if let Some((&from, _)) = steps.range(current..).next() {
        return Err(UpcasterProblem::StepBeyondCurrent { from, current });
    }
    let first = steps.keys().next().copied().unwrap_or(current);
    match (first..current).find(|version| !steps.contains_key(version)) {
        Some(missing) => Err(UpcasterProblem::Gap { missing }),
        None => Ok(()),
    }
}

/// Every target of `rule` leads to a variant of `E` (or is dropped), without a cycle.
fn check_targets<'a, E: DomainEvent>(
    table: &'a UpcastTable,
    rule: &'a Rule,
    path: &mut Vec<&'a str>,
) -> Result<(), UpcasterProblem> {
    for target in rule.targets() {
        if path.contains(&target.as_str()) {
            return Err(UpcasterProblem::Cycle);
        }
        match table.rules.get(target) {
            Some(next @ (Rule::Rename(_) | Rule::Split { .. })) => {
                path.push(target);
                check_targets::<E>(table, next, path)?;
                path.pop();
            }
            Some(Rule::Drop) => {}
            _ if E::current_version(target).is_some() => {}
            _ => {
                return Err(UpcasterProblem::UnknownTarget {
                    target: target.clone(),
                });
            }
        }
    }
    Ok(())
}

/// What one stored event decodes to: usually one domain event; several after a split,
/// none when its type was dropped.
#[derive(Debug)]
pub(crate) enum Decoded<E> {
    One(E),
    Many(Vec<E>),
}

impl<E> IntoIterator for Decoded<E> {
    type Item = E;
    type IntoIter = std::iter::Chain<std::option::IntoIter<E>, std::vec::IntoIter<E>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            Decoded::One(event) => Some(event).into_iter().chain(Vec::new()),
            Decoded::Many(events) => None.into_iter().chain(events),
        }
    }
}

/// The upcasters of a store, by stored event type, and the checks of the typed sets.
#[derive(Clone, Default)]
pub(crate) struct UpcastTable {
    rules: HashMap<String, Rule>,
    /// An event type named by two rules, reported when the store opens.
    duplicate: Option<(String, &'static str)>,
    checks: Vec<CheckFn>,
    /// For each type, the older names whose rows decode (also) as it: what a log read
    /// filtered by type asks for besides.
    sources: HashMap<String, Vec<String>>,
}

impl fmt::Debug for UpcastTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rules: Vec<_> = self
            .rules
            .iter()
            .map(|(name, rule)| (name.as_str(), rule.kind()))
            .collect();
        rules.sort_unstable();
        f.debug_struct("UpcastTable")
            .field("rules", &rules)
            .finish()
    }
}

impl UpcastTable {
    /// Registers an untyped chain for `event_type` ([`StoreBuilder::upcast`]).
    pub(crate) fn register(
        &mut self,
        event_type: String,
        upcaster: impl Fn(Value, u32) -> Value + Send + Sync + 'static,
    ) {
        self.insert(event_type, Rule::Chain(Arc::new(upcaster)), "");
    }

    /// Registers the typed set `set`, to be checked against `E` when the store opens.
    pub(crate) fn register_set<E: DomainEvent>(&mut self, set: Upcasters<E>) {
        let names: Vec<String> = set.rules.iter().map(|(name, _)| name.clone()).collect();
        for (name, rule) in set.rules {
            self.insert(name, rule, type_name::<E>());
        }
        let check: CheckFn = Arc::new(move |table| Upcasters::<E>::check(&names, table));
        self.checks.push(check);
    }

    fn insert(&mut self, name: String, rule: Rule, events: &'static str) {
        if self.rules.contains_key(&name) {
            self.duplicate.get_or_insert((name.clone(), events));
        }
        self.rules.insert(name, rule);
    }

    /// Refuses two rules for one type, and typed sets that do not fit their event type
    /// (see [`Upcasters`]); indexes the older names of each type for filtered reads.
    pub(crate) fn check(&mut self) -> Result<()> {
        if let Some((event_type, events)) = &self.duplicate {
            return Err(ValidationError::Upcaster {
                events,
                event_type: event_type.clone(),
                problem: UpcasterProblem::Duplicate,
            }
            .into());
        }
        for check in &self.checks {
            check(self)?;
        }
        self.sources = self.index_sources();
        Ok(())
    }

    /// For each name a rename or split leads to (directly or through others), the
    /// stored names that lead to it.
    fn index_sources(&self) -> HashMap<String, Vec<String>> {
        let mut sources: HashMap<String, Vec<String>> = HashMap::new();
        for (name, rule) in &self.rules {
            let mut seen = HashSet::new();
            let mut todo: Vec<&str> = rule.targets().iter().map(String::as_str).collect();
            while let Some(target) = todo.pop() {
                if !seen.insert(target) || seen.len() > MAX_DEPTH * 8 {
                    continue;
                }
                sources
                    .entry(target.to_owned())
                    .or_default()
                    .push(name.clone());
                if let Some(next) = self.rules.get(target) {
                    todo.extend(next.targets().iter().map(String::as_str));
                }
            }
        }
        sources
    }

    /// `types` with the stored names whose rows decode as one of them: what a read of the
    /// log filtered by `types` must ask for. `types` itself when nothing was renamed or
    /// split into them.
    pub(crate) fn stored_names(&self, types: Arc<[String]>) -> Arc<[String]> {
        if self.sources.is_empty() || types.is_empty() {
            return types;
        }
        let extra: Vec<&String> = types
            .iter()
            .filter_map(|name| self.sources.get(name))
            .flatten()
            .filter(|source| !types.contains(source))
            .collect();
        if extra.is_empty() {
            return types;
        }
        let mut all: Vec<String> = types.iter().cloned().collect();
        for source in extra {
            if !all.contains(source) {
                all.push(source.clone());
            }
        }
        all.into()
    }

    /// The domain events the stored `event` decodes to.
    ///
    /// # Errors
    /// [`Error::UnknownEventType`] for a type neither `E` nor a rule knows;
    /// [`Error::SchemaVersion`] for a version newer than `E`'s or a missing upcaster;
    /// [`Error::Payload`] (or [`Error::UndeclaredSchemaChange`]) when a payload does not fit;
    /// [`Error::Upcast`] when a split returns a type it did not declare.
    pub(crate) fn decode<E: DomainEvent>(&self, event: EventView<'_>) -> Result<Decoded<E>> {
        // Most stores have no rules: no lookup then.
        let rule = if self.rules.is_empty() {
            None
        } else {
            self.rules.get(event.event_type)
        };
        match rule {
            None | Some(Rule::Chain(_) | Rule::Steps(_)) => {
                let payload = self.bring_to::<E>(event)?;
                decode_one::<E>(event, event.event_type, event.schema_version, &payload)
                    .map(Decoded::One)
            }
            Some(_) => {
                let payload = parse(event, event.payload)?;
                let mut out = Vec::new();
                self.expand::<E>(
                    event,
                    event.event_type,
                    event.schema_version,
                    payload,
                    &mut out,
                    0,
                )?;
                Ok(Decoded::Many(out))
            }
        }
    }

    /// Follows renames, splits and drops from (`name`, `version`, `payload`), decoding
    /// what they lead to into `out`.
    fn expand<E: DomainEvent>(
        &self,
        event: EventView<'_>,
        name: &str,
        version: u32,
        payload: Value,
        out: &mut Vec<E>,
        depth: usize,
    ) -> Result<()> {
        let fail = |reason: String| Error::Upcast {
            stream: event.stream.to_string(),
            event_id: event.id,
            event_type: event.event_type.to_owned(),
            reason,
        };
        if depth > MAX_DEPTH {
            return Err(fail(format!(
                "renames and splits nest deeper than {MAX_DEPTH} at `{name}`"
            )));
        }
        match self.rules.get(name) {
            Some(Rule::Rename(new)) => self.expand(event, new, version, payload, out, depth + 1),
            Some(Rule::Split { into, split }) => {
                for part in split(payload, version) {
                    if !into.contains(&part.event_type) {
                        return Err(fail(format!(
                            "the split of `{name}` returned `{}`, which it does not declare \
                             (it declares {into:?})",
                            part.event_type
                        )));
                    }
                    self.expand(
                        event,
                        &part.event_type,
                        part.schema_version,
                        part.payload,
                        out,
                        depth + 1,
                    )?;
                }
                Ok(())
            }
            Some(Rule::Drop) => {
                tracing::debug!(stream = %event.stream, event_id = %event.id, event_type = name, "event type dropped by an upcaster; skipped");
                metrics::counter!(telemetry::UPCAST_DROPPED, "event_type" => name.to_owned())
                    .increment(1);
                Ok(())
            }
            None | Some(Rule::Chain(_) | Rule::Steps(_)) => {
                let view = EventView {
                    event_type: name,
                    schema_version: version,
                    ..event
                };
                let current = current_version::<E>(view)?;
                let payload = self.upcast_value(view, current, payload)?;
                let bytes = serde_json::to_vec(&payload).map_err(|error| {
                    Error::Internal(format!("an upcast payload does not serialize: {error}"))
                })?;
                out.push(decode_one::<E>(view, name, version, &bytes)?);
                Ok(())
            }
        }
    }

    /// `event`'s payload in the schema version `E` declares for its type: as stored when
    /// it is already there, upcast step by step when it is older.
    fn bring_to<'a, E: DomainEvent>(&self, event: EventView<'a>) -> Result<Cow<'a, [u8]>> {
        let current = current_version::<E>(event)?;
        if event.schema_version == current {
            return Ok(Cow::Borrowed(event.payload));
        }
        if event.schema_version > current {
            return Err(version_error(event, event.schema_version, current));
        }
        let payload = parse(event, event.payload)?;
        let payload = self.upcast_value(event, current, payload)?;
        serde_json::to_vec(&payload)
            .map(Cow::Owned)
            .map_err(|error| {
                Error::Internal(format!("an upcast payload does not serialize: {error}"))
            })
    }

    /// `payload`, of `event`'s type and version, upcast to `current`.
    fn upcast_value(
        &self,
        event: EventView<'_>,
        current: u32,
        mut payload: Value,
    ) -> Result<Value> {
        let stored = event.schema_version;
        if stored > current {
            return Err(version_error(event, stored, current));
        }
        match self.rules.get(event.event_type) {
            _ if stored == current => Ok(payload),
            Some(Rule::Chain(upcaster)) => {
                for version in stored..current {
                    payload = upcaster(payload, version);
                }
                Ok(payload)
            }
            Some(Rule::Steps(steps)) => {
                for version in stored..current {
                    let step = steps
                        .get(&version)
                        .ok_or_else(|| version_error(event, version, current))?;
                    payload = step(payload);
                }
                Ok(payload)
            }
            _ => Err(version_error(event, stored, current)),
        }
    }
}

/// The version `E` declares for `event`'s type.
fn current_version<E: DomainEvent>(event: EventView<'_>) -> Result<u32> {
    E::current_version(event.event_type).ok_or_else(|| {
        decode_error::<E>(
            DecodeError::UnknownType,
            event.stream,
            event.id,
            event.event_type,
        )
    })
}

fn version_error(event: EventView<'_>, stored: u32, current: u32) -> Error {
    Error::SchemaVersion {
        stream: event.stream.to_string(),
        event_id: event.id,
        event_type: event.event_type.to_owned(),
        stored,
        current,
    }
}

fn parse(event: EventView<'_>, payload: &[u8]) -> Result<Value> {
    serde_json::from_slice(payload).map_err(|source| Error::Payload {
        stream: event.stream.to_string(),
        event_id: event.id,
        event_type: event.event_type.to_owned(),
        source,
    })
}

/// `payload` (upcast to the current version) decoded as `name`. A payload that lacks a
/// field although it was stored in the version the code declares is most likely a
/// variant whose fields changed without a new `#[event(version = n)]`: the error says so.
fn decode_one<E: DomainEvent>(
    event: EventView<'_>,
    name: &str,
    stored_version: u32,
    payload: &[u8],
) -> Result<E> {
    E::decode(name, payload).map_err(|error| match error {
        DecodeError::Json(source)
            if source.is_data()
                && source.to_string().starts_with("missing field")
                && E::current_version(name) == Some(stored_version) =>
        {
            Error::UndeclaredSchemaChange {
                stream: event.stream.to_string(),
                event_id: event.id,
                event_type: name.to_owned(),
                version: stored_version,
                source,
            }
        }
        error => decode_error::<E>(error, event.stream, event.id, name),
    })
}
