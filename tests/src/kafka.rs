//! The Kafka-protocol broker `scripts/brokers.sh` starts on 127.0.0.1:9092 (noida-db, with its data
//! on disk so that it survives a restart), as a conformance [`Broker`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use sluice::connector::kafka::{KafkaSinkConfig, KafkaSourceConfig};
use sluice::connector::{BuildContext, Sink, SinkFactory, Source, SourceFactory};

use crate::conformance::{Broker, Received};
use crate::{repo_root, unique_queue};

/// Where the tests' Kafka-protocol broker listens.
pub const KAFKA_BROKERS: &str = "127.0.0.1:9092";

fn ctx(max_in_flight: usize) -> BuildContext {
    BuildContext {
        pipeline: "test".into(),
        max_in_flight,
        base_dir: repo_root(),
    }
}

fn client() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", KAFKA_BROKERS);
    c
}

/// The consumer group a test source of `topic` joins.
pub fn group_of(topic: &str) -> String {
    format!("g-{topic}")
}

/// The source config the suite uses: its own group per topic, a short session so that a
/// restarted pipeline gets its partitions back quickly.
pub fn source_config(topic: &str) -> KafkaSourceConfig {
    KafkaSourceConfig {
        brokers: KAFKA_BROKERS.into(),
        topics: vec![topic.into()],
        group: group_of(topic),
        start_from: Default::default(),
        assignment: Default::default(),
        commit_interval_ms: 200,
        session_timeout_ms: Some(6000),
        lag_interval_ms: 500,
        tls: None,
        sasl: None,
        options: Default::default(),
    }
}

pub fn sink_config(topic: &str) -> KafkaSinkConfig {
    KafkaSinkConfig {
        brokers: KAFKA_BROKERS.into(),
        topic: topic.into(),
        compression: Default::default(),
        linger_ms: 1,
        message_timeout_ms: 10_000,
        tls: None,
        sasl: None,
        options: Default::default(),
    }
}

/// Test-side Kafka client: creates topics, produces, and reads topics back from where the last
/// read stopped.
pub struct KafkaBroker {
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Per topic, the next offset `drain` reads (partition 0).
    read: Mutex<HashMap<String, i64>>,
    partitions: i32,
}

impl Default for KafkaBroker {
    fn default() -> Self {
        Self::with_partitions(1)
    }
}

impl KafkaBroker {
    /// Topics made by `fresh_queue` get `partitions` partitions.
    pub fn with_partitions(partitions: i32) -> Self {
        KafkaBroker {
            producer: client()
                .set("linger.ms", "1")
                .create()
                .expect("a Kafka producer"),
            admin: client().create().expect("a Kafka admin client"),
            read: Mutex::default(),
            partitions,
        }
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results = self
            .admin
            .create_topics([&topic], &AdminOptions::new())
            .await
            .expect("Kafka on 127.0.0.1:9092 (scripts/brokers.sh starts it)");
        for r in results {
            r.expect("topic created");
        }
    }

    /// Produce to an explicit partition, with a key.
    pub async fn publish_keyed(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        payload: &[u8],
        headers: &[(&str, &str)],
    ) {
        let mut record = FutureRecord::to(topic).payload(payload).key(key);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        self.produce(record, headers).await;
    }

    /// Produce with header values given as bytes (or null), to partition 0.
    pub async fn publish_raw_headers(
        &self,
        topic: &str,
        payload: &[u8],
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let owned = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header { key: k, value: *v })
        });
        let record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(payload)
            .partition(0)
            .headers(owned);
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }

    async fn produce(&self, mut record: FutureRecord<'_, [u8], [u8]>, headers: &[(&str, &str)]) {
        if !headers.is_empty() {
            record = record.headers(own_headers(headers));
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }

    /// Every record of partition 0 of `topic` from its start, with keys and timestamps.
    pub async fn read_all(
        &self,
        topic: &str,
        expect: usize,
    ) -> Vec<rdkafka::message::OwnedMessage> {
        read_from(topic, Offset::Beginning, expect).await
    }

    /// Committed offset of `group` on partition `partition` of `topic` (None: nothing committed).
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let consumer: BaseConsumer = client().set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let got = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        match got.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        }
    }

    /// High watermark of one partition.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> i64 {
        let consumer: BaseConsumer = client().create().unwrap();
        consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .expect("watermarks")
            .1
    }
}

fn own_headers(headers: &[(&str, &str)]) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(*v),
        })
    })
}

fn reader() -> StreamConsumer {
    client()
        .set("group.id", unique_queue("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("a reading consumer")
}

/// Records of partition 0 of `topic` from `from`: until `expect` arrived (or 30 s passed), then on
/// while more keep coming, so that duplicates are seen too.
async fn read_from(
    topic: &str,
    from: Offset,
    expect: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer = reader();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, from).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut stream = consumer.stream();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
            Ok(Some(Ok(m))) => got.push(m.detach()),
            _ if got.len() >= expect || Instant::now() > deadline => break,
            _ => {}
        }
    }
    got
}

#[async_trait]
impl Broker for KafkaBroker {
    /// A record over librdkafka's `message.max.bytes` (1,000,000 by default).
    fn refusal(&self, queue: &str) -> crate::conformance::Refusal {
        crate::conformance::Refusal {
            sink: self.sink(queue),
            shape: Arc::new(|out: &mut sluice::message::Output, refused: bool| {
                if refused {
                    out.payload = bytes::Bytes::from(vec![b'a'; 1_500_000]);
                }
            }),
            reason: "too large",
        }
    }

    async fn fresh_queue(&self, prefix: &str) -> String {
        let name = unique_queue(prefix);
        self.create_topic(&name, self.partitions).await;
        name
    }

    async fn publish(&self, queue: &str, payload: &[u8], headers: &[(&str, &str)]) {
        self.produce(
            FutureRecord::<[u8], [u8]>::to(queue).payload(payload),
            headers,
        )
        .await;
    }

    fn source(&self, queue: &str, max_in_flight: usize) -> Box<dyn Source> {
        source_config(queue)
            .build(&ctx(max_in_flight))
            .expect("kafka source")
    }

    fn sink(&self, queue: &str) -> Arc<dyn Sink> {
        sink_config(queue).build(&ctx(1)).expect("kafka sink")
    }

    async fn drain(&self, queue: &str, expect: usize) -> Vec<Received> {
        let from = *self.read.lock().unwrap().get(queue).unwrap_or(&0);
        let records = read_from(queue, Offset::Offset(from), expect).await;
        let next = records.last().map_or(from, |m| m.offset() + 1);
        self.read.lock().unwrap().insert(queue.to_owned(), next);
        records
            .iter()
            .map(|m| Received {
                payload: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                                (h.key.to_owned(), value.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    async fn depth(&self, queue: &str) -> usize {
        let hwm = self.high_watermark(queue, 0);
        let drained = *self.read.lock().unwrap().get(queue).unwrap_or(&0);
        let committed = self.committed(&group_of(queue), queue, 0).unwrap_or(0);
        (hwm - committed.max(drained)).max(0) as usize
    }
}
