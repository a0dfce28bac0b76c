//! Trace context in message headers: a consumer's span continues the trace of whoever published
//! the message (W3C `traceparent`, through the global OpenTelemetry propagator).
//!
//! With the `opentelemetry` feature, [`continue_trace`] makes a span the child of the context in
//! a message's headers and [`inject`] writes a span's context into headers. They only have an
//! effect when the application installs a `tracing-opentelemetry` layer and a text-map propagator
//! (`opentelemetry::global::set_text_map_propagator`); without the feature they do nothing, and
//! the `traceparent` header is carried through unchanged.

use std::collections::BTreeMap;

use tracing::Span;

/// Makes `span` the child of the trace context in `headers` (e.g. [`Message::headers`]).
///
/// Call it before the span is first entered. Headers without a valid context leave the span a
/// root (or the child of the current span).
///
/// [`Message::headers`]: crate::Message::headers
pub fn continue_trace(span: &Span, headers: &BTreeMap<String, String>) {
    #[cfg(feature = "opentelemetry")]
    {
        use opentelemetry::trace::TraceContextExt;
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderMap(headers))
        });
        if parent.span().span_context().is_valid() {
            set_parent(span, parent);
        }
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, headers);
}

/// Makes `span` the child of `parent`, a context extracted from a carrier (HTTP headers, say).
///
/// Without an OpenTelemetry layer, or for a span no layer records, there is no trace and nothing
/// to do. A span that has started already (entered, or its context taken) cannot change its
/// parent: that is a bug of the caller, caught in debug builds.
#[cfg(feature = "opentelemetry")]
pub fn set_parent(span: &Span, parent: opentelemetry::Context) {
    use tracing_opentelemetry::{OpenTelemetrySpanExt, SetParentError};
    let result = span.set_parent(parent);
    debug_assert!(
        !matches!(result, Err(SetParentError::AlreadyStarted)),
        "set the parent before the span starts"
    );
}

/// Writes the trace context of `span` into `headers` (replacing what a propagator puts there,
/// e.g. `traceparent`). Returns whether it wrote one: `false` when the span has no valid context
/// (no OpenTelemetry layer, or the feature is off).
pub fn inject(span: &Span, headers: &mut BTreeMap<String, String>) -> bool {
    #[cfg(feature = "opentelemetry")]
    {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let context = span.context();
        if !context.span().span_context().is_valid() {
            return false;
        }
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut HeaderMapMut(headers))
        });
        true
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        let _ = (span, headers);
        false
    }
}

#[cfg(feature = "opentelemetry")]
struct HeaderMap<'a>(&'a BTreeMap<String, String>);

#[cfg(feature = "opentelemetry")]
impl opentelemetry::propagation::Extractor for HeaderMap<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(feature = "opentelemetry")]
struct HeaderMapMut<'a>(&'a mut BTreeMap<String, String>);

#[cfg(feature = "opentelemetry")]
impl opentelemetry::propagation::Injector for HeaderMapMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}
