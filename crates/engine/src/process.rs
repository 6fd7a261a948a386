//! What happens to a batch of deliveries once pulled: handler chain, routing, sink writes,
//! dead-lettering, retries, settlement.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt as _;
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::dead_letter::dead_letter_output;
use super::retry::backoff;
use super::stats::{HandlerStats, PipelineStats};
use crate::payload_log::PayloadLog;
use crate::settings::{InvalidPolicy, RetryPolicy};
use sluice_core::DEAD_LETTER_SINK;
use sluice_core::ack::AckToken;
use sluice_core::connector::{Delivery, Sink};
use sluice_core::message::{Message, Output};
use sluice_core::transform::{ErrorClass, Failure, Outcome, Transform};
use sluice_trace::{self as trace, DeliveryTrace};

/// State shared by every task of one pipeline.
pub(super) struct Ctx {
    pub name: Arc<str>,
    pub chain: Vec<Arc<dyn Transform>>,
    pub sinks: HashMap<String, Arc<dyn Sink>>,
    pub default_sink: String,
    pub dead_letter: Arc<dyn Sink>,
    pub retry: RetryPolicy,
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
pub(super) struct WindowSlot {
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
pub(super) struct InFlight {
    msg: Message,
    token: AckToken,
    decode_error: Option<String>,
    /// Its consumer span, from pull to settlement (when tracing is on).
    trace: Option<DeliveryTrace>,
    _slot: WindowSlot,
}

/// A delivery whose message is out in the handler chain.
struct Waiting {
    token: AckToken,
    decode_error: Option<String>,
    trace: Option<DeliveryTrace>,
    slot: WindowSlot,
}

impl Waiting {
    fn join(self, msg: Message) -> InFlight {
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
    fn split(self) -> (Message, Waiting) {
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

    fn trace_context(&self) -> Option<Context> {
        self.trace.as_ref().map(|t| t.context().clone())
    }

    fn trace_id(&self) -> String {
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

/// Where one delivery stands after the handler chain.
enum Verdict {
    Deliver(Vec<Output>),
    Filtered,
    Retry,
    Discard,
    DeadLetter(Failure, Option<String>),
}

/// Process `batch` on the pipeline's task tracker; at the shutdown deadline the task is dropped
/// where it stands, which abandons its deliveries (their tokens' `Drop`).
pub(super) fn spawn(ctx: Arc<Ctx>, batch: Vec<InFlight>) {
    let hard_stop = ctx.hard_stop.clone();
    let tracker = ctx.tracker.clone();
    let work: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(process(ctx, batch));
    tracker.spawn(async move {
        tokio::select! {
            () = work => {}
            () = hard_stop.cancelled() => {}
        }
    });
}

async fn process(ctx: Arc<Ctx>, batch: Vec<InFlight>) {
    let (undecodable, batch): (Vec<InFlight>, Vec<InFlight>) =
        batch.into_iter().partition(|f| f.decode_error.is_some());
    let mut verdicts: Vec<Verdict> = undecodable
        .iter()
        .map(|f| {
            let failure = Failure::new(
                ErrorClass::Invalid,
                f.decode_error.clone().unwrap_or_default(),
            );
            invalid_verdict(&ctx, failure, None)
        })
        .collect();
    let mut deliveries = undecodable;

    // The handler takes a slice of messages: they are laid out side by side for the chain,
    // while the rest of each delivery waits here.
    let traces: Vec<Option<Context>> = if trace::enabled() {
        batch.iter().map(InFlight::trace_context).collect()
    } else {
        Vec::new()
    };
    let (msgs, waiting): (Vec<Message>, Vec<Waiting>) =
        batch.into_iter().map(InFlight::split).unzip();
    let results = run_chain(&ctx, &msgs, &traces).await;
    let batch: Vec<InFlight> = msgs
        .into_iter()
        .zip(waiting)
        .map(|(msg, w)| w.join(msg))
        .collect();
    for (f, result) in batch.iter().zip(results) {
        verdicts.push(match result {
            Ok(outputs) if outputs.is_empty() => Verdict::Filtered,
            Ok(outputs) => match outputs
                .iter()
                .find_map(|o| o.route.as_ref().filter(|r| !ctx.sinks.contains_key(*r)))
            {
                Some(route) => Verdict::DeadLetter(
                    Failure::new(
                        ErrorClass::UnknownRoute,
                        format!("output routed to `{route}`, which is not a sink of this pipeline"),
                    ),
                    ctx.chain.last().map(|t| t.name().to_owned()),
                ),
                None => Verdict::Deliver(outputs),
            },
            Err((failure, handler)) => match failure.class {
                ErrorClass::Transient if f.msg.meta.attempt < ctx.retry.max_attempts => {
                    Verdict::Retry
                }
                ErrorClass::Transient => Verdict::DeadLetter(
                    Failure::new(
                        ErrorClass::Transient,
                        format!(
                            "gave up after {} attempts: {}",
                            f.msg.meta.attempt, failure.reason
                        ),
                    ),
                    handler,
                ),
                ErrorClass::Invalid => invalid_verdict(&ctx, failure, handler),
                _ => Verdict::DeadLetter(failure, handler),
            },
        });
    }
    deliveries.extend(batch);
    settle(ctx, deliveries, verdicts).await;
}

fn invalid_verdict(ctx: &Ctx, failure: Failure, handler: Option<String>) -> Verdict {
    match ctx.on_invalid {
        InvalidPolicy::Discard => Verdict::Discard,
        InvalidPolicy::DeadLetter => Verdict::DeadLetter(failure, handler),
    }
}

/// Write outputs and dead-letter copies, then settle each delivery by what was confirmed.
async fn settle(ctx: Arc<Ctx>, deliveries: Vec<InFlight>, mut verdicts: Vec<Verdict>) {
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
fn schedule_retry(ctx: Arc<Ctx>, mut f: InFlight) {
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
async fn send_with_retry(ctx: &Ctx, name: &str, sink: &dyn Sink, outputs: &[Output]) -> bool {
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

type ChainResult = Result<Vec<Output>, (Failure, Option<String>)>;

/// Run `msgs` through every stage. Outputs of one stage are the next stage's messages (same id
/// and metadata); a failure anywhere fails the original message. Routes come from the last stage.
async fn run_chain(ctx: &Ctx, msgs: &[Message], traces: &[Option<Context>]) -> Vec<ChainResult> {
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
                            o
                        }));
                    }
                }
                Outcome::Outputs(outputs) => {
                    for o in outputs {
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
async fn call_stage(
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
fn handler_spans(
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

/// A publish span for one output to `sink`, child of its delivery's consumer span.
fn publish_span(parent: &Context, sink: &str) -> Context {
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
