//! RabbitMQ-specific behaviour, against the broker on 127.0.0.1:5672. The shared conformance suite
//! (`conformance.rs`) covers round trips, order, transient retries, restarts, poison messages and
//! back-pressure; this file covers what is particular to the connector.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice::connector::Sink;
use sluice::engine::{Pipeline, PipelineStats, Transform, dead_letter_headers as dl};
use sluice::plugin::Limits;
use sluice_tests::brokers::{RabbitMqBroker, rabbitmq_sink, rabbitmq_source};
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
    let chain = vec![wasm_handler("faulty", Limits::default(), &[]) as Arc<dyn Transform>];
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
            topology: Default::default(),
            tls: Default::default(),
            confirm_timeout_ms: 30_000,
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
    // Refused for good: the engine dead-letters it rather than publish it round and round.
    assert!(
        matches!(&err, sluice::connector::SinkError::Outputs(s)
            if matches!(s[..], [sluice::connector::OutputStatus::Rejected { .. }])),
        "{err:?}"
    );
}

/// The queue's depth (ready messages, not those prefetched by this consumer) is the pipeline's
/// lag: it stays while the sink is blocked and falls to 0 once it opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_is_reported_as_lag_and_falls_to_zero() {
    sluice_tests::conformance::depth_is_reported_as_lag(&RabbitMqBroker::default(), 40).await;
}

/// `topology:` declares exchanges, queues and bindings on connect: messages published to a topic
/// exchange reach the source's queue through its binding, outputs go out through an exchange the
/// sink declared, and the dead-letter sink publishes to a fanout dead-letter exchange whose queue
/// the source declared. Nothing exists on the broker before the pipeline starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_is_declared_and_routes_through_exchanges_and_a_dead_letter_exchange() {
    let b = RabbitMqBroker::default();
    let n = unique_queue("topo");
    let (events, input, dlx, dlq) = (
        format!("{n}-events"),
        format!("{n}-in"),
        format!("{n}-dlx"),
        format!("{n}-dlq"),
    );
    let (done, output) = (format!("{n}-done"), format!("{n}-out"));
    let source = rabbitmq_source(
        serde_json::json!({
            "queue": input,
            "topology": {
                "exchanges": [{ "name": events, "type": "topic" }, { "name": dlx, "type": "fanout" }],
                "queues": [
                    { "name": input, "arguments": { "x-queue-type": "quorum", "x-dead-letter-exchange": dlx } },
                    { "name": dlq },
                ],
                "bindings": [
                    { "exchange": events, "queue": input, "routing_key": "order.#" },
                    { "exchange": dlx, "queue": dlq },
                ],
            },
        }),
        64,
    );
    let sink = rabbitmq_sink(serde_json::json!({
        "exchange": done,
        "routing_key": "order.done",
        "topology": {
            "exchanges": [{ "name": done, "type": "direct" }],
            "queues": [{ "name": output }],
            "bindings": [{ "exchange": done, "queue": output, "routing_key": "order.done" }],
        },
    }));
    let dead = rabbitmq_sink(serde_json::json!({ "exchange": dlx }));
    let chain = vec![wasm_handler("faulty", Limits::default(), &[]) as Arc<dyn Transform>];
    let (p, stats) = pipeline(source, chain, sink, dead, 3);
    let running = start(p);

    // The exchanges, queues and bindings exist once the source has connected (publishing to an
    // exchange that does not exist yet would close the test's channel).
    b.wait_declared(Some(&events), None).await;
    b.wait_declared(None, Some(&dlq)).await;
    let mut routed = false;
    for _ in 0..300 {
        if b.publish_to(&events, "order.created", b"m-000").await {
            routed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        routed,
        "the source declared its queue and bound it to the exchange"
    );
    for i in 1..100 {
        assert!(
            b.publish_to(&events, "order.created", format!("m-{i:03}").as_bytes())
                .await
        );
    }
    assert!(b.publish_to(&events, "order.paid", b"fatal").await);
    assert!(
        !b.publish_to(&events, "user.created", b"unbound").await,
        "a key no binding matches reaches no queue"
    );
    wait_for("101 settled", || {
        stats.settled.load(Ordering::SeqCst) == 101
    })
    .await;
    running.stop().await;

    let out = b.drain(&output, 100).await;
    assert_eq!(
        out.len(),
        100,
        "every fine message through the sink's exchange"
    );
    let dead = b.drain(&dlq, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, b"fatal", "byte for byte");
    assert_eq!(
        dead[0].headers.get(dl::ERROR_CLASS).map(String::as_str),
        Some("fatal")
    );
    assert_eq!(b.depth(&input).await, 0);
}

/// Retry by nack-requeue, bounded on the broker's side: a quorum queue with `x-delivery-limit`
/// dead-letters a message the pipeline keeps handing back (its sink always fails) to the queue's
/// dead-letter exchange after that many redeliveries. Every message is in the dead-letter queue
/// and none is lost or acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_delivery_limit_bounds_nack_requeue_and_dead_letters_through_the_broker() {
    let b = RabbitMqBroker::default();
    let n = unique_queue("limit");
    let (input, dlx, dlq) = (format!("{n}-in"), format!("{n}-dlx"), format!("{n}-dlq"));
    let topology = serde_json::json!({
        "exchanges": [{ "name": dlx, "type": "fanout" }],
        "queues": [
            { "name": input, "arguments": {
                "x-queue-type": "quorum", "x-delivery-limit": 2, "x-dead-letter-exchange": dlx } },
            { "name": dlq },
        ],
        "bindings": [{ "exchange": dlx, "queue": dlq }],
    });
    let source = rabbitmq_source(
        serde_json::json!({ "queue": input, "topology": topology }),
        64,
    );
    let (out, out_q) = memory_sink("limit-out");
    let (dead, dead_q) = memory_sink("limit-dead");
    let failing = FlakySink::new(out, u32::MAX);
    let (p, stats) = pipeline(source, Vec::new(), failing, dead, 1);
    let running = start(p);
    b.wait_declared(None, Some(&dlq)).await;
    let mut routed = false;
    for _ in 0..300 {
        if b.publish_to("", &input, b"r-00").await {
            routed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(routed, "the source declared its quorum queue");
    for i in 1..20 {
        b.publish(&input, format!("r-{i:02}").as_bytes(), &[]).await;
    }
    let dead_lettered = b.drain(&dlq, 20).await;
    running.stop().await;
    let mut got: Vec<String> = dead_lettered
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    got.sort();
    let expected: Vec<String> = (0..20).map(|i| format!("r-{i:02}")).collect();
    assert_eq!(
        got, expected,
        "all 20 dead-lettered by the broker, once each"
    );
    assert!(
        dead_lettered
            .iter()
            .all(|m| m.headers.contains_key("x-death")),
        "the broker's own dead-letter record"
    );
    assert_eq!(
        stats.acked.load(Ordering::SeqCst),
        0,
        "nothing acknowledged"
    );
    assert!(stats.nacked.load(Ordering::SeqCst) >= 20);
    assert!(out_q.drain().is_empty() && dead_q.drain().is_empty());
    assert_eq!(b.depth(&input).await, 0);
}

/// AMQPS: the source and the sink connect over TLS (stunnel in front of the broker, started by
/// scripts/brokers.sh with a CA of its own): with the CA in `tls.ca_file` they work; without it
/// the broker's certificate is refused; on the mutual-TLS port the client certificate is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_with_a_private_ca_and_mutual_tls() {
    let b = RabbitMqBroker::default();
    let tls_dir = std::env::var("SLUICE_BROKER_STATE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| "/var/tmp/sluice-brokers".into())
        .join("tls");
    let file = |name: &str| tls_dir.join(name).to_string_lossy().into_owned();
    let (input, output) = (
        b.fresh_queue("tls-in").await,
        b.fresh_queue("tls-out").await,
    );
    for i in 0..50 {
        b.publish(&input, format!("t-{i:02}").as_bytes(), &[]).await;
    }
    let server_tls = serde_json::json!({ "ca_file": file("ca.pem") });
    let mutual_tls = serde_json::json!({
        "ca_file": file("ca.pem"), "cert_file": file("client.pem"), "key_file": file("client.key"),
    });
    let url = |port: u16| format!("amqps://guest:guest@localhost:{port}/%2f");
    let mut source_settings = serde_json::json!({ "queue": input, "tls": server_tls });
    source_settings["url"] = url(5671).into();
    let mut sink_settings = serde_json::json!({ "routing_key": output, "tls": mutual_tls });
    sink_settings["url"] = url(5673).into();
    let source = rabbitmq_source(source_settings, 64);
    let sink = rabbitmq_sink(sink_settings.clone());
    let (dead, _) = memory_sink("tls-dead");
    let (p, stats) = pipeline(source, Vec::new(), sink, dead, 3);
    let running = start(p);
    wait_for("50 acked over TLS", || {
        stats.acked.load(Ordering::SeqCst) == 50
    })
    .await;
    running.stop().await;
    let got = b.drain(&output, 50).await;
    assert_eq!(got.len(), 50, "all through the mutual-TLS sink");

    // Without the private CA the broker's certificate is not trusted.
    let mut untrusted = serde_json::json!({ "routing_key": output });
    untrusted["url"] = url(5671).into();
    let err = rabbitmq_sink(untrusted)
        .send(&[one_output()])
        .await
        .expect_err("an untrusted certificate is refused");
    assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
    // The mutual-TLS port refuses a client without a certificate.
    sink_settings["tls"] = serde_json::json!({ "ca_file": file("ca.pem") });
    let err = rabbitmq_sink(sink_settings)
        .send(&[one_output()])
        .await
        .expect_err("no client certificate");
    assert!(format!("{err:#}").contains("rabbitmq sink"), "{err:#}");
    assert_eq!(
        b.depth(&output).await,
        0,
        "nothing was published without TLS trust"
    );
}

fn one_output() -> sluice::message::Output {
    sluice::message::Output {
        payload: bytes::Bytes::from_static(b"x"),
        key: None,
        headers: Vec::new(),
        route: None,
        timestamp_ms: None,
    }
}

/// Acks go out as one `multiple` frame per contiguous run (`ack_window.rs`). Settle 300
/// deliveries out of order, with nacks at once and after a delay, and one delivery held back past
/// the ack hold time, so that every path of the window meets the broker. A wrong frame (a
/// multiple-ack over a tag nacked later, or a tag acknowledged twice) makes RabbitMQ close the
/// channel with `PRECONDITION_FAILED`, which requeues everything unacknowledged: more messages
/// would come back than were nacked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_settlement_acks_each_delivery_exactly_once() {
    let b = RabbitMqBroker::default();
    let input = b.fresh_queue("ack-window").await;
    let n = 300;
    for i in 0..n {
        b.publish(&input, format!("m-{i:03}").as_bytes(), &[]).await;
    }
    let mut source = b.source(&input, n);
    let mut deliveries = Vec::new();
    while deliveries.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(10), source.next_batch(n))
            .await
            .expect("the broker delivers")
            .expect("a batch")
            .expect("not at the end");
        deliveries.extend(batch);
    }
    // The first delivery stays unsettled while everything above it settles, in a scrambled order.
    let first = deliveries.remove(0);
    let mut order: Vec<usize> = (0..deliveries.len()).collect();
    order.sort_by_key(|&i| (i * 7919) % deliveries.len());
    let mut slots: Vec<Option<sluice::connector::Delivery>> =
        deliveries.into_iter().map(Some).collect();
    let mut nacked = Vec::new();
    for i in order {
        let d = slots[i].take().expect("each delivery once");
        let payload = String::from_utf8(d.message.payload.to_vec()).expect("utf-8");
        match i % 10 {
            3 => {
                nacked.push(payload);
                d.token.nack(Duration::ZERO);
            }
            7 => {
                nacked.push(payload);
                d.token.nack(Duration::from_millis(200));
            }
            _ => d.token.ack(),
        }
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Past the hold time, then the first delivery: its ack closes the gap below the rest.
    tokio::time::sleep(Duration::from_millis(60)).await;
    first.token.ack();

    // Exactly the nacked messages come back, each once.
    let mut again = Vec::new();
    while again.len() < nacked.len() {
        let batch = tokio::time::timeout(Duration::from_secs(10), source.next_batch(n))
            .await
            .expect("the nacked messages come back")
            .expect("a batch")
            .expect("not at the end");
        for d in batch {
            again.push(String::from_utf8(d.message.payload.to_vec()).expect("utf-8"));
            d.token.ack();
        }
    }
    let extra = tokio::time::timeout(Duration::from_millis(500), source.next_batch(n)).await;
    assert!(
        extra.is_err(),
        "nothing but the nacked messages is redelivered"
    );
    again.sort();
    nacked.sort();
    assert_eq!(again, nacked);
    source.close().await.expect("close flushes the held acks");
    assert_eq!(
        b.depth(&input).await,
        0,
        "every delivery acknowledged: nothing requeued when the connection closed"
    );
}

/// `batch_linger_ms` waits for a fuller batch only while earlier deliveries are unsettled, and a
/// pull dropped while it waits (the engine drops pulls at shutdown) loses nothing: the deliveries
/// it had taken come back from the next pull. The linger here is a minute, so a wrong wait shows
/// as a pull that does not return, not as a matter of milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lingering_pull_waits_only_while_busy_and_loses_nothing_when_dropped() {
    let b = RabbitMqBroker::default();
    let input = b.fresh_queue("linger").await;
    let mut source = rabbitmq_source(
        serde_json::json!({ "queue": input, "batch_linger_ms": 60_000 }),
        16,
    );
    b.publish(&input, b"first", &[]).await;
    let first = pull(&mut source)
        .await
        .expect("nothing unsettled: no linger, the first message comes at once");
    assert_eq!(first.len(), 1);

    b.publish(&input, b"second", &[]).await;
    b.publish(&input, b"third", &[]).await;
    // `first` is unsettled, so this pull lingers; drop it while it waits.
    let dropped = tokio::time::timeout(Duration::from_millis(500), source.next_batch(16)).await;
    assert!(dropped.is_err(), "a busy source lingers for a fuller batch");

    for d in first {
        d.token.ack();
    }
    let rest = pull(&mut source)
        .await
        .expect("nothing unsettled again: the taken deliveries come at once");
    let payloads: Vec<_> = rest.iter().map(|d| d.message.payload.to_vec()).collect();
    assert_eq!(payloads, vec![b"second".to_vec(), b"third".to_vec()]);
    for d in rest {
        d.token.ack();
    }
    source.close().await.expect("close");
    assert_eq!(b.depth(&input).await, 0);
}

/// One pull of up to 16, or `Err` if none came within 10 s.
async fn pull(
    source: &mut Box<dyn sluice::connector::Source>,
) -> Result<Vec<sluice::connector::Delivery>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(10), source.next_batch(16))
        .await
        .map(|r| r.expect("a batch").expect("not at the end"))
}

/// The nacks a pipeline sends while its sink is down, for `seconds`, with the sink breaker set
/// to open after `breaker_failures` failed writes; then the sink recovers and every message
/// arrives exactly once. Returns (nacks while down, probes).
async fn nacks_while_the_sink_is_down(breaker_failures: u32, seconds: u64) -> (u64, u64) {
    let b = RabbitMqBroker::default();
    let input = b.fresh_queue("breaker-in").await;
    for i in 0..1000 {
        b.publish(&input, format!("b-{i:04}").as_bytes(), &[]).await;
    }
    let (out, out_q) = memory_sink("breaker-out");
    let (dead, dead_q) = memory_sink("breaker-dead");
    let down = FlakySink::new(out, u32::MAX);
    let mut delivery = fast_delivery(256, 32, 2);
    delivery.retry.base_delay_ms = 20;
    delivery.retry.max_delay_ms = 200;
    delivery.breaker_failures = breaker_failures;
    let (p, stats) = test_pipeline(
        b.source(&input, 256),
        Vec::new(),
        down.clone(),
        dead,
        delivery,
    );
    let running = start(p);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let nacked = stats.nacked.load(Ordering::SeqCst);
    let probes = stats.breaker_probes.load(Ordering::SeqCst);
    let was_open = stats.breaker_open();
    down.failures.store(0, Ordering::SeqCst);
    wait_for("1000 acked", || stats.acked.load(Ordering::SeqCst) == 1000).await;
    assert!(!stats.breaker_open(), "closed once the sink answers");
    running.stop().await;
    let got = sorted_payloads(&out_q.drain());
    let expected: Vec<String> = (0..1000).map(|i| format!("b-{i:04}")).collect();
    assert_eq!(got, expected, "every message exactly once after the outage");
    assert!(dead_q.drain().is_empty());
    assert_eq!(b.depth(&input).await, 0);
    if breaker_failures <= 5 {
        assert!(was_open, "the breaker opened while the sink was down");
    }
    (nacked, probes)
}

/// A sink down for 3 s behind a RabbitMQ source (window 256, batches of 32): with the breaker
/// the pipeline stops pulling and probes one batch at a time, so the nacks are bounded by what
/// was in flight when it opened plus one batch per probe, whatever the duration; without it
/// (a threshold never reached) the source is nacked for as long as the outage lasts. Prints both rates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_opens_the_breaker_and_the_nack_rate_stays_bounded() {
    let seconds = 3;
    let (nacked, probes) = nacks_while_the_sink_is_down(5, seconds).await;
    // Before it opened: at most the threshold's failed writes' batches and one window in flight.
    let bound = 5 * 32 + 256 + probes * 32;
    assert!(
        nacked <= bound,
        "{nacked} nacks with {probes} probes: more than {bound}"
    );
    let (unbounded, _) = nacks_while_the_sink_is_down(u32::MAX, seconds).await;
    assert!(
        nacked < unbounded,
        "{nacked} nacks with the breaker, {unbounded} without"
    );
    println!(
        "nacks while the sink was down for {seconds} s: {nacked} with the breaker ({:.0}/s, {probes} probes), {unbounded} without ({:.0}/s)",
        nacked as f64 / seconds as f64,
        unbounded as f64 / seconds as f64
    );
}

/// A broker that accepts the connection and never answers (a stalled loopback proxy): the sink's
/// batch fails at `confirm_timeout_ms` and the source's connection at its AMQP heartbeat
/// (`?heartbeat=1` in the URL), each with an error naming the connector; once the broker answers
/// again both reconnect and everything arrives, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_broker_fails_at_its_deadlines_and_nothing_is_lost() {
    use sluice_tests::stall::StallProxy;
    let b = RabbitMqBroker::default();
    let (input, output) = (
        b.fresh_queue("stall-in").await,
        b.fresh_queue("stall-out").await,
    );
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let (to_source, to_sink) = (
        StallProxy::start(broker).await,
        StallProxy::start(broker).await,
    );
    let url =
        |proxy: &StallProxy| format!("amqp://guest:guest@{}/%2f?heartbeat=1", proxy.host_port());
    let source = rabbitmq_source(
        serde_json::json!({ "queue": input, "url": url(&to_source) }),
        8,
    );
    let sink = rabbitmq_sink(serde_json::json!({
        "url": url(&to_sink), "routing_key": output, "confirm_timeout_ms": 1000,
    }));
    let (dead, dead_q) = memory_sink("stall-dead");
    let (p, stats) = test_pipeline(source, Vec::new(), sink, dead, fast_delivery(8, 4, 1_000));
    let (source_after, sink_after) = sluice_tests::stall::stall_the_sink_then_the_source(
        &b,
        (&input, &output),
        (&to_source, &to_sink),
        start(p),
        &stats,
        ("rabbitmq source", "rabbitmq sink"),
    )
    .await;
    println!(
        "stalled rabbitmq: the sink's error after {sink_after:?} (confirm_timeout_ms 1000), the source's after {source_after:?} (heartbeat 1 s)"
    );
    assert!(dead_q.drain().is_empty());
}

/// Every AMQP field type, and an `x-death` history RabbitMQ wrote, come out of a pipeline as
/// they went in: on the output a handler returned with its headers unchanged, and on the
/// dead-letter copy. RabbitMQ then dead-letters the output again and its `x-death` grows to two
/// entries (the history was kept, not flattened to text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_amqp_header_type_and_x_death_survive_a_pipeline_byte_for_byte() {
    use lapin::BasicProperties;
    use lapin::options::{
        BasicGetOptions, BasicPublishOptions, BasicRejectOptions, QueueDeclareOptions,
    };
    use lapin::types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString};

    let b = RabbitMqBroker::default();
    let n = unique_queue("typed");
    let (parked, input, output, again, dlq) = (
        format!("{n}-parked"),
        format!("{n}-in"),
        format!("{n}-out"),
        format!("{n}-again"),
        b.fresh_queue("typed-dlq").await,
    );
    let ch = b.channel().await;
    let declare = |name: &str, dead_letter_to: Option<&str>| {
        let mut args = FieldTable::default();
        if let Some(to) = dead_letter_to {
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("".into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(to.into()),
            );
        }
        ch.queue_declare(name.into(), QueueDeclareOptions::default(), args)
    };
    declare(&input, None).await.unwrap();
    declare(&again, None).await.unwrap();
    declare(&parked, Some(&input)).await.unwrap();
    declare(&output, Some(&again)).await.unwrap();

    let mut inner = FieldTable::default();
    inner.insert("inner".into(), AMQPValue::LongString("x".into()));
    let mut sent = FieldTable::default();
    for (name, value) in [
        ("bool", AMQPValue::Boolean(true)),
        ("i8", AMQPValue::ShortShortInt(-8)),
        ("u8", AMQPValue::ShortShortUInt(8)),
        ("i16", AMQPValue::ShortInt(-16)),
        ("u16", AMQPValue::ShortUInt(16)),
        ("i32", AMQPValue::LongInt(-32)),
        ("u32", AMQPValue::LongUInt(32)),
        ("i64", AMQPValue::LongLongInt(-64)),
        ("f32", AMQPValue::Float(1.5)),
        ("f64", AMQPValue::Double(2.25)),
        (
            "decimal",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 12345,
            }),
        ),
        ("text", AMQPValue::LongString("plain".into())),
        (
            "binary",
            AMQPValue::LongString(LongString::from(vec![0xff, 0x00, 0xfe])),
        ),
        (
            "array",
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::LongInt(1),
                AMQPValue::Boolean(false),
            ])),
        ),
        ("timestamp", AMQPValue::Timestamp(1_700_000_000)),
        ("table", AMQPValue::FieldTable(inner)),
        (
            "bytes",
            AMQPValue::ByteArray(ByteArray::from(vec![1_u8, 2, 3])),
        ),
        ("void", AMQPValue::Void),
    ] {
        sent.insert(name.into(), value);
    }
    // Parked with a TTL of 0: RabbitMQ dead-letters both into the input queue at once, adding
    // its `x-death` history.
    for payload in [&b"fine"[..], b"fatal"] {
        ch.basic_publish(
            "".into(),
            parked.as_str().into(),
            BasicPublishOptions::default(),
            payload,
            BasicProperties::default()
                .with_headers(sent.clone())
                .with_expiration("0".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let get = |queue: String| async move {
        let start = std::time::Instant::now();
        loop {
            let got = ch
                .basic_get(queue.as_str().into(), BasicGetOptions::default())
                .await
                .unwrap();
            if let Some(m) = got {
                return m.delivery;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "nothing in {queue}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    while b.depth(&input).await < 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Through a handler of contract 0.2 (which sees byte strings as bytes, void as null, the rest
    // as text) and one of 0.1 (which sees text only): both return the headers unchanged.
    let chain = vec![
        wasm_handler("faulty", Limits::default(), &[]) as Arc<dyn Transform>,
        uppercase_contract_0_1(),
    ];
    // The output queue is declared above with its dead-letter arguments: the sink only publishes.
    let sink = rabbitmq_sink(serde_json::json!({ "exchange": "", "routing_key": output }));
    let (p, stats) = pipeline(b.source(&input, 64), chain, sink, b.sink(&dlq), 3);
    let running = start(p);
    wait_for("2 settled", || stats.settled.load(Ordering::SeqCst) == 2).await;
    running.stop().await;

    let headers = |d: &lapin::message::Delivery| d.properties.headers().clone().unwrap_or_default();
    let out = get(output.clone()).await;
    let dead = get(dlq.clone()).await;
    let (out_h, dead_h) = (headers(&out), headers(&dead));
    let x_death = out_h
        .inner()
        .get("x-death")
        .cloned()
        .expect("x-death on the output");
    for (name, value) in sent.inner() {
        assert_eq!(out_h.inner().get(name), Some(value), "output header {name}");
        assert_eq!(
            dead_h.inner().get(name),
            Some(value),
            "dead-letter header {name}"
        );
    }
    assert_eq!(
        dead_h.inner().get("x-death"),
        Some(&x_death),
        "x-death on the dead-letter copy"
    );
    assert_eq!(
        dead_h.inner().get(dl::ERROR_CLASS),
        Some(&AMQPValue::LongString("fatal".into()))
    );

    // RabbitMQ dead-letters the output once more: its history now has both hops.
    ch.basic_reject(out.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let twice = get(again.clone()).await;
    let deaths = match headers(&twice).inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        other => panic!("x-death is not an array: {other:?}"),
    };
    let queues: Vec<String> = deaths
        .iter()
        .filter_map(|d| match d {
            AMQPValue::FieldTable(t) => match t.inner().get("queue") {
                Some(AMQPValue::LongString(q)) => {
                    Some(String::from_utf8_lossy(q.as_bytes()).into_owned())
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(
        queues.contains(&parked) && queues.contains(&output),
        "both hops in x-death: {queues:?}"
    );
    for queue in [&parked, &input, &output, &again] {
        ch.queue_delete(queue.as_str().into(), Default::default())
            .await
            .ok();
    }
}
