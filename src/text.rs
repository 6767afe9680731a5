//! What caller text may be stored: the length limits of event types and metadata ids, and
//! the characters no text field may hold. The rules are checked before anything is
//! written, the same on every backend (PostgreSQL refuses NUL in `text` and `jsonb`, and
//! its indexes refuse long keys; SQLite and memory would take both).

use uuid::Uuid;

pub use crate::error::TextProblem;
use crate::error::{Result, ValidationError};

/// The longest event type, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 256;

/// The longest metadata id (correlation, causation, user, tenant, request, trace), in
/// bytes.
pub const MAX_METADATA_ID_LEN: usize = 256;

/// The longest name of a projection, relay, outbox or outbox handler (as its checkpoint
/// or requests store it), in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The problem with `text` as a field of at most `limit` bytes (`None`: unbounded) that
/// may or may not hold control characters other than NUL.
pub(crate) fn problem(
    text: &str,
    limit: Option<usize>,
    controls_allowed: bool,
) -> Option<TextProblem> {
    if let Some(limit) = limit
        && text.len() > limit
    {
        return Some(TextProblem::TooLong {
            len: text.len(),
            limit,
        });
    }
    if controls_allowed {
        text.contains('\0').then_some(TextProblem::Nul)
    } else {
        text.chars().find(|c| c.is_control()).map(|c| match c {
            '\0' => TextProblem::Nul,
            c => TextProblem::ControlChar(c),
        })
    }
}

/// The problem with a JSON value bound for a `jsonb` column: a NUL in any key or string.
pub(crate) fn json_problem(value: &serde_json::Value) -> Option<TextProblem> {
    use serde_json::Value;
    let nul = match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => return items.iter().find_map(json_problem),
        Value::Object(map) => {
            return map.iter().find_map(|(key, value)| {
                if key.contains('\0') {
                    Some(TextProblem::Nul)
                } else {
                    json_problem(value)
                }
            });
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    };
    nul.then_some(TextProblem::Nul)
}

/// The first of `fields` ((name, text)) holding a NUL: the rule of unbounded fields.
pub(crate) fn first_nul<'a>(
    fields: impl IntoIterator<Item = (&'static str, Option<&'a str>)>,
) -> Option<(&'static str, TextProblem)> {
    fields
        .into_iter()
        .find_map(|(field, text)| text?.contains('\0').then_some((field, TextProblem::Nul)))
}

/// Refuses `name` as the `field` (`"projection name"`, `"handler name"`, …) when it is
/// longer than [`MAX_NAME_LEN`] or holds a control character.
pub(crate) fn check_name(field: &'static str, name: &str) -> Result<()> {
    refuse(
        problem(name, Some(MAX_NAME_LEN), false).map(|problem| (field, problem)),
        None,
        None,
    )
}

/// `Error::Validation` ([`ValidationError::InvalidText`]) for the field `found` names,
/// bound for `stream` and carried by `event_id` where it was.
pub(crate) fn refuse(
    found: Option<(&'static str, TextProblem)>,
    stream: Option<&str>,
    event_id: Option<Uuid>,
) -> Result<()> {
    match found {
        None => Ok(()),
        Some((field, problem)) => Err(ValidationError::InvalidText {
            field,
            stream: stream.map(str::to_owned),
            event_id,
            problem,
        }
        .into()),
    }
}
