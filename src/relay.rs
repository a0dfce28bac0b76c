//! The outbox relay: publishes committed outbox rows and marks them published once the broker
//! has confirmed them.
//!
//! It wakes right after each commit (the API calls [`Notify::notify_one`] on
//! [`OutboxRelay::wakeup`]) and also polls, so rows written while the broker was down, or by a
//! process that crashed before publishing, go out later. A row is marked published only after its
//! publish returned `Ok`; if the relay dies in between, the row is published again after its lease
//! ends, which the idempotent consumer absorbs. Several relays may run at once: claims are leased.
//!
//! Each publish is counted through the [`metrics`] facade, labelled by `topic`:
//! `messages_published_total` (confirmed by the broker) and `messages_publish_failures_total`.

use std::sync::Arc;
use std::time::Duration;

use mq_core::domain::{OutboxMessage, OutboxRepo};
use mq_core::worker::Backoff;
use mq_core::{trace_context, Publisher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

/// How the relay works.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// Rows claimed and published per round.
    pub batch_size: u32,
    /// Fallback poll interval when nobody wakes the relay.
    pub poll_interval: Duration,
    /// How long a claim keeps other relays off the rows.
    pub lease: Duration,
    /// Waits after failed rounds (broker or database down).
    pub backoff: Backoff,
    /// Put before each row's topic when publishing (see [`crate::Config::topic_prefix`]).
    pub topic_prefix: String,
    /// The broker, for the `messaging.system` attribute of the publish spans
    /// ([`crate::BrokerKind::messaging_system`]).
    pub messaging_system: &'static str,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
                multiplier: 2.0,
                jitter: 0.3,
            },
            topic_prefix: String::new(),
            messaging_system: "memory",
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Rows claimed.
    pub claimed: usize,
    /// Rows published and marked.
    pub published: usize,
    /// Rows whose publish failed (they are retried later).
    pub failed: usize,
}

/// Publishes outbox rows; see the [module docs](self).
pub struct OutboxRelay {
    outbox: Arc<dyn OutboxRepo>,
    publisher: Arc<dyn Publisher>,
    wakeup: Arc<Notify>,
    config: RelayConfig,
}

impl OutboxRelay {
    /// A relay over `outbox` publishing with `publisher`.
    pub fn new(
        outbox: Arc<dyn OutboxRepo>,
        publisher: Arc<dyn Publisher>,
        config: RelayConfig,
    ) -> Self {
        Self {
            outbox,
            publisher,
            wakeup: Arc::new(Notify::new()),
            config,
        }
    }

    /// The handle that wakes the relay; give it to the API ([`crate::api::AppState::outbox_wakeup`]).
    pub fn wakeup(&self) -> Arc<Notify> {
        self.wakeup.clone()
    }

    /// Runs rounds until `shutdown` is cancelled: at once after a full batch, on wake-up, or after
    /// the poll interval; backing off while rounds fail.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let wait = match self.round().await {
                Ok(report) if report.failed == 0 => {
                    failures = 0;
                    if report.claimed as u32 >= self.config.batch_size {
                        continue; // more rows are waiting
                    }
                    self.config.poll_interval
                }
                Ok(_) | Err(_) => {
                    failures += 1;
                    self.config.backoff.delay(failures)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wakeup.notified(), if failures == 0 => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Claims one batch, publishes it, marks what was confirmed and records what failed.
    pub async fn round(&self) -> Result<RoundReport, mq_core::domain::RepoError> {
        let rows = self
            .outbox
            .claim_outbox(self.config.batch_size, self.config.lease)
            .await
            .inspect_err(|error| warn!(%error, "outbox relay cannot claim rows"))?;
        if rows.is_empty() {
            return Ok(RoundReport::default());
        }
        let results = futures::future::join_all(rows.iter().map(|row| self.publish(row))).await;
        let mut published = Vec::with_capacity(rows.len());
        let mut report = RoundReport {
            claimed: rows.len(),
            ..RoundReport::default()
        };
        for (row, result) in rows.iter().zip(results) {
            match result {
                Ok(()) => published.push(row.id),
                Err(error) => {
                    report.failed += 1;
                    warn!(outbox_id = row.id, %error, "publish failed; the row will be retried");
                    if let Err(error) = self
                        .outbox
                        .record_publish_failure(row.id, &error.to_string())
                        .await
                    {
                        warn!(outbox_id = row.id, %error, "could not record the failed publish; the lease will expire");
                    }
                }
            }
        }
        if !published.is_empty() {
            // If this fails the rows are published again after their lease: at least once.
            self.outbox.mark_published(&published).await?;
        }
        report.published = published.len();
        debug!(?report, "outbox round");
        Ok(report)
    }

    /// Publishes one row inside a `send` span (OpenTelemetry messaging conventions, kind
    /// producer): the child of the request that wrote the row, and the parent of the consumer's
    /// span, whose context replaces the row's in the message headers.
    async fn publish(&self, row: &OutboxMessage) -> mq_core::Result<()> {
        let topic = format!("{}{}", self.config.topic_prefix, row.topic);
        let mut message = row.to_message();
        let span = tracing::info_span!(
            "publish",
            otel.name = format!("send {topic}"),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            messaging.system = self.config.messaging_system,
            messaging.operation.type = "send",
            messaging.operation.name = "send",
            messaging.destination.name = %topic,
            messaging.message.id = message.id(),
            outbox_id = row.id,
        );
        trace_context::continue_trace(&span, message.headers());
        trace_context::inject(&span, message.headers_mut());
        let published = self
            .publisher
            .publish(&topic, message)
            .instrument(span.clone())
            .await;
        let metric = match &published {
            Ok(()) => "messages_published_total",
            Err(error) => {
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_description", error.to_string());
                "messages_publish_failures_total"
            }
        };
        metrics::counter!(metric, "topic" => topic).increment(1);
        published
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mockall::predicate::eq;
    use mq_core::domain::{MockOutboxRepo, PRODUCTS_CREATED_TOPIC};
    use mq_core::{Error, MockPublisher};

    use super::*;

    fn row(id: i64) -> OutboxMessage {
        OutboxMessage {
            id,
            topic: PRODUCTS_CREATED_TOPIC.to_owned(),
            key: Some(id.to_string()),
            headers: BTreeMap::from([("message-id".to_owned(), format!("m{id}"))]),
            payload: serde_json::json!({"product_id": id}),
            attempts: 0,
            created_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn marks_only_confirmed_rows_and_records_failures() {
        let mut outbox = MockOutboxRepo::new();
        outbox
            .expect_claim_outbox()
            .returning(|_, _| Ok(vec![row(1), row(2), row(3)]));
        outbox
            .expect_mark_published()
            .withf(|ids| ids == [1, 3])
            .times(1)
            .returning(|_| Ok(()));
        outbox
            .expect_record_publish_failure()
            .with(eq(2), mockall::predicate::always())
            .times(1)
            .returning(|_, _| Ok(()));
        let mut publisher = MockPublisher::new();
        publisher
            .expect_publish()
            .times(3)
            .returning(|topic, message| {
                assert_eq!(topic, PRODUCTS_CREATED_TOPIC);
                if message.id() == "m2" {
                    Err(Error::Unavailable {
                        message: "broker down".into(),
                        source: None,
                    })
                } else {
                    let created: mq_core::domain::ProductCreated = message.decode().unwrap();
                    assert_eq!(message.key(), Some(created.product_id.to_string().as_str()));
                    Ok(())
                }
            });
        let relay = OutboxRelay::new(
            Arc::new(outbox),
            Arc::new(publisher),
            RelayConfig::default(),
        );
        let report = relay.round().await.unwrap();
        assert_eq!(
            report,
            RoundReport {
                claimed: 3,
                published: 2,
                failed: 1
            }
        );
    }

    #[tokio::test]
    async fn a_wakeup_publishes_without_waiting_for_the_poll() {
        let claims = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (marked, published) = std::sync::mpsc::channel();
        let mut outbox = MockOutboxRepo::new();
        let counter = claims.clone();
        outbox.expect_claim_outbox().returning(move |_, _| {
            // The first round (at start) finds nothing; the row is committed afterwards.
            match counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Ok(vec![]),
                1 => Ok(vec![row(5)]),
                _ => Ok(vec![]),
            }
        });
        outbox.expect_mark_published().returning(move |ids| {
            marked.send(ids.to_vec()).unwrap();
            Ok(())
        });
        let mut publisher = MockPublisher::new();
        publisher.expect_publish().returning(|_, _| Ok(()));
        let config = RelayConfig {
            poll_interval: Duration::from_secs(3600),
            ..RelayConfig::default()
        };
        let relay = OutboxRelay::new(Arc::new(outbox), Arc::new(publisher), config);
        let wakeup = relay.wakeup();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(relay.run(shutdown.clone()));
        while claims.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        wakeup.notify_one();
        let ids =
            tokio::task::spawn_blocking(move || published.recv_timeout(Duration::from_secs(10)))
                .await
                .unwrap()
                .expect("the woken relay published before its hour-long poll interval");
        assert_eq!(ids, [5]);
        shutdown.cancel();
        running.await.unwrap();
    }

    #[tokio::test]
    async fn nothing_is_marked_when_the_broker_is_down() {
        let mut outbox = MockOutboxRepo::new();
        outbox
            .expect_claim_outbox()
            .returning(|_, _| Ok(vec![row(7)]));
        outbox.expect_mark_published().never();
        outbox
            .expect_record_publish_failure()
            .times(1)
            .returning(|_, _| Ok(()));
        let mut publisher = MockPublisher::new();
        publisher.expect_publish().returning(|_, _| {
            Err(Error::Unavailable {
                message: "down".into(),
                source: None,
            })
        });
        let relay = OutboxRelay::new(
            Arc::new(outbox),
            Arc::new(publisher),
            RelayConfig::default(),
        );
        assert_eq!(relay.round().await.unwrap().failed, 1);
    }
}
