//! A stream's rows in a memory write transaction: [`StreamTx`] for `MemoryTx`. Every
//! primitive takes the writer lock (the transaction's first write does), so
//! [`StreamTx::lock_stream`] holds every stream, as SQLite's write lock does.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use super::{MemoryTx, StreamRow, new_info};
use crate::error::Result;
use crate::store::backend::{StoredSnapshot, StoredStream};
use crate::store::key_cache::StoredKey;
use crate::store::stream_rows::{LockedStream, SnapshotCut, SnapshotWrite, StreamTx, StreamWrite};
use crate::stream::{StreamId, StreamStatus};

#[async_trait]
impl StreamTx for MemoryTx {
    async fn lock_stream(&mut self, stream: &StreamId) -> Result<Option<LockedStream>> {
        let (tables, _) = self.write().await?;
        Ok(tables.streams.get(stream.as_str()).map(|row| LockedStream {
            version: row.info.version,
            status: row.info.status,
        }))
    }

    async fn write_stream(&mut self, stream: &StreamId, write: StreamWrite<'_>) -> Result<()> {
        let (tables, _) = self.write().await?;
        let streams = Arc::make_mut(&mut tables.streams);
        let now = Utc::now();
        let status = StreamStatus::after(write);
        match write {
            StreamWrite::Insert(spec) => {
                streams.insert(stream.as_str().to_owned(), StreamRow::new(stream, spec));
            }
            StreamWrite::Reactivate(spec) => {
                if let Some(row) = streams.get_mut(stream.as_str()) {
                    row.info = StoredStream {
                        version: row.info.version,
                        event_count: row.info.event_count,
                        last_event_id: row.info.last_event_id,
                        ..new_info(stream, spec)
                    };
                }
            }
            StreamWrite::SoftDelete | StreamWrite::Tombstone => {
                if let Some(row) = streams.get_mut(stream.as_str()) {
                    row.info.status = status;
                    row.info.updated_at = now;
                    if status == StreamStatus::Tombstoned {
                        row.info.event_count = 0;
                    }
                }
            }
        }
        Ok(())
    }

    async fn remove_events(&mut self, stream: &StreamId) -> Result<u64> {
        let (tables, staged) = self.write().await?;
        let before = staged.len();
        staged.retain(|event| event.stream_id != *stream);
        let mut removed = (before - staged.len()) as u64;
        let Some(row) = Arc::make_mut(&mut tables.streams).get_mut(stream.as_str()) else {
            return Ok(removed);
        };
        let positions = std::mem::take(&mut row.positions);
        let (log, ids) = (
            Arc::make_mut(&mut tables.log),
            Arc::make_mut(&mut tables.ids),
        );
        for position in positions.into_values() {
            if let Some(event) = log.remove(&position) {
                ids.remove(&event.id);
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn put_snapshot(&mut self, stream: &StreamId, snapshot: SnapshotWrite<'_>) -> Result<()> {
        let (tables, _) = self.write().await?;
        if let Some(row) = Arc::make_mut(&mut tables.streams).get_mut(stream.as_str()) {
            row.snapshots.insert(
                snapshot.version,
                StoredSnapshot {
                    version: snapshot.version,
                    schema_version: snapshot.schema_version,
                    payload: snapshot.payload.to_vec(),
                    created_at: Utc::now(),
                },
            );
        }
        Ok(())
    }

    async fn snapshot_versions(&mut self, stream: &StreamId, newest: usize) -> Result<Vec<u64>> {
        let (tables, _) = self.write().await?;
        Ok(tables
            .streams
            .get(stream.as_str())
            .map(|row| row.snapshots.keys().rev().take(newest).copied().collect())
            .unwrap_or_default())
    }

    async fn delete_snapshots(&mut self, stream: &StreamId, cut: SnapshotCut) -> Result<u64> {
        let (tables, _) = self.write().await?;
        let Some(row) = Arc::make_mut(&mut tables.streams).get_mut(stream.as_str()) else {
            return Ok(0);
        };
        let before = row.snapshots.len();
        row.snapshots.retain(|version, _| !cut.takes(*version));
        Ok((before - row.snapshots.len()) as u64)
    }

    async fn insert_key(&mut self, stream: &StreamId, key_id: &str, wrapped: &[u8]) -> Result<()> {
        let (tables, _) = self.write().await?;
        Arc::make_mut(&mut tables.keys)
            .entry(stream.as_str().to_owned())
            .or_insert_with(|| StoredKey {
                stream: stream.as_str().to_owned(),
                key_id: Some(key_id.to_owned()),
                wrapped: Some(wrapped.to_vec()),
            });
        Ok(())
    }

    async fn delete_key(&mut self, stream: &StreamId) -> Result<()> {
        let (tables, _) = self.write().await?;
        Arc::make_mut(&mut tables.keys).remove(stream.as_str());
        Ok(())
    }
}
