//! Publishing: the choice of frame from the broker's flags, and
//! [`Client::publish`] / [`Client::publish_batch`].
//!
//! | ack | broker flags include | frame | stream | reply |
//! | --- | --- | --- | --- | --- |
//! | [`Ack::None`] | `0x0001` | binary `0x0001` | pooled unidirectional | none |
//! | [`Ack::None`] | otherwise | JSON `publish`/`publish_batch`, `ack: "none"` | pooled unidirectional | none |
//! | acked | `0x0001` and `0x0008` | binary `0x0009` | pooled bidirectional | binary ack `0x0010` |
//! | acked | otherwise | JSON with `request_id` and `ack` | pooled bidirectional | `publish_ok` / `publish_error` |
//!
//! Ordering: unacked publishes to one stream always use the same pooled
//! unidirectional stream, so they arrive in the order they were made.
//! Acked publishes are spread round robin over the pool; one awaited
//! after another are in order, concurrent ones are not ordered.

use bytes::Bytes;
use felix_wire::{
    AckMode, AckStatus, BinaryAckedPublishBatch, BinaryPublishBatch, Frame, Message, Publish,
    PublishBatch, BINARY_PUBLISH_ACKED, BINARY_PUBLISH_BATCH,
};

use crate::connection::{Client, PoolKind};
use crate::error::ClientError;
use crate::frames::{describe, encode};
use crate::pool::Expect;

/// How a publish is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ack {
    /// Fire and forget, on a publish-only stream the broker never answers.
    /// `Ok` means the frame was handed to QUIC, not that the broker took it.
    None,
    /// Acked: the call returns once the broker accepted the message(s).
    /// A batch still gets a single ack.
    PerMessage,
    /// Acked, one ack per batch.
    PerBatch,
}

impl Ack {
    fn mode(self) -> AckMode {
        match self {
            Ack::None => AckMode::None,
            Ack::PerMessage => AckMode::PerMessage,
            Ack::PerBatch => AckMode::PerBatch,
        }
    }
}

/// Which frames a publish uses, from the flags the broker advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishEncoding {
    /// Binary `0x0001` (unacked) or `0x0009` (acked).
    Binary,
    /// JSON `publish` / `publish_batch`.
    Json,
}

/// Binary when the broker advertised the layouts the publish needs
/// (`0x0001`, plus `0x0008` when acked), JSON otherwise.
pub fn publish_encoding(server_flags: u16, ack: Ack) -> PublishEncoding {
    let needed = match ack {
        Ack::None => BINARY_PUBLISH_BATCH,
        Ack::PerMessage | Ack::PerBatch => BINARY_PUBLISH_BATCH | BINARY_PUBLISH_ACKED,
    };
    if server_flags & needed == needed {
        PublishEncoding::Binary
    } else {
        PublishEncoding::Json
    }
}

/// One publish, before it becomes a frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PublishRequest<'a> {
    pub(crate) tenant_id: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) stream: &'a str,
    pub(crate) payloads: &'a [Bytes],
    /// From [`Client::publish`]: JSON uses `publish`, not `publish_batch`.
    pub(crate) single: bool,
}

/// The frame for a publish. `request_id` is ignored for [`Ack::None`]
/// (nothing answers it).
pub(crate) fn publish_frame(
    encoding: PublishEncoding,
    ack: Ack,
    p: &PublishRequest<'_>,
    request_id: u64,
) -> Result<Bytes, ClientError> {
    let request_id = (ack != Ack::None).then_some(request_id);
    match (encoding, request_id) {
        (PublishEncoding::Binary, None) => encode(BinaryPublishBatch {
            tenant_id: p.tenant_id.into(),
            namespace: p.namespace.into(),
            stream: p.stream.into(),
            payloads: p.payloads.to_vec(),
        }),
        (PublishEncoding::Binary, Some(request_id)) => encode(BinaryAckedPublishBatch {
            request_id,
            ack_mode: ack.mode(),
            tenant_id: p.tenant_id.into(),
            namespace: p.namespace.into(),
            stream: p.stream.into(),
            payloads: p.payloads.to_vec(),
        }),
        (PublishEncoding::Json, request_id) => match p.payloads {
            [payload] if p.single => encode(Message::from(Publish {
                tenant_id: p.tenant_id.into(),
                namespace: p.namespace.into(),
                stream: p.stream.into(),
                payload: payload.clone(),
                request_id,
                ack: Some(ack.mode()),
            })),
            payloads => encode(Message::from(PublishBatch {
                tenant_id: p.tenant_id.into(),
                namespace: p.namespace.into(),
                stream: p.stream.into(),
                payloads: payloads.to_vec(),
                request_id,
                ack: Some(ack.mode()),
            })),
        },
    }
}

/// Which pooled publish-only stream carries unacked publishes to
/// `namespace`/`stream`: always the same one, so that they reach the broker
/// in the order they were made (separate QUIC streams are not ordered
/// relative to each other).
pub(crate) fn affinity(namespace: &str, stream: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // Deterministic (no random keys): only the spread matters.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (namespace, stream).hash(&mut h);
    h.finish()
}

/// What the reply to an acked publish means.
pub(crate) fn publish_reply(frame: Frame) -> Result<(), ClientError> {
    let refused = |message: String| {
        if message.is_empty() {
            ClientError::Broker("publish refused (no reason given)".into())
        } else {
            ClientError::Broker(message)
        }
    };
    match frame {
        Frame::BinaryPublishAck(a) if a.status == AckStatus::Ok => Ok(()),
        Frame::BinaryPublishAck(a) => Err(refused(a.message)),
        Frame::Json(Message::PublishOk(_)) => Ok(()),
        Frame::Json(Message::PublishError(e)) => Err(refused(e.message)),
        other => Err(ClientError::Protocol(format!(
            "unexpected reply to a publish: {}",
            describe(&other)
        ))),
    }
}

impl Client {
    /// Publishes one payload to `namespace`/`stream`.
    ///
    /// With [`Ack::None`] this returns once the frame is written to a
    /// pooled publish-only stream (unacked publishes to one stream keep
    /// their order; [`Client::close`] waits until they reached the broker);
    /// otherwise once the broker acknowledged it ([`ClientError::Broker`] if
    /// it refused). Acked publishes are never retried after they were
    /// written (at most once).
    pub async fn publish(
        &self,
        namespace: &str,
        stream: &str,
        payload: Bytes,
        ack: Ack,
    ) -> Result<(), ClientError> {
        self.publish_payloads(namespace, stream, &[payload], ack, true)
            .await
    }

    /// Publishes several payloads as one batch (one frame, one ack). They
    /// get consecutive offsets in order.
    pub async fn publish_batch(
        &self,
        namespace: &str,
        stream: &str,
        payloads: Vec<Bytes>,
        ack: Ack,
    ) -> Result<(), ClientError> {
        self.publish_payloads(namespace, stream, &payloads, ack, false)
            .await
    }

    async fn publish_payloads(
        &self,
        namespace: &str,
        stream: &str,
        payloads: &[Bytes],
        ack: Ack,
        single: bool,
    ) -> Result<(), ClientError> {
        let request = PublishRequest {
            tenant_id: &self.config().tenant_id,
            namespace,
            stream,
            payloads,
            single,
        };
        if ack == Ack::None {
            let encoding = publish_encoding(self.server_flags(), ack);
            let frame = publish_frame(encoding, ack, &request, 0)?;
            return self.send_unacked(affinity(namespace, stream), frame).await;
        }
        // The encoding is chosen as the frame is built, after the request
        // stream (maybe a new one, on a new connection) told the flags.
        let build = |request_id| {
            let encoding = publish_encoding(self.server_flags(), ack);
            let expect = match encoding {
                PublishEncoding::Binary => Expect::BinaryPublishAck,
                PublishEncoding::Json => Expect::PublishReply,
            };
            Ok((publish_frame(encoding, ack, &request, request_id)?, expect))
        };
        let reply = self.request(PoolKind::Publish, false, build).await?;
        publish_reply(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use felix_wire::{
        BinaryPublishAck, ErrorMessage, PublishError, PublishOk, KNOWN_FLAGS, ORIGINAL_V1_FLAGS,
    };

    const ACKS: [Ack; 3] = [Ack::None, Ack::PerMessage, Ack::PerBatch];

    fn request(payloads: &[Bytes], single: bool) -> PublishRequest<'_> {
        PublishRequest {
            tenant_id: "t1",
            namespace: "default",
            stream: "orders",
            payloads,
            single,
        }
    }

    fn flags(frame: &Bytes) -> u16 {
        u16::from_be_bytes([frame[6], frame[7]])
    }

    fn json(frame: &Bytes) -> &str {
        std::str::from_utf8(&frame[12..]).expect("utf8")
    }

    #[test]
    fn the_encoding_follows_the_server_flags() {
        use PublishEncoding::{Binary, Json};
        let cases: [(u16, [PublishEncoding; 3]); 5] = [
            (KNOWN_FLAGS, [Binary, Binary, Binary]),
            // `ok` to auth: 0x0001 but not the 0x0008 modifier.
            (ORIGINAL_V1_FLAGS, [Binary, Json, Json]),
            (
                BINARY_PUBLISH_BATCH | BINARY_PUBLISH_ACKED,
                [Binary, Binary, Binary],
            ),
            (BINARY_PUBLISH_ACKED, [Json, Json, Json]),
            (0, [Json, Json, Json]),
        ];
        for (server_flags, expected) in cases {
            for (ack, want) in ACKS.into_iter().zip(expected) {
                assert_eq!(
                    publish_encoding(server_flags, ack),
                    want,
                    "flags {server_flags:#06x}, {ack:?}"
                );
            }
        }
    }

    #[test]
    fn binary_frames() {
        let payloads = [Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        let unacked = publish_frame(
            PublishEncoding::Binary,
            Ack::None,
            &request(&payloads, false),
            7,
        )
        .expect("encode");
        assert_eq!(flags(&unacked), 0x0001);
        let acked = publish_frame(
            PublishEncoding::Binary,
            Ack::PerBatch,
            &request(&payloads, false),
            7,
        )
        .expect("encode");
        assert_eq!(flags(&acked), 0x0009);
        match Frame::decode(acked).expect("decodes") {
            (Frame::BinaryAckedPublishBatch(b), _) => {
                assert_eq!(b.request_id, 7);
                assert_eq!(b.ack_mode, AckMode::PerBatch);
                assert_eq!(b.payloads, payloads);
                assert_eq!((b.tenant_id.as_str(), b.stream.as_str()), ("t1", "orders"));
            }
            (other, _) => panic!("{other:?}"),
        }
        // A single publish is a batch of one in binary.
        let one = [Bytes::from_static(b"x")];
        let single = publish_frame(
            PublishEncoding::Binary,
            Ack::PerMessage,
            &request(&one, true),
            1,
        )
        .expect("encode");
        assert_eq!(flags(&single), 0x0009);
    }

    #[test]
    fn json_frames() {
        let one = [Bytes::from_static(b"hello")];
        let unacked = publish_frame(PublishEncoding::Json, Ack::None, &request(&one, true), 7)
            .expect("encode");
        assert_eq!(flags(&unacked), 0);
        assert_eq!(
            json(&unacked),
            r#"{"type":"publish","tenant_id":"t1","namespace":"default","stream":"orders","payload":"aGVsbG8=","ack":"none"}"#
        );
        let acked = publish_frame(
            PublishEncoding::Json,
            Ack::PerMessage,
            &request(&one, true),
            7,
        )
        .expect("encode");
        assert_eq!(
            json(&acked),
            r#"{"type":"publish","tenant_id":"t1","namespace":"default","stream":"orders","payload":"aGVsbG8=","request_id":7,"ack":"per_message"}"#
        );
        let batch = publish_frame(
            PublishEncoding::Json,
            Ack::PerBatch,
            &request(&one, false),
            8,
        )
        .expect("encode");
        assert_eq!(
            json(&batch),
            r#"{"type":"publish_batch","tenant_id":"t1","namespace":"default","stream":"orders","payloads":["aGVsbG8="],"request_id":8,"ack":"per_batch"}"#
        );
    }

    #[test]
    fn replies() {
        let ack = |status, message: &str| {
            Frame::BinaryPublishAck(BinaryPublishAck {
                status,
                request_id: 1,
                message: message.into(),
            })
        };
        assert!(publish_reply(ack(AckStatus::Ok, "")).is_ok());
        assert!(matches!(
            publish_reply(ack(AckStatus::Error, "stream not found")),
            Err(ClientError::Broker(m)) if m == "stream not found"
        ));
        assert!(publish_reply(Frame::Json(Message::from(PublishOk { request_id: 1 }))).is_ok());
        assert!(matches!(
            publish_reply(Frame::Json(Message::from(PublishError {
                request_id: 1,
                message: "denied".into()
            }))),
            Err(ClientError::Broker(m)) if m == "denied"
        ));
        assert!(matches!(
            publish_reply(Frame::Json(Message::from(ErrorMessage {
                message: "x".into()
            }))),
            Err(ClientError::Protocol(_))
        ));
    }
}
