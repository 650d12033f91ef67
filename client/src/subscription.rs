//! A live subscription: events from the broker-opened event stream, with
//! gap detection over offsets.

use std::collections::VecDeque;

use bytes::Bytes;
use felix_wire::{Frame, Message};

use crate::error::ClientError;
use crate::stream::FrameReader;

/// One delivered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's offset in its stream, when the broker sends offsets
    /// (it does when the client advertised `EVENT_BATCH_OFFSETS`).
    pub offset: Option<u64>,
    /// The payload (a zero-copy slice of the received batch).
    pub payload: Bytes,
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionItem {
    /// An event.
    Event(Event),
    /// Offsets jumped: events `expected..got` were not delivered (dropped by
    /// the broker's queue policy, or past the replay ring). Yielded before
    /// the event at `got`.
    Gap {
        /// The offset that should have come next.
        expected: u64,
        /// The offset that came.
        got: u64,
    },
}

/// Tracks the next expected offset and reports jumps.
#[derive(Debug, Default, Clone)]
pub struct GapDetector {
    next: Option<u64>,
}

impl GapDetector {
    /// Sees an event at `offset`; returns the gap before it, if any. The
    /// first offset seen sets the baseline.
    pub fn observe(&mut self, offset: u64) -> Option<(u64, u64)> {
        let gap = match self.next {
            Some(expected) if offset > expected => Some((expected, offset)),
            _ => None,
        };
        self.next = Some(offset.saturating_add(1).max(self.next.unwrap_or(0)));
        gap
    }
}

/// A subscription. Dropping it stops the event stream (unsubscribes).
pub struct Subscription {
    id: u64,
    reader: FrameReader,
    ready: VecDeque<SubscriptionItem>,
    gaps: GapDetector,
    ended: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

impl Subscription {
    pub(crate) fn new(id: u64, reader: FrameReader) -> Self {
        Subscription {
            id,
            reader,
            ready: VecDeque::new(),
            gaps: GapDetector::default(),
            ended: false,
        }
    }

    /// The subscription id (as in `event_stream_hello` and `subscribed`).
    pub fn id(&self) -> u64 {
        self.id
    }

    fn push_batch(&mut self, base_offset: Option<u64>, payloads: Vec<Bytes>) {
        for (i, payload) in payloads.into_iter().enumerate() {
            let offset = base_offset.map(|b| b + i as u64);
            if let Some(o) = offset {
                if let Some((expected, got)) = self.gaps.observe(o) {
                    self.ready
                        .push_back(SubscriptionItem::Gap { expected, got });
                }
            }
            self.ready
                .push_back(SubscriptionItem::Event(Event { offset, payload }));
        }
    }

    /// The next event or gap; `None` when the broker ended the stream
    /// (e.g. it shut down gracefully).
    pub async fn next(&mut self) -> Option<Result<SubscriptionItem, ClientError>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Ok(item));
            }
            if self.ended {
                return None;
            }
            match self.reader.next().await {
                Ok(Some(Frame::BinarySharedEventBatch(b))) => {
                    self.push_batch(b.base_offset, b.payloads)
                }
                Ok(Some(Frame::BinaryEventBatch(b))) => self.push_batch(b.base_offset, b.payloads),
                Ok(Some(Frame::Json(Message::EventBatch(b)))) => {
                    self.push_batch(b.base_offset, b.payloads)
                }
                Ok(Some(Frame::Json(Message::Event(e)))) => {
                    self.push_batch(e.offset, vec![e.payload])
                }
                Ok(Some(other)) => {
                    self.ended = true;
                    self.reader.stop();
                    return Some(Err(ClientError::Protocol(format!(
                        "unexpected frame on an event stream: {other:?}"
                    ))));
                }
                Ok(None) => self.ended = true,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
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

impl Drop for Subscription {
    fn drop(&mut self) {
        // No unsubscribe message exists: stopping the event stream is it.
        self.reader.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_reported_from_the_first_offset_on() {
        let mut g = GapDetector::default();
        assert_eq!(g.observe(10), None, "the first offset sets the baseline");
        assert_eq!(g.observe(11), None);
        assert_eq!(g.observe(15), Some((12, 15)));
        assert_eq!(g.observe(16), None);
        assert_eq!(g.observe(3), None, "a replayed older offset is not a gap");
        assert_eq!(g.observe(17), None);
    }
}
