//! Throughput benchmark: generate → handler → drop sink, 256-byte payloads.
//!
//! Prints, all measured in the same run:
//! - end-to-end messages/s with no handler (the relay baseline), the native `uppercase`
//!   handler, and the WASM `uppercase` component, and the WASM/native ratio;
//! - the handler call alone, in ns per message, for batches of 1 and of `BATCH`.
//!
//! Run: `scripts/build-plugins.sh && cargo run --release -p sluice-bench -- [messages]`

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::config::{DeliveryConfig, LimitsConfig};
use sluice::connector::drop::DropSink;
use sluice::connector::generate::{GenerateSourceConfig, GeneratedPayload};
use sluice::connector::{BuildContext, SourceFactory};
use sluice::engine::{Outcome, Pipeline, PipelineStats, Transform};
use sluice::message::{Message, Metadata, Output};
use sluice::plugin::PluginHost;
use tokio_util::sync::CancellationToken;

/// mimalloc: the per-message path allocates small buffers on several threads, where glibc's
/// malloc showed up as a fifth of the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 128;

/// The same transformation as the `uppercase` component, in native code.
struct NativeUppercase;

impl Transform for NativeUppercase {
    fn name(&self) -> &str {
        "native-uppercase"
    }

    fn process(&self, batch: Vec<Message>) -> Vec<Outcome> {
        batch
            .into_iter()
            .map(|m| {
                let mut payload = m.payload.to_vec();
                payload.make_ascii_uppercase();
                Outcome::Outputs(vec![Output {
                    payload: Bytes::from(payload),
                    key: m.key,
                    headers: m.headers,
                    route: None,
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
        delivery: DeliveryConfig {
            max_in_flight: 4096,
            batch_size: BATCH,
            ..DeliveryConfig::default()
        },
        shutdown_deadline: Duration::from_secs(10),
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        stats: stats.clone(),
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
        drop(std::hint::black_box(handler.process(msgs)));
        timed += started.elapsed();
    }
    timed.as_nanos() as f64 / ((total / batch) * batch) as f64
}

fn main() -> anyhow::Result<()> {
    let count: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2_000_000);
    let host = PluginHost::new(Some(std::env::temp_dir().join("sluice-bench-cache")));
    let plugin = host.load(
        &repo().join("plugins/dist/uppercase.wasm"),
        &LimitsConfig::default(),
    )?;
    let wasm: Arc<dyn Transform> = Arc::new(plugin.into_handler(
        "bench",
        "uppercase",
        Vec::new(),
        sluice::config::BatchAbi::Auto,
    )?);
    let native: Arc<dyn Transform> = Arc::new(NativeUppercase);

    println!("Handler call alone (256-byte payload, key, one header), ns per message:");
    for batch in [1, BATCH] {
        let total = if batch == 1 { 100_000 } else { 200_000 };
        // Warm up, then measure.
        call_cost(&*wasm, batch, total / 10);
        let w = call_cost(&*wasm, batch, total);
        let n = call_cost(&*native, batch, total);
        println!(
            "  batch {batch:>4}: wasm {w:>8.0} ns   native {n:>8.0} ns   ratio {:.2}x",
            w / n
        );
    }

    if std::env::var_os("SLUICE_BENCH_CALL_ONLY").is_some() {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "End to end, generate → handler → drop, {count} messages of 256 bytes, batch {BATCH}:"
    );
    let relay = rt.block_on(end_to_end(count, Vec::new()))?;
    let native_rate = rt.block_on(end_to_end(count, vec![native]))?;
    let wasm_rate = rt.block_on(end_to_end(count, vec![wasm]))?;
    println!("  relay (no handler): {:>12.0} msg/s", relay);
    println!("  native uppercase:   {:>12.0} msg/s", native_rate);
    println!("  wasm uppercase:     {:>12.0} msg/s", wasm_rate);
    println!(
        "  wasm/native time ratio: {:.2}x   wasm/relay throughput: {:.0}%",
        native_rate / wasm_rate,
        100.0 * wasm_rate / relay
    );
    Ok(())
}
