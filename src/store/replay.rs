//! Replaying a stream into typed events: the read behind an aggregate's load. It fetches
//! narrow rows (id, version, type, schema version, payload), pages ahead like
//! `read_stream`, and decodes each payload through the codec, the upcasters and the
//! `DomainEvent`.

use futures::{Stream, StreamExt, TryStreamExt, stream};

use super::Store;
use super::backend::ReplayedEvent;
use crate::codec::event_context;
use crate::domain_event::{DomainEvent, EventView};
use crate::error::{Error, Result};
use crate::stream::{Direction, StreamId};

impl Store {
    /// The events of `stream` from version `from` to `last`, decoded into `E`, with their
    /// versions. The caller has checked that the stream is active and reaches `last`.
    pub(crate) fn replay<E: DomainEvent>(
        self,
        stream: StreamId,
        from: u64,
        last: u64,
    ) -> impl Stream<Item = Result<(u64, E)>> + Send + 'static {
        let fetch_stream = stream.clone();
        let decoder = self.clone();
        self.pages(from, last, Direction::Forward, move |store, versions| {
            let stream = fetch_stream.clone();
            async move {
                let backend = &store.inner.backend;
                store
                    .inner
                    .retry
                    .run("replay_stream", || {
                        backend.replay_stream(&stream, versions.clone())
                    })
                    .await
            }
        })
        .map_ok(move |page| {
            let (store, stream) = (decoder.clone(), stream.clone());
            stream::iter(page).map(move |row| store.decode_replayed(&stream, row))
        })
        .try_flatten()
    }

    fn decode_replayed<E: DomainEvent>(
        &self,
        stream: &StreamId,
        row: ReplayedEvent,
    ) -> Result<(u64, E)> {
        let payload = self
            .inner
            .codec
            .decode(row.payload, || event_context(row.id, stream.as_str()))
            .map_err(|source| Error::Codec {
                stream: stream.to_string(),
                event_id: row.id,
                source,
            })?;
        let event = self.decode_view(EventView {
            stream,
            id: row.id,
            event_type: &row.event_type,
            schema_version: row.schema_version,
            payload: &payload,
        })?;
        Ok((row.version, event))
    }
}
