//! `generate`: synthetic messages at a rate or up to a count, for the quickstart and benchmarks.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::time::Instant;

use crate::{BuildContext, Delivery, Source, SourceFactory};
use sluice_core::ack::AckToken;
use sluice_core::message::{Message, Metadata, now_ms};

/// `type: generate`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct GenerateSourceConfig {
    /// Stop after this many messages. Default: never stop.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1_000_000_000_000_u64))]
    pub count: Option<u64>,
    /// Messages per second. Default: as fast as the pipeline takes them.
    #[serde(default)]
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1000000000))]
    pub rate_per_second: Option<f64>,
    /// What to generate. Default: `envelope`.
    #[serde(default)]
    pub payload: GeneratedPayload,
    /// Payload size in bytes for `payload: fixed`. Default: 256.
    #[serde(default = "default_size")]
    #[schemars(range(max = 67108864))]
    pub size: usize,
    /// Make every Nth envelope malformed (to see dead-lettering work). Default: never.
    #[serde(default)]
    #[schemars(range(min = 1, max = 1_000_000_000_000_u64))]
    pub malformed_every: Option<u64>,
}

/// The kind of payload `generate` makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GeneratedPayload {
    /// The JSON event envelope (`event_type`, `event_id`, `timestamp`, `version`, `data`,
    /// `metadata`) that `json-enrich` handles.
    #[default]
    Envelope,
    /// `size` bytes of lowercase ASCII text.
    Fixed,
}

fn default_size() -> usize {
    256
}

impl SourceFactory for GenerateSourceConfig {
    fn redelivers(&self) -> bool {
        false
    }

    fn build(&self, _ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        let fixed = Bytes::from(
            (0..self.size)
                .map(|i| b'a' + (i % 26) as u8)
                .collect::<Vec<u8>>(),
        );
        Ok(Box::new(GenerateSource {
            cfg: self.clone(),
            fixed,
            emitted: 0,
            started: Instant::now(),
            source: Arc::from("generate"),
            topic: Arc::from("generate"),
        }))
    }
}

struct GenerateSource {
    cfg: GenerateSourceConfig,
    fixed: Bytes,
    emitted: u64,
    started: Instant,
    source: Arc<str>,
    topic: Arc<str>,
}

const EVENT_TYPES: [&str; 4] = [
    "order.created",
    "order.paid",
    "order.shipped",
    "user.signed_up",
];

impl GenerateSource {
    fn payload(&self, n: u64) -> Bytes {
        match self.cfg.payload {
            GeneratedPayload::Fixed => self.fixed.clone(),
            GeneratedPayload::Envelope => {
                if self
                    .cfg
                    .malformed_every
                    .is_some_and(|every| (n + 1).is_multiple_of(every))
                {
                    return Bytes::from(format!(
                        "{{\"event_type\": \"order.created\", \"event_id\": \"evt-{n}\""
                    ));
                }
                let event_type = EVENT_TYPES[(n % EVENT_TYPES.len() as u64) as usize];
                Bytes::from(
                    serde_json::json!({
                        "event_type": event_type,
                        "event_id": format!("evt-{n}"),
                        "timestamp": now_ms(),
                        "version": "1.0",
                        "data": { "order_id": format!("ord-{}", n / 4), "amount_cents": (n * 37) % 10_000 },
                        "metadata": { "producer": "sluice-generate", "trace_id": format!("{:032x}", n + 1), "correlation_id": format!("corr-{}", n / 4) },
                    })
                    .to_string(),
                )
            }
        }
    }
}

#[async_trait]
impl Source for GenerateSource {
    async fn next_batch(&mut self, max: usize) -> anyhow::Result<Option<Vec<Delivery>>> {
        let remaining = self.cfg.count.map_or(u64::MAX, |c| c - self.emitted.min(c));
        if remaining == 0 {
            return Ok(None);
        }
        let mut n = (max as u64).min(remaining);
        if let Some(rate) = self.cfg.rate_per_second {
            // Emit what is due by now; if nothing is, sleep until the next one is.
            let due = (self.started.elapsed().as_secs_f64() * rate) as u64 + 1;
            if due <= self.emitted {
                let next_at = self.started + Duration::from_secs_f64(self.emitted as f64 / rate);
                tokio::time::sleep_until(next_at).await;
            }
            let due = (self.started.elapsed().as_secs_f64() * rate) as u64 + 1;
            n = n.min(due.saturating_sub(self.emitted).max(1));
        }
        let received = Metadata::received_now(self.source.clone(), self.topic.clone());
        let batch = (0..n)
            .map(|i| {
                let seq = self.emitted + i;
                let mut meta = received.clone();
                meta.offset = Some(seq as i64);
                let message = Message {
                    id: format!("generate:{seq}"),
                    key: None,
                    payload: self.payload(seq),
                    headers: Vec::new(),
                    meta,
                };
                Delivery::new(message, AckToken::none())
            })
            .collect();
        self.emitted += n;
        Ok(Some(batch))
    }
}
