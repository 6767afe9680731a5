//! Health: [`Health`] (healthy, degraded or unhealthy, per component, with a reason),
//! the [`HealthThresholds`] that decide it, and the [`HealthChecker`] that checks every
//! interval and keeps the last result.
//!
//! The rules, one per kind of component:
//! - **database**: a ping that fails or takes longer than the check's timeout is
//!   unhealthy; one slower than `slow_ping` is degraded.
//! - **projection**: `Failed` is unhealthy; a lag over `projection_lag_events` events or
//!   `projection_lag` is degraded.
//! - **outbox**: more dead requests than `outbox_dead`, or a request open for longer than
//!   `outbox_oldest_open`, is degraded.
//! - **relay**: `Failed` is unhealthy; a sink not connected, or a lag over
//!   `relay_lag_events`, is degraded.
//! - **bus**: not connected is unhealthy; more than `bus_reconnects` reconnections within
//!   `reconnect_window` is degraded.
//!
//! The whole is its worst component.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Manager;
use crate::bus::BusHealth;
use crate::error::Result;
use crate::outbox::OutboxStats;
use crate::projection::{ProjectionState, ProjectionStatus};
use crate::store::Store;
use crate::task::{Task, stop_requested};

/// Healthy, degraded (working, but look) or unhealthy (not working). Ordered from best
/// to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Working as expected.
    Healthy,
    /// Working, but behind or failing now and then.
    Degraded,
    /// Not working.
    Unhealthy,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// One component's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ComponentHealth {
    /// What it is: `database`, `projection`, `outbox`, `relay` or `bus`.
    pub kind: &'static str,
    /// Which: the provider's name, `provider/projection`, the bus's name.
    pub name: String,
    /// Its status.
    pub status: HealthStatus,
    /// Why it is not healthy (or, for a database, its ping).
    pub reason: Option<String>,
    /// A database's ping.
    #[serde(rename = "latency_ms", with = "crate::millis::option")]
    pub latency: Option<Duration>,
}

impl ComponentHealth {
    pub(crate) fn new(kind: &'static str, name: impl Into<String>) -> Self {
        ComponentHealth {
            kind,
            name: name.into(),
            status: HealthStatus::Healthy,
            reason: None,
            latency: None,
        }
    }

    /// Lowers the status to `status` (never raises it), keeping the first reason given at
    /// the worst status.
    pub(crate) fn worsen(&mut self, status: HealthStatus, reason: String) {
        if status > self.status {
            self.status = status;
            self.reason = Some(reason);
        } else if status == self.status
            && status != HealthStatus::Healthy
            && let Some(reasons) = &mut self.reason
        {
            reasons.push_str("; ");
            reasons.push_str(&reason);
        }
    }
}

/// A health check's result: the worst component's status, and every component's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// The worst of the components' (healthy when there are none).
    pub status: HealthStatus,
    /// Each component, by kind then name.
    pub components: Vec<ComponentHealth>,
    /// When the check started.
    pub checked_at: DateTime<Utc>,
    /// How long it took.
    #[serde(rename = "took_ms", with = "crate::millis")]
    pub took: Duration,
}

impl Health {
    pub(crate) fn of(
        components: Vec<ComponentHealth>,
        checked_at: DateTime<Utc>,
        took: Duration,
    ) -> Self {
        let status = components
            .iter()
            .map(|component| component.status)
            .max()
            .unwrap_or(HealthStatus::Healthy);
        Health {
            status,
            components,
            checked_at,
            took,
        }
    }

    /// The components that are not healthy.
    pub fn problems(&self) -> impl Iterator<Item = &ComponentHealth> {
        self.components
            .iter()
            .filter(|component| component.status != HealthStatus::Healthy)
    }
}

/// When components turn degraded; durations as in the configuration (`"5m"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthThresholds {
    /// A database ping slower than this is degraded (default 1 s).
    #[serde(with = "super::duration_text::required")]
    pub slow_ping: Duration,
    /// A projection more events than this behind is degraded (default 10,000).
    pub projection_lag_events: u64,
    /// A projection whose last event was older than this when applied is degraded
    /// (default 5 min).
    #[serde(with = "super::duration_text::required")]
    pub projection_lag: Duration,
    /// More dead outbox requests than this is degraded (default 0: any).
    pub outbox_dead: u64,
    /// An outbox request open for longer than this is degraded (default 15 min).
    #[serde(with = "super::duration_text::required")]
    pub outbox_oldest_open: Duration,
    /// A relay more events than this behind is degraded (default 10,000).
    pub relay_lag_events: u64,
    /// More reconnections of a bus than this within `reconnect_window` is degraded
    /// (default 3).
    pub bus_reconnects: u64,
    /// The window reconnections are counted in (default 5 min).
    #[serde(with = "super::duration_text::required")]
    pub reconnect_window: Duration,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            slow_ping: Duration::from_secs(1),
            projection_lag_events: 10_000,
            projection_lag: Duration::from_secs(300),
            outbox_dead: 0,
            outbox_oldest_open: Duration::from_secs(900),
            relay_lag_events: 10_000,
            bus_reconnects: 3,
            reconnect_window: Duration::from_secs(300),
        }
    }
}

/// A database: its ping.
pub(crate) async fn database(
    name: &str,
    store: &Store,
    timeout: Duration,
    limits: &HealthThresholds,
) -> ComponentHealth {
    let mut component = ComponentHealth::new("database", name);
    match tokio::time::timeout(timeout, store.ping()).await {
        Ok(Ok(latency)) => {
            component.latency = Some(latency);
            if latency > limits.slow_ping {
                component.worsen(
                    HealthStatus::Degraded,
                    format!("ping took {latency:?} (over {:?})", limits.slow_ping),
                );
            }
        }
        Ok(Err(error)) => component.worsen(HealthStatus::Unhealthy, error.to_string()),
        Err(_) => component.worsen(
            HealthStatus::Unhealthy,
            format!("no answer to a ping within {timeout:?}"),
        ),
    }
    component
}

/// A projection this manager runs.
pub(crate) fn projection(
    provider: &str,
    name: &str,
    status: &ProjectionStatus,
    limits: &HealthThresholds,
) -> ComponentHealth {
    let mut component = ComponentHealth::new("projection", format!("{provider}/{name}"));
    if status.state == ProjectionState::Failed {
        let error = status.last_error.as_deref().unwrap_or("no error recorded");
        component.worsen(HealthStatus::Unhealthy, format!("failed: {error}"));
    }
    if status.lag_events > limits.projection_lag_events {
        component.worsen(
            HealthStatus::Degraded,
            format!(
                "{} events behind (over {})",
                status.lag_events, limits.projection_lag_events
            ),
        );
    }
    if status.lag > limits.projection_lag {
        component.worsen(
            HealthStatus::Degraded,
            format!("{:?} behind (over {:?})", status.lag, limits.projection_lag),
        );
    }
    component
}

/// A store's outbox, from its stats.
pub(crate) fn outbox(
    provider: &str,
    stats: Result<OutboxStats>,
    limits: &HealthThresholds,
) -> ComponentHealth {
    let mut component = ComponentHealth::new("outbox", provider);
    let stats = match stats {
        Ok(stats) => stats,
        Err(error) => {
            component.worsen(
                HealthStatus::Unhealthy,
                format!("stats unreadable: {error}"),
            );
            return component;
        }
    };
    let dead: u64 = stats.handlers.values().map(|handler| handler.dead).sum();
    if dead > limits.outbox_dead {
        component.worsen(
            HealthStatus::Degraded,
            format!("{dead} dead requests (over {})", limits.outbox_dead),
        );
    }
    let oldest = stats
        .handlers
        .values()
        .filter_map(|handler| handler.oldest_open)
        .min();
    if let Some(oldest) = oldest {
        let age = (Utc::now() - oldest).to_std().unwrap_or_default();
        if age > limits.outbox_oldest_open {
            component.worsen(
                HealthStatus::Degraded,
                format!(
                    "a request has been open for {}s (over {:?})",
                    age.as_secs(),
                    limits.outbox_oldest_open
                ),
            );
        }
    }
    component
}

/// A relay this manager runs.
pub(crate) fn relay(
    provider: &str,
    name: &str,
    status: &ProjectionStatus,
    sink: &BusHealth,
    limits: &HealthThresholds,
) -> ComponentHealth {
    let mut component = ComponentHealth::new("relay", format!("{provider}/{name}"));
    if status.state == ProjectionState::Failed {
        let error = status.last_error.as_deref().unwrap_or("no error recorded");
        component.worsen(HealthStatus::Unhealthy, format!("failed: {error}"));
    }
    if !sink.connected {
        let error = sink.last_error.as_deref().unwrap_or("no error recorded");
        component.worsen(
            HealthStatus::Degraded,
            format!("its sink is not connected ({error})"),
        );
    }
    if status.lag_events > limits.relay_lag_events {
        component.worsen(
            HealthStatus::Degraded,
            format!(
                "{} events behind (over {})",
                status.lag_events, limits.relay_lag_events
            ),
        );
    }
    component
}

/// A bus: connected, and its recent reconnections.
pub(crate) fn bus(
    name: &str,
    health: &BusHealth,
    recent_reconnects: u64,
    limits: &HealthThresholds,
) -> ComponentHealth {
    let mut component = ComponentHealth::new("bus", name);
    if !health.connected {
        let error = health.last_error.as_deref().unwrap_or("closed");
        component.worsen(HealthStatus::Unhealthy, format!("not connected: {error}"));
    }
    if recent_reconnects > limits.bus_reconnects {
        component.worsen(
            HealthStatus::Degraded,
            format!(
                "{recent_reconnects} reconnections within {:?} (over {})",
                limits.reconnect_window, limits.bus_reconnects
            ),
        );
    }
    component
}

/// Checks a manager's health every interval, each check bounded by a timeout, and keeps
/// the last result: [`Manager::health_checker`].
#[derive(Debug, Clone)]
#[must_use = "call `spawn` to start checking"]
pub struct HealthChecker {
    manager: Manager,
    interval: Duration,
    timeout: Duration,
}

impl HealthChecker {
    pub(crate) fn new(manager: Manager) -> Self {
        HealthChecker {
            manager,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }

    /// Time between checks (default 10 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The longest a check may take (default 5 s); one that takes longer is unhealthy.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts checking, at once and then every interval (call from within a tokio
    /// runtime). Dropping the handle stops it.
    pub fn spawn(self) -> HealthCheckerHandle {
        let (latest, watch) = watch::channel(None);
        let counts = Arc::new(Mutex::new(CheckCounts::default()));
        let task_counts = Arc::clone(&counts);
        let span = tracing::info_span!("chronicle.health_checker");
        let task = Task::spawn("the health checker", span, move |mut stop| async move {
            let mut ticks = tokio::time::interval(self.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop_requested(&mut stop) => return Ok(()),
                    _ = ticks.tick() => {}
                }
                let health = self.manager.health_within(self.timeout).await;
                task_counts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .add(health.status);
                latest.send_replace(Some(health));
            }
        });
        HealthCheckerHandle {
            task,
            latest: watch,
            counts,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct CheckCounts {
    checks: u64,
    healthy: u64,
}

impl CheckCounts {
    fn add(&mut self, status: HealthStatus) {
        self.checks += 1;
        if status == HealthStatus::Healthy {
            self.healthy += 1;
        }
    }
}

/// A running [`HealthChecker`]: the last result, the success rate, `stop`.
#[derive(Debug)]
#[must_use = "dropping the handle stops the health checker"]
pub struct HealthCheckerHandle {
    task: Task<()>,
    latest: watch::Receiver<Option<Health>>,
    counts: Arc<Mutex<CheckCounts>>,
}

impl HealthCheckerHandle {
    /// The last check's result (`None` before the first ends).
    pub fn latest(&self) -> Option<Health> {
        self.latest.borrow().clone()
    }

    /// Waits for the next check's result.
    ///
    /// # Errors
    /// [`Error::Internal`](crate::Error::Internal) when the checker has stopped.
    pub async fn next(&mut self) -> Result<Health> {
        self.latest.borrow_and_update();
        loop {
            self.latest
                .changed()
                .await
                .map_err(|_| crate::Error::Internal("the health checker has stopped".to_owned()))?;
            if let Some(health) = self.latest.borrow_and_update().clone() {
                return Ok(health);
            }
        }
    }

    /// Checks run so far.
    pub fn checks(&self) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .checks
    }

    /// The share of checks that found everything healthy (1.0 before the first).
    pub fn success_rate(&self) -> f64 {
        let counts = *self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.checks == 0 {
            return 1.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let rate = counts.healthy as f64 / counts.checks as f64;
        rate
    }

    /// Stops checking, after the check in hand.
    ///
    /// # Errors
    /// [`Error::TaskPanicked`](crate::Error::TaskPanicked) if the checker panicked.
    pub async fn stop(self) -> Result<()> {
        self.task.stop().await.map(|_| ())
    }
}
