//! chronicle's traces and metrics exported with OTLP over HTTP, on the SQLite default: a
//! request's span runs a command (its events carry the request's `traceparent`), then a
//! projection and a relay into an in-process bus handle them in spans of their own,
//! linked back to the request. Metrics (`chronicle_…`) go through the `metrics` facade
//! to an OpenTelemetry meter.
//!
//! Point it at a collector with `OTEL_EXPORTER_OTLP_ENDPOINT` (default
//! `http://localhost:4318`); without one it runs all the same and says the export failed.
//! Run it with `cargo run --features otel --example otel`.

#[path = "shared/bank.rs"]
#[allow(dead_code)] // the bank's other commands serve the other examples
mod bank;

use bank::{BankAccount, Command};
use chronicle::bus::{Bus, Delivery, InMemoryBus, StartFrom};
use chronicle::otel::{MetricsRecorder, opentelemetry, tracing_opentelemetry};
use chronicle::{Projection, ProjectionContext, ProjectionError, RecordedEvent, Store};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

struct Audit;

impl Projection for Audit {
    fn name(&self) -> &str {
        "audit"
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        _ctx: &mut ProjectionContext<'_>,
    ) -> Result<(), ProjectionError> {
        println!(
            "  audit: {} (traceparent {})",
            event.event_type,
            event.metadata.trace_id.as_deref().unwrap_or("-")
        );
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The exporters' HTTP client is reqwest; built with chronicle's `cloudevents` feature,
    // it uses rustls without a crypto provider of its own: install ring (as PostgreSQL's
    // TLS uses; aws-lc-rs, rustls's post-quantum default, needs cmake).
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Traces: tracing → tracing-opentelemetry → OTLP.
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let tracer_provider = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .build();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(
        tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("chronicle-example")),
    ))?;
    // Metrics: the `metrics` facade → OpenTelemetry → OTLP.
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .build()?;
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics).build())
        .build();
    metrics::set_global_recorder(MetricsRecorder::with_meter(
        meter_provider.meter("chronicle"),
    ))?;

    let path = std::env::temp_dir().join("chronicle-otel.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = Store::open(format!("sqlite://{}", path.display())).await?;
    let accounts = store.repository::<BankAccount>();

    // A request: its span is the parent of the command's; the events carry its context.
    let request = tracing::info_span!("POST /accounts");
    async {
        accounts
            .execute(
                "ada",
                Command::Open {
                    owner: "Ada".into(),
                },
            )
            .await?;
        accounts.execute("ada", Command::Deposit(100)).await
    }
    .instrument(request)
    .await?;

    // Handlers: each span links to the request's trace.
    let projection = store
        .projections()
        .start_from(StartFrom::Beginning)
        .spawn(Audit);
    projection.wait_for_idle().await?;
    let bus = InMemoryBus::new();
    bus.subscribe("bank.*", |delivery: Delivery| async move {
        println!("  bus: {}", delivery.event_type);
        Ok(())
    })
    .await?
    .detach();
    let relay = store
        .relay("to-bus")
        .start_from(StartFrom::Beginning)
        .to_bus(bus.clone());
    relay.wait_for_idle().await?;
    relay.stop().await?;
    projection.stop().await?;
    bus.close().await?;

    // Export what is pending; a missing collector is reported, not fatal.
    for (what, flushed) in [
        ("traces", tracer_provider.force_flush()),
        ("metrics", meter_provider.force_flush()),
    ] {
        match flushed {
            Ok(()) => println!("{what} exported"),
            Err(error) => println!("{what} not exported (is a collector listening?): {error}"),
        }
    }
    let _ = tracer_provider.shutdown();
    let _ = meter_provider.shutdown();
    Ok(())
}
