//! The Kafka-protocol broker restarts mid-stream (`noida-db stop kafka`, then `start kafka`; its
//! data is on disk): the pipeline rides it out (librdkafka reconnects, the sink's failed writes are
//! retried) and nothing is lost. Runs alone (`.config/nextest.toml`), because it takes the broker away
//! from everything else for a moment; it always starts it again.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::Message as _;
use sluice::engine::Transform;
use sluice_tests::conformance::Broker;
use sluice_tests::kafka::{KAFKA_BROKERS, KafkaBroker, group_of};
use sluice_tests::*;

fn data_dir() -> String {
    let state =
        std::env::var("SLUICE_BROKER_STATE").unwrap_or_else(|_| "/var/tmp/sluice-brokers".into());
    format!("{state}/noida")
}

fn noida(verb: &str) {
    let status = Command::new("noida-db")
        .args([verb, "kafka", "--data-dir", &data_dir()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("noida-db (scripts/brokers.sh installs it)");
    assert!(status.success(), "noida-db {verb} kafka failed");
}

/// Starts the broker again however the test ends.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = Command::new("noida-db")
            .args(["start", "kafka", "--data-dir", &data_dir()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_survives_a_kafka_broker_restart_without_losing_messages() {
    assert_eq!(KAFKA_BROKERS, "127.0.0.1:9092");
    let b = KafkaBroker::default();
    let (input, output) = (
        b.fresh_queue("bounce-in").await,
        b.fresh_queue("bounce-out").await,
    );
    for i in 0..1000 {
        b.publish(&input, format!("b-{i:03}").as_bytes(), &[]).await;
    }
    let (dead, dead_q) = memory_sink("kafka-bounce-dead");
    let slow = Arc::new(StampingTransform {
        seen: Default::default(),
        delay: Duration::from_millis(5),
    });
    let (p, stats) = test_pipeline(
        b.source(&input, 32),
        vec![slow as Arc<dyn Transform>],
        b.sink(&output),
        dead,
        fast_delivery(32, 8, 3),
    );
    let running = start(p);
    wait_until("some output", Duration::from_secs(60), || {
        stats.outputs.load(Ordering::SeqCst) >= 50
    })
    .await;

    let guard = Restart;
    tokio::task::spawn_blocking(|| {
        noida("stop");
        std::thread::sleep(Duration::from_secs(2));
        noida("start");
    })
    .await
    .unwrap();
    drop(guard);
    eprintln!(
        "outputs when the broker came back: {} of 1000",
        stats.outputs.load(Ordering::SeqCst)
    );

    // `acked` counts redeliveries too; the committed offset says every record was settled.
    let committed = || b.committed(&group_of(&input), &input, 0) == Some(1000);
    wait_until(
        "every offset committed",
        Duration::from_secs(120),
        committed,
    )
    .await;
    running.stop().await;

    let got = b.read_all(&output, 1000).await;
    let seen: std::collections::BTreeSet<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap()).into_owned())
        .collect();
    let missing: Vec<String> = (0..1000)
        .map(|i| format!("b-{i:03}"))
        .filter(|m| !seen.contains(m))
        .collect();
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
    eprintln!(
        "received {} for 1000 messages ({} duplicates); sink errors retried: {}",
        got.len(),
        got.len() - 1000,
        stats.sink_errors.load(Ordering::SeqCst)
    );
    assert_eq!(
        b.committed(&group_of(&input), &input, 0),
        Some(1000),
        "everything committed in the end"
    );
    assert!(
        dead_q.drain().is_empty(),
        "an outage is not a reason to dead-letter"
    );
}
