//! cqrs-es 0.5 on PostgreSQL (postgres-es 0.5) and SQLite (sqlite-es 0.5), with the event
//! store framework (`postgres_cqrs`: every command replays the whole stream) or the snapshot
//! framework (`postgres_snapshot_cqrs`: from the newest snapshot, one every
//! `snapshot_every` events).
//!
//! Used as the crates' READMEs show: the tables of their `init.sql`, the `*_cqrs`
//! constructors, `CqrsFramework::execute`. A conflict is `AggregateError::AggregateConflict`
//! and the caller sends the command again. Loads go through the same kind of
//! `PersistedEventStore` the framework holds (`EventStore::load_aggregate`), appends through
//! its `commit`; the projection catch-up is a `QueryReplay::replay_all`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, QueryReplay};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventEnvelope, EventStore, Query};
use postgres_es::PostgresEventRepository;
use serde::{Deserialize, Serialize};
use sqlite_es::SqliteEventRepository;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::db;
use crate::shared::bank::{self, BankError, Change, Command};
use crate::shared::settings::{Settings, Workload, remove_sqlite};
use crate::shared::workload::{Bank, Caught, Footprint, Loaded, Outcome, Res};

/// The tables of postgres-es's `db/init.sql` (without its sample view and row).
const PG_TABLES: &str = "
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);";

/// The tables of sqlite-es's migration (without its sample view and row).
const SQLITE_TABLES: &str = "
CREATE TABLE events
(
  aggregate_type text                          NOT NULL,
  aggregate_id   text                          NOT NULL,
  sequence       integer CHECK (sequence >= 0) NOT NULL,
  event_type     text                          NOT NULL,
  event_version  text                          NOT NULL,
  payload        text                          NOT NULL,
  metadata       text                          NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;
CREATE TABLE snapshots
(
  aggregate_type   text                                  NOT NULL,
  aggregate_id     text                                  NOT NULL,
  last_sequence    integer CHECK (last_sequence >= 0)    NOT NULL,
  current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
  payload          text                                  NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;";

/// The bank account as a cqrs-es aggregate.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BankAccount(bank::Account);

impl Aggregate for BankAccount {
    const TYPE: &'static str = "account";
    type Command = Command;
    type Event = Change;
    type Error = BankError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Command,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), BankError> {
        for change in self.0.decide(&command)? {
            sink.write(change, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Change) {
        self.0.apply(&event);
    }
}

impl cqrs_es::DomainEvent for Change {
    fn event_type(&self) -> String {
        match self {
            Change::Opened { .. } => "Opened",
            Change::Deposited { .. } => "Deposited",
            Change::Withdrawn { .. } => "Withdrawn",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

/// The database a cqrs-es system runs on.
pub trait Backend: Send + Sync + 'static {
    type Repo: PersistedEventRepository + 'static;
    /// A repository on the pool (the `*_cqrs` constructors build theirs the same way).
    fn repository(&self) -> Self::Repo;
    fn footprint(&self) -> impl Future<Output = Res<Footprint>> + Send;
    fn close(&self) -> impl Future<Output = ()> + Send;
}

pub struct Pg(PgPool);

impl Backend for Pg {
    type Repo = PostgresEventRepository;

    fn repository(&self) -> PostgresEventRepository {
        PostgresEventRepository::new(self.0.clone())
    }

    async fn footprint(&self) -> Res<Footprint> {
        db::pg_footprint(&self.0).await
    }

    async fn close(&self) {
        self.0.close().await;
    }
}

pub struct Sqlite {
    pool: SqlitePool,
    path: PathBuf,
}

impl Backend for Sqlite {
    type Repo = SqliteEventRepository;

    fn repository(&self) -> SqliteEventRepository {
        SqliteEventRepository::new(self.pool.clone())
    }

    async fn footprint(&self) -> Res<Footprint> {
        db::sqlite_footprint(&self.pool, &self.path).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

type Framework<R> = CqrsFramework<BankAccount, PersistedEventStore<R, BankAccount>>;

/// A cqrs-es system: the framework for commands, a store of the same kind for loads and
/// appends.
pub struct Cqrs<B: Backend> {
    backend: B,
    framework: Framework<B::Repo>,
    store: PersistedEventStore<B::Repo, BankAccount>,
}

/// Why cqrs-es cannot run `workload` with or without snapshots.
pub fn unsupported(snapshots: bool, workload: &Workload) -> Option<String> {
    match workload {
        Workload::SnapshotLoad(_) if !snapshots => {
            Some("the event store framework has no snapshots".to_owned())
        }
        _ => None,
    }
}

impl<B: Backend> Cqrs<B> {
    fn new(backend: B, snapshot_every: Option<usize>) -> Self {
        let store = |repo| match snapshot_every {
            Some(size) => PersistedEventStore::new_snapshot_store(repo, size),
            None => PersistedEventStore::new_event_store(repo),
        };
        let framework = CqrsFramework::new(store(backend.repository()), vec![], ());
        let store = store(backend.repository());
        Cqrs {
            backend,
            framework,
            store,
        }
    }
}

impl Cqrs<Pg> {
    /// postgres-es in `schema`, created with its tables when `fresh`.
    pub async fn postgres(
        settings: &Settings,
        schema: &str,
        fresh: bool,
        snapshots: bool,
    ) -> Res<Self> {
        if fresh {
            db::fresh_schema(&settings.pg_url, schema).await?;
        }
        let pool = db::pg_pool(&settings.pg_url, schema).await?;
        if fresh {
            sqlx::raw_sql(PG_TABLES).execute(&pool).await?;
        }
        let every = snapshots.then_some(settings.snapshot_every as usize);
        Ok(Cqrs::new(Pg(pool), every))
    }
}

impl Cqrs<Sqlite> {
    /// sqlite-es on the file at `path`, created with its tables when `fresh`.
    pub async fn sqlite(
        settings: &Settings,
        path: PathBuf,
        fresh: bool,
        snapshots: bool,
    ) -> Res<Self> {
        if fresh {
            remove_sqlite(&path)?;
        }
        let pool = db::sqlite_pool(&path).await?;
        if fresh {
            sqlx::raw_sql(SQLITE_TABLES).execute(&pool).await?;
        }
        let every = snapshots.then_some(settings.snapshot_every as usize);
        Ok(Cqrs::new(Sqlite { pool, path }, every))
    }
}

/// Sums what a replay dispatches.
#[derive(Default)]
struct Sum {
    events: AtomicU64,
    sum: AtomicI64,
}

#[async_trait::async_trait]
impl Query<BankAccount> for Arc<Sum> {
    async fn dispatch(&self, _aggregate_id: &str, events: &[EventEnvelope<BankAccount>]) {
        for event in events {
            self.events.fetch_add(1, Ordering::Relaxed);
            self.sum.fetch_add(event.payload.delta(), Ordering::Relaxed);
        }
    }
}

impl<B: Backend> Bank for Cqrs<B> {
    async fn execute(&self, account: &str, command: Command) -> Res<Outcome> {
        match self.framework.execute(account, command).await {
            Ok(()) => Ok(Outcome::Done { retries: 0 }),
            Err(AggregateError::AggregateConflict) => Ok(Outcome::Conflict),
            Err(AggregateError::UserError(_)) => Ok(Outcome::Refused),
            Err(error) => Err(error.to_string().into()),
        }
    }

    async fn load(&self, account: &str) -> Res<Option<Loaded>> {
        let context = self
            .store
            .load_aggregate(account)
            .await
            .map_err(|error| error.to_string())?;
        Ok((context.current_sequence > 0).then_some(Loaded {
            version: context.current_sequence as u64,
            account: context.aggregate.0,
        }))
    }

    async fn append(&self, account: &str, version: u64, changes: Vec<Change>) -> Res<()> {
        let context = self
            .store
            .load_aggregate(account)
            .await
            .map_err(|error| error.to_string())?;
        if context.current_sequence as u64 != version {
            return Err(format!(
                "{account} is at version {}, expected {version}",
                context.current_sequence
            )
            .into());
        }
        self.store
            .commit(changes, context, HashMap::new())
            .await
            .map_err(|error| error.to_string())?;
        Ok(())
    }

    async fn catch_up(&self, _round: u32, _events: u64) -> Res<Caught> {
        let sum = Arc::new(Sum::default());
        let started = Instant::now();
        QueryReplay::new(self.backend.repository(), Arc::clone(&sum))
            .replay_all()
            .await
            .map_err(|error| error.to_string())?;
        Ok(Caught {
            events: sum.events.load(Ordering::Relaxed),
            sum: sum.sum.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
            detail: "QueryReplay::replay_all into a Query summing the changes".to_owned(),
        })
    }

    async fn footprint(&self) -> Res<Footprint> {
        self.backend.footprint().await
    }

    async fn close(&self) {
        self.backend.close().await;
    }
}
