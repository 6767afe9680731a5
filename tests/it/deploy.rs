//! Connecting as deployments do: TLS to PostgreSQL (the local server runs with the
//! snakeoil certificate), typed connect errors within the connect timeout, stores opened
//! from the application's pool or the driver's options, migrations applied by a deploy
//! step or checked at open, and least-privilege roles.
//!
//! No test here sends a packet beyond the loopback interface: a host that does not answer
//! is a listener on 127.0.0.1 whose accept queue is full (the kernel drops the SYNs, as a
//! firewall or a down host would), and a server that rejects a password is a small fake
//! on 127.0.0.1 (the local server trusts 127.0.0.1, so it accepts any password).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chronicle::{
    ConnectErrorKind, Error, ExpectedVersion, Handler, HandlerMap, HandlerRequest, KeyRing,
    LogPosition, Migrations, NewEvent, NewSnapshot, PgSslMode, Projection, ProjectionContext,
    ProjectionError, RecordedEvent, RetentionPolicy, RetentionScope, Store, StoreBuilder,
};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{SchemaGuard, fresh_schema, pg_url, postgres_available};

fn pg_options() -> PgConnectOptions {
    PgConnectOptions::from_str(&pg_url()).expect("CHRONICLE_PG_URL parses")
}

async fn admin() -> PgConnection {
    PgConnection::connect(&pg_url()).await.expect("connect")
}

async fn run(sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut admin().await)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// The migrations' names as their files': what `PendingMigrations` and `migrate` list.
fn migration_names(backend: &str) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("migrations folder")
        .filter_map(|entry| {
            let path = entry.expect("entry").path();
            (path.extension()? == "sql").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
}

/// The connect error's parts; panics on any other result.
fn connect_error(result: chronicle::Result<Store>) -> (String, ConnectErrorKind, Error) {
    match result {
        Err(error @ Error::Connect { .. }) => {
            let Error::Connect { target, kind, .. } = &error else {
                unreachable!()
            };
            (target.clone(), *kind, error)
        }
        Err(other) => panic!("expected Error::Connect, got {other:?}"),
        Ok(_) => panic!("expected Error::Connect, the store opened"),
    }
}

// ---------------------------------------------------------------------------------------
// TLS

/// The server's certificate file (`SHOW ssl_cert_file`): the snakeoil certificate here.
async fn server_certificate() -> PathBuf {
    let path: String = sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(&mut admin().await)
        .await
        .expect("ssl_cert_file");
    let path = PathBuf::from(path);
    assert!(
        std::fs::File::open(&path).is_ok(),
        "the server's certificate {} must be readable by the tests",
        path.display()
    );
    path
}

fn untrusted_ca() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/untrusted-ca.pem")
}

/// (connections, all of them over TLS) of the store in `schema`, as the server sees them.
async fn tls_of(schema: &str) -> (i64, bool) {
    sqlx::query_as(
        "SELECT count(*), coalesce(bool_and(s.ssl), false) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.application_name = 'chronicle:' || $1",
    )
    .bind(schema)
    .fetch_one(&mut admin().await)
    .await
    .expect("pg_stat_ssl")
}

async fn append_and_read(store: &Store, stream: &str) {
    store
        .append(
            stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("deploy.checked", json!({ "ok": true }))],
        )
        .await
        .expect("append");
    let events: Vec<_> = store
        .read_stream(stream, 1, chronicle::Direction::Forward)
        .try_collect()
        .await
        .expect("read");
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn tls_require_from_the_url_connects_over_tls() {
    if !postgres_available("tls_require_from_the_url_connects_over_tls").await {
        return;
    }
    let guard = SchemaGuard(fresh_schema());
    let url = pg_url();
    let url = format!(
        "{url}{}sslmode=require",
        if url.contains('?') { '&' } else { '?' }
    );
    let store = Store::builder(url)
        .schema(guard.0.clone())
        .open()
        .await
        .expect("sslmode=require connects");
    append_and_read(&store, "tls-1").await;
    let (connections, all_tls) = tls_of(&guard.0).await;
    assert!(connections > 0, "the store's pool holds a connection");
    assert!(all_tls, "every connection of the store is encrypted");
}

#[tokio::test]
async fn tls_verify_ca_with_the_server_certificate_as_root_connects() {
    if !postgres_available("tls_verify_ca_with_the_server_certificate_as_root_connects").await {
        return;
    }
    let certificate = server_certificate().await;
    let guard = SchemaGuard(fresh_schema());
    // Builder settings over a URL that says nothing of TLS.
    let store = Store::builder(pg_url())
        .schema(guard.0.clone())
        .pg_ssl_mode(PgSslMode::VerifyCa)
        .pg_ssl_root_cert(&certificate)
        .open()
        .await
        .expect("verify-ca against the server's own certificate connects");
    append_and_read(&store, "tls-ca-1").await;
    assert!(tls_of(&guard.0).await.1);
    store.close().await;

    // The same from the driver's options.
    let options = pg_options()
        .ssl_mode(PgSslMode::VerifyCa)
        .ssl_root_cert(&certificate);
    let store = Store::builder(options)
        .schema(guard.0.clone())
        .open()
        .await
        .expect("verify-ca from PgConnectOptions");
    append_and_read(&store, "tls-ca-2").await;
}

#[tokio::test]
async fn tls_with_a_root_that_did_not_sign_the_certificate_fails_for_good() {
    if !postgres_available("tls_with_a_root_that_did_not_sign_the_certificate_fails_for_good").await
    {
        return;
    }
    let guard = SchemaGuard(fresh_schema());
    let started = Instant::now();
    let (target, kind, error) = connect_error(
        Store::builder(pg_url())
            .schema(guard.0.clone())
            .pg_ssl_mode(PgSslMode::VerifyCa)
            .pg_ssl_root_cert(untrusted_ca())
            .open()
            .await,
    );
    assert_eq!(kind, ConnectErrorKind::Tls, "{error}");
    assert!(
        !error.is_retryable(),
        "a certificate is not trusted again on retry"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let options = pg_options();
    assert!(
        target.contains(&format!("{}:{}", options.get_host(), options.get_port())),
        "{target}"
    );
    let message = error.to_string();
    assert!(
        message.contains("UnknownIssuer"),
        "the driver's cause: {message}"
    );
    assert!(
        message.contains("root certificate"),
        "what to change: {message}"
    );
    assert!(
        std::error::Error::source(&error).is_some(),
        "the driver's error is kept"
    );
}

#[tokio::test]
async fn tls_verify_full_fails_for_a_name_the_certificate_does_not_carry() {
    if !postgres_available("tls_verify_full_fails_for_a_name_the_certificate_does_not_carry").await
    {
        return;
    }
    let certificate = server_certificate().await;
    let guard = SchemaGuard(fresh_schema());
    let port = pg_options().get_port();
    // The snakeoil certificate names a host (CN and a DNS name), never an IP address.
    let by_address = pg_options().host("127.0.0.1");
    let (target, kind, error) = connect_error(
        Store::builder(by_address)
            .schema(guard.0.clone())
            .pg_ssl_mode(PgSslMode::VerifyFull)
            .pg_ssl_root_cert(&certificate)
            .open()
            .await,
    );
    assert_eq!(kind, ConnectErrorKind::Tls, "{error}");
    assert!(!error.is_retryable());
    assert!(target.contains(&format!("127.0.0.1:{port}")), "{target}");
    assert!(error.to_string().contains("not valid for name"), "{error}");

    // By the name it carries, verify-full connects (when that name is `localhost`, which
    // resolves here without asking a DNS server).
    let names = std::process::Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName",
            "-in",
        ])
        .arg(&certificate)
        .output();
    match names {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("localhost") => {
            let store = Store::builder(pg_options().host("localhost"))
                .schema(guard.0.clone())
                .pg_ssl_mode(PgSslMode::VerifyFull)
                .pg_ssl_root_cert(&certificate)
                .open()
                .await
                .expect("verify-full by the certificate's name connects");
            append_and_read(&store, "tls-full-1").await;
        }
        other => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED the verify-full success half: the server certificate does not name localhost ({other:?})"
            );
        }
    }
}

#[tokio::test]
async fn tls_settings_are_refused_where_they_cannot_apply() {
    let error = Store::builder("sqlite::memory:")
        .pg_ssl_mode(PgSslMode::Require)
        .open()
        .await
        .expect_err("TLS settings on SQLite");
    assert!(error.to_string().contains("pg_ssl_"), "{error}");
    let error = Store::builder("postgres://app@127.0.0.1:1/app")
        .pg_ssl_root_cert("/nonexistent/root.pem")
        .open()
        .await
        .expect_err("an unreadable root certificate");
    assert_eq!(error.kind(), chronicle::ErrorKind::Validation, "{error}");
    assert!(
        error.to_string().contains("/nonexistent/root.pem"),
        "{error}"
    );
    let pool = PgPoolOptions::new().connect_lazy_with(pg_options());
    let error = Store::builder(pool)
        .pg_ssl_mode(PgSslMode::Require)
        .open()
        .await
        .expect_err("TLS settings over a pool");
    assert!(error.to_string().contains("PgConnectOptions"), "{error}");
}

#[tokio::test]
async fn a_missing_root_certificate_named_in_the_url_is_a_configuration_error() {
    if !postgres_available("a_missing_root_certificate_named_in_the_url_is_a_configuration_error")
        .await
    {
        return;
    }
    let url = pg_url();
    let url = format!(
        "{url}{}sslmode=verify-ca&sslrootcert=/nonexistent/root.pem",
        if url.contains('?') { '&' } else { '?' }
    );
    let (_, kind, error) = connect_error(Store::open(url).await);
    assert_eq!(kind, ConnectErrorKind::Config, "{error}");
    assert!(!error.is_retryable(), "a missing file stays missing");
}

// ---------------------------------------------------------------------------------------
// Typed connect errors within the connect timeout

const PASSWORD: &str = "S3cret-Pw-0f-the-test";

fn assert_names_target_not_password(error: &Error, place: &str, database: &str) {
    let message = error.to_string();
    assert!(message.contains(place), "names {place}: {message}");
    assert!(
        message.contains(&format!("database `{database}`")),
        "names the database: {message}"
    );
    assert!(!message.contains(PASSWORD), "shows the password: {message}");
    assert!(
        !format!("{error:?}").contains(PASSWORD),
        "Debug shows the password"
    );
}

#[tokio::test]
async fn a_refused_connection_fails_at_once_and_names_the_target() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let started = Instant::now();
    let (_, kind, error) = connect_error(
        Store::builder(format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/appdb"))
            .open()
            .await,
    );
    let took = started.elapsed();
    assert_eq!(kind, ConnectErrorKind::Refused, "{error}");
    assert!(error.is_retryable(), "the server may come up");
    assert!(
        took < Duration::from_secs(2),
        "refused at once, took {took:?}"
    );
    assert_names_target_not_password(&error, &format!("127.0.0.1:{port}"), "appdb");
    assert!(error.to_string().contains("user `app`"), "{error}");
}

#[tokio::test]
async fn a_host_that_does_not_answer_fails_within_the_connect_timeout() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connect
    // waits as it does for a host that is down or firewalled.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let address = listener.local_addr().expect("addr");
    let mut queued = Vec::new();
    // Fill the queue (its length is the backlog + 1).
    while queued.len() < 8 {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(address),
        )
        .await
        {
            Ok(Ok(stream)) => queued.push(stream),
            _ => break,
        }
    }
    assert!(queued.len() < 8, "the accept queue never filled");

    let timeout = Duration::from_millis(800);
    let started = Instant::now();
    let (target, kind, error) = connect_error(
        Store::builder(format!(
            "postgres://app:{PASSWORD}@127.0.0.1:{}/appdb",
            address.port()
        ))
        .connect_timeout(timeout)
        .open()
        .await,
    );
    let took = started.elapsed();
    assert_eq!(kind, ConnectErrorKind::TimedOut, "{error}");
    assert!(error.is_retryable());
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(1),
        "failed after {took:?}, the connect timeout being {timeout:?}"
    );
    assert!(target.contains(&format!("127.0.0.1:{}", address.port())));
    assert_names_target_not_password(&error, &format!("127.0.0.1:{}", address.port()), "appdb");
    assert!(error.to_string().contains("connect timeout"), "{error}");
    drop(queued);
}

/// A server that speaks just enough of PostgreSQL's protocol to ask for a password and
/// reject it as PostgreSQL does (FATAL, SQLSTATE 28P01). Answers one client; returns the
/// password it was sent.
async fn password_rejecting_server() -> (u16, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.expect("accept");
        loop {
            let len = client.read_i32().await.expect("length");
            let code = client.read_i32().await.expect("code");
            let mut rest = vec![0; usize::try_from(len - 8).expect("length")];
            client.read_exact(&mut rest).await.expect("startup");
            // SSLRequest or GSSENCRequest: no, carry on in plain text.
            if code == 80_877_103 || code == 80_877_104 {
                client.write_all(b"N").await.expect("no TLS");
                continue;
            }
            break;
        }
        // AuthenticationCleartextPassword.
        client
            .write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])
            .await
            .expect("ask for the password");
        assert_eq!(client.read_u8().await.expect("message"), b'p');
        let len = client.read_i32().await.expect("length");
        let mut password = vec![0; usize::try_from(len - 4).expect("length")];
        client.read_exact(&mut password).await.expect("password");
        let password = String::from_utf8_lossy(&password)
            .trim_end_matches('\0')
            .to_owned();
        let mut fields = Vec::new();
        for (tag, value) in [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', "28P01"),
            (b'M', "password authentication failed for user \"app\""),
        ] {
            fields.push(tag);
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut message = vec![b'E'];
        message.extend_from_slice(&(i32::try_from(fields.len() + 4).expect("len")).to_be_bytes());
        message.extend_from_slice(&fields);
        client.write_all(&message).await.expect("reject");
        password
    });
    (port, task)
}

#[tokio::test]
async fn a_rejected_password_is_an_authentication_error_without_the_password() {
    let (port, server) = password_rejecting_server().await;
    let started = Instant::now();
    let (_, kind, error) = connect_error(
        Store::builder(format!(
            "postgres://app:{PASSWORD}@127.0.0.1:{port}/appdb?sslmode=disable"
        ))
        .open()
        .await,
    );
    assert_eq!(
        server.await.expect("server"),
        PASSWORD,
        "the password was sent"
    );
    assert_eq!(kind, ConnectErrorKind::Authentication, "{error}");
    assert!(!error.is_retryable(), "a wrong password stays wrong");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_names_target_not_password(&error, &format!("127.0.0.1:{port}"), "appdb");
    assert!(
        error.to_string().contains("password authentication failed"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unknown_role_on_the_real_server_is_an_authentication_error() {
    // The local server trusts 127.0.0.1 (pg_hba `trust`), so it never checks a password:
    // a role that does not exist is what it rejects.
    if !postgres_available("an_unknown_role_on_the_real_server_is_an_authentication_error").await {
        return;
    }
    let options = pg_options()
        .username("chronicle_no_such_role")
        .password(PASSWORD);
    let place = format!("{}:{}", options.get_host(), options.get_port());
    let database = options.get_database().unwrap_or("test").to_owned();
    let (_, kind, error) = connect_error(Store::builder(options).open().await);
    assert_eq!(kind, ConnectErrorKind::Authentication, "{error}");
    assert!(!error.is_retryable());
    assert_names_target_not_password(&error, &place, &database);
    assert!(
        error.to_string().contains("user `chronicle_no_such_role`"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unknown_database_is_named() {
    if !postgres_available("an_unknown_database_is_named").await {
        return;
    }
    let options = pg_options()
        .database("chronicle_no_such_database")
        .password(PASSWORD);
    let place = format!("{}:{}", options.get_host(), options.get_port());
    let started = Instant::now();
    let (_, kind, error) = connect_error(Store::builder(options).open().await);
    assert_eq!(kind, ConnectErrorKind::UnknownDatabase, "{error}");
    assert!(!error.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_names_target_not_password(&error, &place, "chronicle_no_such_database");
}

#[tokio::test]
async fn a_sqlite_file_that_cannot_be_opened_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("no-such-folder").join("events.db");
    let (target, kind, error) =
        connect_error(Store::open(format!("sqlite://{}", path.display())).await);
    assert_eq!(kind, ConnectErrorKind::File, "{error}");
    assert!(!error.is_retryable());
    assert!(target.contains(&path.display().to_string()), "{target}");
    assert!(error.to_string().contains(&path.display().to_string()));
}

// ---------------------------------------------------------------------------------------
// Bring your own pool

/// Counts deposits into `deploy_balances`, in the projection's transaction.
struct Balances;

impl Projection for Balances {
    fn name(&self) -> &str {
        "deploy-balances"
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let amount = event.json()?["amount"].as_i64().ok_or("no amount")?;
        let conn = ctx.postgres().ok_or("PostgreSQL only")?;
        sqlx::query(
            "INSERT INTO deploy_balances (account, balance) VALUES ($1, $2) \
             ON CONFLICT (account) DO UPDATE SET balance = deploy_balances.balance + $2",
        )
        .bind(event.stream_id.as_str())
        .bind(amount)
        .execute(conn)
        .await?;
        Ok(())
    }
}

const CREATE_BALANCES: &str =
    "CREATE TABLE deploy_balances (account TEXT PRIMARY KEY, balance BIGINT NOT NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_runs_on_the_applications_pool() {
    if !postgres_available("a_store_runs_on_the_applications_pool").await {
        return;
    }
    let guard = SchemaGuard(fresh_schema());
    let schema = guard.0.clone();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(pg_options().options([("search_path", schema.as_str())]))
        .await
        .expect("the application's pool");
    let store = Store::builder(&pool)
        .schema(schema.clone())
        .open()
        .await
        .expect("a store on the application's pool");
    sqlx::query(CREATE_BALANCES)
        .execute(&pool)
        .await
        .expect("the read model's table, through the same pool");
    for amount in [5, 7] {
        store
            .append(
                "account-1",
                ExpectedVersion::Any,
                vec![NewEvent::new("deposited", json!({ "amount": amount }))],
            )
            .await
            .expect("append");
    }
    let handle = store
        .projections()
        .poll_interval(Duration::from_millis(50))
        .spawn(Balances);
    handle.wait_for_idle().await.expect("caught up");
    // The read model is queried through the application's pool.
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM deploy_balances WHERE account = $1")
        .bind("account-1")
        .fetch_one(&pool)
        .await
        .expect("read model");
    assert_eq!(balance, 12);
    handle.stop().await.expect("stop");
    let events: Vec<_> = store
        .read_all(LogPosition::START)
        .try_collect()
        .await
        .expect("read_all");
    assert_eq!(events.len(), 2);

    // The pool is the application's: closing the store leaves it open.
    store.close().await;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .expect("the pool outlives the store");
    assert_eq!(one, 1);
    pool.close().await;
}

#[tokio::test]
async fn a_pool_whose_search_path_is_another_schema_is_refused() {
    if !postgres_available("a_pool_whose_search_path_is_another_schema_is_refused").await {
        return;
    }
    let guard = SchemaGuard(fresh_schema());
    let schema = guard.0.clone();
    // The server's default search_path: "$user", public.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(pg_options())
        .await
        .expect("pool");
    let (_, kind, error) = connect_error(Store::builder(&pool).schema(schema.clone()).open().await);
    assert_eq!(kind, ConnectErrorKind::Config, "{error}");
    assert!(!error.is_retryable());
    let message = error.to_string();
    assert!(message.contains("search_path"), "{message}");
    assert!(
        message.contains(&format!(
            "PgConnectOptions::options([(\"search_path\", \"{schema}\")])"
        )),
        "says how to set it: {message}"
    );
    let created: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&schema)
            .fetch_one(&pool)
            .await
            .expect("schema lookup");
    assert!(!created, "nothing was created: the migration rolled back");

    // Once the schema exists (another store made it), the same pool is refused too,
    // before anything reads or writes through it.
    Store::builder(pg_url())
        .schema(schema.clone())
        .open()
        .await
        .expect("the schema's own store")
        .close()
        .await;
    let (_, kind, error) = connect_error(
        Store::builder(&pool)
            .schema(schema.clone())
            .migrations(Migrations::Check)
            .open()
            .await,
    );
    assert_eq!(kind, ConnectErrorKind::Config, "{error}");
    pool.close().await;
}

#[tokio::test]
async fn a_store_opens_from_pg_connect_options() {
    if !postgres_available("a_store_opens_from_pg_connect_options").await {
        return;
    }
    let guard = SchemaGuard(fresh_schema());
    let store = Store::builder(pg_options())
        .schema(guard.0.clone())
        .open()
        .await
        .expect("open from options");
    append_and_read(&store, "options-1").await;
}

#[tokio::test]
async fn a_store_opens_from_sqlite_connect_options() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("options.db");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let store = Store::open(options.clone())
        .await
        .expect("open from options");
    append_and_read(&store, "sqlite-options-1").await;
    store.close().await;
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("connect");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("pragma");
    assert_eq!(
        mode, "wal",
        "chronicle's settings are laid over the options"
    );

    // In memory: one database shared by the writer and the readers.
    for options in [
        SqliteConnectOptions::from_str("sqlite::memory:").expect("parse"),
        SqliteConnectOptions::new().in_memory(true),
    ] {
        let store = Store::open(options).await.expect("in memory");
        append_and_read(&store, "memory-1").await;
    }
}

// ---------------------------------------------------------------------------------------
// Migrations on demand

#[tokio::test]
async fn check_lists_pending_migrations_and_the_deploy_step_applies_them() {
    if !postgres_available("check_lists_pending_migrations_and_the_deploy_step_applies_them").await
    {
        return;
    }
    let guard = SchemaGuard(fresh_schema());
    let schema = guard.0.clone();
    let builder = || Store::builder(pg_url()).schema(schema.clone());
    let error = builder()
        .migrations(Migrations::Check)
        .open()
        .await
        .expect_err("a new schema lacks every migration");
    let Error::PendingMigrations { pending, target } = &error else {
        panic!("expected PendingMigrations, got {error:?}")
    };
    assert_eq!(pending, &migration_names("postgres"));
    assert!(target.contains("PostgreSQL at"), "{target}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("0001_core"), "{error}");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&schema)
            .fetch_one(&mut admin().await)
            .await
            .expect("lookup");
    assert!(!exists, "checking creates nothing");

    let applied = builder().migrate().await.expect("the deploy step");
    assert_eq!(applied, migration_names("postgres"));
    assert_eq!(
        builder().migrate().await.expect("again"),
        Vec::<String>::new(),
        "nothing is applied twice"
    );
    let store = builder()
        .migrations(Migrations::Check)
        .open()
        .await
        .expect("an up-to-date schema opens when only checked");
    append_and_read(&store, "checked-1").await;

    // A database one migration behind names that one.
    let last = migration_names("postgres").pop().expect("a migration");
    let version: i64 = last[..4].parse().expect("numbered");
    run(&format!(
        "DELETE FROM \"{schema}\".chronicle_migrations WHERE version = {version}"
    ))
    .await;
    match builder().migrations(Migrations::Check).open().await {
        Err(Error::PendingMigrations { pending, .. }) => assert_eq!(pending, vec![last]),
        other => panic!("expected PendingMigrations, got {other:?}"),
    }
}

#[tokio::test]
async fn sqlite_check_and_migrate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("deploy.db").display());
    match Store::builder(url.as_str())
        .migrations(Migrations::Check)
        .open()
        .await
    {
        Err(Error::PendingMigrations { pending, target }) => {
            assert_eq!(pending, migration_names("sqlite"));
            assert!(target.contains("deploy.db"), "{target}");
        }
        other => panic!("expected PendingMigrations, got {other:?}"),
    }
    assert_eq!(
        Store::migrate(url.as_str()).await.expect("migrate"),
        migration_names("sqlite")
    );
    assert!(
        Store::migrate(url.as_str())
            .await
            .expect("again")
            .is_empty()
    );
    let store = Store::builder(url.as_str())
        .migrations(Migrations::Check)
        .open()
        .await
        .expect("up to date");
    append_and_read(&store, "sqlite-checked-1").await;
    assert!(
        Store::migrate("memory:").await.expect("memory").is_empty(),
        "the memory store has nothing to migrate"
    );
}

// ---------------------------------------------------------------------------------------
// Least privilege

/// Drops the test's roles and schema when it ends, even if it panics.
struct RolesGuard {
    schema: String,
    roles: Vec<String>,
}

impl Drop for RolesGuard {
    fn drop(&mut self) {
        let mut sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE;", self.schema);
        for role in &self.roles {
            sql.push_str(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'; \
                 DROP OWNED BY \"{role}\"; DROP ROLE IF EXISTS \"{role}\";"
            ));
        }
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&pg_url()).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Counts the events it applies, keeping nothing in the database but its checkpoint.
struct Counted(Arc<AtomicU64>);

impl Projection for Counted {
    fn name(&self) -> &str {
        "deploy-counted"
    }

    async fn apply(
        &self,
        _event: &RecordedEvent,
        _ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Every feature once: appends and reads, snapshots, a projection (checkpoint and
/// lease), the outbox, retention, per-stream keys and `forget`.
async fn every_feature(store: &Store, round: &str) {
    let account = format!("account-{round}");
    for amount in [1, 2, 3] {
        store
            .append(
                &account,
                ExpectedVersion::Any,
                vec![NewEvent::new("deposited", json!({ "amount": amount }))],
            )
            .await
            .unwrap_or_else(|error| panic!("{round}: append: {error}"));
    }
    let events: Vec<_> = store
        .read_stream(&account, 1, chronicle::Direction::Forward)
        .try_collect()
        .await
        .unwrap_or_else(|error| panic!("{round}: read_stream: {error}"));
    assert_eq!(events.len(), 3);
    // Events of a stream forgotten in an earlier round come as `Shredded` items.
    let log: Vec<_> = store.read_all(LogPosition::START).collect().await;
    let readable = log.iter().filter(|event| event.is_ok()).count();
    assert!(readable >= 3, "{round}: read_all: {log:?}");

    store
        .save_snapshot(
            &account,
            NewSnapshot::from_serialize(3, 1, &json!({ "balance": 6 })).expect("snapshot"),
        )
        .await
        .unwrap_or_else(|error| panic!("{round}: save_snapshot: {error}"));
    let snapshot = store
        .latest_snapshot(&account, u64::MAX)
        .await
        .unwrap_or_else(|error| panic!("{round}: latest_snapshot: {error}"))
        .expect("a snapshot");
    assert_eq!(snapshot.version, 3);

    let counted = Arc::new(AtomicU64::new(0));
    let handle = store
        .projections()
        .poll_interval(Duration::from_millis(50))
        .spawn(Counted(counted.clone()));
    handle
        .wait_for_idle()
        .await
        .unwrap_or_else(|error| panic!("{round}: projection: {error}"));
    assert!(counted.load(Ordering::SeqCst) >= 3);
    handle
        .stop()
        .await
        .unwrap_or_else(|error| panic!("{round}: projection stop: {error}"));

    let calls = Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    let outbox = store
        .outbox(HandlerMap::new().route(Handler::new(
            format!("deploy-{round}"),
            "deposited",
            move |_request: HandlerRequest| {
                seen.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )))
        .expect("outbox")
        .start_from(chronicle::StartFrom::Beginning);
    outbox
        .process()
        .await
        .unwrap_or_else(|error| panic!("{round}: outbox process: {error}"));
    let executed = outbox
        .execute()
        .await
        .unwrap_or_else(|error| panic!("{round}: outbox execute: {error}"));
    assert!(executed.done >= 3, "{round}: {executed:?}");
    assert!(calls.load(Ordering::SeqCst) >= 3);

    let log_stream = format!("log-{round}");
    store
        .set_retention(
            RetentionScope::stream(&log_stream),
            RetentionPolicy::new().max_count(1).ignore_snapshots(),
        )
        .await
        .unwrap_or_else(|error| panic!("{round}: set_retention: {error}"));
    for n in 0..3 {
        store
            .append(
                &log_stream,
                ExpectedVersion::Any,
                vec![NewEvent::new("logged", json!({ "n": n }))],
            )
            .await
            .unwrap_or_else(|error| panic!("{round}: append: {error}"));
    }
    let report = store
        .enforce_retention()
        .await
        .unwrap_or_else(|error| panic!("{round}: enforce_retention: {error}"));
    assert_eq!(report.events_removed, 2, "{round}");

    store
        .forget(&account)
        .await
        .unwrap_or_else(|error| panic!("{round}: forget: {error}"));
    let read: Result<Vec<_>, _> = store
        .read_stream(&account, 1, chronicle::Direction::Forward)
        .try_collect()
        .await;
    assert!(
        matches!(read, Err(Error::Shredded { .. })),
        "{round}: a forgotten stream is unreadable: {read:?}"
    );
}

fn as_role(schema: &str, role: &str, ring: &KeyRing) -> StoreBuilder {
    Store::builder(pg_options().username(role))
        .schema(schema)
        .encryption(ring.clone())
        .per_stream_keys(true)
}

/// The README's grants, for the two roles of a locked-down deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_roles_open_and_use_every_feature() {
    if !postgres_available("least_privilege_roles_open_and_use_every_feature").await {
        return;
    }
    let schema = fresh_schema();
    let owner = format!("{schema}_owner");
    let app = format!("{schema}_app");
    let _guard = RolesGuard {
        schema: schema.clone(),
        roles: vec![app.clone(), owner.clone()],
    };
    let database = pg_options().get_database().unwrap_or("postgres").to_owned();
    // The owner of an existing schema, without the right to create schemas in the
    // database (PostgreSQL 15 grants PUBLIC no CREATE on databases).
    run(&format!(
        "CREATE ROLE \"{owner}\" LOGIN; CREATE SCHEMA \"{schema}\" AUTHORIZATION \"{owner}\"; \
         CREATE ROLE \"{app}\" LOGIN;"
    ))
    .await;
    let can_create: bool = sqlx::query_scalar("SELECT has_database_privilege($1, $2, 'CREATE')")
        .bind(&owner)
        .bind(&database)
        .fetch_one(&mut admin().await)
        .await
        .expect("privilege");
    assert!(
        !can_create,
        "the owner must not have CREATE on the database"
    );

    let ring = KeyRing::new("deploy", KeyRing::generate_key()).expect("ring");
    // The migrating role: it owns the schema, and opening (which applies the migrations
    // into it) must not try to create the schema.
    let store = as_role(&schema, &owner, &ring)
        .open()
        .await
        .expect("the schema's owner opens and migrates");
    every_feature(&store, "owner").await;
    store.close().await;

    // The application's role after that deploy step: only the grants the README lists.
    run(&format!(
        "GRANT USAGE ON SCHEMA \"{schema}\" TO \"{app}\"; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{schema}\" TO \"{app}\"; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA \"{schema}\" TO \"{app}\";"
    ))
    .await;
    let store = as_role(&schema, &app, &ring)
        .migrations(Migrations::Check)
        .open()
        .await
        .expect("the application's role opens a migrated schema");
    every_feature(&store, "app").await;
    store.close().await;
    // Applying (the default) needs no more rights when nothing is pending.
    let store = as_role(&schema, &app, &ring)
        .open()
        .await
        .expect("Migrations::Apply on an up-to-date schema changes nothing");
    store.close().await;
}
