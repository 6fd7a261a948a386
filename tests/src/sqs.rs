//! The SQS server `scripts/brokers.sh` starts on 127.0.0.1:5000 (moto), as a conformance
//! [`Broker`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use sluice::connector::sqs::{SqsSinkConfig, SqsSourceConfig, StaticCredentials};
use sluice::connector::{BuildContext, Sink, SinkFactory, Source, SourceFactory};

use crate::conformance::{Broker, Received};
use crate::{repo_root, unique_queue};

pub const SQS_ENDPOINT: &str = "http://127.0.0.1:5000";

fn ctx(max_in_flight: usize) -> BuildContext {
    BuildContext {
        pipeline: "test".into(),
        max_in_flight,
        base_dir: repo_root(),
    }
}

fn credentials() -> Option<StaticCredentials> {
    Some(StaticCredentials {
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
        session_token: None,
    })
}

pub fn source_config(queue: &str) -> SqsSourceConfig {
    SqsSourceConfig {
        queue: Some(queue.into()),
        queue_url: None,
        region: Some("us-east-1".into()),
        endpoint: Some(SQS_ENDPOINT.into()),
        credentials: credentials(),
        base64: false,
        wait_time_s: 1,
        request_timeout_ms: 30_000,
        visibility_timeout_s: Some(30),
        // The lag tests wait for the depth to be read; a short interval keeps them short.
        lag_interval_ms: 250,
    }
}

pub fn sink_config(queue: &str) -> SqsSinkConfig {
    SqsSinkConfig {
        queue: Some(queue.into()),
        queue_url: None,
        region: Some("us-east-1".into()),
        endpoint: Some(SQS_ENDPOINT.into()),
        credentials: credentials(),
        base64: false,
        request_timeout_ms: 30_000,
        message_group_id: None,
        deduplication_id_header: None,
    }
}

/// Test-side SQS client.
pub struct SqsBroker {
    client: aws_sdk_sqs::Client,
}

impl Default for SqsBroker {
    fn default() -> Self {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(SQS_ENDPOINT)
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .build();
        SqsBroker {
            client: aws_sdk_sqs::Client::from_conf(config),
        }
    }
}

impl SqsBroker {
    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    pub async fn url(&self, queue: &str) -> String {
        self.client
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .expect("SQS (moto) on 127.0.0.1:5000: scripts/brokers.sh starts it")
            .queue_url()
            .unwrap()
            .to_owned()
    }

    /// A FIFO queue with content-based deduplication.
    pub async fn fresh_fifo(&self, prefix: &str) -> String {
        let name = format!("{}.fifo", unique_queue(prefix));
        self.client
            .create_queue()
            .queue_name(&name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
            .send()
            .await
            .expect("create FIFO queue");
        name
    }
}

fn text(v: &MessageAttributeValue) -> String {
    v.string_value().unwrap_or_default().to_owned()
}

#[async_trait]
impl Broker for SqsBroker {
    async fn fresh_queue(&self, prefix: &str) -> String {
        let name = unique_queue(prefix);
        self.client
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .expect("SQS (moto) on 127.0.0.1:5000: scripts/brokers.sh starts it");
        name
    }

    async fn publish(&self, queue: &str, payload: &[u8], headers: &[(&str, &str)]) {
        let mut send = self
            .client
            .send_message()
            .queue_url(self.url(queue).await)
            .message_body(String::from_utf8(payload.to_vec()).unwrap());
        for (n, v) in headers {
            send = send.message_attributes(
                *n,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(*v)
                    .build()
                    .unwrap(),
            );
        }
        send.send().await.expect("send");
    }

    fn source(&self, queue: &str, max_in_flight: usize) -> Box<dyn Source> {
        source_config(queue)
            .build(&ctx(max_in_flight))
            .expect("sqs source")
    }

    fn sink(&self, queue: &str) -> Arc<dyn Sink> {
        sink_config(queue).build(&ctx(1)).expect("sqs sink")
    }

    async fn drain(&self, queue: &str, expect: usize) -> Vec<Received> {
        let url = self.url(queue).await;
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < expect && start.elapsed() < self.patience() {
            let out = self
                .client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .expect("receive");
            for m in out.messages() {
                let attrs = m.message_attributes().cloned().unwrap_or_default();
                let mut headers: HashMap<String, String> = HashMap::new();
                for (n, v) in &attrs {
                    if n == "x-sluice-headers" {
                        let pairs: Vec<(String, String)> =
                            serde_json::from_str(&text(v)).expect("packed headers are JSON");
                        headers.extend(pairs);
                    } else {
                        headers.insert(n.clone(), text(v));
                    }
                }
                got.push(Received {
                    payload: m.body().unwrap_or_default().as_bytes().to_vec(),
                    headers,
                });
                self.client
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .expect("delete");
            }
        }
        got
    }

    async fn depth(&self, queue: &str) -> usize {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(self.url(queue).await)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        out.attributes()
            .map(|a| a.values().map(|v| v.parse::<usize>().unwrap_or(0)).sum())
            .unwrap_or(0)
    }

    fn refusal(&self, queue: &str) -> crate::conformance::Refusal {
        crate::conformance::Refusal {
            sink: self.sink(queue),
            shape: Arc::new(|out: &mut sluice::message::Output, refused: bool| {
                if refused {
                    out.payload = bytes::Bytes::from(vec![b'a'; 300 * 1024]);
                }
            }),
            reason: "exceeds SQS's",
        }
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(300)
    }

    /// moto serves about a hundred calls a second: 300 messages prove what 1,000 would.
    fn load(&self) -> usize {
        300
    }
}
