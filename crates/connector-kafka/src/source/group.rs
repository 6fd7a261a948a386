//! The consumer group member's callbacks: librdkafka's log lines and errors, and rebalances
//! (commit what is settled before a partition goes; forget what was pulled for it).

use std::sync::Arc;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};

use crate::offsets::PartitionKey;

use super::receipt::{Shared, lock};

/// librdkafka's callbacks: rebalances and logs.
pub struct GroupContext {
    pub(super) shared: Arc<Shared>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        let pipeline = &self.shared.pipeline;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(pipeline = %pipeline, facility, "librdkafka: {line}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(pipeline = %pipeline, facility, "librdkafka: {line}")
            }
            _ => tracing::debug!(pipeline = %pipeline, facility, "librdkafka: {line}"),
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(pipeline = %self.shared.pipeline, error = %error, "kafka: {reason}");
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        // Commit what is settled while the partitions are still ours, then forget them: what is
        // in flight now is redelivered to their next owner, and its settlement will be ignored.
        self.shared.store_moved(consumer);
        if let Err(e) = off_the_workers(|| consumer.commit_consumer_state(CommitMode::Sync)) {
            tracing::debug!(pipeline = %self.shared.pipeline, error = %e, "kafka: commit on revocation");
        }
        let keys: Vec<PartitionKey> = revoked
            .elements()
            .iter()
            .map(|e| (Arc::from(e.topic()), e.partition()))
            .collect();
        let mut tracker = lock(&self.shared.tracker);
        for key in &keys {
            tracker.revoke(key);
        }
        drop(tracker);
        lock(&self.shared.redeliveries).retain(|(_, p)| !keys.contains(&p.key));
        // A pause outlives a revocation in librdkafka: resumed here, while the partitions are
        // still ours, so that one assigned back later is not left paused for good. The source
        // pauses them again if nacked records still fill its window, and is woken to look.
        if let Err(e) = consumer.resume(revoked) {
            tracing::debug!(pipeline = %self.shared.pipeline, error = %e, "kafka: resume on revocation");
        }
        self.shared.redelivery_queued.notify_one();
        tracing::info!(pipeline = %self.shared.pipeline, partitions = keys.len(), "kafka: partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            tracing::info!(pipeline = %self.shared.pipeline, partitions = assigned.count(), "kafka: partitions assigned");
        }
    }
}

/// Run `f`, which waits on the network, without holding up the tasks that share this thread:
/// a rebalance callback runs inside a poll of the consumer, on a runtime worker, and a commit
/// there would stall every task scheduled on it. On a multi-threaded runtime the worker hands
/// its tasks to another thread first (`block_in_place`); elsewhere (a blocking-pool thread at
/// `close`, a current-thread runtime) it runs as it is.
fn off_the_workers<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
