//! A delivery between pull and settlement, the window permit it holds, and the state every
//! task of a pipeline shares.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::Context;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::payload_log::PayloadLog;
use crate::settings::{InvalidPolicy, RetryPolicy};
use crate::stats::PipelineStats;
use sluice_core::ack::AckToken;
use sluice_core::connector::{Delivery, Sink};
use sluice_core::message::Message;
use sluice_core::transform::Transform;
use sluice_trace::DeliveryTrace;

/// State shared by every task of one pipeline.
pub(crate) struct Ctx {
    pub name: Arc<str>,
    pub chain: Vec<Arc<dyn Transform>>,
    pub sinks: HashMap<String, Arc<dyn Sink>>,
    pub default_sink: String,
    pub dead_letter: Arc<dyn Sink>,
    pub retry: RetryPolicy,
    /// Longest wait for one `Sink::send` before it counts as failed.
    pub sink_timeout: std::time::Duration,
    /// Stops the reader pulling while sink writes keep failing.
    pub breaker: Arc<crate::breaker::Breaker>,
    pub on_invalid: InvalidPolicy,
    pub source_redelivers: bool,
    pub stats: Arc<PipelineStats>,
    /// Shutdown requested: retries waiting for backoff give their deliveries back.
    pub stopping: CancellationToken,
    /// Shutdown deadline passed: every task stops where it is, abandoning its deliveries.
    pub hard_stop: CancellationToken,
    pub tracker: TaskTracker,
    /// Bounds concurrent handler calls.
    pub workers: Arc<Semaphore>,
    pub payload_log: Option<Arc<PayloadLog>>,
}

/// One permit of the in-flight window, held until the delivery is settled.
pub(crate) struct WindowSlot {
    _permit: Option<OwnedSemaphorePermit>,
    stats: Arc<PipelineStats>,
    pulled_at: Instant,
}

impl WindowSlot {
    pub fn new(
        permit: Option<OwnedSemaphorePermit>,
        stats: Arc<PipelineStats>,
        pulled_at: Instant,
    ) -> Self {
        WindowSlot {
            _permit: permit,
            stats,
            pulled_at,
        }
    }
}

impl Drop for WindowSlot {
    fn drop(&mut self) {
        self.stats
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        PipelineStats::add(&self.stats.settled, 1);
        self.stats
            .end_to_end
            .observe(self.pulled_at.elapsed().as_secs_f64());
    }
}

/// A delivery between pull and settlement.
pub(crate) struct InFlight {
    pub(super) msg: Message,
    pub(super) token: AckToken,
    pub(super) decode_error: Option<String>,
    /// Its consumer span, from pull to settlement (when tracing is on).
    pub(super) trace: Option<DeliveryTrace>,
    pub(super) _slot: WindowSlot,
}

/// A delivery whose message is out in the handler chain.
pub(super) struct Waiting {
    pub(super) token: AckToken,
    pub(super) decode_error: Option<String>,
    pub(super) trace: Option<DeliveryTrace>,
    pub(super) slot: WindowSlot,
}

impl Waiting {
    pub(super) fn join(self, msg: Message) -> InFlight {
        InFlight {
            msg,
            token: self.token,
            decode_error: self.decode_error,
            trace: self.trace,
            _slot: self.slot,
        }
    }
}

impl InFlight {
    pub(super) fn split(self) -> (Message, Waiting) {
        (
            self.msg,
            Waiting {
                token: self.token,
                decode_error: self.decode_error,
                trace: self.trace,
                slot: self._slot,
            },
        )
    }

    pub fn new(d: Delivery, slot: WindowSlot, pipeline: &str) -> Self {
        let trace = DeliveryTrace::start(pipeline, &d.message);
        InFlight {
            msg: d.message,
            token: d.token,
            decode_error: d.decode_error,
            trace,
            _slot: slot,
        }
    }

    pub(super) fn trace_context(&self) -> Option<Context> {
        self.trace.as_ref().map(|t| t.context().clone())
    }

    pub(super) fn trace_id(&self) -> String {
        self.trace
            .as_ref()
            .map(DeliveryTrace::trace_id)
            .unwrap_or_default()
    }

    /// The payload, as the pipeline's logging settings allow it, at `debug`.
    pub fn log_pulled(&self, pipeline: &str, log: &PayloadLog) {
        debug!(
            pipeline,
            message_id = %self.msg.id,
            trace_id = %self.trace_id(),
            attempt = self.msg.meta.attempt,
            payload = %log.render(&self.msg.payload),
            "pulled"
        );
    }
}
