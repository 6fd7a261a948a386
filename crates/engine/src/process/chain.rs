//! The handler chain: each stage's outputs are the next stage's messages, every call bounded by
//! the worker pool and traced when tracing is on.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::FutureExt as _;
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};

use crate::stats::{HandlerStats, PipelineStats};
use sluice_core::message::{Message, Output, restore_natives};
use sluice_core::transform::{ErrorClass, Failure, Outcome, Transform};
use sluice_trace::{self as trace};

use super::Ctx;

pub(super) type ChainResult = Result<Vec<Output>, (Failure, Option<String>)>;

/// Run `msgs` through every stage. Outputs of one stage are the next stage's messages (same id
/// and metadata); a failure anywhere fails the original message. Routes come from the last stage.
pub(super) async fn run_chain(
    ctx: &Ctx,
    msgs: &[Message],
    traces: &[Option<Context>],
) -> Vec<ChainResult> {
    if ctx.chain.is_empty() {
        return msgs
            .iter()
            .map(|m| Ok(vec![Output::pass_through(m)]))
            .collect();
    }
    let mut results: Vec<ChainResult> = msgs.iter().map(|_| Ok(Vec::new())).collect();
    // Each stage's inputs with the index of the delivery each one came from. The first stage
    // borrows the deliveries' own messages; later stages take what the one before produced.
    let mut current: (Vec<usize>, Cow<'_, [Message]>) =
        ((0..msgs.len()).collect(), Cow::Borrowed(msgs));
    for (stage_no, stage) in ctx.chain.iter().enumerate() {
        if current.1.is_empty() {
            break;
        }
        let last = stage_no + 1 == ctx.chain.len();
        let (origins, inputs) = current;
        let stage_stats = ctx.stats.handler(stage.name());
        let spans = handler_spans(stage.name(), &origins, &inputs, traces);
        let outcomes = call_stage(ctx, stage, &stage_stats, &inputs, spans.clone()).await;
        let typed = stage.sees_header_types();
        let mut next = (Vec::new(), Vec::new());
        let mut spans = spans.into_iter().map(|(_, cx)| cx);
        for ((origin, input), outcome) in origins.into_iter().zip(inputs.iter()).zip(outcomes) {
            if let Some(span) = spans.next() {
                let error = match &outcome {
                    Outcome::Failed(f) => Some(format!("{}: {}", f.class, f.reason)),
                    Outcome::Outputs(_) => None,
                };
                trace::end(&span, error.as_deref());
            }
            if results[origin].is_err() {
                continue;
            }
            match outcome {
                Outcome::Failed(failure) => {
                    PipelineStats::add(&stage_stats.errors[failure.class.index()], 1);
                    results[origin] = Err((failure, Some(stage.name().to_owned())))
                }
                Outcome::Outputs(outputs) if last => {
                    if let Ok(acc) = &mut results[origin] {
                        // Event time travels with the message unless the handler set one.
                        acc.extend(outputs.into_iter().map(|mut o| {
                            o.timestamp_ms = o.timestamp_ms.or(input.meta.timestamp_ms);
                            restore_natives(&input.headers, &mut o.headers, typed);
                            o
                        }));
                    }
                }
                Outcome::Outputs(outputs) => {
                    for mut o in outputs {
                        // Headers passed through unchanged keep their source form.
                        restore_natives(&input.headers, &mut o.headers, typed);
                        next.0.push(origin);
                        next.1.push(Message {
                            id: input.id.clone(),
                            key: o.key,
                            payload: o.payload,
                            headers: o.headers,
                            meta: input.meta.clone(),
                        });
                    }
                }
            }
        }
        current = (next.0, Cow::Owned(next.1));
    }
    results
}

/// One stage call, bounded by the worker pool. It runs in this task: guest code yields at every
/// epoch tick, so a long call shares its thread rather than holding it. A panic in a native
/// transform fails the batch instead of the pipeline.
pub(super) async fn call_stage(
    ctx: &Ctx,
    stage: &Arc<dyn Transform>,
    stage_stats: &HandlerStats,
    inputs: &[Message],
    spans: Vec<(String, Context)>,
) -> Vec<Outcome> {
    let n = inputs.len();
    let _permit = ctx.workers.acquire().await;
    // The call itself, not the wait for a worker.
    let started = Instant::now();
    let called = AssertUnwindSafe(trace::with_handler_spans(spans, stage.process(inputs)))
        .catch_unwind()
        .await;
    stage_stats
        .duration
        .observe(started.elapsed().as_secs_f64());
    let fail = |reason: String| vec![Outcome::Failed(Failure::new(ErrorClass::Fatal, reason)); n];
    match called {
        Ok(outcomes) if outcomes.len() == n => outcomes,
        Ok(outcomes) => fail(format!(
            "handler `{}` returned {} results for {n} messages",
            stage.name(),
            outcomes.len()
        )),
        Err(_) => fail(format!("handler `{}` crashed in the host", stage.name())),
    }
}

/// One span per message for a handler call, child of its delivery's consumer span; empty when
/// tracing is off. The message id goes with it so that handler logs find their span.
pub(super) fn handler_spans(
    handler: &str,
    origins: &[usize],
    inputs: &[Message],
    traces: &[Option<Context>],
) -> Vec<(String, Context)> {
    if traces.is_empty() {
        return Vec::new();
    }
    // Every message has a span or none does, so spans and outcomes stay aligned.
    let parents: Option<Vec<&Context>> = origins
        .iter()
        .map(|&origin| traces.get(origin)?.as_ref())
        .collect();
    let Some(parents) = parents else {
        return Vec::new();
    };
    let now = SystemTime::now();
    let batch = inputs.len() as i64;
    parents
        .into_iter()
        .zip(inputs)
        .map(|(parent, input)| {
            let attributes = vec![
                KeyValue::new("sluice.handler", handler.to_owned()),
                KeyValue::new("sluice.batch_size", batch),
            ];
            let span = trace::child(
                parent,
                format!("handle {handler}"),
                SpanKind::Internal,
                attributes,
                now,
            );
            (input.id.clone(), span)
        })
        .collect()
}
