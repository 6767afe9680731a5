//! The manager: providers by name with an explicit default, configuration (serde, a TOML
//! file with environment overrides), stats after a known workload, health per component,
//! the health checker, and an orderly close that names what did not stop in time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chronicle::bus::{Bus, BusEvent, InMemoryBus, StartFrom};
use chronicle::manager::{
    HealthStatus, HealthThresholds, KeySource, Manager, ManagerConfig, ProviderConfig,
};
use chronicle::{
    Error, ExpectedVersion, Handler, HandlerError, HandlerMap, HandlerRequest, NewEvent,
    Projection, ProjectionContext, ProjectionError, RecordedEvent, Store, ValidationError,
};
use futures::TryStreamExt;
use serde_json::json;

use crate::support::{Kind, SchemaGuard, fresh_schema, pg_url, postgres_available};

/// Counts events; fails on an event whose `fail` is true; hangs on one whose `hang` is.
#[derive(Clone, Default)]
struct Counter {
    seen: Arc<AtomicU64>,
}

impl Projection for Counter {
    fn name(&self) -> &str {
        "counter"
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        _ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let data = event.json()?;
        if data["fail"] == json!(true) {
            return Err("refused".into());
        }
        if data["hang"] == json!(true) {
            std::future::pending::<()>().await;
        }
        self.seen.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn event(data: serde_json::Value) -> NewEvent {
    NewEvent::new("test.happened", data)
}

async fn sqlite_url(dir: &tempfile::TempDir, name: &str) -> String {
    format!("sqlite://{}?mode=rwc", dir.path().join(name).display())
}

#[tokio::test]
async fn providers_are_named_and_the_default_is_never_a_guess() {
    let manager = Manager::new();
    let a = Store::open("memory:").await.expect("store");
    let b = Store::open("memory:").await.expect("store");
    manager.register("a", a).expect("a");
    manager.register("b", b).expect("b");
    let duplicate = manager
        .register("a", Store::open("memory:").await.expect("store"))
        .expect_err("taken");
    assert!(
        matches!(duplicate, Error::Validation(ValidationError::DuplicateProvider { ref name }) if name == "a"),
        "{duplicate:?}"
    );
    assert_eq!(manager.list(), ["a", "b"]);
    let no_default = manager.default().expect_err("none named");
    assert!(matches!(
        no_default,
        Error::Validation(ValidationError::NoDefaultProvider)
    ));
    let unknown = manager.get("c").expect_err("unknown");
    assert!(unknown.to_string().contains("a, b"), "{unknown}");
    manager.set_default("b").expect("b exists");
    manager
        .default()
        .expect("default")
        .append("s-1", ExpectedVersion::Any, vec![event(json!({}))])
        .await
        .expect("append");
    assert!(
        manager
            .get("a")
            .expect("a")
            .stream_info("s-1")
            .await
            .expect("info")
            .is_none()
    );
    let info = manager.info("b").expect("info");
    assert!(info.is_default);
    assert_eq!(info.backend, "memory");
}

#[tokio::test]
async fn from_config_opens_every_provider_with_its_settings() {
    let dir = tempfile::tempdir().expect("dir");
    let keys = dir.path().join("keys");
    std::fs::write(
        &keys,
        "k1=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
    )
    .expect("key file");
    let config: ManagerConfig = serde_json::from_value(json!({
        "default": "main",
        "providers": {
            "main": { "url": sqlite_url(&dir, "main.db").await },
            "small": {
                "url": sqlite_url(&dir, "small.db").await,
                "settings": { "max_event_size": 64, "snapshot_threshold": 7 },
            },
        },
        "settings": {
            "retry_attempts": 2,
            "retention_period": "30d",
            "compression": true,
            "encryption": { "key_file": keys },
        },
    }))
    .expect("config");
    let manager = Manager::from_config(config).await.expect("open");
    let small = manager.get("small").expect("small");
    let too_big = small
        .append(
            "s-1",
            ExpectedVersion::Any,
            vec![event(json!({ "text": "x".repeat(100) }))],
        )
        .await
        .expect_err("over 64 bytes");
    assert!(
        matches!(
            too_big,
            Error::Validation(ValidationError::EventTooLarge { .. })
        ),
        "{too_big:?}"
    );
    assert_eq!(
        manager.info("small").expect("info").snapshot_threshold,
        Some(7)
    );
    // The retention period is the store-wide default policy.
    let policies = manager
        .default()
        .expect("main")
        .list_retention(None, 10)
        .await
        .expect("policies");
    assert_eq!(policies.len(), 1, "{policies:?}");
    // Encrypted with the key from the file: the raw payload is not the JSON.
    let main = manager.default().expect("main");
    main.append(
        "s-1",
        ExpectedVersion::Any,
        vec![event(json!({ "secret": "ada" }))],
    )
    .await
    .expect("append");
    manager.close(Duration::from_secs(5)).await;
    let raw = Store::open(sqlite_url(&dir, "main.db").await)
        .await
        .expect("raw");
    let events: Result<Vec<RecordedEvent>, Error> = raw
        .read_stream("s-1", 0, chronicle::Direction::Forward)
        .try_collect()
        .await;
    let error = events.expect_err("no key: the payload does not decode");
    assert_eq!(error.kind(), chronicle::ErrorKind::Codec, "{error}");
}

#[tokio::test]
async fn a_bad_configuration_is_a_typed_error_naming_what_is_wrong() {
    let config: ManagerConfig = serde_json::from_value(json!({
        "default": "nope",
        "providers": { "main": { "url": "memory:" } },
    }))
    .expect("config");
    let error = Manager::from_config(config)
        .await
        .expect_err("no such default");
    assert!(
        matches!(error, Error::Validation(ValidationError::UnknownProvider { ref name, .. }) if name == "nope"),
        "{error:?}"
    );
    let mut config = ManagerConfig::default();
    let mut provider = ProviderConfig::new("memory:");
    provider.settings.encryption = Some(KeySource::KeyEnv("CHRONICLE_TEST_NO_SUCH_KEYS".into()));
    config.providers.insert("main".into(), provider);
    let error = Manager::from_config(config)
        .await
        .expect_err("no key variable");
    assert!(
        error.to_string().contains("CHRONICLE_TEST_NO_SUCH_KEYS"),
        "{error}"
    );
    // Keys are never inline.
    let inline = serde_json::from_value::<ManagerConfig>(json!({
        "providers": { "main": { "url": "memory:", "settings": { "encryption": { "key": "00" } } } },
    }));
    assert!(inline.is_err());
}

#[cfg(feature = "config")]
#[tokio::test]
async fn a_toml_file_and_the_environment_configure_the_manager() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("chronicle.toml");
    std::fs::write(
        &path,
        format!(
            "default = \"main\"\n\n[providers.main]\nurl = \"{}\"\n\n[settings]\nretry_delay = \"250ms\"\n\n[health]\noutbox_dead = 5\n",
            sqlite_url(&dir, "main.db").await
        ),
    )
    .expect("write");
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("CHRONICLE_HEALTH__RELAY_LAG_EVENTS", "77") };
    let config = ManagerConfig::load(&path).expect("load");
    unsafe { std::env::remove_var("CHRONICLE_HEALTH__RELAY_LAG_EVENTS") };
    assert_eq!(config.health.relay_lag_events, 77, "the environment wins");
    assert_eq!(config.default.as_deref(), Some("main"));
    assert_eq!(
        config.settings.retry_delay,
        Some(Duration::from_millis(250))
    );
    assert_eq!(config.health.outbox_dead, 5);
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[providers.main]\nurl = 5\n").expect("write");
    let error = ManagerConfig::load(&bad).expect_err("url is not text");
    assert!(error.to_string().contains("bad.toml"), "{error}");
    assert!(ManagerConfig::load(dir.path().join("missing.toml")).is_err());
}

/// What a test's store needs to outlive it: a temporary folder, a schema to drop.
#[allow(dead_code)]
enum Keep {
    Nothing,
    Dir(tempfile::TempDir),
    Schema(SchemaGuard),
}

/// Opens a manager with one provider of `kind`, named "main" and the default.
async fn manager_on(kind: Kind, test: &str) -> Option<(Manager, Store, Keep)> {
    let (url, schema, dir) = match kind {
        Kind::Memory => ("memory:".to_owned(), None, None),
        Kind::Custom => {
            // No URL names a backend of the application's: the manager takes the store.
            let manager = Manager::new();
            let store = kind.open(test).await.expect("open").store.clone();
            manager.register("main", store.clone()).expect("register");
            manager.set_default("main").expect("default");
            return Some((manager, store, Keep::Nothing));
        }
        Kind::Sqlite => {
            let dir = tempfile::tempdir().expect("dir");
            (sqlite_url(&dir, "m.db").await, None, Some(dir))
        }
        Kind::Postgres => {
            if !postgres_available(test).await {
                return None;
            }
            (pg_url(), Some(fresh_schema()), None)
        }
    };
    let mut provider = ProviderConfig::new(url);
    provider.schema = schema.clone();
    let mut config = ManagerConfig::default();
    config.providers.insert("main".into(), provider);
    config.default = Some("main".into());
    let keep = match (schema, dir) {
        (Some(schema), _) => Keep::Schema(SchemaGuard(schema)),
        (None, Some(dir)) => Keep::Dir(dir),
        (None, None) => Keep::Nothing,
    };
    let manager = Manager::from_config(config).await.expect("manager");
    let store = manager.default().expect("default");
    Some((manager, store, keep))
}

async fn stats_after_a_known_workload(kind: Kind) {
    let Some((manager, store, _dir)) = manager_on(kind, "stats_after_a_known_workload").await
    else {
        return;
    };
    for stream in ["a-1", "a-2", "b-1"] {
        let events = (0..3).map(|n| event(json!({ "n": n }))).collect();
        store
            .append(stream, ExpectedVersion::NoStream, events)
            .await
            .expect("append");
    }
    let counter = Counter::default();
    let projection = store.projections().spawn(counter.clone());
    projection.wait_for_idle().await.expect("idle");
    let bus = InMemoryBus::new();
    let relay = store
        .relay("to-bus")
        .start_from(StartFrom::Beginning)
        .to_bus(bus.clone());
    relay.wait_for_idle().await.expect("relay idle");
    manager.run("main", projection).expect("run");
    manager.run("main", relay).expect("run");
    manager.add_bus("local", bus).expect("bus");
    let stats = manager.stats().await;
    let main = &stats.providers["main"];
    assert!(main.errors.is_empty(), "{:?}", main.errors);
    let storage = main.storage.expect("storage");
    if kind == Kind::Postgres {
        assert!(storage.estimated);
    } else {
        assert_eq!((storage.streams, storage.events), (3, 9));
    }
    assert!(kind.in_memory() || storage.bytes > 0);
    assert_eq!(main.projections["counter"].applied, 9);
    assert_eq!(main.relays["to-bus"].stats.published, 9);
    assert_eq!(stats.buses["local"].stats.published, 9);
    assert!(main.outbox.is_some(), "every backend keeps an outbox");
    let names: Vec<&str> = main.checkpoints.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"counter"), "{names:?}");
    let json = serde_json::to_value(&stats).expect("serializes");
    assert_eq!(
        json["providers"]["main"]["projections"]["counter"]["applied"],
        9
    );
    assert!(manager.health().await.status == HealthStatus::Healthy);
    let report = manager.close(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.stopped.len(), 4, "{report:?}"); // relay, projection, bus, store
}

async fn health_names_the_component_and_why(kind: Kind) {
    let Some((manager, store, _dir)) = manager_on(kind, "health_names_the_component_and_why").await
    else {
        return;
    };
    store
        .append(
            "a-1",
            ExpectedVersion::NoStream,
            vec![event(json!({ "fail": true }))],
        )
        .await
        .expect("append");
    let projection = store
        .projections()
        .retries(1, Duration::from_millis(1))
        .spawn(Counter::default());
    while projection.status().state != chronicle::ProjectionState::Failed {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    manager.run("main", projection).expect("run");
    let bus = InMemoryBus::new();
    manager.add_bus("local", bus.clone()).expect("bus");
    bus.close().await.expect("close");
    let health = manager.health().await;
    assert_eq!(health.status, HealthStatus::Unhealthy);
    let problems: Vec<(&str, &str, HealthStatus)> = health
        .problems()
        .map(|c| (c.kind, c.name.as_str(), c.status))
        .collect();
    assert!(
        problems.contains(&("projection", "main/counter", HealthStatus::Unhealthy)),
        "{health:?}"
    );
    assert!(
        problems.contains(&("bus", "local", HealthStatus::Unhealthy)),
        "{health:?}"
    );
    let database = health
        .components
        .iter()
        .find(|c| c.kind == "database")
        .expect("database");
    assert_eq!(database.status, HealthStatus::Healthy);
    assert!(database.latency.is_some());
    manager.close(Duration::from_secs(5)).await;
    // A closed store's ping fails: unhealthy (SQL backends).
    if !kind.in_memory() {
        let after = manager.health().await;
        let database = after
            .components
            .iter()
            .find(|c| c.kind == "database")
            .expect("database");
        assert_eq!(database.status, HealthStatus::Unhealthy, "{after:?}");
    }
}

crate::for_each_backend!(
    stats_after_a_known_workload,
    health_names_the_component_and_why
);

mod outbox {
    use super::*;

    crate::for_each_backend!(dead_outbox_requests_degrade_the_outbox);
}

pub(super) async fn dead_outbox_requests_degrade_the_outbox(kind: Kind) {
    let Some((manager, store, _dir)) =
        manager_on(kind, "dead_outbox_requests_degrade_the_outbox").await
    else {
        return;
    };
    let handlers = HandlerMap::new().route(Handler::new(
        "always-fails",
        "*",
        |_request: HandlerRequest| async { Err(HandlerError::fatal("no")) },
    ));
    let outbox = store
        .outbox(handlers)
        .expect("outbox")
        .start_from(chronicle::StartFrom::Beginning);
    store
        .append("a-1", ExpectedVersion::NoStream, vec![event(json!({}))])
        .await
        .expect("append");
    let scheduler = outbox
        .cooperative()
        .interval(Duration::from_millis(20))
        .spawn();
    manager
        .run("main", (outbox.clone(), scheduler))
        .expect("run");
    for _ in 0..500 {
        let stats = outbox.stats().await.expect("stats");
        if stats
            .handlers
            .get("always-fails")
            .is_some_and(|h| h.dead == 1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let health = manager.health().await;
    let component = health
        .components
        .iter()
        .find(|c| c.kind == "outbox")
        .expect("outbox component");
    assert_eq!(component.status, HealthStatus::Degraded, "{health:?}");
    assert!(
        component
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("1 dead"),
        "{component:?}"
    );
    let stats = manager.stats().await;
    let outbox_stats = stats.providers["main"]
        .outbox
        .as_ref()
        .expect("outbox stats");
    assert_eq!(outbox_stats.handlers["always-fails"].dead, 1);
    let report = manager.close(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn the_health_checker_keeps_the_last_result_and_a_success_rate() {
    let manager = Manager::with_thresholds(HealthThresholds::default());
    manager
        .register("main", Store::open("memory:").await.expect("store"))
        .expect("register");
    let bus = InMemoryBus::new();
    manager.add_bus("local", bus.clone()).expect("bus");
    let mut checker = manager
        .health_checker()
        .interval(Duration::from_millis(20))
        .timeout(Duration::from_secs(1))
        .spawn();
    let first = checker.next().await.expect("a check");
    assert_eq!(first.status, HealthStatus::Healthy);
    bus.close().await.expect("close");
    let later = checker.next().await.expect("a check");
    assert_eq!(later.status, HealthStatus::Unhealthy);
    assert_eq!(
        checker.latest().map(|h| h.status),
        Some(HealthStatus::Unhealthy)
    );
    assert!(checker.checks() >= 2);
    assert!(checker.success_rate() < 1.0 && checker.success_rate() > 0.0);
    checker.stop().await.expect("stop");
}

#[tokio::test]
async fn close_names_what_did_not_stop_in_time() {
    let manager = Manager::new();
    let store = Store::open("memory:").await.expect("store");
    manager.register("main", store.clone()).expect("register");
    store
        .append(
            "a-1",
            ExpectedVersion::NoStream,
            vec![event(json!({ "hang": true }))],
        )
        .await
        .expect("append");
    let projection = store.projections().spawn(Counter::default());
    let bus = InMemoryBus::new();
    let relay = store
        .relay("to-bus")
        .start_from(StartFrom::Beginning)
        .to_bus(bus.clone());
    relay.wait_for_idle().await.expect("idle");
    manager.run("main", projection).expect("run");
    manager.run("main", relay).expect("run");
    manager.add_bus("local", bus.clone()).expect("bus");
    let report = manager.close(Duration::from_millis(300)).await;
    assert_eq!(report.timed_out, ["main: projection counter"], "{report:?}");
    assert!(
        report.stopped.contains(&"main: relay to-bus".to_owned()),
        "{report:?}"
    );
    assert!(
        report.stopped.contains(&"bus local".to_owned()),
        "{report:?}"
    );
    assert!(!report.is_clean());
    // The bus is closed: publishing fails with a typed error.
    let closed = bus.publish(BusEvent::new("x", json!({}))).await;
    assert!(matches!(closed, Err(Error::BusClosed { .. })));
}
