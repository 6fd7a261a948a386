//! RabbitMQ restarts mid-stream (`rabbitmqctl stop_app`, then `start_app`): the pipeline
//! reconnects with backoff and nothing is lost. Runs alone (`.config/nextest.toml`), because it takes
//! the broker away from everything else for a moment; it always starts it again.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use sluice::engine::Transform;
use sluice_tests::brokers::RabbitMqBroker;
use sluice_tests::conformance::Broker;
use sluice_tests::*;

fn rabbitmqctl(arg: &str) {
    let status = Command::new("rabbitmqctl")
        .arg(arg)
        .status()
        .expect("rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {arg} failed");
}

/// Starts the broker's application again however the test ends.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_survives_a_broker_restart_without_losing_messages() {
    let b = RabbitMqBroker::default();
    let (input, output) = (
        b.fresh_queue("bounce-in").await,
        b.fresh_queue("bounce-out").await,
    );
    // Persistent messages in durable queues: what a broker restart keeps.
    let ch = b.channel().await;
    for i in 0..1000 {
        let props = BasicProperties::default().with_delivery_mode(2);
        ch.basic_publish(
            "".into(),
            input.as_str().into(),
            BasicPublishOptions::default(),
            format!("b-{i:03}").as_bytes(),
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let (dead, dead_q) = memory_sink("bounce-dead");
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
    wait_until("some output", Duration::from_secs(30), || {
        stats.outputs.load(Ordering::SeqCst) >= 50
    })
    .await;

    let guard = Restart;
    let bounced = tokio::task::spawn_blocking(|| {
        rabbitmqctl("stop_app");
        std::thread::sleep(Duration::from_secs(1));
        rabbitmqctl("start_app");
    });
    bounced.await.unwrap();
    drop(guard);
    // Informative only (no timing assertions): how far the stream had got.
    eprintln!(
        "outputs when the broker came back: {} of 1000",
        stats.outputs.load(Ordering::SeqCst)
    );

    // A fresh client: the one above lost its connection with the restart. Read until every
    // message arrived (duplicates from the restart are expected, and do not count).
    let b = RabbitMqBroker::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut received = 0;
    let started = std::time::Instant::now();
    while seen.len() < 1000 && started.elapsed() < Duration::from_secs(60) {
        for r in b.drain(&output, 1).await {
            received += 1;
            seen.insert(String::from_utf8_lossy(&r.payload).into_owned());
        }
    }
    running.stop().await;
    let missing: Vec<String> = (0..1000)
        .map(|i| format!("b-{i:03}"))
        .filter(|m| !seen.contains(m))
        .collect();
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
    eprintln!(
        "received {received} for 1000 messages ({} duplicates)",
        received - 1000
    );
    assert!(
        stats.source_errors.load(Ordering::SeqCst) >= 1,
        "the source saw the connection go and reconnected"
    );
    assert_eq!(
        b.depth(&input).await,
        0,
        "everything acknowledged in the end"
    );
    assert!(
        dead_q.drain().is_empty(),
        "an outage is not a reason to dead-letter"
    );
}
