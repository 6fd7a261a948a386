//! The `rabbitmq` connector against the RabbitMQ broker on 127.0.0.1:5672 (guest/guest), which
//! this machine kind runs. Each test uses its own queues. Messages are counted in and out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use sluice::config::LimitsConfig;
use sluice::connector::rabbitmq::{RabbitMqSinkConfig, RabbitMqSourceConfig};
use sluice::connector::{BuildContext, Sink, SinkFactory, SourceFactory};
use sluice::engine::{Pipeline, PipelineStats, RunEnd, Transform, dead_letter_headers as dl};
use sluice_tests::*;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

async fn channel() -> Channel {
    let conn = Connection::connect(URL, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let ch = conn.create_channel().await.unwrap();
    // Keep the connection alive as long as the channel: leak it for the test's lifetime.
    std::mem::forget(conn);
    ch
}

async fn fresh_queue(ch: &Channel, prefix: &str) -> String {
    let name = unique_queue(prefix);
    let _ = ch
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await;
    ch.queue_declare(
        name.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    name
}

async fn publish(ch: &Channel, queue: &str, payload: &[u8], headers: &[(&str, &str)]) {
    let mut table = FieldTable::default();
    for (n, v) in headers {
        table.insert(
            (*n).into(),
            AMQPValue::LongString(LongString::from(v.as_bytes().to_vec())),
        );
    }
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        payload,
        BasicProperties::default().with_headers(table),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// Take everything in `queue` (acking it), waiting up to 30 s for `expect` messages.
async fn drain(
    ch: &Channel,
    queue: &str,
    expect: usize,
) -> Vec<(Vec<u8>, HashMap<String, String>)> {
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < expect && start.elapsed() < Duration::from_secs(30) {
        match ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(m) => {
                let headers = m
                    .delivery
                    .properties
                    .headers()
                    .as_ref()
                    .map(|t| {
                        t.inner()
                            .iter()
                            .map(|(k, v)| {
                                let v = match v {
                                    AMQPValue::LongString(s) => {
                                        String::from_utf8_lossy(s.as_bytes()).into_owned()
                                    }
                                    other => format!("{other:?}"),
                                };
                                (k.as_str().to_owned(), v)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                got.push((m.delivery.data, headers));
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    got
}

async fn message_count(ch: &Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

fn ctx() -> BuildContext {
    BuildContext {
        pipeline: "test".into(),
        max_in_flight: 64,
        base_dir: repo_root(),
    }
}

fn rabbit_source(queue: &str) -> Box<dyn sluice::connector::Source> {
    let cfg = RabbitMqSourceConfig {
        url: URL.into(),
        queue: queue.into(),
        declare: false,
        prefetch: None,
    };
    cfg.build(&ctx()).unwrap()
}

fn rabbit_sink(queue: &str) -> Arc<dyn Sink> {
    let cfg = RabbitMqSinkConfig {
        url: URL.into(),
        exchange: String::new(),
        routing_key: Some(queue.into()),
        declare_queue: Some(queue.into()),
        persistent: true,
    };
    cfg.build(&ctx()).unwrap()
}

fn pipeline(
    source: Box<dyn sluice::connector::Source>,
    chain: Vec<Arc<dyn Transform>>,
    out: Arc<dyn Sink>,
    dead: Arc<dyn Sink>,
    max_attempts: u32,
) -> (Pipeline, Arc<PipelineStats>) {
    let stats = Arc::new(PipelineStats::default());
    let p = Pipeline {
        name: "rabbit-test".into(),
        source,
        source_redelivers: true,
        chain,
        sinks: HashMap::from([("out".to_owned(), out)]),
        default_sink: "out".into(),
        dead_letter: dead,
        delivery: fast_delivery(64, 32, max_attempts),
        shutdown_deadline: Duration::from_secs(10),
        workers: 2,
        stats: stats.clone(),
    };
    (p, stats)
}

async fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(30), cond).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_a_wasm_handler_keeps_payload_and_headers() {
    let ch = channel().await;
    let (input, output) = (
        fresh_queue(&ch, "rt-in").await,
        fresh_queue(&ch, "rt-out").await,
    );
    for i in 0..200 {
        publish(
            &ch,
            &input,
            format!("msg-{i:03}").as_bytes(),
            &[("traceparent", &format!("tp-{i}")), ("tenant", "acme")],
        )
        .await;
    }
    let (dead, dead_q) = memory_sink("rt-dead");
    let chain = vec![wasm_handler("uppercase", LimitsConfig::default(), &[]) as Arc<dyn Transform>];
    let (p, stats) = pipeline(rabbit_source(&input), chain, rabbit_sink(&output), dead, 3);
    let running = start(p);
    wait_for("200 acked", || stats.acked.load(Ordering::SeqCst) == 200).await;
    assert_eq!(running.stop().await, RunEnd::Drained);

    let got = drain(&ch, &output, 200).await;
    assert_eq!(got.len(), 200, "every message arrives");
    let mut payloads: Vec<String> = got
        .iter()
        .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
        .collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(payloads.len(), 200, "exactly once");
    assert!(payloads.iter().all(|p| p.starts_with("MSG-")));
    for (payload, headers) in &got {
        let i: u32 = String::from_utf8_lossy(&payload[4..]).parse().unwrap();
        assert_eq!(
            headers.get("traceparent").map(String::as_str),
            Some(format!("tp-{i}").as_str())
        );
        assert_eq!(headers.get("tenant").map(String::as_str), Some("acme"));
    }
    assert_eq!(
        message_count(&ch, &input).await,
        0,
        "the input queue is fully acknowledged"
    );
    assert!(dead_q.drain().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_reaches_the_dead_letter_queue_byte_identical() {
    let ch = channel().await;
    let (input, output, dlq) = (
        fresh_queue(&ch, "poison-in").await,
        fresh_queue(&ch, "poison-out").await,
        fresh_queue(&ch, "poison-dlq").await,
    );
    publish(&ch, &input, b"fine", &[]).await;
    publish(&ch, &input, b"fatal", &[("origin", "billing")]).await;
    publish(&ch, &input, b"transient", &[]).await;
    let chain = vec![wasm_handler("faulty", LimitsConfig::default(), &[]) as Arc<dyn Transform>];
    let (p, stats) = pipeline(
        rabbit_source(&input),
        chain,
        rabbit_sink(&output),
        rabbit_sink(&dlq),
        3,
    );
    let running = start(p);
    // One delivered, two dead-lettered: all three settled (acked at the broker).
    wait_for("3 settled", || stats.settled.load(Ordering::SeqCst) == 3).await;
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 2);
    running.stop().await;

    let out = drain(&ch, &output, 1).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, b"fine");
    let mut dead = drain(&ch, &dlq, 2).await;
    dead.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(dead.len(), 2);
    let (payload, headers) = &dead[0];
    assert_eq!(payload, b"fatal", "byte for byte");
    assert_eq!(headers.get("origin").map(String::as_str), Some("billing"));
    assert_eq!(
        headers.get(dl::ERROR_CLASS).map(String::as_str),
        Some("fatal")
    );
    assert_eq!(
        headers.get(dl::REASON).map(String::as_str),
        Some("cannot ever handle this")
    );
    assert_eq!(
        headers.get(dl::SOURCE).map(String::as_str),
        Some("rabbitmq")
    );
    assert_eq!(
        headers.get(dl::TOPIC).map(String::as_str),
        Some(input.as_str())
    );
    let (payload, headers) = &dead[1];
    assert_eq!(payload, b"transient");
    assert_eq!(headers.get(dl::ATTEMPTS).map(String::as_str), Some("3"));
    assert_eq!(message_count(&ch, &input).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_nacks_and_the_broker_redelivers() {
    let ch = channel().await;
    let input = fresh_queue(&ch, "nack-in").await;
    for i in 0..50 {
        publish(&ch, &input, format!("n-{i:02}").as_bytes(), &[]).await;
    }
    let (out, out_q) = memory_sink("nack-out");
    let (dead, _) = memory_sink("nack-dead");
    // One attempt per write: each of the three failures nacks its batch back to the broker.
    let flaky = FlakySink::new(out, 3);
    let (p, stats) = pipeline(rabbit_source(&input), Vec::new(), flaky.clone(), dead, 1);
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
    assert_eq!(message_count(&ch, &input).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_restart_mid_stream_loses_nothing() {
    let ch = channel().await;
    let input = fresh_queue(&ch, "restart-in").await;
    for i in 0..400 {
        publish(&ch, &input, format!("r-{i:03}").as_bytes(), &[]).await;
    }
    let (out, out_q) = memory_sink("restart-out");
    let (dead, _) = memory_sink("restart-dead");
    let slow = Arc::new(StampingTransform {
        seen: Default::default(),
        delay: Duration::from_millis(2),
    });
    let (p, stats) = pipeline(
        rabbit_source(&input),
        vec![slow.clone() as Arc<dyn Transform>],
        out.clone(),
        dead.clone(),
        3,
    );
    let running = start(p);
    wait_for("some output", || stats.outputs.load(Ordering::SeqCst) >= 60).await;
    running.stop().await;
    let first = stats.acked.load(Ordering::SeqCst);
    assert!(first < 400, "stopped mid-stream");

    let (p, stats2) = pipeline(
        rabbit_source(&input),
        vec![slow as Arc<dyn Transform>],
        out,
        dead,
        3,
    );
    let running = start(p);
    wait_for("the rest", || {
        first + stats2.acked.load(Ordering::SeqCst) >= 400
    })
    .await;
    running.stop().await;

    let got = out_q.drain();
    let mut distinct = sorted_payloads(&got);
    distinct.dedup();
    assert_eq!(distinct.len(), 400, "nothing lost");
    assert!(
        got.len() - 400 <= 64,
        "duplicates at most the in-flight window: {}",
        got.len() - 400
    );
    assert_eq!(message_count(&ch, &input).await, 0);
}
