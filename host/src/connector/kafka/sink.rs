//! The Kafka sink: an idempotent producer; a batch is confirmed when every record is acknowledged
//! by all in-sync replicas.

use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use super::{Compression, KafkaSinkConfig};
use crate::connector::{BuildContext, Sink};
use crate::message::Output;

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

#[async_trait]
impl Sink for KafkaSink {
    async fn send(&self, batch: &[Output]) -> anyhow::Result<()> {
        // Everything is queued first and awaited together, so one batch is one round of produce
        // requests rather than one per record. If the local queue is full, `send` waits for room.
        let sends = batch.iter().map(|out| {
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
            self.producer.send(record, Duration::from_secs(30))
        });
        for result in join_all(sends).await {
            if let Err((e, _)) = result {
                return Err(anyhow::Error::new(e).context(format!(
                    "kafka sink `{}`: a record was not acknowledged",
                    self.topic
                )));
            }
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
