//! esrs 0.18 (feature `postgres`): a `PgStore` built by `PgStoreBuilder` (which creates its
//! `account_events` table) and an `AggregateManager`, as its README shows.
//!
//! A command is the optimistic path of its locking example: `manager.load`, then
//! `manager.handle_command`; a concurrent writer's event at the same sequence number is
//! refused by the table's unique index, and the caller sends the command again. esrs keys
//! aggregates by UUID: an account's is the v5 UUID of its name. It has no snapshots and no
//! projection runner (its event handlers run inline in `persist`); the catch-up row is its
//! rebuild primitive, `PgStore::stream_events`, read from the start.

use std::time::Instant;

use esrs::AggregateState;
use esrs::manager::AggregateManager;
use esrs::store::EventStore;
use esrs::store::postgres::{PgStore, PgStoreBuilder, PgStoreError};
use futures::TryStreamExt;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::db;
use crate::shared::bank::{self, BankError, Change, Command};
use crate::shared::settings::{Settings, Workload};
use crate::shared::workload::{Bank, Caught, Footprint, Loaded, Outcome, Res};

/// The bank account as an esrs aggregate.
pub struct BankAggregate;

impl esrs::Aggregate for BankAggregate {
    const NAME: &'static str = "account";
    type State = bank::Account;
    type Command = Command;
    type Event = Change;
    type Error = BankError;

    fn handle_command(state: &bank::Account, command: Command) -> Result<Vec<Change>, BankError> {
        state.decide(&command)
    }

    fn apply_event(mut state: bank::Account, payload: Change) -> bank::Account {
        state.apply(&payload);
        state
    }
}

/// Why esrs cannot run `workload`.
pub fn unsupported(workload: &Workload) -> Option<String> {
    match workload {
        Workload::SnapshotLoad(_) => Some("esrs has no snapshots".to_owned()),
        _ => None,
    }
}

pub struct Esrs {
    pool: PgPool,
    store: PgStore<BankAggregate>,
    manager: AggregateManager<PgStore<BankAggregate>>,
}

impl Esrs {
    /// esrs in `schema`; when `fresh`, the schema is new and the builder's migrations run.
    pub async fn open(settings: &Settings, schema: &str, fresh: bool) -> Res<Self> {
        if fresh {
            db::fresh_schema(&settings.pg_url, schema).await?;
        }
        let pool = db::pg_pool(&settings.pg_url, schema).await?;
        let builder = PgStoreBuilder::new(pool.clone());
        let builder = if fresh {
            builder
        } else {
            builder.without_running_migrations()
        };
        let store: PgStore<BankAggregate> = builder.try_build().await?;
        let manager = AggregateManager::new(store.clone());
        Ok(Esrs {
            pool,
            store,
            manager,
        })
    }

    async fn state(&self, id: Uuid) -> Res<AggregateState<bank::Account>> {
        Ok(self
            .manager
            .load(id)
            .await?
            .unwrap_or_else(|| AggregateState::with_id(id)))
    }
}

/// The UUID esrs keys `account` by.
fn aggregate_id(account: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, account.as_bytes())
}

impl Bank for Esrs {
    async fn execute(&self, account: &str, command: Command) -> Res<Outcome> {
        let state = self.state(aggregate_id(account)).await?;
        match self.manager.handle_command(state, command).await {
            Ok(Ok(_)) => Ok(Outcome::Done { retries: 0 }),
            Ok(Err(_)) => Ok(Outcome::Refused),
            Err(PgStoreError::Sqlx(error)) if db::is_unique_violation(&error) => {
                Ok(Outcome::Conflict)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn load(&self, account: &str) -> Res<Option<Loaded>> {
        Ok(self
            .manager
            .load(aggregate_id(account))
            .await?
            .map(|state| Loaded {
                version: u64::try_from(*state.sequence_number()).unwrap_or_default(),
                account: state.into_inner(),
            }))
    }

    async fn append(&self, account: &str, version: u64, changes: Vec<Change>) -> Res<()> {
        let mut state = self.state(aggregate_id(account)).await?;
        let current = u64::try_from(*state.sequence_number())?;
        if current != version {
            return Err(format!("{account} is at version {current}, expected {version}").into());
        }
        self.store.persist(&mut state, changes).await?;
        Ok(())
    }

    async fn catch_up(&self, _round: u32, _events: u64) -> Res<Caught> {
        let started = Instant::now();
        let mut events = self.store.stream_events(&self.pool);
        let (mut count, mut sum) = (0, 0);
        while let Some(event) = events.try_next().await? {
            count += 1;
            sum += event.payload.delta();
        }
        Ok(Caught {
            events: count,
            sum,
            elapsed: started.elapsed(),
            detail: "PgStore::stream_events from the start (esrs's rebuild read; it has no \
                     projection runner)"
                .to_owned(),
        })
    }

    async fn footprint(&self) -> Res<Footprint> {
        db::pg_footprint(&self.pool).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
