//! What happens to a batch of deliveries once pulled: handler chain, routing, sink writes,
//! dead-lettering, retries, settlement.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use opentelemetry::Context;

use crate::settings::InvalidPolicy;
use sluice_core::message::{Message, Output};
use sluice_core::transform::{ErrorClass, Failure};
use sluice_trace as trace;

mod chain;
mod inflight;
mod send;
mod settle;

use chain::run_chain;
use inflight::Waiting;
pub(crate) use inflight::{Ctx, InFlight, WindowSlot};
use settle::settle;

/// Where one delivery stands after the handler chain.
pub(super) enum Verdict {
    Deliver(Vec<Output>),
    Filtered,
    Retry,
    Discard,
    DeadLetter(Failure, Option<String>),
}

/// Process `batch` on the pipeline's task tracker; at the shutdown deadline the task is dropped
/// where it stands, which abandons its deliveries (their tokens' `Drop`).
/// `probe`, when the batch is the sink breaker's probe, is held until the batch settles.
pub(crate) fn spawn(ctx: Arc<Ctx>, batch: Vec<InFlight>, probe: Option<crate::breaker::Probe>) {
    let hard_stop = ctx.hard_stop.clone();
    let tracker = ctx.tracker.clone();
    let work: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(process(ctx, batch));
    tracker.spawn(async move {
        tokio::select! {
            () = work => {}
            () = hard_stop.cancelled() => {}
        }
        drop(probe);
    });
}

pub(super) async fn process(ctx: Arc<Ctx>, batch: Vec<InFlight>) {
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

pub(super) fn invalid_verdict(ctx: &Ctx, failure: Failure, handler: Option<String>) -> Verdict {
    match ctx.on_invalid {
        InvalidPolicy::Discard => Verdict::Discard,
        InvalidPolicy::DeadLetter => Verdict::DeadLetter(failure, handler),
    }
}
