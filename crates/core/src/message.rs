//! The message model shared by connectors, the engine and the plugin host.
//!
//! Payloads and keys are [`Bytes`] so that fan-out, retries and dead-lettering share one
//! allocation: the dead-letter copy is the original payload, byte for byte, by construction.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
pub use bytestring::ByteString;

mod header;

pub use header::{HeaderValue, Native, ValueRef, restore_natives};

/// Header (name, value) pairs in broker order; names may repeat. Names and values' text are
/// `Bytes`-backed strings, so headers read from a buffer (a broker frame, a handler's packed
/// result) are slices of it rather than copies. A value keeps its source's own form beside its
/// text where the text is not all of it ([`HeaderValue`]).
pub type Headers = Vec<(ByteString, HeaderValue)>;

/// A message received from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unique within the source (broker id, or `topic:partition:offset`).
    pub id: String,
    pub key: Option<Bytes>,
    pub payload: Bytes,
    pub headers: Headers,
    pub meta: Metadata,
}

/// Read-only facts about where and how a message was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The pipeline's source name.
    pub source: Arc<str>,
    /// Topic, queue, subject or file.
    pub topic: Arc<str>,
    pub partition: Option<i32>,
    /// Offset or sequence number.
    pub offset: Option<i64>,
    /// Broker/producer timestamp, ms since the Unix epoch.
    pub timestamp_ms: Option<i64>,
    /// Host wall clock when the message entered the pipeline, ms since the Unix epoch.
    pub received_ms: i64,
    /// 1 on first delivery; host retries and broker redeliveries both count.
    pub attempt: u32,
}

impl Metadata {
    /// Metadata for a message received now from `source`/`topic`, first attempt.
    pub fn received_now(source: Arc<str>, topic: Arc<str>) -> Self {
        Metadata {
            source,
            topic,
            partition: None,
            offset: None,
            timestamp_ms: None,
            received_ms: now_ms(),
            attempt: 1,
        }
    }
}

/// One message a handler produced (or the engine built, e.g. a dead-letter copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub payload: Bytes,
    pub key: Option<Bytes>,
    pub headers: Headers,
    /// Sink name; `None` means the pipeline's default sink.
    pub route: Option<String>,
    /// Event time, ms since the Unix epoch, for sinks that carry one (Kafka). Handler outputs
    /// inherit their input's timestamp; `None` lets the broker stamp it.
    pub timestamp_ms: Option<i64>,
}

impl Output {
    /// The output that passes `msg` through unchanged (used when a pipeline has no handler).
    pub fn pass_through(msg: &Message) -> Self {
        Output {
            payload: msg.payload.clone(),
            key: msg.key.clone(),
            headers: msg.headers.clone(),
            route: None,
            timestamp_ms: msg.meta.timestamp_ms,
        }
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &**v)
    }
}

impl Message {
    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &**v)
    }
}

/// Milliseconds since the Unix epoch by the host's wall clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
