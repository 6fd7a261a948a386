//! What a sink says about a batch it was given: every output delivered, or why not, per output.
//!
//! In the spirit of Vector's `EventStatus::{Delivered, Errored, Rejected}`: a *retryable* output
//! may succeed if sent again (the broker is down, a confirm timed out); a *rejected* one never
//! will (too large for the broker, a name the broker refuses), so the engine dead-letters its
//! delivery with class `sink-rejected` instead of retrying it forever.

use std::fmt;
use std::time::Duration;

/// What became of one output in a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputStatus {
    /// Confirmed by the broker (or flushed, for files).
    Delivered,
    /// Not confirmed; sending it again may work. `retry_after` is the broker's hint, if any.
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Refused for good: sending it again would fail the same way.
    Rejected { reason: String },
}

/// Why a sink's `send` did not confirm the whole batch.
#[derive(Debug)]
pub enum SinkError {
    /// Nothing of the batch may be assumed delivered; the engine retries all of it.
    Batch {
        error: anyhow::Error,
        retry_after: Option<Duration>,
    },
    /// One status per output of the batch, in order: the engine resends only the retryable
    /// ones and dead-letters the deliveries of the rejected ones.
    Outputs(Vec<OutputStatus>),
}

impl From<anyhow::Error> for SinkError {
    fn from(error: anyhow::Error) -> Self {
        SinkError::Batch {
            error,
            retry_after: None,
        }
    }
}

impl SinkError {
    /// How many outputs the error reports a status for (0 for [`SinkError::Batch`]).
    pub fn reported(&self) -> usize {
        match self {
            SinkError::Batch { .. } => 0,
            SinkError::Outputs(statuses) => statuses.len(),
        }
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Batch { error, .. } => write!(f, "{error:#}"),
            SinkError::Outputs(statuses) => {
                let mut rejected = 0;
                let mut retryable = 0;
                let mut first = None;
                for status in statuses {
                    match status {
                        OutputStatus::Delivered => {}
                        OutputStatus::Retryable { reason, .. } => {
                            retryable += 1;
                            first.get_or_insert(reason);
                        }
                        OutputStatus::Rejected { reason } => {
                            rejected += 1;
                            first.get_or_insert(reason);
                        }
                    }
                }
                write!(
                    f,
                    "{rejected} of {} outputs rejected, {retryable} to retry",
                    statuses.len()
                )?;
                if let Some(reason) = first {
                    write!(f, ", e.g. {reason}")?;
                }
                Ok(())
            }
        }
    }
}

/// The result of [`super::Sink::send`].
pub type SendResult = Result<(), SinkError>;

/// Builds a batch's statuses: every output delivered until told otherwise.
///
/// A connector checks each output before sending (size and name limits the broker documents),
/// marks the ones that fail [`BatchStatus::reject`], sends the rest, and marks what the broker
/// refused, by index in the batch it was given.
#[derive(Debug, Clone)]
pub struct BatchStatus {
    statuses: Vec<OutputStatus>,
}

impl BatchStatus {
    pub fn new(len: usize) -> Self {
        BatchStatus {
            statuses: vec![OutputStatus::Delivered; len],
        }
    }

    /// Output `i` will never be accepted.
    pub fn reject(&mut self, i: usize, reason: impl Into<String>) {
        self.statuses[i] = OutputStatus::Rejected {
            reason: reason.into(),
        };
    }

    /// Output `i` was not confirmed, and may be if sent again.
    pub fn retry(&mut self, i: usize, reason: impl Into<String>) {
        self.statuses[i] = OutputStatus::Retryable {
            reason: reason.into(),
            retry_after: None,
        };
    }

    /// Output `i` was confirmed (after an earlier `retry` marked it unconfirmed).
    pub fn deliver(&mut self, i: usize) {
        self.statuses[i] = OutputStatus::Delivered;
    }

    /// What output `i` is marked as so far.
    pub fn get(&self, i: usize) -> &OutputStatus {
        &self.statuses[i]
    }

    /// Whether output `i` is still to be sent (not rejected or marked retryable).
    pub fn is_delivered(&self, i: usize) -> bool {
        self.statuses[i] == OutputStatus::Delivered
    }

    /// `Ok` when every output was delivered.
    pub fn finish(self) -> SendResult {
        if self.statuses.iter().all(|s| *s == OutputStatus::Delivered) {
            Ok(())
        } else {
            Err(SinkError::Outputs(self.statuses))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_status_is_ok_only_when_every_output_was_delivered() {
        assert!(BatchStatus::new(3).finish().is_ok());
        let mut status = BatchStatus::new(3);
        status.reject(1, "too large");
        status.retry(2, "timed out");
        assert!(status.is_delivered(0) && !status.is_delivered(1));
        let err = status.finish().unwrap_err();
        assert_eq!(
            err.to_string(),
            "1 of 3 outputs rejected, 1 to retry, e.g. too large"
        );
        let SinkError::Outputs(statuses) = err else {
            panic!("per-output statuses expected")
        };
        assert_eq!(statuses[0], OutputStatus::Delivered);
    }
}
