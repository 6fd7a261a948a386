//! Shared fixtures for the end-to-end tests: plugin paths, pipelines over the `memory` connector,
//! and sinks that fail, block or record on purpose.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sluice::connector::memory::{MemoryQueue, StoredMessage};
use sluice::connector::{BuildContext, Sink, SinkFactory, SourceFactory};
use sluice::engine::{DeliverySettings, RetryPolicy};
use sluice::engine::{Outcome, Pipeline, PipelineStats, RunEnd, Transform};
use sluice::message::{Message, Output};
use sluice::plugin::Limits;
use sluice::plugin::{PluginHost, WasmHandler};
use tokio::sync::Semaphore;

pub mod azure;
pub mod brokers;
pub mod conformance;
pub mod hostile;
pub mod kafka;
pub mod sqs;
pub mod stall;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A built plugin component, `plugins/dist/<name>.wasm`.
pub fn plugin_path(name: &str) -> PathBuf {
    let path = repo_root()
        .join("plugins/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins.sh first",
        path.display()
    );
    path
}

/// One plugin host for the whole test binary, caching compiled components in a directory of the
/// build's own (`target/<profile>/plugin-cache`, beside the test binaries), never a fixed path
/// in the shared temporary directory.
pub fn plugin_host() -> PluginHost {
    static HOST: std::sync::OnceLock<PluginHost> = std::sync::OnceLock::new();
    HOST.get_or_init(|| PluginHost::new(Some(test_cache_dir())))
        .clone()
}

/// `target/<profile>/plugin-cache`, from where the test binary runs (`target/<profile>/deps`).
pub fn test_cache_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary runs from target/<profile>/deps");
    profile_dir.join("plugin-cache")
}

/// Load `name` as a handler of pipeline `pipeline` with `limits` and `config`.
pub fn wasm_handler(name: &str, limits: Limits, config: &[(&str, &str)]) -> Arc<WasmHandler> {
    wasm_handler_at(&plugin_path(name), name, limits, config)
}

/// The `uppercase` example as the Rust SDK built it for contract 0.1, before it moved to 0.2
/// (`tests/fixtures/uppercase-contract-0.1.wasm`, kept as it was built): 0.1 components keep
/// loading, and headers they pass through as text keep their source form.
pub fn uppercase_contract_0_1() -> Arc<WasmHandler> {
    let path = repo_root().join("tests/fixtures/uppercase-contract-0.1.wasm");
    wasm_handler_at(&path, "uppercase-0.1", Limits::default(), &[])
}

fn wasm_handler_at(
    path: &std::path::Path,
    name: &str,
    limits: Limits,
    config: &[(&str, &str)],
) -> Arc<WasmHandler> {
    let plugin = plugin_host().load(path, &limits).expect("plugin loads");
    let config = config
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Arc::new(
        plugin
            .into_handler("test", name, config, sluice::plugin::BatchAbi::Auto)
            .expect("plugin initialises"),
    )
}

/// A queue name no other test uses.
pub fn unique_queue(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh memory queue holding `payloads`.
pub fn queue_with(prefix: &str, payloads: &[&[u8]]) -> (String, Arc<MemoryQueue>) {
    let name = unique_queue(prefix);
    let q = MemoryQueue::named(&name);
    for p in payloads {
        q.push(StoredMessage::new(p.to_vec()));
    }
    (name, q)
}

/// Delivery settings for tests: fast retries, no jitter.
pub fn fast_delivery(
    max_in_flight: usize,
    batch_size: usize,
    max_attempts: u32,
) -> DeliverySettings {
    DeliverySettings {
        max_in_flight,
        batch_size,
        retry: RetryPolicy {
            max_attempts,
            base_delay_ms: 5,
            max_delay_ms: 50,
            jitter: 0.0,
        },
        // Tests hold sinks closed (`GateSink`) for as long as a slow emulator needs; the tests of
        // the deadline itself set their own.
        sink_timeout: Duration::from_secs(600),
        ..DeliverySettings::default()
    }
}

/// A memory-source pipeline with `chain`, a default sink `out` and a dead-letter sink.
pub fn memory_pipeline(
    queue: &str,
    visibility_ms: u64,
    chain: Vec<Arc<dyn Transform>>,
    out: Arc<dyn Sink>,
    dead_letter: Arc<dyn Sink>,
    delivery: DeliverySettings,
) -> (Pipeline, Arc<PipelineStats>) {
    let source_cfg = sluice::connector::memory::MemorySourceConfig {
        queue: queue.to_owned(),
        visibility_timeout_ms: visibility_ms,
    };
    let ctx = BuildContext {
        pipeline: "test".into(),
        max_in_flight: 1024,
        base_dir: repo_root(),
    };
    test_pipeline(
        source_cfg.build(&ctx).expect("memory source"),
        chain,
        out,
        dead_letter,
        delivery,
    )
}

/// A pipeline for tests: `source` → `chain` → the sink `out` (the default), with `dead_letter`,
/// 2 workers and a 10 s shutdown deadline. The source is taken to redeliver what it is handed back.
pub fn test_pipeline(
    source: Box<dyn sluice::connector::Source>,
    chain: Vec<Arc<dyn Transform>>,
    out: Arc<dyn Sink>,
    dead_letter: Arc<dyn Sink>,
    delivery: DeliverySettings,
) -> (Pipeline, Arc<PipelineStats>) {
    let stats = Arc::new(PipelineStats::default());
    let pipeline = Pipeline {
        name: "test".into(),
        source,
        source_redelivers: true,
        chain,
        sinks: HashMap::from([("out".to_owned(), out)]),
        default_sink: "out".into(),
        dead_letter,
        delivery,
        shutdown_deadline: Duration::from_secs(10),
        workers: 2,
        stats: stats.clone(),
        payload_log: None,
    };
    (pipeline, stats)
}

/// A memory sink writing to a fresh queue.
pub fn memory_sink(prefix: &str) -> (Arc<dyn Sink>, Arc<MemoryQueue>) {
    let name = unique_queue(prefix);
    let cfg = sluice::connector::memory::MemorySinkConfig {
        queue: name.clone(),
    };
    let ctx = BuildContext {
        pipeline: "test".into(),
        max_in_flight: 1024,
        base_dir: repo_root(),
    };
    (
        cfg.build(&ctx).expect("memory sink"),
        MemoryQueue::named(&name),
    )
}

/// A pipeline running on the test's runtime.
pub struct Running {
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<RunEnd>>,
}

/// Start `pipeline`; stop it with [`Running::stop`].
pub fn start(pipeline: Pipeline) -> Running {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(pipeline.run(shutdown.clone()));
    Running { shutdown, task }
}

impl Running {
    /// Request a graceful shutdown and wait for it.
    pub async fn stop(self) -> RunEnd {
        self.shutdown.cancel();
        self.task
            .await
            .expect("pipeline task")
            .expect("pipeline run")
    }
}

/// Run `pipeline` until `queue` has acked `n` deliveries in all, then stop it gracefully.
pub async fn run_until_acked(pipeline: Pipeline, queue: &MemoryQueue, n: u64) -> RunEnd {
    let running = start(pipeline);
    wait_until(&format!("{n} acked"), Duration::from_secs(30), || {
        queue.stats.acked.load(Ordering::SeqCst) == n
    })
    .await;
    running.stop().await
}

/// Poll `cond` every 10 ms until it holds; panics with `what` after `limit` (a liveness guard
/// for a test that would otherwise hang, not a timing assertion).
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fails the first `failures` sends, then forwards to `inner`.
pub struct FlakySink {
    pub inner: Arc<dyn Sink>,
    pub failures: AtomicU32,
    pub failed: AtomicU32,
}

impl FlakySink {
    pub fn new(inner: Arc<dyn Sink>, failures: u32) -> Arc<Self> {
        Arc::new(FlakySink {
            inner,
            failures: AtomicU32::new(failures),
            failed: AtomicU32::new(0),
        })
    }
}

#[async_trait]
impl Sink for FlakySink {
    async fn send(&self, batch: &[Output]) -> sluice::connector::SendResult {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(anyhow::anyhow!("injected sink failure").into());
        }
        self.inner.send(batch).await
    }
}

/// Holds every send until released; records how many outputs were held at once.
pub struct GateSink {
    pub gate: Semaphore,
    pub waiting: AtomicUsize,
    pub max_waiting: AtomicUsize,
    pub inner: Arc<dyn Sink>,
}

impl GateSink {
    pub fn closed(inner: Arc<dyn Sink>) -> Arc<Self> {
        Arc::new(GateSink {
            gate: Semaphore::new(0),
            waiting: AtomicUsize::new(0),
            max_waiting: AtomicUsize::new(0),
            inner,
        })
    }

    pub fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

#[async_trait]
impl Sink for GateSink {
    async fn send(&self, batch: &[Output]) -> sluice::connector::SendResult {
        let now = self.waiting.fetch_add(batch.len(), Ordering::SeqCst) + batch.len();
        self.max_waiting.fetch_max(now, Ordering::SeqCst);
        let permit = self.gate.acquire().await;
        drop(permit);
        self.waiting.fetch_sub(batch.len(), Ordering::SeqCst);
        self.inner.send(batch).await
    }
}

/// A native handler from a closure, for engine tests that need no WASM.
pub struct FnTransform<F> {
    pub name: String,
    pub f: F,
}

#[async_trait::async_trait]
impl<F: Fn(&Message) -> Outcome + Send + Sync> Transform for FnTransform<F> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn process(&self, batch: &[Message]) -> Vec<Outcome> {
        batch.iter().map(&self.f).collect()
    }
}

/// A native pass-through handler that records when each message reached it.
pub struct StampingTransform {
    pub seen: Mutex<Vec<Instant>>,
    pub delay: Duration,
}

#[async_trait::async_trait]
impl Transform for StampingTransform {
    fn name(&self) -> &str {
        "stamp"
    }

    async fn process(&self, batch: &[Message]) -> Vec<Outcome> {
        let now = Instant::now();
        self.seen
            .lock()
            .expect("not poisoned")
            .extend(std::iter::repeat_n(now, batch.len()));
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay * batch.len() as u32).await;
        }
        batch
            .iter()
            .map(|m| Outcome::Outputs(vec![Output::pass_through(m)]))
            .collect()
    }
}

/// Payloads of `msgs` as strings, sorted.
pub fn sorted_payloads(msgs: &[StoredMessage]) -> Vec<String> {
    let mut v: Vec<String> = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    v.sort();
    v
}

/// The value of header `name` in `msg`.
pub fn header<'a>(msg: &'a StoredMessage, name: &str) -> Option<&'a str> {
    msg.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| &**v)
}

/// The process's peak resident memory since [`reset_peak`], in MiB (each test runs in its own
/// process under nextest, so the peak is this test's).
pub fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

pub fn current_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

/// Start measuring the peak from now (Linux: writing 5 to `clear_refs` resets `VmHWM`).
pub fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    current_rss_mib()
}
