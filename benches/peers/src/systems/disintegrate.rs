//! disintegrate 4 with disintegrate-postgres 4: a `PgEventStore`, its `decision_maker`
//! (without snapshots, or `WithPgSnapshot` storing one when a load applied more than
//! `snapshot_every` events), and a `PgEventListener` for the projection catch-up.
//!
//! Adapted: `PgEventStore::try_new` runs a migration whose `event_store_begin_epoch` uses
//! the hexadecimal literal `0xFFFFFFFF`, which only PostgreSQL 16+ parses. The server here
//! is 15, so [`create_schema`] creates the same objects by hand with `4294967295` instead,
//! and the store is opened with `PgEventStore::new_uninitialized`. Nothing else differs.
//!
//! A command is a [`Decision`] whose state query is the account's events; the decision
//! maker's append fails with `Error::Concurrency` (or a serialization failure of its
//! SERIALIZABLE transaction) when another writer appended to the account since the load,
//! and the caller sends the command again.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use disintegrate::serde::json::Json;
use disintegrate::{
    Decision, DecisionError, Event, EventListener, EventSourcedStateStore, EventStore, LoadState,
    NoSnapshot, PersistDecision, PersistedEvent, SnapshotConfig, StateMutate, StateQuery,
    StreamQuery, WithSnapshot, query,
};
use disintegrate_postgres::{
    Migrator, PgDecisionMaker, PgEventId, PgEventListener, PgEventListenerConfig, PgEventStore,
    PgSnapshotter, WithPgSnapshot,
};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPool;

use crate::db;
use crate::shared::bank::{self, BankError, Change, Command};
use crate::shared::settings::Settings;
use crate::shared::workload::{Bank, Caught, Footprint, Loaded, Outcome, Res};

/// What `PgEventStore::try_new` creates (disintegrate-postgres 4.0.1's
/// `event_store/sql/*.sql` and the domain-id column of `Migrator::init_event_store`), with
/// `0xFFFFFFFF` written as `4294967295` for PostgreSQL 15.
const SCHEMA_SQL: &str = r#"
CREATE SEQUENCE IF NOT EXISTS seq_event_event_id;
CREATE TABLE IF NOT EXISTS event (
    event_id BIGINT PRIMARY KEY DEFAULT nextval('seq_event_event_id'),
    event_type VARCHAR(255),
    payload BYTEA,
    inserted_at TIMESTAMP DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_event_type_btree ON event(event_type);
CREATE OR REPLACE FUNCTION event_store_current_epoch()
RETURNS BIGINT AS $$
DECLARE
    persisted_event_id BIGINT;
    pending_event_id BIGINT;
    db_id INT;
BEGIN
    SELECT COALESCE(MAX(event_id), 0) INTO persisted_event_id FROM event;
    SELECT oid INTO db_id FROM pg_database WHERE datname = current_database();

    SELECT MIN((l3.objid::bigint << 32) + l2.objid::bigint)
    INTO pending_event_id
    FROM pg_locks l1
    INNER JOIN pg_locks l2 ON l1.pid = l2.pid
    INNER JOIN pg_locks l3 ON l1.pid = l3.pid
    WHERE
        l1.classid = db_id
        AND l2.classid = 1
        AND l3.classid = 2
        AND l1.locktype = 'advisory';

    RETURN LEAST(COALESCE(pending_event_id, persisted_event_id), persisted_event_id);
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION event_store_begin_epoch()
RETURNS void AS $$
DECLARE
    id BIGINT;
    db_id INT;
BEGIN
    SELECT last_value INTO id FROM seq_event_event_id;
    SELECT oid INTO db_id FROM pg_database WHERE datname = current_database();

    PERFORM pg_try_advisory_xact_lock_shared(db_id, 0);
    PERFORM pg_try_advisory_xact_lock_shared(1, (id & 4294967295)::bit(32)::integer);
    PERFORM pg_try_advisory_xact_lock_shared(2, (id >> 32)::bit(32)::integer);
END;
$$ LANGUAGE plpgsql;
ALTER TABLE event ADD COLUMN IF NOT EXISTS account_id TEXT;
CREATE INDEX IF NOT EXISTS idx_event_account_id ON event (account_id) WHERE account_id IS NOT NULL;
"#;

/// The bank's events as disintegrate wants them: each carries its domain id.
#[derive(Debug, Clone, PartialEq, Eq, Event, Serialize, Deserialize)]
pub enum DomainEvent {
    AccountOpened {
        #[id]
        account_id: String,
        owner: String,
    },
    AmountDeposited {
        #[id]
        account_id: String,
        amount: u64,
    },
    AmountWithdrawn {
        #[id]
        account_id: String,
        amount: u64,
    },
}

impl DomainEvent {
    fn new(account_id: &str, change: Change) -> Self {
        let account_id = account_id.to_owned();
        match change {
            Change::Opened { owner } => DomainEvent::AccountOpened { account_id, owner },
            Change::Deposited { amount } => DomainEvent::AmountDeposited { account_id, amount },
            Change::Withdrawn { amount } => DomainEvent::AmountWithdrawn { account_id, amount },
        }
    }

    fn change(&self) -> Change {
        match self {
            DomainEvent::AccountOpened { owner, .. } => Change::Opened {
                owner: owner.clone(),
            },
            DomainEvent::AmountDeposited { amount, .. } => Change::Deposited { amount: *amount },
            DomainEvent::AmountWithdrawn { amount, .. } => Change::Withdrawn { amount: *amount },
        }
    }
}

/// An account's state, built from the events with its id.
#[derive(Debug, Default, Clone, StateQuery, Serialize, Deserialize)]
#[state_query(DomainEvent)]
pub struct AccountState {
    #[id]
    account_id: String,
    account: bank::Account,
}

impl AccountState {
    fn new(account_id: &str) -> Self {
        AccountState {
            account_id: account_id.to_owned(),
            account: bank::Account::default(),
        }
    }
}

impl StateMutate for AccountState {
    fn mutate(&mut self, event: DomainEvent) {
        self.account.apply(&event.change());
    }
}

/// A bank command as a decision on one account.
pub struct Execute {
    account_id: String,
    command: Command,
}

impl Decision for Execute {
    type Event = DomainEvent;
    type StateQuery = AccountState;
    type Error = BankError;

    fn state_query(&self) -> AccountState {
        AccountState::new(&self.account_id)
    }

    fn process(&self, state: &AccountState) -> Result<Vec<DomainEvent>, BankError> {
        Ok(state
            .account
            .decide(&self.command)?
            .into_iter()
            .map(|change| DomainEvent::new(&self.account_id, change))
            .collect())
    }
}

type Store = PgEventStore<DomainEvent, Json<DomainEvent>>;
type StateStore<SN> = EventSourcedStateStore<PgEventId, DomainEvent, Store, SN>;

/// A disintegrate system: `SN` is `NoSnapshot` or `WithPgSnapshot`.
pub struct Disintegrate<SN: SnapshotConfig + Clone> {
    pool: PgPool,
    store: Store,
    decisions: PgDecisionMaker<DomainEvent, Json<DomainEvent>, SN>,
    /// The decision maker's kind of state store, for loads.
    states: StateStore<SN>,
}

/// Opens the store in `schema`; when `fresh`, the schema is new and gets the store's objects.
async fn open_store(settings: &Settings, schema: &str, fresh: bool) -> Res<(PgPool, Store)> {
    if fresh {
        db::fresh_schema(&settings.pg_url, schema).await?;
    }
    let pool = db::pg_pool(&settings.pg_url, schema).await?;
    if fresh {
        sqlx::raw_sql(SCHEMA_SQL).execute(&pool).await?;
    }
    let store = PgEventStore::new_uninitialized(pool.clone(), Json::<DomainEvent>::default());
    Ok((pool, store))
}

impl<SN: SnapshotConfig + Clone> Disintegrate<SN> {
    fn with(pool: PgPool, store: Store, snapshots: SN) -> Self {
        Disintegrate {
            decisions: disintegrate_postgres::decision_maker(store.clone(), snapshots.clone()),
            states: EventSourcedStateStore::new(store.clone(), snapshots),
            pool,
            store,
        }
    }
}

impl Disintegrate<NoSnapshot> {
    pub async fn open(settings: &Settings, schema: &str, fresh: bool) -> Res<Self> {
        let (pool, store) = open_store(settings, schema, fresh).await?;
        Ok(Disintegrate::with(pool, store, NoSnapshot))
    }
}

impl Disintegrate<WithPgSnapshot> {
    pub async fn open(settings: &Settings, schema: &str, fresh: bool) -> Res<Self> {
        let (pool, store) = open_store(settings, schema, fresh).await?;
        let every = settings.snapshot_every;
        let snapshotter = if fresh {
            PgSnapshotter::try_new(pool.clone(), every).await?
        } else {
            PgSnapshotter::new_uninitialized(pool.clone(), every)
        };
        Ok(Disintegrate::with(
            pool,
            store,
            WithSnapshot::new(snapshotter),
        ))
    }
}

/// Whether a failed decision lost to a concurrent writer.
fn is_conflict(error: &DecisionError<BankError>) -> bool {
    let (DecisionError::StateStore(error) | DecisionError::EventStore(error)) = error else {
        return false;
    };
    match error.downcast_ref::<disintegrate_postgres::Error>() {
        Some(disintegrate_postgres::Error::Concurrency) => true,
        Some(disintegrate_postgres::Error::Database(error)) => db::is_serialization_failure(error),
        _ => false,
    }
}

/// Counts and sums what the listener hands it.
#[derive(Default)]
struct Sum {
    events: AtomicU64,
    sum: AtomicI64,
}

struct SumListener {
    id: &'static str,
    query: StreamQuery<PgEventId, DomainEvent>,
    sum: Arc<Sum>,
}

#[async_trait::async_trait]
impl EventListener<PgEventId, DomainEvent> for SumListener {
    type Error = Infallible;

    fn id(&self) -> &'static str {
        self.id
    }

    fn query(&self) -> &StreamQuery<PgEventId, DomainEvent> {
        &self.query
    }

    async fn handle(
        &self,
        event: PersistedEvent<PgEventId, DomainEvent>,
    ) -> Result<(), Infallible> {
        self.sum.events.fetch_add(1, Ordering::Relaxed);
        self.sum
            .sum
            .fetch_add(event.into_inner().change().delta(), Ordering::Relaxed);
        Ok(())
    }
}

impl<SN> Bank for Disintegrate<SN>
where
    SN: SnapshotConfig + Clone + Send + Sync + 'static,
    StateStore<SN>: LoadState<PgEventId, AccountState, DomainEvent>
        + PersistDecision<PgEventId, AccountState, DomainEvent>
        + Send
        + Sync,
{
    async fn execute(&self, account: &str, command: Command) -> Res<Outcome> {
        let decision = Execute {
            account_id: account.to_owned(),
            command,
        };
        match self.decisions.make(decision).await {
            Ok(_) => Ok(Outcome::Done { retries: 0 }),
            Err(DecisionError::Domain(_)) => Ok(Outcome::Refused),
            Err(error) if is_conflict(&error) => Ok(Outcome::Conflict),
            Err(error) => Err(error.to_string().into()),
        }
    }

    async fn load(&self, account: &str) -> Res<Option<Loaded>> {
        let loaded = self.states.load(AccountState::new(account)).await?;
        let account = loaded.state().account.clone();
        Ok((account.events > 0).then_some(Loaded {
            version: account.events,
            account,
        }))
    }

    async fn append(&self, account: &str, _version: u64, changes: Vec<Change>) -> Res<()> {
        let events = changes
            .into_iter()
            .map(|change| DomainEvent::new(account, change))
            .collect();
        self.store.append_without_validation(events).await?;
        Ok(())
    }

    /// Creates the listener's checkpoint table and notification trigger, as
    /// `PgEventListener::start` does on its first start (the rounds start it `uninitialized`).
    async fn prepare_catch_up(&self) -> Res<()> {
        Migrator::new(self.store.clone()).init_listener().await?;
        Ok(())
    }

    async fn catch_up(&self, round: u32, _events: u64) -> Res<Caught> {
        let (last,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(event_id), 0) FROM event")
            .fetch_one(&self.pool)
            .await?;
        let sum = Arc::new(Sum::default());
        // A listener id is `&'static str`; this process runs one catch-up, so one leak.
        let id: &'static str = format!("bench-{round}").leak();
        let listener = SumListener {
            id,
            query: query!(DomainEvent),
            sum: Arc::clone(&sum),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        let running = tokio::spawn(
            PgEventListener::builder(self.store.clone())
                .uninitialized()
                .register_listener(
                    listener,
                    PgEventListenerConfig::poller(Duration::from_secs(5)).with_notifier(),
                )
                .start_with_shutdown(async move {
                    let _ = stopped.await;
                }),
        );
        // Caught up when the listener's checkpoint reaches the last event.
        loop {
            let checkpoint: Option<i64> = sqlx::query_scalar(
                "SELECT last_processed_event_id FROM event_listener WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            if checkpoint.is_some_and(|at| at >= last) {
                break;
            }
            if running.is_finished() {
                return Err("the listener stopped before catching up".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = started.elapsed();
        let _ = stop.send(());
        running.await??;
        Ok(Caught {
            events: sum.events.load(Ordering::Relaxed),
            sum: sum.sum.load(Ordering::Relaxed),
            elapsed,
            detail: "PgEventListener (poller 5 s + notifier, as in its example) into a \
                     listener summing the changes, timed until its checkpoint reached the \
                     last event"
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
