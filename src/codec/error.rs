//! Why a payload could not be encoded or decoded: the codec's one error type, in a file
//! of its own so that the codec's parts and the crate's `Error` name it without a circle.

/// Why a stored payload could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The header ends before it should.
    #[error("payload truncated: header needs {needed} bytes, {available} stored")]
    Truncated {
        /// Bytes the header needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The header names a format this version of chronicle does not know.
    #[error("unknown payload format version {0}")]
    UnknownFormat(u8),
    /// The header has flags this version of chronicle does not know.
    #[error("unknown payload flags {0:#04x}")]
    UnknownFlags(u8),
    /// The payload is encrypted with a key the key ring does not hold.
    #[error("payload encrypted with key `{key_id}`, which is not in the key ring")]
    MissingKey {
        /// The key id recorded in the payload.
        key_id: String,
    },
    /// Authentication failed: wrong key, tampered bytes, or a payload moved to another row.
    #[error(
        "payload does not decrypt with key `{key_id}`: wrong key, tampered bytes or payload moved to another event"
    )]
    Decrypt {
        /// The key id recorded in the payload.
        key_id: String,
    },
    /// The store encrypts, but this payload is not encrypted: written before encryption was
    /// turned on, or replaced behind the store's back. Accepted only with
    /// [`StoreBuilder::accept_unencrypted_payloads`](crate::StoreBuilder::accept_unencrypted_payloads).
    #[error("payload is not encrypted, but the store requires encryption")]
    NotEncrypted,
    /// The zstd body is corrupt.
    #[error("payload does not decompress: {0}")]
    Decompress(String),
    /// The payload would decompress past the size limit.
    #[error("payload decompresses to more than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The payload was encrypted with its stream's data key, which was destroyed
    /// (`Store::forget`): it can never be read again.
    #[error("payload's stream was forgotten: its data key is destroyed")]
    Shredded,
    /// The payload was compressed with a trained dictionary the store does not hold (its
    /// row was deleted, or the payload was copied from another store).
    #[error("payload compressed with dictionary {id}, which the store does not hold")]
    MissingDictionary {
        /// The dictionary's id, from the payload's header.
        id: u32,
    },
    /// A stored compression dictionary fails its check: its seal (a store that encrypts)
    /// or its SHA-256 does not match, or it is not sealed although the store encrypts.
    #[error("compression dictionary {id} fails its check: its stored row was changed")]
    DictionaryTampered {
        /// The dictionary's id.
        id: u32,
    },
    /// Compression or encryption failed while writing.
    #[error("payload could not be encoded: {0}")]
    Encode(String),
    /// The payload is compressed or encrypted, and this build of chronicle was made
    /// without the cargo feature that reads it.
    #[error("payload needs chronicle's `{feature}` cargo feature, which this build lacks")]
    FeatureDisabled {
        /// The missing feature: `compression` or `encryption`.
        feature: &'static str,
    },
}
