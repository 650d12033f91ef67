//! The event writer: moves a subscriber's queued batches onto its event
//! stream, several batches per write, until the client stops the stream,
//! the connection ends, or the broker drains.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use quinn::SendStream;

use super::ConnectionContext;
use crate::core::pubsub::Subscription;
use crate::core::queue::QueuedBatch;

/// Most batches written in one `write_all_chunks` call.
const MAX_BATCHES_PER_WRITE: usize = 64;

/// Writes live batches until the stream or the queue ends.
pub(crate) async fn write_live(ctx: &ConnectionContext, sub: &Subscription, mut uni: SendStream) {
    let mut batches: Vec<QueuedBatch> = Vec::with_capacity(MAX_BATCHES_PER_WRITE);
    let mut chunks: Vec<Bytes> = Vec::with_capacity(MAX_BATCHES_PER_WRITE);
    loop {
        sub.queue.drain_into(&mut batches, MAX_BATCHES_PER_WRITE);
        if batches.is_empty() {
            if sub.queue.is_closed() {
                // Drained after close: end the stream cleanly and let the
                // client read it to the end.
                let _ = uni.finish();
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), uni.stopped()).await;
                return;
            }
            tokio::select! {
                _ = sub.queue.readable() => continue,
                _ = uni.stopped() => return, // the client stopped the event stream: unsubscribe
            }
        }
        let events: u64 = batches.iter().map(|b| b.events).sum();
        chunks.extend(batches.drain(..).map(|b| b.frame));
        if uni.write_all_chunks(&mut chunks).await.is_err() {
            return;
        }
        chunks.clear();
        ctx.core
            .metrics
            .delivered_events
            .fetch_add(events, Ordering::Relaxed);
    }
}
