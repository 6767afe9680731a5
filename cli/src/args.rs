//! The command line: global options and every command, as clap reads them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::text::parse_duration;

/// Look at and operate a chronicle event store.
///
/// Exit codes: 0 success, 1 the operation failed, 2 bad input (arguments, URL, key file),
/// 3 not found, 4 not confirmed; `health`: 0 healthy, 1 degraded, 2 unhealthy.
#[derive(Debug, Parser)]
#[command(name = "chronicle", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// What every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The store: sqlite://path/to/file.db or postgres://user@host/db.
    #[arg(
        long,
        short = 'u',
        env = "CHRONICLE_URL",
        global = true,
        hide_env_values = true
    )]
    pub url: Option<String>,
    /// A manager configuration (TOML, or YAML for .yaml/.yml) naming the stores: used
    /// when no --url is given. Commands work on --provider (default: the configuration's
    /// default); `stats` and `health` on every provider.
    #[arg(long, env = "CHRONICLE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// With --config: the provider to work on.
    #[arg(long, global = true)]
    pub provider: Option<String>,
    /// The PostgreSQL schema the store lives in.
    #[arg(
        long,
        env = "CHRONICLE_SCHEMA",
        global = true,
        default_value = "public"
    )]
    pub schema: String,
    /// A key file (`key_id=key` lines, the first one the active key) to decode encrypted
    /// payloads with; without it they are shown as encrypted.
    #[arg(long, env = "CHRONICLE_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// Print JSON instead of a table (tails: one JSON object per line).
    #[arg(long, global = true)]
    pub json: bool,
    /// Answer yes to confirmations (destructive commands ask otherwise).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// The longest a database operation may take (also the wait for a connection).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Streams: list, inspect, read, follow, delete.
    #[command(subcommand)]
    Streams(Streams),
    /// Single events and queries over the log.
    #[command(subcommand)]
    Events(Events),
    /// The global log.
    #[command(subcommand)]
    Log(Log),
    /// Projections' checkpoints, and resetting one.
    #[command(subcommand)]
    Projections(Projections),
    /// The outbox's requests.
    #[command(subcommand)]
    Outbox(Outbox),
    /// Retention policies and their enforcement.
    #[command(subcommand)]
    Retention(Retention),
    /// Per-stream keys and key rotation (need --key-file).
    #[command(subcommand)]
    Keys(Keys),
    /// Apply the store's pending migrations (creating the store, and on PostgreSQL its
    /// schema, when missing), or with --check only list them (exit 1 when any).
    Migrate {
        /// List the pending migrations without applying them.
        #[arg(long)]
        check: bool,
    },
    /// Every store's figures (streams, events, bytes, snapshots, checkpoints and their
    /// lag, the outbox's requests), as the manager reports them.
    Stats,
    /// Every store's health (database ping, projections' lag, the outbox's dead and
    /// oldest requests). Exit code 0 healthy, 1 degraded, 2 unhealthy (a store that
    /// cannot be opened is unhealthy).
    Health,
}

#[derive(Debug, Subcommand)]
pub enum Streams {
    /// List streams, in id order.
    List {
        /// Only streams of this category (the id's part before the first `-`).
        #[arg(long)]
        category: Option<String>,
        /// Start after this stream id (for the next page).
        #[arg(long)]
        after: Option<String>,
        /// At most this many streams.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Include deleted streams.
        #[arg(long)]
        deleted: bool,
    },
    /// One stream's info.
    Info { id: String },
    /// Read a stream's events.
    Read {
        id: String,
        /// Start at this version (default: the first, or the last with --backward).
        #[arg(long)]
        from: Option<u64>,
        /// Newest first.
        #[arg(long)]
        backward: bool,
        /// At most this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Follow a stream: print its new events as they are appended (Ctrl-C stops).
    Tail {
        id: String,
        /// Start at this version (default: after the stream's last event).
        #[arg(long)]
        from: Option<u64>,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
        /// How often to look for new events.
        #[arg(long, default_value = "500ms", value_parser = parse_duration)]
        interval: Duration,
    },
    /// Delete a stream (asks for confirmation unless --yes).
    Delete {
        id: String,
        /// Remove its events for good and tombstone the id (default: a soft delete, which
        /// `create_stream` can undo).
        #[arg(long)]
        hard: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum Events {
    /// One event, by id.
    Get { id: String },
    /// Events matching filters, in log order.
    Query {
        /// Of this stream.
        #[arg(long)]
        stream: Option<String>,
        /// Of this type (repeat for several).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Recorded at or after this time (RFC 3339, or a duration ago: 15m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Recorded before this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// With this correlation id.
        #[arg(long)]
        correlation_id: Option<String>,
        /// Of this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Skip this many matches first.
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum Log {
    /// Follow the global log (Ctrl-C stops).
    Tail {
        /// Where to start: `end` (new events only), `start`, or a cursor `commit/position`
        /// as printed in the LOG column.
        #[arg(long, default_value = "end")]
        from: String,
        /// Only events of this type (repeat for several).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
        /// How often to look for new events once caught up.
        #[arg(long, default_value = "500ms", value_parser = parse_duration)]
        interval: Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum Projections {
    /// Every stored checkpoint: name, position, lag, last move.
    List,
    /// Have the application rebuild a projection: deletes its checkpoint; the running
    /// projection then empties its read model and applies the log again.
    Reset { name: String },
}

#[derive(Debug, Subcommand)]
pub enum Outbox {
    /// Requests by handler and state, and the events still to process.
    Stats {
        /// The outbox processor's checkpoint name.
        #[arg(long, default_value = "chronicle.outbox")]
        name: String,
    },
    /// Dead requests, oldest first.
    Dead {
        /// Of this handler only.
        #[arg(long)]
        handler: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Make dead requests pending again: one by id, or all of a handler.
    Retry {
        /// The dead request's id.
        #[arg(required_unless_present = "handler", conflicts_with = "handler")]
        id: Option<i64>,
        /// Every dead request of this handler.
        #[arg(long)]
        handler: Option<String>,
    },
    /// Remove done requests finished longer ago than --older-than.
    Purge {
        /// An age: 30s, 15m, 12h, 7d, 2w.
        #[arg(long, value_parser = parse_duration)]
        older_than: Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum Retention {
    /// The stored policies, or the one in force for a stream.
    Show {
        /// The policy in force for this stream, and where it was set.
        #[arg(long)]
        stream: Option<String>,
    },
    /// Set a scope's policy (replacing the one it had).
    Set {
        #[command(flatten)]
        scope: Scope,
        /// Events older than this expire (30d, 12h, …).
        #[arg(long, value_parser = parse_duration)]
        max_age: Option<Duration>,
        /// Keep only the last N versions.
        #[arg(long)]
        max_count: Option<u64>,
        /// Versions below this one expire.
        #[arg(long)]
        truncate_before: Option<u64>,
        /// Expire events whether or not a snapshot covers them.
        #[arg(long)]
        ignore_snapshots: bool,
    },
    /// Remove a scope's policy.
    Clear {
        #[command(flatten)]
        scope: Scope,
    },
    /// Remove every expired event now.
    Enforce {
        /// Streams per batch (one transaction each).
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
    },
}

/// Which policy: the default, a category's or a stream's.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Scope {
    /// The store's default policy.
    #[arg(long)]
    pub default: bool,
    /// A category's policy.
    #[arg(long)]
    pub category: Option<String>,
    /// A stream's own policy.
    #[arg(long)]
    pub stream: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Keys {
    /// Destroy a stream's data key: its events can never be read again (asks for
    /// confirmation unless --yes).
    Forget { stream: String },
    /// Re-wrap the per-stream data keys under the key file's active key.
    Rewrap {
        /// Also re-encrypt payloads and snapshots encrypted under other ring keys.
        #[arg(long)]
        events: bool,
        /// Keys or events per batch.
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
    },
}
