//! `chronicle`: look at and operate a chronicle event store from the command line.
//!
//! Every command opens the store named by `--url` (or `CHRONICLE_URL`) through chronicle's
//! public API, does one thing and exits: `0` on success, `1` when the operation failed,
//! `2` for bad input (arguments, URL, key file), `3` when what was named does not exist,
//! `4` when a destructive command was not confirmed; `health` exits `0`, `1` or `2` for
//! healthy, degraded or unhealthy. Output is a table, or JSON with
//! `--json`; errors go to stderr. README.md ("The command-line tool") documents every
//! command.

mod args;
mod connect;
mod fail;
mod keyfile;
mod manage;
mod ops;
mod output;
mod reads;
mod text;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::fail::CliError;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return CliError::Failed(format!("cannot start: {error}")).exit(),
    };
    if matches!(cli.command, Command::Health) {
        return runtime.block_on(manage::health(&cli.global));
    }
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => error.exit(),
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Migrate { check } => return connect::migrate(&cli.global, check).await,
        Command::Stats => return manage::stats(&cli.global).await,
        // `health` has exit codes of its own: `main` runs it.
        _ => {}
    }
    let store = connect::open(&cli.global).await?;
    let result = match cli.command {
        Command::Streams(command) => reads::streams(&store, &cli.global, command).await,
        Command::Events(command) => reads::events(&store, &cli.global, command).await,
        Command::Log(command) => reads::log(&store, &cli.global, command).await,
        Command::Projections(command) => ops::projections(&store, &cli.global, command).await,
        Command::Outbox(command) => ops::outbox(&store, &cli.global, command).await,
        Command::Retention(command) => ops::retention(&store, &cli.global, command).await,
        Command::Keys(command) => ops::keys(&store, &cli.global, command).await,
        Command::Migrate { .. } | Command::Stats | Command::Health => Ok(()),
    };
    store.close().await;
    result
}
