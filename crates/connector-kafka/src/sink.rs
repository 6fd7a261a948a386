//! The Kafka sink: an idempotent producer; a batch is confirmed when every record is acknowledged
//! by all in-sync replicas.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use super::{Compression, KafkaSinkConfig};
use sluice_core::connector::{BuildContext, Sink};
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
                h.insert(Header {
                    key: name,
                    value: Some(&value.as_bytes()[..]),
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

    fn not_acknowledged(&self, e: KafkaError) -> anyhow::Error {
        anyhow::Error::new(e).context(format!(
            "kafka sink `{}`: a record was not acknowledged",
            self.topic
        ))
    }

    /// Await one delivery report.
    async fn delivered(&self, delivery: DeliveryFuture) -> anyhow::Result<()> {
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(self.not_acknowledged(e)),
            Err(_) => bail!("kafka sink `{}`: the producer went away", self.topic),
        }
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn send(&self, batch: &[Output]) -> anyhow::Result<()> {
        // Every record is queued without waiting (`send_result`), so one batch is one round of
        // produce requests; the delivery reports are then awaited in order, one waker at a time
        // (a `join_all` over the batch re-polls a set of futures per report). When librdkafka's
        // local queue is full, the batch's own earliest report is awaited to make room.
        let mut waiting = VecDeque::with_capacity(batch.len());
        for out in batch {
            let since = Instant::now();
            loop {
                match self.producer.send_result(self.record(out)) {
                    Ok(delivery) => {
                        waiting.push_back(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if since.elapsed() < QUEUE_TIMEOUT =>
                    {
                        match waiting.pop_front() {
                            Some(first) => self.delivered(first).await?,
                            // Full with other batches' records: wait as rdkafka's `send` does.
                            None => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    Err((e, _)) => return Err(self.not_acknowledged(e)),
                }
            }
        }
        for delivery in waiting {
            self.delivered(delivery).await?;
        }
        Ok(())
    }

    async fn close(&self) -> anyhow::Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
            .await
            .context("kafka sink: flush task")?
            .with_context(|| format!("kafka sink `{}`: flush at close", self.topic))
    }
}
