//! A subscriber's bounded queue of encoded event batches.
//!
//! The fanout path pushes the same `Bytes` (one encoding per batch) into
//! every subscriber's queue; its connection's event writer pops and writes.
//! A full queue applies its policy: `drop_new` refuses the batch,
//! `drop_old` evicts the oldest, `block` accepts it and tells the publisher
//! to wait. Every dropped event is counted, per subscriber.
//!
//! `block` is lossless for a subscriber that keeps up on average, but a
//! subscriber that stops reading would hold its publishers for ever. So a
//! publisher waits at most the broker's `queue_block_timeout`; then the
//! queue is marked *lagging* ([`SubscriberQueue::mark_lagging`]) and
//! behaves as `drop_new` (counted) until its reader has emptied it, when it
//! blocks again. A stalled subscriber costs its stream's publishers one
//! timeout, not their throughput.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use super::metrics::Metrics;
use super::settings::QueuePolicy;

/// Told when a queue changes in a way its waiter cares about: a batch
/// arrived or it closed (the reader's waker), or room freed up or it
/// closed (a blocked publisher's). Called with no lock held, from
/// whichever task pushed, popped or closed. This trait is the only way
/// the core wakes anyone: it knows no runtime.
pub trait QueueWaker: Send + Sync + std::fmt::Debug {
    /// The queue has what the waiter was waiting for.
    fn wake(&self);
}

/// One queued batch: its encoded frame and how many events it carries.
#[derive(Debug, Clone)]
pub struct QueuedBatch {
    /// The encoded frame, shared with every other subscriber.
    pub frame: Bytes,
    /// Events in the batch (for drop accounting).
    pub events: u64,
    /// The batch's share of the broker-wide queue budget, given back when
    /// the last queue holding it lets go (`None`: not budgeted).
    pub charge: Option<Arc<QueueCharge>>,
}

/// Bytes of one fanned-out batch counted in `felix_queued_bytes` while
/// any subscriber queue (or writer) holds the batch: shared by all the
/// queues it was pushed to, so a batch counts once, however many hold it.
#[derive(Debug)]
pub struct QueueCharge {
    bytes: u64,
    metrics: Arc<Metrics>,
}

impl QueueCharge {
    /// Counts `bytes` until the returned charge is dropped.
    pub fn new(bytes: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        let bytes = bytes as u64;
        metrics.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        Arc::new(QueueCharge { bytes, metrics })
    }
}

impl Drop for QueueCharge {
    fn drop(&mut self) {
        self.metrics
            .queued_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// What happened to a pushed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued.
    Queued,
    /// Queued after evicting the oldest batch (`drop_old`).
    QueuedDroppedOld,
    /// Refused (`drop_new`, or the subscriber is gone).
    Dropped,
    /// Queued over capacity; the publisher should wait (`block`).
    QueuedMustWait,
}

/// Counters of one subscriber, readable while it runs.
#[derive(Debug, Default)]
pub struct SubscriberStats {
    /// Events handed to the writer.
    pub delivered_events: AtomicU64,
    /// Events dropped by the queue policy.
    pub dropped_events: AtomicU64,
}

/// The batches, and the publishers waiting for room (one lock for both,
/// so a publisher never misses the pop that made room).
#[derive(Debug)]
struct Inner {
    batches: VecDeque<QueuedBatch>,
    /// A waiting `block` publisher may go on once fewer batches than this
    /// are queued: the capacity, or fewer while the broker-wide queue
    /// budget is spent (see [`SubscriberQueue::push_within`]).
    room_at: usize,
    writable: Vec<Arc<dyn QueueWaker>>,
    on_close: Vec<Arc<dyn QueueWaker>>,
}

/// A subscriber's queue.
#[derive(Debug)]
pub struct SubscriberQueue {
    inner: Mutex<Inner>,
    capacity: usize,
    policy: QueuePolicy,
    closed: AtomicBool,
    /// A `block` queue whose publisher waited too long: it drops new
    /// batches like `drop_new` until its reader has emptied it.
    lagging: AtomicBool,
    /// Told when a batch arrives or the queue closes: the connection's
    /// event writer, which serves every subscription of one connection
    /// (see [`SubscriberQueue::wake_when_readable`]).
    reader: OnceLock<Arc<dyn QueueWaker>>,
    /// Per-subscriber counters.
    pub stats: SubscriberStats,
}

impl SubscriberQueue {
    /// A queue of `capacity` batches with `policy`.
    pub fn new(capacity: usize, policy: QueuePolicy) -> Arc<Self> {
        Arc::new(SubscriberQueue {
            // Start small and grow on demand: most writers keep up and hold
            // a batch or two, and a broadcast stream can have tens of
            // thousands of subscribers (64 slots each cost ~60 MiB at 25k).
            inner: Mutex::new(Inner {
                batches: VecDeque::with_capacity(capacity.min(4)),
                room_at: capacity.max(1),
                writable: Vec::new(),
                on_close: Vec::new(),
            }),
            capacity: capacity.max(1),
            policy,
            closed: AtomicBool::new(false),
            lagging: AtomicBool::new(false),
            reader: OnceLock::new(),
            stats: SubscriberStats::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the deque invalid.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushes a batch, applying the policy when full.
    pub fn push(&self, batch: QueuedBatch) -> PushOutcome {
        self.push_within(batch, self.capacity)
    }

    /// Pushes a batch; a `block` queue holding `room` batches or more
    /// (at most its capacity) asks the publisher to wait until it holds
    /// fewer. The fanout passes a small `room` once the broker-wide queue
    /// budget is spent, so a blocking subscriber then holds a publisher
    /// back instead of growing to its capacity. `drop_new` and `drop_old`
    /// apply their policy at the capacity.
    pub fn push_within(&self, batch: QueuedBatch, room: usize) -> PushOutcome {
        if self.closed.load(Ordering::Acquire) {
            return PushOutcome::Dropped;
        }
        let outcome = {
            let mut inner = self.lock();
            let len = inner.batches.len();
            let blocking = self.blocks();
            let limit = if blocking {
                room.clamp(1, self.capacity)
            } else {
                self.capacity
            };
            if len < limit {
                inner.batches.push_back(batch);
                PushOutcome::Queued
            } else if blocking {
                inner.batches.push_back(batch);
                inner.room_at = inner.room_at.min(limit);
                PushOutcome::QueuedMustWait
            } else if self.policy == QueuePolicy::DropOld {
                if let Some(old) = inner.batches.pop_front() {
                    self.stats
                        .dropped_events
                        .fetch_add(old.events, Ordering::Relaxed);
                }
                inner.batches.push_back(batch);
                PushOutcome::QueuedDroppedOld
            } else {
                // `drop_new`, or a lagging `block` queue.
                self.stats
                    .dropped_events
                    .fetch_add(batch.events, Ordering::Relaxed);
                PushOutcome::Dropped
            }
        };
        if outcome != PushOutcome::Dropped {
            self.wake_readers();
        }
        outcome
    }

    /// Gives up waiting for this `block` queue: a publisher waited the
    /// broker's `queue_block_timeout` for room. From now on it drops new
    /// batches when full (counted) until its reader empties it. Wakes
    /// every waiting publisher. Returns `false` if it was lagging already.
    pub fn mark_lagging(&self) -> bool {
        let inner = self.lock();
        let newly = !self.lagging.swap(true, Ordering::AcqRel);
        self.wake_writers(inner);
        newly
    }

    /// Whether the queue is lagging (see [`SubscriberQueue::mark_lagging`]).
    pub fn is_lagging(&self) -> bool {
        self.lagging.load(Ordering::Acquire)
    }

    /// Tells `waker` whenever a batch arrives or the queue closes (set
    /// once; later calls are ignored). One writer serving many queues
    /// learns which of them to serve instead of scanning them all.
    pub fn wake_when_readable(&self, waker: Arc<dyn QueueWaker>) {
        let _ = self.reader.set(waker);
    }

    fn wake_readers(&self) {
        if let Some(reader) = self.reader.get() {
            reader.wake();
        }
    }

    /// After a pop: a publisher may go on once fewer than `room_at` are
    /// queued, and a lagging queue its reader emptied blocks again.
    fn after_pop(&self, inner: MutexGuard<'_, Inner>) {
        let mut inner = inner;
        if inner.batches.len() < inner.room_at {
            inner.room_at = self.capacity;
        }
        // Written only when it changes: the fanout reads this flag on
        // every push, and a store on every pop would bounce its line.
        if inner.batches.is_empty() && self.lagging.load(Ordering::Acquire) {
            self.lagging.store(false, Ordering::Release);
        }
        self.wake_writers(inner);
    }

    /// Wakes (once) every publisher waiting for room.
    fn wake_writers(&self, mut inner: MutexGuard<'_, Inner>) {
        let writers = std::mem::take(&mut inner.writable);
        drop(inner);
        for w in writers {
            w.wake();
        }
    }

    /// Whether a full queue makes publishers wait (policy `block`, and not
    /// lagging).
    pub fn blocks(&self) -> bool {
        self.policy == QueuePolicy::Block && !self.is_lagging()
    }

    /// Counts a batch dropped before it reached the queue (the broker-wide
    /// queue budget was spent and this subscriber was behind).
    pub fn count_dropped(&self, events: u64) {
        self.stats
            .dropped_events
            .fetch_add(events, Ordering::Relaxed);
    }

    /// True while a `block` publisher must wait for this queue.
    pub fn is_over_capacity(&self) -> bool {
        if self.closed.load(Ordering::Acquire) || self.is_lagging() {
            return false;
        }
        let inner = self.lock();
        inner.batches.len() >= inner.room_at
    }

    /// Tells `waker` once when the queue closes (for tasks tied to the
    /// subscription's life, such as its credential's expiry).
    pub fn wake_when_closed(&self, waker: Arc<dyn QueueWaker>) {
        let mut inner = self.lock();
        if self.closed.load(Ordering::Acquire) {
            drop(inner);
            waker.wake();
            return;
        }
        inner.on_close.push(waker);
    }

    /// For a `block` publisher: `false` if the queue has room (or is
    /// closed) now; otherwise `waker` is told once when it has, and `true`.
    /// Checked and registered under one lock, so no wake-up is lost.
    pub fn wake_when_writable(&self, waker: Arc<dyn QueueWaker>) -> bool {
        let mut inner = self.lock();
        if self.closed.load(Ordering::Acquire)
            || self.is_lagging()
            || inner.batches.len() < inner.room_at
        {
            return false;
        }
        inner.writable.push(waker);
        true
    }

    /// Takes the next batch without waiting.
    pub fn try_pop(&self) -> Option<QueuedBatch> {
        let mut inner = self.lock();
        let batch = inner.batches.pop_front();
        if let Some(b) = &batch {
            self.stats
                .delivered_events
                .fetch_add(b.events, Ordering::Relaxed);
            self.after_pop(inner);
        }
        batch
    }

    /// Takes up to `max` batches without waiting (one lock for all).
    pub fn drain_into(&self, out: &mut Vec<QueuedBatch>, max: usize) {
        let mut inner = self.lock();
        let n = inner.batches.len().min(max);
        let from = out.len();
        out.extend(inner.batches.drain(..n));
        if n > 0 {
            let events: u64 = out[from..].iter().map(|b| b.events).sum();
            self.stats
                .delivered_events
                .fetch_add(events, Ordering::Relaxed);
            self.after_pop(inner);
        }
    }

    /// Closes the queue: pushes are refused, the writer drains what is left.
    pub fn close(&self) {
        let mut inner = self.lock();
        self.closed.store(true, Ordering::Release);
        let on_close = std::mem::take(&mut inner.on_close);
        drop(inner);
        self.wake_readers();
        self.wake_writers(self.lock());
        for w in on_close {
            w.wake();
        }
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Events in the batches queued now.
    pub fn queued_events(&self) -> u64 {
        self.lock().batches.iter().map(|b| b.events).sum()
    }

    /// Batches queued now.
    pub fn len(&self) -> usize {
        self.lock().batches.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(events: u64) -> QueuedBatch {
        QueuedBatch {
            frame: Bytes::from_static(b"x"),
            events,
            charge: None,
        }
    }

    #[test]
    fn drop_new_refuses_and_counts() {
        let q = SubscriberQueue::new(2, QueuePolicy::DropNew);
        assert_eq!(q.push(batch(3)), PushOutcome::Queued);
        assert_eq!(q.push(batch(4)), PushOutcome::Queued);
        assert_eq!(q.push(batch(5)), PushOutcome::Dropped);
        assert_eq!(q.stats.dropped_events.load(Ordering::Relaxed), 5);
        assert_eq!(q.try_pop().map(|b| b.events), Some(3));
    }

    #[test]
    fn drop_old_evicts_the_oldest_and_counts_it() {
        let q = SubscriberQueue::new(2, QueuePolicy::DropOld);
        q.push(batch(3));
        q.push(batch(4));
        assert_eq!(q.push(batch(5)), PushOutcome::QueuedDroppedOld);
        assert_eq!(q.stats.dropped_events.load(Ordering::Relaxed), 3);
        assert_eq!(q.try_pop().map(|b| b.events), Some(4));
        assert_eq!(q.try_pop().map(|b| b.events), Some(5));
        assert_eq!(q.stats.delivered_events.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn block_accepts_but_asks_the_publisher_to_wait() {
        let q = SubscriberQueue::new(1, QueuePolicy::Block);
        assert_eq!(q.push(batch(1)), PushOutcome::Queued);
        assert_eq!(q.push(batch(1)), PushOutcome::QueuedMustWait);
        assert!(q.is_over_capacity());
        q.try_pop();
        q.try_pop();
        assert!(!q.is_over_capacity());
        assert_eq!(q.stats.dropped_events.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_lagging_block_queue_drops_like_drop_new_until_its_reader_empties_it() {
        let q = SubscriberQueue::new(2, QueuePolicy::Block);
        q.push(batch(1));
        q.push(batch(1));
        assert_eq!(q.push(batch(1)), PushOutcome::QueuedMustWait);
        assert!(q.mark_lagging());
        assert!(!q.mark_lagging(), "counted once");
        assert!(!q.blocks());
        assert!(!q.is_over_capacity(), "nobody waits for a lagging queue");
        assert!(!q.wake_when_writable(Arc::new(Counter::default())));
        assert_eq!(q.push(batch(7)), PushOutcome::Dropped);
        assert_eq!(q.stats.dropped_events.load(Ordering::Relaxed), 7);
        q.try_pop();
        q.try_pop();
        assert!(q.is_lagging(), "still one queued");
        q.try_pop();
        assert!(!q.is_lagging(), "emptied: blocks again");
        assert!(q.blocks());
    }

    #[test]
    fn past_the_budget_a_block_queue_makes_publishers_wait_at_the_smaller_room() {
        let q = SubscriberQueue::new(512, QueuePolicy::Block);
        assert_eq!(q.push_within(batch(1), 2), PushOutcome::Queued);
        assert_eq!(q.push_within(batch(1), 2), PushOutcome::Queued);
        assert_eq!(q.push_within(batch(1), 2), PushOutcome::QueuedMustWait);
        let waker = Arc::new(Counter::default());
        assert!(q.wake_when_writable(waker.clone()), "3 queued, room at 2");
        q.try_pop();
        assert_eq!(waker.0.load(Ordering::Relaxed), 1, "woken by the pop");
        q.try_pop();
        assert!(!q.wake_when_writable(waker), "1 queued: room again");
        assert!(!q.is_over_capacity());
        assert_eq!(
            q.push(batch(1)),
            PushOutcome::Queued,
            "back to the capacity"
        );
    }

    #[derive(Debug, Default)]
    struct Counter(AtomicU64);

    impl QueueWaker for Counter {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn closed_queue_refuses_pushes() {
        let q = SubscriberQueue::new(4, QueuePolicy::DropOld);
        q.close();
        assert_eq!(q.push(batch(1)), PushOutcome::Dropped);
    }
}
