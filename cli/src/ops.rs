//! The commands that operate: `projections …`, `outbox …`, `retention …`, `keys …`.

use std::sync::{Arc, Mutex, PoisonError};

use chronicle::outbox::OutboxStats;
use chronicle::{RetentionPolicy, RetentionReport, RetentionScope, RotationProgress, Store};
use serde_json::{Value, json};

use crate::args::{Global, Keys, Outbox, Projections, Retention, Scope};
use crate::fail::CliError;
use crate::output::{self, Out, Table};
use crate::reads::policy_text;
use crate::text;

pub async fn projections(
    store: &Store,
    global: &Global,
    command: Projections,
) -> Result<(), CliError> {
    let mut out = Out::new();
    match command {
        Projections::List => {
            let checkpoints = store.projection_checkpoints().await?;
            if global.json {
                let list = checkpoints
                    .iter()
                    .map(|checkpoint| {
                        json!({
                            "name": checkpoint.name,
                            "state": state(checkpoint.lag_events),
                            "position": checkpoint.position.to_string(),
                            "lag_events": checkpoint.lag_events,
                            "updated_at": checkpoint.updated_at.map(text::time),
                        })
                    })
                    .collect();
                return out.pretty(&Value::Array(list));
            }
            let mut table = Table::new(vec!["NAME", "STATE", "CHECKPOINT", "LAG", "UPDATED"]);
            for checkpoint in &checkpoints {
                table.row(vec![
                    checkpoint.name.clone(),
                    state(checkpoint.lag_events).to_owned(),
                    checkpoint.position.to_string(),
                    checkpoint.lag_events.to_string(),
                    checkpoint.updated_at.map_or_else(
                        || "-".to_owned(),
                        |at| format!("{} ({})", text::time(at), text::ago(at)),
                    ),
                ]);
            }
            table.print(&mut out, "no checkpoints stored")
        }
        Projections::Reset { name } => {
            let before = store
                .projection_checkpoints()
                .await?
                .into_iter()
                .find(|checkpoint| checkpoint.name == name);
            if !store.reset_projection(&name).await? {
                return Err(CliError::NotFound(format!(
                    "no checkpoint named `{name}` (see `chronicle projections list`)"
                )));
            }
            let was = before.map_or_else(|| "?".to_owned(), |c| c.position.to_string());
            if global.json {
                return out.pretty(&json!({
                    "name": name,
                    "deleted_checkpoint": was,
                    "rebuild": "requested",
                }));
            }
            out.line(format!(
                "Deleted the checkpoint of projection `{name}` (it was at {was}).\n\
                 The application running it notices at its next batch, or within its poll \
                 interval when idle: it empties the read model with the projection's reset \
                 hook and applies the log again from the start. If the projection is not \
                 running now, that happens when it next starts. Until then the read model \
                 keeps what it had."
            ))
        }
    }
}

/// A checkpoint's state, as far as the database tells: the runner's own state lives in
/// the application.
fn state(lag_events: u64) -> &'static str {
    if lag_events == 0 {
        "caught up"
    } else {
        "behind"
    }
}

pub async fn outbox(store: &Store, global: &Global, command: Outbox) -> Result<(), CliError> {
    let mut out = Out::new();
    let admin = store.outbox_admin();
    match command {
        Outbox::Stats { name } => {
            let stats = admin.name(name).stats().await?;
            if global.json {
                let value = serde_json::to_value(&stats)
                    .map_err(|error| CliError::Failed(format!("cannot print JSON: {error}")))?;
                return out.pretty(&value);
            }
            outbox_table(&mut out, &stats)?;
            out.line(format!("unprocessed events: {}", stats.unprocessed_events))
        }
        Outbox::Dead { handler, limit } => {
            let dead = admin.dead_requests(handler.as_deref(), limit).await?;
            if global.json {
                let list = dead
                    .iter()
                    .map(|request| {
                        json!({
                            "id": request.id,
                            "handler": request.handler,
                            "event_id": request.event_id,
                            "stream": request.stream_id,
                            "errors": request.errors,
                            "last_error": request.last_error,
                            "dead_since": text::time(request.dead_since),
                        })
                    })
                    .collect();
                return out.pretty(&Value::Array(list));
            }
            let mut table = Table::new(vec![
                "ID",
                "HANDLER",
                "STREAM",
                "EVENT",
                "ERRORS",
                "DEAD SINCE",
                "LAST ERROR",
            ]);
            for request in &dead {
                table.row(vec![
                    request.id.to_string(),
                    request.handler.clone(),
                    request.stream_id.clone(),
                    request.event_id.to_string(),
                    request.errors.to_string(),
                    text::time(request.dead_since),
                    request.last_error.clone().unwrap_or_default(),
                ]);
            }
            table.print(&mut out, "no dead requests")
        }
        Outbox::Retry { id, handler } => {
            let revived = match (id, handler) {
                (Some(id), _) => {
                    if !admin.retry_dead(id).await? {
                        return Err(CliError::NotFound(format!("request {id} is not dead")));
                    }
                    1
                }
                (None, Some(handler)) => admin.retry_all_dead(&handler).await?,
                (None, None) => {
                    return Err(CliError::Usage("give a request id or --handler".to_owned()));
                }
            };
            if global.json {
                return out.pretty(&json!({ "retried": revived }));
            }
            out.line(format!(
                "{revived} dead request(s) pending again; the outbox's executors run them at \
                 their next poll"
            ))
        }
        Outbox::Purge { older_than } => {
            let purged = admin.purge_done(older_than).await?;
            if global.json {
                return out.pretty(&json!({ "purged": purged }));
            }
            out.line(format!(
                "{purged} done request(s) older than {} purged",
                text::duration(older_than)
            ))
        }
    }
}

pub async fn retention(store: &Store, global: &Global, command: Retention) -> Result<(), CliError> {
    let mut out = Out::new();
    match command {
        Retention::Show { stream: Some(id) } => {
            let info = store
                .stream_info(&id)
                .await?
                .ok_or_else(|| CliError::NotFound(format!("no stream `{id}`")))?;
            if global.json {
                let applied = info.retention.as_ref().map(|applied| {
                    json!({ "scope": scope_json(&applied.scope), "policy": policy_json(&applied.policy) })
                });
                return out.pretty(&json!({ "stream": id, "retention": applied }));
            }
            match &info.retention {
                Some(applied) => out.line(format!(
                    "stream `{id}`: {} (set on {})",
                    policy_text(&applied.policy),
                    applied.scope
                )),
                None => out.line(format!("stream `{id}`: no retention policy applies")),
            }
        }
        Retention::Show { stream: None } => {
            let mut policies = Vec::new();
            let mut after: Option<RetentionScope> = None;
            loop {
                let page = store.list_retention(after.as_ref(), 500).await?;
                let Some((last, _)) = page.last() else {
                    break;
                };
                after = Some(last.clone());
                policies.extend(page);
            }
            if global.json {
                let list = policies
                    .iter()
                    .map(|(scope, policy)| {
                        json!({ "scope": scope_json(scope), "policy": policy_json(policy) })
                    })
                    .collect();
                return out.pretty(&Value::Array(list));
            }
            let mut table = Table::new(vec!["SCOPE", "POLICY"]);
            for (scope, policy) in &policies {
                table.row(vec![scope_text(scope), policy_text(policy)]);
            }
            table.print(&mut out, "no retention policies")
        }
        Retention::Set {
            scope,
            max_age,
            max_count,
            truncate_before,
            ignore_snapshots,
        } => {
            if max_age.is_none() && max_count.is_none() && truncate_before.is_none() {
                return Err(CliError::Usage(
                    "a policy needs a limit: --max-age, --max-count or --truncate-before"
                        .to_owned(),
                ));
            }
            let mut policy = RetentionPolicy::new();
            if let Some(age) = max_age {
                policy = policy.max_age(age);
            }
            if let Some(count) = max_count {
                policy = policy.max_count(count);
            }
            if let Some(version) = truncate_before {
                policy = policy.truncate_before(version);
            }
            if ignore_snapshots {
                policy = policy.ignore_snapshots();
            }
            let scope = scope_of(scope);
            store.set_retention(scope.clone(), policy).await?;
            if global.json {
                return out.pretty(
                    &json!({ "scope": scope_json(&scope), "policy": policy_json(&policy) }),
                );
            }
            out.line(format!(
                "{}: {}. Reads leave the expired events out from now on; `chronicle retention \
                 enforce` removes them.",
                scope_text(&scope),
                policy_text(&policy)
            ))
        }
        Retention::Clear { scope } => {
            let scope = scope_of(scope);
            store.clear_retention(scope.clone()).await?;
            if global.json {
                return out.pretty(&json!({ "scope": scope_json(&scope), "policy": null }));
            }
            out.line(format!("{}: no policy", scope_text(&scope)))
        }
        Retention::Enforce { batch_size } => {
            let spinner = output::spinner();
            spinner.set_message("removing expired events");
            let report = store
                .retention_enforcer()
                .batch_size(batch_size)
                .run_once_with_progress(|so_far: &RetentionReport| {
                    spinner.set_message(format!(
                        "{} streams examined, {} events removed",
                        so_far.streams_examined, so_far.events_removed
                    ));
                })
                .await;
            spinner.finish_and_clear();
            let report = report?;
            if global.json {
                return out.pretty(&json!({
                    "streams_examined": report.streams_examined,
                    "events_removed": report.events_removed,
                    "bytes_freed": report.bytes_freed,
                }));
            }
            out.line(format!(
                "{} streams examined, {} events removed, {} payload bytes freed",
                report.streams_examined, report.events_removed, report.bytes_freed
            ))
        }
    }
}

fn scope_of(scope: Scope) -> RetentionScope {
    match (scope.category, scope.stream) {
        (Some(category), _) => RetentionScope::category(category),
        (None, Some(stream)) => RetentionScope::stream(stream),
        (None, None) => RetentionScope::Default,
    }
}

fn scope_text(scope: &RetentionScope) -> String {
    match scope {
        RetentionScope::Default => "default".to_owned(),
        RetentionScope::Category(category) => format!("category {category}"),
        RetentionScope::Stream(stream) => format!("stream {stream}"),
    }
}

fn scope_json(scope: &RetentionScope) -> Value {
    match scope {
        RetentionScope::Default => json!({ "default": true }),
        RetentionScope::Category(category) => json!({ "category": category }),
        RetentionScope::Stream(stream) => json!({ "stream": stream }),
    }
}

fn policy_json(policy: &RetentionPolicy) -> Value {
    json!({
        "max_age": policy.age_limit().map(text::duration),
        "max_count": policy.count_limit(),
        "truncate_before": policy.truncation(),
        "snapshot_aware": policy.is_snapshot_aware(),
    })
}

pub async fn keys(store: &Store, global: &Global, command: Keys) -> Result<(), CliError> {
    if global.key_file.is_none() {
        return Err(CliError::Usage(
            "the keys commands need the key ring: pass --key-file".to_owned(),
        ));
    }
    let mut out = Out::new();
    match command {
        Keys::Forget { stream } => {
            let info = store
                .stream_info(&stream)
                .await?
                .ok_or_else(|| CliError::NotFound(format!("no stream `{stream}`")))?;
            output::confirm(
                global.yes,
                &format!(
                    "Forget stream `{stream}`: its data key is destroyed, and its {} events \
                     written under it can never be read again, by anyone.",
                    info.event_count
                ),
            )?;
            store.forget(&stream).await?;
            if global.json {
                return out.pretty(&json!({ "stream": stream, "forgotten": true }));
            }
            out.line(format!(
                "stream `{stream}` forgotten: its data key is destroyed (copies in old row \
                 versions, the WAL and backups stay until the ring is rotated)"
            ))
        }
        Keys::Rewrap { events, batch_size } => {
            let spinner = output::spinner();
            let last = Arc::new(Mutex::new(RotationProgress::default()));
            let rotation = {
                let (spinner, last) = (spinner.clone(), Arc::clone(&last));
                store
                    .key_rotation()
                    .batch_size(batch_size)
                    .on_progress(move |progress| {
                        *last.lock().unwrap_or_else(PoisonError::into_inner) = *progress;
                        spinner.set_message(format!(
                            "{} keys re-wrapped, {} events scanned, {} re-encrypted",
                            progress.keys_rewrapped,
                            progress.events_scanned,
                            progress.events_reencrypted
                        ));
                    })
            };
            spinner.set_message("re-wrapping data keys");
            let rewrapped = rotation.rewrap_stream_keys().await;
            let reencrypted = match (&rewrapped, events) {
                (Ok(_), true) => Some(rotation.reencrypt_events().await),
                _ => None,
            };
            spinner.finish_and_clear();
            let keys = rewrapped?.keys_rewrapped;
            let events = reencrypted.transpose().map_err(|error| {
                let resume = last.lock().unwrap_or_else(PoisonError::into_inner).position;
                CliError::Failed(format!(
                    "{} (re-encryption got to {resume}; running it again finishes the job)",
                    crate::fail::describe(&error)
                ))
            })?;
            if global.json {
                return out.pretty(&json!({
                    "keys_rewrapped": keys,
                    "events_scanned": events.map(|p| p.events_scanned),
                    "events_reencrypted": events.map(|p| p.events_reencrypted),
                    "snapshots_reencrypted": events.map(|p| p.snapshots_reencrypted),
                }));
            }
            out.line(format!("{keys} data keys re-wrapped under the active key"))?;
            if let Some(events) = events {
                out.line(format!(
                    "{} events scanned, {} events and {} snapshots re-encrypted",
                    events.events_scanned, events.events_reencrypted, events.snapshots_reencrypted
                ))?;
            }
            Ok(())
        }
    }
}

/// The outbox's requests by handler and state, as a table.
pub fn outbox_table(out: &mut Out, stats: &OutboxStats) -> Result<(), CliError> {
    let mut table = Table::new(vec![
        "HANDLER",
        "PENDING",
        "RUNNING",
        "FAILED-WAITING",
        "DEAD",
        "DONE",
    ]);
    for (name, s) in &stats.handlers {
        table.row(vec![
            name.clone(),
            s.pending.to_string(),
            s.running.to_string(),
            s.failed_waiting.to_string(),
            s.dead.to_string(),
            s.done.to_string(),
        ]);
    }
    table.print(out, "no requests")
}
