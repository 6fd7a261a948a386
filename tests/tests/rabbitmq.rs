//! RabbitMQ-specific behaviour, against the broker on 127.0.0.1:5672. The shared conformance suite
//! (`conformance.rs`) covers round trips, order, transient retries, restarts, poison messages and
//! back-pressure; this file covers what is particular to the connector.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice::config::LimitsConfig;
use sluice::connector::Sink;
use sluice::engine::{Pipeline, PipelineStats, Transform, dead_letter_headers as dl};
use sluice_tests::brokers::RabbitMqBroker;
use sluice_tests::conformance::Broker;
use sluice_tests::*;

fn pipeline(
    source: Box<dyn sluice::connector::Source>,
    chain: Vec<Arc<dyn Transform>>,
    out: Arc<dyn Sink>,
    dead: Arc<dyn Sink>,
    max_attempts: u32,
) -> (Pipeline, Arc<PipelineStats>) {
    test_pipeline(
        source,
        chain,
        out,
        dead,
        fast_delivery(64, 32, max_attempts),
    )
}

async fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(30), cond).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_and_exhausted_transient_messages_reach_a_rabbitmq_dead_letter_queue() {
    let b = RabbitMqBroker::default();
    let (input, output, dlq) = (
        b.fresh_queue("poison-in").await,
        b.fresh_queue("poison-out").await,
        b.fresh_queue("poison-dlq").await,
    );
    b.publish(&input, b"fine", &[]).await;
    b.publish(&input, b"fatal", &[("origin", "billing")]).await;
    b.publish(&input, b"transient", &[]).await;
    let chain = vec![wasm_handler("faulty", LimitsConfig::default(), &[]) as Arc<dyn Transform>];
    let (p, stats) = pipeline(
        b.source(&input, 64),
        chain,
        b.sink(&output),
        b.sink(&dlq),
        3,
    );
    let running = start(p);
    // One delivered, two dead-lettered: all three settled (acked at the broker).
    wait_for("3 settled", || stats.settled.load(Ordering::SeqCst) == 3).await;
    running.stop().await;
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 2);

    let out = b.drain(&output, 1).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload, b"fine");
    let mut dead = b.drain(&dlq, 2).await;
    dead.sort_by(|a, b| a.payload.cmp(&b.payload));
    assert_eq!(dead.len(), 2);
    let h = &dead[0].headers;
    assert_eq!(dead[0].payload, b"fatal", "byte for byte");
    assert_eq!(h.get("origin").map(String::as_str), Some("billing"));
    assert_eq!(h.get(dl::ERROR_CLASS).map(String::as_str), Some("fatal"));
    assert_eq!(
        h.get(dl::REASON).map(String::as_str),
        Some("cannot ever handle this")
    );
    assert_eq!(h.get(dl::SOURCE).map(String::as_str), Some("rabbitmq"));
    assert_eq!(h.get(dl::TOPIC).map(String::as_str), Some(input.as_str()));
    assert_eq!(dead[1].payload, b"transient");
    assert_eq!(
        dead[1].headers.get(dl::ATTEMPTS).map(String::as_str),
        Some("3")
    );
    assert_eq!(b.depth(&input).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_nacks_and_the_broker_redelivers() {
    let b = RabbitMqBroker::default();
    let input = b.fresh_queue("nack-in").await;
    for i in 0..50 {
        b.publish(&input, format!("n-{i:02}").as_bytes(), &[]).await;
    }
    let (out, out_q) = memory_sink("nack-out");
    let (dead, _) = memory_sink("nack-dead");
    // One attempt per write: each of the three failures nacks its batch back to the broker.
    let flaky = FlakySink::new(out, 3);
    let (p, stats) = pipeline(b.source(&input, 64), Vec::new(), flaky.clone(), dead, 1);
    let running = start(p);
    wait_for("50 acked", || stats.acked.load(Ordering::SeqCst) == 50).await;
    running.stop().await;
    assert!(
        stats.nacked.load(Ordering::SeqCst) >= 1,
        "a batch went back to the broker"
    );
    let got = sorted_payloads(&out_q.drain());
    let expected: Vec<String> = (0..50).map(|i| format!("n-{i:02}")).collect();
    assert_eq!(
        got, expected,
        "every message exactly once: a failed write delivered nothing"
    );
    assert_eq!(b.depth(&input).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_no_queue_receives_is_an_error_not_a_silent_drop() {
    let b = RabbitMqBroker::default();
    let sink = sluice::connector::SinkFactory::build(
        &sluice::connector::rabbitmq::RabbitMqSinkConfig {
            url: sluice_tests::brokers::AMQP_URL.into(),
            exchange: String::new(),
            routing_key: Some(unique_queue("nowhere")),
            declare_queue: None,
            persistent: true,
        },
        &sluice::connector::BuildContext {
            pipeline: "t".into(),
            max_in_flight: 1,
            base_dir: repo_root(),
        },
    )
    .unwrap();
    let _ = b.channel().await;
    let err = sink
        .send(&[sluice::message::Output::pass_through(
            &sluice::message::Message {
                id: "x".into(),
                key: None,
                payload: bytes::Bytes::from_static(b"lost?"),
                headers: Vec::new(),
                meta: sluice::message::Metadata::received_now("t".into(), "t".into()),
            },
        )])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("no queue is bound"), "{err:#}");
}

/// The queue's depth (ready messages, not those prefetched by this consumer) is the pipeline's
/// lag: it stays while the sink is blocked and falls to 0 once it opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_is_reported_as_lag_and_falls_to_zero() {
    sluice_tests::conformance::depth_is_reported_as_lag(&RabbitMqBroker::default(), 40).await;
}
