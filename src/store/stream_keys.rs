//! Per-stream data keys and crypto-shredding: each stream's payloads encrypted with a key
//! of its own, stored wrapped by the key ring; [`Store::forget`] destroys it.
//!
//! Unwrapped keys are cached for a short while (`key_cache::KEY_CACHE_TTL`), so a key forgotten by
//! another process stops being used here within that time; this process's own `forget`
//! drops it at once. Reads look keys up a page at a time ([`PageKeys`]), only for
//! streams whose payloads need one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Store;
use super::batch::Flush;
use super::key_cache::{CachedKey, PageKeys, StoredKey};
use crate::codec::{DataKey, PayloadKey, payload_dictionary, payload_key};
use crate::error::{Error, Result, ValidationError};
use crate::stream::{StreamId, StreamStatus};

/// What a projection or the outbox does with an event of a forgotten stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShreddedEvents {
    /// Pass over it, as if it were not in the log (the default).
    #[default]
    Skip,
    /// Fail on it with [`Error::Shredded`]: the projection's failure policy applies, and
    /// the outbox's request goes dead.
    Fail,
}

impl Store {
    /// Forgets `stream` for good (crypto-shredding): destroys its data key, so every
    /// event and snapshot of the stream written under it becomes unreadable, without
    /// rewriting the log. Reading one then fails with [`Error::Shredded`]; projections and
    /// the outbox skip such events or stop on them, as configured. This store refuses
    /// appends to the stream from now on. Needs per-stream keys
    /// ([`StoreBuilder::per_stream_keys`](crate::StoreBuilder::per_stream_keys)).
    ///
    /// What it does not cover:
    /// - payloads written before per-stream keys were turned on (under a ring key, or
    ///   plain) stay readable: delete such a stream too;
    /// - another process that cached the key keeps using it for up to 30 s, and its
    ///   appends in that time are written under the destroyed key (unreadable);
    /// - copies of the wrapped key outside the live table: PostgreSQL's old row versions
    ///   until vacuum, the WAL, backups and replicas (SQLite: free pages, unless
    ///   `secure_delete` is on). The ring key still opens those copies: to make the
    ///   shredding hold against them, rotate the ring ([`Store::key_rotation`]) and
    ///   retire the old ring key once the backups that hold it expire.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> chronicle::Result<()> {
    /// use chronicle::{Direction, Error, ExpectedVersion, KeyRing, NewEvent, Store};
    /// use futures::TryStreamExt;
    /// use serde_json::json;
    ///
    /// let ring = KeyRing::new("2026-11", KeyRing::generate_key())?;
    /// let store = Store::builder("sqlite::memory:")
    ///     .encryption(ring)
    ///     .per_stream_keys(true)
    ///     .open()
    ///     .await?;
    /// store
    ///     .append("user-7", ExpectedVersion::NoStream, vec![
    ///         NewEvent::new("user.registered", json!({ "email": "ada@example.com" })),
    ///     ])
    ///     .await?;
    /// store.forget("user-7").await?;
    /// let read: Result<Vec<_>, _> = store.read_stream("user-7", 1, Direction::Forward).try_collect().await;
    /// assert!(matches!(read, Err(Error::Shredded { .. })));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ValidationError::Config`] without per-stream keys; connection errors.
    #[tracing::instrument(name = "chronicle.forget", skip_all, fields(stream = stream.as_ref()))]
    pub async fn forget(&self, stream: impl AsRef<str>) -> Result<()> {
        let stream = StreamId::new(stream.as_ref())?;
        if !self.inner.keys.enabled {
            return Err(ValidationError::Config(
                "forget needs per-stream keys: open the store with per_stream_keys(true)"
                    .to_owned(),
            )
            .into());
        }
        let backend = &self.inner.backend;
        self.inner
            .retry
            .run("forget", || backend.forget_stream_key(stream.as_str()))
            .await?;
        self.inner.keys.drop_key(stream.as_str());
        Ok(())
    }

    /// The data key new payloads of `stream` are encrypted with (created on the stream's
    /// first write), or `None` when the store has no per-stream keys.
    ///
    /// # Errors
    /// [`Error::Shredded`] when the stream was forgotten; connection errors.
    pub(crate) async fn write_key(&self, stream: &StreamId) -> Result<Option<Arc<DataKey>>> {
        if !self.inner.keys.enabled {
            return Ok(None);
        }
        let key = match self.inner.keys.cached(stream.as_str()) {
            Some(key) => key,
            None => self.load_or_create_key(stream).await?,
        };
        match key {
            CachedKey::Live(key) => Ok(Some(key)),
            CachedKey::Forgotten => Err(Error::Shredded {
                stream: stream.to_string(),
                event_id: None,
            }),
        }
    }

    async fn load_or_create_key(&self, stream: &StreamId) -> Result<CachedKey> {
        let backend = &self.inner.backend;
        let streams = [stream.as_str()];
        let found = self
            .inner
            .retry
            .run("stream_key", || backend.stream_keys(&streams))
            .await?;
        let stored = match found.into_iter().next() {
            Some(stored) => stored,
            None => {
                let ring = self.ring()?;
                let (key_id, wrapped) = DataKey::fresh_bytes()
                    .and_then(|bytes| ring.wrap(stream.as_str(), &bytes))
                    .map_err(|source| Error::StreamKey {
                        stream: stream.to_string(),
                        key_id: ring.active_key_id().to_owned(),
                        source,
                    })?;
                // A tombstoned stream takes no writes, so it gets no key (a hard delete
                // took its key). Two writers may race to create it: the first stored key
                // wins, and both read it back.
                let tombstoned = self
                    .inner
                    .retry
                    .run("stream_key", || async {
                        let mut tx = backend.begin_batch(Flush::Wait).await?;
                        let row = tx.lock_stream(stream).await?;
                        if row.is_some_and(|row| row.status == StreamStatus::Tombstoned) {
                            return Ok(true);
                        }
                        tx.insert_key(stream, &key_id, &wrapped).await?;
                        tx.commit().await?;
                        Ok(false)
                    })
                    .await?;
                let stored = match tombstoned {
                    true => None,
                    false => self
                        .inner
                        .retry
                        .run("stream_key", || backend.stream_keys(&streams))
                        .await?
                        .into_iter()
                        .next(),
                };
                stored.ok_or_else(|| Error::StreamDeleted {
                    stream: stream.to_string(),
                    hard: true,
                })?
            }
        };
        let key = self.unwrap_key(&stored)?;
        self.inner.keys.remember(stream.as_str(), key.clone());
        Ok(key)
    }

    /// The store's key ring, which per-stream keys and rotation need.
    pub(crate) fn ring(&self) -> Result<&crate::codec::KeyRing> {
        self.inner.codec.keys().ok_or_else(|| {
            ValidationError::Config(
                "this needs the key ring: open the store with encryption(ring)".to_owned(),
            )
            .into()
        })
    }

    fn unwrap_key(&self, stored: &StoredKey) -> Result<CachedKey> {
        let (Some(key_id), Some(wrapped)) = (&stored.key_id, &stored.wrapped) else {
            return Ok(CachedKey::Forgotten);
        };
        let key = self
            .ring()?
            .unwrap(&stored.stream, key_id, wrapped)
            .map_err(|source| Error::StreamKey {
                stream: stored.stream.clone(),
                key_id: key_id.clone(),
                source,
            })?;
        Ok(CachedKey::Live(Arc::new(key)))
    }

    /// The data keys of the streams whose payloads among `payloads` (stream, stored bytes)
    /// need one: from the cache, the rest in one lookup; and the compression dictionaries
    /// the payloads name.
    pub(crate) async fn page_keys<'a>(
        &self,
        payloads: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Arc<PageKeys>> {
        let mut keys = HashMap::new();
        let mut missing: HashSet<&str> = HashSet::new();
        let mut dictionaries = HashSet::new();
        for (stream, payload) in payloads {
            if let Some(id) = payload_dictionary(payload) {
                dictionaries.insert(id);
            }
            if keys.contains_key(stream)
                || missing.contains(stream)
                || payload_key(payload) != PayloadKey::Stream
            {
                continue;
            }
            match self.inner.keys.cached(stream) {
                Some(key) => {
                    keys.insert(stream.to_owned(), key);
                }
                None => {
                    missing.insert(stream);
                }
            }
        }
        if !missing.is_empty() {
            let missing: Vec<&str> = missing.into_iter().collect();
            let backend = &self.inner.backend;
            let stored = self
                .inner
                .retry
                .run("stream_key", || backend.stream_keys(&missing))
                .await?;
            let mut found = HashSet::with_capacity(stored.len());
            for stored in stored {
                found.insert(stored.stream.clone());
                if stored.key_id.is_some() && self.inner.codec.keys().is_none() {
                    // A live key, and no ring to unwrap it: the stream's payloads fail one
                    // by one (`MissingKey`), and the other events of the page still come.
                    continue;
                }
                let key = self.unwrap_key(&stored)?;
                self.inner.keys.remember(&stored.stream, key.clone());
                keys.insert(stored.stream, key);
            }
            // No row at all: the key went with a hard delete; as good as forgotten.
            for stream in missing {
                if !found.contains(stream) {
                    keys.insert(stream.to_owned(), CachedKey::Forgotten);
                }
            }
        }
        let dictionaries = self.page_dictionaries(dictionaries).await?;
        Ok(Arc::new(PageKeys(keys, dictionaries)))
    }
}
