//! The one [`Backend`] of the SQL databases: [`SqlBackend<D>`], written once over `D`
//! (`sqlx::Sqlite`, `sqlx::Postgres`), as sqlx itself is generic over its `Database`.
//!
//! Most of the seam is the same on both: the reads of [`Sql<D>`](super::reads::Sql)
//! (streams, events, snapshots, checkpoints), the keys, policies, dictionaries and
//! payload swaps, and the transactions (`SqlTx<D>`), each one line here. What a database
//! does its own way is [`Engine`], which `sqlite.rs` and `postgres.rs` implement for their
//! dialect types: the append (SQLite's trigger `INSERT`, PostgreSQL's one statement), the
//! log window and what holds it back, the end of the log, the storage counts, the
//! retention removal, closing, the notifications and leases, and what the backend keeps
//! beside its pools ([`Engine::State`]). Every hook is a native `async fn` (or a `Send`
//! future), so a call monomorphizes to the database's own code: no box or await more than
//! before the split.

use std::any::Any;
use std::fmt;
use std::future::{Future, ready};
use std::ops::RangeInclusive;

use async_trait::async_trait;
use sqlx::{Pool, Transaction};
use uuid::Uuid;

use super::dialect::{Dialect, sql_impl};
use super::event_types::{self, KnownTypes};
use super::reads::Sql;
use super::tx::SqlTx;
use crate::error::{Error, Result};
use crate::read::{EventParts, EventQuery, LogPosition};
use crate::retention::RetentionScope;
use crate::retention::rules::{PolicyRows, StoredPolicy, StreamRetention};
use crate::snapshot::SnapshotInfo;
use crate::store::backend::{
    AppendFeed, AppendOutcome, Backend, Capabilities, EncodedEvent, ExpiryCut, HeldBack,
    InProcessLease, Lease, LogPage, ReplayedEvent, StoredEvent, StoredSnapshot, StoredStream,
    StreamStart, WindowLimit,
};
use crate::store::batch::{DynTx, Flush};
use crate::store::key_cache::StoredKey;
use crate::store::migrate::Migration;
use crate::store::storage::StorageStats;
use crate::stream::{AppendGuard, Direction, StreamId, StreamListQuery};

/// A store on a SQL database: its pools and what only its database's backend keeps.
#[derive(Debug)]
pub(crate) struct SqlBackend<D: Engine> {
    /// Where writes go (SQLite: the one writer connection; PostgreSQL: the pool).
    pub(crate) writer: Pool<D>,
    /// Where reads go (SQLite: the readers, WAL snapshots that never block the writer, or
    /// the writer for a database in memory; PostgreSQL: the same pool as `writer`).
    pub(crate) reader: Pool<D>,
    /// The rest of the backend's state, the database's own.
    pub(crate) state: D::State,
    /// The event-type pairs known to be in `event_types`.
    pub(crate) event_types: KnownTypes,
}

/// What a SQL database's backend does its own way; the rest of [`Backend`] is written
/// once, for [`SqlBackend<D>`]. The hooks without a body here are the database's own
/// statements; those with one are what a database without the feature does (SQLite).
pub(crate) trait Engine: Dialect {
    /// What the backend keeps beside its pools.
    type State: Send + Sync + fmt::Debug;

    /// What the backend can do ([`Backend::capabilities`]).
    const CAPABILITIES: Capabilities;

    /// The database's migrations, in order (`store/migrate.rs`).
    const MIGRATIONS: &'static [Migration];

    /// The statement that records an applied migration: `$1` its version, `$2` its name,
    /// and `$3` [`Engine::migration_time`] where that is `Some`.
    const RECORD_MIGRATION: &'static str;

    /// The statement that begins a read-only transaction on the reader
    /// ([`Backend::begin_read`]); `None`: sqlx's plain `BEGIN`.
    const BEGIN_READ: Option<&'static str>;

    /// The time recorded as a migration's `applied_at`, bound; `None` where the record
    /// statement reads the database's clock.
    fn migration_time() -> Option<String>;

    /// The statement that begins a batch on the writer ([`Backend::begin_batch`]), whose
    /// commit waits for the disk or not as `flush` says.
    fn begin_batch(flush: Flush) -> &'static str;

    /// [`Backend::append`], whose events' type pairs are in `event_types` (the shared
    /// `append` added the missing ones).
    fn append(
        backend: &SqlBackend<Self>,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> impl Future<Output = Result<AppendOutcome>> + Send;

    /// The connection of `tx` when it is a transaction of this database.
    fn connection_of(tx: &mut dyn DynTx) -> Option<&mut Self::Connection>;

    /// [`Backend::append_in`], on the transaction's connection, whose events' type pairs
    /// are in `event_types` (the shared `append_in` added the missing ones).
    fn append_in(
        conn: &mut Self::Connection,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> impl Future<Output = Result<AppendOutcome>> + Send;

    /// [`Backend::read_all`]: a window of the log.
    fn read_all(
        backend: &SqlBackend<Self>,
        after: LogPosition,
        limit: WindowLimit,
        types: &[String],
        parts: EventParts,
    ) -> impl Future<Output = Result<LogPage>> + Send;

    /// [`Backend::held_back`]; here, where positions commit in order: nothing held.
    fn held_back(
        backend: &SqlBackend<Self>,
        after: LogPosition,
        bound: Option<u64>,
    ) -> impl Future<Output = Result<HeldBack>> + Send {
        let _ = (backend, after);
        let bound = bound.unwrap_or(0);
        ready(Ok(HeldBack {
            pending: false,
            bound,
        }))
    }

    /// [`Backend::log_end`].
    fn log_end(backend: &SqlBackend<Self>) -> impl Future<Output = Result<LogPosition>> + Send;

    /// [`Backend::storage`].
    fn storage(backend: &SqlBackend<Self>) -> impl Future<Output = Result<StorageStats>> + Send;

    /// [`Backend::remove_expired`], through `writer`.
    fn remove_expired(
        writer: &Pool<Self>,
        cuts: &[ExpiryCut],
    ) -> impl Future<Output = Result<(u64, u64)>> + Send;

    /// [`Backend::close`].
    fn close(backend: &SqlBackend<Self>) -> impl Future<Output = ()> + Send;

    /// [`Backend::append_feed`]; here: none, appends from elsewhere are found by polling.
    fn append_feed(
        backend: &SqlBackend<Self>,
    ) -> impl Future<Output = Result<Option<Box<dyn AppendFeed>>>> + Send {
        let _ = backend;
        ready(Ok(None))
    }

    /// [`Backend::announce_appends`]; here: no one to tell.
    fn announce_appends(backend: &SqlBackend<Self>) -> impl Future<Output = Result<()>> + Send {
        let _ = backend;
        ready(Ok(()))
    }

    /// [`Backend::try_lease`]; here: a lease held in this process, granted at once.
    fn try_lease(
        backend: &SqlBackend<Self>,
        name: &str,
    ) -> impl Future<Output = Result<Option<Box<dyn Lease>>>> + Send {
        let _ = (backend, name);
        let lease: Box<dyn Lease> = Box::new(InProcessLease);
        ready(Ok(Some(lease)))
    }
}

sql_impl! {
    impl<D: Engine> SqlBackend<D> {
        /// Adds the pairs of `events` that `event_types` may lack, on a writer connection
        /// outside any transaction (so they commit at once and are remembered); nothing
        /// when every pair is known.
        async fn add_event_types(&self, events: &[EncodedEvent<'_>]) -> Result<()> {
            let missing = self.event_types.missing(events);
            if missing.is_empty() {
                return Ok(());
            }
            let mut conn = self
                .writer
                .acquire()
                .await
                .map_err(|error| Error::from_sqlx("append", error))?;
            event_types::add::<D>(&mut conn, &self.event_types, missing, true).await
        }
    }
}

sql_impl! {
    #[async_trait]
    impl<D: Engine> Backend for SqlBackend<D> {
        async fn append(
            &self,
            stream: &StreamId,
            guard: AppendGuard,
            events: &[EncodedEvent<'_>],
        ) -> Result<AppendOutcome> {
            self.add_event_types(events).await?;
            match D::append(self, stream, guard, events).await {
                // A pair this process remembered is gone (the database was replaced under
                // it): forgotten, the append adds its pairs again.
                Err(error) if event_types::is_type_missing(&error) => {
                    self.event_types.forget();
                    self.add_event_types(events).await?;
                    D::append(self, stream, guard, events).await
                }
                outcome => outcome,
            }
        }

        async fn append_in(
            &self,
            tx: &mut dyn DynTx,
            stream: &StreamId,
            guard: AppendGuard,
            events: &[EncodedEvent<'_>],
        ) -> Result<AppendOutcome> {
            let conn = D::connection_of(tx).ok_or_else(|| {
                Error::Internal(format!(
                    "a {} append in another backend's transaction",
                    D::NAME
                ))
            })?;
            // New pairs are added on a connection of their own when one is free, where
            // they commit at once and are remembered; else in the transaction, remembered
            // by none (it may roll back).
            let known = &self.event_types;
            let missing = known.missing(events);
            if !missing.is_empty() {
                match self.writer.try_acquire() {
                    Some(mut own) => event_types::add::<D>(&mut own, known, missing, true).await?,
                    None => event_types::add::<D>(conn, known, missing, false).await?,
                }
            }
            D::append_in(conn, stream, guard, events)
                .await
                .inspect_err(|error| {
                    if event_types::is_type_missing(error) {
                        known.forget();
                    }
                })
        }

        async fn stream_info(&self, stream: &StreamId) -> Result<Option<StoredStream>> {
            Sql(&self.reader).stream_info(stream).await
        }

        async fn list_streams(&self, list: &StreamListQuery) -> Result<Vec<StoredStream>> {
            Sql(&self.reader).list_streams(list).await
        }

        async fn read_stream(
            &self,
            stream: &StreamId,
            versions: RangeInclusive<u64>,
            direction: Direction,
            limit: WindowLimit,
        ) -> Result<Vec<StoredEvent>> {
            Sql(&self.reader)
                .read_stream(stream, versions, direction, limit)
                .await
        }

        async fn replay_stream(
            &self,
            stream: &StreamId,
            versions: RangeInclusive<u64>,
            limit: WindowLimit,
        ) -> Result<Vec<ReplayedEvent>> {
            Sql(&self.reader)
                .replay_stream(stream, versions, limit)
                .await
        }

        async fn replay_start(
            &self,
            stream: &StreamId,
            max_version: u64,
            limit: WindowLimit,
        ) -> Result<Option<StreamStart>> {
            Sql(&self.reader)
                .replay_start(stream, max_version, limit)
                .await
        }

        async fn read_all(
            &self,
            after: LogPosition,
            limit: WindowLimit,
            types: &[String],
            parts: EventParts,
        ) -> Result<LogPage> {
            D::read_all(self, after, limit, types, parts).await
        }

        async fn held_back(&self, after: LogPosition, bound: Option<u64>) -> Result<HeldBack> {
            D::held_back(self, after, bound).await
        }

        async fn close(&self) {
            D::close(self).await;
        }

        async fn latest_snapshot(
            &self,
            stream: &StreamId,
            max_version: u64,
        ) -> Result<Option<StoredSnapshot>> {
            Sql(&self.reader).latest_snapshot(stream, max_version).await
        }

        async fn list_snapshots(&self, stream: &StreamId) -> Result<Vec<SnapshotInfo>> {
            Sql(&self.reader).list_snapshots(stream).await
        }

        async fn begin_batch(&self, flush: Flush) -> Result<Box<dyn DynTx>> {
            let begun = self.writer.begin_with(D::begin_batch(flush)).await;
            Self::boxed(begun, "begin_batch")
        }

        async fn begin_read(&self) -> Result<Box<dyn DynTx>> {
            let begun = match D::BEGIN_READ {
                Some(begin) => self.reader.begin_with(begin).await,
                None => self.reader.begin().await,
            };
            Self::boxed(begun, "begin_read")
        }

        async fn last_position(&self) -> Result<u64> {
            Sql(&self.reader).last_position().await
        }

        async fn ping(&self) -> Result<()> {
            Sql(&self.reader).ping().await
        }

        async fn storage(&self) -> Result<StorageStats> {
            D::storage(self).await
        }

        async fn log_end(&self) -> Result<LogPosition> {
            D::log_end(self).await
        }

        async fn checkpoint(&self, name: &str) -> Result<Option<LogPosition>> {
            Sql(&self.reader).checkpoint(name).await
        }

        async fn append_feed(&self) -> Result<Option<Box<dyn AppendFeed>>> {
            D::append_feed(self).await
        }

        async fn announce_appends(&self) -> Result<()> {
            D::announce_appends(self).await
        }

        fn capabilities(&self) -> Capabilities {
            D::CAPABILITIES
        }

        /// The readers' pool, when `D` is SQLite.
        #[cfg(feature = "sqlite")]
        fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
            (&self.reader as &dyn Any).downcast_ref()
        }

        /// The pool, when `D` is PostgreSQL.
        #[cfg(feature = "postgres")]
        fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
            (&self.reader as &dyn Any).downcast_ref()
        }

        async fn try_lease(&self, name: &str) -> Result<Option<Box<dyn Lease>>> {
            D::try_lease(self, name).await
        }

        async fn events_by_id(&self, ids: &[Uuid]) -> Result<Vec<StoredEvent>> {
            Sql(&self.reader).events_by_id(ids).await
        }

        async fn query(&self, filter: &EventQuery) -> Result<Vec<StoredEvent>> {
            Sql(&self.reader).query(filter).await
        }

        async fn retention_policies(&self) -> Result<PolicyRows> {
            Sql(&self.reader).retention_policies().await
        }

        async fn retention_policy(&self, scope: &RetentionScope) -> Result<Option<String>> {
            Sql(&self.reader).retention_policy(scope).await
        }

        async fn list_retention(
            &self,
            after: Option<(i16, &str)>,
            limit: usize,
        ) -> Result<Vec<StoredPolicy>> {
            Sql(&self.reader).list_retention(after, limit).await
        }

        async fn set_retention(&self, scope: &RetentionScope, policy: Option<&str>) -> Result<()> {
            Sql(&self.writer).set_retention(scope, policy).await
        }

        async fn stream_retention(&self, streams: &[&str]) -> Result<Vec<StreamRetention>> {
            Sql(&self.reader).stream_retention(streams).await
        }

        async fn retention_candidates(
            &self,
            after: &str,
            limit: usize,
            categories: &[String],
            all: bool,
        ) -> Result<Vec<StreamRetention>> {
            Sql(&self.reader)
                .retention_candidates(after, limit, categories, all)
                .await
        }

        async fn remove_expired(&self, cuts: &[ExpiryCut]) -> Result<(u64, u64)> {
            D::remove_expired(&self.writer, cuts).await
        }

        async fn dictionaries(&self, ids: &[u32]) -> Result<Vec<crate::codec::StoredDictionary>> {
            Sql(&self.reader).dictionaries(ids).await
        }

        async fn latest_dictionary(&self) -> Result<Option<u32>> {
            Sql(&self.reader).latest_dictionary().await
        }

        async fn insert_dictionary(
            &self,
            dictionary: &crate::codec::StoredDictionary,
        ) -> Result<bool> {
            Sql(&self.writer).insert_dictionary(dictionary).await
        }

        async fn reseal_dictionary(
            &self,
            old: &crate::codec::StoredDictionary,
            new: &crate::codec::StoredDictionary,
        ) -> Result<bool> {
            Sql(&self.writer).reseal_dictionary(old, new).await
        }

        async fn recent_payloads(&self, limit: usize) -> Result<Vec<(Uuid, String, Vec<u8>)>> {
            Sql(&self.reader).recent_payloads(limit).await
        }

        async fn stream_keys(&self, streams: &[&str]) -> Result<Vec<StoredKey>> {
            Sql(&self.reader).stream_keys(streams).await
        }

        async fn forget_stream_key(&self, stream: &str) -> Result<()> {
            Sql(&self.writer).forget_stream_key(stream).await
        }

        async fn keys_to_rewrap(&self, active: &str, limit: usize) -> Result<Vec<StoredKey>> {
            Sql(&self.reader).keys_to_rewrap(active, limit).await
        }

        async fn rewrap_stream_keys(&self, keys: &[(StoredKey, StoredKey)]) -> Result<u64> {
            Sql(&self.writer).rewrap_stream_keys(keys).await
        }

        async fn replace_payloads(&self, payloads: &[(String, u64, Vec<u8>, Vec<u8>)]) -> Result<u64> {
            Sql(&self.writer).replace_payloads(payloads).await
        }

        async fn snapshots_after(
            &self,
            after: (&str, u64),
            limit: usize,
        ) -> Result<Vec<(StreamId, StoredSnapshot)>> {
            Sql(&self.reader).snapshots_after(after, limit).await
        }

        async fn replace_snapshot_payloads(
            &self,
            payloads: &[(String, u64, Vec<u8>, Vec<u8>)],
        ) -> Result<u64> {
            Sql(&self.writer).replace_snapshot_payloads(payloads).await
        }
    }
}

sql_impl! {
    impl<D: Engine> SqlBackend<D> {
        /// A transaction just begun as the seam holds it, or the error of `operation`.
        fn boxed(
            begun: std::result::Result<Transaction<'static, D>, sqlx::Error>,
            operation: &'static str,
        ) -> Result<Box<dyn DynTx>> {
            begun
                .map(|tx| Box::new(SqlTx(tx)) as Box<dyn DynTx>)
                .map_err(|error| Error::from_sqlx(operation, error))
        }
    }
}
