//! Offset commits: the contiguous acked prefix of every partition, with the offsets acked above
//! it in the commit metadata (see [`OffsetTracker`](crate::offsets::OffsetTracker)).

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::fast_hash::FastMap;

use super::partition::PartitionState;
use super::rebalance::DriverContext;
use super::subscription::Subscription;

/// A commit to make: `(partition, offset, metadata)`.
pub(super) type DueCommit = (i32, i64, String);

impl Subscription {
    /// The commits due now, marked as sent.
    pub(super) fn due_commits(partitions: &mut FastMap<i32, PartitionState>) -> Vec<DueCommit> {
        let mut due = Vec::new();
        for (&partition, ps) in partitions.iter_mut() {
            if let Some((offset, metadata)) = ps.tracker.pending_commit() {
                ps.tracker.mark_committed(offset, metadata.clone());
                due.push((partition, offset, metadata));
            }
        }
        due
    }

    /// `(partition, commit position, metadata)` of every partition with offsets acked above its
    /// commit position (what the ack log must remember).
    pub(super) fn gaps(partitions: &FastMap<i32, PartitionState>) -> Vec<DueCommit> {
        partitions
            .iter()
            .filter_map(|(&partition, ps)| {
                let metadata = ps.tracker.metadata();
                let offset = ps.tracker.commit_position()?;
                (!metadata.is_empty()).then_some((partition, offset, metadata))
            })
            .collect()
    }

    pub(super) fn commit_list(&self, due: &[DueCommit]) -> TopicPartitionList {
        let mut list = TopicPartitionList::with_capacity(due.len());
        for (partition, offset, metadata) in due {
            let mut element = list.add_partition(&self.topic, *partition);
            // Offsets from the broker are never negative, so this cannot fail.
            let _ = element.set_offset(Offset::Offset(*offset));
            element.set_metadata(metadata.clone());
        }
        list
    }

    /// Commits what is due (the driver's periodic commit).
    pub(super) fn commit(&self, consumer: &BaseConsumer<DriverContext>, mode: CommitMode) {
        let due = Self::due_commits(&mut self.state().partitions);
        if due.is_empty() {
            return;
        }
        let list = self.commit_list(&due);
        if let Err(error) = consumer.commit(&list, mode) {
            tracing::warn!(topic = %self.topic, %error, "kafka offset commit failed");
            self.commit_failed(&list);
        }
    }

    /// The commit on close: synchronous, with the acked-above offsets in the ack log.
    pub(super) fn final_commit(&self, consumer: &BaseConsumer<DriverContext>) {
        let (due, gaps) = {
            let mut state = self.state();
            let due = Self::due_commits(&mut state.partitions);
            (due, Self::gaps(&state.partitions))
        };
        self.write_ack_log(&gaps);
        if due.is_empty() {
            return;
        }
        let list = self.commit_list(&due);
        if let Err(error) = consumer.commit(&list, CommitMode::Sync) {
            tracing::warn!(topic = %self.topic, %error, "kafka commit on close failed");
            self.commit_failed(&list);
        }
    }

    /// Forgets the commits of `list` as made, so they are made again.
    pub(super) fn commit_failed(&self, list: &TopicPartitionList) {
        let mut state = self.state();
        for element in list.elements() {
            if let Some(ps) = state.partitions.get_mut(&element.partition()) {
                ps.tracker.commit_failed();
            }
        }
    }
}
