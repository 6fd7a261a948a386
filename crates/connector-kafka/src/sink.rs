//! The Kafka sink: an idempotent producer; a batch is confirmed when every record is acknowledged
//! by all in-sync replicas. A record Kafka refuses for what it is (over `message.max.bytes`,
//! malformed) is rejected; other failures are retryable.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use super::{Compression, KafkaSinkConfig};
use sluice_core::connector::{BatchStatus, BuildContext, SendResult, Sink};
use sluice_core::message::Output;

pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
}

impl KafkaSink {
    pub fn new(cfg: &KafkaSinkConfig, ctx: &BuildContext) -> anyhow::Result<Self> {
        let mut client = cfg.common().client_config(Some(ctx));
        let compression = match cfg.compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        };
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", compression)
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("message.timeout.ms", cfg.message_timeout_ms.to_string());
        let producer = client
            .create()
            .with_context(|| format!("kafka sink `{}`: cannot create the producer", cfg.topic))?;
        Ok(KafkaSink {
            producer,
            topic: cfg.topic.clone(),
        })
    }
}

fn headers(out: &Output) -> Option<OwnedHeaders> {
    (!out.headers.is_empty()).then(|| {
        out.headers.iter().fold(
            OwnedHeaders::new_with_capacity(out.headers.len()),
            |h, (name, value)| {
                // The bytes a Kafka source read (or null), else the text.
                h.insert(Header {
                    key: name,
                    value: value.bytes(),
                })
            },
        )
    })
}

/// How long a record may wait for room in librdkafka's local queue (`queue.buffering.max.*`)
/// before its batch fails. The same as rdkafka's own `send` is given here elsewhere.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

impl KafkaSink {
    fn record<'a>(&'a self, out: &'a Output) -> FutureRecord<'a, [u8], [u8]> {
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).payload(&out.payload[..]);
        if let Some(key) = &out.key {
            record = record.key(&key[..]);
        }
        if let Some(h) = headers(out) {
            record = record.headers(h);
        }
        if let Some(ts) = out.timestamp_ms {
            record = record.timestamp(ts);
        }
        record
    }

    fn not_acknowledged(&self, e: &KafkaError) -> String {
        format!(
            "kafka sink `{}`: a record was not acknowledged: {e}",
            self.topic
        )
    }

    /// Mark record `i` by `e`: rejected when Kafka will refuse it the same way again.
    fn failed(&self, status: &mut BatchStatus, i: usize, e: &KafkaError) {
        if e.rdkafka_error_code().is_some_and(refused_for_good) {
            status.reject(i, self.not_acknowledged(e));
        } else {
            status.retry(i, self.not_acknowledged(e));
        }
    }

    /// Await one delivery report and mark record `i` by it.
    async fn delivered(&self, status: &mut BatchStatus, (i, delivery): (usize, DeliveryFuture)) {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => self.failed(status, i, &e),
            Err(_) => status.retry(
                i,
                format!("kafka sink `{}`: the producer went away", self.topic),
            ),
        }
    }
}

/// Errors that say the record itself is wrong for the broker (too large for `message.max.bytes`,
/// malformed): sending it again fails the same way. The topic comes from the pipeline file, so a
/// topic error is the setup's, and retried.
fn refused_for_good(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTimestamp
            | RDKafkaErrorCode::BadMessage
    )
}

#[async_trait]
impl Sink for KafkaSink {
    async fn send(&self, batch: &[Output]) -> SendResult {
        // Every record is queued without waiting (`send_result`), so one batch is one round of
        // produce requests; the delivery reports are then awaited in order, one waker at a time
        // (a `join_all` over the batch re-polls a set of futures per report). When librdkafka's
        // local queue is full, the batch's own earliest report is awaited to make room.
        let mut status = BatchStatus::new(batch.len());
        let mut waiting = VecDeque::with_capacity(batch.len());
        for (i, out) in batch.iter().enumerate() {
            let since = Instant::now();
            loop {
                match self.producer.send_result(self.record(out)) {
                    Ok(delivery) => {
                        waiting.push_back((i, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if since.elapsed() < QUEUE_TIMEOUT =>
                    {
                        match waiting.pop_front() {
                            Some(first) => self.delivered(&mut status, first).await,
                            // Full with other batches' records: wait as rdkafka's `send` does.
                            None => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    Err((e, _)) => {
                        self.failed(&mut status, i, &e);
                        break;
                    }
                }
            }
        }
        for delivery in waiting {
            self.delivered(&mut status, delivery).await;
        }
        status.finish()
    }

    async fn close(&self) -> anyhow::Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
            .await
            .context("kafka sink: flush task")?
            .with_context(|| format!("kafka sink `{}`: flush at close", self.topic))
    }
}
