//! Opening the store a command works on: the URL checked first (a typo must not create
//! a new, empty store), the key file read, and the store built to show what it cannot
//! decode rather than fail on it.

use chronicle::sqlx::Connection as _;
use chronicle::{Error, Migrations, Store, sqlx};

use crate::args::Global;
use crate::fail::CliError;
use crate::keyfile;

/// Opens the store of `global.url`.
pub async fn open(global: &Global) -> Result<Store, CliError> {
    let url = global.url.as_deref().ok_or_else(|| {
        CliError::Usage("no store given: pass --url or set CHRONICLE_URL".to_owned())
    })?;
    let ring = global.key_file.as_deref().map(keyfile::read).transpose()?;
    check_store_exists(url, &global.schema).await?;
    // An operator's command never changes the schema behind the application's back:
    // `chronicle migrate` does that.
    let mut builder = Store::builder(url)
        .schema(global.schema.clone())
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
    let url = global.url.as_deref().ok_or_else(|| {
        CliError::Usage("no store given: pass --url or set CHRONICLE_URL".to_owned())
    })?;
    let builder = Store::builder(url)
        .schema(global.schema.clone())
        .pool_size(1)
        .operation_timeout(global.timeout);
    if !check {
        let applied = builder.migrate().await?;
        print_migrations(global, "applied", &applied);
        return Ok(());
    }
    check_store_exists(url, &global.schema).await?;
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
