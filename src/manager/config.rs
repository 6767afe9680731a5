//! [`ManagerConfig`]: the stores a [`Manager`](super::Manager) opens and how, as serde
//! reads it from TOML, YAML or the environment (with the `config` feature:
//! [`ManagerConfig::load`]), or as code builds it.
//!
//! Durations are text with a unit (`500ms`, `30s`, `15m`, `12h`, `90d`, `2w`) or whole
//! milliseconds. The encryption key is never in the file: it names an environment
//! variable or a file holding a key ring in the key-file format
//! ([`KeyRing::from_key_file`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::health::HealthThresholds;
use crate::codec::{Compression, KeyRing};
use crate::error::{Result, ValidationError};
use crate::retention::{RetentionPolicy, RetentionScope};
use crate::store::{Store, StoreBuilder};

/// What a [`Manager`](super::Manager) opens: named providers (stores), the default one,
/// settings for all of them, and the health thresholds.
///
/// ```
/// use chronicle::manager::ManagerConfig;
///
/// let config: ManagerConfig = serde_json::from_value(serde_json::json!({
///     "default": "main",
///     "providers": { "main": { "url": "sqlite://app.db?mode=rwc" } },
///     "settings": { "retry_attempts": 5, "retry_delay": "200ms", "snapshot_threshold": 100 },
/// }))?;
/// assert_eq!(config.settings.retry_delay, Some(std::time::Duration::from_millis(200)));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ManagerConfig {
    /// The stores, by name.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The provider [`Manager::default`](super::Manager::default) returns. Not set: there
    /// is no default, whatever the number of providers.
    #[serde(default)]
    pub default: Option<String>,
    /// Settings for every provider; a provider's own `settings` override them field by
    /// field.
    #[serde(default)]
    pub settings: StoreSettings,
    /// When health turns degraded.
    #[serde(default)]
    pub health: HealthThresholds,
}

/// One store: where it is and, optionally, settings of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ProviderConfig {
    /// The store's URL, as [`Store::open`] takes it (`sqlite://…`, `postgres://…`,
    /// `memory:`).
    pub url: String,
    /// PostgreSQL: the schema (default `public`).
    #[serde(default)]
    pub schema: Option<String>,
    /// Connections in the pool.
    #[serde(default)]
    pub pool_size: Option<u32>,
    /// Settings of this provider, over the manager's.
    #[serde(default)]
    pub settings: StoreSettings,
}

impl ProviderConfig {
    /// A provider at `url`, with the manager's settings.
    pub fn new(url: impl Into<String>) -> Self {
        ProviderConfig {
            url: url.into(),
            ..ProviderConfig::default()
        }
    }
}

/// How stores behave; every field is optional and defaults to the store's own default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreSettings {
    /// Tries of an operation that failed on a broken connection.
    #[serde(default)]
    pub retry_attempts: Option<u32>,
    /// The first pause between those tries (it doubles).
    #[serde(default, with = "super::duration_text")]
    pub retry_delay: Option<Duration>,
    /// How long one operation may take.
    #[serde(default, with = "super::duration_text")]
    pub operation_timeout: Option<Duration>,
    /// The largest event payload, in bytes.
    #[serde(default)]
    pub max_event_size: Option<usize>,
    /// The most events one append takes.
    #[serde(default)]
    pub max_batch_size: Option<usize>,
    /// Repositories from [`Manager::repository`](super::Manager::repository) snapshot every
    /// this many events (0: never).
    #[serde(default)]
    pub snapshot_threshold: Option<u64>,
    /// Events older than this expire: the store-wide default retention policy, set when
    /// the store opens (streams and categories with a policy of their own keep it).
    #[serde(default, with = "super::duration_text")]
    pub retention_period: Option<Duration>,
    /// zstd compression of payloads and snapshots.
    #[serde(default)]
    pub compression: Option<bool>,
    /// Encryption of payloads and snapshots, with the key ring from here.
    #[serde(default)]
    pub encryption: Option<KeySource>,
}

/// Where the encryption keys are: never in the configuration itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySource {
    /// An environment variable holding a key ring in the key-file format
    /// (`{ key_env = "CHRONICLE_KEYS" }`).
    KeyEnv(String),
    /// A file in the key-file format (`{ key_file = "/run/secrets/chronicle-keys" }`).
    KeyFile(PathBuf),
}

impl KeySource {
    /// Reads the key ring.
    ///
    /// # Errors
    /// [`ValidationError::Config`] naming the variable or file when it is missing or does
    /// not hold a key ring (never showing a key).
    pub fn load(&self) -> Result<KeyRing> {
        let (text, origin) = match self {
            KeySource::KeyEnv(name) => (
                std::env::var(name).map_err(|error| {
                    ValidationError::Config(format!(
                        "encryption key variable `{name}` cannot be read: {error}"
                    ))
                })?,
                format!("variable `{name}`"),
            ),
            KeySource::KeyFile(path) => (
                std::fs::read_to_string(path).map_err(|error| {
                    ValidationError::Config(format!(
                        "encryption key file {} cannot be read: {error}",
                        path.display()
                    ))
                })?,
                format!("file {}", path.display()),
            ),
        };
        KeyRing::from_key_file(&text)
            .map_err(|error| ValidationError::Config(format!("{origin}: {error}")).into())
    }
}

impl StoreSettings {
    /// These settings, with `over`'s set fields in place of these.
    pub fn overlaid_with(&self, over: &StoreSettings) -> StoreSettings {
        StoreSettings {
            retry_attempts: over.retry_attempts.or(self.retry_attempts),
            retry_delay: over.retry_delay.or(self.retry_delay),
            operation_timeout: over.operation_timeout.or(self.operation_timeout),
            max_event_size: over.max_event_size.or(self.max_event_size),
            max_batch_size: over.max_batch_size.or(self.max_batch_size),
            snapshot_threshold: over.snapshot_threshold.or(self.snapshot_threshold),
            retention_period: over.retention_period.or(self.retention_period),
            compression: over.compression.or(self.compression),
            encryption: over.encryption.clone().or_else(|| self.encryption.clone()),
        }
    }

    /// `builder` with these settings (all but the snapshot threshold, which is the
    /// repositories', and the retention period, set once the store is open).
    ///
    /// # Errors
    /// The key source's.
    pub(crate) fn configure(&self, mut builder: StoreBuilder) -> Result<StoreBuilder> {
        builder = builder.retries_of(self.retry_attempts, self.retry_delay);
        if let Some(timeout) = self.operation_timeout {
            builder = builder.operation_timeout(timeout);
        }
        if let Some(bytes) = self.max_event_size {
            builder = builder.max_event_size(bytes);
        }
        if let Some(events) = self.max_batch_size {
            builder = builder.max_events_per_append(events);
        }
        if self.compression == Some(true) {
            builder = builder.compression(Compression::zstd());
        }
        if let Some(keys) = &self.encryption {
            builder = builder.encryption(keys.load()?);
        }
        Ok(builder)
    }

    /// Sets the store-wide retention policy, if a period is configured.
    pub(crate) async fn apply_retention(&self, store: &Store) -> Result<()> {
        if let Some(period) = self.retention_period {
            store
                .set_retention(
                    RetentionScope::Default,
                    RetentionPolicy::new().max_age(period),
                )
                .await?;
        }
        Ok(())
    }
}

#[cfg(feature = "config")]
impl ManagerConfig {
    /// Reads the configuration from `path` (TOML, or YAML for `.yaml` / `.yml`), then
    /// from environment variables `CHRONICLE_…`, which win: nested fields are joined by
    /// `__` (`CHRONICLE_DEFAULT=main`, `CHRONICLE_PROVIDERS__MAIN__URL=…`,
    /// `CHRONICLE_SETTINGS__RETRY_ATTEMPTS=5`). Needs the `config` feature.
    ///
    /// # Errors
    /// [`ValidationError::Config`] naming the file and the field when it cannot be read
    /// or does not fit.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<ManagerConfig> {
        use figment::providers::{Env, Format, Toml, Yaml};
        let path = path.as_ref();
        let yaml = matches!(
            path.extension().and_then(|extension| extension.to_str()),
            Some("yaml" | "yml")
        );
        if !path.is_file() {
            return Err(ValidationError::Config(format!(
                "the configuration file {} does not exist",
                path.display()
            ))
            .into());
        }
        let figment = if yaml {
            figment::Figment::from(Yaml::file(path))
        } else {
            figment::Figment::from(Toml::file(path))
        };
        // Only the configuration's own fields: other `CHRONICLE_…` variables (a CLI's
        // `CHRONICLE_URL`, say) are not the manager's.
        let env = Env::prefixed("CHRONICLE_")
            .filter(|key| {
                let key = key.as_str().to_ascii_lowercase();
                ["default", "providers", "settings", "health"]
                    .iter()
                    .any(|top| key == *top || key.starts_with(&format!("{top}__")))
            })
            .split("__");
        figment.merge(env).extract().map_err(|error| {
            ValidationError::Config(format!("configuration {}: {error}", path.display())).into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_overrides_the_managers_settings_field_by_field() {
        let all = StoreSettings {
            retry_attempts: Some(5),
            compression: Some(true),
            ..StoreSettings::default()
        };
        let own = StoreSettings {
            compression: Some(false),
            ..StoreSettings::default()
        };
        let merged = all.overlaid_with(&own);
        assert_eq!(merged.retry_attempts, Some(5));
        assert_eq!(merged.compression, Some(false));
    }

    #[test]
    fn durations_read_with_a_unit_or_as_milliseconds_and_a_key_is_never_inline() {
        let settings: StoreSettings = serde_json::from_value(serde_json::json!({
            "retry_delay": 250, "operation_timeout": "2m", "retention_period": "90d",
        }))
        .expect("settings");
        assert_eq!(settings.retry_delay, Some(Duration::from_millis(250)));
        assert_eq!(settings.operation_timeout, Some(Duration::from_secs(120)));
        assert_eq!(
            settings.retention_period,
            Some(Duration::from_secs(90 * 86_400))
        );
        let inline = serde_json::from_value::<StoreSettings>(
            serde_json::json!({ "encryption": { "key": "00" } }),
        );
        assert!(inline.is_err());
        assert!(
            serde_json::from_value::<StoreSettings>(serde_json::json!({ "retry_delay": "5" }))
                .is_err()
        );
    }
}
