//! Logs and traces for the binaries: [`install`] sets up logging to stderr (human-readable or
//! JSON lines) and, when the standard OpenTelemetry variables ask for it, OTLP export of traces.
//!
//! A product's trace runs from the `POST /products` server span through the outbox relay's
//! `send` span and the worker's `process` span to one span per image with a child per step
//! (fetch, compress, store): the context travels in the outbox row's and then the message's
//! `traceparent` header. Export is off by default; set `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g.
//! `http://127.0.0.1:4318`, or `:4317` with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`) to switch it on.
//! See [`Settings`] for every variable.
//!
//! Spans are exported in batches from a thread of their own through a bounded queue (see the
//! `export` module): a collector that is down or slow costs dropped spans
//! (`otel_spans_dropped_total`), never a slower request or message.
//!
//! ```no_run
//! # #[tokio::main] async fn main() {
//! let _telemetry = product_pipeline::telemetry::install().expect("telemetry settings");
//! tracing::info!("logged, and exported when OTEL_EXPORTER_OTLP_ENDPOINT is set");
//! // Dropping the guard exports what is still queued (for at most a few seconds).
//! # }
//! ```

mod export;
mod json_log;
mod settings;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use settings::{LogFormat, Protocol, Settings};

/// How long shutting down may take to export the spans still queued.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why [`install`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A variable has a value this build cannot use.
    #[error("{variable}: {problem}")]
    Setting {
        /// The environment variable.
        variable: &'static str,
        /// What is wrong and what to use instead.
        problem: String,
    },
    /// The OTLP exporter could not be built from its variables.
    #[error("cannot set up the OTLP exporter from the OTEL_EXPORTER_OTLP_* variables: {0}")]
    Exporter(String),
    /// Another global `tracing` subscriber is installed already.
    #[error("a global tracing subscriber is already installed; install telemetry once, first thing in main")]
    AlreadyInstalled,
}

/// Keeps the trace pipeline running; dropping it exports what is still queued, for at most
/// five seconds (a collector that is down does not hold up the exit).
#[must_use = "dropping the guard shuts the trace export down"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn exports(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is queued now (tests and short-lived tools).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                eprintln!("warning: exporting the last spans: {error}");
            }
        }
    }
}

/// Installs the global `tracing` subscriber from the environment ([`Settings::from_env`]):
/// logs to stderr filtered by `RUST_LOG` (default `info`), and traces (the spans at `info` and
/// above, whatever `RUST_LOG` says) to OTLP when asked.
///
/// Call it once, first thing in `main`, inside a multi-threaded Tokio runtime (`#[tokio::main]`):
/// the gRPC exporter runs on it, and dropping the guard blocks the thread that drops it while the
/// last spans go out. Drop the guard before the runtime ends. The gRPC exporter is built without
/// TLS: for an `https://` collector use `http/protobuf`.
pub fn install() -> Result<Telemetry, TelemetryError> {
    install_with(&Settings::from_env()?)
}

/// [`install`] with explicit settings.
pub fn install_with(settings: &Settings) -> Result<Telemetry, TelemetryError> {
    // W3C trace context in HTTP and message headers (`traceparent`, `tracestate`).
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let logs = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json_log::JsonLines)
            .boxed(),
    };
    // Spans get OpenTelemetry ids when they are exported, and for the JSON logs' trace ids.
    let provider = match (settings.export, settings.log_format) {
        (Some(protocol), _) => Some(
            SdkTracerProvider::builder()
                .with_span_processor(export::bounded_batch(
                    export::otlp_exporter(protocol)?,
                    settings.max_queue_size,
                ))
                .with_resource(resource())
                .build(),
        ),
        (None, LogFormat::Json) => Some(SdkTracerProvider::builder().build()),
        (None, LogFormat::Text) => None,
    };
    // `RUST_LOG` filters the logs only: the spans of the trace are at `info`, and a process that
    // logs only warnings still exports its traces.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(env!("CARGO_PKG_NAME")))
            // Error events do not fail a span: the code records a span's status itself.
            .with_error_events_to_status(false)
            // Per span: no busy/idle clocks on every poll, no thread and source-location
            // attributes; what a trace needs is in the names, links and conventions' attributes.
            .with_tracked_inactivity(false)
            // The JSON log lines read the ids from the context activated on entering a span.
            .with_context_activation(true)
            .with_threads(false)
            .with_location(false)
            .with_filter(LevelFilter::INFO)
    });
    tracing_subscriber::registry()
        .with(traces)
        .with(logs.with_filter(filter))
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    // Only an exporting provider is the global one and needs shutting down.
    let provider = provider.filter(|_| settings.export.is_some());
    if let Some(provider) = &provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(Telemetry { provider })
}

/// The resource of every span: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` as the SDK reads
/// them, with the executable's name as the service name when neither names one.
fn resource() -> Resource {
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|attributes| attributes.contains("service.name="));
    let builder = Resource::builder();
    let executable = std::env::current_exe().ok().and_then(|path| {
        path.file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
    });
    match executable {
        Some(name) if !named => builder.with_service_name(name).build(),
        _ => builder.build(),
    }
}
