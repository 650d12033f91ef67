//! Event connections: the connections that carry subscriptions, and the
//! routing of the event streams the broker opens on them to their
//! subscription (the client's side of the broker's `quic/events.rs`).
//!
//! A subscription's events do not come on the stream that asked for them.
//! The broker opens a unidirectional event stream whose first frame is
//! `event_stream_hello {subscription_id}`, and that stream may arrive
//! before the `subscribed` reply on the control stream, or after it. So
//! each event connection runs one task that accepts event streams, reads
//! their hello (within the request timeout: a stream that sends none is
//! stopped) and hands each to its subscription through a [`HelloRouter`],
//! which buffers a bounded number of streams whose subscription has not
//! registered yet. A subscription registers its id before it sends
//! `subscribe`, so it finds its stream whichever comes first.
//!
//! This module knows nothing of subscriptions beyond their ids: it hands
//! over [`FrameReader`]s, and `subscribe` turns their frames into events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use felix_wire::{Frame, Message};
use tokio::sync::oneshot;

use crate::frames::{describe, FrameReader};

/// How many event streams may wait for a subscription that is not (yet)
/// registered; past that the oldest is stopped.
pub(crate) const MAX_EARLY_STREAMS: usize = 64;

struct RouterState<T> {
    waiting: HashMap<u64, oneshot::Sender<T>>,
    early: VecDeque<(u64, T)>,
    closed: bool,
}

/// Hands event streams (`T`) to subscriptions by the id in their hello,
/// in either order: a stream delivered before its subscription registers
/// is buffered (at most [`MAX_EARLY_STREAMS`]).
pub(crate) struct HelloRouter<T> {
    state: Mutex<RouterState<T>>,
}

impl<T> HelloRouter<T> {
    pub(crate) fn new() -> Self {
        HelloRouter {
            state: Mutex::new(RouterState {
                waiting: HashMap::new(),
                early: VecDeque::new(),
                closed: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RouterState<T>> {
        // Every update leaves the state consistent: a panic elsewhere
        // while holding the lock does not poison the routing.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the stream of subscription `id`; it is ready at once if it
    /// already arrived. The receiver fails if the router closes first.
    pub(crate) fn register(&self, id: u64) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        if state.closed {
            return rx;
        }
        match state.early.iter().position(|(i, _)| *i == id) {
            Some(at) => {
                if let Some((_, item)) = state.early.remove(at) {
                    // The receiver is right here: this cannot fail.
                    let _ = tx.send(item);
                }
            }
            None => {
                state.waiting.insert(id, tx);
            }
        }
        rx
    }

    /// Hands over the stream of subscription `id`. Returns a stream the
    /// caller must discard: this one if its subscription gave up or the
    /// router is closed, or the oldest buffered one when the buffer is full.
    pub(crate) fn deliver(&self, id: u64, item: T) -> Option<T> {
        let mut state = self.lock();
        if state.closed {
            return Some(item);
        }
        if let Some(tx) = state.waiting.remove(&id) {
            drop(state);
            return tx.send(item).err();
        }
        state.early.push_back((id, item));
        if state.early.len() > MAX_EARLY_STREAMS {
            return state.early.pop_front().map(|(_, item)| item);
        }
        None
    }

    /// Forgets subscription `id` (it failed or gave up); returns its stream
    /// if one was buffered.
    pub(crate) fn cancel(&self, id: u64) -> Option<T> {
        let mut state = self.lock();
        state.waiting.remove(&id);
        let at = state.early.iter().position(|(i, _)| *i == id)?;
        state.early.remove(at).map(|(_, item)| item)
    }

    /// Fails every waiting subscription and discards buffered streams;
    /// later deliveries are refused.
    pub(crate) fn close(&self) {
        let (waiting, early) = {
            let mut state = self.lock();
            state.closed = true;
            (
                std::mem::take(&mut state.waiting),
                std::mem::take(&mut state.early),
            )
        };
        // Dropped outside the lock: dropping a stream stops it.
        drop((waiting, early));
    }

    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.lock().early.len()
    }
}

/// A connection that carries subscriptions, with the task that routes its
/// event streams. Closed when the last handle (the client's pool slot,
/// subscriptions) goes.
pub(crate) struct EventConn {
    conn: quinn::Connection,
    router: Arc<HelloRouter<FrameReader>>,
}

impl EventConn {
    /// Starts routing the event streams of `conn`.
    pub(crate) fn start(
        conn: quinn::Connection,
        max_frame_bytes: u32,
        hello_timeout: Duration,
    ) -> Arc<EventConn> {
        let router = Arc::new(HelloRouter::new());
        tokio::spawn(accept_event_streams(
            conn.clone(),
            router.clone(),
            max_frame_bytes,
            hello_timeout,
        ));
        Arc::new(EventConn { conn, router })
    }

    /// The QUIC connection (subscribe requests go on its control streams).
    pub(crate) fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Waits for the event stream of subscription `id` (see
    /// [`HelloRouter::register`]); register before sending `subscribe`.
    pub(crate) fn register(&self, id: u64) -> oneshot::Receiver<FrameReader> {
        self.router.register(id)
    }

    /// Forgets subscription `id`, which failed; returns its event stream if
    /// one had arrived (the caller stops it).
    pub(crate) fn cancel(&self, id: u64) -> Option<FrameReader> {
        self.router.cancel(id)
    }

    /// Whether the connection is still up.
    pub(crate) fn is_alive(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    /// Closes the connection: its subscriptions end.
    pub(crate) fn close(&self) {
        self.conn.close(0u32.into(), b"client closed");
        self.router.close();
    }
}

impl Drop for EventConn {
    fn drop(&mut self) {
        self.close();
    }
}

/// Accepts the broker's event streams until the connection ends.
async fn accept_event_streams(
    conn: quinn::Connection,
    router: Arc<HelloRouter<FrameReader>>,
    max_frame_bytes: u32,
    hello_timeout: Duration,
) {
    loop {
        match conn.accept_uni().await {
            Ok(recv) => {
                tokio::spawn(route_event_stream(
                    FrameReader::new(recv, max_frame_bytes),
                    router.clone(),
                    hello_timeout,
                ));
            }
            Err(why) => {
                tracing::debug!(%why, "event connection ended");
                break;
            }
        }
    }
    router.close();
}

/// Reads an event stream's hello and hands the stream to its subscription.
async fn route_event_stream(
    mut reader: FrameReader,
    router: Arc<HelloRouter<FrameReader>>,
    hello_timeout: Duration,
) {
    match tokio::time::timeout(hello_timeout, reader.recv()).await {
        Ok(Ok(Frame::Json(Message::EventStreamHello(hello)))) => {
            let id = hello.subscription_id;
            tracing::debug!(id, "event stream arrived");
            if let Some(mut unclaimed) = router.deliver(id, reader) {
                tracing::debug!(id, "no subscription takes this event stream; stopping it");
                unclaimed.stop();
            }
        }
        Ok(Ok(other)) => {
            tracing::warn!(
                first = %describe(&other),
                "an event stream did not start with event_stream_hello; stopping it"
            );
            reader.stop();
        }
        Ok(Err(why)) => tracing::debug!(%why, "an event stream failed before its hello"),
        Err(_) => {
            tracing::warn!("an event stream sent no hello in time; stopping it");
            reader.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_that_arrives_after_registering_is_handed_over() {
        let router = HelloRouter::new();
        let mut rx = router.register(1);
        assert!(router.deliver(1, "stream-1").is_none());
        assert_eq!(rx.try_recv().expect("routed"), "stream-1");
        assert_eq!(router.buffered(), 0);
    }

    #[test]
    fn a_stream_that_arrives_first_is_buffered_until_registered() {
        let router = HelloRouter::new();
        assert!(router.deliver(2, "stream-2").is_none());
        assert!(router.deliver(3, "stream-3").is_none());
        assert_eq!(router.buffered(), 2);
        let mut rx = router.register(3);
        assert_eq!(rx.try_recv().expect("buffered"), "stream-3");
        assert_eq!(router.buffered(), 1);
        let mut rx = router.register(4);
        assert!(rx.try_recv().is_err(), "nothing for 4 yet");
    }

    #[test]
    fn streams_nobody_waits_for_are_discarded() {
        let router = HelloRouter::new();
        let rx = router.register(1);
        drop(rx); // the subscriber gave up
        assert_eq!(router.deliver(1, 1), Some(1));
        for id in 0..MAX_EARLY_STREAMS as u64 {
            assert!(router.deliver(100 + id, 100 + id).is_none());
        }
        assert_eq!(router.deliver(999, 999), Some(100), "the oldest goes");
        assert_eq!(router.buffered(), MAX_EARLY_STREAMS);
        assert_eq!(router.cancel(101), Some(101));
        assert_eq!(router.cancel(101), None);
    }

    #[test]
    fn closing_the_router_fails_waiters_and_refuses_streams() {
        let router = HelloRouter::new();
        let mut rx = router.register(1);
        router.close();
        assert!(rx.try_recv().is_err());
        assert_eq!(router.deliver(1, "late"), Some("late"));
        let mut rx = router.register(2);
        assert!(rx.try_recv().is_err());
    }
}
