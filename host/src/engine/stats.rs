//! Counters every pipeline keeps; tests count messages in and out with them, and the metrics
//! endpoint will expose them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::connector::LagGauge;

/// Live counters of one pipeline.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Deliveries pulled from the source.
    pub received: AtomicU64,
    /// Outputs confirmed by their sinks.
    pub outputs: AtomicU64,
    /// Deliveries acked after all their outputs were confirmed.
    pub acked: AtomicU64,
    /// Deliveries for which the handlers produced no output.
    pub filtered: AtomicU64,
    /// Handler retries after transient errors.
    pub retries: AtomicU64,
    /// Deliveries confirmed in the dead-letter sink.
    pub dead_lettered: AtomicU64,
    /// `invalid` deliveries discarded by policy.
    pub discarded: AtomicU64,
    /// Deliveries handed back to the source for redelivery (a sink kept failing).
    pub nacked: AtomicU64,
    /// Sink writes that failed (each is retried).
    pub sink_errors: AtomicU64,
    /// Pulls from the source that failed (lost connection and the like; each is retried).
    pub source_errors: AtomicU64,
    /// Deliveries settled in any way.
    pub settled: AtomicU64,
    /// Deliveries pulled and not yet settled.
    pub in_flight: AtomicU64,
    /// Messages waiting in the broker for this pipeline, when the source reports it (set at start).
    pub consumer_lag: OnceLock<LagGauge>,
}

impl PipelineStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The source's consumer lag, if it reports one and knows it yet.
    pub fn lag(&self) -> Option<u64> {
        let lag = self.consumer_lag.get()?.load(Ordering::Relaxed);
        u64::try_from(lag).ok()
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
