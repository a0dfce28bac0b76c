//! Prometheus metrics: the recorder every crate reports to, and what `GET /metrics` renders.
//!
//! The crates record through the [`metrics`] facade, which does nothing until [`install`] sets
//! the Prometheus recorder (the service does it at start). The series:
//!
//! | metric | type | labels | recorded by |
//! |---|---|---|---|
//! | `http_requests_total`, `http_request_duration_seconds` | counter, histogram | `method`, `route`, `status` | the API |
//! | `http_connections_open`, `http_connections_rejected_total` | gauge, counter | `reason` (`max_connections`, `max_per_client`) | the HTTP server |
//! | `http_requests_shed_total`, `http_requests_rate_limited_total` | counter | | load shedding, write rate limits |
//! | `outbox_backlog_rows`, `outbox_oldest_unpublished_age_seconds` | gauge | | each scrape, from the database |
//! | `products_by_status` | gauge | `status` | each scrape, from the database |
//! | `messages_published_total`, `messages_publish_failures_total` | counter | `topic` | the outbox relay |
//! | `outbox_rows_deleted_total` | counter | | outbox retention (published rows past `OUTBOX_RETENTION`) |
//! | `messages_consumed_total`, `messages_retried_total`, `messages_requeued_total`, `messages_dead_lettered_total` | counter | `topic`, `group` | the worker runtime |
//! | `image_fetch_duration_seconds`, `image_compress_duration_seconds` | histogram | | the image pipeline |
//! | `image_bytes_in_total`, `image_bytes_out_total` | counter | | the image pipeline |
//! | `image_failures_total` | counter | `reason` | the image pipeline |
//! | `worker_memory_budget_bytes`, `worker_memory_reserved_bytes` | gauge | `phase` | the image pipeline's memory budget |
//! | `worker_memory_waits_total`, `worker_memory_wait_seconds` | counter, histogram | `phase` | reservations that waited for memory |
//! | `media_put_duration_seconds` | histogram | | the media store (one upload, complete and durable) |
//! | `media_cleanup_failures_total` | counter | | the consumer, when superseded objects could not be deleted |
//! | `metrics_refresh_failures_total` | counter | | a scrape whose database gauges could not be refreshed |

use std::sync::Arc;

use chrono::Utc;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use mq_core::domain::{OutboxRepo, ProductRepo, RepoError};
use parking_lot::Mutex;
use tracing::warn;

/// Histogram buckets (seconds) for every `*_seconds` histogram: from a fast HTTP answer to a slow
/// image download.
const SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram buffers are drained between scrapes.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Why [`install`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The application already installed a recorder of its own.
    #[error("another `metrics` recorder is already installed; build a `MetricsEndpoint` from its `PrometheusHandle` instead")]
    AnotherRecorder,
    /// The upkeep thread could not be started.
    #[error("starting the metrics upkeep thread: {0}")]
    Upkeep(std::io::Error),
    /// The exporter rejected its configuration (a bug).
    #[error("configuring the Prometheus exporter: {0}")]
    Build(#[from] metrics_exporter_prometheus::BuildError),
}

/// Installs the Prometheus recorder as the process-wide `metrics` recorder, once; later calls
/// return the same handle.
pub fn install() -> Result<PrometheusHandle, InstallError> {
    static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = INSTALLED.lock();
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    // Histogram samples pile up in per-thread buffers until upkeep drains them; a process nobody
    // scrapes would grow without bound.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("prometheus-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        })
        .map_err(InstallError::Upkeep)?;
    metrics::set_global_recorder(recorder).map_err(|_| InstallError::AnotherRecorder)?;
    describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// The `# HELP` line of every series.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("http_requests_total", "HTTP requests answered");
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request"
    );
    describe_gauge!("outbox_backlog_rows", "Outbox rows not yet published");
    describe_gauge!(
        "outbox_oldest_unpublished_age_seconds",
        Unit::Seconds,
        "Age of the oldest unpublished outbox row (0 when none)"
    );
    describe_gauge!("products_by_status", "Products with each processing status");
    describe_counter!(
        "messages_published_total",
        "Outbox rows the broker confirmed"
    );
    describe_counter!(
        "messages_publish_failures_total",
        "Publishes that failed (the row is retried)"
    );
    describe_counter!(
        "otel_spans_dropped_total",
        "Spans dropped because the OTLP export queue was full (collector down or slow)"
    );
    describe_counter!(
        "otel_spans_exported_total",
        "Spans the OTLP collector accepted"
    );
    describe_counter!(
        "otel_spans_export_failed_total",
        "Spans whose OTLP export failed"
    );
    describe_counter!(
        "outbox_rows_deleted_total",
        "Published outbox rows deleted after OUTBOX_RETENTION"
    );
    describe_counter!("messages_consumed_total", "Messages handled and acked");
    describe_counter!(
        "messages_retried_total",
        "In-process retries after transient failures"
    );
    describe_counter!(
        "messages_requeued_total",
        "Messages handed back to the broker by a stopping worker"
    );
    describe_counter!(
        "messages_dead_lettered_total",
        "Messages sent to the dead-letter topic"
    );
    describe_histogram!(
        "image_fetch_duration_seconds",
        Unit::Seconds,
        "Time to download an image"
    );
    describe_histogram!(
        "image_compress_duration_seconds",
        Unit::Seconds,
        "Time to decode, resize and encode an image"
    );
    describe_histogram!(
        "media_put_duration_seconds",
        Unit::Seconds,
        "Time to upload one compressed image to the media store"
    );
    describe_counter!(
        "media_cleanup_failures_total",
        "Products whose superseded media objects could not be deleted"
    );
    describe_counter!(
        "image_bytes_in_total",
        Unit::Bytes,
        "Bytes of images downloaded"
    );
    describe_counter!(
        "image_bytes_out_total",
        Unit::Bytes,
        "Bytes of compressed images written"
    );
    describe_counter!(
        "image_failures_total",
        "Images that could not be processed, by reason"
    );
    describe_counter!(
        "metrics_refresh_failures_total",
        "Scrapes whose database gauges could not be refreshed"
    );
    describe_gauge!("http_connections_open", "HTTP connections open now");
    describe_counter!(
        "http_connections_rejected_total",
        "HTTP connections closed at once because a cap was reached, by reason: max_connections or max_per_client"
    );
    describe_counter!(
        "http_requests_shed_total",
        "API requests answered 503 because HTTP_MAX_IN_FLIGHT requests were in flight"
    );
    describe_counter!(
        "http_requests_rate_limited_total",
        "Writes answered 429 because their client was over RATE_LIMIT_WRITES"
    );
    describe_gauge!(
        "worker_memory_budget_bytes",
        Unit::Bytes,
        "The image memory budget (WORKER_MEMORY_BUDGET), by phase: download or decode"
    );
    describe_gauge!(
        "worker_memory_reserved_bytes",
        Unit::Bytes,
        "Image memory reserved now, by phase"
    );
    describe_counter!(
        "worker_memory_waits_total",
        "Image memory reservations that had to wait for others to be released, by phase"
    );
    describe_histogram!(
        "worker_memory_wait_seconds",
        Unit::Seconds,
        "How long image memory reservations waited, by phase"
    );
}

/// What `GET /metrics` needs: the recorder's handle and the outbox, whose backlog is read at
/// each scrape (as are the product counts) so the gauges are never stale.
#[derive(Clone)]
pub struct MetricsEndpoint {
    handle: PrometheusHandle,
    outbox: Arc<dyn OutboxRepo>,
}

impl MetricsEndpoint {
    /// An endpoint rendering `handle`, with the outbox backlog read from `outbox`.
    pub fn new(handle: PrometheusHandle, outbox: Arc<dyn OutboxRepo>) -> Self {
        Self { handle, outbox }
    }

    /// Refreshes the database gauges and renders every series in the Prometheus text format.
    ///
    /// When the database does not answer, the other series are still rendered (with the gauges
    /// as of the last good scrape) and `metrics_refresh_failures_total` goes up: an outage is
    /// exactly when the rest matters.
    pub async fn render(&self, products: &dyn ProductRepo) -> String {
        if let Err(error) = self.refresh(products).await {
            warn!(%error, "could not refresh the database gauges for /metrics");
            metrics::counter!("metrics_refresh_failures_total").increment(1);
        }
        // Drain the histogram buffers now too, so the scrape sees every sample so far.
        self.handle.run_upkeep();
        self.handle.render()
    }

    async fn refresh(&self, products: &dyn ProductRepo) -> Result<(), RepoError> {
        let (backlog, counts) =
            futures::try_join!(self.outbox.outbox_backlog(), products.count_by_status())?;
        metrics::gauge!("outbox_backlog_rows").set(backlog.unpublished as f64);
        let oldest_age = backlog.oldest_created_at.map_or(0.0, |at| {
            (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
        });
        metrics::gauge!("outbox_oldest_unpublished_age_seconds").set(oldest_age);
        for (status, count) in counts {
            metrics::gauge!("products_by_status", "status" => status.as_str()).set(count as f64);
        }
        Ok(())
    }
}
