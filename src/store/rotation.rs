//! Key rotation: moving what a retired ring key protects under the active one.
//!
//! Per-stream data keys are re-wrapped ([`KeyRotation::rewrap_stream_keys`]) without
//! touching event rows. Payloads written under a ring key directly (stores without
//! per-stream keys) are re-encrypted in place, and compression dictionaries sealed again
//! ([`KeyRotation::reencrypt_events`]). Both run
//! in batches, each its own transaction, and each row changes only if it is still as it
//! was read: an interrupted run loses nothing, and running it again finishes the job.

use std::sync::Arc;

use super::Store;
use super::key_cache::StoredKey;
use crate::codec::{
    PayloadKey, StreamKey, event_context, payload_dictionary, payload_key, snapshot_context,
};
use crate::error::{Error, Result};
use crate::read::{EventParts, LogPosition};

/// How far a rotation got, handed to the progress callback after every batch and
/// returned at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RotationProgress {
    /// Data keys re-wrapped under the active ring key.
    pub keys_rewrapped: u64,
    /// Events looked at by re-encryption.
    pub events_scanned: u64,
    /// Events re-encrypted under the active ring key.
    pub events_reencrypted: u64,
    /// Snapshots re-encrypted under the active ring key.
    pub snapshots_reencrypted: u64,
    /// Compression dictionaries sealed again under the active ring key.
    pub dictionaries_resealed: u64,
    /// Where re-encryption got to in the log: pass it to
    /// [`KeyRotation::start_after`] to resume a run that was stopped.
    pub position: LogPosition,
}

type ProgressFn = Arc<dyn Fn(&RotationProgress) + Send + Sync>;

/// A key rotation, from [`Store::key_rotation`]. Open the store with a ring whose active
/// key is the new one and which still holds the retired ones. A rotation is not a fence:
/// give every writer the new ring first (a writer still on the old active key wraps new
/// keys and encrypts new events under it), run the rotation, and run it again to confirm
/// it finds nothing left (0 re-wrapped, 0 re-encrypted); then the retired keys can leave
/// the ring.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> chronicle::Result<()> {
/// use chronicle::{KeyRing, Store};
///
/// let (old, new) = (KeyRing::generate_key(), KeyRing::generate_key());
/// let ring = KeyRing::new("2026-11", new)?.with_key("2026-01", old)?;
/// let store = Store::builder("sqlite::memory:").encryption(ring).open().await?;
/// let rotation = store
///     .key_rotation()
///     .batch_size(1_000)
///     .on_progress(|progress| eprintln!("{progress:?}"));
/// rotation.rewrap_stream_keys().await?;
/// let done = rotation.reencrypt_events().await?;
/// assert_eq!(done.events_reencrypted, 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KeyRotation {
    store: Store,
    batch_size: usize,
    start_after: LogPosition,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for KeyRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRotation")
            .field("batch_size", &self.batch_size)
            .field("start_after", &self.start_after)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A key rotation on this store (batches of 500).
    pub fn key_rotation(&self) -> KeyRotation {
        KeyRotation {
            store: self.clone(),
            batch_size: 500,
            start_after: LogPosition::START,
            progress: None,
        }
    }
}

impl KeyRotation {
    /// Keys or events per batch (at least 1; default 500).
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = size.max(1);
        self
    }

    /// Re-encryption starts after this position (default: the start of the log).
    pub fn start_after(mut self, position: LogPosition) -> Self {
        self.start_after = position;
        self
    }

    /// Called after every batch with the progress so far.
    pub fn on_progress(
        mut self,
        progress: impl Fn(&RotationProgress) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }

    fn report(&self, progress: &RotationProgress) {
        if let Some(callback) = &self.progress {
            callback(progress);
        }
    }

    /// Re-wraps every per-stream data key that a retired ring key wraps under the active
    /// key. Event rows are not touched.
    ///
    /// # Errors
    /// [`ValidationError::Config`](crate::ValidationError::Config) without a key ring; [`Error::Codec`] naming the stream
    /// whose key does not unwrap (its ring key is missing from the ring); connection
    /// errors. Batches before the error stay done.
    #[tracing::instrument(name = "chronicle.rewrap_stream_keys", skip_all)]
    pub async fn rewrap_stream_keys(&self) -> Result<RotationProgress> {
        let store = &self.store;
        let ring = store.ring()?;
        let active = ring.active_key_id().to_owned();
        let backend = &store.inner.backend;
        let mut progress = RotationProgress::default();
        loop {
            let batch = store
                .inner
                .retry
                .run("rotate_keys", || {
                    backend.keys_to_rewrap(&active, self.batch_size)
                })
                .await?;
            if batch.is_empty() {
                return Ok(progress);
            }
            let mut swaps = Vec::with_capacity(batch.len());
            for old in batch {
                let (Some(key_id), Some(wrapped)) = (&old.key_id, &old.wrapped) else {
                    continue;
                };
                let rewrapped = ring
                    .rewrap(&old.stream, key_id, wrapped)
                    .map_err(|source| Error::StreamKey {
                        stream: old.stream.clone(),
                        key_id: key_id.clone(),
                        source,
                    })?;
                let new = StoredKey {
                    stream: old.stream.clone(),
                    key_id: Some(active.clone()),
                    wrapped: Some(rewrapped),
                };
                swaps.push((old, new));
            }
            progress.keys_rewrapped += store
                .inner
                .retry
                .run("rotate_keys", || backend.rewrap_stream_keys(&swaps))
                .await?;
            self.report(&progress);
        }
    }

    /// Re-encrypts, under the active ring key, every event payload encrypted with another
    /// ring key (events a retention policy hides included), then every such snapshot, and
    /// seals every compression dictionary sealed by another ring key again. Payloads
    /// under per-stream keys are left alone: re-wrap those keys instead.
    ///
    /// # Errors
    /// [`ValidationError::Config`](crate::ValidationError::Config) without a key ring; [`Error::Codec`] naming an event
    /// that does not decode; connection errors. Batches before the error stay done; the
    /// last progress reported says where to resume.
    #[tracing::instrument(name = "chronicle.reencrypt_events", skip_all)]
    pub async fn reencrypt_events(&self) -> Result<RotationProgress> {
        let store = &self.store;
        let ring = store.ring()?;
        let active = ring.active_key_id();
        let backend = &store.inner.backend;
        let codec = &store.inner.codec;
        let mut progress = RotationProgress {
            position: self.start_after,
            ..RotationProgress::default()
        };
        loop {
            let window = store
                .read_window_encoded(
                    progress.position,
                    Arc::from([]),
                    EventParts::PAYLOAD,
                    super::WindowLimit {
                        events: self.batch_size,
                        bytes: Some(super::DEFAULT_WINDOW_BYTES),
                    },
                    super::read::Expired::Include,
                )
                .await?;
            let mut swaps = Vec::new();
            // The dictionaries the window's payloads were compressed with (they keep theirs).
            let keys = store.keys_of(&window.events).await?;
            for event in &window.events {
                match payload_key(&event.payload) {
                    PayloadKey::Ring(key_id) if key_id != active => {}
                    _ => continue,
                }
                let context = || event_context(event.id, event.stream_id.as_str());
                let json = codec
                    .decode(
                        event.payload.clone(),
                        context,
                        keys.get(event.stream_id.as_str()),
                    )
                    .map_err(|source| {
                        super::decode::codec_error(event.stream_id.as_str(), event.id, source)
                    })?;
                let dictionary =
                    payload_dictionary(&event.payload).and_then(|id| keys.dictionary(id));
                let fresh = codec
                    .encode_with(&json, context, None, dictionary)
                    .map_err(|source| {
                        super::decode::codec_error(event.stream_id.as_str(), event.id, source)
                    })?;
                swaps.push((
                    event.stream_id.to_string(),
                    event.version,
                    event.payload.clone(),
                    fresh,
                ));
            }
            if !swaps.is_empty() {
                progress.events_reencrypted += store
                    .inner
                    .retry
                    .run("reencrypt", || backend.replace_payloads(&swaps))
                    .await?;
            }
            progress.events_scanned += window.events.len() as u64;
            progress.position = window.scanned_to;
            self.report(&progress);
            if !window.more {
                break;
            }
        }
        self.reencrypt_snapshots(&mut progress).await?;
        self.reseal_dictionaries(&mut progress).await?;
        Ok(progress)
    }

    /// The dictionary pass of [`KeyRotation::reencrypt_events`]: every dictionary (a
    /// store holds one per training), each row replaced only if still as read.
    async fn reseal_dictionaries(&self, progress: &mut RotationProgress) -> Result<()> {
        let store = &self.store;
        let backend = &store.inner.backend;
        let retry = &store.inner.retry;
        let Some(latest) = retry
            .run("reseal_dictionary", || backend.latest_dictionary())
            .await?
        else {
            return Ok(());
        };
        let ids: Vec<u32> = (1..=latest).collect();
        let stored = retry
            .run("reseal_dictionary", || backend.dictionaries(&ids))
            .await?;
        for old in stored {
            let id = old.id;
            let resealed = store
                .inner
                .codec
                .reseal_dictionary(&old)
                .map_err(|source| Error::Dictionary { id, source })?;
            let Some(new) = resealed else {
                continue;
            };
            if retry
                .run("reseal_dictionary", || {
                    backend.reseal_dictionary(&old, &new)
                })
                .await?
            {
                progress.dictionaries_resealed += 1;
            }
        }
        self.report(progress);
        Ok(())
    }

    /// The snapshot pass of [`KeyRotation::reencrypt_events`]: every snapshot, in (stream,
    /// version) order.
    async fn reencrypt_snapshots(&self, progress: &mut RotationProgress) -> Result<()> {
        let store = &self.store;
        let active = store.ring()?.active_key_id();
        let backend = &store.inner.backend;
        let codec = &store.inner.codec;
        let mut after = (String::new(), 0);
        loop {
            let page = store
                .inner
                .retry
                .run("reencrypt", || {
                    backend.snapshots_after((&after.0, after.1), self.batch_size)
                })
                .await?;
            let Some((last_stream, last)) = page.last() else {
                return Ok(());
            };
            after = (last_stream.to_string(), last.version);
            let mut swaps = Vec::new();
            for (stream, snapshot) in &page {
                match payload_key(&snapshot.payload) {
                    PayloadKey::Ring(key_id) if key_id != active => {}
                    _ => continue,
                }
                let context =
                    || snapshot_context(stream.as_str(), snapshot.version, snapshot.schema_version);
                let fail = |source| Error::SnapshotCodec {
                    stream: stream.to_string(),
                    version: snapshot.version,
                    source,
                };
                let json = codec
                    .decode(snapshot.payload.clone(), context, StreamKey::Unknown)
                    .map_err(fail)?;
                let fresh = codec.encode(&json, context, None).map_err(fail)?;
                swaps.push((
                    stream.to_string(),
                    snapshot.version,
                    snapshot.payload.clone(),
                    fresh,
                ));
            }
            if !swaps.is_empty() {
                progress.snapshots_reencrypted += store
                    .inner
                    .retry
                    .run("reencrypt", || backend.replace_snapshot_payloads(&swaps))
                    .await?;
                self.report(progress);
            }
        }
    }
}
