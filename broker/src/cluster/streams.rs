//! Felix streams on JetStream streams.
//!
//! One JetStream stream per felix stream (subject `{prefix}.s.{hash}`,
//! see [`super::names`]). A felix offset is the JetStream sequence minus
//! one (felix offsets start at 0, JetStream sequences at 1), so offsets
//! are the same on every node.
//!
//! - Publish: every event is sent, then every ack awaited; the client's
//!   ack goes out only after JetStream acked all of them (stored with the
//!   configured replicas). The two halves are apart
//!   ([`Cluster::send_publish`], [`Cluster::publish_acked`]) so the shell
//!   can send a stream's pipelined publishes before it awaits their acks.
//! - Feed: the first local subscriber of a stream starts the node's one
//!   consumer for it ([`super::feed`]); the last one leaving stops it.
//! - Subscribe: the start is resolved against the JetStream stream's
//!   first and last sequence (`too_old`, `in_future`); history older than
//!   the node's replay ring is read from JetStream by a short-lived
//!   ordered consumer (deleted once read), then the ring's part, then
//!   live: no gap, no duplicate, on any node.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;

use async_nats::jetstream::consumer::push::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::{Consumer, DeliverPolicy};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::stream::{self, Stream};

use super::feed::ConsumerCleanup;
use super::names::stream_names;
use super::{Cluster, ClusterError};
use crate::core::forward::{BackplaneError, ClusterSubscribe};
use crate::core::pubsub::{StreamKey, SubscribeError, Subscription};
use felix_wire::StartPosition;

/// Why a cluster subscribe was refused.
#[derive(Debug)]
pub enum SubscribeFailure {
    /// Refused as on one node (cursor errors included).
    Refused(SubscribeError),
    /// NATS could not answer.
    Cluster(BackplaneError),
}

/// History a subscriber needs from JetStream before the node's ring:
/// offsets `from..until`, read by one short-lived ordered consumer.
pub struct History {
    messages: Option<Ordered>,
    /// Deletes the consumer once read (after `messages` is dropped).
    cleanup: Option<ConsumerCleanup>,
    /// A message read past a gap, kept for the next batch.
    stash: Option<async_nats::jetstream::Message>,
    id: u64,
    offsets: bool,
    /// Next offset to send.
    next: u64,
    until: u64,
    max_events: usize,
    max_bytes: usize,
    timeout: Duration,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("next", &self.next)
            .field("until", &self.until)
            .finish()
    }
}

/// One batch of history.
#[derive(Debug)]
pub struct HistoryBatch {
    /// The encoded `0x0002`/`0x0022` frame (empty if only skips).
    pub frame: Bytes,
    /// Events in it.
    pub events: u64,
    /// Events JetStream no longer had (retention) when read.
    pub skipped: u64,
}

impl History {
    /// Reads and encodes the next batch, `Ok(None)` when done.
    pub async fn next_batch(&mut self) -> Result<Option<HistoryBatch>, ClusterError> {
        if self.next >= self.until {
            self.messages = None;
            self.cleanup = None;
            return Ok(None);
        }
        let Some(messages) = self.messages.as_mut() else {
            return Ok(None);
        };
        let mut payloads = Vec::new();
        let mut base = None;
        let mut bytes = 0;
        let mut skipped = 0;
        while self.next < self.until && payloads.len() < self.max_events && bytes < self.max_bytes {
            let msg = match self.stash.take() {
                Some(m) => m,
                None => match tokio::time::timeout(self.timeout, messages.next()).await {
                    Ok(Some(Ok(m))) => m,
                    Ok(Some(Err(e))) => return Err(ClusterError::js("reading history", e)),
                    Ok(None) | Err(_) => {
                        return Err(ClusterError::js("reading history", "no message in time"))
                    }
                },
            };
            let seq = msg
                .info()
                .map_err(|e| ClusterError::js("reading history", e))?
                .stream_sequence;
            let offset = seq.saturating_sub(1);
            if offset < self.next {
                continue;
            }
            if offset > self.next {
                // Retention removed events meanwhile: a batch holds
                // consecutive offsets only, so a gap ends it.
                if !payloads.is_empty() {
                    self.stash = Some(msg);
                    break;
                }
                let to = offset.min(self.until);
                skipped += to - self.next;
                self.next = to;
                if offset >= self.until {
                    break;
                }
            }
            base.get_or_insert(offset);
            bytes += msg.payload.len();
            payloads.push(msg.payload.clone());
            self.next += 1;
        }
        let events = payloads.len() as u64;
        let frame = match base {
            Some(base) => {
                crate::core::pubsub::encode_history(self.id, self.offsets, base, payloads)
            }
            None => Bytes::new(),
        };
        Ok(Some(HistoryBatch {
            frame,
            events,
            skipped,
        }))
    }
}

/// A publish sent to JetStream whose acks are still to come (or why it
/// could not be sent).
pub struct SentPublish(Result<Vec<PublishAckFuture>, ClusterError>);

impl std::fmt::Debug for SentPublish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Ok(acks) => write!(f, "SentPublish({} acks to come)", acks.len()),
            Err(e) => write!(f, "SentPublish(failed: {e})"),
        }
    }
}

/// A failed JetStream ack, said in felix terms.
fn ack_error(e: async_nats::jetstream::context::PublishError) -> ClusterError {
    use async_nats::jetstream::context::PublishErrorKind;
    match e.kind() {
        // NATS's "no responders": nobody stores the stream right now.
        // async-nats calls it "no stream found", which misleads during
        // the election that follows a NATS node's death.
        PublishErrorKind::StreamNotFound => ClusterError::js(
            "waiting for JetStream's ack",
            "no JetStream server answered for the stream (a leader election after a NATS node failed, or the stream was deleted)",
        ),
        _ => ClusterError::js("waiting for JetStream's ack", e),
    }
}

/// `(oldest retained offset, tail)` of a JetStream stream.
fn offsets(state: &stream::State) -> (u64, u64) {
    let tail = state.last_sequence;
    if state.messages == 0 {
        (tail, tail)
    } else {
        (state.first_sequence.saturating_sub(1), tail)
    }
}

impl Cluster {
    /// The JetStream stream of a felix stream, made on first use.
    async fn stream(&self, key: &StreamKey) -> Result<Stream, ClusterError> {
        if let Some(s) = self.streams.lock().await.get(key) {
            return Ok(s.clone());
        }
        self.connected()?;
        let names = stream_names(&self.settings.prefix, key);
        let config = stream::Config {
            name: names.stream.clone(),
            description: Some(format!("felix stream {key}")),
            subjects: vec![names.subject],
            num_replicas: self.settings.replicas,
            max_bytes: self.settings.stream_max_bytes,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        };
        let s = self
            .js
            .get_or_create_stream(config)
            .await
            .map_err(|e| ClusterError::js("creating the JetStream stream", e))?;
        self.streams.lock().await.insert(key.clone(), s.clone());
        Ok(s)
    }

    /// Stores `payloads` in the stream's JetStream stream; the offset of
    /// the first. Returns only once JetStream acked every one.
    pub async fn publish(
        &self,
        key: &StreamKey,
        payloads: &[Bytes],
    ) -> Result<u64, BackplaneError> {
        let sent = self.send_publish(key, payloads).await;
        self.publish_acked(sent).await
    }

    /// Sends `payloads` to the stream's JetStream stream without waiting
    /// for their acks: publishes sent one after another are stored in
    /// that order. [`Cluster::publish_acked`] waits for the acks.
    pub async fn send_publish(&self, key: &StreamKey, payloads: &[Bytes]) -> SentPublish {
        SentPublish(self.try_send_publish(key, payloads).await)
    }

    /// Waits for the acks of a publish [`Cluster::send_publish`] sent;
    /// the offset of its first event.
    pub async fn publish_acked(&self, sent: SentPublish) -> Result<u64, BackplaneError> {
        let acks = sent.0.map_err(|e| self.failed("publish", e))?;
        let mut first = None;
        for ack in acks {
            let ack = ack
                .await
                .map_err(|e| self.failed("publish", ack_error(e)))?;
            first.get_or_insert(ack.sequence.saturating_sub(1));
        }
        Ok(first.unwrap_or(0))
    }

    async fn try_send_publish(
        &self,
        key: &StreamKey,
        payloads: &[Bytes],
    ) -> Result<Vec<PublishAckFuture>, ClusterError> {
        self.connected()?;
        let max = self.max_payload();
        if let Some(big) = payloads.iter().find(|p| p.len() > max) {
            return Err(ClusterError::TooLarge {
                len: big.len(),
                max,
            });
        }
        self.stream(key).await?;
        self.connected()?;
        let subject = stream_names(&self.settings.prefix, key).subject;
        // Sent back to back, acked later: one round trip for the batch.
        let mut acks = Vec::with_capacity(payloads.len());
        for p in payloads {
            acks.push(
                self.js
                    .publish(subject.clone(), p.clone())
                    .await
                    .map_err(|e| ClusterError::js("publishing", e))?,
            );
        }
        Ok(acks)
    }

    /// Resolves a subscribe against JetStream, makes sure the node's feed
    /// runs, and registers the subscriber: the subscription, and the
    /// history to send before its replay.
    pub async fn subscribe(
        &self,
        req: &ClusterSubscribe,
    ) -> Result<(Subscription, Option<History>), SubscribeFailure> {
        let cluster = |e: ClusterError| SubscribeFailure::Cluster(self.failed("subscribe", e));
        let stream = self.stream(&req.key).await.map_err(cluster)?;
        let info = stream
            .get_info()
            .await
            .map_err(|e| cluster(ClusterError::js("reading the stream's state", e)))?;
        let (oldest, tail) = offsets(&info.state);
        let from = match req.start {
            StartPosition::Latest => None,
            StartPosition::Earliest => Some(oldest),
            StartPosition::Offset(n) if n > tail => {
                return Err(SubscribeFailure::Refused(SubscribeError::InFuture {
                    requested: n,
                    available: tail,
                }))
            }
            StartPosition::Offset(n) if n < oldest => {
                return Err(SubscribeFailure::Refused(SubscribeError::TooOld {
                    requested: n,
                    available: oldest,
                }))
            }
            StartPosition::Offset(n) => Some(n),
        };
        // Held until the subscriber is registered: the feed is not
        // stopped under this subscribe.
        let mut joining = self.join_feed(&req.key, &stream).await.map_err(cluster)?;
        let pubsub = &self.core.pubsub;
        let from = match from {
            Some(n) => {
                // The feed may not have read up to `n` yet: wait for it,
                // so live events start exactly at the subscriber's start.
                let reached = tokio::time::timeout(
                    self.settings.timeout,
                    joining.tail.wait_for(|tail| *tail >= n),
                )
                .await;
                if !matches!(reached, Ok(Ok(_))) {
                    return Err(cluster(ClusterError::js(
                        "subscribing",
                        "this node's feed is behind the stream",
                    )));
                }
                n
            }
            None => pubsub.offsets(&req.key).map_or(0, |(tail, _)| tail),
        };
        let (sub, ring_from) = pubsub
            .subscribe_from(&req.key, req.id, from, req.offsets)
            .map_err(SubscribeFailure::Refused)?;
        drop(joining);
        if from >= ring_from {
            return Ok((sub, None));
        }
        let messages = match self.ordered(&stream, from + 1).await {
            Ok(c) => {
                let cleanup = ConsumerCleanup::new(stream.clone(), c.cached_info().name.clone());
                c.messages()
                    .await
                    .map(|m| (m, cleanup))
                    .map_err(|e| ClusterError::js("reading history", e))
            }
            Err(e) => Err(e),
        };
        let (messages, cleanup) = match messages {
            Ok(m) => m,
            Err(e) => {
                pubsub.unsubscribe(&sub);
                return Err(cluster(e));
            }
        };
        let settings = &self.core.settings;
        Ok((
            sub,
            Some(History {
                messages: Some(messages),
                cleanup: Some(cleanup),
                stash: None,
                id: req.id,
                offsets: req.offsets,
                next: from,
                until: ring_from,
                max_events: settings.batch_max_events.max(1),
                max_bytes: settings.batch_max_bytes,
                timeout: self.settings.timeout,
            }),
        ))
    }

    /// An ordered push consumer from stream sequence `start` (its client
    /// side re-creates it after a gap or a reconnect, in order).
    pub(crate) async fn ordered(
        &self,
        stream: &Stream,
        start: u64,
    ) -> Result<Consumer<OrderedConfig>, ClusterError> {
        stream
            .create_consumer(OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start.max(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| ClusterError::js("creating a consumer", e))
    }
}
