//! Per-partition offset bookkeeping for at-least-once commits (pure, no I/O).
//!
//! Kafka commits one number per partition: "everything below this offset is done". Deliveries
//! are settled out of order, so [`OffsetTracker`] commits only the contiguous acked prefix (the
//! lowest un-acked offset), and carries the offsets acked *above* that point in the commit's
//! metadata string, so a later owner of the partition skips them instead of handing them out again.

use std::collections::{BTreeSet, VecDeque};

/// Prefix of the commit metadata written by this crate (versioned).
const METADATA_PREFIX: &str = "mq1:";

/// Kafka's default `offset.metadata.max.bytes` is 4096; stay well below it. Offsets that do not
/// fit are simply not carried: the next owner delivers them again (at least once, never lost).
pub(crate) const MAX_METADATA_LEN: usize = 3000;

/// What [`OffsetTracker::receive`] decided about a fetched record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// New work: hand it out.
    Deliver,
    /// Already received in this ownership (a re-fetch): ignore it.
    Duplicate,
    /// Acked by an earlier owner (listed in the commit metadata): do not hand it out.
    AlreadyAcked,
}

/// The settlement state of one partition while this consumer owns it.
#[derive(Debug, Clone, Default)]
pub struct OffsetTracker {
    /// The committed position this ownership started from: offsets below it are done.
    start: Option<i64>,
    /// The last commit handed to the broker (or found there), `None` when unknown or failed.
    last_commit: Option<(i64, String)>,
    /// One past the highest offset received.
    next: Option<i64>,
    /// Received and not acked yet (in flight or waiting to be handed out), ascending: offsets
    /// are received in order, so receiving appends and the common in-order ack pops the front.
    unacked: VecDeque<i64>,
    /// Acked, at or above the lowest un-acked offset (offsets below it are implied by the commit).
    acked: BTreeSet<i64>,
    /// Acked by a previous owner and not received again yet.
    skip: BTreeSet<i64>,
}

impl OffsetTracker {
    /// A tracker for a partition whose group position is `committed` (None: no commit yet) with
    /// the `metadata` string stored with that commit.
    pub fn new(committed: Option<i64>, metadata: &str) -> Self {
        let skip = match committed {
            Some(base) => decode_metadata(base, metadata),
            None => BTreeSet::new(),
        };
        Self {
            start: committed,
            last_commit: committed.map(|offset| (offset, metadata.to_owned())),
            skip,
            ..Self::default()
        }
    }

    /// Records a fetched offset.
    pub fn receive(&mut self, offset: i64) -> Received {
        let floor = self.next.or(self.start).unwrap_or(i64::MIN);
        if offset < floor {
            return Received::Duplicate;
        }
        self.next = Some(offset + 1);
        // Offsets skipped over (compaction, control records) can never arrive any more.
        while let Some(&first) = self.skip.first() {
            if first >= offset {
                break;
            }
            self.skip.remove(&first);
        }
        if self.skip.remove(&offset) {
            self.acked.insert(offset);
            self.prune();
            Received::AlreadyAcked
        } else {
            self.unacked.push_back(offset);
            Received::Deliver
        }
    }

    /// Marks a received offset as done. Returns `false` when it was not outstanding (unknown or
    /// acked before), which changes nothing.
    pub fn ack(&mut self, offset: i64) -> bool {
        if self.unacked.front() == Some(&offset) {
            // In-order ack (the common case): the prefix just grows.
            self.unacked.pop_front();
            if !self.acked.is_empty() {
                self.prune();
            }
            return true;
        }
        let Ok(index) = self.unacked.binary_search(&offset) else {
            return false;
        };
        // Shifts the shorter side: cheap for acks near the front, where they usually are.
        self.unacked.remove(index);
        self.acked.insert(offset);
        self.prune();
        true
    }

    /// How many received offsets are not acked yet.
    pub fn outstanding(&self) -> usize {
        self.unacked.len()
    }

    /// The offset that may be committed now: the lowest un-acked offset, or one past the highest
    /// received offset when everything received is acked. `None` before anything was received
    /// and nothing was committed.
    pub fn commit_position(&self) -> Option<i64> {
        match (self.unacked.front(), self.next) {
            (Some(&first), _) => Some(first),
            (None, Some(next)) => Some(next),
            (None, None) => self.start,
        }
    }

    /// The metadata to store with [`commit_position`](Self::commit_position): the offsets acked
    /// above it (this ownership's and the previous owner's not yet re-received).
    pub fn metadata(&self) -> String {
        let Some(base) = self.commit_position() else {
            return String::new();
        };
        let above = self
            .acked
            .iter()
            .chain(self.skip.iter())
            .copied()
            .filter(|&offset| offset > base)
            .collect::<BTreeSet<_>>();
        encode_metadata(base, &above)
    }

    /// The commit to send when it differs from the last one: `(offset, metadata)`.
    pub fn pending_commit(&self) -> Option<(i64, String)> {
        let position = self.commit_position()?;
        let metadata = self.metadata();
        match &self.last_commit {
            Some((offset, last)) if *offset == position && *last == metadata => None,
            _ => Some((position, metadata)),
        }
    }

    /// Records that `(offset, metadata)` was handed to the broker.
    pub fn mark_committed(&mut self, offset: i64, metadata: String) {
        self.last_commit = Some((offset, metadata));
    }

    /// Records that the last commit failed, so the next [`pending_commit`](Self::pending_commit)
    /// sends it again.
    pub fn commit_failed(&mut self) {
        self.last_commit = None;
    }

    /// The offset of the last commit handed to the broker (or found there at assignment).
    pub fn committed(&self) -> Option<i64> {
        self.last_commit.as_ref().map(|(offset, _)| *offset)
    }

    fn prune(&mut self) {
        let position = self.commit_position().unwrap_or(i64::MIN);
        while let Some(&first) = self.acked.first() {
            if first >= position {
                break;
            }
            self.acked.remove(&first);
        }
    }
}

/// Encodes `offsets` (all `> base`) as ranges relative to `base`: `mq1:1,3-5` means base+1 and
/// base+3..=base+5 are acked. Stops before `MAX_METADATA_LEN`.
pub fn encode_metadata(base: i64, offsets: &BTreeSet<i64>) -> String {
    if offsets.is_empty() {
        return String::new();
    }
    let mut out = String::from(METADATA_PREFIX);
    let mut iter = offsets.iter().copied().peekable();
    let mut first = true;
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().expect("peeked");
        }
        let item = if start == end {
            format!("{}", start - base)
        } else {
            format!("{}-{}", start - base, end - base)
        };
        if out.len() + item.len() + 1 > MAX_METADATA_LEN {
            break;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&item);
    }
    out
}

/// Decodes [`encode_metadata`]'s output; anything else (another client's metadata) is empty.
pub fn decode_metadata(base: i64, metadata: &str) -> BTreeSet<i64> {
    let mut offsets = BTreeSet::new();
    let Some(body) = metadata.strip_prefix(METADATA_PREFIX) else {
        return offsets;
    };
    for item in body.split(',').filter(|item| !item.is_empty()) {
        let (start, end) = match item.split_once('-') {
            Some((start, end)) => (start.parse::<i64>(), end.parse::<i64>()),
            None => (item.parse::<i64>(), item.parse::<i64>()),
        };
        let (Ok(start), Ok(end)) = (start, end) else {
            return BTreeSet::new();
        };
        if start < 1 || end < start || end - start > 1_000_000 {
            return BTreeSet::new();
        }
        offsets.extend((start..=end).map(|delta| base + delta));
    }
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(tracker: &mut OffsetTracker, offsets: impl IntoIterator<Item = i64>) {
        for offset in offsets {
            assert_eq!(
                tracker.receive(offset),
                Received::Deliver,
                "offset {offset}"
            );
        }
    }

    #[test]
    fn commits_only_the_contiguous_acked_prefix() {
        let mut tracker = OffsetTracker::new(Some(10), "");
        assert_eq!(tracker.pending_commit(), None, "nothing received yet");
        received(&mut tracker, 10..15);
        assert_eq!(tracker.commit_position(), Some(10));
        assert!(tracker.ack(10));
        assert!(tracker.ack(11));
        assert_eq!(tracker.commit_position(), Some(12));
        assert_eq!(tracker.pending_commit(), Some((12, String::new())));
        tracker.mark_committed(12, String::new());
        assert_eq!(tracker.pending_commit(), None);
        assert_eq!(tracker.committed(), Some(12));
        tracker.commit_failed();
        assert_eq!(
            tracker.pending_commit(),
            Some((12, String::new())),
            "a failed commit is sent again"
        );
        tracker.mark_committed(12, String::new());
        for offset in 12..15 {
            assert!(tracker.ack(offset));
        }
        assert_eq!(tracker.commit_position(), Some(15));
        assert_eq!(tracker.outstanding(), 0);
    }

    #[test]
    fn out_of_order_acks_never_commit_past_an_unacked_offset() {
        let mut tracker = OffsetTracker::new(None, "");
        received(&mut tracker, 0..6);
        for offset in [5, 3, 1, 2] {
            assert!(tracker.ack(offset));
            assert_eq!(
                tracker.commit_position(),
                Some(0),
                "offset 0 is not acked yet"
            );
        }
        assert_eq!(tracker.metadata(), "mq1:1-3,5");
        assert!(tracker.ack(0));
        assert_eq!(tracker.commit_position(), Some(4), "4 is the first gap");
        assert_eq!(tracker.metadata(), "mq1:1", "5 is acked above the gap");
        assert!(tracker.ack(4));
        assert_eq!(tracker.commit_position(), Some(6));
        assert_eq!(tracker.metadata(), "");
    }

    #[test]
    fn double_and_unknown_acks_change_nothing() {
        let mut tracker = OffsetTracker::new(Some(0), "");
        received(&mut tracker, [0, 1]);
        assert!(tracker.ack(1));
        assert!(!tracker.ack(1), "second ack of the same offset");
        assert!(!tracker.ack(7), "never received");
        assert_eq!(tracker.commit_position(), Some(0));
    }

    #[test]
    fn refetched_offsets_are_duplicates() {
        let mut tracker = OffsetTracker::new(Some(3), "");
        assert_eq!(tracker.receive(2), Received::Duplicate, "below the commit");
        received(&mut tracker, [3, 4]);
        assert_eq!(tracker.receive(4), Received::Duplicate);
        assert_eq!(tracker.receive(3), Received::Duplicate);
        received(&mut tracker, [7]); // a gap (compaction, control records) is fine
        assert!(tracker.ack(3) && tracker.ack(4));
        assert_eq!(tracker.commit_position(), Some(7));
    }

    #[test]
    fn a_new_owner_skips_what_the_previous_owner_acked_above_the_commit() {
        // Previous owner: received 0..6, acked 0, 2, 4 and 5, then lost the partition (revoke).
        let mut old = OffsetTracker::new(None, "");
        received(&mut old, 0..6);
        for offset in [0, 2, 4, 5] {
            old.ack(offset);
        }
        let (position, metadata) = old.pending_commit().expect("something to commit");
        assert_eq!(position, 1, "1 was in flight at the revoke");
        assert_eq!(metadata, "mq1:1,3-4");

        // New owner resumes from that commit: 1 and 3 come again, 2, 4 and 5 do not.
        let mut new = OffsetTracker::new(Some(position), &metadata);
        assert_eq!(new.receive(1), Received::Deliver);
        assert_eq!(new.receive(2), Received::AlreadyAcked);
        assert_eq!(new.receive(3), Received::Deliver);
        // Before 4 and 5 are re-received, a commit must still carry them.
        assert!(new.ack(3));
        assert_eq!(new.commit_position(), Some(1));
        assert_eq!(new.metadata(), "mq1:1-4", "2, 3, 4 and 5 are acked above 1");
        assert_eq!(new.receive(4), Received::AlreadyAcked);
        assert_eq!(new.receive(5), Received::AlreadyAcked);
        assert!(new.ack(1));
        assert_eq!(new.commit_position(), Some(6));
        assert_eq!(new.metadata(), "");
        assert_eq!(new.receive(6), Received::Deliver);
    }

    #[test]
    fn revoke_commits_the_prefix_and_forgets_in_flight_work() {
        let mut tracker = OffsetTracker::new(Some(100), "");
        received(&mut tracker, 100..110);
        for offset in 100..104 {
            tracker.ack(offset);
        }
        // 104..110 in flight at the revoke: the commit stops at 104 and carries nothing above.
        assert_eq!(tracker.pending_commit(), Some((104, String::new())));
        // The next owner starts at 104 and gets 104..110 again.
        let mut next = OffsetTracker::new(Some(104), "");
        assert_eq!(next.receive(103), Received::Duplicate);
        assert_eq!(next.receive(104), Received::Deliver);
    }

    #[test]
    fn metadata_round_trips_and_ignores_foreign_strings() {
        let offsets: BTreeSet<i64> = [11, 12, 13, 15, 20, 21].into();
        let encoded = encode_metadata(10, &offsets);
        assert_eq!(encoded, "mq1:1-3,5,10-11");
        assert_eq!(decode_metadata(10, &encoded), offsets);
        assert!(decode_metadata(10, "").is_empty());
        assert!(decode_metadata(10, "written by someone else").is_empty());
        assert!(
            decode_metadata(10, "mq1:0").is_empty(),
            "delta 0 is invalid"
        );
        assert!(decode_metadata(10, "mq1:x").is_empty());
    }

    #[test]
    fn metadata_is_bounded() {
        // Every other offset acked: the worst case for ranges.
        let offsets: BTreeSet<i64> = (1..100_000).step_by(2).collect();
        let encoded = encode_metadata(0, &offsets);
        assert!(encoded.len() <= MAX_METADATA_LEN);
        let decoded = decode_metadata(0, &encoded);
        assert!(!decoded.is_empty());
        assert!(
            decoded.is_subset(&offsets),
            "a truncated list only drops offsets"
        );
    }
}
