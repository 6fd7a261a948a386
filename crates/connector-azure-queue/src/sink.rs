//! The Azure Queue Storage sink: one `send_message` per output, all of a batch at once. An
//! output over the service's 64 KiB, or one the service answers with a permanent 4xx, is
//! rejected; the rest of the batch goes on.

use anyhow::Context as _;
use async_trait::async_trait;
use azure_storage_queue::models::QueueMessage;
use futures::future::join_all;
use tokio::sync::OnceCell;

use super::connection::{Access, RenewingClient};
use super::{AzureQueueSinkConfig, MAX_MESSAGE_BYTES, envelope};
use sluice_core::connector::{BatchStatus, SendResult, Sink};
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
            client: RenewingClient::new(
                connection,
                &cfg.queue,
                std::time::Duration::from_millis(cfg.request_timeout_ms),
            )?,
            cfg,
            created: OnceCell::new(),
        })
    }

    /// The message text for `out`, or why the service would never accept it.
    fn text(&self, out: &Output) -> Result<String, String> {
        let queue = &self.cfg.queue;
        let text = envelope::encode(
            &out.payload,
            out.key.as_deref(),
            &out.headers,
            self.cfg.encoding,
            self.cfg.envelope,
        )
        .map_err(|e| format!("azure_queue sink `{queue}`: {e:#}"))?;
        // The text travels XML-escaped; count what the service counts, roughly from above.
        let size = text.len()
            + text
                .bytes()
                .filter(|b| matches!(b, b'<' | b'>' | b'&' | b'"' | b'\''))
                .count()
                * 5;
        if size > MAX_MESSAGE_BYTES {
            return Err(format!(
                "azure_queue sink `{queue}`: message of {size} bytes exceeds the service's {MAX_MESSAGE_BYTES}"
            ));
        }
        Ok(text)
    }
}

/// Whether the service refused a message for good: a 4xx that sending again cannot change
/// (not 408 timeout, 409 conflict during queue creation or 429 throttling).
fn refused_for_good(e: &azure_core::Error) -> bool {
    e.http_status().is_some_and(|status| {
        let code = u16::from(status);
        (400..500).contains(&code) && !matches!(code, 401 | 403 | 404 | 408 | 409 | 429)
    })
}

#[async_trait]
impl Sink for AzureQueueSink {
    async fn send(&self, batch: &[Output]) -> SendResult {
        let queue = &self.cfg.queue;
        let client = self.client.get()?;
        if self.cfg.create {
            self.created
                .get_or_try_init(|| async {
                    super::source::create_if_missing(&client, queue).await
                })
                .await?;
        }
        // Encode (and size-check) everything first: what can never be sent is rejected.
        let mut status = BatchStatus::new(batch.len());
        let mut texts = Vec::with_capacity(batch.len());
        for (i, out) in batch.iter().enumerate() {
            match self.text(out) {
                Ok(text) => texts.push((i, text)),
                Err(reason) => status.reject(i, reason),
            }
        }
        let sent = join_all(texts.into_iter().map(|(i, text)| {
            let client = client.clone();
            async move {
                let message = QueueMessage {
                    message_text: Some(text),
                };
                let result = match message.try_into() {
                    Ok(body) => client
                        .send_message(body, None)
                        .await
                        .map(drop)
                        .map_err(|e| (e, false)),
                    // The text cannot be serialized: it never will be.
                    Err(e) => Err((e, true)),
                };
                (i, result)
            }
        }))
        .await;
        for (i, result) in sent {
            if let Err((e, unsendable)) = result {
                let reason = format!("azure_queue sink `{queue}`: send_message: {e:#}");
                if unsendable || refused_for_good(&e) {
                    status.reject(i, reason);
                } else {
                    status.retry(i, reason);
                }
            }
        }
        status.finish()
    }
}
