//! Inline projections: run inside the append's own transaction, so the read model commits
//! with the events or not at all, and never lags behind the log.
//!
//! They are registered on the store's builder
//! ([`StoreBuilder::inline_projection`](crate::StoreBuilder::inline_projection)). Every
//! append through that store opens a transaction, writes the events, hands the ones each
//! projection subscribes to to its [`Projection::apply_batch`](super::Projection::apply_batch), and commits. A handler
//! error rolls the append back and is returned to the writer as
//! [`Error::InlineProjection`], whose `source()` is the projection's own error (downcast it
//! to its type). The memory backend has no transactions, so it does not
//! open with inline projections. Their [`setup`](super::Projection::setup) hooks run when
//! the store opens.

use std::sync::Arc;

use super::{DynProjection, ProjectionContext};
use crate::error::{Error, Result, ValidationError};
use crate::event::RecordedEvent;
use crate::store::Store;
use crate::store::batch::BatchTx;

/// The inline projections of a store, in registration order.
#[derive(Clone, Default)]
pub(crate) struct InlineProjections {
    projections: Vec<Arc<dyn DynProjection>>,
}

impl InlineProjections {
    pub(crate) fn register(&mut self, projection: Arc<dyn DynProjection>) {
        self.projections.push(projection);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.projections.is_empty()
    }

    /// Rejects two projections with one name (they would share a read model's identity).
    pub(crate) fn check(&self) -> Result<()> {
        for (index, projection) in self.projections.iter().enumerate() {
            let name = projection.name();
            if self.projections[..index].iter().any(|p| p.name() == name) {
                return Err(ValidationError::Config(format!(
                    "two inline projections are named `{name}`"
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Runs every projection's [`setup`](super::Projection::setup) hook, in registration
    /// order, each in a transaction of its own (when the store opens).
    ///
    /// # Errors
    /// [`Error::ProjectionSetup`] naming the first projection whose hook failed.
    pub(crate) async fn set_up(&self, store: &Store) -> Result<()> {
        for projection in &self.projections {
            super::set_up(projection.as_ref(), store).await?;
        }
        Ok(())
    }

    /// Applies `events` (just written in `tx`, in order) to every projection that
    /// subscribes to some of them.
    ///
    /// # Errors
    /// [`Error::InlineProjection`] naming the projection and the stream: the caller must
    /// not commit `tx`.
    pub(crate) async fn apply(
        &self,
        events: &[RecordedEvent],
        tx: &mut BatchTx,
        store: &Store,
    ) -> Result<()> {
        for projection in &self.projections {
            let types = projection.event_types();
            let selected: Vec<RecordedEvent>;
            let events = if types.is_empty() {
                events
            } else {
                selected = events
                    .iter()
                    .filter(|event| types.contains(&event.event_type.as_str()))
                    .cloned()
                    .collect();
                &selected
            };
            let Some(first) = events.first() else {
                continue;
            };
            let mut ctx = ProjectionContext::new(tx, store);
            projection
                .apply_batch(events, &mut ctx)
                .await
                .map_err(|source| Error::InlineProjection {
                    name: projection.name().to_owned(),
                    stream: first.stream_id.to_string(),
                    source,
                })?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for InlineProjections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.projections.iter().map(|p| p.name()))
            .finish()
    }
}
