//! Publishing: the four publish frame kinds as one request, and the ack
//! each kind gets (binary acked batches one binary ack, acked JSON
//! `publish_ok` / `publish_error`, unacked never).

use std::time::Instant;

use bytes::Bytes;
use felix_wire::{
    AckMode, AckStatus, BinaryAckedPublishBatch, BinaryPublishAck, Frame, Message, PublishOk,
    ERROR_TEXT_MAX_BYTES,
};

use super::{Ready, RequestError};
use crate::core::perms::Action;
use crate::core::pubsub::{PublishOutcome, StreamKey};
use crate::core::Core;

/// A publish, whichever frame carried it.
#[derive(Debug)]
pub struct PublishRequest {
    /// The stream.
    pub key: StreamKey,
    /// The events.
    pub payloads: Vec<Bytes>,
    /// How the client wants it acked (JSON: absent means per message).
    pub ack: AckMode,
    /// The request id acks echo.
    pub request_id: Option<u64>,
    /// Whether it came in a binary frame (and so is acked in binary).
    pub binary: bool,
}

/// A frame sorted by whether it publishes.
#[derive(Debug)]
pub enum Sorted {
    /// Any of the four publish kinds.
    Publish(PublishRequest),
    /// Anything else, unchanged.
    Other(Frame),
}

impl PublishRequest {
    /// The publish `frame` carries, or the frame back if it is no publish.
    pub fn sort(frame: Frame) -> Sorted {
        let key = |tenant, namespace, stream| StreamKey {
            tenant,
            namespace,
            stream,
        };
        Sorted::Publish(match frame {
            Frame::Json(Message::Publish(p)) => PublishRequest {
                key: key(p.tenant_id, p.namespace, p.stream),
                payloads: vec![p.payload],
                ack: p.ack.unwrap_or(AckMode::PerMessage),
                request_id: p.request_id,
                binary: false,
            },
            Frame::Json(Message::PublishBatch(p)) => PublishRequest {
                key: key(p.tenant_id, p.namespace, p.stream),
                payloads: p.payloads,
                ack: p.ack.unwrap_or(AckMode::PerMessage),
                request_id: p.request_id,
                binary: false,
            },
            Frame::BinaryPublishBatch(p) => PublishRequest {
                key: key(p.tenant_id, p.namespace, p.stream),
                payloads: p.payloads,
                ack: AckMode::None,
                request_id: None,
                binary: true,
            },
            Frame::BinaryAckedPublishBatch(BinaryAckedPublishBatch {
                request_id,
                ack_mode,
                tenant_id,
                namespace,
                stream,
                payloads,
            }) => PublishRequest {
                key: key(tenant_id, namespace, stream),
                payloads,
                ack: ack_mode,
                request_id: Some(request_id),
                binary: true,
            },
            other => return Sorted::Other(other),
        })
    }

    /// Whether the client expects an ack (never on a publish-only stream).
    pub fn wants_ack(&self, control_stream: bool) -> bool {
        self.ack != AckMode::None && control_stream
    }

    /// The ack for `result`, if this request gets one on a control stream.
    pub fn ack(&self, control_stream: bool, result: &Result<(), RequestError>) -> Option<Frame> {
        if !self.wants_ack(control_stream) {
            return None;
        }
        let request_id = self.request_id?;
        Some(match (self.binary, result) {
            (true, Ok(())) => Frame::from(BinaryPublishAck {
                status: AckStatus::Ok,
                request_id,
                message: String::new(),
            }),
            (true, Err(why)) => Frame::from(BinaryPublishAck {
                status: AckStatus::Error,
                request_id,
                message: felix_wire::truncate_utf8(&why.to_string(), ERROR_TEXT_MAX_BYTES as usize)
                    .to_string(),
            }),
            (false, Ok(())) => Frame::Json(Message::from(PublishOk { request_id })),
            (false, Err(why)) => Frame::Json(Message::from(felix_wire::PublishError {
                request_id,
                message: why.to_string(),
            })),
        })
    }
}

impl Ready {
    /// Checks and publishes.
    pub fn publish(
        &self,
        core: &Core,
        request: &PublishRequest,
        now: Instant,
    ) -> Result<PublishOutcome, RequestError> {
        let key = &request.key;
        self.authorize(
            core,
            Action::StreamPublish,
            &key.tenant,
            &key.namespace,
            &key.stream,
        )?;
        Ok(core.pubsub.publish(key, &request.payloads, now)?)
    }

    /// Cluster mode: the same checks as [`Ready::publish`], keeping nothing
    /// (JetStream stores the events).
    pub fn check_publish(&self, core: &Core, request: &PublishRequest) -> Result<(), RequestError> {
        let key = &request.key;
        self.authorize(
            core,
            Action::StreamPublish,
            &key.tenant,
            &key.namespace,
            &key.stream,
        )?;
        Ok(core.pubsub.admit(key, &request.payloads)?)
    }
}
