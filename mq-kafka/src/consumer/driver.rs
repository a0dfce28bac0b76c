//! The driver thread: serves the consumer queue (which runs the rebalance hooks) and commits
//! every [`KafkaConfig::commit_interval`]; on stop commits once more and leaves the group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode};

use crate::codec::{Chunks, RawRecord};
use crate::error::classify;
use crate::KafkaConfig;

use super::rebalance::DriverContext;
use super::subscription::Subscription;

/// Records the driver takes from the consumer queue in one go (only records fetched before their
/// partition's queue was split off arrive there).
const POLL_BATCH: usize = 512;
/// The longest the driver waits for consumer-queue events before it looks at commits and stop.
const DRIVER_TICK: Duration = Duration::from_millis(50);

/// Runs the driver until the subscription stops.
pub(super) fn drive(
    subscription: Arc<Subscription>,
    consumer: BaseConsumer<DriverContext>,
    config: KafkaConfig,
) {
    // Declared after `consumer`, so dropped before it however this ends: partition queues must
    // not outlive their consumer.
    let _queues = ReleaseQueuesOnExit(&subscription);
    let mut last_commit = Instant::now();
    let mut chunks = Chunks::default();
    while !subscription.stop.is_cancelled() {
        let wait = DRIVER_TICK.min(config.commit_interval.saturating_sub(last_commit.elapsed()));
        match consumer.poll(wait) {
            None => {}
            Some(Err(error)) => {
                tracing::debug!(topic = %subscription.topic, %error, "kafka consumer error");
                subscription.state().push_error(classify("consume", error));
            }
            // Fetched before its partition's queue was split off: buffered like the others.
            Some(Ok(record)) => {
                let mut batch = vec![RawRecord::copy(&record, &mut chunks)];
                drop(record);
                while batch.len() < POLL_BATCH {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(record)) => batch.push(RawRecord::copy(&record, &mut chunks)),
                        Some(Err(error)) => {
                            subscription.state().push_error(classify("consume", error));
                            break;
                        }
                        None => break,
                    }
                }
                subscription.accept(batch);
            }
        }
        if last_commit.elapsed() >= config.commit_interval {
            subscription.commit(&consumer, CommitMode::Async);
            last_commit = Instant::now();
        }
    }
    subscription.final_commit(&consumer);
    subscription.release_queues();
    // Closing the consumer revokes the assignment (the hook commits anything acked since) and
    // leaves the group, so the partitions move to the other members at once.
    drop(consumer);
    let mut state = subscription.state();
    state.partitions.clear();
    state.stashed.clear();
    state.order.clear();
    drop(state);
    subscription.notify.notify_waiters();
}

/// Releases the subscription's partition queues when the driver ends, also by a panic; after a
/// panic it also ends the subscription, whose stream would otherwise wait for ever for a driver
/// that is gone.
struct ReleaseQueuesOnExit<'a>(&'a Subscription);

impl Drop for ReleaseQueuesOnExit<'_> {
    fn drop(&mut self) {
        self.0.release_queues();
        if std::thread::panicking() {
            tracing::error!(topic = %self.0.topic, "the Kafka consumer's driver thread panicked; ending the subscription");
            self.0.stop.cancel();
            self.0.notify.notify_waiters();
        }
    }
}

impl Subscription {
    /// Drops every partition queue (the stream then takes nothing more from librdkafka); they
    /// must go before the consumer does.
    fn release_queues(&self) {
        let mut state = self.state();
        for ps in state.partitions.values_mut() {
            ps.queue = None;
        }
        state.revoked_queues.clear();
    }
}
