//! Frames on QUIC streams: reading them with [`FrameDecoder`], encoding,
//! cancel-safe writing, and the per-stream `auth` exchange.

use std::future::Future as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use felix_wire::{Auth, Frame, FrameDecoder, Message, KNOWN_FLAGS, ORIGINAL_V1_FLAGS};

use crate::error::{closed, ClientError};

/// How much a single read asks QUIC for.
const READ_CHUNK: usize = 64 * 1024;

/// Reads frames from a receive stream.
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl FrameReader {
    /// A reader accepting payloads up to `max_frame_bytes`.
    pub(crate) fn new(recv: quinn::RecvStream, max_frame_bytes: u32) -> Self {
        FrameReader {
            recv,
            buf: BytesMut::new(),
            decoder: FrameDecoder::with_max_frame_bytes(max_frame_bytes),
        }
    }

    /// The next frame; `None` when the stream ended cleanly between frames.
    /// Cancel-safe: the bytes read so far stay buffered.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ClientError> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`FrameReader::next`] as a poll function, for [`Subscription`]'s
    /// `Stream` implementation.
    ///
    /// Each poll makes a fresh `read_chunk` future and polls it once: quinn
    /// documents `read_chunk` as cancel-safe, and a pending read leaves the
    /// waker with the connection, so dropping the future loses neither data
    /// nor the wake-up.
    ///
    /// [`Subscription`]: crate::Subscription
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Frame>, ClientError>> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf)? {
                return Poll::Ready(Ok(Some(f)));
            }
            let read = std::pin::pin!(self.recv.read_chunk(READ_CHUNK, true));
            match ready!(read.poll(cx)) {
                Ok(Some(c)) => self.buf.extend_from_slice(&c.bytes),
                Ok(None) if self.buf.is_empty() => return Poll::Ready(Ok(None)),
                Ok(None) => {
                    return Poll::Ready(Err(ClientError::Protocol(
                        "the stream ended inside a frame".into(),
                    )))
                }
                Err(e) => return Poll::Ready(Err(closed("reading a stream", e))),
            }
        }
    }

    /// The next frame; [`ClientError::Closed`] if the stream ends.
    pub(crate) async fn recv(&mut self) -> Result<Frame, ClientError> {
        match self.next().await? {
            Some(f) => Ok(f),
            None => Err(closed("reading a stream", "the broker ended the stream")),
        }
    }

    /// Tells the broker to stop sending on this stream.
    pub(crate) fn stop(&mut self) {
        // Already stopped or finished: nothing to do.
        let _ = self.recv.stop(0u32.into());
    }
}

/// Encodes a frame.
pub(crate) fn encode(frame: impl Into<Frame>) -> Result<Bytes, ClientError> {
    Ok(frame.into().to_bytes()?)
}

/// The `auth` this client sends first on every stream it opens. It always
/// advertises [`KNOWN_FLAGS`], so the broker answers `auth_ok` with its
/// flags and sends offsets on event streams.
pub(crate) fn auth_frame(tenant_id: &str, token: &str) -> Result<Bytes, ClientError> {
    encode(Message::from(Auth {
        tenant_id: tenant_id.into(),
        token: token.into(),
        client_flags: Some(KNOWN_FLAGS),
    }))
}

/// What the reply to `auth` means: the broker's flags (`auth_ok`, or `ok`
/// from a broker that advertises nothing: [`ORIGINAL_V1_FLAGS`]), or why
/// it refused.
pub(crate) fn auth_reply(frame: Frame) -> Result<u16, ClientError> {
    match frame {
        Frame::Json(Message::AuthOk(ok)) => Ok(ok.server_flags),
        Frame::Json(Message::Ok(_)) => Ok(ORIGINAL_V1_FLAGS),
        Frame::Json(Message::Error(e)) => Err(ClientError::AuthFailed(e.message)),
        other => Err(ClientError::Protocol(format!(
            "unexpected reply to auth: {}",
            describe(&other)
        ))),
    }
}

/// Reads and interprets the reply to `auth`.
pub(crate) async fn read_auth_reply(reader: &mut FrameReader) -> Result<u16, ClientError> {
    auth_reply(reader.recv().await?)
}

/// A short description of a frame for error messages (never the payloads).
pub(crate) fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Json(m) => format!("JSON {}", json_type(m)),
        Frame::BinaryPublishBatch(_) => "binary publish batch (0x0001)".into(),
        Frame::BinaryAckedPublishBatch(_) => "binary acked publish batch (0x0009)".into(),
        Frame::BinaryPublishAck(a) => format!("binary publish ack for request {}", a.request_id),
        Frame::BinaryEventBatch(_) => "binary event batch (0x0002)".into(),
        Frame::BinarySharedEventBatch(_) => "binary shared event batch (0x0004)".into(),
    }
}

fn json_type(m: &Message) -> String {
    match m {
        Message::PublishOk(o) => format!("publish_ok for request {}", o.request_id),
        Message::PublishError(e) => format!("publish_error for request {}", e.request_id),
        Message::CacheOk(o) => format!("cache_ok for request {}", o.request_id),
        Message::CacheValue(v) => match v.request_id {
            Some(id) => format!("cache_value for request {id}"),
            None => "cache_value without a request id".into(),
        },
        Message::Error(e) => format!("error {:?}", e.message),
        other => other.type_name().to_string(),
    }
}

/// Writes `frame` completely. If the future is dropped half-way (a
/// timeout, a cancelled caller), the stream is reset and `dead` set: a
/// partial frame must never be followed by another one.
pub(crate) async fn write_frame(
    send: &mut quinn::SendStream,
    frame: Bytes,
    dead: &AtomicBool,
) -> Result<(), ClientError> {
    struct ResetOnDrop<'a> {
        send: &'a mut quinn::SendStream,
        dead: &'a AtomicBool,
        armed: bool,
    }
    impl Drop for ResetOnDrop<'_> {
        fn drop(&mut self) {
            if self.armed {
                tracing::debug!("a write was cancelled part-way; resetting the stream");
                self.dead.store(true, Ordering::Release);
                // Already reset or finished: nothing more to do.
                let _ = self.send.reset(0u32.into());
            }
        }
    }
    let mut guard = ResetOnDrop {
        send,
        dead,
        armed: true,
    };
    let result = guard.send.write_chunk(frame).await;
    guard.armed = false;
    result.map_err(|e| {
        dead.store(true, Ordering::Release);
        closed("writing a stream", e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use felix_wire::{AuthOk, ErrorMessage, OkMessage, PublishOk};

    #[test]
    fn auth_advertises_every_known_flag() {
        let bytes = auth_frame("t1", "dev").expect("encode");
        assert_eq!(&bytes[6..8], &[0, 0], "JSON frame");
        assert_eq!(
            std::str::from_utf8(&bytes[12..]).expect("utf8"),
            r#"{"type":"auth","tenant_id":"t1","token":"dev","client_flags":63}"#
        );
    }

    #[test]
    fn auth_replies() {
        let ok = |m: Message| auth_reply(Frame::Json(m));
        assert_eq!(
            ok(Message::from(AuthOk { server_flags: 0x15 })).expect("auth_ok"),
            0x15,
            "exactly the advertised flags"
        );
        assert_eq!(
            ok(Message::from(OkMessage {})).expect("ok"),
            ORIGINAL_V1_FLAGS
        );
        assert!(matches!(
            ok(Message::from(ErrorMessage { message: "auth failed".into() })),
            Err(ClientError::AuthFailed(m)) if m == "auth failed"
        ));
        assert!(matches!(
            ok(Message::from(PublishOk { request_id: 1 })),
            Err(ClientError::Protocol(_))
        ));
    }

    #[test]
    fn descriptions_name_the_message() {
        assert_eq!(
            describe(&Frame::Json(Message::from(OkMessage {}))),
            "JSON ok"
        );
        assert_eq!(
            describe(&Frame::Json(Message::from(PublishOk { request_id: 7 }))),
            "JSON publish_ok for request 7"
        );
    }
}
