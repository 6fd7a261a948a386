//! [`Broker`]s for the conformance suite: the in-process `memory` queue and the machine's
//! RabbitMQ.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use sluice::connector::memory::{MemoryQueue, MemorySinkConfig, MemorySourceConfig, StoredMessage};
use sluice::connector::rabbitmq::{RabbitMqSinkConfig, RabbitMqSourceConfig};
use sluice::connector::{BuildContext, Sink, SinkFactory, Source, SourceFactory};
use tokio::sync::OnceCell;

use crate::conformance::{Broker, Received};
use crate::{repo_root, unique_queue};

fn ctx(max_in_flight: usize) -> BuildContext {
    BuildContext {
        pipeline: "test".into(),
        max_in_flight,
        base_dir: repo_root(),
    }
}

/// The in-process `memory` connector.
#[derive(Debug, Default)]
pub struct MemoryBroker;

#[async_trait]
impl Broker for MemoryBroker {
    async fn fresh_queue(&self, prefix: &str) -> String {
        unique_queue(prefix)
    }

    async fn publish(&self, queue: &str, payload: &[u8], headers: &[(&str, &str)]) {
        let mut msg = StoredMessage::new(payload.to_vec());
        msg.headers = headers
            .iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect();
        MemoryQueue::named(queue).push(msg);
    }

    fn source(&self, queue: &str, max_in_flight: usize) -> Box<dyn Source> {
        let cfg = MemorySourceConfig {
            queue: queue.into(),
            visibility_timeout_ms: 60_000,
        };
        cfg.build(&ctx(max_in_flight)).expect("memory source")
    }

    fn sink(&self, queue: &str) -> Arc<dyn Sink> {
        MemorySinkConfig {
            queue: queue.into(),
        }
        .build(&ctx(1))
        .expect("memory sink")
    }

    async fn drain(&self, queue: &str, expect: usize) -> Vec<Received> {
        let q = MemoryQueue::named(queue);
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < expect && start.elapsed() < Duration::from_secs(30) {
            let batch = q.drain();
            if batch.is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            got.extend(batch.into_iter().map(|m| {
                Received {
                    payload: m.payload.to_vec(),
                    headers: m
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                }
            }));
        }
        got
    }

    async fn depth(&self, queue: &str) -> usize {
        MemoryQueue::named(queue).outstanding()
    }
}

/// The RabbitMQ broker this machine kind runs on 127.0.0.1:5672 (guest/guest). Connects lazily,
/// on the runtime of the test that uses it.
#[derive(Debug, Default)]
pub struct RabbitMqBroker {
    channel: OnceCell<(Connection, Channel)>,
}

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A RabbitMQ source from its pipeline-file settings; `url` defaults to the local broker.
pub fn rabbitmq_source(mut settings: serde_json::Value, max_in_flight: usize) -> Box<dyn Source> {
    if settings.get("url").is_none() {
        settings["url"] = AMQP_URL.into();
    }
    let cfg: RabbitMqSourceConfig = serde_json::from_value(settings).expect("source settings");
    cfg.build(&ctx(max_in_flight)).expect("rabbitmq source")
}

/// A RabbitMQ sink from its pipeline-file settings; `url` defaults to the local broker.
pub fn rabbitmq_sink(mut settings: serde_json::Value) -> Arc<dyn Sink> {
    if settings.get("url").is_none() {
        settings["url"] = AMQP_URL.into();
    }
    let cfg: RabbitMqSinkConfig = serde_json::from_value(settings).expect("sink settings");
    cfg.build(&ctx(1)).expect("rabbitmq sink")
}

impl RabbitMqBroker {
    /// Wait (up to 15 s) until someone has declared `exchange` or `queue` (a pipeline's
    /// `topology`). Each check is a passive declare on a channel of its own, because the broker
    /// closes the channel of a failed one.
    pub async fn wait_declared(&self, exchange: Option<&str>, queue: Option<&str>) {
        let conn = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("RabbitMQ on 127.0.0.1:5672");
        let start = Instant::now();
        loop {
            let ch = conn.create_channel().await.expect("a channel");
            let found = match (exchange, queue) {
                (Some(e), _) => ch
                    .exchange_declare(
                        e.into(),
                        lapin::ExchangeKind::Direct,
                        ExchangeDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .is_ok(),
                (None, Some(q)) => ch
                    .queue_declare(
                        q.into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .is_ok(),
                (None, None) => true,
            };
            if found {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{exchange:?} / {queue:?} never declared"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publish to `exchange` with `routing_key`, mandatory and confirmed; false when no queue
    /// was bound to receive it (the broker returned it).
    pub async fn publish_to(&self, exchange: &str, routing_key: &str, payload: &[u8]) -> bool {
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let confirm = self
            .channel()
            .await
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                payload,
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("publish confirm");
        confirm.take_message().is_none()
    }

    pub async fn channel(&self) -> &Channel {
        let (_, ch) = self
            .channel
            .get_or_init(|| async {
                let conn = Connection::connect(AMQP_URL, ConnectionProperties::default())
                    .await
                    .expect("RabbitMQ on 127.0.0.1:5672 (scripts/brokers.sh starts it)");
                let ch = conn.create_channel().await.expect("a channel");
                // Confirms, so a publish returns once the broker has it (and `publish_to` sees
                // a message no queue received).
                ch.confirm_select(ConfirmSelectOptions::default())
                    .await
                    .expect("confirm.select");
                (conn, ch)
            })
            .await;
        ch
    }
}

fn header_text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        other => format!("{other:?}"),
    }
}

#[async_trait]
impl Broker for RabbitMqBroker {
    /// A routing key longer than AMQP's 255 bytes; the sink takes each output's key.
    fn refusal(&self, queue: &str) -> crate::conformance::Refusal {
        let cfg = RabbitMqSinkConfig {
            url: AMQP_URL.into(),
            exchange: String::new(),
            routing_key: None,
            declare_queue: Some(queue.into()),
            persistent: true,
            topology: Default::default(),
            tls: Default::default(),
            confirm_timeout_ms: 30_000,
        };
        let queue = bytes::Bytes::from(queue.to_owned());
        crate::conformance::Refusal {
            sink: cfg.build(&ctx(1)).expect("rabbitmq sink"),
            shape: Arc::new(move |out: &mut sluice::message::Output, refused: bool| {
                out.key = Some(if refused {
                    bytes::Bytes::from(vec![b'k'; 300])
                } else {
                    queue.clone()
                });
            }),
            reason: "exceeds AMQP's 255",
        }
    }

    async fn fresh_queue(&self, prefix: &str) -> String {
        let name = unique_queue(prefix);
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        self.channel()
            .await
            .queue_declare(name.as_str().into(), options, FieldTable::default())
            .await
            .expect("declare");
        name
    }

    async fn publish(&self, queue: &str, payload: &[u8], headers: &[(&str, &str)]) {
        let mut table = FieldTable::default();
        for (n, v) in headers {
            table.insert(
                (*n).into(),
                AMQPValue::LongString(LongString::from(v.as_bytes().to_vec())),
            );
        }
        let props = BasicProperties::default().with_headers(table);
        let ch = self.channel().await;
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            payload,
            props,
        )
        .await
        .expect("publish")
        .await
        .expect("publish confirm");
    }

    fn source(&self, queue: &str, max_in_flight: usize) -> Box<dyn Source> {
        let cfg = RabbitMqSourceConfig {
            url: AMQP_URL.into(),
            queue: queue.into(),
            declare: false,
            prefetch: None,
            batch_linger_ms: 2,
            topology: Default::default(),
            tls: Default::default(),
            // The lag tests wait for the depth to be read; a short interval keeps them short.
            lag_interval_ms: 250,
        };
        cfg.build(&ctx(max_in_flight)).expect("rabbitmq source")
    }

    fn sink(&self, queue: &str) -> Arc<dyn Sink> {
        let cfg = RabbitMqSinkConfig {
            url: AMQP_URL.into(),
            exchange: String::new(),
            routing_key: Some(queue.into()),
            declare_queue: Some(queue.into()),
            persistent: true,
            topology: Default::default(),
            tls: Default::default(),
            confirm_timeout_ms: 30_000,
        };
        cfg.build(&ctx(1)).expect("rabbitmq sink")
    }

    async fn drain(&self, queue: &str, expect: usize) -> Vec<Received> {
        let ch = self.channel().await;
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < expect && start.elapsed() < Duration::from_secs(30) {
            match ch
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
            {
                Some(m) => {
                    let headers: HashMap<String, String> = m
                        .delivery
                        .properties
                        .headers()
                        .as_ref()
                        .map(|t| {
                            t.inner()
                                .iter()
                                .map(|(k, v)| (k.as_str().to_owned(), header_text(v)))
                                .collect()
                        })
                        .unwrap_or_default();
                    got.push(Received {
                        payload: m.delivery.data,
                        headers,
                    });
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        got
    }

    async fn depth(&self, queue: &str) -> usize {
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = self
            .channel()
            .await
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .expect("passive declare");
        q.message_count() as usize
    }
}
