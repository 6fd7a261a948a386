//! The Kafka source: one group member. Settlements move per-partition commit points
//! ([`OffsetTracker`]); nacks come back from a local redelivery queue, since Kafka cannot
//! redeliver a single record.

mod group;
mod lag;
mod receipt;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt as _;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::{ClientConfig, Message as _};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::offsets::PartitionKey;
use crate::{Assignment, KafkaSourceConfig, StartFrom};
use sluice_core::ack::AckToken;
use sluice_core::connector::{BuildContext, Delivery, LagGauge, Source};
use sluice_core::message::{ByteString, HeaderValue, Message, Metadata, Native};

pub use group::GroupContext;
use lag::watch_lag;
use receipt::{Pending, Receipt, Shared, lock, store_offsets_periodically};

type Consumer = StreamConsumer<GroupContext>;

pub struct KafkaSource {
    cfg: KafkaSourceConfig,
    client: ClientConfig,
    consumer: Option<Arc<Consumer>>,
    shared: Arc<Shared>,
    /// The topic of the last record, shared by the next one's metadata (a subscription is
    /// usually one topic): compared by content, no hashing per record.
    last_topic: Option<Arc<str>>,
    source: Arc<str>,
    /// Most nacked records kept for redelivery (the pipeline's window): while this many wait,
    /// nothing new is read, so a sink that is down cannot move the topic into host memory.
    max_parked: usize,
    /// The assignment is paused because `max_parked` records wait.
    paused: bool,
}

impl KafkaSource {
    pub fn new(cfg: KafkaSourceConfig, ctx: &BuildContext) -> anyhow::Result<Self> {
        let mut client = cfg.common().client_config(Some(ctx));
        client
            .set("group.id", &cfg.group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                cfg.commit_interval_ms.to_string(),
            )
            .set(
                "auto.offset.reset",
                match cfg.start_from {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                },
            )
            .set(
                "partition.assignment.strategy",
                match cfg.assignment {
                    Assignment::CooperativeSticky => "cooperative-sticky",
                    Assignment::Range => "range",
                    Assignment::Roundrobin => "roundrobin",
                },
            )
            .set_log_level(RDKafkaLogLevel::Warning);
        // librdkafka prefetches up to 100,000 records or 64 MiB per consumer by default: held
        // in host memory while a sink is down. A smaller prefetch keeps what a source holds near
        // its window; `options` may still set either.
        for (key, value) in [
            ("queued.max.messages.kbytes", "16384"),
            ("queued.min.messages", "10000"),
        ] {
            if client.get(key).is_none() {
                client.set(key, value);
            }
        }
        if let Some(ms) = cfg.session_timeout_ms {
            client.set("session.timeout.ms", ms.to_string());
        }
        let shared = Arc::new(Shared {
            pipeline: ctx.pipeline.clone(),
            tracker: Mutex::default(),
            redeliveries: Mutex::default(),
            redelivery_queued: Notify::new(),
            consumer: OnceLock::new(),
            lag: sluice_core::connector::unknown_lag(),
        });
        Ok(KafkaSource {
            cfg,
            client,
            consumer: None,
            shared,
            last_topic: None,
            source: Arc::from("kafka"),
            max_parked: ctx.max_in_flight.max(1),
            paused: false,
        })
    }

    fn consumer(&mut self) -> anyhow::Result<Arc<Consumer>> {
        if let Some(c) = &self.consumer {
            return Ok(c.clone());
        }
        let group = &self.cfg.group;
        let consumer: Consumer = self
            .client
            .create_with_context(GroupContext {
                shared: self.shared.clone(),
            })
            .with_context(|| {
                format!("kafka source (group `{group}`): cannot create the consumer")
            })?;
        let topics: Vec<&str> = self.cfg.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).with_context(|| {
            format!("kafka source (group `{group}`): cannot subscribe to {topics:?}")
        })?;
        let consumer = Arc::new(consumer);
        let _ = self.shared.consumer.set(Arc::downgrade(&consumer));
        tokio::spawn(store_offsets_periodically(Arc::downgrade(&self.shared)));
        if self.cfg.lag_interval_ms > 0 {
            tokio::spawn(watch_lag(
                Arc::downgrade(&consumer),
                self.shared.lag.clone(),
                Duration::from_millis(self.cfg.lag_interval_ms),
            ));
        }
        tracing::info!(pipeline = %self.shared.pipeline, group = %group, topics = ?topics, "kafka source subscribed");
        self.consumer = Some(consumer.clone());
        Ok(consumer)
    }

    fn token(&self, pending: Pending) -> Delivery {
        let message = pending.message.clone();
        let receipt = Receipt {
            shared: self.shared.clone(),
            pending,
        };
        Delivery::new(message, AckToken::new(Arc::new(receipt), 0))
    }

    /// A delivery for a record just taken from librdkafka. It is recorded in the offset tracker
    /// at once, before the next `recv`, inside which a rebalance callback may revoke its partition.
    fn delivery(&mut self, m: &BorrowedMessage<'_>) -> Delivery {
        let topic = match &self.last_topic {
            Some(t) if **t == *m.topic() => t.clone(),
            _ => self.last_topic.insert(Arc::from(m.topic())).clone(),
        };
        let (partition, offset) = (m.partition(), m.offset());
        let key: PartitionKey = (topic.clone(), partition);
        let generation = lock(&self.shared.tracker).received(&key, offset);
        let mut meta = Metadata::received_now(self.source.clone(), topic.clone());
        meta.partition = Some(partition);
        meta.offset = Some(offset);
        meta.timestamp_ms = m.timestamp().to_millis();
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (ByteString::from(h.key), header_value(h.value)))
                    .collect()
            })
            .unwrap_or_default();
        let message = Message {
            id: record_id(&topic, partition, offset),
            key: m.key().map(Bytes::copy_from_slice),
            payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
            headers,
            meta,
        };
        self.token(Pending {
            key,
            offset,
            generation,
            message,
        })
    }

    /// While a window's worth of nacked records waits, pause every assigned partition, so that
    /// nothing new is fetched or read (a sink that is down cannot move the topic into host
    /// memory), and resume once they are handed out again. The consumer is still polled
    /// meanwhile, which keeps this member in its group (`max.poll.interval.ms`) and runs
    /// rebalances; a partition assigned while paused is paused at the next call.
    fn pause_while_parked(&mut self, consumer: &Consumer) {
        let full = lock(&self.shared.redeliveries).len() >= self.max_parked;
        if !full && !self.paused {
            return;
        }
        let result = consumer.assignment().and_then(|assignment| {
            if full {
                consumer.pause(&assignment)
            } else {
                consumer.resume(&assignment)
            }
        });
        match result {
            Ok(()) => {
                if full != self.paused {
                    tracing::debug!(group = %self.cfg.group, paused = full, "kafka source: nacked records waiting; partitions paused or resumed");
                }
                self.paused = full;
            }
            Err(e) => {
                tracing::warn!(group = %self.cfg.group, error = %e, "kafka source: cannot pause or resume the assignment");
            }
        }
    }

    /// Nacked deliveries whose delay has passed (and whose partition is still ours), and when the
    /// next one is due.
    fn due_redeliveries(&self, max: usize) -> (Vec<Delivery>, Option<Instant>) {
        let now = Instant::now();
        let mut queued = lock(&self.shared.redeliveries);
        let mut due = Vec::new();
        let mut i = 0;
        while i < queued.len() && due.len() < max {
            if queued[i].0 <= now {
                due.push(queued.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        let next = queued.iter().map(|(at, _)| *at).min();
        drop(queued);
        let tracker = lock(&self.shared.tracker);
        let due: Vec<Pending> = due
            .into_iter()
            .filter(|p| tracker.is_current(&p.key, p.generation))
            .collect();
        drop(tracker);
        let deliveries = due.into_iter().map(|p| self.token(p)).collect();
        (deliveries, next)
    }
}

/// `topic:partition:offset`, without the formatting machinery (once per record).
fn record_id(topic: &str, partition: i32, offset: i64) -> String {
    let (mut p, mut o) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (p, o) = (p.format(partition), o.format(offset));
    let mut id = String::with_capacity(topic.len() + p.len() + o.len() + 2);
    for part in [topic, ":", p, ":", o] {
        id.push_str(part);
    }
    id
}

#[async_trait]
impl Source for KafkaSource {
    async fn next_batch(&mut self, max: usize) -> anyhow::Result<Option<Vec<Delivery>>> {
        let consumer = self.consumer()?;
        loop {
            let (mut batch, next_due) = self.due_redeliveries(max);
            if !batch.is_empty() {
                return Ok(Some(batch));
            }
            self.pause_while_parked(&consumer);
            let wait_for_redelivery = async {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => self.shared.redelivery_queued.notified().await,
                }
            };
            // Cancel-safe: `recv` takes a record from librdkafka only in the poll that returns it.
            let first = tokio::select! {
                m = consumer.recv() => m,
                () = wait_for_redelivery => continue,
            };
            let first = first.context("kafka source: consumer error")?;
            batch.push(self.delivery(&first));
            drop(first);
            while batch.len() < max {
                match consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(self.delivery(&m)),
                    _ => break,
                }
            }
            return Ok(Some(batch));
        }
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        let Some(consumer) = self.consumer.take() else {
            return Ok(());
        };
        let group = self.cfg.group.clone();
        // Committing and leaving the group block on the network: not on the async workers.
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            shared.store_moved(consumer.as_ref());
            let committed = consumer.commit_consumer_state(CommitMode::Sync);
            consumer.unsubscribe();
            drop(consumer);
            match committed {
                // Nothing was stored since the last commit.
                Err(rdkafka::error::KafkaError::ConsumerCommit(
                    rdkafka::types::RDKafkaErrorCode::NoOffset,
                )) => Ok(()),
                other => other,
            }
        })
        .await
        .context("kafka source: close task")?
        .with_context(|| format!("kafka source (group `{group}`): final commit"))
    }

    fn lag_gauge(&self) -> Option<LagGauge> {
        (self.cfg.lag_interval_ms > 0).then(|| self.shared.lag.clone())
    }
}

/// A Kafka header value: UTF-8 as text; other bytes as lossy text with the bytes kept beside
/// it, and a null value as empty text marked null, so that a Kafka sink writes either back
/// exactly.
fn header_value(value: Option<&[u8]>) -> HeaderValue {
    match value {
        None => HeaderValue::with_native("", Native::Null),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => HeaderValue::from(text),
            Err(_) => HeaderValue::with_native(
                String::from_utf8_lossy(bytes).into_owned(),
                Native::Bytes(Bytes::copy_from_slice(bytes)),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn record_ids_name_topic_partition_and_offset() {
        assert_eq!(super::record_id("orders", 3, 1042), "orders:3:1042");
        assert_eq!(super::record_id("t", -1, 0), "t:-1:0");
    }
}
