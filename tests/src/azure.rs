//! The Azure Queue Storage emulator `scripts/brokers.sh` starts on 127.0.0.1:10001 (Azurite), as a
//! conformance [`Broker`]. Messages are Sluice envelopes (base64 JSON with key and headers).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_storage_queue::QueueClient;
use azure_storage_queue::models::{
    QueueClientGetPropertiesResultHeaders as _, QueueClientReceiveMessagesOptions, QueueMessage,
};
use base64::Engine as _;
use sluice::connector::azure_queue::{
    AzureQueueSinkConfig, AzureQueueSourceConfig, ConnectionString, Encoding,
};
use sluice::connector::{BuildContext, Sink, SinkFactory, Source, SourceFactory};

use crate::conformance::{Broker, Received};
use crate::{repo_root, unique_queue};

/// Azurite's development account; the connector expands it to 127.0.0.1:10001.
pub const AZURITE: &str = "UseDevelopmentStorage=true";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn ctx(max_in_flight: usize) -> BuildContext {
    BuildContext {
        pipeline: "test".into(),
        max_in_flight,
        base_dir: repo_root(),
    }
}

pub fn source_config(queue: &str) -> AzureQueueSourceConfig {
    AzureQueueSourceConfig {
        connection_string: Some(AZURITE.into()),
        account_url: None,
        credential: None,
        queue: queue.into(),
        encoding: Encoding::Base64,
        envelope: true,
        visibility_timeout_s: 30,
        poll_interval_ms: 50,
        max_dequeue_count: 5,
        poison_queue: None,
        create: false,
        // The lag tests wait for the depth to be read; a short interval keeps them short.
        lag_interval_ms: 250,
        request_timeout_ms: 30_000,
    }
}

pub fn sink_config(queue: &str) -> AzureQueueSinkConfig {
    AzureQueueSinkConfig {
        connection_string: Some(AZURITE.into()),
        account_url: None,
        credential: None,
        queue: queue.into(),
        encoding: Encoding::Base64,
        envelope: true,
        create: false,
        request_timeout_ms: 30_000,
    }
}

/// A unique, valid queue name (lowercase letters, digits, single hyphens).
pub fn queue_name(prefix: &str) -> String {
    unique_queue(prefix).to_ascii_lowercase().replace('_', "-")
}

#[derive(Debug, Default)]
pub struct AzureBroker;

impl AzureBroker {
    pub fn client(&self, queue: &str) -> QueueClient {
        ConnectionString::parse(AZURITE)
            .unwrap()
            .queue_client(queue)
            .unwrap()
    }

    pub async fn create(&self, queue: &str) {
        self.client(queue)
            .create(None)
            .await
            .expect("Azurite on 127.0.0.1:10001 (scripts/brokers.sh starts it)");
    }

    /// Send raw message text.
    pub async fn send_text(&self, queue: &str, text: &str) {
        let message = QueueMessage {
            message_text: Some(text.to_owned()),
        };
        self.client(queue)
            .send_message(message.try_into().unwrap(), None)
            .await
            .expect("send");
    }

    /// Take up to 32 raw message texts.
    pub async fn take_texts(&self, queue: &str) -> Vec<String> {
        let client = self.client(queue);
        let options = QueueClientReceiveMessagesOptions {
            number_of_messages: Some(32),
            ..Default::default()
        };
        let got = client
            .receive_messages(Some(options))
            .await
            .expect("receive")
            .into_model()
            .unwrap();
        let mut texts = Vec::new();
        for m in got.items.unwrap_or_default() {
            client
                .delete_message(
                    m.message_id.as_deref().unwrap(),
                    m.pop_receipt.as_deref().unwrap(),
                    None,
                )
                .await
                .expect("delete");
            texts.push(m.message_text.unwrap_or_default());
        }
        texts
    }
}

fn envelope(payload: &[u8], headers: &[(&str, &str)]) -> String {
    let json = serde_json::json!({
        "payload": B64.encode(payload),
        "headers": headers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
    });
    B64.encode(json.to_string())
}

fn open(text: &str) -> Received {
    let json: serde_json::Value =
        serde_json::from_slice(&B64.decode(text).expect("base64")).expect("an envelope");
    let headers: HashMap<String, String> = json["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_owned(),
                        h[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Received {
        payload: B64.decode(json["payload"].as_str().unwrap()).unwrap(),
        headers,
    }
}

#[async_trait]
impl Broker for AzureBroker {
    async fn fresh_queue(&self, prefix: &str) -> String {
        let name = queue_name(prefix);
        self.create(&name).await;
        name
    }

    async fn publish(&self, queue: &str, payload: &[u8], headers: &[(&str, &str)]) {
        self.send_text(queue, &envelope(payload, headers)).await;
    }

    fn source(&self, queue: &str, max_in_flight: usize) -> Box<dyn Source> {
        source_config(queue)
            .build(&ctx(max_in_flight))
            .expect("azure_queue source")
    }

    fn sink(&self, queue: &str) -> Arc<dyn Sink> {
        sink_config(queue).build(&ctx(1)).expect("azure_queue sink")
    }

    async fn drain(&self, queue: &str, expect: usize) -> Vec<Received> {
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < expect && start.elapsed() < self.patience() {
            let texts = self.take_texts(queue).await;
            if texts.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            got.extend(texts.iter().map(|t| open(t)));
        }
        got
    }

    async fn depth(&self, queue: &str) -> usize {
        self.client(queue)
            .get_properties(None)
            .await
            .expect("queue properties")
            .approximate_messages_count()
            .unwrap()
            .unwrap_or(0) as usize
    }

    fn refusal(&self, queue: &str) -> crate::conformance::Refusal {
        crate::conformance::Refusal {
            sink: self.sink(queue),
            shape: Arc::new(|out: &mut sluice::message::Output, refused: bool| {
                if refused {
                    out.payload = bytes::Bytes::from(vec![b'a'; 100 * 1024]);
                }
            }),
            reason: "exceeds the service's",
        }
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(120)
    }
}
