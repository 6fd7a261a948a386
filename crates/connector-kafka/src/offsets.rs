//! Which offsets may be committed. Kafka acknowledges by position, not per message, so a
//! partition's commit point is the lowest offset still in flight: an offset settled out of order
//! waits for every earlier one.
//!
//! Each assignment of a partition gets a new generation. After a revocation, settlements that
//! belong to the old generation are ignored: the partition's new owner (maybe us again) resumes
//! from the last commit and redelivers them, so storing their offsets now could skip messages.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

/// A topic and partition.
pub type PartitionKey = (Arc<str>, i32);

#[derive(Debug)]
struct PartitionState {
    generation: u64,
    /// Received offsets not yet below the commit point, in increasing order, each with whether
    /// it is acknowledged. A partition's records arrive in offset order, so receiving appends and
    /// the commit point moves by popping acknowledged offsets off the front: no allocation per
    /// record, unlike a tree.
    in_flight: VecDeque<(i64, bool)>,
    /// One past the highest offset received.
    next: i64,
    /// The commit point: every offset below it is acknowledged.
    stored: i64,
    /// The commit point as last given to librdkafka, through [`OffsetTracker::take_unstored`].
    published: i64,
}

/// Contiguous-prefix tracking for every partition this consumer holds.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// Looked up twice per record (received, acked): a fast hash, not SipHash; the keys are
    /// the broker's topic names, not attacker-chosen input to a long-lived table.
    parts: FxHashMap<PartitionKey, PartitionState>,
    generations: u64,
}

impl OffsetTracker {
    /// Record a received offset; returns the generation its settlement must quote.
    pub fn received(&mut self, key: &PartitionKey, offset: i64) -> u64 {
        let generations = &mut self.generations;
        let state = self.parts.entry(key.clone()).or_insert_with(|| {
            *generations += 1;
            PartitionState {
                generation: *generations,
                in_flight: VecDeque::new(),
                next: offset,
                stored: offset,
                published: offset,
            }
        });
        match state.in_flight.back() {
            Some(&(last, _)) if last >= offset => {
                // Out of order (not seen from librdkafka within one assignment): keep it sorted.
                if let Err(at) = state.in_flight.binary_search_by_key(&offset, |e| e.0) {
                    state.in_flight.insert(at, (offset, false));
                }
            }
            _ => state.in_flight.push_back((offset, false)),
        }
        state.next = state.next.max(offset + 1);
        state.generation
    }

    /// Whether `generation` is still the live assignment of `key`.
    pub fn is_current(&self, key: &PartitionKey, generation: u64) -> bool {
        self.parts
            .get(key)
            .is_some_and(|s| s.generation == generation)
    }

    /// An offset was acknowledged. Returns the new commit point (the next offset to consume) when
    /// it moved forward.
    pub fn acked(&mut self, key: &PartitionKey, offset: i64, generation: u64) -> Option<i64> {
        let state = self
            .parts
            .get_mut(key)
            .filter(|s| s.generation == generation)?;
        // Settlements mostly come in offset order: the oldest in flight is the usual one.
        let at = if state.in_flight.front().is_some_and(|e| e.0 == offset) {
            0
        } else {
            state
                .in_flight
                .binary_search_by_key(&offset, |e| e.0)
                .ok()?
        };
        if state.in_flight[at].1 {
            return None;
        }
        state.in_flight[at].1 = true;
        while state.in_flight.front().is_some_and(|e| e.1) {
            state.in_flight.pop_front();
        }
        let point = state.in_flight.front().map_or(state.next, |e| e.0);
        (point > state.stored).then(|| {
            state.stored = point;
            point
        })
    }

    /// Commit points that moved since the last call, to hand to librdkafka together: one
    /// `store_offsets` per partition per call instead of one per acknowledged record.
    pub fn take_unstored(&mut self) -> Vec<(PartitionKey, i64)> {
        self.parts
            .iter_mut()
            .filter(|(_, s)| s.stored > s.published)
            .map(|(key, s)| {
                s.published = s.stored;
                (key.clone(), s.stored)
            })
            .collect()
    }

    /// The partition was revoked: forget it, so that late settlements are ignored.
    pub fn revoke(&mut self, key: &PartitionKey) {
        self.parts.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        (Arc::from("t"), p)
    }

    #[test]
    fn commits_only_the_contiguous_prefix() {
        let mut t = OffsetTracker::default();
        let g = (10..15).map(|o| t.received(&key(0), o)).last().unwrap();
        assert_eq!(t.acked(&key(0), 12, g), None, "10 and 11 still in flight");
        assert_eq!(t.acked(&key(0), 11, g), None);
        assert_eq!(t.acked(&key(0), 10, g), Some(13), "10..=12 done");
        assert_eq!(t.acked(&key(0), 14, g), None, "13 still in flight");
        assert_eq!(t.acked(&key(0), 13, g), Some(15));
    }

    #[test]
    fn a_settlement_counts_once() {
        let mut t = OffsetTracker::default();
        let g = t.received(&key(0), 0);
        assert_eq!(t.acked(&key(0), 0, g), Some(1));
        assert_eq!(t.acked(&key(0), 0, g), None);
    }

    #[test]
    fn offsets_with_gaps_and_out_of_order_arrivals_keep_the_prefix_rule() {
        let mut t = OffsetTracker::default();
        // Gaps (compaction, transaction markers) and one late arrival.
        for o in [10, 11, 15, 20, 13] {
            t.received(&key(0), o);
        }
        let g = t.received(&key(0), 21);
        assert_eq!(
            t.acked(&key(0), 15, g),
            None,
            "10, 11 and 13 still in flight"
        );
        assert_eq!(t.acked(&key(0), 10, g), Some(11));
        assert_eq!(t.acked(&key(0), 11, g), Some(13));
        assert_eq!(t.acked(&key(0), 13, g), Some(20), "15 was already acked");
        assert_eq!(t.acked(&key(0), 99, g), None, "never received");
        assert_eq!(t.acked(&key(0), 21, g), None, "20 still in flight");
        assert_eq!(t.acked(&key(0), 20, g), Some(22));
    }

    #[test]
    fn moved_commit_points_are_taken_once_each() {
        let mut t = OffsetTracker::default();
        let g = (0..4).map(|o| t.received(&key(0), o)).last().unwrap();
        let h = t.received(&key(1), 9);
        assert!(t.take_unstored().is_empty(), "nothing acknowledged yet");
        t.acked(&key(0), 0, g);
        t.acked(&key(0), 1, g);
        t.acked(&key(0), 3, g);
        t.acked(&key(1), 9, h);
        let mut taken = t.take_unstored();
        taken.sort();
        assert_eq!(
            taken,
            vec![(key(0), 2), (key(1), 10)],
            "the latest point, once"
        );
        assert!(t.take_unstored().is_empty());
        t.acked(&key(0), 2, g);
        assert_eq!(t.take_unstored(), vec![(key(0), 4)]);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::default();
        let g0 = t.received(&key(0), 5);
        let g1 = t.received(&key(1), 7);
        assert_ne!(g0, g1);
        assert_eq!(t.acked(&key(1), 7, g1), Some(8));
        assert_eq!(t.acked(&key(0), 5, g0), Some(6));
    }

    #[test]
    fn settlements_from_before_a_revocation_are_ignored() {
        let mut t = OffsetTracker::default();
        let old = t.received(&key(0), 3);
        t.revoke(&key(0));
        assert!(!t.is_current(&key(0), old));
        assert_eq!(t.acked(&key(0), 3, old), None);
        // Assigned again: the new owner starts from the committed offset.
        let new = t.received(&key(0), 3);
        assert_ne!(old, new);
        assert_eq!(t.acked(&key(0), 3, old), None, "still the old generation");
        assert_eq!(t.acked(&key(0), 3, new), Some(4));
    }
}
