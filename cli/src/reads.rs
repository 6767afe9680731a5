//! The commands that read: `streams …`, `events …`, `log tail`.

use std::time::Duration;

use chronicle::futures::{Stream, StreamExt};
use chronicle::uuid::Uuid;
use chronicle::{
    DeleteMode, Direction, EventQuery, LogPosition, RecordedEvent, Store, StreamInfo,
    StreamListQuery, StreamStatus,
};
use serde_json::{Value, json};

use crate::args::{Events, Global, Log, Streams};
use crate::fail::CliError;
use crate::output::{self, Out, Table};
use crate::text;

/// Reads of at least this many events show a progress bar.
const BAR_FROM: u64 = 1000;

pub async fn streams(store: &Store, global: &Global, command: Streams) -> Result<(), CliError> {
    let mut out = Out::new();
    match command {
        Streams::List {
            category,
            after,
            limit,
            deleted,
        } => {
            let mut query = StreamListQuery::new().limit(limit).include_deleted(deleted);
            if let Some(category) = category {
                query = query.category(category);
            }
            if let Some(after) = after {
                query = query.after(after);
            }
            let streams = store.list_streams(&query).await?;
            if global.json {
                let list: Vec<Value> = streams.iter().map(stream_json).collect();
                return out.pretty(&Value::Array(list));
            }
            let mut table = Table::new(vec![
                "STREAM", "CATEGORY", "VERSION", "EVENTS", "STATUS", "UPDATED",
            ]);
            for info in &streams {
                table.row(vec![
                    info.stream_id.to_string(),
                    info.category.clone(),
                    info.version.to_string(),
                    info.event_count.to_string(),
                    status(info.status).to_owned(),
                    text::time(info.updated_at),
                ]);
            }
            table.print(&mut out, "no streams")?;
            if streams.len() == limit
                && let Some(last) = streams.last()
            {
                eprintln!("(first {limit}; the next page: --after {})", last.stream_id);
            }
            Ok(())
        }
        Streams::Info { id } => {
            let info = existing(store, &id).await?;
            if global.json {
                return out.pretty(&stream_json(&info));
            }
            let retention = info.retention.as_ref().map_or_else(
                || "none".to_owned(),
                |applied| {
                    format!(
                        "{} (set on {})",
                        policy_text(&applied.policy),
                        applied.scope
                    )
                },
            );
            let json_or_none = |value: &Value| {
                if value.is_null() {
                    "-".to_owned()
                } else {
                    value.to_string()
                }
            };
            output::fields(
                &mut out,
                &[
                    ("stream", info.stream_id.to_string()),
                    ("category", info.category.clone()),
                    ("status", status(info.status).to_owned()),
                    ("version", info.version.to_string()),
                    ("events", info.event_count.to_string()),
                    (
                        "aggregate type",
                        info.aggregate_type.clone().unwrap_or_else(|| "-".into()),
                    ),
                    (
                        "display name",
                        info.display_name.clone().unwrap_or_else(|| "-".into()),
                    ),
                    ("created", text::time(info.created_at)),
                    ("updated", text::time(info.updated_at)),
                    (
                        "last event",
                        info.last_event_id
                            .map_or_else(|| "-".into(), |id| id.to_string()),
                    ),
                    ("metadata", json_or_none(&info.metadata)),
                    ("retention", retention),
                ],
            )
        }
        Streams::Read {
            id,
            from,
            backward,
            limit,
        } => {
            let info = existing(store, &id).await?;
            let (direction, from) = if backward {
                (Direction::Backward, from.unwrap_or(u64::MAX))
            } else {
                (Direction::Forward, from.unwrap_or(1))
            };
            let in_range = match direction {
                Direction::Forward if from > info.version => 0,
                Direction::Forward => info.version - from.max(1) + 1,
                Direction::Backward => from.min(info.version),
            };
            let total = limit.map_or(in_range, |limit| limit.min(in_range));
            let events = store.read_stream(&id, from, direction);
            let bar = (total >= BAR_FROM).then(|| output::bar(total, "reading"));
            print_events(&mut out, global, events, total, bar, false).await
        }
        Streams::Tail {
            id,
            from,
            limit,
            interval,
        } => tail_stream(store, global, &id, from, limit, interval).await,
        Streams::Delete { id, hard } => {
            let info = existing(store, &id).await?;
            if info.status != StreamStatus::Active {
                return Err(CliError::Usage(format!(
                    "stream `{id}` is already {}",
                    status(info.status)
                )));
            }
            let (mode, what) = if hard {
                (
                    DeleteMode::Hard,
                    format!(
                        "Hard-delete stream `{id}`: its {} events are removed for good and the id \
                         can never be used again.",
                        info.event_count
                    ),
                )
            } else {
                (
                    DeleteMode::Soft,
                    format!(
                        "Soft-delete stream `{id}` ({} events): reads and appends refuse it until \
                         it is re-created; its events stay in the global log.",
                        info.event_count
                    ),
                )
            };
            output::confirm(global.yes, &what)?;
            store.delete_stream(&id, mode).await?;
            let done = if hard { "hard-deleted" } else { "soft-deleted" };
            if global.json {
                return out.pretty(&json!({ "stream": id, "deleted": done }));
            }
            out.line(format!("stream `{id}` {done}"))
        }
    }
}

pub async fn events(store: &Store, global: &Global, command: Events) -> Result<(), CliError> {
    let mut out = Out::new();
    let have_keys = global.key_file.is_some();
    match command {
        Events::Get { id } => {
            let id: Uuid = id
                .parse()
                .map_err(|_| CliError::Usage(format!("`{id}` is not an event id (a UUID)")))?;
            let event = store
                .event_by_id(id)
                .await?
                .ok_or_else(|| CliError::NotFound(format!("no event with id {id}")))?;
            let payload = output::payload(&event, have_keys)?;
            if global.json {
                return out.pretty(&output::event_json(&event, &payload, false));
            }
            let metadata = serde_json::to_value(&event.metadata).unwrap_or(Value::Null);
            output::fields(
                &mut out,
                &[
                    ("id", event.id.to_string()),
                    ("stream", event.stream_id.to_string()),
                    ("version", event.version.to_string()),
                    ("position", event.position.to_string()),
                    ("type", event.event_type.clone()),
                    ("schema version", event.schema_version.to_string()),
                    ("recorded", text::time(event.recorded_at)),
                    ("metadata", metadata.to_string()),
                    ("payload", payload.cell()),
                ],
            )
        }
        Events::Query {
            stream,
            types,
            since,
            until,
            correlation_id,
            tenant,
            limit,
            offset,
        } => {
            let mut query = EventQuery::new()
                .event_types(types)
                .limit(limit)
                .offset(offset);
            query.stream = stream;
            query.correlation_id = correlation_id;
            query.tenant_id = tenant;
            query.from_time = since
                .as_deref()
                .map(text::parse_time)
                .transpose()
                .map_err(CliError::Usage)?;
            query.to_time = until
                .as_deref()
                .map(text::parse_time)
                .transpose()
                .map_err(CliError::Usage)?;
            // One statement fetches them all: no progress to show.
            let events = store.query(&query);
            print_events(&mut out, global, events, limit as u64, None, true).await
        }
    }
}

pub async fn log(store: &Store, global: &Global, command: Log) -> Result<(), CliError> {
    let Log::Tail {
        from,
        types,
        limit,
        interval,
    } = command;
    let mut cursor = match from.as_str() {
        "end" => store.log_end().await?,
        "start" => LogPosition::START,
        cursor => cursor.parse().map_err(|_| {
            CliError::Usage(format!(
                "--from `{cursor}`: expected `end`, `start` or a cursor `commit/position` (as \
                 the LOG column shows)"
            ))
        })?,
    };
    let mut out = Out::new();
    let have_keys = global.key_file.is_some();
    let mut printed = 0;
    if !global.json {
        out.line(output::event_header(true, true).join("  "))?;
    }
    let follow = async {
        loop {
            let mut events = std::pin::pin!(store.read_all(cursor));
            while let Some(event) = events.next().await {
                let event = event?;
                cursor = event.log_position();
                if !types.is_empty() && !types.contains(&event.event_type) {
                    continue;
                }
                print_tailed(&mut out, global.json, &event, have_keys, true)?;
                printed += 1;
                if limit.is_some_and(|limit| printed >= limit) {
                    return Ok(());
                }
            }
            out.flush()?;
            tokio::time::sleep(interval).await;
        }
    };
    until_interrupted(follow).await
}

/// Follows `id` from version `from` (default: after its end).
async fn tail_stream(
    store: &Store,
    global: &Global,
    id: &str,
    from: Option<u64>,
    limit: Option<u64>,
    interval: Duration,
) -> Result<(), CliError> {
    let info = existing(store, id).await?;
    let mut next = from.unwrap_or(info.version + 1).max(1);
    let mut out = Out::new();
    let have_keys = global.key_file.is_some();
    let mut printed = 0;
    if !global.json {
        out.line(output::event_header(false, false).join("  "))?;
    }
    let follow = async {
        loop {
            let head = existing(store, id).await?;
            if head.status != StreamStatus::Active {
                return Err(CliError::Failed(format!(
                    "stream `{id}` was {} while followed",
                    status(head.status)
                )));
            }
            if head.version >= next {
                let mut events = std::pin::pin!(store.read_stream(id, next, Direction::Forward));
                while let Some(event) = events.next().await {
                    let event = event?;
                    next = event.version + 1;
                    print_tailed(&mut out, global.json, &event, have_keys, false)?;
                    printed += 1;
                    if limit.is_some_and(|limit| printed >= limit) {
                        return Ok(());
                    }
                }
            }
            out.flush()?;
            tokio::time::sleep(interval).await;
        }
    };
    until_interrupted(follow).await
}

/// Runs a follower until it ends or Ctrl-C (a success).
async fn until_interrupted(
    follow: impl Future<Output = Result<(), CliError>>,
) -> Result<(), CliError> {
    tokio::select! {
        result = follow => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// One followed event: a JSON line, or a row of the table whose header was printed.
fn print_tailed(
    out: &mut Out,
    json: bool,
    event: &RecordedEvent,
    have_keys: bool,
    from_log: bool,
) -> Result<(), CliError> {
    let payload = output::payload(event, have_keys)?;
    if json {
        out.json(&output::event_json(event, &payload, from_log))
    } else {
        out.line(output::event_row(event, &payload, from_log, from_log).join("  "))
    }
}

/// Prints up to `total` events of `events` as a table or a JSON array, moving `bar` (a
/// long read's progress). An event that cannot be read ends the command with its error.
async fn print_events(
    out: &mut Out,
    global: &Global,
    events: impl Stream<Item = chronicle::Result<RecordedEvent>>,
    total: u64,
    bar: Option<indicatif::ProgressBar>,
    with_stream: bool,
) -> Result<(), CliError> {
    let have_keys = global.key_file.is_some();
    let mut events = std::pin::pin!(events.take(usize::try_from(total).unwrap_or(usize::MAX)));
    let mut table = Table::new(output::event_header(with_stream, false));
    let mut count = 0;
    if global.json {
        out.line("[")?;
    }
    while let Some(event) = events.next().await {
        let event = event?;
        let payload = output::payload(&event, have_keys)?;
        if global.json {
            let separator = if count == 0 { "" } else { "," };
            out.line(format!(
                "{separator}{}",
                output::event_json(&event, &payload, false)
            ))?;
        } else {
            table.row(output::event_row(&event, &payload, with_stream, false));
        }
        count += 1;
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if global.json {
        return out.line("]");
    }
    table.print(out, "no events")
}

/// The stream `id`'s info; not found (exit 3) when it never existed.
async fn existing(store: &Store, id: &str) -> Result<StreamInfo, CliError> {
    store
        .stream_info(id)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("no stream `{id}`")))
}

fn status(status: StreamStatus) -> &'static str {
    match status {
        StreamStatus::Active => "active",
        StreamStatus::Deleted => "deleted",
        StreamStatus::Tombstoned => "hard-deleted",
    }
}

/// A stream's info as JSON (the library's own serialization).
fn stream_json(info: &StreamInfo) -> Value {
    serde_json::to_value(info).unwrap_or(Value::Null)
}

/// A policy in words: `max age 90d, max count 100, snapshot-aware`.
pub fn policy_text(policy: &chronicle::RetentionPolicy) -> String {
    let mut parts = Vec::new();
    if let Some(age) = policy.age_limit() {
        parts.push(format!("max age {}", text::duration(age)));
    }
    if let Some(count) = policy.count_limit() {
        parts.push(format!("max count {count}"));
    }
    if let Some(version) = policy.truncation() {
        parts.push(format!("truncate before {version}"));
    }
    if parts.is_empty() {
        parts.push("no limit".to_owned());
    }
    parts.push(if policy.is_snapshot_aware() {
        "snapshot-aware".to_owned()
    } else {
        "ignores snapshots".to_owned()
    });
    parts.join(", ")
}
