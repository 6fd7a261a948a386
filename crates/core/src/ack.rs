//! Acknowledgement as types: every delivery carries one [`AckToken`], and settling consumes it.
//!
//! Architecture invariant: a delivery is settled at most once because settling takes the token by
//! value, and at least once because dropping an unsettled token settles it as
//! [`Settlement::Abandon`] (left unacknowledged: the broker redelivers it later). Nothing in the
//! engine can ack a message without holding its token.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Every output is confirmed by its sink, or the dead-letter copy is: remove it from the source.
    Ack,
    /// Not handled now: make it available again after `delay` (a sink or the dead-letter sink
    /// failed). The source counts it as another delivery attempt.
    Nack { delay: Duration },
    /// Dropped unsettled (shutdown deadline, task aborted): leave it unacknowledged so the broker
    /// redelivers it by its own rules (visibility timeout, session end, uncommitted offset).
    Abandon,
}

/// The source side of settlement. Implementations must be cheap and non-blocking: they are called
/// on the hot path; anything slow (a broker round trip) is queued to the source's own task.
pub trait Acker: Send + Sync + 'static {
    fn settle(&self, id: u64, how: Settlement);
}

/// The right to settle one delivery, exactly once.
#[must_use = "dropping an AckToken abandons the delivery (it will be redelivered)"]
pub struct AckToken {
    acker: Option<Arc<dyn Acker>>,
    id: u64,
}

impl AckToken {
    /// A token that settles delivery `id` through `acker`.
    pub fn new(acker: Arc<dyn Acker>, id: u64) -> Self {
        AckToken {
            acker: Some(acker),
            id,
        }
    }

    /// A token for a source with nothing to acknowledge (generate, stdin).
    pub fn none() -> Self {
        AckToken { acker: None, id: 0 }
    }

    /// Settle: all outputs (or the dead-letter copy) are confirmed.
    pub fn ack(self) {
        self.settle(Settlement::Ack);
    }

    /// Settle: redeliver after `delay`.
    pub fn nack(self, delay: Duration) {
        self.settle(Settlement::Nack { delay });
    }

    fn settle(mut self, how: Settlement) {
        if let Some(acker) = self.acker.take() {
            acker.settle(self.id, how);
        }
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take() {
            acker.settle(self.id, Settlement::Abandon);
        }
    }
}

impl fmt::Debug for AckToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckToken")
            .field("id", &self.id)
            .field("settled", &self.acker.is_none())
            .finish()
    }
}
