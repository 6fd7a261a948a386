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
use sluice::config::{DeliveryConfig, LimitsConfig};
use sluice::connector::drop::DropSink;
use sluice::connector::rabbitmq::{RabbitMqSinkConfig, RabbitMqSourceConfig};
use sluice::connector::{BuildContext, SinkFactory, SourceFactory};
use sluice::engine::{Pipeline, PipelineStats, Transform};
use sluice::plugin::PluginHost;
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
}

/// CPU time (user + system, seconds) of this process, or of its waited-for children, from
/// /proc/self/stat (fields 14-17, in clock ticks of 1/100 s on Linux).
fn cpu_seconds(children: bool) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let field = |k: usize| {
        rest.get(k - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let ticks = if children {
        field(16) + field(17)
    } else {
        field(14) + field(15)
    };
    ticks / 100.0
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
        &LimitsConfig::default(),
    )?;
    let handler: Arc<dyn Transform> = Arc::new(plugin.into_handler(
        "bench",
        "uppercase",
        Vec::new(),
        sluice::config::BatchAbi::Auto,
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
        topology: Default::default(),
        tls: Default::default(),
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
        delivery: DeliveryConfig {
            max_in_flight: PREFETCH as usize,
            batch_size: BATCH,
            ..DeliveryConfig::default()
        },
        shutdown_deadline: Duration::from_secs(10),
        workers: 2,
        stats: stats.clone(),
        payload_log: None,
    };
    let shutdown = CancellationToken::new();
    let (started, cpu) = (Instant::now(), cpu_seconds(false));
    let run = tokio::spawn(pipeline.run(shutdown.clone()));
    while PipelineStats::get(&stats.acked) < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(false) - cpu;
    shutdown.cancel();
    run.await??;
    Ok(Rate {
        per_s: n as f64 / elapsed,
        per_cpu_s: n as f64 / cpu,
    })
}

/// What a careful hand-written consumer does, with no WASM: the same prefetch, the same batching
/// and the same confirm-then-ack order, uppercasing in Rust.
async fn raw_relay(conn: &Connection, ch: &Channel, n: usize) -> anyhow::Result<Rate> {
    setup(ch, &["bench-in", "bench-out"], n).await?;
    let consume = conn.create_channel().await?;
    consume
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let publish = conn.create_channel().await?;
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
    let (started, cpu) = (Instant::now(), cpu_seconds(false));
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
        let mut confirms = Vec::with_capacity(batch.len());
        for d in &batch {
            let upper = d.data.to_ascii_uppercase();
            confirms.push(
                publish
                    .basic_publish(
                        "".into(),
                        "bench-out".into(),
                        BasicPublishOptions::default(),
                        &upper,
                        BasicProperties::default(),
                    )
                    .await?,
            );
        }
        for c in confirms {
            c.await?;
        }
        for d in batch {
            d.ack(BasicAckOptions::default()).await?;
            done += 1;
        }
    }
    Ok(Rate {
        per_s: n as f64 / started.elapsed().as_secs_f64(),
        per_cpu_s: n as f64 / (cpu_seconds(false) - cpu),
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
    let cpu = cpu_seconds(true);
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
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text.split_whitespace().nth(1).and_then(|r| r.parse().ok());
    Ok(rate.map(|per_s| Rate {
        per_s,
        per_cpu_s: n as f64 / cpu,
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
    for _ in 0..reps {
        raw.push(raw_relay(&conn, &ch, n).await?);
        sluice.push(sluice_run(&ch, n).await?);
    }
    let wall = |r: &Rate| r.per_s;
    let cpu = |r: &Rate| r.per_cpu_s;
    let (raw_s, sluice_s) = (median(raw.clone(), wall), median(sluice.clone(), wall));
    let (raw_c, sluice_c) = (median(raw, cpu), median(sluice, cpu));
    println!(
        "RabbitMQ → uppercase → RabbitMQ, {n} messages of 256 bytes, prefetch {PREFETCH}, median of {reps}:"
    );
    println!("                                 msg/s   msg per consumer CPU-second");
    println!("  raw relay (lapin, no WASM): {raw_s:>8.0}   {raw_c:>8.0}");
    println!("  sluice (WASM uppercase):    {sluice_s:>8.0}   {sluice_c:>8.0}");
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
        let (py_s, py_c) = (median(py.clone(), wall), median(py, cpu));
        println!("  python (aio-pika + pydantic, {py_n} messages): {py_s:>8.0}   {py_c:>8.0}");
        println!(
            "  sluice / python: {:.1}x (wall), {:.1}x (CPU)",
            sluice_s / py_s,
            sluice_c / py_c
        );
    }
    Ok(())
}
