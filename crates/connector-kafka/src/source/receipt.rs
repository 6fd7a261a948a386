//! Settling Kafka records: a receipt per delivery moves its partition's commit point, and the
//! moved points are handed to librdkafka in coalesced stores.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::offsets::{OffsetTracker, PartitionKey};
use sluice_core::ack::{Acker, Settlement};
use sluice_core::connector::LagGauge;
use sluice_core::message::Message;

use super::{Consumer, GroupContext};

/// A delivery handed to the engine and not yet settled.
#[derive(Clone)]
pub(super) struct Pending {
    pub(super) key: PartitionKey,
    pub(super) offset: i64,
    pub(super) generation: u64,
    /// Kept for a nack: Kafka cannot redeliver one record, so the source hands this copy out again.
    pub(super) message: Message,
}

/// The acker of one delivery. One per delivery rather than a shared map from ids to deliveries:
/// settling then takes no lock but the offset tracker's, which is what made settling and pulling
/// contend.
pub(super) struct Receipt {
    pub(super) shared: Arc<Shared>,
    pub(super) pending: Pending,
}

/// State shared by the source, its receipts and the rebalance callbacks.
pub(super) struct Shared {
    pub(super) pipeline: Arc<str>,
    pub(super) tracker: Mutex<OffsetTracker>,
    /// Nacked deliveries waiting for their delay, with the time they are due.
    pub(super) redeliveries: Mutex<Vec<(Instant, Pending)>>,
    pub(super) redelivery_queued: Notify,
    pub(super) consumer: OnceLock<Weak<Consumer>>,
    pub(super) lag: LagGauge,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How often commit points that moved are handed to librdkafka (`store_offsets`), which commits
/// them every `commit_interval_ms`. Also done before a revocation's commit and at close.
pub(super) const STORE_INTERVAL: Duration = Duration::from_millis(5);

impl Shared {
    /// Hand every commit point that moved since the last call to librdkafka, in one call.
    pub(super) fn store_moved(&self, consumer: &impl rdkafka::consumer::Consumer<GroupContext>) {
        let points = lock(&self.tracker).take_unstored();
        if points.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(points.len());
        for (key, point) in &points {
            if let Err(e) = tpl.add_partition_offset(&key.0, key.1, Offset::Offset(*point)) {
                tracing::warn!(pipeline = %self.pipeline, error = %e, "kafka: bad offset");
            }
        }
        if let Err(e) = consumer.store_offsets(&tpl) {
            // A partition was revoked meanwhile: its new owner resumes from the last commit.
            tracing::debug!(pipeline = %self.pipeline, error = %e, "kafka: offsets not stored");
        }
    }
}

/// Every [`STORE_INTERVAL`], until the consumer is gone: store the commit points that moved.
pub(super) async fn store_offsets_periodically(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(STORE_INTERVAL).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Some(consumer) = shared.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        shared.store_moved(consumer.as_ref());
    }
}

impl Acker for Receipt {
    // The token settles once (`AckToken` is consumed), so the id is not needed to find anything.
    fn settle(&self, _id: u64, how: Settlement) {
        let (shared, p) = (&self.shared, &self.pending);
        let delay = match how {
            Settlement::Ack => {
                // The commit point moves here; librdkafka gets it within `STORE_INTERVAL`.
                lock(&shared.tracker).acked(&p.key, p.offset, p.generation);
                return;
            }
            Settlement::Nack { delay } => delay,
            // Left unsettled at shutdown: queue it again so that, should the host keep running,
            // the offset does not stay in flight forever.
            Settlement::Abandon => Duration::ZERO,
        };
        if lock(&shared.tracker).is_current(&p.key, p.generation) {
            let mut again = p.clone();
            if matches!(how, Settlement::Nack { .. }) {
                again.message.meta.attempt += 1;
            }
            lock(&shared.redeliveries).push((Instant::now() + delay, again));
            shared.redelivery_queued.notify_one();
        }
    }
}
