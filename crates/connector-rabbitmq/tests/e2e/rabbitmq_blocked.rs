//! A RabbitMQ broker that stops confirming: a memory alarm (`rabbitmqctl
//! set_vm_memory_high_watermark 0`) blocks every publishing connection, so publisher confirms
//! never come. The sink must fail the batch after `confirm_timeout_ms` rather than wait forever
//! (a send that never returns holds its messages and the pipeline's window for good), and send
//! again once the alarm clears. Runs alone (`.config/nextest.toml`), because the alarm blocks every
//! publisher on the broker; it always clears it again.

use std::process::Command;
use std::time::Duration;

use sluice::connector::rabbitmq::RabbitMqSinkConfig;
use sluice::connector::{BuildContext, SinkFactory as _};
use sluice::message::{Message, Metadata, Output};
use sluice_tests::brokers::{AMQP_URL, RabbitMqBroker};
use sluice_tests::conformance::Broker as _;
use sluice_tests::repo_root;

fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn memory_alarm_on() -> bool {
    rabbitmqctl(&["eval", "rabbit_alarm:get_alarms()."]).contains("memory")
}

async fn wait_for_alarm(on: bool) {
    for _ in 0..100 {
        if memory_alarm_on() == on {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the memory alarm did not turn {}",
        if on { "on" } else { "off" }
    );
}

/// Puts the broker's memory watermark back however the test ends.
struct Watermark(String);

impl Drop for Watermark {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["set_vm_memory_high_watermark", &self.0])
            .status();
    }
}

fn output(payload: &str) -> Output {
    let msg = Message {
        id: payload.into(),
        key: None,
        payload: bytes::Bytes::from(payload.to_owned()),
        headers: Vec::new(),
        meta: Metadata::received_now("test".into(), "test".into()),
    };
    Output::pass_through(&msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_confirms_fails_the_batch_after_the_confirm_timeout() {
    let b = RabbitMqBroker::default();
    let queue = b.fresh_queue("unconfirmed").await;
    let sink = RabbitMqSinkConfig {
        url: AMQP_URL.into(),
        exchange: String::new(),
        routing_key: Some(queue.clone()),
        declare_queue: Some(queue.clone()),
        persistent: true,
        topology: Default::default(),
        tls: Default::default(),
        confirm_timeout_ms: 1000,
    }
    .build(&BuildContext {
        pipeline: "test".into(),
        max_in_flight: 1,
        base_dir: repo_root(),
    })
    .unwrap();
    sink.send(&[output("before")])
        .await
        .expect("confirmed before the alarm");

    // A fraction of the machine's memory, e.g. `0.4` (an absolute setting is put back as 0.4,
    // RabbitMQ's default).
    let previous = rabbitmqctl(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."]);
    let previous = match previous.parse::<f64>() {
        Ok(f) if f > 0.0 => previous,
        _ => "0.4".to_owned(),
    };
    let restore = Watermark(previous);
    rabbitmqctl(&["set_vm_memory_high_watermark", "0"]);
    wait_for_alarm(true).await;
    let blocked = tokio::time::timeout(Duration::from_secs(20), sink.send(&[output("during")]))
        .await
        .expect("the send returns by itself, not by this test's timeout");
    let err = blocked.expect_err("no confirm while the broker is blocked");
    assert!(
        format!("{err:#}").contains("did not confirm the batch within 1000 ms"),
        "{err:#}"
    );

    drop(restore);
    wait_for_alarm(false).await;
    // As the engine does after a failed send: the same batch again, on a new connection.
    sink.send(&[output("during"), output("after")])
        .await
        .expect("confirmed once the alarm cleared");
    sink.close().await.unwrap();

    // Three, or four when the timed-out publish got through after all.
    let mut received = b.drain(&queue, 3).await;
    if b.depth(&queue).await > 0 {
        received.extend(b.drain(&queue, 1).await);
    }
    let got: Vec<String> = received
        .into_iter()
        .map(|r| String::from_utf8(r.payload).unwrap())
        .collect();
    for want in ["before", "during", "after"] {
        assert!(got.iter().any(|g| g == want), "`{want}` missing: {got:?}");
    }
    assert!(
        got.len() <= 4,
        "at most the timed-out publish again: {got:?}"
    );
}
