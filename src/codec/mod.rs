//! The payload codec: JSON bytes → zstd (optional) → XChaCha20-Poly1305 (optional), and
//! back.
//!
//! # Stored format
//!
//! A payload that is neither compressed nor encrypted is stored as its JSON text, so it
//! stays readable from `psql` and `sqlite3`. Anything else starts with a header:
//!
//! ```text
//! 0xC7 | format version (1)
//!      | flags (bit 0: zstd, bit 1: encrypted, bit 2: stream key, bit 3: dictionary)
//!      | with a dictionary: its id (unsigned LEB128, 1 to 5 bytes)
//!      | when encrypted: key id length (u8) | key id | 24-byte nonce
//! body: the (compressed) JSON, encrypted with the nonce when the flag says so
//! ```
//!
//! JSON text never starts with a byte ≥ 0x80, so the first byte tells the two apart.
//!
//! With a trained dictionary (bit 3, always with bit 0), the body is a zstd frame
//! compressed with the dictionary whose id the header holds, without zstd's magic number
//! and the frame's own dictionary id (the header says both). Payloads without bit 3 read
//! as they always did. Dictionaries live in the store's database ([`dictionary`]); a
//! payload naming one the store does not hold is [`CodecError::MissingDictionary`].
//! Encryption comes after compression, and the header it authenticates holds the
//! dictionary's id.
//!
//! With per-stream keys, a payload is encrypted with its stream's *data key* (flag bit 2,
//! empty key id). Data keys are stored wrapped (encrypted) by a key of the ring, bound to
//! their stream ([`KeyRing::wrap`], [`KeyRing::unwrap`]); destroying a stream's data key
//! makes its payloads unreadable for good ([`CodecError::Shredded`]).
//!
//! Encryption authenticates, besides the body, the header and a *context* that binds the
//! ciphertext to its place: for events, the event id and the stream id. A payload copied onto
//! another row, a flipped flag or a changed key id fails to decrypt with
//! [`CodecError::Decrypt`]. A store with a key ring refuses payloads that are not
//! encrypted ([`CodecError::NotEncrypted`]), unless told to accept older plain rows, so a
//! payload cannot be swapped for plain JSON either. Decoding never panics: every malformed
//! input is a [`CodecError`].

mod cipher;
pub(crate) mod dictionary;
mod dictionary_seal;
mod error;
mod keyfile;
mod zstd;

use std::collections::HashMap;
use std::fmt;

use uuid::Uuid;

use self::cipher::{Cipher, NONCE_LEN, nonce_of};
pub(crate) use self::dictionary::{Dictionaries, Dictionary, StoredDictionary};
pub use self::error::CodecError;
use self::zstd::{compress, decompress};

const MAGIC: u8 = 0xC7;
const FORMAT_VERSION: u8 = 1;
const FLAG_ZSTD: u8 = 0b01;
const FLAG_ENCRYPTED: u8 = 0b10;
const FLAG_STREAM_KEY: u8 = 0b100;
const FLAG_DICTIONARY: u8 = 0b1000;
const KNOWN_FLAGS: u8 = FLAG_ZSTD | FLAG_ENCRYPTED | FLAG_STREAM_KEY | FLAG_DICTIONARY;

/// zstd compression settings: payloads of at least `min_size` bytes are compressed at
/// `level`, and kept compressed only when that made them smaller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    min_size: usize,
    level: i32,
}

impl Compression {
    /// zstd at level 3 for payloads of 256 bytes or more.
    pub fn zstd() -> Self {
        Compression {
            min_size: 256,
            level: 3,
        }
    }

    /// Compress only payloads of at least `bytes` bytes.
    pub fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }

    /// The zstd level (1 fastest … 22 smallest).
    pub fn level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self::zstd()
    }
}

/// The keys payloads are encrypted with: one active key that encrypts, and older keys that
/// still decrypt. Rotating means adding a new active key and keeping the old ones.
///
/// ```
/// use chronicle::KeyRing;
///
/// let old = KeyRing::generate_key();
/// let new = KeyRing::generate_key();
/// let ring = KeyRing::new("2026-11", new)?.with_key("2026-01", old)?;
/// assert_eq!(ring.active_key_id(), "2026-11");
/// # Ok::<(), chronicle::Error>(())
/// ```
#[derive(Clone)]
pub struct KeyRing {
    active: String,
    ciphers: HashMap<String, Cipher>,
}

impl KeyRing {
    /// A ring whose active key is `key`, named `key_id` (1 to 255 bytes; it is stored in
    /// every payload).
    ///
    /// # Errors
    /// [`ValidationError::Config`](crate::ValidationError::Config) for a bad key id.
    pub fn new(key_id: impl Into<String>, key: [u8; 32]) -> crate::Result<Self> {
        let key_id = key_id.into();
        let mut ring = KeyRing {
            active: key_id.clone(),
            ciphers: HashMap::new(),
        };
        ring.insert(key_id, key)?;
        Ok(ring)
    }

    /// Adds a key that decrypts payloads written under `key_id` (it does not encrypt).
    ///
    /// # Errors
    /// [`ValidationError::Config`](crate::ValidationError::Config) for a bad or duplicate id.
    pub fn with_key(mut self, key_id: impl Into<String>, key: [u8; 32]) -> crate::Result<Self> {
        let key_id = key_id.into();
        if self.ciphers.contains_key(&key_id) {
            return Err(config_error(format!(
                "key id `{key_id}` is already in the ring"
            )));
        }
        self.insert(key_id, key)?;
        Ok(self)
    }

    fn insert(&mut self, key_id: String, key: [u8; 32]) -> crate::Result<()> {
        if key_id.is_empty() || key_id.len() > usize::from(u8::MAX) {
            return Err(config_error(format!(
                "key id `{key_id}` must be 1 to 255 bytes"
            )));
        }
        let cipher = Cipher::new(&key);
        self.ciphers.insert(key_id, cipher);
        Ok(())
    }

    /// A fresh random 256-bit key from the operating system's generator.
    #[cfg(feature = "encryption")]
    pub fn generate_key() -> [u8; 32] {
        Cipher::random_key()
    }

    /// The id of the key that encrypts.
    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// Wraps (encrypts) `data_key`, the data key of `stream`, with the active key: the
    /// nonce followed by the sealed key. Returns the active key's id with it.
    pub(crate) fn wrap(
        &self,
        stream: &str,
        data_key: &[u8; 32],
    ) -> Result<(String, Vec<u8>), CodecError> {
        let cipher = self
            .ciphers
            .get(&self.active)
            .ok_or_else(|| CodecError::Encode("the active key is not in the ring".into()))?;
        let nonce = Cipher::nonce()?;
        let sealed = cipher
            .seal(&nonce, data_key, &wrap_context(stream))
            .ok_or_else(|| CodecError::Encode("wrapping a data key failed".into()))?;
        Ok((self.active.clone(), [nonce.as_slice(), &sealed].concat()))
    }

    /// Unwraps the data key of `stream`, wrapped by the ring's key `key_id`.
    pub(crate) fn unwrap(
        &self,
        stream: &str,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, CodecError> {
        Ok(DataKey::new(&self.unwrap_bytes(stream, key_id, wrapped)?))
    }

    /// The data key of `stream`, wrapped by the ring's key `key_id`, wrapped again by the
    /// active key.
    pub(crate) fn rewrap(
        &self,
        stream: &str,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, CodecError> {
        let key = self.unwrap_bytes(stream, key_id, wrapped)?;
        Ok(self.wrap(stream, &key)?.1)
    }

    fn unwrap_bytes(
        &self,
        stream: &str,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<[u8; 32], CodecError> {
        let cipher = self
            .ciphers
            .get(key_id)
            .ok_or_else(|| CodecError::MissingKey {
                key_id: key_id.to_owned(),
            })?;
        if wrapped.len() < NONCE_LEN {
            return Err(truncated(NONCE_LEN, wrapped.len()));
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce = nonce_of(nonce).ok_or_else(|| truncated(NONCE_LEN, wrapped.len()))?;
        let key = cipher
            .open(&nonce, sealed, &wrap_context(stream))
            .ok_or_else(|| CodecError::Decrypt {
                key_id: key_id.to_owned(),
            })?;
        key.try_into().map_err(|_| CodecError::Decrypt {
            key_id: key_id.to_owned(),
        })
    }
}

/// A stream's data key, unwrapped: what its payloads are encrypted with.
#[derive(Clone)]
pub(crate) struct DataKey(Cipher);

impl DataKey {
    fn new(key: &[u8; 32]) -> Self {
        DataKey(Cipher::new(key))
    }

    /// A fresh random data key's bytes (to wrap).
    pub(crate) fn fresh_bytes() -> Result<[u8; 32], CodecError> {
        Cipher::try_random_key()
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// What a decode knows of the payload's stream's data key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StreamKey<'a> {
    /// Not looked up (the payloads at hand had no need of it).
    Unknown,
    /// The stream's data key.
    Live(&'a DataKey),
    /// The stream was forgotten: its data key is destroyed.
    Forgotten,
}

/// What decoding a payload may need besides the codec's own key ring: its stream's data
/// key, and the dictionaries of its page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Needs<'a> {
    pub stream_key: StreamKey<'a>,
    pub dictionaries: Option<&'a Dictionaries>,
}

impl<'a> From<StreamKey<'a>> for Needs<'a> {
    fn from(stream_key: StreamKey<'a>) -> Self {
        Needs {
            stream_key,
            dictionaries: None,
        }
    }
}

impl Needs<'_> {
    fn dictionary(&self, id: u32) -> Result<&Dictionary, CodecError> {
        match self.dictionaries {
            Some(dictionaries) => dictionaries.get(id),
            None => Err(CodecError::MissingDictionary { id }),
        }
    }
}

/// Which key a stored payload needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PayloadKey {
    /// None: not encrypted (or not readable as chronicle's format).
    None,
    /// The ring's key of this id.
    Ring(String),
    /// Its stream's data key.
    Stream,
}

/// Whether decoding `stored` does work (decompression or decryption): plain JSON passes
/// through as it is.
pub(crate) fn is_framed(stored: &[u8]) -> bool {
    stored.first() == Some(&MAGIC)
}

/// The key `stored` is encrypted with, read from its header.
pub(crate) fn payload_key(stored: &[u8]) -> PayloadKey {
    match Header::read(stored) {
        Ok(Some(header)) if header.flags & FLAG_STREAM_KEY != 0 => PayloadKey::Stream,
        Ok(Some(Header {
            key: Some((key_id, _)),
            ..
        })) => PayloadKey::Ring(String::from_utf8_lossy(key_id).into_owned()),
        _ => PayloadKey::None,
    }
}

/// The id of the dictionary `stored` was compressed with, read from its header.
pub(crate) fn payload_dictionary(stored: &[u8]) -> Option<u32> {
    Header::read(stored).ok().flatten()?.dictionary
}

/// A dictionary of at most `max_size` bytes trained on `samples` (JSON payloads).
pub(crate) fn train_dictionary(
    samples: &[Vec<u8>],
    max_size: usize,
) -> Result<Vec<u8>, CodecError> {
    self::zstd::train(samples, max_size)
}

/// The header of a framed payload, parsed.
#[derive(Debug)]
struct Header<'a> {
    flags: u8,
    dictionary: Option<u32>,
    /// When encrypted: the ring key's id (empty with a stream key) and the nonce.
    key: Option<(&'a [u8], [u8; NONCE_LEN])>,
    /// Where the body starts.
    len: usize,
}

impl<'a> Header<'a> {
    /// The header of `stored`; `None` for plain JSON.
    fn read(stored: &'a [u8]) -> Result<Option<Self>, CodecError> {
        if stored.first() != Some(&MAGIC) {
            return Ok(None);
        }
        let flags = match stored {
            [_, FORMAT_VERSION, flags, ..] => *flags,
            [_, version, _, ..] => return Err(CodecError::UnknownFormat(*version)),
            _ => return Err(truncated(3, stored.len())),
        };
        if flags & !KNOWN_FLAGS != 0
            || flags & FLAG_STREAM_KEY != 0 && flags & FLAG_ENCRYPTED == 0
            || flags & FLAG_DICTIONARY != 0 && flags & FLAG_ZSTD == 0
        {
            return Err(CodecError::UnknownFlags(flags));
        }
        let mut len = 3;
        let dictionary = if flags & FLAG_DICTIONARY != 0 {
            // Runs out, or is longer than a `u32` allows.
            let (id, used) = read_leb128(&stored[len..])
                .ok_or_else(|| truncated(stored.len() + 1, stored.len()))?;
            len += used;
            Some(id)
        } else {
            None
        };
        let key = if flags & FLAG_ENCRYPTED != 0 {
            let key_len = usize::from(
                *stored
                    .get(len)
                    .ok_or_else(|| truncated(len + 1, stored.len()))?,
            );
            let end = len + 1 + key_len + NONCE_LEN;
            if stored.len() < end {
                return Err(truncated(end, stored.len()));
            }
            let key_id = &stored[len + 1..len + 1 + key_len];
            let nonce = nonce_of(&stored[len + 1 + key_len..end])
                .ok_or_else(|| truncated(end, stored.len()))?;
            len = end;
            Some((key_id, nonce))
        } else {
            None
        };
        Ok(Some(Header {
            flags,
            dictionary,
            key,
            len,
        }))
    }
}

/// `value` as unsigned LEB128 (7 bits a byte, low first, high bit: more follow).
fn write_leb128(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value & 0x7F) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The unsigned LEB128 at the start of `bytes` and its length; `None` when it runs out or
/// does not fit a `u32`.
fn read_leb128(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut value: u32 = 0;
    for (at, byte) in bytes.iter().take(5).enumerate() {
        let bits = u32::from(byte & 0x7F);
        let shift = 7 * at as u32;
        if shift == 28 && bits > 0x0F {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some((value, at + 1));
        }
    }
    None
}

/// The context a wrapped data key is bound to: its stream.
fn wrap_context(stream: &str) -> Vec<u8> {
    [b"stream-key\0".as_slice(), stream.as_bytes()].concat()
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.ciphers.keys().collect();
        ids.sort();
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("key_ids", &ids)
            .finish_non_exhaustive()
    }
}

fn config_error(message: String) -> crate::Error {
    crate::ValidationError::Config(message).into()
}

/// The context an event's payload is bound to: its id and stream.
pub(crate) fn event_context(event_id: Uuid, stream: &str) -> Vec<u8> {
    let mut context = Vec::with_capacity(16 + stream.len());
    context.extend_from_slice(event_id.as_bytes());
    context.extend_from_slice(stream.as_bytes());
    context
}

/// The context a snapshot's payload is bound to: its stream, version and schema version
/// (and a label, so a snapshot payload does not pass for an event's).
pub(crate) fn snapshot_context(stream: &str, version: u64, schema_version: u32) -> Vec<u8> {
    let mut context = Vec::with_capacity(9 + stream.len() + 12);
    context.extend_from_slice(b"snapshot\0");
    context.extend_from_slice(stream.as_bytes());
    context.extend_from_slice(&version.to_be_bytes());
    context.extend_from_slice(&schema_version.to_be_bytes());
    context
}

/// Encodes and decodes payloads with the store's compression and key ring.
#[derive(Debug, Clone)]
pub(crate) struct Codec {
    compression: Option<Compression>,
    keys: Option<KeyRing>,
    /// Decompressed payloads larger than this are refused (guards against zstd bombs).
    max_decoded_size: usize,
    /// With a key ring: read payloads that are not encrypted instead of refusing them.
    accept_unencrypted: bool,
}

impl Codec {
    pub(crate) fn new(
        compression: Option<Compression>,
        keys: Option<KeyRing>,
        max_decoded_size: usize,
    ) -> Self {
        Codec {
            compression,
            keys,
            max_decoded_size,
            accept_unencrypted: false,
        }
    }

    /// The compression settings, if the store compresses.
    pub(crate) fn compression(&self) -> Option<Compression> {
        self.compression
    }

    /// The key ring, if the store encrypts.
    pub(crate) fn keys(&self) -> Option<&KeyRing> {
        self.keys.as_ref()
    }

    /// With a key ring, also reads payloads that are not encrypted (a store that turned
    /// encryption on and still holds older rows).
    pub(crate) fn accept_unencrypted(mut self, accept: bool) -> Self {
        self.accept_unencrypted = accept;
        self
    }

    /// Encodes `json` for storage, binding it to `context` (built only when encrypting):
    /// encrypted with `stream_key` when given, else with the ring's active key, if any.
    pub(crate) fn encode(
        &self,
        json: &[u8],
        context: impl FnOnce() -> Vec<u8>,
        stream_key: Option<&DataKey>,
    ) -> Result<Vec<u8>, CodecError> {
        self.encode_with(json, context, stream_key, None)
    }

    /// [`Codec::encode`], compressing with `dictionary` when given and the store
    /// compresses: then payloads of any size are compressed (and kept so when that made
    /// them smaller), since small ones are what dictionaries are for.
    pub(crate) fn encode_with(
        &self,
        json: &[u8],
        context: impl FnOnce() -> Vec<u8>,
        stream_key: Option<&DataKey>,
        dictionary: Option<&Dictionary>,
    ) -> Result<Vec<u8>, CodecError> {
        let mut used = None;
        let compressed = match (self.compression, dictionary) {
            (Some(compression), Some(dictionary)) => {
                used = Some(dictionary.id());
                dictionary.zstd.compress(json, compression.level)?
            }
            (Some(compression), None) if json.len() >= compression.min_size => {
                compress(json, compression.level)?
            }
            _ => None,
        }
        .filter(|body| body.len() < json.len());
        let mut prefix = Vec::with_capacity(8);
        prefix.extend_from_slice(&[MAGIC, FORMAT_VERSION, 0]);
        if compressed.is_some() {
            prefix[2] |= FLAG_ZSTD;
            if let Some(id) = used {
                prefix[2] |= FLAG_DICTIONARY;
                write_leb128(&mut prefix, id);
            }
        }
        let mut flags = prefix[2];
        let (cipher, key_id) = match (stream_key, &self.keys) {
            (Some(data_key), _) => {
                flags |= FLAG_STREAM_KEY;
                (&data_key.0, &b""[..])
            }
            (None, Some(keys)) => (
                keys.ciphers.get(&keys.active).ok_or_else(|| {
                    CodecError::Encode("the active key is not in the ring".into())
                })?,
                keys.active.as_bytes(),
            ),
            (None, None) => {
                return Ok(match compressed {
                    Some(body) => [prefix, body].concat(),
                    None => json.to_vec(),
                });
            }
        };
        flags |= FLAG_ENCRYPTED;
        let nonce = Cipher::nonce()?;
        let mut header = prefix;
        header.reserve(1 + key_id.len() + NONCE_LEN);
        header[2] = flags;
        header.push(key_id.len() as u8);
        header.extend_from_slice(key_id);
        header.extend_from_slice(&nonce);
        let aad = [header.as_slice(), &context()].concat();
        let plain = compressed.as_deref().unwrap_or(json);
        let sealed = cipher
            .seal(&nonce, plain, &aad)
            .ok_or_else(|| CodecError::Encode("encryption failed".into()))?;
        header.extend_from_slice(&sealed);
        Ok(header)
    }

    /// Decodes stored bytes back to JSON text, checking them against `context` (built only
    /// for encrypted payloads), with what `needs` holds (a stream's data key, the page's
    /// dictionaries). Plain payloads are returned as they are, without a copy.
    pub(crate) fn decode<'a>(
        &self,
        stored: Vec<u8>,
        context: impl FnOnce() -> Vec<u8>,
        needs: impl Into<Needs<'a>>,
    ) -> Result<Vec<u8>, CodecError> {
        let needs = needs.into();
        // Authenticity comes from encryption: a store that encrypts refuses anything else.
        let must_be_encrypted = self.keys.is_some() && !self.accept_unencrypted;
        let Some(header) = Header::read(&stored)? else {
            return if must_be_encrypted {
                Err(CodecError::NotEncrypted)
            } else {
                Ok(stored)
            };
        };
        if must_be_encrypted && header.flags & FLAG_ENCRYPTED == 0 {
            return Err(CodecError::NotEncrypted);
        }
        let decrypted;
        let body = match header.key {
            Some((key_id, nonce)) => {
                let key_id = String::from_utf8_lossy(key_id).into_owned();
                let cipher = self.cipher(header.flags, &key_id, needs.stream_key)?;
                let aad = [&stored[..header.len], &context()].concat();
                decrypted = cipher
                    .open(&nonce, &stored[header.len..], &aad)
                    .ok_or(CodecError::Decrypt { key_id })?;
                decrypted.as_slice()
            }
            None => &stored[header.len..],
        };
        match (header.flags & FLAG_ZSTD != 0, header.dictionary) {
            (true, Some(id)) => needs
                .dictionary(id)?
                .zstd
                .decompress(body, self.max_decoded_size),
            (true, None) => decompress(body, self.max_decoded_size),
            (false, _) => Ok(body.to_vec()),
        }
    }

    /// The cipher that opens a payload with these flags and ring key id.
    fn cipher<'k>(
        &'k self,
        flags: u8,
        key_id: &str,
        stream_key: StreamKey<'k>,
    ) -> Result<&'k Cipher, CodecError> {
        if flags & FLAG_STREAM_KEY != 0 {
            return match stream_key {
                StreamKey::Live(data_key) => Ok(&data_key.0),
                StreamKey::Forgotten => Err(CodecError::Shredded),
                StreamKey::Unknown => Err(CodecError::MissingKey {
                    key_id: "(the stream's data key)".into(),
                }),
            };
        }
        self.keys
            .as_ref()
            .and_then(|keys| keys.ciphers.get(key_id))
            .ok_or_else(|| CodecError::MissingKey {
                key_id: key_id.to_owned(),
            })
    }
}

fn truncated(needed: usize, available: usize) -> CodecError {
    CodecError::Truncated { needed, available }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(compress: bool, encrypt: bool) -> Codec {
        let keys = encrypt.then(|| KeyRing::new("k1", [7; 32]).expect("valid key id"));
        Codec::new(
            compress.then(|| Compression::zstd().min_size(0)),
            keys,
            1 << 20,
        )
    }

    #[test]
    fn plain_payloads_are_stored_as_json() {
        let json = br#"{"a":1}"#;
        let stored = codec(false, false)
            .encode(json, || b"ctx".to_vec(), None)
            .expect("encodes");
        assert_eq!(stored, json);
    }

    #[test]
    fn every_combination_round_trips() {
        let json = serde_json::to_vec(&serde_json::json!({ "text": "x".repeat(500) }))
            .expect("serializes");
        for (compress, encrypt) in [(false, false), (true, false), (false, true), (true, true)] {
            let codec = codec(compress, encrypt);
            let stored = codec
                .encode(&json, || b"ctx".to_vec(), None)
                .expect("encodes");
            assert_eq!(
                codec
                    .decode(stored.clone(), || b"ctx".to_vec(), StreamKey::Unknown)
                    .expect("decodes"),
                json
            );
            if compress {
                assert!(stored.len() < json.len(), "compression made it smaller");
            }
        }
    }

    #[test]
    fn moved_ciphertext_fails_to_decrypt() {
        let codec = codec(false, true);
        let stored = codec
            .encode(b"{}", || b"row-1".to_vec(), None)
            .expect("encodes");
        assert!(matches!(
            codec.decode(stored.clone(), || b"row-2".to_vec(), StreamKey::Unknown),
            Err(CodecError::Decrypt { .. })
        ));
    }

    #[test]
    fn zstd_bombs_are_refused() {
        let json = vec![b' '; 4096];
        let writer = Codec::new(Some(Compression::zstd().min_size(0)), None, 1 << 20);
        let stored = writer
            .encode(&json, || b"".to_vec(), None)
            .expect("encodes");
        let reader = Codec::new(None, None, 1024);
        assert_eq!(
            reader.decode(stored.clone(), || b"".to_vec(), StreamKey::Unknown),
            Err(CodecError::TooLarge { limit: 1024 })
        );
    }

    #[test]
    fn wrong_and_missing_keys_are_typed_errors() {
        let writer = codec(false, true);
        let stored = writer
            .encode(b"{}", || b"ctx".to_vec(), None)
            .expect("encodes");
        let wrong = Codec::new(
            None,
            Some(KeyRing::new("k1", [8; 32]).expect("ring")),
            1 << 20,
        );
        assert_eq!(
            wrong.decode(stored.clone(), || b"ctx".to_vec(), StreamKey::Unknown),
            Err(CodecError::Decrypt {
                key_id: "k1".into()
            })
        );
        let other = Codec::new(
            None,
            Some(KeyRing::new("k2", [7; 32]).expect("ring")),
            1 << 20,
        );
        assert_eq!(
            other.decode(stored.clone(), || b"ctx".to_vec(), StreamKey::Unknown),
            Err(CodecError::MissingKey {
                key_id: "k1".into()
            })
        );
        let none = Codec::new(None, None, 1 << 20);
        assert_eq!(
            none.decode(stored.clone(), || b"ctx".to_vec(), StreamKey::Unknown),
            Err(CodecError::MissingKey {
                key_id: "k1".into()
            })
        );
    }

    #[test]
    fn encrypting_stores_refuse_plain_payloads() {
        let plain = codec(true, false);
        let encrypting = codec(false, true);
        for json in [br#"{"a":1}"#.to_vec(), vec![b'x'; 600]] {
            let stored = plain.encode(&json, Vec::new, None).expect("encodes");
            assert_eq!(
                encrypting.decode(stored.clone(), Vec::new, StreamKey::Unknown),
                Err(CodecError::NotEncrypted)
            );
            let migrating = codec(false, true).accept_unencrypted(true);
            assert_eq!(
                migrating
                    .decode(stored, Vec::new, StreamKey::Unknown)
                    .expect("decodes"),
                json
            );
        }
    }

    #[test]
    fn decoded_payloads_are_sized_to_their_content() {
        let codec = codec(true, false);
        let json = vec![b' '; 2000];
        let stored = codec.encode(&json, Vec::new, None).expect("encodes");
        let decoded = codec
            .decode(stored, Vec::new, StreamKey::Unknown)
            .expect("decodes");
        assert_eq!(decoded, json);
        assert!(decoded.capacity() < 4096, "capacity {}", decoded.capacity());
    }

    #[test]
    fn rotated_rings_read_old_payloads() {
        let old = codec(true, true);
        let stored = old
            .encode(br#"{"v":1}"#, || b"ctx".to_vec(), None)
            .expect("encodes");
        let ring = KeyRing::new("k2", [9; 32])
            .and_then(|ring| ring.with_key("k1", [7; 32]))
            .expect("ring");
        let rotated = Codec::new(None, Some(ring), 1 << 20);
        assert_eq!(
            rotated
                .decode(stored.clone(), || b"ctx".to_vec(), StreamKey::Unknown)
                .expect("decodes"),
            br#"{"v":1}"#
        );
        let fresh = rotated
            .encode(b"{}", || b"ctx".to_vec(), None)
            .expect("encodes");
        assert_eq!(&fresh[4..6], b"k2", "new payloads use the active key");
    }

    #[test]
    fn stream_keys_encrypt_and_shred() {
        let ring = KeyRing::new("k1", [7; 32]).expect("ring");
        let codec = Codec::new(None, Some(ring.clone()), 1 << 20);
        let bytes = DataKey::fresh_bytes().expect("a fresh key");
        let data_key = DataKey::new(&bytes);
        let stored = codec
            .encode(br#"{"a":1}"#, || b"ctx".to_vec(), Some(&data_key))
            .expect("encodes");
        assert_eq!(payload_key(&stored), PayloadKey::Stream);
        assert_eq!(
            codec
                .decode(
                    stored.clone(),
                    || b"ctx".to_vec(),
                    StreamKey::Live(&data_key)
                )
                .expect("decodes"),
            br#"{"a":1}"#
        );
        assert_eq!(
            codec.decode(stored.clone(), || b"ctx".to_vec(), StreamKey::Forgotten),
            Err(CodecError::Shredded)
        );
        assert!(matches!(
            codec.decode(stored.clone(), || b"ctx".to_vec(), StreamKey::Unknown),
            Err(CodecError::MissingKey { .. })
        ));

        // The wrapped key opens for its stream only, and survives a rotation.
        let (key_id, wrapped) = ring.wrap("user-1", &bytes).expect("wraps");
        assert!(ring.unwrap("user-2", &key_id, &wrapped).is_err());
        let unwrapped = ring.unwrap("user-1", &key_id, &wrapped).expect("unwraps");
        assert!(
            codec
                .decode(
                    stored.clone(),
                    || b"ctx".to_vec(),
                    StreamKey::Live(&unwrapped)
                )
                .is_ok()
        );
        let rotated = KeyRing::new("k2", [9; 32])
            .and_then(|ring| ring.with_key("k1", [7; 32]))
            .expect("ring");
        let rewrapped = rotated
            .rewrap("user-1", &key_id, &wrapped)
            .expect("rewraps");
        let only_new = KeyRing::new("k2", [9; 32]).expect("ring");
        let again = only_new
            .unwrap("user-1", "k2", &rewrapped)
            .expect("unwraps");
        assert!(
            codec
                .decode(stored, || b"ctx".to_vec(), StreamKey::Live(&again))
                .is_ok()
        );
    }

    #[test]
    fn payload_keys_are_read_from_the_header() {
        let ring_payload = codec(true, true)
            .encode(&[b' '; 600], Vec::new, None)
            .expect("encodes");
        assert_eq!(payload_key(&ring_payload), PayloadKey::Ring("k1".into()));
        assert_eq!(payload_key(br#"{"a":1}"#), PayloadKey::None);
        let compressed = codec(true, false)
            .encode(&[b' '; 600], Vec::new, None)
            .expect("encodes");
        assert_eq!(payload_key(&compressed), PayloadKey::None);
    }

    fn trained(id: u32) -> Dictionary {
        let samples: Vec<Vec<u8>> = (0..200)
            .map(|n| {
                format!(
                    r#"{{"account":"ACC-{n:06}","amount":{},"currency":"EUR","channel":"web"}}"#,
                    n * 7
                )
                .into_bytes()
            })
            .collect();
        Dictionary::new(id, &train_dictionary(&samples, 4096).expect("trains"))
    }

    #[test]
    fn dictionaries_are_named_in_the_header_and_bound_by_encryption() {
        let json = br#"{"account":"ACC-000777","amount":5439,"currency":"EUR","channel":"web"}"#;
        let dictionary = trained(300);
        let mut page = Dictionaries::default();
        page.insert(300, Ok(std::sync::Arc::new(trained(300))));
        let needs = Needs {
            stream_key: StreamKey::Unknown,
            dictionaries: Some(&page),
        };
        for encrypt in [false, true] {
            let codec = codec(true, encrypt);
            let stored = codec
                .encode_with(json, || b"ctx".to_vec(), None, Some(&dictionary))
                .expect("encodes");
            // 300 takes two bytes of LEB128.
            assert_eq!(
                &stored[..5],
                &[MAGIC, FORMAT_VERSION, stored[2], 0xAC, 0x02]
            );
            assert_eq!(payload_dictionary(&stored), Some(300));
            assert_eq!(
                codec
                    .decode(stored.clone(), || b"ctx".to_vec(), needs)
                    .expect("decodes"),
                json
            );
            assert_eq!(
                codec.decode(stored.clone(), || b"ctx".to_vec(), StreamKey::Unknown),
                Err(CodecError::MissingDictionary { id: 300 })
            );
            if encrypt {
                assert_eq!(payload_key(&stored), PayloadKey::Ring("k1".into()));
                // Another dictionary id in the header fails authentication.
                let mut other = stored.clone();
                other[3] = 0xAD;
                assert!(matches!(
                    codec.decode(other, || b"ctx".to_vec(), needs),
                    Err(CodecError::Decrypt { .. })
                ));
            } else {
                assert!(stored.len() < json.len() / 2, "{} bytes", stored.len());
            }
        }
    }

    #[test]
    fn payloads_without_a_dictionary_read_as_before() {
        // Written by chronicle before dictionaries: plain zstd, header of three bytes.
        let json = vec![b' '; 600];
        let stored = codec(true, false)
            .encode(&json, Vec::new, None)
            .expect("encodes");
        assert_eq!(&stored[..3], &[MAGIC, FORMAT_VERSION, FLAG_ZSTD]);
        assert_eq!(payload_dictionary(&stored), None);
        let decoded = codec(true, false).decode(stored, Vec::new, StreamKey::Unknown);
        assert_eq!(decoded.expect("decodes"), json);
    }

    #[test]
    fn dictionary_rows_are_checked() {
        let raw = b"a dictionary, or any bytes standing for one".to_vec();
        for encrypt in [false, true] {
            let codec = codec(true, encrypt);
            let stored = codec.seal_dictionary(1, &raw, 10).expect("seals");
            assert_eq!(stored.key_id.is_some(), encrypt);
            assert_eq!(codec.open_dictionary(&stored).expect("opens").id(), 1);
            let mut changed = stored.clone();
            let last = changed.content.len() - 1;
            changed.content[last] ^= 1;
            assert_eq!(
                codec.open_dictionary(&changed).map(|d| d.id()),
                Err(CodecError::DictionaryTampered { id: 1 })
            );
            let mut moved = stored.clone();
            moved.id = 2;
            if encrypt {
                assert_eq!(
                    codec.open_dictionary(&moved).map(|d| d.id()),
                    Err(CodecError::DictionaryTampered { id: 2 })
                );
            }
        }
        let plain = codec(true, false)
            .seal_dictionary(1, &raw, 10)
            .expect("seals");
        assert_eq!(
            codec(true, true).open_dictionary(&plain).map(|d| d.id()),
            Err(CodecError::DictionaryTampered { id: 1 })
        );
    }

    #[test]
    fn leb128_round_trips_and_refuses_overlong_ids() {
        for id in [0, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut bytes = Vec::new();
            write_leb128(&mut bytes, id);
            assert_eq!(read_leb128(&bytes), Some((id, bytes.len())));
        }
        assert_eq!(read_leb128(&[0xFF, 0xFF, 0xFF, 0xFF, 0x1F]), None);
        assert_eq!(read_leb128(&[0x80, 0x80]), None);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn any_json() -> impl Strategy<Value = Vec<u8>> {
            let leaf = prop_oneof![
                any::<i64>().prop_map(serde_json::Value::from),
                ".{0,40}".prop_map(serde_json::Value::from),
                any::<bool>().prop_map(serde_json::Value::from),
            ];
            let value = leaf.prop_recursive(3, 64, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
                    prop::collection::btree_map("[a-z]{1,8}", inner, 0..8)
                        .prop_map(|map| { serde_json::Value::Object(map.into_iter().collect()) }),
                ]
            });
            value.prop_map(|value| serde_json::to_vec(&value).expect("serializes"))
        }

        proptest! {
            #[test]
            fn round_trips(json in any_json(), compress: bool, encrypt: bool, context in prop::collection::vec(any::<u8>(), 0..40)) {
                let codec = codec(compress, encrypt);
                let stored = codec.encode(&json, || context.clone(), None).expect("encodes");
                prop_assert_eq!(codec.decode(stored, || context.clone(), StreamKey::Unknown).expect("decodes"), json);
            }

            #[test]
            fn damaged_bytes_never_panic(json in any_json(), compress: bool, encrypt: bool, flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 0..4), cut in any::<prop::sample::Index>(), truncate: bool) {
                let codec = codec(compress, encrypt);
                let mut stored = codec.encode(&json, || b"ctx".to_vec(), None).expect("encodes");
                for (index, mask) in &flips {
                    let at = index.index(stored.len());
                    stored[at] ^= mask;
                }
                if truncate {
                    stored.truncate(cut.index(stored.len()));
                }
                let damaged = !flips.is_empty() || truncate;
                match codec.decode(stored.clone(), || b"ctx".to_vec(), StreamKey::Unknown) {
                    // Encrypted payloads are authenticated: any damage is detected.
                    Ok(_) if encrypt && damaged => prop_assert!(stored.first() != Some(&MAGIC), "damage went unnoticed"),
                    Ok(_) | Err(_) => {}
                }
            }
        }
    }
}
