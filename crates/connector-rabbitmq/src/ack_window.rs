//! Which acknowledgements to send, and how few frames can carry them.
//!
//! RabbitMQ numbers the deliveries of a channel 1, 2, 3, ... and `basic.ack` with `multiple`
//! acknowledges every outstanding delivery up to a tag in one frame. The engine settles
//! deliveries in any order (two workers, retries), so an ack for a tag is *held* until every tag
//! below it is settled, and then one frame acknowledges the whole contiguous run. That saves the
//! broker a frame per message, and the broker scans its unacknowledged list once per frame.
//!
//! A delivery that stays unsettled for long (a retry with backoff, a blocked sink) must not hold
//! the acknowledgements above it for that long: the broker counts held acks against the prefetch
//! and would stop delivering. An ack held for longer than the hold time is therefore sent on its
//! own, and its tag is remembered as *sent* so that the run can later pass over it.
//!
//! Architecture invariant: a tag is acknowledged by exactly one frame. A multiple-ack is sent
//! only with the tag of a held (never sent) delivery, and it covers only settled tags: every tag
//! below the floor is settled, and tags sent on their own are no longer outstanding at the broker,
//! so the multiple-ack skips them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One acknowledgement frame to send.
#[derive(Debug, PartialEq, Eq)]
pub enum AckFrame<R> {
    /// `basic.ack` with `multiple`: this delivery and every outstanding one below it.
    UpTo(R),
    /// `basic.ack` for this delivery alone.
    One(R),
}

/// The settled deliveries of one channel that are not yet behind the floor.
pub struct AckWindow<R> {
    /// Every tag below this one is settled and covered by a frame already sent.
    floor: u64,
    /// Acks not sent yet, by tag, with when they were settled.
    held: BTreeMap<u64, (R, Instant)>,
    /// Tags at or above the floor whose frame was sent on its own (nacks, and acks held too
    /// long), as `start → end` (exclusive) runs, so that a delivery stuck for minutes costs one
    /// entry per gap rather than one per message behind it.
    sent: BTreeMap<u64, u64>,
}

impl<R> Default for AckWindow<R> {
    fn default() -> Self {
        AckWindow {
            floor: 1,
            held: BTreeMap::new(),
            sent: BTreeMap::new(),
        }
    }
}

impl<R> AckWindow<R> {
    /// `tag` was settled with an ack; hold it until [`AckWindow::take`] sends it.
    pub fn ack(&mut self, tag: u64, receipt: R, now: Instant) {
        if tag >= self.floor {
            self.held.insert(tag, (receipt, now));
        }
    }

    /// A frame for `tag` alone (a nack) has been sent.
    pub fn sent_alone(&mut self, tag: u64) {
        if tag < self.floor {
            return;
        }
        self.held.remove(&tag);
        let mut start = tag;
        let mut end = tag + 1;
        if let Some((&s, &e)) = self.sent.range(..=tag).next_back()
            && e >= tag
        {
            start = s;
            end = end.max(e);
        }
        if let Some(e) = self.sent.remove(&end) {
            end = e;
        }
        self.sent.insert(start, end);
    }

    /// The frames to send now: one multiple-ack for the run that became contiguous, then a
    /// single ack for each delivery held for `hold` or longer (`Duration::ZERO` sends every
    /// held ack, as on shutdown).
    pub fn take(&mut self, now: Instant, hold: Duration) -> Vec<AckFrame<R>> {
        let mut frames = Vec::new();
        let mut last_held = None;
        loop {
            if let Some((receipt, _)) = self.held.remove(&self.floor) {
                last_held = Some(receipt);
                self.floor += 1;
            } else if let Some(end) = self.sent.remove(&self.floor) {
                self.floor = end;
            } else {
                break;
            }
        }
        if let Some(receipt) = last_held {
            frames.push(AckFrame::UpTo(receipt));
        }
        let overdue: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, (_, since))| now.saturating_duration_since(*since) >= hold)
            .map(|(tag, _)| *tag)
            .collect();
        for tag in overdue {
            if let Some((receipt, _)) = self.held.remove(&tag) {
                frames.push(AckFrame::One(receipt));
                self.sent_alone(tag);
            }
        }
        frames
    }

    /// True while some ack is held, so the caller knows to come back within the hold time.
    pub fn holds_any(&self) -> bool {
        !self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_millis(20);

    fn window(now: Instant, tags: &[u64]) -> AckWindow<u64> {
        let mut w = AckWindow::default();
        for &t in tags {
            w.ack(t, t, now);
        }
        w
    }

    #[test]
    fn a_contiguous_run_is_one_frame() {
        let now = Instant::now();
        let mut w = window(now, &[3, 1, 2, 4]);
        assert_eq!(w.take(now, HOLD), vec![AckFrame::UpTo(4)]);
        assert!(!w.holds_any());
        w.ack(5, 5, now);
        assert_eq!(w.take(now, HOLD), vec![AckFrame::UpTo(5)]);
    }

    #[test]
    fn a_gap_holds_the_acks_above_it_until_the_hold_time() {
        let now = Instant::now();
        let mut w = window(now, &[1, 2, 4, 5]);
        assert_eq!(w.take(now, HOLD), vec![AckFrame::UpTo(2)]);
        assert!(w.holds_any());
        // Tag 3 settles in time: one frame for 3..=5.
        w.ack(3, 3, now);
        assert_eq!(w.take(now + HOLD / 2, HOLD), vec![AckFrame::UpTo(5)]);
    }

    #[test]
    fn a_long_gap_sends_the_held_acks_alone_and_the_run_passes_over_them() {
        let now = Instant::now();
        let mut w = window(now, &[2, 3]);
        assert_eq!(w.take(now, HOLD), vec![]);
        assert_eq!(
            w.take(now + HOLD, HOLD),
            vec![AckFrame::One(2), AckFrame::One(3)]
        );
        // When tag 1 settles, the multiple-ack names tag 1 only: 2 and 3 are acknowledged.
        w.ack(4, 4, now + HOLD);
        w.ack(1, 1, now + HOLD);
        assert_eq!(w.take(now + HOLD, HOLD), vec![AckFrame::UpTo(4)]);
        assert!(w.sent.is_empty());
    }

    #[test]
    fn a_nacked_tag_counts_as_settled() {
        let now = Instant::now();
        let mut w = window(now, &[1, 3]);
        w.sent_alone(2);
        assert_eq!(w.take(now, HOLD), vec![AckFrame::UpTo(3)]);
        // A run that ends in nacks names the last held ack.
        w.ack(4, 4, now);
        w.sent_alone(5);
        w.sent_alone(6);
        assert_eq!(w.take(now, HOLD), vec![AckFrame::UpTo(4)]);
        assert_eq!(w.floor, 7);
    }

    #[test]
    fn sent_tags_behind_a_stuck_delivery_collapse_into_one_run() {
        let now = Instant::now();
        let mut w: AckWindow<u64> = AckWindow::default();
        for tag in (2..10_000).rev() {
            w.sent_alone(tag);
        }
        assert_eq!(w.sent.len(), 1);
        w.ack(1, 1, now);
        assert_eq!(w.take(now, HOLD), vec![AckFrame::UpTo(1)]);
        assert_eq!(w.floor, 10_000);
    }

    #[test]
    fn a_zero_hold_sends_everything() {
        let now = Instant::now();
        let mut w = window(now, &[1, 3, 4]);
        assert_eq!(
            w.take(now, Duration::ZERO),
            vec![AckFrame::UpTo(1), AckFrame::One(3), AckFrame::One(4)]
        );
        assert!(!w.holds_any());
    }
}
