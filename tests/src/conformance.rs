//! The conformance suite every connector that acknowledges must pass (in the style of Benthos'
//! integration suite): a [`Broker`] says how to reach one, and each suite function runs a real
//! pipeline against it and counts messages in and out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use sluice::connector::{Sink, Source};
use sluice::engine::{
    ErrorClass, Failure, Outcome, Pipeline, PipelineStats, RunEnd, Transform,
    dead_letter_headers as dl,
};
use sluice::message::{Message, Output};
use sluice::plugin::Limits;

use crate::{
    FnTransform, GateSink, StampingTransform, fast_delivery, start, test_pipeline, wait_until,
    wasm_handler,
};

/// A message read back from a queue.
#[derive(Debug, Clone)]
pub struct Received {
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// How the suite reaches one broker.
#[async_trait]
pub trait Broker: Send + Sync {
    /// A new, empty queue.
    async fn fresh_queue(&self, prefix: &str) -> String;
    async fn publish(&self, queue: &str, payload: &[u8], headers: &[(&str, &str)]);
    fn source(&self, queue: &str, max_in_flight: usize) -> Box<dyn Source>;
    fn sink(&self, queue: &str) -> Arc<dyn Sink>;
    /// Take what `queue` holds, waiting (up to 30 s) until `expect` messages arrived.
    async fn drain(&self, queue: &str, expect: usize) -> Vec<Received>;
    /// Messages waiting in `queue` (read after a pipeline stopped: nothing is in flight then).
    async fn depth(&self, queue: &str) -> usize;
    /// How long a suite step may take. Not a timing assertion: a broker emulator that is slow
    /// (moto serves about a hundred SQS calls a second) gets more time.
    fn patience(&self) -> Duration {
        Duration::from_secs(60)
    }
    /// Messages the sequential and parallel steps send (half of it for the restart): 1,000, or
    /// fewer for an emulator that serves about a hundred calls a second (moto), where 1,000 one
    /// at a time would take five minutes of the suite and prove nothing more.
    fn load(&self) -> usize {
        1000
    }
    /// How this broker's sink refuses an output for good, for the outputs bound for `queue`
    /// ([`a_refused_output_is_dead_lettered_alone`]; brokers that refuse nothing do not run it).
    fn refusal(&self, queue: &str) -> Refusal {
        panic!("no refusal is defined for this broker (queue {queue})")
    }
}

/// Shapes an output for a sink: `true` for the one to be refused.
pub type Shape = Arc<dyn Fn(&mut Output, bool) + Send + Sync>;

/// What makes a broker's sink refuse one output for good.
pub struct Refusal {
    /// The sink for the output queue.
    pub sink: Arc<dyn Sink>,
    /// Shapes an output for that sink: `refused` says whether it is the one to be refused.
    pub shape: Shape,
    /// A fragment of the reason the sink gives.
    pub reason: &'static str,
}

fn pipeline(
    source: Box<dyn Source>,
    chain: Vec<Arc<dyn Transform>>,
    out: Arc<dyn Sink>,
    dead: Arc<dyn Sink>,
    max_in_flight: usize,
    batch_size: usize,
) -> (Pipeline, Arc<PipelineStats>) {
    test_pipeline(
        source,
        chain,
        out,
        dead,
        fast_delivery(max_in_flight, batch_size, 3),
    )
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

async fn publish_all<B: Broker + ?Sized>(b: &B, queue: &str, payloads: &[String]) {
    for p in payloads {
        b.publish(queue, p.as_bytes(), &[("n", p)]).await;
    }
}

fn payloads(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect()
}

/// [`Broker::load`] (1,000) messages one at a time (window 1) through a WASM handler, broker to
/// broker: each arrives exactly once, in order, headers intact, and the input is fully
/// acknowledged.
pub async fn sequential<B: Broker + ?Sized>(b: &B) {
    let (input, output, dead) = (
        b.fresh_queue("seq-in").await,
        b.fresh_queue("seq-out").await,
        b.fresh_queue("seq-dead").await,
    );
    let n = b.load();
    let sent = numbered("seq", n);
    publish_all(b, &input, &sent).await;
    let chain = vec![wasm_handler("uppercase", Limits::default(), &[]) as Arc<dyn Transform>];
    let (p, stats) = pipeline(
        b.source(&input, 1),
        chain,
        b.sink(&output),
        b.sink(&dead),
        1,
        1,
    );
    let running = start(p);
    wait_until("all acked", b.patience(), || {
        stats.acked.load(Ordering::SeqCst) == n as u64
    })
    .await;
    assert_eq!(running.stop().await, RunEnd::Drained);
    let got = b.drain(&output, n).await;
    let expected: Vec<String> = sent.iter().map(|s| s.to_uppercase()).collect();
    assert_eq!(payloads(&got), expected, "each exactly once, in order");
    assert!(
        got.iter()
            .zip(&sent)
            .all(|(r, s)| r.headers.get("n") == Some(s)),
        "headers intact"
    );
    assert_eq!(b.depth(&input).await, 0, "input fully acknowledged");
    assert_eq!(b.depth(&dead).await, 0);
}

/// 1,000 messages with 64 in flight, every tenth failing transiently on its first attempt: all
/// arrive exactly once after retries.
pub async fn parallel_with_transient_failures<B: Broker + ?Sized>(b: &B) {
    let (input, output, dead) = (
        b.fresh_queue("par-in").await,
        b.fresh_queue("par-out").await,
        b.fresh_queue("par-dead").await,
    );
    let n = b.load();
    let sent = numbered("par", n);
    publish_all(b, &input, &sent).await;
    let flaky: Arc<dyn Transform> = Arc::new(FnTransform {
        name: "every-tenth-fails-once".into(),
        f: |m: &Message| {
            let n: usize = String::from_utf8_lossy(&m.payload[4..])
                .parse()
                .unwrap_or(0);
            if n.is_multiple_of(10) && m.meta.attempt == 1 {
                Outcome::Failed(Failure::new(ErrorClass::Transient, "first attempt fails"))
            } else {
                Outcome::Outputs(vec![Output::pass_through(m)])
            }
        },
    });
    let (p, stats) = pipeline(
        b.source(&input, 64),
        vec![flaky],
        b.sink(&output),
        b.sink(&dead),
        64,
        16,
    );
    let running = start(p);
    wait_until("all acked", b.patience(), || {
        stats.acked.load(Ordering::SeqCst) == n as u64
    })
    .await;
    running.stop().await;
    let mut got = payloads(&b.drain(&output, n).await);
    got.sort();
    assert_eq!(got, sent, "each exactly once");
    assert_eq!(stats.retries.load(Ordering::SeqCst), n.div_ceil(10) as u64);
    assert_eq!(b.depth(&input).await, 0);
    assert_eq!(b.depth(&dead).await, 0);
}

/// The host stops mid-stream and a new one takes over: nothing lost, duplicates at most the
/// in-flight window.
pub async fn restart_mid_stream<B: Broker + ?Sized>(b: &B) {
    let (input, output, dead) = (
        b.fresh_queue("rs-in").await,
        b.fresh_queue("rs-out").await,
        b.fresh_queue("rs-dead").await,
    );
    let n = b.load() / 2;
    let sent = numbered("rs", n);
    publish_all(b, &input, &sent).await;
    let slow = Arc::new(StampingTransform {
        seen: Default::default(),
        delay: Duration::from_millis(2),
    });
    let (p, stats) = pipeline(
        b.source(&input, 32),
        vec![slow.clone() as Arc<dyn Transform>],
        b.sink(&output),
        b.sink(&dead),
        32,
        8,
    );
    let running = start(p);
    wait_until("some output", b.patience(), || {
        stats.outputs.load(Ordering::SeqCst) >= (n / 5) as u64
    })
    .await;
    running.stop().await;
    let first = stats.acked.load(Ordering::SeqCst);
    assert!(first < n as u64, "stopped mid-stream");
    let (p, stats) = pipeline(
        b.source(&input, 32),
        vec![slow as Arc<dyn Transform>],
        b.sink(&output),
        b.sink(&dead),
        32,
        8,
    );
    let running = start(p);
    wait_until("the rest", b.patience(), || {
        first + stats.acked.load(Ordering::SeqCst) >= n as u64
    })
    .await;
    running.stop().await;
    let got = payloads(&b.drain(&output, n).await);
    let mut distinct = got.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct, sent, "nothing lost");
    assert!(
        got.len() - n <= 32,
        "duplicates at most the window: {}",
        got.len() - n
    );
    assert_eq!(b.depth(&input).await, 0);
}

/// A poison message reaches the dead-letter queue byte for byte with its reason headers; the
/// others are unaffected.
pub async fn poison_to_dead_letter<B: Broker + ?Sized>(b: &B) {
    let (input, output, dead) = (
        b.fresh_queue("p-in").await,
        b.fresh_queue("p-out").await,
        b.fresh_queue("p-dead").await,
    );
    b.publish(&input, b"ok-1", &[]).await;
    b.publish(&input, b"trap", &[("origin", "billing")]).await;
    b.publish(&input, b"ok-2", &[]).await;
    let chain = vec![wasm_handler("faulty", Limits::default(), &[]) as Arc<dyn Transform>];
    let (p, stats) = pipeline(
        b.source(&input, 8),
        chain,
        b.sink(&output),
        b.sink(&dead),
        8,
        8,
    );
    let running = start(p);
    wait_until("3 settled", b.patience(), || {
        stats.settled.load(Ordering::SeqCst) == 3
    })
    .await;
    running.stop().await;
    let mut ok = payloads(&b.drain(&output, 2).await);
    ok.sort();
    assert_eq!(ok, vec!["ok-1", "ok-2"]);
    let poison = b.drain(&dead, 1).await;
    assert_eq!(poison.len(), 1);
    assert_eq!(poison[0].payload, b"trap", "byte for byte");
    let h = &poison[0].headers;
    assert_eq!(h.get("origin").map(String::as_str), Some("billing"));
    assert_eq!(h.get(dl::ERROR_CLASS).map(String::as_str), Some("trap"));
    assert!(
        h.get(dl::REASON)
            .is_some_and(|r| r.contains("asked to trap")),
        "{h:?}"
    );
    assert_eq!(h.get(dl::TOPIC).map(String::as_str), Some(input.as_str()));
    assert_eq!(b.depth(&input).await, 0);
}

/// One output of 20 is one the broker refuses for good (too large, a routing key AMQP cannot
/// carry): its delivery alone is dead-lettered with class `sink-rejected` and the sink's reason,
/// its batch-mates are delivered once, nothing is nacked, and in = out + dead-lettered.
pub async fn a_refused_output_is_dead_lettered_alone<B: Broker + ?Sized>(b: &B) {
    let (input, output, dead) = (
        b.fresh_queue("rej-in").await,
        b.fresh_queue("rej-out").await,
        b.fresh_queue("rej-dead").await,
    );
    let sent = numbered("rej", 20);
    publish_all(b, &input, &sent).await;
    let refusal = b.refusal(&output);
    let shape = refusal.shape.clone();
    let shaping: Arc<dyn Transform> = Arc::new(FnTransform {
        name: "shape-for-the-sink".into(),
        f: move |m: &Message| {
            let mut out = Output::pass_through(m);
            shape(&mut out, m.payload.ends_with(b"-0007"));
            Outcome::Outputs(vec![out])
        },
    });
    let (p, stats) = pipeline(
        b.source(&input, 16),
        vec![shaping],
        refusal.sink.clone(),
        b.sink(&dead),
        16,
        8,
    );
    let running = start(p);
    wait_until("20 settled", b.patience(), || {
        stats.settled.load(Ordering::SeqCst) == 20
    })
    .await;
    assert_eq!(running.stop().await, RunEnd::Drained);
    let mut got = payloads(&b.drain(&output, 19).await);
    got.sort();
    let expected: Vec<String> = sent
        .iter()
        .filter(|s| !s.ends_with("-0007"))
        .cloned()
        .collect();
    assert_eq!(got, expected, "the batch-mates delivered once each");
    let dead_letters = b.drain(&dead, 1).await;
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(
        dead_letters[0].payload, b"rej-0007",
        "the original, byte for byte"
    );
    let h = &dead_letters[0].headers;
    assert_eq!(
        h.get(dl::ERROR_CLASS).map(String::as_str),
        Some("sink-rejected")
    );
    assert!(
        h.get(dl::REASON)
            .is_some_and(|r| r.contains(refusal.reason)),
        "the sink's reason: {h:?}"
    );
    assert_eq!(stats.acked.load(Ordering::SeqCst), 19);
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 1);
    assert_eq!(
        stats.dead_lettered_by_class[ErrorClass::SinkRejected.index()].load(Ordering::SeqCst),
        1
    );
    assert_eq!(
        stats.nacked.load(Ordering::SeqCst),
        0,
        "nothing went round again"
    );
    assert_eq!(stats.sink("out").rejected.load(Ordering::SeqCst), 1);
    assert_eq!(b.depth(&input).await, 0, "input fully acknowledged");
    assert_eq!(b.depth(&output).await, 0, "nothing more arrived");
}

/// With the sink blocked, exactly `max_in_flight` deliveries are pulled; unblocked, all arrive.
pub async fn back_pressure<B: Broker + ?Sized>(b: &B) {
    let (input, output, dead) = (
        b.fresh_queue("bp-in").await,
        b.fresh_queue("bp-out").await,
        b.fresh_queue("bp-dead").await,
    );
    let sent = numbered("bp", 100);
    publish_all(b, &input, &sent).await;
    let gate = GateSink::closed(b.sink(&output));
    let (p, stats) = pipeline(
        b.source(&input, 10),
        Vec::new(),
        gate.clone(),
        b.sink(&dead),
        10,
        4,
    );
    let running = start(p);
    wait_until("the window to fill", b.patience(), || {
        stats.received.load(Ordering::SeqCst) == 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stats.received.load(Ordering::SeqCst),
        10,
        "never more than the window"
    );
    assert_eq!(stats.in_flight.load(Ordering::SeqCst), 10);
    gate.open();
    wait_until("100 acked", b.patience(), || {
        stats.acked.load(Ordering::SeqCst) == 100
    })
    .await;
    running.stop().await;
    let mut got = payloads(&b.drain(&output, 100).await);
    got.sort();
    assert_eq!(got, sent);
    assert!(gate.max_waiting.load(Ordering::SeqCst) <= 10);
}

/// Every suite function as a `#[tokio::test]`, for one broker.
#[macro_export]
macro_rules! conformance_tests {
    ($broker:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_sequential() {
            $crate::conformance::sequential(&$broker).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_parallel_with_transient_failures() {
            $crate::conformance::parallel_with_transient_failures(&$broker).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_restart_mid_stream() {
            $crate::conformance::restart_mid_stream(&$broker).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_poison_to_dead_letter() {
            $crate::conformance::poison_to_dead_letter(&$broker).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_back_pressure() {
            $crate::conformance::back_pressure(&$broker).await;
        }
    };
}

/// [`a_refused_output_is_dead_lettered_alone`], for brokers whose sinks refuse outputs for good
/// (those that implement [`Broker::refusal`]).
#[macro_export]
macro_rules! refusal_tests {
    ($broker:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_a_refused_output_is_dead_lettered_alone() {
            $crate::conformance::a_refused_output_is_dead_lettered_alone(&$broker).await;
        }
    };
}

/// For brokers that report their queue's depth (not run for `memory`): with the sink blocked and
/// a window of 10, 40 of 50 messages wait in the queue and the pipeline's lag says
/// `while_blocked` (40, or 50 where the broker counts messages in flight too); once the sink
/// opens, all are acked and the lag falls to 0. The depth is read every 5 s.
pub async fn depth_is_reported_as_lag<B: Broker + ?Sized>(b: &B, while_blocked: u64) {
    let started_ms = sluice::message::now_ms();
    let (input, output, dead) = (
        b.fresh_queue("depth-in").await,
        b.fresh_queue("depth-out").await,
        b.fresh_queue("depth-dead").await,
    );
    publish_all(b, &input, &numbered("depth", 50)).await;
    let gate = GateSink::closed(b.sink(&output));
    let (p, stats) = pipeline(
        b.source(&input, 10),
        Vec::new(),
        gate.clone(),
        b.sink(&dead),
        10,
        5,
    );
    let running = start(p);
    let patience = b.patience().max(Duration::from_secs(30));
    wait_until(
        "the depth reported while the sink is blocked",
        patience,
        || stats.lag() == Some(while_blocked),
    )
    .await;
    gate.open();
    wait_until("50 acked", patience, || {
        stats.acked.load(Ordering::SeqCst) == 50
    })
    .await;
    wait_until("the depth back to 0", patience, || stats.lag() == Some(0)).await;
    // The reading says when it was taken: during this test.
    let (_, read_ms) = stats.lag_read().expect("a reading");
    assert!(
        (started_ms..=sluice::message::now_ms()).contains(&read_ms),
        "lag read at {read_ms}, the test ran from {started_ms}"
    );
    running.stop().await;
}

/// The broker goes away mid-stream and comes back (`bounce` stops and starts it, blocking):
/// the pipeline reconnects with backoff, nothing is lost, nothing is dead-lettered for the
/// outage, and the input is fully acknowledged in the end. Duplicates are allowed (what was in
/// flight when the broker went).
pub async fn survives_a_broker_restart<B: Broker + ?Sized>(
    b: &B,
    bounce: impl FnOnce() + Send + 'static,
) {
    let (input, output, dead) = (
        b.fresh_queue("bounce-in").await,
        b.fresh_queue("bounce-out").await,
        b.fresh_queue("bounce-dead").await,
    );
    let sent = numbered("bounce", 300);
    publish_all(b, &input, &sent).await;
    let slow = Arc::new(StampingTransform {
        seen: Default::default(),
        delay: Duration::from_millis(5),
    });
    let (p, stats) = pipeline(
        b.source(&input, 16),
        vec![slow as Arc<dyn Transform>],
        b.sink(&output),
        b.sink(&dead),
        16,
        8,
    );
    let running = start(p);
    wait_until("some output", b.patience(), || {
        stats.outputs.load(Ordering::SeqCst) >= 30
    })
    .await;
    tokio::task::spawn_blocking(bounce).await.unwrap();
    // Informative only (no timing assertions): how far the stream had got.
    eprintln!(
        "outputs when the broker came back: {} of 300",
        stats.outputs.load(Ordering::SeqCst)
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut received = 0;
    let started = std::time::Instant::now();
    while seen.len() < sent.len() && started.elapsed() < b.patience() * 2 {
        for r in b.drain(&output, 1).await {
            received += 1;
            seen.insert(String::from_utf8_lossy(&r.payload).into_owned());
        }
    }
    wait_until("every input settled", b.patience(), || {
        stats.acked.load(Ordering::SeqCst) >= 300
    })
    .await;
    running.stop().await;
    let missing: Vec<&String> = sent.iter().filter(|m| !seen.contains(*m)).collect();
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
    // Informative: a client library that retries on its own (Azure's SDK does) may hide a short
    // outage from the pipeline entirely; `bounce` itself checks that the broker went away.
    eprintln!(
        "received {received} for 300 messages ({} duplicates); source errors {}, sink errors {}",
        received - 300,
        stats.source_errors.load(Ordering::SeqCst),
        stats.sink_errors.load(Ordering::SeqCst)
    );
    assert_eq!(
        b.depth(&input).await,
        0,
        "everything acknowledged in the end"
    );
    assert_eq!(
        b.depth(&dead).await,
        0,
        "an outage is not a reason to dead-letter"
    );
}
