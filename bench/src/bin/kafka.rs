//! Kafka → `uppercase` (WASM) → Kafka through Sluice, against a raw relay with the same client
//! settings and no WASM, in the same run, on the Kafka-protocol broker at 127.0.0.1:9092
//! (`scripts/brokers.sh` starts it).
//!
//! Both sides: one consumer-group member with manual offset storing, an idempotent producer
//! (`acks=all`, zstd, linger 5 ms), batches of up to 128 records taken from what has arrived, each
//! batch's offsets stored only after every record of it and of every earlier batch is acknowledged
//! by the broker, and the same number of records in flight (`SLUICE_BENCH_WINDOW`, default 1024).
//!
//! Run: `scripts/build-plugins.sh && cargo run --release -p sluice-bench --bin kafka -- [messages]`
//! (`SLUICE_BENCH_REPS`, default 5; `SLUICE_BENCH_ONLY=sluice|raw` runs one side alone).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::future::join_all;
use futures::stream::FuturesOrdered;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use sluice::connector::drop::DropSink;
use sluice::connector::kafka::{KafkaSinkConfig, KafkaSourceConfig};
use sluice::connector::{BuildContext, SinkFactory, SourceFactory};
use sluice::engine::DeliverySettings;
use sluice::engine::{Pipeline, PipelineStats, Transform};
use sluice::plugin::Limits;
use sluice::plugin::PluginHost;
use sluice_bench::{cpu_seconds, processes_cpu_seconds};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BROKERS: &str = "127.0.0.1:9092";
const BATCH: usize = 128;

/// Records in flight on both sides (Sluice's `max_in_flight`): `SLUICE_BENCH_WINDOW`, else the
/// default 1024.
fn window() -> usize {
    std::env::var("SLUICE_BENCH_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("{{\"id\": {i}, \"text\": \"").into_bytes();
    while p.len() < 254 {
        p.push(b'a' + (p.len() % 26) as u8);
    }
    p.extend_from_slice(b"\"}");
    p
}

fn client() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", BROKERS);
    c
}

/// A run's input and output topics.
fn topics(run: &str) -> (String, String) {
    (format!("bench-in-{run}"), format!("bench-out-{run}"))
}

/// Delete a run's topics. The broker keeps every record, and fresh topics for every run of a long
/// session once filled its memory (noida-db was killed at 23 GB). A failure is only reported.
async fn teardown(run: &str) {
    let (input, output) = topics(run);
    let deleted = async {
        let admin: AdminClient<DefaultClientContext> = client().create()?;
        for r in admin
            .delete_topics(&[&input, &output], &AdminOptions::new())
            .await?
        {
            r.map_err(|(t, e)| anyhow::anyhow!("{t}: {e}"))?;
        }
        anyhow::Ok(())
    };
    if let Err(e) = deleted.await {
        eprintln!("  (could not delete the topics of run {run}: {e:#})");
    }
}

/// Fresh input and output topics, the input filled with `n` records.
async fn setup(run: &str, n: usize) -> anyhow::Result<(String, String)> {
    let (input, output) = topics(run);
    let admin: AdminClient<DefaultClientContext> = client().create()?;
    let topics = [
        NewTopic::new(&input, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&output, 1, TopicReplication::Fixed(1)),
    ];
    for r in admin.create_topics(&topics, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    let producer: FutureProducer = client().set("linger.ms", "5").create()?;
    let sends = (0..n).map(|i| {
        let p = payload(i);
        let producer = producer.clone();
        let input = input.clone();
        async move {
            producer
                .send(
                    FutureRecord::<(), _>::to(&input).payload(&p),
                    Duration::from_secs(30),
                )
                .await
                .map(drop)
                .map_err(|(e, _)| e)
        }
    });
    for r in join_all(sends).await {
        r?;
    }
    Ok((input, output))
}

/// One side's result: records per second, and the mean time a record spent in flight (pulled to
/// delivered), in ms. With the window full, rate ≈ window / time in flight, so the second figure
/// says whether a side is slower per record (CPU) or per round (latency).
#[derive(Clone, Copy)]
struct Side {
    rate: f64,
    in_flight_ms: f64,
    /// CPU time per record, in µs, of this process (the consumer) and of the broker.
    cpu_us: f64,
    broker_us: f64,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>8.0} msg/s, {:.2} ms in flight, CPU per record {:.1} µs (broker {:.1} µs)",
            self.rate, self.in_flight_ms, self.cpu_us, self.broker_us
        )
    }
}

/// CPU seconds of this process and of the broker, read together.
fn cpu_now() -> (f64, f64) {
    (cpu_seconds(false), processes_cpu_seconds("noida-db"))
}

/// Per-record CPU in µs since `from`, for `n` records: (this process, the broker).
fn cpu_per_record(from: (f64, f64), n: usize) -> (f64, f64) {
    let now = cpu_now();
    let per = |a: f64, b: f64| (b - a) * 1e6 / n as f64;
    (per(from.0, now.0), per(from.1, now.1))
}

/// Times each batch's `send` (enqueue to librdkafka until every delivery report is in).
struct TimedSink {
    inner: Arc<dyn sluice::connector::Sink>,
    batches: std::sync::atomic::AtomicU64,
    nanos: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl sluice::connector::Sink for TimedSink {
    async fn send(&self, batch: &[sluice::message::Output]) -> sluice::connector::SendResult {
        let started = Instant::now();
        let sent = self.inner.send(batch).await;
        let nanos = started.elapsed().as_nanos() as u64;
        self.nanos
            .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
        self.batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sent
    }

    async fn close(&self) -> anyhow::Result<()> {
        self.inner.close().await
    }
}

async fn sluice_run(run: &str, n: usize) -> anyhow::Result<Side> {
    let (input, output) = setup(run, n).await?;
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
    let window = window();
    let ctx = BuildContext {
        pipeline: "bench".into(),
        max_in_flight: window,
        base_dir: repo(),
    };
    let source = KafkaSourceConfig {
        brokers: BROKERS.into(),
        topics: vec![input],
        group: format!("bench-sluice-{run}"),
        start_from: Default::default(),
        assignment: Default::default(),
        commit_interval_ms: 1000,
        session_timeout_ms: Some(6000),
        lag_interval_ms: 0,
        tls: None,
        sasl: None,
        options: Default::default(),
    }
    .build(&ctx)?;
    let sink = KafkaSinkConfig {
        brokers: BROKERS.into(),
        topic: output,
        compression: Default::default(),
        linger_ms: 5,
        message_timeout_ms: 30_000,
        tls: None,
        sasl: None,
        options: Default::default(),
    }
    .build(&ctx)?;
    let timed = Arc::new(TimedSink {
        inner: sink,
        batches: Default::default(),
        nanos: Default::default(),
    });
    let sink: Arc<dyn sluice::connector::Sink> = timed.clone();
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
            max_in_flight: window,
            batch_size: BATCH,
            ..DeliverySettings::default()
        },
        shutdown_deadline: Duration::from_secs(10),
        workers: 2,
        stats: stats.clone(),
        payload_log: None,
    };
    let shutdown = CancellationToken::new();
    let run_task = tokio::spawn(pipeline.run(shutdown.clone()));
    // The clock starts with the first record, not with the group join.
    while PipelineStats::get(&stats.received) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (started, cpu) = (Instant::now(), cpu_now());
    while PipelineStats::get(&stats.acked) < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu_us, broker_us) = cpu_per_record(cpu, n);
    shutdown.cancel();
    run_task.await??;
    let latency = stats.end_to_end.snapshot();
    let batches = timed.batches.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "    sink: {batches} sends, mean {:.3} ms",
        timed.nanos.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6 / batches.max(1) as f64
    );
    for (name, h) in stats.handlers() {
        let calls = h.duration.snapshot();
        eprintln!(
            "    handler `{name}`: {} calls, mean {:.3} ms",
            calls.count,
            1e3 * calls.sum_seconds / calls.count.max(1) as f64
        );
    }
    Ok(Side {
        rate: n as f64 / elapsed,
        in_flight_ms: 1e3 * latency.sum_seconds / latency.count.max(1) as f64,
        cpu_us,
        broker_us,
    })
}

/// A careful hand-written relay on rdkafka with the same settings, pipelined as Sluice is: up to
/// `window()` records in flight (Sluice's `max_in_flight`), a new batch taken from what has
/// arrived whenever there is room, and each batch's offset stored once it and every batch before
/// it are delivered (the contiguous prefix, as Sluice's source stores it).
async fn raw_relay(run: &str, n: usize) -> anyhow::Result<Side> {
    let (input, output) = setup(run, n).await?;
    let consumer: StreamConsumer = client()
        .set("group.id", format!("bench-raw-{run}"))
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "6000")
        .create()?;
    consumer.subscribe(&[&input])?;
    let producer: FutureProducer = client()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "zstd")
        .set("linger.ms", "5")
        .create()?;
    // Each entry: a batch's delivery results, where its offsets end, and its size.
    // `FuturesOrdered` yields in the order the batches were taken, so a stored offset never
    // passes an undelivered record.
    let mut in_flight = FuturesOrdered::new();
    let window = window();
    let (mut held, mut done) = (0, 0);
    let (mut started, mut cpu) = (None, cpu_now());
    let mut in_flight_secs = 0.0;
    while done < n {
        tokio::select! {
            biased;
            Some((delivered, (partition, offset), len, taken)) = in_flight.next(), if !in_flight.is_empty() => {
                let taken: Instant = taken;
                in_flight_secs += taken.elapsed().as_secs_f64() * len as f64;
                let delivered: Vec<Result<OwnedDeliveryResult, _>> = delivered;
                for d in delivered {
                    d?.map_err(|(e, _)| e)?;
                }
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&input, partition, Offset::Offset(offset + 1))?;
                consumer.store_offsets(&tpl)?;
                held -= len;
                done += len;
            }
            first = consumer.recv(), if held < window => {
                let first = first?;
                started.get_or_insert_with(|| {
                    cpu = cpu_now();
                    Instant::now()
                });
                let room = BATCH.min(window - held);
                let mut batch = vec![first];
                while batch.len() < room {
                    match consumer.recv().now_or_never() {
                        Some(Ok(m)) => batch.push(m),
                        _ => break,
                    }
                }
                let deliveries = batch
                    .iter()
                    .map(|m| {
                        let upper = m.payload().unwrap_or_default().to_ascii_uppercase();
                        producer
                            .send_result(FutureRecord::<(), _>::to(&output).payload(&upper))
                            .map_err(|(e, _)| e)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let last = batch.last().expect("a batch has a record");
                let (end, len) = ((last.partition(), last.offset()), batch.len());
                held += len;
                let taken = Instant::now();
                in_flight.push_back(async move { (join_all(deliveries).await, end, len, taken) });
            }
        }
    }
    let elapsed = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let (cpu_us, broker_us) = cpu_per_record(cpu, n);
    Ok(Side {
        rate: n as f64 / elapsed,
        in_flight_ms: 1e3 * in_flight_secs / done.max(1) as f64,
        cpu_us,
        broker_us,
    })
}

/// One side's run (`NaN` when `skip`), then its topics deleted whether or not it succeeded.
async fn run_side(
    skip: bool,
    run: &str,
    side: impl std::future::Future<Output = anyhow::Result<Side>>,
) -> anyhow::Result<Side> {
    if skip {
        return Ok(Side {
            rate: f64::NAN,
            in_flight_ms: f64::NAN,
            cpu_us: f64::NAN,
            broker_us: f64::NAN,
        });
    }
    let rate = side.await;
    teardown(run).await;
    rate
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let reps = std::env::var("SLUICE_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let stamp = std::process::id();
    let only = std::env::var("SLUICE_BENCH_ONLY").ok();
    let (mut raw, mut sluice) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        // `SLUICE_BENCH_ONLY=sluice` (or `raw`) runs one side alone, e.g. under a profiler.
        let (raw_name, sluice_name) = (
            format!("{stamp}-raw-{rep}"),
            format!("{stamp}-sluice-{rep}"),
        );
        let raw_side = raw_relay(&raw_name, n);
        raw.push(run_side(only.as_deref() == Some("sluice"), &raw_name, raw_side).await?);
        let sluice_side = sluice_run(&sluice_name, n);
        sluice.push(run_side(only.as_deref() == Some("raw"), &sluice_name, sluice_side).await?);
        println!("  run {}: raw relay {}", rep + 1, raw[rep]);
        println!("         sluice    {}", sluice[rep]);
    }
    let median = |sides: &mut Vec<Side>| {
        sides.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        sides[reps / 2]
    };
    let (raw, sluice) = (median(&mut raw), median(&mut sluice));
    println!("Kafka → uppercase → Kafka, {n} records of 256 bytes, median of {reps}:");
    println!("  raw relay (rdkafka, no WASM): {raw}");
    println!("  sluice (WASM uppercase):      {sluice}");
    let (sluice, raw) = (sluice.rate, raw.rate);
    println!("  sluice / raw relay: {:.0}%", 100.0 * sluice / raw);
    Ok(())
}
