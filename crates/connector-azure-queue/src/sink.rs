//! The Azure Queue Storage sink: one `send_message` per output, all of a batch at once.

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use azure_storage_queue::models::QueueMessage;
use futures::future::try_join_all;
use tokio::sync::OnceCell;

use super::connection::{Access, RenewingClient};
use super::{AzureQueueSinkConfig, MAX_MESSAGE_BYTES, envelope};
use sluice_core::connector::Sink;
use sluice_core::message::Output;

pub struct AzureQueueSink {
    cfg: AzureQueueSinkConfig,
    client: RenewingClient,
    created: OnceCell<()>,
}

impl AzureQueueSink {
    pub fn new(cfg: AzureQueueSinkConfig) -> anyhow::Result<Self> {
        let connection = Access::from_settings(
            cfg.connection_string.as_deref(),
            cfg.account_url.as_deref(),
            cfg.credential.as_ref(),
        )
        .context("azure_queue sink")?;
        Ok(AzureQueueSink {
            client: RenewingClient::new(connection, &cfg.queue)?,
            cfg,
            created: OnceCell::new(),
        })
    }

    fn text(&self, out: &Output) -> anyhow::Result<String> {
        let queue = &self.cfg.queue;
        let text = envelope::encode(
            &out.payload,
            out.key.as_deref(),
            &out.headers,
            self.cfg.encoding,
            self.cfg.envelope,
        )
        .with_context(|| format!("azure_queue sink `{queue}`"))?;
        // The text travels XML-escaped; count what the service counts, roughly from above.
        let size = text.len()
            + text
                .bytes()
                .filter(|b| matches!(b, b'<' | b'>' | b'&' | b'"' | b'\''))
                .count()
                * 5;
        if size > MAX_MESSAGE_BYTES {
            bail!(
                "azure_queue sink `{queue}`: message of {size} bytes exceeds the service's {MAX_MESSAGE_BYTES}"
            );
        }
        Ok(text)
    }
}

#[async_trait]
impl Sink for AzureQueueSink {
    async fn send(&self, batch: &[Output]) -> anyhow::Result<()> {
        let queue = &self.cfg.queue;
        let client = self.client.get()?;
        if self.cfg.create {
            self.created
                .get_or_try_init(|| async {
                    super::source::create_if_missing(&client, queue).await
                })
                .await?;
        }
        // Encode (and size-check) everything before sending anything.
        let texts = batch
            .iter()
            .map(|out| self.text(out))
            .collect::<anyhow::Result<Vec<_>>>()?;
        try_join_all(texts.into_iter().map(|text| {
            let client = client.clone();
            async move {
                let message = QueueMessage {
                    message_text: Some(text),
                };
                client
                    .send_message(message.try_into()?, None)
                    .await
                    .map(drop)
            }
        }))
        .await
        .with_context(|| format!("azure_queue sink `{queue}`: send_message"))?;
        Ok(())
    }
}
