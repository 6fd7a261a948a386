//! Throughput benchmark: generate → handler → drop sink, 256-byte payloads.
//!
//! Prints, all measured in the same run:
//! - end-to-end messages/s with no handler (the relay baseline), the native `uppercase`
//!   handler, and the WASM `uppercase` component, and the WASM/native ratio;
//! - the handler call alone, in ns per message, for batches of 1 and of `batch_size()`.
//!
//! Run: `scripts/build-plugins.sh && cargo run --release -p sluice-bench -- [messages]`

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::connector::drop::DropSink;
use sluice::connector::generate::{GenerateSourceConfig, GeneratedPayload};
use sluice::connector::{BuildContext, SourceFactory};
use sluice::engine::DeliverySettings;
use sluice::engine::{Outcome, Pipeline, PipelineStats, Transform};
use sluice::message::{Message, Metadata, Output};
use sluice::plugin::Limits;
use sluice::plugin::PluginHost;
use tokio_util::sync::CancellationToken;

/// mimalloc: the per-message path allocates small buffers on several threads, where glibc's
/// malloc showed up as a fifth of the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn batch_size() -> usize {
    std::env::var("SLUICE_BENCH_BATCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(128)
}

/// The same transformation as the `uppercase` component, in native code.
struct NativeUppercase;

#[async_trait::async_trait]
impl Transform for NativeUppercase {
    fn name(&self) -> &str {
        "native-uppercase"
    }

    async fn process(&self, batch: &[Message]) -> Vec<Outcome> {
        batch
            .iter()
            .map(|m| {
                let mut payload = m.payload.to_vec();
                payload.make_ascii_uppercase();
                Outcome::Outputs(vec![Output {
                    payload: Bytes::from(payload),
                    key: m.key.clone(),
                    headers: m.headers.clone(),
                    route: None,
                    timestamp_ms: None,
                }])
            })
            .collect()
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

async fn end_to_end(count: u64, chain: Vec<Arc<dyn Transform>>) -> anyhow::Result<f64> {
    let source_cfg = GenerateSourceConfig {
        count: Some(count),
        rate_per_second: None,
        payload: GeneratedPayload::Fixed,
        size: 256,
        malformed_every: None,
    };
    let ctx = BuildContext {
        pipeline: "bench".into(),
        max_in_flight: 4096,
        base_dir: repo(),
    };
    let stats = Arc::new(PipelineStats::default());
    let pipeline = Pipeline {
        name: "bench".into(),
        source: source_cfg.build(&ctx)?,
        source_redelivers: false,
        chain,
        sinks: HashMap::from([(
            "out".to_owned(),
            Arc::new(DropSink) as Arc<dyn sluice::connector::Sink>,
        )]),
        default_sink: "out".into(),
        dead_letter: Arc::new(DropSink),
        delivery: DeliverySettings {
            max_in_flight: 4096,
            batch_size: batch_size(),
            ..DeliverySettings::default()
        },
        shutdown_deadline: Duration::from_secs(10),
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        stats: stats.clone(),
        payload_log: None,
    };
    let started = Instant::now();
    pipeline.run(CancellationToken::new()).await?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        PipelineStats::get(&stats.outputs) == count,
        "lost messages: {} of {count}",
        PipelineStats::get(&stats.outputs)
    );
    Ok(count as f64 / elapsed)
}

fn message(i: usize) -> Message {
    let mut meta = Metadata::received_now("generate".into(), "bench".into());
    meta.offset = Some(i as i64);
    Message {
        id: format!("bench:{i}"),
        key: Some(Bytes::from_static(b"key-0001")),
        payload: Bytes::from((0..256).map(|j| b'a' + (j % 26) as u8).collect::<Vec<u8>>()),
        headers: vec![("content-type".into(), "text/plain".into())],
        meta,
    }
}

/// ns per message for `handler.process` on batches of `batch`, dropping the results included.
/// Each batch is built just before its call (outside the timing), as the engine would hand it
/// over, so the allocator works as it does in a pipeline.
fn call_cost(handler: &dyn Transform, batch: usize, total: usize) -> f64 {
    let mut timed = Duration::ZERO;
    for b in 0..total / batch {
        let msgs: Vec<Message> = (0..batch).map(|i| message(b * batch + i)).collect();
        let started = Instant::now();
        let out = std::hint::black_box(futures::executor::block_on(handler.process(&msgs)));
        let ok = out
            .iter()
            .all(|o| matches!(o, Outcome::Outputs(v) if v.len() == 1));
        drop(out);
        timed += started.elapsed();
        // A figure for failed calls would be meaningless.
        assert!(
            ok,
            "handler `{}` did not produce one output per message",
            handler.name()
        );
    }
    timed.as_nanos() as f64 / ((total / batch) * batch) as f64
}

/// `SLUICE_BENCH_<name>` from the environment, parsed, or `default`.
fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(format!("SLUICE_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Knobs (environment): `SLUICE_BENCH_REPS` runs per figure, median reported (default 5);
/// `SLUICE_BENCH_BATCH` (default 128); `SLUICE_BENCH_PLUGIN` the component in `plugins/dist/`
/// (default `uppercase`); `SLUICE_BENCH_CALL_ONLY=1` skips the end-to-end part.
fn main() -> anyhow::Result<()> {
    let count: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2_000_000);
    let reps: usize = knob("REPS", 5).max(1);
    let plugin_name: String = knob("PLUGIN", "uppercase".to_owned());
    let host = PluginHost::new(Some(std::env::temp_dir().join("sluice-bench-cache")));
    let plugin = host.load(
        &repo().join(format!("plugins/dist/{plugin_name}.wasm")),
        &Limits::default(),
    )?;
    let wasm: Arc<dyn Transform> = Arc::new(plugin.into_handler(
        "bench",
        &plugin_name,
        Vec::new(),
        sluice::plugin::BatchAbi::Auto,
    )?);
    let native: Arc<dyn Transform> = Arc::new(NativeUppercase);

    println!(
        "Handler call alone (256-byte payload, key, one header), ns per message, median of {reps}:"
    );
    for batch in [1, batch_size()] {
        let total = if batch == 1 { 50_000 } else { 200_000 };
        call_cost(&*wasm, batch, total / 10); // warm-up
        let (mut w, mut n) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            w.push(call_cost(&*wasm, batch, total));
            n.push(call_cost(&*native, batch, total));
        }
        let (w, n) = (median(w), median(n));
        println!(
            "  batch {batch:>4}: wasm {w:>8.0} ns   native {n:>8.0} ns   ratio {:.2}x",
            w / n
        );
    }
    if knob("CALL_ONLY", 0) == 1 {
        return Ok(());
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "End to end, generate → handler → drop, {count} messages of 256 bytes, batch {}, median of {reps}:",
        batch_size()
    );
    let (mut relay, mut native_rate, mut wasm_rate) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        relay.push(rt.block_on(end_to_end(count, Vec::new()))?);
        native_rate.push(rt.block_on(end_to_end(count, vec![native.clone()]))?);
        wasm_rate.push(rt.block_on(end_to_end(count, vec![wasm.clone()]))?);
    }
    let (relay, native_rate, wasm_rate) = (median(relay), median(native_rate), median(wasm_rate));
    println!("  relay (no handler): {relay:>12.0} msg/s");
    println!("  native uppercase:   {native_rate:>12.0} msg/s");
    println!(
        "  wasm {plugin_name}:{:>w$}{wasm_rate:>12.0} msg/s",
        "",
        w = 14usize.saturating_sub(plugin_name.len())
    );
    println!(
        "  wasm/native time ratio: {:.2}x   wasm/relay throughput: {:.0}%",
        native_rate / wasm_rate,
        100.0 * wasm_rate / relay
    );
    Ok(())
}
