//! Writing a batch's outputs and dead-letter copies, then settling each delivery by what its
//! sinks confirmed; retries of transient failures.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};

use tracing::{debug, warn};

use crate::dead_letter::dead_letter_output;
use crate::retry::backoff;
use crate::stats::PipelineStats;
use sluice_core::DEAD_LETTER_SINK;
use sluice_core::connector::Sink;
use sluice_core::message::Output;
use sluice_trace::{self as trace};

use super::{Ctx, InFlight, Verdict, spawn};

/// Write outputs and dead-letter copies, then settle each delivery by what was confirmed.
pub(super) async fn settle(ctx: Arc<Ctx>, deliveries: Vec<InFlight>, mut verdicts: Vec<Verdict>) {
    // Group every output by sink, remembering which delivery it belongs to.
    let mut by_sink: HashMap<&str, (Vec<usize>, Vec<Output>)> = HashMap::new();
    let mut dead: (Vec<usize>, Vec<Output>) = (Vec::new(), Vec::new());
    // Publish spans, one per output, when tracing is on; each output carries its own.
    let mut sink_spans: HashMap<&str, Vec<Context>> = HashMap::new();
    let mut dead_spans: Vec<Context> = Vec::new();
    for (i, (f, verdict)) in deliveries.iter().zip(verdicts.iter_mut()).enumerate() {
        match verdict {
            Verdict::Deliver(outputs) => {
                // Moved, not copied: only the verdict's kind is needed after this.
                for out in std::mem::take(outputs) {
                    // Routes were checked against the sinks above, so the lookup finds one.
                    let sink = match &out.route {
                        Some(route) => ctx
                            .sinks
                            .get_key_value(route.as_str())
                            .map_or(ctx.default_sink.as_str(), |(k, _)| k.as_str()),
                        None => ctx.default_sink.as_str(),
                    };
                    let mut out = out;
                    if let Some(parent) = f.trace.as_ref() {
                        let span = publish_span(parent.context(), sink);
                        trace::inject(&span, &mut out.headers);
                        sink_spans.entry(sink).or_default().push(span);
                    }
                    let entry = by_sink.entry(sink).or_default();
                    entry.0.push(i);
                    entry.1.push(out);
                }
            }
            Verdict::DeadLetter(failure, handler) => {
                let payload = ctx
                    .payload_log
                    .as_ref()
                    .map(|log| log.render(&f.msg.payload));
                debug!(
                    pipeline = %ctx.name,
                    message_id = %f.msg.id,
                    trace_id = %f.trace_id(),
                    class = %failure.class,
                    reason = %failure.reason,
                    payload = payload.as_deref(),
                    "dead-lettering"
                );
                dead.0.push(i);
                let mut copy = dead_letter_output(&f.msg, failure, &ctx.name, handler.as_deref());
                if let Some(parent) = f.trace.as_ref() {
                    let span = publish_span(parent.context(), DEAD_LETTER_SINK);
                    trace::inject(&span, &mut copy.headers);
                    dead_spans.push(span);
                }
                dead.1.push(copy);
            }
            _ => {}
        }
    }

    let mut failed = vec![false; deliveries.len()];
    let sends = by_sink.into_iter().map(|(name, (owners, outputs))| {
        let sink = ctx.sinks[name].clone();
        let ctx = &ctx;
        let spans = sink_spans.remove(name).unwrap_or_default();
        async move {
            let ok = send_with_retry(ctx, name, &*sink, &outputs).await;
            if ok {
                PipelineStats::add(&ctx.stats.sink(name).outputs, outputs.len() as u64);
            }
            for span in &spans {
                trace::end(span, (!ok).then_some("the sink did not confirm the write"));
            }
            (owners, outputs.len(), ok)
        }
    });
    let dead_send = async {
        if dead.1.is_empty() {
            true
        } else {
            send_with_retry(&ctx, DEAD_LETTER_SINK, &*ctx.dead_letter, &dead.1).await
        }
    };
    let (results, dead_ok) = tokio::join!(futures::future::join_all(sends), dead_send);
    for span in &dead_spans {
        trace::end(
            span,
            (!dead_ok).then_some("the dead-letter sink did not confirm the write"),
        );
    }
    for (owners, count, ok) in results {
        if ok {
            PipelineStats::add(&ctx.stats.outputs, count as u64);
        } else {
            for i in owners {
                failed[i] = true;
            }
        }
    }
    if !dead_ok {
        for &i in &dead.0 {
            failed[i] = true;
        }
    }

    for (i, (mut f, verdict)) in deliveries.into_iter().zip(verdicts).enumerate() {
        let stats = &ctx.stats;
        let mut finish = |outcome: &str, error: Option<&str>| {
            if let Some(t) = f.trace.take() {
                t.finish(outcome, error);
            }
        };
        match verdict {
            // The consumer span goes on with the delivery.
            Verdict::Retry => schedule_retry(ctx.clone(), f),
            _ if failed[i] => {
                PipelineStats::add(&stats.nacked, 1);
                let delay = backoff(&ctx.retry, f.msg.meta.attempt.saturating_add(1));
                finish(
                    "nacked",
                    Some("a sink did not confirm; handed back for redelivery"),
                );
                f.token.nack(delay);
            }
            Verdict::Deliver(_) => {
                PipelineStats::add(&stats.acked, 1);
                finish("delivered", None);
                f.token.ack();
            }
            Verdict::Filtered => {
                PipelineStats::add(&stats.filtered, 1);
                finish("filtered", None);
                f.token.ack();
            }
            Verdict::Discard => {
                PipelineStats::add(&stats.discarded, 1);
                finish("discarded", None);
                f.token.ack();
            }
            Verdict::DeadLetter(failure, _) => {
                PipelineStats::add(&stats.dead_lettered, 1);
                PipelineStats::add(&stats.dead_lettered_by_class[failure.class.index()], 1);
                finish(
                    "dead_lettered",
                    Some(&format!("{}: {}", failure.class, failure.reason)),
                );
                f.token.ack();
            }
        }
    }
}

/// After a transient error: wait the backoff, then run the delivery again as the next attempt.
/// If shutdown starts meanwhile, hand it back to the source at once.
pub(super) fn schedule_retry(ctx: Arc<Ctx>, mut f: InFlight) {
    let delay = backoff(&ctx.retry, f.msg.meta.attempt.saturating_add(1));
    if let Some(t) = &f.trace {
        t.retry(f.msg.meta.attempt.saturating_add(1), delay);
    }
    let task_ctx = ctx.clone();
    let hard_stop = ctx.hard_stop.clone();
    ctx.tracker.spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = task_ctx.stopping.cancelled(), if task_ctx.source_redelivers => {
                PipelineStats::add(&task_ctx.stats.nacked, 1);
                if let Some(t) = f.trace.take() {
                    t.finish("nacked", Some("shutting down before the retry"));
                }
                f.token.nack(Duration::ZERO);
                return;
            }
            () = hard_stop.cancelled() => return,
        }
        PipelineStats::add(&task_ctx.stats.retries, 1);
        f.msg.meta.attempt += 1;
        spawn(task_ctx, vec![f]);
    });
}

/// Send with retries. With a source that cannot redeliver, keep trying until the shutdown
/// deadline rather than give up (giving up would lose the message).
pub(super) async fn send_with_retry(
    ctx: &Ctx,
    name: &str,
    sink: &dyn Sink,
    outputs: &[Output],
) -> bool {
    let mut attempt = 1u32;
    loop {
        match sink.send(outputs).await {
            Ok(()) => return true,
            Err(err) => {
                PipelineStats::add(&ctx.stats.sink_errors, 1);
                PipelineStats::add(&ctx.stats.sink(name).errors, 1);
                let give_up = ctx.source_redelivers && attempt >= ctx.retry.max_attempts;
                let error = format!("{err:#}");
                warn!(pipeline = %ctx.name, sink = name, attempt, give_up, error = %error, "sink write failed");
                ctx.stats.record_error(format!("sink `{name}`: {error}"));
                if give_up {
                    return false;
                }
                attempt += 1;
                tokio::select! {
                    () = tokio::time::sleep(backoff(&ctx.retry, attempt)) => {}
                    () = ctx.hard_stop.cancelled() => return false,
                }
            }
        }
    }
}

/// A publish span for one output to `sink`, child of its delivery's consumer span.
pub(super) fn publish_span(parent: &Context, sink: &str) -> Context {
    let attributes = vec![
        KeyValue::new("messaging.operation.type", "send"),
        KeyValue::new("messaging.operation.name", "send"),
        KeyValue::new("messaging.destination.name", sink.to_owned()),
        KeyValue::new("sluice.sink", sink.to_owned()),
    ];
    trace::child(
        parent,
        format!("send {sink}"),
        SpanKind::Producer,
        attributes,
        SystemTime::now(),
    )
}
