//! chronicle's side of the comparison, through its public API only: the bank account as a
//! `#[derive(Aggregate)]` over the shared rules, commands through `Repository::execute`,
//! loads through `Repository::load`, histories through `Store::append`, snapshots with
//! `snapshot_every` / `create_snapshot`, the catch-up with the projection runner, and
//! `Compression::zstd()` for the compressed store.
//!
//! Each phase opens its own store and closes it at the end, as each peer phase is a
//! process of its own: every round starts with cold pools and an empty state cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chronicle::{
    Aggregate, CommandError, Compression, DomainEvent, EventParts, ExpectedVersion, Projection,
    ProjectionContext, ProjectionError, ProjectionState, RecordedEvent, Repository,
    SqliteDurability, Store, StoreBuilder,
};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPool;

use crate::harness::{Schemas, sqlite_reader};
use crate::shared::bank::{self, BankError, Change, Command};
use crate::shared::settings::{Settings, Workload, remove_sqlite};
use crate::shared::workload::{
    self, Bank, Caught, Footprint, Loaded, Outcome, Res, SQLITE_CHECKPOINT_SQL,
};

/// Connections of every chronicle store: its default, as the peers' pools have 10.
pub const POOL_SIZE: u32 = 10;
/// How often a catch-up projection polls once the log is exhausted (the runner's default
/// is 500 ms; `benches/projections.rs` explains the 10 ms).
const CATCHUP_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, PartialEq, DomainEvent)]
#[event(prefix = "account.")]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl From<Change> for AccountEvent {
    fn from(change: Change) -> Self {
        match change {
            Change::Opened { owner } => AccountEvent::Opened { owner },
            Change::Deposited { amount } => AccountEvent::Deposited { amount },
            Change::Withdrawn { amount } => AccountEvent::Withdrawn { amount },
        }
    }
}

impl From<AccountEvent> for Change {
    fn from(event: AccountEvent) -> Self {
        match event {
            AccountEvent::Opened { owner } => Change::Opened { owner },
            AccountEvent::Deposited { amount } => Change::Deposited { amount },
            AccountEvent::Withdrawn { amount } => Change::Withdrawn { amount },
        }
    }
}

/// The bank account as a chronicle aggregate (streams `account-{id}`).
#[derive(Debug, Default, Clone, Serialize, Deserialize, chronicle::Aggregate)]
#[aggregate(name = "account", event = AccountEvent)]
pub struct Account {
    account: bank::Account,
}

impl Aggregate for Account {
    type Command = Command;
    type Error = BankError;

    fn apply(&mut self, event: AccountEvent) {
        self.account.apply(&event.into());
    }

    fn handle(&self, command: &Command) -> Result<Vec<AccountEvent>, BankError> {
        Ok(self
            .account
            .decide(command)?
            .into_iter()
            .map(AccountEvent::from)
            .collect())
    }
}

/// The chronicle variants of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Plain,
    Snapshots,
    Zstd,
    /// zstd with a dictionary trained once a tenth of the log is written.
    ZstdDictionary,
}

impl Variant {
    pub fn of(system: &str) -> Variant {
        if system.ends_with("-snap") {
            Variant::Snapshots
        } else if system.ends_with("-zstd-dict") {
            Variant::ZstdDictionary
        } else if system.ends_with("-zstd") {
            Variant::Zstd
        } else {
            Variant::Plain
        }
    }

    fn configure(self, builder: StoreBuilder) -> StoreBuilder {
        match self {
            Variant::Zstd | Variant::ZstdDictionary => builder.compression(Compression::zstd()),
            _ => builder,
        }
    }
}

/// Where a chronicle store lives, for its footprint.
enum Place {
    Postgres(Option<PgPool>),
    Sqlite { url: String, path: PathBuf },
}

pub struct Chronicle {
    store: Store,
    repo: Repository<Account>,
    place: Place,
    training: Option<Training>,
}

/// When a `-zstd-dict` store trains its compression dictionary: once it has appended a
/// tenth of the storage workload's events (`footprint.rs` trains on the first 10,000 of
/// 100,000 the same way), with `Store::train_compression_dictionary`, as an application
/// would after its first days of events.
struct Training {
    after: u64,
    appended: AtomicU64,
    trained: tokio::sync::OnceCell<()>,
}

/// A schema tag of `harness::Schemas` for `system` and `workload`.
pub fn tag(system: &str, workload: &Workload) -> String {
    format!("{system}_{}", workload.name()).replace('-', "_")
}

impl Chronicle {
    fn new(store: Store, variant: Variant, settings: &Settings, place: Place) -> Self {
        let repo = store.repository::<Account>();
        let repo = match variant {
            Variant::Snapshots => repo.snapshot_every(settings.snapshot_every),
            _ => repo,
        };
        let training = (variant == Variant::ZstdDictionary).then(|| Training {
            after: (settings.storage_events / 10).max(1),
            appended: AtomicU64::new(0),
            trained: tokio::sync::OnceCell::new(),
        });
        Chronicle {
            store,
            repo,
            place,
            training,
        }
    }

    /// A store on PostgreSQL in the schema of `system` and `workload`: a fresh one when
    /// `fresh`, else the one a set-up phase made.
    pub async fn postgres(
        schemas: &mut Schemas,
        settings: &Settings,
        system: &str,
        workload: &Workload,
        fresh: bool,
    ) -> Res<Self> {
        let variant = Variant::of(system);
        let tag = tag(system, workload);
        let configure = |builder| variant.configure(builder);
        let store = if fresh {
            schemas.store(&tag, POOL_SIZE, configure).await?
        } else {
            schemas.reopen(&tag, POOL_SIZE, configure).await?
        };
        let footprint_pool = match workload {
            Workload::Storage => Some(schemas.pool_on(&Schemas::schema_name(&tag), 1).await?),
            _ => None,
        };
        Ok(Chronicle::new(
            store,
            variant,
            settings,
            Place::Postgres(footprint_pool),
        ))
    }

    /// A store on the SQLite file of `system` and `workload` (`synchronous = NORMAL`, as
    /// sqlite-es's pool), made anew when `fresh`.
    pub async fn sqlite(
        settings: &Settings,
        system: &str,
        workload: &Workload,
        fresh: bool,
    ) -> Res<Self> {
        let variant = Variant::of(system);
        let path = settings.sqlite_path(system, workload);
        if fresh {
            remove_sqlite(&path)?;
        }
        let url = format!("sqlite://{}", path.display());
        let builder = Store::builder(url.clone()).sqlite_durability(SqliteDurability::Normal);
        let store = variant.configure(builder).open().await?;
        Ok(Chronicle::new(
            store,
            variant,
            settings,
            Place::Sqlite { url, path },
        ))
    }
}

/// Counts and sums what the projection applies.
#[derive(Default)]
struct Sum {
    events: AtomicU64,
    sum: AtomicI64,
}

struct SumProjection {
    name: String,
    sum: Arc<Sum>,
}

impl Projection for SumProjection {
    fn name(&self) -> &str {
        &self.name
    }

    /// The type and payload are all it reads, as the raw scan it is compared with: a
    /// tuned projection asks for no metadata.
    fn event_parts(&self) -> EventParts {
        EventParts::PAYLOAD
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        let change = Change::from(ctx.decode::<AccountEvent>(event)?);
        self.sum.events.fetch_add(1, Ordering::Relaxed);
        self.sum.sum.fetch_add(change.delta(), Ordering::Relaxed);
        Ok(())
    }
}

impl Bank for Chronicle {
    async fn execute(&self, account: &str, command: Command) -> Res<Outcome> {
        match self.repo.execute(account, command).await {
            Ok(done) => Ok(Outcome::Done {
                retries: done.attempts.saturating_sub(1),
            }),
            Err(CommandError::Domain(_)) => Ok(Outcome::Refused),
            Err(error) if error.is_conflict() => Ok(Outcome::Conflict),
            Err(error) => Err(error.into()),
        }
    }

    async fn load(&self, account: &str) -> Res<Option<Loaded>> {
        Ok(self.repo.load(account).await?.map(|loaded| Loaded {
            version: loaded.version,
            account: loaded.state.account,
        }))
    }

    async fn append(&self, account: &str, version: u64, changes: Vec<Change>) -> Res<()> {
        let events = changes
            .into_iter()
            .map(|change| AccountEvent::from(change).to_new_event())
            .collect::<Result<Vec<_>, _>>()?;
        let expected = match version {
            0 => ExpectedVersion::NoStream,
            v => ExpectedVersion::Exact(v),
        };
        let stream = self.repo.stream_id(account)?;
        let count = events.len() as u64;
        self.store.append(stream.as_str(), expected, events).await?;
        if let Some(training) = &self.training {
            let appended = training.appended.fetch_add(count, Ordering::Relaxed) + count;
            if appended >= training.after {
                training
                    .trained
                    .get_or_try_init(|| async {
                        self.store.train_compression_dictionary().await.map(|_| ())
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn snapshot(&self, account: &str) -> Res<()> {
        self.repo.create_snapshot(account).await?;
        Ok(())
    }

    async fn catch_up(&self, round: u32, events: u64) -> Res<Caught> {
        let sum = Arc::new(Sum::default());
        let projection = SumProjection {
            name: format!("bench-sum-{round}"),
            sum: Arc::clone(&sum),
        };
        let started = Instant::now();
        let handle = self
            .store
            .projections()
            .poll_interval(CATCHUP_POLL)
            .spawn(projection);
        // Caught up when the checkpoint is past every event of the log.
        loop {
            let status = handle.status();
            if status.applied >= events {
                break;
            }
            if status.state == ProjectionState::Failed {
                return Err(format!("the projection failed: {:?}", status.last_error).into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = started.elapsed();
        handle.wait_for_idle().await?;
        handle.stop().await?;
        Ok(Caught {
            events: sum.events.load(Ordering::Relaxed),
            sum: sum.sum.load(Ordering::Relaxed),
            elapsed,
            detail: "projection runner (batches of 10,000, the default; the lean read of \
                     `EventParts::PAYLOAD`), `apply` per event summing the changes, timed \
                     until its checkpoint passed the last event"
                .to_owned(),
        })
    }

    async fn footprint(&self) -> Res<Footprint> {
        match &self.place {
            Place::Postgres(Some(pool)) => {
                let rows: Vec<(String, i64)> = sqlx::query_as(workload::PG_FOOTPRINT_SQL)
                    .fetch_all(pool)
                    .await?;
                Ok(workload::pg_footprint(rows))
            }
            Place::Postgres(None) => Err("no pool for the footprint".into()),
            Place::Sqlite { url, path } => {
                self.store.close().await;
                let reader = sqlite_reader(url).await?;
                sqlx::query(SQLITE_CHECKPOINT_SQL).execute(&reader).await?;
                reader.close().await;
                workload::sqlite_footprint(path)
            }
        }
    }

    async fn close(&self) {
        self.store.close().await;
        if let Place::Postgres(Some(pool)) = &self.place {
            pool.close().await;
        }
    }
}
