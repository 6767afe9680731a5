//! Append hooks: work that runs inside an append's own transaction and commits with it,
//! or fails the append. Inline projections are the one kind today
//! (`projection/inline.rs`); the store knows them only through this trait, so it imports
//! no projection code.

use std::sync::Arc;

use async_trait::async_trait;

use super::Store;
use super::batch::DynTx;
use crate::error::{Result, ValidationError};
use crate::event::RecordedEvent;

/// One piece of work run in every append's transaction of a store.
#[async_trait]
pub(crate) trait AppendHook: Send + Sync {
    /// Its name, unique among a store's hooks.
    fn name(&self) -> &str;

    /// Prepares what it writes (tables, say), when the store opens.
    async fn set_up(&self, store: &Store) -> Result<()>;

    /// Handles `events`, just written in `tx` in order. An error means the caller must not
    /// commit `tx`.
    async fn apply(
        &self,
        events: &[RecordedEvent],
        tx: &mut dyn DynTx,
        store: &Store,
    ) -> Result<()>;
}

/// A store's append hooks, in registration order.
#[derive(Clone, Default)]
pub(crate) struct AppendHooks {
    hooks: Vec<Arc<dyn AppendHook>>,
}

impl AppendHooks {
    pub(crate) fn register(&mut self, hook: Arc<dyn AppendHook>) {
        self.hooks.push(hook);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Rejects two hooks with one name (two inline projections would share a read model's
    /// identity).
    pub(crate) fn check(&self) -> Result<()> {
        for (index, hook) in self.hooks.iter().enumerate() {
            let name = hook.name();
            if self.hooks[..index].iter().any(|h| h.name() == name) {
                return Err(ValidationError::Config(format!(
                    "two inline projections are named `{name}`"
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Runs every hook's [`AppendHook::set_up`], in registration order.
    pub(crate) async fn set_up(&self, store: &Store) -> Result<()> {
        for hook in &self.hooks {
            hook.set_up(store).await?;
        }
        Ok(())
    }

    /// Runs every hook on `events`, in registration order; the first error stops them.
    pub(crate) async fn apply(
        &self,
        events: &[RecordedEvent],
        tx: &mut dyn DynTx,
        store: &Store,
    ) -> Result<()> {
        for hook in &self.hooks {
            hook.apply(events, tx, store).await?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for AppendHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.hooks.iter().map(|hook| hook.name()))
            .finish()
    }
}
