//! OpenTelemetry tracing across a real RabbitMQ round trip: the spans are exported over OTLP/HTTP
//! to a receiver in this test, which checks the parent/child chain from the producer's
//! `traceparent` through the consumer span, the handler span and the publish span, and that the
//! output (and the dead-letter copy) carry the publish span's context onward.
//!
//! The exporter is process-wide: nextest runs each test in a process of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use sluice::engine::Transform;
use sluice::plugin::Limits;
use sluice::telemetry::trace::{self, TraceConfig};
use sluice_tests::brokers::RabbitMqBroker;
use sluice_tests::conformance::Broker;
use sluice_tests::*;

/// Kinds in the OTLP protobuf.
const KIND_INTERNAL: i32 = 1;
const KIND_PRODUCER: i32 = 4;
const KIND_CONSUMER: i32 = 5;
const STATUS_ERROR: i32 = 2;

type Received = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP receiver on an ephemeral port: `POST /v1/traces`, protobuf.
async fn otlp_receiver() -> (String, Received) {
    let spans: Received = Arc::default();
    let sink = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut sink = sink.lock().unwrap();
                for rs in request.resource_spans {
                    for ss in rs.scope_spans {
                        sink.extend(ss.spans);
                    }
                }
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            other => Some(format!("{other:?}")),
        })
}

/// `00-<trace>-<span>-<flags>` → (trace, span).
fn parse_traceparent(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_round_trip_is_one_trace_from_producer_through_handler_to_sink() {
    let (endpoint, received) = otlp_receiver().await;
    let exporter = trace::init(&TraceConfig {
        otlp_endpoint: Some(endpoint),
    })
    .unwrap()
    .expect("tracing on");
    assert!(trace::enabled());

    let b = RabbitMqBroker::default();
    let (input, output, dlq) = (
        b.fresh_queue("trace-in").await,
        b.fresh_queue("trace-out").await,
        b.fresh_queue("trace-dlq").await,
    );
    // Three producers' traces: one delivered (the handler logs), one fatal, one transient that
    // is retried and then dead-lettered.
    let traces = [
        (
            "traced",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
        ),
        (
            "fatal",
            "0af7651916cd43dd8448eb211c80319c",
            "b7ad6b7169203331",
        ),
        (
            "transient",
            "5b8efff798038103d269b633813fc60c",
            "eee19b7ec3c1b174",
        ),
    ];
    for (payload, trace_id, span_id) in traces {
        let traceparent = format!("00-{trace_id}-{span_id}-01");
        b.publish(&input, payload.as_bytes(), &[("traceparent", &traceparent)])
            .await;
    }
    let chain = vec![wasm_handler("faulty", Limits::default(), &[]) as Arc<dyn Transform>];
    let (p, stats) = test_pipeline(
        b.source(&input, 16),
        chain,
        b.sink(&output),
        b.sink(&dlq),
        fast_delivery(16, 1, 3),
    );
    let running = start(p);
    wait_until("3 settled", Duration::from_secs(30), || {
        stats.settled.load(std::sync::atomic::Ordering::SeqCst) == 3
    })
    .await;
    running.stop().await;

    let out = b.drain(&output, 1).await;
    let dead = b.drain(&dlq, 2).await;
    assert_eq!(out.len(), 1);
    assert_eq!(dead.len(), 2);
    let mut carried: HashMap<String, String> = HashMap::new(); // trace id -> span id in the header
    for m in out.iter().chain(&dead) {
        let (trace_id, span_id) = parse_traceparent(&m.headers["traceparent"]);
        carried.insert(trace_id, span_id);
    }

    tokio::task::spawn_blocking(move || exporter.flush())
        .await
        .unwrap();
    wait_until("spans to arrive", Duration::from_secs(20), || {
        received.lock().unwrap().len() >= 3 * 3
    })
    .await;
    let spans = received.lock().unwrap().clone();

    for (payload, trace_id, producer_span) in traces {
        let in_trace: Vec<&Span> = spans
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .collect();
        let consumer = in_trace
            .iter()
            .find(|s| s.kind == KIND_CONSUMER)
            .unwrap_or_else(|| panic!("{payload}: no consumer span in {in_trace:#?}"));
        assert_eq!(
            hex(&consumer.parent_span_id),
            producer_span,
            "{payload}: consumer's parent"
        );
        assert_eq!(consumer.name, format!("process {input}"));
        assert_eq!(
            attr(consumer, "messaging.system").as_deref(),
            Some("rabbitmq")
        );
        assert_eq!(
            attr(consumer, "messaging.destination.name").as_deref(),
            Some(input.as_str())
        );
        assert_eq!(
            attr(consumer, "messaging.operation.type").as_deref(),
            Some("process")
        );
        assert!(attr(consumer, "messaging.message.id").is_some());

        let handler_spans: Vec<&&Span> = in_trace
            .iter()
            .filter(|s| s.kind == KIND_INTERNAL && s.name == "handle faulty")
            .collect();
        assert!(!handler_spans.is_empty(), "{payload}: no handler span");
        for h in &handler_spans {
            assert_eq!(
                h.parent_span_id, consumer.span_id,
                "{payload}: handler's parent"
            );
        }
        let publish = in_trace
            .iter()
            .find(|s| s.kind == KIND_PRODUCER)
            .unwrap_or_else(|| panic!("{payload}: no publish span"));
        assert_eq!(
            publish.parent_span_id, consumer.span_id,
            "{payload}: publish's parent"
        );
        // The message that left carries the publish span as its parent.
        assert_eq!(
            carried.get(trace_id),
            Some(&hex(&publish.span_id)),
            "{payload}"
        );

        let outcome = attr(consumer, "sluice.outcome");
        match payload {
            "traced" => {
                assert_eq!(publish.name, "send out");
                assert_eq!(outcome.as_deref(), Some("delivered"));
                // The handler's log line is an event on its span, and it saw the producer's
                // context in the headers.
                let event = handler_spans[0]
                    .events
                    .iter()
                    .find(|e| e.name == "log")
                    .expect("the handler's log line as an event");
                let text = event
                    .attributes
                    .iter()
                    .find(|kv| kv.key == "log.message")
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        AnyValue::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap();
                assert_eq!(
                    text,
                    format!("saw traceparent 00-{trace_id}-{producer_span}-01")
                );
            }
            "fatal" => {
                assert_eq!(publish.name, "send dead_letter");
                assert_eq!(outcome.as_deref(), Some("dead_lettered"));
                assert_eq!(consumer.status.as_ref().unwrap().code, STATUS_ERROR);
                assert_eq!(handler_spans[0].status.as_ref().unwrap().code, STATUS_ERROR);
            }
            "transient" => {
                assert_eq!(publish.name, "send dead_letter");
                // Three attempts: three handler calls, two retries as events on one consumer span.
                assert_eq!(handler_spans.len(), 3, "{payload}");
                let retries = consumer.events.iter().filter(|e| e.name == "retry").count();
                assert_eq!(retries, 2, "{payload}");
            }
            _ => unreachable!(),
        }
    }
}
