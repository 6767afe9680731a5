//! zstd under the codec, with a compressor per thread and level and a decompressor per
//! thread (creating one costs more than compressing a small payload); and trained
//! dictionaries ([`Prepared`]: a dictionary loaded into contexts kept in a small pool of its
//! own, and [`train`]).
//!
//! Built with the `compression` feature. Without it nothing is compressed, and a
//! compressed payload read by such a build is [`CodecError::FeatureDisabled`](crate::CodecError::FeatureDisabled).

#[cfg(feature = "compression")]
mod imp {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};

    use zstd::zstd_safe::CParameter;

    use crate::codec::error::CodecError;

    thread_local! {
        static COMPRESSORS: RefCell<HashMap<i32, zstd::bulk::Compressor<'static>>> = RefCell::new(HashMap::new());
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    }

    /// `json` compressed at `level`; `None` when compression failed in a way that leaving
    /// it off cures.
    pub(crate) fn compress(json: &[u8], level: i32) -> Result<Option<Vec<u8>>, CodecError> {
        COMPRESSORS.with(|cell| {
            let mut compressors = cell.borrow_mut();
            let compressor = match compressors.entry(level) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => entry.insert(
                    zstd::bulk::Compressor::new(level)
                        .map_err(|error| CodecError::Encode(error.to_string()))?,
                ),
            };
            Ok(compressor.compress(json).ok())
        })
    }

    /// The content size the frame `body` records, refused past `limit`: chronicle's frames
    /// record it, so decompressing allocates exactly that, never `limit`.
    fn content_size(body: &[u8], limit: usize) -> Result<usize, CodecError> {
        match zstd::zstd_safe::get_frame_content_size(body) {
            Ok(Some(size)) if size > limit as u64 => Err(CodecError::TooLarge { limit }),
            Ok(Some(size)) => usize::try_from(size).map_err(|_| CodecError::TooLarge { limit }),
            Ok(None) => Err(CodecError::Decompress(
                "zstd frame without a content size".into(),
            )),
            Err(_) => Err(CodecError::Decompress("not a zstd frame".into())),
        }
    }

    /// The JSON in the zstd frame `body`, refused when it would exceed `limit` bytes.
    pub(crate) fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
        let size = content_size(body, limit)?;
        DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            let decompressor = match slot.as_mut() {
                Some(decompressor) => decompressor,
                None => slot.insert(
                    zstd::bulk::Decompressor::new()
                        .map_err(|error| CodecError::Decompress(error.to_string()))?,
                ),
            };
            // A body that decompresses past its declared size fails: the buffer is full.
            let mut json = Vec::with_capacity(size);
            decompressor
                .decompress_to_buffer(body, &mut json)
                .map_err(|error| CodecError::Decompress(error.to_string()))?;
            Ok(json)
        })
    }

    /// A dictionary ready to compress and decompress with: contexts that loaded it, kept
    /// for reuse (loading costs far more than compressing a small payload).
    pub(crate) struct Prepared {
        raw: Vec<u8>,
        compressors: Mutex<Vec<(i32, zstd::bulk::Compressor<'static>)>>,
        decompressors: Mutex<Vec<zstd::bulk::Decompressor<'static>>>,
    }

    /// What every zstd frame starts with (`ZSTD_MAGICNUMBER`, little-endian).
    const FRAME_MAGIC: [u8; 4] = 0xFD2F_B528_u32.to_le_bytes();

    /// Contexts kept per dictionary, at most (one per thread that uses it at once).
    const POOL: usize = 16;

    impl Prepared {
        pub(crate) fn new(raw: &[u8]) -> Self {
            Prepared {
                raw: raw.to_vec(),
                compressors: Mutex::new(Vec::new()),
                decompressors: Mutex::new(Vec::new()),
            }
        }

        /// `json` compressed at `level` with the dictionary, as a frame that records its
        /// content size, and neither the dictionary's id (the payload's header names it)
        /// nor zstd's magic number (the header says what follows): 8 bytes fewer.
        pub(crate) fn compress(
            &self,
            json: &[u8],
            level: i32,
        ) -> Result<Option<Vec<u8>>, CodecError> {
            let taken = {
                let mut pool = self
                    .compressors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let at = pool.iter().position(|(kept, _)| *kept == level);
                at.map(|at| pool.swap_remove(at).1)
            };
            let mut compressor = match taken {
                Some(compressor) => compressor,
                None => {
                    let encode = |error: std::io::Error| CodecError::Encode(error.to_string());
                    let mut compressor = zstd::bulk::Compressor::with_dictionary(level, &self.raw)
                        .map_err(encode)?;
                    compressor
                        .set_parameter(CParameter::DictIdFlag(false))
                        .map_err(encode)?;
                    compressor
                }
            };
            let body = compressor
                .compress(json)
                .ok()
                .and_then(|frame| frame.strip_prefix(&FRAME_MAGIC).map(<[u8]>::to_vec));
            let mut pool = self
                .compressors
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if pool.len() < POOL {
                pool.push((level, compressor));
            }
            Ok(body)
        }

        /// The JSON in the frame `body` (without its magic number) compressed with the
        /// dictionary, refused when it would exceed `limit` bytes.
        pub(crate) fn decompress(&self, body: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
            let body = [FRAME_MAGIC.as_slice(), body].concat();
            let body = body.as_slice();
            let size = content_size(body, limit)?;
            let taken = self
                .decompressors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let mut decompressor = match taken {
                Some(decompressor) => decompressor,
                None => zstd::bulk::Decompressor::with_dictionary(&self.raw)
                    .map_err(|error| CodecError::Decompress(error.to_string()))?,
            };
            let mut json = Vec::with_capacity(size);
            let done = decompressor
                .decompress_to_buffer(body, &mut json)
                .map_err(|error| CodecError::Decompress(error.to_string()));
            let mut pool = self
                .decompressors
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if pool.len() < POOL {
                pool.push(decompressor);
            }
            done.map(|_| json)
        }
    }

    /// A dictionary of at most `max_size` bytes trained on `samples`.
    pub(crate) fn train(samples: &[Vec<u8>], max_size: usize) -> Result<Vec<u8>, CodecError> {
        zstd::dict::from_samples(samples, max_size)
            .map_err(|error| CodecError::Encode(format!("training a dictionary failed: {error}")))
    }
}

#[cfg(not(feature = "compression"))]
mod imp {
    use crate::codec::error::CodecError;

    pub(crate) fn compress(_json: &[u8], _level: i32) -> Result<Option<Vec<u8>>, CodecError> {
        Ok(None)
    }

    pub(crate) fn decompress(_body: &[u8], _limit: usize) -> Result<Vec<u8>, CodecError> {
        Err(disabled())
    }

    fn disabled() -> CodecError {
        CodecError::FeatureDisabled {
            feature: "compression",
        }
    }

    /// A build without the `compression` feature: a dictionary that is never used.
    pub(crate) struct Prepared;

    impl Prepared {
        pub(crate) fn new(_raw: &[u8]) -> Self {
            Prepared
        }

        pub(crate) fn compress(
            &self,
            _json: &[u8],
            _level: i32,
        ) -> Result<Option<Vec<u8>>, CodecError> {
            Ok(None)
        }

        pub(crate) fn decompress(
            &self,
            _body: &[u8],
            _limit: usize,
        ) -> Result<Vec<u8>, CodecError> {
            Err(disabled())
        }
    }

    pub(crate) fn train(_samples: &[Vec<u8>], _max_size: usize) -> Result<Vec<u8>, CodecError> {
        Err(disabled())
    }
}

pub(crate) use imp::{Prepared, compress, decompress, train};
