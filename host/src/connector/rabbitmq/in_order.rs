//! Run a batch of lapin calls together, polled in order.
//!
//! A lapin publish (or ack) queues its frames on its first poll and then waits for lapin's I/O
//! thread to write them: awaited one after another, every message costs a hand-off to that
//! thread and back. Polled together, the whole batch is queued at once and written in one go.
//! Polling always in index order keeps the batch's order on the wire (a publish also takes its
//! confirm number on its first poll).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use futures::future::{MaybeDone, maybe_done};

/// Await every future, polling them in the order given; outputs come back in that order.
pub async fn in_order<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut slots: Vec<MaybeDone<Pin<Box<F>>>> = futures
        .into_iter()
        .map(|future| maybe_done(Box::pin(future)))
        .collect();
    poll_fn(|cx| {
        let mut done = true;
        for slot in &mut slots {
            done &= Pin::new(slot).poll(cx).is_ready();
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    slots
        .iter_mut()
        .filter_map(|slot| Pin::new(slot).take_output())
        .collect()
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
