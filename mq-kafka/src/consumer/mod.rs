//! [`KafkaSubscriber`]: consumer-group subscriptions with at-least-once commits.
//!
//! Each `subscribe` call runs one librdkafka consumer (a member of the group), a
//! [`Subscription`](subscription::Subscription):
//!
//! - a dedicated thread, the [driver](driver), serves the consumer queue: [rebalances](rebalance),
//!   commit results and errors, and [commits](commits);
//! - each assigned partition's records go to a queue of their own ([`PartitionQueue`]), split off
//!   before the partition is assigned; the delivery stream drains those queues in batches as it
//!   needs records, so a record is copied, tracked and handed out on the task that consumes it,
//!   and a stream that is not polled leaves the records in librdkafka's bounded prefetch queue
//!   (which stops fetching when full);
//! - the stream hands records out round-robin over partitions, never one whose key has an earlier
//!   record in flight ([`partition`]: order per key);
//! - settling a delivery ([`acknowledger`]) updates the partition's [`OffsetTracker`]; the driver
//!   commits the contiguous acked prefix (plus the offsets acked above it, in the commit
//!   metadata) every [`KafkaConfig::commit_interval`], on revoke and on close; on revoke and on
//!   close it also writes the [ack log](ack_log), for brokers that drop the metadata;
//! - a nacked or dropped delivery goes back into its partition's buffer and is handed out again,
//!   without blocking other partitions or keys.
//!
//! [`PartitionQueue`]: crate::partition_queue::PartitionQueue
//! [`OffsetTracker`]: crate::offsets::OffsetTracker

mod ack_log;
mod acknowledger;
mod commits;
mod driver;
mod errors;
mod partition;
mod rebalance;
mod state;
mod subscription;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use mq_core::{Delivery, DeliveryStream, Error, Result, Subscriber};
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

use crate::admin::TopicAdmin;
use crate::error::classify;
use crate::producer::ProducerInner;
use crate::KafkaConfig;

pub use ack_log::ack_log_topic;
use rebalance::DriverContext;
use subscription::Subscription;

/// Receives messages from Kafka as a member of a consumer group.
///
/// - `group` is the Kafka `group.id`: subscriptions with the same group split the topic's
///   partitions, different groups each get every message;
/// - the topic is created on first use with [`KafkaConfig::partitions`] partitions;
/// - `subscribe` returns once the group assigned partitions to the new member (or after
///   [`KafkaConfig::join_timeout`]);
/// - at least once: an offset is committed only when every record below it was acked; records
///   acked above the first un-acked one are listed in the commit metadata so the next owner of
///   the partition skips them; nacked (requeue) and dropped deliveries are handed out again
///   locally with a higher attempt count; `Nack::DeadLetter` produces the message to
///   `<topic>.dlq` (awaited) before the original counts as acked;
/// - on a rebalance the acked prefix is committed before the partitions go; deliveries still in
///   flight for a partition that moved to another member are delivered again there, and settling
///   them here afterwards changes nothing.
///
/// Cheap to clone; `Send + Sync`, usable as `Arc<dyn Subscriber>`.
#[derive(Clone)]
pub struct KafkaSubscriber {
    inner: Arc<SubscriberInner>,
}

struct SubscriberInner {
    config: KafkaConfig,
    admin: TopicAdmin,
    side_producer: Arc<SideProducer>,
    closed: CancellationToken,
    subscriptions: Mutex<Vec<Arc<Subscription>>>,
}

/// The producer for dead letters and the ack log, created on first use and shared by a
/// subscriber's subscriptions.
struct SideProducer {
    config: KafkaConfig,
    admin: TopicAdmin,
    producer: Mutex<Option<Arc<ProducerInner>>>,
}

impl SideProducer {
    fn get(&self) -> Result<Arc<ProducerInner>> {
        let mut producer = self.producer.lock();
        if let Some(producer) = &*producer {
            return Ok(producer.clone());
        }
        let created = Arc::new(ProducerInner::new(self.config.clone(), self.admin.clone())?);
        *producer = Some(created.clone());
        Ok(created)
    }
}

impl KafkaSubscriber {
    /// Creates the subscriber (clients connect in the background; nothing is joined yet).
    pub fn new(config: KafkaConfig) -> Result<Self> {
        let admin = TopicAdmin::new(&config)?;
        let side_producer = Arc::new(SideProducer {
            config: config.clone(),
            admin: admin.clone(),
            producer: Mutex::new(None),
        });
        Ok(Self {
            inner: Arc::new(SubscriberInner {
                config,
                admin,
                side_producer,
                closed: CancellationToken::new(),
                subscriptions: Mutex::new(Vec::new()),
            }),
        })
    }
}

/// Ends the subscription when its stream is dropped.
struct StreamGuard(Arc<Subscription>);

impl Drop for StreamGuard {
    /// Stops the driver and waits (briefly) until it has committed and left the group, so a
    /// member that replaces this one right after the drop joins a group that is not mid-leave.
    fn drop(&mut self) {
        self.0.stop.cancel();
        let left = self.0.left.lock().take();
        if let Some(left) = left {
            let _ = left.recv_timeout(LEAVE_WAIT);
        }
    }
}

/// How long dropping a stream waits for its consumer to leave the group.
const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// The stream's next item, waiting for records, freed keys or the end of the subscription.
async fn next_delivery(subscription: &Arc<Subscription>) -> Option<Result<Delivery>> {
    let to_delivery =
        |item: Result<_>| item.map(|taken| acknowledger::delivery(subscription, taken));
    loop {
        if subscription.stop.is_cancelled() {
            return None;
        }
        // Fast path: something is ready.
        if let Some(item) = subscription.take_next() {
            return Some(to_delivery(item));
        }
        // Register for wake-ups, then look again, so nothing between the look and the wait is
        // missed.
        let notified = subscription.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(item) = subscription.take_next() {
            return Some(to_delivery(item));
        }
        tokio::select! {
            () = notified => {}
            () = subscription.stop.cancelled() => return None,
        }
    }
}

#[async_trait]
impl Subscriber for KafkaSubscriber {
    async fn subscribe(&self, topic: &str, group: &str) -> Result<DeliveryStream> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(Error::Closed("subscriber"));
        }
        inner.admin.ensure(topic).await?;
        let group_id = inner.config.group_id(topic, group);
        let (left_tx, left_rx) = std::sync::mpsc::channel();
        let subscription = Arc::new(Subscription::new(
            topic,
            group_id.clone(),
            inner.config.clone(),
            inner.admin.clone(),
            inner.closed.child_token(),
            left_rx,
            inner.side_producer.clone(),
        ));
        let context = DriverContext {
            subscription: subscription.clone(),
            timeout: inner.config.operation_timeout,
        };
        let consumer: BaseConsumer<DriverContext> = inner
            .config
            .consumer(&group_id)
            .create_with_context(context)
            .map_err(|e| classify("consumer creation", e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| classify("subscribe", e))?;
        let driver = {
            let (subscription, config) = (subscription.clone(), inner.config.clone());
            std::thread::Builder::new()
                .name(format!("mq-kafka-{topic}"))
                .spawn(move || {
                    driver::drive(subscription, consumer, config);
                    let _ = left_tx.send(());
                })
                .map_err(|e| Error::unavailable("cannot start the consumer thread", e))?
        };
        *subscription.driver.lock() = Some(driver);
        {
            let mut subscriptions = inner.subscriptions.lock();
            // Checked again under the lock: `close` cancels first and then takes the list, so a
            // subscription is either in the list it joins or sees the cancel here.
            if inner.closed.is_cancelled() {
                subscription.stop.cancel();
                return Err(Error::Closed("subscriber"));
            }
            subscriptions.retain(|s| !s.stop.is_cancelled());
            subscriptions.push(subscription.clone());
        }

        // Wait until the group has given this member its partitions.
        let deadline = tokio::time::Instant::now() + inner.config.join_timeout;
        loop {
            let notified = subscription.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if subscription.state().joined || subscription.stop.is_cancelled() {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(
                    topic,
                    group,
                    "no partition assignment yet; continuing in the background"
                );
                break;
            }
        }

        let guard = StreamGuard(subscription);
        let stream = futures::stream::unfold(guard, |guard| async move {
            let item = next_delivery(&guard.0).await?;
            Some((item, guard))
        });
        Ok(Box::pin(stream))
    }

    async fn health(&self) -> Result<()> {
        self.inner.admin.health().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.cancel();
        let subscriptions = std::mem::take(&mut *self.inner.subscriptions.lock());
        let drivers: Vec<JoinHandle<()>> = subscriptions
            .iter()
            .filter_map(|s| s.driver.lock().take())
            .collect();
        for subscription in &subscriptions {
            subscription.notify.notify_waiters();
        }
        tokio::task::spawn_blocking(move || {
            for driver in drivers {
                if driver.join().is_err() {
                    tracing::error!("a kafka consumer thread panicked");
                }
            }
        })
        .await
        .map_err(|e| Error::unavailable("waiting for the consumer threads failed", e))
    }
}
