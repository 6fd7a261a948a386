//! RabbitMQ → `uppercase` (WASM) → RabbitMQ through Sluice, against a raw relay with the same
//! client settings and no WASM, in the same run, on the broker at 127.0.0.1:5672.
//!
//! Both sides: prefetch 1024, batches of up to 128 messages taken from what has arrived, each
//! batch published with publisher confirms and acknowledged only after its confirms.
//!
//! Run: `scripts/build-plugins.sh && cargo run --release -p sluice-bench --bin rabbitmq -- [messages]`
//! The Python consumer our users write today is `bench/python/consumer.py` (see bench/README.md).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt as _, StreamExt as _};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use sluice::connector::drop::DropSink;
use sluice::connector::rabbitmq::{RabbitMqSinkConfig, RabbitMqSourceConfig, in_order};
use sluice::connector::{BuildContext, SinkFactory, SourceFactory};
use sluice::engine::DeliverySettings;
use sluice::engine::{Pipeline, PipelineStats, Transform};
use sluice::plugin::Limits;
use sluice::plugin::PluginHost;
use sluice_bench::{cpu_seconds, processes_cpu_seconds};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const PREFETCH: u16 = 1024;
const BATCH: usize = 128;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// The source's `batch_linger_ms`: `SLUICE_BENCH_LINGER_MS`, else the default (2).
fn linger_ms() -> u64 {
    std::env::var("SLUICE_BENCH_LINGER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// A 256-byte JSON payload, so the Python consumer can validate it with pydantic.
fn payload(i: usize) -> Vec<u8> {
    let head = format!("{{\"id\": {i}, \"text\": \"");
    let mut p = head.into_bytes();
    while p.len() < 254 {
        p.push(b'a' + (p.len() % 26) as u8);
    }
    p.extend_from_slice(b"\"}");
    p
}

async fn setup(ch: &Channel, queues: &[&str], n: usize) -> anyhow::Result<()> {
    for q in queues {
        ch.queue_declare(
            (*q).into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_purge((*q).into(), QueuePurgeOptions::default())
            .await?;
    }
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .ok();
    let mut confirms = Vec::with_capacity(n);
    for i in 0..n {
        confirms.push(
            ch.basic_publish(
                "".into(),
                queues[0].into(),
                BasicPublishOptions::default(),
                &payload(i),
                BasicProperties::default(),
            )
            .await?,
        );
    }
    for c in confirms {
        c.await?;
    }
    Ok(())
}

/// One run's figures: wall-clock throughput, and messages per CPU-second of the consumer itself
/// (this process for Sluice and the relay, the child for Python). On a machine where the broker
/// takes most of the CPU, throughput says more about the broker; the CPU cost is the consumer's.
#[derive(Clone, Copy)]
struct Rate {
    per_s: f64,
    per_cpu_s: f64,
    /// The broker's CPU time per message over the same run, in microseconds.
    broker_us: f64,
}

/// CPU time of the RabbitMQ broker (every `beam.smp` process).
fn broker_cpu_seconds() -> f64 {
    processes_cpu_seconds("beam.smp")
}

fn median(mut runs: Vec<Rate>, by: impl Fn(&Rate) -> f64) -> f64 {
    runs.sort_by(|a, b| by(a).total_cmp(&by(b)));
    by(&runs[runs.len() / 2])
}

async fn sluice_run(ch: &Channel, n: usize) -> anyhow::Result<Rate> {
    setup(ch, &["bench-in", "bench-out"], n).await?;
    let host = PluginHost::new(Some(std::env::temp_dir().join("sluice-bench-cache")));
    let plugin = host.load(
        &repo().join("plugins/dist/uppercase.wasm"),
        &Limits::default(),
    )?;
    let handler: Arc<dyn Transform> = Arc::new(plugin.into_handler(
        "bench",
        "uppercase",
        Vec::new(),
        sluice::plugin::BatchAbi::Auto,
    )?);
    let ctx = BuildContext {
        pipeline: "bench".into(),
        max_in_flight: PREFETCH as usize,
        base_dir: repo(),
    };
    let source = RabbitMqSourceConfig {
        url: URL.into(),
        queue: "bench-in".into(),
        declare: false,
        prefetch: Some(PREFETCH),
        batch_linger_ms: linger_ms(),
        topology: Default::default(),
        tls: Default::default(),
        lag_interval_ms: sluice::connector::default_lag_interval_ms(),
    }
    .build(&ctx)?;
    let sink = RabbitMqSinkConfig {
        url: URL.into(),
        exchange: String::new(),
        routing_key: Some("bench-out".into()),
        declare_queue: None,
        persistent: false,
        topology: Default::default(),
        tls: Default::default(),
        confirm_timeout_ms: 30_000,
    }
    .build(&ctx)?;
    let stats = Arc::new(PipelineStats::default());
    let pipeline = Pipeline {
        name: "bench".into(),
        source,
        source_redelivers: true,
        chain: vec![handler],
        sinks: HashMap::from([("out".to_owned(), sink)]),
        default_sink: "out".into(),
        dead_letter: Arc::new(DropSink),
        delivery: DeliverySettings {
            max_in_flight: PREFETCH as usize,
            batch_size: BATCH,
            ..DeliverySettings::default()
        },
        shutdown_deadline: Duration::from_secs(10),
        workers: 2,
        stats: stats.clone(),
        payload_log: None,
    };
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(pipeline.run(shutdown.clone()));
    // The clock starts once the source is consuming, as for the relay and the Python consumer
    // (connecting is not part of the throughput).
    while !stats
        .source_connected
        .get()
        .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let (started, cpu, broker) = (Instant::now(), cpu_seconds(false), broker_cpu_seconds());
    while PipelineStats::get(&stats.acked) < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(false) - cpu;
    let broker = broker_cpu_seconds() - broker;
    if std::env::var_os("SLUICE_BENCH_ONLY").is_some() {
        for (name, h) in stats.handlers() {
            let calls = h.duration.snapshot().count;
            println!(
                "  handler {name}: {calls} calls, {:.1} messages per call",
                n as f64 / calls as f64
            );
        }
    }
    shutdown.cancel();
    run.await??;
    Ok(Rate {
        per_s: n as f64 / elapsed,
        per_cpu_s: n as f64 / cpu,
        broker_us: broker * 1e6 / n as f64,
    })
}

/// What a careful hand-written consumer does, with no WASM: the same prefetch, the same batching
/// and the same confirm-then-ack order, uppercasing in Rust.
async fn raw_relay(ch: &Channel, n: usize) -> anyhow::Result<Rate> {
    setup(ch, &["bench-in", "bench-out"], n).await?;
    // A connection to consume and one to publish, as Sluice's source and sink have (and as
    // RabbitMQ advises: flow control on a publishing connection must not hold up acks).
    let consume_conn = Connection::connect(URL, ConnectionProperties::default()).await?;
    let publish_conn = Connection::connect(URL, ConnectionProperties::default()).await?;
    let consume = consume_conn.create_channel().await?;
    consume
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let publish = publish_conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut consumer = consume
        .basic_consume(
            "bench-in".into(),
            "raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let (started, cpu, broker) = (Instant::now(), cpu_seconds(false), broker_cpu_seconds());
    let mut done = 0;
    while done < n {
        let Some(first) = consumer.next().await else {
            anyhow::bail!("consumer ended")
        };
        let mut batch = vec![first?];
        while batch.len() < BATCH {
            match consumer.next().now_or_never() {
                Some(Some(d)) => batch.push(d?),
                _ => break,
            }
        }
        let upper: Vec<Vec<u8>> = batch.iter().map(|d| d.data.to_ascii_uppercase()).collect();
        // The same lapin usage as Sluice's sink: the batch's publishes polled together, in order.
        let confirms = in_order(upper.iter().map(|payload| {
            publish.basic_publish(
                "".into(),
                "bench-out".into(),
                BasicPublishOptions::default(),
                payload,
                BasicProperties::default(),
            )
        }))
        .await;
        for c in confirms {
            c?.await?;
        }
        // One batch at a time, so the batch's last tag acknowledges all of it in one frame.
        if let Some(last) = batch.last() {
            last.ack(BasicAckOptions { multiple: true }).await?;
        }
        done += batch.len();
    }
    Ok(Rate {
        per_s: n as f64 / started.elapsed().as_secs_f64(),
        per_cpu_s: n as f64 / (cpu_seconds(false) - cpu),
        broker_us: (broker_cpu_seconds() - broker) * 1e6 / n as f64,
    })
}

/// The Python consumer of `bench/python/consumer.py`, if aio-pika is installed.
async fn python_consumer(ch: &Channel, n: usize) -> anyhow::Result<Option<Rate>> {
    let available = std::process::Command::new("python3")
        .args(["-c", "import aio_pika, pydantic"])
        .status();
    if !available.is_ok_and(|s| s.success()) {
        return Ok(None);
    }
    setup(ch, &["bench-in", "bench-out"], n).await?;
    let (cpu, broker) = (cpu_seconds(true), broker_cpu_seconds());
    let out = tokio::process::Command::new("python3")
        .arg(repo().join("bench/python/consumer.py"))
        .arg(n.to_string())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "python consumer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Includes the interpreter's start-up, which the wall-clock rate (timed by the consumer
    // from its first message) does not.
    let cpu = cpu_seconds(true) - cpu;
    let broker = broker_cpu_seconds() - broker;
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text.split_whitespace().nth(1).and_then(|r| r.parse().ok());
    Ok(rate.map(|per_s| Rate {
        per_s,
        per_cpu_s: n as f64 / cpu,
        broker_us: broker * 1e6 / n as f64,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let conn = Connection::connect(URL, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let reps = 3;
    let (mut raw, mut sluice) = (Vec::new(), Vec::new());
    // `SLUICE_BENCH_ONLY=sluice` (or `raw`) runs one side alone, e.g. under a profiler.
    let only = std::env::var("SLUICE_BENCH_ONLY").ok();
    if let Some(side) = only.as_deref() {
        for _ in 0..reps {
            let rate = match side {
                "raw" => raw_relay(&ch, n).await?,
                _ => sluice_run(&ch, n).await?,
            };
            println!(
                "{side}: {:.0} msg/s, {:.0} msg per CPU-second",
                rate.per_s, rate.per_cpu_s
            );
        }
        return Ok(());
    }
    for _ in 0..reps {
        raw.push(raw_relay(&ch, n).await?);
        sluice.push(sluice_run(&ch, n).await?);
    }
    let wall = |r: &Rate| r.per_s;
    let cpu = |r: &Rate| r.per_cpu_s;
    let (raw_s, sluice_s) = (median(raw.clone(), wall), median(sluice.clone(), wall));
    let broker_us = |r: &Rate| r.broker_us;
    let (raw_b, sluice_b) = (
        median(raw.clone(), broker_us),
        median(sluice.clone(), broker_us),
    );
    let (raw_c, sluice_c) = (median(raw, cpu), median(sluice, cpu));
    println!(
        "RabbitMQ → uppercase → RabbitMQ, {n} messages of 256 bytes, prefetch {PREFETCH}, median of {reps}:"
    );
    println!(
        "                                 msg/s   msg per consumer CPU-second   broker CPU µs/msg"
    );
    println!("  raw relay (lapin, no WASM): {raw_s:>8.0}   {raw_c:>8.0}   {raw_b:>8.1}");
    println!("  sluice (WASM uppercase):    {sluice_s:>8.0}   {sluice_c:>8.0}   {sluice_b:>8.1}");
    println!(
        "  sluice / raw relay: {:.0}% (wall), {:.0}% (CPU)",
        100.0 * sluice_s / raw_s,
        100.0 * sluice_c / raw_c
    );
    let py_n = n / 5;
    let mut py = Vec::new();
    for _ in 0..reps {
        match python_consumer(&ch, py_n).await? {
            Some(rate) => py.push(rate),
            None => break,
        }
    }
    if py.is_empty() {
        println!("  python consumer skipped: `pip install aio-pika pydantic` to include it");
    } else {
        let (py_s, py_b) = (median(py.clone(), wall), median(py.clone(), broker_us));
        let py_c = median(py, cpu);
        println!(
            "  python (aio-pika + pydantic, {py_n} messages): {py_s:>8.0}   {py_c:>8.0}   {py_b:>8.1}"
        );
        println!(
            "  sluice / python: {:.1}x (wall), {:.1}x (CPU)",
            sluice_s / py_s,
            sluice_c / py_c
        );
    }
    Ok(())
}
