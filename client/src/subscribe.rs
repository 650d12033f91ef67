//! Subscriptions: [`Client::subscribe`], and [`Subscription`] with gap
//! detection over offsets.
//!
//! Subscribing takes two streams. The client opens a control stream
//! (`auth`, `subscribe`, then it finishes its side) and the broker answers
//! there with `subscribed` (or a cursor error, or `error`). Separately, the
//! broker opens a unidirectional event stream whose first frame is
//! `event_stream_hello {subscription_id}`; `events` routes it here (it may
//! arrive before `subscribed`), and [`EventDecoder`] turns its frames into
//! [`SubscriptionItem`]s.
//!
//! Resuming is explicit: a subscription whose connection is lost ends, and
//! [`Client::resume`] subscribes again from the offset after the last
//! event it delivered (through the client, which may now be connected to
//! another broker). It is not automatic because only the application knows
//! whether that is right: brokers of one cluster share offsets
//! (docs/cluster.md), independent brokers do not, and an application that
//! persists its own position may want to resume from there instead.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use felix_wire::{CursorErrorReason, Frame, Message, StartPosition, Subscribe};

use crate::connection::Client;
use crate::error::{closed, ClientError};
use crate::events::EventConn;
use crate::frames::{auth_frame, describe, encode, read_auth_reply, write_frame, FrameReader};

/// One delivered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's offset in its stream, when the broker sends offsets (a
    /// broker that advertised `EVENT_BATCH_OFFSETS` does: this client always
    /// asks for them); `None` otherwise.
    pub offset: Option<u64>,
    /// The payload (a zero-copy slice of the received batch).
    pub payload: Bytes,
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionItem {
    /// An event.
    Event(Event),
    /// Offsets jumped: the events at offsets `expected..got` were not
    /// delivered (the broker dropped them for a slow subscriber, or they
    /// left the replay ring). Yielded just before the event at `got`.
    Gap {
        /// The offset that should have come next.
        expected: u64,
        /// The offset that came instead.
        got: u64,
    },
}

/// Tracks the next expected offset and reports jumps. The first offset
/// seen sets the baseline; an offset below the expected one (a replayed
/// duplicate) is not a gap and does not move the expectation back.
#[derive(Debug, Default, Clone)]
pub struct GapDetector {
    next: Option<u64>,
}

impl GapDetector {
    /// Sees an event at `offset`; returns the gap `(expected, got)` before
    /// it, if any.
    pub fn observe(&mut self, offset: u64) -> Option<(u64, u64)> {
        let gap = match self.next {
            Some(expected) if offset > expected => Some((expected, offset)),
            _ => None,
        };
        let after = offset.saturating_add(1);
        self.next = Some(self.next.map_or(after, |n| n.max(after)));
        gap
    }

    /// The offset expected next, once one was seen.
    pub fn expected(&self) -> Option<u64> {
        self.next
    }
}

/// Turns the frames of one event stream into [`SubscriptionItem`]s.
#[derive(Debug)]
pub(crate) struct EventDecoder {
    subscription_id: u64,
    gaps: GapDetector,
    ready: VecDeque<SubscriptionItem>,
}

impl EventDecoder {
    pub(crate) fn new(subscription_id: u64) -> Self {
        EventDecoder {
            subscription_id,
            gaps: GapDetector::default(),
            ready: VecDeque::new(),
        }
    }

    /// A decoder that expects `next` as the first offset, so a gap at the
    /// very start is reported too (a resumed subscription: the broker's
    /// first event should be the one after the last delivered).
    pub(crate) fn expecting(subscription_id: u64, next: u64) -> Self {
        EventDecoder {
            gaps: GapDetector { next: Some(next) },
            ..EventDecoder::new(subscription_id)
        }
    }

    /// Takes one frame from the event stream: binary legacy (`0x0002`,
    /// history replay) and shared (`0x0004`, live) batches, with or without
    /// offsets, and JSON `event` / `event_batch`. Anything else is a
    /// protocol error.
    pub(crate) fn push(&mut self, frame: Frame) -> Result<(), ClientError> {
        match frame {
            Frame::BinarySharedEventBatch(b) => self.push_batch(b.base_offset, b.payloads),
            Frame::BinaryEventBatch(b) => {
                if b.subscription_id != self.subscription_id {
                    // The stream's hello already named this subscription;
                    // the id in a replay batch is informative only.
                    tracing::debug!(
                        expected = self.subscription_id,
                        got = b.subscription_id,
                        "event batch names another subscription id"
                    );
                }
                self.push_batch(b.base_offset, b.payloads)
            }
            Frame::Json(Message::EventBatch(b)) => self.push_batch(b.base_offset, b.payloads),
            Frame::Json(Message::Event(e)) => self.push_batch(e.offset, vec![e.payload]),
            other => {
                return Err(ClientError::Protocol(format!(
                    "unexpected frame on an event stream: {}",
                    describe(&other)
                )))
            }
        }
        Ok(())
    }

    fn push_batch(&mut self, base_offset: Option<u64>, payloads: Vec<Bytes>) {
        for (i, payload) in (0u64..).zip(payloads) {
            let offset = base_offset.map(|b| b.saturating_add(i));
            if let Some((expected, got)) = offset.and_then(|o| self.gaps.observe(o)) {
                self.ready
                    .push_back(SubscriptionItem::Gap { expected, got });
            }
            self.ready
                .push_back(SubscriptionItem::Event(Event { offset, payload }));
        }
    }

    /// The next decoded item.
    pub(crate) fn pop(&mut self) -> Option<SubscriptionItem> {
        self.ready.pop_front()
    }
}

/// What the broker's reply to `subscribe` means.
pub(crate) fn subscribe_reply(frame: Frame, subscription_id: u64) -> Result<(), ClientError> {
    match frame {
        Frame::Json(Message::Subscribed(s)) if s.subscription_id == subscription_id => Ok(()),
        Frame::Json(Message::SubscribeCursorError(e)) => Err(match e.reason {
            CursorErrorReason::TooOld => ClientError::CursorTooOld {
                requested: e.requested,
                available: e.available,
            },
            CursorErrorReason::InFuture => ClientError::CursorInFuture {
                requested: e.requested,
                available: e.available,
            },
        }),
        Frame::Json(Message::Error(e)) => Err(ClientError::Broker(e.message)),
        Frame::Json(Message::Subscribed(s)) => Err(ClientError::Protocol(format!(
            "subscribed names subscription {}, not {subscription_id}",
            s.subscription_id
        ))),
        other => Err(ClientError::Protocol(format!(
            "unexpected reply to subscribe: {}",
            describe(&other)
        ))),
    }
}

/// A live subscription. Dropping it stops its event stream, which is how
/// felix-wire unsubscribes.
pub struct Subscription {
    id: u64,
    namespace: String,
    stream: String,
    /// Where it started: what resuming asks for until an event with an
    /// offset has been delivered.
    start: StartPosition,
    /// The offset of the last event [`Subscription::next`] returned.
    last_offset: Option<u64>,
    reader: FrameReader,
    events: EventDecoder,
    ended: bool,
    /// Keeps the event connection open while the subscription lives.
    _conn: Arc<EventConn>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("namespace", &self.namespace)
            .field("stream", &self.stream)
            .field("last_offset", &self.last_offset)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The subscription id this client chose (as in `subscribe`,
    /// `event_stream_hello` and `subscribed`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The namespace subscribed to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The stream subscribed to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The offset of the last event [`Subscription::next`] returned (not
    /// merely received), if any carried one.
    pub fn last_offset(&self) -> Option<u64> {
        self.last_offset
    }

    /// Where to subscribe again to continue without a gap or a duplicate:
    /// the offset after [`Subscription::last_offset`], or where this
    /// subscription started if it has delivered no event with an offset.
    /// [`Client::resume`] uses it.
    pub fn resume_position(&self) -> StartPosition {
        match self.last_offset {
            Some(last) => StartPosition::Offset(last.saturating_add(1)),
            None => self.start,
        }
    }

    /// The next event or gap report.
    ///
    /// `None` once the broker ended the event stream (for example when it
    /// shuts down gracefully). If the connection is lost the subscription
    /// yields one error ([`ClientError::Closed`]) and then `None`. Either
    /// way, [`Client::resume`] continues it from the event after the last
    /// one returned, on whichever broker the client reaches now.
    /// Cancel-safe: usable in `tokio::select!`. The same items are
    /// available as a [`futures_core::Stream`] (for `StreamExt`
    /// combinators); this method needs no trait import.
    pub async fn next(&mut self) -> Option<Result<SubscriptionItem, ClientError>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// [`Subscription::next`] as a poll function: the one implementation
    /// behind it and the `Stream` implementation.
    fn poll_item(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<SubscriptionItem, ClientError>>> {
        loop {
            if let Some(item) = self.events.pop() {
                if let SubscriptionItem::Event(Event {
                    offset: Some(offset),
                    ..
                }) = &item
                {
                    self.last_offset = Some(self.last_offset.map_or(*offset, |l| l.max(*offset)));
                }
                return Poll::Ready(Some(Ok(item)));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            let failure = match ready!(self.reader.poll_next(cx)) {
                Ok(Some(frame)) => match self.events.push(frame) {
                    Ok(()) => continue,
                    Err(e) => e,
                },
                Ok(None) => {
                    tracing::debug!(id = self.id, "the broker ended the event stream");
                    self.ended = true;
                    continue;
                }
                Err(e) => e,
            };
            self.ended = true;
            self.reader.stop();
            return Poll::Ready(Some(Err(failure)));
        }
    }

    /// The next event, skipping gap reports.
    pub async fn next_event(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            match self.next().await? {
                Ok(SubscriptionItem::Event(e)) => return Some(Ok(e)),
                Ok(SubscriptionItem::Gap { .. }) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The items of [`Subscription::next`], for code written against
/// `futures::Stream` (`StreamExt::filter_map`, `select_all`, forwarding
/// into a sink). It ends (`None`) when the subscription does.
impl futures_core::Stream for Subscription {
    type Item = Result<SubscriptionItem, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // No unsubscribe message exists: stopping the event stream is it.
        self.reader.stop();
    }
}

impl Client {
    /// Subscribes to `namespace`/`stream` from `start` (`Latest`: only new
    /// events; `Earliest`: everything the broker still holds; `Offset(n)`).
    ///
    /// Returns once the broker confirmed (`subscribed`) and the event stream
    /// arrived. A start offset the broker no longer holds, or past the
    /// tail, fails with [`ClientError::CursorTooOld`] /
    /// [`ClientError::CursorInFuture`].
    pub async fn subscribe(
        &self,
        namespace: &str,
        stream: &str,
        start: StartPosition,
    ) -> Result<Subscription, ClientError> {
        self.subscribe_from(namespace, stream, start, None).await
    }

    /// Continues `previous` (typically ended by a lost connection) with a
    /// new subscription to the same stream from
    /// [`Subscription::resume_position`], on whichever broker the client
    /// reaches now (it fails over between [`ClientConfig::addrs`]).
    ///
    /// On brokers of one cluster, which share offsets, the new subscription
    /// continues with no gap and no duplicate; if the broker no longer
    /// holds the next offset the new one reports a
    /// [`SubscriptionItem::Gap`] before its first event (or fails with
    /// [`ClientError::CursorTooOld`]). Independent brokers have their own
    /// offsets, so resuming there continues from an unrelated position (or
    /// fails with [`ClientError::CursorInFuture`]); subscribe afresh there
    /// instead. The new subscription remembers `previous`'s last offset.
    ///
    /// [`ClientConfig::addrs`]: crate::ClientConfig::addrs
    pub async fn resume(&self, previous: &Subscription) -> Result<Subscription, ClientError> {
        let start = previous.resume_position();
        tracing::debug!(
            previous = previous.id,
            namespace = previous.namespace,
            stream = previous.stream,
            ?start,
            "resuming a subscription"
        );
        self.subscribe_from(
            &previous.namespace,
            &previous.stream,
            start,
            previous.last_offset,
        )
        .await
    }

    /// [`Client::subscribe`], continuing after `last_offset` when resuming.
    async fn subscribe_from(
        &self,
        namespace: &str,
        stream: &str,
        start: StartPosition,
        last_offset: Option<u64>,
    ) -> Result<Subscription, ClientError> {
        let events = self.event_conn().await?;
        let id = self.next_subscription_id();
        // Registered first, so the event stream finds its subscription
        // whether it arrives before or after `subscribed`.
        let routed = events.register(id);
        let timeout = self.config().request_timeout;
        let result = async {
            tokio::time::timeout(
                timeout,
                self.subscribe_on(events.connection(), namespace, stream, id, start),
            )
            .await
            .map_err(|_| ClientError::Timeout)??;
            match tokio::time::timeout(timeout, routed).await {
                Ok(Ok(reader)) => Ok(reader),
                Ok(Err(_)) => Err(closed("subscribe", "the event connection closed")),
                Err(_) => Err(ClientError::Timeout),
            }
        }
        .await;
        match result {
            Ok(reader) => {
                tracing::debug!(id, namespace, stream, "subscribed");
                let decoder = match last_offset {
                    Some(last) => EventDecoder::expecting(id, last.saturating_add(1)),
                    None => EventDecoder::new(id),
                };
                Ok(Subscription {
                    id,
                    namespace: namespace.to_string(),
                    stream: stream.to_string(),
                    start,
                    last_offset,
                    reader,
                    events: decoder,
                    ended: false,
                    _conn: events,
                })
            }
            Err(e) => {
                if let Some(mut reader) = events.cancel(id) {
                    reader.stop();
                }
                Err(e)
            }
        }
    }

    /// The control-stream half of subscribing.
    async fn subscribe_on(
        &self,
        conn: &quinn::Connection,
        namespace: &str,
        stream: &str,
        id: u64,
        start: StartPosition,
    ) -> Result<(), ClientError> {
        let c = self.config();
        let auth = auth_frame(&c.tenant_id, &c.token)?;
        let subscribe = encode(Message::from(Subscribe {
            tenant_id: c.tenant_id.clone(),
            namespace: namespace.into(),
            stream: stream.into(),
            subscription_id: Some(id),
            start: Some(start),
        }))?;
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| closed("opening a subscribe stream", e))?;
        let dead = std::sync::atomic::AtomicBool::new(false);
        let mut reader = FrameReader::new(recv, c.max_frame_bytes);
        write_frame(&mut send, auth, &dead).await?;
        read_auth_reply(&mut reader).await?;
        write_frame(&mut send, subscribe, &dead).await?;
        // Already finished or reset: the reply tells what happened.
        let _ = send.finish();
        subscribe_reply(reader.recv().await?, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use felix_wire::{
        BinaryEventBatch, BinarySharedEventBatch, ErrorMessage, EventBatch, OkMessage,
        SubscribeCursorError, Subscribed,
    };

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn drain(d: &mut EventDecoder) -> Vec<SubscriptionItem> {
        std::iter::from_fn(|| d.pop()).collect()
    }

    fn event(offset: Option<u64>, payload: &'static str) -> SubscriptionItem {
        SubscriptionItem::Event(Event {
            offset,
            payload: b(payload),
        })
    }

    #[test]
    fn gaps_are_reported_from_the_first_offset_on() {
        let mut g = GapDetector::default();
        assert_eq!(g.observe(10), None, "the first offset sets the baseline");
        assert_eq!(g.observe(11), None);
        assert_eq!(g.observe(15), Some((12, 15)));
        assert_eq!(g.observe(16), None);
        assert_eq!(g.observe(3), None, "a replayed older offset is not a gap");
        assert_eq!(g.expected(), Some(17));
        assert_eq!(g.observe(17), None);
        assert_eq!(g.observe(u64::MAX), Some((18, u64::MAX)));
        assert_eq!(g.observe(u64::MAX), None);
    }

    #[test]
    fn batches_become_events_with_offsets_and_gaps() {
        let mut d = EventDecoder::new(7);
        d.push(Frame::BinaryEventBatch(BinaryEventBatch {
            subscription_id: 7,
            base_offset: Some(4),
            payloads: vec![b("h4"), b("h5")],
        }))
        .expect("replay batch");
        d.push(Frame::BinarySharedEventBatch(BinarySharedEventBatch {
            base_offset: Some(9),
            payloads: vec![b("l9"), b("l10")],
        }))
        .expect("live batch");
        assert_eq!(
            drain(&mut d),
            [
                event(Some(4), "h4"),
                event(Some(5), "h5"),
                SubscriptionItem::Gap {
                    expected: 6,
                    got: 9
                },
                event(Some(9), "l9"),
                event(Some(10), "l10"),
            ]
        );
    }

    #[test]
    fn batches_without_offsets_and_json_events() {
        let mut d = EventDecoder::new(1);
        d.push(Frame::BinarySharedEventBatch(BinarySharedEventBatch {
            base_offset: None,
            payloads: vec![b("a")],
        }))
        .expect("batch");
        d.push(Frame::Json(Message::from(EventBatch {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            stream: "s".into(),
            payloads: vec![b("b"), b("c")],
            base_offset: Some(0),
        })))
        .expect("json batch");
        d.push(Frame::Json(Message::from(felix_wire::Event {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            stream: "s".into(),
            payload: b("e"),
            offset: Some(3),
        })))
        .expect("json event");
        assert_eq!(
            drain(&mut d),
            [
                event(None, "a"),
                event(Some(0), "b"),
                event(Some(1), "c"),
                SubscriptionItem::Gap {
                    expected: 2,
                    got: 3
                },
                event(Some(3), "e"),
            ]
        );
    }

    #[test]
    fn a_non_event_frame_on_an_event_stream_is_a_protocol_error() {
        let mut d = EventDecoder::new(1);
        assert!(matches!(
            d.push(Frame::Json(Message::from(OkMessage {}))),
            Err(ClientError::Protocol(_))
        ));
    }

    #[test]
    fn subscribe_replies() {
        let json = |m| Frame::Json(m);
        assert!(subscribe_reply(json(Message::from(Subscribed { subscription_id: 5 })), 5).is_ok());
        assert!(matches!(
            subscribe_reply(json(Message::from(Subscribed { subscription_id: 6 })), 5),
            Err(ClientError::Protocol(_))
        ));
        let cursor = |reason| {
            json(Message::from(SubscribeCursorError {
                reason,
                requested: 1,
                available: 2,
            }))
        };
        assert!(matches!(
            subscribe_reply(cursor(CursorErrorReason::TooOld), 5),
            Err(ClientError::CursorTooOld {
                requested: 1,
                available: 2
            })
        ));
        assert!(matches!(
            subscribe_reply(cursor(CursorErrorReason::InFuture), 5),
            Err(ClientError::CursorInFuture {
                requested: 1,
                available: 2
            })
        ));
        assert!(matches!(
            subscribe_reply(json(Message::from(ErrorMessage { message: "no".into() })), 5),
            Err(ClientError::Broker(m)) if m == "no"
        ));
    }
}
