//! OpenTelemetry tracing of deliveries: a consumer span per delivery (child of the W3C
//! `traceparent` in its headers), a child span per handler call and per sink publish, the
//! context injected into every output and dead-letter copy, retries as span events, and handler
//! log lines as events on the handler span.
//!
//! Off by default and free when off: every entry point checks one flag first and does nothing
//! else. The CLI installs the exporter (OpenTelemetry SDK, OTLP) and then calls [`enable`]; this
//! crate uses only the API and the W3C propagator.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytestring::ByteString;
use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use sluice_core::message::{Headers, Message};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether deliveries are traced (an exporter is installed).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn tracer() -> &'static BoxedTracer {
    static TRACER: OnceLock<BoxedTracer> = OnceLock::new();
    TRACER.get_or_init(|| global::tracer("sluice"))
}

fn propagator() -> &'static TraceContextPropagator {
    static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();
    PROPAGATOR.get_or_init(TraceContextPropagator::new)
}

/// Turn delivery tracing on, once a tracer provider is installed as the global one (the CLI's
/// exporter does both).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

struct HeaderReader<'a>(&'a Headers);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| &**v)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| &**k).collect()
    }
}

struct HeaderWriter<'a>(&'a mut Headers);

impl Injector for HeaderWriter<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        // An empty `tracestate` says nothing, and some brokers refuse empty values (SQS).
        if !value.is_empty() {
            self.0
                .push((ByteString::from(key), ByteString::from(value).into()));
        }
    }
}

/// Write `cx` as `traceparent`/`tracestate` into `headers`, replacing any already there.
pub fn inject(cx: &Context, headers: &mut Headers) {
    // A stale `tracestate` from the input must not survive next to a new `traceparent`.
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("tracestate"));
    propagator().inject_context(cx, &mut HeaderWriter(headers));
}

/// The trace of one delivery: its consumer span, from pull to settlement.
#[derive(Debug)]
pub struct DeliveryTrace {
    cx: Context,
}

impl DeliveryTrace {
    /// Start the consumer span of `msg`, continuing the trace in its headers; `None` when
    /// tracing is off.
    pub fn start(pipeline: &str, msg: &Message) -> Option<Self> {
        if !enabled() {
            return None;
        }
        let parent = propagator().extract(&HeaderReader(&msg.headers));
        let span = tracer()
            .span_builder(format!("process {}", msg.meta.topic))
            .with_kind(SpanKind::Consumer)
            .with_attributes([
                KeyValue::new("messaging.system", msg.meta.source.to_string()),
                KeyValue::new("messaging.destination.name", msg.meta.topic.to_string()),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.operation.name", "process"),
                KeyValue::new("messaging.message.id", msg.id.clone()),
                KeyValue::new("sluice.pipeline", pipeline.to_owned()),
                KeyValue::new("sluice.attempt", i64::from(msg.meta.attempt)),
            ])
            .start_with_context(tracer(), &parent);
        Some(DeliveryTrace {
            cx: parent.with_span(span),
        })
    }

    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Trace id, hex, for log lines.
    pub fn trace_id(&self) -> String {
        self.cx.span().span_context().trace_id().to_string()
    }

    /// A transient failure: the delivery will run again after `delay`.
    pub fn retry(&self, next_attempt: u32, delay: Duration) {
        self.cx.span().add_event(
            "retry",
            vec![
                KeyValue::new("sluice.attempt", i64::from(next_attempt)),
                KeyValue::new("sluice.retry_in_ms", delay.as_millis() as i64),
            ],
        );
    }

    /// Settled: `outcome` is what happened (delivered, filtered, dead_lettered, ...).
    pub fn finish(self, outcome: &str, error: Option<&str>) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("sluice.outcome", outcome.to_owned()));
        if let Some(error) = error {
            span.set_status(Status::error(error.to_owned()));
        }
        span.end();
    }
}

/// Start a child span of a delivery (a handler call or a sink publish).
pub fn child(
    parent: &Context,
    name: String,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    start: SystemTime,
) -> Context {
    let span = tracer()
        .span_builder(name)
        .with_kind(kind)
        .with_start_time(start)
        .with_attributes(attributes)
        .start_with_context(tracer(), parent);
    parent.with_span(span)
}

/// End a child span, marking it failed when `error` is given.
pub fn end(cx: &Context, error: Option<&str>) {
    let span = cx.span();
    if let Some(error) = error {
        span.set_status(Status::error(error.to_owned()));
    }
    span.end();
}

tokio::task_local! {
    /// The handler spans of the call this task is running: (message id, span). Task-local, not
    /// thread-local: a call yields at every epoch tick and may resume on another worker.
    static HANDLER_SPANS: Vec<(String, Context)>;
}

/// Run a handler call with its spans known to it, so that what the handler logs becomes events
/// on them.
pub async fn with_handler_spans<F: std::future::Future>(
    spans: Vec<(String, Context)>,
    call: F,
) -> F::Output {
    if spans.is_empty() {
        return call.await;
    }
    HANDLER_SPANS.scope(spans, call).await
}

/// A handler logged `text`: add it as an event to the span of `message_id`, or, in a batch
/// call (no id), to the span of every message in the call. Returns the trace id to log with it,
/// only when the line belongs to one message's trace.
pub fn handler_event(message_id: Option<&str>, level: &'static str, text: &str) -> Option<String> {
    if !enabled() {
        return None;
    }
    HANDLER_SPANS
        .try_with(|spans| {
            let mut trace_ids = Vec::new();
            for (id, cx) in spans.iter() {
                if message_id.is_some_and(|m| m != id) {
                    continue;
                }
                let span = cx.span();
                span.add_event(
                    "log",
                    vec![
                        KeyValue::new("log.severity", level),
                        KeyValue::new("log.message", text.to_owned()),
                    ],
                );
                trace_ids.push(span.span_context().trace_id());
            }
            trace_ids.dedup();
            match trace_ids[..] {
                [one] => Some(one.to_string()),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inject_replaces_an_existing_traceparent_and_drops_a_stale_tracestate() {
        let mut headers: Headers = vec![
            (
                "traceparent".into(),
                "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01".into(),
            ),
            ("tracestate".into(), "vendor=1".into()),
            ("keep".into(), "me".into()),
        ];
        let parent = propagator().extract(&HeaderReader(&headers));
        assert!(parent.span().span_context().is_valid());
        inject(&parent, &mut headers);
        let names: Vec<&str> = headers.iter().map(|(k, _)| &**k).collect();
        assert_eq!(names, ["keep", "traceparent", "tracestate"]);
        assert_eq!(
            &*headers[1].1,
            "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01"
        );
    }
}
