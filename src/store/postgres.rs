//! The PostgreSQL backend (`postgres://…`): for production and for several application
//! nodes on one database.
//!
//! Every connection's `search_path` is the store's schema, so several stores can share a
//! database. An append is one round trip and one commit: a single statement checks the
//! expected version while it writes the stream row, and inserts the events only when that
//! write matched (`append_sql!`).
//!
//! The global log is read in transaction order without gaps: every event records its writing
//! transaction (`pg_current_xact_id()`), and `read_all` orders by (transaction, position)
//! and returns only events whose transaction is older than the oldest one still running
//! (`pg_snapshot_xmin`). A transaction that took a lower position but commits later is
//! therefore still ahead of every reader's cursor.
//!
//! The backend is `SqlBackend<Postgres>` (`sql/backend.rs`, which writes the shared part
//! of `Backend` once); here are its open, schema and migrations and its [`Engine`] hooks:
//! the append, the log window, `held_back` and `log_end`, the storage estimates, the
//! `BEGIN`s, closing, LISTEN/NOTIFY and the leases.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Row};

use super::backend::{
    Answers, AppendFeed, AppendNotices, AppendOutcome, Capabilities, EncodedEvent, ExpiryCut,
    HeldBack, Lease, LogPage, Support, WindowLimit,
};
use super::batch::{DynTx, Flush};
use super::connect;
use super::migrate::{self, Migration, Migrations};
use super::retention_sql;
use super::sql::backend::{Engine, SqlBackend};
use super::sql::dialect::Dialect;
use super::sql::event_joins::stream_key_open;
use super::sql::migrate::Migrator;
use super::sql::{self, RowRef, to_i64, to_u64};
use super::storage::StorageStats;
use crate::error::{ConnectErrorKind, Error, Result, ValidationError};
use crate::read::{EventParts, LogPosition};
use crate::stream::{AppendGuard, StreamId};

mod window;

/// What the PostgreSQL backend needs from the store builder.
#[derive(Debug, Clone)]
pub(crate) struct PostgresConfig {
    pub schema: String,
    pub pool_size: u32,
    pub acquire_timeout: Duration,
    /// The server cancels statements running longer (the operation timeout), so a
    /// timed-out append does not go on to commit behind the caller's back.
    pub statement_timeout: Option<Duration>,
    /// The wait for the first connection of an open.
    pub connect_timeout: Duration,
    pub migrations: Migrations,
}

/// Where the backend's connections come from.
#[derive(Debug)]
pub(crate) enum PgSource {
    /// A pool of chronicle's own, built from these options.
    Options(Box<PgConnectOptions>),
    /// The application's pool, used as it is and never closed by the store.
    Pool(PgPool),
}

/// The PostgreSQL backend: [`SqlBackend`] over PostgreSQL, whose writer and reader are
/// the one pool.
pub(crate) type PostgresBackend = SqlBackend<Postgres>;

/// What the PostgreSQL backend keeps beside its pool.
#[derive(Debug)]
pub(crate) struct PgState {
    /// Whether the pool is chronicle's (closed by `close`) or the application's.
    owns_pool: bool,
    schema: String,
    /// The wait for a connection of its own (a lease's).
    connect_timeout: Duration,
}

/// A pooled connection used this recently is handed out without a ping (HikariCP's
/// `aliveBypassWindowMs`, 500 ms, is the same idea): a busy pool pays no round trip
/// per statement to learn that its connections are alive, and one that died since is a
/// connection error, which the store retries.
const ALIVE_BYPASS: Duration = Duration::from_millis(500);

/// An append in one statement: a per-stream lock, the stream write (`$stream_write`: the
/// CTE `base`, reading from `stream_lock` so that it waits for the lock, and returning the
/// version before the append as `base` and the stream's key, or no row when the expected
/// version or the stream's status rejects it) and the event rows, which are only inserted
/// when the stream write matched.
/// Parameters: $1 stream, $2 category, $3 event count, $4 last event id, $5 check version?,
/// $6 expected version, $7… the event columns as arrays. Each event's `type_id` is looked
/// up in `event_types` by its type and schema version, which the append added first when
/// new (`sql/event_types.rs`).
macro_rules! append_sql {
    ($stream_write:expr, $events:expr) => {
        concat!(
            // Appends to one stream queue on a lock that does not assign a transaction id,
            // so they take their ids in version order: `read_all`, which orders by
            // (transaction, position), then keeps every stream's events in version order.
            "WITH stream_lock AS MATERIALIZED ( \
                 SELECT pg_advisory_xact_lock(hashtextextended($1, 0)) AS locked), ",
            $stream_write,
            " INSERT INTO events (event_id, stream_key, version, type_id, payload, \
             correlation_id, causation_id, tenant_id, user_id, metadata) \
             SELECT e.id, base.stream_key, base.base + e.ord, \
                    (SELECT t.type_id FROM event_types t \
                     WHERE t.event_type = e.typ AND t.schema_version = e.sv), \
                    e.payload, e.corr, e.caus, e.tenant, e.usr, e.meta::jsonb \
             FROM base, ",
            $events,
            " AS e(id, typ, sv, payload, corr, caus, tenant, usr, meta, ord) \
             ORDER BY e.ord \
             RETURNING position, version::bigint, transaction_id::text::bigint, recorded_at"
        )
    };
}

/// The event columns of a batch, as arrays.
macro_rules! batch_events {
    () => {
        "unnest($7::uuid[], $8::text[], $9::bigint[], $10::bytea[], $11::text[], $12::text[], \
                $13::text[], $14::text[], $15::text[]) WITH ORDINALITY"
    };
}

/// The event columns of a single event, as scalars (no arrays to build and unpack).
macro_rules! single_event {
    () => {
        "(VALUES ($7::uuid, $8::text, $9::bigint, $10::bytea, $11::text, $12::text, $13::text, \
                  $14::text, $15::text, 1::bigint))"
    };
}

/// The stream write of an append to a stream that may be new: insert it, or bump the
/// existing row when it is active and at the expected version.
///
/// An `INSERT` computes its row before it finds the conflict, so an identity would draw
/// a `stream_key` on every append. The key is an `integer` (migration 0014) and must count
/// streams, so the row carries the stream's own key when the statement's snapshot has its
/// row, and draws a new one only when it has none (`COALESCE` evaluates `nextval` only
/// then). An append that races another's creation of the same stream draws one that
/// goes unused.
macro_rules! upserting {
    () => {
        concat!(
            "base AS ( \
             INSERT INTO streams AS s (stream_key, stream_id, category, version, event_count, \
                 last_event_id) \
             OVERRIDING SYSTEM VALUE \
             SELECT COALESCE(",
            stream_key_open!(),
            "$1), nextval('streams_stream_key_seq')), $1, $2, $3, $3, $4 \
             FROM stream_lock \
             ON CONFLICT (stream_id) DO UPDATE SET version = s.version + $3, \
                 event_count = s.event_count + $3, last_event_id = $4, updated_at = now() \
             WHERE s.status = 0 AND (NOT $5 OR s.version = $6) \
             RETURNING s.version - $3 AS base, s.stream_key)"
        )
    };
}

/// The stream write of an append to a stream that must exist.
macro_rules! updating {
    () => {
        "base AS ( \
         UPDATE streams AS s SET version = s.version + $3, event_count = s.event_count + $3, \
             last_event_id = $4, updated_at = now() \
         FROM stream_lock \
         WHERE s.stream_id = $1 AND s.status = 0 AND (NOT $5 OR s.version = $6) \
             AND $2::text IS NOT NULL \
         RETURNING s.version - $3 AS base, s.stream_key)"
    };
}

/// The four append statements: (may create the stream?, one event?).
const APPEND_UPSERTING_BATCH: &str = append_sql!(upserting!(), batch_events!());
const APPEND_UPSERTING_SINGLE: &str = append_sql!(upserting!(), single_event!());
const APPEND_UPDATING_BATCH: &str = append_sql!(updating!(), batch_events!());
const APPEND_UPDATING_SINGLE: &str = append_sql!(updating!(), single_event!());

/// The last event behind every running transaction ([`Engine::log_end`]). The output is
/// named `commit_id`: a cast of a column keeps the column's name, and `ORDER BY` takes
/// an output column's name first, so PostgreSQL would sort every event by the cast.
const LOG_END: &str = "SELECT transaction_id::text::bigint AS commit_id, position FROM events \
     WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY transaction_id DESC, position DESC LIMIT 1";

/// Schema names are spliced into DDL, so only plain identifiers are accepted.
fn validate_schema(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let valid = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ValidationError::Config(format!(
            "PostgreSQL schema `{schema}` must be a lowercase identifier ([a-z_][a-z0-9_]*, at most 63 bytes)"
        ))
        .into())
    }
}

impl SqlBackend<Postgres> {
    pub(crate) async fn open(source: PgSource, config: &PostgresConfig) -> Result<Self> {
        validate_schema(&config.schema)?;
        let (pool, owns_pool) = match source {
            PgSource::Options(options) => {
                let options = store_options(*options, config);
                let mut connection = connect::pg_connect(&options, config.connect_timeout).await?;
                let target = schema_target(&options, &config.schema);
                prepare_schema(&mut connection, &config.schema, &target, config.migrations).await?;
                let _ = sqlx::Connection::close(connection).await;
                let unix_socket = options.get_socket().is_some();
                let pool = PgPoolOptions::new()
                    .max_connections(config.pool_size.max(1))
                    .acquire_timeout(config.acquire_timeout)
                    // sqlx pings every connection it hands out, a round trip before each
                    // statement; like HikariCP, only a connection idle for a while is checked.
                    .test_before_acquire(false)
                    .before_acquire(|conn, idle| {
                        Box::pin(async move {
                            if idle.idle_for >= ALIVE_BYPASS {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_with(options)
                    .await
                    .map_err(|error| connect::connect_error(&target, error, unix_socket))?;
                (pool, true)
            }
            PgSource::Pool(pool) => {
                let mut connection = connect::pg_acquire(&pool, config.connect_timeout).await?;
                let target = schema_target(&pool.connect_options(), &config.schema);
                prepare_schema(&mut connection, &config.schema, &target, config.migrations).await?;
                drop(connection);
                (pool, false)
            }
        };
        Ok(SqlBackend {
            writer: pool.clone(),
            reader: pool,
            state: PgState {
                owns_pool,
                schema: config.schema.clone(),
                connect_timeout: config.connect_timeout,
            },
            event_types: Default::default(),
        })
    }

    /// Applies the pending migrations (creating the schema when it is missing) and
    /// returns their names, without opening a store: the deploy step.
    pub(crate) async fn migrate(source: PgSource, config: &PostgresConfig) -> Result<Vec<String>> {
        validate_schema(&config.schema)?;
        match source {
            PgSource::Options(options) => {
                let options = store_options(*options, config);
                let target = schema_target(&options, &config.schema);
                let mut connection = connect::pg_connect(&options, config.connect_timeout).await?;
                let applied =
                    prepare_schema(&mut connection, &config.schema, &target, Migrations::Apply)
                        .await;
                let _ = sqlx::Connection::close(connection).await;
                applied
            }
            PgSource::Pool(pool) => {
                let mut connection = connect::pg_acquire(&pool, config.connect_timeout).await?;
                let target = schema_target(&pool.connect_options(), &config.schema);
                prepare_schema(&mut connection, &config.schema, &target, Migrations::Apply).await
            }
        }
    }
}

/// `options` as chronicle's own pool uses them: the store's schema as `search_path`, an
/// application name naming it, and the operation timeout as `statement_timeout`.
fn store_options(options: PgConnectOptions, config: &PostgresConfig) -> PgConnectOptions {
    let mut options = options
        .options([("search_path", config.schema.as_str())])
        .application_name(&format!("chronicle:{}", config.schema));
    if let Some(timeout) = config.statement_timeout {
        let millis = timeout.as_millis().max(1).to_string();
        options = options.options([("statement_timeout", millis.as_str())]);
    }
    options
}

/// How errors about the store's schema name it: the database's target and the schema.
fn schema_target(options: &PgConnectOptions, schema: &str) -> String {
    format!("{}, schema `{schema}`", connect::pg_target(options))
}

/// What a connection sees of the store's schema.
struct SchemaState {
    /// `current_schema()`: the first schema of the `search_path` that exists and that the
    /// role may use.
    current: Option<String>,
    search_path: String,
    exists: bool,
    /// Whether the role has USAGE on the schema.
    usage: bool,
    /// Whether `chronicle_migrations` exists in it.
    migrated_before: bool,
}

impl SchemaState {
    async fn read(connection: &mut PgConnection, schema: &str) -> Result<Self> {
        let row = sqlx::query(
            "SELECT current_schema(), current_setting('search_path'), n.oid IS NOT NULL, \
                 n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'USAGE'), \
                 EXISTS (SELECT 1 FROM pg_class c \
                         WHERE c.relnamespace = n.oid AND c.relname = 'chronicle_migrations') \
             FROM (SELECT $1::text AS name) AS wanted \
             LEFT JOIN pg_namespace n ON n.nspname = wanted.name",
        )
        .bind(schema)
        .fetch_one(&mut *connection)
        .await
        .map_err(|error| Error::from_sqlx("migrate", error))?;
        let get = |error| Error::from_sqlx("migrate", error);
        Ok(SchemaState {
            current: row.try_get(0).map_err(get)?,
            search_path: row.try_get(1).map_err(get)?,
            exists: row.try_get(2).map_err(get)?,
            usage: row.try_get(3).map_err(get)?,
            migrated_before: row.try_get(4).map_err(get)?,
        })
    }

    /// Chronicle's statements name tables without a schema, so the connection's current
    /// schema must be the store's: otherwise they would read and write another schema's
    /// tables (a pool given by the application sets its own `search_path`).
    fn check_search_path(&self, schema: &str, target: &str) -> Result<()> {
        if self.current.as_deref() == Some(schema) {
            return Ok(());
        }
        let detail = if self.usage {
            format!(
                "the connection's current schema is {} (search_path `{}`), not the store's schema `{schema}`: chronicle names its tables without a schema, so `{schema}` must come first on the search_path; on a pool of your own set it with PgConnectOptions::options([(\"search_path\", \"{schema}\")])",
                self.current
                    .as_deref()
                    .map_or("none".to_owned(), |current| format!("`{current}`")),
                self.search_path
            )
        } else {
            format!(
                "the role may not use schema `{schema}`: GRANT USAGE ON SCHEMA \"{schema}\" TO the store's role"
            )
        };
        Err(Error::Connect {
            target: target.to_owned(),
            kind: ConnectErrorKind::Config,
            detail,
            source: None,
        })
    }
}

/// Brings the store's schema up to date, or with [`Migrations::Check`] checks that it is;
/// returns the names of the migrations applied. Reading what is applied needs no lock
/// and no DDL; only pending migrations take the lock and the rights to change the schema,
/// and the schema is created only when it is missing (`CREATE SCHEMA` needs the CREATE
/// right on the database even with `IF NOT EXISTS`).
async fn prepare_schema(
    connection: &mut PgConnection,
    schema: &str,
    target: &str,
    mode: Migrations,
) -> Result<Vec<String>> {
    let state = SchemaState::read(connection, schema).await?;
    if state.exists {
        state.check_search_path(schema, target)?;
    }
    let recorded = state.migrated_before;
    let applied =
        if Migrator::<Postgres>::must_apply(&mut *connection, recorded, mode, target).await? {
            apply_migrations(connection, schema, target).await?
        } else {
            Vec::new()
        };
    check_transaction_ids(connection, target).await?;
    Ok(applied)
}

/// Refuses a log whose newest event carries a transaction id this server has not handed
/// out yet: a database restored from a logical dump into a younger cluster. The global
/// log is ordered by (transaction, position), so such events would look unfinished to
/// every reader, and new appends would sort before them, behind projections'
/// checkpoints. One probe of the primary key's end.
async fn check_transaction_ids(connection: &mut PgConnection, target: &str) -> Result<()> {
    let newest_and_next = format!(
        "SELECT newest.transaction_id, pg_snapshot_xmax(pg_current_snapshot())::text::bigint \
         FROM ({}) AS newest(transaction_id, position)",
        Postgres::LAST_COMMITTED
    );
    let ids: Option<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(newest_and_next))
        .fetch_optional(&mut *connection)
        .await
        .map_err(|error| Error::from_sqlx("open", error))?;
    match ids {
        Some((newest, next)) if newest >= next => Err(Error::Connect {
            target: target.to_owned(),
            kind: ConnectErrorKind::Config,
            detail: format!(
                "the log's newest event was written by transaction {newest}, and this server has \
                 handed out transaction ids only up to {}: the database was restored into \
                 another cluster from a logical dump. Advance the server's transaction counter \
                 past {newest} before opening the store (README, \"Backups and restores\")",
                next - 1
            ),
            source: None,
        }),
        _ => Ok(()),
    }
}

/// Creates the schema when missing and applies pending migrations in one transaction,
/// under an advisory lock per schema so concurrent openers take turns.
async fn apply_migrations(
    connection: &mut PgConnection,
    schema: &str,
    target: &str,
) -> Result<Vec<String>> {
    let fail = |error| Error::from_sqlx("migrate", error);
    let mut tx = sqlx::Connection::begin(&mut *connection)
        .await
        .map_err(fail)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('chronicle-migrate:' || $1))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    let mut state = SchemaState::read(&mut tx, schema).await?;
    if !state.exists {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        state = SchemaState::read(&mut tx, schema).await?;
    }
    state.check_search_path(schema, target)?;
    let names = Migrator::<Postgres>::apply(&mut tx, |migration| {
        tracing::info!(
            version = migration.version,
            name = migration.name,
            schema,
            "applying PostgreSQL migration"
        );
    })
    .await?;
    tx.commit().await.map_err(fail)?;
    Ok(names)
}

fn is_duplicate_event_id(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.is_unique_violation() && db.constraint() == Some("events_event_id_key"))
}

/// What an append's failure counted past its 4-byte column, if that is why it failed:
/// a version (`integer out of range`, as the event row took it) or a stream key (the
/// identity's sequence at its end).
fn storage_limit(error: &sqlx::Error) -> Option<&'static str> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    match db.code().as_deref() {
        Some("22003") => Some("events in a stream"),
        Some("2200H") => Some("streams"),
        _ => None,
    }
}

/// The one-statement append (`append_sql!`), whose events' type pairs are in
/// `event_types`. A statement that matched no row comes back as
/// `NotMatched`: `Store` finds out why (`append::settle`).
async fn append_statement(
    conn: &mut PgConnection,
    stream: &StreamId,
    guard: AppendGuard,
    events: &[EncodedEvent<'_>],
) -> Result<AppendOutcome> {
    // The guard is checked in the statement that bumps the version (an upsert or an
    // update with a `WHERE`), so the check and the write cannot drift apart.
    let sql = match (guard.may_create, events.len() == 1) {
        (true, false) => APPEND_UPSERTING_BATCH,
        (true, true) => APPEND_UPSERTING_SINGLE,
        (false, false) => APPEND_UPDATING_BATCH,
        (false, true) => APPEND_UPDATING_SINGLE,
    };
    let query = sqlx::query_as(sql)
        .bind(stream.as_str())
        .bind(stream.category())
        .bind(events.len() as i64)
        .bind(events.last().map(|e| e.source.id))
        .bind(guard.version.is_some())
        .bind(to_i64(guard.version.unwrap_or(0)));
    let query = if let [event] = events {
        query
            .bind(event.source.id)
            .bind(event.source.event_type.as_str())
            .bind(i64::from(event.source.schema_version))
            .bind(event.payload.as_slice())
            .bind(event.source.metadata.correlation_id.as_deref())
            .bind(event.source.metadata.causation_id.as_deref())
            .bind(event.source.metadata.tenant_id.as_deref())
            .bind(event.source.metadata.user_id.as_deref())
            .bind(event.extra_metadata.as_deref())
    } else {
        let column = |f: for<'e> fn(&'e EncodedEvent<'_>) -> Option<&'e String>| {
            events
                .iter()
                .map(|e| f(e).map(String::as_str))
                .collect::<Vec<_>>()
        };
        query
            .bind(events.iter().map(|e| e.source.id).collect::<Vec<_>>())
            .bind(
                events
                    .iter()
                    .map(|e| e.source.event_type.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                events
                    .iter()
                    .map(|e| i64::from(e.source.schema_version))
                    .collect::<Vec<_>>(),
            )
            .bind(
                events
                    .iter()
                    .map(|e| e.payload.as_slice())
                    .collect::<Vec<_>>(),
            )
            .bind(column(|e| e.source.metadata.correlation_id.as_ref()))
            .bind(column(|e| e.source.metadata.causation_id.as_ref()))
            .bind(column(|e| e.source.metadata.tenant_id.as_ref()))
            .bind(column(|e| e.source.metadata.user_id.as_ref()))
            .bind(column(|e| e.extra_metadata.as_ref()))
    };
    let result: std::result::Result<Vec<sql::WrittenRow>, sqlx::Error> =
        query.fetch_all(&mut *conn).await;
    let rows = match result {
        Ok(rows) => rows,
        Err(error) if is_duplicate_event_id(&error) => {
            return Ok(AppendOutcome::DuplicateEventId);
        }
        Err(error) => {
            return Err(match storage_limit(&error) {
                Some(what) => ValidationError::StorageLimit {
                    stream: stream.to_string(),
                    what,
                    limit: i32::MAX as u64,
                }
                .into(),
                None => Error::from_sqlx("append", error),
            });
        }
    };
    if rows.is_empty() {
        return Ok(AppendOutcome::NotMatched);
    }
    Ok(sql::written(rows))
}

/// A projection's lease on PostgreSQL: the connection holding the session advisory lock.
#[derive(Debug)]
struct PgLease(PgConnection);

#[async_trait]
impl Lease for PgLease {
    async fn check(&mut self, within: Duration) -> Result<()> {
        let ping = sqlx::query("SELECT 1").execute(&mut self.0);
        match tokio::time::timeout(within, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(Error::from_sqlx("lease", error)),
            Err(_) => Err(Error::Timeout {
                operation: "lease",
                after: within,
            }),
        }
    }
}

/// Other processes' appends on PostgreSQL: `NOTIFY chronicle_appends` carrying the
/// store's schema, which tells stores in other schemas of the same database apart.
#[derive(Debug)]
struct PgFeed {
    listener: sqlx::postgres::PgListener,
    schema: String,
}

#[async_trait]
impl AppendFeed for PgFeed {
    async fn next(&mut self) -> Result<()> {
        loop {
            let notification = self
                .listener
                .recv()
                .await
                .map_err(|error| Error::from_sqlx("listen", error))?;
            if notification.payload() == self.schema {
                return Ok(());
            }
        }
    }
}

impl Engine for Postgres {
    type State = PgState;

    const CAPABILITIES: Capabilities = Capabilities {
        kind: "postgres",
        append_notices: AppendNotices::OtherProcesses,
        answers: Answers::Whole,
        outbox: Support::Supported,
    };

    const MIGRATIONS: &'static [Migration] = migrate::POSTGRES;

    const RECORD_MIGRATION: &'static str = "INSERT INTO chronicle_migrations (version, name, applied_at) \
         VALUES ($1, $2, now()::text)";

    /// The record statement reads the server's clock.
    fn migration_time() -> Option<String> {
        None
    }

    const BEGIN_READ: Option<&'static str> = Some("BEGIN READ ONLY");

    fn begin_batch(flush: Flush) -> &'static str {
        match flush {
            Flush::Wait => "BEGIN",
            Flush::Defer => "BEGIN; SET LOCAL synchronous_commit = off",
        }
    }

    async fn append(
        backend: &PostgresBackend,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> Result<AppendOutcome> {
        let mut conn = backend
            .writer
            .acquire()
            .await
            .map_err(|error| Error::from_sqlx("append", error))?;
        append_statement(&mut conn, stream, guard, events).await
    }

    fn connection_of(tx: &mut dyn DynTx) -> Option<&mut PgConnection> {
        tx.postgres()
    }

    fn append_in(
        conn: &mut PgConnection,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> impl Future<Output = Result<AppendOutcome>> + Send {
        append_statement(conn, stream, guard, events)
    }

    async fn read_all(
        backend: &PostgresBackend,
        after: LogPosition,
        limit: WindowLimit,
        types: &[String],
        parts: EventParts,
    ) -> Result<LogPage> {
        backend.log_window(after, limit, types, parts).await
    }

    async fn held_back(
        backend: &PostgresBackend,
        after: LogPosition,
        bound: Option<u64>,
    ) -> Result<HeldBack> {
        // The first event after the cursor, by the commit-order index, then one
        // comparison: events are ordered by transaction first, so if the first one is not
        // older than the bound none is. (An EXISTS over the range let PostgreSQL's generic
        // plan fall back to a sequential scan of the whole table.)
        let (pending, bound): (bool, i64) = sqlx::query_as(
            "WITH bound AS ( \
                 SELECT COALESCE($3, pg_snapshot_xmax(pg_current_snapshot())::text::bigint) AS b), \
             next AS ( \
                 SELECT transaction_id FROM events \
                 WHERE (transaction_id, position) > ($1::text::xid8, $2) \
                 ORDER BY transaction_id, position LIMIT 1) \
             SELECT EXISTS ( \
                 SELECT 1 FROM next WHERE transaction_id < (SELECT b FROM bound)::text::xid8 \
             ), (SELECT b FROM bound)",
        )
        .bind(after.commit().to_string())
        .bind(to_i64(after.position()))
        .bind(bound.map(to_i64))
        .fetch_one(&backend.reader)
        .await
        .map_err(|error| Error::from_sqlx("read_all", error))?;
        Ok(HeldBack {
            pending,
            bound: to_u64(bound),
        })
    }

    /// The last event behind every running transaction (what `read_all` would return
    /// last), through the commit-order index backwards. Events of transactions still
    /// running are after it, committed or not.
    async fn log_end(backend: &PostgresBackend) -> Result<LogPosition> {
        let row: Option<(i64, i64)> = sqlx::query_as(LOG_END)
            .fetch_optional(&backend.reader)
            .await
            .map_err(|error| Error::from_sqlx("log_end", error))?;
        let Some((commit, position)) = row else {
            return Ok(LogPosition::START);
        };
        let at = RowRef::checkpoint("(the end of the log)");
        Ok(LogPosition::new(
            at.unsigned("transaction_id", "transaction id", commit)
                .map_err(|error| Error::from_sqlx("log_end", error))?,
            at.unsigned("position", "position", position)
                .map_err(|error| Error::from_sqlx("log_end", error))?,
        ))
    }

    async fn storage(backend: &PostgresBackend) -> Result<StorageStats> {
        // The planner's row estimates and the tables' sizes, from the catalog: no scan.
        let tables: Vec<(String, f32, i64)> = sqlx::query_as(
            "SELECT c.relname::text, c.reltuples, pg_total_relation_size(c.oid) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
        )
        .fetch_all(&backend.reader)
        .await
        .map_err(|error| Error::from_sqlx("storage", error))?;
        let mut stats = StorageStats {
            estimated: true,
            ..StorageStats::default()
        };
        for (table, estimate, bytes) in tables {
            stats.bytes += to_u64(bytes);
            let (count, count_all) = match table.as_str() {
                "streams" => (&mut stats.streams, "SELECT count(*) FROM streams"),
                "events" => (&mut stats.events, "SELECT count(*) FROM events"),
                "snapshots" => (&mut stats.snapshots, "SELECT count(*) FROM snapshots"),
                _ => continue,
            };
            *count = if estimate >= 0.0 {
                // A row count far below 2^53: the float holds it exactly enough.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let estimate = estimate.round() as u64;
                estimate
            } else {
                // Never analyzed (a new table): count it.
                let exact: i64 = sqlx::query_scalar(count_all)
                    .fetch_one(&backend.reader)
                    .await
                    .map_err(|error| Error::from_sqlx("storage", error))?;
                to_u64(exact)
            };
        }
        Ok(stats)
    }

    fn remove_expired(
        pool: &PgPool,
        cuts: &[ExpiryCut],
    ) -> impl Future<Output = Result<(u64, u64)>> + Send {
        retention_sql::postgres::remove_expired(pool, cuts)
    }

    async fn close(backend: &PostgresBackend) {
        // The application's pool is the application's to close.
        if backend.state.owns_pool {
            backend.writer.close().await;
        }
    }

    async fn append_feed(backend: &PostgresBackend) -> Result<Option<Box<dyn AppendFeed>>> {
        let fail = |error| Error::from_sqlx("listen", error);
        let mut listener = sqlx::postgres::PgListener::connect_with(&backend.reader)
            .await
            .map_err(fail)?;
        listener.listen("chronicle_appends").await.map_err(fail)?;
        Ok(Some(Box::new(PgFeed {
            listener,
            schema: backend.state.schema.clone(),
        })))
    }

    async fn announce_appends(backend: &PostgresBackend) -> Result<()> {
        sqlx::query("SELECT pg_notify('chronicle_appends', $1)")
            .bind(&backend.state.schema)
            .execute(&backend.writer)
            .await
            .map(|_| ())
            .map_err(|error| Error::from_sqlx("announce_appends", error))
    }

    async fn try_lease(backend: &PostgresBackend, name: &str) -> Result<Option<Box<dyn Lease>>> {
        use sqlx::Connection;
        let fail = |error| Error::from_sqlx("lease", error);
        // A connection of its own, outside the pool: the session lock lives as long as it.
        // Bounded by the connect timeout, like the open's first connection.
        let mut connection = connect::pg_connect(
            &backend.reader.connect_options(),
            backend.state.connect_timeout,
        )
        .await?;
        // Over TCP, the server finds a vanished client (host down, network cut) within
        // about 10 s instead of hours, ending the session and freeing the lock for another
        // instance. (Ignored on Unix sockets, where a dead peer is seen at once.)
        sqlx::raw_sql(
            "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
             SET tcp_keepalives_count = 3",
        )
        .execute(&mut connection)
        .await
        .map_err(fail)?;
        // Keyed by the store's schema, which is the connection's current schema when the
        // options set it; an application's pool may set it per connection instead.
        let held: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended( \
                 'chronicle.projection:' || $2 || ':' || $1, 0))",
        )
        .bind(name)
        .bind(&backend.state.schema)
        .fetch_one(&mut connection)
        .await
        .map_err(fail)?;
        if held {
            Ok(Some(Box::new(PgLease(connection))))
        } else {
            let _ = connection.close().await;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;

    /// The statements that find the end of the log read one entry at the end of the
    /// primary key, whatever the log's size (they run once per projection window, and at
    /// every open). Their plans are asked of a PostgreSQL holding a few thousand events.
    #[tokio::test]
    async fn the_log_end_is_one_probe_of_the_primary_key() {
        let Ok(url) = std::env::var("CHRONICLE_PG_URL") else {
            let required = std::env::var("CHRONICLE_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "CHRONICLE_REQUIRE_SERVICES=1 without CHRONICLE_PG_URL"
            );
            return;
        };
        let schema = "chronicle_unit_log_end";
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&mut conn)
        .await
        .expect("drop");
        let store = crate::Store::builder(url.as_str())
            .schema(schema)
            .open()
            .await
            .expect("open");
        store.close().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET search_path = {schema}; \
             INSERT INTO event_types (event_type, schema_version) VALUES ('t', 1); \
             INSERT INTO events (event_id, stream_key, version, type_id, payload) \
             SELECT gen_random_uuid(), g % 100, g / 100 + 1, \
                    (SELECT type_id FROM event_types), '\\x00' \
             FROM generate_series(0, 4999) g"
        )))
        .execute(&mut conn)
        .await
        .expect("fill");
        for statement in [LOG_END, Postgres::LAST_COMMITTED] {
            let (plan,): (serde_json::Value,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "EXPLAIN (FORMAT JSON) {statement}"
            )))
            .fetch_one(&mut conn)
            .await
            .expect("explain");
            let plan = plan.to_string();
            assert!(
                plan.contains("Backward") && !plan.contains("Seq Scan") && !plan.contains("Sort"),
                "{statement}\n{plan}"
            );
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut conn)
            .await
            .expect("drop");
    }
}
