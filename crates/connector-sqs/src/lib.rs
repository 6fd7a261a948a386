//! `sqs`: Amazon SQS through `aws-sdk-sqs` (one HTTP stack: hyper 1 with rustls).
//!
//! Source: long polling (`wait_time_s`, at most 20) for up to 10 messages per call, and only when
//! the engine asks, i.e. while there is room in the pipeline's window. Ack → delete (batched, 10
//! per call); nack → change visibility to the retry delay (the message comes back then);
//! abandoned at shutdown → visibility 0 (back at once). A message not settled within the visibility
//! timeout reappears by SQS's own rules.
//!
//! Sink: `SendMessageBatch`, 10 per call; `send` fails if any entry failed. Standard and FIFO
//! queues (`.fifo`): the group id is `message_group_id` or else each output's key; the
//! deduplication id is the `deduplication_id_header` header if set, else the queue's content-based
//! deduplication must be on.
//!
//! Headers travel as message attributes (String). SQS allows 10 attributes per message, with
//! restricted names and non-empty values; when headers do not fit that, all of them travel as one
//! attribute, `x-sluice-headers`, holding a JSON array of `[name, value]` pairs, which the source
//! unpacks. Bodies are text: non-UTF-8 payloads need `base64: true` on both ends.

mod attributes;
mod config;
mod sink;
mod source;

use std::sync::Arc;

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};

use sluice_core::FieldError;
use sluice_core::connector::{BuildContext, Resource, Sink, SinkFactory, Source, SourceFactory};

pub use config::*;

/// SQS's limit on a message (body plus attributes), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

impl SqsQueue {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        match (&self.queue, &self.queue_url) {
            (None, None) => errors.push(FieldError::new(
                "queue",
                "missing field: give `queue` or `queue_url`",
            )),
            (Some(_), Some(_)) => errors.push(FieldError::new(
                "queue_url",
                "give `queue` or `queue_url`, not both",
            )),
            (Some(q), None) if q.is_empty() => {
                errors.push(FieldError::new("queue", "must not be empty"))
            }
            (None, Some(u)) if !(u.starts_with("https://") || u.starts_with("http://")) => {
                errors.push(FieldError::new("queue_url", "must be an http(s) URL"))
            }
            _ => {}
        }
        if let Some(e) = &self.endpoint
            && !(e.starts_with("https://") || e.starts_with("http://"))
        {
            errors.push(FieldError::new("endpoint", "must be an http(s) URL"));
        }
    }

    /// The queue's name, for metadata and messages.
    fn name(&self) -> String {
        match (&self.queue, &self.queue_url) {
            (Some(q), _) => q.clone(),
            (None, Some(u)) => u.rsplit('/').next().unwrap_or(u).to_owned(),
            (None, None) => String::new(),
        }
    }

    fn is_fifo(&self) -> bool {
        self.name().ends_with(".fifo")
    }

    /// A client and the queue URL.
    /// A client and the queue's URL; `wait` is the longest long poll a call of this client makes.
    async fn connect(
        &self,
        who: &str,
        wait: std::time::Duration,
    ) -> anyhow::Result<(aws_sdk_sqs::Client, String)> {
        use anyhow::Context as _;
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &self.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(c) = &self.credentials {
            loader = loader.credentials_provider(Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                c.session_token.clone(),
                None,
                "sluice-pipeline-file",
            ));
        }
        // Every call has a deadline, connecting too; a receive's long poll comes on top.
        let attempt = self.request_timeout + wait;
        loader = loader.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(self.request_timeout.min(std::time::Duration::from_secs(10)))
                .operation_attempt_timeout(attempt)
                .operation_timeout(attempt)
                .build(),
        );
        let shared = loader.load().await;
        let mut config = aws_sdk_sqs::config::Builder::from(&shared);
        if let Some(e) = &self.endpoint {
            config = config.endpoint_url(e);
        }
        let client = aws_sdk_sqs::Client::from_conf(config.build());
        let url = match (&self.queue_url, &self.queue) {
            (Some(url), _) => url.clone(),
            (None, Some(name)) => client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .with_context(|| format!("{who}: cannot find queue `{name}`"))?
                .queue_url()
                .map(str::to_owned)
                .with_context(|| format!("{who}: no URL for queue `{name}`"))?,
            (None, None) => anyhow::bail!("{who}: no queue"),
        };
        Ok((client, url))
    }
}

impl SourceFactory for SqsSourceConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        self.spec().validate(errors);
    }

    fn build(&self, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(source::SqsSource::new(self.clone(), ctx)))
    }

    fn resources(&self) -> Vec<Resource> {
        Resource::sqs_queue(self.queue.as_deref(), self.queue_url.as_deref())
            .into_iter()
            .collect()
    }
}

impl SinkFactory for SqsSinkConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        let spec = self.spec();
        spec.validate(errors);
        if !spec.is_fifo() {
            if self.message_group_id.is_some() {
                errors.push(FieldError::new(
                    "message_group_id",
                    "only for FIFO queues (`.fifo`)",
                ));
            }
            if self.deduplication_id_header.is_some() {
                errors.push(FieldError::new(
                    "deduplication_id_header",
                    "only for FIFO queues (`.fifo`)",
                ));
            }
        }
    }

    fn build(&self, _ctx: &BuildContext) -> anyhow::Result<Arc<dyn Sink>> {
        Ok(Arc::new(sink::SqsSink::new(self.clone())))
    }

    fn write_timeout_ms(&self) -> Option<(&'static str, u64)> {
        Some(("request_timeout_ms", self.request_timeout_ms))
    }

    fn resources(&self) -> Vec<Resource> {
        Resource::sqs_queue(self.queue.as_deref(), self.queue_url.as_deref())
            .into_iter()
            .collect()
    }
}
