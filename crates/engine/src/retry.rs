//! Exponential backoff with jitter.

use std::time::Duration;

use rand::Rng as _;

use crate::settings::RetryPolicy;

/// Delay before attempt `next_attempt` (2 for the first retry): `base * 2^(n-2)`, capped at
/// `max`, with a random `jitter` fraction taken off so that retries of many messages spread out.
pub fn backoff(cfg: &RetryPolicy, next_attempt: u32) -> Duration {
    let exp = next_attempt.saturating_sub(2).min(32);
    let raw = cfg
        .base_delay_ms
        .saturating_mul(1u64 << exp)
        .min(cfg.max_delay_ms);
    let jitter = if cfg.jitter > 0.0 {
        rand::rng().random_range(0.0..=cfg.jitter)
    } else {
        0.0
    };
    Duration::from_millis((raw as f64 * (1.0 - jitter)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_caps_without_jitter() {
        let cfg = RetryPolicy {
            max_attempts: 10,
            base_delay_ms: 100,
            max_delay_ms: 1000,
            jitter: 0.0,
        };
        let delays: Vec<u64> = (2..8)
            .map(|n| backoff(&cfg, n).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let cfg = RetryPolicy {
            max_attempts: 10,
            base_delay_ms: 1000,
            max_delay_ms: 1000,
            jitter: 0.5,
        };
        for _ in 0..200 {
            let d = backoff(&cfg, 2).as_millis();
            assert!((500..=1000).contains(&d), "{d}");
        }
    }
}
