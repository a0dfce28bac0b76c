//! [`Pending`]: what still needs a subscriber's connection after
//! [`close`](mq_core::Subscriber::close), counted by [`InFlight`] counters: deliveries handed out
//! and not yet settled or dropped, and our own background work (consumer cancellations handing
//! back prefetched messages, requeues of dropped deliveries). The connection is closed once both
//! are done, so a graceful stop closes it politely instead of leaving it to the runtime's
//! shutdown (which lapin reports as an IO error).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// What a subscriber's connection is still needed for; clones share the counts.
#[derive(Clone, Default)]
pub(crate) struct Pending {
    /// Deliveries handed out and not yet settled or dropped: the user's to finish, whenever.
    pub(crate) deliveries: InFlight,
    /// Background work of our own, each bounded by a timeout: worth waiting for in `close`.
    pub(crate) cleanups: InFlight,
}

/// A counter; clones share it.
#[derive(Clone, Default)]
pub(crate) struct InFlight {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    count: AtomicUsize,
    idle: Notify,
}

/// One unit of work that needs the connection; dropping it ends that.
pub(crate) struct InFlightGuard {
    inner: Arc<Inner>,
}

impl InFlight {
    /// Counts one more until the guard is dropped.
    pub(crate) fn track(&self) -> InFlightGuard {
        self.inner.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard {
            inner: self.inner.clone(),
        }
    }

    /// `true` while nothing is counted.
    pub(crate) fn is_idle(&self) -> bool {
        self.inner.count.load(Ordering::Acquire) == 0
    }

    /// Resolves once nothing is counted.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a guard dropped in between is not missed.
            notified.as_mut().enable();
            if self.is_idle() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.inner.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn idle_waits_for_the_last_guard() {
        let in_flight = InFlight::default();
        assert!(in_flight.is_idle());
        let (first, second) = (in_flight.track(), in_flight.track());
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.idle().await }
        });
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one guard is still held");
        drop(second);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("idle once the last guard is dropped")
            .unwrap();
    }
}
