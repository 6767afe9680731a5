//! Trace context through the log, and the metrics' names.
//!
//! **Traces.** An append writes the current trace context into each event's metadata: the
//! W3C `traceparent` into `trace_id` (unless the caller set one) and a non-empty
//! `tracestate` into `custom["tracestate"]`, whether or not the span is sampled. Whoever
//! handles the event later (a projection, an outbox handler, a relay, a bus consumer, the
//! CloudEvents receiver) opens a span of its own and **links** it to that context: the
//! handling is its own trace, not a child of a request that ended long ago. Reading the
//! context needs the `otel` feature (tracing-opentelemetry); without it both functions
//! do nothing, and the handling spans are plain `tracing` spans.
//!
//! **Metrics** go through the `metrics` facade (an application installs a recorder:
//! Prometheus, or OpenTelemetry with the `otel` feature's bridge); their names are
//! the constants below, listed in README's "Operating chronicle".

use crate::event::EventMetadata;

/// Appends, by `outcome` (`ok`, `conflict`, `error`).
pub(crate) const APPENDS: &str = "chronicle_appends_total";
/// Events written by appends.
pub(crate) const APPENDED_EVENTS: &str = "chronicle_append_events_total";
/// Payload bytes written by appends, as stored (after compression and encryption).
pub(crate) const APPENDED_BYTES: &str = "chronicle_append_bytes_total";
/// How long appends take, in seconds.
pub(crate) const APPEND_SECONDS: &str = "chronicle_append_seconds";
/// Events returned by public reads (streams, the log, queries).
pub(crate) const READ_EVENTS: &str = "chronicle_read_events_total";
/// Stored events skipped by typed reads because an upcaster dropped their type, by
/// `event_type`.
pub(crate) const UPCAST_DROPPED: &str = "chronicle_upcast_dropped_events_total";
/// Aggregate loads, by `aggregate` and `source` (`snapshot`, `events`, `cache`).
pub(crate) const AGGREGATE_LOADS: &str = "chronicle_aggregate_loads_total";
/// Events replayed by aggregate loads, by `aggregate`.
pub(crate) const AGGREGATE_REPLAYED: &str = "chronicle_aggregate_replayed_events_total";
/// Commands run, by `aggregate` and `outcome` (`ok`, `rejected`, `error`).
pub(crate) const COMMANDS: &str = "chronicle_commands_total";
/// Events applied by a projection, by `projection`.
pub(crate) const PROJECTION_APPLIED: &str = "chronicle_projection_applied_events_total";
/// A projection's distance to the end of the log, in events, by `projection`.
pub(crate) const PROJECTION_LAG_EVENTS: &str = "chronicle_projection_lag_events";
/// How old the last event a projection applied was, in seconds, by `projection`.
pub(crate) const PROJECTION_LAG_SECONDS: &str = "chronicle_projection_lag_seconds";
/// Messages a relay's sink acknowledged, by `relay`.
pub(crate) const RELAY_PUBLISHED: &str = "chronicle_relay_published_total";
/// A relay's failed sends (each retried), by `relay`.
pub(crate) const RELAY_FAILED: &str = "chronicle_relay_failed_total";
/// Events published on a bus, by `bus`.
pub(crate) const BUS_PUBLISHED: &str = "chronicle_bus_published_total";
/// Bus deliveries, by `bus` and `outcome` (`delivered`, `failed`, `dead`).
pub(crate) const BUS_DELIVERIES: &str = "chronicle_bus_deliveries_total";

/// An `info` span for handling one stored event: `name`, the event's id, type, stream
/// and position as attributes (plus any fields given), linked to its producer.
macro_rules! event_span {
    ($name:literal, $event:expr $(, $($field:tt)*)?) => {{
        let event: &$crate::event::RecordedEvent = $event;
        let span = tracing::info_span!(
            $name,
            event.id = %event.id,
            event.r#type = %event.event_type,
            event.stream = %event.stream_id,
            event.position = event.position
            $(, $($field)*)?
        );
        $crate::telemetry::link(&span, &event.metadata);
        span
    }};
}
pub(crate) use event_span;

/// Writes the current span's trace context into `metadata` (see the module's doc).
pub(crate) fn stamp(metadata: &mut EventMetadata) {
    #[cfg(feature = "otel")]
    otel::stamp(metadata);
    #[cfg(not(feature = "otel"))]
    let _ = metadata;
}

/// Links `span` to the trace context `metadata` carries, if any.
pub(crate) fn link(span: &tracing::Span, metadata: &EventMetadata) {
    #[cfg(feature = "otel")]
    otel::link(span, metadata);
    #[cfg(not(feature = "otel"))]
    let _ = (span, metadata);
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use crate::event::EventMetadata;

    /// Where a `tracestate` goes in the metadata.
    const TRACESTATE: &str = "tracestate";

    pub(super) fn stamp(metadata: &mut EventMetadata) {
        if metadata.trace_id.is_some() {
            return;
        }
        let context = tracing::Span::current().context();
        let span = context.span();
        let current = span.span_context();
        if !current.is_valid() {
            return;
        }
        metadata.trace_id = Some(format!(
            "00-{}-{}-{:02x}",
            current.trace_id(),
            current.span_id(),
            current.trace_flags().to_u8()
        ));
        let state = current.trace_state().header();
        if !state.is_empty() {
            metadata
                .custom
                .entry(TRACESTATE.to_owned())
                .or_insert(serde_json::Value::String(state));
        }
    }

    pub(super) fn link(span: &tracing::Span, metadata: &EventMetadata) {
        if let Some(context) = producer(metadata) {
            span.add_link(context);
        }
    }

    /// The producer's span context a `traceparent` names (version 00), if valid.
    fn producer(metadata: &EventMetadata) -> Option<SpanContext> {
        let traceparent = metadata.trace_id.as_deref()?;
        let mut parts = traceparent.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        let trace = TraceId::from_hex(trace).ok()?;
        let span = SpanId::from_hex(span).ok()?;
        let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
        let state = metadata
            .custom
            .get(TRACESTATE)
            .and_then(serde_json::Value::as_str)
            .and_then(|state| state.parse::<TraceState>().ok())
            .unwrap_or_default();
        let context = SpanContext::new(trace, span, flags, true, state);
        context.is_valid().then_some(context)
    }
}
