//! Logging and tracing: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), and
//! OpenTelemetry spans for one trace per checkout.
//!
//! The trace context crosses every hop as a W3C `traceparent`: the HTTP request's header (or
//! a new trace), Kafka message headers from the coordinator to the participants and back.
//! Spans are exported over OTLP (HTTP/protobuf) only when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set; without it the trace ids are still made, carried and logged: the spans that start a
//! process's part of a trace have a `trace_id` field, so every log line within them names it.
//!
//! Spans come at two levels. The ones that carry a trace across a hop (an HTTP request, a
//! transaction, a participant's command) are `info`; the details within them (a phase, an
//! ask, a Redis script) are `debug`. Each layer has its own filter, so a detail span is made
//! only when the log filter (`RUST_LOG`) or an OTLP export wants it: a checkout otherwise
//! makes about ten spans that nothing reads, which cost the order service several percent
//! of its CPU under load.

use std::io::IsTerminal;
use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Span;
use tracing::level_filters::LevelFilter;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The header (HTTP and Kafka) that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs logging and tracing for `service` (once per process).
pub fn init(service: &'static str) {
    let log_filter = || {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"))
    };
    // The standard OTEL_SERVICE_NAME wins over the service's own name.
    let resource = match std::env::var_os("OTEL_SERVICE_NAME") {
        Some(_) => Resource::builder().build(),
        None => Resource::builder().with_service_name(service).build(),
    };
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    let exporting = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some_and(|v| !v.is_empty());
    let mut export_error = None;
    if !exporting {
        // Nothing would read the spans: make them non-recording. They still get trace and span
        // ids, which the logs and the `traceparent` headers carry, at a fraction of the cost
        // of building every span's data only to drop it.
        provider = provider.with_sampler(Sampler::AlwaysOff);
    } else {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => provider = provider.with_batch_exporter(exporter),
            Err(e) => export_error = Some(e.to_string()),
        }
    }
    let provider = provider.build();
    let tracer = provider.tracer(service);
    let _ = PROVIDER.set(provider);
    // An exported trace shows our detail spans; otherwise only the ones that carry the trace,
    // and those the logs show (a logged span must be in the trace too, or a message sent
    // within it would carry no trace context).
    let ours = if exporting {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let trace_filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_targets(["common", "order", "stock", "payment"].map(|crate_| (crate_, ours)))
        .with_target("rdkafka", LevelFilter::WARN)
        .or(log_filter());
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                // Colours only on a terminal: log files stay greppable.
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(log_filter()),
        )
        .with(
            // Only what a trace needs: timing every enter and exit, the thread, the source
            // location and an active OpenTelemetry context per poll cost the order service
            // about a tenth of its CPU under load, and nothing here reads them.
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_location(false)
                .with_target(false)
                .with_context_activation(false)
                .with_filter(trace_filter),
        )
        .try_init();
    if let Some(e) = export_error {
        tracing::error!(error = %e, "OTLP exporter not built; traces are only logged");
    }
}

/// Sends the spans not exported yet (when exporting); call once before the process exits.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

/// Makes `span` continue the trace of `traceparent` (or start a trace of its own) and records
/// the trace id in its `trace_id` field, which the span must declare (`trace_id =
/// tracing::field::Empty`). Call before the span is first entered.
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    if let Some(value) = traceparent {
        let parent = TraceContextPropagator::new().extract(&One(value));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
    }
}

/// The `traceparent` of the current span, if it is part of a trace.
pub fn current_traceparent() -> Option<String> {
    let context = Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = Carrier(None);
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.0
}

/// A carrier holding one `traceparent` value.
struct One<'a>(&'a str);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// Receives the `traceparent` the propagator writes (and ignores `tracestate`).
struct Carrier(Option<String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}
