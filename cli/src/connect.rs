//! Opening the store a command works on, named by `--url` or by a provider of a manager
//! configuration (`--config`, `--provider`): the URL checked first (a typo must not create
//! a new, empty store), the key file read, and the store built to show what it cannot
//! decode rather than fail on it.

use chronicle::manager::{ManagerConfig, ProviderConfig};
use chronicle::sqlx::Connection as _;
use chronicle::{Error, KeyRing, Migrations, Store, sqlx};

use crate::args::Global;
use crate::fail::CliError;
use crate::keyfile;

/// A store to open: its URL, schema and key ring.
pub struct Target {
    pub url: String,
    pub schema: String,
    pub ring: Option<KeyRing>,
}

/// The store a command works on: `--url`, else `--provider` (or the default) of
/// `--config`.
pub fn target(global: &Global) -> Result<Target, CliError> {
    if let Some(url) = &global.url {
        return Ok(Target {
            url: url.clone(),
            schema: global.schema.clone(),
            ring: global.key_file.as_deref().map(keyfile::read).transpose()?,
        });
    }
    let config = config(global)?;
    let name = match (&global.provider, &config.default) {
        (Some(name), _) | (None, Some(name)) => name.clone(),
        (None, None) => {
            return Err(CliError::Usage(
                "the configuration names no default provider: pass --provider".to_owned(),
            ));
        }
    };
    let Some(provider) = config.providers.get(&name) else {
        let known: Vec<&str> = config.providers.keys().map(String::as_str).collect();
        return Err(CliError::Usage(format!(
            "the configuration has no provider `{name}` (it has: {})",
            known.join(", ")
        )));
    };
    provider_target(global, &config, provider)
}

/// Every store a command covers (`stats`, `health`), by name: `--url` alone (named
/// `store`), or every provider of `--config`.
pub fn targets(global: &Global) -> Result<Vec<(String, Target)>, CliError> {
    if global.url.is_some() {
        return Ok(vec![("store".to_owned(), target(global)?)]);
    }
    let config = config(global)?;
    config
        .providers
        .iter()
        .map(|(name, provider)| Ok((name.clone(), provider_target(global, &config, provider)?)))
        .collect()
}

fn config(global: &Global) -> Result<ManagerConfig, CliError> {
    let path = global.config.as_deref().ok_or_else(|| {
        CliError::Usage("no store given: pass --url (or set CHRONICLE_URL), or --config".to_owned())
    })?;
    Ok(ManagerConfig::load(path)?)
}

/// A provider's target: its URL and schema, and the key ring of `--key-file`, else of
/// the configuration's key source.
fn provider_target(
    global: &Global,
    config: &ManagerConfig,
    provider: &ProviderConfig,
) -> Result<Target, CliError> {
    let settings = config.settings.overlaid_with(&provider.settings);
    let ring = match (&global.key_file, &settings.encryption) {
        (Some(path), _) => Some(keyfile::read(path)?),
        (None, Some(source)) => Some(source.load()?),
        (None, None) => None,
    };
    Ok(Target {
        url: provider.url.clone(),
        schema: provider
            .schema
            .clone()
            .unwrap_or_else(|| global.schema.clone()),
        ring,
    })
}

/// Opens the store a command works on ([`target`]).
pub async fn open(global: &Global) -> Result<Store, CliError> {
    open_target(global, target(global)?).await
}

/// Opens `target` as an operator's command does: never migrating, showing what it
/// cannot decode.
pub async fn open_target(global: &Global, target: Target) -> Result<Store, CliError> {
    let Target { url, schema, ring } = target;
    check_store_exists(&url, &schema).await?;
    // An operator's command never changes the schema behind the application's back:
    // `chronicle migrate` does that.
    let mut builder = Store::builder(url)
        .schema(schema)
        .pool_size(2)
        .operation_timeout(global.timeout)
        .migrations(Migrations::Check)
        .keep_undecodable_payloads(true);
    if let Some(ring) = ring {
        builder = builder
            .encryption(ring)
            .accept_unencrypted_payloads(true)
            .per_stream_keys(true);
    }
    Ok(builder.open().await?)
}

/// `chronicle migrate [--check]`: applies the pending migrations of `global.url` and
/// lists them, or with `check` only lists them (and fails when there are any).
pub async fn migrate(global: &Global, check: bool) -> Result<(), CliError> {
    let Target { url, schema, .. } = target(global)?;
    let builder = Store::builder(url.as_str())
        .schema(schema.clone())
        .pool_size(1)
        .operation_timeout(global.timeout);
    if !check {
        let applied = builder.migrate().await?;
        print_migrations(global, "applied", &applied);
        return Ok(());
    }
    check_store_exists(&url, &schema).await?;
    match builder.migrations(Migrations::Check).open().await {
        Ok(store) => {
            store.close().await;
            print_migrations(global, "pending", &[]);
            Ok(())
        }
        Err(Error::PendingMigrations { target, pending }) => {
            print_migrations(global, "pending", &pending);
            Err(CliError::Failed(format!(
                "{target} needs {} migration(s): run `chronicle migrate`",
                pending.len()
            )))
        }
        Err(error) => Err(error.into()),
    }
}

/// Prints the migrations `names` (`applied` or `pending`), as a list or as JSON.
fn print_migrations(global: &Global, what: &str, names: &[String]) {
    if global.json {
        println!("{}", serde_json::json!({ what: names }));
    } else if names.is_empty() {
        println!("no migration {what}: the store is up to date");
    } else {
        for name in names {
            println!("{what}: {name}");
        }
    }
}

/// Refuses a URL that names no existing store: a SQLite file that is not there, a
/// PostgreSQL schema without chronicle's tables. Other URLs are left to chronicle.
async fn check_store_exists(url: &str, schema: &str) -> Result<(), CliError> {
    if let Some(path) = sqlite_path(url) {
        if !std::path::Path::new(path).is_file() {
            return Err(CliError::Usage(format!(
                "no SQLite database at `{path}` (from the URL `{url}`)"
            )));
        }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut conn = sqlx::PgConnection::connect(url).await.map_err(|error| {
            CliError::Failed(format!(
                "cannot connect to PostgreSQL at `{}`: {error}",
                redact(url)
            ))
        })?;
        let found: bool = sqlx::query_scalar(
            "SELECT to_regclass(format('%I.chronicle_migrations', $1::text)) IS NOT NULL",
        )
        .bind(schema)
        .fetch_one(&mut conn)
        .await
        .map_err(|error| CliError::Failed(format!("cannot look up schema `{schema}`: {error}")))?;
        let _ = conn.close().await;
        if !found {
            return Err(CliError::Usage(format!(
                "no chronicle store in schema `{schema}` of `{}` (pass --schema?)",
                redact(url)
            )));
        }
    }
    Ok(())
}

/// The file of a SQLite URL (`sqlite://path`, `sqlite:path`), without its parameters;
/// `None` for other URLs and in-memory databases.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _password)) => format!("{scheme}://{name}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite://data/events.db"),
            Some("data/events.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///abs/events.db?mode=ro"),
            Some("/abs/events.db")
        );
        assert_eq!(sqlite_path("sqlite:events.db"), Some("events.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://ada:secret@db/x"),
            "postgres://ada:***@db/x"
        );
        assert_eq!(redact("postgres://ada@db/x"), "postgres://ada@db/x");
    }
}
