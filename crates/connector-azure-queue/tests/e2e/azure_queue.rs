//! Azure Queue Storage against Azurite on 127.0.0.1:10001 (started by scripts/brokers.sh): the
//! conformance suite and what is particular to the connector: the poison queue, the 64 KiB limit,
//! plain (non-envelope) messages, connection strings.

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use sluice::config::FieldError;
use sluice::connector::azure_queue::{ConnectionString, Encoding};
use sluice::connector::{BuildContext, SinkFactory, SourceFactory};
use sluice_tests::azure::{AZURITE, AzureBroker, queue_name, sink_config, source_config};
use sluice_tests::conformance::Broker;
use sluice_tests::*;

mod conformance {
    sluice_tests::conformance_tests!(sluice_tests::azure::AzureBroker);
    sluice_tests::refusal_tests!(sluice_tests::azure::AzureBroker);
}

fn ctx() -> BuildContext {
    BuildContext {
        pipeline: "azure-test".into(),
        max_in_flight: 16,
        base_dir: repo_root(),
    }
}

/// The approximate message count counts messages in flight too: all 50 while the sink is blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_is_reported_as_lag_and_falls_to_zero() {
    sluice_tests::conformance::depth_is_reported_as_lag(&AzureBroker, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_dequeued_too_often_moves_to_the_poison_queue_untouched() {
    let b = AzureBroker;
    let queue = b.fresh_queue("crashy").await;
    let poison = format!("{queue}-poison");
    b.create(&poison).await;
    b.send_text(&queue, "keeps crashing the host").await;
    // Simulate hosts that died holding it: receive it with a 1 s visibility, five times.
    let mut cfg = source_config(&queue);
    cfg.envelope = false;
    cfg.encoding = Encoding::Text;
    cfg.visibility_timeout_s = 1;
    cfg.max_dequeue_count = 2;
    for attempt in 1..=2 {
        let mut source = cfg.build(&ctx()).unwrap();
        let d = source.next_batch(1).await.unwrap().unwrap().pop().unwrap();
        assert_eq!(d.message.meta.attempt, attempt);
        std::mem::forget(d.token); // the host "crashed": nothing settles it
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let mut source = cfg.build(&ctx()).unwrap();
    let next = tokio::time::timeout(Duration::from_secs(3), source.next_batch(1)).await;
    assert!(next.is_err(), "the third dequeue is not delivered");
    let moved = b.take_texts(&poison).await;
    assert_eq!(
        moved,
        vec!["keeps crashing the host".to_owned()],
        "moved byte for byte"
    );
    assert_eq!(b.depth(&queue).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_messages_interoperate_and_oversize_ones_are_refused_before_sending() {
    let b = AzureBroker;
    let queue = b.fresh_queue("plain").await;
    // What another producer (an Azure Function, the portal) writes: base64 text, no envelope.
    b.send_text(
        &queue,
        &base64::engine::general_purpose::STANDARD.encode("hello"),
    )
    .await;
    let mut cfg = source_config(&queue);
    cfg.envelope = false;
    let mut source = cfg.build(&ctx()).unwrap();
    let d = source.next_batch(4).await.unwrap().unwrap().pop().unwrap();
    assert_eq!(&d.message.payload[..], b"hello");
    assert!(d.decode_error.is_none());
    d.token.ack();
    source.close().await.unwrap();

    let sink = sink_config(&queue).build(&ctx()).unwrap();
    let big = sluice::message::Output {
        payload: bytes::Bytes::from(vec![b'a'; 60 * 1024]),
        key: None,
        headers: Vec::new(),
        route: None,
        timestamp_ms: None,
    };
    let err = sink.send(&[big]).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("exceeds the service's 65536"),
        "{err:#}"
    );
    assert_eq!(b.depth(&queue).await, 0, "nothing half-sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_envelope_is_dead_lettered_as_invalid() {
    let b = AzureBroker;
    let (input, output, dead) = (
        b.fresh_queue("env-in").await,
        b.fresh_queue("env-out").await,
        b.fresh_queue("env-dead").await,
    );
    b.send_text(&input, "not an envelope").await;
    b.publish(&input, b"fine", &[("k", "v")]).await;
    let (p, stats) = test_pipeline(
        b.source(&input, 8),
        Vec::new(),
        b.sink(&output),
        b.sink(&dead),
        fast_delivery(8, 8, 3),
    );
    let running = start(p);
    wait_until("2 settled", b.patience(), || {
        stats.settled.load(Ordering::SeqCst) == 2
    })
    .await;
    running.stop().await;
    let out = b.drain(&output, 1).await;
    assert_eq!(out[0].payload, b"fine");
    assert_eq!(out[0].headers.get("k").map(String::as_str), Some("v"));
    let dead = b.drain(&dead, 1).await;
    assert_eq!(
        dead[0].payload, b"not an envelope",
        "the raw text, byte for byte"
    );
    assert_eq!(
        dead[0]
            .headers
            .get("x-sluice-error-class")
            .map(String::as_str),
        Some("invalid")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_key_and_sas_connection_strings_both_work() {
    let b = AzureBroker;
    let queue = queue_name("auth");
    let key = concat!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;",
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;",
        "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    );
    let client = ConnectionString::parse(key)
        .unwrap()
        .queue_client(&queue)
        .unwrap();
    client
        .create(None)
        .await
        .expect("an account SAS signed from the key is accepted");
    // A SAS taken from that client's URL works as a connection string of its own.
    let sas = client.url().query().unwrap().to_owned();
    let sas_string = format!(
        "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;SharedAccessSignature={sas}"
    );
    let mut cfg = sink_config(&queue);
    cfg.connection_string = Some(sas_string);
    cfg.build(&ctx())
        .unwrap()
        .send(&[sluice::message::Output {
            payload: bytes::Bytes::from_static(b"via sas"),
            key: None,
            headers: Vec::new(),
            route: None,
            timestamp_ms: None,
        }])
        .await
        .unwrap();
    assert_eq!(b.drain(&queue, 1).await[0].payload, b"via sas");
    // A wrong key is refused by the service, and the error says so.
    let wrong = key.replace("Eby8", "AAAA");
    let err = ConnectionString::parse(&wrong)
        .unwrap()
        .queue_client(&queue)
        .unwrap()
        .get_properties(None)
        .await
        .unwrap_err();
    assert!(
        format!("{err}").contains("403") || format!("{err:?}").contains("Authorization"),
        "{err:?}"
    );
    let _ = AZURITE;
}

#[test]
fn validation_names_every_bad_setting() {
    let mut cfg = source_config("q");
    cfg.connection_string = Some("AccountName=x".into());
    cfg.queue = "Bad_Name".into();
    cfg.visibility_timeout_s = 0;
    cfg.max_dequeue_count = 0;
    let mut errors: Vec<FieldError> = Vec::new();
    cfg.validate(&mut errors);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["connection_string", "queue"]);
    // The ranges are the schema's; the loader reports them with the connector's own checks.
    let text = "source: { type: azure_queue, connection_string: AccountName=x, queue: Bad_Name, visibility_timeout_s: 0, max_dequeue_count: 0 }\nsinks: { a: { type: drop } }\ndead_letter: { type: drop }";
    let refused =
        sluice::config::parse(std::path::Path::new("p.yaml"), text, |_| None).unwrap_err();
    let paths: Vec<&str> = refused.iter().map(|e| e.error.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "source.connection_string",
            "source.queue",
            "source.visibility_timeout_s",
            "source.max_dequeue_count"
        ]
    );
    assert!(
        errors[0]
            .message
            .contains("neither AccountKey nor SharedAccessSignature")
    );
}

/// A service that accepts the connection and never answers (a stalled loopback proxy in front
/// of Azurite): the sink's calls, then the source's, fail within `request_timeout_ms` with an
/// error naming the connector; once it answers again everything arrives, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_service_fails_each_call_at_its_deadline_and_nothing_is_lost() {
    use sluice_tests::stall::StallProxy;
    let b = AzureBroker;
    let (input, output) = (
        b.fresh_queue("stall-in").await,
        b.fresh_queue("stall-out").await,
    );
    let azurite: std::net::SocketAddr = "127.0.0.1:10001".parse().unwrap();
    let (to_source, to_sink) = (
        StallProxy::start(azurite).await,
        StallProxy::start(azurite).await,
    );
    let through = |proxy: &StallProxy| {
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;QueueEndpoint=http://{}/devstoreaccount1;",
            proxy.host_port()
        )
    };
    let mut source = source_config(&input);
    source.connection_string = Some(through(&to_source));
    source.request_timeout_ms = 1_000;
    // A receive held by the stalled proxy reaches the service when traffic passes again, and
    // the messages it takes stay invisible for this long before they come again.
    source.visibility_timeout_s = 2;
    let mut sink = sink_config(&output);
    sink.connection_string = Some(through(&to_sink));
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
        ("azure_queue source", "azure_queue sink"),
    )
    .await;
    println!(
        "stalled azure_queue: the sink's error after {sink_after:?}, the source's after {source_after:?} (request_timeout_ms 1000)"
    );
    assert!(dead_q.drain().is_empty());
}
