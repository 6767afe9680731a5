//! How a dictionary is stored: sealed by the key ring's active key and bound to its id when
//! the store encrypts, plain otherwise, and checked by its SHA-256 either way; sealed
//! again when a key rotation retires the key that sealed it.

use sha2::{Digest, Sha256};

use super::Codec;
use super::cipher::{Cipher, NONCE_LEN, nonce_of};
use super::dictionary::{Dictionary, StoredDictionary};
use super::error::CodecError;

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
