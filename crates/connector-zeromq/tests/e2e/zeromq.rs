//! The `zeromq` connector against real libzmq peers (pyzmq, installed by scripts/brokers.sh).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice::connector::zeromq::{SinkSocket, SourceSocket, ZeroMqSinkConfig, ZeroMqSourceConfig};
use sluice::connector::{BuildContext, SinkFactory, Source, SourceFactory};
use sluice::engine::{Pipeline, PipelineStats};
use sluice_tests::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ctx() -> BuildContext {
    BuildContext {
        pipeline: "zmq".into(),
        max_in_flight: 64,
        base_dir: repo_root(),
    }
}

fn pipeline(
    source: Box<dyn Source>,
    out: Arc<dyn sluice::connector::Sink>,
    redelivers: bool,
) -> (Pipeline, Arc<PipelineStats>) {
    let (dead, _) = memory_sink("zmq-dead");
    // At most once is the pipeline file's promise (checked by validation); the engine runs the
    // same either way.
    let delivery = fast_delivery(64, 16, 3);
    let (mut p, stats) = test_pipeline(source, Vec::new(), out, dead, delivery);
    p.source_redelivers = redelivers;
    p.shutdown_deadline = Duration::from_secs(5);
    (p, stats)
}

fn python(script: &str, args: &[String]) -> std::process::Child {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3")
}

/// An `ipc://` endpoint in a fresh temporary folder (kept alive by the returned guard).
fn ipc_endpoint() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (
        format!("ipc://{}", dir.path().join("zmq.sock").display()),
        dir,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_source_receives_everything_a_libzmq_push_peer_sends_over_tcp() {
    pull_source_receives_from_a_libzmq_push_peer(format!("tcp://127.0.0.1:{}", free_port())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_source_receives_everything_a_libzmq_push_peer_sends_over_ipc() {
    let (endpoint, _dir) = ipc_endpoint();
    pull_source_receives_from_a_libzmq_push_peer(endpoint).await;
}

async fn pull_source_receives_from_a_libzmq_push_peer(endpoint: String) {
    let source = ZeroMqSourceConfig {
        endpoint: endpoint.clone(),
        socket: SourceSocket::Pull,
        bind: None,
        topics: None,
    }
    .build(&ctx())
    .unwrap();
    let (out, out_q) = memory_sink("zmq-pull-out");
    let (p, stats) = pipeline(source, out, false);
    let running = start(p);
    let peer = python(
        "import sys, zmq\nctx = zmq.Context()\ns = ctx.socket(zmq.PUSH)\ns.connect(sys.argv[1])\nfor i in range(200):\n    s.send(b'z-%03d' % i)\ns.close(linger=5000)\nctx.term()\n",
        &[endpoint],
    );
    wait_until("200 received", Duration::from_secs(30), || {
        stats.acked.load(Ordering::SeqCst) == 200
    })
    .await;
    running.stop().await;
    let out = peer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<String> = (0..200).map(|i| format!("z-{i:03}")).collect();
    assert_eq!(sorted_payloads(&out_q.drain()), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_sink_delivers_everything_to_a_libzmq_pull_peer_over_tcp() {
    push_sink_delivers_to_a_libzmq_pull_peer(format!("tcp://127.0.0.1:{}", free_port())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_sink_delivers_everything_to_a_libzmq_pull_peer_over_ipc() {
    let (endpoint, _dir) = ipc_endpoint();
    push_sink_delivers_to_a_libzmq_pull_peer(endpoint).await;
}

async fn push_sink_delivers_to_a_libzmq_pull_peer(endpoint: String) {
    let peer = python(
        "import sys, zmq\nctx = zmq.Context()\ns = ctx.socket(zmq.PULL)\ns.bind(sys.argv[1])\nprint('ready', flush=True)\ns.setsockopt(zmq.RCVTIMEO, 30000)\nfor _ in range(150):\n    print(s.recv().decode(), flush=True)\n",
        std::slice::from_ref(&endpoint),
    );
    let mut peer = peer;
    let mut stdout = std::io::BufReader::new(peer.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let payloads: Vec<Vec<u8>> = (0..150).map(|i| format!("p-{i:03}").into_bytes()).collect();
    let (queue, q) = queue_with(
        "zmq-push-in",
        &payloads.iter().map(Vec::as_slice).collect::<Vec<_>>(),
    );
    let source = sluice::connector::memory::MemorySourceConfig {
        queue,
        visibility_timeout_ms: 60_000,
    }
    .build(&ctx())
    .unwrap();
    let sink = ZeroMqSinkConfig {
        endpoint,
        socket: SinkSocket::Push,
        bind: None,
    }
    .build(&ctx())
    .unwrap();
    let (p, _) = pipeline(source, sink, true);
    let running = start(p);
    wait_until("150 sent", Duration::from_secs(30), || {
        q.stats.acked.load(Ordering::SeqCst) == 150
    })
    .await;
    let received = tokio::task::spawn_blocking(move || {
        let mut got: Vec<String> = std::io::BufRead::lines(stdout)
            .map(Result::unwrap)
            .collect();
        got.sort();
        got
    })
    .await
    .unwrap();
    running.stop().await;
    let expected: Vec<String> = (0..150).map(|i| format!("p-{i:03}")).collect();
    assert_eq!(received, expected);
    assert!(peer.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pub_sink_reaches_a_libzmq_sub_peer_with_the_key_as_topic_frame() {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    // The subscriber connects first and keeps retrying until the sink binds; PUB drops what is
    // sent before a subscription arrives, so the source keeps sending until the peer has 20.
    let peer = python(
        "import sys, zmq\nctx = zmq.Context()\ns = ctx.socket(zmq.SUB)\ns.connect(sys.argv[1])\ns.setsockopt(zmq.SUBSCRIBE, b'orders')\ns.setsockopt(zmq.RCVTIMEO, 30000)\nfor _ in range(20):\n    topic, payload = s.recv_multipart()\n    print(topic.decode(), payload.decode(), flush=True)\n",
        std::slice::from_ref(&endpoint),
    );
    let source = sluice::connector::generate::GenerateSourceConfig {
        count: None,
        rate_per_second: Some(200.0),
        payload: sluice::connector::generate::GeneratedPayload::Fixed,
        size: 8,
        malformed_every: None,
    }
    .build(&ctx())
    .unwrap();
    let keyed: Arc<dyn sluice::engine::Transform> = Arc::new(FnTransform {
        name: "key".into(),
        f: |m: &sluice::message::Message| {
            let mut o = sluice::message::Output::pass_through(m);
            o.key = Some(bytes::Bytes::from_static(b"orders"));
            sluice::engine::Outcome::Outputs(vec![o])
        },
    });
    let sink = ZeroMqSinkConfig {
        endpoint,
        socket: SinkSocket::Pub,
        bind: None,
    }
    .build(&ctx())
    .unwrap();
    let (mut p, _) = pipeline(source, sink, false);
    p.chain = vec![keyed];
    let running = start(p);
    let out = tokio::task::spawn_blocking(move || peer.wait_with_output().unwrap())
        .await
        .unwrap();
    running.stop().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|l| l == "orders abcdefgh"), "{lines:?}");
}
