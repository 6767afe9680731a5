//! Trained zstd dictionaries for small payloads: training one from the store's recent
//! events ([`Store::train_compression_dictionary`]), the active one appends compress
//! with, and the ones a page of payloads needs, loaded by id.
//!
//! Dictionaries are stored in the database under increasing ids and never change (a key
//! rotation seals one again, the same bytes), so a process keeps every one it loaded. The active dictionary is the one with the highest
//! id; appends look it up again after [`ACTIVE_DICTIONARY_TTL`], so a dictionary trained
//! by another process is used here within that time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Store;
use crate::codec::{CodecError, Dictionaries, Dictionary, event_context, train_dictionary};
use crate::error::{Error, Result, ValidationError};

/// How long the id of the active dictionary is trusted before appends look it up again.
pub(crate) const ACTIVE_DICTIONARY_TTL: Duration = Duration::from_secs(30);

/// How long a dictionary that is missing or fails its check is remembered as such: pages
/// that name it within this time fail without asking the database again, and a row
/// restored meanwhile is used after it.
const REFUSAL_TTL: Duration = Duration::from_secs(30);

/// How many of the newest events a dictionary is trained on, at most.
pub const DICTIONARY_SAMPLE_EVENTS: usize = 10_000;

/// The largest dictionary trained, in bytes.
pub const DICTIONARY_MAX_BYTES: usize = 16 * 1024;

/// Fewer events than this are no sample to train on.
const MIN_SAMPLES: usize = 16;

/// Tries to store a trained dictionary under the next free id (another process may take
/// it at the same time).
const INSERT_ATTEMPTS: usize = 5;

/// A dictionary trained and stored by [`Store::train_compression_dictionary`]: from now on
/// the active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrainedDictionary {
    /// Its id, named in the header of each payload compressed with it.
    pub id: u32,
    /// How many events it was trained on.
    pub samples: u64,
    /// Its size in bytes.
    pub bytes: usize,
}

/// The dictionaries this process loaded, those it recently could not use, and which one
/// is active.
#[derive(Debug, Default)]
pub(crate) struct DictionaryCache {
    loaded: Mutex<HashMap<u32, Arc<Dictionary>>>,
    /// Why each recently refused dictionary cannot be used, and since when.
    refused: Mutex<HashMap<u32, (CodecError, Instant)>>,
    /// The active dictionary's id (`None`: there is none) and when it was looked up.
    active: Mutex<Option<(Option<u32>, Instant)>>,
}

impl DictionaryCache {
    fn loaded(&self, id: u32) -> Option<Arc<Dictionary>> {
        let loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        loaded.get(&id).cloned()
    }

    fn keep(&self, dictionary: Arc<Dictionary>) {
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        refused.remove(&dictionary.id());
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        loaded.insert(dictionary.id(), dictionary);
    }

    /// Why dictionary `id` could not be used, if that was found within [`REFUSAL_TTL`].
    fn refused(&self, id: u32) -> Option<CodecError> {
        let refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        refused
            .get(&id)
            .filter(|(_, at)| at.elapsed() < REFUSAL_TTL)
            .map(|(error, _)| error.clone())
    }

    fn refuse(&self, id: u32, error: CodecError) {
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        refused.insert(id, (error, Instant::now()));
    }

    fn active(&self) -> Option<Option<u32>> {
        let active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        active
            .filter(|(_, at)| at.elapsed() < ACTIVE_DICTIONARY_TTL)
            .map(|(id, _)| id)
    }

    fn set_active(&self, id: Option<u32>) {
        *self.active.lock().unwrap_or_else(PoisonError::into_inner) = Some((id, Instant::now()));
    }
}

impl Store {
    /// Trains a zstd dictionary on the payloads of the newest events (up to
    /// [`DICTIONARY_SAMPLE_EVENTS`]; at most [`DICTIONARY_MAX_BYTES`]), stores it under
    /// the next id and makes it the active one: from now on, appends of this store (and
    /// of other processes' stores with compression, within 30 seconds) compress every
    /// payload with it, whatever its size. Payloads written before keep naming the
    /// dictionary they were compressed with, and read back with it.
    ///
    /// Small JSON events, which plain zstd leaves as they are, then take a fraction of
    /// their size (see README's storage section for the figures). Train again when the
    /// events change shape. A dictionary is made of fragments of the events it was trained
    /// on and is kept for as long as the store: a store that encrypts stores it sealed by
    /// the key ring; a store with per-stream keys refuses to train, since a forgotten
    /// stream's data would outlive its key in the dictionary.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> chronicle::Result<()> {
    /// use chronicle::{Compression, ExpectedVersion, NewEvent, Store};
    /// use serde_json::json;
    ///
    /// let store = Store::builder("sqlite::memory:")
    ///     .compression(Compression::zstd())
    ///     .open()
    ///     .await?;
    /// for n in 0..200 {
    ///     let event = NewEvent::new("account.deposited", json!({ "account": format!("acc-{n}"), "amount": n * 10, "currency": "EUR" }));
    ///     store.append(format!("account-{n}"), ExpectedVersion::NoStream, vec![event]).await?;
    /// }
    /// let trained = store.train_compression_dictionary().await?;
    /// assert_eq!(trained.id, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// - [`ValidationError::Config`] when the store does not compress, or has per-stream
    ///   keys;
    /// - [`Error::DictionaryTraining`] when there are too few events to learn from, or
    ///   zstd's trainer fails on them;
    /// - connection errors.
    #[tracing::instrument(name = "chronicle.train_compression_dictionary", skip_all)]
    pub async fn train_compression_dictionary(&self) -> Result<TrainedDictionary> {
        if self.inner.codec.compression().is_none() {
            return Err(ValidationError::Config(
                "a compression dictionary needs compression: open the store with compression(Compression::zstd())".to_owned(),
            )
            .into());
        }
        if self.inner.keys.enabled {
            return Err(ValidationError::Config(
                "a store with per-stream keys trains no compression dictionary: it would keep fragments of forgotten streams' events".to_owned(),
            )
            .into());
        }
        let samples = self.samples().await?;
        let count = samples.len() as u64;
        let training = |source| Error::DictionaryTraining {
            samples: count,
            source,
        };
        if samples.len() < MIN_SAMPLES {
            return Err(training(CodecError::Encode(format!(
                "at least {MIN_SAMPLES} events are needed"
            ))));
        }
        let raw = train_dictionary(&samples, DICTIONARY_MAX_BYTES).map_err(training)?;
        let backend = &self.inner.backend;
        for _ in 0..INSERT_ATTEMPTS {
            let latest = self
                .inner
                .retry
                .run("train_dictionary", || backend.latest_dictionary())
                .await?;
            let id = latest
                .map_or(Some(1), |id| id.checked_add(1))
                .ok_or_else(|| {
                    Error::Internal("compression dictionary ids are exhausted".to_owned())
                })?;
            let stored = self
                .inner
                .codec
                .seal_dictionary(id, &raw, count)
                .map_err(|source| Error::Dictionary { id, source })?;
            let inserted = self
                .inner
                .retry
                .run("train_dictionary", || backend.insert_dictionary(&stored))
                .await?;
            if inserted {
                self.inner
                    .dictionaries
                    .keep(Arc::new(Dictionary::new(id, &raw)));
                self.inner.dictionaries.set_active(Some(id));
                tracing::info!(
                    id,
                    samples = count,
                    bytes = raw.len(),
                    "compression dictionary trained"
                );
                return Ok(TrainedDictionary {
                    id,
                    samples: count,
                    bytes: raw.len(),
                });
            }
        }
        Err(Error::Internal(format!(
            "storing a compression dictionary: the next id was taken {INSERT_ATTEMPTS} times"
        )))
    }

    /// The JSON payloads of the newest events, those that decode.
    async fn samples(&self) -> Result<Vec<Vec<u8>>> {
        let backend = &self.inner.backend;
        let rows = self
            .inner
            .retry
            .run("train_dictionary", || {
                backend.recent_payloads(DICTIONARY_SAMPLE_EVENTS)
            })
            .await?;
        let keys = self
            .page_keys(
                rows.iter()
                    .map(|(_, stream, payload)| (stream.as_str(), payload.as_slice())),
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, stream, payload)| {
                self.inner
                    .codec
                    .decode(payload, || event_context(id, &stream), keys.get(&stream))
                    .ok()
            })
            .collect())
    }

    /// The dictionary appends compress with: the active one, when the store compresses.
    ///
    /// # Errors
    /// [`Error::Dictionary`] when the active dictionary's row fails its check; connection
    /// errors.
    pub(crate) async fn write_dictionary(&self) -> Result<Option<Arc<Dictionary>>> {
        if self.inner.codec.compression().is_none() {
            return Ok(None);
        }
        let cache = &self.inner.dictionaries;
        let id = match cache.active() {
            Some(id) => id,
            None => {
                let backend = &self.inner.backend;
                let id = self
                    .inner
                    .retry
                    .run("dictionaries", || backend.latest_dictionary())
                    .await?;
                cache.set_active(id);
                id
            }
        };
        let Some(id) = id else {
            return Ok(None);
        };
        if let Some(dictionary) = cache.loaded(id) {
            return Ok(Some(dictionary));
        }
        let dictionaries = self.page_dictionaries(HashSet::from([id])).await?;
        match dictionaries.get(id) {
            Ok(_) => Ok(cache.loaded(id)),
            Err(source) => Err(Error::Dictionary { id, source }),
        }
    }

    /// The dictionaries `ids` name: from this process's cache, the rest loaded and checked
    /// in one statement. Those that fail their check or are missing are kept with their
    /// error, and remembered for [`REFUSAL_TTL`].
    pub(crate) async fn page_dictionaries(&self, ids: HashSet<u32>) -> Result<Dictionaries> {
        let cache = &self.inner.dictionaries;
        let mut found = Dictionaries::default();
        let mut unknown = Vec::new();
        for id in ids {
            if let Some(dictionary) = cache.loaded(id) {
                found.insert(id, Ok(dictionary));
            } else if let Some(error) = cache.refused(id) {
                found.insert(id, Err(error));
            } else {
                unknown.push(id);
            }
        }
        if unknown.is_empty() {
            return Ok(found);
        }
        let backend = &self.inner.backend;
        let stored = self
            .inner
            .retry
            .run("dictionaries", || backend.dictionaries(&unknown))
            .await?;
        for stored in stored {
            let opened = self.inner.codec.open_dictionary(&stored).map(Arc::new);
            match &opened {
                Ok(dictionary) => cache.keep(Arc::clone(dictionary)),
                Err(error) => {
                    tracing::warn!(id = stored.id, %error, "compression dictionary refused");
                    cache.refuse(stored.id, error.clone());
                }
            }
            found.insert(stored.id, opened);
        }
        for id in unknown {
            if let Err(error @ CodecError::MissingDictionary { .. }) = found.get(id) {
                cache.refuse(id, error);
            }
        }
        Ok(found)
    }
}
