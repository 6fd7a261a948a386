//! SQS against moto's server on 127.0.0.1:5000 (started by scripts/brokers.sh): the conformance
//! suite (slow: moto serves about a hundred calls a second and scans a queue on each receive), and
//! what is particular to SQS: FIFO queues, header packing, binary bodies, validation.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice::config::FieldError;
use sluice::connector::sqs::SqsSinkConfig;
use sluice::connector::{BuildContext, SinkFactory, SourceFactory};
use sluice::engine::{Transform, dead_letter_headers as dl};
use sluice_tests::conformance::Broker;
use sluice_tests::sqs::{SqsBroker, sink_config, source_config};
use sluice_tests::*;

mod conformance {
    sluice_tests::conformance_tests!(sluice_tests::sqs::SqsBroker::default());
    sluice_tests::refusal_tests!(sluice_tests::sqs::SqsBroker::default());
}

fn ctx() -> BuildContext {
    BuildContext {
        pipeline: "sqs-test".into(),
        max_in_flight: 32,
        base_dir: repo_root(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_queues_keep_group_order_and_carry_the_group_id_as_key() {
    let b = SqsBroker::default();
    let (input, output) = (
        b.fresh_fifo("fifo-in").await,
        b.fresh_fifo("fifo-out").await,
    );
    let url = b.url(&input).await;
    for i in 0..30 {
        b.client()
            .send_message()
            .queue_url(&url)
            .message_body(format!("g{}-{i:02}", i % 3))
            .message_group_id(format!("g{}", i % 3))
            .send()
            .await
            .unwrap();
    }
    let (dead, _) = memory_sink("fifo-dead");
    let (p, stats) = test_pipeline(
        b.source(&input, 1),
        Vec::new(),
        b.sink(&output),
        dead,
        fast_delivery(1, 1, 3),
    );
    let running = start(p);
    wait_until("30 acked", b.patience(), || {
        stats.acked.load(Ordering::SeqCst) == 30
    })
    .await;
    running.stop().await;
    let out_url = b.url(&output).await;
    let mut got: Vec<(String, String)> = Vec::new();
    while got.len() < 30 {
        let r = b
            .client()
            .receive_message()
            .queue_url(&out_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
            )
            .send()
            .await
            .unwrap();
        for m in r.messages() {
            let group = m
                .attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                })
                .cloned()
                .unwrap_or_default();
            got.push((group, m.body().unwrap().to_owned()));
            b.client()
                .delete_message()
                .queue_url(&out_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    for g in ["g0", "g1", "g2"] {
        let bodies: Vec<&String> = got.iter().filter(|(k, _)| k == g).map(|(_, b)| b).collect();
        assert_eq!(bodies.len(), 10, "group {g}: each exactly once");
        assert!(
            bodies.windows(2).all(|w| w[0] < w[1]),
            "group {g} in order: {bodies:?}"
        );
        assert!(
            bodies.iter().all(|b| b.starts_with(g)),
            "the group id became the key"
        );
    }
    assert_eq!(b.depth(&input).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_ten_headers_travel_packed_and_a_dead_letter_keeps_them_all() {
    let b = SqsBroker::default();
    let (input, output, dlq) = (
        b.fresh_queue("hdr-in").await,
        b.fresh_queue("hdr-out").await,
        b.fresh_queue("hdr-dlq").await,
    );
    let many: Vec<(String, String)> = (0..12)
        .map(|i| (format!("h{i:02}"), format!("v{i}")))
        .collect();
    let many_ref: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    // Sent through our own sink, so that the packing is what a Sluice producer writes.
    let sink = b.sink(&input);
    let out = |payload: &'static [u8], headers: &[(&str, &str)]| sluice::message::Output {
        payload: bytes::Bytes::from_static(payload),
        key: None,
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect(),
        route: None,
        timestamp_ms: None,
    };
    sink.send(&[
        out(b"fine", &many_ref),
        out(b"fatal", &[("origin", "billing")]),
    ])
    .await
    .unwrap();
    let chain = vec![wasm_handler("faulty", Default::default(), &[]) as Arc<dyn Transform>];
    let (p, stats) = test_pipeline(
        b.source(&input, 8),
        chain,
        b.sink(&output),
        b.sink(&dlq),
        fast_delivery(8, 8, 3),
    );
    let running = start(p);
    wait_until("2 settled", b.patience(), || {
        stats.settled.load(Ordering::SeqCst) == 2
    })
    .await;
    running.stop().await;
    let got = b.drain(&output, 1).await;
    assert_eq!(got.len(), 1);
    for (n, v) in &many {
        assert_eq!(
            got[0].headers.get(n),
            Some(v),
            "header {n} survived the round trip"
        );
    }
    let dead = b.drain(&dlq, 1).await;
    assert_eq!(dead[0].payload, b"fatal");
    let h = &dead[0].headers;
    assert_eq!(h.get("origin").map(String::as_str), Some("billing"));
    assert_eq!(h.get(dl::ERROR_CLASS).map(String::as_str), Some("fatal"));
    assert_eq!(h.get(dl::SOURCE).map(String::as_str), Some("sqs"));
    assert_eq!(b.depth(&input).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_payloads_need_base64_and_oversize_messages_are_refused() {
    let b = SqsBroker::default();
    let queue = b.fresh_queue("bin").await;
    let binary = sluice::message::Output {
        payload: bytes::Bytes::from_static(&[0xff, 0x00, 0xfe]),
        key: None,
        headers: Vec::new(),
        route: None,
        timestamp_ms: None,
    };
    let text_sink = b.sink(&queue);
    let err = text_sink
        .send(std::slice::from_ref(&binary))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("base64: true"), "{err:#}");

    let mut cfg = sink_config(&queue);
    cfg.base64 = true;
    cfg.build(&ctx())
        .unwrap()
        .send(std::slice::from_ref(&binary))
        .await
        .unwrap();
    let mut src_cfg = source_config(&queue);
    src_cfg.base64 = true;
    let mut source = src_cfg.build(&ctx()).unwrap();
    let d = source.next_batch(1).await.unwrap().unwrap().pop().unwrap();
    assert_eq!(&d.message.payload[..], &[0xff, 0x00, 0xfe], "bytes intact");
    d.token.ack();
    source.close().await.unwrap();

    let big = sluice::message::Output {
        payload: bytes::Bytes::from(vec![b'a'; 300 * 1024]),
        ..binary
    };
    let err = text_sink.send(&[big]).await.unwrap_err();
    assert!(format!("{err:#}").contains("exceeds SQS's"), "{err:#}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.depth(&queue).await, 0, "nothing half-sent");
}

#[test]
fn validation_names_every_bad_setting() {
    let mut cfg = source_config("q");
    cfg.queue = None;
    cfg.wait_time_s = 30;
    cfg.endpoint = Some("localhost:5000".into());
    let mut errors: Vec<FieldError> = Vec::new();
    cfg.validate(&mut errors);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["queue", "endpoint"]);
    // The ranges are the schema's; the loader reports them with the connector's own checks.
    let text = "source: { type: sqs, endpoint: localhost:5000, wait_time_s: 30 }\nsinks: { a: { type: drop } }\ndead_letter: { type: drop }";
    let refused =
        sluice::config::parse(std::path::Path::new("p.yaml"), text, |_| None).unwrap_err();
    let paths: Vec<&str> = refused.iter().map(|e| e.error.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["source.queue", "source.endpoint", "source.wait_time_s"]
    );

    let mut sink: SqsSinkConfig = sink_config("plain");
    sink.message_group_id = Some("g".into());
    sink.queue_url = Some("http://x/1/plain".into());
    let mut errors = Vec::new();
    sink.validate(&mut errors);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["queue_url", "message_group_id"]);
}

/// `ApproximateNumberOfMessages` / the approximate message count is the pipeline's lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_is_reported_as_lag_and_falls_to_zero() {
    sluice_tests::conformance::depth_is_reported_as_lag(&SqsBroker::default(), 40).await;
}

/// A server that accepts the connection and never answers (a stalled loopback proxy in front
/// of moto): the sink's calls, then the source's, fail within `request_timeout_ms` with an
/// error naming the connector; once it answers again everything arrives and the input is
/// fully acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_fails_each_call_at_its_deadline_and_nothing_is_lost() {
    use sluice_tests::stall::StallProxy;
    let b = SqsBroker::default();
    let (input, output) = (
        b.fresh_queue("stall-in").await,
        b.fresh_queue("stall-out").await,
    );
    let moto: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let (to_source, to_sink) = (StallProxy::start(moto).await, StallProxy::start(moto).await);
    let mut source = source_config(&input);
    source.endpoint = Some(format!("http://{}", to_source.host_port()));
    source.request_timeout_ms = 1_000;
    let mut sink = sink_config(&output);
    sink.endpoint = Some(format!("http://{}", to_sink.host_port()));
    sink.request_timeout_ms = 1_000;
    let (dead, dead_q) = memory_sink("stall-dead");
    let (p, stats) = test_pipeline(
        source.build(&ctx()).unwrap(),
        Vec::new(),
        sink.build(&ctx()).unwrap(),
        dead,
        fast_delivery(8, 4, 1_000),
    );
    let (source_after, sink_after) = sluice_tests::stall::stall_the_sink_then_the_source(
        &b,
        (&input, &output),
        (&to_source, &to_sink),
        start(p),
        &stats,
        ("sqs source", "sqs sink"),
    )
    .await;
    println!(
        "stalled sqs: the sink's error after {sink_after:?}, the source's after {source_after:?} (request_timeout_ms 1000, wait_time_s 1)"
    );
    assert!(dead_q.drain().is_empty());
}
