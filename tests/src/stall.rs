//! A loopback TCP proxy that passes traffic, stalls it (connections stay open, nothing goes
//! through in either direction: a peer that accepts and never answers) or cuts it, for the tests
//! of every wait's deadline.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Pass,
    /// Hold every byte; connections stay open.
    Stall,
}

pub struct StallProxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl StallProxy {
    /// A proxy on 127.0.0.1 (a free port) in front of `upstream`, passing traffic.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, watching) = watch::channel(Mode::Pass);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, watching.clone()),
                        pump(server_read, client_write, watching),
                    );
                });
            }
        });
        StallProxy { addr, mode, task }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// `host:port` of the proxy.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copy `from` to `to`, holding each chunk while the mode is `Stall`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // While stalled, read nothing either: the sender's writes back up as on a dead peer.
        if mode.wait_for(|m| *m == Mode::Pass).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if mode.wait_for(|m| *m == Mode::Pass).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The stalled-peer scenario every connector's deadline test runs, with the pipeline `running`
/// from `input` (its source through `to_source`) to `output` (its sink through `to_sink`):
/// 10 messages flow; the sink's connection stalls while 10 more come, until an error naming
/// `sink_error` is recorded; it passes again and they arrive; the source's connection stalls
/// until an error naming `source_error` is recorded; 10 more come and it passes again. Then
/// nothing may be missing from `output` (a call cut at its deadline may have landed anyway:
/// duplicates are allowed) and `input` must be fully acknowledged. Returns how long each error
/// took to come after its stall, for the caller to print beside its deadlines.
pub async fn stall_the_sink_then_the_source<B: crate::conformance::Broker + ?Sized>(
    b: &B,
    (input, output): (&str, &str),
    (to_source, to_sink): (&StallProxy, &StallProxy),
    running: crate::Running,
    stats: &sluice::engine::PipelineStats,
    (source_error, sink_error): (&str, &str),
) -> (std::time::Duration, std::time::Duration) {
    use std::sync::atomic::Ordering;
    use std::time::Instant;
    let acked = |n: u64| move || stats.acked.load(Ordering::SeqCst) >= n;
    let errors_naming = |what: &str| stats.last_errors().iter().any(|e| e.message.contains(what));
    let publish = |range: std::ops::Range<usize>| async move {
        for i in range {
            b.publish(input, format!("m-{i:02}").as_bytes(), &[]).await;
        }
    };
    publish(0..10).await;
    crate::wait_until("10 acked", b.patience(), acked(10)).await;

    to_sink.set(Mode::Stall);
    let stalled = Instant::now();
    publish(10..20).await;
    crate::wait_until("the sink's call failed", b.patience(), || {
        errors_naming(sink_error)
    })
    .await;
    let sink_after = stalled.elapsed();
    to_sink.set(Mode::Pass);
    crate::wait_until("20 acked", b.patience(), acked(20)).await;

    to_source.set(Mode::Stall);
    let stalled = Instant::now();
    crate::wait_until("the source's call failed", b.patience(), || {
        errors_naming(source_error)
    })
    .await;
    let source_after = stalled.elapsed();
    publish(20..30).await;
    to_source.set(Mode::Pass);
    // Until all 30 are out (acks alone could count a duplicate in place of one that is still
    // on its way back: a receive the proxy held reached the broker late and took it).
    let mut got = std::collections::BTreeSet::new();
    let deadline = Instant::now() + b.patience();
    while got.len() < 30 && Instant::now() < deadline {
        for r in b.drain(output, 1).await {
            got.insert(String::from_utf8_lossy(&r.payload).into_owned());
        }
    }
    // And until the input is empty: a copy whose first ack went with a receipt the late receive
    // made stale comes round once more.
    while b.depth(input).await > 0 && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    running.stop().await;
    let expected: std::collections::BTreeSet<String> =
        (0..30).map(|i| format!("m-{i:02}")).collect();
    assert_eq!(got, expected, "nothing lost");
    assert_eq!(b.depth(input).await, 0, "the input fully acknowledged");
    (source_after, sink_after)
}
