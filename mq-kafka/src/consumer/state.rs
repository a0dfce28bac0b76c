//! What a subscription knows, behind its one lock: the partitions it owns, the round-robin
//! cursor, the partitions stashed by a revoke, and the errors waiting for the stream.

use std::collections::VecDeque;

use mq_core::Error;

use crate::codec::Chunks;
use crate::fast_hash::FastMap;
use crate::partition_queue::PartitionQueue;

use super::errors::push_error;
use super::partition::PartitionState;

/// The mutable state of one subscription.
#[derive(Default)]
pub(super) struct State {
    pub(super) partitions: FastMap<i32, PartitionState>,
    /// Partition ids of `partitions`, for round-robin hand-out.
    pub(super) order: Vec<i32>,
    pub(super) cursor: usize,
    /// Partitions revoked by an eager rebalance; restored if the next assignment gives them back
    /// with the commit we made, so in-flight work stays valid.
    pub(super) stashed: FastMap<i32, PartitionState>,
    pub(super) next_epoch: u64,
    /// The group assigned partitions (possibly none) at least once.
    pub(super) joined: bool,
    pub(super) errors: VecDeque<Error>,
    /// Where records taken from the partition queues are copied to.
    pub(super) chunks: Chunks,
    /// Queues of the partitions just revoked, emptied once librdkafka has stopped fetching them
    /// (what they hold is outdated, and would otherwise stay in memory until the partition
    /// comes back).
    pub(super) revoked_queues: Vec<PartitionQueue>,
}

impl State {
    /// The partition state of ownership `epoch`, current or stashed.
    pub(super) fn owned(&mut self, partition: i32, epoch: u64) -> Option<&mut PartitionState> {
        match self.partitions.get_mut(&partition) {
            Some(ps) if ps.epoch == epoch => Some(ps),
            _ => self
                .stashed
                .get_mut(&partition)
                .filter(|p| p.epoch == epoch),
        }
    }

    /// Recomputes the hand-out order after the partitions changed.
    pub(super) fn rebuild_order(&mut self) {
        self.order = self.partitions.keys().copied().collect();
        self.order.sort_unstable();
        self.cursor = 0;
    }

    /// Queues an error for the stream.
    pub(super) fn push_error(&mut self, error: Error) {
        push_error(&mut self.errors, error);
    }
}
