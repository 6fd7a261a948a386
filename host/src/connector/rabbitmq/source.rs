//! The RabbitMQ source: one connection and channel, a consumer with prefetch, and a task that
//! sends acknowledgements in the order they are settled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _};
use lapin::options::{BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use tokio::sync::{mpsc, oneshot};

use super::RabbitMqSourceConfig;
use super::headers::{from_table, redeliveries};
use crate::ack::{AckToken, Acker, Settlement};
use crate::connector::{Delivery, Source};
use crate::message::{Message, Metadata};

enum AckJob {
    Settle(lapin::Acker, Settlement),
    /// Answered once every job before it has been sent to the broker.
    Flush(oneshot::Sender<()>),
}

/// Maps our delivery ids to lapin's ackers and hands settlements to the ack task.
struct RabbitAcker {
    pending: Mutex<HashMap<u64, lapin::Acker>>,
    next_id: AtomicU64,
    jobs: mpsc::UnboundedSender<AckJob>,
}

impl Acker for RabbitAcker {
    fn settle(&self, id: u64, how: Settlement) {
        let acker = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(acker) = acker {
            // The task only ends when the source is gone; a closed queue means nothing to ack on.
            let _ = self.jobs.send(AckJob::Settle(acker, how));
        }
    }
}

struct Live {
    connection: Connection,
    _channel: Channel,
    consumer: Consumer,
}

pub struct RabbitMqSource {
    cfg: RabbitMqSourceConfig,
    prefetch: u16,
    live: Option<Live>,
    acker: Option<Arc<RabbitAcker>>,
    source: Arc<str>,
    topic: Arc<str>,
}

impl RabbitMqSource {
    pub fn new(cfg: RabbitMqSourceConfig, prefetch: u16) -> Self {
        let topic = Arc::from(cfg.queue.as_str());
        RabbitMqSource {
            cfg,
            prefetch,
            live: None,
            acker: None,
            source: Arc::from("rabbitmq"),
            topic,
        }
    }

    fn acker(&mut self) -> Arc<RabbitAcker> {
        self.acker
            .get_or_insert_with(|| {
                let (jobs, rx) = mpsc::unbounded_channel();
                tokio::spawn(run_acks(rx));
                Arc::new(RabbitAcker {
                    pending: Mutex::default(),
                    next_id: AtomicU64::new(1),
                    jobs,
                })
            })
            .clone()
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        let queue = &self.cfg.queue;
        let connection = Connection::connect(&self.cfg.url, ConnectionProperties::default())
            .await
            .with_context(|| format!("rabbitmq source `{queue}`: cannot connect"))?;
        let channel = connection
            .create_channel()
            .await
            .context("rabbitmq source: cannot open a channel")?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .context("rabbitmq source: basic.qos")?;
        if self.cfg.declare {
            super::declare_durable(&channel, queue, "rabbitmq source").await?;
        }
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "sluice".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("rabbitmq source: cannot consume from `{queue}`"))?;
        tracing::info!(queue = %queue, prefetch = self.prefetch, "rabbitmq source connected");
        self.live = Some(Live {
            connection,
            _channel: channel,
            consumer,
        });
        Ok(())
    }

    fn delivery(&self, acker: &Arc<RabbitAcker>, d: lapin::message::Delivery) -> Delivery {
        let id = acker.next_id.fetch_add(1, Ordering::Relaxed);
        let table = d.properties.headers().as_ref();
        let mut meta = Metadata::received_now(self.source.clone(), self.topic.clone());
        meta.attempt = redeliveries(table, d.redelivered) + 1;
        meta.timestamp_ms = d
            .properties
            .timestamp()
            .map(|s| (s as i64).saturating_mul(1000));
        let message = Message {
            id: d.properties.message_id().as_ref().map_or_else(
                || format!("{}:{}", self.topic, d.delivery_tag),
                |m| m.as_str().to_owned(),
            ),
            key: (!d.routing_key.as_str().is_empty())
                .then(|| Bytes::copy_from_slice(d.routing_key.as_str().as_bytes())),
            payload: Bytes::from(d.data),
            headers: from_table(table),
            meta,
        };
        acker
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, d.acker);
        Delivery::new(message, AckToken::new(acker.clone() as Arc<dyn Acker>, id))
    }
}

#[async_trait]
impl Source for RabbitMqSource {
    async fn next_batch(&mut self, max: usize) -> anyhow::Result<Option<Vec<Delivery>>> {
        let acker = self.acker();
        if self.live.is_none() {
            super::within_connect_timeout("rabbitmq source", self.connect()).await?;
        }
        let Some(live) = self.live.as_mut() else {
            anyhow::bail!("rabbitmq source: not connected")
        };
        // Cancel-safe: a delivery not yet taken from the stream stays in the consumer's buffer.
        let first = match live.consumer.next().await {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.live = None;
                return Err(
                    anyhow::Error::new(e).context("rabbitmq source: consumer failed; reconnecting")
                );
            }
            None => {
                self.live = None;
                anyhow::bail!("rabbitmq source: the broker cancelled the consumer; reconnecting");
            }
        };
        let mut raw = vec![first];
        while raw.len() < max {
            match live.consumer.next().now_or_never() {
                Some(Some(Ok(d))) => raw.push(d),
                _ => break,
            }
        }
        Ok(Some(
            raw.into_iter().map(|d| self.delivery(&acker, d)).collect(),
        ))
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        if let Some(acker) = &self.acker {
            let (done, flushed) = oneshot::channel();
            if acker.jobs.send(AckJob::Flush(done)).is_ok() {
                let _ = flushed.await;
            }
        }
        if let Some(live) = self.live.take() {
            live.connection
                .close(200, "sluice source closing".into())
                .await
                .context("rabbitmq source: closing")?;
        }
        Ok(())
    }
}

async fn run_acks(mut jobs: mpsc::UnboundedReceiver<AckJob>) {
    let requeue = BasicNackOptions {
        requeue: true,
        multiple: false,
    };
    while let Some(job) = jobs.recv().await {
        let result = match job {
            AckJob::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            AckJob::Settle(acker, Settlement::Ack) => acker.ack(Default::default()).await,
            AckJob::Settle(acker, Settlement::Nack { delay }) if !delay.is_zero() => {
                // RabbitMQ has no delayed requeue: hold the message (still unacknowledged, so
                // still safe) for the delay, then requeue it.
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Err(e) = acker.nack(requeue).await {
                        tracing::warn!(error = %e, "rabbitmq nack failed; the broker will redeliver on reconnect");
                    }
                });
                continue;
            }
            AckJob::Settle(acker, Settlement::Nack { .. } | Settlement::Abandon) => {
                acker.nack(requeue).await
            }
        };
        if let Err(e) = result {
            // The channel is gone: the broker requeues every unacknowledged message itself.
            tracing::warn!(error = %e, "rabbitmq acknowledgement failed; the broker will redeliver");
        }
    }
}
