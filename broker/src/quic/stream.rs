//! One client-opened stream: read frames, run the session, write replies.
//!
//! Replies produced by one read are written with a single
//! `write_all_chunks` call. Subscriptions are started here in the order the
//! protocol fixes: open the event stream, write `event_stream_hello` and the
//! replay, hand the live queue to an event writer, then answer
//! `subscribed` on the control stream and end it.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use felix_wire::{EventStreamHello, Frame, FrameDecoder, Message, Subscribed};
use quinn::{RecvStream, SendStream};

use super::ConnectionContext;
use crate::core::pubsub::{StreamKey, Subscription};
use crate::core::session::{Now, Output, Role, Session};

/// Bytes asked of QUIC per read.
const READ_CHUNK: usize = 64 * 1024;

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

/// Arms a flush timer for a stream's pending events.
pub(crate) fn schedule_flush(ctx: &ConnectionContext, key: StreamKey, at: Instant) {
    let core = ctx.core.clone();
    ctx.tasks.spawn(async move {
        let mut at = at;
        loop {
            tokio::time::sleep_until(at.into()).await;
            let (waits, next) = core.pubsub.flush_due(&key, Instant::now(), false);
            drop(waits); // timers never block: a `block` publisher waits on its own publish
            match next {
                Some(n) => at = n,
                None => return,
            }
        }
    });
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

async fn serve(
    ctx: &ConnectionContext,
    role: Role,
    mut send: Option<SendStream>,
    mut recv: RecvStream,
) {
    let mut session = Session::new(role);
    let mut decoder = FrameDecoder::with_max_frame_bytes(ctx.max_frame_bytes);
    // Grows with what arrives: an idle or abandoned stream costs no buffer.
    let mut buf = BytesMut::new();
    let mut replies: Vec<Bytes> = Vec::new();
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
            for output in outputs {
                match output {
                    Output::Send(b) => replies.push(b),
                    Output::Close => close = true,
                    Output::FlushAt(key, at) => schedule_flush(ctx, key, at),
                    Output::Wait(queues) => {
                        flush_replies(&mut send, &mut replies).await;
                        for q in queues {
                            q.wait_writable().await;
                        }
                    }
                    Output::Subscribe(sub) => {
                        flush_replies(&mut send, &mut replies).await;
                        start_subscription(ctx, sub, &mut replies).await;
                        close = true;
                    }
                }
            }
            if close {
                break;
            }
        }
        if !flush_replies(&mut send, &mut replies).await {
            close = true;
        }
        if close || session.is_closed() {
            finish(send, recv).await;
            return;
        }
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                // The client finished its side: nothing more to answer.
                if !buf.is_empty() {
                    let e = felix_wire::DecodeError::Incomplete {
                        needed: decoder.needed(&buf),
                        available: buf.len(),
                    };
                    for output in session.on_framing_error(&ctx.core, &e) {
                        if let Output::Send(b) = output {
                            replies.push(b);
                        }
                    }
                    flush_replies(&mut send, &mut replies).await;
                }
                finish(send, recv).await;
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "stream read failed");
                return;
            }
        }
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

/// Opens the event stream, writes hello and replay, hands the queue to a
/// writer, and queues the `subscribed` (or `error`) reply.
async fn start_subscription(ctx: &ConnectionContext, sub: Subscription, replies: &mut Vec<Bytes>) {
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
    let mut first: Vec<Bytes> = Vec::with_capacity(1 + sub.replay.len());
    first.push(reply(Message::from(EventStreamHello {
        subscription_id: sub.id,
    })));
    first.extend(sub.replay.iter().cloned());
    if uni.write_all_chunks(&mut first).await.is_err() {
        ctx.subscriptions.fetch_sub(1, Ordering::AcqRel);
        ctx.core.pubsub.unsubscribe(&sub);
        return;
    }
    ctx.core
        .metrics
        .delivered_events
        .fetch_add(sub.replay_events, Ordering::Relaxed);
    replies.push(reply(Message::from(Subscribed {
        subscription_id: sub.id,
    })));
    ctx.events.register(ctx, sub, uni);
}
