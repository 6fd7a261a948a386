//! Run a batch of lapin calls together, polled in order.
//!
//! A lapin publish (or ack) queues its frames on its first poll and then waits for lapin's I/O
//! thread to write them: awaited one after another, every message costs a hand-off to that
//! thread and back. Polled together, the whole batch is queued at once and written in one go.
//! Polling always in index order keeps the batch's order on the wire (a publish also takes its
//! confirm number on its first poll).

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;

/// Await every future, polling each first in the order given; outputs come back in that order.
///
/// After its first poll a future is polled again only when it wakes: a lapin promise arms a
/// listener (a lock shared with the I/O thread) on every poll, so re-polling the whole batch at
/// each wake-up would cost a batch's worth of locking per message confirmed.
pub async fn in_order<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    // Made before the first await, so the caller's iterator (and its closures) is not held
    // across it.
    let futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let waiting = FuturesUnordered::new();
    for (index, mut future) in futures.into_iter().enumerate() {
        match futures::poll!(future.as_mut()) {
            Poll::Ready(output) => outputs[index] = Some(output),
            Poll::Pending => waiting.push(async move { (index, future.await) }),
        }
    }
    let mut waiting = pin!(waiting);
    while let Some((index, output)) = waiting.next().await {
        outputs[index] = Some(output);
    }
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn first_polls_follow_the_order_given_and_outputs_keep_it() {
        let log = Mutex::new(Vec::new());
        let futures = (0..100).map(|i| {
            let log = &log;
            async move {
                log.lock().unwrap().push(i);
                // Finish in reverse order.
                tokio::time::sleep(std::time::Duration::from_micros(100 - i)).await;
                i
            }
        });
        let outputs = in_order(futures).await;
        assert_eq!(outputs, (0..100).collect::<Vec<_>>());
        assert_eq!(*log.lock().unwrap(), (0..100).collect::<Vec<_>>());
    }
}
