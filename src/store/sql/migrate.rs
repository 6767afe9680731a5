//! The migration runner, written once over the dialect: whether any of a database's
//! embedded migrations are pending (and the open applies them), and applying them in the
//! caller's transaction, each recorded in `chronicle_migrations`. Each backend keeps what
//! is its own: how it finds that the record exists, the lock and the transaction the
//! migrations run in (SQLite's `BEGIN IMMEDIATE`; PostgreSQL's advisory lock, and the
//! schema created when missing), and the log line of each migration. The database's list
//! and the statement that records a migration are [`Engine`]'s.

use std::marker::PhantomData;

use super::backend::Engine;
use super::dialect::sql_impl;
use crate::error::{Error, Result};
use crate::store::migrate::{self, Migration, Migrations};

/// The versions recorded as applied.
const APPLIED: &str = "SELECT version FROM chronicle_migrations";

/// The migration runner of `D`'s databases (a type, so that `sql_impl!` gives its
/// functions sqlx's bounds).
pub(crate) struct Migrator<D>(PhantomData<D>);

fn fail(error: sqlx::Error) -> Error {
    Error::from_sqlx("migrate", error)
}

sql_impl! {
    impl<D: Engine> Migrator<D> {
        /// Whether migrations are pending and `mode` applies them (with
        /// [`Migrations::Check`], pending ones are an error): the versions recorded, read
        /// through `executor` when `recorded` (`chronicle_migrations` exists; none
        /// otherwise), against the database's list.
        pub(crate) async fn must_apply<'e, E>(
            executor: E,
            recorded: bool,
            mode: Migrations,
            target: &str,
        ) -> Result<bool>
        where
            E: sqlx::Executor<'e, Database = D>,
        {
            let applied: Vec<i64> = if recorded {
                sqlx::query_scalar(APPLIED)
                    .fetch_all(executor)
                    .await
                    .map_err(fail)?
            } else {
                Vec::new()
            };
            let pending = migrate::pending(D::MIGRATIONS, &applied);
            migrate::must_apply(mode, &pending, target)
        }

        /// Creates `chronicle_migrations` when missing, reads it again (under the caller's
        /// lock) and applies the migrations it does not list, each recorded, all on `conn`
        /// (the caller's transaction, which the caller commits); `announce` logs each one
        /// before it runs. Returns their names.
        pub(crate) async fn apply(
            conn: &mut D::Connection,
            announce: impl Fn(&Migration) + Send,
        ) -> Result<Vec<String>> {
            sqlx::query(migrate::CREATE_TABLE)
                .execute(&mut *conn)
                .await
                .map_err(fail)?;
            let applied: Vec<i64> = sqlx::query_scalar(APPLIED)
                .fetch_all(&mut *conn)
                .await
                .map_err(fail)?;
            let mut names = Vec::new();
            for migration in migrate::pending(D::MIGRATIONS, &applied) {
                announce(&migration);
                sqlx::raw_sql(migration.sql)
                    .execute(&mut *conn)
                    .await
                    .map_err(fail)?;
                let record = sqlx::query(D::RECORD_MIGRATION)
                    .bind(migration.version)
                    .bind(migration.name);
                match D::migration_time() {
                    Some(time) => record.bind(time),
                    None => record,
                }
                .execute(&mut *conn)
                .await
                .map_err(fail)?;
                names.push(migration.file_name());
            }
            Ok(names)
        }
    }
}
