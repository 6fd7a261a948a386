//! `memory`: an in-process queue with visibility-timeout and redelivery semantics (like SQS), for
//! engine fault tests, examples and embedding. Queues are named and process-global, so a pipeline's
//! memory sink can feed another pipeline's memory source, and tests can push and inspect.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{BuildContext, Delivery, SendResult, Sink, SinkFactory, Source, SourceFactory};
use sluice_core::FieldError;
use sluice_core::ack::{AckToken, Acker, Settlement};
use sluice_core::message::{Headers, Message, Metadata, Output};

/// `type: memory` as a source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct MemorySourceConfig {
    /// Queue name (process-global).
    pub queue: String,
    /// How long a pulled, unsettled message stays invisible before it is redelivered.
    /// Milliseconds; default 30000.
    #[serde(default = "default_visibility_ms")]
    #[schemars(range(min = 1, max = 3600000))]
    pub visibility_timeout_ms: u64,
}

/// `type: memory` as a sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct MemorySinkConfig {
    /// Queue name (process-global).
    pub queue: String,
}

fn default_visibility_ms() -> u64 {
    30_000
}

impl SourceFactory for MemorySourceConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.queue.is_empty() {
            errors.push(FieldError::new("queue", "must not be empty"));
        }
    }

    fn build(&self, _ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        let queue = MemoryQueue::named(&self.queue);
        queue.set_visibility_timeout(Duration::from_millis(self.visibility_timeout_ms));
        Ok(Box::new(MemorySource { queue }))
    }
}

impl SinkFactory for MemorySinkConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.queue.is_empty() {
            errors.push(FieldError::new("queue", "must not be empty"));
        }
    }

    fn build(&self, _ctx: &BuildContext) -> anyhow::Result<Arc<dyn Sink>> {
        Ok(Arc::new(MemorySink {
            queue: MemoryQueue::named(&self.queue),
        }))
    }
}

/// A message at rest in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub key: Option<Bytes>,
    pub payload: Bytes,
    pub headers: Headers,
}

impl StoredMessage {
    pub fn new(payload: impl Into<Bytes>) -> Self {
        StoredMessage {
            key: None,
            payload: payload.into(),
            headers: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    seq: i64,
    /// Deliveries so far (0 before the first).
    deliveries: u32,
    msg: StoredMessage,
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Entry>,
    /// Pulled and not settled, with the instant they become visible again.
    leased: HashMap<u64, (Instant, Entry)>,
    /// Nacked, waiting for their delay.
    delayed: Vec<(Instant, Entry)>,
    next_seq: i64,
    next_lease: u64,
}

/// Counters a test can read to check that nothing was lost or settled twice.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub pushed: AtomicU64,
    pub delivered: AtomicU64,
    pub acked: AtomicU64,
    pub nacked: AtomicU64,
    pub abandoned: AtomicU64,
    pub expired: AtomicU64,
    /// The most messages ever pulled and unsettled at once (the consumer's window, as seen by
    /// the queue).
    pub max_in_flight: AtomicU64,
}

/// A named in-process queue.
#[derive(Debug)]
pub struct MemoryQueue {
    name: Arc<str>,
    state: Mutex<State>,
    visibility: Mutex<Duration>,
    changed: Notify,
    pub stats: QueueStats,
}

static QUEUES: LazyLock<Mutex<HashMap<String, Arc<MemoryQueue>>>> = LazyLock::new(Default::default);

impl MemoryQueue {
    /// The process-global queue called `name`, created empty on first use.
    pub fn named(name: &str) -> Arc<MemoryQueue> {
        let mut queues = QUEUES.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(MemoryQueue {
                    name: name.into(),
                    state: Mutex::new(State::default()),
                    visibility: Mutex::new(Duration::from_millis(default_visibility_ms())),
                    changed: Notify::new(),
                    stats: QueueStats::default(),
                })
            })
            .clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_visibility_timeout(&self, timeout: Duration) {
        *self.visibility.lock().unwrap_or_else(|e| e.into_inner()) = timeout;
    }

    pub fn push(&self, msg: StoredMessage) {
        let mut st = self.state();
        let seq = st.next_seq;
        st.next_seq += 1;
        st.ready.push_back(Entry {
            seq,
            deliveries: 0,
            msg,
        });
        drop(st);
        self.stats.pushed.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Messages ready to be pulled now.
    pub fn ready_len(&self) -> usize {
        let mut st = self.state();
        promote_due(&mut st, &self.stats);
        st.ready.len()
    }

    /// Messages pulled and not yet settled.
    pub fn in_flight(&self) -> usize {
        self.state().leased.len()
    }

    /// Ready, delayed and in-flight messages together: what is still owed to a consumer.
    pub fn outstanding(&self) -> usize {
        let st = self.state();
        st.ready.len() + st.leased.len() + st.delayed.len()
    }

    /// Remove and return every ready message (for tests that read a sink queue).
    pub fn drain(&self) -> Vec<StoredMessage> {
        let mut st = self.state();
        promote_due(&mut st, &self.stats);
        st.ready.drain(..).map(|e| e.msg).collect()
    }

    fn lease(&self, max: usize) -> Vec<(u64, Entry)> {
        let mut st = self.state();
        promote_due(&mut st, &self.stats);
        let n = max.min(st.ready.len());
        let visible_at =
            Instant::now() + *self.visibility.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(n);
        for entry in st.ready.drain(..n).collect::<Vec<_>>() {
            let lease = st.next_lease;
            st.next_lease += 1;
            let copy = Entry {
                seq: entry.seq,
                deliveries: entry.deliveries + 1,
                msg: entry.msg.clone(),
            };
            st.leased.insert(
                lease,
                (
                    visible_at,
                    Entry {
                        deliveries: entry.deliveries + 1,
                        ..entry
                    },
                ),
            );
            out.push((lease, copy));
        }
        self.stats
            .delivered
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        self.stats
            .max_in_flight
            .fetch_max(st.leased.len() as u64, Ordering::Relaxed);
        out
    }

    /// The next instant something may become ready (a delay or a lease running out).
    fn next_wake(&self) -> Option<Instant> {
        let st = self.state();
        st.delayed
            .iter()
            .map(|(t, _)| *t)
            .chain(st.leased.values().map(|(t, _)| *t))
            .min()
    }
}

/// Moves due delayed entries and expired leases back to `ready`.
fn promote_due(st: &mut State, stats: &QueueStats) {
    let now = Instant::now();
    let mut i = 0;
    while i < st.delayed.len() {
        if st.delayed[i].0 <= now {
            let (_, e) = st.delayed.swap_remove(i);
            st.ready.push_back(e);
        } else {
            i += 1;
        }
    }
    let expired: Vec<u64> = st
        .leased
        .iter()
        .filter(|(_, (t, _))| *t <= now)
        .map(|(id, _)| *id)
        .collect();
    for id in expired {
        if let Some((_, e)) = st.leased.remove(&id) {
            stats.expired.fetch_add(1, Ordering::Relaxed);
            st.ready.push_back(e);
        }
    }
}

impl Acker for MemoryQueue {
    fn settle(&self, id: u64, how: Settlement) {
        let mut st = self.state();
        match how {
            Settlement::Ack => {
                if st.leased.remove(&id).is_some() {
                    self.stats.acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            Settlement::Nack { delay } => {
                if let Some((_, e)) = st.leased.remove(&id) {
                    self.stats.nacked.fetch_add(1, Ordering::Relaxed);
                    st.delayed.push((Instant::now() + delay, e));
                }
            }
            // Stays leased until its visibility timeout: exactly what a broker does with an
            // unacknowledged message from a consumer that went away.
            Settlement::Abandon => {
                self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(st);
        self.changed.notify_waiters();
    }
}

struct MemorySource {
    queue: Arc<MemoryQueue>,
}

#[async_trait]
impl Source for MemorySource {
    async fn next_batch(&mut self, max: usize) -> anyhow::Result<Option<Vec<Delivery>>> {
        loop {
            // Register interest before looking, so a push between the look and the wait is seen.
            let changed = self.queue.changed.notified();
            let leased = self.queue.lease(max);
            if !leased.is_empty() {
                let acker: Arc<dyn Acker> = self.queue.clone();
                let topic = self.queue.name.clone();
                let received = Metadata::received_now(Arc::from("memory"), topic.clone());
                return Ok(Some(
                    leased
                        .into_iter()
                        .map(|(lease, e)| {
                            let mut meta = received.clone();
                            meta.offset = Some(e.seq);
                            meta.attempt = e.deliveries;
                            let message = Message {
                                id: format!("{}:{}", topic, e.seq),
                                key: e.msg.key,
                                payload: e.msg.payload,
                                headers: e.msg.headers,
                                meta,
                            };
                            Delivery::new(message, AckToken::new(acker.clone(), lease))
                        })
                        .collect(),
                ));
            }
            match self.queue.next_wake() {
                Some(at) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

struct MemorySink {
    queue: Arc<MemoryQueue>,
}

#[async_trait]
impl Sink for MemorySink {
    async fn send(&self, batch: &[Output]) -> SendResult {
        for out in batch {
            self.queue.push(StoredMessage {
                key: out.key.clone(),
                payload: out.payload.clone(),
                headers: out.headers.clone(),
            });
        }
        Ok(())
    }
}
