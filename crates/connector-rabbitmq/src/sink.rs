//! The RabbitMQ sink: publisher confirms for every message; `send` returns only when the broker
//! has confirmed the whole batch. An output with no routing key, or one that is not UTF-8 or over
//! AMQP's 255 bytes, is rejected before publishing; one the broker returns as unroutable is
//! rejected too; a broker nack is retryable.
//!
//! A batch is published with its messages polled together (see `in_order.rs`), under a lock so
//! that two batches never interleave their confirm numbering; the confirms are awaited after the
//! lock is released, so the batches of several workers overlap on the wire.

use anyhow::Context as _;
use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, PublisherConfirm};
use tokio::sync::Mutex;

use super::RabbitMqSinkConfig;
use super::headers::to_table;
use super::in_order::in_order;
use sluice_core::connector::{BatchStatus, OutputStatus, SendResult, Sink};
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

    /// The routing key of `out`, or why the broker could never take it.
    fn routing_key(&self, out: &Output) -> Result<String, String> {
        let key = match (&self.cfg.routing_key, &out.key) {
            (Some(key), _) => key.clone(),
            (None, Some(key)) => String::from_utf8(key.to_vec())
                .map_err(|_| "rabbitmq sink: the output key is not UTF-8".to_owned())?,
            (None, None) => {
                return Err(
                    "rabbitmq sink: no routing key (set `routing_key`, or give outputs a key)"
                        .to_owned(),
                );
            }
        };
        // AMQP's shortstr: a longer key cannot be framed at all.
        if key.len() > MAX_ROUTING_KEY_BYTES {
            return Err(format!(
                "rabbitmq sink: routing key of {} bytes exceeds AMQP's {MAX_ROUTING_KEY_BYTES}",
                key.len()
            ));
        }
        Ok(key)
    }

    /// Queue the messages `todo` (index in the batch, routing key); returns each one's confirm.
    async fn publish_all(
        &self,
        channel: &Channel,
        batch: &[Output],
        todo: Vec<(usize, String)>,
    ) -> anyhow::Result<Vec<(usize, String, PublisherConfirm)>> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let delivery_mode = if self.cfg.persistent { 2 } else { 1 };
        let published = in_order(todo.iter().map(|(i, key)| {
            let out = &batch[*i];
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
        todo.into_iter()
            .zip(published)
            .map(|((i, key), confirm)| Ok((i, key, confirm.context("rabbitmq sink: publish")?)))
            .collect()
    }

    /// Every confirm of the batch, within `confirm_timeout_ms` for the whole batch.
    async fn confirmed(
        &self,
        confirms: Vec<(usize, String, PublisherConfirm)>,
        status: &mut BatchStatus,
    ) -> anyhow::Result<()> {
        let limit = std::time::Duration::from_millis(self.cfg.confirm_timeout_ms);
        sluice_core::deadline::within(limit, self.all_confirmed(confirms, status), || {
            anyhow::anyhow!(
                "rabbitmq sink: the broker did not confirm the batch within {} ms",
                self.cfg.confirm_timeout_ms
            )
        })
        .await
    }

    /// Marks each published message by its confirm as it comes; one whose confirm has not come
    /// when this stops (an error, the deadline) stays retryable, the others keep their status.
    async fn all_confirmed(
        &self,
        confirms: Vec<(usize, String, PublisherConfirm)>,
        status: &mut BatchStatus,
    ) -> anyhow::Result<()> {
        for (i, _, _) in &confirms {
            status.retry(*i, "rabbitmq sink: the broker has not confirmed it");
        }
        for (i, routing_key, confirm) in confirms {
            let confirmation = confirm
                .await
                .context("rabbitmq sink: waiting for the broker's confirm")?;
            if confirmation.is_ack() {
                status.deliver(i);
            }
            if !confirmation.is_ack() {
                // A nack is the broker's internal error: sending again may work.
                status.retry(
                    i,
                    format!(
                        "rabbitmq sink: the broker refused a message (nack) for `{routing_key}`"
                    ),
                );
            } else if confirmation.take_message().is_some() {
                // Returned as unroutable (`mandatory`): it would come back the same way until
                // someone binds a queue, so it goes to the dead-letter sink, not round and round.
                status.reject(
                    i,
                    format!(
                        "rabbitmq sink: no queue is bound for routing key `{routing_key}` on exchange `{}`",
                        self.cfg.exchange
                    ),
                );
            }
        }
        Ok(())
    }
}

/// Drops the connection of `generation` unless disarmed (`generation = None`): a send cut short
/// (dropped by the engine at its deadline) cannot leave a half-dead connection in use.
struct DropOnAbandon<'a> {
    sink: &'a RabbitMqSink,
    generation: Option<u64>,
}

impl DropOnAbandon<'_> {
    async fn forget_connection(&mut self) {
        if let Some(generation) = self.generation.take() {
            let mut live = self.sink.live.lock().await;
            if live.as_ref().is_some_and(|l| l.generation == generation) {
                *live = None;
            }
        }
    }
}

impl Drop for DropOnAbandon<'_> {
    fn drop(&mut self) {
        let Some(generation) = self.generation else {
            return;
        };
        // Dropped mid-send; the lock may be held by the very future being dropped, so only try.
        if let Ok(mut live) = self.sink.live.try_lock()
            && live.as_ref().is_some_and(|l| l.generation == generation)
        {
            *live = None;
        }
    }
}

/// The longest routing key AMQP 0-9-1 can carry (a short string).
const MAX_ROUTING_KEY_BYTES: usize = 255;

#[async_trait]
impl Sink for RabbitMqSink {
    async fn send(&self, batch: &[Output]) -> SendResult {
        let mut status = BatchStatus::new(batch.len());
        let mut todo = Vec::with_capacity(batch.len());
        for (i, out) in batch.iter().enumerate() {
            match self.routing_key(out) {
                Ok(key) => todo.push((i, key)),
                Err(reason) => status.reject(i, reason),
            }
        }
        if todo.is_empty() {
            return status.finish();
        }
        // Until this send finishes, its connection is suspect: if the engine drops the send at
        // `delivery.sink_timeout_ms`, the guard drops the connection it was using.
        let mut suspect = DropOnAbandon {
            sink: self,
            generation: None,
        };
        let confirms = {
            let mut live = self.live.lock().await;
            if live.is_none() {
                *live = Some(super::within_connect_timeout("rabbitmq sink", self.connect()).await?);
            }
            let Some(current) = live.as_ref() else {
                return Err(anyhow::anyhow!("rabbitmq sink: not connected").into());
            };
            suspect.generation = Some(current.generation);
            let published = self
                .publish_all(&current.channel, batch, todo.clone())
                .await;
            match published {
                Ok(confirms) => confirms,
                Err(e) => {
                    *live = None;
                    suspect.generation = None;
                    // Nothing was confirmed; the outputs refused above stay refused.
                    let reason = format!("{e:#}");
                    for (i, _) in todo {
                        status.retry(i, reason.clone());
                    }
                    return status.finish();
                }
            }
        };
        let published: Vec<usize> = confirms.iter().map(|(i, _, _)| *i).collect();
        let confirmed = self.confirmed(confirms, &mut status).await;
        if let Err(e) = confirmed {
            // Those confirmed before the error stay delivered; the rest are sent again, on a
            // new connection.
            let reason = format!("{e:#}");
            for i in published {
                if matches!(status.get(i), OutputStatus::Retryable { .. }) {
                    status.retry(i, reason.clone());
                }
            }
            suspect.forget_connection().await;
        }
        suspect.generation = None;
        status.finish()
    }

    async fn close(&self) -> anyhow::Result<()> {
        if let Some(live) = self.live.lock().await.take() {
            super::close_connection(&live.connection, "rabbitmq sink").await?;
        }
        Ok(())
    }
}
