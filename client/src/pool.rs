//! Pooled streams: bidirectional request streams that carry several
//! requests in flight with replies matched in order, and unidirectional
//! publish-only streams.
//!
//! felix-wire answers the requests on a stream in request order, so a
//! request stream keeps a FIFO of pending requests ([`PendingQueue`]): the
//! writer assigns the request id, pushes the pending entry and writes the
//! frame under one lock (so the queue's order is the order on the wire),
//! and one reader task per stream pops the front entry for every reply. A
//! reply that does not answer the front request (another request id, another
//! kind of reply) is a protocol error; when the stream dies, every pending
//! request fails.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use felix_wire::{Frame, Message};
use tokio::sync::oneshot;

use crate::error::{closed, ClientError};
use crate::frames::{auth_frame, describe, read_auth_reply, write_frame, FrameReader};

/// The reply a request waits for. An `error` frame answers any request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A binary publish ack (`0x0010`) with the request id.
    BinaryPublishAck,
    /// `publish_ok` or `publish_error` with the request id.
    PublishReply,
    /// `cache_ok` with the request id.
    CacheOk,
    /// `cache_value` with the request id.
    CacheValue,
}

impl Expect {
    /// Whether `frame` answers the request `request_id` of this kind.
    pub(crate) fn matches(self, frame: &Frame, request_id: u64) -> bool {
        match (self, frame) {
            (Expect::BinaryPublishAck, Frame::BinaryPublishAck(a)) => a.request_id == request_id,
            (Expect::PublishReply, Frame::Json(Message::PublishOk(o))) => {
                o.request_id == request_id
            }
            (Expect::PublishReply, Frame::Json(Message::PublishError(e))) => {
                e.request_id == request_id
            }
            (Expect::CacheOk, Frame::Json(Message::CacheOk(o))) => o.request_id == request_id,
            (Expect::CacheValue, Frame::Json(Message::CacheValue(v))) => {
                v.request_id == Some(request_id)
            }
            _ => false,
        }
    }
}

/// What a pending request receives: its reply frame, or why it failed.
pub(crate) type Reply = Result<Frame, ClientError>;

struct Pending {
    request_id: u64,
    expect: Expect,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct QueueState {
    pending: VecDeque<Pending>,
    /// Set once the stream died: nothing may be queued any more.
    closed: bool,
}

/// The requests waiting for a reply on one stream, oldest first.
#[derive(Default)]
pub(crate) struct PendingQueue {
    state: Mutex<QueueState>,
}

impl PendingQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding this lock leaves a consistent queue.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a request; `None` if the stream already died.
    pub(crate) fn push(&self, request_id: u64, expect: Expect) -> Option<oneshot::Receiver<Reply>> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        state.pending.push_back(Pending {
            request_id,
            expect,
            reply: tx,
        });
        Some(rx)
    }

    /// Answers the front request with `frame`: an `error` frame fails it
    /// with [`ClientError::Broker`]; a frame that does not answer it fails
    /// it with [`ClientError::Protocol`] and returns why (the stream can no
    /// longer be trusted), as does a frame when nothing is pending.
    pub(crate) fn dispatch(&self, frame: Frame) -> Result<(), String> {
        let Some(front) = self.lock().pending.pop_front() else {
            return Err(format!("unsolicited {}", describe(&frame)));
        };
        let reply = match frame {
            Frame::Json(Message::Error(e)) => Err(ClientError::Broker(e.message)),
            f if front.expect.matches(&f, front.request_id) => Ok(f),
            f => {
                let why = format!(
                    "{} does not answer request {} (expected {:?})",
                    describe(&f),
                    front.request_id,
                    front.expect
                );
                // The requester may have given up (timeout): nobody to tell.
                let _ = front.reply.send(Err(ClientError::Protocol(why.clone())));
                return Err(why);
            }
        };
        let _ = front.reply.send(reply);
        Ok(())
    }

    /// Fails every pending request with `error()` and refuses new ones.
    pub(crate) fn fail_all(&self, error: impl Fn() -> ClientError) {
        let drained: Vec<Pending> = {
            let mut state = self.lock();
            state.closed = true;
            state.pending.drain(..).collect()
        };
        for p in drained {
            let _ = p.reply.send(Err(error()));
        }
    }

    /// How many requests wait for a reply.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().pending.len()
    }
}

/// Why a request failed, and whether its frame reached the stream (only
/// a request that was never written is always safe to retry).
#[derive(Debug)]
pub(crate) enum RequestError {
    /// Nothing was written: the stream was already dead, or the frame
    /// could not be built.
    NotSent(ClientError),
    /// The frame was (at least partly) written.
    Sent(ClientError),
}

impl From<RequestError> for ClientError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotSent(e) | RequestError::Sent(e) => e,
        }
    }
}

struct Sender {
    send: quinn::SendStream,
    next_request_id: u64,
}

/// A bidirectional stream carrying requests, with replies in order.
pub(crate) struct RequestStream {
    sender: tokio::sync::Mutex<Sender>,
    pending: Arc<PendingQueue>,
    dead: Arc<AtomicBool>,
}

impl RequestStream {
    /// Opens a stream on `conn`, authenticates it and starts its reader.
    /// Returns the stream and the flags the broker advertised.
    pub(crate) async fn open(
        conn: &quinn::Connection,
        tenant_id: &str,
        token: &str,
        max_frame_bytes: u32,
    ) -> Result<(Arc<RequestStream>, u16), ClientError> {
        let auth = auth_frame(tenant_id, token)?;
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| closed("opening a request stream", e))?;
        let dead = Arc::new(AtomicBool::new(false));
        write_frame(&mut send, auth, &dead).await?;
        let mut reader = FrameReader::new(recv, max_frame_bytes);
        // The auth reply comes before any other reply on this stream.
        let flags = read_auth_reply(&mut reader).await?;
        let pending = Arc::new(PendingQueue::default());
        tokio::spawn(read_replies(reader, pending.clone(), dead.clone()));
        let stream = RequestStream {
            sender: tokio::sync::Mutex::new(Sender {
                send,
                next_request_id: 1,
            }),
            pending,
            dead,
        };
        Ok((Arc::new(stream), flags))
    }

    /// Whether the stream can no longer carry requests.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Sends the frame `build` makes for a fresh request id (unique on
    /// this stream; `build` also tells which reply to expect) and waits
    /// for its reply. Cancelling it is safe: a
    /// half-written frame resets the stream, and a reply that comes after
    /// the caller gave up is matched and dropped.
    pub(crate) async fn request(
        &self,
        build: impl FnOnce(u64) -> Result<(Bytes, Expect), ClientError>,
    ) -> Result<Frame, RequestError> {
        let rx = {
            let mut sender = self.sender.lock().await;
            let request_id = sender.next_request_id;
            sender.next_request_id += 1;
            let (frame, expect) = build(request_id).map_err(RequestError::NotSent)?;
            let Some(rx) = self.pending.push(request_id, expect) else {
                return Err(RequestError::NotSent(closed(
                    "a request stream",
                    "the stream already died",
                )));
            };
            if let Err(e) = write_frame(&mut sender.send, frame, &self.dead).await {
                self.pending.fail_all(|| ClientError::Closed);
                return Err(RequestError::Sent(e));
            }
            rx
        };
        match rx.await {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(e)) => Err(RequestError::Sent(e)),
            Err(_) => Err(RequestError::Sent(closed(
                "a request stream",
                "its reader stopped",
            ))),
        }
    }

    /// Ends the send side: the broker then ends the stream.
    pub(crate) async fn finish(&self) {
        // Already finished or reset: nothing to do.
        let _ = self.sender.lock().await.send.finish();
    }
}

/// The reader task of a request stream: every frame answers the front
/// pending request, until the stream ends or breaks the protocol.
async fn read_replies(mut reader: FrameReader, pending: Arc<PendingQueue>, dead: Arc<AtomicBool>) {
    let failure: Box<dyn Fn() -> ClientError + Send> = loop {
        match reader.next().await {
            Ok(Some(frame)) => {
                if let Err(why) = pending.dispatch(frame) {
                    tracing::warn!(%why, "protocol violation on a request stream; dropping it");
                    reader.stop();
                    break Box::new(move || ClientError::Protocol(why.clone()));
                }
            }
            Ok(None) => {
                tracing::debug!("the broker ended a request stream");
                break Box::new(|| ClientError::Closed);
            }
            Err(ClientError::Closed) => break Box::new(|| ClientError::Closed),
            Err(e) => {
                let why = e.to_string();
                tracing::warn!(%why, "a request stream failed; dropping it");
                reader.stop();
                break Box::new(move || ClientError::Protocol(why.clone()));
            }
        }
    };
    dead.store(true, Ordering::Release);
    pending.fail_all(failure);
}

/// A publish-only unidirectional stream: `auth`, then publishes; the
/// broker never writes back (not even the auth reply).
pub(crate) struct UniStream {
    send: tokio::sync::Mutex<quinn::SendStream>,
    dead: AtomicBool,
}

impl UniStream {
    /// Opens the stream and writes its `auth`.
    pub(crate) async fn open(
        conn: &quinn::Connection,
        tenant_id: &str,
        token: &str,
    ) -> Result<Arc<UniStream>, ClientError> {
        let auth = auth_frame(tenant_id, token)?;
        let mut send = conn
            .open_uni()
            .await
            .map_err(|e| closed("opening a publish stream", e))?;
        let dead = AtomicBool::new(false);
        write_frame(&mut send, auth, &dead).await?;
        Ok(Arc::new(UniStream {
            send: tokio::sync::Mutex::new(send),
            dead,
        }))
    }

    /// Whether the stream can no longer be written.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Writes one frame. An error means the frame was not completely
    /// written (so the broker cannot have taken it).
    pub(crate) async fn send(&self, frame: Bytes) -> Result<(), ClientError> {
        let mut send = self.send.lock().await;
        if self.is_dead() {
            return Err(closed("a publish stream", "the stream already died"));
        }
        write_frame(&mut send, frame, &self.dead).await
    }

    /// Finishes the stream and waits, at most `timeout`, until the broker
    /// has received everything written to it.
    pub(crate) async fn finish(&self, timeout: Duration) {
        let stopped = {
            let mut send = self.send.lock().await;
            self.dead.store(true, Ordering::Release);
            if send.finish().is_err() {
                return;
            }
            send.stopped()
        };
        if tokio::time::timeout(timeout, stopped).await.is_err() {
            tracing::debug!("unacked publishes were not acknowledged in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use felix_wire::{
        AckStatus, BinaryPublishAck, CacheOk, CacheValue, ErrorMessage, PublishError, PublishOk,
    };

    fn publish_ok(request_id: u64) -> Frame {
        Frame::Json(Message::from(PublishOk { request_id }))
    }

    fn queue(ids: &[u64], expect: Expect) -> (PendingQueue, Vec<oneshot::Receiver<Reply>>) {
        let q = PendingQueue::default();
        let rxs = ids
            .iter()
            .map(|id| q.push(*id, expect).expect("open queue"))
            .collect();
        (q, rxs)
    }

    #[test]
    fn replies_are_matched_in_fifo_order() {
        let (q, mut rxs) = queue(&[1, 2, 3], Expect::PublishReply);
        q.dispatch(publish_ok(1)).expect("answers 1");
        q.dispatch(Frame::Json(Message::from(ErrorMessage {
            message: "nope".into(),
        })))
        .expect("an error answers the front request");
        q.dispatch(Frame::Json(Message::from(PublishError {
            request_id: 3,
            message: "full".into(),
        })))
        .expect("answers 3");
        assert!(matches!(rxs[0].try_recv(), Ok(Ok(f)) if f == publish_ok(1)));
        assert!(matches!(rxs[1].try_recv(), Ok(Err(ClientError::Broker(m))) if m == "nope"));
        assert!(matches!(
            rxs[2].try_recv(),
            Ok(Ok(Frame::Json(Message::PublishError(_))))
        ));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_mismatched_request_id_is_a_protocol_error() {
        let (q, mut rxs) = queue(&[1, 2], Expect::PublishReply);
        let why = q.dispatch(publish_ok(2)).expect_err("2 is not the front");
        assert!(why.contains("does not answer request 1"), "{why}");
        assert!(matches!(
            rxs[0].try_recv(),
            Ok(Err(ClientError::Protocol(_)))
        ));
    }

    #[test]
    fn a_reply_of_the_wrong_kind_is_a_protocol_error() {
        let (q, mut rxs) = queue(&[1], Expect::CacheValue);
        assert!(q
            .dispatch(Frame::Json(Message::from(CacheOk { request_id: 1 })))
            .is_err());
        assert!(matches!(
            rxs[0].try_recv(),
            Ok(Err(ClientError::Protocol(_)))
        ));
    }

    #[test]
    fn an_unsolicited_reply_is_a_protocol_error() {
        let q = PendingQueue::default();
        assert!(q
            .dispatch(publish_ok(1))
            .expect_err("nothing pending")
            .contains("unsolicited"));
    }

    #[test]
    fn a_dead_stream_fails_everything_pending_and_takes_no_more() {
        let (q, mut rxs) = queue(&[1, 2, 3], Expect::CacheOk);
        q.fail_all(|| ClientError::Closed);
        for rx in &mut rxs {
            assert!(matches!(rx.try_recv(), Ok(Err(ClientError::Closed))));
        }
        assert!(q.push(4, Expect::CacheOk).is_none());
    }

    #[test]
    fn a_reply_after_the_requester_gave_up_keeps_the_order() {
        let (q, mut rxs) = queue(&[1, 2], Expect::PublishReply);
        drop(rxs.remove(0)); // request 1 timed out
        q.dispatch(publish_ok(1)).expect("still matched");
        q.dispatch(publish_ok(2)).expect("matched");
        assert!(matches!(rxs[0].try_recv(), Ok(Ok(f)) if f == publish_ok(2)));
    }

    #[test]
    fn expectations() {
        let ack = |request_id, status| {
            Frame::BinaryPublishAck(BinaryPublishAck {
                status,
                request_id,
                message: String::new(),
            })
        };
        assert!(Expect::BinaryPublishAck.matches(&ack(5, AckStatus::Ok), 5));
        assert!(Expect::BinaryPublishAck.matches(&ack(5, AckStatus::Error), 5));
        assert!(!Expect::BinaryPublishAck.matches(&ack(6, AckStatus::Ok), 5));
        assert!(!Expect::PublishReply.matches(&ack(5, AckStatus::Ok), 5));
        assert!(Expect::PublishReply.matches(&publish_ok(5), 5));
        let value = |request_id| {
            Frame::Json(Message::from(CacheValue {
                tenant_id: "t".into(),
                namespace: "n".into(),
                cache: "c".into(),
                key: "k".into(),
                value: None,
                request_id,
            }))
        };
        assert!(Expect::CacheValue.matches(&value(Some(9)), 9));
        assert!(!Expect::CacheValue.matches(&value(None), 9));
        assert!(Expect::CacheOk.matches(&Frame::Json(Message::from(CacheOk { request_id: 9 })), 9));
    }
}
