//! Streams: reading frames, per-stream auth, and request streams that carry
//! several requests in flight with replies matched in order.
//!
//! felix-wire answers requests on a stream in request order, so a request
//! stream keeps a FIFO of pending requests: the writer pushes a pending
//! entry and writes the frame under one lock (order of entries = order on
//! the wire), and one reader task pops the front entry for every reply.
//! A reply that does not match the front request (wrong request id, wrong
//! kind) is a protocol error; if the stream dies, every pending request
//! fails.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use felix_wire::{Auth, Frame, FrameDecoder, Message, KNOWN_FLAGS, ORIGINAL_V1_FLAGS};
use tokio::sync::oneshot;

use crate::error::ClientError;

/// Reads frames from a receive stream.
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl FrameReader {
    pub(crate) fn new(recv: quinn::RecvStream, max_frame_bytes: u32) -> Self {
        FrameReader::with_buffer(recv, BytesMut::new(), max_frame_bytes)
    }

    pub(crate) fn with_buffer(
        recv: quinn::RecvStream,
        buf: BytesMut,
        max_frame_bytes: u32,
    ) -> Self {
        FrameReader {
            recv,
            buf,
            decoder: FrameDecoder::with_max_frame_bytes(max_frame_bytes),
        }
    }

    /// The next frame; `None` when the stream ended cleanly.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(f));
            }
            match self.recv.read_chunk(64 * 1024, true).await {
                Ok(Some(c)) => self.buf.extend_from_slice(&c.bytes),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => {
                    return Err(ClientError::Protocol("stream ended inside a frame".into()))
                }
                Err(e) => return Err(ClientError::Closed(e.to_string())),
            }
        }
    }

    /// The next frame; an error if the stream ends.
    pub(crate) async fn recv(&mut self) -> Result<Frame, ClientError> {
        self.next()
            .await?
            .ok_or_else(|| ClientError::Closed("stream ended".into()))
    }

    /// The stream and the bytes buffered but not yet decoded.
    pub(crate) fn into_parts(self) -> (quinn::RecvStream, BytesMut) {
        (self.recv, self.buf)
    }

    /// Stops the stream.
    pub(crate) fn stop(&mut self) {
        let _ = self.recv.stop(0u32.into());
    }
}

/// Encodes a frame.
pub(crate) fn encode(frame: impl Into<Frame>) -> Result<Bytes, ClientError> {
    Ok(frame.into().to_bytes()?)
}

/// The auth frame this client sends on every stream.
pub(crate) fn auth_frame(tenant_id: &str, token: &str) -> Result<Bytes, ClientError> {
    encode(Message::from(Auth {
        tenant_id: tenant_id.into(),
        token: token.into(),
        client_flags: Some(KNOWN_FLAGS),
    }))
}

/// Reads the reply to `auth`: the flags the broker supports.
pub(crate) async fn read_auth_reply(reader: &mut FrameReader) -> Result<u16, ClientError> {
    match reader.recv().await? {
        Frame::Json(Message::AuthOk(ok)) => Ok(ok.server_flags),
        Frame::Json(Message::Ok(_)) => Ok(ORIGINAL_V1_FLAGS),
        Frame::Json(Message::Error(e)) => Err(ClientError::AuthFailed(e.message)),
        other => Err(ClientError::Protocol(format!(
            "unexpected reply to auth: {other:?}"
        ))),
    }
}

/// What a pending request accepts as its reply.
pub(crate) type Matcher = fn(&Frame, u64) -> bool;

struct Pending {
    request_id: u64,
    matches: Matcher,
    reply: oneshot::Sender<Result<Frame, ClientError>>,
}

/// A bidirectional stream carrying requests with replies in order.
pub(crate) struct RequestStream {
    send: tokio::sync::Mutex<quinn::SendStream>,
    pending: Arc<Mutex<VecDeque<Pending>>>,
    dead: Arc<AtomicBool>,
    next_request_id: std::sync::atomic::AtomicU64,
}

fn fail_all(pending: &Mutex<VecDeque<Pending>>, why: &str) {
    let drained: Vec<Pending> = pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain(..)
        .collect();
    for p in drained {
        let _ = p.reply.send(Err(ClientError::Closed(why.to_string())));
    }
}

/// Pops the front pending request for `frame`: an `error` frame answers
/// it with a broker error; anything else must match it.
fn dispatch(pending: &Mutex<VecDeque<Pending>>, frame: Frame) -> Result<(), String> {
    let Some(front) = pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop_front()
    else {
        return Err(format!("unsolicited frame: {frame:?}"));
    };
    let result = match frame {
        Frame::Json(Message::Error(e)) => Err(ClientError::Broker(e.message)),
        f if (front.matches)(&f, front.request_id) => Ok(f),
        f => {
            let why = format!("reply {f:?} does not answer request {}", front.request_id);
            let _ = front.reply.send(Err(ClientError::Protocol(why.clone())));
            return Err(why);
        }
    };
    let _ = front.reply.send(result);
    Ok(())
}

impl RequestStream {
    /// Opens a stream on `conn`, authenticates it, and starts its reader.
    /// Returns the stream and the broker's flags.
    pub(crate) async fn open(
        conn: &quinn::Connection,
        tenant_id: &str,
        token: &str,
        max_frame_bytes: u32,
    ) -> Result<(Arc<RequestStream>, u16), ClientError> {
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        send.write_all(&auth_frame(tenant_id, token)?)
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        let mut reader = FrameReader::new(recv, max_frame_bytes);
        let flags = read_auth_reply(&mut reader).await?;
        let pending: Arc<Mutex<VecDeque<Pending>>> = Arc::default();
        let dead = Arc::new(AtomicBool::new(false));
        let (p, d) = (pending.clone(), dead.clone());
        tokio::spawn(async move {
            let why = loop {
                match reader.next().await {
                    Ok(Some(frame)) => {
                        if let Err(why) = dispatch(&p, frame) {
                            tracing::warn!(%why, "protocol violation on a request stream; closing it");
                            reader.stop();
                            break why;
                        }
                    }
                    Ok(None) => break "the broker ended the stream".to_string(),
                    Err(e) => break e.to_string(),
                }
            };
            d.store(true, Ordering::Release);
            fail_all(&p, &why);
        });
        let stream = RequestStream {
            send: tokio::sync::Mutex::new(send),
            pending,
            dead,
            next_request_id: 1.into(),
        };
        Ok((Arc::new(stream), flags))
    }

    /// Whether the stream can no longer carry requests.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// A request id unique on this stream.
    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `frame` and waits for its reply.
    pub(crate) async fn request(
        &self,
        frame: Bytes,
        request_id: u64,
        matches: Matcher,
    ) -> Result<Frame, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut send = self.send.lock().await;
            if self.is_dead() {
                return Err(ClientError::Closed("stream closed".into()));
            }
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(Pending {
                    request_id,
                    matches,
                    reply: tx,
                });
            if let Err(e) = send.write_all(&frame).await {
                self.dead.store(true, Ordering::Release);
                fail_all(&self.pending, &e.to_string());
            }
        }
        rx.await
            .map_err(|_| ClientError::Closed("stream closed".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use felix_wire::{ErrorMessage, PublishOk};

    fn publish_ok(frame: &Frame, id: u64) -> bool {
        matches!(frame, Frame::Json(Message::PublishOk(ok)) if ok.request_id == id)
    }

    type Reply = oneshot::Receiver<Result<Frame, ClientError>>;

    fn pending(ids: &[u64]) -> (Mutex<VecDeque<Pending>>, Vec<Reply>) {
        let mut q = VecDeque::new();
        let mut rxs = Vec::new();
        for id in ids {
            let (tx, rx) = oneshot::channel();
            q.push_back(Pending {
                request_id: *id,
                matches: publish_ok,
                reply: tx,
            });
            rxs.push(rx);
        }
        (Mutex::new(q), rxs)
    }

    #[test]
    fn replies_are_matched_in_order() {
        let (q, mut rxs) = pending(&[1, 2]);
        dispatch(&q, Frame::Json(Message::from(PublishOk { request_id: 1 }))).expect("matches");
        dispatch(
            &q,
            Frame::Json(Message::from(ErrorMessage {
                message: "nope".into(),
            })),
        )
        .expect("errors answer the front");
        assert!(matches!(rxs[0].try_recv(), Ok(Ok(_))));
        assert!(matches!(rxs[1].try_recv(), Ok(Err(ClientError::Broker(m))) if m == "nope"));
    }

    #[test]
    fn a_mismatched_request_id_is_a_protocol_error() {
        let (q, mut rxs) = pending(&[1]);
        assert!(dispatch(&q, Frame::Json(Message::from(PublishOk { request_id: 9 }))).is_err());
        assert!(matches!(
            rxs[0].try_recv(),
            Ok(Err(ClientError::Protocol(_)))
        ));
        assert!(
            dispatch(&q, Frame::Json(Message::from(PublishOk { request_id: 1 }))).is_err(),
            "nothing pending: unsolicited"
        );
    }

    #[test]
    fn a_dead_stream_fails_everything_pending() {
        let (q, mut rxs) = pending(&[1, 2, 3]);
        fail_all(&q, "gone");
        for rx in &mut rxs {
            assert!(matches!(rx.try_recv(), Ok(Err(ClientError::Closed(_)))));
        }
    }
}
