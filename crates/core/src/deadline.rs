//! Waiting with a limit, where running out of time is an error like any other: every wait on
//! something outside the process that might never answer (a broker's confirm, a close, a
//! connect) goes through [`within`], so no such wait is unbounded and each says what timed out.

use std::future::Future;
use std::time::Duration;

/// `work`'s result, or `timed_out()` as the error if it has not finished within `limit`
/// (`work` is dropped then).
pub async fn within<T>(
    limit: Duration,
    work: impl Future<Output = anyhow::Result<T>>,
    timed_out: impl FnOnce() -> anyhow::Error,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finished_work_passes_its_result_and_slow_work_becomes_the_error() {
        let done = within(Duration::from_secs(1), async { Ok(7) }, || {
            anyhow::anyhow!("too slow")
        });
        assert_eq!(done.await.unwrap(), 7);
        let slow = within(
            Duration::from_millis(10),
            std::future::pending::<anyhow::Result<()>>(),
            || anyhow::anyhow!("too slow"),
        );
        assert_eq!(slow.await.unwrap_err().to_string(), "too slow");
    }
}

/// `delay` in whole seconds, rounded up: for brokers whose delays are whole seconds (SQS and
/// Azure visibility timeouts), so that a 200 ms backoff waits 1 s rather than none at all.
pub fn whole_seconds_up(delay: Duration) -> u64 {
    delay.as_secs() + u64::from(delay.subsec_nanos() > 0)
}

#[cfg(test)]
mod whole_seconds_tests {
    use super::*;

    #[test]
    fn a_fraction_of_a_second_rounds_up_never_down() {
        assert_eq!(whole_seconds_up(Duration::ZERO), 0);
        assert_eq!(whole_seconds_up(Duration::from_millis(200)), 1);
        assert_eq!(whole_seconds_up(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds_up(Duration::from_millis(2001)), 3);
    }
}
