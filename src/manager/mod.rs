//! The [`Manager`]: one handle on everything an application runs with chronicle. Named
//! stores ("providers") with an explicit default, the background tasks that work on them
//! (projections, outbox schedulers, relays, the retention enforcer) and the buses, with
//! [`stats`](Manager::stats), [`health`](Manager::health) and an orderly
//! [`close`](Manager::close).
//!
//! - [`config`]: [`ManagerConfig`], what [`Manager::from_config`] opens.
//! - [`health`]: the rules of health, and the [`HealthChecker`].
//! - [`stats`]: the reports.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> chronicle::Result<()> {
//! use chronicle::manager::{HealthStatus, Manager, ManagerConfig, ProviderConfig};
//!
//! let mut config = ManagerConfig::default();
//! config.providers.insert("main".into(), ProviderConfig::new("memory:"));
//! config.default = Some("main".into());
//! let manager = Manager::from_config(config).await?;
//!
//! let store = manager.default()?;
//! let bus = chronicle::bus::InMemoryBus::new();
//! manager.run("main", store.relay("to-bus").to_bus(bus.clone()))?;
//! manager.add_bus("local", bus)?;
//!
//! assert_eq!(manager.health().await.status, HealthStatus::Healthy);
//! println!("{}", serde_json::to_string_pretty(&manager.stats().await).unwrap_or_default());
//! let report = manager.close(std::time::Duration::from_secs(5)).await;
//! assert!(report.is_clean(), "{report:?}");
//! # Ok(()) }
//! ```

pub mod config;
mod duration_text;
pub mod health;
pub mod stats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;

pub use config::{KeySource, ManagerConfig, ProviderConfig, StoreSettings};
pub use duration_text::parse_duration;
pub use health::{
    ComponentHealth, Health, HealthChecker, HealthCheckerHandle, HealthStatus, HealthThresholds,
};
pub use stats::{BusReport, ManagerStats, ProviderStats, RelayReport};

use crate::aggregate::{Aggregate, Repository};
use crate::bus::{Bus, BusHealth, BusStats, RelayHandle};
use crate::error::{Error, Result, ValidationError};
use crate::outbox::{Outbox, SchedulerHandle};
use crate::projection::ProjectionHandle;
use crate::retention::EnforcerHandle;
use crate::store::Store;

/// Named stores, their background tasks and the buses, run and watched together. Clones
/// share the manager.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    /// In the order they were registered.
    providers: RwLock<Vec<Provider>>,
    default: RwLock<Option<String>>,
    tasks: Mutex<Vec<Managed>>,
    buses: Mutex<Vec<(String, Box<dyn WatchedBus>)>>,
    thresholds: HealthThresholds,
    /// Per bus, the reconnection count seen at the start of the current window.
    reconnects: Mutex<HashMap<String, (Instant, u64)>>,
}

struct Provider {
    name: String,
    store: Store,
    settings: StoreSettings,
}

/// A provider as [`Manager::info`] describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProviderInfo {
    /// Its name.
    pub name: String,
    /// `sqlite`, `postgres` or `memory`.
    pub backend: &'static str,
    /// Whether it is the default provider.
    pub is_default: bool,
    /// The snapshot threshold its repositories get, if configured.
    pub snapshot_threshold: Option<u64>,
    /// The background tasks the manager runs on it, as `kind name`.
    pub tasks: Vec<String>,
}

/// A background task for the manager to own: [`Manager::run`]. Each handle converts into
/// one; an outbox's scheduler comes with its outbox (`(outbox, handle)`), whose stats the
/// manager reads.
#[non_exhaustive]
pub enum Background {
    /// A projection's runner.
    Projection(ProjectionHandle),
    /// An outbox's scheduler, with the outbox.
    Outbox(Outbox, SchedulerHandle),
    /// A relay.
    Relay(RelayHandle),
    /// The retention enforcer.
    Retention(EnforcerHandle),
}

impl From<ProjectionHandle> for Background {
    fn from(handle: ProjectionHandle) -> Self {
        Background::Projection(handle)
    }
}

impl From<(Outbox, SchedulerHandle)> for Background {
    fn from((outbox, handle): (Outbox, SchedulerHandle)) -> Self {
        Background::Outbox(outbox, handle)
    }
}

impl From<RelayHandle> for Background {
    fn from(handle: RelayHandle) -> Self {
        Background::Relay(handle)
    }
}

impl From<EnforcerHandle> for Background {
    fn from(handle: EnforcerHandle) -> Self {
        Background::Retention(handle)
    }
}

impl Background {
    /// `projection totals`, `relay to-bus`, `outbox chronicle.outbox`, `retention`.
    fn describe(&self) -> String {
        match self {
            Background::Projection(handle) => format!("projection {}", handle.name()),
            Background::Outbox(outbox, _) => format!("outbox {}", outbox.checkpoint_name()),
            Background::Relay(handle) => format!("relay {}", handle.name()),
            Background::Retention(_) => "retention enforcer".to_owned(),
        }
    }

    /// The order `close` stops tasks in: what feeds others first (relays and schedulers
    /// drain their batch), then projections, then the enforcer.
    fn close_rank(&self) -> u8 {
        match self {
            Background::Relay(_) | Background::Outbox(..) => 0,
            Background::Projection(_) => 1,
            Background::Retention(_) => 2,
        }
    }

    async fn stop(self) -> Result<()> {
        match self {
            Background::Projection(handle) => handle.stop().await.map(drop),
            Background::Outbox(_, handle) => handle.stop().await.map(drop),
            Background::Relay(handle) => handle.stop().await.map(drop),
            Background::Retention(handle) => handle.stop().await.map(drop),
        }
    }
}

struct Managed {
    provider: String,
    task: Background,
}

/// What the manager asks of a bus, whatever its type.
trait WatchedBus: Send + Sync {
    fn health(&self) -> BusHealth;
    fn stats(&self) -> BusStats;
    fn close(&self) -> BoxFuture<'_, Result<()>>;
}

impl<B: Bus> WatchedBus for B {
    fn health(&self) -> BusHealth {
        Bus::health(self)
    }

    fn stats(&self) -> BusStats {
        Bus::stats(self)
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(Bus::close(self))
    }
}

/// What [`Manager::close`] did: what stopped, what failed, what did not stop in time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CloseReport {
    /// Stopped cleanly, in order (`provider: kind name`, `bus name`, `store name`).
    pub stopped: Vec<String>,
    /// Stopped with an error: what, and the error.
    pub failed: Vec<(String, String)>,
    /// Did not stop before the deadline (it was asked to stop, and stops on its own
    /// when it can).
    pub timed_out: Vec<String>,
}

impl CloseReport {
    /// Whether everything stopped cleanly in time.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.timed_out.is_empty()
    }
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            providers: RwLock::new(Vec::new()),
            default: RwLock::new(None),
            tasks: Mutex::new(Vec::new()),
            buses: Mutex::new(Vec::new()),
            thresholds: HealthThresholds::default(),
            reconnects: Mutex::new(HashMap::new()),
        }
    }
}

impl Manager {
    /// A manager with no provider yet, and the default health thresholds.
    pub fn new() -> Self {
        Manager::with_thresholds(HealthThresholds::default())
    }

    /// A manager with no provider yet, whose health uses `thresholds`.
    pub fn with_thresholds(thresholds: HealthThresholds) -> Self {
        Manager {
            inner: Arc::new(Inner {
                thresholds,
                ..Inner::default()
            }),
        }
    }

    /// Opens every provider `config` names, with the manager's settings under each one's
    /// own, sets the store-wide retention period where configured, and names the default.
    ///
    /// # Errors
    /// The first provider that does not open ([`Error::Connect`] names its target), a key
    /// source that cannot be read, or a default that names no provider. The providers
    /// opened before are closed.
    #[tracing::instrument(name = "chronicle.manager.from_config", skip_all, err)]
    pub async fn from_config(config: ManagerConfig) -> Result<Manager> {
        if let Some(default) = &config.default
            && !config.providers.contains_key(default)
        {
            return Err(ValidationError::UnknownProvider {
                name: default.clone(),
                known: config.providers.keys().cloned().collect(),
            }
            .into());
        }
        let manager = Manager::with_thresholds(config.health.clone());
        for (name, provider) in &config.providers {
            let settings = config.settings.overlaid_with(&provider.settings);
            match open_provider(provider, &settings).await {
                Ok(store) => manager.register_with(name, store, settings)?,
                Err(error) => {
                    manager.close(Duration::from_secs(5)).await;
                    return Err(error);
                }
            }
        }
        if let Some(default) = config.default {
            manager.set_default(&default)?;
        }
        Ok(manager)
    }

    /// Adds `store` under `name`.
    ///
    /// # Errors
    /// [`ValidationError::DuplicateProvider`] when `name` is taken.
    pub fn register(&self, name: impl Into<String>, store: Store) -> Result<()> {
        self.register_with(&name.into(), store, StoreSettings::default())
    }

    fn register_with(&self, name: &str, store: Store, settings: StoreSettings) -> Result<()> {
        let mut providers = self.write_providers();
        if providers.iter().any(|provider| provider.name == name) {
            return Err(ValidationError::DuplicateProvider {
                name: name.to_owned(),
            }
            .into());
        }
        providers.push(Provider {
            name: name.to_owned(),
            store,
            settings,
        });
        Ok(())
    }

    /// Makes `name` the provider [`Manager::default`] returns.
    ///
    /// # Errors
    /// [`ValidationError::UnknownProvider`].
    pub fn set_default(&self, name: &str) -> Result<()> {
        self.get(name)?;
        *self
            .inner
            .default
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(name.to_owned());
        Ok(())
    }

    /// The store registered as `name`.
    ///
    /// # Errors
    /// [`ValidationError::UnknownProvider`], listing the names there are.
    pub fn get(&self, name: &str) -> Result<Store> {
        let providers = self.read_providers();
        providers
            .iter()
            .find(|provider| provider.name == name)
            .map(|provider| provider.store.clone())
            .ok_or_else(|| {
                ValidationError::UnknownProvider {
                    name: name.to_owned(),
                    known: providers.iter().map(|p| p.name.clone()).collect(),
                }
                .into()
            })
    }

    /// The default provider's store: the one named by [`Manager::set_default`] or the
    /// configuration, never a pick among several.
    ///
    /// # Errors
    /// [`ValidationError::NoDefaultProvider`] when none was named.
    pub fn default(&self) -> Result<Store> {
        let default = self
            .inner
            .default
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match default {
            Some(name) => self.get(&name),
            None => Err(ValidationError::NoDefaultProvider.into()),
        }
    }

    /// The providers' names, in the order they were registered.
    pub fn list(&self) -> Vec<String> {
        self.read_providers()
            .iter()
            .map(|provider| provider.name.clone())
            .collect()
    }

    /// What the manager knows of provider `name`.
    ///
    /// # Errors
    /// [`ValidationError::UnknownProvider`].
    pub fn info(&self, name: &str) -> Result<ProviderInfo> {
        let store = self.get(name)?;
        let snapshot_threshold = self
            .read_providers()
            .iter()
            .find(|provider| provider.name == name)
            .and_then(|provider| provider.settings.snapshot_threshold);
        let is_default = self
            .inner
            .default
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_deref()
            == Some(name);
        let tasks = self
            .lock_tasks()
            .iter()
            .filter(|managed| managed.provider == name)
            .map(|managed| managed.task.describe())
            .collect();
        Ok(ProviderInfo {
            name: name.to_owned(),
            backend: store.backend_kind(),
            is_default,
            snapshot_threshold,
            tasks,
        })
    }

    /// A repository of `A` on provider `name`, snapshotting at the configured threshold
    /// (else as `A`'s derive attribute says).
    ///
    /// # Errors
    /// [`ValidationError::UnknownProvider`].
    pub fn repository<A: Aggregate>(&self, name: &str) -> Result<Repository<A>> {
        let repository = self.get(name)?.repository::<A>();
        let threshold = self
            .read_providers()
            .iter()
            .find(|provider| provider.name == name)
            .and_then(|provider| provider.settings.snapshot_threshold);
        Ok(match threshold {
            Some(events) => repository.snapshot_every(events),
            None => repository,
        })
    }

    /// Hands a running background task on provider `name` to the manager, which watches
    /// it (stats, health) and stops it on [`Manager::close`].
    ///
    /// # Errors
    /// [`ValidationError::UnknownProvider`]; the task is then dropped, which stops it.
    pub fn run(&self, provider: &str, task: impl Into<Background>) -> Result<()> {
        self.get(provider)?;
        self.lock_tasks().push(Managed {
            provider: provider.to_owned(),
            task: task.into(),
        });
        Ok(())
    }

    /// Hands a bus to the manager under `name`: its stats and health are reported, and
    /// [`Manager::close`] closes it (keep a clone to use it).
    ///
    /// # Errors
    /// [`ValidationError::Config`] when a bus of that name is there already.
    pub fn add_bus(&self, name: impl Into<String>, bus: impl Bus) -> Result<()> {
        let name = name.into();
        let mut buses = self
            .inner
            .buses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if buses.iter().any(|(taken, _)| *taken == name) {
            return Err(
                ValidationError::Config(format!("a bus named `{name}` is already added")).into(),
            );
        }
        buses.push((name, Box::new(bus)));
        Ok(())
    }

    /// A checker of this manager's health every interval: [`HealthChecker::spawn`].
    pub fn health_checker(&self) -> HealthChecker {
        HealthChecker::new(self.clone())
    }

    /// Every provider's and bus's figures. Never fails: what cannot be read is said in
    /// the provider's `errors`.
    #[tracing::instrument(name = "chronicle.manager.stats", skip_all)]
    pub async fn stats(&self) -> ManagerStats {
        let mut stats = ManagerStats::default();
        for (name, store) in self.stores() {
            stats
                .providers
                .insert(name.clone(), self.provider_stats(&name, &store).await);
        }
        for (name, bus) in self
            .inner
            .buses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            stats.buses.insert(
                name.clone(),
                BusReport {
                    stats: bus.stats(),
                    health: bus.health(),
                },
            );
        }
        stats
    }

    async fn provider_stats(&self, name: &str, store: &Store) -> ProviderStats {
        let mut stats = ProviderStats {
            backend: store.backend_kind(),
            ..ProviderStats::default()
        };
        let mut note = |what: &str, error: Error| stats_error(&mut stats.errors, what, error);
        let storage = store.storage().await;
        let checkpoints = store.projection_checkpoints().await;
        let outbox = self.attached_outbox(name);
        let outbox_stats = match &outbox {
            Some(outbox) => Some(outbox.stats().await),
            None if store.keeps_outbox() => Some(store.outbox_admin().stats().await),
            None => None,
        };
        match storage {
            Ok(storage) => stats.storage = Some(storage),
            Err(error) => note("storage", error),
        }
        match checkpoints {
            Ok(checkpoints) => stats.checkpoints = checkpoints,
            Err(error) => note("checkpoints", error),
        }
        match outbox_stats {
            Some(Ok(outbox)) => stats.outbox = Some(outbox),
            Some(Err(error)) => note("outbox", error),
            None => {}
        }
        for managed in self.lock_tasks().iter().filter(|m| m.provider == name) {
            match &managed.task {
                Background::Projection(handle) => {
                    stats
                        .projections
                        .insert(handle.name().to_owned(), handle.status());
                }
                Background::Relay(handle) => {
                    stats.relays.insert(
                        handle.name().to_owned(),
                        RelayReport {
                            status: handle.status(),
                            stats: handle.stats(),
                            health: handle.health(),
                        },
                    );
                }
                Background::Retention(handle) => {
                    let totals = handle.totals();
                    stats.retention = Some(match stats.retention {
                        Some(mut sum) => {
                            sum.add(totals);
                            sum
                        }
                        None => totals,
                    });
                }
                Background::Outbox(..) => {}
            }
        }
        stats
    }

    /// Every component's health: [`health`] has the rules. A database whose ping takes
    /// longer than 5 s is unhealthy; [`HealthChecker::timeout`] bounds a whole check.
    #[tracing::instrument(name = "chronicle.manager.health", skip_all)]
    pub async fn health(&self) -> Health {
        self.health_within(Duration::from_secs(5)).await
    }

    /// [`Manager::health`], with each database's ping and the whole check bounded by
    /// `timeout`.
    pub(crate) async fn health_within(&self, timeout: Duration) -> Health {
        let started = Instant::now();
        let checked_at = chrono::Utc::now();
        match tokio::time::timeout(timeout, self.components(timeout)).await {
            Ok(components) => Health::of(components, checked_at, started.elapsed()),
            Err(_) => {
                let mut component = ComponentHealth::new("manager", "health check");
                component.worsen(
                    HealthStatus::Unhealthy,
                    format!("the check took longer than {timeout:?}"),
                );
                Health::of(vec![component], checked_at, started.elapsed())
            }
        }
    }

    async fn components(&self, timeout: Duration) -> Vec<ComponentHealth> {
        let limits = &self.inner.thresholds;
        let mut components = Vec::new();
        for (name, store) in self.stores() {
            components.push(health::database(&name, &store, timeout, limits).await);
            if let Some(component) = self.outbox_health(&name, &store).await {
                components.push(component);
            }
        }
        for managed in self.lock_tasks().iter() {
            match &managed.task {
                Background::Projection(handle) => components.push(health::projection(
                    &managed.provider,
                    handle.name(),
                    &handle.status(),
                    limits,
                )),
                Background::Relay(handle) => components.push(health::relay(
                    &managed.provider,
                    handle.name(),
                    &handle.status(),
                    &handle.health(),
                    limits,
                )),
                Background::Outbox(..) | Background::Retention(_) => {}
            }
        }
        let buses: Vec<(String, BusHealth)> = self
            .inner
            .buses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, bus)| (name.clone(), bus.health()))
            .collect();
        for (name, bus_health) in buses {
            let recent = self.recent_reconnects(&name, bus_health.reconnects);
            components.push(health::bus(&name, &bus_health, recent, limits));
        }
        components
    }

    /// The outbox's health, on a store whose backend keeps one (every backend of
    /// chronicle's does).
    async fn outbox_health(&self, name: &str, store: &Store) -> Option<ComponentHealth> {
        if !store.keeps_outbox() {
            return None;
        }
        let stats = match self.attached_outbox(name) {
            Some(outbox) => outbox.stats().await,
            None => store.outbox_admin().stats().await,
        };
        Some(health::outbox(name, stats, &self.inner.thresholds))
    }

    /// Reconnections of bus `name` within the current window (which starts afresh once
    /// it is older than the thresholds' `reconnect_window`).
    fn recent_reconnects(&self, name: &str, now_count: u64) -> u64 {
        let window = self.inner.thresholds.reconnect_window;
        let mut seen = self
            .inner
            .reconnects
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (since, base) = seen
            .entry(name.to_owned())
            .or_insert((Instant::now(), now_count));
        let recent = now_count.saturating_sub(*base);
        if since.elapsed() >= window {
            *since = Instant::now();
            *base = now_count;
        }
        recent
    }

    /// Stops everything, in order, within `deadline`: relays and outbox schedulers (each
    /// finishes its batch in hand), then projections (at a batch boundary), then the
    /// retention enforcer, then the buses (which handle what they accepted), then the
    /// stores' pools. What does not stop in time is named in the report; it was asked to
    /// stop and stops on its own when it can.
    #[tracing::instrument(name = "chronicle.manager.close", skip(self))]
    pub async fn close(&self, deadline: Duration) -> CloseReport {
        let until = tokio::time::Instant::now() + deadline;
        let mut report = CloseReport::default();
        let mut tasks = std::mem::take(&mut *self.lock_tasks());
        tasks.sort_by_key(|managed| managed.task.close_rank());
        let mut rank = None;
        let mut wave = Vec::new();
        // Tasks of one rank stop together; the next rank waits for them.
        for managed in tasks {
            let this = managed.task.close_rank();
            if rank.is_some_and(|rank| rank != this) {
                stop_wave(std::mem::take(&mut wave), until, &mut report).await;
            }
            rank = Some(this);
            let what = format!("{}: {}", managed.provider, managed.task.describe());
            wave.push((
                what,
                Box::pin(managed.task.stop()) as BoxFuture<'static, Result<()>>,
            ));
        }
        stop_wave(wave, until, &mut report).await;
        let buses = std::mem::take(
            &mut *self
                .inner
                .buses
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (name, bus) in buses {
            let what = format!("bus {name}");
            match tokio::time::timeout_at(until, bus.close()).await {
                Ok(Ok(())) => report.stopped.push(what),
                Ok(Err(error)) => report.failed.push((what, error.to_string())),
                Err(_) => report.timed_out.push(what),
            }
        }
        for (name, store) in self.stores() {
            let what = format!("store {name}");
            match tokio::time::timeout_at(until, store.close()).await {
                Ok(()) => report.stopped.push(what),
                Err(_) => report.timed_out.push(what),
            }
        }
        if !report.is_clean() {
            tracing::warn!(?report, "the manager did not close cleanly");
        }
        report
    }

    fn stores(&self) -> Vec<(String, Store)> {
        self.read_providers()
            .iter()
            .map(|provider| (provider.name.clone(), provider.store.clone()))
            .collect()
    }

    fn attached_outbox(&self, provider: &str) -> Option<Outbox> {
        self.lock_tasks()
            .iter()
            .find_map(|managed| match &managed.task {
                Background::Outbox(outbox, _) if managed.provider == provider => {
                    Some(outbox.clone())
                }
                _ => None,
            })
    }

    fn read_providers(&self) -> std::sync::RwLockReadGuard<'_, Vec<Provider>> {
        self.inner
            .providers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_providers(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Provider>> {
        self.inner
            .providers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<Managed>> {
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Manager {
    fn default() -> Self {
        Manager::new()
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("providers", &self.list())
            .field("tasks", &self.lock_tasks().len())
            .finish_non_exhaustive()
    }
}

/// Opens one provider's store with `settings`, and sets its retention period.
async fn open_provider(provider: &ProviderConfig, settings: &StoreSettings) -> Result<Store> {
    let mut builder = Store::builder(provider.url.as_str());
    if let Some(schema) = &provider.schema {
        builder = builder.schema(schema.clone());
    }
    if let Some(connections) = provider.pool_size {
        builder = builder.pool_size(connections);
    }
    let store = settings.configure(builder)?.open().await?;
    settings.apply_retention(&store).await?;
    Ok(store)
}

/// Stops `wave` side by side until `until`, noting each outcome in `report`.
async fn stop_wave(
    wave: Vec<(String, BoxFuture<'static, Result<()>>)>,
    until: tokio::time::Instant,
    report: &mut CloseReport,
) {
    let outcomes = futures::future::join_all(
        wave.into_iter()
            .map(|(what, stop)| async move { (what, tokio::time::timeout_at(until, stop).await) }),
    )
    .await;
    for (what, outcome) in outcomes {
        match outcome {
            Ok(Ok(())) => report.stopped.push(what),
            Ok(Err(error)) => report.failed.push((what, error.to_string())),
            Err(_) => report.timed_out.push(what),
        }
    }
}

fn stats_error(errors: &mut Vec<String>, what: &str, error: Error) {
    errors.push(format!("{what}: {error}"));
}
