//! SQLite's log windows (`Backend::read_all`: `Store::read_all`'s pages, projection and
//! relay batches, the outbox's windows), read on threads of their own, each with its own
//! read-only connection, through SQLite's C API.
//!
//! sqlx's driver copies every value of every row (`sqlite3_value_dup`), hands the rows
//! over one by one from its connection's thread, then frees the copies: about half of a
//! log read's instructions. Here a reader thread steps the statement and decodes each row
//! from SQLite's own buffers straight into a `StoredEvent` (one copy, the one the event
//! keeps), and answers with the whole window at once.
//!
//! What stays as it was:
//! - the statements (the same SQL, see [`window_sql`]) and so the same rows in the same
//!   order, the byte budget's cut (rows after it are never read) and the page's shape;
//! - the decoding ([`sqlite_event_row`] is the one sqlx's rows go through too, and the
//!   column reads here follow sqlx's type rules and errors), so a corrupt row is named
//!   the same way;
//! - WAL visibility: each window is one statement outside any transaction, so it reads
//!   what had committed when it started; the statement is reset as soon as the window is
//!   read (or fails), which ends its read transaction;
//! - the statement log: each window is a `debug` event under the target
//!   `chronicle::sqlite_reader`, as sqlx logs its statements under `sqlx::query`.
//!
//! Threads start on demand, up to the store's pool size, and stay; a connection opens on
//! its thread's first window (a failure to open is that window's error, and the next
//! window tries again). [`LogReader::close`] (from `Store::close`) lets the threads finish
//! their windows, then closes their connections and joins them; later windows fail as
//! reads of a closed pool do. A database in memory is not reachable from another
//! connection: the backend keeps sqlx's path for it.
//!
//! The C calls are confined to [`Connection`], [`Statement`] and [`Row`]: each owns or
//! borrows its SQLite object for exactly as long as SQLite lets it be used, and every
//! `unsafe` block says why its call is sound.

use std::ffi::{CStr, CString, c_int};

use super::sqlite_code::SqliteCodeError;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use libsqlite3_sys as ffi;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::event_joins::EVENT_JOINS;
use super::rows::{SqliteColumns, sqlite_event_columns, sqlite_event_row};
use super::{to_i64, to_u64};
use crate::read::EventParts;
use crate::store::backend::{LogPage, WindowLimit, WindowRow};

/// The `tracing` target of the statements these readers run (one event per log window).
const STATEMENT_LOG: &str = "chronicle::sqlite_reader";

/// The statement of a window of the log after ?1 of at most ?2 events, of all types
/// (`types` false) or of the types in the JSON array ?3 with the window's last event
/// (`types` true). The backend's sqlx path (a database in memory) runs the same text.
pub(crate) fn window_sql(columns: &str, types: bool) -> String {
    if !types {
        return format!(
            "SELECT {columns} FROM events{EVENT_JOINS} WHERE position > ?1 ORDER BY position LIMIT ?2"
        );
    }
    // The window's end and size from its positions alone, then its events of the types
    // (one JSON array, so the statement stays fixed) and its last event, by a scan of the
    // window in position order (`+` keeps the planner off the type index and so off a
    // sort): rows come one by one and only the returned ones are read whole, so a byte
    // budget stops the statement without having copied the rest of the window.
    format!(
        "WITH w AS MATERIALIZED ( \
             SELECT position AS p FROM events WHERE position > ?1 \
             ORDER BY position LIMIT ?2), \
         last AS MATERIALIZED (SELECT max(p) AS lp, count(*) AS scanned FROM w) \
         SELECT {columns}, event_type IN (SELECT value FROM json_each(?3)) AS wanted, \
             (SELECT scanned FROM last) AS scanned \
         FROM events{EVENT_JOINS} WHERE position > ?1 AND position <= (SELECT lp FROM last) \
             AND (+event_type IN (SELECT value FROM json_each(?3)) \
                 OR +position = (SELECT lp FROM last)) \
         ORDER BY position"
    )
}

/// What opening a reader's connection needs.
#[derive(Debug, Clone)]
pub(crate) struct ReaderConfig {
    /// The database file.
    pub file: std::path::PathBuf,
    pub busy_timeout: Duration,
    /// The most reader threads (each with a connection).
    pub threads: usize,
}

/// One window asked of a reader thread.
struct Request {
    after: u64,
    limit: WindowLimit,
    /// The types' JSON array, for a filtered window.
    types: Option<String>,
    parts: EventParts,
    span: tracing::Span,
    reply: oneshot::Sender<Result<LogPage, sqlx::Error>>,
}

/// The reader threads of one store, and the queue of windows they take from.
#[derive(Debug)]
pub(crate) struct LogReader {
    config: ReaderConfig,
    state: Mutex<Option<Threads>>,
}

#[derive(Debug)]
struct Threads {
    requests: mpsc::Sender<Request>,
    queue: Arc<Mutex<mpsc::Receiver<Request>>>,
    /// Threads waiting for a window.
    idle: Arc<AtomicUsize>,
    handles: Vec<JoinHandle<()>>,
}

impl LogReader {
    /// A reader of the database `config.file`; no thread starts before the first window.
    pub(crate) fn new(config: ReaderConfig) -> Self {
        let (requests, queue) = mpsc::channel();
        LogReader {
            config,
            state: Mutex::new(Some(Threads {
                requests,
                queue: Arc::new(Mutex::new(queue)),
                idle: Arc::new(AtomicUsize::new(0)),
                handles: Vec::new(),
            })),
        }
    }

    /// The window of up to `limit` events after `after`, of the types in the JSON array
    /// `types` (all when `None`), with `parts` read: `Backend::read_all` on SQLite.
    pub(crate) async fn window(
        &self,
        after: u64,
        limit: WindowLimit,
        types: Option<String>,
        parts: EventParts,
    ) -> Result<LogPage, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            after,
            limit,
            types,
            parts,
            span: tracing::debug_span!("chronicle.sqlite.log_window", after),
            reply,
        };
        self.send(request)?;
        // A reader thread that panicked dropped the reply unanswered.
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }

    /// Queues `request`, starting a thread when none is waiting and fewer than the most
    /// run.
    fn send(&self, request: Request) -> Result<(), sqlx::Error> {
        let mut state = self.state.lock().map_err(|_| sqlx::Error::WorkerCrashed)?;
        let threads = state.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        if threads.idle.load(Ordering::Acquire) == 0 && threads.handles.len() < self.config.threads
        {
            let (config, queue, idle) = (
                self.config.clone(),
                Arc::clone(&threads.queue),
                Arc::clone(&threads.idle),
            );
            let handle = std::thread::Builder::new()
                .name("chronicle-sqlite-log".to_owned())
                .spawn(move || serve(&config, &queue, &idle))
                .map_err(sqlx::Error::Io)?;
            threads.handles.push(handle);
        }
        threads
            .requests
            .send(request)
            .map_err(|_| sqlx::Error::WorkerCrashed)
    }

    /// Ends the queue, lets the threads finish the windows they have, and waits for them
    /// to close their connections. Later windows fail with `PoolClosed`.
    pub(crate) async fn close(&self) {
        let threads = match self.state.lock() {
            Ok(mut state) => state.take(),
            Err(_) => None,
        };
        let Some(Threads {
            requests, handles, ..
        }) = threads
        else {
            return;
        };
        // With the only sender gone, each thread's wait for a window ends once the queue
        // is empty.
        drop(requests);
        let joined = tokio::task::spawn_blocking(move || {
            for handle in handles {
                if handle.join().is_err() {
                    tracing::warn!("a SQLite log reader thread had panicked");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::warn!("could not wait for the SQLite log reader threads");
        }
    }
}

/// A reader thread: takes windows from `queue` until it ends, each read on the thread's
/// connection.
fn serve(config: &ReaderConfig, queue: &Mutex<mpsc::Receiver<Request>>, idle: &AtomicUsize) {
    let mut connection: Option<Connection> = None;
    loop {
        idle.fetch_add(1, Ordering::AcqRel);
        let next = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => break,
        };
        idle.fetch_sub(1, Ordering::AcqRel);
        let Ok(request) = next else {
            break;
        };
        if request.reply.is_closed() {
            continue;
        }
        let page = request.span.in_scope(|| match &mut connection {
            Some(open) => read_window(open, &request),
            None => Connection::open(config).and_then(|open| {
                let open = connection.insert(open);
                read_window(open, &request)
            }),
        });
        // The asker may have gone (a cancelled read): the page is dropped.
        let _ = request.reply.send(page);
    }
}

/// One window on `connection`, as the sqlx path reads it (`SqliteBackend::read_all`).
fn read_window(connection: &mut Connection, request: &Request) -> Result<LogPage, sqlx::Error> {
    let limit = request.limit;
    let parts = request.parts;
    let Some(types) = &request.types else {
        let mut run = connection.run(false, parts, request.after, limit, None)?;
        let mut events = Vec::new();
        let mut bytes = 0;
        while let Some(row) = run.next()? {
            let event = sqlite_event_row(&row, parts)?;
            bytes += event.payload.len();
            events.push(event);
            if limit.bytes_reached(bytes) {
                break;
            }
        }
        return Ok(LogPage::all(events, limit));
    };
    let mut run = connection.run(true, parts, request.after, limit, Some(types))?;
    let flags = sqlite_event_columns(parts);
    let mut rows = Vec::new();
    let mut bytes = 0;
    while let Some(row) = run.next()? {
        let event = sqlite_event_row(&row, parts)?;
        let window_row = WindowRow {
            event,
            wanted: row.flag(flags, "wanted")?,
            scanned: to_u64(row.integer(flags + 1, "scanned")?) as usize,
        };
        bytes += window_row.budget_bytes().unwrap_or(0);
        rows.push(window_row);
        if limit.bytes_reached(bytes) {
            break;
        }
    }
    Ok(LogPage::filtered(rows, limit))
}

/// A connection of a reader thread: opened read-write on the store's file (never
/// creating it) and made `query_only`, so it reads the WAL as any reader does and can
/// write nothing. Owned by one thread (SQLite's multi-thread mode: one user at a time).
struct Connection {
    db: NonNull<ffi::sqlite3>,
    /// Prepared statements by (filtered, parts): at most eight, kept for the connection's
    /// life.
    statements: Vec<((bool, EventParts), Statement)>,
}

// SAFETY: a connection opened with SQLITE_OPEN_NOMUTEX may move between threads as long
// as one thread uses it at a time; `Connection` is only used through `&mut` (or dropped)
// by the thread that holds it.
unsafe impl Send for Connection {}

impl Connection {
    fn open(config: &ReaderConfig) -> Result<Self, sqlx::Error> {
        let path = path_c_string(&config.file)?;
        let mut db = std::ptr::null_mut();
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_NOMUTEX;
        // SAFETY: `path` is a NUL-terminated string that outlives the call, `db` a valid
        // place for the handle, the VFS the default (null).
        let code = unsafe { ffi::sqlite3_open_v2(path.as_ptr(), &mut db, flags, std::ptr::null()) };
        let Some(db) = NonNull::new(db) else {
            // Only when SQLite could not allocate the handle at all.
            return Err(code_error(code, None));
        };
        // From here on `connection`'s drop closes the handle, on every path.
        let mut connection = Connection {
            db,
            statements: Vec::new(),
        };
        if code != ffi::SQLITE_OK {
            return Err(connection.error(code));
        }
        let millis = c_int::try_from(config.busy_timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: `db` is an open handle owned by `connection`.
        unsafe {
            ffi::sqlite3_extended_result_codes(db.as_ptr(), 1);
            ffi::sqlite3_busy_timeout(db.as_ptr(), millis);
        }
        connection.execute(c"PRAGMA query_only = 1")?;
        Ok(connection)
    }

    /// Runs `sql`, which returns no rows.
    fn execute(&mut self, sql: &CStr) -> Result<(), sqlx::Error> {
        // SAFETY: `db` is open; `sql` is NUL-terminated; no callback, so no argument, and
        // no error message to free (null).
        let code = unsafe {
            ffi::sqlite3_exec(
                self.db.as_ptr(),
                sql.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if code == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.error(code))
        }
    }

    /// The error of the last call on this connection that returned `code`.
    fn error(&self, code: c_int) -> sqlx::Error {
        code_error(code, Some(self.db))
    }

    /// The window's statement, bound and ready to step: reset when the [`Run`] drops.
    fn run<'c>(
        &'c mut self,
        filtered: bool,
        parts: EventParts,
        after: u64,
        limit: WindowLimit,
        types: Option<&str>,
    ) -> Result<Run<'c>, sqlx::Error> {
        let key = (filtered, parts);
        let index = match self.statements.iter().position(|(k, _)| *k == key) {
            Some(index) => index,
            None => {
                let columns = sqlx_sqlite_columns(parts);
                let sql = CString::new(window_sql(&columns, filtered))
                    .map_err(|error| sqlx::Error::Protocol(error.to_string()))?;
                let statement = self.prepare(&sql)?;
                self.statements.push((key, statement));
                self.statements.len() - 1
            }
        };
        let db = self.db;
        let statement = &mut self.statements[index].1;
        let run = Run {
            db,
            statement: statement.raw,
            columns: statement.columns,
            _statement: std::marker::PhantomData,
        };
        run.bind_int(1, to_i64(after))?;
        run.bind_int(2, to_i64(limit.events as u64))?;
        if let Some(types) = types {
            run.bind_text(3, types)?;
        }
        // Logged as sqlx logs its statements (under `sqlx::query`), so that a
        // subscriber that watches the statements a store runs sees these too.
        tracing::debug!(
            target: STATEMENT_LOG,
            filtered,
            after,
            limit = limit.events,
            "log window"
        );
        Ok(run)
    }

    fn prepare(&mut self, sql: &CStr) -> Result<Statement, sqlx::Error> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: `db` is open, `sql` NUL-terminated (length -1: up to the NUL), `raw` a
        // valid place for the statement; no tail wanted (null).
        let code = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db.as_ptr(),
                sql.as_ptr(),
                -1,
                ffi::SQLITE_PREPARE_PERSISTENT as std::ffi::c_uint,
                &mut raw,
                std::ptr::null_mut(),
            )
        };
        if code != ffi::SQLITE_OK {
            return Err(self.error(code));
        }
        let raw = NonNull::new(raw)
            .ok_or_else(|| sqlx::Error::Protocol("SQLite prepared no statement".to_owned()))?;
        // SAFETY: `raw` is a statement just prepared.
        let columns = unsafe { ffi::sqlite3_column_count(raw.as_ptr()) };
        Ok(Statement {
            raw,
            columns: usize::try_from(columns).unwrap_or(0),
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Statements first: `sqlite3_close` refuses a connection that still has some.
        self.statements.clear();
        // SAFETY: `db` is open and has no statement left; nothing uses it after this.
        let code = unsafe { ffi::sqlite3_close(self.db.as_ptr()) };
        if code != ffi::SQLITE_OK {
            tracing::warn!(code, "closing a SQLite log reader's connection failed");
        }
    }
}

/// A prepared statement of a [`Connection`], finalized when dropped (before the
/// connection closes: it is one of the connection's fields).
struct Statement {
    raw: NonNull<ffi::sqlite3_stmt>,
    columns: usize,
}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: `raw` is a prepared statement of an open connection, finalized once.
        unsafe {
            ffi::sqlite3_finalize(self.raw.as_ptr());
        }
    }
}

/// One execution of a statement: its rows, one at a time. Dropping it resets the
/// statement, which ends its read transaction, so no snapshot outlives the window.
struct Run<'c> {
    db: NonNull<ffi::sqlite3>,
    statement: NonNull<ffi::sqlite3_stmt>,
    columns: usize,
    /// The statement is borrowed from its connection for as long as this runs.
    _statement: std::marker::PhantomData<&'c mut Statement>,
}

impl Run<'_> {
    fn bind_int(&self, index: c_int, value: i64) -> Result<(), sqlx::Error> {
        // SAFETY: the statement is prepared and not stepping yet.
        let code = unsafe { ffi::sqlite3_bind_int64(self.statement.as_ptr(), index, value) };
        self.check(code)
    }

    fn bind_text(&self, index: c_int, value: &str) -> Result<(), sqlx::Error> {
        let length = c_int::try_from(value.len())
            .map_err(|_| sqlx::Error::Protocol("a parameter too long for SQLite".to_owned()))?;
        // SAFETY: the pointer and length describe `value`'s bytes; SQLITE_TRANSIENT makes
        // SQLite copy them before the call returns, so `value` may go right after.
        let code = unsafe {
            ffi::sqlite3_bind_text(
                self.statement.as_ptr(),
                index,
                value.as_ptr().cast(),
                length,
                ffi::SQLITE_TRANSIENT(),
            )
        };
        self.check(code)
    }

    fn check(&self, code: c_int) -> Result<(), sqlx::Error> {
        if code == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(code_error(code, Some(self.db)))
        }
    }

    /// The next row, or `None` after the last.
    fn next(&mut self) -> Result<Option<Row<'_>>, sqlx::Error> {
        // SAFETY: the statement is prepared and bound; it is stepped by this thread only.
        match unsafe { ffi::sqlite3_step(self.statement.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(Some(Row {
                statement: self.statement,
                columns: self.columns,
                _run: std::marker::PhantomData,
            })),
            ffi::SQLITE_DONE => Ok(None),
            code => Err(code_error(code, Some(self.db))),
        }
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement is prepared; resetting ends its execution (and read
        // transaction); clearing drops the bound copy of the types.
        unsafe {
            ffi::sqlite3_reset(self.statement.as_ptr());
            ffi::sqlite3_clear_bindings(self.statement.as_ptr());
        }
    }
}

/// The current row of a [`Run`]: valid until the next step, which needs the run
/// mutably, so a `Row` cannot outlive it.
struct Row<'r> {
    statement: NonNull<ffi::sqlite3_stmt>,
    columns: usize,
    _run: std::marker::PhantomData<&'r mut ()>,
}

/// SQLite's fundamental type of a value, named as sqlx names it.
fn type_name(kind: c_int) -> &'static str {
    match kind {
        ffi::SQLITE_INTEGER => "INTEGER",
        ffi::SQLITE_FLOAT => "REAL",
        ffi::SQLITE_TEXT => "TEXT",
        ffi::SQLITE_BLOB => "BLOB",
        _ => "NULL",
    }
}

impl Row<'_> {
    /// Column `index`'s fundamental type, checked against the row's width.
    fn kind(&self, index: usize) -> Result<(c_int, c_int), sqlx::Error> {
        if index >= self.columns {
            return Err(sqlx::Error::ColumnIndexOutOfBounds {
                index,
                len: self.columns,
            });
        }
        let column = c_int::try_from(index).map_err(|_| sqlx::Error::ColumnIndexOutOfBounds {
            index,
            len: self.columns,
        })?;
        // SAFETY: the statement has a row and `column` is one of its columns.
        let kind = unsafe { ffi::sqlite3_column_type(self.statement.as_ptr(), column) };
        Ok((column, kind))
    }

    /// Column `index` (named `name` in errors) as sqlx's `try_get` checks it: a value
    /// not `NULL` must be of one of `accepted`'s types; the error names the Rust type `T`
    /// and its SQL type `as_sql`.
    fn checked<T>(
        &self,
        index: usize,
        name: impl std::fmt::Debug,
        accepted: &[c_int],
        as_sql: &str,
    ) -> Result<(c_int, c_int), sqlx::Error> {
        let (column, kind) = self.kind(index)?;
        if kind != ffi::SQLITE_NULL && !accepted.contains(&kind) {
            return Err(sqlx::Error::ColumnDecode {
                index: format!("{name:?}"),
                source: format!(
                    "mismatched types; Rust type `{}` (as SQL type `{as_sql}`) is not \
                     compatible with SQL type `{}`",
                    std::any::type_name::<T>(),
                    type_name(kind)
                )
                .into(),
            });
        }
        Ok((column, kind))
    }

    /// The bytes of column `column` as SQLite holds them (a text's without conversion).
    fn raw_bytes(&self, column: c_int) -> &[u8] {
        // SAFETY: the statement has a row; `sqlite3_column_blob` is called before
        // `sqlite3_column_bytes`, as SQLite asks, and the bytes stay valid until the
        // next step or reset, which need the `Run` this row borrows.
        unsafe {
            let data = ffi::sqlite3_column_blob(self.statement.as_ptr(), column);
            let length = ffi::sqlite3_column_bytes(self.statement.as_ptr(), column);
            match (data.is_null(), usize::try_from(length)) {
                (false, Ok(length)) if length > 0 => {
                    std::slice::from_raw_parts(data.cast::<u8>(), length)
                }
                _ => &[],
            }
        }
    }

    /// Column `index` as UTF-8 text, as sqlx decodes a `String`.
    fn utf8<T>(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
        let (column, kind) = self.checked::<T>(index, index, &[ffi::SQLITE_TEXT], "TEXT")?;
        if kind == ffi::SQLITE_NULL {
            return Ok(None);
        }
        std::str::from_utf8(self.raw_bytes(column))
            .map(|text| Some(text.to_owned()))
            .map_err(|error| sqlx::Error::ColumnDecode {
                index: format!("{index:?}"),
                source: Box::new(error),
            })
    }

    /// An integer column, named `name` in errors (sqlx: its index, or its name).
    fn integer(&self, index: usize, name: impl std::fmt::Debug) -> Result<i64, sqlx::Error> {
        let (column, _) = self.checked::<i64>(index, name, &[ffi::SQLITE_INTEGER], "INTEGER")?;
        // SAFETY: the statement has a row and `column` is one of its columns.
        Ok(unsafe { ffi::sqlite3_column_int64(self.statement.as_ptr(), column) })
    }

    /// A boolean column (sqlx: an integer, not 0).
    fn flag(&self, index: usize, name: &str) -> Result<bool, sqlx::Error> {
        let (column, _) = self.checked::<bool>(index, name, &[ffi::SQLITE_INTEGER], "BOOLEAN")?;
        // SAFETY: the statement has a row and `column` is one of its columns.
        Ok(unsafe { ffi::sqlite3_column_int64(self.statement.as_ptr(), column) } != 0)
    }
}

impl SqliteColumns for Row<'_> {
    fn int(&self, index: usize) -> Result<i64, sqlx::Error> {
        self.integer(index, index)
    }

    fn text_or_null(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
        self.utf8::<Option<String>>(index)
    }

    fn bytes(&self, index: usize) -> Result<Vec<u8>, sqlx::Error> {
        let (column, _) =
            self.checked::<Vec<u8>>(index, index, &[ffi::SQLITE_BLOB, ffi::SQLITE_TEXT], "BLOB")?;
        Ok(self.raw_bytes(column).to_vec())
    }

    fn uuid(&self, index: usize) -> Result<Uuid, sqlx::Error> {
        let (column, _) =
            self.checked::<Uuid>(index, index, &[ffi::SQLITE_BLOB, ffi::SQLITE_TEXT], "BLOB")?;
        Uuid::from_slice(self.raw_bytes(column)).map_err(|error| sqlx::Error::ColumnDecode {
            index: format!("{index:?}"),
            source: Box::new(error),
        })
    }
}

/// The column list of a SQLite window read for `parts`.
fn sqlx_sqlite_columns(parts: EventParts) -> String {
    use super::dialect::Dialect;
    sqlx::Sqlite::statements().event_columns(parts).to_owned()
}

/// The error for result `code`, with the connection's message when there is one.
fn code_error(code: c_int, db: Option<NonNull<ffi::sqlite3>>) -> sqlx::Error {
    let message = match db {
        // SAFETY: `db` is an open handle; the message is NUL-terminated text SQLite owns
        // until the next call on the connection, copied here at once.
        Some(db) => unsafe {
            let text = ffi::sqlite3_errmsg(db.as_ptr());
            (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
        },
        None => None,
    };
    let message = message.unwrap_or_else(|| {
        // SAFETY: `sqlite3_errstr` returns a static NUL-terminated English text, or null.
        unsafe {
            let text = ffi::sqlite3_errstr(code);
            if text.is_null() {
                format!("SQLite error {code}")
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            }
        }
    });
    sqlx::Error::Database(Box::new(SqliteCodeError { code, message }))
}

/// `path` as the C string SQLite opens.
fn path_c_string(path: &Path) -> Result<CString, sqlx::Error> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = path
        .to_str()
        .ok_or_else(|| sqlx::Error::Configuration("a database path that is not UTF-8".into()))?
        .as_bytes()
        .to_vec();
    CString::new(bytes).map_err(|error| sqlx::Error::Configuration(Box::new(error)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorKind};

    /// An error of the reader's own connections is classified as sqlx's SQLite errors
    /// are: busy or locked past the busy timeout is a connection error worth a retry,
    /// anything else a database error that is not.
    #[test]
    fn reader_errors_are_classified_as_sqlx_sqlite_errors() {
        for code in [
            ffi::SQLITE_BUSY,
            ffi::SQLITE_BUSY_SNAPSHOT,
            ffi::SQLITE_LOCKED,
        ] {
            let error = Error::from_sqlx("read_all", code_error(code, None));
            assert_eq!(error.kind(), ErrorKind::Connection, "{code}: {error}");
            assert!(error.is_retryable(), "{code}: {error}");
        }
        let error = Error::from_sqlx("read_all", code_error(ffi::SQLITE_CORRUPT, None));
        assert_eq!(error.kind(), ErrorKind::Internal, "{error}");
        assert!(!error.is_retryable(), "{error}");
        assert!(error.to_string().contains("malformed"), "{error}");
    }
}
