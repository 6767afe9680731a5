//! A backend written outside the crate, through the public seam (`chronicle::backend`):
//! [`WrappedMemory`] wraps the memory backend and implements every trait of the seam by
//! handing each call on, its transactions included ([`WrappedTx`]). `support::Kind::Custom`
//! opens stores on it, so every test written with `for_each_backend!` (conformance, pages,
//! the model, the outbox, inline projections, ...) runs through the seam as a crate outside
//! chronicle sees it. `docs/backends.md` walks through the same methods.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chronicle::backend::{
    AppendFeed, AppendGuard, AppendOutcome, Backend, Capabilities, Claimed, DeadRow, DynTx,
    EncodedEvent, ExpiryCut, Failed, Flush, HeldBack, Lease, LockedStream, LogPage, MemoryBackend,
    NewRequest, OutboxTx, PolicyRows, ReplayedEvent, SnapshotCut, SnapshotWrite, SqlConnection,
    StateCount, StoredCheckpoint, StoredDictionary, StoredEvent, StoredKey, StoredPolicy,
    StoredSnapshot, StoredStream, StreamRetention, StreamStart, StreamTx, StreamWrite, Support,
    TurnKeys, Tx, WindowLimit, async_trait,
};
use chronicle::{
    Direction, Error, ErrorKind, EventParts, EventQuery, Handler, HandlerMap, HandlerRequest,
    LogPosition, Result, RetentionScope, SnapshotInfo, StorageStats, Store, StoreTarget, StreamId,
    StreamListQuery, ValidationError,
};
use uuid::Uuid;

/// What [`Capabilities::kind`] calls this backend.
pub const KIND: &str = "wrapped-memory";

/// The memory backend behind the public seam. `down` makes `ping` fail, as an engine that
/// went away would; `outbox` is what its capabilities say of the outbox.
#[derive(Debug, Clone)]
pub struct WrappedMemory {
    inner: Arc<MemoryBackend>,
    down: Arc<AtomicBool>,
    outbox: Support,
}

impl Default for WrappedMemory {
    fn default() -> Self {
        WrappedMemory {
            inner: Arc::default(),
            down: Arc::default(),
            outbox: Support::Supported,
        }
    }
}

#[async_trait]
impl Backend for WrappedMemory {
    async fn append(
        &self,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> Result<AppendOutcome> {
        self.inner.append(stream, guard, events).await
    }

    async fn append_in(
        &self,
        tx: &mut dyn DynTx,
        stream: &StreamId,
        guard: AppendGuard,
        events: &[EncodedEvent<'_>],
    ) -> Result<AppendOutcome> {
        // `tx` came from `begin_batch` below: unwrap it for the memory backend.
        let tx = tx.as_any().downcast_mut::<WrappedTx>().ok_or_else(|| {
            Error::backend(KIND, "append_in", false, "a transaction of another backend")
        })?;
        self.inner
            .append_in(tx.0.as_mut(), stream, guard, events)
            .await
    }

    async fn stream_info(&self, stream: &StreamId) -> Result<Option<StoredStream>> {
        self.inner.stream_info(stream).await
    }

    async fn list_streams(&self, query: &StreamListQuery) -> Result<Vec<StoredStream>> {
        self.inner.list_streams(query).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        versions: RangeInclusive<u64>,
        direction: Direction,
        limit: WindowLimit,
    ) -> Result<Vec<StoredEvent>> {
        self.inner
            .read_stream(stream, versions, direction, limit)
            .await
    }

    async fn replay_stream(
        &self,
        stream: &StreamId,
        versions: RangeInclusive<u64>,
        limit: WindowLimit,
    ) -> Result<Vec<ReplayedEvent>> {
        self.inner.replay_stream(stream, versions, limit).await
    }

    async fn replay_start(
        &self,
        stream: &StreamId,
        max_version: u64,
        limit: WindowLimit,
    ) -> Result<Option<StreamStart>> {
        self.inner.replay_start(stream, max_version, limit).await
    }

    async fn read_all(
        &self,
        after: LogPosition,
        limit: WindowLimit,
        types: &[String],
        parts: EventParts,
    ) -> Result<LogPage> {
        self.inner.read_all(after, limit, types, parts).await
    }

    async fn held_back(&self, after: LogPosition, bound: Option<u64>) -> Result<HeldBack> {
        self.inner.held_back(after, bound).await
    }

    async fn close(&self) {
        self.inner.close().await
    }

    async fn latest_snapshot(
        &self,
        stream: &StreamId,
        max_version: u64,
    ) -> Result<Option<StoredSnapshot>> {
        self.inner.latest_snapshot(stream, max_version).await
    }

    async fn list_snapshots(&self, stream: &StreamId) -> Result<Vec<SnapshotInfo>> {
        self.inner.list_snapshots(stream).await
    }

    async fn begin_batch(&self, flush: Flush) -> Result<Box<dyn DynTx>> {
        Ok(Box::new(WrappedTx(self.inner.begin_batch(flush).await?)))
    }

    async fn begin_read(&self) -> Result<Box<dyn DynTx>> {
        Ok(Box::new(WrappedTx(self.inner.begin_read().await?)))
    }

    async fn last_position(&self) -> Result<u64> {
        self.inner.last_position().await
    }

    async fn ping(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            let cause =
                std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the engine went away");
            return Err(Error::backend(KIND, "ping", true, cause));
        }
        self.inner.ping().await
    }

    async fn storage(&self) -> Result<StorageStats> {
        self.inner.storage().await
    }

    async fn log_end(&self) -> Result<LogPosition> {
        self.inner.log_end().await
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<LogPosition>> {
        self.inner.checkpoint(name).await
    }

    async fn append_feed(&self) -> Result<Option<Box<dyn AppendFeed>>> {
        self.inner.append_feed().await
    }

    async fn announce_appends(&self) -> Result<()> {
        self.inner.announce_appends().await
    }

    #[cfg(feature = "sqlite")]
    fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        self.inner.sqlite_pool()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kind: KIND,
            outbox: self.outbox,
            ..self.inner.capabilities()
        }
    }

    async fn try_lease(&self, name: &str) -> Result<Option<Box<dyn Lease>>> {
        self.inner.try_lease(name).await
    }

    async fn events_by_id(&self, ids: &[Uuid]) -> Result<Vec<StoredEvent>> {
        self.inner.events_by_id(ids).await
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        self.inner.query(query).await
    }

    async fn retention_policies(&self) -> Result<PolicyRows> {
        self.inner.retention_policies().await
    }

    async fn retention_policy(&self, scope: &RetentionScope) -> Result<Option<String>> {
        self.inner.retention_policy(scope).await
    }

    async fn list_retention(
        &self,
        after: Option<(i16, &str)>,
        limit: usize,
    ) -> Result<Vec<StoredPolicy>> {
        self.inner.list_retention(after, limit).await
    }

    async fn set_retention(&self, scope: &RetentionScope, policy: Option<&str>) -> Result<()> {
        self.inner.set_retention(scope, policy).await
    }

    async fn stream_retention(&self, streams: &[&str]) -> Result<Vec<StreamRetention>> {
        self.inner.stream_retention(streams).await
    }

    async fn retention_candidates(
        &self,
        after: &str,
        limit: usize,
        categories: &[String],
        all: bool,
    ) -> Result<Vec<StreamRetention>> {
        self.inner
            .retention_candidates(after, limit, categories, all)
            .await
    }

    async fn stream_keys(&self, streams: &[&str]) -> Result<Vec<StoredKey>> {
        self.inner.stream_keys(streams).await
    }

    async fn forget_stream_key(&self, stream: &str) -> Result<()> {
        self.inner.forget_stream_key(stream).await
    }

    async fn keys_to_rewrap(&self, active: &str, limit: usize) -> Result<Vec<StoredKey>> {
        self.inner.keys_to_rewrap(active, limit).await
    }

    async fn rewrap_stream_keys(&self, keys: &[(StoredKey, StoredKey)]) -> Result<u64> {
        self.inner.rewrap_stream_keys(keys).await
    }

    async fn replace_payloads(&self, payloads: &[(String, u64, Vec<u8>, Vec<u8>)]) -> Result<u64> {
        self.inner.replace_payloads(payloads).await
    }

    async fn snapshots_after(
        &self,
        after: (&str, u64),
        limit: usize,
    ) -> Result<Vec<(StreamId, StoredSnapshot)>> {
        self.inner.snapshots_after(after, limit).await
    }

    async fn replace_snapshot_payloads(
        &self,
        payloads: &[(String, u64, Vec<u8>, Vec<u8>)],
    ) -> Result<u64> {
        self.inner.replace_snapshot_payloads(payloads).await
    }

    async fn remove_expired(&self, cuts: &[ExpiryCut]) -> Result<(u64, u64)> {
        self.inner.remove_expired(cuts).await
    }

    async fn dictionaries(&self, ids: &[u32]) -> Result<Vec<StoredDictionary>> {
        self.inner.dictionaries(ids).await
    }

    async fn latest_dictionary(&self) -> Result<Option<u32>> {
        self.inner.latest_dictionary().await
    }

    async fn insert_dictionary(&self, dictionary: &StoredDictionary) -> Result<bool> {
        self.inner.insert_dictionary(dictionary).await
    }

    async fn reseal_dictionary(
        &self,
        old: &StoredDictionary,
        new: &StoredDictionary,
    ) -> Result<bool> {
        self.inner.reseal_dictionary(old, new).await
    }

    async fn recent_payloads(&self, limit: usize) -> Result<Vec<(Uuid, String, Vec<u8>)>> {
        self.inner.recent_payloads(limit).await
    }
}

/// A transaction of [`WrappedMemory`]: the memory backend's, behind the public traits.
pub struct WrappedTx(Box<dyn DynTx>);

#[async_trait]
impl StreamTx for WrappedTx {
    async fn lock_stream(&mut self, stream: &StreamId) -> Result<Option<LockedStream>> {
        self.0.lock_stream(stream).await
    }

    async fn write_stream(&mut self, stream: &StreamId, write: StreamWrite<'_>) -> Result<()> {
        self.0.write_stream(stream, write).await
    }

    async fn remove_events(&mut self, stream: &StreamId) -> Result<u64> {
        self.0.remove_events(stream).await
    }

    async fn put_snapshot(&mut self, stream: &StreamId, snapshot: SnapshotWrite<'_>) -> Result<()> {
        self.0.put_snapshot(stream, snapshot).await
    }

    async fn snapshot_versions(&mut self, stream: &StreamId, newest: usize) -> Result<Vec<u64>> {
        self.0.snapshot_versions(stream, newest).await
    }

    async fn delete_snapshots(&mut self, stream: &StreamId, cut: SnapshotCut) -> Result<u64> {
        self.0.delete_snapshots(stream, cut).await
    }

    async fn insert_key(&mut self, stream: &StreamId, key_id: &str, wrapped: &[u8]) -> Result<()> {
        self.0.insert_key(stream, key_id, wrapped).await
    }

    async fn delete_key(&mut self, stream: &StreamId) -> Result<()> {
        self.0.delete_key(stream).await
    }
}

impl Tx for WrappedTx {
    type Outbox = Self;

    async fn move_checkpoint(
        &mut self,
        name: &str,
        from: LogPosition,
        to: LogPosition,
    ) -> Result<bool> {
        self.0.move_checkpoint(name, from, to).await
    }

    async fn locked_checkpoint(&mut self, name: &str) -> Result<Option<LogPosition>> {
        self.0.locked_checkpoint(name).await
    }

    async fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>> {
        self.0.checkpoints().await
    }

    async fn reset_checkpoint(&mut self, name: &str) -> Result<bool> {
        self.0.reset_checkpoint(name).await
    }

    async fn record_skip(
        &mut self,
        name: &str,
        event_id: Uuid,
        position: u64,
        error: &str,
    ) -> Result<()> {
        self.0.record_skip(name, event_id, position, error).await
    }

    fn outbox(&mut self) -> Option<&mut Self> {
        Some(self)
    }

    async fn prepare_sql(&mut self) -> Result<()> {
        self.0.prepare_sql().await
    }

    fn sql(&mut self) -> Option<SqlConnection<'_>> {
        self.0.sql()
    }

    async fn commit(self) -> Result<()> {
        self.0.commit().await
    }
}

impl OutboxTx for WrappedTx {
    async fn insert_requests(&mut self, requests: &[NewRequest<'_>], now: i64) -> Result<u64> {
        self.0.insert_requests(requests, now).await
    }

    async fn lock_turns(&mut self, keys: &TurnKeys<'_>) -> Result<()> {
        self.0.lock_turns(keys).await
    }

    async fn pass_turns(&mut self, keys: &TurnKeys<'_>) -> Result<()> {
        self.0.pass_turns(keys).await
    }

    async fn claim_requests(
        &mut self,
        handlers: &str,
        token: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>> {
        self.0
            .claim_requests(handlers, token, now, lease_until, limit)
            .await
    }

    async fn finish_done(&mut self, ids: &[i64], token: &str, now: i64) -> Result<Vec<i64>> {
        self.0.finish_done(ids, token, now).await
    }

    async fn finish_failed(
        &mut self,
        id: i64,
        token: &str,
        failed: &Failed<'_>,
        now: i64,
    ) -> Result<bool> {
        self.0.finish_failed(id, token, failed, now).await
    }

    async fn request_counts(&mut self) -> Result<Vec<StateCount>> {
        self.0.request_counts().await
    }

    async fn list_requests(&mut self) -> Result<Vec<(String, Uuid)>> {
        self.0.list_requests().await
    }

    async fn dead_requests(&mut self, handler: Option<&str>, limit: usize) -> Result<Vec<DeadRow>> {
        self.0.dead_requests(handler, limit).await
    }

    async fn retry_dead(
        &mut self,
        id: Option<i64>,
        handler: Option<&str>,
        now: i64,
    ) -> Result<u64> {
        self.0.retry_dead(id, handler, now).await
    }

    async fn register_handlers(
        &mut self,
        outbox: &str,
        handlers: &[(&str, LogPosition)],
        now: i64,
    ) -> Result<Vec<(String, LogPosition)>> {
        self.0.register_handlers(outbox, handlers, now).await
    }

    async fn open_requests_until(&mut self, handlers: &str, until: LogPosition) -> Result<u64> {
        self.0.open_requests_until(handlers, until).await
    }

    async fn last_committed_event(&mut self) -> Result<LogPosition> {
        self.0.last_committed_event().await
    }

    async fn purge_done(&mut self, before: i64) -> Result<u64> {
        self.0.purge_done(before).await
    }
}

#[tokio::test]
async fn a_backend_error_names_the_backend_and_keeps_its_source() {
    let backend = WrappedMemory::default();
    let store = Store::open(StoreTarget::backend(backend.clone()))
        .await
        .expect("open");
    assert_eq!(store.backend_kind(), KIND);
    store.ping().await.expect("up");

    backend.down.store(true, Ordering::SeqCst);
    let error = store.ping().await.expect_err("down");
    assert!(
        matches!(
            error,
            Error::Backend {
                backend: KIND,
                operation: "ping",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert!(error.is_retryable());
    assert!(
        error
            .to_string()
            .contains("wrapped-memory backend failed during ping"),
        "{error}"
    );
    let source = std::error::Error::source(&error).expect("keeps its source");
    assert_eq!(source.to_string(), "the engine went away");
}

#[tokio::test]
async fn a_backend_without_an_outbox_refuses_one_by_its_capabilities() {
    let backend = WrappedMemory {
        outbox: Support::Unsupported,
        ..WrappedMemory::default()
    };
    let store = Store::open(StoreTarget::backend(backend))
        .await
        .expect("open");
    let handler = Handler::new("h", "*", |_request: HandlerRequest| async { Ok(()) });
    let error = store
        .outbox(HandlerMap::new().route(handler))
        .expect_err("refused");
    assert!(
        matches!(
            error,
            Error::Validation(ValidationError::Unsupported {
                backend: KIND,
                feature: "the outbox"
            })
        ),
        "{error:?}"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_settings_are_refused_on_a_backend_of_the_seam() {
    let error = Store::builder(StoreTarget::backend(WrappedMemory::default()))
        .pg_ssl_mode(chronicle::PgSslMode::Require)
        .open()
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("a backend of the seam"),
        "{error}"
    );
}
