//! W3C trace context across the queue: the span that enqueues a job gives the job its
//! `traceparent`, and the worker's job span continues that trace. Without `otel.endpoint`
//! no span is recorded and nothing is stored.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of the current span, when a trace is being recorded.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the span `traceparent` names; a malformed value is ignored (the
/// span then starts a trace of its own).
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        // Fails only when the span is disabled (filtered out): nothing to continue then.
        let _ = span.set_parent(cx);
    }
}

/// Continues the caller's trace when a request carries a `traceparent` header.
pub fn continue_from_headers(span: &tracing::Span, headers: &reqwest::header::HeaderMap) {
    if let Some(v) = headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()) {
        continue_trace(span, v);
    }
}
