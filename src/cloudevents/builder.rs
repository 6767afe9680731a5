//! [`CloudEventBuilder`]: a [`CloudEvent`] built attribute by attribute, and checked
//! against every rule of the specification ([`validate`](super::validate)) before it
//! exists.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};

use super::error::CloudEventError;
use super::event::{CloudEvent, Data, ExtensionValue};
use super::validate;

impl CloudEvent {
    /// A builder for an event with the three required attributes (specversion is 1.0).
    pub fn builder(
        id: impl Into<String>,
        source: impl Into<String>,
        ty: impl Into<String>,
    ) -> CloudEventBuilder {
        CloudEventBuilder {
            event: CloudEvent {
                id: id.into(),
                source: source.into(),
                ty: ty.into(),
                datacontenttype: None,
                dataschema: None,
                subject: None,
                time: None,
                extensions: BTreeMap::new(),
                data: None,
            },
        }
    }

    /// A builder starting from this event, to derive another from it.
    pub fn to_builder(&self) -> CloudEventBuilder {
        CloudEventBuilder {
            event: self.clone(),
        }
    }
}

/// Builds a [`CloudEvent`]; [`build`](CloudEventBuilder::build) checks it.
#[derive(Debug, Clone)]
pub struct CloudEventBuilder {
    event: CloudEvent,
}

impl CloudEventBuilder {
    /// Sets `id`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.event.id = id.into();
        self
    }

    /// Sets `source`.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.event.source = source.into();
        self
    }

    /// Sets `type`.
    pub fn ty(mut self, ty: impl Into<String>) -> Self {
        self.event.ty = ty.into();
        self
    }

    /// Sets `subject`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.event.subject = Some(subject.into());
        self
    }

    /// Sets `time`.
    pub fn time(mut self, time: impl Into<DateTime<FixedOffset>>) -> Self {
        self.event.time = Some(time.into());
        self
    }

    /// Sets `datacontenttype`.
    pub fn datacontenttype(mut self, media_type: impl Into<String>) -> Self {
        self.event.datacontenttype = Some(media_type.into());
        self
    }

    /// Sets `dataschema`.
    pub fn dataschema(mut self, uri: impl Into<String>) -> Self {
        self.event.dataschema = Some(uri.into());
        self
    }

    /// Sets the extension attribute `name` (replacing one of that name).
    pub fn extension(mut self, name: impl Into<String>, value: impl Into<ExtensionValue>) -> Self {
        self.event.extensions.insert(name.into(), value.into());
        self
    }

    /// Removes the extension attribute `name`.
    pub fn without_extension(mut self, name: &str) -> Self {
        self.event.extensions.remove(name);
        self
    }

    /// JSON data; `datacontenttype` becomes `application/json` unless set.
    pub fn data_json(mut self, value: serde_json::Value) -> Self {
        if self.event.datacontenttype.is_none() {
            self.event.datacontenttype = Some("application/json".to_owned());
        }
        self.event.data = Some(Data::Json(value));
        self
    }

    /// Text data of the media type `media_type`.
    pub fn data_text(mut self, media_type: impl Into<String>, text: impl Into<String>) -> Self {
        self.event.datacontenttype = Some(media_type.into());
        self.event.data = Some(Data::Text(text.into()));
        self
    }

    /// Binary data of the media type `media_type`.
    pub fn data_binary(mut self, media_type: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        self.event.datacontenttype = Some(media_type.into());
        self.event.data = Some(Data::Binary(bytes.into()));
        self
    }

    /// Sets the data as given, leaving `datacontenttype` alone (`None` removes the data).
    pub fn data(mut self, data: Option<Data>) -> Self {
        self.event.data = data;
        self
    }

    /// The event, checked against every rule of the specification.
    ///
    /// # Errors
    /// The first rule broken, naming its attribute ([`CloudEventError::attribute`]).
    pub fn build(self) -> Result<CloudEvent, CloudEventError> {
        validate::event(&self.event)?;
        Ok(self.event)
    }
}
