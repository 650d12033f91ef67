//! The event writer: one task per connection moves every subscription's
//! queued batches onto its event stream.
//!
//! Why one task per connection and not one per subscription: each stream
//! write wakes quinn's connection driver, and tokio runs a task woken by
//! the running task next (its LIFO slot). With a writer per subscription,
//! the driver therefore ran after every single write and sent each
//! delivery in a datagram of its own: one publish to 25,000 subscriptions
//! cost ~23,700 datagrams. Writing every ready subscription's stream in
//! one pass lets the driver pack many stream frames into each datagram.
//!
//! A stream that cannot take more (flow control: a slow or stalled
//! subscriber) keeps its batches and is retried when quinn wakes this task;
//! the other subscriptions of the connection are served meanwhile, so a
//! stalled subscriber never stalls another.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use quinn::SendStream;
use tokio::sync::Notify;

use super::ConnectionContext;
use crate::core::pubsub::Subscription;
use crate::core::queue::QueuedBatch;

/// Most batches taken from one queue per write.
const MAX_BATCHES_PER_WRITE: usize = 64;

/// Writes in a row to one stream before moving on to the next (fairness).
const MAX_WRITES_PER_TURN: usize = 4;

/// How long a finished event stream may take to be acknowledged by the
/// client on a drain, before the writer stops waiting for it.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// The event writer of one connection.
#[derive(Default)]
pub(crate) struct EventWriter {
    /// Woken by every subscription queue of the connection.
    wake: Arc<Notify>,
    /// Subscriptions registered but not yet taken over by the task.
    incoming: Mutex<Vec<Slot>>,
    /// Whether the writer task is running.
    running: AtomicBool,
}

/// One subscription served by the writer.
struct Slot {
    sub: Subscription,
    stream: SendStream,
    /// Frames taken from the queue and not yet fully written.
    pending: Vec<Bytes>,
    /// Index of the first not fully written frame of `pending`.
    at: usize,
    /// Events in `pending`, counted as delivered once written.
    pending_events: u64,
    /// Set when the client stopped the event stream (unsubscribed) or the
    /// connection ended.
    stopped: Arc<AtomicBool>,
}

/// What serving a slot left it as.
enum Turn {
    /// Nothing more to write until its queue or its stream wakes us.
    Idle,
    /// More is queued: serve it again in this pass.
    More,
    /// The subscription ended (finished, stopped, or its stream failed).
    Done,
}

impl EventWriter {
    fn lock_incoming(&self) -> MutexGuard<'_, Vec<Slot>> {
        self.incoming.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a subscription (whose hello and replay are already written)
    /// to the connection's writer, starting it if it is not running.
    pub(crate) fn register(
        self: &Arc<Self>,
        ctx: &ConnectionContext,
        sub: Subscription,
        stream: SendStream,
    ) {
        sub.queue.also_wake(self.wake.clone());
        let stopped = Arc::new(AtomicBool::new(false));
        // `stopped()` resolves when the client stops the stream (how
        // felix-wire unsubscribes) or the connection ends, even while the
        // stream is idle.
        let watch = stream.stopped();
        let (flag, wake) = (stopped.clone(), self.wake.clone());
        ctx.tasks.spawn(async move {
            let _ = watch.await;
            flag.store(true, Ordering::Release);
            wake.notify_one();
        });
        self.lock_incoming().push(Slot {
            sub,
            stream,
            pending: Vec::new(),
            at: 0,
            pending_events: 0,
            stopped,
        });
        self.wake.notify_one();
        if !self.running.swap(true, Ordering::AcqRel) {
            let (writer, ctx2) = (self.clone(), ctx.clone());
            ctx.writers.spawn(async move { writer.run(&ctx2).await });
        }
    }

    /// Serves the connection's subscriptions until none is left.
    async fn run(&self, ctx: &ConnectionContext) {
        let mut slots: Vec<Slot> = Vec::new();
        // Reused for every queue drained (no allocation per delivery).
        let mut scratch: Vec<QueuedBatch> = Vec::with_capacity(MAX_BATCHES_PER_WRITE);
        let mut notified = pin!(self.wake.notified());
        poll_fn(|cx| loop {
            // Take the wake-up first: anything queued after this point
            // wakes the task again.
            let woken = notified.as_mut().poll(cx).is_ready();
            if woken {
                notified.set(self.wake.notified());
            }
            slots.append(&mut self.lock_incoming());
            let mut more = false;
            slots.retain_mut(|slot| match serve(ctx, slot, &mut scratch, cx) {
                Turn::Idle => true,
                Turn::More => {
                    more = true;
                    true
                }
                Turn::Done => {
                    end(ctx, slot);
                    false
                }
            });
            if slots.is_empty() {
                self.running.store(false, Ordering::Release);
                // A subscription registered after the `append` above found
                // the task still running and did not start another: take
                // it over, unless a new task already did.
                if self.lock_incoming().is_empty() || self.running.swap(true, Ordering::AcqRel) {
                    return Poll::Ready(());
                }
                continue;
            }
            if more {
                // Let the connection driver send what was written, then
                // come back for the rest.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if !woken {
                return Poll::Pending;
            }
        })
        .await;
    }
}

/// Writes what one subscription has queued, as far as its stream takes it.
///
/// Every wake-up of the writer scans all of the connection's subscriptions
/// (at most `max_subscriptions_per_connection`, 1024 by default); an idle
/// one costs a queue lock.
fn serve(
    ctx: &ConnectionContext,
    slot: &mut Slot,
    batches: &mut Vec<QueuedBatch>,
    cx: &mut Context<'_>,
) -> Turn {
    if slot.stopped.load(Ordering::Acquire) {
        return Turn::Done;
    }
    for _ in 0..MAX_WRITES_PER_TURN {
        if slot.at == slot.pending.len() {
            slot.pending.clear();
            slot.at = 0;
            batches.clear();
            slot.sub.queue.drain_into(batches, MAX_BATCHES_PER_WRITE);
            if batches.is_empty() {
                if slot.sub.queue.is_closed() {
                    // Drained after close: end the stream cleanly and let
                    // the client read it to the end (bounded wait).
                    let _ = slot.stream.finish();
                    let acked = slot.stream.stopped();
                    ctx.writers.spawn(async move {
                        let _ = tokio::time::timeout(FINISH_WAIT, acked).await;
                    });
                    return Turn::Done;
                }
                return Turn::Idle;
            }
            slot.pending_events = batches.iter().map(|b| b.events).sum();
            slot.pending.extend(batches.drain(..).map(|b| b.frame));
        }
        // `write_chunks` is cancel-safe: a poll that is not ready wrote
        // nothing and registered this task to be woken when it can.
        let polled = {
            let write = pin!(slot.stream.write_chunks(&mut slot.pending[slot.at..]));
            write.poll(cx)
        };
        match polled {
            Poll::Ready(Ok(written)) => {
                slot.at += written.chunks;
                if slot.at == slot.pending.len() {
                    ctx.core
                        .metrics
                        .delivered_events
                        .fetch_add(slot.pending_events, Ordering::Relaxed);
                    slot.pending_events = 0;
                }
            }
            Poll::Ready(Err(_)) => return Turn::Done,
            Poll::Pending => return Turn::Idle,
        }
    }
    Turn::More
}

/// Forgets an ended subscription.
fn end(ctx: &ConnectionContext, slot: &Slot) {
    ctx.subscriptions.fetch_sub(1, Ordering::AcqRel);
    ctx.core.pubsub.unsubscribe(&slot.sub);
}
