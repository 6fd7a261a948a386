//! Writing a batch's outputs and dead-letter copies, then settling each delivery by what its
//! sinks confirmed: delivered → ack; refused for good by a sink → dead-lettered as
//! `sink-rejected`, then ack; not confirmed after the retries → nack.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};

use tracing::debug;

use crate::dead_letter::dead_letter_output;
use crate::payload_log::PayloadLog;
use crate::retry::backoff;
use crate::stats::{DeadLetterRecord, PipelineStats};
use sluice_core::DEAD_LETTER_SINK;
use sluice_core::message::{Message, Output};
use sluice_core::transform::{ErrorClass, Failure};
use sluice_trace::{self as trace};

use super::send::{Sent, send_outputs};
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
    // The first output of a delivery a sink refused for good: the delivery is dead-lettered.
    let mut rejected: Vec<Option<Failure>> = vec![None; deliveries.len()];
    let sends = by_sink.into_iter().map(|(name, (owners, outputs))| {
        let sink = ctx.sinks[name].clone();
        let ctx = &ctx;
        let spans = sink_spans.remove(name).unwrap_or_default();
        async move {
            let sent = send_outputs(ctx, name, &*sink, &outputs).await;
            let delivered = sent.iter().filter(|s| **s == Sent::Delivered).count() as u64;
            PipelineStats::add(&ctx.stats.sink(name).outputs, delivered);
            for (span, status) in spans.iter().zip(&sent) {
                trace::end(span, sent_error(status));
            }
            (name, owners, sent)
        }
    });
    let dead_send = async {
        if dead.1.is_empty() {
            Vec::new()
        } else {
            send_outputs(&ctx, DEAD_LETTER_SINK, &*ctx.dead_letter, &dead.1).await
        }
    };
    let (results, dead_sent) = tokio::join!(futures::future::join_all(sends), dead_send);
    for (span, status) in dead_spans.iter().zip(&dead_sent) {
        trace::end(span, sent_error(status));
    }
    for (name, owners, sent) in results {
        for (i, status) in owners.into_iter().zip(sent) {
            match status {
                Sent::Delivered => PipelineStats::add(&ctx.stats.outputs, 1),
                Sent::Failed => failed[i] = true,
                Sent::Rejected(reason) => {
                    rejected[i].get_or_insert_with(|| {
                        Failure::new(
                            ErrorClass::SinkRejected,
                            format!("sink `{name}` rejected an output: {reason}"),
                        )
                    });
                }
            }
        }
    }
    for (&i, status) in dead.0.iter().zip(&dead_sent) {
        if *status != Sent::Delivered {
            failed[i] = true;
        }
    }
    dead_letter_rejected(&ctx, &deliveries, &mut rejected, &mut failed).await;

    for (i, (mut f, verdict)) in deliveries.into_iter().zip(verdicts).enumerate() {
        let stats = &ctx.stats;
        let mut finish = |outcome: &str, error: Option<&str>| {
            if let Some(t) = f.trace.take() {
                t.finish(outcome, error);
            }
        };
        let verdict = match (verdict, rejected[i].take()) {
            (Verdict::Deliver(_), Some(failure)) => Verdict::DeadLetter(failure, None),
            (verdict, _) => verdict,
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
                let why = format!("{}: {}", failure.class, failure.reason);
                // Operators see which messages were dead-lettered and why (the last few).
                stats.record_dead_letter(dead_letter_record(
                    ctx.payload_log.as_deref(),
                    &f.msg,
                    &why,
                ));
                finish("dead_lettered", Some(&why));
                f.token.ack();
            }
        }
    }
}

/// Dead-letter the deliveries a sink refused an output of (and that no other sink failed):
/// their dead-letter copy must be confirmed before they are acked. A delivery whose copy is not
/// confirmed is marked failed (and nacked); `rejected` keeps only the confirmed ones.
async fn dead_letter_rejected(
    ctx: &Ctx,
    deliveries: &[InFlight],
    rejected: &mut [Option<Failure>],
    failed: &mut [bool],
) {
    let mut owners = Vec::new();
    let mut copies = Vec::new();
    let mut spans = Vec::new();
    for (i, f) in deliveries.iter().enumerate() {
        let Some(failure) = &rejected[i] else {
            continue;
        };
        if failed[i] {
            // It goes back to the source anyway; the rejection recurs on the next attempt.
            rejected[i] = None;
            continue;
        }
        debug!(
            pipeline = %ctx.name,
            message_id = %f.msg.id,
            reason = %failure.reason,
            "dead-lettering: a sink rejected an output"
        );
        let mut copy = dead_letter_output(&f.msg, failure, &ctx.name, None);
        if let Some(parent) = f.trace.as_ref() {
            let span = publish_span(parent.context(), DEAD_LETTER_SINK);
            trace::inject(&span, &mut copy.headers);
            spans.push(span);
        }
        owners.push(i);
        copies.push(copy);
    }
    if copies.is_empty() {
        return;
    }
    let sent = send_outputs(ctx, DEAD_LETTER_SINK, &*ctx.dead_letter, &copies).await;
    for (span, status) in spans.iter().zip(&sent) {
        trace::end(span, sent_error(status));
    }
    for (i, status) in owners.into_iter().zip(sent) {
        if status != Sent::Delivered {
            failed[i] = true;
            rejected[i] = None;
        }
    }
}

/// The span error for an output's final status.
fn sent_error(status: &Sent) -> Option<&str> {
    match status {
        Sent::Delivered => None,
        Sent::Rejected(reason) => Some(reason),
        Sent::Failed => Some("the sink did not confirm the write"),
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
        spawn(task_ctx, vec![f], None);
    });
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

/// What operators see of a dead letter: its id and why, and its headers and the start of its
/// payload only where the pipeline lets payloads be shown (`logging.payloads`, with
/// `scrub_fields` hashed), as in its log.
fn dead_letter_record(log: Option<&PayloadLog>, msg: &Message, why: &str) -> DeadLetterRecord {
    /// The preview's length, in bytes.
    const PREVIEW_BYTES: usize = 256;
    /// Headers shown, at most.
    const HEADERS: usize = 32;
    let headers = msg.headers.iter().take(HEADERS).map(|(name, value)| {
        let shown = match log {
            Some(log) => log.header_value(name, value.as_ref()),
            None => "<withheld>".to_owned(),
        };
        (name.to_string(), shown)
    });
    DeadLetterRecord {
        at: SystemTime::now(),
        message: format!("{}: {why}", msg.id),
        headers: headers.collect(),
        payload_preview: match log {
            Some(log) => log.preview(&msg.payload, PREVIEW_BYTES),
            None => "<withheld: the pipeline does not set logging.payloads>".to_owned(),
        },
        payload_bytes: msg.payload.len(),
    }
}
