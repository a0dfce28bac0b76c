//! One owned partition: the records waiting to be handed out, those in flight, and the key
//! gating that keeps each key's records in order.
//!
//! A record is handed out only while no earlier record of its key is in flight; a record
//! given back (nack, drop) returns to its place by offset, so it goes out again before the
//! later records of its key. Nothing here touches the broker, except [`PartitionState::fetch`],
//! which drains the partition's queue in librdkafka.

use std::collections::VecDeque;

use mq_core::Error;

use crate::codec::{Chunks, CopiedRecord, RawRecord};
use crate::error::classify;
use crate::fast_hash::{FastMap, FastSet};
use crate::offsets::{OffsetTracker, Received};
use crate::partition_queue::PartitionQueue;

use super::errors::push_error;

/// The state of one ownership of a partition.
pub(super) struct PartitionState {
    /// Identifies this ownership of the partition: settlements of an older one are ignored.
    pub(super) epoch: u64,
    pub(super) tracker: OffsetTracker,
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
    pub(super) queue: Option<PartitionQueue>,
}

/// A fetched record waiting to be handed out.
struct Pending {
    offset: i64,
    record: RawRecord,
    key_hash: Option<u64>,
    /// Deliveries so far (0 for a record never handed out).
    attempts: u32,
}

/// What is known of a record in flight.
#[derive(Clone, Copy)]
struct InFlight {
    key_hash: Option<u64>,
    attempts: u32,
}

/// A record handed out: its offset, the record and its delivery attempt (1 for the first).
pub(super) type HandedOut = (i64, RawRecord, u32);

impl PartitionState {
    pub(super) fn new(epoch: u64, tracker: OffsetTracker) -> Self {
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

    /// Takes in a fetched record, unless the tracker already knows its offset (acked earlier,
    /// possibly by the partition's previous owner).
    pub(super) fn receive(&mut self, copied: CopiedRecord) {
        if self.tracker.receive(copied.offset) == Received::Deliver {
            self.insert_pending(Pending {
                offset: copied.offset,
                record: copied.record,
                key_hash: copied.key_hash,
                attempts: 0,
            });
        }
    }

    /// Takes the next record that can be handed out, draining the partition queue into
    /// `pending` while nothing there can (every pending key busy) and `pending` holds fewer than
    /// `limit` records.
    pub(super) fn next_or_fetch(
        &mut self,
        limit: usize,
        chunks: &mut Chunks,
        errors: &mut VecDeque<Error>,
    ) -> Option<HandedOut> {
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
        if room == 0 {
            return 0;
        }
        // Taken out for the drain, which hands each record to `self.receive`.
        let Some(queue) = self.queue.take() else {
            return 0;
        };
        let fetched = queue.drain(room, |record| match record.error() {
            Some(error) => push_error(errors, classify("consume", error)),
            None => self.receive(RawRecord::copy(&record, chunks)),
        });
        self.queue = Some(queue);
        fetched
    }

    /// Takes the oldest pending record whose key is not busy.
    pub(super) fn take_next(&mut self) -> Option<HandedOut> {
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

    /// Whether `offset` was handed out and not settled yet.
    pub(super) fn is_in_flight(&self, offset: i64) -> bool {
        self.in_flight.contains_key(&offset)
    }

    /// Settles `offset` as acked; `None` if it was not in flight. The flag tells whether a
    /// record waiting for the released key may be handed out now.
    pub(super) fn ack(&mut self, offset: i64) -> Option<bool> {
        let (_, unblocked) = self.release(offset)?;
        self.tracker.ack(offset);
        Some(unblocked)
    }

    /// Puts a record in flight back among the pending ones, to be handed out again before the
    /// later records of its key; ignored if `offset` was not in flight.
    pub(super) fn give_back(&mut self, offset: i64, record: RawRecord) {
        if let Some((released, _)) = self.release(offset) {
            self.insert_pending(Pending {
                offset,
                record,
                key_hash: released.key_hash,
                attempts: released.attempts,
            });
        }
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

    /// Adds `record` to `pending`, which stays ascending by offset (fetched records come in
    /// order, so this is nearly always a push at the back).
    fn insert_pending(&mut self, record: Pending) {
        let pending = &mut self.pending;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast_hash::key_hash;

    /// A partition that has received records at offsets 0.. with these keys.
    fn partition(keys: &[Option<&str>]) -> PartitionState {
        let mut ps = PartitionState::new(1, OffsetTracker::new(None, ""));
        for (offset, key) in keys.iter().enumerate() {
            ps.receive(copied(offset as i64, *key));
        }
        ps
    }

    fn copied(offset: i64, key: Option<&str>) -> CopiedRecord {
        let key = key.map(str::as_bytes);
        CopiedRecord {
            partition: 0,
            offset,
            key_hash: key.map(key_hash),
            record: RawRecord::encode(key, &[], format!("{offset}").as_bytes()),
        }
    }

    /// Offsets and attempts of everything that can be handed out now.
    fn drain(ps: &mut PartitionState) -> Vec<(i64, u32)> {
        std::iter::from_fn(|| ps.take_next())
            .map(|(offset, _, attempt)| (offset, attempt))
            .collect()
    }

    #[test]
    fn records_of_one_key_go_out_one_at_a_time_in_order() {
        let mut ps = partition(&[Some("a"), Some("b"), Some("a"), None, Some("b")]);
        assert_eq!(drain(&mut ps), [(0, 1), (1, 1), (3, 1)], "2 and 4 wait");
        assert_eq!(ps.ack(0), Some(true), "a record of key a was waiting");
        assert_eq!(drain(&mut ps), [(2, 1)]);
        assert_eq!(ps.ack(1), Some(true));
        assert_eq!(drain(&mut ps), [(4, 1)]);
        assert!(ps.take_next().is_none());
    }

    #[test]
    fn records_without_a_key_never_wait() {
        let mut ps = partition(&[None, None, None]);
        assert_eq!(drain(&mut ps), [(0, 1), (1, 1), (2, 1)]);
        assert_eq!(ps.ack(1), Some(false), "no key was released");
    }

    #[test]
    fn a_record_given_back_goes_out_again_before_its_keys_later_records() {
        let mut ps = partition(&[Some("a"), Some("a"), Some("b")]);
        assert_eq!(drain(&mut ps), [(0, 1), (2, 1)]);
        ps.give_back(0, RawRecord::encode(Some(b"a"), &[], b"0"));
        assert_eq!(
            drain(&mut ps),
            [(0, 2)],
            "offset 0 again, second attempt; 1 still waits"
        );
        assert_eq!(ps.ack(0), Some(true));
        assert_eq!(drain(&mut ps), [(1, 1)]);
    }

    #[test]
    fn given_back_records_keep_the_offset_order() {
        let mut ps = partition(&[None, None, None, None]);
        assert_eq!(drain(&mut ps).len(), 4);
        for offset in [2, 0, 3] {
            ps.give_back(offset, RawRecord::encode(None, &[], b""));
        }
        assert_eq!(drain(&mut ps), [(0, 2), (2, 2), (3, 2)]);
    }

    #[test]
    fn settling_what_is_not_in_flight_changes_nothing() {
        let mut ps = partition(&[Some("a"), Some("a")]);
        assert_eq!(drain(&mut ps), [(0, 1)]);
        assert_eq!(ps.ack(1), None, "offset 1 was never handed out");
        ps.give_back(1, RawRecord::encode(Some(b"a"), &[], b""));
        assert!(
            ps.take_next().is_none(),
            "key a is still busy with offset 0"
        );
        assert!(ps.is_in_flight(0) && !ps.is_in_flight(1));
        assert_eq!(ps.ack(0), Some(true));
        assert_eq!(ps.ack(0), None, "acked once only");
        assert_eq!(drain(&mut ps), [(1, 1)]);
    }

    #[test]
    fn records_the_tracker_knows_are_not_taken_in() {
        let mut ps = partition(&[None, None]);
        ps.receive(copied(1, None)); // fetched again, e.g. after a seek
        assert_eq!(drain(&mut ps), [(0, 1), (1, 1)]);
        ps.ack(0);
        ps.receive(copied(0, None));
        assert!(
            ps.take_next().is_none(),
            "an acked offset is not delivered again"
        );
    }
}
