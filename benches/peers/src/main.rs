//! The peers' side of `cargo bench --bench peers` (the driver is `benches/peers.rs` in the
//! main crate, which builds and runs this binary): one phase of one workload on one peer
//! system per process, answered with one JSON line ([`Message`]) on stdout.
//!
//! ```text
//! peers --phase setup|run|teardown --system SYSTEM --workload WORKLOAD [--round N] --settings JSON
//! ```
//!
//! `setup` creates the system's schema (or SQLite file) and writes the workload's data;
//! `run` measures round N on it; `teardown` drops it. A process per phase keeps one peer's
//! pool open at a time and starts every round from a cold process, as chronicle's side does
//! with a fresh store per round.
//!
//! Systems ([`SYSTEMS`]): `cqrs-pg` / `cqrs-pg-snap` (cqrs-es 0.5 + postgres-es 0.5, event
//! store or snapshot framework), `cqrs-sqlite` / `cqrs-sqlite-snap` (sqlite-es 0.5),
//! `esrs-pg` (esrs 0.18), `disintegrate-pg` / `disintegrate-pg-snap` (disintegrate 4 +
//! disintegrate-postgres 4). The workloads are in `shared/workload/`, common to both sides.

mod db;
mod shared;
mod systems;

use std::process::ExitCode;

use disintegrate::NoSnapshot;
use disintegrate_postgres::WithPgSnapshot;

use shared::record::Message;
use shared::settings::{Phase, Settings, Workload};
use shared::workload::{self, Bank, Res};
use systems::cqrs::Cqrs;
use systems::disintegrate::Disintegrate;
use systems::esrs::Esrs;

/// The systems this binary runs, as `--system` names them.
pub const SYSTEMS: &[&str] = &[
    "cqrs-pg",
    "cqrs-pg-snap",
    "cqrs-sqlite",
    "cqrs-sqlite-snap",
    "esrs-pg",
    "disintegrate-pg",
    "disintegrate-pg-snap",
];

struct Args {
    phase: Phase,
    system: String,
    workload: Workload,
    round: u32,
    settings: Settings,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Res<Args> {
        let (mut phase, mut system, mut workload, mut round, mut settings) =
            (None, None, None, 0, None);
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--phase" => {
                    phase =
                        Some(Phase::parse(&value).ok_or_else(|| format!("unknown phase {value}"))?)
                }
                "--system" => system = Some(value),
                "--workload" => {
                    workload = Some(
                        Workload::parse(&value)
                            .ok_or_else(|| format!("unknown workload {value}"))?,
                    )
                }
                "--round" => round = value.parse()?,
                "--settings" => settings = Some(serde_json::from_str(&value)?),
                other => return Err(format!("unknown flag {other}").into()),
            }
        }
        let system: String = system.ok_or("--system is required")?;
        if !SYSTEMS.contains(&system.as_str()) {
            return Err(format!("unknown system {system}; systems: {}", SYSTEMS.join(", ")).into());
        }
        Ok(Args {
            phase: phase.ok_or("--phase is required")?,
            system,
            workload: workload.ok_or("--workload is required")?,
            round,
            settings: settings.ok_or("--settings is required")?,
        })
    }
}

/// Why `system` cannot run `workload`, if it cannot.
fn unsupported(system: &str, workload: &Workload) -> Option<String> {
    let snapshots = system.ends_with("-snap");
    match system {
        "esrs-pg" => systems::esrs::unsupported(workload),
        _ if system.starts_with("cqrs") => systems::cqrs::unsupported(snapshots, workload),
        _ => match workload {
            Workload::SnapshotLoad(_) if !snapshots => {
                Some("run without a snapshot configuration".to_owned())
            }
            _ => None,
        },
    }
}

/// Runs the phase on `bank` and closes it.
async fn serve<B: Bank>(bank: B, args: &Args) -> Res<Message> {
    let (settings, workload, system) = (&args.settings, &args.workload, args.system.as_str());
    workload::serve(bank, settings, workload, system, args.phase, args.round).await
}

async fn phase(args: &Args) -> Res<Message> {
    if let Some(reason) = unsupported(&args.system, &args.workload) {
        return Ok(Message::Unsupported { reason });
    }
    let settings = &args.settings;
    let schema = settings.schema(&args.system, &args.workload);
    let path = settings.sqlite_path(&args.system, &args.workload);
    let fresh = args.phase == Phase::Setup;
    let snapshots = args.system.ends_with("-snap");
    if args.phase == Phase::Teardown {
        if args.system.contains("sqlite") {
            shared::settings::remove_sqlite(&path)?;
        } else {
            db::drop_schema(&settings.pg_url, &schema).await?;
        }
        return Ok(Message::Done);
    }
    match args.system.as_str() {
        "cqrs-pg" | "cqrs-pg-snap" => {
            serve(
                Cqrs::postgres(settings, &schema, fresh, snapshots).await?,
                args,
            )
            .await
        }
        "cqrs-sqlite" | "cqrs-sqlite-snap" => {
            serve(Cqrs::sqlite(settings, path, fresh, snapshots).await?, args).await
        }
        "esrs-pg" => serve(Esrs::open(settings, &schema, fresh).await?, args).await,
        "disintegrate-pg" => {
            let bank = Disintegrate::<NoSnapshot>::open(settings, &schema, fresh);
            serve(bank.await?, args).await
        }
        "disintegrate-pg-snap" => {
            let bank = Disintegrate::<WithPgSnapshot>::open(settings, &schema, fresh);
            serve(bank.await?, args).await
        }
        other => Err(format!("unknown system {other}").into()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let message = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => phase(&args).await.unwrap_or_else(|error| Message::Failed {
            error: error.to_string(),
        }),
        Err(error) => Message::Failed {
            error: error.to_string(),
        },
    };
    let failed = matches!(message, Message::Failed { .. });
    match serde_json::to_string(&message) {
        Ok(line) => println!("{line}"),
        Err(error) => {
            eprintln!("could not write the answer: {error}");
            return ExitCode::FAILURE;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
