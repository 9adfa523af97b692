//! Consumers are closed on a thread of their own.
//!
//! Dropping a librdkafka consumer closes it: it commits its stored offsets and hands its
//! partitions back through the group coordinator, and rust-rdkafka polls until that is done,
//! with no deadline. That usually takes milliseconds; after a frozen broker fenced itself it
//! took over 13 s, and with the broker gone it may never end (librdkafka issue 4519). The
//! thread that drops a consumer is often a tokio worker, the only one of a service by default
//! (its HTTP API, and the replacement consumer, would wait), or a test's runtime, whose
//! shutdown would wait for a `spawn_blocking` close. So a [`Closing`] consumer is closed on a
//! detached thread, and a service that stops waits for those closes only for a bounded time
//! ([`wait_for_closes`]): a graceful stop still commits its offsets, and a close that never
//! ends costs that deadline, not the stop.

use std::ops::Deref;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Consumers being closed right now, and a signal for each close that ends.
static CLOSING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A consumer (or anything whose drop may block) that is dropped on a thread of its own.
pub struct Closing<C: Send + 'static>(Option<C>);

impl<C: Send + 'static> Closing<C> {
    pub fn new(consumer: C) -> Self {
        Self(Some(consumer))
    }
}

impl<C: Send + 'static> Deref for Closing<C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<C: Send + 'static> Drop for Closing<C> {
    fn drop(&mut self) {
        let Some(consumer) = self.0.take() else {
            return;
        };
        let (count, ended) = &CLOSING;
        *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let close = move || {
            drop(consumer);
            *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            ended.notify_all();
        };
        if let Err(e) = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(close)
        {
            // No thread to be had (the process is at its limit): the consumer it moved into
            // the closure is dropped with the error, here. Rare, and still correct.
            tracing::warn!(error = %e, "no thread to close a consumer on");
            *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        }
    }
}

/// Waits until every consumer dropped so far is closed, or `patience` has passed; true if all
/// are. Blocking: call it from a blocking thread or outside any runtime.
pub fn wait_for_closes(patience: Duration) -> bool {
    let (count, ended) = &CLOSING;
    let guard = count.lock().unwrap_or_else(|e| e.into_inner());
    let (guard, _) = ended
        .wait_timeout_while(guard, patience, |open| *open > 0)
        .unwrap_or_else(|e| e.into_inner());
    *guard == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Stands for a consumer whose close blocks until it is released.
    struct SlowClose(mpsc::Receiver<()>);

    impl Drop for SlowClose {
        fn drop(&mut self) {
            let _ = self.0.recv_timeout(Duration::from_secs(30));
        }
    }

    // One test only: the count of closes in flight is shared by the whole process.
    #[test]
    fn a_slow_close_never_blocks_the_dropping_thread_and_its_end_is_awaited() {
        let (release, held) = mpsc::channel();
        let started = std::time::Instant::now();
        drop(Closing::new(SlowClose(held)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the drop waited"
        );
        assert!(
            !wait_for_closes(Duration::from_millis(50)),
            "a close in flight"
        );
        release.send(()).expect("the close still waits");
        assert!(wait_for_closes(Duration::from_secs(30)), "the close ended");
    }
}
