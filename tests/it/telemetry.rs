//! OpenTelemetry end to end, with the SDK's in-memory span and metric exporters: a
//! command's span, the `traceparent` its events carry (sampled or not), and the spans of
//! a projection, an outbox handler and a bus delivery linked (not parented) to it; then
//! the metrics' values after that known workload.
//!
//! The exporters must be process-wide (the tracing subscriber, the `metrics` recorder),
//! so the workload runs in a child process of this test binary: `otel_child`, ignored
//! when run on its own, started by `spans_are_linked_and_metrics_counted`.

use std::time::Duration;

use chronicle::bus::{Bus, Delivery, InMemoryBus, StartFrom};
use chronicle::otel::MetricsRecorder;
use chronicle::{
    EventMetadata, ExpectedVersion, Handler, HandlerMap, HandlerRequest, NewEvent, Projection,
    ProjectionContext, ProjectionError, RecordedEvent, Store,
};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use crate::domain::{Account, AccountCommand};

use chronicle::otel::{opentelemetry, tracing_opentelemetry};

const CHILD: &str = "CHRONICLE_TEST_OTEL_CHILD";

#[tokio::test]
async fn spans_are_linked_and_metrics_counted() {
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "telemetry::otel_child",
            "--ignored",
            "--test-threads",
            "1",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the child failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran nothing:\n{stdout}"
    );
}

struct Seen;

impl Projection for Seen {
    fn name(&self) -> &str {
        "otel-seen"
    }

    async fn apply(
        &self,
        _event: &RecordedEvent,
        _ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        Ok(())
    }
}

/// Whether `span` is linked to a span of `target`'s trace (the append's, inside it).
fn linked_to(span: &SpanData, target: &SpanContext) -> bool {
    span.links
        .iter()
        .any(|link| link.span_context.trace_id() == target.trace_id())
}

/// The sum of metric `name`'s data points whose attributes include `having`.
fn total(metrics: &InMemoryMetricExporter, name: &str, having: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    let exported = metrics.get_finished_metrics().expect("metrics");
    // Cumulative: the last export holds the totals.
    let Some(last) = exported.last() else {
        return 0.0;
    };
    let matches = |attributes: Vec<&KeyValue>| {
        having.iter().all(|(key, value)| {
            attributes
                .iter()
                .any(|kv| kv.key.as_str() == *key && kv.value.as_str() == *value)
        })
    };
    for scope in last.scope_metrics() {
        for metric in scope.metrics().filter(|metric| metric.name() == name) {
            match metric.data() {
                AggregatedMetrics::U64(MetricData::Sum(data)) => {
                    for point in data.data_points() {
                        if matches(point.attributes().collect()) {
                            sum += point.value() as f64;
                        }
                    }
                }
                AggregatedMetrics::F64(MetricData::Gauge(data)) => {
                    for point in data.data_points() {
                        if matches(point.attributes().collect()) {
                            sum += point.value();
                        }
                    }
                }
                AggregatedMetrics::F64(MetricData::Histogram(data)) => {
                    for point in data.data_points() {
                        if matches(point.attributes().collect()) {
                            sum += point.count() as f64;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a child process: see spans_are_linked_and_metrics_counted"]
async fn otel_child() {
    if std::env::var(CHILD).is_err() {
        return;
    }
    let spans = InMemorySpanExporter::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let tracer = tracer_provider.tracer("chronicle-test");
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer)),
    )
    .expect("subscriber");
    let metrics = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    metrics::set_global_recorder(MetricsRecorder::with_meter(
        meter_provider.meter("chronicle"),
    ))
    .expect("recorder");

    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(format!("sqlite://{}", dir.path().join("otel.db").display()))
        .await
        .expect("store");
    let accounts = store.repository::<Account>();

    // A request's span; the command runs inside it.
    let request = tracing::info_span!("request");
    let executed = accounts
        .execute(
            "otel-1",
            AccountCommand::Open {
                owner: "ada".into(),
            },
        )
        .instrument(request.clone())
        .await
        .expect("command");
    accounts
        .execute("otel-1", AccountCommand::Deposit(5))
        .instrument(request.clone())
        .await
        .expect("command");
    let request_context = request.context().span().span_context().clone();
    drop(request);
    assert!(request_context.is_valid());
    let written = &executed.events[0];
    let stored = store
        .event_by_id(written.event_id)
        .await
        .expect("read back")
        .expect("stored");
    let traceparent = stored.metadata.trace_id.clone().expect("a traceparent");
    assert!(
        traceparent.starts_with(&format!("00-{}-", request_context.trace_id())),
        "{traceparent}"
    );
    assert!(traceparent.ends_with("-01"), "sampled: {traceparent}");

    // Not sampled (a remote parent that was not): the context is written all the same.
    let unsampled = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("trace id"),
        SpanId::from_hex("00f067aa0ba902b7").expect("span id"),
        TraceFlags::default(),
        true,
        TraceState::default(),
    );
    let quiet = tracing::info_span!("unsampled request");
    quiet
        .set_parent(Context::new().with_remote_span_context(unsampled))
        .expect("parent");
    let appended = store
        .append(
            "otel-2",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("test.quiet", json!({}))],
        )
        .instrument(quiet)
        .await
        .expect("append");
    let quiet_event = store
        .event_by_id(appended.events[0].event_id)
        .await
        .expect("read back")
        .expect("stored");
    let quiet_parent = quiet_event
        .metadata
        .trace_id
        .expect("written unsampled too");
    assert!(
        quiet_parent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
            && quiet_parent.ends_with("-00"),
        "{quiet_parent}"
    );
    // A traceparent the caller set is kept.
    let own = EventMetadata {
        trace_id: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        ..EventMetadata::default()
    };
    let kept = store
        .append(
            "otel-3",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("test.own", json!({})).metadata(own.clone())],
        )
        .instrument(tracing::info_span!("another request"))
        .await
        .expect("append");
    let kept_event = store
        .event_by_id(kept.events[0].event_id)
        .await
        .expect("read back")
        .expect("stored");
    assert_eq!(kept_event.metadata.trace_id, own.trace_id);

    // Handlers: a projection, an outbox handler, a bus subscriber behind a relay.
    let projection = store
        .projections()
        .start_from(StartFrom::Beginning)
        .spawn(Seen);
    projection.wait_for_idle().await.expect("projection");
    projection.stop().await.expect("stop");
    let outbox = store
        .outbox(HandlerMap::new().route(Handler::new(
            "otel-mailer",
            "account.*",
            |_request: HandlerRequest| async { Ok(()) },
        )))
        .expect("outbox")
        .start_from(chronicle::StartFrom::Beginning);
    outbox.process().await.expect("process");
    while outbox.stats().await.expect("stats").handlers["otel-mailer"].done < 2 {
        outbox.execute().await.expect("execute");
    }
    let bus = InMemoryBus::new();
    bus.subscribe("account.*", |_delivery: Delivery| async { Ok(()) })
        .await
        .expect("subscribe")
        .detach();
    let relay = store
        .relay("otel-relay")
        .start_from(StartFrom::Beginning)
        .to_bus(bus.clone());
    relay.wait_for_idle().await.expect("relay");
    relay.stop().await.expect("stop");
    bus.close().await.expect("close");

    tracer_provider.force_flush().expect("flush spans");
    let finished = spans.get_finished_spans().expect("spans");
    let named = |name: &str| -> Vec<&SpanData> {
        finished.iter().filter(|span| span.name == name).collect()
    };
    // The command's span: aggregate type and id, attempts; a child of the request.
    let commands = named("chronicle.execute");
    assert_eq!(
        commands.len(),
        2,
        "{:?}",
        finished.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let command = commands[0];
    assert_eq!(command.parent_span_id, request_context.span_id());
    let attribute = |span: &SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(
        attribute(command, "aggregate.type").as_deref(),
        Some("account")
    );
    assert_eq!(attribute(command, "attempts").as_deref(), Some("1"));
    // Handling spans: their own traces, linked to the request's span.
    for name in [
        "chronicle.projection.batch",
        "chronicle.outbox.execute",
        "chronicle.bus.deliver",
    ] {
        let handling = named(name);
        let linked: Vec<&&SpanData> = handling
            .iter()
            .filter(|span| linked_to(span, &request_context))
            .collect();
        assert!(
            !linked.is_empty(),
            "no `{name}` span is linked to the request"
        );
        for span in linked {
            assert_ne!(
                span.span_context.trace_id(),
                request_context.trace_id(),
                "`{name}` is linked, not parented"
            );
        }
    }
    let applied = named("chronicle.projection.apply");
    let apply = applied
        .iter()
        .find(|span| linked_to(span, &request_context))
        .expect("a per-event apply span linked to the request");
    assert_eq!(
        attribute(apply, "event.type").as_deref(),
        Some("account.Opened")
    );
    assert_eq!(
        attribute(apply, "event.stream").as_deref(),
        Some("account-otel-1")
    );
    assert!(attribute(apply, "event.position").is_some());
    assert!(attribute(apply, "event.id").is_some());

    // The metrics after this workload.
    meter_provider.force_flush().expect("flush metrics");
    assert_eq!(
        total(&metrics, "chronicle_appends_total", &[("outcome", "ok")]),
        4.0
    );
    assert_eq!(total(&metrics, "chronicle_append_events_total", &[]), 4.0);
    assert!(total(&metrics, "chronicle_append_bytes_total", &[]) > 0.0);
    assert_eq!(total(&metrics, "chronicle_append_seconds", &[]), 4.0);
    assert_eq!(
        total(
            &metrics,
            "chronicle_commands_total",
            &[("aggregate", "account"), ("outcome", "ok")]
        ),
        2.0
    );
    assert_eq!(
        total(
            &metrics,
            "chronicle_projection_applied_events_total",
            &[("projection", "otel-seen")]
        ),
        4.0
    );
    assert_eq!(
        total(
            &metrics,
            "chronicle_outbox_executions_total",
            &[("handler", "otel-mailer"), ("outcome", "done")]
        ),
        2.0
    );
    assert_eq!(
        total(
            &metrics,
            "chronicle_relay_published_total",
            &[("relay", "relay:otel-relay")]
        ),
        4.0
    );
    assert_eq!(
        total(
            &metrics,
            "chronicle_bus_deliveries_total",
            &[("bus", "in-memory"), ("outcome", "delivered")]
        ),
        2.0
    );
    assert!(total(&metrics, "chronicle_read_events_total", &[]) >= 3.0);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
