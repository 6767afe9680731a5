//! Snapshots: an aggregate's state saved at a version, so loading it replays only the
//! events after that version.
//!
//! A snapshot carries the stream version it covers and the *schema version* of the state's
//! shape. Its payload goes through the same codec as events (compressed and encrypted
//! alike), bound to its stream and version. The [`Repository`](crate::Repository) takes and
//! uses snapshots by itself; the store methods here are the manual API.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, ValidationError};
use crate::stream::StreamId;

/// A snapshot to save: the state at `version`, in shape `schema_version`.
///
/// ```
/// use chronicle::NewSnapshot;
///
/// let snapshot = NewSnapshot::from_serialize(100, 1, &serde_json::json!({ "balance": 40 }))?
///     .keep_latest(3);
/// assert_eq!(snapshot.version(), 100);
/// # Ok::<(), chronicle::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewSnapshot {
    pub(crate) version: u64,
    pub(crate) schema_version: u32,
    pub(crate) payload: Vec<u8>,
    pub(crate) keep: Option<usize>,
}

impl NewSnapshot {
    /// The state `state` as of stream version `version`, in shape `schema_version`.
    ///
    /// # Errors
    /// [`ValidationError::Unserializable`] when `T`'s `Serialize` fails.
    pub fn from_serialize<T: Serialize + ?Sized>(
        version: u64,
        schema_version: u32,
        state: &T,
    ) -> Result<Self> {
        let payload = serde_json::to_vec(state).map_err(|error| {
            Error::from(ValidationError::Unserializable {
                event_type: "snapshot".to_owned(),
                reason: error.to_string(),
            })
        })?;
        Ok(NewSnapshot {
            version,
            schema_version,
            payload,
            keep: None,
        })
    }

    /// After saving, delete the stream's older snapshots so that only the newest `count`
    /// (at least 1) remain. By default all are kept.
    pub fn keep_latest(mut self, count: usize) -> Self {
        self.keep = Some(count.max(1));
        self
    }

    /// The stream version the snapshot covers.
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// A stored snapshot, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// The stream version it covers: events up to this one are folded in.
    pub version: u64,
    /// The shape of the state it holds.
    pub schema_version: u32,
    /// When it was saved.
    pub created_at: DateTime<Utc>,
    pub(crate) payload: Vec<u8>,
}

impl Snapshot {
    /// The state deserialized into `T`.
    ///
    /// # Errors
    /// [`Error::SnapshotPayload`] when the JSON does not fit `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload).map_err(|source| Error::SnapshotPayload {
            stream: self.stream_id.to_string(),
            version: self.version,
            source,
        })
    }

    /// The state's JSON text, decrypted and decompressed.
    pub fn payload_json(&self) -> &[u8] {
        &self.payload
    }
}

/// What [`Store::list_snapshots`](crate::Store::list_snapshots) tells about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The stream version it covers.
    pub version: u64,
    /// The shape of the state it holds.
    pub schema_version: u32,
    /// Its size as stored (after compression and encryption), in bytes.
    pub stored_size: u64,
    /// When it was saved.
    pub created_at: DateTime<Utc>,
}
