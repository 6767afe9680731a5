//! Inline projections: run inside the append's own transaction, so the read model commits
//! with the events or not at all, and never lags behind the log.
//!
//! They are registered on the store's builder
//! ([`StoreBuilder::inline_projection`]). Each is one of the store's append hooks
//! (`store/hooks.rs`): every append through that store opens a transaction, writes the
//! events, hands the ones each projection subscribes to to its
//! [`Projection::apply_batch`](super::Projection::apply_batch), and commits. A handler
//! error rolls the append back and is returned to the writer as
//! [`Error::InlineProjection`], whose `source()` is the projection's own error (downcast it
//! to its type). Every backend runs them, the memory backend in its copy-on-write
//! transactions. Their [`setup`](super::Projection::setup) hooks run when the store
//! opens.

use std::sync::Arc;

use async_trait::async_trait;

use super::{DynProjection, Projection, ProjectionContext};
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::store::batch::DynTx;
use crate::store::hooks::AppendHook;
use crate::store::{Store, StoreBuilder};

impl StoreBuilder {
    /// Runs `projection` inline: inside every append's transaction, so its read model
    /// commits with the events (or the append fails with
    /// [`Error::InlineProjection`](crate::Error::InlineProjection) and writes nothing)
    /// and never lags behind the log. For read models that must be current the moment an
    /// append returns; the price is paid by every writer, so keep the handler short.
    ///
    /// An inline projection sees the events appended through stores that register it,
    /// not the log written before: fill its read model from history first (for example
    /// with [`Projections::rebuild`](crate::Projections::rebuild), stopped once idle),
    /// while nothing appends. Several projections run in registration order; names must
    /// be unique. Every backend runs them, `memory:` included; one that writes through
    /// portable SQL needs SQLite or PostgreSQL (on memory its setup hook gets
    /// [`Error::SqlUnavailable`](crate::Error::SqlUnavailable)). Each projection's
    /// [`setup`](crate::Projection::setup) hook runs when the store opens (every open: it
    /// must be idempotent); a failing one fails the open with
    /// [`Error::ProjectionSetup`](crate::Error::ProjectionSetup).
    ///
    /// ```
    /// # async fn demo() -> chronicle::Result<()> {
    /// use chronicle::{Projection, ProjectionContext, ProjectionError, RecordedEvent, Sql, Store};
    ///
    /// /// One row per account, updated in the append's transaction.
    /// struct Balances;
    ///
    /// impl Projection for Balances {
    ///     fn name(&self) -> &str {
    ///         "balances"
    ///     }
    ///
    ///     async fn setup(&self, ctx: &mut ProjectionContext<'_>) -> Result<(), ProjectionError> {
    ///         ctx.execute("CREATE TABLE IF NOT EXISTS balances \
    ///                      (account TEXT PRIMARY KEY, events BIGINT NOT NULL)").await?;
    ///         Ok(())
    ///     }
    ///
    ///     async fn apply(
    ///         &self,
    ///         event: &RecordedEvent,
    ///         ctx: &mut ProjectionContext<'_>,
    ///     ) -> Result<(), ProjectionError> {
    ///         ctx.execute(
    ///             Sql::new("INSERT INTO balances (account, events) VALUES ($1, 1) \
    ///                       ON CONFLICT (account) DO UPDATE SET events = balances.events + 1")
    ///                 .bind(event.stream_id.as_str()),
    ///         )
    ///         .await?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let store = Store::builder("sqlite://events.db")
    ///     .inline_projection(Balances)
    ///     .open()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn inline_projection(self, projection: impl Projection) -> Self {
        self.append_hook(Arc::new(InlineProjection(Arc::new(projection))))
    }
}

/// A projection run as an append hook.
struct InlineProjection(Arc<dyn DynProjection>);

#[async_trait]
impl AppendHook for InlineProjection {
    fn name(&self) -> &str {
        self.0.name()
    }

    /// Runs the projection's [`setup`](super::Projection::setup) hook in a transaction of
    /// its own.
    ///
    /// # Errors
    /// [`Error::ProjectionSetup`] naming the projection.
    async fn set_up(&self, store: &Store) -> Result<()> {
        super::set_up(self.0.as_ref(), store).await
    }

    /// Applies the events of the projection's types, if any.
    ///
    /// # Errors
    /// [`Error::InlineProjection`] naming the projection and the stream.
    async fn apply(
        &self,
        events: &[RecordedEvent],
        tx: &mut dyn DynTx,
        store: &Store,
    ) -> Result<()> {
        let projection = &self.0;
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
            return Ok(());
        };
        let mut ctx = ProjectionContext::new(tx, store);
        projection
            .apply_batch(events, &mut ctx)
            .await
            .map_err(|source| Error::InlineProjection {
                name: projection.name().to_owned(),
                stream: first.stream_id.to_string(),
                source,
            })
    }
}
