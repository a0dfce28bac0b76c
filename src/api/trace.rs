//! Tracing of HTTP requests: one server span per request, named and attributed after the
//! OpenTelemetry HTTP conventions and continuing the caller's W3C `traceparent`; and the trace
//! context that goes from the request into the outbox row, so that the image worker's span joins
//! the request's trace.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::MatchedPath;
use axum::http::{HeaderMap, Request, Response};
use mq_core::headers;
use opentelemetry::trace::TraceContextExt;
use tracing::field::Empty;
use tracing::Span;

/// The server span of `request` (`TraceLayer::make_span_with`): `POST /products`, kind server,
/// with `http.request.method`, `http.route` and `url.path`; the response's status is recorded by
/// [`record_response`].
pub fn server_span<B>(request: &Request<B>) -> Span {
    let method = request.method().as_str();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let span = tracing::info_span!(
        "request",
        otel.name = match route {
            Some(route) => format!("{method} {route}"),
            None => method.to_owned(),
        },
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        url.path = request.uri().path(),
        // This server speaks plain HTTP; TLS, where there is any, ends at a proxy in front.
        url.scheme = "http",
        http.response.status_code = Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&opentelemetry_http::HeaderExtractor(request.headers()))
    });
    if parent.span().span_context().is_valid() {
        mq_core::trace_context::set_parent(&span, parent);
    }
    span
}

/// Records the response's status on the server span (`TraceLayer::on_response`); a 5xx marks the
/// span failed, as the HTTP conventions say for servers.
pub fn record_response<B>(response: &Response<B>, _latency: Duration, span: &Span) {
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// The trace context to store with the outbox row of a request: the current (server) span's when
/// spans carry OpenTelemetry contexts, else the request's valid `traceparent`, else a new one.
pub fn message_headers(request_headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    if !mq_core::trace_context::inject(&Span::current(), &mut headers) {
        headers.insert(
            headers::TRACEPARENT.to_owned(),
            traceparent(request_headers),
        );
    }
    headers
}

/// The request's `traceparent` if it sent a valid one, else a new one for this request.
fn traceparent(headers: &HeaderMap) -> String {
    headers
        .get(headers::TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_valid(value))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "00-{:032x}-{:016x}-01",
                fastrand::u128(1..),
                fastrand::u64(1..)
            )
        })
}

fn is_valid(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1] != "0".repeat(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_valid_header_and_replaces_junk() {
        let valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", valid.parse().unwrap());
        assert_eq!(traceparent(&headers), valid);
        headers.insert("traceparent", "junk".parse().unwrap());
        let generated = traceparent(&headers);
        assert!(is_valid(&generated), "{generated}");
        assert!(is_valid(&traceparent(&HeaderMap::new())));
    }
}
