//! The mapping between chronicle's events and CloudEvents round-trips both ways, on a
//! real store.

use std::collections::BTreeMap;

use chronicle::cloudevents::{CloudEvent, Data, EventMapping, ExtensionValue, ORIGIN_KEY, format};
use chronicle::{Direction, EventMetadata, ExpectedVersion, NewEvent, RecordedEvent, Store};
use futures::TryStreamExt;
use proptest::prelude::*;
use serde_json::json;

async fn stored(store: &Store, stream: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, 1, Direction::Forward)
        .try_collect()
        .await
        .expect("read")
}

fn rich_metadata() -> EventMetadata {
    let mut custom = BTreeMap::new();
    custom.insert("region".to_owned(), json!("eu-west"));
    custom.insert("priority".to_owned(), json!(3));
    custom.insert("urgent".to_owned(), json!(true));
    custom.insert("big".to_owned(), json!(5_000_000_000_i64));
    custom.insert("ratio".to_owned(), json!(0.5));
    custom.insert("Not-An-Extension".to_owned(), json!("x"));
    custom.insert("nested".to_owned(), json!({ "a": [1, 2] }));
    custom.insert(
        "correlationid".to_owned(),
        json!("a custom entry named like a mapped one"),
    );
    EventMetadata {
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cause-1".into()),
        user_id: Some("ada".into()),
        tenant_id: Some("acme".into()),
        request_id: Some("req-9".into()),
        trace_id: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        custom,
    }
}

#[tokio::test]
async fn a_recorded_event_maps_as_the_table_says_and_back() {
    let store = Store::open("memory:").await.expect("store");
    let written = NewEvent::new("account.Opened", json!({ "owner": "ada" }))
        .schema_version(3)
        .metadata(rich_metadata());
    store
        .append(
            "account-1",
            ExpectedVersion::NoStream,
            vec![written.clone()],
        )
        .await
        .expect("append");
    let recorded = stored(&store, "account-1").await.remove(0);
    let mapping = EventMapping::new()
        .source("https://bank.example.com")
        .category_source("account", "https://bank.example.com/accounts");

    let cloud = mapping.to_cloud_event(&recorded).expect("maps");
    assert_eq!(cloud.id(), recorded.id.to_string());
    assert_eq!(
        cloud.source(),
        "https://bank.example.com/accounts",
        "the category's source"
    );
    assert_eq!(cloud.ty(), "account.Opened");
    assert_eq!(cloud.subject(), Some("account-1"));
    assert_eq!(
        cloud.time().map(|t| t.timestamp_micros()),
        Some(recorded.recorded_at.timestamp_micros())
    );
    assert_eq!(cloud.datacontenttype(), Some("application/json"));
    assert_eq!(cloud.data(), Some(&Data::Json(json!({ "owner": "ada" }))));
    let ext = |name: &str| cloud.extension(name).cloned();
    assert_eq!(ext("schemaversion"), Some(ExtensionValue::Integer(3)));
    assert_eq!(ext("correlationid"), Some("corr-1".into()));
    assert_eq!(ext("causationid"), Some("cause-1".into()));
    assert_eq!(ext("tenantid"), Some("acme".into()));
    assert_eq!(ext("userid"), Some("ada".into()));
    assert_eq!(ext("requestid"), Some("req-9".into()));
    assert_eq!(
        ext("traceparent"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into())
    );
    assert_eq!(ext("region"), Some("eu-west".into()));
    assert_eq!(ext("priority"), Some(ExtensionValue::Integer(3)));
    assert_eq!(ext("urgent"), Some(ExtensionValue::Boolean(true)));
    let meta: serde_json::Value = serde_json::from_str(
        ext("chroniclemeta")
            .and_then(|v| v.as_str().map(str::to_owned))
            .expect("meta")
            .as_str(),
    )
    .expect("JSON text");
    assert_eq!(
        meta,
        json!({
            "big": 5_000_000_000_i64, "ratio": 0.5, "Not-An-Extension": "x",
            "nested": { "a": [1, 2] }, "correlationid": "a custom entry named like a mapped one"
        })
    );

    // Back: the same id, type, schema version, payload and metadata, through the JSON
    // format on the wire; plus the record of the CloudEvent it came as.
    let wire = format::from_bytes(&format::to_bytes(&cloud)).expect("wire");
    let back = mapping.to_new_event(&wire).expect("maps back");
    assert_eq!(back.event_id(), written.event_id());
    assert_eq!(back.event_type(), written.event_type());
    assert_eq!(back.payload_json(), written.payload_json());
    let mut metadata = back.event_metadata().clone();
    let origin = metadata.custom.remove(ORIGIN_KEY).expect("origin kept");
    assert_eq!(origin["source"], "https://bank.example.com/accounts");
    assert_eq!(origin["subject"], "account-1");
    assert_eq!(&metadata, written.event_metadata());
    // The schema version is not visible on `NewEvent`: store it and look.
    store
        .append(
            "copy-1",
            ExpectedVersion::NoStream,
            vec![back.id(uuid::Uuid::now_v7())],
        )
        .await
        .expect("append copy");
    assert_eq!(stored(&store, "copy-1").await[0].schema_version, 3);
}

#[tokio::test]
async fn a_trace_id_that_is_no_traceparent_travels_as_traceid() {
    let store = Store::open("memory:").await.expect("store");
    let metadata = EventMetadata {
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        ..EventMetadata::default()
    };
    store
        .append(
            "t-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("t", json!(null)).metadata(metadata.clone())],
        )
        .await
        .expect("append");
    let recorded = stored(&store, "t-1").await.remove(0);
    let cloud = EventMapping::new().to_cloud_event(&recorded).expect("maps");
    assert_eq!(cloud.extension("traceparent"), None);
    assert_eq!(
        cloud.extension("traceid"),
        Some(&"4bf92f3577b34da6a3ce929d0e0e4736".into())
    );
    assert_eq!(cloud.data(), None, "a null payload is no data");
    let mut back = EventMapping::new()
        .to_new_event(&cloud)
        .expect("back")
        .event_metadata()
        .clone();
    back.custom.remove(ORIGIN_KEY);
    assert_eq!(back, metadata);
}

/// CloudEvent → `NewEvent` → stored → CloudEvent is the same CloudEvent.
async fn stored_and_sent_again(cloud: &CloudEvent) -> CloudEvent {
    let store = Store::open("memory:").await.expect("store");
    let mapping = EventMapping::new().source("/somewhere-else");
    let new_event = mapping.to_new_event(cloud).expect("maps in");
    store
        .append("inbox-1", ExpectedVersion::Any, vec![new_event])
        .await
        .expect("append");
    let recorded = stored(&store, "inbox-1").await.remove(0);
    mapping.to_cloud_event(&recorded).expect("maps out")
}

#[tokio::test]
async fn a_foreign_cloud_event_is_stored_and_sent_again_unchanged() {
    let time = chrono::DateTime::parse_from_rfc3339("2026-05-01T10:00:00.5+02:00").expect("time");
    let base = CloudEvent::builder(
        "A234-1234-1234",
        "urn:example:sensor",
        "com.example.reading",
    )
    .time(time)
    .dataschema("https://example.com/reading.json")
    .extension("flag", false)
    .extension("count", -7)
    .extension(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .extension("correlationid", "c-1")
    .extension("schemaversion", 2)
    .build()
    .expect("valid");
    let cases = [
        base.to_builder()
            .data_json(json!({ "celsius": 21.5 }))
            .build(),
        base.to_builder().data_text("text/csv", "a,b\n1,2").build(),
        base.to_builder()
            .data_binary("image/png", vec![0x89, b'P', 0, 255])
            .build(),
        base.to_builder().subject("sensor 7").build(),
        base.to_builder()
            .id(uuid::Uuid::now_v7().to_string())
            .build(),
        base.to_builder()
            .data(Some(Data::Json(json!([1, "two"]))))
            .build(),
    ];
    for cloud in cases {
        let cloud = cloud.expect("valid");
        assert_eq!(stored_and_sent_again(&cloud).await, cloud);
    }
}

#[tokio::test]
async fn a_bad_schemaversion_is_a_mapping_error_naming_it() {
    let cloud = CloudEvent::builder("1", "/s", "t")
        .extension("schemaversion", "two")
        .build()
        .expect("valid");
    let error = EventMapping::new()
        .to_new_event(&cloud)
        .expect_err("not a number");
    assert_eq!(error.attribute(), Some("schemaversion"));
}

fn extension_value() -> impl Strategy<Value = ExtensionValue> {
    prop_oneof![
        "[ -~]{0,12}".prop_map(ExtensionValue::String),
        any::<i32>().prop_map(ExtensionValue::Integer),
        any::<bool>().prop_map(ExtensionValue::Boolean),
    ]
}

fn data() -> impl Strategy<Value = Option<Data>> {
    prop_oneof![
        Just(None),
        "[ -~é✓]{0,20}".prop_map(|text| Some(Data::Text(text))),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|bytes| Some(Data::Binary(bytes))),
        (any::<i64>(), "[a-z]{0,6}").prop_map(|(n, s)| Some(Data::Json(json!({ "n": n, "s": s })))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any valid CloudEvent survives being stored and sent again.
    #[test]
    fn any_cloud_event_round_trips_through_the_store(
        id in "[A-Za-z0-9 ._-]{1,20}",
        source in "(/[a-z0-9]{1,8}){1,3}",
        ty in "[a-z.]{1,20}",
        subject in proptest::option::of("[ -~]{1,20}"),
        extensions in proptest::collection::btree_map("[a-z0-9]{1,10}", extension_value(), 0..4),
        data in data(),
    ) {
        let mut builder = CloudEvent::builder(id, source, ty);
        if let Some(subject) = subject {
            builder = builder.subject(subject);
        }
        for (name, value) in extensions {
            builder = builder.extension(name, value);
        }
        builder = match data {
            Some(Data::Text(text)) => builder.data_text("text/plain; charset=utf-8", text),
            Some(Data::Binary(bytes)) => builder.data_binary("application/octet-stream", bytes),
            Some(Data::Json(value)) => builder.data_json(value),
            None => builder,
        };
        // Names the mapping reads are left to the example tests.
        for name in ["schemaversion", "correlationid", "causationid", "tenantid", "userid", "requestid", "traceparent", "traceid", "chroniclemeta"] {
            builder = builder.without_extension(name);
        }
        let Ok(cloud) = builder.build() else { return Ok(()) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let again = runtime.block_on(stored_and_sent_again(&cloud));
        prop_assert_eq!(again, cloud);
    }
}
