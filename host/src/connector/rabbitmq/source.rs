//! The RabbitMQ source: one connection and channel, a consumer with prefetch, and a task that
//! sends acknowledgements in the order they are settled.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _};
use lapin::options::{BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::mpsc;

use super::RabbitMqSourceConfig;
use super::headers::{from_table, redeliveries};
use crate::ack::Settlement;
use crate::connector::receipts::{Receipts, SettleJob};
use crate::connector::{ConnectedFlag, DEPTH_INTERVAL, Delivery, LagGauge, Source, unknown_lag};
use crate::message::{Message, Metadata};

struct Live {
    connection: Connection,
    _channel: Channel,
    consumer: Consumer,
}

pub struct RabbitMqSource {
    cfg: RabbitMqSourceConfig,
    prefetch: u16,
    live: Option<Live>,
    receipts: Option<Arc<Receipts<lapin::Acker>>>,
    source: Arc<str>,
    topic: Arc<str>,
    connected: ConnectedFlag,
    /// Messages ready in the queue (not yet delivered to any consumer); -1 until known.
    depth: LagGauge,
}

impl RabbitMqSource {
    pub fn new(cfg: RabbitMqSourceConfig, prefetch: u16) -> Self {
        let topic = Arc::from(cfg.queue.as_str());
        RabbitMqSource {
            cfg,
            prefetch,
            live: None,
            receipts: None,
            source: Arc::from("rabbitmq"),
            topic,
            connected: ConnectedFlag::default(),
            depth: unknown_lag(),
        }
    }

    fn receipts(&mut self) -> Arc<Receipts<lapin::Acker>> {
        self.receipts
            .get_or_insert_with(|| {
                let (receipts, jobs) = Receipts::new();
                tokio::spawn(run_acks(jobs));
                receipts
            })
            .clone()
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        let queue = &self.cfg.queue;
        let who = format!("rabbitmq source `{queue}`");
        let connection = super::topology::connect(&self.cfg.url, &self.cfg.tls, &who).await?;
        let channel = connection
            .create_channel()
            .await
            .context("rabbitmq source: cannot open a channel")?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .context("rabbitmq source: basic.qos")?;
        self.cfg.topology.declare(&channel, &who).await?;
        if self.cfg.declare {
            super::declare_durable(&channel, queue, &who).await?;
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
        // Queue depth for the lag gauge, on a channel of its own so that a failed check can
        // never close the consumer's.
        if let Ok(depth_channel) = connection.create_channel().await {
            tokio::spawn(watch_depth(
                depth_channel,
                queue.clone(),
                self.depth.clone(),
            ));
        }
        self.live = Some(Live {
            connection,
            _channel: channel,
            consumer,
        });
        Ok(())
    }

    fn delivery(
        &self,
        receipts: &Arc<Receipts<lapin::Acker>>,
        d: lapin::message::Delivery,
    ) -> Delivery {
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
        Delivery::new(message, receipts.token(d.acker))
    }
}

#[async_trait]
impl Source for RabbitMqSource {
    fn connected_flag(&self) -> Option<ConnectedFlag> {
        Some(self.connected.clone())
    }

    fn lag_gauge(&self) -> Option<LagGauge> {
        Some(self.depth.clone())
    }

    async fn next_batch(&mut self, max: usize) -> anyhow::Result<Option<Vec<Delivery>>> {
        let receipts = self.receipts();
        if self.live.is_none() {
            self.connected.store(false, Ordering::Relaxed);
            super::within_connect_timeout("rabbitmq source", self.connect()).await?;
            self.connected.store(true, Ordering::Relaxed);
        }
        let Some(live) = self.live.as_mut() else {
            anyhow::bail!("rabbitmq source: not connected")
        };
        // Cancel-safe: a delivery not yet taken from the stream stays in the consumer's buffer.
        let first = match live.consumer.next().await {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.live = None;
                self.connected.store(false, Ordering::Relaxed);
                return Err(
                    anyhow::Error::new(e).context("rabbitmq source: consumer failed; reconnecting")
                );
            }
            None => {
                self.live = None;
                self.connected.store(false, Ordering::Relaxed);
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
            raw.into_iter()
                .map(|d| self.delivery(&receipts, d))
                .collect(),
        ))
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        if let Some(receipts) = &self.receipts {
            receipts.flush().await;
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

async fn run_acks(mut jobs: mpsc::UnboundedReceiver<SettleJob<lapin::Acker>>) {
    let requeue = BasicNackOptions {
        requeue: true,
        multiple: false,
    };
    while let Some(job) = jobs.recv().await {
        let result = match job {
            SettleJob::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            SettleJob::Settle(acker, Settlement::Ack) => acker.ack(Default::default()).await,
            SettleJob::Settle(acker, Settlement::Nack { delay }) if !delay.is_zero() => {
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
            SettleJob::Settle(acker, Settlement::Nack { .. } | Settlement::Abandon) => {
                acker.nack(requeue).await
            }
        };
        if let Err(e) = result {
            // The channel is gone: the broker requeues every unacknowledged message itself.
            tracing::warn!(error = %e, "rabbitmq acknowledgement failed; the broker will redeliver");
        }
    }
}

/// Read the queue's ready-message count (a passive declare) every [`DEPTH_INTERVAL`] until the
/// connection goes; a reconnect starts a new watcher.
async fn watch_depth(channel: Channel, queue: String, depth: LagGauge) {
    let options = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    loop {
        match channel
            .queue_declare(queue.as_str().into(), options, FieldTable::default())
            .await
        {
            Ok(q) => depth.store(i64::from(q.message_count()), Ordering::Relaxed),
            Err(err) => {
                tracing::debug!(queue = %queue, error = %err, "queue depth watcher stopped");
                return;
            }
        }
        tokio::time::sleep(DEPTH_INTERVAL).await;
    }
}
