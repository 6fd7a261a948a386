//! Hot-swap pause benchmark: the longest gap in a pipeline's output around a plugin swap.
//!
//! generate (a steady rate) → `uppercase`, swapped with `faulty` (an echo) and back every
//! 200 ms → a sink that records when each batch was confirmed. For every swap, the longest gap
//! between consecutive confirmations in a window around it; the baseline is the same measure in
//! windows half-way between swaps, in the same run. The new version is loaded (compiled, checked,
//! `init` run) before each swap, as the supervisor does, so what is measured is the swap itself
//! and the first calls on the new version.
//!
//! Run: `scripts/build-plugins.sh && cargo run --release -p sluice-bench --bin swap -- [swaps] [rate]`

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sluice::connector::drop::DropSink;
use sluice::connector::generate::{GenerateSourceConfig, GeneratedPayload};
use sluice::connector::{BuildContext, Sink, SourceFactory};
use sluice::engine::DeliverySettings;
use sluice::engine::{Pipeline, PipelineStats, Transform};
use sluice::message::Output;
use sluice::plugin::{BatchAbi, Limits};
use sluice::plugin::{PluginHost, WasmHandler};
use sluice::runtime::HotHandler;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Records when each batch was confirmed.
#[derive(Default)]
struct TimingSink {
    at: Mutex<Vec<Instant>>,
}

#[async_trait]
impl Sink for TimingSink {
    async fn send(&self, _batch: &[Output]) -> sluice::connector::SendResult {
        self.at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Instant::now());
        Ok(())
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

fn load(host: &PluginHost, name: &str) -> anyhow::Result<WasmHandler> {
    let path = repo().join("plugins/dist").join(format!("{name}.wasm"));
    let handler = host.load(&path, &Limits::default())?.into_handler(
        "swap-bench",
        "handler",
        Vec::new(),
        BatchAbi::Auto,
    )?;
    // As the supervisor does: one warm instance per worker before the swap.
    handler.prewarm(2)?;
    Ok(handler)
}

/// The longest gap between consecutive instants within `[from, to]`.
fn longest_gap(times: &[Instant], from: Instant, to: Instant) -> Duration {
    let start = times.partition_point(|t| *t < from);
    let end = times.partition_point(|t| *t <= to);
    times[start.saturating_sub(1)..end.min(times.len())]
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let swaps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let rate: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000.0);
    let interval = Duration::from_millis(200);

    // A compile cache, as `sluice run` has: a version seen before loads without compiling, so
    // that no compile competes for the CPU with the measured windows.
    let cache = std::env::temp_dir().join(format!("sluice-swap-bench-{}", std::process::id()));
    let host = PluginHost::new(Some(cache.clone()));
    for name in ["uppercase", "faulty"] {
        load(&host, name)?;
    }
    let hot = Arc::new(HotHandler::new(
        "handler".into(),
        load(&host, "uppercase")?,
        true,
    ));
    let sink = Arc::new(TimingSink::default());
    let ctx = BuildContext {
        pipeline: "swap-bench".into(),
        max_in_flight: 1024,
        base_dir: repo(),
    };
    let source = GenerateSourceConfig {
        count: None,
        rate_per_second: Some(rate),
        payload: GeneratedPayload::Fixed,
        size: 256,
        malformed_every: None,
    }
    .build(&ctx)?;
    let stats = Arc::new(PipelineStats::default());
    let pipeline = Pipeline {
        name: "swap-bench".into(),
        source,
        source_redelivers: false,
        chain: vec![hot.clone() as Arc<dyn Transform>],
        sinks: HashMap::from([("out".to_owned(), sink.clone() as Arc<dyn Sink>)]),
        default_sink: "out".into(),
        dead_letter: Arc::new(DropSink),
        delivery: DeliverySettings {
            max_in_flight: 1024,
            batch_size: 64,
            ..DeliverySettings::default()
        },
        shutdown_deadline: Duration::from_secs(10),
        workers: 2,
        stats: stats.clone(),
        payload_log: None,
    };
    let stop = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut swapped_at = Vec::with_capacity(swaps);
    for i in 0..swaps {
        let name = if i % 2 == 0 { "faulty" } else { "uppercase" };
        // Loaded off the message path first, as the supervisor does, after both measured
        // windows of the previous swap.
        let host = host.clone();
        let next = tokio::task::spawn_blocking(move || load(&host, name)).await??;
        tokio::time::sleep(interval / 4).await;
        swapped_at.push(Instant::now());
        hot.swap(next);
        tokio::time::sleep(interval * 3 / 4).await;
    }
    stop.cancel();
    running.await??;

    let _ = std::fs::remove_dir_all(&cache);
    let times = sink.at.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let window = Duration::from_millis(50);
    let mut at_swap: Vec<Duration> = swapped_at
        .iter()
        .map(|&t| longest_gap(&times, t, t + window))
        .collect();
    // Baseline: the same window, half-way between swaps.
    let mut between: Vec<Duration> = swapped_at
        .iter()
        .map(|&t| longest_gap(&times, t + interval / 2, t + interval / 2 + window))
        .collect();
    at_swap.sort();
    between.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let outputs = PipelineStats::get(&stats.outputs);
    println!(
        "{swaps} swaps at {rate:.0} msg/s ({outputs} messages, {} confirmed batches)",
        times.len()
    );
    println!(
        "longest output gap in the 50 ms after a swap: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&at_swap, 0.5)),
        ms(percentile(&at_swap, 0.99)),
        ms(*at_swap.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "same measure half-way between swaps (baseline): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&between, 0.5)),
        ms(percentile(&between, 0.99)),
        ms(*between.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "p99 swap / p99 baseline: {:.2}x; target p99 at a swap <= 10 ms: {}",
        ms(percentile(&at_swap, 0.99)) / ms(percentile(&between, 0.99)).max(1e-9),
        if ms(percentile(&at_swap, 0.99)) <= 10.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
