//! The OTLP trace pipeline: a batch span processor in front of the OTLP exporter, with a bounded
//! queue whose overflow is counted.
//!
//! Spans are handed to the SDK's [`BatchSpanProcessor`], which exports them from a thread of its
//! own: a request or a message never waits for the collector. When the collector is down or slow
//! the queue fills up and further spans are dropped, counted by `otel_spans_dropped_total` (the
//! SDK only logs a count at shutdown). Exported spans are counted by `otel_spans_exported_total`,
//! spans whose export failed by `otel_spans_export_failed_total`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;

use super::settings::Protocol;
use super::TelemetryError;

/// The OTLP span exporter for `protocol`; the endpoint, headers and timeout come from the
/// standard variables, which the exporter reads itself.
pub(super) fn otlp_exporter(
    protocol: Protocol,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    let built = match protocol {
        Protocol::Grpc if tokio::runtime::Handle::try_current().is_err() => {
            return Err(TelemetryError::Exporter(
                "the gRPC exporter needs a Tokio runtime: install telemetry inside one".to_owned(),
            ))
        }
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build(),
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            // The default client is reqwest's blocking one (the only client feature enabled): the
            // batch processor exports from a thread of its own, outside any async runtime.
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
    };
    built.map_err(|error| TelemetryError::Exporter(error.to_string()))
}

/// A batch span processor over `exporter` that holds at most `max_queue_size` spans waiting for
/// export and counts the ones it drops.
pub(super) fn bounded_batch<E: SpanExporter + 'static>(
    exporter: E,
    max_queue_size: usize,
) -> CountingProcessor {
    let waiting = Arc::new(AtomicUsize::new(0));
    let exporter = CountingExporter {
        inner: exporter,
        waiting: Arc::clone(&waiting),
    };
    // The SDK's own queue is as large as ours, so it never drops a span we let through: the
    // spans it holds are a subset of those we count as waiting.
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(max_queue_size)
        .build();
    CountingProcessor {
        inner: BatchSpanProcessor::builder(exporter)
            .with_batch_config(config)
            .build(),
        waiting,
        capacity: max_queue_size,
    }
}

/// Counts the spans that end while the export queue is full instead of queueing them.
#[derive(Debug)]
pub(super) struct CountingProcessor {
    inner: BatchSpanProcessor,
    /// Spans handed to `inner` and not yet given to the exporter.
    waiting: Arc<AtomicUsize>,
    capacity: usize,
}

impl SpanProcessor for CountingProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < self.capacity).then_some(waiting + 1)
            });
        if admitted.is_ok() {
            self.inner.on_end(span);
        } else {
            metrics::counter!("otel_spans_dropped_total").increment(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Takes exported spans off the waiting count and counts the outcome of each export.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    waiting: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        self.waiting.fetch_sub(spans, Ordering::AcqRel);
        let exported = self.inner.export(batch).await;
        let counter = match exported {
            Ok(()) => "otel_spans_exported_total",
            Err(_) => "otel_spans_export_failed_total",
        };
        metrics::counter!(counter).increment(spans as u64);
        exported
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Tracer, TracerProvider};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    /// An exporter whose exports never finish, like a stalled collector.
    #[derive(Debug, Clone, Default)]
    struct Stalled;

    impl SpanExporter for Stalled {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            std::future::pending().await
        }
    }

    #[test]
    fn a_stalled_exporter_drops_what_does_not_fit_and_never_blocks_a_span() {
        let provider = SdkTracerProvider::builder()
            .with_span_processor(bounded_batch(Stalled, 64))
            .build();
        let tracer = provider.tracer("test");
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let scrape = recorder.handle();
        // Far more spans than the queue holds, while the first export hangs: the spans end
        // without waiting (a span that waited for the export would wait forever: the thread
        // never finishes), and the ones that do not fit are counted.
        let (ended, all_ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            metrics::with_local_recorder(&recorder, || {
                for _ in 0..5_000 {
                    tracer.in_span("work", |_| {});
                }
            });
            let _ = ended.send(());
        });
        all_ended
            .recv_timeout(Duration::from_secs(60))
            .expect("ending a span never waits for the export");
        let dropped: u64 = scrape
            .render()
            .lines()
            .find_map(|line| line.strip_prefix("otel_spans_dropped_total "))
            .and_then(|count| count.parse().ok())
            .expect("otel_spans_dropped_total is scraped");
        // At most a queue's worth waits, and one more is in the hanging export.
        assert!(dropped >= 5_000 - 2 * 64, "dropped {dropped}");
        assert!(dropped < 5_000, "nothing was queued");
        // The export still hangs: shutting down gives up after its timeout.
        let _ = provider.shutdown_with_timeout(Duration::from_millis(100));
    }
}
