//! The SQS sink: `SendMessageBatch`, up to 10 entries and 256 KiB per call; an output is
//! confirmed when SQS reports its entry successful. Outputs SQS can never take (not UTF-8 without
//! `base64`, over 256 KiB, no deduplication id) and entries SQS fails as the sender's fault are
//! rejected; the rest of the batch goes on.

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use base64::Engine as _;
use tokio::sync::OnceCell;

use super::attributes::to_attributes;
use super::{MAX_MESSAGE_BYTES, SqsQueue, SqsSinkConfig};
use sluice_core::connector::{BatchStatus, SendResult, Sink};
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

    /// The entry for output `i`, or why SQS would never accept it.
    fn entry(
        &self,
        i: usize,
        out: &Output,
    ) -> Result<(SendMessageBatchRequestEntry, usize), String> {
        let name = self.spec.name();
        let body = if self.spec.base64 {
            base64::engine::general_purpose::STANDARD.encode(&out.payload)
        } else {
            String::from_utf8(out.payload.to_vec()).map_err(|_| {
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
            return Err(format!(
                "sqs sink `{name}`: message of {size} bytes exceeds SQS's {MAX_MESSAGE_BYTES}"
            ));
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
                let id = out.header(header).ok_or_else(|| {
                    format!("sqs sink `{name}`: output has no `{header}` header for the deduplication id")
                })?;
                entry = entry.message_deduplication_id(id);
            }
        }
        let entry = entry
            .build()
            .map_err(|e| format!("sqs sink `{name}`: building an entry: {e}"))?;
        Ok((entry, size))
    }
}

/// Entry errors that say the message itself is wrong: sending it again fails the same way.
/// Other sender faults (KMS keys, permissions) are about the setup, which can be fixed, so their
/// messages are retried (and then handed back), not dead-lettered.
fn refused_for_good(code: &str) -> bool {
    matches!(
        code,
        "InvalidMessageContents"
            | "InvalidParameterValue"
            | "InvalidAttributeName"
            | "InvalidAttributeValue"
            | "MessageTooLong"
    )
}

/// Entries grouped into `SendMessageBatch` calls: at most 10 per call and at most SQS's
/// message size in all (a larger call is refused whole with `BatchRequestTooLong`).
fn calls(
    entries: Vec<(SendMessageBatchRequestEntry, usize)>,
) -> Vec<Vec<SendMessageBatchRequestEntry>> {
    let mut calls: Vec<Vec<SendMessageBatchRequestEntry>> = Vec::new();
    let mut bytes = 0;
    for (entry, size) in entries {
        match calls.last_mut() {
            Some(call) if call.len() < 10 && bytes + size <= MAX_MESSAGE_BYTES => {
                bytes += size;
                call.push(entry);
            }
            _ => {
                bytes = size;
                calls.push(vec![entry]);
            }
        }
    }
    calls
}

#[async_trait]
impl Sink for SqsSink {
    async fn send(&self, batch: &[Output]) -> SendResult {
        let name = self.spec.name();
        let (client, url) = self
            .client
            .get_or_try_init(|| self.spec.connect("sqs sink", std::time::Duration::ZERO))
            .await?;
        let mut status = BatchStatus::new(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for (i, out) in batch.iter().enumerate() {
            match self.entry(i, out) {
                Ok(entry) => entries.push(entry),
                Err(reason) => status.reject(i, reason),
            }
        }
        let mut calls = calls(entries).into_iter();
        while let Some(call) = calls.next() {
            let ids: Vec<usize> = call.iter().filter_map(|e| e.id().parse().ok()).collect();
            // Unconfirmed until SQS lists the entry as successful.
            for &i in &ids {
                status.retry(
                    i,
                    format!("sqs sink `{name}`: SQS did not report the entry"),
                );
            }
            let result = client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(call))
                .send()
                .await;
            let result = match result {
                Ok(result) => result,
                Err(e) => {
                    // Nothing of this call, nor of the calls after it, was sent.
                    let reason = format!(
                        "sqs sink `{name}`: SendMessageBatch: {:#}",
                        anyhow::Error::new(e)
                    );
                    for i in ids
                        .into_iter()
                        .chain(calls.by_ref().flatten().filter_map(|e| e.id().parse().ok()))
                    {
                        status.retry(i, reason.clone());
                    }
                    break;
                }
            };
            for ok in result.successful() {
                if let Some(i) = ok.id().parse::<usize>().ok().filter(|i| ids.contains(i)) {
                    status.deliver(i);
                }
            }
            let mut must_wait = false;
            for failed in result.failed() {
                let Some(i) = failed
                    .id()
                    .parse::<usize>()
                    .ok()
                    .filter(|i| ids.contains(i))
                else {
                    continue;
                };
                let reason = format!(
                    "sqs sink `{name}`: {}: {}",
                    failed.code(),
                    failed.message().unwrap_or("")
                );
                if failed.sender_fault() && refused_for_good(failed.code()) {
                    status.reject(i, reason);
                } else {
                    must_wait = true;
                    status.retry(i, reason);
                }
            }
            if must_wait && self.spec.is_fifo() {
                // A later message of the same group must not overtake one sent again.
                let reason = format!("sqs sink `{name}`: held back behind a retry (FIFO order)");
                for i in calls.by_ref().flatten().filter_map(|e| e.id().parse().ok()) {
                    status.retry(i, reason.clone());
                }
                break;
            }
        }
        status.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize, size: usize) -> (SendMessageBatchRequestEntry, usize) {
        let entry = SendMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .message_body("x")
            .build()
            .unwrap();
        (entry, size)
    }

    #[test]
    fn calls_hold_at_most_ten_entries_and_the_size_sqs_allows() {
        let sizes = |calls: Vec<Vec<SendMessageBatchRequestEntry>>| -> Vec<usize> {
            calls.iter().map(Vec::len).collect()
        };
        assert_eq!(
            sizes(calls((0..25).map(|i| entry(i, 10)).collect())),
            [10, 10, 5]
        );
        let big = MAX_MESSAGE_BYTES / 2;
        assert_eq!(
            sizes(calls((0..5).map(|i| entry(i, big)).collect())),
            [2, 2, 1]
        );
        assert!(calls(Vec::new()).is_empty());
    }
}
