//! Projections seen from outside the application that runs them: the stored checkpoints,
//! and resetting one so that the application rebuilds its read model. Operators' tools
//! (the `chronicle projections` commands) use these; they need neither the projection's
//! code nor its runner.

use chrono::{DateTime, Utc};

use crate::error::{Result, ValidationError};
use crate::read::LogPosition;
use crate::store::Store;
use crate::store::batch::Flush;

/// A stored checkpoint, from [`Store::projection_checkpoints`]: a projection's (or an
/// outbox processor's, whose checkpoints live in the same table) place in the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ProjectionCheckpoint {
    /// The projection's name.
    pub name: String,
    /// Every event up to here is applied.
    pub position: LogPosition,
    /// When the checkpoint last moved (`None` on the memory backend, which does not
    /// record it).
    pub updated_at: Option<DateTime<Utc>>,
    /// About how many events are still to apply: the log's last position minus the
    /// checkpoint's (positions freed by hard deletes or rolled-back appends count too, as
    /// do events of types the projection does not read, until it passes them).
    pub lag_events: u64,
}

impl Store {
    /// Every stored checkpoint, by name, with its distance to the end of the log. A
    /// projection appears once it committed its first batch, and no longer after a
    /// reset, until it commits again.
    ///
    /// # Errors
    /// Connection errors; [`Error::CorruptRow`](crate::Error::CorruptRow) for a checkpoint
    /// holding a value chronicle never writes.
    #[tracing::instrument(name = "chronicle.projection_checkpoints", skip_all)]
    pub async fn projection_checkpoints(&self) -> Result<Vec<ProjectionCheckpoint>> {
        // Reads only: never SQLite's write lock.
        let mut tx = self.begin_read().await?;
        let stored = tx.checkpoints().await?;
        tx.commit().await?;
        let end = self.last_position().await?;
        Ok(stored
            .into_iter()
            .map(|stored| ProjectionCheckpoint {
                lag_events: end.saturating_sub(stored.position.position()),
                name: stored.name,
                position: stored.position,
                updated_at: stored.updated_at,
            })
            .collect())
    }

    /// Resets the projection `name` from outside the application that runs it: deletes
    /// its checkpoint, so that its read model is rebuilt from the start of the log.
    /// Returns `false` when no checkpoint of that name is stored (nothing to reset).
    ///
    /// What happens next is the running application's doing (see
    /// [`Projections::spawn`](crate::Projections::spawn)): the projection's task notices
    /// the missing checkpoint at its next batch, or within its poll interval when idle,
    /// empties the read model with [`Projection::reset`](crate::Projection::reset) and
    /// applies the log again from the start. An application not running then does the
    /// same when it next starts the projection. Until then the read model keeps what it
    /// had. On PostgreSQL the delete waits for a batch in flight to commit, so none of
    /// its writes outlive the reset.
    ///
    /// # Errors
    /// [`ValidationError::InvalidText`] for a name no projection can have (see
    /// [`MAX_NAME_LEN`](crate::MAX_NAME_LEN)); [`ValidationError::Config`] for `chronicle.outbox`, the outbox processor's
    /// checkpoint: reading the log again would create the requests of purged ones anew,
    /// and run their handlers again; connection errors.
    #[tracing::instrument(name = "chronicle.reset_projection", skip(self))]
    pub async fn reset_projection(&self, name: &str) -> Result<bool> {
        crate::text::check_name("projection name", name)?;
        if name == crate::outbox::DEFAULT_NAME {
            return Err(ValidationError::Config(format!(
                "`{name}` is the outbox processor's checkpoint, not a projection's: resetting \
                 it would run handlers again for events whose requests were purged"
            ))
            .into());
        }
        let mut tx = self.begin_batch(Flush::Wait).await?;
        let deleted = tx.reset_checkpoint(name).await?;
        tx.commit().await?;
        if deleted {
            tracing::info!(projection = %name, "checkpoint deleted; the projection rebuilds");
        }
        Ok(deleted)
    }
}
