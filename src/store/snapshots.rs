//! The store's manual snapshot API: save, fetch, list and delete a stream's snapshots.
//! Payloads go through the codec like events, bound to their stream and version.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::Store;
use super::backend::StoredSnapshot;
use super::batch::Flush;
use super::key_cache::PageKeys;
use super::stream_rows::SnapshotCut;
use super::stream_rows::SnapshotWrite;
use crate::codec::{CodecError, snapshot_context};
use crate::error::{Error, Result, ValidationError};
use crate::snapshot::{NewSnapshot, Snapshot, SnapshotInfo};
use crate::stream::{StreamId, StreamStatus};

/// How many older snapshots a load tries, one statement each, when the newest does not
/// decode, before it replays the whole stream (`keep_latest` keeps 2 by default).
const OLDER_SNAPSHOT_TRIES: usize = 8;

/// The snapshot schema-version rule, written only here: a snapshot serves a load only when
/// it was written under the schema version the loading code declares
/// (`Aggregate::SNAPSHOT_VERSION`). Backends return the newest snapshot whatever its
/// schema; one of another version is not deserialized, and older ones predate the change
/// too.
const fn schema_usable(stored: u32, schema_version: u32) -> bool {
    stored == schema_version
}

impl StoredSnapshot {
    /// Whether this snapshot may serve a load of code at `schema_version`.
    pub(crate) const fn usable_for(&self, schema_version: u32) -> bool {
        schema_usable(self.schema_version, schema_version)
    }
}

impl Snapshot {
    /// Whether this snapshot may serve a load of code at `schema_version`.
    pub(crate) const fn usable_for(&self, schema_version: u32) -> bool {
        schema_usable(self.schema_version, schema_version)
    }
}

impl Store {
    /// Saves a snapshot of `stream` (replacing one at the same version), then, with
    /// [`NewSnapshot::keep_latest`], deletes the older ones beyond the count.
    ///
    /// # Errors
    /// [`ValidationError::SnapshotAhead`] when the stream is missing, deleted, or has not
    /// reached the snapshot's version; connection errors.
    #[tracing::instrument(name = "chronicle.save_snapshot", skip_all, fields(stream = stream.as_ref(), version = snapshot.version))]
    pub async fn save_snapshot(
        &self,
        stream: impl AsRef<str>,
        snapshot: NewSnapshot,
    ) -> Result<()> {
        let stream = StreamId::new(stream.as_ref())?;
        let key = self.write_key(&stream).await?;
        let payload = self
            .inner
            .codec
            .encode(
                &snapshot.payload,
                || snapshot_context(stream.as_str(), snapshot.version, snapshot.schema_version),
                key.as_deref(),
            )
            .map_err(|source| Error::SnapshotCodec {
                stream: stream.to_string(),
                version: snapshot.version,
                source,
            })?;
        let write = SnapshotWrite {
            version: snapshot.version,
            schema_version: snapshot.schema_version,
            payload: &payload,
        };
        let backend = &self.inner.backend;
        // One transaction holds the stream: the snapshot is stored only while the stream
        // is active and has reached its version (a hard delete cannot slip in between),
        // and the pruning sees the snapshot just stored.
        let saved = self
            .inner
            .retry
            .run("save_snapshot", || async {
                let mut tx = backend.begin_batch(Flush::Wait).await?;
                let stream_row = tx.lock_stream(&stream).await?;
                if !stream_row.is_some_and(|row| {
                    row.status == StreamStatus::Active && row.version >= write.version
                }) {
                    return Ok(false);
                }
                tx.put_snapshot(&stream, write).await?;
                if let Some(keep) = snapshot.keep {
                    // The newest beyond the `keep` newest, and every older one, go.
                    let newest = tx
                        .snapshot_versions(&stream, keep.saturating_add(1))
                        .await?;
                    if let Some(&first_gone) = newest.get(keep) {
                        tx.delete_snapshots(&stream, SnapshotCut::AtOrBelow(first_gone))
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(true)
            })
            .await?;
        if saved {
            Ok(())
        } else {
            Err(ValidationError::SnapshotAhead {
                stream: stream.to_string(),
                version: snapshot.version,
            }
            .into())
        }
    }

    /// The newest snapshot of `stream` covering at most `max_version` (pass `u64::MAX`
    /// for the newest of all), or `None`.
    ///
    /// # Errors
    /// [`Error::SnapshotCodec`] when its payload cannot be decoded; connection errors.
    #[tracing::instrument(name = "chronicle.latest_snapshot", skip_all, fields(stream = stream.as_ref(), max_version))]
    pub async fn latest_snapshot(
        &self,
        stream: impl AsRef<str>,
        max_version: u64,
    ) -> Result<Option<Snapshot>> {
        let stream = StreamId::new(stream.as_ref())?;
        let Some(stored) = self.stored_snapshot(&stream, max_version).await? else {
            return Ok(None);
        };
        let keys = self.snapshot_keys(&stream, &stored).await?;
        self.decode_snapshot(stream, stored, &keys).map(Some)
    }

    /// The newest stored snapshot of `stream` at or below `max_version`, undecoded.
    async fn stored_snapshot(
        &self,
        stream: &StreamId,
        max_version: u64,
    ) -> Result<Option<StoredSnapshot>> {
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("latest_snapshot", || {
                backend.latest_snapshot(stream, max_version)
            })
            .await
    }

    /// The data key `stored`, a snapshot of `stream`, needs (if any).
    async fn snapshot_keys(
        &self,
        stream: &StreamId,
        stored: &StoredSnapshot,
    ) -> Result<Arc<PageKeys>> {
        self.page_keys(std::iter::once((
            stream.as_str(),
            stored.payload.as_slice(),
        )))
        .await
    }

    /// The state `stored` holds, decoded as `T`, and its version.
    pub(crate) fn snapshot_state<T: DeserializeOwned>(
        &self,
        stream: &StreamId,
        stored: StoredSnapshot,
        keys: &PageKeys,
    ) -> Result<(T, u64)> {
        let snapshot = self.decode_snapshot(stream.clone(), stored, keys)?;
        Ok((snapshot.data::<T>()?, snapshot.version))
    }

    /// The newest snapshot of `stream` below version `below` of `schema_version` that
    /// decodes into `T`, as the state and its version: a load's fallback when the newest
    /// snapshot is damaged. Snapshots that do not decode (logged) are stepped over; one of
    /// another schema version ends the search (older ones predate it too), and so do
    /// [`OLDER_SNAPSHOT_TRIES`] statements: `None`.
    ///
    /// # Errors
    /// Connection errors; a corrupt snapshot row ([`Error::CorruptRow`]).
    pub(crate) async fn older_usable_snapshot<T: DeserializeOwned>(
        &self,
        stream: &StreamId,
        mut below: u64,
        schema_version: u32,
    ) -> Result<Option<(T, u64)>> {
        for _ in 0..OLDER_SNAPSHOT_TRIES {
            let Some(max_version) = below.checked_sub(1) else {
                return Ok(None);
            };
            let Some(stored) = self.stored_snapshot(stream, max_version).await? else {
                return Ok(None);
            };
            below = stored.version;
            if !stored.usable_for(schema_version) {
                // Written under another schema: so, most likely, are the older ones.
                return Ok(None);
            }
            let keys = self.snapshot_keys(stream, &stored).await?;
            match self.snapshot_state(stream, stored, &keys) {
                Ok(state) => return Ok(Some(state)),
                Err(error) => {
                    tracing::warn!(%stream, version = below, %error, "older snapshot does not decode either");
                }
            }
        }
        Ok(None)
    }

    /// Decodes a stored snapshot, with its stream's data key from `keys`.
    pub(crate) fn decode_snapshot(
        &self,
        stream: StreamId,
        stored: StoredSnapshot,
        keys: &PageKeys,
    ) -> Result<Snapshot> {
        let (version, schema_version) = (stored.version, stored.schema_version);
        let payload = self
            .inner
            .codec
            .decode(
                stored.payload,
                || snapshot_context(stream.as_str(), version, schema_version),
                keys.get(stream.as_str()),
            )
            .map_err(|source| match source {
                CodecError::Shredded => Error::Shredded {
                    stream: stream.to_string(),
                    event_id: None,
                },
                source => Error::SnapshotCodec {
                    stream: stream.to_string(),
                    version,
                    source,
                },
            })?;
        Ok(Snapshot {
            stream_id: stream,
            version,
            schema_version: stored.schema_version,
            created_at: stored.created_at,
            payload,
        })
    }

    /// The snapshots of `stream`, newest first.
    ///
    /// # Errors
    /// Connection errors.
    #[tracing::instrument(name = "chronicle.list_snapshots", skip_all, fields(stream = stream.as_ref()))]
    pub async fn list_snapshots(&self, stream: impl AsRef<str>) -> Result<Vec<SnapshotInfo>> {
        let stream = StreamId::new(stream.as_ref())?;
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("list_snapshots", || backend.list_snapshots(&stream))
            .await
    }

    /// Deletes the snapshot of `stream` at `version`, or all its snapshots with `None`;
    /// returns how many were deleted.
    ///
    /// # Errors
    /// Connection errors.
    #[tracing::instrument(name = "chronicle.delete_snapshots", skip_all, fields(stream = stream.as_ref(), ?version))]
    pub async fn delete_snapshots(
        &self,
        stream: impl AsRef<str>,
        version: Option<u64>,
    ) -> Result<u64> {
        let stream = StreamId::new(stream.as_ref())?;
        let cut = version.map_or(SnapshotCut::All, SnapshotCut::At);
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("delete_snapshots", || async {
                let mut tx = backend.begin_batch(Flush::Wait).await?;
                let deleted = tx.delete_snapshots(&stream, cut).await?;
                tx.commit().await?;
                Ok(deleted)
            })
            .await
    }
}
