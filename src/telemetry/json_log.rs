//! `LOG_FORMAT=json`: one JSON object per log line, with the trace and span ids of the span the
//! event happened in, so that log lines can be joined with their trace.
//!
//! ```text
//! {"timestamp":"2026-12-02T10:00:00.123456Z","level":"WARN","target":"mq_core::worker",
//!  "fields":{"message":"transient failure; retrying","attempt":1},
//!  "span":{"name":"message","messaging.destination.name":"products.created",...},
//!  "spans":["message"],"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}
//! ```

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as JSON lines; pair it with [`JsonFields`] so span fields are JSON too.
pub(super) struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        let mut fields = JsonVisitor::default();
        event.record(&mut fields);
        line.insert("fields".into(), Value::Object(fields.0));
        // From the OpenTelemetry context the trace layer activates on entering a span: it covers
        // the spans `RUST_LOG` filters out of the logs, and needs no dispatcher (a nested one
        // would be `none` inside this callback when a scoped dispatcher exists).
        let context = opentelemetry::Context::current();
        let ids = context.span().span_context().clone();
        if ids.is_valid() {
            line.insert("trace_id".into(), ids.trace_id().to_string().into());
            line.insert("span_id".into(), ids.span_id().to_string().into());
        }
        if let Some(current) = ctx.lookup_current() {
            // The innermost span with its fields, and the names of those around it.
            let mut span = current
                .extensions()
                .get::<FormattedFields<JsonFields>>()
                .and_then(|fields| serde_json::from_str::<Map<String, Value>>(fields).ok())
                .unwrap_or_default();
            span.insert("name".into(), current.name().into());
            line.insert("span".into(), Value::Object(span));
            let names: Vec<Value> = current
                .scope()
                .from_root()
                .map(|span| span.name().into())
                .collect();
            line.insert("spans".into(), Value::Array(names));
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields as a JSON object.
#[derive(Default)]
struct JsonVisitor(Map<String, Value>);

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
