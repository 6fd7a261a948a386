//! The Azure Queue Storage source: polls while the engine asks, and a task that settles pop
//! receipts (delete, or update the visibility timeout).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use azure_storage_queue::QueueClient;
use azure_storage_queue::models::{
    QueueClientReceiveMessagesOptions, QueueMessage, ReceivedMessage,
};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::connection::{Access, RenewingClient};
use super::{AzureQueueSourceConfig, envelope};
use sluice_core::ack::Settlement;
use sluice_core::connector::receipts::{Receipts, SettleJob};
use sluice_core::connector::{BuildContext, Delivery, LagGauge, Source, unknown_lag, watch_depth};
use sluice_core::deadline::whole_seconds_up;
use sluice_core::message::{Message, Metadata};

/// The service returns at most 32 messages per receive.
const MAX_PER_RECEIVE: usize = 32;

/// Create `queue` unless it exists.
pub(super) async fn create_if_missing(client: &QueueClient, queue: &str) -> anyhow::Result<()> {
    if !client
        .exists()
        .await
        .with_context(|| format!("azure_queue `{queue}`: checking that it exists"))?
    {
        client
            .create(None)
            .await
            .with_context(|| format!("azure_queue `{queue}`: create"))?;
    }
    Ok(())
}

/// A received message's id and pop receipt.
type PopReceipt = (String, String);

pub struct AzureQueueSource {
    cfg: AzureQueueSourceConfig,
    client: Arc<RenewingClient>,
    poison: RenewingClient,
    pipeline: Arc<str>,
    receipts: Option<Arc<Receipts<PopReceipt>>>,
    source: Arc<str>,
    topic: Arc<str>,
    /// The queue's approximate message count (visible and in flight); -1 until known.
    depth: LagGauge,
}

impl AzureQueueSource {
    pub fn new(cfg: AzureQueueSourceConfig, ctx: &BuildContext) -> anyhow::Result<Self> {
        let connection = Access::from_settings(
            cfg.connection_string.as_deref(),
            cfg.account_url.as_deref(),
            cfg.credential.as_ref(),
        )
        .context("azure_queue source")?;
        let poison_name = cfg
            .poison_queue
            .clone()
            .unwrap_or_else(|| format!("{}-poison", cfg.queue));
        let timeout = Duration::from_millis(cfg.request_timeout_ms);
        Ok(AzureQueueSource {
            client: Arc::new(RenewingClient::new(
                connection.clone(),
                &cfg.queue,
                timeout,
            )?),
            poison: RenewingClient::new(connection, &poison_name, timeout)?,
            topic: Arc::from(cfg.queue.as_str()),
            cfg,
            pipeline: ctx.pipeline.clone(),
            receipts: None,
            source: Arc::from("azure_queue"),
            depth: unknown_lag(),
        })
    }

    async fn start(&mut self) -> anyhow::Result<Arc<Receipts<PopReceipt>>> {
        if let Some(r) = &self.receipts {
            return Ok(r.clone());
        }
        if self.cfg.create {
            create_if_missing(&*self.client.get()?, &self.cfg.queue).await?;
            create_if_missing(&*self.poison.get()?, self.poison.queue()).await?;
        }
        let (receipts, jobs) = Receipts::new();
        tokio::spawn(settle(self.client.clone(), jobs, self.pipeline.clone()));
        let client = self.client.clone();
        tokio::spawn(watch_depth(
            self.cfg.queue.clone(),
            Duration::from_millis(self.cfg.lag_interval_ms),
            Arc::downgrade(&self.depth),
            move || read_depth(client.clone()),
        ));
        tracing::info!(pipeline = %self.pipeline, queue = %self.cfg.queue, "azure_queue source started");
        self.receipts = Some(receipts.clone());
        Ok(receipts)
    }

    /// Move a message the host kept failing on to the poison queue, then delete it.
    async fn to_poison(&self, m: &ReceivedMessage) -> anyhow::Result<()> {
        let poison = self.poison.get()?;
        let message = QueueMessage {
            message_text: m.message_text.clone(),
        };
        poison
            .send_message(message.try_into()?, None)
            .await
            .with_context(|| {
                format!("azure_queue: moving a message to `{}`", self.poison.queue())
            })?;
        if let (Some(id), Some(receipt)) = (&m.message_id, &m.pop_receipt) {
            self.client.get()?.delete_message(id, receipt, None).await?;
        }
        tracing::warn!(pipeline = %self.pipeline, queue = %self.cfg.queue, poison = %self.poison.queue(), dequeue_count = m.dequeue_count, "azure_queue: message moved to the poison queue");
        Ok(())
    }

    fn delivery(
        &self,
        receipts: &Arc<Receipts<PopReceipt>>,
        m: ReceivedMessage,
    ) -> Option<Delivery> {
        let (Some(message_id), Some(pop_receipt)) = (m.message_id, m.pop_receipt) else {
            return None;
        };
        let text = m.message_text.unwrap_or_default();
        let mut meta = Metadata::received_now(self.source.clone(), self.topic.clone());
        meta.attempt = m
            .dequeue_count
            .map_or(1, |n| n.clamp(1, u32::MAX as i64) as u32);
        meta.timestamp_ms = m
            .insertion_time
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
        let (payload, key, headers, decode_error) =
            match envelope::decode(&text, self.cfg.encoding, self.cfg.envelope) {
                Ok(d) => (d.payload, d.key, d.headers, None),
                Err(e) => (Bytes::from(text), None, Vec::new(), Some(e)),
            };
        let message = Message {
            id: message_id.clone(),
            key,
            payload,
            headers,
            meta,
        };
        let mut d = Delivery::new(message, receipts.token((message_id, pop_receipt)));
        d.decode_error = decode_error;
        Some(d)
    }
}

#[async_trait]
impl Source for AzureQueueSource {
    fn lag_gauge(&self) -> Option<LagGauge> {
        Some(self.depth.clone())
    }

    async fn next_batch(&mut self, max: usize) -> anyhow::Result<Option<Vec<Delivery>>> {
        let receipts = self.start().await?;
        loop {
            // Cancel-safe: a receive dropped in flight leaves its messages invisible until the
            // visibility timeout; then they are delivered again.
            let options = QueueClientReceiveMessagesOptions {
                number_of_messages: Some(max.clamp(1, MAX_PER_RECEIVE) as i32),
                visibility_timeout: Some(self.cfg.visibility_timeout_s),
                ..Default::default()
            };
            let received = self
                .client
                .get()?
                .receive_messages(Some(options))
                .await
                .with_context(|| format!("azure_queue source `{}`: receive", self.cfg.queue))?
                .into_model()
                .context("azure_queue source: reading the receive response")?;
            let mut batch = Vec::new();
            for m in received.items.unwrap_or_default() {
                if m.dequeue_count.unwrap_or(1) > self.cfg.max_dequeue_count {
                    self.to_poison(&m).await?;
                    continue;
                }
                batch.extend(self.delivery(&receipts, m));
            }
            if !batch.is_empty() {
                return Ok(Some(batch));
            }
            tokio::time::sleep(Duration::from_millis(self.cfg.poll_interval_ms)).await;
        }
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        if let Some(receipts) = self.receipts.take() {
            receipts.flush().await;
        }
        Ok(())
    }
}

/// Settle receipts as they come, a few at a time concurrently.
async fn settle(
    clients: Arc<RenewingClient>,
    mut jobs: mpsc::UnboundedReceiver<SettleJob<PopReceipt>>,
    pipeline: Arc<str>,
) {
    let queue = clients.queue().to_owned();
    while let Some(first) = jobs.recv().await {
        let client = match clients.get() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pipeline = %pipeline, queue = %queue, error = %format!("{e:#}"), "azure_queue: no client to settle with; the messages will be delivered again");
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < 32 {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut flushes = Vec::new();
        let mut calls = Vec::new();
        for job in batch {
            match job {
                SettleJob::Flush(done) => flushes.push(done),
                SettleJob::Settle((id, receipt), how) => {
                    let client = client.clone();
                    calls.push(async move {
                        let result = match how {
                            Settlement::Ack => client.delete_message(&id, &receipt, None).await,
                            Settlement::Nack { delay } => {
                                let secs = whole_seconds_up(delay).min(604_800) as i32;
                                client.update_message(&id, &receipt, secs, None).await
                            }
                            Settlement::Abandon => {
                                client.update_message(&id, &receipt, 0, None).await
                            }
                        };
                        (how, result)
                    });
                }
            }
        }
        for (how, result) in futures::future::join_all(calls).await {
            if let Err(e) = result {
                // The message comes back when its visibility timeout ends: a duplicate, not a loss.
                tracing::warn!(pipeline = %pipeline, queue = %queue, settlement = ?how, error = %e, "azure_queue: settlement failed; the message will be delivered again");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// The queue's approximate message count (`x-ms-approximate-messages-count` of Get Queue
/// Metadata): visible and in-flight messages.
async fn read_depth(client: Arc<RenewingClient>) -> anyhow::Result<Option<i64>> {
    use azure_storage_queue::models::QueueClientGetPropertiesResultHeaders as _;
    let response = client.get()?.get_properties(None).await?;
    Ok(response.approximate_messages_count()?)
}
