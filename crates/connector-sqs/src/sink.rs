//! The SQS sink: `SendMessageBatch`, 10 entries per call; a batch is confirmed when SQS reports
//! every entry successful.

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use base64::Engine as _;
use tokio::sync::OnceCell;

use super::attributes::to_attributes;
use super::{MAX_MESSAGE_BYTES, SqsQueue, SqsSinkConfig};
use sluice_core::connector::Sink;
use sluice_core::message::Output;

pub struct SqsSink {
    cfg: SqsSinkConfig,
    spec: SqsQueue,
    client: OnceCell<(aws_sdk_sqs::Client, String)>,
}

impl SqsSink {
    pub fn new(cfg: SqsSinkConfig) -> Self {
        SqsSink {
            spec: cfg.spec(),
            cfg,
            client: OnceCell::new(),
        }
    }

    fn entry(&self, i: usize, out: &Output) -> anyhow::Result<SendMessageBatchRequestEntry> {
        let name = self.spec.name();
        let body = if self.spec.base64 {
            base64::engine::general_purpose::STANDARD.encode(&out.payload)
        } else {
            String::from_utf8(out.payload.to_vec()).with_context(|| {
                format!("sqs sink `{name}`: the payload is not UTF-8 text (set `base64: true`)")
            })?
        };
        let attributes = to_attributes(&out.headers);
        let size = body.len()
            + attributes
                .iter()
                .map(|(n, v)| n.len() + v.string_value().map_or(0, str::len) + 6)
                .sum::<usize>();
        if size > MAX_MESSAGE_BYTES {
            bail!("sqs sink `{name}`: message of {size} bytes exceeds SQS's {MAX_MESSAGE_BYTES}");
        }
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .message_body(body)
            .set_message_attributes((!attributes.is_empty()).then_some(attributes));
        if self.spec.is_fifo() {
            let group = match (&self.cfg.message_group_id, &out.key) {
                (Some(g), _) => g.clone(),
                (None, Some(k)) => String::from_utf8_lossy(k).into_owned(),
                (None, None) => "sluice".to_owned(),
            };
            entry = entry.message_group_id(group);
            if let Some(header) = &self.cfg.deduplication_id_header {
                let id = out.header(header).with_context(|| {
                    format!("sqs sink `{name}`: output has no `{header}` header for the deduplication id")
                })?;
                entry = entry.message_deduplication_id(id);
            }
        }
        entry.build().context("sqs sink: building an entry")
    }
}

#[async_trait]
impl Sink for SqsSink {
    async fn send(&self, batch: &[Output]) -> anyhow::Result<()> {
        let (client, url) = self
            .client
            .get_or_try_init(|| self.spec.connect("sqs sink"))
            .await?;
        for (chunk_no, chunk) in batch.chunks(10).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, out)| self.entry(chunk_no * 10 + i, out))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let result = client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .with_context(|| format!("sqs sink `{}`: SendMessageBatch", self.spec.name()))?;
            if let Some(failed) = result.failed().first() {
                bail!(
                    "sqs sink `{}`: {} of {} messages refused, e.g. {}: {}",
                    self.spec.name(),
                    result.failed().len(),
                    chunk.len(),
                    failed.code(),
                    failed.message().unwrap_or("")
                );
            }
        }
        Ok(())
    }
}
