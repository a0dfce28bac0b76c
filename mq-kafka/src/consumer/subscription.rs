//! [`Subscription`]: one consumer-group member, shared by its driver thread, its delivery
//! stream and the acknowledgers of its deliveries; here, handing records out and settling them.

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;

use mq_core::{Message, Result};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::admin::TopicAdmin;
use crate::codec::{CopiedRecord, RawRecord};
use crate::KafkaConfig;

use super::state::State;
use super::SideProducer;

/// One subscription (one librdkafka consumer).
pub(super) struct Subscription {
    pub(super) topic: String,
    /// The Kafka `group.id`.
    pub(super) group_id: String,
    pub(super) config: KafkaConfig,
    pub(super) admin: TopicAdmin,
    state: Mutex<State>,
    /// Woken when records arrive (also by librdkafka, when a partition queue stops being empty),
    /// keys free up, the assignment changes or the stream must end.
    pub(super) notify: Arc<Notify>,
    /// Cancelled by `close` or when the stream is dropped; the driver then leaves the group.
    pub(super) stop: CancellationToken,
    pub(super) driver: Mutex<Option<JoinHandle<()>>>,
    /// Receives once the driver has left the group (or ended).
    pub(super) left: Mutex<Option<Receiver<()>>>,
    /// Publishes dead letters and the ack log.
    pub(super) side_producer: Arc<SideProducer>,
}

/// A record handed out by [`Subscription::take_next`], to be turned into a delivery.
pub(super) struct Taken {
    pub(super) partition: i32,
    pub(super) offset: i64,
    /// The ownership of the partition the record was handed out in.
    pub(super) epoch: u64,
    pub(super) record: RawRecord,
    pub(super) attempt: u32,
    pub(super) message: Message,
}

impl Subscription {
    /// A subscription that owns no partitions yet; `left` receives when its driver has left the
    /// group.
    pub(super) fn new(
        topic: &str,
        group_id: String,
        config: KafkaConfig,
        admin: TopicAdmin,
        stop: CancellationToken,
        left: Receiver<()>,
        side_producer: Arc<SideProducer>,
    ) -> Self {
        Self {
            topic: topic.to_owned(),
            group_id,
            config,
            admin,
            state: Mutex::new(State::default()),
            notify: Arc::new(Notify::new()),
            stop,
            driver: Mutex::new(None),
            left: Mutex::new(Some(left)),
            side_producer,
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// The next stream item: a queued error, or the next record round-robin over partitions
    /// (taken from their queues in librdkafka as needed), handed out until it is settled.
    pub(super) fn take_next(&self) -> Option<Result<Taken>> {
        let limit = self.config.max_buffered_per_partition.max(1);
        let mut guard = self.state();
        let state = &mut *guard;
        if let Some(error) = state.errors.pop_front() {
            return Some(Err(error));
        }
        let count = state.order.len();
        for step in 0..count {
            let index = (state.cursor + step) % count;
            let partition = state.order[index];
            let Some(ps) = state.partitions.get_mut(&partition) else {
                continue;
            };
            let Some((offset, record, attempt)) =
                ps.next_or_fetch(limit, &mut state.chunks, &mut state.errors)
            else {
                continue;
            };
            let epoch = ps.epoch;
            state.cursor = index + 1;
            drop(guard);
            // Built here, outside the lock, on the thread that consumes (and later frees) it.
            let message = record.message(&self.topic, partition, offset);
            return Some(Ok(Taken {
                partition,
                offset,
                epoch,
                record,
                attempt,
                message,
            }));
        }
        // Draining the queues may have turned up errors.
        state.errors.pop_front().map(Err)
    }

    /// Acks `offset` of ownership `epoch`; `false` if that ownership ended (the partition was
    /// revoked) or the record was not in flight.
    pub(super) fn ack(&self, partition: i32, offset: i64, epoch: u64) -> bool {
        let unblocked = self
            .state()
            .owned(partition, epoch)
            .and_then(|ps| ps.ack(offset));
        if unblocked == Some(true) {
            // A key is free again: a waiting stream may hand out its next record.
            self.notify.notify_waiters();
        }
        unblocked.is_some()
    }

    /// Hands `record` out again (a nack or a dropped delivery).
    pub(super) fn requeue(&self, partition: i32, offset: i64, epoch: u64, record: RawRecord) {
        if let Some(ps) = self.state().owned(partition, epoch) {
            ps.give_back(offset, record);
        }
        self.notify.notify_waiters();
    }

    /// Whether `offset` of ownership `epoch` is handed out and not settled.
    pub(super) fn is_in_flight(&self, partition: i32, offset: i64, epoch: u64) -> bool {
        self.state()
            .owned(partition, epoch)
            .is_some_and(|ps| ps.is_in_flight(offset))
    }

    /// Takes a batch of fetched records into the partition buffers with one lock and one
    /// wake-up.
    pub(super) fn accept(&self, records: Vec<CopiedRecord>) {
        let mut state = self.state();
        let mut current: Option<(i32, &mut _)> = None;
        for record in records {
            let partition = record.partition;
            // Records come in runs of one partition: look the partition up once per run.
            if current.as_ref().is_none_or(|(p, _)| *p != partition) {
                current = state
                    .partitions
                    .get_mut(&partition)
                    .map(|ps| (partition, ps));
            }
            if let Some((_, ps)) = current.as_mut() {
                ps.receive(record);
            } // else: not ours (any more)
        }
        drop(state);
        self.notify.notify_waiters();
    }
}
