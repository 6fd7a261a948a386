//! The RabbitMQ sink: publisher confirms for every message; `send` returns only when the broker
//! has confirmed the whole batch.
//!
//! A batch is published with its messages polled together (see `in_order.rs`), under a lock so
//! that two batches never interleave their confirm numbering; the confirms are awaited after the
//! lock is released, so the batches of several workers overlap on the wire.

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, PublisherConfirm};
use tokio::sync::Mutex;

use super::RabbitMqSinkConfig;
use super::headers::to_table;
use super::in_order::in_order;
use sluice_core::connector::Sink;
use sluice_core::message::Output;

struct Live {
    connection: Connection,
    channel: Channel,
    /// Counts connections, so that a failed batch drops only the connection it used.
    generation: u64,
}

pub struct RabbitMqSink {
    cfg: RabbitMqSinkConfig,
    /// Connected lazily, dropped on any error and made again on the next send.
    live: Mutex<Option<Live>>,
    generations: std::sync::atomic::AtomicU64,
}

impl RabbitMqSink {
    pub fn new(cfg: RabbitMqSinkConfig) -> Self {
        RabbitMqSink {
            cfg,
            live: Mutex::new(None),
            generations: Default::default(),
        }
    }

    async fn connect(&self) -> anyhow::Result<Live> {
        let connection =
            super::topology::connect(&self.cfg.url, &self.cfg.tls, "rabbitmq sink").await?;
        let channel = connection
            .create_channel()
            .await
            .context("rabbitmq sink: cannot open a channel")?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("rabbitmq sink: confirm.select")?;
        self.cfg.topology.declare(&channel, "rabbitmq sink").await?;
        if let Some(queue) = &self.cfg.declare_queue {
            super::declare_durable(&channel, queue, "rabbitmq sink").await?;
        }
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Live {
            connection,
            channel,
            generation,
        })
    }

    fn routing_key(&self, out: &Output) -> anyhow::Result<String> {
        match (&self.cfg.routing_key, &out.key) {
            (Some(key), _) => Ok(key.clone()),
            (None, Some(key)) => String::from_utf8(key.to_vec())
                .context("rabbitmq sink: the output key is not UTF-8"),
            (None, None) => {
                bail!("rabbitmq sink: no routing key (set `routing_key`, or give outputs a key)")
            }
        }
    }

    /// Queue every message of the batch; returns each one's routing key and confirm.
    async fn publish_all(
        &self,
        channel: &Channel,
        batch: &[Output],
    ) -> anyhow::Result<Vec<(String, PublisherConfirm)>> {
        let keys = batch
            .iter()
            .map(|out| self.routing_key(out))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let delivery_mode = if self.cfg.persistent { 2 } else { 1 };
        let published = in_order(batch.iter().zip(&keys).map(|(out, key)| {
            channel.basic_publish(
                self.cfg.exchange.as_str().into(),
                key.as_str().into(),
                options,
                &out.payload,
                BasicProperties::default()
                    .with_headers(to_table(&out.headers))
                    .with_delivery_mode(delivery_mode),
            )
        }))
        .await;
        keys.into_iter()
            .zip(published)
            .map(|(key, confirm)| Ok((key, confirm.context("rabbitmq sink: publish")?)))
            .collect()
    }

    /// Every confirm of the batch, within `confirm_timeout_ms` for the whole batch.
    async fn confirmed(&self, confirms: Vec<(String, PublisherConfirm)>) -> anyhow::Result<()> {
        let limit = std::time::Duration::from_millis(self.cfg.confirm_timeout_ms);
        sluice_core::deadline::within(limit, self.all_confirmed(confirms), || {
            anyhow::anyhow!(
                "rabbitmq sink: the broker did not confirm the batch within {} ms",
                self.cfg.confirm_timeout_ms
            )
        })
        .await
    }

    async fn all_confirmed(&self, confirms: Vec<(String, PublisherConfirm)>) -> anyhow::Result<()> {
        for (routing_key, confirm) in confirms {
            let confirmation = confirm
                .await
                .context("rabbitmq sink: waiting for the broker's confirm")?;
            if !confirmation.is_ack() {
                bail!("rabbitmq sink: the broker refused a message (nack) for `{routing_key}`");
            }
            if confirmation.take_message().is_some() {
                bail!(
                    "rabbitmq sink: no queue is bound for routing key `{routing_key}` on exchange `{}`",
                    self.cfg.exchange
                );
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for RabbitMqSink {
    async fn send(&self, batch: &[Output]) -> anyhow::Result<()> {
        let (generation, confirms) = {
            let mut live = self.live.lock().await;
            if live.is_none() {
                *live = Some(super::within_connect_timeout("rabbitmq sink", self.connect()).await?);
            }
            let Some(current) = live.as_ref() else {
                bail!("rabbitmq sink: not connected")
            };
            match self.publish_all(&current.channel, batch).await {
                Ok(confirms) => (current.generation, confirms),
                Err(e) => {
                    *live = None;
                    return Err(e);
                }
            }
        };
        let result = self.confirmed(confirms).await;
        if result.is_err() {
            let mut live = self.live.lock().await;
            if live.as_ref().is_some_and(|l| l.generation == generation) {
                *live = None;
            }
        }
        result
    }

    async fn close(&self) -> anyhow::Result<()> {
        if let Some(live) = self.live.lock().await.take() {
            super::close_connection(&live.connection, "rabbitmq sink").await?;
        }
        Ok(())
    }
}
