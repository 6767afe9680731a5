//! A stream's life: [`Store::create_stream`] and [`Store::delete_stream`], and what a
//! stream knows about itself ([`Store::stream_info`], [`Store::list_streams`]: the
//! backend's `StoredStream` rows, their metadata parsed here). Every change of
//! a stream's state is decided here, once for every backend, from the stream's row as a
//! write transaction locked it ([`StreamTx`](super::stream_rows::StreamTx)): create,
//! re-create a soft-deleted stream, refuse a tombstone, soft delete, and the hard delete's
//! cascade (events, snapshots, the stream's key, then the tombstone).

use super::Store;
use super::backend::StoredStream;
use super::batch::Flush;
use super::stream_rows::{SnapshotCut, StreamWrite};
use crate::error::{CorruptRow, CorruptValue, Error, Result};
use crate::stream::{DeleteMode, NewStream, StreamId, StreamInfo, StreamListQuery, StreamStatus};
use crate::text;

impl Store {
    /// Whether the stream exists and is not deleted.
    ///
    /// # Errors
    /// [`Error::Validation`] for a bad id; connection errors.
    pub async fn stream_exists(&self, stream: impl AsRef<str>) -> Result<bool> {
        Ok(self
            .stream_info(stream)
            .await?
            .is_some_and(|info| info.status == StreamStatus::Active))
    }

    /// What the stream knows about itself (also for deleted streams; see
    /// [`StreamInfo::status`]), or `None` when it never existed.
    ///
    /// # Errors
    /// [`Error::Validation`] for a bad id; connection errors.
    #[tracing::instrument(name = "chronicle.stream_info", skip_all, fields(stream = stream.as_ref()))]
    pub async fn stream_info(&self, stream: impl AsRef<str>) -> Result<Option<StreamInfo>> {
        let stream = StreamId::new(stream.as_ref())?;
        let backend = &self.inner.backend;
        let info = self
            .inner
            .retry
            .run("stream_info", || backend.stream_info(&stream))
            .await?;
        match info {
            Some(info) => Ok(self.with_retention(vec![info.into_info()?]).await?.pop()),
            None => Ok(None),
        }
    }

    /// One page of streams in id order. For the next page, set
    /// [`StreamListQuery::after`] to the last id returned.
    ///
    /// # Errors
    /// Connection errors.
    #[tracing::instrument(name = "chronicle.list_streams", skip_all, fields(category = query.category.as_deref()))]
    pub async fn list_streams(&self, query: &StreamListQuery) -> Result<Vec<StreamInfo>> {
        text::refuse(query.text_problem(), None, None)?;
        let backend = &self.inner.backend;
        let infos = self
            .inner
            .retry
            .run("list_streams", || backend.list_streams(query))
            .await?;
        let infos = infos
            .into_iter()
            .map(StoredStream::into_info)
            .collect::<Result<_>>()?;
        self.with_retention(infos).await
    }

    /// Creates an empty stream with an aggregate type, name and metadata, or re-creates a
    /// soft-deleted one (its versions continue where they stopped).
    ///
    /// # Errors
    /// [`Error::StreamAlreadyExists`] when the stream exists; [`Error::StreamDeleted`] when
    /// it was hard-deleted.
    #[tracing::instrument(name = "chronicle.create_stream", skip_all, fields(stream = stream.as_ref()))]
    pub async fn create_stream(&self, stream: impl AsRef<str>, spec: NewStream) -> Result<()> {
        let stream = StreamId::new(stream.as_ref())?;
        text::refuse(spec.text_problem(), Some(stream.as_str()), None)?;
        let backend = &self.inner.backend;
        // The state that refused the creation, if one did.
        let refused = self
            .inner
            .retry
            .run("create_stream", || async {
                let mut tx = backend.begin_batch(Flush::Wait).await?;
                let write = match tx.lock_stream(&stream).await?.map(|row| row.status) {
                    None => StreamWrite::Insert(&spec),
                    Some(StreamStatus::Deleted) => StreamWrite::Reactivate(&spec),
                    Some(status) => return Ok(Some(status)),
                };
                tx.write_stream(&stream, write).await?;
                tx.commit().await?;
                Ok(None)
            })
            .await?;
        match refused {
            None => Ok(()),
            Some(StreamStatus::Tombstoned) => Err(Error::StreamDeleted {
                stream: stream.to_string(),
                hard: true,
            }),
            Some(_) => Err(Error::StreamAlreadyExists {
                stream: stream.to_string(),
            }),
        }
    }

    /// Deletes a stream. [`DeleteMode::Soft`] marks it deleted: reads and appends report
    /// [`Error::StreamDeleted`] until it is re-created with [`Store::create_stream`]; its
    /// events stay in the global log. [`DeleteMode::Hard`] removes its events, snapshots
    /// and data key for good and tombstones the id. Deleting a deleted stream again
    /// succeeds (a hard delete of a soft-deleted one tombstones it).
    ///
    /// # Errors
    /// [`Error::StreamNotFound`] when the stream does not exist.
    #[tracing::instrument(name = "chronicle.delete_stream", skip_all, fields(stream = stream.as_ref(), ?mode))]
    pub async fn delete_stream(&self, stream: impl AsRef<str>, mode: DeleteMode) -> Result<()> {
        let stream = StreamId::new(stream.as_ref())?;
        let backend = &self.inner.backend;
        let found = self
            .inner
            .retry
            .run("delete_stream", || async {
                let mut tx = backend.begin_batch(Flush::Wait).await?;
                let Some(row) = tx.lock_stream(&stream).await? else {
                    return Ok(false);
                };
                match mode {
                    DeleteMode::Soft if row.status != StreamStatus::Active => return Ok(true),
                    DeleteMode::Soft => tx.write_stream(&stream, StreamWrite::SoftDelete).await?,
                    DeleteMode::Hard => {
                        tx.remove_events(&stream).await?;
                        tx.delete_snapshots(&stream, SnapshotCut::All).await?;
                        tx.delete_key(&stream).await?;
                        tx.write_stream(&stream, StreamWrite::Tombstone).await?;
                    }
                }
                tx.commit().await?;
                Ok(true)
            })
            .await?;
        if found {
            Ok(())
        } else {
            Err(Error::StreamNotFound {
                stream: stream.to_string(),
            })
        }
    }
}

impl StoredStream {
    /// The row as [`StreamInfo`], its metadata parsed (retention not looked up yet).
    ///
    /// # Errors
    /// [`Error::CorruptRow`] naming `metadata` when the stored metadata is not JSON.
    fn into_info(self) -> Result<StreamInfo> {
        let metadata = match self
            .metadata
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
        {
            Ok(metadata) => metadata.unwrap_or_default(),
            Err(error) => {
                return Err(Error::CorruptRow(Box::new(CorruptRow {
                    table: "streams",
                    stream: self.stream_id.to_string(),
                    version: None,
                    event_id: None,
                    column: "metadata",
                    problem: CorruptValue::Json(error),
                })));
            }
        };
        Ok(StreamInfo {
            stream_id: self.stream_id,
            category: self.category,
            aggregate_type: self.aggregate_type,
            display_name: self.display_name,
            version: self.version,
            event_count: self.event_count,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_event_id: self.last_event_id,
            status: self.status,
            metadata,
            retention: None,
        })
    }
}
