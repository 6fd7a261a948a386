//! Which offsets may be committed. Kafka acknowledges by position, not per message, so a
//! partition's commit point is the lowest offset still in flight: an offset settled out of order
//! waits for every earlier one.
//!
//! Each assignment of a partition gets a new generation. After a revocation, settlements that
//! belong to the old generation are ignored: the partition's new owner (maybe us again) resumes
//! from the last commit and redelivers them, so storing their offsets now could skip messages.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A topic and partition.
pub type PartitionKey = (Arc<str>, i32);

#[derive(Debug)]
struct PartitionState {
    generation: u64,
    /// Received and not yet acknowledged.
    in_flight: BTreeSet<i64>,
    /// One past the highest offset received.
    next: i64,
    /// The last commit point handed out (offsets below it are done).
    stored: i64,
}

/// Contiguous-prefix tracking for every partition this consumer holds.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    parts: HashMap<PartitionKey, PartitionState>,
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
                in_flight: BTreeSet::new(),
                next: offset,
                stored: offset,
            }
        });
        state.in_flight.insert(offset);
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
        if !state.in_flight.remove(&offset) {
            return None;
        }
        let point = state.in_flight.first().copied().unwrap_or(state.next);
        (point > state.stored).then(|| {
            state.stored = point;
            point
        })
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
