//! Consumer lag: the sum over the assigned partitions of high watermark minus position, read
//! on an interval into the lag gauge.

use std::sync::Weak;
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::Consumer as _;

use sluice_core::connector::LagGauge;

use super::Consumer;

/// Every `interval`, until the consumer is gone: lag = sum over assigned partitions of the high
/// watermark minus the group's committed offset (the partition start when nothing is committed).
/// Read from the broker on a task of its own, because librdkafka only serves its statistics
/// while the consumer is polled, and a saturated pipeline does not poll.
pub(super) async fn watch_lag(consumer: Weak<Consumer>, gauge: LagGauge, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(c) = consumer.upgrade() else { return };
        let lag = tokio::task::spawn_blocking(move || measure_lag(&c)).await;
        match lag {
            Ok(Ok(lag)) => gauge.record(lag),
            Ok(Err(e)) => tracing::debug!(error = %e, "kafka: cannot read consumer lag"),
            Err(_) => return,
        }
    }
}

pub(super) fn measure_lag(c: &Consumer) -> rdkafka::error::KafkaResult<i64> {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let assigned = c.assignment()?;
    if assigned.count() == 0 {
        return Ok(0);
    }
    let committed = c.committed_offsets(assigned, TIMEOUT)?;
    let mut lag = 0;
    for e in committed.elements() {
        let (low, high) = c.fetch_watermarks(e.topic(), e.partition(), TIMEOUT)?;
        let from = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        lag += (high - from).max(0);
    }
    Ok(lag)
}
