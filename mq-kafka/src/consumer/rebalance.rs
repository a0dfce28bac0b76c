//! Rebalances: a revoke commits the acked prefix while the partitions are still ours and stashes
//! their state; an assign splits the partition queues off before fetching starts and tracks
//! each partition from its committed offset (restoring a stashed state the group gave back).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::error::classify;
use crate::fast_hash::FastMap;
use crate::offsets::OffsetTracker;
use crate::partition_queue::{PartitionQueue, DRAIN_BATCH};

use super::partition::PartitionState;
use super::subscription::Subscription;

/// The consumer context: runs the rebalance hooks in the driver thread, before librdkafka
/// changes the assignment; after a revoke, the revoked partitions' queues are emptied.
pub(super) struct DriverContext {
    pub(super) subscription: Arc<Subscription>,
    /// How long fetching the committed offsets may take.
    pub(super) timeout: Duration,
}

impl ClientContext for DriverContext {}

impl ConsumerContext for DriverContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                tracing::debug!(topic = %self.subscription.topic, partitions = list.count(), "kafka partitions revoked");
                self.subscription.revoke(consumer, list);
            }
            Rebalance::Assign(list) => {
                tracing::debug!(topic = %self.subscription.topic, partitions = list.count(), "kafka partitions assigned");
                self.subscription.assign(consumer, list, self.timeout);
            }
            Rebalance::Error(error) => {
                tracing::warn!(topic = %self.subscription.topic, %error, "kafka rebalance error");
                self.subscription
                    .state()
                    .push_error(classify("rebalance", error.clone()));
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            self.subscription.discard_revoked_queues();
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(topic = %self.subscription.topic, %error, "kafka offset commit failed");
            self.subscription.commit_failed(offsets);
        }
    }
}

impl Subscription {
    /// Revoke: commit the acked prefix of the revoked partitions and stash their state.
    fn revoke(&self, consumer: &BaseConsumer<DriverContext>, list: &TopicPartitionList) {
        let mut state = self.state();
        let mut revoked = FastMap::default();
        for element in list.elements_for_topic(&self.topic) {
            if let Some(mut ps) = state.partitions.remove(&element.partition()) {
                // A new assignment splits the queue off again.
                if let Some(queue) = ps.queue.take() {
                    state.revoked_queues.push(queue);
                }
                revoked.insert(element.partition(), ps);
            }
        }
        state.rebuild_order();
        let due = Self::due_commits(&mut revoked);
        let gaps = Self::gaps(&revoked);
        state.stashed.extend(revoked);
        drop(state);
        if !consumer.assignment_lost() {
            self.write_ack_log(&gaps);
        }
        if !due.is_empty() && !consumer.assignment_lost() {
            let list = self.commit_list(&due);
            if let Err(error) = consumer.commit(&list, CommitMode::Sync) {
                tracing::warn!(topic = %self.topic, %error, "kafka commit on revoke failed");
                let mut state = self.state();
                for (partition, ..) in &due {
                    if let Some(ps) = state.stashed.get_mut(partition) {
                        ps.tracker.commit_failed();
                    }
                }
            }
        }
        self.notify.notify_waiters();
    }

    /// After librdkafka stopped fetching the revoked partitions: frees the records their queues
    /// still hold (librdkafka discards them as outdated) and drops the queues.
    fn discard_revoked_queues(&self) {
        let queues = std::mem::take(&mut self.state().revoked_queues);
        for queue in queues {
            while queue.drain(DRAIN_BATCH, |_| {}) > 0 {}
        }
    }

    /// Assign, before librdkafka starts fetching: split the partitions' queues off and start
    /// tracking them from their committed offsets.
    fn assign(
        &self,
        consumer: &BaseConsumer<DriverContext>,
        list: &TopicPartitionList,
        timeout: Duration,
    ) {
        let mut ours = TopicPartitionList::new();
        for element in list.elements_for_topic(&self.topic) {
            ours.add_partition(&self.topic, element.partition());
        }
        let committed = if ours.count() == 0 {
            Ok(ours.clone())
        } else {
            consumer.committed_offsets(ours.clone(), timeout)
        };
        // Brokers that drop commit metadata: look the acked-above offsets up in the ack log.
        let without_metadata: HashSet<i32> = committed
            .as_ref()
            .map(|list| {
                list.elements()
                    .iter()
                    .filter(|e| matches!(e.offset(), Offset::Offset(_)) && e.metadata().is_empty())
                    .map(|e| e.partition())
                    .collect()
            })
            .unwrap_or_default();
        let logged = self.read_ack_log(&without_metadata);
        let mut state = self.state();
        let committed = match committed {
            Ok(committed) => committed,
            Err(error) => {
                // Without the metadata we cannot skip what the previous owner acked above its
                // commit: those records are delivered again (at least once, nothing lost).
                tracing::warn!(topic = %self.topic, %error, "fetching committed offsets failed");
                state.push_error(classify("fetch committed offsets", error));
                ours
            }
        };
        for element in committed.elements() {
            let partition = element.partition();
            let offset = match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            };
            let restored = state
                .stashed
                .remove(&partition)
                .filter(|stash| stash.tracker.committed() == offset && offset.is_some());
            let mut ps = match restored {
                Some(stash) => stash,
                None => {
                    state.next_epoch += 1;
                    let metadata = match (logged.get(&partition), offset) {
                        // Only an entry written with this very commit describes it.
                        (Some((at, metadata)), Some(offset)) if *at == offset => metadata.as_str(),
                        _ => element.metadata(),
                    };
                    PartitionState::new(state.next_epoch, OffsetTracker::new(offset, metadata))
                }
            };
            ps.queue = PartitionQueue::split(consumer, &self.topic, partition, self.notify.clone());
            if ps.queue.is_none() {
                tracing::warn!(topic = %self.topic, partition,
                    "cannot split the partition's queue off; its records come through the consumer queue");
            }
            state.partitions.insert(partition, ps);
        }
        // Whatever was not given back belongs to another member now: forget it.
        state.stashed.clear();
        state.rebuild_order();
        state.joined = true;
        drop(state);
        self.notify.notify_waiters();
    }
}
