//! zstd under the codec, with a compressor per thread and level and a decompressor per
//! thread (creating one costs more than compressing a small payload).
//!
//! Built with the `compression` feature. Without it nothing is compressed, and a
//! compressed payload read by such a build is [`CodecError::FeatureDisabled`].

use super::CodecError;

#[cfg(feature = "compression")]
mod imp {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::CodecError;

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

    /// The JSON in the zstd frame `body`, refused when it would exceed `limit` bytes.
    pub(crate) fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
        // chronicle's frames record their content size: allocate exactly that, never `limit`.
        let size = match zstd::zstd_safe::get_frame_content_size(body) {
            Ok(Some(size)) if size > limit as u64 => return Err(CodecError::TooLarge { limit }),
            Ok(Some(size)) => usize::try_from(size).map_err(|_| CodecError::TooLarge { limit })?,
            Ok(None) => {
                return Err(CodecError::Decompress(
                    "zstd frame without a content size".into(),
                ));
            }
            Err(_) => return Err(CodecError::Decompress("not a zstd frame".into())),
        };
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
}

#[cfg(not(feature = "compression"))]
mod imp {
    use super::CodecError;

    pub(crate) fn compress(_json: &[u8], _level: i32) -> Result<Option<Vec<u8>>, CodecError> {
        Ok(None)
    }

    pub(crate) fn decompress(_body: &[u8], _limit: usize) -> Result<Vec<u8>, CodecError> {
        Err(CodecError::FeatureDisabled {
            feature: "compression",
        })
    }
}

pub(crate) use imp::{compress, decompress};
