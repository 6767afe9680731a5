//! Trained zstd dictionaries: the dictionary a payload's header names by id, its stored
//! form, and the dictionaries one page of payloads needs. How a stored dictionary is
//! sealed and checked is `dictionary_seal.rs`.
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

use super::error::CodecError;
use super::zstd::Prepared;

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
pub struct StoredDictionary {
    /// The id payloads name it by.
    pub id: u32,
    /// The ring key it is sealed with; `None`: stored plain.
    pub key_id: Option<String>,
    /// The dictionary as stored: sealed (nonce, then the sealed bytes) or plain.
    pub content: Vec<u8>,
    /// The SHA-256 of the plain dictionary.
    pub sha256: Vec<u8>,
    /// How many events it was trained on.
    pub samples: u64,
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
