//! Fault paths of the engine, over the in-process `memory` queue. Every test counts messages in
//! and out: nothing may be lost, and nothing acked before its outputs are confirmed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice::connector::Sink;
use sluice::connector::memory::StoredMessage;
use sluice::engine::{Outcome, RunEnd, Transform, dead_letter_headers as dl};
use sluice::message::Output;
use sluice::plugin::Limits;
use sluice_tests::*;

const WAIT: Duration = Duration::from_secs(30);

fn numbered(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i:04}").into_bytes())
        .collect()
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_deliveries_are_redelivered_until_the_sink_recovers() {
    let inputs = numbered("m", 50);
    let (queue, q) = queue_with("nack", &refs(&inputs));
    let (out, out_q) = memory_sink("nack-out");
    let (dead, dead_q) = memory_sink("nack-dead");
    // Three failed writes with one attempt per write: each failure nacks its batch back to the
    // queue (with more attempts, concurrent batches could absorb the failures in retries).
    let flaky = FlakySink::new(out, 3);
    let chain: Vec<Arc<dyn Transform>> = vec![wasm_handler("uppercase", Limits::default(), &[])];
    let (pipeline, stats) = memory_pipeline(
        &queue,
        60_000,
        chain,
        flaky.clone(),
        dead,
        fast_delivery(16, 8, 1),
    );
    assert_eq!(run_until_acked(pipeline, &q, 50).await, RunEnd::Drained);

    let expected: Vec<String> = inputs
        .iter()
        .map(|p| String::from_utf8_lossy(p).to_uppercase())
        .collect();
    assert_eq!(
        sorted_payloads(&out_q.drain()),
        expected,
        "every message exactly once, none lost"
    );
    assert_eq!(flaky.failed.load(Ordering::SeqCst), 3);
    assert!(
        q.stats.nacked.load(Ordering::SeqCst) >= 1,
        "a batch was nacked"
    );
    assert_eq!(
        q.stats.delivered.load(Ordering::SeqCst),
        50 + q.stats.nacked.load(Ordering::SeqCst),
        "each nack was one redelivery"
    );
    assert_eq!(q.outstanding(), 0);
    assert!(dead_q.drain().is_empty());
    assert_eq!(stats.acked.load(Ordering::SeqCst), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_retry_then_dead_letter_with_headers_and_original_bytes() {
    let name = unique_queue("retry");
    let q = sluice::connector::memory::MemoryQueue::named(&name);
    let original = StoredMessage {
        key: Some(bytes::Bytes::from_static(b"key-1")),
        payload: bytes::Bytes::from_static(b"transient"),
        headers: vec![
            ("traceparent".into(), "00-abc-def-01".into()),
            ("dup".into(), "1".into()),
            ("dup".into(), "2".into()),
        ],
    };
    q.push(original.clone());
    q.push(StoredMessage::new(&b"transient-until:3"[..]));
    let (out, out_q) = memory_sink("retry-out");
    let (dead, dead_q) = memory_sink("retry-dead");
    let chain: Vec<Arc<dyn Transform>> = vec![wasm_handler("faulty", Limits::default(), &[])];
    let (pipeline, stats) =
        memory_pipeline(&name, 60_000, chain, out, dead, fast_delivery(8, 8, 4));
    run_until_acked(pipeline, &q, 2).await;

    let delivered = out_q.drain();
    assert_eq!(
        sorted_payloads(&delivered),
        vec!["transient-until:3"],
        "succeeds on its third attempt"
    );
    let dead = dead_q.drain();
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.payload, original.payload, "payload byte for byte");
    assert_eq!(d.key, original.key);
    assert_eq!(
        &d.headers[..3],
        &original.headers[..],
        "original headers first, in order"
    );
    assert_eq!(header(d, dl::ERROR_CLASS), Some("transient"));
    assert_eq!(header(d, dl::ATTEMPTS), Some("4"));
    assert!(
        header(d, dl::REASON)
            .unwrap()
            .contains("gave up after 4 attempts: dependency unavailable"),
        "{:?}",
        header(d, dl::REASON)
    );
    assert_eq!(header(d, dl::PIPELINE), Some("test"));
    assert_eq!(header(d, dl::HANDLER), Some("faulty"));
    assert_eq!(header(d, dl::SOURCE), Some("memory"));
    assert_eq!(header(d, dl::TOPIC), Some(name.as_str()));
    assert_eq!(header(d, dl::OFFSET), Some("0"));
    // 3 retries for the poison message, 2 for the one that recovers.
    assert_eq!(stats.retries.load(Ordering::SeqCst), 5);
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 1);
    assert_eq!(q.outstanding(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_guests_are_dead_lettered_and_their_neighbours_unaffected() {
    let payloads: Vec<&[u8]> = vec![
        b"ok-1", b"trap", b"ok-2", b"loop", b"ok-3", b"bomb", b"ok-4", b"huge", b"many", b"stack",
        b"slow:1", b"ok-5",
    ];
    let (queue, q) = queue_with("faults", &payloads);
    let (out, out_q) = memory_sink("faults-out");
    let (dead, dead_q) = memory_sink("faults-dead");
    let limits = Limits {
        timeout_ms: 200,
        memory_mb: 16,
        max_outputs: 100,
        max_output_bytes: 1 << 20,
        ..Limits::default()
    };
    let handler = wasm_handler("faulty", limits, &[]);
    let chain: Vec<Arc<dyn Transform>> = vec![handler];
    // One batch holds them all: a trap inside a batch must not fail its neighbours.
    let (pipeline, stats) =
        memory_pipeline(&queue, 60_000, chain, out, dead, fast_delivery(64, 64, 3));
    let running = start(pipeline);

    wait_until("all 12 settled", WAIT, || {
        q.stats.acked.load(Ordering::SeqCst) == 12
    })
    .await;
    // The host keeps running: a later message is handled normally.
    q.push(StoredMessage::new(&b"ok-6"[..]));
    wait_until("ok-6 settled", WAIT, || {
        q.stats.acked.load(Ordering::SeqCst) == 13
    })
    .await;
    running.stop().await;

    assert_eq!(
        sorted_payloads(&out_q.drain()),
        vec!["ok-1", "ok-2", "ok-3", "ok-4", "ok-5", "ok-6", "slow:1"],
        "a slow message within its timeout is handled like any other"
    );
    let dead = dead_q.drain();
    let class_of = |payload: &str| {
        let d = dead
            .iter()
            .find(|d| d.payload == payload.as_bytes())
            .unwrap_or_else(|| panic!("{payload} not dead-lettered"));
        (
            header(d, dl::ERROR_CLASS).unwrap().to_owned(),
            header(d, dl::REASON).unwrap().to_owned(),
        )
    };
    let (class, reason) = class_of("trap");
    assert_eq!(class, "trap");
    assert!(
        reason.contains("asked to trap by message"),
        "panic message in the reason: {reason}"
    );
    let (class, reason) = class_of("loop");
    assert_eq!(class, "timeout");
    assert!(reason.contains("200 ms"), "{reason}");
    let (class, reason) = class_of("bomb");
    assert_eq!(class, "memory-limit");
    assert!(reason.contains("16 MiB"), "{reason}");
    let (class, reason) = class_of("huge");
    assert_eq!(class, "output-limit");
    assert!(reason.contains("8388608 output bytes"), "{reason}");
    let (class, reason) = class_of("many");
    assert_eq!(class, "output-limit");
    assert!(reason.contains("5000 outputs"), "{reason}");
    let (class, reason) = class_of("stack");
    assert_eq!(class, "trap");
    assert!(reason.contains("stack overflow"), "{reason}");
    assert_eq!(dead.len(), 6);
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 6);
    assert_eq!(q.outstanding(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_pressure_holds_the_exact_in_flight_bound() {
    let inputs = numbered("bp", 100);
    let (queue, q) = queue_with("bp", &refs(&inputs));
    let (out, out_q) = memory_sink("bp-out");
    let (dead, _) = memory_sink("bp-dead");
    let gate = GateSink::closed(out);
    let (pipeline, stats) = memory_pipeline(
        &queue,
        60_000,
        Vec::new(),
        gate.clone(),
        dead,
        fast_delivery(7, 3, 3),
    );
    let running = start(pipeline);

    wait_until("the window to fill", WAIT, || q.in_flight() == 7).await;
    // Give a broken engine every chance to pull more than it may.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q.in_flight(), 7, "pulled and unsettled");
    assert_eq!(stats.received.load(Ordering::SeqCst), 7);
    assert_eq!(stats.in_flight.load(Ordering::SeqCst), 7);
    assert_eq!(
        gate.waiting.load(Ordering::SeqCst),
        7,
        "all 7 are waiting on the sink"
    );
    assert_eq!(q.ready_len(), 93);

    gate.open();
    wait_until("all acked", WAIT, || {
        q.stats.acked.load(Ordering::SeqCst) == 100
    })
    .await;
    running.stop().await;
    assert_eq!(
        q.stats.max_in_flight.load(Ordering::SeqCst),
        7,
        "the bound held for the whole run"
    );
    assert!(gate.max_waiting.load(Ordering::SeqCst) <= 7);
    assert_eq!(out_q.drain().len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_holds_in_every_one_second_window() {
    let inputs = numbered("rl", 36);
    let (queue, q) = queue_with("rl", &refs(&inputs));
    let (out, out_q) = memory_sink("rl-out");
    let (dead, _) = memory_sink("rl-dead");
    let stamp = Arc::new(StampingTransform {
        seen: Default::default(),
        delay: Duration::ZERO,
    });
    let mut delivery = fast_delivery(64, 16, 3);
    delivery.rate_limit = Some(sluice::engine::RateLimit {
        per_second: 10,
        burst: Some(2),
    });
    let (pipeline, _) = memory_pipeline(
        &queue,
        60_000,
        vec![stamp.clone() as Arc<dyn Transform>],
        out,
        dead,
        delivery,
    );
    run_until_acked(pipeline, &q, 36).await;

    assert_eq!(out_q.drain().len(), 36);
    let seen = stamp.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 36);
    // In any window of one second: at most the sustained rate plus the burst.
    for (i, start) in seen.iter().enumerate() {
        let in_window = seen[i..]
            .iter()
            .filter(|t| t.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 10 + 2,
            "{in_window} messages within one second of message {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_mid_stream_loses_nothing_and_duplicates_nothing() {
    let inputs = numbered("gs", 400);
    let (queue, q) = queue_with("gs", &refs(&inputs));
    let (out, out_q) = memory_sink("gs-out");
    let (dead, dead_q) = memory_sink("gs-dead");
    let slow = Arc::new(StampingTransform {
        seen: Default::default(),
        delay: Duration::from_millis(2),
    });
    let (pipeline, stats) = memory_pipeline(
        &queue,
        60_000,
        vec![slow.clone() as Arc<dyn Transform>],
        out.clone(),
        dead.clone(),
        fast_delivery(32, 8, 3),
    );
    let running = start(pipeline);
    wait_until("some output", WAIT, || {
        stats.outputs.load(Ordering::SeqCst) >= 50
    })
    .await;
    assert_eq!(running.stop().await, RunEnd::Drained);

    let first_run = stats.acked.load(Ordering::SeqCst);
    assert!(first_run < 400, "shutdown happened mid-stream");
    assert_eq!(
        q.in_flight(),
        0,
        "everything pulled was settled before exit"
    );
    assert_eq!(q.stats.acked.load(Ordering::SeqCst), first_run);
    assert_eq!(
        stats.outputs.load(Ordering::SeqCst),
        first_run,
        "acked exactly what was confirmed"
    );

    // A second run picks up the rest.
    let (pipeline, stats2) = memory_pipeline(
        &queue,
        60_000,
        vec![slow as Arc<dyn Transform>],
        out,
        dead,
        fast_delivery(32, 8, 3),
    );
    run_until_acked(pipeline, &q, 400).await;
    assert_eq!(first_run + stats2.acked.load(Ordering::SeqCst), 400);

    let expected: Vec<String> = inputs
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(
        sorted_payloads(&out_q.drain()),
        expected,
        "each exactly once"
    );
    assert!(dead_q.drain().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deadline_leaves_unfinished_work_unacknowledged_for_redelivery() {
    let inputs = numbered("dl", 20);
    let (queue, q) = queue_with("deadline", &refs(&inputs));
    let (out, out_q) = memory_sink("deadline-out");
    let (dead, _) = memory_sink("deadline-dead");
    let gate = GateSink::closed(out.clone());
    let (mut pipeline, stats) = memory_pipeline(
        &queue,
        500,
        Vec::new(),
        gate.clone(),
        dead.clone(),
        fast_delivery(5, 5, 3),
    );
    pipeline.shutdown_deadline = Duration::from_millis(100);
    let running = start(pipeline);
    wait_until("the window to fill", WAIT, || {
        gate.waiting.load(Ordering::SeqCst) == 5
    })
    .await;
    assert_eq!(running.stop().await, RunEnd::DeadlineExceeded);
    assert_eq!(
        stats.acked.load(Ordering::SeqCst),
        0,
        "nothing unconfirmed is ever acked"
    );
    assert_eq!(q.stats.acked.load(Ordering::SeqCst), 0);
    assert_eq!(q.stats.abandoned.load(Ordering::SeqCst), 5);

    // After the visibility timeout the abandoned five come back; a healthy run delivers all 20.
    let (pipeline, _) = memory_pipeline(&queue, 500, Vec::new(), out, dead, fast_delivery(5, 5, 3));
    run_until_acked(pipeline, &q, 20).await;
    let expected: Vec<String> = inputs
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert_eq!(sorted_payloads(&out_q.drain()), expected);
    assert_eq!(q.stats.expired.load(Ordering::SeqCst), 5);
}

/// A sink whose `close` never returns, as when its broker stopped answering.
struct CloseHangs {
    inner: Arc<dyn Sink>,
    closing: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Sink for CloseHangs {
    async fn send(&self, batch: &[Output]) -> sluice::connector::SendResult {
        self.inner.send(batch).await
    }

    async fn close(&self) -> anyhow::Result<()> {
        self.closing.store(true, Ordering::SeqCst);
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_that_never_returns_does_not_keep_the_pipeline_from_stopping() {
    let inputs = numbered("cl", 10);
    let (queue, q) = queue_with("close-hangs", &refs(&inputs));
    let (out, out_q) = memory_sink("close-hangs-out");
    let (dead, _) = memory_sink("close-hangs-dead");
    let hanging = Arc::new(CloseHangs {
        inner: out,
        closing: Default::default(),
    });
    let (mut pipeline, _) = memory_pipeline(
        &queue,
        500,
        Vec::new(),
        hanging.clone(),
        dead,
        fast_delivery(5, 5, 3),
    );
    pipeline.shutdown_deadline = Duration::from_millis(100);
    let running = start(pipeline);
    wait_until("all ten acked", WAIT, || {
        q.stats.acked.load(Ordering::SeqCst) == 10
    })
    .await;
    // The limit only turns a hang into a failure; the close is cut short at 100 ms.
    let end = tokio::time::timeout(WAIT, running.stop())
        .await
        .expect("the pipeline stops although its sink's close never returns");
    assert_eq!(end, RunEnd::Drained);
    assert!(hanging.closing.load(Ordering::SeqCst), "close was called");
    assert_eq!(out_q.drain().len(), 10);
    assert_eq!(q.stats.abandoned.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_filters_unknown_routes_and_invalid_policy() {
    let (queue, q) = queue_with(
        "route",
        &[
            b"route:audit",
            b"filter",
            b"route:nowhere",
            b"invalid",
            b"plain",
        ],
    );
    let (out, out_q) = memory_sink("route-out");
    let (audit, audit_q) = memory_sink("route-audit");
    let (dead, dead_q) = memory_sink("route-dead");
    let chain: Vec<Arc<dyn Transform>> = vec![wasm_handler("faulty", Limits::default(), &[])];
    let mut delivery = fast_delivery(8, 8, 3);
    delivery.on_invalid = sluice::engine::InvalidPolicy::Discard;
    let (mut pipeline, stats) = memory_pipeline(&queue, 60_000, chain, out, dead, delivery);
    pipeline.sinks.insert("audit".into(), audit);
    run_until_acked(pipeline, &q, 5).await;

    assert_eq!(sorted_payloads(&out_q.drain()), vec!["plain"]);
    assert_eq!(sorted_payloads(&audit_q.drain()), vec!["route:audit"]);
    let dead = dead_q.drain();
    assert_eq!(sorted_payloads(&dead), vec!["route:nowhere"]);
    assert_eq!(header(&dead[0], dl::ERROR_CLASS), Some("unknown-route"));
    assert_eq!(stats.filtered.load(Ordering::SeqCst), 1);
    assert_eq!(stats.discarded.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_chain_feeds_outputs_to_the_next_handler() {
    let (queue, q) = queue_with("chain", &[b"a", b"b"]);
    let (out, out_q) = memory_sink("chain-out");
    let (dead, _) = memory_sink("chain-dead");
    let fan_out: Arc<dyn Transform> = Arc::new(FnTransform {
        name: "twice".into(),
        f: |m: &sluice::message::Message| {
            let mut second = Output::pass_through(m);
            second.payload =
                bytes::Bytes::from(format!("{}2", String::from_utf8_lossy(&m.payload)));
            Outcome::Outputs(vec![Output::pass_through(m), second])
        },
    });
    let chain = vec![
        fan_out,
        wasm_handler("uppercase", Limits::default(), &[]) as Arc<dyn Transform>,
    ];
    let (pipeline, stats) =
        memory_pipeline(&queue, 60_000, chain, out, dead, fast_delivery(8, 8, 3));
    run_until_acked(pipeline, &q, 2).await;
    assert_eq!(sorted_payloads(&out_q.drain()), vec!["A", "A2", "B", "B2"]);
    assert_eq!(stats.outputs.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_sink_failure_nacks_instead_of_acking() {
    let (queue, q) = queue_with("dlfail", &[b"fatal"]);
    let (out, _) = memory_sink("dlfail-out");
    let (dead, dead_q) = memory_sink("dlfail-dead");
    // The dead-letter sink fails 3 times; with 2 attempts per try the message is nacked once,
    // redelivered, and dead-lettered on the second delivery.
    let flaky_dead = FlakySink::new(dead, 3);
    let chain: Vec<Arc<dyn Transform>> = vec![wasm_handler("faulty", Limits::default(), &[])];
    let (pipeline, _) = memory_pipeline(
        &queue,
        60_000,
        chain,
        out,
        flaky_dead as Arc<dyn Sink>,
        fast_delivery(4, 4, 2),
    );
    run_until_acked(pipeline, &q, 1).await;
    assert!(q.stats.nacked.load(Ordering::SeqCst) >= 1);
    let dead = dead_q.drain();
    assert_eq!(dead.len(), 1);
    assert_eq!(header(&dead[0], dl::ERROR_CLASS), Some("fatal"));
}

/// A source with a bug: its first pull panics.
struct PanickingSource;

#[async_trait::async_trait]
impl sluice::connector::Source for PanickingSource {
    async fn next_batch(
        &mut self,
        _max: usize,
    ) -> anyhow::Result<Option<Vec<sluice::connector::Delivery>>> {
        panic!("a connector bug");
    }
}

/// A panic in a pipeline's own task ends its run with an error that says so (the host then
/// reports the pipeline failed), never a task that vanished and a run that never returns.
#[tokio::test]
async fn a_panic_in_the_pipeline_task_ends_the_run_with_an_error() {
    let (out, _) = memory_sink("panic-out");
    let (dl, _) = memory_sink("panic-dl");
    let (pipeline, _) = test_pipeline(
        Box::new(PanickingSource),
        Vec::new(),
        out,
        dl,
        fast_delivery(16, 8, 1),
    );
    let err = pipeline
        .run(tokio_util::sync::CancellationToken::new())
        .await
        .expect_err("the run fails");
    assert!(
        format!("{err:#}").contains("pipeline test: panicked: a connector bug"),
        "{err:#}"
    );
}

/// Refuses for good every output whose payload starts with `bad`, asks once for a retry of
/// `m-0003`, and hangs (never answers) on its first `hangs` sends; forwards the rest.
struct PickySink {
    inner: Arc<dyn Sink>,
    retried: std::sync::atomic::AtomicBool,
    hangs: std::sync::atomic::AtomicU32,
}

impl PickySink {
    fn new(inner: Arc<dyn Sink>, hangs: u32) -> Arc<Self> {
        Arc::new(PickySink {
            inner,
            retried: Default::default(),
            hangs: std::sync::atomic::AtomicU32::new(hangs),
        })
    }
}

#[async_trait::async_trait]
impl Sink for PickySink {
    async fn send(&self, batch: &[Output]) -> sluice::connector::SendResult {
        if self
            .hangs
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            std::future::pending::<()>().await;
        }
        let mut status = sluice::connector::BatchStatus::new(batch.len());
        let mut pass = Vec::new();
        for (i, out) in batch.iter().enumerate() {
            if out.payload.starts_with(b"BAD") {
                status.reject(i, "the picky sink never takes BAD payloads");
            } else if &out.payload[..] == b"M-0003" && !self.retried.swap(true, Ordering::SeqCst) {
                status.retry(i, "not now");
            } else {
                pass.push(out.clone());
            }
        }
        self.inner.send(&pass).await?;
        status.finish()
    }
}

/// A sink that refuses some outputs for good and asks for one to be retried: the refused
/// deliveries alone are dead-lettered (class `sink-rejected`, the sink's reason), only the
/// retryable output is sent again (its batch-mates are not duplicated), nothing is nacked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_refusal_dead_letters_only_its_delivery_and_a_retry_resends_only_what_failed() {
    let mut inputs = numbered("m", 40);
    for i in (0..40).step_by(8) {
        inputs[i] = format!("bad-{i}").into_bytes();
    }
    let (queue, q) = queue_with("picky", &refs(&inputs));
    let (out, out_q) = memory_sink("picky-out");
    let (dead, dead_q) = memory_sink("picky-dead");
    let picky = PickySink::new(out, 0);
    let chain: Vec<Arc<dyn Transform>> = vec![wasm_handler("uppercase", Limits::default(), &[])];
    let (pipeline, stats) =
        memory_pipeline(&queue, 60_000, chain, picky, dead, fast_delivery(16, 8, 3));
    assert_eq!(run_until_acked(pipeline, &q, 40).await, RunEnd::Drained);

    let expected: Vec<String> = inputs
        .iter()
        .filter(|p| !p.starts_with(b"bad"))
        .map(|p| String::from_utf8_lossy(p).to_uppercase())
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(
        sorted_payloads(&out_q.drain()),
        expected,
        "each good output exactly once"
    );
    let dead = dead_q.drain();
    assert_eq!(dead.len(), 5);
    for d in &dead {
        assert!(
            d.payload.starts_with(b"bad-"),
            "the original, not the output"
        );
        assert_eq!(header(d, dl::ERROR_CLASS), Some("sink-rejected"));
        assert!(
            header(d, dl::REASON).is_some_and(|r| r.contains("never takes BAD")),
            "{:?}",
            header(d, dl::REASON)
        );
    }
    assert_eq!(q.stats.nacked.load(Ordering::SeqCst), 0);
    assert_eq!(q.outstanding(), 0);
    assert_eq!(stats.acked.load(Ordering::SeqCst), 35);
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 5);
    assert_eq!(stats.sink("out").rejected.load(Ordering::SeqCst), 5);
    assert_eq!(stats.sink_errors.load(Ordering::SeqCst), 1, "the one retry");
}

/// A sink that never answers is given up on at `delivery.sink_timeout_ms`: the error names the
/// sink and the setting, the write is retried, and once the sink answers everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_never_answers_is_given_up_on_at_the_sink_timeout() {
    let inputs = numbered("m", 20);
    let (queue, q) = queue_with("hang", &refs(&inputs));
    let (out, out_q) = memory_sink("hang-out");
    let (dead, dead_q) = memory_sink("hang-dead");
    let picky = PickySink::new(out, 2);
    let mut delivery = fast_delivery(8, 4, 5);
    delivery.sink_timeout = Duration::from_millis(200);
    let (pipeline, stats) = memory_pipeline(&queue, 60_000, Vec::new(), picky, dead, delivery);
    assert_eq!(run_until_acked(pipeline, &q, 20).await, RunEnd::Drained);
    let got = sorted_payloads(&out_q.drain());
    let mut expected: Vec<String> = inputs
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    expected.sort();
    // No handler: `m-0003` is lower case, so the picky sink's retry does not apply.
    assert_eq!(got, expected, "each exactly once");
    assert!(dead_q.drain().is_empty());
    assert!(stats.sink_errors.load(Ordering::SeqCst) >= 2);
    assert!(
        stats.last_errors().iter().any(|e| e
            .message
            .contains("sink `out` did not confirm within 200 ms")),
        "{:?}",
        stats.last_errors()
    );
}

/// Refuses for good the first `refusals` outputs it is given, then forwards.
struct RefusesFirst {
    inner: Arc<dyn Sink>,
    refusals: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl Sink for RefusesFirst {
    async fn send(&self, batch: &[Output]) -> sluice::connector::SendResult {
        let mut status = sluice::connector::BatchStatus::new(batch.len());
        let mut pass = Vec::new();
        for (i, out) in batch.iter().enumerate() {
            if self
                .refusals
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                status.reject(i, "refused once");
            } else {
                pass.push(out.clone());
            }
        }
        self.inner.send(&pass).await?;
        status.finish()
    }
}

/// The dead-letter sink refuses a copy for good: nothing is acked that is not somewhere. From
/// a source that redelivers, the delivery is nacked and dead-lettered on its next attempt; from
/// one that cannot take it back, the copy is sent again instead (a nack would lose it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_copy_the_dead_letter_sink_refuses_is_never_lost() {
    for source_redelivers in [true, false] {
        let (queue, q) = queue_with("dlrefuse", &[b"fatal"]);
        let (out, out_q) = memory_sink("dlrefuse-out");
        let (dead, dead_q) = memory_sink("dlrefuse-dead");
        let dead = Arc::new(RefusesFirst {
            inner: dead,
            refusals: std::sync::atomic::AtomicU32::new(1),
        });
        let chain: Vec<Arc<dyn Transform>> = vec![wasm_handler("faulty", Limits::default(), &[])];
        let (mut pipeline, stats) =
            memory_pipeline(&queue, 60_000, chain, out, dead, fast_delivery(4, 4, 3));
        pipeline.source_redelivers = source_redelivers;
        run_until_acked(pipeline, &q, 1).await;
        let dead = dead_q.drain();
        assert_eq!(dead.len(), 1, "redelivers: {source_redelivers}");
        assert_eq!(header(&dead[0], dl::ERROR_CLASS), Some("fatal"));
        assert!(out_q.drain().is_empty());
        assert_eq!(
            stats
                .sink(sluice::engine::DEAD_LETTER_SINK)
                .rejected
                .load(Ordering::SeqCst),
            1
        );
        let nacked = q.stats.nacked.load(Ordering::SeqCst);
        if source_redelivers {
            assert_eq!(
                nacked, 1,
                "handed back, then dead-lettered on the next attempt"
            );
        } else {
            assert_eq!(nacked, 0, "kept, and sent again");
        }
        assert_eq!(q.outstanding(), 0);
    }
}
