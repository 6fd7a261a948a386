//! What the engine runs with: the delivery settings a pipeline file's `delivery:` section is
//! turned into (by the runtime; the engine never sees a config file).

/// How deliveries flow: window, batching, retries, rate limit, invalid-payload policy.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Most deliveries pulled from the source and not yet settled.
    pub max_in_flight: usize,
    /// Most messages handed to a handler in one call; batches form only from messages already
    /// waiting, so light traffic is never delayed.
    pub batch_size: usize,
    pub retry: RetryPolicy,
    /// Longest wait for a sink to confirm one write; past it the write counts as failed and is
    /// retried (`delivery.sink_timeout_ms`).
    pub sink_timeout: std::time::Duration,
    /// Consecutive failed sink writes after which the pipeline stops pulling and probes the
    /// sink with one batch at a time (`delivery.breaker_failures`).
    pub breaker_failures: u32,
    pub rate_limit: Option<RateLimit>,
    /// What to do with a message a handler calls `invalid`.
    pub on_invalid: InvalidPolicy,
}

impl Default for DeliverySettings {
    /// The defaults a pipeline file gets when it says nothing (`docs/pipeline-reference.md`).
    fn default() -> Self {
        DeliverySettings {
            max_in_flight: 1024,
            batch_size: 128,
            retry: RetryPolicy::default(),
            sink_timeout: std::time::Duration::from_millis(DEFAULT_SINK_TIMEOUT_MS),
            breaker_failures: 5,
            rate_limit: None,
            on_invalid: InvalidPolicy::DeadLetter,
        }
    }
}

/// The default of `delivery.sink_timeout_ms`: above the brokers' own confirm timeouts (30 s for
/// Kafka's `message_timeout_ms` and RabbitMQ's `confirm_timeout_ms`), so that a sink's own
/// clearer error comes first.
pub const DEFAULT_SINK_TIMEOUT_MS: u64 = 60_000;

/// Exponential backoff with jitter, for transient handler errors and sink failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included, before a message is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each retry.
    pub base_delay_ms: u64,
    /// Cap on one delay.
    pub max_delay_ms: u64,
    /// Fraction of each delay drawn at random (0 = none, 1 = full jitter).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay_ms: 100,
            max_delay_ms: 30_000,
            jitter: 0.2,
        }
    }
}

/// Token bucket applied before the handler.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Sustained messages per second.
    pub per_second: u32,
    /// Messages allowed at once above the sustained rate; `None` means `per_second`.
    pub burst: Option<u32>,
}

/// What happens to a message a handler rejects as `invalid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidPolicy {
    /// Send it to the dead-letter sink (then ack).
    DeadLetter,
    /// Ack it and count it as discarded.
    Discard,
}
