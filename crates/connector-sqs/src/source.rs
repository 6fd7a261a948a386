//! The SQS source: long polling while the engine asks for messages, and a task that settles
//! receipts in batches of up to 10 (delete, or change visibility).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};
use base64::Engine as _;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::attributes::from_attributes;
use super::{SqsQueue, SqsSourceConfig};
use sluice_core::ack::Settlement;
use sluice_core::connector::receipts::{Receipts, SettleJob};
use sluice_core::connector::{BuildContext, Delivery, LagGauge, Source, unknown_lag, watch_depth};
use sluice_core::deadline::whole_seconds_up;
use sluice_core::message::{Message, Metadata};

struct Live {
    client: aws_sdk_sqs::Client,
    url: String,
    receipts: Arc<Receipts<String>>,
}

pub struct SqsSource {
    cfg: SqsSourceConfig,
    spec: SqsQueue,
    pipeline: Arc<str>,
    live: Option<Live>,
    source: Arc<str>,
    topic: Arc<str>,
    /// Messages visible in the queue (`ApproximateNumberOfMessages`); -1 until known.
    depth: LagGauge,
}

impl SqsSource {
    pub fn new(cfg: SqsSourceConfig, ctx: &BuildContext) -> Self {
        let spec = cfg.spec();
        let topic = Arc::from(spec.name());
        SqsSource {
            cfg,
            spec,
            pipeline: ctx.pipeline.clone(),
            live: None,
            source: Arc::from("sqs"),
            topic,
            depth: unknown_lag(),
        }
    }

    fn delivery(&self, live: &Live, m: &aws_sdk_sqs::types::Message) -> Option<Delivery> {
        let receipt = m.receipt_handle()?.to_owned();
        let body = m.body().unwrap_or_default();
        let (payload, decode_error) = if self.spec.base64 {
            match base64::engine::general_purpose::STANDARD.decode(body) {
                Ok(b) => (Bytes::from(b), None),
                Err(e) => (
                    Bytes::copy_from_slice(body.as_bytes()),
                    Some(format!("body is not base64: {e}")),
                ),
            }
        } else {
            (Bytes::copy_from_slice(body.as_bytes()), None)
        };
        let system = m.attributes();
        let attr = |name: MessageSystemAttributeName| system.and_then(|a| a.get(&name));
        let mut meta = Metadata::received_now(self.source.clone(), self.topic.clone());
        meta.attempt = attr(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        meta.timestamp_ms =
            attr(MessageSystemAttributeName::SentTimestamp).and_then(|t| t.parse().ok());
        let message = Message {
            id: m.message_id().unwrap_or_default().to_owned(),
            key: attr(MessageSystemAttributeName::MessageGroupId)
                .map(|g| Bytes::copy_from_slice(g.as_bytes())),
            payload,
            headers: from_attributes(m.message_attributes()),
            meta,
        };
        let mut delivery = Delivery::new(message, live.receipts.token(receipt));
        delivery.decode_error = decode_error;
        Some(delivery)
    }
}

#[async_trait]
impl Source for SqsSource {
    fn lag_gauge(&self) -> Option<LagGauge> {
        Some(self.depth.clone())
    }

    async fn next_batch(&mut self, max: usize) -> anyhow::Result<Option<Vec<Delivery>>> {
        if self.live.is_none() {
            let wait = std::time::Duration::from_secs(self.cfg.wait_time_s.max(0) as u64);
            let (client, url) = self.spec.connect("sqs source", wait).await?;
            let (receipts, jobs) = Receipts::new();
            tokio::spawn(settle(
                client.clone(),
                url.clone(),
                jobs,
                self.pipeline.clone(),
            ));
            tracing::info!(pipeline = %self.pipeline, queue = %url, "sqs source connected");
            let (depth_client, depth_url) = (client.clone(), url.clone());
            tokio::spawn(watch_depth(
                url.clone(),
                Duration::from_millis(self.cfg.lag_interval_ms),
                Arc::downgrade(&self.depth),
                move || read_depth(depth_client.clone(), depth_url.clone()),
            ));
            self.live = Some(Live {
                client,
                url,
                receipts,
            });
        }
        let Some(live) = self.live.as_ref() else {
            anyhow::bail!("sqs source: not connected")
        };
        loop {
            // Cancel-safe: a receive dropped in flight leaves its messages invisible until the
            // visibility timeout, then SQS delivers them again; nothing is lost.
            let received = live
                .client
                .receive_message()
                .queue_url(&live.url)
                .max_number_of_messages(max.clamp(1, 10) as i32)
                .wait_time_seconds(self.cfg.wait_time_s)
                .set_visibility_timeout(self.cfg.visibility_timeout_s)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .with_context(|| format!("sqs source `{}`: ReceiveMessage", self.topic))?;
            let batch: Vec<Delivery> = received
                .messages()
                .iter()
                .filter_map(|m| self.delivery(live, m))
                .collect();
            if !batch.is_empty() {
                return Ok(Some(batch));
            }
        }
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        if let Some(live) = self.live.take() {
            live.receipts.flush().await;
        }
        Ok(())
    }
}

/// Send settlements as they come, up to 10 of a kind per call.
async fn settle(
    client: aws_sdk_sqs::Client,
    url: String,
    mut jobs: mpsc::UnboundedReceiver<SettleJob<String>>,
    pipeline: Arc<str>,
) {
    while let Some(first) = jobs.recv().await {
        let mut deletes = Vec::new();
        let mut delays: Vec<(String, Duration)> = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                SettleJob::Settle(r, Settlement::Ack) => deletes.push(r),
                SettleJob::Settle(r, Settlement::Nack { delay }) => delays.push((r, delay)),
                // Back at once, rather than when the visibility timeout ends.
                SettleJob::Settle(r, Settlement::Abandon) => delays.push((r, Duration::ZERO)),
                SettleJob::Flush(done) => flushes.push(done),
            }
            if deletes.len() + delays.len() < 100 {
                next = jobs.try_recv().ok();
            }
        }
        for chunk in deletes.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .expect("id and receipt are set")
                })
                .collect();
            let result = client
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await;
            match result {
                Ok(out) if out.failed().is_empty() => {}
                // Not deleted: it reappears after the visibility timeout (a duplicate, not a loss).
                Ok(out) => {
                    tracing::warn!(pipeline = %pipeline, failed = out.failed().len(), "sqs: some deletes failed; those messages will be redelivered")
                }
                Err(e) => {
                    tracing::warn!(pipeline = %pipeline, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "sqs: DeleteMessageBatch failed; those messages will be redelivered")
                }
            }
        }
        for chunk in delays.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (r, delay))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(whole_seconds_up(*delay).min(43_200) as i32)
                        .build()
                        .expect("id and receipt are set")
                })
                .collect();
            if let Err(e) = client
                .change_message_visibility_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(pipeline = %pipeline, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "sqs: ChangeMessageVisibilityBatch failed; the visibility timeout will bring them back");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// The queue's `ApproximateNumberOfMessages` (visible messages).
async fn read_depth(client: aws_sdk_sqs::Client, url: String) -> anyhow::Result<Option<i64>> {
    use aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages;
    let out = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(ApproximateNumberOfMessages)
        .send()
        .await?;
    Ok(out
        .attributes()
        .and_then(|a| a.get(&ApproximateNumberOfMessages))
        .and_then(|n| n.parse::<i64>().ok()))
}
