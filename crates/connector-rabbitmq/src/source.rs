//! The RabbitMQ source: one connection and channel, a consumer with prefetch, and a task that
//! sends acknowledgements as they are settled, as few frames as it can (see `ack_window.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::mpsc;

use super::RabbitMqSourceConfig;
use super::ack_window::{AckFrame, AckWindow};
use super::headers::{from_table, redeliveries};
use sluice_core::ack::Settlement;
use sluice_core::connector::receipts::{Receipts, SettleJob};
use sluice_core::connector::{ConnectedFlag, Delivery, LagGauge, Source, unknown_lag};
use sluice_core::message::{Message, Metadata};

/// How long a settled ack may wait for the deliveries below it before it is sent on its own.
/// Long enough for the engine's batches to finish out of order (tens of microseconds to a few
/// milliseconds apart), short enough that held acks do not eat the prefetch.
const ACK_HOLD: Duration = Duration::from_millis(20);

/// What the settling task needs to acknowledge one delivery.
struct Receipt {
    /// Which connection (channel) delivered it: tags restart at 1 on every reconnect.
    channel: u64,
    tag: u64,
    acker: lapin::Acker,
}

struct Live {
    connection: Connection,
    _channel: Channel,
    consumer: Consumer,
}

pub struct RabbitMqSource {
    cfg: RabbitMqSourceConfig,
    prefetch: u16,
    live: Option<Live>,
    /// Deliveries taken from the consumer and not yet returned: a `next_batch` dropped while it
    /// waits (lingering for a fuller batch) leaves them here for the next call.
    stash: Vec<lapin::message::Delivery>,
    /// The consumer failed after some deliveries of a batch were taken: reported by the next call.
    broken: Option<anyhow::Error>,
    linger: Duration,
    receipts: Option<Arc<Receipts<Receipt>>>,
    /// Counts connections, so that receipts of a closed channel are told from the current one's.
    channel: u64,
    /// Random per connection: delivery tags restart at 1 on every channel, so a message without
    /// a `message_id` gets `<queue>:<session>:<delivery tag>`, which does not repeat after a
    /// reconnect (or in another replica).
    session: u64,
    source: Arc<str>,
    topic: Arc<str>,
    connected: ConnectedFlag,
    /// Messages ready in the queue (not yet delivered to any consumer); -1 until known.
    depth: LagGauge,
}

impl RabbitMqSource {
    pub fn new(cfg: RabbitMqSourceConfig, prefetch: u16) -> Self {
        let topic = Arc::from(cfg.queue.as_str());
        RabbitMqSource {
            linger: Duration::from_millis(cfg.batch_linger_ms),
            cfg,
            prefetch,
            live: None,
            stash: Vec::new(),
            broken: None,
            receipts: None,
            channel: 0,
            session: 0,
            source: Arc::from("rabbitmq"),
            topic,
            connected: ConnectedFlag::default(),
            depth: unknown_lag(),
        }
    }

    fn receipts(&mut self) -> Arc<Receipts<Receipt>> {
        self.receipts
            .get_or_insert_with(|| {
                let (receipts, jobs) = Receipts::new();
                tokio::spawn(run_acks(jobs));
                receipts
            })
            .clone()
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        let queue = &self.cfg.queue;
        let who = format!("rabbitmq source `{queue}`");
        let connection = super::topology::connect(&self.cfg.url, &self.cfg.tls, &who).await?;
        let channel = connection
            .create_channel()
            .await
            .context("rabbitmq source: cannot open a channel")?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .context("rabbitmq source: basic.qos")?;
        self.cfg.topology.declare(&channel, &who).await?;
        if self.cfg.declare {
            super::declare_durable(&channel, queue, &who).await?;
        }
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "sluice".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("rabbitmq source: cannot consume from `{queue}`"))?;
        tracing::info!(queue = %queue, prefetch = self.prefetch, "rabbitmq source connected");
        // Queue depth for the lag gauge, on a channel of its own so that a failed check can
        // never close the consumer's.
        if let Ok(depth_channel) = connection.create_channel().await {
            tokio::spawn(watch_depth(
                depth_channel,
                queue.clone(),
                Duration::from_millis(self.cfg.lag_interval_ms),
                self.depth.clone(),
            ));
        }
        self.channel += 1;
        self.session = random_session();
        self.live = Some(Live {
            connection,
            _channel: channel,
            consumer,
        });
        Ok(())
    }

    fn delivery(&self, receipts: &Arc<Receipts<Receipt>>, d: lapin::message::Delivery) -> Delivery {
        let table = d.properties.headers().as_ref();
        let mut meta = Metadata::received_now(self.source.clone(), self.topic.clone());
        meta.attempt = redeliveries(table, d.redelivered) + 1;
        meta.timestamp_ms = d
            .properties
            .timestamp()
            .map(|s| (s as i64).saturating_mul(1000));
        let message = Message {
            id: d.properties.message_id().as_ref().map_or_else(
                || format!("{}:{:016x}:{}", self.topic, self.session, d.delivery_tag),
                |m| m.as_str().to_owned(),
            ),
            key: (!d.routing_key.as_str().is_empty())
                .then(|| Bytes::copy_from_slice(d.routing_key.as_str().as_bytes())),
            payload: Bytes::from(d.data),
            headers: from_table(table),
            meta,
        };
        let receipt = Receipt {
            channel: self.channel,
            tag: d.delivery_tag,
            acker: d.acker,
        };
        Delivery::new(message, receipts.token(receipt))
    }
}

#[async_trait]
impl Source for RabbitMqSource {
    fn connected_flag(&self) -> Option<ConnectedFlag> {
        Some(self.connected.clone())
    }

    fn lag_gauge(&self) -> Option<LagGauge> {
        Some(self.depth.clone())
    }

    async fn next_batch(&mut self, max: usize) -> anyhow::Result<Option<Vec<Delivery>>> {
        let receipts = self.receipts();
        if self.live.is_none() {
            self.connected.store(false, Ordering::Relaxed);
            super::within_connect_timeout("rabbitmq source", self.connect()).await?;
            self.connected.store(true, Ordering::Relaxed);
        }
        if let Some(err) = self.broken.take() {
            self.live = None;
            self.connected.store(false, Ordering::Relaxed);
            // Whatever is left is from the closed channel (the broker redelivers it): its tags
            // must never reach the next channel's ack window.
            self.stash.clear();
            return Err(err);
        }
        let Some(live) = self.live.as_mut() else {
            anyhow::bail!("rabbitmq source: not connected")
        };
        // Cancel-safe: a delivery is taken from the consumer only into `self.stash`, and leaves
        // the stash only in the return below.
        if self.stash.is_empty() {
            match live.consumer.next().await {
                Some(Ok(d)) => self.stash.push(d),
                ended => {
                    self.live = None;
                    self.connected.store(false, Ordering::Relaxed);
                    return Err(consumer_ended(ended));
                }
            }
        }
        take_ready(&mut live.consumer, &mut self.stash, &mut self.broken, max);
        // Nagle's rule for batches: while earlier deliveries are still being worked on, a short
        // wait for a fuller batch costs no throughput; when nothing is, hand this on at once.
        if self.stash.len() < max
            && !self.linger.is_zero()
            && self.broken.is_none()
            && receipts.unsettled() > 0
        {
            // One timer wake-up, not one per delivery arriving meanwhile.
            tokio::time::sleep(self.linger).await;
            take_ready(&mut live.consumer, &mut self.stash, &mut self.broken, max);
        }
        // (A call dropped earlier may have left more than this call asks for.)
        let raw: Vec<_> = self.stash.drain(..self.stash.len().min(max)).collect();
        Ok(Some(
            raw.into_iter()
                .map(|d| self.delivery(&receipts, d))
                .collect(),
        ))
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        if let Some(receipts) = &self.receipts {
            receipts.flush().await;
        }
        if let Some(live) = self.live.take() {
            super::close_connection(&live.connection, "rabbitmq source").await?;
        }
        Ok(())
    }
}

/// A random 64-bit number from the standard library's per-process random hash keys (no RNG
/// crate needed for an id that only has to differ between connections and hosts).
fn random_session() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// Move the deliveries the consumer already holds into `stash`, up to `max`; a failure is kept
/// in `broken` for the next call, after this batch is returned.
fn take_ready(
    consumer: &mut Consumer,
    stash: &mut Vec<lapin::message::Delivery>,
    broken: &mut Option<anyhow::Error>,
    max: usize,
) {
    while stash.len() < max {
        match consumer.next().now_or_never() {
            None => break,
            Some(Some(Ok(d))) => stash.push(d),
            Some(ended) => {
                *broken = Some(consumer_ended(ended));
                break;
            }
        }
    }
}

/// The error for a consumer stream that failed (`Some(Err)`) or ended (`None`).
fn consumer_ended(item: Option<lapin::Result<lapin::message::Delivery>>) -> anyhow::Error {
    match item {
        Some(Err(e)) => {
            anyhow::Error::new(e).context("rabbitmq source: consumer failed; reconnecting")
        }
        _ => anyhow::anyhow!("rabbitmq source: the broker cancelled the consumer; reconnecting"),
    }
}

/// The settling task: acks go through an [`AckWindow`] (one multiple-ack per contiguous run),
/// nacks are sent at once or after their delay, all from this one task so that frames for one
/// channel leave in the order the window assumes.
async fn run_acks(mut jobs: mpsc::UnboundedReceiver<SettleJob<Receipt>>) {
    let mut acks = ChannelAcks::default();
    let mut delayed: FuturesUnordered<BoxFuture<'static, Receipt>> = FuturesUnordered::new();
    loop {
        let job = tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => Some(job),
                None => break,
            },
            Some(receipt) = delayed.next(), if !delayed.is_empty() => {
                acks.nack(receipt).await;
                None
            }
            () = tokio::time::sleep(ACK_HOLD), if acks.window.holds_any() => None,
        };
        // Take everything already queued, so that one pass sends one frame for all of it.
        let mut next = job;
        while let Some(job) = next.take().or_else(|| jobs.try_recv().ok()) {
            match job {
                SettleJob::Flush(done) => {
                    acks.send(Duration::ZERO).await;
                    let _ = done.send(());
                }
                SettleJob::Settle(receipt, Settlement::Ack) => acks.ack(receipt).await,
                SettleJob::Settle(receipt, Settlement::Nack { delay }) if !delay.is_zero() => {
                    // RabbitMQ has no delayed requeue: hold the message (still unacknowledged,
                    // so still safe) for the delay, then requeue it.
                    delayed.push(Box::pin(async move {
                        tokio::time::sleep(delay).await;
                        receipt
                    }));
                }
                SettleJob::Settle(receipt, Settlement::Nack { .. } | Settlement::Abandon) => {
                    acks.nack(receipt).await;
                }
            }
        }
        acks.send(ACK_HOLD).await;
    }
    // The source is gone: send what is held. Delayed nacks are dropped; the broker requeues
    // those messages when the connection closes.
    acks.send(Duration::ZERO).await;
}

/// The acknowledgement state of the current channel.
#[derive(Default)]
struct ChannelAcks {
    channel: u64,
    window: AckWindow<lapin::Acker>,
}

impl ChannelAcks {
    /// Move to the receipt's channel if it is newer; false if the receipt is from an older one.
    async fn current(&mut self, receipt: &Receipt) -> bool {
        if receipt.channel > self.channel {
            // A reconnect: what the old channel still holds goes out on its own (its ackers
            // fail quietly if that channel is closed, and the broker has requeued them).
            self.send(Duration::ZERO).await;
            self.channel = receipt.channel;
            self.window = AckWindow::default();
        }
        receipt.channel == self.channel
    }

    async fn ack(&mut self, receipt: Receipt) {
        if self.current(&receipt).await {
            self.window.ack(receipt.tag, receipt.acker, Instant::now());
        } else {
            report(receipt.acker.ack(BasicAckOptions::default())).await;
        }
    }

    async fn nack(&mut self, receipt: Receipt) {
        let requeue = BasicNackOptions {
            requeue: true,
            multiple: false,
        };
        let current = self.current(&receipt).await;
        report(receipt.acker.nack(requeue)).await;
        if current {
            self.window.sent_alone(receipt.tag);
        }
    }

    /// Send the frames the window releases for this hold time.
    async fn send(&mut self, hold: Duration) {
        for frame in self.window.take(Instant::now(), hold) {
            let options = match &frame {
                AckFrame::UpTo(_) => BasicAckOptions { multiple: true },
                AckFrame::One(_) => BasicAckOptions::default(),
            };
            let (AckFrame::UpTo(acker) | AckFrame::One(acker)) = frame;
            report(acker.ack(options)).await;
        }
    }
}

/// Await one acknowledgement frame, within [`super::BROKER_REPLY_TIMEOUT`]. A frame lapin cannot
/// write (its connection is going) must not hold up every later acknowledgement of this task.
async fn report(sent: impl std::future::Future<Output = lapin::Result<bool>>) {
    match tokio::time::timeout(super::BROKER_REPLY_TIMEOUT, sent).await {
        Ok(Ok(_)) => {}
        // The channel is gone: the broker requeues every unacknowledged message itself.
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "rabbitmq acknowledgement failed; the broker will redeliver");
        }
        Err(_) => tracing::warn!(
            "rabbitmq acknowledgement not sent within {} s; the broker will redeliver when the \
             connection goes",
            super::BROKER_REPLY_TIMEOUT.as_secs()
        ),
    }
}

/// Read the queue's ready-message count (a passive declare) every `interval` until the
/// connection goes; a reconnect starts a new watcher.
async fn watch_depth(channel: Channel, queue: String, interval: Duration, depth: LagGauge) {
    let options = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    loop {
        match channel
            .queue_declare(queue.as_str().into(), options, FieldTable::default())
            .await
        {
            Ok(q) => depth.record(i64::from(q.message_count())),
            Err(err) => {
                tracing::debug!(queue = %queue, error = %err, "queue depth watcher stopped");
                return;
            }
        }
        tokio::time::sleep(interval).await;
    }
}
