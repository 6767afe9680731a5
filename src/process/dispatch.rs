//! Issuing a process manager's commands: the repositories, by aggregate type, and the
//! typed call each [`IssuedCommand`](super::IssuedCommand) makes with its cause set.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;

use crate::aggregate::{Aggregate, CommandError, Repository};
use crate::error::{Error, Result};
use crate::event::EventMetadata;
use crate::store::Store;

/// How an issued command is executed: typed for its aggregate when it was issued.
pub(crate) type DispatchFn = for<'a> fn(
    &'a Repositories,
    &'a str,
    Box<dyn Any + Send + Sync>,
    EventMetadata,
) -> BoxFuture<'a, Result<Dispatched>>;

/// What became of an issued command.
#[derive(Debug)]
pub(crate) enum Dispatched {
    /// Executed (whether or not it wrote events).
    Done,
    /// The aggregate refused it (a domain error, as text): reported, not retried.
    Refused(String),
}

/// A process manager's repositories, one per aggregate type: those it was given, else
/// the store's default one, made on first use and kept (with its cache of states).
#[derive(Clone)]
pub(crate) struct Repositories {
    store: Store,
    by_type: Arc<Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>>,
}

impl Repositories {
    pub(crate) fn new(store: Store) -> Self {
        Repositories {
            store,
            by_type: Arc::default(),
        }
    }

    /// Uses `repository` for the commands to `A`.
    pub(crate) fn insert<A: Aggregate>(&self, repository: Repository<A>) {
        self.by_type
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(TypeId::of::<A>(), Box::new(repository));
    }

    /// The repository of `A`.
    fn get<A: Aggregate>(&self) -> Repository<A> {
        let mut by_type = self.by_type.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = by_type
            .entry(TypeId::of::<A>())
            .or_insert_with(|| Box::new(self.store.repository::<A>()));
        match entry.downcast_ref::<Repository<A>>() {
            Some(repository) => repository.clone(),
            // Keyed by `A`'s `TypeId`, so always `Repository<A>`; kept total all the same.
            None => self.store.repository::<A>(),
        }
    }
}

impl std::fmt::Debug for Repositories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repositories").finish_non_exhaustive()
    }
}

/// Executes `command` (an `A::Command`) on the aggregate `id` with `metadata`.
pub(crate) fn dispatch<'a, A: Aggregate>(
    repositories: &'a Repositories,
    id: &'a str,
    command: Box<dyn Any + Send + Sync>,
    metadata: EventMetadata,
) -> BoxFuture<'a, Result<Dispatched>>
where
    A::Command: 'static,
{
    Box::pin(async move {
        let command = command.downcast::<A::Command>().map_err(|_| {
            Error::Internal(format!("a command issued to `{}` of another type", A::NAME))
        })?;
        let repository = repositories.get::<A>();
        match repository.execute_with(id, *command, metadata).await {
            Ok(_) => Ok(Dispatched::Done),
            Err(CommandError::Domain(error)) => Ok(Dispatched::Refused(error.to_string())),
            Err(CommandError::Store(error)) => Err(error),
        }
    })
}
