//! The acknowledgement plumbing queue brokers share (RabbitMQ, SQS, Azure Queue Storage): each
//! delivery's broker receipt is kept under the delivery's id, and settling sends the receipt to
//! the source's own task, which talks to the broker. Settling is therefore cheap and never blocks
//! the engine (the [`Acker`] contract).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::ack::{AckToken, Acker, Settlement};

/// What the settling task receives.
pub enum SettleJob<R> {
    Settle(R, Settlement),
    /// Answered once every job before it has been handled.
    Flush(oneshot::Sender<()>),
}

/// Receipts of unsettled deliveries, and the channel to the settling task.
pub struct Receipts<R> {
    pending: Mutex<HashMap<u64, R>>,
    next_id: AtomicU64,
    jobs: mpsc::UnboundedSender<SettleJob<R>>,
}

impl<R: Send + 'static> Receipts<R> {
    /// New receipts and the receiving end for the settling task.
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<SettleJob<R>>) {
        let (jobs, rx) = mpsc::unbounded_channel();
        let receipts = Arc::new(Receipts {
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            jobs,
        });
        (receipts, rx)
    }

    /// Keep `receipt` and return the token that settles it.
    pub fn token(self: &Arc<Self>, receipt: R) -> AckToken {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, receipt);
        AckToken::new(self.clone() as Arc<dyn Acker>, id)
    }

    /// Deliveries handed out and not settled yet.
    pub fn unsettled(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Wait until every settlement so far has been handled by the settling task.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.jobs.send(SettleJob::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

impl<R: Send + 'static> Acker for Receipts<R> {
    fn settle(&self, id: u64, how: Settlement) {
        let receipt = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(receipt) = receipt {
            // The task ends only with the source; a closed channel means nothing to settle on.
            let _ = self.jobs.send(SettleJob::Settle(receipt, how));
        }
    }
}
