//! OpenTelemetry traces (CONTRACT §11, docs/OPERATIONS.md "Traces"): the OTLP/HTTP pipeline behind
//! `[telemetry] otlp_endpoint` ([`Pipeline`]: a batch exporter on a thread of its own, so a slow or
//! unreachable collector never holds up a request), and the two spans hookgate makes, one trace per
//! event: `ingest` (its parent a sender's `traceparent`), whose context is stored with the event
//! ([`traceparent`]), and one `attempt` per delivery attempt ([`attempt_span`]), its parent that
//! stored context, whichever process makes it; an HTTP destination gets the attempt's context as
//! `traceparent`. Attributes name sources, destinations, ids and outcomes: never a payload, a
//! header value or an error text (which may quote a response). Nothing here runs when traces are
//! off: callers branch on `config::Telemetry::traces` first. Imports nothing of ours.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData, SpanExporter};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of the spans that are exported; the exporting layer sees no other span
/// and no log event.
pub const TARGET: &str = "hookgate::trace";

/// Longest wait for the collector per export (retries included), and for the last flush.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The exporter and its batching thread. [`Pipeline::shutdown`] flushes what is queued.
pub struct Pipeline {
    provider: SdkTracerProvider,
}

impl Pipeline {
    /// Spans batched and posted as protobuf to `traces_url` (a `…/v1/traces` URL). Builds the
    /// HTTP client on a thread of its own, so it may be called inside or outside a runtime.
    /// `OTEL_BSP_*` variables tune the batching (`OTEL_BSP_SCHEDULE_DELAY`, default 5000 ms).
    pub fn new(traces_url: &str, service_name: &str) -> Result<Pipeline, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint: cannot build the OTLP exporter: {e}"))?;
        let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_string()).build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(Reported::new(exporter, traces_url))
            .with_resource(resource)
            .build();
        Ok(Pipeline { provider })
    }

    pub(super) fn tracer(&self) -> SdkTracer {
        self.provider.tracer("hookgate")
    }

    /// Exports what is queued (waiting for the collector at most [`EXPORT_TIMEOUT`]) and stops the
    /// thread. Blocks: call it after the runtime has finished serving, or on a blocking thread.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(EXPORT_TIMEOUT * 2) {
            tracing::warn!(error = %e, "traces not flushed at shutdown");
        }
    }
}

/// The OTLP exporter, saying once that the collector does not answer and once that it does again
/// (with the spans dropped meanwhile), instead of a line per failed batch.
#[derive(Debug)]
struct Reported<E> {
    inner: E,
    url: String,
    failing: AtomicBool,
    dropped: AtomicU64,
}

impl<E> Reported<E> {
    fn new(inner: E, url: &str) -> Self {
        Reported { inner, url: url.to_string(), failing: AtomicBool::new(false), dropped: AtomicU64::new(0) }
    }
}

impl<E: SpanExporter> SpanExporter for Reported<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                let dropped = self.dropped.swap(0, Ordering::Relaxed);
                tracing::info!(url = %self.url, dropped_spans = dropped, "trace export works again");
            }
            Ok(()) => {}
            Err(e) => {
                self.dropped.fetch_add(spans, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(url = %self.url, error = %e, "trace export failed; spans are dropped until the collector answers (requests are not affected)");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The span of one ingest request, a child of the sender's `traceparent` when it sent a valid
/// one. The handler records `hookgate.event_id`, `hookgate.status`, `http.response.status_code`
/// and, for a refusal, `error.type` (and `otel.status_code` for a 5xx).
pub fn ingest_span(headers: &http::HeaderMap, source: &str, method: &http::Method) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "ingest",
        otel.kind = "server",
        hookgate.source = source,
        http.request.method = %method,
        hookgate.event_id = tracing::field::Empty,
        hookgate.status = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        // Only fails when no exporting layer is installed (then there is no trace to continue).
        let _ = span.set_parent(parent);
    }
    span
}

/// What became of an ingest request: `stored` is its status ("queued", "duplicate") and event id.
pub fn ingest_answered(span: &Span, stored: Option<(&str, &str)>, status_code: u16) {
    if let Some((status, event_id)) = stored {
        span.record("hookgate.status", status);
        span.record("hookgate.event_id", event_id);
    }
    span.record("http.response.status_code", status_code);
    if status_code >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// One delivery attempt's span, a child of the event's stored `traceparent`. The worker records
/// `hookgate.outcome`, `http.response.status_code` or `process.exit.code`, and `otel.status_code`.
pub fn attempt_span(parent: &str, event_id: &str, destination: &str, delivery_id: i64, attempt: u32) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "attempt",
        otel.kind = "client",
        hookgate.event_id = event_id,
        hookgate.destination = destination,
        hookgate.delivery_id = delivery_id,
        hookgate.attempt = attempt,
        hookgate.outcome = tracing::field::Empty,
        hookgate.next = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        process.exit.code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&One(parent));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// What became of an attempt: `outcome` ("success", "failure", "timeout"), what comes next
/// ("succeeded", "retry", "dead") and the destination's status code or exit code.
pub fn attempt_done(span: &Span, outcome: &str, next: &str, status_code: Option<u16>, exit_code: Option<i32>) {
    span.record("hookgate.outcome", outcome);
    span.record("hookgate.next", next);
    if let Some(code) = status_code {
        span.record("http.response.status_code", code);
    }
    if let Some(code) = exit_code {
        span.record("process.exit.code", code);
    }
    span.record("otel.status_code", if outcome == "success" { "ok" } else { "error" });
}

/// The W3C `traceparent` of `span` (`00-{trace id}-{span id}-{flags}`), or None when the span is
/// not exported (traces off, no exporting layer installed).
pub fn traceparent(span: &Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// Request headers as the propagator reads them.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A stored `traceparent` as the propagator reads it.
struct One<'a>(&'a str);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}
