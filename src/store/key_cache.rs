//! The data keys a store holds unwrapped: the stored form of a stream's key, the cache of
//! unwrapped keys (trusted for [`KEY_CACHE_TTL`]), and the keys of one page of events
//! (with the compression dictionaries its payloads name). The operations on keys
//! (loading, creating, forgetting) are `Store`'s, in `stream_keys.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::codec::{DataKey, Dictionaries, Dictionary, Needs, StreamKey};

/// How long an unwrapped data key (or the fact that a stream was forgotten) is trusted.
pub(crate) const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

/// Keys kept unwrapped at most; the oldest half goes when full.
const KEY_CACHE_CAPACITY: usize = 10_000;

/// A stream's data key as stored: wrapped by the ring key `key_id`, or destroyed
/// (`None`s: the stream was forgotten).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The stream's id.
    pub stream: String,
    /// The ring key that wraps it; `None`: destroyed.
    pub key_id: Option<String>,
    /// The data key, wrapped; `None`: destroyed.
    pub wrapped: Option<Vec<u8>>,
}

/// A stream's data key, unwrapped, or the fact that it was destroyed.
#[derive(Debug, Clone)]
pub(crate) enum CachedKey {
    Live(Arc<DataKey>),
    Forgotten,
}

/// The data keys of the streams of one page of events, and the compression dictionaries
/// its payloads name.
#[derive(Debug, Default)]
pub(crate) struct PageKeys(
    pub(super) HashMap<String, CachedKey>,
    pub(super) Dictionaries,
);

impl PageKeys {
    /// What the codec needs for a payload of `stream`.
    pub(crate) fn get(&self, stream: &str) -> Needs<'_> {
        let stream_key = match self.0.get(stream) {
            Some(CachedKey::Live(key)) => StreamKey::Live(key),
            Some(CachedKey::Forgotten) => StreamKey::Forgotten,
            None => StreamKey::Unknown,
        };
        Needs {
            stream_key,
            dictionaries: Some(&self.1),
        }
    }

    /// The compression dictionary `id`, when the page's payloads name it and it loaded.
    pub(crate) fn dictionary(&self, id: u32) -> Option<&Dictionary> {
        self.1.get(id).ok()
    }
}

/// Whether the store gives each stream a data key, and the unwrapped keys.
#[derive(Debug)]
pub(crate) struct StreamKeys {
    pub enabled: bool,
    cache: Mutex<HashMap<String, (CachedKey, Instant)>>,
}

impl StreamKeys {
    pub(crate) fn new(enabled: bool) -> Self {
        StreamKeys {
            enabled,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn cached(&self, stream: &str) -> Option<CachedKey> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(stream)
            .filter(|(_, loaded)| loaded.elapsed() < KEY_CACHE_TTL)
            .map(|(key, _)| key.clone())
    }

    pub(super) fn remember(&self, stream: &str, key: CachedKey) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= KEY_CACHE_CAPACITY {
            let mut ages: Vec<Instant> = cache.values().map(|(_, loaded)| *loaded).collect();
            ages.sort_unstable();
            let median = ages[ages.len() / 2];
            cache.retain(|_, (_, loaded)| *loaded > median);
        }
        cache.insert(stream.to_owned(), (key, Instant::now()));
    }

    pub(super) fn drop_key(&self, stream: &str) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(stream);
    }
}
