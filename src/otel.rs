//! OpenTelemetry (the `otel` feature): what an application needs to export chronicle's
//! traces and metrics, at the versions chronicle is built with.
//!
//! - **Traces**: install [`tracing_opentelemetry`]'s layer on your `tracing` subscriber.
//!   Appends then write the W3C `traceparent` of the current span into each event's
//!   metadata (`trace_id`; `tracestate` into `custom["tracestate"]`), sampled or not, and
//!   every span that handles an event (projection batches and applies, outbox handlers,
//!   relay batches, bus deliveries, the CloudEvents receiver) links to it.
//! - **Metrics**: chronicle records through the `metrics` facade; [`MetricsRecorder`]
//!   forwards them to an OpenTelemetry meter.
//!
//! ```no_run
//! use chronicle::otel::{MetricsRecorder, opentelemetry};
//! use opentelemetry::metrics::MeterProvider as _;
//!
//! # fn demo(provider: impl opentelemetry::metrics::MeterProvider) {
//! let meter = provider.meter("chronicle");
//! metrics::set_global_recorder(MetricsRecorder::with_meter(meter)).ok();
//! # }
//! ```
//!
//! `examples/otel.rs` exports both with OTLP.

pub use metrics_exporter_opentelemetry::Recorder as MetricsRecorder;
pub use {opentelemetry, tracing_opentelemetry};
