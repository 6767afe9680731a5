//! Portable SQL: one statement, written once, run on SQLite and on PostgreSQL.
//!
//! A read model kept in the store's database is written by a projection's hooks (through
//! the batch's transaction, [`ProjectionContext::execute`](crate::ProjectionContext::execute))
//! and read by the application ([`Store::fetch_all`](crate::Store::fetch_all)). [`Sql`] is
//! such a statement with its bound values, the same on both backends:
//!
//! - **Placeholders** are `$1`, `$2`, … on both (SQLite takes `$NNN` natively; a number
//!   may appear more than once).
//! - **Values** bind from `i64`, `i32`, `i16`, `f64`, `f32`, `bool`, `String` / `&str`,
//!   [`Uuid`], [`serde_json::Value`], bytes (`Vec<u8>`, `&[u8]`), and `Option` of any of
//!   them (`None` is a NULL of that type, as PostgreSQL wants).
//! - **Rows** ([`SqlRow`]) are read by column name into the same types
//!   ([`SqlRow::get`]), whatever each backend stores: SQLite's integers read as `bool`,
//!   its 16-byte blobs or text as `Uuid`, its JSON text as a JSON value; PostgreSQL's
//!   `int2`/`int4`/`int8`, `float4`/`float8`, `bool`, `text`/`varchar`/`char`/`name`,
//!   `uuid`, `json`/`jsonb` and `bytea` columns are read. Other PostgreSQL types
//!   (`numeric`, `timestamptz`, …) are cast in the statement (`total::float8`,
//!   `at::text`), or read with `sqlx` through the pool.
//!
//! What is not portable stays the application's: the DDL types (`BIGINT`, `TEXT`,
//! `DOUBLE PRECISION`, `BOOLEAN`, `BLOB`/`BYTEA`…; SQLite accepts most of PostgreSQL's
//! names), and functions that differ. `INSERT … ON CONFLICT (…) DO UPDATE SET … =
//! excluded.…` and `CREATE TABLE IF NOT EXISTS` run on both.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> chronicle::Result<()> {
//! use chronicle::{Sql, Store};
//!
//! let store = Store::open("sqlite::memory:").await?;
//! let row = store
//!     .fetch_optional(Sql::new("SELECT $1 AS name, $2 AS age, $3 AS note").bind("ada").bind(36).bind(None::<String>))
//!     .await?
//!     .expect("one row");
//! assert_eq!(row.get::<String>("name")?, "ada");
//! assert_eq!(row.get::<i64>("age")?, 36);
//! assert_eq!(row.get::<Option<String>>("note")?, None);
//! assert!(matches!(row.get::<i64>("name"), Err(chronicle::Error::ColumnType { .. })));
//! # Ok(()) }
//! ```

use std::sync::Arc;

#[cfg(feature = "postgres")]
use sqlx::PgConnection;
#[cfg(feature = "sqlite")]
use sqlx::SqliteConnection;
use sqlx::{Column, Database, Encode, Executor, Row, Type};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::batch::SqlConnection;
use crate::store::sql::dialect::Dialect as StoreDialect;

/// A SQL statement and its bound values, run on whichever backend the store is: see the
/// [module](crate::Sql) and [`ProjectionContext::execute`](crate::ProjectionContext::execute).
///
/// Build it from text (`Sql::new("…")`, or a `&str` / `String` wherever an
/// `impl Into<Sql>` is taken), then [`bind`](Sql::bind) a value per placeholder, `$1`
/// first. The text is sent as given: bind values, never format them into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    text: String,
    binds: Vec<SqlValue>,
}

impl Sql {
    /// The statement `text`, with `$1`, `$2`, … placeholders.
    pub fn new(text: impl Into<String>) -> Self {
        Sql {
            text: text.into(),
            binds: Vec::new(),
        }
    }

    /// Binds the next placeholder (`$1` first, then `$2`, …) to `value`.
    #[must_use]
    pub fn bind(mut self, value: impl IntoSql) -> Self {
        self.binds.push(value.into_sql());
        self
    }

    /// The statement's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The values bound so far, `$1` first.
    pub fn binds(&self) -> &[SqlValue] {
        &self.binds
    }
}

impl From<&str> for Sql {
    fn from(text: &str) -> Self {
        Sql::new(text)
    }
}

impl From<String> for Sql {
    fn from(text: String) -> Self {
        Sql::new(text)
    }
}

/// A value bound to a statement or read from a row of portable SQL.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SqlValue {
    /// NULL, of a type (PostgreSQL types its parameters; SQLite ignores it).
    Null(SqlType),
    /// An integer: SQLite `INTEGER`, PostgreSQL `int2`, `int4`, `int8`.
    Int(i64),
    /// A floating-point number: SQLite `REAL`, PostgreSQL `float4`, `float8`.
    Float(f64),
    /// Text: SQLite `TEXT`, PostgreSQL `text`, `varchar`, `char`, `name`.
    Text(String),
    /// A boolean: SQLite stores it as the integer 0 or 1.
    Bool(bool),
    /// A UUID: PostgreSQL `uuid`, SQLite a 16-byte blob.
    Uuid(Uuid),
    /// JSON: PostgreSQL `jsonb` (bound) or `json`/`jsonb` (read), SQLite text.
    Json(serde_json::Value),
    /// Bytes: SQLite `BLOB`, PostgreSQL `bytea`.
    Bytes(Vec<u8>),
}

/// The type of a bound NULL ([`SqlValue::Null`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SqlType {
    /// `int8`.
    Int,
    /// `float8`.
    Float,
    /// `text`.
    Text,
    /// `bool`.
    Bool,
    /// `uuid`.
    Uuid,
    /// `jsonb`.
    Json,
    /// `bytea`.
    Bytes,
}

impl SqlValue {
    /// How an error names what a column holds.
    fn describe(&self) -> String {
        fn cut(text: &str) -> String {
            let mut short: String = text.chars().take(40).collect();
            if short.len() < text.len() {
                short.push('…');
            }
            short
        }
        match self {
            SqlValue::Null(_) => "NULL".to_owned(),
            SqlValue::Int(value) => format!("the integer {value}"),
            SqlValue::Float(value) => format!("the float {value}"),
            SqlValue::Text(text) => format!("the text '{}'", cut(text)),
            SqlValue::Bool(value) => format!("the boolean {value}"),
            SqlValue::Uuid(id) => format!("the uuid {id}"),
            SqlValue::Json(json) => format!("the JSON {}", cut(&json.to_string())),
            SqlValue::Bytes(bytes) => format!("{} bytes", bytes.len()),
        }
    }
}

/// A Rust value that binds to a placeholder of [`Sql`].
pub trait IntoSql {
    /// The type of this value's NULL (for `Option<Self>`'s `None`).
    fn sql_type() -> SqlType
    where
        Self: Sized;

    /// The value to bind.
    fn into_sql(self) -> SqlValue;
}

/// A Rust value read from a column of an [`SqlRow`].
pub trait FromSql: Sized {
    /// The type's name, for errors (`i64`, `String`; an `Option`'s is its value's).
    const NAME: &'static str;

    /// The value of `column`, or `None` when it is not of this type (or out of range).
    fn from_sql(column: &SqlValue) -> Option<Self>;
}

macro_rules! into_sql {
    ($($t:ty => $kind:ident, |$v:ident| $make:expr;)*) => {$(
        impl IntoSql for $t {
            fn sql_type() -> SqlType {
                SqlType::$kind
            }
            fn into_sql(self) -> SqlValue {
                let $v = self;
                SqlValue::$kind($make)
            }
        }
    )*};
}

into_sql! {
    i64 => Int, |v| v;
    i32 => Int, |v| i64::from(v);
    i16 => Int, |v| i64::from(v);
    f64 => Float, |v| v;
    f32 => Float, |v| f64::from(v);
    bool => Bool, |v| v;
    String => Text, |v| v;
    &str => Text, |v| v.to_owned();
    &String => Text, |v| v.clone();
    Uuid => Uuid, |v| v;
    serde_json::Value => Json, |v| v;
    &serde_json::Value => Json, |v| v.clone();
    Vec<u8> => Bytes, |v| v;
    &[u8] => Bytes, |v| v.to_vec();
}

impl<T: IntoSql> IntoSql for Option<T> {
    fn sql_type() -> SqlType {
        T::sql_type()
    }

    fn into_sql(self) -> SqlValue {
        match self {
            Some(value) => value.into_sql(),
            None => SqlValue::Null(T::sql_type()),
        }
    }
}

impl FromSql for i64 {
    const NAME: &'static str = "i64";
    fn from_sql(column: &SqlValue) -> Option<Self> {
        match column {
            SqlValue::Int(value) => Some(*value),
            _ => None,
        }
    }
}

impl FromSql for i32 {
    const NAME: &'static str = "i32";
    fn from_sql(column: &SqlValue) -> Option<Self> {
        i64::from_sql(column).and_then(|value| i32::try_from(value).ok())
    }
}

impl FromSql for f64 {
    const NAME: &'static str = "f64";
    fn from_sql(column: &SqlValue) -> Option<Self> {
        match column {
            SqlValue::Float(value) => Some(*value),
            // SQLite keeps a whole REAL as an integer in places (`SELECT 2.0 * 1` is 2.0,
            // `sum` of integers is an integer): exact integers read as floats.
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            SqlValue::Int(value) if (*value as f64) as i64 == *value => Some(*value as f64),
            _ => None,
        }
    }
}

impl FromSql for bool {
    const NAME: &'static str = "bool";
    fn from_sql(column: &SqlValue) -> Option<Self> {
        match column {
            SqlValue::Bool(value) => Some(*value),
            // SQLite's booleans.
            SqlValue::Int(0) => Some(false),
            SqlValue::Int(1) => Some(true),
            _ => None,
        }
    }
}

impl FromSql for String {
    const NAME: &'static str = "String";
    fn from_sql(column: &SqlValue) -> Option<Self> {
        match column {
            SqlValue::Text(text) => Some(text.clone()),
            _ => None,
        }
    }
}

impl FromSql for Uuid {
    const NAME: &'static str = "Uuid";
    fn from_sql(column: &SqlValue) -> Option<Self> {
        match column {
            SqlValue::Uuid(id) => Some(*id),
            // SQLite: as sqlx binds it (16 bytes), or as text.
            SqlValue::Bytes(bytes) => Uuid::from_slice(bytes).ok(),
            SqlValue::Text(text) => Uuid::parse_str(text).ok(),
            _ => None,
        }
    }
}

impl FromSql for serde_json::Value {
    const NAME: &'static str = "serde_json::Value";
    fn from_sql(column: &SqlValue) -> Option<Self> {
        match column {
            SqlValue::Json(json) => Some(json.clone()),
            // SQLite keeps JSON as text, and a column without a declared type it knows
            // (`JSONB`) turns a number's text into a number.
            SqlValue::Text(text) => serde_json::from_str(text).ok(),
            SqlValue::Int(value) => Some((*value).into()),
            SqlValue::Float(value) => serde_json::Number::from_f64(*value).map(Into::into),
            _ => None,
        }
    }
}

impl FromSql for Vec<u8> {
    const NAME: &'static str = "Vec<u8>";
    fn from_sql(column: &SqlValue) -> Option<Self> {
        match column {
            SqlValue::Bytes(bytes) => Some(bytes.clone()),
            _ => None,
        }
    }
}

impl FromSql for SqlValue {
    const NAME: &'static str = "SqlValue";
    fn from_sql(column: &SqlValue) -> Option<Self> {
        Some(column.clone())
    }
}

impl<T: FromSql> FromSql for Option<T> {
    // A NULL is always accepted: what did not fit was the value's type.
    const NAME: &'static str = T::NAME;
    fn from_sql(column: &SqlValue) -> Option<Self> {
        match column {
            SqlValue::Null(_) => Some(None),
            value => T::from_sql(value).map(Some),
        }
    }
}

/// One column of a fetched row: its value, or the database type the executor does not
/// read (named in the error when the column is asked for).
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Value(SqlValue),
    Unsupported(String),
}

/// A row fetched with portable SQL: its columns by name.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> chronicle::Result<()> {
/// # let store = chronicle::Store::open("sqlite::memory:").await?;
/// let rows = store.fetch_all("SELECT 'ada' AS owner, 5 AS balance").await?;
/// let balance: i64 = rows[0].get("balance")?;
/// # assert_eq!(balance, 5);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRow {
    statement: Arc<str>,
    columns: Vec<(String, Cell)>,
}

impl SqlRow {
    /// The value of `column`, as `T` (`Option<T>` when it may be NULL).
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`] when the row has no such column; [`Error::ColumnType`]
    /// when it holds something else (a NULL read as a `T` that is not an `Option`, a
    /// number out of `T`'s range, a database type the executor does not read).
    pub fn get<T: FromSql>(&self, column: &str) -> Result<T> {
        let Some((_, cell)) = self.columns.iter().find(|(name, _)| name == column) else {
            return Err(Error::ColumnNotFound {
                column: column.to_owned(),
                statement: self.statement.to_string(),
            });
        };
        let mismatch = |found: String| Error::ColumnType {
            column: column.to_owned(),
            statement: self.statement.to_string(),
            expected: T::NAME,
            found,
        };
        match cell {
            Cell::Value(value) => T::from_sql(value).ok_or_else(|| mismatch(value.describe())),
            Cell::Unsupported(type_name) => Err(mismatch(format!(
                "a value of type {type_name}, which portable SQL does not read (cast it in the \
                 statement, say `::float8` or `::text`)"
            ))),
        }
    }

    /// The names of the row's columns, in order.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|(name, _)| name.as_str())
    }
}

/// What a backend's driver needs to run portable SQL beyond the store's [`Dialect`]
/// (which gives the count of rows a statement changed): reading a column of its rows as
/// a [`Cell`]. Binding is the same for both (sqlx's `Encode` impls). A trait of its own
/// because `Cell` is this module's: in the store's dialect it would make the two import
/// each other.
trait Dialect: StoreDialect {
    fn cell(row: &Self::Row, index: usize) -> std::result::Result<Cell, sqlx::Error>;
}

#[cfg(feature = "sqlite")]
impl Dialect for sqlx::Sqlite {
    fn cell(row: &Self::Row, index: usize) -> std::result::Result<Cell, sqlx::Error> {
        use sqlx::{TypeInfo, ValueRef};
        let raw = row.try_get_raw(index)?;
        if raw.is_null() {
            return Ok(Cell::Value(SqlValue::Null(SqlType::Text)));
        }
        // A non-NULL value's type is its storage class, whatever the column declares.
        let type_name = raw.type_info().name().to_owned();
        Ok(Cell::Value(match type_name.as_str() {
            "INTEGER" => SqlValue::Int(row.try_get_unchecked(index)?),
            "REAL" => SqlValue::Float(row.try_get_unchecked(index)?),
            "TEXT" => SqlValue::Text(row.try_get_unchecked(index)?),
            "BLOB" => SqlValue::Bytes(row.try_get_unchecked(index)?),
            _ => return Ok(Cell::Unsupported(type_name)),
        }))
    }
}

#[cfg(feature = "postgres")]
impl Dialect for sqlx::Postgres {
    fn cell(row: &Self::Row, index: usize) -> std::result::Result<Cell, sqlx::Error> {
        use sqlx::{TypeInfo, ValueRef};
        let raw = row.try_get_raw(index)?;
        let null = raw.is_null();
        let type_name = row.columns()[index].type_info().name().to_owned();
        let kind = match type_name.as_str() {
            "INT2" | "INT4" | "INT8" => SqlType::Int,
            "FLOAT4" | "FLOAT8" => SqlType::Float,
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => SqlType::Text,
            "BOOL" => SqlType::Bool,
            "UUID" => SqlType::Uuid,
            "JSON" | "JSONB" => SqlType::Json,
            "BYTEA" => SqlType::Bytes,
            _ if null => return Ok(Cell::Value(SqlValue::Null(SqlType::Text))),
            _ => return Ok(Cell::Unsupported(type_name)),
        };
        if null {
            return Ok(Cell::Value(SqlValue::Null(kind)));
        }
        Ok(Cell::Value(match (kind, type_name.as_str()) {
            (SqlType::Int, "INT2") => SqlValue::Int(row.try_get::<i16, _>(index)?.into()),
            (SqlType::Int, "INT4") => SqlValue::Int(row.try_get::<i32, _>(index)?.into()),
            (SqlType::Int, _) => SqlValue::Int(row.try_get(index)?),
            (SqlType::Float, "FLOAT4") => SqlValue::Float(row.try_get::<f32, _>(index)?.into()),
            (SqlType::Float, _) => SqlValue::Float(row.try_get(index)?),
            (SqlType::Text, _) => SqlValue::Text(row.try_get(index)?),
            (SqlType::Bool, _) => SqlValue::Bool(row.try_get(index)?),
            (SqlType::Uuid, _) => SqlValue::Uuid(row.try_get(index)?),
            (SqlType::Json, _) => SqlValue::Json(row.try_get(index)?),
            (SqlType::Bytes, _) => SqlValue::Bytes(row.try_get(index)?),
        }))
    }
}

/// Where a statement runs: a transaction's connection, or a pool.
pub(crate) enum Target<'a> {
    #[cfg(feature = "sqlite")]
    SqliteConnection(&'a mut SqliteConnection),
    #[cfg(feature = "sqlite")]
    SqlitePool(&'a sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    PgConnection(&'a mut PgConnection),
    #[cfg(feature = "postgres")]
    PgPool(&'a sqlx::PgPool),
    /// No SQL database: why.
    None(&'static str),
}

impl<'a> From<SqlConnection<'a>> for Target<'a> {
    fn from(connection: SqlConnection<'a>) -> Self {
        match connection {
            #[cfg(feature = "sqlite")]
            SqlConnection::Sqlite(conn) | SqlConnection::Embedded(conn) => {
                Target::SqliteConnection(conn)
            }
            #[cfg(feature = "postgres")]
            SqlConnection::Postgres(conn) => Target::PgConnection(conn),
        }
    }
}

impl Target<'_> {
    /// Runs `sql` and returns the rows it changed.
    pub(crate) async fn execute(self, sql: Sql) -> Result<u64> {
        let span = tracing::debug_span!("chronicle.sql.execute", statement = %sql.text);
        let run = async move {
            match self {
                #[cfg(feature = "sqlite")]
                Target::SqliteConnection(conn) => execute(conn, &sql).await,
                #[cfg(feature = "sqlite")]
                Target::SqlitePool(pool) => execute(pool, &sql).await,
                #[cfg(feature = "postgres")]
                Target::PgConnection(conn) => execute(conn, &sql).await,
                #[cfg(feature = "postgres")]
                Target::PgPool(pool) => execute(pool, &sql).await,
                Target::None(reason) => Err(unavailable(&sql, reason)),
            }
        };
        run.instrument(span).await
    }

    /// Runs `sql` and returns its rows.
    pub(crate) async fn fetch_all(self, sql: Sql) -> Result<Vec<SqlRow>> {
        let span = tracing::debug_span!("chronicle.sql.fetch", statement = %sql.text);
        let run = async move {
            match self {
                #[cfg(feature = "sqlite")]
                Target::SqliteConnection(conn) => fetch_all(conn, &sql).await,
                #[cfg(feature = "sqlite")]
                Target::SqlitePool(pool) => fetch_all(pool, &sql).await,
                #[cfg(feature = "postgres")]
                Target::PgConnection(conn) => fetch_all(conn, &sql).await,
                #[cfg(feature = "postgres")]
                Target::PgPool(pool) => fetch_all(pool, &sql).await,
                Target::None(reason) => Err(unavailable(&sql, reason)),
            }
        };
        run.instrument(span).await
    }

    /// Runs `sql` and returns its first row, if any.
    pub(crate) async fn fetch_optional(self, sql: Sql) -> Result<Option<SqlRow>> {
        let span = tracing::debug_span!("chronicle.sql.fetch", statement = %sql.text);
        let run = async move {
            match self {
                #[cfg(feature = "sqlite")]
                Target::SqliteConnection(conn) => fetch_optional(conn, &sql).await,
                #[cfg(feature = "sqlite")]
                Target::SqlitePool(pool) => fetch_optional(pool, &sql).await,
                #[cfg(feature = "postgres")]
                Target::PgConnection(conn) => fetch_optional(conn, &sql).await,
                #[cfg(feature = "postgres")]
                Target::PgPool(pool) => fetch_optional(pool, &sql).await,
                Target::None(reason) => Err(unavailable(&sql, reason)),
            }
        };
        run.instrument(span).await
    }
}

fn unavailable(sql: &Sql, reason: &'static str) -> Error {
    Error::SqlUnavailable {
        statement: sql.text.clone(),
        reason,
    }
}

fn failed(sql: &Sql) -> impl Fn(sqlx::Error) -> Error + '_ {
    |source| Error::Sql {
        statement: sql.text.clone(),
        source,
    }
}

/// `sql`'s text with its values bound, as sqlx runs it on `DB`.
fn query<DB>(sql: &Sql) -> sqlx::query::Query<'static, DB, <DB as Database>::Arguments>
where
    DB: Database,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> f64: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> Uuid: Encode<'t, DB> + Type<DB>,
    for<'t> &'t serde_json::Value: Encode<'t, DB> + Type<DB>,
    for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<f64>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<bool>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<Uuid>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t serde_json::Value>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t [u8]>: Encode<'t, DB> + Type<DB>,
{
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.text.clone()));
    for value in &sql.binds {
        query = match value {
            SqlValue::Null(SqlType::Int) => query.bind(None::<i64>),
            SqlValue::Null(SqlType::Float) => query.bind(None::<f64>),
            SqlValue::Null(SqlType::Text) => query.bind(None::<&str>),
            SqlValue::Null(SqlType::Bool) => query.bind(None::<bool>),
            SqlValue::Null(SqlType::Uuid) => query.bind(None::<Uuid>),
            SqlValue::Null(SqlType::Json) => query.bind(None::<&serde_json::Value>),
            SqlValue::Null(SqlType::Bytes) => query.bind(None::<&[u8]>),
            SqlValue::Int(value) => query.bind(*value),
            SqlValue::Float(value) => query.bind(*value),
            SqlValue::Text(text) => query.bind(text.as_str()),
            SqlValue::Bool(value) => query.bind(*value),
            SqlValue::Uuid(id) => query.bind(*id),
            SqlValue::Json(json) => query.bind(json),
            SqlValue::Bytes(bytes) => query.bind(bytes.as_slice()),
        };
    }
    query
}

/// The bounds [`query`] needs, for the functions that call it.
macro_rules! portable {
    ($(#[$doc:meta])* async fn $name:ident($executor:ident, $sql:ident) -> $out:ty $body:block) => {
        $(#[$doc])*
        async fn $name<'e, DB, E>($executor: E, $sql: &Sql) -> Result<$out>
        where
            DB: Dialect,
            E: Executor<'e, Database = DB>,
            for<'t> i64: Encode<'t, DB> + Type<DB>,
            for<'t> f64: Encode<'t, DB> + Type<DB>,
            for<'t> bool: Encode<'t, DB> + Type<DB>,
            for<'t> &'t str: Encode<'t, DB> + Type<DB>,
            for<'t> Uuid: Encode<'t, DB> + Type<DB>,
            for<'t> &'t serde_json::Value: Encode<'t, DB> + Type<DB>,
            for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
            for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
            for<'t> Option<f64>: Encode<'t, DB> + Type<DB>,
            for<'t> Option<bool>: Encode<'t, DB> + Type<DB>,
            for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
            for<'t> Option<Uuid>: Encode<'t, DB> + Type<DB>,
            for<'t> Option<&'t serde_json::Value>: Encode<'t, DB> + Type<DB>,
            for<'t> Option<&'t [u8]>: Encode<'t, DB> + Type<DB>,
            <DB as Database>::Arguments: sqlx::IntoArguments<DB>,
        $body
    };
}

portable! {
    /// Runs `sql` on `executor`; the rows it changed.
    async fn execute(executor, sql) -> u64 {
        let done = query::<DB>(sql).execute(executor).await.map_err(failed(sql))?;
        Ok(DB::rows_affected(&done))
    }
}

portable! {
    /// Runs `sql` on `executor`; its rows.
    async fn fetch_all(executor, sql) -> Vec<SqlRow> {
        let rows = query::<DB>(sql).fetch_all(executor).await.map_err(failed(sql))?;
        let statement: Arc<str> = Arc::from(sql.text.as_str());
        rows.iter()
            .map(|row| read_row::<DB>(row, &statement).map_err(failed(sql)))
            .collect()
    }
}

portable! {
    /// Runs `sql` on `executor`; its first row.
    async fn fetch_optional(executor, sql) -> Option<SqlRow> {
        let row = query::<DB>(sql).fetch_optional(executor).await.map_err(failed(sql))?;
        let statement: Arc<str> = Arc::from(sql.text.as_str());
        row.map(|row| read_row::<DB>(&row, &statement).map_err(failed(sql)))
            .transpose()
    }
}

/// A driver's row as an [`SqlRow`].
fn read_row<DB: Dialect>(
    row: &DB::Row,
    statement: &Arc<str>,
) -> std::result::Result<SqlRow, sqlx::Error> {
    let columns = row
        .columns()
        .iter()
        .enumerate()
        .map(|(index, column)| Ok((column.name().to_owned(), DB::cell(row, index)?)))
        .collect::<std::result::Result<_, sqlx::Error>>()?;
    Ok(SqlRow {
        statement: Arc::clone(statement),
        columns,
    })
}
