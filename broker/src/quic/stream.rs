//! One client-opened stream: read frames, run the session, write replies.
//!
//! Replies produced by one read are written with a single
//! `write_all_chunks` call. Subscriptions are started here in the order the
//! protocol fixes: open the event stream, write `event_stream_hello` and the
//! replay, hand the live queue to an event writer, then answer
//! `subscribed` on the control stream and end it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use felix_wire::{EventStreamHello, Frame, FrameDecoder, Header, Message, Subscribed};
use quinn::{RecvStream, SendStream};

use super::budget::{Budgets, ConnectionFull};
use super::{ConnectionContext, ShellLimits};
use crate::cluster::streams::{History, SentPublish, SubscribeFailure};
use crate::core::forward::{self as forward_reply, Forward};
use crate::core::pubsub::Subscription;
use crate::core::queue::{QueueWaker, SubscriberQueue};
use crate::core::request::{PublishRequest, RequestError};
use crate::core::session::{Now, Output, Role, Session};
use crate::core::Core;

/// Bytes a stream may read past a frame boundary without knowing the next
/// frame's length: enough for many small requests in one read.
const READ_AHEAD: usize = 64 * 1024;

/// Read-ahead a stream keeps while it waits for its peer. Small requests
/// then take one read instead of two (header, then body); 256 idle streams
/// hold the 1 MiB a connection has, and streams past those read headers
/// alone.
const IDLE_READ_AHEAD: usize = 4 * 1024;

fn now() -> Now {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Now {
        instant: Instant::now(),
        unix,
    }
}

/// Wakes a blocked publisher's task: the shell's side of [`QueueWaker`].
#[derive(Debug, Default)]
struct Wake(tokio::sync::Notify);

impl QueueWaker for Wake {
    fn wake(&self) {
        // Stores a permit if the task is not waiting yet: never lost.
        self.0.notify_one();
    }
}

/// Waits until a `block` queue has room (or closed, or lagging): the
/// shell's one way to wait on the core's queues (the cluster feed uses it
/// too). After `core.settings.queue_block_timeout` the queue is marked
/// lagging (counted, logged) and the wait ends: a subscriber that stopped
/// reading holds its publishers that long, not for ever.
pub(crate) async fn wait_writable(core: &Core, queue: &SubscriberQueue) {
    let wake = Arc::new(Wake::default());
    let deadline = tokio::time::Instant::now() + core.settings.queue_block_timeout;
    while queue.wake_when_writable(wake.clone()) {
        if tokio::time::timeout_at(deadline, wake.0.notified())
            .await
            .is_err()
        {
            if queue.mark_lagging() {
                core.metrics
                    .queue_block_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    timeout_ms = core.settings.queue_block_timeout.as_millis() as u64,
                    "a subscriber kept a publisher waiting too long; its queue drops until it catches up"
                );
            }
            return;
        }
    }
}

/// Runs a stream until it ends. `send` is `None` for publish-only streams.
pub(crate) async fn run(
    ctx: ConnectionContext,
    role: Role,
    send: Option<SendStream>,
    recv: RecvStream,
) {
    ctx.core
        .metrics
        .streams_accepted
        .fetch_add(1, Ordering::Relaxed);
    ctx.core
        .metrics
        .streams_open
        .fetch_add(1, Ordering::Relaxed);
    serve(&ctx, role, send, recv).await;
    ctx.core
        .metrics
        .streams_open
        .fetch_sub(1, Ordering::Relaxed);
}

/// Budget a stream holds for the bytes it buffers; given back on drop, so
/// every way out of [`serve`] returns it.
///
/// Two pools, so that waiting cannot deadlock: read-ahead at a frame
/// boundary comes from a small pool of its own and is never waited for;
/// a frame whose header has arrived is reserved whole from the frame pool
/// (waiting if need be), after which its read-ahead is handed back. A
/// stream waiting for frame budget therefore holds none of the frame pool,
/// and every holder of frame budget needs only bytes from the network.
struct Held<'a> {
    frames: &'a Budgets,
    read_ahead: &'a Budgets,
    /// Frame-pool bytes: the whole of the frame being received.
    frame: usize,
    /// Read-ahead-pool bytes.
    ahead: usize,
    /// The last read at a frame boundary filled all it asked for: data is
    /// streaming in, so the next one may take the full [`READ_AHEAD`].
    streaming: bool,
}

impl Held<'_> {
    fn total(&self) -> usize {
        self.frame + self.ahead
    }

    /// Keeps budget for `keep` bytes: what is buffered, or the whole frame
    /// whose header is buffered.
    fn shrink_to(&mut self, keep: usize) {
        let excess_ahead = self.ahead.min(self.total().saturating_sub(keep));
        self.read_ahead.release(excess_ahead);
        self.ahead -= excess_ahead;
        let excess_frame = self.total().saturating_sub(keep);
        self.frames.release(excess_frame);
        self.frame -= excess_frame;
    }
}

impl Held<'_> {
    /// After frames were consumed: keep budget for `keep` bytes (what is
    /// buffered, or the whole frame whose header is in). At a frame
    /// boundary the read-ahead stays at [`IDLE_READ_AHEAD`] rather than
    /// going back and forth every request: a request/response stream then
    /// touches no shared counter per request. The frame pool, which every
    /// connection shares, is given back except what still covers buffered
    /// bytes.
    fn settle(&mut self, keep: usize) {
        if keep > IDLE_READ_AHEAD {
            return self.shrink_to(keep);
        }
        if self.ahead > IDLE_READ_AHEAD {
            self.read_ahead.release(self.ahead - IDLE_READ_AHEAD);
            self.ahead = IDLE_READ_AHEAD;
        } else if self.ahead < IDLE_READ_AHEAD {
            self.ahead += self.read_ahead.try_take_up_to(IDLE_READ_AHEAD - self.ahead);
        }
        let frame_keep = keep.saturating_sub(self.ahead).min(self.frame);
        self.frames.release(self.frame - frame_keep);
        self.frame = frame_keep;
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.frames.release(self.frame);
        self.read_ahead.release(self.ahead);
    }
}

/// Budget to keep for what `buf` holds: the bytes themselves, or the whole
/// frame whose header is in (reserved whole, see [`read_more`]).
fn keep(decoder: &FrameDecoder, buf: &BytesMut) -> usize {
    if buf.len() >= Header::LEN {
        decoder.needed_envelope(buf)
    } else {
        buf.len()
    }
}

/// Reply bytes a stream queues before writing them out mid-read.
const REPLY_FLUSH_BYTES: usize = 256 * 1024;

/// Why a stream stopped waiting for its peer.
enum Stalled {
    /// No `auth` within the auth timeout of the stream opening.
    Auth,
    /// A frame did not arrive whole within the frame timeout.
    Frame,
}

impl Stalled {
    fn message(&self, limits: &ShellLimits) -> String {
        match self {
            Stalled::Auth => format!(
                "auth timeout: no auth frame within {} ms",
                limits.auth_timeout.as_millis()
            ),
            Stalled::Frame => format!(
                "frame timeout: frame not received whole within {} ms",
                limits.frame_timeout.as_millis()
            ),
        }
    }
}

async fn serve(
    ctx: &ConnectionContext,
    role: Role,
    mut send: Option<SendStream>,
    mut recv: RecvStream,
) {
    let limits = &ctx.limits;
    let mut session = Session::new(role);
    // Until the stream authenticates, only a small frame is accepted: an
    // `auth` is short, and an unknown peer must not make us buffer 16 MiB.
    let mut decoder =
        FrameDecoder::with_max_frame_bytes(limits.max_auth_frame_bytes.min(limits.max_frame_bytes));
    let auth_deadline = Instant::now() + limits.auth_timeout;
    let mut authenticated = false;
    // Grows with what arrives: an idle or abandoned stream costs no buffer.
    let mut buf = BytesMut::new();
    // Until the stream authenticates, its frames come out of a small pool of
    // its connection's own: unauthenticated peers cannot hold any of the
    // budget authenticated ones share.
    let mut held = Held {
        frames: &ctx.pre_auth,
        read_ahead: &ctx.read_ahead,
        frame: 0,
        ahead: 0,
        streaming: false,
    };
    // When the first byte of the frame now being received arrived.
    let mut partial_since: Option<Instant> = None;
    let mut replies: Vec<Bytes> = Vec::new();
    let mut replies_bytes = 0;
    // Cluster mode: publishes sent to JetStream, acks still to come.
    let mut sent = SentPublishes::default();
    loop {
        // Handle every whole frame already buffered.
        let mut close = false;
        loop {
            let outputs = match decoder.decode_envelope(&mut buf) {
                Ok(Some(env)) => session.on_frame(&ctx.core, env.header.flags, env.payload, now()),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "framing error; ending the stream");
                    session.on_framing_error(&ctx.core, &e)
                }
            };
            if !authenticated && session.negotiated_flags().is_some() {
                authenticated = true;
                decoder.set_max_frame_bytes(limits.max_frame_bytes);
                ctx.authenticated.store(true, Ordering::Release);
                // From now on frames come out of the shared pools.
                held.frames.release(held.frame);
                held.frame = 0;
                held.frames = &ctx.budgets;
            }
            // The frame is consumed: give its budget back before anything
            // below waits on the peer (a reply it does not read, a `block`
            // queue, a stalled replay), or a stalled reader would pin it.
            held.settle(keep(&decoder, &buf));
            for output in outputs {
                // Replies keep request order: earlier publishes' acks first.
                // (Empty on one node: a branch, no await, on the hot path.)
                if !sent.is_empty() && !matches!(output, Output::Forward(Forward::Publish(_))) {
                    sent.acks(ctx, role, &mut replies).await;
                }
                match output {
                    Output::Send(b) => {
                        replies_bytes += b.len();
                        replies.push(b);
                        // Pipelined requests must not pile up replies
                        // (a 64 KiB read of cache gets for a 12 MiB value
                        // would be ~650 copies of 16 MiB).
                        if replies_bytes >= REPLY_FLUSH_BYTES {
                            replies_bytes = 0;
                            if !flush_replies(&mut send, &mut replies).await {
                                close = true;
                            }
                        }
                    }
                    Output::Close => close = true,
                    Output::Timeout(_) => ctx.timer.notify_one(),
                    Output::Wait(queues) => {
                        replies_bytes = 0;
                        flush_replies(&mut send, &mut replies).await;
                        for q in queues {
                            wait_writable(&ctx.core, &q).await;
                        }
                    }
                    Output::Subscribe(sub) => {
                        replies_bytes = 0;
                        flush_replies(&mut send, &mut replies).await;
                        start_subscription(ctx, sub, None, &mut replies).await;
                        close = true;
                    }
                    Output::Forward(Forward::Publish(request)) if ctx.cluster.is_some() => {
                        sent.send(ctx, request).await;
                    }
                    Output::Forward(request) => {
                        if forward(ctx, role, request, &mut send, &mut replies).await {
                            close = true;
                        }
                    }
                }
            }
            if close {
                break;
            }
        }
        if !sent.is_empty() {
            sent.acks(ctx, role, &mut replies).await;
        }
        replies_bytes = 0;
        if !flush_replies(&mut send, &mut replies).await {
            close = true;
        }
        if close || session.is_closed() {
            drop(held);
            finish(send, recv).await;
            return;
        }
        held.settle(keep(&decoder, &buf));
        partial_since = match (buf.is_empty(), partial_since) {
            (true, _) => None,
            (false, None) => Some(Instant::now()),
            (false, since) => since,
        };
        let deadline = match partial_since {
            _ if !authenticated => Some((auth_deadline, Stalled::Auth)),
            Some(since) => Some((since + limits.frame_timeout, Stalled::Frame)),
            None => None,
        };
        let read = read_more(&mut recv, &mut held, &decoder, &buf);
        let result = match &deadline {
            Some((at, _)) => tokio::time::timeout_at((*at).into(), read).await.ok(),
            None => Some(read.await),
        };
        match result {
            Some(Ok(Some(chunk))) => buf.extend_from_slice(&chunk.bytes),
            Some(Ok(None)) => {
                // The client finished its side: nothing more to answer.
                if !buf.is_empty() {
                    let e = felix_wire::DecodeError::Incomplete {
                        needed: decoder.needed_envelope(&buf),
                        available: buf.len(),
                    };
                    for output in session.on_framing_error(&ctx.core, &e) {
                        if let Output::Send(b) = output {
                            replies.push(b);
                        }
                    }
                    flush_replies(&mut send, &mut replies).await;
                }
                drop(held);
                finish(send, recv).await;
                return;
            }
            Some(Err(ReadFailure::Quinn(e))) => {
                tracing::debug!(error = %e, "stream read failed");
                return;
            }
            Some(Err(ReadFailure::Budget(e))) => {
                ctx.core
                    .metrics
                    .receive_budget_refusals
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "ending a stream over its connection's budget");
                if role == Role::Control {
                    replies.push(error_bytes(e.to_string()));
                    flush_replies(&mut send, &mut replies).await;
                }
                drop(held);
                finish(send, recv).await;
                return;
            }
            None => {
                let stalled = deadline.map(|(_, why)| why).unwrap_or(Stalled::Frame);
                let counter = match stalled {
                    Stalled::Auth => &ctx.core.metrics.auth_timeouts,
                    Stalled::Frame => &ctx.core.metrics.frames_timed_out,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let text = stalled.message(limits);
                tracing::debug!(%text, "ending a stalled stream");
                if role == Role::Control {
                    replies.push(error_bytes(text));
                    flush_replies(&mut send, &mut replies).await;
                }
                drop(held);
                finish(send, recv).await;
                return;
            }
        }
    }
}

/// Reads the next chunk, holding receive budget for every byte it may
/// return.
///
/// - Once the buffered bytes hold a header, the rest of that frame is
///   reserved whole and read.
/// - At a frame boundary the stream reads into the read-ahead it holds
///   ([`IDLE_READ_AHEAD`], kept by [`Held::settle`]), or up to
///   [`READ_AHEAD`] while data streams in (the last read filled its
///   buffer), so back-to-back small frames share one read. With no
///   read-ahead free it reads the next header's 12 bytes alone: the only
///   unbudgeted bytes a stream holds.
async fn read_more(
    recv: &mut RecvStream,
    held: &mut Held<'_>,
    decoder: &FrameDecoder,
    buf: &BytesMut,
) -> Result<Option<quinn::Chunk>, ReadFailure> {
    if buf.len() >= Header::LEN {
        // `needed` is the whole frame once the header parsed; the decoder
        // already refused a header over the cap.
        let frame = decoder.needed_envelope(buf);
        if frame > held.frame {
            held.frames.take(frame - held.frame).await?;
            held.frame = frame;
            // The frame pool now covers the whole frame.
            held.read_ahead.release(held.ahead);
            held.ahead = 0;
        }
        return Ok(recv
            .read_chunk(frame.saturating_sub(buf.len()).max(1), true)
            .await?);
    }
    // Streaming in: read as much as the read-ahead allows. Otherwise keep
    // what `settle` left (a small request arrives in one read).
    if held.streaming && held.total() < buf.len() + READ_AHEAD {
        held.ahead += held
            .read_ahead
            .try_take_up_to(buf.len() + READ_AHEAD - held.total());
    }
    let max = held
        .total()
        .saturating_sub(buf.len())
        .max(Header::LEN - buf.len());
    let chunk = recv.read_chunk(max, true).await?;
    held.streaming = chunk.as_ref().is_some_and(|c| c.bytes.len() >= max);
    Ok(chunk)
}

/// Why the next read did not happen.
#[derive(Debug, thiserror::Error)]
enum ReadFailure {
    /// The stream or connection failed.
    #[error(transparent)]
    Quinn(#[from] quinn::ReadError),
    /// The frame does not fit what is left of the connection's budget.
    #[error(transparent)]
    Budget(#[from] ConnectionFull),
}

fn error_bytes(message: String) -> Bytes {
    Frame::Json(Message::from(felix_wire::ErrorMessage { message }))
        .to_bytes()
        .unwrap_or_default()
}

/// Ends a subscription when its credential expires: the control stream
/// that checked the token has ended, but the event stream would otherwise
/// deliver for ever. Closing the queue lets the writer finish the stream.
fn end_at_expiry(ctx: &ConnectionContext, sub: &Subscription, exp: u64) {
    let (core, key, queue) = (ctx.core.clone(), sub.key.clone(), sub.queue.clone());
    let left = exp.saturating_sub(now().unix);
    ctx.tasks.spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(left)) => {
                if !queue.is_closed() {
                    core.metrics.auth_expired.fetch_add(1, Ordering::Relaxed);
                    core.pubsub.unsubscribe_queue(&key, &queue);
                }
            }
            () = closed(&queue) => {}
        }
    });
}

/// Resolves once the queue is closed (the subscription ended first).
async fn closed(queue: &SubscriberQueue) {
    let wake = Arc::new(Wake::default());
    queue.wake_when_closed(wake.clone());
    while !queue.is_closed() {
        wake.0.notified().await;
    }
}

/// Writes queued replies in one call; false if the stream is gone.
async fn flush_replies(send: &mut Option<SendStream>, replies: &mut Vec<Bytes>) -> bool {
    if replies.is_empty() {
        return true;
    }
    let Some(s) = send.as_mut() else {
        replies.clear();
        return true;
    };
    let ok = s.write_all_chunks(replies).await.is_ok();
    replies.clear();
    ok
}

async fn finish(send: Option<SendStream>, mut recv: RecvStream) {
    let _ = recv.stop(0u32.into());
    if let Some(mut s) = send {
        let _ = s.finish();
        // Let the peer read our last reply before the stream is dropped.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.stopped()).await;
    }
}

/// Cluster mode: carries a forwarded request out on NATS JetStream and
/// queues its reply. Requests on one stream are carried out one at a time,
/// in order, so acks keep the order of their publishes. Returns whether
/// the stream ends.
async fn forward(
    ctx: &ConnectionContext,
    role: Role,
    request: Forward,
    send: &mut Option<SendStream>,
    replies: &mut Vec<Bytes>,
) -> bool {
    let Some(cluster) = ctx.cluster.as_ref() else {
        // A core marked clustered always runs with a cluster; if not, say so.
        replies.push(forward_reply::error_reply("cluster mode is not running"));
        return true;
    };
    let control = role == Role::Control;
    match request {
        Forward::Publish(request) => {
            let result = cluster.publish(&request.key, &request.payloads).await;
            publish_reply(ctx, control, &request, result, replies);
            false
        }
        Forward::CachePut(put) => match cluster.cache_put(&put).await {
            Ok(()) => {
                let (reply, close) = forward_reply::cache_put_reply(put.request_id);
                replies.push(reply);
                close
            }
            Err(why) => {
                replies.push(forward_reply::error_reply(why.to_string()));
                true
            }
        },
        Forward::CacheGet(get) => match cluster.cache_get(&get).await {
            Ok(value) => {
                let (reply, close) = forward_reply::cache_get_reply(get, value);
                replies.push(reply);
                close
            }
            Err(why) => {
                replies.push(forward_reply::error_reply(why.to_string()));
                true
            }
        },
        Forward::Subscribe(req) => {
            match cluster.subscribe(&req).await {
                Ok((mut sub, history)) => {
                    // The token's expiry ends a clustered subscription too.
                    sub.expires_at_unix = req.expires_at_unix;
                    flush_replies(send, replies).await;
                    start_subscription(ctx, sub, history, replies).await;
                }
                Err(SubscribeFailure::Refused(e)) => {
                    replies.push(forward_reply::subscribe_error_reply(&e))
                }
                Err(SubscribeFailure::Cluster(e)) => {
                    replies.push(forward_reply::error_reply(e.to_string()))
                }
            }
            true
        }
    }
}

/// Counts a cluster publish and queues its ack (if it gets one).
fn publish_reply(
    ctx: &ConnectionContext,
    control: bool,
    request: &PublishRequest,
    result: Result<u64, forward_reply::BackplaneError>,
    replies: &mut Vec<Bytes>,
) {
    let result = result.map(|_| ()).map_err(RequestError::from);
    if let Ok(()) = result {
        let events = request.payloads.len() as u64;
        let bytes: usize = request.payloads.iter().map(Bytes::len).sum();
        let m = &ctx.core.metrics;
        m.published_events.fetch_add(events, Ordering::Relaxed);
        m.published_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    if let Some(ack) = request.ack(control, &result) {
        replies.push(ack.to_bytes().unwrap_or_default());
    }
}

/// Cluster mode: a stream's publishes sent to JetStream as their frames
/// are read, their acks awaited (in order) before any other reply and
/// before the stream reads more. A client that pipelines publishes then
/// pays one JetStream round trip per read, not per publish; JetStream
/// stores them in the order sent. What waits here is bounded by what one
/// read buffered (the receive budget).
#[derive(Default)]
struct SentPublishes(std::collections::VecDeque<(PublishRequest, SentPublish)>);

impl SentPublishes {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sends a publish now; its ack comes with [`SentPublishes::acks`].
    async fn send(&mut self, ctx: &ConnectionContext, request: PublishRequest) {
        if let Some(cluster) = &ctx.cluster {
            let sent = cluster.send_publish(&request.key, &request.payloads).await;
            self.0.push_back((request, sent));
        }
    }

    /// Waits for every sent publish's acks, in order, and queues replies.
    async fn acks(&mut self, ctx: &ConnectionContext, role: Role, replies: &mut Vec<Bytes>) {
        let Some(cluster) = &ctx.cluster else { return };
        while let Some((request, sent)) = self.0.pop_front() {
            let result = cluster.publish_acked(sent).await;
            publish_reply(ctx, role == Role::Control, &request, result, replies);
        }
    }
}

/// Opens the event stream, writes hello, history from the cluster (cluster
/// mode), the replay, hands the queue to a writer, and queues the
/// `subscribed` (or `error`) reply.
async fn start_subscription(
    ctx: &ConnectionContext,
    mut sub: Subscription,
    mut history: Option<History>,
    replies: &mut Vec<Bytes>,
) {
    let reply = |m: Message| Frame::Json(m).to_bytes().unwrap_or_default();
    let count = ctx.subscriptions.fetch_add(1, Ordering::AcqRel) + 1;
    if count > ctx.core.settings.max_subscriptions_per_connection {
        ctx.subscriptions.fetch_sub(1, Ordering::AcqRel);
        ctx.core.pubsub.unsubscribe(&sub);
        replies.push(reply(Message::from(felix_wire::ErrorMessage {
            message: format!(
                "subscription limit reached: {} per connection",
                ctx.core.settings.max_subscriptions_per_connection
            ),
        })));
        return;
    }
    let mut uni = match ctx.connection.open_uni().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "opening an event stream failed");
            ctx.subscriptions.fetch_sub(1, Ordering::AcqRel);
            ctx.core.pubsub.unsubscribe(&sub);
            replies.push(reply(Message::from(felix_wire::ErrorMessage {
                message: "could not open the event stream".into(),
            })));
            return;
        }
    };
    // History is encoded batch by batch as the peer reads it: a reader
    // that stalls holds one batch here, never a copy of the whole ring.
    let mut chunks: Vec<Bytes> = vec![reply(Message::from(EventStreamHello {
        subscription_id: sub.id,
    }))];
    // Cluster mode: what the node's ring no longer has comes from
    // JetStream first, a batch at a time, as the peer reads it.
    while let Some(h) = history.as_mut() {
        let batch = match h.next_batch().await {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "reading history from the cluster failed");
                ctx.core
                    .metrics
                    .cluster_failures
                    .fetch_add(1, Ordering::Relaxed);
                ctx.subscriptions.fetch_sub(1, Ordering::AcqRel);
                ctx.core.pubsub.unsubscribe(&sub);
                // The event stream ends without `subscribed`: the client
                // sees the failure and may subscribe again from its offset.
                let _ = uni.reset(0u32.into());
                replies.push(reply(Message::from(felix_wire::ErrorMessage {
                    message: format!("cluster unavailable: {e}"),
                })));
                return;
            }
        };
        if batch.skipped > 0 {
            sub.queue.count_dropped(batch.skipped);
            ctx.core
                .metrics
                .dropped_events
                .fetch_add(batch.skipped, Ordering::Relaxed);
        }
        if batch.events > 0 {
            chunks.push(batch.frame);
            let m = &ctx.core.metrics;
            m.delivered_events
                .fetch_add(batch.events, Ordering::Relaxed);
            m.cluster_history_events
                .fetch_add(batch.events, Ordering::Relaxed);
        }
        if uni.write_all_chunks(&mut chunks).await.is_err() {
            ctx.subscriptions.fetch_sub(1, Ordering::AcqRel);
            ctx.core.pubsub.unsubscribe(&sub);
            return;
        }
        chunks.clear();
    }
    loop {
        let next = sub.replay.next_batch();
        if let Some(batch) = &next {
            if batch.skipped > 0 {
                sub.queue.count_dropped(batch.skipped);
                ctx.core
                    .metrics
                    .dropped_events
                    .fetch_add(batch.skipped, Ordering::Relaxed);
            }
            if batch.events > 0 {
                chunks.push(batch.frame.clone());
                ctx.core
                    .metrics
                    .delivered_events
                    .fetch_add(batch.events, Ordering::Relaxed);
            }
        }
        if uni.write_all_chunks(&mut chunks).await.is_err() {
            ctx.subscriptions.fetch_sub(1, Ordering::AcqRel);
            ctx.core.pubsub.unsubscribe(&sub);
            return;
        }
        chunks.clear();
        if next.is_none() {
            break;
        }
    }
    replies.push(reply(Message::from(Subscribed {
        subscription_id: sub.id,
    })));
    if let Some(exp) = sub.expires_at_unix {
        end_at_expiry(ctx, &sub, exp);
    }
    ctx.events.register(ctx, sub, uni);
}
