//! The AEAD under the codec: XChaCha20-Poly1305 with a random 24-byte nonce per message.
//!
//! Built with the `encryption` feature. Without it, `Cipher` still exists (a key ring can
//! be built and handed to the store builder, which then refuses to open), but sealing
//! and opening fail with [`CodecError::FeatureDisabled`](crate::CodecError::FeatureDisabled), so an encrypted payload read by
//! such a build is a typed error rather than a panic or garbage.

/// The length of a nonce, stored in front of every sealed message.
pub(super) const NONCE_LEN: usize = 24;

#[cfg(feature = "encryption")]
mod imp {
    use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};

    use crate::codec::cipher::NONCE_LEN;
    use crate::codec::error::CodecError;

    /// One key, ready to seal and open.
    #[derive(Clone)]
    pub(crate) struct Cipher(XChaCha20Poly1305);

    impl Cipher {
        pub(crate) fn new(key: &[u8; 32]) -> Self {
            Cipher(XChaCha20Poly1305::new(&(*key).into()))
        }

        /// A fresh random 256-bit key from the operating system's generator.
        pub(crate) fn random_key() -> [u8; 32] {
            chacha20poly1305::Key::generate().into()
        }

        /// A fresh random key, for callers compiled with and without the feature.
        pub(crate) fn try_random_key() -> Result<[u8; 32], CodecError> {
            Ok(Self::random_key())
        }

        /// A fresh random nonce.
        pub(crate) fn nonce() -> Result<[u8; NONCE_LEN], CodecError> {
            Ok(XNonce::generate().into())
        }

        /// Encrypts `msg` under `nonce`, authenticating `aad` with it. `None` only if the
        /// cipher refuses the message's length.
        pub(crate) fn seal(
            &self,
            nonce: &[u8; NONCE_LEN],
            msg: &[u8],
            aad: &[u8],
        ) -> Option<Vec<u8>> {
            self.0
                .encrypt(&XNonce::from(*nonce), Payload { msg, aad })
                .ok()
        }

        /// Decrypts and authenticates `sealed`; `None` when it does not authenticate
        /// (wrong key, tampered bytes, other `aad`).
        pub(crate) fn open(
            &self,
            nonce: &[u8; NONCE_LEN],
            sealed: &[u8],
            aad: &[u8],
        ) -> Option<Vec<u8>> {
            self.0
                .decrypt(&XNonce::from(*nonce), Payload { msg: sealed, aad })
                .ok()
        }
    }
}

#[cfg(not(feature = "encryption"))]
mod imp {
    use crate::codec::cipher::NONCE_LEN;
    use crate::codec::error::CodecError;

    /// A build without the `encryption` feature: a key is held but never used.
    #[derive(Clone)]
    pub(crate) struct Cipher;

    fn disabled() -> CodecError {
        CodecError::FeatureDisabled {
            feature: "encryption",
        }
    }

    impl Cipher {
        pub(crate) fn new(_key: &[u8; 32]) -> Self {
            Cipher
        }

        pub(crate) fn try_random_key() -> Result<[u8; 32], CodecError> {
            Err(disabled())
        }

        pub(crate) fn nonce() -> Result<[u8; NONCE_LEN], CodecError> {
            Err(disabled())
        }

        pub(crate) fn seal(
            &self,
            _nonce: &[u8; NONCE_LEN],
            _msg: &[u8],
            _aad: &[u8],
        ) -> Option<Vec<u8>> {
            None
        }

        pub(crate) fn open(
            &self,
            _nonce: &[u8; NONCE_LEN],
            _sealed: &[u8],
            _aad: &[u8],
        ) -> Option<Vec<u8>> {
            None
        }
    }
}

pub(crate) use imp::Cipher;

/// The nonce at the start of `bytes`, if they hold one.
pub(crate) fn nonce_of(bytes: &[u8]) -> Option<[u8; NONCE_LEN]> {
    bytes.get(..NONCE_LEN)?.try_into().ok()
}
