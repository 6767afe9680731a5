//! `chronicle stats` and `chronicle health`: every store of `--url` or `--config`,
//! opened as operators' commands open them, in a [`Manager`] that reports on them.

use std::process::ExitCode;
use std::time::Duration;

use chronicle::manager::{HealthStatus, Manager};
use serde_json::Value;

use crate::args::Global;
use crate::connect;
use crate::fail::CliError;
use crate::output::{Out, Table, fields};

/// Opens every store the command covers in one manager.
async fn manager(global: &Global) -> Result<Manager, CliError> {
    let manager = Manager::new();
    for (name, target) in connect::targets(global)? {
        let store = match connect::open_target(global, target).await {
            Ok(store) => store,
            Err(error) => {
                manager.close(Duration::from_secs(5)).await;
                return Err(error);
            }
        };
        manager.register(name, store)?;
    }
    Ok(manager)
}

/// `chronicle stats`.
pub async fn stats(global: &Global) -> Result<(), CliError> {
    let manager = manager(global).await?;
    let stats = manager.stats().await;
    manager.close(Duration::from_secs(5)).await;
    let mut out = Out::new();
    if global.json {
        let value = serde_json::to_value(&stats)
            .map_err(|error| CliError::Failed(format!("cannot print JSON: {error}")))?;
        return out.pretty(&value);
    }
    for (name, provider) in &stats.providers {
        out.line(format!("{name} ({})", provider.backend))?;
        if let Some(storage) = provider.storage {
            let about = if storage.estimated {
                " (estimated)"
            } else {
                ""
            };
            fields(
                &mut out,
                &[
                    ("streams", format!("{}{about}", storage.streams)),
                    ("events", format!("{}{about}", storage.events)),
                    ("snapshots", format!("{}{about}", storage.snapshots)),
                    ("bytes", storage.bytes.to_string()),
                ],
            )?;
        }
        let mut checkpoints = Table::new(vec!["CHECKPOINT", "POSITION", "LAG"]);
        for checkpoint in &provider.checkpoints {
            checkpoints.row(vec![
                checkpoint.name.clone(),
                checkpoint.position.to_string(),
                checkpoint.lag_events.to_string(),
            ]);
        }
        checkpoints.print(&mut out, "no checkpoints stored")?;
        if let Some(outbox) = &provider.outbox {
            crate::ops::outbox_table(&mut out, outbox)?;
        }
        for error in &provider.errors {
            out.line(format!("could not read {error}"))?;
        }
    }
    Ok(())
}

/// `chronicle health`: prints each component, and exits 0, 1 or 2 for healthy,
/// degraded or unhealthy.
pub async fn health(global: &Global) -> ExitCode {
    let manager = match manager(global).await {
        Ok(manager) => manager,
        Err(error) => {
            // The store cannot even be opened: unhealthy.
            let _ = error.exit();
            return ExitCode::from(2);
        }
    };
    let health = manager.health().await;
    manager.close(Duration::from_secs(5)).await;
    let printed = print_health(global, &health);
    if let Err(error) = printed {
        return error.exit();
    }
    ExitCode::from(match health.status {
        HealthStatus::Healthy => 0,
        HealthStatus::Degraded => 1,
        HealthStatus::Unhealthy => 2,
    })
}

fn print_health(global: &Global, health: &chronicle::manager::Health) -> Result<(), CliError> {
    let mut out = Out::new();
    if global.json {
        let value: Value = serde_json::to_value(health)
            .map_err(|error| CliError::Failed(format!("cannot print JSON: {error}")))?;
        return out.pretty(&value);
    }
    out.line(health.status.as_str())?;
    let mut table = Table::new(vec!["KIND", "NAME", "STATUS", "DETAIL"]);
    for component in &health.components {
        let detail = match (&component.reason, component.latency) {
            (Some(reason), _) => reason.clone(),
            (None, Some(latency)) => format!("ping {latency:?}"),
            (None, None) => String::new(),
        };
        table.row(vec![
            component.kind.to_owned(),
            component.name.clone(),
            component.status.as_str().to_owned(),
            detail,
        ]);
    }
    table.print(&mut out, "nothing to check")
}
