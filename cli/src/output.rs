//! What commands print: tables for people, JSON for scripts, events either way, progress
//! bars on stderr, and the confirmation of destructive commands.

use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::time::Duration;

use chronicle::{CodecError, RecordedEvent};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::fail::{CliError, codec_hint};
use crate::text;

/// Standard output, buffered; a closed pipe ends the command quietly.
pub struct Out {
    stdout: BufWriter<Stdout>,
}

impl Out {
    pub fn new() -> Self {
        Out {
            stdout: BufWriter::new(std::io::stdout()),
        }
    }

    /// Writes one line.
    pub fn line(&mut self, line: impl AsRef<str>) -> Result<(), CliError> {
        writeln!(self.stdout, "{}", line.as_ref())?;
        Ok(())
    }

    /// Writes `value` as one line of JSON.
    pub fn json(&mut self, value: &Value) -> Result<(), CliError> {
        self.line(value.to_string())
    }

    /// Writes `value` as indented JSON.
    pub fn pretty(&mut self, value: &Value) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|error| CliError::Failed(format!("cannot print JSON: {error}")))?;
        self.line(text)
    }

    /// Sends what is buffered (before a wait, so that a follower sees it).
    pub fn flush(&mut self) -> Result<(), CliError> {
        self.stdout.flush()?;
        Ok(())
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        let _ = self.stdout.flush();
    }
}

/// A table: a header and rows, columns as wide as their widest cell (the last one is not
/// padded, so long payloads do not push spaces after them).
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Prints the table, or `empty` when it has no rows.
    pub fn print(&self, out: &mut Out, empty: &str) -> Result<(), CliError> {
        if self.rows.is_empty() {
            return out.line(empty);
        }
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            let mut line = String::new();
            for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if index == last {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(width - cell.chars().count() + 2));
                }
            }
            out.line(line.trim_end())?;
        }
        Ok(())
    }
}

/// Key–value lines, aligned.
pub fn fields(out: &mut Out, fields: &[(&str, String)]) -> Result<(), CliError> {
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in fields {
        out.line(format!("{name:width$}  {value}"))?;
    }
    Ok(())
}

/// What can be said of an event's payload.
pub enum Payload {
    /// Decoded JSON.
    Json(Value),
    /// Encrypted with a key this run does not have (`None`: its stream's data key).
    Encrypted(Option<String>),
    /// Its stream was forgotten: never readable again.
    Shredded,
    /// Stored bytes that do not decode, for another reason.
    Undecodable(String),
}

/// The payload of `event` as it can be shown. With a key file, a payload the key file
/// should have opened is an error: the key file is wrong.
pub fn payload(event: &RecordedEvent, have_keys: bool) -> Result<Payload, CliError> {
    let Some(error) = event.payload_error() else {
        return Ok(match event.json() {
            Ok(json) => Payload::Json(json),
            Err(_) => Payload::Undecodable("not JSON".to_owned()),
        });
    };
    match error {
        CodecError::Shredded => Ok(Payload::Shredded),
        CodecError::MissingKey { .. } | CodecError::Decrypt { .. } if have_keys => {
            Err(CliError::Failed(format!(
                "event {} of stream `{}` does not decode with the key file: {error} ({})",
                event.id,
                event.stream_id,
                codec_hint(error).unwrap_or("wrong key file?")
            )))
        }
        CodecError::MissingKey { key_id } if key_id.starts_with('(') => {
            Ok(Payload::Encrypted(None))
        }
        CodecError::MissingKey { key_id } => Ok(Payload::Encrypted(Some(key_id.clone()))),
        other => Ok(Payload::Undecodable(other.to_string())),
    }
}

impl Payload {
    /// As a table cell.
    pub fn cell(&self) -> String {
        match self {
            Payload::Json(json) => json.to_string(),
            Payload::Encrypted(Some(key)) => format!("<encrypted: key `{key}`>"),
            Payload::Encrypted(None) => "<encrypted: the stream's data key>".to_owned(),
            Payload::Shredded => "<shredded: the stream was forgotten>".to_owned(),
            Payload::Undecodable(why) => format!("<undecodable: {why}>"),
        }
    }

    /// The JSON fields `payload` and `payload_state` (and `key_id` for an encrypted one).
    fn add_to(&self, object: &mut serde_json::Map<String, Value>) {
        let (payload, state) = match self {
            Payload::Json(json) => (json.clone(), "decoded"),
            Payload::Encrypted(key) => {
                if let Some(key) = key {
                    object.insert("key_id".into(), json!(key));
                }
                (Value::Null, "encrypted")
            }
            Payload::Shredded => (Value::Null, "shredded"),
            Payload::Undecodable(why) => {
                object.insert("payload_error".into(), json!(why));
                (Value::Null, "undecodable")
            }
        };
        object.insert("payload".into(), payload);
        object.insert("payload_state".into(), json!(state));
    }
}

/// An event as a JSON object; with its log cursor when it came from the global log.
pub fn event_json(event: &RecordedEvent, payload: &Payload, from_log: bool) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("id".into(), json!(event.id));
    object.insert("stream".into(), json!(event.stream_id.as_str()));
    object.insert("version".into(), json!(event.version));
    object.insert("position".into(), json!(event.position));
    if from_log {
        object.insert(
            "log_position".into(),
            json!(event.log_position().to_string()),
        );
    }
    object.insert("type".into(), json!(event.event_type));
    object.insert("schema_version".into(), json!(event.schema_version));
    object.insert("recorded_at".into(), json!(text::time(event.recorded_at)));
    object.insert(
        "metadata".into(),
        serde_json::to_value(&event.metadata).unwrap_or(Value::Null),
    );
    payload.add_to(&mut object);
    Value::Object(object)
}

/// The columns of an event in a table: `with_stream` adds the stream, `from_log` the
/// log cursor.
pub fn event_header(with_stream: bool, from_log: bool) -> Vec<&'static str> {
    let mut header = Vec::new();
    if from_log {
        header.push("LOG");
    }
    if with_stream {
        header.push("STREAM");
    }
    header.extend(["VERSION", "POSITION", "TYPE", "RECORDED", "PAYLOAD"]);
    header
}

/// An event's cells, in [`event_header`]'s order.
pub fn event_row(
    event: &RecordedEvent,
    payload: &Payload,
    with_stream: bool,
    from_log: bool,
) -> Vec<String> {
    let mut row = Vec::new();
    if from_log {
        row.push(event.log_position().to_string());
    }
    if with_stream {
        row.push(event.stream_id.to_string());
    }
    row.extend([
        event.version.to_string(),
        event.position.to_string(),
        event.event_type.clone(),
        text::time(event.recorded_at),
        payload.cell(),
    ]);
    row
}

/// A progress bar on stderr for `total` steps (drawn only when stderr is a terminal).
pub fn bar(total: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} {per_sec} {eta} left")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(message);
    bar
}

/// A spinner on stderr for work of unknown size (drawn only when stderr is a terminal).
pub fn spinner() -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {elapsed} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    spinner.set_style(style);
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

/// Asks `question` on stderr and reads the answer from stdin, unless `--yes` was given.
/// Without a terminal on stdin there is nobody to ask: refused.
pub fn confirm(yes: bool, question: &str) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::NotConfirmed(format!(
            "{question} Refused: stdin is not a terminal, so nobody can confirm; pass --yes"
        )));
    }
    eprint!("{question} Type `yes` to go on: ");
    let mut answer = String::new();
    stdin
        .read_line(&mut answer)
        .map_err(|error| CliError::Failed(format!("cannot read the answer: {error}")))?;
    if matches!(answer.trim(), "yes" | "y") {
        Ok(())
    } else {
        Err(CliError::NotConfirmed(
            "not confirmed; nothing was changed".to_owned(),
        ))
    }
}
