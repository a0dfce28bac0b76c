//! The worker runtime: runs a [`Handler`] over a subscription.
//!
//! - at most [`WorkerConfig::concurrency`] messages are handled at once;
//! - transient failures are retried in-process with [`Backoff`], up to
//!   [`WorkerConfig::max_attempts`], then dead-lettered; permanent failures are dead-lettered at
//!   once, with the reason and attempt count in the dead letter's headers;
//! - [`Worker::run`] stops gracefully when its shutdown token is cancelled: it stops fetching,
//!   lets in-flight handlers finish within [`WorkerConfig::shutdown_timeout`], hands back (requeues)
//!   whatever is still running or waiting to be retried, and settles every delivery;
//! - each message is handled inside a `message` tracing span, with the OpenTelemetry messaging
//!   attributes (`messaging.system`, `messaging.destination.name`, ...) as fields; with the
//!   feature `opentelemetry` it continues the trace in the message's `traceparent` header;
//! - what happened to each message is counted in [`WorkerStats`] and through the [`metrics`]
//!   facade (a no-op until the application installs a recorder), labelled by `topic` and `group`:
//!   `messages_consumed_total` (handled and acked), `messages_retried_total` (in-process retries),
//!   `messages_requeued_total` (handed back) and `messages_dead_lettered_total`. The series are
//!   registered when [`Worker::run`] starts, so install the recorder before that.
//!
//! ```
//! use std::sync::Arc;
//! use mq_core::{worker::{handler_fn, Worker}, MemoryBroker, Message, Publisher};
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> mq_core::Result<()> {
//! let broker = MemoryBroker::new();
//! broker.publisher().publish("jobs", Message::new("work")).await?;
//!
//! let shutdown = CancellationToken::new();
//! let done = shutdown.clone();
//! let worker = Worker::new(Arc::new(broker.subscriber()), "jobs", "workers", handler_fn(move |_msg, _attempt| {
//!     let done = done.clone();
//!     async move { done.cancel(); Ok(()) }
//! }));
//! let stats = worker.stats();
//! worker.run(shutdown).await?;
//! assert_eq!(stats.snapshot().acked, 1);
//! # Ok(()) }
//! ```

mod backoff;
mod handler;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, warn, Instrument};

pub use backoff::Backoff;
#[cfg(feature = "mock")]
pub use handler::MockHandler;
pub use handler::{handler_fn, Attempt, Handler, HandlerFn};

use crate::{headers, Delivery, Nack, Result, Subscriber};

/// How a [`Worker`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Messages handled at once.
    pub concurrency: usize,
    /// Attempts (deliveries plus in-process retries) before a transiently failing message is
    /// dead-lettered.
    pub max_attempts: u32,
    /// Delay between retries.
    pub backoff: Backoff,
    /// How long a stopping worker waits for in-flight handlers before handing their messages back.
    pub shutdown_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            max_attempts: 5,
            backoff: Backoff::default(),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Counters of what a worker did, shared while it runs.
#[derive(Debug, Default)]
pub struct WorkerStats {
    acked: AtomicU64,
    retried: AtomicU64,
    requeued: AtomicU64,
    dead_lettered: AtomicU64,
    settle_failures: AtomicU64,
}

/// A copy of [`WorkerStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStatsSnapshot {
    /// Messages handled successfully and acked.
    pub acked: u64,
    /// In-process retries after transient failures.
    pub retried: u64,
    /// Messages handed back to the broker (stop during work or backoff).
    pub requeued: u64,
    /// Messages sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Acks or nacks the broker did not take (the message will come back).
    pub settle_failures: u64,
}

impl WorkerStats {
    /// The current counts.
    pub fn snapshot(&self) -> WorkerStatsSnapshot {
        WorkerStatsSnapshot {
            acked: self.acked.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            requeued: self.requeued.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            settle_failures: self.settle_failures.load(Ordering::Relaxed),
        }
    }
}

/// Runs a [`Handler`] over one subscription; see the [module docs](self).
pub struct Worker {
    subscriber: Arc<dyn Subscriber>,
    topic: String,
    group: String,
    handler: Arc<dyn Handler>,
    config: WorkerConfig,
    stats: Arc<WorkerStats>,
}

impl Worker {
    /// A worker with the default [`WorkerConfig`].
    pub fn new(
        subscriber: Arc<dyn Subscriber>,
        topic: impl Into<String>,
        group: impl Into<String>,
        handler: impl Handler,
    ) -> Self {
        Self {
            subscriber,
            topic: topic.into(),
            group: group.into(),
            handler: Arc::new(handler),
            config: WorkerConfig::default(),
            stats: Arc::default(),
        }
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// The counters of this worker; they keep counting while it runs.
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// Subscribes and handles messages until `shutdown` is cancelled or the subscription ends,
    /// then stops gracefully (see the [module docs](self)).
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let mut deliveries = self.subscriber.subscribe(&self.topic, &self.group).await?;
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let hand_back = CancellationToken::new();
        let job = Arc::new(Job {
            handler: self.handler,
            config: self.config,
            stats: self.stats,
            metrics: JobMetrics::new(&self.topic, &self.group),
            group: self.group,
            stopping: shutdown.clone(),
            hand_back: hand_back.clone(),
        });
        let mut tasks = JoinSet::new();

        loop {
            let permit = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                next = deliveries.next() => next,
            };
            match next {
                None => break,
                Some(Err(error)) => {
                    warn!(topic = %self.topic, %error, "subscription reported an error; continuing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some(Ok(delivery)) => {
                    let job = job.clone();
                    tasks.spawn(async move {
                        job.process(delivery).await;
                        drop(permit);
                    });
                }
            }
            while let Some(finished) = tasks.try_join_next() {
                report_panic(finished);
            }
        }

        // Stop fetching; deliveries the stream still buffers are handed back by their backend.
        drop(deliveries);
        let drain = async {
            while let Some(finished) = tasks.join_next().await {
                report_panic(finished);
            }
        };
        if tokio::time::timeout(job.config.shutdown_timeout, drain)
            .await
            .is_err()
        {
            warn!(
                in_flight = tasks.len(),
                "shutdown timeout reached; handing in-flight messages back"
            );
            hand_back.cancel();
            while let Some(finished) = tasks.join_next().await {
                report_panic(finished);
            }
        }
        Ok(())
    }
}

fn report_panic(finished: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished {
        // The panicking task dropped its delivery, so the broker redelivers the message.
        warn!(%error, "message handler panicked; the message will be redelivered");
    }
}

/// What every handler task shares.
struct Job {
    handler: Arc<dyn Handler>,
    config: WorkerConfig,
    stats: Arc<WorkerStats>,
    metrics: JobMetrics,
    group: String,
    /// Graceful stop: no new retries.
    stopping: CancellationToken,
    /// Stop deadline passed: abandon running handlers and requeue.
    hand_back: CancellationToken,
}

enum Outcome {
    Ack,
    Requeue,
    DeadLetter(String, u32),
}

/// The `metrics` series of one subscription, registered once when the worker starts so that
/// counting a message allocates nothing.
struct JobMetrics {
    consumed: metrics::Counter,
    retried: metrics::Counter,
    requeued: metrics::Counter,
    dead_lettered: metrics::Counter,
}

impl JobMetrics {
    fn new(topic: &str, group: &str) -> Self {
        let counter = |name: &'static str| metrics::counter!(name, "topic" => topic.to_owned(), "group" => group.to_owned());
        Self {
            consumed: counter("messages_consumed_total"),
            retried: counter("messages_retried_total"),
            requeued: counter("messages_requeued_total"),
            dead_lettered: counter("messages_dead_lettered_total"),
        }
    }
}

impl Job {
    async fn process(&self, delivery: Delivery) {
        let message = delivery.message();
        let origin = delivery.origin();
        // Named and attributed after the OpenTelemetry messaging conventions (a `process` span of
        // kind consumer), the child of the publisher's span when the headers carry its context.
        let span = info_span!(
            "message",
            otel.name = format!("process {}", delivery.topic()),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            messaging.system = origin.system,
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = delivery.topic(),
            messaging.consumer.group.name = %self.group,
            messaging.message.id = message.id(),
            // A string in the conventions.
            messaging.destination.partition.id = origin.partition.map(tracing::field::display),
            messaging.kafka.offset = origin.offset,
            key = message.key(),
            traceparent = message.header(headers::TRACEPARENT),
            // The broker's delivery count; the events inside count in-process retries as well.
            delivery_attempt = delivery.attempt(),
        );
        crate::trace_context::continue_trace(&span, message.headers());
        async {
            let outcome = self.handle_with_retries(&delivery).await;
            self.settle(delivery, outcome).await;
        }
        .instrument(span)
        .await
    }

    async fn handle_with_retries(&self, delivery: &Delivery) -> Outcome {
        let mut attempt = delivery.attempt();
        loop {
            let result = tokio::select! {
                biased;
                () = self.hand_back.cancelled() => return Outcome::Requeue,
                result = self.handler.handle(
                    delivery.message(),
                    Attempt::new(attempt, self.config.max_attempts),
                ) => result,
            };
            let error = match result {
                Ok(()) => return Outcome::Ack,
                Err(error) => error,
            };
            if !error.is_transient() {
                warn!(%error, attempt, "permanent failure; dead-lettering");
                return Outcome::DeadLetter(error.to_string(), attempt);
            }
            if attempt >= self.config.max_attempts {
                warn!(%error, attempt, "transient failure on the last attempt; dead-lettering");
                return Outcome::DeadLetter(
                    format!("gave up after {attempt} attempts: {error}"),
                    attempt,
                );
            }
            let delay = self.config.backoff.delay(attempt);
            warn!(%error, attempt, ?delay, "transient failure; retrying");
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
            self.metrics.retried.increment(1);
            tokio::select! {
                () = tokio::time::sleep(delay) => attempt += 1,
                () = self.stopping.cancelled() => return Outcome::Requeue,
            }
        }
    }

    async fn settle(&self, delivery: Delivery, outcome: Outcome) {
        if let Outcome::DeadLetter(reason, _) = &outcome {
            let span = tracing::Span::current();
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", reason.as_str());
        }
        let (settled, counter, metric) = match outcome {
            Outcome::Ack => (
                delivery.ack().await,
                &self.stats.acked,
                &self.metrics.consumed,
            ),
            Outcome::Requeue => (
                delivery.requeue().await,
                &self.stats.requeued,
                &self.metrics.requeued,
            ),
            Outcome::DeadLetter(reason, attempts) => (
                delivery.nack(Nack::DeadLetter { reason, attempts }).await,
                &self.stats.dead_lettered,
                &self.metrics.dead_lettered,
            ),
        };
        match settled {
            Ok(()) => {
                metric.increment(1);
                counter.fetch_add(1, Ordering::Relaxed)
            }
            Err(error) => {
                warn!(%error, "could not settle the delivery; the broker will redeliver it");
                self.stats.settle_failures.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}
