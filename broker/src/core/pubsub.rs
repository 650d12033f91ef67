//! Streams: offsets, the replay ring, coalescing and fanout.
//!
//! A publish appends its payloads to the stream's replay ring (offsets are
//! assigned there, contiguous from 0) and to the stream's pending batch.
//! The pending batch is flushed when it reaches the event or byte limit, or
//! when the linger time since its first event has passed (the shell calls
//! [`PubSub::flush_due`] at the deadline [`PublishOutcome::flush_at`]
//! names). A flush encodes each batch once per layout in use (shared
//! `0x0004`, and `0x0024` for subscribers that negotiated offsets) and
//! pushes the same `Bytes` to every subscriber queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use felix_wire::{BinaryEventBatch, BinarySharedEventBatch, Frame, StartPosition};

use super::metrics::Metrics;
use super::queue::{PushOutcome, QueuedBatch, SubscriberQueue};
use super::settings::CoreSettings;

/// Identifies a stream: tenant, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// Tenant id.
    pub tenant: String,
    /// Namespace.
    pub namespace: String,
    /// Stream name.
    pub stream: String,
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.namespace, self.stream)
    }
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The stream does not exist (and streams are not auto-created).
    #[error("stream not found: {0}")]
    NotFound(StreamKey),
    /// The broker is draining for shutdown: nothing new is accepted, so
    /// nothing acked can miss the final flush.
    #[error("broker shutting down")]
    ShuttingDown,
    /// Too many publish bytes are waiting to be fanned out.
    #[error("publish rejected: {inflight} bytes in flight exceeds the limit of {limit}")]
    Overloaded {
        /// Bytes waiting now.
        inflight: usize,
        /// The limit.
        limit: usize,
    },
}

/// Why a subscribe was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The stream does not exist.
    #[error("stream not found: {0}")]
    NotFound(StreamKey),
    /// The start offset is below the oldest retained event.
    #[error("offset {requested} is older than the oldest retained offset {available}")]
    TooOld {
        /// Asked for.
        requested: u64,
        /// Oldest retained offset.
        available: u64,
    },
    /// The start offset is past the tail.
    #[error("offset {requested} is past the tail {available}")]
    InFuture {
        /// Asked for.
        requested: u64,
        /// The tail (next offset to be assigned).
        available: u64,
    },
}

/// What a publish did and what the caller must do next.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    /// Offset of the first payload published.
    pub first_offset: u64,
    /// When set, call [`PubSub::flush_due`] for this stream at this time.
    pub flush_at: Option<Instant>,
    /// `block` queues that are over capacity: the publisher waits for them.
    pub wait_for: Vec<Arc<SubscriberQueue>>,
}

/// A live subscription as the shell drives it.
#[derive(Debug)]
pub struct Subscription {
    /// Its id (echoed in `event_stream_hello` and `subscribed`).
    pub id: u64,
    /// The stream.
    pub key: StreamKey,
    /// Live batches arrive here.
    pub queue: Arc<SubscriberQueue>,
    /// History to write first: encoded legacy `0x0002`/`0x0022` frames.
    pub replay: Vec<Bytes>,
    /// Events in `replay`.
    pub replay_events: u64,
}

#[derive(Debug)]
struct Subscriber {
    /// Identifies the subscription (ids are the clients' and may repeat).
    queue: Arc<SubscriberQueue>,
    offsets: bool,
}

#[derive(Debug, Default)]
struct StreamState {
    /// Offset the next event gets.
    next_offset: u64,
    /// The last `replay_capacity` payloads: offsets `next_offset - len ..`.
    ring: VecDeque<Bytes>,
    /// Events appended but not yet fanned out: offsets `next_offset - len ..`.
    pending: Vec<Bytes>,
    pending_bytes: usize,
    /// When the oldest pending event arrived.
    pending_since: Option<Instant>,
    subscribers: Vec<Subscriber>,
}

/// All streams.
#[derive(Debug)]
pub struct PubSub {
    streams: Mutex<HashMap<StreamKey, Arc<Mutex<StreamState>>>>,
    settings: Arc<CoreSettings>,
    metrics: Arc<Metrics>,
    inflight_bytes: AtomicUsize,
    next_subscription_id: AtomicU64,
    draining: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State stays consistent across a panic in another holder: every
    // mutation below completes before the guard drops.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PubSub {
    /// An empty registry.
    pub fn new(settings: Arc<CoreSettings>, metrics: Arc<Metrics>) -> Self {
        PubSub {
            streams: Mutex::new(HashMap::new()),
            settings,
            metrics,
            inflight_bytes: AtomicUsize::new(0),
            next_subscription_id: AtomicU64::new(1),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Declares a stream (it exists from now on).
    pub fn declare(&self, key: StreamKey) {
        lock(&self.streams).entry(key).or_default();
    }

    /// Number of streams.
    pub fn stream_count(&self) -> usize {
        lock(&self.streams).len()
    }

    fn stream(&self, key: &StreamKey) -> Option<Arc<Mutex<StreamState>>> {
        let mut streams = lock(&self.streams);
        if let Some(s) = streams.get(key) {
            return Some(s.clone());
        }
        if self.settings.auto_create {
            let s = Arc::new(Mutex::new(StreamState::default()));
            streams.insert(key.clone(), s.clone());
            return Some(s);
        }
        None
    }

    /// A fresh broker-assigned subscription id.
    pub fn next_subscription_id(&self) -> u64 {
        self.next_subscription_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Appends `payloads` to the stream; fans out at once when the pending
    /// batch is full or lingering is off.
    pub fn publish(
        &self,
        key: &StreamKey,
        payloads: &[Bytes],
        now: Instant,
    ) -> Result<PublishOutcome, PublishError> {
        let bytes: usize = payloads.iter().map(Bytes::len).sum();
        let limit = self.settings.max_inflight_publish_bytes;
        let inflight = self.inflight_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if inflight > limit && inflight != bytes {
            self.inflight_bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.metrics
                .publish_rejected
                .fetch_add(1, Ordering::Relaxed);
            return Err(PublishError::Overloaded { inflight, limit });
        }
        let Some(stream) = self.stream(key) else {
            self.inflight_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(PublishError::NotFound(key.clone()));
        };
        let mut s = lock(&stream);
        // Checked under the stream lock: a drain sets the flag, then takes
        // every stream lock to flush, so an accepted publish is always in
        // that flush.
        if self.draining.load(Ordering::Acquire) {
            drop(s);
            self.inflight_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(PublishError::ShuttingDown);
        }
        let first_offset = s.next_offset;
        let starts_batch = s.pending.is_empty();
        for p in payloads {
            s.ring.push_back(p.clone());
            s.pending.push(p.clone());
        }
        while s.ring.len() > self.settings.replay_capacity {
            s.ring.pop_front();
        }
        s.next_offset += payloads.len() as u64;
        s.pending_bytes += bytes;
        if s.pending_since.is_none() && !s.pending.is_empty() {
            s.pending_since = Some(now);
        }
        self.metrics
            .published_events
            .fetch_add(payloads.len() as u64, Ordering::Relaxed);
        self.metrics
            .published_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let mut out = PublishOutcome {
            first_offset,
            ..Default::default()
        };
        let full = s.pending.len() >= self.settings.batch_max_events
            || s.pending_bytes >= self.settings.batch_max_bytes;
        // Lingering only pays while writers are busy: if every subscriber's
        // queue is empty, nothing would share the batch's write anyway, so
        // deliver now (low latency when idle, batching under load).
        let idle = s.subscribers.iter().all(|sub| sub.queue.is_empty());
        if full || idle || self.settings.batch_linger.is_zero() {
            out.wait_for = self.flush_locked(&mut s);
        } else if starts_batch {
            // One timer per pending batch: only the publish that starts it
            // asks for one.
            out.flush_at = s
                .pending_since
                .map(|since| since + self.settings.batch_linger);
        }
        Ok(out)
    }

    /// Flushes the stream's pending events if their linger time is up (or
    /// always, with `force`). Returns queues a `block` publisher should wait
    /// for, and the next deadline if events are still pending.
    pub fn flush_due(
        &self,
        key: &StreamKey,
        now: Instant,
        force: bool,
    ) -> (Vec<Arc<SubscriberQueue>>, Option<Instant>) {
        let Some(stream) = lock(&self.streams).get(key).cloned() else {
            return (Vec::new(), None);
        };
        let mut s = lock(&stream);
        match s.pending_since {
            None => (Vec::new(), None),
            Some(since) if !force && now < since + self.settings.batch_linger => {
                (Vec::new(), Some(since + self.settings.batch_linger))
            }
            Some(_) => (self.flush_locked(&mut s), None),
        }
    }

    /// Starts a drain: from now on publishes are refused.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Flushes every stream (shutdown).
    pub fn flush_all(&self) {
        let streams: Vec<_> = lock(&self.streams).values().cloned().collect();
        for stream in streams {
            let mut s = lock(&stream);
            self.flush_locked(&mut s);
        }
    }

    /// Encodes the pending events into batches and pushes them to every
    /// subscriber. Each batch is encoded at most twice (with and without
    /// offsets), whatever the number of subscribers.
    fn flush_locked(&self, s: &mut StreamState) -> Vec<Arc<SubscriberQueue>> {
        let pending = std::mem::take(&mut s.pending);
        let pending_bytes = std::mem::take(&mut s.pending_bytes);
        s.pending_since = None;
        self.inflight_bytes
            .fetch_sub(pending_bytes, Ordering::AcqRel);
        let mut wait_for: Vec<Arc<SubscriberQueue>> = Vec::new();
        if pending.is_empty() {
            return wait_for;
        }
        s.subscribers.retain(|sub| !sub.queue.is_closed());
        let mut base = s.next_offset - pending.len() as u64;
        let want_plain = s.subscribers.iter().any(|x| !x.offsets);
        let want_offsets = s.subscribers.iter().any(|x| x.offsets);
        for chunk in chunks(
            &pending,
            self.settings.batch_max_events,
            self.settings.batch_max_bytes,
        ) {
            let events = chunk.len() as u64;
            let encode = |base_offset: Option<u64>| {
                Frame::from(BinarySharedEventBatch {
                    base_offset,
                    payloads: chunk.to_vec(),
                })
                .to_bytes()
                .unwrap_or_default() // payloads came off the wire, so they fit it
            };
            let plain = want_plain.then(|| encode(None));
            let with_offsets = want_offsets.then(|| encode(Some(base)));
            for sub in &s.subscribers {
                let frame = if sub.offsets {
                    with_offsets.clone()
                } else {
                    plain.clone()
                };
                let Some(frame) = frame else { continue };
                match sub.queue.push(QueuedBatch { frame, events }) {
                    PushOutcome::Queued => {}
                    PushOutcome::QueuedDroppedOld | PushOutcome::Dropped => {
                        self.metrics
                            .dropped_events
                            .fetch_add(events, Ordering::Relaxed);
                    }
                    PushOutcome::QueuedMustWait => {
                        if !wait_for.iter().any(|q| Arc::ptr_eq(q, &sub.queue)) {
                            wait_for.push(sub.queue.clone());
                        }
                    }
                }
            }
            self.metrics.fanout_batches.fetch_add(1, Ordering::Relaxed);
            base += events;
        }
        wait_for
    }

    /// Registers a subscriber. Pending events are flushed first, so a
    /// `latest` subscriber sees exactly the events published after this
    /// call, and a replaying one sees history then live with no gap and no
    /// duplicate.
    pub fn subscribe(
        &self,
        key: &StreamKey,
        id: u64,
        start: StartPosition,
        offsets: bool,
    ) -> Result<Subscription, SubscribeError> {
        let stream = self
            .stream(key)
            .ok_or_else(|| SubscribeError::NotFound(key.clone()))?;
        let mut s = lock(&stream);
        let waits = self.flush_locked(&mut s);
        drop(waits); // the subscriber never makes a publisher wait here
        let tail = s.next_offset;
        let oldest = tail - s.ring.len() as u64;
        let from = match start {
            StartPosition::Latest => tail,
            StartPosition::Earliest => oldest,
            StartPosition::Offset(n) if n > tail => {
                return Err(SubscribeError::InFuture {
                    requested: n,
                    available: tail,
                })
            }
            StartPosition::Offset(n) if n < oldest => {
                return Err(SubscribeError::TooOld {
                    requested: n,
                    available: oldest,
                })
            }
            StartPosition::Offset(n) => n,
        };
        let history: Vec<Bytes> = s
            .ring
            .iter()
            .skip((from - oldest) as usize)
            .cloned()
            .collect();
        let mut replay = Vec::new();
        let mut base = from;
        for chunk in chunks(
            &history,
            self.settings.batch_max_events,
            self.settings.batch_max_bytes,
        ) {
            let frame = Frame::from(BinaryEventBatch {
                subscription_id: id,
                base_offset: offsets.then_some(base),
                payloads: chunk.to_vec(),
            });
            replay.push(frame.to_bytes().unwrap_or_default());
            base += chunk.len() as u64;
        }
        let queue = SubscriberQueue::new(self.settings.queue_capacity, self.settings.queue_policy);
        s.subscribers.push(Subscriber {
            queue: queue.clone(),
            offsets,
        });
        self.metrics.subscribers.fetch_add(1, Ordering::Relaxed);
        Ok(Subscription {
            id,
            key: key.clone(),
            queue,
            replay,
            replay_events: history.len() as u64,
        })
    }

    /// Closes every subscriber queue (drain): writers send what is queued,
    /// then end their streams.
    pub fn close_all(&self) {
        let streams: Vec<_> = lock(&self.streams).values().cloned().collect();
        for stream in streams {
            for sub in &lock(&stream).subscribers {
                sub.queue.close();
            }
        }
    }

    /// Removes a subscription and closes its queue.
    ///
    /// Found by its queue, not its id: ids are chosen by clients, and two
    /// clients on one stream may well use the same one.
    pub fn unsubscribe(&self, sub: &Subscription) {
        let Some(stream) = lock(&self.streams).get(&sub.key).cloned() else {
            return;
        };
        let mut s = lock(&stream);
        if let Some(i) = s
            .subscribers
            .iter()
            .position(|x| Arc::ptr_eq(&x.queue, &sub.queue))
        {
            let sub = s.subscribers.swap_remove(i);
            sub.queue.close();
            self.metrics.subscribers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Per live subscriber of a stream: (events handed to its writer, events
    /// dropped by its queue policy, events still queued). For an event
    /// published while the subscriber existed, exactly one of the three
    /// counts it.
    pub fn subscriber_stats(&self, key: &StreamKey) -> Vec<(u64, u64, u64)> {
        let Some(stream) = lock(&self.streams).get(key).cloned() else {
            return Vec::new();
        };
        let s = lock(&stream);
        s.subscribers
            .iter()
            .map(|sub| {
                let st = &sub.queue.stats;
                (
                    st.delivered_events.load(Ordering::Relaxed),
                    st.dropped_events.load(Ordering::Relaxed),
                    sub.queue.queued_events(),
                )
            })
            .collect()
    }

    /// Every stream's replay ring: (stream, oldest retained offset, payloads).
    /// Pending events are flushed first, so the snapshot is complete.
    pub fn snapshot(&self) -> Vec<(StreamKey, u64, Vec<Bytes>)> {
        let streams: Vec<(StreamKey, Arc<Mutex<StreamState>>)> = lock(&self.streams)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = Vec::new();
        for (key, stream) in streams {
            let mut s = lock(&stream);
            drop(self.flush_locked(&mut s));
            let oldest = s.next_offset - s.ring.len() as u64;
            out.push((key, oldest, s.ring.iter().cloned().collect()));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Restores a stream's ring from a snapshot: offsets continue where
    /// they were (the newest `replay_capacity` events are kept). Returns
    /// false, restoring nothing, for a stream that neither exists nor may
    /// be auto-created: a snapshot never declares a stream.
    pub fn restore(&self, key: StreamKey, oldest: u64, payloads: Vec<Bytes>) -> bool {
        let Some(stream) = self.stream(&key) else {
            return false;
        };
        let mut s = lock(&stream);
        let skip = payloads.len().saturating_sub(self.settings.replay_capacity);
        s.next_offset = oldest + payloads.len() as u64;
        s.ring = payloads.into_iter().skip(skip).collect();
        true
    }

    /// (tail, oldest retained) of a stream, if it exists.
    pub fn offsets(&self, key: &StreamKey) -> Option<(u64, u64)> {
        let stream = lock(&self.streams).get(key).cloned()?;
        let s = lock(&stream);
        Some((s.next_offset, s.next_offset - s.ring.len() as u64))
    }
}

/// Splits `items` into runs of at most `max_events` items and about
/// `max_bytes` bytes (a single larger item gets a batch of its own).
fn chunks(items: &[Bytes], max_events: usize, max_bytes: usize) -> Vec<&[Bytes]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, item) in items.iter().enumerate() {
        let count = i - start;
        if count > 0 && (count >= max_events.max(1) || bytes + item.len() > max_bytes) {
            out.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += item.len();
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::settings::QueuePolicy;

    fn key() -> StreamKey {
        StreamKey {
            tenant: "t1".into(),
            namespace: "default".into(),
            stream: "orders".into(),
        }
    }

    fn pubsub(f: impl FnOnce(&mut CoreSettings)) -> PubSub {
        let mut s = CoreSettings {
            batch_linger: Duration::ZERO,
            ..CoreSettings::default()
        };
        f(&mut s);
        PubSub::new(Arc::new(s), Arc::new(Metrics::default()))
    }

    fn payloads(n: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!("m{i}"))).collect()
    }

    fn decode(frame: &Bytes) -> Frame {
        Frame::decode(frame.clone()).expect("decodes").0
    }

    #[test]
    fn chunks_respect_both_limits() {
        let items = payloads(10);
        let sizes: Vec<usize> = chunks(&items, 4, 1 << 20).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [4, 4, 2]);
        let sizes: Vec<usize> = chunks(&items, 64, 5).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [2, 2, 2, 2, 2]);
        assert!(chunks(&[], 4, 4).is_empty());
    }

    #[test]
    fn unsubscribing_removes_that_subscription_even_when_another_client_uses_the_same_id() {
        // Subscription ids are chosen by each client: two clients on one
        // stream commonly both use 1.
        let ps = pubsub(|_| {});
        let first = ps
            .subscribe(&key(), 1, StartPosition::Latest, false)
            .expect("sub");
        let second = ps
            .subscribe(&key(), 1, StartPosition::Latest, false)
            .expect("sub");
        ps.unsubscribe(&second);
        assert!(second.queue.is_closed());
        assert!(
            !first.queue.is_closed(),
            "the other client's subscription stays"
        );
        ps.publish(&key(), &payloads(1), Instant::now())
            .expect("publish");
        assert!(first.queue.try_pop().is_some(), "and keeps receiving");
    }

    #[test]
    fn fanout_encodes_once_and_shares_the_bytes() {
        let ps = pubsub(|_| {});
        let a = ps
            .subscribe(&key(), 1, StartPosition::Latest, false)
            .expect("sub");
        let b = ps
            .subscribe(&key(), 2, StartPosition::Latest, false)
            .expect("sub");
        ps.publish(&key(), &payloads(3), Instant::now())
            .expect("publish");
        let fa = a.queue.try_pop().expect("a got it").frame;
        let fb = b.queue.try_pop().expect("b got it").frame;
        assert_eq!(fa.as_ptr(), fb.as_ptr(), "one encoding shared by both");
        match decode(&fa) {
            Frame::BinarySharedEventBatch(batch) => {
                assert_eq!(batch.base_offset, None);
                assert_eq!(batch.payloads, payloads(3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn offsets_only_for_subscribers_that_negotiated_them() {
        let ps = pubsub(|_| {});
        ps.publish(&key(), &payloads(2), Instant::now())
            .expect("publish");
        let sub = ps
            .subscribe(&key(), 1, StartPosition::Latest, true)
            .expect("sub");
        ps.publish(&key(), &payloads(1), Instant::now())
            .expect("publish");
        match decode(&sub.queue.try_pop().expect("batch").frame) {
            Frame::BinarySharedEventBatch(b) => assert_eq!(b.base_offset, Some(2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn coalescing_waits_for_linger_or_limits() {
        let ps = pubsub(|s| {
            s.batch_linger = Duration::from_micros(250);
            s.batch_max_events = 3;
        });
        let sub = ps
            .subscribe(&key(), 1, StartPosition::Latest, false)
            .expect("sub");
        let t0 = Instant::now();
        // An idle subscriber gets a single event at once.
        assert!(ps
            .publish(&key(), &payloads(1), t0)
            .expect("publish")
            .flush_at
            .is_none());
        assert_eq!(sub.queue.len(), 1, "delivered without lingering");
        // With its writer busy (a batch still queued), events linger to share a batch.
        let out = ps.publish(&key(), &payloads(1), t0).expect("publish");
        assert_eq!(out.flush_at, Some(t0 + Duration::from_micros(250)));
        let out = ps.publish(&key(), &payloads(1), t0).expect("publish");
        assert_eq!(out.flush_at, None, "the batch already has a timer");
        assert_eq!(sub.queue.len(), 1, "still lingering");
        let (_, next) = ps.flush_due(&key(), t0 + Duration::from_micros(100), false);
        assert_eq!(next, Some(t0 + Duration::from_micros(250)));
        ps.flush_due(&key(), t0 + Duration::from_micros(250), false);
        assert_eq!(sub.queue.try_pop().map(|b| b.events), Some(1));
        assert_eq!(sub.queue.try_pop().map(|b| b.events), Some(2));
        // Reaching the event limit flushes at once.
        ps.publish(&key(), &payloads(3), t0).expect("publish");
        assert_eq!(sub.queue.try_pop().map(|b| b.events), Some(3));
    }

    #[test]
    fn start_positions_and_cursor_errors() {
        let ps = pubsub(|s| s.replay_capacity = 4);
        ps.publish(&key(), &payloads(6), Instant::now())
            .expect("publish"); // offsets 0..6, ring keeps 2..6
        assert_eq!(ps.offsets(&key()), Some((6, 2)));
        let err = ps
            .subscribe(&key(), 1, StartPosition::Offset(1), true)
            .expect_err("too old");
        assert_eq!(
            err,
            SubscribeError::TooOld {
                requested: 1,
                available: 2
            }
        );
        let err = ps
            .subscribe(&key(), 1, StartPosition::Offset(7), true)
            .expect_err("future");
        assert_eq!(
            err,
            SubscribeError::InFuture {
                requested: 7,
                available: 6
            }
        );
        let at_tail = ps
            .subscribe(&key(), 2, StartPosition::Offset(6), true)
            .expect("tail is fine");
        assert!(at_tail.replay.is_empty());
        let earliest = ps
            .subscribe(&key(), 3, StartPosition::Earliest, true)
            .expect("earliest");
        assert_eq!(earliest.replay_events, 4);
        match decode(&earliest.replay[0]) {
            Frame::BinaryEventBatch(b) => {
                assert_eq!(b.subscription_id, 3);
                assert_eq!(b.base_offset, Some(2));
                assert_eq!(b.payloads.len(), 4);
            }
            other => panic!("{other:?}"),
        }
        let from4 = ps
            .subscribe(&key(), 4, StartPosition::Offset(4), false)
            .expect("offset");
        match decode(&from4.replay[0]) {
            Frame::BinaryEventBatch(b) => assert_eq!((b.base_offset, b.payloads.len()), (None, 2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replay_then_live_has_no_gap_or_duplicate() {
        let ps = pubsub(|s| s.batch_linger = Duration::from_secs(1));
        let t0 = Instant::now();
        ps.publish(&key(), &payloads(2), t0).expect("publish"); // pending, not flushed
        let sub = ps
            .subscribe(&key(), 1, StartPosition::Earliest, true)
            .expect("sub");
        assert_eq!(sub.replay_events, 2);
        ps.publish(&key(), &payloads(1), t0).expect("publish");
        ps.flush_due(&key(), t0, true);
        let live = sub.queue.try_pop().expect("live");
        assert_eq!(
            live.events, 1,
            "pending events were flushed before registering, not duplicated"
        );
        assert!(sub.queue.try_pop().is_none());
    }

    #[test]
    fn drops_are_counted_per_subscriber_and_globally() {
        let ps = pubsub(|s| {
            s.queue_capacity = 1;
            s.queue_policy = QueuePolicy::DropNew;
        });
        let slow = ps
            .subscribe(&key(), 1, StartPosition::Latest, false)
            .expect("sub");
        for _ in 0..3 {
            ps.publish(&key(), &payloads(2), Instant::now())
                .expect("publish");
        }
        assert_eq!(slow.queue.stats.dropped_events.load(Ordering::Relaxed), 4);
        assert_eq!(ps.metrics.dropped_events.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn snapshot_and_restore_keep_offsets() {
        let ps = pubsub(|s| s.replay_capacity = 3);
        ps.publish(&key(), &payloads(5), Instant::now())
            .expect("publish");
        let snap = ps.snapshot();
        assert_eq!(snap, vec![(key(), 2, payloads(5)[2..].to_vec())]);
        let restored = pubsub(|s| s.replay_capacity = 3);
        for (k, oldest, p) in snap {
            restored.restore(k, oldest, p);
        }
        assert_eq!(restored.offsets(&key()), Some((5, 2)));
        let sub = restored
            .subscribe(&key(), 1, StartPosition::Offset(3), true)
            .expect("resume");
        assert_eq!(sub.replay_events, 2);
        assert_eq!(
            restored
                .publish(&key(), &payloads(1), Instant::now())
                .expect("publish")
                .first_offset,
            5
        );
    }

    #[test]
    fn a_drain_refuses_new_publishes_and_flushes_accepted_ones() {
        let ps = pubsub(|s| s.batch_linger = Duration::from_secs(1));
        let sub = ps
            .subscribe(&key(), 1, StartPosition::Latest, false)
            .expect("sub");
        ps.publish(&key(), &payloads(2), Instant::now())
            .expect("accepted before the drain");
        ps.begin_drain();
        assert_eq!(
            ps.publish(&key(), &payloads(1), Instant::now()).err(),
            Some(PublishError::ShuttingDown)
        );
        ps.flush_all();
        ps.close_all();
        assert_eq!(sub.queue.try_pop().map(|b| b.events), Some(2));
    }

    #[test]
    fn unknown_streams_are_refused_without_auto_create() {
        let ps = pubsub(|s| s.auto_create = false);
        assert_eq!(
            ps.publish(&key(), &payloads(1), Instant::now()).err(),
            Some(PublishError::NotFound(key()))
        );
        ps.declare(key());
        assert!(ps.publish(&key(), &payloads(1), Instant::now()).is_ok());
    }
}
