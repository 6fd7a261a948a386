//! The pipeline engine: source → bounded in-flight window → rate limit → handler chain → router →
//! sinks, with retries, dead-lettering and graceful shutdown.
//!
//! Architecture invariant: the engine knows no broker and no wasmtime. It sees connectors through
//! [`Source`]/[`Sink`] and handlers through [`Transform`].
//!
//! Architecture invariant: a delivery is acked only after every output it produced is confirmed by
//! its sink, or after its dead-letter copy is confirmed; otherwise it is nacked (redelivered) or,
//! at a shutdown deadline, abandoned unacknowledged. Never more than `max_in_flight` deliveries
//! are pulled and unsettled: each holds one permit of the window until it is settled.

mod breaker;
mod dead_letter;
pub mod payload_log;
mod process;
pub mod retry;
mod settings;
mod stats;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{Quota, RateLimiter};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::payload_log::PayloadLog;
use sluice_core::connector::{Sink, Source};

pub use dead_letter::{dead_letter_output, headers as dead_letter_headers};
pub use settings::{
    DEFAULT_SINK_TIMEOUT_MS, DeliverySettings, InvalidPolicy, RateLimit, RetryPolicy,
};
pub use sluice_core::DEAD_LETTER_SINK;
pub use sluice_core::transform::{ErrorClass, Failure, Outcome, Transform};
pub use stats::{
    DeadLetterRecord, HandlerStats, Histogram, HistogramSnapshot, LATENCY_BUCKETS, PipelineState,
    PipelineStats, RecordedError, SinkStats,
};

use process::{Ctx, InFlight, WindowSlot};

/// How long a saturated pipeline waits for a batch's worth of window before pulling less.
const SATURATED_LINGER: Duration = Duration::from_millis(1);

/// Everything one pipeline runs with, already built.
pub struct Pipeline {
    pub name: Arc<str>,
    pub source: Box<dyn Source>,
    /// `true` when the source redelivers what is nacked or abandoned (brokers, `memory`); `false`
    /// for sources that cannot (`generate`, `stdin`, `file`), where the engine keeps retrying a
    /// failing sink instead of nacking.
    pub source_redelivers: bool,
    pub chain: Vec<Arc<dyn Transform>>,
    pub sinks: HashMap<String, Arc<dyn Sink>>,
    pub default_sink: String,
    pub dead_letter: Arc<dyn Sink>,
    pub delivery: DeliverySettings,
    pub shutdown_deadline: Duration,
    /// Concurrent handler calls. Default when built from a file: the handlers' `instances`.
    pub workers: usize,
    pub stats: Arc<PipelineStats>,
    /// Log payloads (scrubbed) when the pipeline asks for it. Default when built from a file:
    /// `logging.payloads`; `None` never logs a payload.
    pub payload_log: Option<Arc<PayloadLog>>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The source ended and everything was settled.
    SourceEnded,
    /// Shutdown was requested and in-flight work finished within the deadline.
    Drained,
    /// The shutdown deadline passed; unfinished deliveries were left unacknowledged.
    DeadlineExceeded,
}

impl Pipeline {
    /// Run until the source ends or `shutdown` is cancelled, then drain within the deadline.
    ///
    /// A panic in the pipeline's own task (a connector's bug, say) ends the run as an error that
    /// says so, so the host reports a failed pipeline instead of one that silently stopped.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<RunEnd> {
        use futures::FutureExt as _;
        let name = self.name.clone();
        std::panic::AssertUnwindSafe(self.run_to_end(shutdown))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(anyhow::anyhow!(
                    "pipeline {name}: panicked: {}",
                    panic_text(&*panic)
                ))
            })
    }

    async fn run_to_end(self, shutdown: CancellationToken) -> anyhow::Result<RunEnd> {
        let Pipeline {
            name,
            mut source,
            source_redelivers,
            chain,
            mut sinks,
            default_sink,
            dead_letter,
            delivery,
            shutdown_deadline,
            workers,
            stats,
            payload_log,
        } = self;
        anyhow::ensure!(
            sinks.contains_key(&default_sink),
            "pipeline {name}: default sink `{default_sink}` is not a sink"
        );
        let burst = delivery
            .rate_limit
            .as_ref()
            .map(|r| r.burst.unwrap_or(r.per_second).max(1));
        let max_batch = delivery
            .batch_size
            .max(1)
            .min(delivery.max_in_flight.max(1))
            .min(burst.map_or(usize::MAX, |b| b as usize));
        let limiter = delivery.rate_limit.as_ref().map(|r| {
            let per_second = NonZeroU32::new(r.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(burst.unwrap_or(1)).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst))
        });
        let window = Arc::new(Semaphore::new(
            delivery.max_in_flight.clamp(1, Semaphore::MAX_PERMITS),
        ));
        let tracker = TaskTracker::new();
        let ctx = Arc::new(Ctx {
            name: name.clone(),
            chain,
            sinks: sinks.clone(),
            default_sink,
            dead_letter: dead_letter.clone(),
            retry: delivery.retry.clone(),
            sink_timeout: delivery.sink_timeout,
            breaker: Arc::new(breaker::Breaker::new(
                name.clone(),
                delivery.breaker_failures,
                delivery.retry.clone(),
                delivery.sink_timeout,
                stats.clone(),
            )),
            on_invalid: delivery.on_invalid,
            source_redelivers,
            stats: stats.clone(),
            stopping: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            tracker: tracker.clone(),
            workers: Arc::new(Semaphore::new(workers.clamp(1, Semaphore::MAX_PERMITS))),
            payload_log,
        });

        if let Some(gauge) = source.lag_gauge() {
            let _ = stats.consumer_lag.set(gauge);
        }
        if let Some(flag) = source.connected_flag() {
            let _ = stats.source_connected.set(flag);
        }
        info!(pipeline = %name, "pipeline started");
        stats.set_state(PipelineState::Running);
        let mut pause = stats.pause_switch();
        let mut source_failures = 0u32;
        let mut source_ended = false;
        loop {
            if *pause.borrow_and_update() {
                // Paused by an operator: pull nothing; what is in flight finishes meanwhile.
                stats.set_state(PipelineState::Paused);
                info!(pipeline = %name, "pipeline paused");
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    r = pause.wait_for(|paused| !paused) => { r?; }
                }
                stats.set_state(PipelineState::Running);
                info!(pipeline = %name, "pipeline resumed");
            }
            // While sink writes keep failing, pull only the breaker's probes, one at a time.
            let probe = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                // A pause while waiting for the next probe is seen at once.
                r = pause.changed() => { r?; continue; }
                probe = ctx.breaker.admit() => probe,
            };
            let mut permit = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                p = window.clone().acquire_owned() => p?,
            };
            // When the window is nearly full (the pipeline is saturated), wait a moment for a
            // batch's worth of room rather than pull in slivers of one or two messages, which
            // would make every later batch tiny ("silly window syndrome"). When traffic is light
            // the window is open and nothing waits.
            let min_grab = max_batch.min(delivery.max_in_flight.max(2) / 2).max(1);
            if window.available_permits() + 1 < min_grab
                && let Ok(Ok(more)) = tokio::time::timeout(
                    SATURATED_LINGER,
                    window.clone().acquire_many_owned(min_grab as u32 - 1),
                )
                .await
            {
                permit.merge(more);
            }
            // Then batch from what the window allows right now; never wait to fill a batch.
            let extra = (max_batch - permit.num_permits()).min(window.available_permits());
            if extra > 0
                && let Ok(more) = window.clone().try_acquire_many_owned(extra as u32)
            {
                permit.merge(more);
            }
            let want = permit.num_permits();
            let pulled = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                // A pause lets a pull that is waiting finish: a pull is only cancelled at
                // shutdown, where every source redelivers or starts over.
                b = source.next_batch(want) => b,
            };
            let mut deliveries = match pulled {
                Ok(Some(d)) => {
                    source_failures = 0;
                    stats.set_source_failing(false);
                    d
                }
                Ok(None) => {
                    info!(pipeline = %name, "source ended");
                    source_ended = true;
                    break;
                }
                Err(err) => {
                    source_failures += 1;
                    PipelineStats::add(&stats.source_errors, 1);
                    stats.set_source_failing(true);
                    let delay = retry::backoff(&delivery.retry, source_failures.saturating_add(1));
                    let error = format!("{err:#}");
                    warn!(pipeline = %name, error = %error, retry_in_ms = delay.as_millis() as u64, "source failed");
                    stats.record_error(format!("source: {error}"));
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            if deliveries.len() > want {
                // A source bug; the surplus is abandoned (redelivered), never processed unbounded.
                warn!(pipeline = %name, asked = want, got = deliveries.len(), "source returned more than asked");
                deliveries.truncate(want);
            }
            if deliveries.is_empty() {
                continue;
            }
            if let Some(limiter) = &limiter {
                let n = NonZeroU32::new(deliveries.len() as u32).unwrap_or(NonZeroU32::MIN);
                let waiting_since = Instant::now();
                tokio::select! {
                    r = limiter.until_n_ready(n) => r?,
                    // Not yet handled: dropping abandons them, to be redelivered.
                    () = shutdown.cancelled() => break,
                }
                stats.add_rate_limit_wait(waiting_since.elapsed());
            }
            PipelineStats::add(&stats.received, deliveries.len() as u64);
            PipelineStats::add(&stats.in_flight, deliveries.len() as u64);
            // One clock read for the batch: its deliveries were pulled together.
            let pulled_at = Instant::now();
            let batch: Vec<InFlight> = deliveries
                .into_iter()
                .map(|d| {
                    let slot = WindowSlot::new(permit.split(1), stats.clone(), pulled_at);
                    InFlight::new(d, slot, &name)
                })
                .collect();
            if let Some(log) = &ctx.payload_log {
                for f in &batch {
                    f.log_pulled(&name, log);
                }
            }
            drop(permit);
            process::spawn(ctx.clone(), batch, probe);
        }

        ctx.breaker.stopped();
        stats.set_state(PipelineState::Stopping);
        let end = drain(&ctx, &tracker, &shutdown, source_ended, shutdown_deadline).await;
        // Each close (a flush, a final commit, a polite goodbye to the broker) gets the shutdown
        // deadline again: a broker that no longer answers must not keep the pipeline from
        // stopping. What a cut-short close leaves unacknowledged is redelivered.
        for (sink_name, sink) in sinks.drain() {
            if let Err(err) = close_within(shutdown_deadline, sink.close()).await {
                warn!(pipeline = %name, sink = %sink_name, error = %format!("{err:#}"), "sink close failed");
            }
        }
        if let Err(err) = close_within(shutdown_deadline, dead_letter.close()).await {
            warn!(pipeline = %name, error = %format!("{err:#}"), "dead-letter sink close failed");
        }
        // The source lives until here so that its acknowledgements reach the broker.
        if let Err(err) = close_within(shutdown_deadline, source.close()).await {
            warn!(pipeline = %name, error = %format!("{err:#}"), "source close failed");
        }
        drop(source);
        stats.set_state(PipelineState::Stopped);
        info!(
            pipeline = %name,
            end = ?end,
            received = PipelineStats::get(&stats.received),
            acked = PipelineStats::get(&stats.acked),
            outputs = PipelineStats::get(&stats.outputs),
            filtered = PipelineStats::get(&stats.filtered),
            dead_lettered = PipelineStats::get(&stats.dead_lettered),
            nacked = PipelineStats::get(&stats.nacked),
            "pipeline stopped"
        );
        Ok(end)
    }
}

/// `close` within `deadline`; running past it is an error like any other failed close.
async fn close_within(
    deadline: Duration,
    close: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    sluice_core::deadline::within(deadline, close, || {
        anyhow::anyhow!(
            "did not finish within the shutdown deadline ({} ms)",
            deadline.as_millis()
        )
    })
    .await
}

/// Let in-flight work finish. After the source ended, wait for everything (retries included)
/// unless shutdown is requested; after shutdown, give it the deadline, then abandon the rest.
async fn drain(
    ctx: &Ctx,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    source_ended: bool,
    deadline: Duration,
) -> RunEnd {
    tracker.close();
    if source_ended {
        tokio::select! {
            () = tracker.wait() => return RunEnd::SourceEnded,
            () = shutdown.cancelled() => {}
        }
    }
    // Retries waiting for their backoff hand their deliveries back now instead of waiting.
    ctx.stopping.cancel();
    if tokio::time::timeout(deadline, tracker.wait()).await.is_ok() {
        return RunEnd::Drained;
    }
    warn!(pipeline = %ctx.name, in_flight = PipelineStats::get(&ctx.stats.in_flight), "shutdown deadline passed; leaving the rest unacknowledged");
    ctx.hard_stop.cancel();
    tracker.wait().await;
    RunEnd::DeadlineExceeded
}

/// The text a panic was raised with.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
