//! The `chronicle` binary, run as an operator runs it, against SQLite files and
//! PostgreSQL schemas that the tests fill through chronicle's API.
//!
//! PostgreSQL tests read the server's URL from `CHRONICLE_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), each in a schema of its own, dropped
//! afterwards. Without a reachable server they skip loudly, unless
//! `CHRONICLE_REQUIRE_SERVICES=1`, where they fail.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use chronicle::sqlx::{self, Connection as _};
use chronicle::{
    ExpectedVersion, Handler, HandlerError, HandlerMap, HandlerRequest, KeyRing, NewEvent,
    Projection, ProjectionContext, ProjectionError, RecordedEvent, Store, StoreBuilder,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Stores the tests fill, and the binary.

/// A store for one test: a SQLite file in a temp dir, or a PostgreSQL schema dropped when
/// the fixture goes.
enum Fixture {
    Sqlite {
        url: String,
        _dir: tempfile::TempDir,
    },
    Postgres {
        url: String,
        schema: String,
    },
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("events.db").display());
        Fixture::Sqlite { url, _dir: dir }
    }

    /// `None` when PostgreSQL is unreachable and not required.
    async fn postgres(test: &str) -> Option<Fixture> {
        let url = pg_url();
        match sqlx::PgConnection::connect(&url).await {
            Ok(conn) => {
                let _ = conn.close().await;
            }
            Err(error) if std::env::var("CHRONICLE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
                panic!(
                    "CHRONICLE_REQUIRE_SERVICES=1 but PostgreSQL at {url} is unreachable: {error}"
                )
            }
            Err(error) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: PostgreSQL at {url} is unreachable ({error}); set CHRONICLE_PG_URL"
                );
                return None;
            }
        }
        let schema = format!("cli_{}", chronicle::uuid::Uuid::now_v7().simple());
        Some(Fixture::Postgres { url, schema })
    }

    fn builder(&self) -> StoreBuilder {
        match self {
            Fixture::Sqlite { url, .. } => Store::builder(url.clone()),
            Fixture::Postgres { url, schema } => Store::builder(url.clone())
                .schema(schema.clone())
                .pool_size(2),
        }
    }

    async fn store(&self) -> Store {
        self.builder().open().await.expect("open store")
    }

    /// The binary, pointed at this store, with stdin that is no terminal.
    fn cli(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
        command
            .env_remove("CHRONICLE_URL")
            .env_remove("CHRONICLE_KEY_FILE");
        match self {
            Fixture::Sqlite { url, .. } => command.args(["--url", url]),
            Fixture::Postgres { url, schema } => command.args(["--url", url, "--schema", schema]),
        };
        command.write_stdin("").timeout(Duration::from_secs(60));
        command
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Fixture::Postgres { url, schema } = self {
            let (url, schema) = (url.clone(), schema.clone());
            // From a plain thread: the test's runtime cannot be blocked on.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                            .execute(&mut conn)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

fn pg_url() -> String {
    std::env::var("CHRONICLE_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Three streams: `account-1` (3 events), `account-2` (2), `order-1` (1).
async fn fill(store: &Store) {
    let account = |n: i64| NewEvent::new("account.deposited", json!({ "amount": n }));
    store
        .append(
            "account-1",
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new("account.opened", json!({ "owner": "ada" })).correlation_id("req-1"),
                account(10),
                account(20),
            ],
        )
        .await
        .expect("append");
    store
        .append(
            "account-2",
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new("account.opened", json!({ "owner": "bob" })),
                account(5),
            ],
        )
        .await
        .expect("append");
    store
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("order.placed", json!({ "items": 2 }))],
        )
        .await
        .expect("append");
}

/// Runs `command`, expecting the exit code `code`; returns (stdout, stderr).
fn run(command: &mut Command, code: i32) -> (String, String) {
    let output = command.output().expect("run chronicle");
    check(&output, code)
}

fn check(output: &Output, code: i32) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit code\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

/// Runs `command` with `--json`, expecting success; returns the parsed output.
fn json_of(command: &mut Command) -> Value {
    let (stdout, _) = run(command.arg("--json"), 0);
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("not JSON ({error}):\n{stdout}"))
}

fn key_file(dir: &Path, lines: &str) -> PathBuf {
    let path = dir.join("keys");
    std::fs::write(&path, lines).expect("key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const KEY_B: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

fn key(hex: &str) -> [u8; 32] {
    let mut key = [0; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    key
}

// ---------------------------------------------------------------------------------------
// Streams and events, on both backends.

async fn streams_and_events(fixture: Fixture) {
    let store = fixture.store().await;
    fill(&store).await;

    let (table, _) = run(fixture.cli().args(["streams", "list"]), 0);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("STREAM"), "{table}");
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[1].starts_with("account-1 ") && lines[1].contains(" 3 "),
        "{table}"
    );

    let list = json_of(
        fixture
            .cli()
            .args(["streams", "list", "--category", "account"]),
    );
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["stream_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["account-1", "account-2"]);

    let info = json_of(fixture.cli().args(["streams", "info", "account-1"]));
    assert_eq!(info["version"], 3);
    let (text, _) = run(fixture.cli().args(["streams", "info", "order-1"]), 0);
    assert!(
        text.contains("version") && text.contains("active"),
        "{text}"
    );

    let read = json_of(fixture.cli().args(["streams", "read", "account-1"]));
    let read = read.as_array().expect("array");
    assert_eq!(read.len(), 3);
    assert_eq!(read[0]["payload"], json!({ "owner": "ada" }));
    assert_eq!(read[0]["metadata"]["correlation_id"], "req-1");
    assert_eq!(read[2]["payload_state"], "decoded");
    let back =
        json_of(
            fixture
                .cli()
                .args(["streams", "read", "account-1", "--backward", "--limit", "2"]),
        );
    let versions: Vec<u64> = back
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(versions, [3, 2]);
    let (text, _) = run(
        fixture
            .cli()
            .args(["streams", "read", "account-1", "--from", "2"]),
        0,
    );
    assert_eq!(text.lines().count(), 3, "header and two events:\n{text}");
    assert!(text.contains(r#"{"amount":20}"#), "{text}");

    let id = read[1]["id"].as_str().expect("id").to_owned();
    let event = json_of(fixture.cli().args(["events", "get", &id]));
    assert_eq!(event["payload"], json!({ "amount": 10 }));
    assert_eq!(event["stream"], "account-1");

    let deposits = json_of(fixture.cli().args([
        "events",
        "query",
        "--type",
        "account.deposited",
        "--since",
        "1h",
    ]));
    assert_eq!(deposits.as_array().expect("array").len(), 3);
    let of_stream =
        json_of(
            fixture
                .cli()
                .args(["events", "query", "--stream", "account-2", "--limit", "1"]),
        );
    assert_eq!(of_stream[0]["type"], "account.opened");
    let (text, _) = run(
        fixture
            .cli()
            .args(["events", "query", "--correlation-id", "req-1"]),
        0,
    );
    assert!(
        text.lines().next().expect("header").starts_with("STREAM"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");

    // Bad input: an unknown stream, an unknown event, ids that are no ids.
    let (_, stderr) = run(fixture.cli().args(["streams", "read", "nobody-1"]), 3);
    assert!(stderr.contains("no stream `nobody-1`"), "{stderr}");
    run(fixture.cli().args(["streams", "info", "nobody-1"]), 3);
    let unknown = chronicle::uuid::Uuid::now_v7().to_string();
    run(fixture.cli().args(["events", "get", &unknown]), 3);
    run(fixture.cli().args(["events", "get", "not-a-uuid"]), 2);
    run(
        fixture
            .cli()
            .args(["events", "query", "--since", "last tuesday"]),
        2,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_streams_and_events() {
    streams_and_events(Fixture::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_streams_and_events() {
    if let Some(fixture) = Fixture::postgres("postgres_streams_and_events").await {
        streams_and_events(fixture).await;
    }
}

// ---------------------------------------------------------------------------------------
// Bad URLs.

#[test]
fn a_bad_url_is_refused_without_creating_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.db");
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command.args([
        "--url",
        &format!("sqlite://{}", missing.display()),
        "streams",
        "list",
    ]);
    let (_, stderr) = run(command.write_stdin(""), 2);
    assert!(stderr.contains("no SQLite database"), "{stderr}");
    assert!(!missing.exists(), "no store created by a typo");

    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    let (_, stderr) = run(
        command
            .args(["--url", "mysql://db/x", "streams", "list"])
            .write_stdin(""),
        2,
    );
    assert!(stderr.contains("unknown store URL"), "{stderr}");

    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    command.env_remove("CHRONICLE_URL");
    let (_, stderr) = run(command.args(["streams", "list"]).write_stdin(""), 2);
    assert!(stderr.contains("--url"), "{stderr}");

    // Nothing listens on port 1: the connection fails (exit 1), naming the host.
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    let url = "postgres://ada:secret@127.0.0.1:1/x";
    let (_, stderr) = run(
        command
            .args(["--url", url, "streams", "list"])
            .write_stdin(""),
        1,
    );
    assert!(
        stderr.contains("127.0.0.1:1") && !stderr.contains("secret"),
        "{stderr}"
    );

    // Bad arguments are clap's: exit 2.
    let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
    run(command.args(["streams", "frobnicate"]).write_stdin(""), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_schema_without_a_store_is_refused() {
    let Some(fixture) = Fixture::postgres("postgres_a_schema_without_a_store_is_refused").await
    else {
        return;
    };
    // Nothing was opened in the fixture's schema.
    let (_, stderr) = run(fixture.cli().args(["streams", "list"]), 2);
    assert!(stderr.contains("no chronicle store in schema"), "{stderr}");
    let Fixture::Postgres { url, schema } = &fixture else {
        unreachable!()
    };
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let created: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut conn)
            .await
            .expect("query");
    assert!(!created, "the CLI created no schema");
}

// ---------------------------------------------------------------------------------------
// Encrypted payloads and key files.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_decode_with_the_key_file_and_a_wrong_one_is_an_error() {
    let fixture = Fixture::sqlite();
    let ring = KeyRing::new("k1", key(KEY_A)).expect("ring");
    let store = fixture
        .builder()
        .encryption(ring)
        .open()
        .await
        .expect("open");
    fill(&store).await;
    let dir = tempfile::tempdir().expect("dir");

    // Without a key file: shown as encrypted, with the key's id.
    let (text, _) = run(fixture.cli().args(["streams", "read", "account-1"]), 0);
    assert!(
        text.contains("<encrypted: key `k1`>") && !text.contains("ada"),
        "{text}"
    );
    let read = json_of(fixture.cli().args(["streams", "read", "account-1"]));
    assert_eq!(read[0]["payload_state"], "encrypted");
    assert_eq!(read[0]["key_id"], "k1");
    assert_eq!(read[0]["payload"], Value::Null);

    // With the right key file (hex or base64): decoded.
    let right = key_file(dir.path(), &format!("# the ring\nk1={KEY_A}\n"));
    let read = json_of(fixture.cli().args(["--key-file"]).arg(&right).args([
        "streams",
        "read",
        "account-1",
    ]));
    assert_eq!(read[0]["payload"], json!({ "owner": "ada" }));

    // A key file whose `k1` is another key: a clear error, exit 1, no key printed.
    let wrong = key_file(dir.path(), &format!("k1={KEY_B}\n"));
    let (stdout, stderr) = run(
        fixture
            .cli()
            .arg("--key-file")
            .arg(&wrong)
            .args(["streams", "read", "account-1"]),
        1,
    );
    assert!(
        stderr.contains("does not decode with the key file"),
        "{stderr}"
    );
    for secret in [KEY_A, KEY_B] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
    // A key file without the key's id: also an error.
    let other_id = key_file(dir.path(), &format!("k2={KEY_A}\n"));
    let (_, stderr) = run(
        fixture
            .cli()
            .arg("--key-file")
            .arg(&other_id)
            .args(["events", "query"]),
        1,
    );
    assert!(stderr.contains("`k1`"), "{stderr}");
    // A malformed key file: bad input, naming the line, never the text.
    let broken = key_file(dir.path(), "k1=c2VjcmV0\n");
    let (_, stderr) = run(
        fixture
            .cli()
            .arg("--key-file")
            .arg(&broken)
            .args(["streams", "list"]),
        2,
    );
    assert!(
        stderr.contains("line 1") && !stderr.contains("c2VjcmV0"),
        "{stderr}"
    );
    run(
        fixture
            .cli()
            .args(["--key-file", "/nonexistent/keys", "streams", "list"]),
        2,
    );
}

// ---------------------------------------------------------------------------------------
// Destructive commands.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destructive_commands_need_a_confirmation() {
    let fixture = Fixture::sqlite();
    let ring = KeyRing::new("k1", key(KEY_A)).expect("ring");
    let store = fixture
        .builder()
        .encryption(ring)
        .per_stream_keys(true)
        .open()
        .await
        .expect("open");
    fill(&store).await;
    let dir = tempfile::tempdir().expect("dir");
    let keys = key_file(dir.path(), &format!("k1={KEY_A}\n"));

    // stdin is no terminal and there is no --yes: refused, nothing changed.
    let (_, stderr) = run(fixture.cli().args(["streams", "delete", "account-2"]), 4);
    assert!(stderr.contains("--yes"), "{stderr}");
    assert!(store.stream_exists("account-2").await.expect("exists"));
    run(
        fixture
            .cli()
            .args(["streams", "delete", "nobody-1", "--yes"]),
        3,
    );
    let (text, _) = run(
        fixture
            .cli()
            .args(["streams", "delete", "account-2", "--hard", "--yes"]),
        0,
    );
    assert!(text.contains("hard-deleted"), "{text}");
    assert!(!store.stream_exists("account-2").await.expect("exists"));
    let (text, _) = run(fixture.cli().args(["streams", "list", "--deleted"]), 0);
    assert!(text.contains("hard-deleted"), "{text}");

    let forget = |cli: &mut Command| {
        cli.arg("--key-file")
            .arg(&keys)
            .args(["keys", "forget", "account-1"]);
    };
    let mut refused = fixture.cli();
    forget(&mut refused);
    run(&mut refused, 4);
    run(
        fixture.cli().args(["keys", "forget", "account-1", "--yes"]),
        2,
    ); // no key file
    let mut unknown = fixture.cli();
    unknown
        .arg("--key-file")
        .arg(&keys)
        .args(["keys", "forget", "nobody-1", "--yes"]);
    run(&mut unknown, 3);
    let mut confirmed = fixture.cli();
    forget(&mut confirmed);
    run(confirmed.arg("--yes"), 0);
    let read =
        json_of(
            fixture
                .cli()
                .arg("--key-file")
                .arg(&keys)
                .args(["streams", "read", "account-1"]),
        );
    assert_eq!(read[0]["payload_state"], "shredded");
    let (text, _) = run(fixture.cli().args(["streams", "read", "account-1"]), 0);
    assert!(text.contains("<shredded"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Projections.

/// Counts deposits per account in a table of the store's database (SQLite).
struct Totals;

impl Projection for Totals {
    fn name(&self) -> &str {
        "totals"
    }

    fn event_types(&self) -> &[&str] {
        &["account.deposited"]
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let amount = event.json()?["amount"].as_i64().ok_or("no amount")?;
        let conn = ctx.sqlite().ok_or("SQLite only")?;
        sqlx::query(
            "INSERT INTO totals (account, amount, applied) VALUES (?1, ?2, 1) ON CONFLICT (account) \
             DO UPDATE SET amount = amount + excluded.amount, applied = applied + 1",
        )
        .bind(event.stream_id.as_str())
        .bind(amount)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn reset(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
        let conn = ctx.sqlite().ok_or("SQLite only")?;
        sqlx::query("DELETE FROM totals").execute(conn).await?;
        Ok(())
    }
}

async fn totals(url: &str) -> Vec<(String, i64, i64)> {
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
    sqlx::query_as("SELECT account, amount, applied FROM totals ORDER BY account")
        .fetch_all(&mut conn)
        .await
        .expect("totals")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_are_listed_and_a_reset_makes_the_application_rebuild() {
    let fixture = Fixture::sqlite();
    let Fixture::Sqlite { url, .. } = &fixture else {
        unreachable!()
    };
    let store = fixture.store().await;
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
    sqlx::query("CREATE TABLE totals (account TEXT PRIMARY KEY, amount INTEGER, applied INTEGER)")
        .execute(&mut conn)
        .await
        .expect("table");
    fill(&store).await;
    // The application, running the projection.
    let running = store
        .projections()
        .poll_interval(Duration::from_millis(50))
        .spawn(Totals);
    running.wait_for_idle().await.expect("caught up");
    let before = totals(url).await;
    assert_eq!(
        before,
        [
            ("account-1".to_owned(), 30, 2),
            ("account-2".to_owned(), 5, 1)
        ]
    );

    let listed = json_of(fixture.cli().args(["projections", "list"]));
    assert_eq!(listed[0]["name"], "totals");
    assert_eq!(listed[0]["lag_events"], 0);
    assert_eq!(listed[0]["state"], "caught up");
    assert_eq!(listed[0]["position"], running.status().position.to_string());
    let (table, _) = run(fixture.cli().args(["projections", "list"]), 0);
    assert!(
        table.starts_with("NAME") && table.contains("totals"),
        "{table}"
    );

    let (said, _) = run(fixture.cli().args(["projections", "reset", "totals"]), 0);
    assert!(said.contains("empties the read model"), "{said}");
    // The running projection rebuilds: 3 deposits applied again, each counted once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while running.status().applied < 6 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.wait_for_idle().await.expect("rebuilt");
    assert_eq!(running.status().applied, 6, "{:?}", running.status());
    assert_eq!(totals(url).await, before);

    let (_, stderr) = run(fixture.cli().args(["projections", "reset", "nothing"]), 3);
    assert!(stderr.contains("no checkpoint named `nothing`"), "{stderr}");
    run(
        fixture
            .cli()
            .args(["projections", "reset", "chronicle.outbox"]),
        2,
    );
    running.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projections_list() {
    let Some(fixture) = Fixture::postgres("postgres_projections_list").await else {
        return;
    };
    let store = fixture.store().await;
    fill(&store).await;
    let outbox = store
        .outbox(
            HandlerMap::new().route(Handler::new("noop", "*", |_: HandlerRequest| async {
                Ok(())
            })),
        )
        .expect("outbox")
        .start_from(chronicle::StartFrom::Beginning);
    outbox.process().await.expect("process");
    let listed = json_of(fixture.cli().args(["projections", "list"]));
    assert_eq!(listed[0]["name"], "chronicle.outbox");
    assert!(listed[0]["updated_at"].is_string(), "{listed}");
    let stats = json_of(fixture.cli().args(["outbox", "stats"]));
    assert_eq!(stats["handlers"]["noop"]["pending"], 6);
    assert_eq!(stats["unprocessed_events"], 0);
}

// ---------------------------------------------------------------------------------------
// The outbox.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_is_inspected_and_its_dead_requests_retried() {
    let fixture = Fixture::sqlite();
    let store = fixture.store().await;
    fill(&store).await;
    let failing = |name: &str, pattern: &str| {
        Handler::new(name, pattern, |_: HandlerRequest| async {
            Err(HandlerError::fatal("smtp said no"))
        })
    };
    let outbox = store
        .outbox(
            HandlerMap::new()
                .route(failing("mailer", "account.*"))
                .route(failing("billing", "order.*")),
        )
        .expect("outbox")
        .start_from(chronicle::StartFrom::Beginning);
    outbox.process().await.expect("process");
    while outbox.execute().await.expect("execute").claimed > 0 {}

    let stats = json_of(fixture.cli().args(["outbox", "stats"]));
    assert_eq!(stats["handlers"]["mailer"]["dead"], 5);
    assert_eq!(stats["handlers"]["billing"]["dead"], 1);
    let (table, _) = run(fixture.cli().args(["outbox", "stats"]), 0);
    assert!(
        table.starts_with("HANDLER") && table.contains("unprocessed events: 0"),
        "{table}"
    );

    let dead = json_of(
        fixture
            .cli()
            .args(["outbox", "dead", "--handler", "billing"]),
    );
    let dead = dead.as_array().expect("array");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["last_error"], "smtp said no");
    let id = dead[0]["id"].as_i64().expect("id").to_string();
    let retried = json_of(fixture.cli().args(["outbox", "retry", &id]));
    assert_eq!(retried["retried"], 1);
    run(fixture.cli().args(["outbox", "retry", &id]), 3); // not dead any more
    let (text, _) = run(
        fixture
            .cli()
            .args(["outbox", "retry", "--handler", "mailer"]),
        0,
    );
    assert!(text.starts_with("5 dead request(s)"), "{text}");
    run(fixture.cli().args(["outbox", "retry"]), 2); // neither id nor handler

    let stats = json_of(fixture.cli().args(["outbox", "stats"]));
    assert_eq!(stats["handlers"]["mailer"]["pending"], 5);
    let purged = json_of(
        fixture
            .cli()
            .args(["outbox", "purge", "--older-than", "0s"]),
    );
    assert_eq!(purged["purged"], 0, "nothing is done yet");
    run(
        fixture
            .cli()
            .args(["outbox", "purge", "--older-than", "soon"]),
        2,
    );
}

// ---------------------------------------------------------------------------------------
// Retention.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_set_shown_enforced_and_cleared() {
    let fixture = Fixture::sqlite();
    let store = fixture.store().await;
    fill(&store).await;
    let (text, _) = run(fixture.cli().args(["retention", "show"]), 0);
    assert_eq!(text.trim(), "no retention policies");

    let set = json_of(fixture.cli().args([
        "retention",
        "set",
        "--category",
        "account",
        "--max-count",
        "1",
        "--ignore-snapshots",
    ]));
    assert_eq!(set["policy"]["max_count"], 1);
    run(
        fixture
            .cli()
            .args(["retention", "set", "--default", "--max-age", "90d"]),
        0,
    );
    run(fixture.cli().args(["retention", "set", "--default"]), 2); // no limit
    run(
        fixture.cli().args([
            "retention",
            "set",
            "--default",
            "--stream",
            "x",
            "--max-count",
            "1",
        ]),
        2,
    );

    let shown = json_of(fixture.cli().args(["retention", "show"]));
    assert_eq!(shown[0]["scope"]["default"], true);
    assert_eq!(shown[0]["policy"]["max_age"], "90d");
    assert_eq!(shown[1]["scope"]["category"], "account");
    let (text, _) = run(
        fixture
            .cli()
            .args(["retention", "show", "--stream", "account-1"]),
        0,
    );
    assert!(
        text.contains("max count 1") && text.contains("category `account`"),
        "{text}"
    );

    let enforced = json_of(fixture.cli().args(["retention", "enforce"]));
    assert_eq!(
        enforced["events_removed"], 3,
        "account-1 keeps 1 of 3, account-2 1 of 2"
    );
    let read = json_of(fixture.cli().args(["streams", "read", "account-1"]));
    assert_eq!(read.as_array().expect("array").len(), 1);

    run(
        fixture
            .cli()
            .args(["retention", "clear", "--category", "account"]),
        0,
    );
    let shown = json_of(fixture.cli().args(["retention", "show"]));
    assert_eq!(shown.as_array().expect("array").len(), 1);
}

// ---------------------------------------------------------------------------------------
// Following.

/// Starts the binary with `args`, its output piped.
fn spawn(fixture: &Fixture, args: &[&str]) -> std::process::Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"));
    match fixture {
        Fixture::Sqlite { url, .. } => command.args(["--url", url]),
        Fixture::Postgres { url, schema } => command.args(["--url", url, "--schema", schema]),
    };
    command
        .args(args)
        .env_remove("CHRONICLE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chronicle")
}

/// Waits for `child` to exit by itself, for up to 30 s (then kills it and fails).
async fn finished(mut child: std::process::Child) -> Output {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!("still running: {}", String::from_utf8_lossy(&output.stdout));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.wait_with_output().expect("output")
}

async fn tails_follow_new_events(fixture: Fixture) {
    let store = fixture.store().await;
    fill(&store).await;

    // The whole log from the start, as JSON lines that resume with `log_position`.
    let (lines, _) = run(
        fixture
            .cli()
            .args(["--json", "log", "tail", "--from", "start", "--limit", "6"]),
        0,
    );
    let events: Vec<Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(events.len(), 6);
    let third = events[2]["log_position"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let (rest, _) = run(
        fixture.cli().args([
            "--json",
            "log",
            "tail",
            "--from",
            &third,
            "--limit",
            "1",
            "--type",
            "account.deposited",
        ]),
        0,
    );
    let rest: Value = serde_json::from_str(rest.trim()).expect("one JSON line");
    assert_eq!(
        (rest["stream"].as_str(), rest["version"].as_u64()),
        (Some("account-2"), Some(2))
    );
    run(
        fixture.cli().args(["log", "tail", "--from", "yesterday"]),
        2,
    );

    // Followers started now see only what is appended next.
    let stream_tail = spawn(
        &fixture,
        &[
            "--json",
            "streams",
            "tail",
            "account-1",
            "--limit",
            "2",
            "--interval",
            "50ms",
        ],
    );
    let log_tail = spawn(
        &fixture,
        &["log", "tail", "--limit", "3", "--interval", "50ms"],
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // both have read where the end is
    store
        .append(
            "account-1",
            ExpectedVersion::Exact(3),
            vec![
                NewEvent::new("account.deposited", json!({ "amount": 1 })),
                NewEvent::new("account.deposited", json!({ "amount": 2 })),
            ],
        )
        .await
        .expect("append");
    store
        .append(
            "order-2",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("order.placed", json!({}))],
        )
        .await
        .expect("append");

    let output = finished(stream_tail).await;
    let (lines, _) = check(&output, 0);
    let versions: Vec<u64> = lines
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("JSON")["version"]
                .as_u64()
                .expect("version")
        })
        .collect();
    assert_eq!(versions, [4, 5]);
    let output = finished(log_tail).await;
    let (table, _) = check(&output, 0);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("LOG"), "{table}");
    assert_eq!(rows.len(), 4, "{table}");
    assert!(rows[3].contains("order-2"), "{table}");

    run(fixture.cli().args(["streams", "tail", "nobody-1"]), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tails_follow_new_events() {
    tails_follow_new_events(Fixture::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tails_follow_new_events() {
    if let Some(fixture) = Fixture::postgres("postgres_tails_follow_new_events").await {
        tails_follow_new_events(fixture).await;
    }
}

// ---------------------------------------------------------------------------------------
// Key rotation.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_rewrapped_under_the_key_files_active_key() {
    let fixture = Fixture::sqlite();
    let old = KeyRing::new("old", key(KEY_A)).expect("ring");
    let store = fixture
        .builder()
        .encryption(old.clone())
        .per_stream_keys(true)
        .open()
        .await
        .expect("open");
    fill(&store).await;
    // Two events under the ring key itself, written by a store without per-stream keys.
    let plain_keys = fixture
        .builder()
        .encryption(old)
        .open()
        .await
        .expect("open");
    plain_keys
        .append(
            "order-9",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("order.placed", json!({}))],
        )
        .await
        .expect("append");
    let dir = tempfile::tempdir().expect("dir");
    let rotated = key_file(dir.path(), &format!("new={KEY_B}\nold={KEY_A}\n"));

    run(fixture.cli().args(["keys", "rewrap"]), 2); // no key file
    let done = json_of(
        fixture
            .cli()
            .arg("--key-file")
            .arg(&rotated)
            .args(["keys", "rewrap", "--events"]),
    );
    assert_eq!(
        done["keys_rewrapped"], 3,
        "account-1, account-2 and order-1's data keys"
    );
    assert_eq!(done["events_reencrypted"], 1);
    let again = json_of(
        fixture
            .cli()
            .arg("--key-file")
            .arg(&rotated)
            .args(["keys", "rewrap"]),
    );
    assert_eq!(again["keys_rewrapped"], 0, "nothing left");

    // The new key alone reads everything now.
    let new_only = key_file(dir.path(), &format!("new={KEY_B}\n"));
    let log = json_of(
        fixture
            .cli()
            .arg("--key-file")
            .arg(&new_only)
            .args(["events", "query"]),
    );
    assert_eq!(log.as_array().expect("array").len(), 7);
    assert!(
        log.as_array()
            .expect("array")
            .iter()
            .all(|event| event["payload_state"] == "decoded")
    );
}

// ---------------------------------------------------------------------------------------
// Migrations: the deploy step.

async fn migrate_creates_the_store_and_check_passes_once_up_to_date(fixture: Fixture) {
    // No store yet: the check refuses, and creates nothing.
    run(fixture.cli().args(["migrate", "--check"]), 2);
    let applied = json_of(fixture.cli().arg("migrate"));
    let applied = applied["applied"].as_array().expect("a list of migrations");
    assert!(
        applied.iter().any(|name| name == "0001_core"),
        "{applied:?}"
    );
    let pending = json_of(fixture.cli().args(["migrate", "--check"]));
    assert_eq!(pending, json!({ "pending": [] }));
    // Once more: nothing to apply; the store works.
    assert_eq!(
        json_of(fixture.cli().arg("migrate")),
        json!({ "applied": [] })
    );
    let streams = json_of(fixture.cli().args(["streams", "list"]));
    assert_eq!(streams.as_array().map(Vec::len), Some(0), "{streams}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrate_creates_the_store_and_check_passes_once_up_to_date() {
    migrate_creates_the_store_and_check_passes_once_up_to_date(Fixture::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrate_creates_the_store_and_check_passes_once_up_to_date() {
    let Some(fixture) = Fixture::postgres("postgres_migrate").await else {
        return;
    };
    migrate_creates_the_store_and_check_passes_once_up_to_date(fixture).await;
}

// ---------------------------------------------------------------------------------------
// Stats and health, through the manager; a manager configuration instead of --url.

async fn stats_and_health(fixture: Fixture) {
    let store = fixture.store().await;
    fill(&store).await;
    let handlers = HandlerMap::new().route(Handler::new(
        "refuses",
        "order.*",
        |_request: HandlerRequest| async { Err(HandlerError::fatal("no")) },
    ));
    let outbox = store
        .outbox(handlers)
        .expect("outbox")
        .start_from(chronicle::StartFrom::Beginning);
    outbox.process().await.expect("process");
    let stats = json_of(fixture.cli().arg("stats"));
    let provider = &stats["providers"]["store"];
    if matches!(fixture, Fixture::Sqlite { .. }) {
        assert_eq!(provider["storage"]["streams"], 3, "{stats}");
        assert_eq!(provider["storage"]["events"], 6, "{stats}");
    }
    assert!(provider["storage"]["bytes"].as_u64() > Some(0), "{stats}");
    assert_eq!(
        provider["outbox"]["handlers"]["refuses"]["pending"], 1,
        "{stats}"
    );
    let (table, _) = run(fixture.cli().arg("stats"), 0);
    assert!(table.contains("refuses"), "{table}");
    // Healthy: exit 0.
    let (healthy, _) = run(fixture.cli().arg("health"), 0);
    assert!(healthy.starts_with("healthy"), "{healthy}");
    // A dead request degrades the outbox: exit 1, and the reason is printed.
    while outbox.stats().await.expect("stats").handlers["refuses"].dead == 0 {
        outbox.execute().await.expect("execute");
    }
    let (degraded, _) = run(fixture.cli().arg("health"), 1);
    assert!(degraded.contains("1 dead requests"), "{degraded}");
    let health = {
        let output = fixture
            .cli()
            .args(["health", "--json"])
            .output()
            .expect("run");
        check(&output, 1);
        serde_json::from_slice::<Value>(&output.stdout).expect("json")
    };
    assert_eq!(health["status"], "degraded", "{health}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stats_and_health() {
    stats_and_health(Fixture::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stats_and_health() {
    let Some(fixture) = Fixture::postgres("postgres_stats_and_health").await else {
        return;
    };
    stats_and_health(fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_configuration_names_the_stores() {
    let main = Fixture::sqlite();
    fill(&main.store().await).await;
    let other = Fixture::sqlite();
    other.store().await.close().await;
    let (Fixture::Sqlite { url: main_url, .. }, Fixture::Sqlite { url: other_url, .. }) =
        (&main, &other)
    else {
        unreachable!("both are SQLite fixtures")
    };
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("chronicle.toml");
    std::fs::write(
        &config,
        format!(
            "default = \"main\"\n[providers.main]\nurl = \"{main_url}\"\n[providers.other]\nurl = \"{other_url}\"\n"
        ),
    )
    .expect("config");
    let chronicle = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chronicle"));
        command
            .env_remove("CHRONICLE_URL")
            .env_remove("CHRONICLE_KEY_FILE")
            .arg("--config")
            .arg(&config)
            .write_stdin("")
            .timeout(Duration::from_secs(60));
        command
    };
    // The default provider, then another by name.
    let streams = json_of(chronicle().args(["streams", "list"]));
    assert_eq!(streams.as_array().map(Vec::len), Some(3), "{streams}");
    let streams = json_of(chronicle().args(["--provider", "other", "streams", "list"]));
    assert_eq!(streams.as_array().map(Vec::len), Some(0), "{streams}");
    // Stats and health cover every provider.
    let stats = json_of(chronicle().arg("stats"));
    assert_eq!(
        stats["providers"]["main"]["storage"]["streams"], 3,
        "{stats}"
    );
    assert_eq!(
        stats["providers"]["other"]["storage"]["streams"], 0,
        "{stats}"
    );
    run(chronicle().arg("health"), 0);
    // Bad input: an unknown provider, a configuration that does not parse.
    let (_, stderr) = run(
        chronicle().args(["--provider", "nope", "streams", "list"]),
        2,
    );
    assert!(
        stderr.contains("no provider `nope`") && stderr.contains("main, other"),
        "{stderr}"
    );
    std::fs::write(&config, "default = 5\n").expect("config");
    let (_, stderr) = run(chronicle().args(["streams", "list"]), 2);
    assert!(stderr.contains("chronicle.toml"), "{stderr}");
    // A store that cannot be opened is unhealthy.
    std::fs::write(
        &config,
        "[providers.gone]\nurl = \"sqlite:///nonexistent/x.db\"\n",
    )
    .expect("config");
    run(chronicle().arg("health"), 2);
}
