//! The SQS server (moto) goes away mid-stream and comes back. moto keeps its queues in memory, so
//! a restarted moto is empty: the test recreates the queues, and it reads what reached the SQS
//! sink before the outage itself, so that it counts what the *pipeline* might lose, not what the
//! emulator forgets. Runs alone (`.config/nextest.toml`), because it takes moto away from everything
//! else for a moment; it always starts it again.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice::engine::PipelineStats;
use sluice_tests::conformance::Broker;
use sluice_tests::sqs::SqsBroker;
use sluice_tests::*;

const MOTO: u16 = 5000;

fn listening() -> bool {
    std::net::TcpStream::connect(("127.0.0.1", MOTO)).is_ok()
}

fn stop_moto() {
    let killed = Command::new("pkill")
        .args(["-f", "moto_server"])
        .status()
        .expect("pkill");
    assert!(killed.success(), "moto was running");
    for _ in 0..100 {
        if !listening() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto did not stop");
}

/// scripts/brokers.sh starts whatever test broker is down (moto among them).
fn start_brokers() {
    let status = Command::new(repo_root().join("scripts/brokers.sh"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("scripts/brokers.sh");
    assert!(status.success(), "scripts/brokers.sh failed");
}

struct StartAgain;

impl Drop for StartAgain {
    fn drop(&mut self) {
        if !listening() {
            start_brokers();
        }
    }
}

async fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(120), cond).await;
}

async fn take(b: &SqsBroker, queue: &str, seen: &mut BTreeSet<String>) {
    for r in b.drain(queue, 1).await {
        seen.insert(String::from_utf8_lossy(&r.payload).into_owned());
    }
}

async fn recreate(b: &SqsBroker, queue: &str) {
    b.client()
        .create_queue()
        .queue_name(queue)
        .send()
        .await
        .expect("recreate the queue in the restarted moto");
}

/// Sink side: a durable source (memory, with redelivery) feeding an SQS sink. While moto is down
/// every send fails and the deliveries go back to the source; when it is back they are sent
/// again. Every message reaches SQS; none is acknowledged without being sent.
/// Both sides, one after the other (each takes moto away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_outages_lose_nothing() {
    let _guard = StartAgain;
    an_sqs_sink_outage_loses_nothing_the_source_handed_over().await;
    an_sqs_source_reconnects_after_an_outage().await;
}

async fn an_sqs_sink_outage_loses_nothing_the_source_handed_over() {
    let b = SqsBroker::default();
    let output = b.fresh_queue("outage-out").await;
    let sent: Vec<String> = (0..300).map(|i| format!("o-{i:03}")).collect();
    let (input, q) = queue_with(
        "outage-in",
        &sent.iter().map(|s| s.as_bytes()).collect::<Vec<_>>(),
    );
    let source = sluice::connector::SourceFactory::build(
        &sluice::connector::memory::MemorySourceConfig {
            queue: input,
            visibility_timeout_ms: 60_000,
        },
        &sluice::connector::BuildContext {
            pipeline: "outage".into(),
            max_in_flight: 16,
            base_dir: repo_root(),
        },
    )
    .unwrap();
    let (dead, dead_q) = memory_sink("outage-dead");
    let (p, stats) = test_pipeline(
        source,
        Vec::new(),
        b.sink(&output),
        dead,
        fast_delivery(16, 8, 3),
    );
    let running = start(p);
    wait_for("some sent", || stats.outputs.load(Ordering::SeqCst) >= 50).await;

    // Pause, let what is in flight settle, and read what SQS holds before moto forgets it.
    stats.set_paused(true);
    wait_for("nothing in flight", || {
        PipelineStats::get(&stats.in_flight) == 0
    })
    .await;
    let mut seen = BTreeSet::new();
    while seen.len() < stats.outputs.load(Ordering::SeqCst) as usize {
        take(&b, &output, &mut seen).await;
    }
    let before = seen.len();

    tokio::task::spawn_blocking(stop_moto).await.unwrap();
    stats.set_paused(false);
    // The outage lasts until a batch has used up its attempts and gone back to the source, so
    // that the nack path is exercised however fast moto comes back.
    wait_for("a batch nacked while moto was down", || {
        stats.nacked.load(Ordering::SeqCst) >= 1
    })
    .await;
    tokio::task::spawn_blocking(start_brokers).await.unwrap();
    recreate(&b, &output).await;

    wait_for("all acknowledged", || {
        q.stats.acked.load(Ordering::SeqCst) == 300
    })
    .await;
    running.stop().await;
    while seen.len() < sent.len() {
        let n = seen.len();
        take(&b, &output, &mut seen).await;
        if seen.len() == n {
            break;
        }
    }
    let missing: Vec<&String> = sent.iter().filter(|m| !seen.contains(*m)).collect();
    assert!(missing.is_empty(), "lost across the outage: {missing:?}");
    eprintln!(
        "{before} read before the outage; sink errors {}, nacked {}",
        stats.sink_errors.load(Ordering::SeqCst),
        stats.nacked.load(Ordering::SeqCst)
    );
    assert!(
        stats.nacked.load(Ordering::SeqCst) >= 1,
        "deliveries went back to the source"
    );
    assert!(
        dead_q.drain().is_empty(),
        "an outage is not a reason to dead-letter"
    );
}

/// Source side: an SQS source whose server goes away keeps retrying with backoff and picks up
/// what arrives once it is back.
async fn an_sqs_source_reconnects_after_an_outage() {
    let b = SqsBroker::default();
    let input = b.fresh_queue("outage-src").await;
    for i in 0..20 {
        b.publish(&input, format!("s-{i:02}").as_bytes(), &[]).await;
    }
    let (out, out_q) = memory_sink("outage-src-out");
    let (dead, _) = memory_sink("outage-src-dead");
    let (p, stats) = test_pipeline(
        b.source(&input, 16),
        Vec::new(),
        out,
        dead,
        fast_delivery(16, 8, 3),
    );
    let running = start(p);
    wait_for("the first 20", || stats.acked.load(Ordering::SeqCst) == 20).await;

    tokio::task::spawn_blocking(stop_moto).await.unwrap();
    wait_for("the source noticed", || {
        stats.source_errors.load(Ordering::SeqCst) >= 1
    })
    .await;
    tokio::task::spawn_blocking(start_brokers).await.unwrap();
    recreate(&b, &input).await;
    for i in 20..40 {
        b.publish(&input, format!("s-{i:02}").as_bytes(), &[]).await;
    }
    wait_for("the next 20", || stats.acked.load(Ordering::SeqCst) == 40).await;
    running.stop().await;
    let expected: Vec<String> = (0..40).map(|i| format!("s-{i:02}")).collect();
    assert_eq!(sorted_payloads(&out_q.drain()), expected, "each once");
    assert_eq!(b.depth(&input).await, 0);
}
