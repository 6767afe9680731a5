//! Hostile text in every field a caller fills: each backend either stores it and gives it
//! back unchanged, or refuses it with a validation error naming the field, and writes
//! nothing. No such input ever reaches the database as an untyped error.

use chronicle::{
    Direction, Error, EventMetadata, EventQuery, ExpectedVersion, MAX_EVENT_TYPE_LEN,
    MAX_METADATA_ID_LEN, NewEvent, NewStream, Store, StreamListQuery,
};
use futures::TryStreamExt;
use proptest::prelude::*;
use serde_json::json;

use crate::support::Kind;

/// The fields a caller's text can go into.
#[derive(Debug, Clone, Copy)]
enum Field {
    EventType,
    Correlation,
    Causation,
    User,
    Tenant,
    Request,
    Trace,
    CustomKey,
    CustomValue,
    AggregateType,
    DisplayName,
    StreamMetadata,
    QueryType,
    QueryCorrelation,
    ListCategory,
}

impl Field {
    /// The name the error must carry.
    fn name(self) -> &'static str {
        match self {
            Field::EventType => "event type",
            Field::Correlation => "correlation_id",
            Field::Causation => "causation_id",
            Field::User => "user_id",
            Field::Tenant => "tenant_id",
            Field::Request => "request_id",
            Field::Trace => "trace_id",
            Field::CustomKey | Field::CustomValue => "custom metadata",
            Field::AggregateType => "aggregate_type",
            Field::DisplayName => "display_name",
            Field::StreamMetadata => "stream metadata",
            Field::QueryType => "event type",
            Field::QueryCorrelation => "correlation_id",
            Field::ListCategory => "category",
        }
    }

    /// The documented rule: the length limit, and whether control characters other than
    /// NUL are refused. NUL is refused everywhere.
    fn rule(self) -> (Option<usize>, bool) {
        match self {
            Field::EventType => (Some(MAX_EVENT_TYPE_LEN), true),
            Field::Correlation
            | Field::Causation
            | Field::User
            | Field::Tenant
            | Field::Request
            | Field::Trace => (Some(MAX_METADATA_ID_LEN), false),
            _ => (None, false),
        }
    }

    fn accepts(self, text: &str) -> bool {
        let (limit, no_controls) = self.rule();
        let empty_type = matches!(self, Field::EventType) && text.is_empty();
        let too_long = limit.is_some_and(|limit| text.len() > limit);
        let control = no_controls && text.chars().any(char::is_control);
        !(empty_type || too_long || text.contains('\0') || control)
    }
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        Just(Field::EventType),
        Just(Field::Correlation),
        Just(Field::Causation),
        Just(Field::User),
        Just(Field::Tenant),
        Just(Field::Request),
        Just(Field::Trace),
        Just(Field::CustomKey),
        Just(Field::CustomValue),
        Just(Field::AggregateType),
        Just(Field::DisplayName),
        Just(Field::StreamMetadata),
        Just(Field::QueryType),
        Just(Field::QueryCorrelation),
        Just(Field::ListCategory),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        // Printable unicode, short and long (across the limits).
        "\\PC{0,12}",
        "[a-zé漢]{250,260}",
        "x{10000}",
        // With NUL or other control characters somewhere.
        ("\\PC{0,6}", "[\\x00-\\x1f\\x7f]", "\\PC{0,6}").prop_map(|(a, c, b)| format!("{a}{c}{b}")),
        Just("\0".to_owned()),
    ]
}

/// Sends `text` in `field`; checks the outcome against the rule.
async fn check(store: &Store, field: Field, text: &str) -> Result<(), TestCaseError> {
    let stream = "bad-input-1";
    let mut event = NewEvent::new("typed", json!({ "n": 1 }));
    let mut metadata = EventMetadata::default();
    let mut spec = None;
    let mut query = None;
    let mut list = None;
    match field {
        Field::EventType => event = NewEvent::new(text, json!({ "n": 1 })),
        Field::Correlation => metadata.correlation_id = Some(text.to_owned()),
        Field::Causation => metadata.causation_id = Some(text.to_owned()),
        Field::User => metadata.user_id = Some(text.to_owned()),
        Field::Tenant => metadata.tenant_id = Some(text.to_owned()),
        Field::Request => metadata.request_id = Some(text.to_owned()),
        Field::Trace => metadata.trace_id = Some(text.to_owned()),
        Field::CustomKey => {
            metadata.custom.insert(text.to_owned(), json!(1));
        }
        Field::CustomValue => {
            metadata
                .custom
                .insert("note".to_owned(), json!([{ "deep": text }]));
        }
        Field::AggregateType => spec = Some(NewStream::new().aggregate_type(text)),
        Field::DisplayName => spec = Some(NewStream::new().display_name(text)),
        Field::StreamMetadata => {
            spec = Some(NewStream {
                metadata: json!({ "note": text }),
                ..NewStream::new()
            });
        }
        Field::QueryType => {
            query = Some(EventQuery {
                event_types: vec![text.to_owned()],
                ..EventQuery::default()
            });
        }
        Field::QueryCorrelation => {
            query = Some(EventQuery {
                correlation_id: Some(text.to_owned()),
                ..EventQuery::default()
            });
        }
        Field::ListCategory => {
            list = Some(StreamListQuery {
                category: Some(text.to_owned()),
                ..StreamListQuery::default()
            });
        }
    }
    let event = event.metadata(metadata.clone());
    let event_type = event.event_type().to_owned();
    let outcome = if let Some(spec) = spec {
        store.create_stream(stream, spec).await
    } else if let Some(query) = query {
        store
            .query(&query)
            .try_collect::<Vec<_>>()
            .await
            .map(|_| ())
    } else if let Some(list) = list {
        store.list_streams(&list).await.map(|_| ())
    } else {
        store
            .append(stream, ExpectedVersion::NoStream, vec![event])
            .await
            .map(|_| ())
    };
    let accepted = field.accepts(text);
    match outcome {
        Ok(()) => prop_assert!(accepted, "{field:?} took {text:?}"),
        Err(Error::Validation(error)) => {
            prop_assert!(!accepted, "{field:?} refused {text:?}: {error}");
            let message = error.to_string();
            prop_assert!(
                message.contains(field.name()),
                "the error names the field: {message}"
            );
        }
        Err(other) => prop_assert!(false, "{field:?} with {text:?}: untyped {other:?}"),
    }
    // What was stored reads back as sent; nothing is stored after a refusal.
    let info = store.stream_info(stream).await.map_err(fail)?;
    let events: Vec<_> = store
        .read_stream(stream, 1, Direction::Forward)
        .try_collect()
        .await
        .unwrap_or_default();
    let writes = matches!(
        field,
        Field::EventType
            | Field::Correlation
            | Field::Causation
            | Field::User
            | Field::Tenant
            | Field::Request
            | Field::Trace
            | Field::CustomKey
            | Field::CustomValue
    );
    if !accepted
        || !(writes
            || matches!(
                field,
                Field::AggregateType | Field::DisplayName | Field::StreamMetadata
            ))
    {
        prop_assert!(info.is_none(), "nothing is written: {info:?}");
    } else if writes {
        prop_assert_eq!(events.len(), 1);
        prop_assert_eq!(&events[0].event_type, &event_type);
        prop_assert_eq!(&events[0].metadata, &metadata);
    } else {
        let info = info.expect("created");
        match field {
            Field::AggregateType => prop_assert_eq!(info.aggregate_type.as_deref(), Some(text)),
            Field::DisplayName => prop_assert_eq!(info.display_name.as_deref(), Some(text)),
            _ => prop_assert_eq!(info.metadata, json!({ "note": text })),
        }
    }
    Ok(())
}

fn fail(error: Error) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

fn run(kind: Kind, cases: u32) {
    let Some((runtime, config)) = crate::support::property_test(kind, "bad_input", cases) else {
        return;
    };
    proptest!(config, |(field in field(), text in text())| {
        runtime.block_on(async {
            let t = kind.open("bad_input").await.expect("service checked above");
            check(&t.store, field, &text).await
        })?;
    });
}

#[test]
fn memory_refuses_bad_text_by_field() {
    run(Kind::Memory, 256);
}

#[test]
fn sqlite_refuses_bad_text_by_field() {
    run(Kind::Sqlite, 64);
}

#[test]
fn postgres_refuses_bad_text_by_field() {
    run(Kind::Postgres, 48);
}

/// The names of projections, relays, outboxes and outbox handlers are text the database
/// keeps too (checkpoints, leases, requests): NUL, control characters and names over
/// [`MAX_NAME_LEN`] are refused as validation errors naming what was named, on every
/// backend, and nothing runs under such a name.
async fn bad_names_of_background_work_are_refused(kind: Kind) {
    use chronicle::{
        Handler, HandlerMap, HandlerRequest, MAX_NAME_LEN, Projection, ProjectionContext,
        ProjectionError, ProjectionState, RecordedEvent,
    };

    struct Named(String);
    impl Projection for Named {
        fn name(&self) -> &str {
            &self.0
        }
        async fn apply(
            &self,
            _event: &RecordedEvent,
            _ctx: &mut ProjectionContext<'_>,
        ) -> Result<(), ProjectionError> {
            Ok(())
        }
    }

    fn names_the(field: &str, outcome: Result<impl std::fmt::Debug, Error>) {
        match outcome {
            Err(Error::Validation(error)) => {
                let message = error.to_string();
                assert!(message.contains(field), "names the {field}: {message}");
            }
            other => panic!("the {field} should be refused, got {other:?}"),
        }
    }

    let Some(t) = kind.open("bad_names").await else {
        return;
    };
    let store = &t.store;
    store
        .append(
            "named-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("typed", json!({}))],
        )
        .await
        .unwrap();
    let bad = [
        "a\0b".to_owned(),
        "tab\there".to_owned(),
        "x".repeat(MAX_NAME_LEN + 1),
    ];
    for name in &bad {
        names_the("checkpoint name", store.checkpoint(name).await);
        names_the("projection name", store.reset_projection(name).await);
        let handle = store.projections().spawn(Named(name.clone()));
        let stopped = handle.wait_for_idle().await;
        names_the(
            "projection name",
            stopped.map_err(|error| match error {
                Error::ProjectionStopped {
                    source: Some(source),
                    ..
                } => source
                    .downcast_ref::<Error>()
                    .map_or_else(|| Error::Internal(source.to_string()), clone_validation),
                other => other,
            }),
        );
        assert_eq!(handle.status().state, ProjectionState::Failed);

        if kind.in_memory() {
            continue; // the outbox needs a SQL backend
        }
        let handler = |name: &str| {
            HandlerMap::new().route(Handler::new(name, "*", |_request: HandlerRequest| async {
                Ok(())
            }))
        };
        names_the("handler name", store.outbox(handler(name)).map(|_| ()));
        let outbox = store.outbox(handler("fine")).unwrap().name(name.clone());
        names_the("outbox name", outbox.process().await);
    }
    // A good name at the limit runs.
    let name = "n".repeat(MAX_NAME_LEN);
    let handle = store.projections().spawn(Named(name.clone()));
    handle.wait_for_idle().await.unwrap();
    assert!(store.checkpoint(&name).await.unwrap().is_some());
    handle.stop().await.unwrap();
}

/// The validation error inside a stopped projection's source, rebuilt to be matched.
fn clone_validation(error: &Error) -> Error {
    match error {
        Error::Validation(validation) => Error::Validation(validation.clone()),
        other => Error::Internal(other.to_string()),
    }
}

crate::for_each_backend!(bad_names_of_background_work_are_refused);
