//! The node's feeds: one JetStream consumer per (node, felix stream with
//! local subscribers), read into the core's encode-once fan-out. Never one
//! NATS consumer per subscriber.
//!
//! Lifecycle:
//! - the first local subscribe of a stream starts its feed
//!   ([`Cluster::join_feed`]): an ordered push consumer from the sequence
//!   after the stream's last one, so local offsets continue from there;
//! - a sweeper ([`Cluster::sweep_feeds`], every [`SWEEP_EVERY`]) stops a
//!   feed once its stream has had no local subscriber for [`FEED_LINGER`]
//!   and deletes its consumer on NATS, so a node holds consumers (NATS
//!   state, a buffer in the client, a task) only for streams someone
//!   reads here. The linger keeps a client that resubscribes at once (a
//!   reconnect) from restarting the feed each time;
//! - the next subscribe starts a new feed; what the old one had read is
//!   dropped from the ring ([`crate::core::pubsub::PubSub::attach_feed`])
//!   and read from JetStream again if a subscriber asks for it.
//!
//! A subscribe holds a [`Joining`] from the moment it joins the feed until
//! it is registered as a subscriber: the sweeper never stops a feed under
//! a subscribe in progress. [`Joining::tail`] lets the subscribe wait for
//! the feed to reach its start offset without polling.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use async_nats::jetstream::consumer::push::Ordered;
use async_nats::jetstream::stream::Stream;

use super::{Cluster, ClusterError};
use crate::core::pubsub::StreamKey;
use crate::core::Core;
use crate::quic::wait_writable;

/// How long a feed outlives its stream's last local subscriber.
pub const FEED_LINGER: Duration = Duration::from_secs(1);

/// How often the sweeper looks for feeds nobody reads.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Deletes a consumer on NATS when dropped (best effort, in the
/// background). Without it an abandoned ordered consumer stays on the
/// server until its inactivity threshold (30 s) passes.
pub(crate) struct ConsumerCleanup {
    stream: Stream,
    /// The consumer's current name: an ordered consumer re-creates itself
    /// (after a gap or a reconnect) under a new one.
    name: Arc<Mutex<String>>,
}

impl ConsumerCleanup {
    pub(crate) fn new(stream: Stream, name: String) -> Self {
        ConsumerCleanup {
            stream,
            name: Arc::new(Mutex::new(name)),
        }
    }
}

impl Drop for ConsumerCleanup {
    fn drop(&mut self) {
        let name = std::mem::take(&mut *lock(&self.name));
        let stream = self.stream.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = stream.delete_consumer(&name).await {
                    tracing::debug!(consumer = %name, error = %e, "deleting a consumer failed (NATS removes it when inactive)");
                }
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running feed.
pub(crate) struct Feed {
    task: JoinHandle<()>,
    /// Subscribes between joining and registration.
    joining: Arc<AtomicUsize>,
    /// The local tail the feed has reached.
    tail: watch::Receiver<u64>,
    /// Since when the stream has had no local subscriber.
    idle_since: Option<Instant>,
    /// Deletes the consumer once the feed is dropped.
    _consumer: ConsumerCleanup,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feed {
    fn join(&mut self) -> Joining {
        self.joining.fetch_add(1, Ordering::AcqRel);
        self.idle_since = None;
        Joining {
            count: self.joining.clone(),
            tail: self.tail.clone(),
        }
    }
}

/// A subscribe in progress on a feed (see the module doc). Dropped once
/// the subscriber is registered, or the subscribe failed.
pub(crate) struct Joining {
    count: Arc<AtomicUsize>,
    /// The local tail the feed has reached (the ring's next offset).
    pub(crate) tail: watch::Receiver<u64>,
}

impl Drop for Joining {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The feeds of a node, by felix stream.
pub(crate) type Feeds = HashMap<StreamKey, Feed>;

impl Cluster {
    /// Joins the node's feed for `key`, starting it unless it runs.
    pub(crate) async fn join_feed(
        &self,
        key: &StreamKey,
        stream: &Stream,
    ) -> Result<Joining, ClusterError> {
        let mut feeds = self.feeds.lock().await;
        if let Some(feed) = feeds.get_mut(key) {
            if !feed.task.is_finished() {
                return Ok(feed.join());
            }
            self.remove_feed(&mut feeds, key).await;
        }
        // The consumer starts right after the last sequence read here, and
        // local offsets continue from it: nothing stored after this read
        // is missed, nothing before it is fed twice.
        let info = stream
            .get_info()
            .await
            .map_err(|e| ClusterError::js("reading the stream's state", e))?;
        let last = info.state.last_sequence;
        let consumer = self.ordered(stream, last + 1).await?;
        let cleanup = ConsumerCleanup::new(stream.clone(), consumer.cached_info().name.clone());
        let messages = consumer
            .messages()
            .await
            .map_err(|e| ClusterError::js("starting the feed", e))?;
        self.core
            .pubsub
            .attach_feed(key, last)
            .map_err(|e| ClusterError::js("starting the feed", e))?;
        let (tail_tx, tail) = watch::channel(last);
        let task = tokio::spawn(feed(
            self.core.clone(),
            key.clone(),
            messages,
            tail_tx,
            cleanup.name.clone(),
        ));
        let mut feed = Feed {
            task,
            joining: Arc::new(AtomicUsize::new(0)),
            tail,
            idle_since: None,
            _consumer: cleanup,
        };
        let joining = feed.join();
        feeds.insert(key.clone(), feed);
        self.core
            .metrics
            .cluster_feeds
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(stream = %key, from = last + 1, "cluster feed started");
        Ok(joining)
    }

    /// Stops the feeds whose stream has had no local subscriber (and no
    /// subscribe in progress) for [`FEED_LINGER`] at `now`, and forgets
    /// feeds that ended by themselves. Returns how many it stopped.
    pub(crate) async fn sweep_feeds(&self, now: Instant) -> usize {
        let mut feeds = self.feeds.lock().await;
        let mut stop = Vec::new();
        for (key, feed) in feeds.iter_mut() {
            let idle = feed.task.is_finished()
                || (feed.joining.load(Ordering::Acquire) == 0
                    && !self.core.pubsub.has_subscribers(key));
            if !idle {
                feed.idle_since = None;
                continue;
            }
            let since = *feed.idle_since.get_or_insert(now);
            if feed.task.is_finished() || now.duration_since(since) >= FEED_LINGER {
                stop.push(key.clone());
            }
        }
        for key in &stop {
            self.remove_feed(&mut feeds, key).await;
            tracing::debug!(stream = %key, "cluster feed stopped: no local subscriber");
        }
        stop.len()
    }

    /// Stops every feed (drain).
    pub(crate) async fn stop_feeds(&self) {
        let mut feeds = self.feeds.lock().await;
        let keys: Vec<StreamKey> = feeds.keys().cloned().collect();
        for key in &keys {
            self.remove_feed(&mut feeds, key).await;
        }
    }

    /// Ends a feed (its task, then its consumer) and tells the core that
    /// nothing feeds the stream now. The task is awaited before the core
    /// hears of it: an aborted task still running on another worker could
    /// otherwise inject after a new feed attached, and its events, ahead
    /// of the new feed's, would look like a gap. The caller holds the
    /// feeds lock, so no new feed starts meanwhile.
    async fn remove_feed(&self, feeds: &mut Feeds, key: &StreamKey) {
        if let Some(mut feed) = feeds.remove(key) {
            feed.task.abort();
            let _ = (&mut feed.task).await;
            drop(feed);
            self.core.pubsub.detach_feed(key);
            self.core
                .metrics
                .cluster_feeds
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Runs [`Cluster::sweep_feeds`] every [`SWEEP_EVERY`] while the cluster
/// lives.
pub(crate) fn spawn_sweeper(cluster: &Arc<Cluster>) -> JoinHandle<()> {
    let weak = Arc::downgrade(cluster);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(cluster) = weak.upgrade() else {
                break;
            };
            cluster.sweep_feeds(Instant::now()).await;
        }
    })
}

/// Reads the node's consumer for one stream and fans out what arrives:
/// whatever is already buffered goes out as one batch (up to the batch
/// limit), so a burst is encoded once per batch, as on one node. After
/// each batch it publishes the local tail (for subscribes waiting on it)
/// and the consumer's current name (for its deletion).
async fn feed(
    core: Arc<Core>,
    key: StreamKey,
    mut messages: Ordered,
    tail: watch::Sender<u64>,
    consumer: Arc<Mutex<String>>,
) {
    let max_events = core.settings.batch_max_events.max(1);
    let max_bytes = core.settings.batch_max_bytes;
    loop {
        let first = match messages.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                // The ordered consumer recovers from gaps and reconnects
                // itself; what reaches here is worth a log line only.
                tracing::warn!(stream = %key, error = %e, "cluster feed");
                continue;
            }
            None => break,
        };
        let mut batch = vec![first];
        let mut bytes = batch[0].payload.len();
        while batch.len() < max_events && bytes < max_bytes {
            match messages.next().now_or_never() {
                Some(Some(Ok(m))) => {
                    bytes += m.payload.len();
                    batch.push(m);
                }
                _ => break,
            }
        }
        // Runs of consecutive sequences (a stream has one subject, so a
        // gap only follows retention).
        let mut run: Vec<Bytes> = Vec::new();
        let mut run_start = 0;
        for m in &batch {
            let Ok(info) = m.info() else { continue };
            let offset = info.stream_sequence.saturating_sub(1);
            if !run.is_empty() && offset != run_start + run.len() as u64 {
                inject(&core, &key, run_start, std::mem::take(&mut run)).await;
            }
            if run.is_empty() {
                run_start = offset;
            }
            run.push(m.payload.clone());
        }
        if !run.is_empty() {
            inject(&core, &key, run_start, run).await;
        }
        if let Some(info) = batch.last().and_then(|m| m.info().ok()) {
            let mut name = lock(&consumer);
            if *name != info.consumer {
                *name = info.consumer.to_string();
            }
        }
        if let Some((local_tail, _)) = core.pubsub.offsets(&key) {
            tail.send_replace(local_tail);
        }
    }
    core.pubsub.detach_feed(&key);
    tracing::info!(stream = %key, "cluster feed ended");
}

async fn inject(core: &Core, key: &StreamKey, first: u64, payloads: Vec<Bytes>) {
    for queue in core.pubsub.inject(key, first, payloads, Instant::now()) {
        wait_writable(core, &queue).await;
    }
}
