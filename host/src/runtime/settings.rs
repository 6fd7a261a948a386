//! Pipeline-file sections turned into what the engine and the plugin host run with. This is the
//! only place that knows both sides: the engine and the plugin host never see a config type.

use crate::config::{self, DeliveryConfig, HandlerConfig, LimitsConfig};
use crate::engine::{DeliverySettings, InvalidPolicy, RateLimit, RetryPolicy};
use crate::plugin::{BatchAbi, Grant, Limits};

/// The engine's delivery settings from a `delivery:` section.
pub fn delivery(d: &DeliveryConfig) -> DeliverySettings {
    DeliverySettings {
        max_in_flight: d.max_in_flight,
        batch_size: d.batch_size,
        retry: RetryPolicy {
            max_attempts: d.retry.max_attempts,
            base_delay_ms: d.retry.base_delay_ms,
            max_delay_ms: d.retry.max_delay_ms,
            jitter: d.retry.jitter,
        },
        sink_timeout: std::time::Duration::from_millis(d.sink_timeout_ms),
        breaker_failures: d.breaker_failures,
        rate_limit: d.rate_limit.as_ref().map(|r| RateLimit {
            per_second: r.per_second,
            burst: r.burst,
        }),
        on_invalid: match d.on_invalid {
            config::InvalidPolicy::DeadLetter => InvalidPolicy::DeadLetter,
            config::InvalidPolicy::Discard => InvalidPolicy::Discard,
        },
    }
}

/// The plugin host's limits from a handler's `limits:` section.
pub fn limits(l: &LimitsConfig) -> Limits {
    Limits {
        timeout_ms: l.timeout_ms,
        memory_mb: l.memory_mb,
        max_outputs: l.max_outputs,
        max_output_bytes: l.max_output_bytes,
        stack_kb: l.stack_kb,
        instances: l.instances,
        max_headers: l.max_headers,
        max_header_bytes: l.max_header_bytes,
        max_key_bytes: l.max_key_bytes,
        max_reason_bytes: l.max_reason_bytes,
        max_log_bytes: l.max_log_bytes,
        log_lines_per_second: l.log_lines_per_second,
        max_counters: l.max_counters,
    }
}

/// How batches cross into the handler.
pub fn batch_abi(h: &HandlerConfig) -> BatchAbi {
    match h.batch_abi {
        config::BatchAbi::Auto => BatchAbi::Auto,
        config::BatchAbi::Canonical => BatchAbi::Canonical,
    }
}

/// The WASI capabilities the handler is granted.
pub fn grants(h: &HandlerConfig) -> Vec<Grant> {
    h.grants
        .iter()
        .map(|g| match g {
            config::Grant::Clocks => Grant::Clocks,
            config::Grant::Random => Grant::Random,
            config::Grant::Stdout => Grant::Stdout,
            config::Grant::Stderr => Grant::Stderr,
            config::Grant::Cli => Grant::Cli,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that says nothing gets the engine's and the plugin host's own defaults, so the
    /// defaults the docs list cannot drift apart between the two sides.
    #[test]
    fn defaults_agree() {
        assert_eq!(limits(&LimitsConfig::default()), Limits::default());
        let d = delivery(&DeliveryConfig::default());
        let e = DeliverySettings::default();
        assert_eq!(
            (
                d.max_in_flight,
                d.batch_size,
                d.on_invalid,
                d.rate_limit.is_none(),
                d.sink_timeout,
                d.breaker_failures
            ),
            (
                e.max_in_flight,
                e.batch_size,
                e.on_invalid,
                e.rate_limit.is_none(),
                e.sink_timeout,
                e.breaker_failures
            )
        );
        let (r, s) = (d.retry, e.retry);
        assert_eq!(
            (r.max_attempts, r.base_delay_ms, r.max_delay_ms, r.jitter),
            (s.max_attempts, s.base_delay_ms, s.max_delay_ms, s.jitter)
        );
    }
}
