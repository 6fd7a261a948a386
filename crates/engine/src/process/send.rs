//! Writing one sink's share of a batch: a deadline on every send, retries of what may succeed
//! later (only the outputs not yet confirmed are sent again), and no retries of what the sink
//! refused for good.

use std::time::Duration;

use tracing::warn;

use crate::retry::backoff;
use crate::stats::PipelineStats;
use sluice_core::DEAD_LETTER_SINK;
use sluice_core::connector::{OutputStatus, Sink, SinkError};
use sluice_core::message::Output;

use super::Ctx;

/// What became of one output once its sink's retries are over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sent {
    Delivered,
    /// The sink refused it for good, with the sink's reason.
    Rejected(String),
    /// Still not confirmed when the retries ran out (or shutdown cut them short).
    Failed,
}

/// Send `outputs` to `sink`, retrying what is retryable with backoff. With a source that cannot
/// redeliver, keep retrying until the shutdown deadline rather than give up (giving up would
/// lose the message). One status per output, in order.
pub(super) async fn send_outputs(
    ctx: &Ctx,
    name: &str,
    sink: &dyn Sink,
    outputs: &[Output],
) -> Vec<Sent> {
    let mut sent = vec![Sent::Failed; outputs.len()];
    // A rejection is final unless the dead-letter sink refuses a copy of a delivery the source
    // cannot take back: then nothing else would keep it.
    let keep_rejected = name != DEAD_LETTER_SINK || ctx.source_redelivers;
    // Indexes (into `outputs`) still to be confirmed.
    let mut pending: Vec<usize> = (0..outputs.len()).collect();
    let mut attempt = 1u32;
    loop {
        let result = if pending.len() == outputs.len() {
            send_within(ctx, name, sink, outputs).await
        } else {
            let again: Vec<Output> = pending.iter().map(|&i| outputs[i].clone()).collect();
            send_within(ctx, name, sink, &again).await
        };
        let (error, retry_after) = match result {
            Ok(()) => {
                for i in pending.drain(..) {
                    sent[i] = Sent::Delivered;
                }
                (None, None)
            }
            Err(SinkError::Batch { error, retry_after }) => {
                (Some(format!("{error:#}")), retry_after)
            }
            Err(err @ SinkError::Outputs(_)) if err.reported() != pending.len() => (
                // A connector bug: trust none of it, send everything again.
                Some(format!(
                    "the sink reported {} statuses for {} outputs ({err})",
                    err.reported(),
                    pending.len()
                )),
                None,
            ),
            Err(err @ SinkError::Outputs(_)) => {
                let summary = err.to_string();
                let SinkError::Outputs(statuses) = err else {
                    unreachable!()
                };
                let mut still = Vec::new();
                let mut retry_after = None::<Duration>;
                let mut rejected = 0u64;
                for (&i, status) in pending.iter().zip(statuses) {
                    match status {
                        OutputStatus::Delivered => sent[i] = Sent::Delivered,
                        OutputStatus::Rejected { reason } if keep_rejected => {
                            rejected += 1;
                            sent[i] = Sent::Rejected(reason);
                        }
                        OutputStatus::Rejected { .. } => {
                            // The dead-letter sink refused a copy, and the source cannot take the
                            // delivery back: keep trying (until the shutdown deadline) rather
                            // than lose it.
                            rejected += 1;
                            still.push(i);
                        }
                        OutputStatus::Retryable {
                            retry_after: hint, ..
                        } => {
                            still.push(i);
                            retry_after = retry_after.max(hint);
                        }
                    }
                }
                PipelineStats::add(&ctx.stats.sink(name).rejected, rejected);
                if rejected > 0 && name != DEAD_LETTER_SINK {
                    warn!(pipeline = %ctx.name, sink = name, rejected, error = %summary, "the sink refused outputs for good; their deliveries go to the dead-letter sink");
                } else if rejected > 0 {
                    warn!(pipeline = %ctx.name, sink = name, rejected, error = %summary, "the dead-letter sink refused copies for good; their deliveries are handed back (or, from a source that cannot take them back, tried again)");
                }
                if still.is_empty() && rejected > 0 {
                    ctx.stats.record_error(format!("sink `{name}`: {summary}"));
                }
                pending = still;
                ((!pending.is_empty()).then_some(summary), retry_after)
            }
        };
        // Rejections say the sink is alive; only what is left to retry counts as a failure.
        ctx.breaker
            .record(name, error.is_none() || pending.is_empty());
        let Some(error) = error else {
            return sent;
        };
        if pending.is_empty() {
            return sent;
        }
        PipelineStats::add(&ctx.stats.sink_errors, 1);
        PipelineStats::add(&ctx.stats.sink(name).errors, 1);
        let give_up = ctx.source_redelivers && attempt >= ctx.retry.max_attempts;
        warn!(pipeline = %ctx.name, sink = name, attempt, give_up, error = %error, "sink write failed");
        ctx.stats.record_error(format!("sink `{name}`: {error}"));
        if give_up {
            return sent;
        }
        attempt += 1;
        // The broker's hint, within the pipeline's own cap on one delay.
        let hint = retry_after
            .unwrap_or_default()
            .min(Duration::from_millis(ctx.retry.max_delay_ms));
        let delay = backoff(&ctx.retry, attempt).max(hint);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = ctx.hard_stop.cancelled() => return sent,
        }
    }
}

/// One send, within the pipeline's `sink_timeout`. A send past it is dropped: what it had not
/// confirmed counts as not delivered, and is retried.
async fn send_within(
    ctx: &Ctx,
    name: &str,
    sink: &dyn Sink,
    batch: &[Output],
) -> Result<(), SinkError> {
    match tokio::time::timeout(ctx.sink_timeout, sink.send(batch)).await {
        Ok(result) => result,
        Err(_) => Err(SinkError::Batch {
            error: anyhow::anyhow!(
                "sink `{name}` did not confirm within {} ms (delivery.sink_timeout_ms)",
                ctx.sink_timeout.as_millis()
            ),
            retry_after: None,
        }),
    }
}
