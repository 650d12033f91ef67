//! Streams: offsets, the replay ring, coalescing and fanout.
//!
//! A publish appends its payloads to the stream's replay ring (offsets are
//! assigned there, contiguous from 0) and to the stream's pending batch.
//! The pending batch is flushed when it reaches the event or byte limit, or
//! when the linger time since its first event has passed. Like
//! quinn-proto, the core keeps its own timers and knows no clock: the
//! shell asks [`PubSub::poll_timeout`] when to call
//! [`PubSub::handle_timeout`], with one timer for the whole broker, and
//! re-asks when a publish reports a new deadline
//! ([`PublishOutcome::flush_at`]). A flush encodes each batch once per layout in use (shared
//! `0x0004`, and `0x0024` for subscribers that negotiated offsets) and
//! pushes the same `Bytes` to every subscriber queue.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use felix_wire::{BinaryEventBatch, BinarySharedEventBatch, Frame, StartPosition};

use super::metrics::Metrics;
use super::queue::{PushOutcome, QueueCharge, QueuedBatch, SubscriberQueue};
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
    /// One event would not fit in an event batch within the frame cap.
    #[error("event too large: {len} bytes; events are at most {max} bytes")]
    EventTooLarge {
        /// The event's size.
        len: usize,
        /// The largest event a batch can carry under the frame cap.
        max: usize,
    },
    /// Creating the stream would pass an auto-create limit.
    #[error(transparent)]
    Limit(#[from] StreamLimit),
}

/// Why a stream could not be created on first use (dev auth).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamLimit {
    /// The tenant already created its share of streams.
    #[error("stream limit reached: tenant {tenant} has {limit} streams")]
    PerTenant {
        /// The tenant.
        tenant: String,
        /// `max_auto_streams_per_tenant`.
        limit: usize,
    },
    /// All tenants together created the most streams allowed.
    #[error("stream limit reached: the broker has {limit} streams")]
    Total {
        /// `max_auto_streams`.
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
    /// Creating the stream would pass an auto-create limit.
    #[error(transparent)]
    Limit(#[from] StreamLimit),
}

/// What a publish did and what the caller must do next.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    /// Offset of the first payload published.
    pub first_offset: u64,
    /// When set, a linger timer was armed for this time: the caller's
    /// next [`PubSub::poll_timeout`] may be earlier than it was.
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
    /// History to write first, as legacy `0x0002`/`0x0022` frames.
    pub replay: Replay,
    /// When the subscriber's credential expires (unix seconds): the shell
    /// ends the subscription then.
    pub expires_at_unix: Option<u64>,
}

/// The history a subscription replays before its live batches, encoded
/// one batch at a time as the writer asks for it.
///
/// Nothing is copied up front: a subscriber that does not read holds only
/// this cursor, whatever the size of the ring. Events that leave the ring
/// before the cursor reaches them are skipped and counted as dropped,
/// exactly as a full queue drops live events.
#[derive(Debug)]
pub struct Replay {
    stream: Option<Arc<Mutex<StreamState>>>,
    id: u64,
    offsets: bool,
    /// Next offset to replay.
    next: u64,
    /// Offsets from `end` on arrive through the live queue.
    end: u64,
    max_events: usize,
    max_bytes: usize,
}

/// One replay batch.
#[derive(Debug)]
pub struct ReplayBatch {
    /// The encoded `0x0002`/`0x0022` frame.
    pub frame: Bytes,
    /// Events in it.
    pub events: u64,
    /// Events that left the ring before they could be replayed.
    pub skipped: u64,
}

impl Replay {
    /// A replay with nothing to send.
    pub fn empty() -> Self {
        Replay {
            stream: None,
            id: 0,
            offsets: false,
            next: 0,
            end: 0,
            max_events: 1,
            max_bytes: 1,
        }
    }

    /// Events still to replay (an upper bound: some may leave the ring).
    pub fn remaining(&self) -> u64 {
        self.end - self.next
    }

    /// Encodes the next batch of history, `None` when done.
    pub fn next_batch(&mut self) -> Option<ReplayBatch> {
        let stream = self.stream.as_ref()?;
        if self.next >= self.end {
            return None;
        }
        let s = lock(stream);
        let oldest = s.oldest();
        let skipped = oldest.saturating_sub(self.next).min(self.end - self.next);
        self.next += skipped;
        if self.next >= self.end {
            return (skipped > 0).then(|| ReplayBatch {
                frame: Bytes::new(),
                events: 0,
                skipped,
            });
        }
        let from = (self.next - oldest) as usize;
        let until = ((self.end - oldest) as usize).min(s.ring.len());
        let mut payloads = Vec::new();
        let mut bytes = 0;
        for p in s.ring.range(from..until) {
            if !payloads.is_empty()
                && (payloads.len() >= self.max_events || bytes + p.len() > self.max_bytes)
            {
                break;
            }
            bytes += p.len();
            payloads.push(p.clone());
        }
        drop(s);
        let events = payloads.len() as u64;
        let frame = Frame::from(BinaryEventBatch {
            subscription_id: self.id,
            base_offset: self.offsets.then_some(self.next),
            payloads,
        })
        .to_bytes()
        .unwrap_or_default(); // every event fits a batch under the cap (checked at publish)
        self.next += events;
        Some(ReplayBatch {
            frame,
            events,
            skipped,
        })
    }
}

/// Encodes history read from elsewhere (cluster mode: JetStream) exactly
/// as [`Replay::next_batch`] encodes the ring's: a legacy `0x0002` /
/// `0x0022` batch starting at `base_offset`.
pub fn encode_history(id: u64, offsets: bool, base_offset: u64, payloads: Vec<Bytes>) -> Bytes {
    Frame::from(BinaryEventBatch {
        subscription_id: id,
        base_offset: offsets.then_some(base_offset),
        payloads,
    })
    .to_bytes()
    .unwrap_or_default() // every event fits a batch under the cap (checked at publish)
}

#[derive(Debug)]
struct Subscriber {
    /// Identifies the subscription (ids are the clients' and may repeat).
    queue: Arc<SubscriberQueue>,
    offsets: bool,
}

/// Events that left the ring to keep a stream, or all streams, within
/// their byte limits are counted in `replay_trimmed_events`.
#[derive(Debug, Default)]
struct StreamState {
    /// Offset the next event gets.
    next_offset: u64,
    /// Retained history: offsets `oldest() ..`, payloads copied out of the
    /// encoded fan-out batches (see [`PubSub::flush_locked`]).
    ring: VecDeque<Bytes>,
    /// Payload bytes in `ring`.
    ring_bytes: usize,
    /// Events appended but not yet fanned out: offsets `next_offset - len ..`.
    pending: Vec<Bytes>,
    pending_bytes: usize,
    /// When the oldest pending event arrived.
    pending_since: Option<Instant>,
    subscribers: Vec<Subscriber>,
    /// Cluster mode: the node's JetStream feed for this stream is running,
    /// so offsets here are JetStream's (sequence minus one).
    fed: bool,
}

impl StreamState {
    /// The oldest offset still replayable.
    fn oldest(&self) -> u64 {
        self.next_offset - (self.pending.len() + self.ring.len()) as u64
    }
}

/// The stream map, with how many streams each tenant created on first use.
#[derive(Debug, Default)]
struct Registry {
    streams: HashMap<StreamKey, Arc<Mutex<StreamState>>>,
    auto_per_tenant: HashMap<String, usize>,
    auto_total: usize,
}

/// Linger deadlines: (deadline, arming order) to the stream to flush.
type Timers = BTreeMap<(Instant, u64), Arc<Mutex<StreamState>>>;

/// All streams.
#[derive(Debug)]
pub struct PubSub {
    streams: Mutex<Registry>,
    settings: Arc<CoreSettings>,
    metrics: Arc<Metrics>,
    inflight_bytes: AtomicUsize,
    /// Payload bytes in every stream's ring (`replay_budget_bytes`).
    ring_bytes: AtomicUsize,
    /// Linger deadlines of pending batches, by (deadline, sequence number).
    timers: Mutex<Timers>,
    timer_seq: AtomicU64,
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
            streams: Mutex::new(Registry::default()),
            settings,
            metrics,
            inflight_bytes: AtomicUsize::new(0),
            ring_bytes: AtomicUsize::new(0),
            timers: Mutex::new(BTreeMap::new()),
            timer_seq: AtomicU64::new(0),
            next_subscription_id: AtomicU64::new(1),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Declares a stream (it exists from now on).
    pub fn declare(&self, key: StreamKey) {
        lock(&self.streams).streams.entry(key).or_default();
    }

    /// Number of streams.
    pub fn stream_count(&self) -> usize {
        lock(&self.streams).streams.len()
    }

    fn existing(&self, key: &StreamKey) -> Option<Arc<Mutex<StreamState>>> {
        lock(&self.streams).streams.get(key).cloned()
    }

    /// The stream, created on first use when auto-create is on: `Ok(None)`
    /// if it does not exist and may not be created.
    fn stream(&self, key: &StreamKey) -> Result<Option<Arc<Mutex<StreamState>>>, StreamLimit> {
        let mut registry = lock(&self.streams);
        if let Some(s) = registry.streams.get(key) {
            return Ok(Some(s.clone()));
        }
        if !self.settings.auto_create {
            return Ok(None);
        }
        let per_tenant = registry
            .auto_per_tenant
            .get(&key.tenant)
            .copied()
            .unwrap_or(0);
        let limit = self.settings.max_auto_streams_per_tenant;
        if per_tenant >= limit {
            return Err(StreamLimit::PerTenant {
                tenant: key.tenant.clone(),
                limit,
            });
        }
        if registry.auto_total >= self.settings.max_auto_streams {
            return Err(StreamLimit::Total {
                limit: self.settings.max_auto_streams,
            });
        }
        *registry
            .auto_per_tenant
            .entry(key.tenant.clone())
            .or_insert(0) += 1;
        registry.auto_total += 1;
        self.metrics
            .streams_auto_created
            .fetch_add(1, Ordering::Relaxed);
        let s = Arc::new(Mutex::new(StreamState::default()));
        registry.streams.insert(key.clone(), s.clone());
        Ok(Some(s))
    }

    /// The largest event a batch can carry within the frame cap: a legacy
    /// batch with offsets (8 id + 8 offset + 4 count) of one event (4 length).
    pub fn max_event_bytes(&self) -> usize {
        (self.settings.max_frame_bytes as usize).saturating_sub(24)
    }

    /// Drops the oldest retained events until the stream is within its
    /// event and byte limits and all rings within the broker-wide budget
    /// (a stream publishing past that budget forgets its own history
    /// first: never another stream's).
    fn trim_ring(&self, s: &mut StreamState) {
        let mut trimmed = 0u64;
        while let Some(front) = s.ring.front() {
            let over = s.ring.len() > self.settings.replay_capacity
                || s.ring_bytes > self.settings.replay_capacity_bytes
                || self.ring_bytes.load(Ordering::Acquire) > self.settings.replay_budget_bytes;
            if !over {
                break;
            }
            let len = front.len();
            s.ring.pop_front();
            s.ring_bytes -= len;
            self.ring_bytes.fetch_sub(len, Ordering::AcqRel);
            trimmed += 1;
        }
        self.metrics
            .replay_trimmed_events
            .fetch_add(trimmed, Ordering::Relaxed);
        self.metrics.replay_bytes.store(
            self.ring_bytes.load(Ordering::Relaxed) as u64,
            Ordering::Relaxed,
        );
    }

    /// Appends flushed payloads to the ring, then trims it.
    fn retain(&self, s: &mut StreamState, payloads: impl IntoIterator<Item = Bytes>) {
        for p in payloads {
            s.ring_bytes += p.len();
            self.ring_bytes.fetch_add(p.len(), Ordering::AcqRel);
            s.ring.push_back(p);
        }
        self.trim_ring(s);
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
        let max = self.max_event_bytes();
        if let Some(big) = payloads.iter().find(|p| p.len() > max) {
            return Err(PublishError::EventTooLarge {
                len: big.len(),
                max,
            });
        }
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
        let stream = match self.stream(key) {
            Ok(Some(stream)) => stream,
            Ok(None) => {
                self.inflight_bytes.fetch_sub(bytes, Ordering::AcqRel);
                return Err(PublishError::NotFound(key.clone()));
            }
            Err(limit) => {
                self.inflight_bytes.fetch_sub(bytes, Ordering::AcqRel);
                return Err(limit.into());
            }
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
        s.pending.extend(payloads.iter().cloned());
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
        } else {
            // A timer's flush never waits, so a `block` queue it filled
            // makes the next publish wait instead: without this, a
            // publisher that never fills a batch would never wait.
            out.wait_for = s
                .subscribers
                .iter()
                .filter(|x| x.queue.blocks() && x.queue.is_over_capacity())
                .map(|x| x.queue.clone())
                .collect();
            if starts_batch {
                // One timer per pending batch: only the publish that starts
                // it arms one.
                let at = now + self.settings.batch_linger;
                drop(s);
                self.arm(at, stream);
                out.flush_at = Some(at);
            }
        }
        Ok(out)
    }

    fn arm(&self, at: Instant, stream: Arc<Mutex<StreamState>>) {
        let seq = self.timer_seq.fetch_add(1, Ordering::Relaxed);
        lock(&self.timers).insert((at, seq), stream);
    }

    /// When [`PubSub::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        lock(&self.timers).first_key_value().map(|((at, _), _)| *at)
    }

    /// Flushes every pending batch whose linger time is up at `now`.
    /// Timers never make anyone wait: a `block` publisher waits on its own
    /// publish.
    pub fn handle_timeout(&self, now: Instant) {
        loop {
            let due = {
                let mut timers = lock(&self.timers);
                match timers.first_key_value() {
                    Some(((at, _), _)) if *at <= now => timers.pop_first(),
                    _ => None,
                }
            };
            let Some(((_, _), stream)) = due else {
                return;
            };
            let mut s = lock(&stream);
            match s.pending_since {
                // Flushed meanwhile (full, or by a subscribe): a stale timer.
                None => {}
                Some(since) if now < since + self.settings.batch_linger => {
                    let at = since + self.settings.batch_linger;
                    drop(s);
                    self.arm(at, stream);
                }
                Some(_) => drop(self.flush_locked(&mut s)),
            }
        }
    }

    /// Starts a drain: from now on publishes are refused.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Flushes every stream (shutdown).
    pub fn flush_all(&self) {
        let streams: Vec<_> = lock(&self.streams).streams.values().cloned().collect();
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
        if let Some(since) = s.pending_since.take() {
            self.metrics.publish_to_fanout_seconds.observe_since(since);
        }
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
        // Past the queue budget, only subscribers that are keeping up (at
        // most KEEPING_UP_BATCHES queued) get new batches: a stalled reader
        // cannot make the broker hold more, nor starve the others.
        let over_budget = self.metrics.queued_bytes.load(Ordering::Acquire)
            > self.settings.queue_budget_bytes as u64;
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
                .unwrap_or_default() // every event fits a batch under the cap (checked at publish)
            };
            let plain = want_plain.then(|| encode(None));
            let with_offsets = want_offsets.then(|| encode(Some(base)));
            self.retain(s, retained(chunk, plain.as_ref(), with_offsets.as_ref()));
            let frame_bytes =
                plain.as_ref().map_or(0, Bytes::len) + with_offsets.as_ref().map_or(0, Bytes::len);
            let charge = QueueCharge::new(frame_bytes, self.metrics.clone());
            for sub in &s.subscribers {
                let frame = if sub.offsets {
                    with_offsets.clone()
                } else {
                    plain.clone()
                };
                let Some(frame) = frame else { continue };
                if over_budget && sub.queue.len() >= KEEPING_UP_BATCHES && !sub.queue.blocks() {
                    sub.queue.count_dropped(events);
                    self.metrics
                        .dropped_events
                        .fetch_add(events, Ordering::Relaxed);
                    self.metrics
                        .queue_budget_drops
                        .fetch_add(events, Ordering::Relaxed);
                    continue;
                }
                let batch = QueuedBatch {
                    frame,
                    events,
                    charge: Some(charge.clone()),
                };
                // Past the budget a blocking subscriber holds its
                // publishers back at KEEPING_UP_BATCHES instead of growing
                // to its capacity.
                let room = if over_budget {
                    KEEPING_UP_BATCHES
                } else {
                    usize::MAX
                };
                match sub.queue.push_within(batch, room) {
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
            .stream(key)?
            .ok_or_else(|| SubscribeError::NotFound(key.clone()))?;
        let mut s = lock(&stream);
        let waits = self.flush_locked(&mut s);
        drop(waits); // the subscriber never makes a publisher wait here
        let tail = s.next_offset;
        let oldest = s.oldest();
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
        Ok(self.register(&stream, &mut s, key, id, from, offsets))
    }

    /// Adds a subscriber whose replay runs from `from` to the stream's
    /// tail (flushed by the caller), then live.
    fn register(
        &self,
        stream: &Arc<Mutex<StreamState>>,
        s: &mut StreamState,
        key: &StreamKey,
        id: u64,
        from: u64,
        offsets: bool,
    ) -> Subscription {
        let tail = s.next_offset;
        let replay = Replay {
            stream: (from < tail).then(|| stream.clone()),
            id,
            offsets,
            next: from,
            end: tail,
            max_events: self.settings.batch_max_events.max(1),
            max_bytes: self.settings.batch_max_bytes,
        };
        let queue = SubscriberQueue::new(self.settings.queue_capacity, self.settings.queue_policy);
        s.subscribers.push(Subscriber {
            queue: queue.clone(),
            offsets,
        });
        self.metrics.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscription {
            id,
            key: key.clone(),
            queue,
            replay,
            expires_at_unix: None,
        }
    }

    /// Closes every subscriber queue (drain): writers send what is queued,
    /// then end their streams.
    pub fn close_all(&self) {
        let streams: Vec<_> = lock(&self.streams).streams.values().cloned().collect();
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
        self.unsubscribe_queue(&sub.key, &sub.queue);
    }

    /// [`PubSub::unsubscribe`] by the subscription's stream and queue.
    pub fn unsubscribe_queue(&self, key: &StreamKey, queue: &Arc<SubscriberQueue>) {
        let Some(stream) = self.existing(key) else {
            return;
        };
        let mut s = lock(&stream);
        if let Some(i) = s
            .subscribers
            .iter()
            .position(|x| Arc::ptr_eq(&x.queue, queue))
        {
            let sub = s.subscribers.swap_remove(i);
            sub.queue.close();
            self.metrics.subscribers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Cluster mode: checks a publish as [`PubSub::publish`] would (event
    /// size, drain, the stream exists or may be created) without keeping
    /// anything: JetStream stores the events, and they come back through
    /// [`PubSub::inject`] on every node that has subscribers.
    pub fn admit(&self, key: &StreamKey, payloads: &[Bytes]) -> Result<(), PublishError> {
        let max = self.max_event_bytes();
        if let Some(big) = payloads.iter().find(|p| p.len() > max) {
            return Err(PublishError::EventTooLarge {
                len: big.len(),
                max,
            });
        }
        if self.draining.load(Ordering::Acquire) {
            return Err(PublishError::ShuttingDown);
        }
        match self.stream(key)? {
            Some(_) => Ok(()),
            None => Err(PublishError::NotFound(key.clone())),
        }
    }

    /// Cluster mode: checks that a stream may be subscribed to (exists or
    /// may be created) before the shell asks JetStream about it.
    pub fn admit_subscribe(&self, key: &StreamKey) -> Result<(), SubscribeError> {
        match self.stream(key)? {
            Some(_) => Ok(()),
            None => Err(SubscribeError::NotFound(key.clone())),
        }
    }

    /// Cluster mode: the node's feed for `key` starts after offset
    /// `tail - 1` (JetStream's last sequence when the feed's consumer was
    /// made), so local offsets continue from `tail`. Returns false if a
    /// feed was already attached (nothing changes).
    pub fn attach_feed(&self, key: &StreamKey, tail: u64) -> Result<bool, SubscribeError> {
        let stream = self
            .stream(key)?
            .ok_or_else(|| SubscribeError::NotFound(key.clone()))?;
        let mut s = lock(&stream);
        if s.fed {
            return Ok(false);
        }
        drop(self.flush_locked(&mut s));
        let dropped = std::mem::take(&mut s.ring_bytes);
        self.ring_bytes.fetch_sub(dropped, Ordering::AcqRel);
        s.ring.clear();
        s.next_offset = tail;
        s.fed = true;
        Ok(true)
    }

    /// Cluster mode: the feed stopped (shutdown, or it failed): the next
    /// subscriber attaches a new one.
    pub fn detach_feed(&self, key: &StreamKey) {
        if let Some(stream) = self.existing(key) {
            lock(&stream).fed = false;
        }
    }

    /// Cluster mode: events read back from JetStream, the first at
    /// `first_offset`, fanned out at once through the same encode-once
    /// path as a local publish (no linger: the feed already batches what
    /// arrived together). Events at offsets already seen are skipped; a
    /// gap (events JetStream no longer has) restarts the ring at
    /// `first_offset`. Returns the `block` queues the feed must wait for.
    pub fn inject(
        &self,
        key: &StreamKey,
        first_offset: u64,
        payloads: Vec<Bytes>,
        now: Instant,
    ) -> Vec<Arc<SubscriberQueue>> {
        let Some(stream) = self.existing(key) else {
            return Vec::new();
        };
        let mut s = lock(&stream);
        if !s.fed {
            return Vec::new();
        }
        let skip = s.next_offset.saturating_sub(first_offset) as usize;
        if skip >= payloads.len() {
            return Vec::new();
        }
        let first_offset = first_offset + skip as u64;
        if first_offset > s.next_offset {
            let trimmed = s.ring.len() as u64;
            let dropped = std::mem::take(&mut s.ring_bytes);
            self.ring_bytes.fetch_sub(dropped, Ordering::AcqRel);
            s.ring.clear();
            s.next_offset = first_offset;
            self.metrics
                .replay_trimmed_events
                .fetch_add(trimmed, Ordering::Relaxed);
        }
        let fresh = &payloads[skip..];
        let bytes: usize = fresh.iter().map(Bytes::len).sum();
        self.inflight_bytes.fetch_add(bytes, Ordering::AcqRel);
        s.pending.extend(fresh.iter().cloned());
        s.pending_bytes += bytes;
        s.next_offset += fresh.len() as u64;
        s.pending_since.get_or_insert(now);
        self.metrics
            .cluster_events_received
            .fetch_add(fresh.len() as u64, Ordering::Relaxed);
        self.flush_locked(&mut s)
    }

    /// Cluster mode: registers a subscriber starting at `from`, which the
    /// shell resolved against JetStream and which is at most the local
    /// tail. Returns the subscription (its replay covers what the ring
    /// still has of `from..tail`) and the offset that replay starts at:
    /// the shell sends `from..that` from JetStream first.
    pub fn subscribe_from(
        &self,
        key: &StreamKey,
        id: u64,
        from: u64,
        offsets: bool,
    ) -> Result<(Subscription, u64), SubscribeError> {
        let stream = self
            .stream(key)?
            .ok_or_else(|| SubscribeError::NotFound(key.clone()))?;
        let mut s = lock(&stream);
        drop(self.flush_locked(&mut s));
        let tail = s.next_offset;
        if from > tail {
            return Err(SubscribeError::InFuture {
                requested: from,
                available: tail,
            });
        }
        let ring_from = from.max(s.oldest());
        let sub = self.register(&stream, &mut s, key, id, ring_from, offsets);
        Ok((sub, ring_from))
    }

    /// Whether any live subscriber remains on a stream (cluster mode stops
    /// a feed nobody reads). Reads only: a closed subscriber stays listed
    /// until its writer unsubscribes it, which also counts it out of the
    /// `subscribers` gauge.
    pub fn has_subscribers(&self, key: &StreamKey) -> bool {
        self.existing(key).is_some_and(|stream| {
            lock(&stream)
                .subscribers
                .iter()
                .any(|sub| !sub.queue.is_closed())
        })
    }

    /// Per live subscriber of a stream: (events handed to its writer, events
    /// dropped by its queue policy, events still queued). For an event
    /// published while the subscriber existed, exactly one of the three
    /// counts it.
    pub fn subscriber_stats(&self, key: &StreamKey) -> Vec<(u64, u64, u64)> {
        let Some(stream) = self.existing(key) else {
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
            .streams
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = Vec::new();
        for (key, stream) in streams {
            let mut s = lock(&stream);
            drop(self.flush_locked(&mut s));
            let oldest = s.oldest();
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
        let Ok(Some(stream)) = self.stream(&key) else {
            return false;
        };
        let mut s = lock(&stream);
        s.next_offset = oldest + payloads.len() as u64;
        let dropped = std::mem::take(&mut s.ring_bytes);
        self.ring_bytes.fetch_sub(dropped, Ordering::AcqRel);
        s.ring.clear();
        // Copied: a slice would keep the whole file's buffer alive.
        let copies: Vec<Bytes> = payloads.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        self.retain(&mut s, copies);
        true
    }

    /// Panics unless the byte accounting agrees with the streams and every
    /// bound holds: for tests and the `broker_session` fuzz target.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let registry = lock(&self.streams);
        let mut ring_total = 0;
        let mut pending_total = 0;
        for (key, stream) in &registry.streams {
            let s = lock(stream);
            let bytes: usize = s.ring.iter().map(Bytes::len).sum();
            assert_eq!(s.ring_bytes, bytes, "{key}: ring bytes");
            assert!(
                s.ring.len() <= self.settings.replay_capacity,
                "{key}: ring events"
            );
            assert!(
                s.ring_bytes <= self.settings.replay_capacity_bytes,
                "{key}: ring over replay_capacity_bytes"
            );
            let pending: usize = s.pending.iter().map(Bytes::len).sum();
            assert_eq!(s.pending_bytes, pending, "{key}: pending bytes");
            assert!(s.oldest() <= s.next_offset, "{key}: offsets");
            ring_total += bytes;
            pending_total += pending;
        }
        assert_eq!(self.ring_bytes.load(Ordering::Acquire), ring_total);
        assert!(
            ring_total <= self.settings.replay_budget_bytes,
            "rings over budget"
        );
        assert_eq!(self.inflight_bytes.load(Ordering::Acquire), pending_total);
        let per_tenant: usize = registry.auto_per_tenant.values().sum();
        assert_eq!(per_tenant, registry.auto_total);
        assert!(registry.auto_total <= self.settings.max_auto_streams);
        assert!(registry
            .auto_per_tenant
            .values()
            .all(|&n| n <= self.settings.max_auto_streams_per_tenant));
    }

    /// Closes and forgets every subscriber and frees what their queues
    /// held (tests and the fuzz target: the queue gauge must return to 0).
    #[doc(hidden)]
    pub fn unsubscribe_all_for_test(&self) {
        for stream in lock(&self.streams).streams.values() {
            for sub in lock(stream).subscribers.drain(..) {
                sub.queue.close();
                while sub.queue.try_pop().is_some() {}
                self.metrics.subscribers.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// (tail, oldest retained) of a stream, if it exists.
    pub fn offsets(&self, key: &StreamKey) -> Option<(u64, u64)> {
        let stream = self.existing(key)?;
        let s = lock(&stream);
        Some((s.next_offset, s.oldest()))
    }
}

/// A subscriber with fewer batches than this queued is keeping up: it
/// still gets new batches while the broker-wide queue budget is spent.
/// A reader that is merely a scheduling beat behind holds one.
pub const KEEPING_UP_BATCHES: usize = 2;

/// The ring's copy of a flushed chunk: slices of an encoded batch when one
/// was made (no copy, and each slice pins one batch of at most
/// `batch_max_bytes`, not a whole read buffer), else a single copy.
fn retained(chunk: &[Bytes], plain: Option<&Bytes>, with_offsets: Option<&Bytes>) -> Vec<Bytes> {
    // Shared batch: 12-byte header, [u64 base_offset], u32 count, then
    // each payload as u32 length + bytes.
    let (frame, mut at) = match (plain, with_offsets) {
        (Some(f), _) => (f.clone(), 12 + 4),
        (None, Some(f)) => (f.clone(), 12 + 8 + 4),
        (None, None) => {
            let mut copy = bytes::BytesMut::with_capacity(chunk.iter().map(Bytes::len).sum());
            for p in chunk {
                copy.extend_from_slice(p);
            }
            (copy.freeze(), 0)
        }
    };
    let framed = plain.is_some() || with_offsets.is_some();
    chunk
        .iter()
        .map(|p| {
            if framed {
                at += 4;
            }
            let slice = frame.slice(at..at + p.len());
            debug_assert_eq!(&slice, p);
            at += p.len();
            slice
        })
        .collect()
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
        assert_eq!(ps.poll_timeout(), Some(t0 + Duration::from_micros(250)));
        ps.handle_timeout(t0 + Duration::from_micros(100));
        assert_eq!(sub.queue.len(), 1, "not due yet");
        assert_eq!(ps.poll_timeout(), Some(t0 + Duration::from_micros(250)));
        ps.handle_timeout(t0 + Duration::from_micros(250));
        assert_eq!(ps.poll_timeout(), None, "no timer left");
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
        assert_eq!(at_tail.replay.remaining(), 0);
        let mut earliest = ps
            .subscribe(&key(), 3, StartPosition::Earliest, true)
            .expect("earliest");
        assert_eq!(earliest.replay.remaining(), 4);
        match decode(&earliest.replay.next_batch().expect("history").frame) {
            Frame::BinaryEventBatch(b) => {
                assert_eq!(b.subscription_id, 3);
                assert_eq!(b.base_offset, Some(2));
                assert_eq!(b.payloads.len(), 4);
            }
            other => panic!("{other:?}"),
        }
        let mut from4 = ps
            .subscribe(&key(), 4, StartPosition::Offset(4), false)
            .expect("offset");
        match decode(&from4.replay.next_batch().expect("history").frame) {
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
        assert_eq!(sub.replay.remaining(), 2);
        ps.publish(&key(), &payloads(1), t0).expect("publish");
        ps.handle_timeout(t0 + Duration::from_secs(1));
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
        assert_eq!(sub.replay.remaining(), 2);
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

    fn big(n: usize, len: usize) -> Vec<Bytes> {
        (0..n).map(|_| Bytes::from(vec![1u8; len])).collect()
    }

    fn other(stream: &str, tenant: &str) -> StreamKey {
        StreamKey {
            tenant: tenant.into(),
            namespace: "default".into(),
            stream: stream.into(),
        }
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_as_well_as_events() {
        // 400 events of 1 MiB used to be kept whole (RSS 598 MB).
        let ps = pubsub(|s| s.replay_capacity_bytes = 1 << 20);
        for _ in 0..400 {
            ps.publish(&key(), &big(1, 64 * 1024), Instant::now())
                .expect("publish");
        }
        let (tail, oldest) = ps.offsets(&key()).expect("stream");
        assert_eq!((tail, oldest), (400, 400 - 16), "16 x 64 KiB = 1 MiB kept");
        assert_eq!(ps.metrics.replay_bytes.load(Ordering::Relaxed), 1 << 20);
        assert_eq!(
            ps.metrics.replay_trimmed_events.load(Ordering::Relaxed),
            384
        );
    }

    #[test]
    fn all_rings_together_stay_within_the_replay_budget_without_taking_others_history() {
        let ps = pubsub(|s| s.replay_budget_bytes = 1 << 20);
        let a = other("a", "t1");
        let b = other("b", "t2");
        ps.publish(&a, &big(8, 64 * 1024), Instant::now())
            .expect("a");
        for _ in 0..100 {
            ps.publish(&b, &big(1, 64 * 1024), Instant::now())
                .expect("b");
        }
        assert!(ps.metrics.replay_bytes.load(Ordering::Relaxed) <= 1 << 20);
        let (tail, oldest) = ps.offsets(&a).expect("a");
        assert_eq!(tail - oldest, 8, "stream a keeps its history");
        let (tail, oldest) = ps.offsets(&b).expect("b");
        assert_eq!(tail - oldest, 8, "stream b forgets its own oldest events");
    }

    #[test]
    fn streams_created_on_first_use_are_limited_per_tenant_and_in_total() {
        // 2000 streams with 60 KB names used to take 323 MB.
        let ps = pubsub(|s| {
            s.max_auto_streams_per_tenant = 2;
            s.max_auto_streams = 3;
        });
        let now = Instant::now();
        ps.publish(&other("a", "t1"), &payloads(1), now).expect("1");
        ps.publish(&other("b", "t1"), &payloads(1), now).expect("2");
        let err = ps
            .publish(&other("c", "t1"), &payloads(1), now)
            .expect_err("per tenant");
        assert_eq!(
            err.to_string(),
            "stream limit reached: tenant t1 has 2 streams"
        );
        ps.publish(&other("a", "t2"), &payloads(1), now).expect("3");
        let err = ps
            .subscribe(&other("b", "t2"), 1, StartPosition::Latest, false)
            .expect_err("total");
        assert_eq!(
            err.to_string(),
            "stream limit reached: the broker has 3 streams"
        );
        ps.publish(&other("a", "t1"), &payloads(1), now)
            .expect("existing streams still work");
        assert_eq!(ps.stream_count(), 3);
        assert_eq!(ps.metrics.streams_auto_created.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn replay_is_encoded_lazily_and_counts_what_left_the_ring_meanwhile() {
        let ps = pubsub(|s| {
            s.replay_capacity = 10;
            s.batch_max_events = 4;
        });
        ps.publish(&key(), &payloads(10), Instant::now())
            .expect("publish");
        let mut sub = ps
            .subscribe(&key(), 1, StartPosition::Earliest, true)
            .expect("sub");
        let first = sub.replay.next_batch().expect("batch");
        assert_eq!((first.events, first.skipped), (4, 0));
        // Six more events push offsets 0..6 out while the reader is slow.
        ps.publish(&key(), &payloads(6), Instant::now())
            .expect("publish");
        let second = sub.replay.next_batch().expect("batch");
        assert_eq!((second.events, second.skipped), (4, 2));
        match decode(&second.frame) {
            Frame::BinaryEventBatch(b) => assert_eq!(b.base_offset, Some(6)),
            other => panic!("{other:?}"),
        }
        assert!(sub.replay.next_batch().is_none(), "offsets 10.. come live");
        let mut live = 0;
        while let Some(b) = sub.queue.try_pop() {
            live += b.events;
        }
        assert_eq!(live, 6);
    }

    #[test]
    fn past_the_queue_budget_a_blocking_subscriber_behind_makes_the_publisher_wait() {
        let ps = pubsub(|s| {
            s.queue_budget_bytes = 64 * 1024;
            s.queue_policy = QueuePolicy::Block;
        });
        let stalled = ps
            .subscribe(&key(), 1, StartPosition::Latest, false)
            .expect("sub");
        let mut waited_at = None;
        for i in 0..8 {
            let out = ps
                .publish(&key(), &big(1, 32 * 1024), Instant::now())
                .expect("publish");
            if !out.wait_for.is_empty() {
                waited_at = Some(i);
                break;
            }
        }
        // Under the 64 KiB budget two 32 KiB batches fit; past it the
        // queue holds KEEPING_UP_BATCHES + 1 and the publisher must wait
        // (not grow the queue to its capacity of 512).
        assert_eq!(waited_at, Some(KEEPING_UP_BATCHES as i32));
        assert_eq!(stalled.queue.len(), KEEPING_UP_BATCHES + 1);
        assert_eq!(
            stalled.queue.stats.dropped_events.load(Ordering::Relaxed),
            0
        );
        stalled.queue.try_pop();
        stalled.queue.try_pop();
        assert!(!stalled.queue.is_over_capacity(), "room once it reads");
        drop(stalled);
        ps.unsubscribe_all_for_test();
    }

    #[test]
    fn past_the_queue_budget_only_subscribers_that_keep_up_get_batches() {
        // Subscribers that never read used to hold every batch up to their
        // queue capacity, on every stream: 1024 of them took RSS to 1 GB.
        let ps = pubsub(|s| {
            s.queue_budget_bytes = 256 * 1024;
            s.queue_policy = QueuePolicy::DropNew;
        });
        let stalled = ps
            .subscribe(&key(), 1, StartPosition::Latest, false)
            .expect("sub");
        let reader = ps
            .subscribe(&key(), 2, StartPosition::Latest, false)
            .expect("sub");
        let mut read = 0;
        for i in 0..50 {
            ps.publish(&key(), &big(1, 32 * 1024), Instant::now())
                .expect("publish");
            // Reading every other publish: a beat behind, still keeping up.
            if i % 2 == 1 {
                while let Some(b) = reader.queue.try_pop() {
                    read += b.events;
                }
            }
        }
        assert_eq!(read, 50, "the subscriber that keeps up loses nothing");
        let queued = ps.metrics.queued_bytes.load(Ordering::Relaxed);
        assert!(
            queued <= 256 * 1024 + KEEPING_UP_BATCHES as u64 * 33 * 1024,
            "{queued} bytes queued"
        );
        let dropped = stalled.queue.stats.dropped_events.load(Ordering::Relaxed);
        assert_eq!(dropped + stalled.queue.queued_events(), 50);
        assert_eq!(
            ps.metrics.queue_budget_drops.load(Ordering::Relaxed),
            dropped
        );
        drop(stalled);
        ps.unsubscribe_all_for_test();
        assert_eq!(ps.metrics.queued_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_event_that_could_not_be_delivered_within_the_cap_is_refused() {
        let ps = pubsub(|s| s.max_frame_bytes = 1000);
        let err = ps
            .publish(&key(), &big(1, 977), Instant::now())
            .expect_err("too large");
        assert_eq!(
            err.to_string(),
            "event too large: 977 bytes; events are at most 976 bytes"
        );
        ps.publish(&key(), &big(1, 976), Instant::now())
            .expect("fits");
        let mut sub = ps
            .subscribe(&key(), u64::MAX, StartPosition::Earliest, true)
            .expect("sub");
        let frame = sub.replay.next_batch().expect("batch").frame;
        assert_eq!(
            frame.len(),
            12 + 1000,
            "the largest replay batch is at the cap"
        );
    }

    #[test]
    fn the_ring_never_keeps_a_read_buffer_alive() {
        // Payloads arrive as slices of the buffer their frame was read
        // into; a ring holding them kept the whole buffer (~1.5x overhead).
        for subscribed in [true, false] {
            let ps = pubsub(|_| {});
            let _sub = subscribed.then(|| {
                ps.subscribe(&key(), 1, StartPosition::Latest, true)
                    .expect("sub")
            });
            let read_buffer = Bytes::from(vec![9u8; 1 << 20]);
            let payload = read_buffer.slice(100..110);
            ps.publish(&key(), &[payload], Instant::now())
                .expect("publish");
            assert!(
                read_buffer.is_unique(),
                "the ring (subscribed: {subscribed}) still holds the read buffer"
            );
            assert_eq!(ps.offsets(&key()), Some((1, 0)), "the event is retained");
        }
    }
}
