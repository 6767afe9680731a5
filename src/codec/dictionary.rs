//! Trained zstd dictionaries: what a payload's header names by id, how a dictionary is
//! stored (sealed by the key ring when the store encrypts, and checked by its SHA-256
//! either way), and the dictionaries one page of payloads needs.
//!
//! A zstd dictionary is made of fragments of the payloads it was trained on, so a store
//! that encrypts stores its dictionaries encrypted too, bound to their id: a row changed,
//! swapped for another id's or replaced by an unsealed one fails with
//! [`CodecError::DictionaryTampered`]. Where nothing is encrypted, the hash stored beside
//! the dictionary detects a changed dictionary (not a changed hash: without a key,
//! nothing in the store is authenticated).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::cipher::{Cipher, NONCE_LEN};
use super::zstd::Prepared;
use super::{Codec, CodecError, nonce_of};

/// A dictionary ready for use, under the id payloads name it by.
pub(crate) struct Dictionary {
    id: u32,
    size: usize,
    pub(super) zstd: Prepared,
}

impl Dictionary {
    /// The dictionary `raw`, named `id`.
    pub(crate) fn new(id: u32, raw: &[u8]) -> Self {
        Dictionary {
            id,
            size: raw.len(),
            zstd: Prepared::new(raw),
        }
    }

    /// The id payloads compressed with it carry in their header.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }
}

impl fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dictionary")
            .field("id", &self.id)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A dictionary as stored: sealed by the ring key `key_id` (nonce, then the sealed bytes)
/// or plain (`key_id` `None`), with the SHA-256 of the plain dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredDictionary {
    pub id: u32,
    pub key_id: Option<String>,
    pub content: Vec<u8>,
    pub sha256: Vec<u8>,
    /// How many events it was trained on.
    pub samples: u64,
}

/// What a dictionary's seal is bound to: its id.
fn dictionary_context(id: u32) -> Vec<u8> {
    [b"compression-dictionary\0".as_slice(), &id.to_be_bytes()].concat()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

impl Codec {
    /// The row that stores `raw` as dictionary `id`: sealed by the ring's active key when
    /// the store encrypts.
    pub(crate) fn seal_dictionary(
        &self,
        id: u32,
        raw: &[u8],
        samples: u64,
    ) -> Result<StoredDictionary, CodecError> {
        let (key_id, content) = match &self.keys {
            Some(keys) => {
                let cipher = keys.ciphers.get(&keys.active).ok_or_else(|| {
                    CodecError::Encode("the active key is not in the ring".into())
                })?;
                let nonce = Cipher::nonce()?;
                let sealed = cipher
                    .seal(&nonce, raw, &dictionary_context(id))
                    .ok_or_else(|| CodecError::Encode("sealing a dictionary failed".into()))?;
                (
                    Some(keys.active.clone()),
                    [nonce.as_slice(), &sealed].concat(),
                )
            }
            None => (None, raw.to_vec()),
        };
        Ok(StoredDictionary {
            id,
            key_id,
            content,
            sha256: sha256(raw),
            samples,
        })
    }

    /// The dictionary `stored` holds, once it passed its checks.
    ///
    /// # Errors
    /// [`CodecError::DictionaryTampered`] when its seal or hash does not match, or when it
    /// is not sealed and the store requires encryption; [`CodecError::MissingKey`] when it
    /// is sealed by a key the ring does not hold.
    pub(crate) fn open_dictionary(
        &self,
        stored: &StoredDictionary,
    ) -> Result<Dictionary, CodecError> {
        Ok(Dictionary::new(stored.id, &self.dictionary_bytes(stored)?))
    }

    /// `stored` sealed again by the ring's active key, when a retired ring key seals it
    /// (`None` otherwise: it is plain, or already under the active key).
    ///
    /// # Errors
    /// As [`Codec::open_dictionary`].
    pub(crate) fn reseal_dictionary(
        &self,
        stored: &StoredDictionary,
    ) -> Result<Option<StoredDictionary>, CodecError> {
        let (Some(keys), Some(key_id)) = (&self.keys, &stored.key_id) else {
            return Ok(None);
        };
        if *key_id == keys.active {
            return Ok(None);
        }
        let raw = self.dictionary_bytes(stored)?;
        self.seal_dictionary(stored.id, &raw, stored.samples)
            .map(Some)
    }

    /// The plain dictionary `stored` holds, checked as [`Codec::open_dictionary`] says.
    fn dictionary_bytes(&self, stored: &StoredDictionary) -> Result<Vec<u8>, CodecError> {
        let id = stored.id;
        let tampered = || CodecError::DictionaryTampered { id };
        let raw = match &stored.key_id {
            Some(key_id) => {
                let cipher = self
                    .keys
                    .as_ref()
                    .and_then(|keys| keys.ciphers.get(key_id.as_str()))
                    .ok_or_else(|| CodecError::MissingKey {
                        key_id: key_id.clone(),
                    })?;
                let nonce = nonce_of(&stored.content).ok_or_else(tampered)?;
                cipher
                    .open(
                        &nonce,
                        &stored.content[NONCE_LEN..],
                        &dictionary_context(id),
                    )
                    .ok_or_else(tampered)?
            }
            None if self.keys.is_some() && !self.accept_unencrypted => return Err(tampered()),
            None => stored.content.clone(),
        };
        if sha256(&raw) != stored.sha256 {
            return Err(tampered());
        }
        Ok(raw)
    }
}

/// The dictionaries a page of payloads needs, by id: loaded, or why not. An id missing
/// here is a dictionary the store does not hold.
#[derive(Debug, Default)]
pub(crate) struct Dictionaries(HashMap<u32, Result<Arc<Dictionary>, CodecError>>);

impl Dictionaries {
    pub(crate) fn insert(&mut self, id: u32, dictionary: Result<Arc<Dictionary>, CodecError>) {
        self.0.insert(id, dictionary);
    }

    /// Dictionary `id`, or why it cannot be used.
    pub(crate) fn get(&self, id: u32) -> Result<&Dictionary, CodecError> {
        match self.0.get(&id) {
            Some(Ok(dictionary)) => Ok(dictionary),
            Some(Err(error)) => Err(error.clone()),
            None => Err(CodecError::MissingDictionary { id }),
        }
    }
}
