//! [`KafkaSubscriber`]: consumer-group subscriptions with at-least-once commits.
//!
//! Each `subscribe` call runs one librdkafka consumer (a member of the group). A dedicated
//! thread, the *driver*, serves the consumer queue: rebalances, commit results and errors, and
//! commits. Each assigned partition's records go to a queue of their own ([`PartitionQueue`]),
//! split off before the partition is assigned; the delivery stream drains those queues in
//! batches as it needs records, so a record is copied, tracked and handed out on the task that
//! consumes it, and a stream that is not polled leaves the records in librdkafka's bounded
//! prefetch queue (which stops fetching when full).
//!
//! The stream hands records out round-robin over partitions, never handing out a record whose
//! key has an earlier record in flight (order per key). Settling a delivery updates the
//! partition's [`OffsetTracker`]; the driver commits the contiguous acked prefix (plus the
//! offsets acked above it, in the commit metadata) every [`KafkaConfig::commit_interval`], on
//! revoke and on close. A nacked or dropped delivery goes back into its partition's buffer and
//! is handed out again, without blocking other partitions or keys.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use mq_core::{
    dead_letter_topic, Acknowledger, Delivery, DeliveryStream, Error, Message, Nack, Origin,
    Result, Settlement, Subscriber,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::admin::TopicAdmin;
use crate::error::classify;
use crate::offsets::{OffsetTracker, Received};
use crate::partition_queue::{PartitionQueue, DRAIN_BATCH};
use crate::producer::{await_delivery, ProducerInner};
use crate::KafkaConfig;
use mq_core::headers::MESSAGE_ID;

/// Records the driver takes from the consumer queue in one go (only records fetched before their
/// partition's queue was split off arrive there).
const POLL_BATCH: usize = 512;
/// The longest the driver waits for consumer-queue events before it looks at commits and stop.
const DRIVER_TICK: Duration = Duration::from_millis(50);
/// Subscription errors kept for the stream; older ones are dropped.
const MAX_QUEUED_ERRORS: usize = 16;
/// Record parts up to this size share [`CHUNK`]-sized buffers (see [`Chunks`]).
const SHARED_MAX: usize = 2 * 1024;
/// Size of a shared buffer: the most one retained small record can keep alive.
const CHUNK: usize = 32 * 1024;

/// FxHash-style hasher for the hot path (partition ids, offsets, key hashes, keys): fast on
/// short inputs, and a collision is harmless (an unrelated key waits for a moment; a map lookup
/// compares the key anyway).
#[derive(Default, Clone, Copy)]
struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_i32(&mut self, n: i32) {
        self.add(n as u32 as u64);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_i64(&mut self, n: i64) {
        self.add(n as u64);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

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
    dead_letters: Arc<DeadLetters>,
    closed: CancellationToken,
    subscriptions: Mutex<Vec<Arc<Subscription>>>,
}

/// Lazily created producer for dead letters, shared by a subscriber's subscriptions.
struct DeadLetters {
    config: KafkaConfig,
    admin: TopicAdmin,
    producer: Mutex<Option<Arc<ProducerInner>>>,
}

impl DeadLetters {
    fn producer(&self) -> Result<Arc<ProducerInner>> {
        let mut producer = lock(&self.producer);
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
        let dead_letters = Arc::new(DeadLetters {
            config: config.clone(),
            admin: admin.clone(),
            producer: Mutex::new(None),
        });
        Ok(Self {
            inner: Arc::new(SubscriberInner {
                config,
                admin,
                dead_letters,
                closed: CancellationToken::new(),
                subscriptions: Mutex::new(Vec::new()),
            }),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state consistent, so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One subscription: shared by its driver thread, its stream and its deliveries' acknowledgers.
struct Subscription {
    topic: String,
    /// The Kafka `group.id`.
    group_id: String,
    config: KafkaConfig,
    admin: TopicAdmin,
    state: Mutex<State>,
    /// Woken when records arrive (also by librdkafka, when a partition queue stops being empty),
    /// keys free up, the assignment changes or the stream must end.
    notify: Arc<Notify>,
    /// Cancelled by `close` or when the stream is dropped; the driver then leaves the group.
    stop: CancellationToken,
    driver: Mutex<Option<JoinHandle<()>>>,
    /// Receives once the driver has left the group (or ended).
    left: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    dead_letters: Arc<DeadLetters>,
}

#[derive(Default)]
struct State {
    partitions: FastMap<i32, PartitionState>,
    /// Partition ids of `partitions`, for round-robin hand-out.
    order: Vec<i32>,
    cursor: usize,
    /// Partitions revoked by an eager rebalance; restored if the next assignment gives them back
    /// with the commit we made, so in-flight work stays valid.
    stashed: FastMap<i32, PartitionState>,
    next_epoch: u64,
    /// The group assigned partitions (possibly none) at least once.
    joined: bool,
    errors: VecDeque<Error>,
    /// Where records taken from the partition queues are copied to.
    chunks: Chunks,
    /// Queues of the partitions just revoked, emptied once librdkafka has stopped fetching them
    /// (what they hold is outdated, and would otherwise stay in memory until the partition
    /// comes back).
    revoked_queues: Vec<PartitionQueue>,
}

struct PartitionState {
    /// Identifies this ownership of the partition: settlements of an older one are ignored.
    epoch: u64,
    tracker: OffsetTracker,
    /// Records ready to be handed out (new or given back), ascending by offset: fetched records
    /// are appended, given-back ones inserted at their place.
    pending: VecDeque<Pending>,
    /// Records handed out and not settled: their key hash and deliveries so far.
    in_flight: FastMap<i64, InFlight>,
    /// Hashes of the keys with a record in flight. A hash collision only makes an unrelated key
    /// wait for a moment; it never reorders a key.
    busy_keys: FastSet<u64>,
    /// A pending record was passed over because its key was busy: releasing a key must wake the
    /// stream.
    key_blocked: bool,
    /// The partition's own queue in librdkafka, drained into `pending` when nothing there can be
    /// handed out. `None` once revoked (or if it could not be split off: then its records come
    /// through the consumer queue and the driver).
    queue: Option<PartitionQueue>,
}

/// A fetched record waiting to be handed out.
struct Pending {
    offset: i64,
    record: RawRecord,
    key_hash: Option<u64>,
    /// Deliveries so far (0 for a record never handed out).
    attempts: u32,
}

#[derive(Clone, Copy)]
struct InFlight {
    key_hash: Option<u64>,
    attempts: u32,
}

impl PartitionState {
    fn new(epoch: u64, tracker: OffsetTracker) -> Self {
        Self {
            epoch,
            tracker,
            pending: VecDeque::new(),
            in_flight: FastMap::default(),
            busy_keys: FastSet::default(),
            key_blocked: false,
            queue: None,
        }
    }

    /// Takes the next record that can be handed out, draining the partition queue into
    /// `pending` while nothing there can (every pending key busy) and `pending` holds fewer than
    /// `limit` records.
    fn next_or_fetch(
        &mut self,
        limit: usize,
        chunks: &mut Chunks,
        errors: &mut VecDeque<Error>,
    ) -> Option<(i64, RawRecord, u32)> {
        loop {
            if let Some(next) = self.take_next() {
                return Some(next);
            }
            if self.fetch(limit, chunks, errors) == 0 {
                return None;
            }
        }
    }

    /// Moves up to one batch of records from the partition queue to `pending` (skipping those
    /// the tracker already knows), without waiting; returns how many librdkafka handed over.
    fn fetch(&mut self, limit: usize, chunks: &mut Chunks, errors: &mut VecDeque<Error>) -> usize {
        let room = limit.saturating_sub(self.pending.len());
        let Some(queue) = self.queue.as_ref().filter(|_| room > 0) else {
            return 0;
        };
        let (tracker, pending) = (&mut self.tracker, &mut self.pending);
        queue.drain(room, |record| {
            if let Some(error) = record.error() {
                push_error(errors, classify("consume", error));
                return;
            }
            let (_, record) = RawRecord::copy(&record, chunks);
            if tracker.receive(record.offset) == Received::Deliver {
                insert_pending(pending, record);
            }
        })
    }

    /// Takes the oldest pending record whose key is not busy.
    fn take_next(&mut self) -> Option<(i64, RawRecord, u32)> {
        let record = if self.busy_keys.is_empty() {
            self.pending.pop_front()?
        } else {
            let index = self.pending.iter().position(|record| {
                record
                    .key_hash
                    .is_none_or(|hash| !self.busy_keys.contains(&hash))
            });
            match index {
                Some(index) => {
                    if index > 0 {
                        self.key_blocked = true;
                    }
                    self.pending.remove(index)?
                }
                None => {
                    self.key_blocked |= !self.pending.is_empty();
                    return None;
                }
            }
        };
        let offset = record.offset;
        if let Some(hash) = record.key_hash {
            self.busy_keys.insert(hash);
        }
        let attempts = record.attempts + 1;
        self.in_flight.insert(
            offset,
            InFlight {
                key_hash: record.key_hash,
                attempts,
            },
        );
        Some((offset, record.record, attempts))
    }

    /// Ends the in-flight state of `offset`; `None` if it was not in flight. The flag tells
    /// whether a record waiting for the released key may be handed out now.
    fn release(&mut self, offset: i64) -> Option<(InFlight, bool)> {
        let in_flight = self.in_flight.remove(&offset)?;
        let mut unblocked = false;
        if let Some(hash) = in_flight.key_hash {
            self.busy_keys.remove(&hash);
            unblocked = std::mem::take(&mut self.key_blocked);
        }
        Some((in_flight, unblocked))
    }
}

/// Adds `record` to `pending`, which stays ascending by offset (fetched records come in order,
/// so this is nearly always a push at the back).
fn insert_pending(pending: &mut VecDeque<Pending>, record: Pending) {
    if pending
        .back()
        .is_none_or(|last| last.offset < record.offset)
    {
        pending.push_back(record);
    } else {
        let index = pending.partition_point(|p| p.offset < record.offset);
        pending.insert(index, record);
    }
}

/// Queues an error for the stream, dropping the oldest beyond [`MAX_QUEUED_ERRORS`].
fn push_error(errors: &mut VecDeque<Error>, error: Error) {
    if errors.len() >= MAX_QUEUED_ERRORS {
        errors.pop_front();
    }
    errors.push_back(error);
}

impl State {
    /// The partition state of ownership `epoch`, current or stashed.
    fn owned(&mut self, partition: i32, epoch: u64) -> Option<&mut PartitionState> {
        match self.partitions.get_mut(&partition) {
            Some(ps) if ps.epoch == epoch => Some(ps),
            _ => self
                .stashed
                .get_mut(&partition)
                .filter(|p| p.epoch == epoch),
        }
    }

    fn rebuild_order(&mut self) {
        self.order = self.partitions.keys().copied().collect();
        self.order.sort_unstable();
        self.cursor = 0;
    }

    fn push_error(&mut self, error: Error) {
        push_error(&mut self.errors, error);
    }
}

impl Subscription {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The next stream item: a queued error, or the next record round-robin over partitions
    /// (taken from their queues in librdkafka as needed).
    fn take_next(self: &Arc<Self>) -> Option<Result<Delivery>> {
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
            let acknowledger = KafkaAcknowledger {
                subscription: self.clone(),
                partition,
                offset,
                epoch,
                record,
            };
            let origin = Origin {
                system: "kafka",
                partition: Some(partition),
                offset: Some(offset),
            };
            return Some(Ok(Delivery::new(
                self.topic.clone(),
                message,
                attempt,
                Box::new(acknowledger),
            )
            .with_origin(origin)));
        }
        // Draining the queues may have turned up errors.
        state.errors.pop_front().map(Err)
    }

    fn ack(&self, partition: i32, offset: i64, epoch: u64) -> bool {
        let mut state = self.state();
        let Some(ps) = state.owned(partition, epoch) else {
            return false;
        };
        let Some((_, unblocked)) = ps.release(offset) else {
            return false;
        };
        ps.tracker.ack(offset);
        drop(state);
        if unblocked {
            // A key is free again: a waiting stream may hand out its next record.
            self.notify.notify_waiters();
        }
        true
    }

    fn requeue(&self, partition: i32, offset: i64, epoch: u64, record: RawRecord) {
        let mut state = self.state();
        if let Some(ps) = state.owned(partition, epoch) {
            if let Some((released, _)) = ps.release(offset) {
                insert_pending(
                    &mut ps.pending,
                    Pending {
                        offset,
                        record,
                        key_hash: released.key_hash,
                        attempts: released.attempts,
                    },
                );
            }
        }
        drop(state);
        self.notify.notify_waiters();
    }

    fn is_in_flight(&self, partition: i32, offset: i64, epoch: u64) -> bool {
        self.state()
            .owned(partition, epoch)
            .is_some_and(|ps| ps.in_flight.contains_key(&offset))
    }

    /// Takes a batch of fetched records (keys already hashed) into the partition buffers with
    /// one lock and one wake-up.
    fn accept(&self, records: Vec<(i32, Pending)>) {
        let mut state = self.state();
        let mut current: Option<(i32, &mut PartitionState)> = None;
        for (partition, record) in records {
            // Records come in runs of one partition: look the partition up once per run.
            if current.as_ref().is_none_or(|(p, _)| *p != partition) {
                current = state
                    .partitions
                    .get_mut(&partition)
                    .map(|ps| (partition, ps));
            }
            let Some((_, ps)) = current.as_mut() else {
                continue; // not ours (any more)
            };
            if ps.tracker.receive(record.offset) == Received::Deliver {
                insert_pending(&mut ps.pending, record);
            }
        }
        drop(state);
        self.notify.notify_waiters();
    }

    /// The commits due now (`(partition, offset, metadata)`), marked as sent.
    fn due_commits(partitions: &mut FastMap<i32, PartitionState>) -> Vec<(i32, i64, String)> {
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
    fn gaps(partitions: &FastMap<i32, PartitionState>) -> Vec<(i32, i64, String)> {
        partitions
            .iter()
            .filter_map(|(&partition, ps)| {
                let metadata = ps.tracker.metadata();
                let offset = ps.tracker.commit_position()?;
                (!metadata.is_empty()).then_some((partition, offset, metadata))
            })
            .collect()
    }

    fn commit_list(&self, due: &[(i32, i64, String)]) -> TopicPartitionList {
        let mut list = TopicPartitionList::with_capacity(due.len());
        for (partition, offset, metadata) in due {
            let mut element = list.add_partition(&self.topic, *partition);
            // Offsets from the broker are never negative, so this cannot fail.
            let _ = element.set_offset(Offset::Offset(*offset));
            element.set_metadata(metadata.clone());
        }
        list
    }

    fn commit(&self, consumer: &BaseConsumer<DriverContext>, mode: CommitMode) {
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
    fn final_commit(&self, consumer: &BaseConsumer<DriverContext>) {
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

    /// Records `offset metadata` under `<group.id>/<partition>` in the ack log for every commit
    /// that leaves acked offsets above it. Best effort: a failure only means redeliveries.
    fn write_ack_log(&self, due: &[(i32, i64, String)]) {
        if !self.config.ack_log_topic || due.is_empty() {
            return;
        }
        let log = ack_log_topic(&self.topic);
        let result = (|| -> Result<()> {
            futures::executor::block_on(self.admin.ensure_with(&log, 1))?;
            let producer = self.dead_letters.producer()?;
            let mut deliveries = Vec::new();
            for (partition, offset, metadata) in due.iter().filter(|(_, _, m)| !m.is_empty()) {
                let record = Message::new(format!("{offset} {metadata}"))
                    .with_key(format!("{}/{partition}", self.group_id));
                match producer.enqueue(&log, &record)? {
                    Some(delivery) => deliveries.push(delivery),
                    None => return Err(Error::Rejected("producer queue full".into())),
                }
            }
            for delivery in deliveries {
                futures::executor::block_on(await_delivery(delivery))?;
            }
            tracing::debug!(topic = %self.topic, ?due, "ack log written");
            Ok(())
        })();
        if let Err(error) = result {
            tracing::warn!(topic = %self.topic, %error, "writing the ack log failed");
        }
    }

    /// The latest ack-log entry (`offset`, `metadata`) of each partition in `wanted`.
    fn read_ack_log(&self, wanted: &HashSet<i32>) -> HashMap<i32, (i64, String)> {
        let mut found = HashMap::new();
        if !self.config.ack_log_topic || wanted.is_empty() {
            return found;
        }
        let log = ack_log_topic(&self.topic);
        let timeout = self.config.operation_timeout;
        let result = (|| -> KafkaResult<()> {
            let reader: BaseConsumer = self
                .config
                .reader(&format!("{}.ack-log-reader", self.group_id))
                .create()?;
            let metadata = reader.fetch_metadata(Some(&log), timeout)?;
            if metadata
                .topics()
                .first()
                .is_none_or(|t| t.error().is_some() || t.partitions().is_empty())
            {
                return Ok(());
            }
            let (low, high) = reader.fetch_watermarks(&log, 0, timeout)?;
            if high <= low {
                return Ok(());
            }
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&log, 0, Offset::Offset(low))?;
            reader.assign(&list)?;
            let prefix = format!("{}/", self.group_id);
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                let Some(record) = reader.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let record = record?;
                let key = record
                    .key()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let value = record
                    .payload()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                if let Some(partition) = key
                    .strip_prefix(&prefix)
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    if wanted.contains(&partition) {
                        let (offset, metadata) = value.split_once(' ').unwrap_or((&value, ""));
                        if let Ok(offset) = offset.parse::<i64>() {
                            found.insert(partition, (offset, metadata.to_owned()));
                        }
                    }
                }
                if record.offset() >= high - 1 {
                    break;
                }
            }
            Ok(())
        })();
        if let Err(error) = result {
            tracing::warn!(topic = %self.topic, %error, "reading the ack log failed");
        }
        tracing::debug!(topic = %self.topic, ?wanted, ?found, "ack log read");
        found
    }

    fn commit_failed(&self, list: &TopicPartitionList) {
        let mut state = self.state();
        for element in list.elements() {
            if let Some(ps) = state.partitions.get_mut(&element.partition()) {
                ps.tracker.commit_failed();
            }
        }
    }

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

    /// Drops every partition queue (the stream then takes nothing more from librdkafka); they
    /// must go before the consumer does.
    fn release_queues(&self) {
        let mut state = self.state();
        for ps in state.partitions.values_mut() {
            ps.queue = None;
        }
        state.revoked_queues.clear();
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

/// The consumer context: runs the rebalance hooks in the driver thread. They run before
/// librdkafka changes the assignment: a revoke commits while the partitions are still ours, an
/// assign splits the partition queues off before fetching starts; after a revoke, the revoked
/// partitions' queues are emptied.
struct DriverContext {
    subscription: Arc<Subscription>,
    timeout: Duration,
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

/// The side topic that records acked-above offsets for `topic` (see
/// [`KafkaConfig::ack_log_topic`]).
pub fn ack_log_topic(topic: &str) -> String {
    format!("__mq_acks.{topic}")
}

/// Copies record parts out of librdkafka's buffers without an allocation per record: small
/// parts are appended to a shared chunk and handed out as slices of it (a reference count), so
/// a retained record keeps at most [`CHUNK`] bytes alive; larger parts get a buffer of their own.
#[derive(Default)]
struct Chunks {
    chunk: BytesMut,
}

impl Chunks {
    /// `size` bytes written by `fill` (which must not write more).
    fn bytes(&mut self, size: usize, fill: impl FnOnce(&mut BytesMut)) -> Bytes {
        if size == 0 {
            return Bytes::new();
        }
        if size > SHARED_MAX {
            let mut own = BytesMut::with_capacity(size);
            fill(&mut own);
            return own.freeze();
        }
        if self.chunk.capacity() - self.chunk.len() < size {
            self.chunk = BytesMut::with_capacity(CHUNK);
        }
        fill(&mut self.chunk);
        self.chunk.split().freeze()
    }

    /// The chunk, with room for at least `size` more bytes; what is written to it beyond that
    /// grows it (into a new buffer: the parts already handed out keep the old one).
    fn room(&mut self, size: usize) -> &mut BytesMut {
        if self.chunk.capacity() - self.chunk.len() < size {
            self.chunk = BytesMut::with_capacity(CHUNK.max(size));
        }
        &mut self.chunk
    }

    /// What was written since the last part, as a part.
    fn split(&mut self) -> Bytes {
        self.chunk.split().freeze()
    }
}

/// Room reserved for a record's key and headers before they are encoded (one pass over the
/// headers; larger ones grow the chunk).
const META_ROOM: usize = 256;

/// A fetched record as the consumer thread copied it out of librdkafka: key and headers
/// encoded in `meta`, the payload beside it. [`RawRecord::message`] builds the [`Message`]
/// when the record is handed out, on the thread that consumes it; the acknowledger keeps the
/// `RawRecord` (two reference counts, not a second copy of the message) for requeue and dead
/// letters.
struct RawRecord {
    /// The key, then (name, value) of every header in order; each part a little-endian `u32`
    /// length (`u32::MAX`: none) and the bytes.
    meta: Bytes,
    payload: Bytes,
}

fn put_part(buf: &mut BytesMut, part: Option<&[u8]>) {
    match part {
        Some(bytes) => {
            buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            buf.extend_from_slice(bytes);
        }
        None => buf.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

fn take_part<'a>(meta: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = meta.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len);
    if len == u32::MAX {
        *meta = rest;
        return None;
    }
    let (part, rest) = rest.split_at_checked(len as usize)?;
    *meta = rest;
    Some(part)
}

/// The records [`RawRecord::copy`] takes. In a module of its own so that its method names do
/// not clash with rdkafka's `Message` trait elsewhere in this file.
mod lent {
    use rdkafka::message::{BorrowedMessage, Headers};

    use crate::partition_queue::FetchedRecord;

    /// A record as librdkafka lends it: through a split partition queue ([`FetchedRecord`]) or
    /// through the consumer queue (rdkafka's [`BorrowedMessage`]).
    pub(super) trait LentRecord {
        fn partition(&self) -> i32;
        fn offset(&self) -> i64;
        fn key(&self) -> Option<&[u8]>;
        fn payload(&self) -> &[u8];
        /// Calls `each(name, value)` for every header, in order.
        fn for_each_header(&self, each: impl FnMut(&[u8], &[u8]));
    }

    impl LentRecord for FetchedRecord<'_> {
        fn partition(&self) -> i32 {
            FetchedRecord::partition(self)
        }
        fn offset(&self) -> i64 {
            FetchedRecord::offset(self)
        }
        fn key(&self) -> Option<&[u8]> {
            FetchedRecord::key(self)
        }
        fn payload(&self) -> &[u8] {
            FetchedRecord::payload(self)
        }
        fn for_each_header(&self, mut each: impl FnMut(&[u8], &[u8])) {
            FetchedRecord::for_each_header(self, |name, value| {
                each(name, value.unwrap_or_default())
            });
        }
    }

    impl LentRecord for BorrowedMessage<'_> {
        fn partition(&self) -> i32 {
            rdkafka::Message::partition(self)
        }
        fn offset(&self) -> i64 {
            rdkafka::Message::offset(self)
        }
        fn key(&self) -> Option<&[u8]> {
            rdkafka::Message::key(self)
        }
        fn payload(&self) -> &[u8] {
            rdkafka::Message::payload(self).unwrap_or_default()
        }
        fn for_each_header(&self, mut each: impl FnMut(&[u8], &[u8])) {
            if let Some(list) = rdkafka::Message::headers(self) {
                for header in list.iter() {
                    each(header.key.as_bytes(), header.value.unwrap_or_default());
                }
            }
        }
    }
}

impl RawRecord {
    /// Copies a record librdkafka lends (a few `memcpy`s into `chunks`); returns its partition
    /// and the pending record with its key hash.
    fn copy(record: &impl lent::LentRecord, chunks: &mut Chunks) -> (i32, Pending) {
        let key = record.key();
        let buf = chunks.room(META_ROOM + key.map_or(0, <[u8]>::len));
        put_part(buf, key);
        record.for_each_header(|name, value| {
            put_part(buf, Some(name));
            put_part(buf, Some(value));
        });
        let meta = chunks.split();
        let payload = record.payload();
        let payload = chunks.bytes(payload.len(), |buf| buf.extend_from_slice(payload));
        let key_hash = key.map(|key| {
            let mut hasher = FastHasher::default();
            hasher.write(key);
            hasher.finish()
        });
        (
            record.partition(),
            Pending {
                offset: record.offset(),
                record: RawRecord { meta, payload },
                key_hash,
                attempts: 0,
            },
        )
    }

    /// The message: id from the `x-message-id` header (else `topic/partition/offset`), the
    /// other headers, key and header values as (lossy) UTF-8.
    fn message(&self, topic: &str, partition: i32, offset: i64) -> Message {
        let mut meta = &self.meta[..];
        let key = take_part(&mut meta).map(|key| String::from_utf8_lossy(key).into_owned());
        let mut id = None;
        let mut headers = BTreeMap::new();
        while !meta.is_empty() {
            let (Some(name), Some(value)) = (take_part(&mut meta), take_part(&mut meta)) else {
                break; // cannot happen: we encoded it
            };
            let value = String::from_utf8_lossy(value).into_owned();
            if name == MESSAGE_ID.as_bytes() {
                id = Some(value);
            } else {
                headers.insert(String::from_utf8_lossy(name).into_owned(), value);
            }
        }
        let id = id.unwrap_or_else(|| format!("{topic}/{partition}/{offset}"));
        Message::from_parts(id, key, headers, self.payload.clone())
    }
}

/// The driver thread: serves the consumer queue (which runs the rebalance hooks) and commits
/// every [`KafkaConfig::commit_interval`]; on stop commits once more and leaves the group.
fn drive(
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

/// Releases the subscription's partition queues when the driver ends, also by a panic.
struct ReleaseQueuesOnExit<'a>(&'a Subscription);

impl Drop for ReleaseQueuesOnExit<'_> {
    fn drop(&mut self) {
        self.0.release_queues();
    }
}

/// Ends the subscription when its stream is dropped.
struct StreamGuard(Arc<Subscription>);

impl Drop for StreamGuard {
    /// Stops the driver and waits (briefly) until it has committed and left the group, so a
    /// member that replaces this one right after the drop joins a group that is not mid-leave.
    fn drop(&mut self) {
        self.0.stop.cancel();
        let left = lock(&self.0.left).take();
        if let Some(left) = left {
            let _ = left.recv_timeout(LEAVE_WAIT);
        }
    }
}

/// How long dropping a stream waits for its consumer to leave the group.
const LEAVE_WAIT: Duration = Duration::from_secs(5);

async fn next_delivery(subscription: &Arc<Subscription>) -> Option<Result<Delivery>> {
    loop {
        if subscription.stop.is_cancelled() {
            return None;
        }
        // Fast path: something is ready.
        if let Some(item) = subscription.take_next() {
            return Some(item);
        }
        // Register for wake-ups, then look again, so nothing between the look and the wait is
        // missed.
        let notified = subscription.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(item) = subscription.take_next() {
            return Some(item);
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
        let subscription = Arc::new(Subscription {
            topic: topic.to_owned(),
            group_id: group_id.clone(),
            config: inner.config.clone(),
            admin: inner.admin.clone(),
            state: Mutex::new(State::default()),
            notify: Arc::new(Notify::new()),
            stop: inner.closed.child_token(),
            driver: Mutex::new(None),
            left: Mutex::new(Some(left_rx)),
            dead_letters: inner.dead_letters.clone(),
        });
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
                    drive(subscription, consumer, config);
                    let _ = left_tx.send(());
                })
                .map_err(|e| Error::unavailable("cannot start the consumer thread", e))?
        };
        *lock(&subscription.driver) = Some(driver);
        {
            let mut subscriptions = lock(&inner.subscriptions);
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
        let subscriptions = std::mem::take(&mut *lock(&self.inner.subscriptions));
        let drivers: Vec<JoinHandle<()>> = subscriptions
            .iter()
            .filter_map(|s| lock(&s.driver).take())
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

/// Settles one delivery against its partition's tracker.
struct KafkaAcknowledger {
    subscription: Arc<Subscription>,
    partition: i32,
    offset: i64,
    epoch: u64,
    /// The record as fetched, to hand it out again (requeue, drop) or dead-letter it.
    record: RawRecord,
}

#[async_trait]
impl Acknowledger for KafkaAcknowledger {
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<()> {
        let Self {
            subscription,
            partition,
            offset,
            epoch,
            record,
        } = *self;
        match settlement {
            Settlement::Ack => {
                if !subscription.ack(partition, offset, epoch) {
                    tracing::debug!(topic = %subscription.topic, partition, offset,
                        "ack of a record of a revoked partition ignored; its new owner gets it again");
                }
                Ok(())
            }
            Settlement::Nack(Nack::Requeue) => {
                subscription.requeue(partition, offset, epoch, record);
                Ok(())
            }
            Settlement::Nack(Nack::DeadLetter { reason, attempts }) => {
                if !subscription.is_in_flight(partition, offset, epoch) {
                    // Revoked: the new owner handles (and dead-letters) it again.
                    return Ok(());
                }
                let topic = &subscription.topic;
                let dead = record
                    .message(topic, partition, offset)
                    .dead_letter(topic, &reason, attempts);
                let published = match subscription.dead_letters.producer() {
                    Ok(producer) => producer.publish(&dead_letter_topic(topic), &dead).await,
                    Err(error) => Err(error),
                };
                match published {
                    Ok(()) => {
                        subscription.ack(partition, offset, epoch);
                        Ok(())
                    }
                    Err(error) => {
                        subscription.requeue(partition, offset, epoch, record);
                        Err(error)
                    }
                }
            }
        }
    }

    fn abandon(self: Box<Self>) {
        self.subscription
            .requeue(self.partition, self.offset, self.epoch, self.record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(key: Option<&[u8]>, headers: &[(&str, &[u8])], payload: &[u8]) -> RawRecord {
        let mut chunks = Chunks::default();
        let meta = chunks.bytes(1024, |buf| {
            put_part(buf, key);
            for (name, value) in headers {
                put_part(buf, Some(name.as_bytes()));
                put_part(buf, Some(value));
            }
        });
        let payload = chunks.bytes(payload.len(), |buf| buf.extend_from_slice(payload));
        RawRecord { meta, payload }
    }

    #[test]
    fn raw_records_rebuild_the_message() {
        let record = raw(
            Some(b"k1"),
            &[
                ("traceparent", b"00-ab"),
                (MESSAGE_ID, b"id-7"),
                ("empty", b""),
            ],
            b"payload",
        );
        let message = record.message("t", 3, 42);
        assert_eq!(message.id(), "id-7");
        assert_eq!(message.key(), Some("k1"));
        assert_eq!(message.header("traceparent"), Some("00-ab"));
        assert_eq!(message.header("empty"), Some(""));
        assert_eq!(message.headers().len(), 2, "the id is not a header");
        assert_eq!(&message.payload()[..], b"payload");
        // Built again (requeue, dead letter): the same message.
        assert_eq!(record.message("t", 3, 42), message);
    }

    #[test]
    fn raw_records_without_id_key_or_payload() {
        let message = raw(None, &[], b"").message("t", 3, 42);
        assert_eq!(message.id(), "t/3/42");
        assert_eq!(message.key(), None);
        assert!(message.headers().is_empty() && message.payload().is_empty());
        let message = raw(Some(b""), &[], b"").message("t", 0, 0);
        assert_eq!(message.key(), Some(""), "an empty key is not a missing key");
    }

    #[test]
    fn small_parts_share_a_chunk_and_large_ones_do_not() {
        let mut chunks = Chunks::default();
        let a = chunks.bytes(3, |buf| buf.extend_from_slice(b"abc"));
        let b = chunks.bytes(2, |buf| buf.extend_from_slice(b"de"));
        assert_eq!((&a[..], &b[..]), (&b"abc"[..], &b"de"[..]));
        assert_eq!(a.as_ptr().wrapping_add(3), b.as_ptr(), "one chunk");
        let large = vec![1u8; SHARED_MAX + 1];
        let c = chunks.bytes(large.len(), |buf| buf.extend_from_slice(&large));
        assert_eq!(&c[..], &large[..]);
        let d = chunks.bytes(1, |buf| buf.extend_from_slice(b"f"));
        assert_eq!(b.as_ptr().wrapping_add(2), d.as_ptr(), "the chunk goes on");
        // Writing more than the room asked for grows the chunk; earlier parts keep their bytes.
        let big = vec![2u8; CHUNK + 10];
        chunks.room(4).extend_from_slice(&big);
        let e = chunks.split();
        assert_eq!((&e[..], &d[..], &a[..]), (&big[..], &b"f"[..], &b"abc"[..]));
    }
}
