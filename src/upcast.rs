//! Upcasting: bringing payloads written by older code up to the schema version the code
//! reads now.
//!
//! An upcaster is registered per event type on the [`StoreBuilder`](crate::StoreBuilder).
//! It receives a payload and the schema version it is in, and returns the payload in the
//! next version; decoding applies it step by step, v1 → v2 → v3, until the version the
//! [`DomainEvent`](crate::DomainEvent) declares. Stored rows are never rewritten.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::domain_event::EventView;
use crate::error::{Error, Result, ValidationError};

/// Brings one event type's payload from the given version to the next.
type Upcaster = Arc<dyn Fn(Value, u32) -> Value + Send + Sync>;

/// The upcasters of a store, by event type.
#[derive(Clone, Default)]
pub(crate) struct Upcasters {
    by_type: HashMap<String, Upcaster>,
    /// An event type registered twice, reported when the store opens.
    duplicate: Option<String>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<_> = self.by_type.keys().collect();
        types.sort();
        f.debug_struct("Upcasters").field("types", &types).finish()
    }
}

impl Upcasters {
    pub(crate) fn register(
        &mut self,
        event_type: String,
        upcaster: impl Fn(Value, u32) -> Value + Send + Sync + 'static,
    ) {
        if self.by_type.contains_key(&event_type) {
            self.duplicate.get_or_insert(event_type.clone());
        }
        self.by_type.insert(event_type, Arc::new(upcaster));
    }

    /// Refuses a set with two upcasters for one type: the second would silently replace
    /// the first, whose steps would then never run.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.duplicate {
            Some(event_type) => Err(ValidationError::Config(format!(
                "two upcasters are registered for `{event_type}`; register one function that \
                 handles every version step (it receives the version to upcast from)"
            ))
            .into()),
            None => Ok(()),
        }
    }

    /// `event`'s payload in schema version `current`: as stored when it is already there,
    /// upcast step by step when it is older.
    ///
    /// # Errors
    /// [`Error::SchemaVersion`] for a version newer than `current` or a missing upcaster;
    /// [`Error::Payload`] when an old payload is not JSON.
    pub(crate) fn bring_to<'a>(&self, event: EventView<'a>, current: u32) -> Result<Cow<'a, [u8]>> {
        let stored = event.schema_version;
        if stored == current {
            return Ok(Cow::Borrowed(event.payload));
        }
        let version_error = |stored| Error::SchemaVersion {
            stream: event.stream.to_string(),
            event_id: event.id,
            event_type: event.event_type.to_owned(),
            stored,
            current,
        };
        let upcaster = match self.by_type.get(event.event_type) {
            Some(upcaster) if stored < current => upcaster,
            _ => return Err(version_error(stored)),
        };
        let mut payload: Value =
            serde_json::from_slice(event.payload).map_err(|source| Error::Payload {
                stream: event.stream.to_string(),
                event_id: event.id,
                event_type: event.event_type.to_owned(),
                source,
            })?;
        for version in stored..current {
            payload = upcaster(payload, version);
        }
        serde_json::to_vec(&payload)
            .map(Cow::Owned)
            .map_err(|error| {
                Error::Internal(format!("an upcast payload does not serialize: {error}"))
            })
    }
}
