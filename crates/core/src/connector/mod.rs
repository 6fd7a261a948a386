//! What a connector is: the [`Source`] and [`Sink`] traits the engine calls, the factories a
//! connector's config type implements, and the plumbing the queue brokers share.
//!
//! Architecture invariant: the engine sees connectors only through these two traits. The
//! registry that maps a pipeline file's `type:` to a connector lives in `sluice-connectors`.

pub mod outcome;
pub mod receipts;
pub mod resource;

pub use outcome::{BatchStatus, OutputStatus, SendResult, SinkError};
pub use resource::Resource;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use crate::FieldError;
use crate::ack::AckToken;
use crate::message::{Message, Output};
use async_trait::async_trait;

/// One message pulled from a source, with the token that settles it.
#[derive(Debug)]
pub struct Delivery {
    pub message: Message,
    pub token: AckToken,
    /// Set when the source could not decode what it received (e.g. a malformed JSON line). The
    /// engine dead-letters such a delivery as `invalid` without calling a handler; `message.payload`
    /// holds the raw bytes.
    pub decode_error: Option<String>,
}

impl Delivery {
    pub fn new(message: Message, token: AckToken) -> Self {
        Delivery {
            message,
            token,
            decode_error: None,
        }
    }
}

/// A stream of deliveries.
///
/// `next_batch` must be cancel-safe: the engine drops the future on shutdown, and a dropped call
/// must not have taken a message it did not return.
#[async_trait]
pub trait Source: Send {
    /// Wait for at least one delivery and return up to `max` of those available now, without
    /// waiting to fill the batch. `Ok(None)` means the stream has ended (finite sources only).
    async fn next_batch(&mut self, max: usize) -> anyhow::Result<Option<Vec<Delivery>>>;

    /// Called once after every delivery is settled, before the source is dropped: flush
    /// acknowledgements to the broker and close connections.
    async fn close(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Messages waiting in the broker for this consumer (Kafka consumer lag), kept up to date by
    /// the source; -1 while unknown. `None` when the broker does not report it.
    fn lag_gauge(&self) -> Option<LagGauge> {
        None
    }

    /// Whether the source holds a live connection to its broker, kept up to date by the source.
    /// `None` for sources without one to watch; the engine then counts the source as connected
    /// unless its last pull failed.
    fn connected_flag(&self) -> Option<ConnectedFlag> {
        None
    }
}

/// A flag a source sets while it is connected; the engine's readiness reads it.
pub type ConnectedFlag = Arc<std::sync::atomic::AtomicBool>;

/// A gauge a source updates from its own callbacks and the engine reads.
pub type LagGauge = Arc<Lag>;

/// Messages waiting in the broker, as last read, and when: a queue's depth or a consumer
/// group's lag is read every `lag_interval_ms`, so what `/pipelines` and `/metrics` show is as
/// old as its read time says.
#[derive(Debug)]
pub struct Lag {
    value: AtomicI64,
    read_ms: AtomicI64,
}

impl Lag {
    /// Record a reading of `n` messages, taken now.
    pub fn record(&self, n: i64) {
        use std::sync::atomic::Ordering::{Relaxed, Release};
        // The time first: whoever sees the value sees a time at least as recent.
        self.read_ms.store(crate::message::now_ms(), Relaxed);
        self.value.store(n, Release);
    }

    /// The last reading and when it was taken (ms since the Unix epoch); `None` before the first.
    pub fn last(&self) -> Option<(u64, i64)> {
        use std::sync::atomic::Ordering::{Acquire, Relaxed};
        let value = u64::try_from(self.value.load(Acquire)).ok()?;
        Some((value, self.read_ms.load(Relaxed)))
    }
}

/// How often a queue broker's depth is read for the lag gauge (RabbitMQ, SQS, Azure) unless the
/// source's `lag_interval_ms` says otherwise.
pub const DEPTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// [`DEPTH_INTERVAL`] in ms: the default of each queue source's `lag_interval_ms`.
pub fn default_lag_interval_ms() -> u64 {
    DEPTH_INTERVAL.as_millis() as u64
}

/// Read a queue's depth with `read` every `interval` into `depth`, for as long as the
/// source keeps its gauge (the watcher holds it weakly). A failed or empty read leaves the last
/// value and is tried again next time; `queue` names the queue in the debug log.
pub async fn watch_depth<F, Fut>(
    queue: String,
    interval: std::time::Duration,
    depth: std::sync::Weak<Lag>,
    mut read: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<i64>>>,
{
    while let Some(gauge) = depth.upgrade() {
        match read().await {
            Ok(Some(n)) => gauge.record(n),
            Ok(None) => tracing::debug!(queue = %queue, "the broker gave no queue depth"),
            Err(e) => {
                tracing::debug!(queue = %queue, error = %format!("{e:#}"), "cannot read the queue depth")
            }
        }
        drop(gauge);
        tokio::time::sleep(interval).await;
    }
}

/// A new lag gauge, unknown until the source reads the depth.
pub fn unknown_lag() -> LagGauge {
    Arc::new(Lag {
        value: AtomicI64::new(-1),
        read_ms: AtomicI64::new(0),
    })
}

/// A destination that confirms what it accepted.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Write `batch`. `Ok` means every output is confirmed (broker ack, flushed write).
    /// [`SinkError::Batch`] means none may be assumed delivered (the engine retries the batch,
    /// then nacks); [`SinkError::Outputs`] says, per output, which were delivered, which may be
    /// retried and which the broker refused for good (their deliveries are dead-lettered as
    /// `sink-rejected`). An `anyhow::Error` converts into [`SinkError::Batch`] with `?`.
    ///
    /// The engine drops the future when it runs past `delivery.sink_timeout_ms`: what was not
    /// confirmed by then counts as not delivered.
    async fn send(&self, batch: &[Output]) -> SendResult;

    /// Flush and release resources at shutdown.
    async fn close(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What a connector needs to know about where it runs.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub pipeline: Arc<str>,
    /// The pipeline's `delivery.max_in_flight` (a source's default prefetch).
    pub max_in_flight: usize,
    /// Directory of the pipeline file; relative paths in connector settings resolve against it.
    pub base_dir: PathBuf,
}

impl BuildContext {
    /// `path` against the pipeline file's folder, without `.` components (`pipelines/./out`
    /// reads `pipelines/out` in messages).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.components().collect()
        } else {
            self.base_dir.join(path).components().collect()
        }
    }
}

/// Implemented by each source connector's config type.
pub trait SourceFactory {
    /// Checks beyond what deserialization checks; paths are relative to the source section.
    fn validate(&self, _errors: &mut Vec<FieldError>) {}
    /// What [`SourceFactory::build`] would find wrong without touching the network (a file that
    /// is missing or cannot be read), for `sluice validate`.
    fn check_local(&self, _ctx: &BuildContext, _errors: &mut Vec<FieldError>) {}
    fn build(&self, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>>;
    /// `true` when what is nacked or abandoned comes back later (brokers, `memory`); `false` for
    /// sources that keep no position (`generate`, `stdin`, `file`).
    fn redelivers(&self) -> bool {
        true
    }
    /// `true` when a message can be lost once received (no acknowledgement at all, e.g. ZeroMQ):
    /// such a source needs the pipeline to accept `delivery.guarantee: at_most_once`.
    fn at_most_once(&self) -> bool {
        false
    }
    /// What this source expects on its broker (`sluice plan`). Default: nothing.
    fn resources(&self) -> Vec<Resource> {
        Vec::new()
    }
}

/// Implemented by each sink connector's config type.
pub trait SinkFactory {
    fn validate(&self, _errors: &mut Vec<FieldError>) {}
    /// What [`SinkFactory::build`] would find wrong without touching the network (a directory
    /// that does not exist), for `sluice validate`.
    fn check_local(&self, _ctx: &BuildContext, _errors: &mut Vec<FieldError>) {}
    fn build(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Sink>>;
    /// `true` when the sink cannot confirm that what it took was delivered (ZeroMQ: PUB drops
    /// what no subscriber takes, PUSH "confirms" once queued in process): such a sink needs the
    /// pipeline to accept `delivery.guarantee: at_most_once`.
    fn at_most_once(&self) -> bool {
        false
    }
    /// The sink's own limit on one write (field name, milliseconds), which must stay below the
    /// pipeline's `delivery.sink_timeout_ms` so that the sink's clearer error comes first and
    /// its own cleanup (a dropped connection) runs.
    fn write_timeout_ms(&self) -> Option<(&'static str, u64)> {
        None
    }
    /// What this sink expects on its broker (`sluice plan`). Default: nothing.
    fn resources(&self) -> Vec<Resource> {
        Vec::new()
    }
}
