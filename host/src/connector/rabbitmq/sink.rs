//! The RabbitMQ sink: publisher confirms for every message; `send` returns only when the broker
//! has confirmed the whole batch.

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;

use super::RabbitMqSinkConfig;
use super::headers::to_table;
use crate::connector::Sink;
use crate::message::Output;

pub struct RabbitMqSink {
    cfg: RabbitMqSinkConfig,
    /// Connected lazily, dropped on any error and made again on the next send.
    live: Mutex<Option<(Connection, Channel)>>,
}

impl RabbitMqSink {
    pub fn new(cfg: RabbitMqSinkConfig) -> Self {
        RabbitMqSink {
            cfg,
            live: Mutex::new(None),
        }
    }

    async fn connect(&self) -> anyhow::Result<(Connection, Channel)> {
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
        Ok((connection, channel))
    }

    async fn publish_all(&self, channel: &Channel, batch: &[Output]) -> anyhow::Result<()> {
        let mut confirms = Vec::with_capacity(batch.len());
        for out in batch {
            let routing_key = match (&self.cfg.routing_key, &out.key) {
                (Some(key), _) => key.clone(),
                (None, Some(key)) => String::from_utf8(key.to_vec())
                    .context("rabbitmq sink: the output key is not UTF-8")?,
                (None, None) => bail!(
                    "rabbitmq sink: no routing key (set `routing_key`, or give outputs a key)"
                ),
            };
            let properties = BasicProperties::default()
                .with_headers(to_table(&out.headers))
                .with_delivery_mode(if self.cfg.persistent { 2 } else { 1 });
            let options = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            let confirm = channel
                .basic_publish(
                    self.cfg.exchange.as_str().into(),
                    routing_key.as_str().into(),
                    options,
                    &out.payload,
                    properties,
                )
                .await
                .context("rabbitmq sink: publish")?;
            confirms.push((routing_key, confirm));
        }
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
        let mut live = self.live.lock().await;
        if live.is_none() {
            *live = Some(super::within_connect_timeout("rabbitmq sink", self.connect()).await?);
        }
        let Some((_, channel)) = live.as_ref() else {
            bail!("rabbitmq sink: not connected")
        };
        let result = self.publish_all(channel, batch).await;
        if result.is_err() {
            *live = None;
        }
        result
    }

    async fn close(&self) -> anyhow::Result<()> {
        if let Some((connection, _)) = self.live.lock().await.take() {
            connection
                .close(200, "sluice sink closing".into())
                .await
                .context("rabbitmq sink: closing")?;
        }
        Ok(())
    }
}
