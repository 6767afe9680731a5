//! The SQLite backend (`sqlite://path`, `sqlite::memory:`): the embedded default.
//!
//! Writes go through a pool of one connection, so they are serialized in the process;
//! other processes wait on the busy timeout. An append is one `INSERT` into `events`:
//! triggers (see `migrations/sqlite/`) check each row's version against the stream and
//! move the stream row along, so the check, the events and the stream row commit together
//! in one statement. With `Exact` and `NoStream` the first version is known and the
//! `INSERT` runs alone; with `Any` and `StreamExists` the version is read first, in the
//! same `BEGIN IMMEDIATE` transaction. Other writes run in such transactions too: they
//! take the write lock up front (no lock upgrade that could fail with `SQLITE_BUSY`
//! halfway).
//! Reads use their own pool and, in WAL mode, never block the writer. Because writes are
//! serialized, positions commit in order and the log cursor's transaction part is always 0.
//!
//! The backend is `SqlBackend<Sqlite>` (`sql/backend.rs`, which writes the shared part of
//! `Backend` once); here are its open and migrations and its [`Engine`] hooks: the append,
//! the log window, the storage counts, the `BEGIN`s and closing.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};

use super::backend::{
    Answers, AppendNotices, AppendOutcome, Capabilities, EncodedEvent, ExpiryCut, LogPage, Support,
    WindowLimit, WindowRow,
};
use super::batch::{DynTx, Flush};
use super::connect;
use super::migrate::{self, Migration, Migrations};
use super::retention_sql;
use super::sql::backend::{Engine, SqlBackend};
use super::sql::dialect::Dialect;
use super::sql::event_joins::stream_key_open;
use super::sql::migrate::Migrator;
use super::sql::reads::Sql;
use super::sql::rows::DecodeRows;
use super::sql::sqlite_reader::{LogReader, ReaderConfig, window_sql};
use super::sql::{self, to_i64, to_u64};
use super::storage::StorageStats;
use crate::error::{Error, Result, SQLITE_BUSY, sqlite_primary_code};
use crate::read::{EventParts, LogPosition};
use crate::stream::{AppendGuard, StreamId};

/// How SQLite commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteDurability {
    /// `synchronous = FULL`: a commit survives power loss (the default).
    #[default]
    Full,
    /// `synchronous = NORMAL`: in WAL mode a commit survives a crash of the process but the
    /// last commits may be lost on power loss; faster.
    Normal,
}

/// What the SQLite backend needs from the store builder.
#[derive(Debug, Clone)]
pub(crate) struct SqliteConfig {
    pub durability: SqliteDurability,
    pub pool_size: u32,
    pub busy_timeout: Duration,
    pub migrations: Migrations,
}

/// The SQLite backend: [`SqlBackend`] over SQLite, whose writer is a pool of one
/// connection and whose reader a pool of `pool_size` (the writer's, for a database in
/// memory).
pub(crate) type SqliteBackend = SqlBackend<Sqlite>;

/// What the SQLite backend keeps beside its pools.
#[derive(Debug)]
pub(crate) struct SqliteState {
    /// The log windows' own readers (`sql/sqlite_reader.rs`); `None` for a database in
    /// memory, which only the pool's connection reaches.
    log: Option<LogReader>,
}

/// The most events one append can carry on SQLite: each row binds 11 parameters, the
/// statement one more (the stream id, `push_insert_events`), and a statement takes at
/// most 32,766.
pub(crate) const SQLITE_MAX_EVENTS_PER_APPEND: usize = (32_766 - 1) / 11;

/// Turns off SQLite's allocation statistics, once per process, before its first
/// connection. With them on (SQLite's default), every allocation takes a process-wide
/// mutex, and reading a row allocates once per column (sqlx copies each value): a log read
/// spent about a tenth of its instructions on that mutex. Only `sqlite3_memory_used` and
/// `sqlite3_memory_highwater` stop counting; chronicle uses neither. When SQLite is already
/// initialized (another library opened a connection first) the setting is refused and
/// the statistics stay on: slower, never wrong.
fn without_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` with `SQLITE_CONFIG_MEMSTATUS` takes one `int`. Called
        // before SQLite is initialized it changes a global setting; after, it returns
        // `SQLITE_MISUSE` and changes nothing. Either way it touches no memory of ours.
        let code = unsafe {
            libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                std::ffi::c_int::from(0u8),
            )
        };
        if code != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(
                code,
                "SQLite was initialized already: its memory statistics stay on"
            );
        }
    });
}

impl SqlBackend<Sqlite> {
    /// Opens the store's database: `options` as given (from a URL, `create_if_missing` is
    /// on), with chronicle's journal mode, durability and busy timeout.
    pub(crate) async fn open(options: SqliteConnectOptions, config: &SqliteConfig) -> Result<Self> {
        without_memory_statistics();
        let target = connect::sqlite_target(&options);
        let in_memory = connect::sqlite_in_memory(&options);
        let options = store_options(options, config);
        let connect = |max: u32| {
            SqlitePoolOptions::new()
                .max_connections(max)
                // An in-memory database lives as long as one of its connections does.
                .min_connections(u32::from(in_memory))
                .idle_timeout(None)
                .max_lifetime(None)
                // The database is in this process: no connection can die unseen, and a
                // ping is one more trip to the connection's thread per statement.
                .test_before_acquire(false)
                .connect_with(options.clone())
        };
        let file = (!in_memory).then(|| options.get_filename().to_path_buf());
        let writer = connect_retrying_busy(|| connect(1), &target)
            .await
            .map_err(|error| missing_directory(error, file.as_deref()))?;
        migrate_writer(&writer, &target, config.migrations).await?;
        let reader = if in_memory {
            writer.clone()
        } else {
            connect_retrying_busy(|| connect(config.pool_size.max(1)), &target).await?
        };
        let log = file.map(|file| {
            LogReader::new(ReaderConfig {
                file,
                busy_timeout: config.busy_timeout,
                threads: config.pool_size.max(1) as usize,
            })
        });
        Ok(SqlBackend {
            writer,
            reader,
            state: SqliteState { log },
            event_types: Default::default(),
        })
    }

    /// Applies the pending migrations and returns their names, without opening a store:
    /// the deploy step.
    pub(crate) async fn migrate(
        options: SqliteConnectOptions,
        config: &SqliteConfig,
    ) -> Result<Vec<String>> {
        let target = connect::sqlite_target(&options);
        let file =
            (!connect::sqlite_in_memory(&options)).then(|| options.get_filename().to_path_buf());
        let options = store_options(options, config);
        let writer = connect_retrying_busy(
            || {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options.clone())
            },
            &target,
        )
        .await
        .map_err(|error| missing_directory(error, file.as_deref()))?;
        let applied = migrate_writer(&writer, &target, Migrations::Apply).await;
        writer.close().await;
        applied
    }
}

/// `options` as the store uses them.
fn store_options(options: SqliteConnectOptions, config: &SqliteConfig) -> SqliteConnectOptions {
    options
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match config.durability {
            SqliteDurability::Full => SqliteSynchronous::Full,
            SqliteDurability::Normal => SqliteSynchronous::Normal,
        })
        .busy_timeout(config.busy_timeout)
        .foreign_keys(false)
}

/// Brings the database up to date, or with [`Migrations::Check`] checks that it is;
/// returns the names of the migrations applied. Reading what is applied takes no write
/// lock; pending migrations are applied in one `BEGIN IMMEDIATE` transaction, which reads
/// the record again.
async fn migrate_writer(
    writer: &SqlitePool,
    target: &str,
    mode: Migrations,
) -> Result<Vec<String>> {
    let fail = |error| Error::from_sqlx("migrate", error);
    let migrated_before: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master \
                        WHERE type = 'table' AND name = 'chronicle_migrations')",
    )
    .fetch_one(writer)
    .await
    .map_err(fail)?;
    if !Migrator::<Sqlite>::must_apply(writer, migrated_before, mode, target).await? {
        return Ok(Vec::new());
    }
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(fail)?;
    let names = Migrator::<Sqlite>::apply(&mut tx, |migration| {
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applying SQLite migration"
        );
    })
    .await?;
    tx.commit().await.map_err(fail)?;
    Ok(names)
}

/// Opens a pool, trying again while another opener holds a new file's lock: switching a
/// new database to WAL takes an exclusive lock, and SQLite answers `SQLITE_BUSY` at once,
/// without waiting for the busy timeout.
async fn connect_retrying_busy<F, Fut>(connect: F, target: &str) -> Result<SqlitePool>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<SqlitePool, sqlx::Error>>,
{
    let mut attempt = 0;
    loop {
        match connect().await {
            Err(error)
                if sqlite_primary_code(&error) == Some(SQLITE_BUSY)
                    && attempt < OPEN_BUSY_ATTEMPTS =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
            }
            result => {
                return result.map_err(|error| connect::connect_error(target, error, false));
            }
        }
    }
}

/// A connect error for a file whose directory does not exist, told so: SQLite only says
/// it is "unable to open database file".
fn missing_directory(error: Error, file: Option<&std::path::Path>) -> Error {
    let missing = file
        .and_then(std::path::Path::parent)
        .filter(|dir| !dir.as_os_str().is_empty() && !dir.exists());
    match (error, missing) {
        (
            Error::Connect {
                target,
                kind,
                detail,
                source,
            },
            Some(dir),
        ) => Error::Connect {
            target,
            kind,
            detail: format!(
                "the directory `{}` does not exist: create it first (chronicle creates the \
                 database file, not its directories); SQLite said: {detail}",
                dir.display()
            ),
            source,
        },
        (error, _) => error,
    }
}

/// How often opening retries `SQLITE_BUSY`.
const OPEN_BUSY_ATTEMPTS: u32 = 20;

fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// The stream's (version, status), if it exists.
async fn stream_state(
    conn: &mut SqliteConnection,
    stream: &StreamId,
) -> std::result::Result<Option<(i64, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT version, status FROM streams WHERE stream_id = ?")
        .bind(stream.as_str())
        .fetch_optional(conn)
        .await
}

/// Inserts the batch at versions `base + 1…` in one statement; the `events_guard` trigger
/// rejects it unless the stream has a row (whose key the events name), is active and is
/// at `base`, and `events_advance_stream` moves the stream row along.
async fn insert_events(
    conn: &mut SqliteConnection,
    stream: &StreamId,
    base: i64,
    events: &[EncodedEvent<'_>],
    now: DateTime<Utc>,
) -> std::result::Result<Vec<(i64, i64)>, sqlx::Error> {
    let mut insert = QueryBuilder::<Sqlite>::new("");
    push_insert_events(&mut insert, stream, base, events, now);
    insert.build_query_as().fetch_all(conn).await
}

/// The first batch of a stream that may have no row yet, in one round trip: one
/// statement list that begins a write transaction, adds the stream's row unless it
/// exists, inserts the batch at versions 1… (checked as [`insert_events`] is) and
/// commits. A batch that fails is rolled back before the connection goes back to the
/// pool. The list runs on a task of its own, so that an append whose caller goes away
/// still ends its transaction (a dropped statement list would stop between statements).
/// Three round trips instead (`BEGIN`, the statements, `COMMIT`) made 1-event appends to
/// new streams 70% of a raw INSERT's rate, against 75% aimed for (BENCHMARKS.md, "The
/// stream key").
async fn insert_first_events(
    pool: &SqlitePool,
    stream: &StreamId,
    events: &[EncodedEvent<'_>],
    now: DateTime<Utc>,
) -> std::result::Result<Vec<(i64, i64)>, sqlx::Error> {
    let mut batch = QueryBuilder::<Sqlite>::new("BEGIN IMMEDIATE; ");
    push_insert_stream_row(&mut batch, stream, now);
    batch.push("; ");
    push_insert_events(&mut batch, stream, 0, events, now);
    batch.push("; COMMIT");
    let mut conn = pool.acquire().await?;
    let task = tokio::spawn(async move {
        let inserted = batch.build_query_as().fetch_all(&mut *conn).await;
        if inserted.is_err() {
            // An error before `BEGIN` took effect leaves nothing to roll back.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        inserted
    });
    task.await
        .map_err(|error| sqlx::Error::Protocol(format!("append task: {error}")))?
}

/// The `INSERT` of [`insert_events`], pushed onto `insert`, returning each event's
/// (position, version). The stream's key is looked up once for the whole batch; a stream
/// without a row leaves it `NULL` (the left join), which `events_guard` refuses. The rows
/// go in in version order, which the guard checks row by row.
fn push_insert_events(
    insert: &mut QueryBuilder<Sqlite>,
    stream: &StreamId,
    base: i64,
    events: &[EncodedEvent<'_>],
    now: DateTime<Utc>,
) {
    let now = micros(now);
    insert.push(concat!("WITH stream AS ", stream_key_open!()));
    insert.push_bind(stream.as_str());
    insert.push(
        ") INSERT INTO events (event_id, stream_key, version, type_id, payload, \
         correlation_id, causation_id, tenant_id, user_id, metadata, recorded_at) \
         SELECT e.column1, stream.stream_key, e.column2, e.column3, e.column4, e.column5, \
                e.column6, e.column7, e.column8, e.column9, e.column10 \
         FROM (",
    );
    insert.push_values((1i64..).zip(events), |mut row, (offset, event)| {
        let metadata = &event.source.metadata;
        row.push_bind(event.source.id)
            .push_bind(base + offset)
            .push("(SELECT type_id FROM event_types WHERE event_type = ")
            .push_bind_unseparated(event.source.event_type.as_str())
            .push_unseparated(" AND schema_version = ")
            .push_bind_unseparated(i64::from(event.source.schema_version))
            .push_unseparated(")")
            .push_bind(event.payload.as_slice())
            .push_bind(metadata.correlation_id.as_deref())
            .push_bind(metadata.causation_id.as_deref())
            .push_bind(metadata.tenant_id.as_deref())
            .push_bind(metadata.user_id.as_deref())
            .push_bind(event.extra_metadata.as_deref())
            .push_bind(now);
    });
    insert.push(") AS e LEFT JOIN stream ORDER BY e.column2 RETURNING position, version");
}

/// An append inside a write transaction (`BEGIN IMMEDIATE`): the stream's row is read and
/// checked against `guard`, then the events are inserted.
async fn append_locked(
    conn: &mut SqliteConnection,
    stream: &StreamId,
    guard: AppendGuard,
    events: &[EncodedEvent<'_>],
    now: DateTime<Utc>,
) -> Result<AppendOutcome> {
    let fail = |error| Error::from_sqlx("append", error);
    let current = stream_state(conn, stream).await.map_err(fail)?;
    if let Some(rejected) = rejection(stream.as_str(), guard, current).map_err(fail)? {
        return Ok(rejected);
    }
    let Some((base, _)) = current else {
        // A new stream: its row first, whose key the events name. It goes again unless
        // the events are written (the caller's transaction may still commit).
        insert_stream_row(conn, stream, now).await.map_err(fail)?;
        let outcome = outcome(insert_events(conn, stream, 0, events, now).await, now);
        if !matches!(outcome, Ok(AppendOutcome::Written(_))) {
            let removed = sqlx::query("DELETE FROM streams WHERE stream_id = ? AND version = 0")
                .bind(stream.as_str())
                .execute(&mut *conn)
                .await;
            if let (Ok(_), Err(error)) = (&outcome, removed) {
                return Err(fail(error));
            }
        }
        return outcome;
    };
    outcome(insert_events(conn, stream, base, events, now).await, now)
}

/// The row of a stream that has none, before its first events (`streams_key` gives it
/// its key; `events_advance_stream` moves it along with the events).
async fn insert_stream_row(
    conn: &mut SqliteConnection,
    stream: &StreamId,
    now: DateTime<Utc>,
) -> std::result::Result<(), sqlx::Error> {
    let mut insert = QueryBuilder::<Sqlite>::new("");
    push_insert_stream_row(&mut insert, stream, now);
    insert.build().execute(conn).await.map(|_| ())
}

/// The `INSERT` of a stream's row unless it has one (`streams_key` gives it its key),
/// pushed onto `insert`.
fn push_insert_stream_row(
    insert: &mut QueryBuilder<Sqlite>,
    stream: &StreamId,
    now: DateTime<Utc>,
) {
    insert
        .push("INSERT INTO streams (stream_id, category, created_at, updated_at) VALUES (")
        .push_bind(stream.as_str())
        .push(", ")
        .push_bind(stream.category())
        .push(", ")
        .push_bind(micros(now))
        .push(", ")
        .push_bind(micros(now))
        .push(") ON CONFLICT (stream_id) DO NOTHING");
}

/// What an INSERT of events recorded at `now` did.
fn outcome(
    inserted: std::result::Result<Vec<(i64, i64)>, sqlx::Error>,
    now: DateTime<Utc>,
) -> Result<AppendOutcome> {
    match inserted {
        Ok(rows) => Ok(sql::written(
            rows.into_iter()
                .map(|(position, version)| (position, version, 0, now))
                .collect(),
        )),
        Err(error) if is_duplicate_event_id(&error) => Ok(AppendOutcome::DuplicateEventId),
        Err(error) => Err(Error::from_sqlx("append", error)),
    }
}

/// The time now, as it reads back from a column (microseconds).
fn stored_now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(micros(now)).unwrap_or(now)
}

/// The rejection of an append to `stream` under `guard` by the stream state read
/// from its row ((version, status); `None`: no such stream), or `None` when that state
/// lets it write (see [`AppendOutcome::rejection`]).
///
/// # Errors
/// A [`CorruptRow`](crate::CorruptRow) (as `sqlx::Error::Decode`) for a status or version chronicle never
/// writes.
fn rejection(
    stream: &str,
    guard: AppendGuard,
    current: Option<(i64, i64)>,
) -> Result<Option<AppendOutcome>, sqlx::Error> {
    let at = sql::RowRef::stream(stream);
    let current = match current {
        None => None,
        Some((version, status)) => Some((at.version(version)?, at.status(status)?)),
    };
    Ok(AppendOutcome::rejection(guard, current))
}

/// Whether the `events_guard` trigger refused the batch (wrong version or deleted stream).
fn is_guard_rejection(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.message().starts_with("chronicle: "))
}

fn is_duplicate_event_id(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation() && db.message().contains("event_id"))
}

impl Engine for Sqlite {
    type State = SqliteState;

    const CAPABILITIES: Capabilities = Capabilities {
        kind: "sqlite",
        append_notices: AppendNotices::ThisProcess,
        answers: Answers::RowByRow,
        outbox: Support::Supported,
    };

    const MIGRATIONS: &'static [Migration] = migrate::SQLITE;

    const RECORD_MIGRATION: &'static str =
        "INSERT INTO chronicle_migrations (version, name, applied_at) VALUES (?, ?, ?)";

    fn migration_time() -> Option<String> {
        Some(Utc::now().to_rfc3339())
    }

    /// A deferred BEGIN on a reader: a WAL snapshot, no write lock.
    const BEGIN_READ: Option<&'static str> = None;

    /// On the writer, taking the write lock at once, whatever `flush` says.
    fn begin_batch(_flush: Flush) -> &'static str {
        "BEGIN IMMEDIATE"
    }

    async fn append(
        backend: &SqliteBackend,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> Result<AppendOutcome> {
        let fail = |error| Error::from_sqlx("append", error);
        let now = stored_now();
        if let Some(version) = guard.version {
            // The version before the append is known: an autocommitted INSERT (for a
            // stream's first events, which need its row, a write transaction that adds
            // the row in the same round trip).
            let inserted = match version {
                0 => insert_first_events(&backend.writer, stream, events, now).await,
                _ => {
                    let mut conn = backend.writer.acquire().await.map_err(fail)?;
                    insert_events(&mut conn, stream, to_i64(version), events, now).await
                }
            };
            match inserted {
                // Refused: the state that refused it may be gone by now (another process
                // shares the file), so it is read again below, under the write lock, and
                // decides there.
                Err(error) if is_guard_rejection(&error) => {}
                inserted => return outcome(inserted, now),
            }
        }
        // Read the version under the write lock, so no other process moves it before the
        // INSERT.
        let mut tx = backend
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(fail)?;
        let outcome = append_locked(&mut tx, stream, guard, events, now).await?;
        if let AppendOutcome::Written(_) = outcome {
            tx.commit().await.map_err(fail)?;
        }
        Ok(outcome)
    }

    fn connection_of(tx: &mut dyn DynTx) -> Option<&mut SqliteConnection> {
        tx.sqlite()
    }

    async fn append_in(
        conn: &mut SqliteConnection,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> Result<AppendOutcome> {
        append_locked(conn, stream, guard, events, stored_now()).await
    }

    async fn read_all(
        backend: &SqliteBackend,
        after: LogPosition,
        limit: WindowLimit,
        types: &[String],
        parts: EventParts,
    ) -> Result<LogPage> {
        let fail = |error| Error::from_sqlx("read_all", error);
        // One JSON array of the types, so the statement stays fixed.
        let types = (!types.is_empty())
            .then(|| serde_json::to_string(types))
            .transpose()
            .map_err(|error| Error::Internal(format!("read_all: event types: {error}")))?;
        if let Some(log) = &backend.state.log {
            return log
                .window(after.position(), limit, types, parts)
                .await
                .map_err(fail);
        }
        // A database in memory: the same statements through the pool (see `window_sql`).
        // Rows are read one by one (`fetch`), so a byte budget stops the statement at the
        // event that reaches it.
        let sql = window_sql(Sqlite::statements().event_columns(parts), types.is_some());
        let Some(types) = types else {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(to_i64(after.position()))
                .bind(to_i64(limit.events as u64))
                .try_map(move |row: SqliteRow| Sqlite::event_row(&row, parts))
                .fetch(&backend.reader);
            let events = sql::cut_at_budget(rows, limit, |event| Some(event.payload.len()))
                .await
                .map_err(fail)?;
            return Ok(LogPage::all(events, limit));
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to_i64(after.position()))
            .bind(to_i64(limit.events as u64))
            .bind(types)
            .try_map(move |row: SqliteRow| {
                sql::window_row(&row, |row| Sqlite::event_row(row, parts))
            })
            .fetch(&backend.reader);
        let rows = sql::cut_at_budget(rows, limit, WindowRow::budget_bytes)
            .await
            .map_err(fail)?;
        Ok(LogPage::filtered(rows, limit))
    }

    /// `(0, last_position)`: positions commit in order.
    async fn log_end(backend: &SqliteBackend) -> Result<LogPosition> {
        Ok(LogPosition::new(
            0,
            Sql(&backend.reader).last_position().await?,
        ))
    }

    async fn storage(backend: &SqliteBackend) -> Result<StorageStats> {
        let (streams, events, snapshots, bytes): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM streams), (SELECT count(*) FROM events), \
                    (SELECT count(*) FROM snapshots), \
                    (SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())",
        )
        .fetch_one(&backend.reader)
        .await
        .map_err(|error| Error::from_sqlx("storage", error))?;
        Ok(StorageStats {
            streams: to_u64(streams),
            events: to_u64(events),
            snapshots: to_u64(snapshots),
            bytes: to_u64(bytes),
            estimated: false,
        })
    }

    fn remove_expired(
        writer: &SqlitePool,
        cuts: &[ExpiryCut],
    ) -> impl Future<Output = Result<(u64, u64)>> + Send {
        retention_sql::sqlite::remove_expired(writer, cuts)
    }

    async fn close(backend: &SqliteBackend) {
        if let Some(log) = &backend.state.log {
            log.close().await;
        }
        backend.writer.close().await;
        backend.reader.close().await;
    }
}
