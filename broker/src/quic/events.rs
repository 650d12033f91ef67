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
//!
//! A wake-up serves only the subscriptions that have something to do: a
//! queue that receives a batch (or closes, or whose stream the client
//! stopped) puts its subscription on the writer's ready list, and streams
//! blocked by flow control are retried. A connection with a thousand quiet
//! subscriptions and one busy one costs per event what a connection with
//! one subscription does.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use quinn::SendStream;
use tokio::sync::Notify;

use super::ConnectionContext;
use crate::core::pubsub::Subscription;
use crate::core::queue::{QueueCharge, QueueWaker, QueuedBatch};

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
    /// The wake-up and the ready list every subscription shares.
    shared: Arc<Shared>,
    /// Subscriptions registered but not yet taken over by the task.
    incoming: Mutex<Vec<(u64, Slot)>>,
    /// Ids of the connection's subscriptions.
    next_id: AtomicU64,
    /// Whether the writer task is running.
    running: AtomicBool,
}

/// What the subscriptions' wakers share with the writer task.
#[derive(Debug, Default)]
struct Shared {
    /// Wakes the writer task.
    wake: Notify,
    /// Subscriptions with something to do, by id (each at most once).
    ready: Mutex<Vec<u64>>,
}

impl Shared {
    fn take_ready(&self, into: &mut Vec<u64>) {
        into.append(&mut self.ready.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Puts one subscription on the ready list and wakes the writer.
#[derive(Debug)]
struct SlotWaker {
    id: u64,
    shared: Arc<Shared>,
    /// Set while the id is on the ready list (cleared by the writer just
    /// before it serves the subscription).
    listed: AtomicBool,
}

impl QueueWaker for SlotWaker {
    fn wake(&self) {
        if !self.listed.swap(true, Ordering::AcqRel) {
            self.shared
                .ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(self.id);
        }
        self.shared.wake.notify_one();
    }
}

/// One subscription served by the writer.
struct Slot {
    /// Lists this subscription as ready.
    waker: Arc<SlotWaker>,
    sub: Subscription,
    stream: SendStream,
    /// Frames taken from the queue and not yet fully written.
    pending: Vec<Bytes>,
    /// The queue-budget charges of `pending`'s batches, held until written.
    charges: Vec<Arc<QueueCharge>>,
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
    /// Nothing more to write until its queue wakes us.
    Idle,
    /// Its stream takes no more for now: retried when quinn wakes us.
    Blocked,
    /// More is queued: serve it again in the next pass (after the
    /// connection driver has sent what was written).
    More,
    /// The subscription ended (finished, stopped, or its stream failed).
    Done,
}

impl EventWriter {
    fn lock_incoming(&self) -> MutexGuard<'_, Vec<(u64, Slot)>> {
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(SlotWaker {
            id,
            shared: self.shared.clone(),
            listed: AtomicBool::new(false),
        });
        sub.queue.wake_when_readable(waker.clone());
        let stopped = Arc::new(AtomicBool::new(false));
        // `stopped()` resolves when the client stops the stream (how
        // felix-wire unsubscribes) or the connection ends, even while the
        // stream is idle.
        let watch = stream.stopped();
        let (flag, on_stop) = (stopped.clone(), waker.clone());
        ctx.tasks.spawn(async move {
            let _ = watch.await;
            flag.store(true, Ordering::Release);
            on_stop.wake();
        });
        self.lock_incoming().push((
            id,
            Slot {
                waker: waker.clone(),
                sub,
                stream,
                pending: Vec::new(),
                charges: Vec::new(),
                at: 0,
                pending_events: 0,
                stopped,
            },
        ));
        // Served once on arrival: batches may have been queued already.
        waker.wake();
        if !self.running.swap(true, Ordering::AcqRel) {
            let (writer, ctx2) = (self.clone(), ctx.clone());
            ctx.writers.spawn(async move { writer.run(&ctx2).await });
        }
    }

    /// Serves the connection's subscriptions until none is left.
    async fn run(&self, ctx: &ConnectionContext) {
        let mut slots: HashMap<u64, Slot> = HashMap::new();
        // Served on every wake-up: streams blocked by flow control (quinn
        // wakes this task, not one subscription) and slots with more to
        // write than one turn takes.
        let mut blocked: Vec<u64> = Vec::new();
        let mut more: Vec<u64> = Vec::new();
        let mut serving: Vec<u64> = Vec::new();
        // Reused for every queue drained (no allocation per delivery).
        let mut scratch: Vec<QueuedBatch> = Vec::with_capacity(MAX_BATCHES_PER_WRITE);
        let mut notified = pin!(self.shared.wake.notified());
        poll_fn(|cx| loop {
            // Take the wake-up first: anything listed after this point
            // wakes the task again.
            let woken = notified.as_mut().poll(cx).is_ready();
            if woken {
                notified.set(self.shared.wake.notified());
            }
            serving.clear();
            serving.append(&mut blocked);
            serving.append(&mut more);
            self.shared.take_ready(&mut serving);
            // New subscriptions are served on arrival, whatever the ready
            // list says: one listed before the writer took it over would
            // otherwise be skipped below and, its `listed` flag never
            // cleared, never listed again.
            for (id, slot) in self.lock_incoming().drain(..) {
                slots.insert(id, slot);
                serving.push(id);
            }
            for &id in &serving {
                let Some(slot) = slots.get_mut(&id) else {
                    continue; // ended earlier in this pass, or listed twice
                };
                // Cleared before serving: a batch queued, a close or a stop
                // meanwhile lists the subscription again. A swap, not a
                // store: the waker's side is `flag.store` then
                // `listed.swap`, ours `listed` then `stopped.load`. With a
                // plain store the two could miss each other (a load may
                // pass an earlier store, even on x86) and a stop would be
                // neither listed nor seen. Read-modify-writes on both sides
                // order them: whichever swap comes second sees the other.
                slot.waker.listed.swap(false, Ordering::AcqRel);
                match serve(ctx, slot, &mut scratch, cx) {
                    Turn::Idle => {}
                    Turn::Blocked => blocked.push(id),
                    Turn::More => more.push(id),
                    Turn::Done => {
                        if let Some(slot) = slots.remove(&id) {
                            end(ctx, &slot);
                        }
                    }
                }
            }
            // A slot served twice in one pass (listed and blocked) may
            // appear twice; keep one.
            blocked.sort_unstable();
            blocked.dedup();
            more.sort_unstable();
            more.dedup();
            if slots.is_empty() {
                self.running.store(false, Ordering::Release);
                // A subscription registered after `incoming` was emptied above found
                // the task still running and did not start another: take
                // it over, unless a new task already did.
                if self.lock_incoming().is_empty() || self.running.swap(true, Ordering::AcqRel) {
                    return Poll::Ready(());
                }
                continue;
            }
            if !more.is_empty() {
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
            slot.charges.clear();
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
            for b in batches.drain(..) {
                slot.pending.push(b.frame);
                // Still counted in the queue budget until written.
                slot.charges.extend(b.charge);
            }
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
            Poll::Pending => return Turn::Blocked,
        }
    }
    Turn::More
}

/// Forgets an ended subscription.
fn end(ctx: &ConnectionContext, slot: &Slot) {
    ctx.subscriptions.fetch_sub(1, Ordering::AcqRel);
    ctx.core.pubsub.unsubscribe(&slot.sub);
}
