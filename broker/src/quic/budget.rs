//! Byte budgets for frames being received.
//!
//! A stream's bytes wait in a buffer until a whole frame has arrived. What
//! a peer can make the broker hold that way is bounded twice: per
//! connection and broker-wide. A stream takes budget *before* it reads from
//! QUIC, so bytes are never pulled out of quinn (which returns flow-control
//! credit to the peer as soon as they are read) without budget to hold
//! them: a peer that outruns the budget is held back by QUIC flow control,
//! and quinn's own buffering stays within the connection receive window.
//!
//! Two ways to take budget:
//! - [`Budgets::try_take_up_to`] never waits: read-ahead at a frame boundary
//!   takes what is free (possibly nothing; the header is then read alone);
//! - [`Budgets::take`] takes a whole frame once its header has arrived. A
//!   frame the *connection's* budget cannot hold is refused at once (the
//!   peer has more frames in flight on this connection than it may): a
//!   stream waiting on its own connection's budget would leave its unread
//!   bytes in quinn, where they count against the connection's flow-control
//!   window, and could starve the very frames it waits for. A frame the
//!   *broker-wide* budget cannot hold waits for other connections to
//!   finish theirs (bounded by the frame timeout). Reserving whole frames
//!   means a holder only needs bytes from the network to finish.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::core::metrics::Metrics;

/// One pool of bytes: `used` never exceeds `limit`.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
    released: Notify,
    /// Takers waiting for a release: a release notifies only then (tokio's
    /// `notify_waiters` takes a lock, and most pools are never waited on).
    waiting: AtomicUsize,
}

impl ByteBudget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(ByteBudget {
            used: AtomicUsize::new(0),
            limit,
            released: Notify::new(),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Takes as much of `want` as is free (maybe 0).
    fn try_take_up_to(&self, want: usize) -> usize {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            let take = want.min(self.limit.saturating_sub(used));
            if take == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(
                used,
                used + take,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return take,
                Err(now) => used = now,
            }
        }
    }

    /// Takes exactly `n` if free.
    fn try_take(&self, n: usize) -> bool {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            if used + n > self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + n,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    fn release(&self, n: usize) {
        if n > 0 {
            let before = self.used.fetch_sub(n, Ordering::SeqCst);
            debug_assert!(before >= n, "budget released more than was taken");
            // SeqCst pairs with the taker's: it counts itself waiting, then
            // re-checks `used`; one of the two sees the other.
            if self.waiting.load(Ordering::SeqCst) > 0 {
                self.released.notify_waiters();
            }
        }
    }
}

/// Counts a taker as waiting while it lives (also when its future is
/// dropped by a timeout).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A frame larger than what is free of its connection's budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "receive budget exhausted: a {needed}-byte frame with {used} bytes of frames in flight on \
     this connection exceeds its budget of {limit}"
)]
pub(crate) struct ConnectionFull {
    needed: usize,
    used: usize,
    limit: usize,
}

/// A connection's budget and the broker-wide one, taken together.
#[derive(Debug, Clone)]
pub(crate) struct Budgets {
    pub(crate) connection: Arc<ByteBudget>,
    pub(crate) broker: Arc<ByteBudget>,
    /// `receive_buffered_bytes` (gauge) and `receive_budget_waits`.
    pub(crate) metrics: Arc<Metrics>,
}

impl Budgets {
    /// Takes as much of `want` as both pools have free, without waiting.
    pub(crate) fn try_take_up_to(&self, want: usize) -> usize {
        let conn = self.connection.try_take_up_to(want);
        let both = self.broker.try_take_up_to(conn);
        self.connection.release(conn - both);
        self.metrics
            .receive_buffered_bytes
            .fetch_add(both as u64, Ordering::Relaxed);
        both
    }

    /// Takes `n` bytes from both pools: refused at once if the
    /// connection's pool cannot hold them, waiting for the broker's pool.
    pub(crate) async fn take(&self, n: usize) -> Result<(), ConnectionFull> {
        let mut waited = false;
        loop {
            if !self.connection.try_take(n) {
                return Err(ConnectionFull {
                    needed: n,
                    used: self.connection.used.load(Ordering::Acquire),
                    limit: self.connection.limit,
                });
            }
            let released = self.broker.released.notified();
            tokio::pin!(released);
            // Registered and counted before the check, so a release in
            // between is seen.
            released.as_mut().enable();
            let _waiting = Waiting::new(&self.broker.waiting);
            if self.broker.try_take(n) {
                self.metrics
                    .receive_buffered_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
                return Ok(());
            }
            // Hold none of the connection's budget while waiting.
            self.connection.release(n);
            if !waited {
                waited = true;
                self.metrics
                    .receive_budget_waits
                    .fetch_add(1, Ordering::Relaxed);
            }
            released.await;
        }
    }

    /// Gives `n` bytes back to both pools.
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.connection.release(n);
        self.broker.release(n);
        self.metrics
            .receive_buffered_bytes
            .fetch_sub(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budgets(conn: usize, broker: usize) -> Budgets {
        Budgets {
            connection: ByteBudget::new(conn),
            broker: ByteBudget::new(broker),
            metrics: Arc::default(),
        }
    }

    #[test]
    fn read_ahead_takes_what_both_pools_have() {
        let b = budgets(100, 60);
        assert_eq!(b.try_take_up_to(80), 60);
        assert_eq!(b.try_take_up_to(80), 0);
        assert_eq!((b.connection.used(), b.broker.used()), (60, 60));
        b.release(60);
        assert_eq!((b.connection.used(), b.broker.used()), (0, 0));
    }

    #[test]
    fn a_connection_cannot_take_the_others_share() {
        let broker = ByteBudget::new(100);
        let a = Budgets {
            connection: ByteBudget::new(70),
            broker: broker.clone(),
            metrics: Arc::default(),
        };
        let b = Budgets {
            connection: ByteBudget::new(70),
            broker,
            metrics: Arc::default(),
        };
        assert_eq!(a.try_take_up_to(1000), 70);
        assert_eq!(b.try_take_up_to(1000), 30);
        assert_eq!(a.connection.used(), 70, "nothing leaked between pools");
    }

    #[tokio::test]
    async fn a_frame_over_the_connection_budget_is_refused_at_once() {
        let b = budgets(100, 1000);
        b.take(90).await.expect("fits");
        let err = b.take(50).await.expect_err("connection full");
        assert_eq!(
            err.to_string(),
            "receive budget exhausted: a 50-byte frame with 90 bytes of frames in flight on \
             this connection exceeds its budget of 100"
        );
        assert_eq!((b.connection.used(), b.broker.used()), (90, 90));
    }

    #[tokio::test]
    async fn take_waits_for_the_broker_budget() {
        let broker = ByteBudget::new(100);
        let other = Budgets {
            connection: ByteBudget::new(100),
            broker: broker.clone(),
            metrics: Arc::default(),
        };
        let b = Budgets {
            connection: ByteBudget::new(100),
            broker,
            metrics: Arc::default(),
        };
        other.take(90).await.expect("fits");
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.take(50).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "only 10 bytes are free broker-wide");
        assert_eq!(b.connection.used(), 0, "nothing held while waiting");
        other.release(90);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the release")
            .expect("task")
            .expect("taken");
        assert_eq!(b.broker.used(), 50);
        assert_eq!(b.metrics.receive_budget_waits.load(Ordering::Relaxed), 1);
        assert_eq!(b.metrics.receive_buffered_bytes.load(Ordering::Relaxed), 50);
    }
}
