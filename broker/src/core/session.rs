//! The per-stream protocol state machine.
//!
//! The shell hands each frame envelope (checked magic, version and length;
//! flags and payload not yet parsed) to [`Session::on_frame`] and carries
//! out the [`Output`]s it returns, in order. Framing errors that break the
//! stream go to [`Session::on_framing_error`]. Nothing here touches a
//! socket or reads the clock, so tests drive sessions directly.
//!
//! Rules (see docs/implementers-guide.md):
//! - every client-opened stream authenticates first; `auth_ok` answers an
//!   `auth` with `client_flags`, `ok` one without;
//! - a control (bidirectional) stream carries any mix of publishes, cache
//!   requests and one subscribe, answered in order; a publish-only
//!   (unidirectional) stream is never answered;
//! - acked publishes get exactly one ack each; nothing unsolicited is ever
//!   written on a stream (a refused unacked publish is counted and logged);
//! - a frame that cannot be parsed gets an `error` naming the problem and
//!   the stream ends (unknown or invalid flag bits: `error "unsupported
//!   frame flags"` and the stream goes on, since framing is intact).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use felix_wire::{
    AckMode, AckStatus, AuthOk, BinaryAckedPublishBatch, BinaryPublishAck, CacheOk, CacheValue,
    CursorErrorReason, DecodeError, Direction, ErrorMessage, Frame, Message, OkMessage,
    PublishError as PublishErrorMsg, PublishOk, SubscribeCursorError, BINARY_PUBLISH_ACKED,
    BINARY_PUBLISH_BATCH, ERROR_TEXT_MAX_BYTES, ORIGINAL_V1_FLAGS,
};

use super::auth::AuthContext;
use super::cache::CacheKey;
use super::perms::Action;
use super::pubsub::{PublishError, StreamKey, SubscribeError, Subscription};
use super::queue::SubscriberQueue;
use super::Core;

/// What a stream is for, from who opened it and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Client-opened bidirectional: requests and replies.
    Control,
    /// Client-opened unidirectional: publishes only, never answered.
    PublishOnly,
}

/// What the shell must do, in order.
#[derive(Debug)]
pub enum Output {
    /// Write this encoded frame to the stream.
    Send(Bytes),
    /// End the stream (finish our side, stop reading).
    Close,
    /// Start a subscription: open an event stream, write
    /// `event_stream_hello`, the replay frames, then live batches; then
    /// reply `subscribed` on this stream and end it.
    Subscribe(Subscription),
    /// Flush this stream's pending events at this time.
    FlushAt(StreamKey, Instant),
    /// Wait until these `block` queues have room before reading on.
    Wait(Vec<std::sync::Arc<SubscriberQueue>>),
}

/// Time as the caller sees it.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic time, for TTLs and coalescing.
    pub instant: Instant,
    /// Unix seconds, for JWT expiry.
    pub unix: u64,
}

#[derive(Debug)]
enum State {
    AwaitAuth,
    Ready { ctx: AuthContext, flags: u16 },
    Closed,
}

/// One stream's protocol state.
#[derive(Debug)]
pub struct Session {
    role: Role,
    state: State,
    subscribed: bool,
}

fn frame_bytes(frame: impl Into<Frame>) -> Bytes {
    // Replies are built from values that came off the wire or from short
    // literals, so they always have a wire form.
    frame.into().to_bytes().unwrap_or_default()
}

fn message(m: impl Into<Message>) -> Bytes {
    frame_bytes(Frame::Json(m.into()))
}

fn error_frame(text: impl Into<String>) -> Bytes {
    message(ErrorMessage {
        message: text.into(),
    })
}

fn truncate(text: &str) -> String {
    felix_wire::binary::truncate_utf8(text, ERROR_TEXT_MAX_BYTES as usize).to_string()
}

impl Session {
    /// A fresh session for a stream with this role.
    pub fn new(role: Role) -> Self {
        Session {
            role,
            state: State::AwaitAuth,
            subscribed: false,
        }
    }

    /// Whether the stream has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Flags negotiated at auth (the set the broker may use towards this client).
    pub fn negotiated_flags(&self) -> Option<u16> {
        match &self.state {
            State::Ready { flags, .. } => Some(*flags),
            _ => None,
        }
    }

    fn close(&mut self, out: &mut Vec<Output>) {
        self.state = State::Closed;
        out.push(Output::Close);
    }

    /// Replies with an error and ends the stream (publish-only streams are
    /// never answered: they just end).
    fn fail(&mut self, out: &mut Vec<Output>, text: impl Into<String>) {
        if self.role == Role::Control {
            out.push(Output::Send(error_frame(text)));
        }
        self.close(out);
    }

    /// A framing error the stream cannot recover from (bad magic, bad
    /// version, oversize frame).
    pub fn on_framing_error(&mut self, core: &Core, err: &DecodeError) -> Vec<Output> {
        core.metrics
            .frames_malformed
            .fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        self.fail(&mut out, format!("invalid frame: {err}"));
        out
    }

    /// Handles one frame: `flags` and `payload` as they came off the wire.
    pub fn on_frame(&mut self, core: &Core, flags: u16, payload: Bytes, now: Now) -> Vec<Output> {
        let mut out = Vec::new();
        if self.is_closed() {
            return out;
        }
        core.metrics.frames_received.fetch_add(1, Ordering::Relaxed);
        core.metrics
            .bytes_received
            .fetch_add(12 + payload.len() as u64, Ordering::Relaxed);
        let frame = match Frame::decode_payload(flags, payload.clone()) {
            Ok(f) => f,
            Err(DecodeError::UnknownFlags { .. } | DecodeError::InvalidFlagCombination { .. }) => {
                core.metrics
                    .frames_malformed
                    .fetch_add(1, Ordering::Relaxed);
                if self.role == Role::Control {
                    out.push(Output::Send(error_frame("unsupported frame flags")));
                }
                return out;
            }
            Err(e) => {
                core.metrics
                    .frames_malformed
                    .fetch_add(1, Ordering::Relaxed);
                // A bad body behind a good acked-batch prefix is answered
                // with an error ack, so the client's FIFO of acks stays whole.
                if flags == BINARY_PUBLISH_BATCH | BINARY_PUBLISH_ACKED
                    && payload.len() >= 9
                    && self.role == Role::Control
                {
                    if let State::Ready { .. } = self.state {
                        let request_id =
                            u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
                        out.push(Output::Send(frame_bytes(BinaryPublishAck {
                            status: AckStatus::Error,
                            request_id,
                            message: truncate(&format!("invalid frame: {e}")),
                        })));
                        return out;
                    }
                }
                self.fail(&mut out, format!("invalid frame: {e}"));
                return out;
            }
        };
        match std::mem::replace(&mut self.state, State::Closed) {
            State::AwaitAuth => {
                self.state = State::AwaitAuth;
                self.on_first_frame(core, frame, now, &mut out);
            }
            State::Ready { ctx, flags } => {
                self.state = State::Ready {
                    ctx: ctx.clone(),
                    flags,
                };
                self.on_request(core, &ctx, flags, frame, now, &mut out);
            }
            State::Closed => {}
        }
        out
    }

    fn on_first_frame(&mut self, core: &Core, frame: Frame, now: Now, out: &mut Vec<Output>) {
        let Frame::Json(Message::Auth(auth)) = frame else {
            return self.fail(out, "auth required");
        };
        match core
            .auth
            .authenticate(&auth.tenant_id, &auth.token, now.unix)
        {
            Ok(ctx) => {
                let server = core.settings.server_flags;
                let (flags, reply) = match auth.client_flags {
                    Some(client) => (
                        client & server,
                        message(AuthOk {
                            server_flags: server,
                        }),
                    ),
                    None => (ORIGINAL_V1_FLAGS & server, message(OkMessage {})),
                };
                if self.role == Role::Control {
                    out.push(Output::Send(reply));
                }
                self.state = State::Ready { ctx, flags };
            }
            Err(e) => {
                core.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
                tracing::info!(tenant = %auth.tenant_id, error = %e, "authentication failed");
                self.fail(out, e.wire_message());
            }
        }
    }

    /// Checks tenant and permission for a request; `Err` holds the reason.
    fn check(
        core: &Core,
        ctx: &AuthContext,
        action: Action,
        tenant: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), String> {
        if tenant != ctx.tenant {
            core.metrics
                .permission_denied
                .fetch_add(1, Ordering::Relaxed);
            return Err("tenant mismatch".into());
        }
        if !ctx.permissions.allows(action, tenant, namespace, name) {
            core.metrics
                .permission_denied
                .fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "permission denied: {action} on {tenant}/{namespace}/{name}"
            ));
        }
        Ok(())
    }

    fn on_request(
        &mut self,
        core: &Core,
        ctx: &AuthContext,
        flags: u16,
        frame: Frame,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        match frame {
            Frame::Json(Message::Auth(_)) => self.fail(out, "auth already established"),
            Frame::Json(Message::Publish(p)) => {
                let ack = p.ack.unwrap_or(AckMode::PerMessage);
                self.publish(
                    core,
                    ctx,
                    &p.tenant_id,
                    &p.namespace,
                    &p.stream,
                    vec![p.payload],
                    ack,
                    p.request_id,
                    false,
                    now,
                    out,
                );
            }
            Frame::Json(Message::PublishBatch(p)) => {
                let ack = p.ack.unwrap_or(AckMode::PerMessage);
                self.publish(
                    core,
                    ctx,
                    &p.tenant_id,
                    &p.namespace,
                    &p.stream,
                    p.payloads,
                    ack,
                    p.request_id,
                    false,
                    now,
                    out,
                );
            }
            Frame::BinaryPublishBatch(p) => {
                self.publish(
                    core,
                    ctx,
                    &p.tenant_id,
                    &p.namespace,
                    &p.stream,
                    p.payloads,
                    AckMode::None,
                    None,
                    true,
                    now,
                    out,
                );
            }
            Frame::BinaryAckedPublishBatch(BinaryAckedPublishBatch {
                request_id,
                ack_mode,
                tenant_id,
                namespace,
                stream,
                payloads,
            }) => {
                self.publish(
                    core,
                    ctx,
                    &tenant_id,
                    &namespace,
                    &stream,
                    payloads,
                    ack_mode,
                    Some(request_id),
                    true,
                    now,
                    out,
                );
            }
            _ if self.role == Role::PublishOnly => {
                // Only publishes travel on a publish-only stream.
                core.metrics
                    .frames_malformed
                    .fetch_add(1, Ordering::Relaxed);
                self.close(out);
            }
            Frame::Json(Message::Subscribe(s)) => {
                if self.subscribed {
                    return self.fail(out, "already subscribed on this stream");
                }
                if let Err(why) = Self::check(
                    core,
                    ctx,
                    Action::StreamSubscribe,
                    &s.tenant_id,
                    &s.namespace,
                    &s.stream,
                ) {
                    return self.fail(out, why);
                }
                let key = StreamKey {
                    tenant: s.tenant_id,
                    namespace: s.namespace,
                    stream: s.stream,
                };
                let id = s
                    .subscription_id
                    .unwrap_or_else(|| core.pubsub.next_subscription_id());
                let offsets = flags & felix_wire::EVENT_BATCH_OFFSETS != 0;
                let start = s.start.unwrap_or(felix_wire::StartPosition::Latest);
                match core.pubsub.subscribe(&key, id, start, offsets) {
                    Ok(sub) => {
                        self.subscribed = true;
                        out.push(Output::Subscribe(sub));
                    }
                    Err(SubscribeError::TooOld {
                        requested,
                        available,
                    }) => {
                        out.push(Output::Send(message(SubscribeCursorError {
                            reason: CursorErrorReason::TooOld,
                            requested,
                            available,
                        })));
                        self.close(out);
                    }
                    Err(SubscribeError::InFuture {
                        requested,
                        available,
                    }) => {
                        out.push(Output::Send(message(SubscribeCursorError {
                            reason: CursorErrorReason::InFuture,
                            requested,
                            available,
                        })));
                        self.close(out);
                    }
                    Err(e @ (SubscribeError::NotFound(_) | SubscribeError::Limit(_))) => {
                        self.fail(out, e.to_string())
                    }
                }
            }
            Frame::Json(Message::CachePut(c)) => {
                if let Err(why) = Self::check(
                    core,
                    ctx,
                    Action::CacheWrite,
                    &c.tenant_id,
                    &c.namespace,
                    &c.cache,
                ) {
                    return self.fail(out, why);
                }
                if !core.cache_exists(&c.tenant_id, &c.namespace, &c.cache) {
                    return self.fail(
                        out,
                        format!(
                            "cache scope not found: {}/{}/{}",
                            c.tenant_id, c.namespace, c.cache
                        ),
                    );
                }
                let key = CacheKey {
                    tenant: c.tenant_id,
                    namespace: c.namespace,
                    cache: c.cache,
                    key: c.key,
                };
                if let Err(refused) = core.cache.put(
                    key,
                    c.value,
                    c.ttl_ms.map(Duration::from_millis),
                    now.instant,
                ) {
                    return self.fail(out, refused.to_string());
                }
                match c.request_id {
                    Some(request_id) => out.push(Output::Send(message(CacheOk { request_id }))),
                    None => {
                        out.push(Output::Send(message(OkMessage {})));
                        self.close(out);
                    }
                }
            }
            Frame::Json(Message::CacheGet(c)) => {
                if let Err(why) = Self::check(
                    core,
                    ctx,
                    Action::CacheRead,
                    &c.tenant_id,
                    &c.namespace,
                    &c.cache,
                ) {
                    return self.fail(out, why);
                }
                if !core.cache_exists(&c.tenant_id, &c.namespace, &c.cache) {
                    return self.fail(
                        out,
                        format!(
                            "cache scope not found: {}/{}/{}",
                            c.tenant_id, c.namespace, c.cache
                        ),
                    );
                }
                let key = CacheKey {
                    tenant: c.tenant_id,
                    namespace: c.namespace,
                    cache: c.cache,
                    key: c.key,
                };
                let value = core.cache.get(&key, now.instant);
                out.push(Output::Send(message(CacheValue {
                    tenant_id: key.tenant,
                    namespace: key.namespace,
                    cache: key.cache,
                    key: key.key,
                    value,
                    request_id: c.request_id,
                })));
                if c.request_id.is_none() {
                    self.close(out);
                }
            }
            Frame::Json(m) if m.direction() == Direction::BrokerToClient => {
                core.metrics
                    .frames_malformed
                    .fetch_add(1, Ordering::Relaxed);
                out.push(Output::Send(error_frame("unexpected message type")));
            }
            _ => {
                // Broker-to-client binary layouts sent by a client.
                core.metrics
                    .frames_malformed
                    .fetch_add(1, Ordering::Relaxed);
                out.push(Output::Send(error_frame("unexpected message type")));
            }
        }
    }

    /// Publishes and answers as the frame kind requires: binary acked
    /// batches with one binary ack, acked JSON with `publish_ok` /
    /// `publish_error`, unacked never.
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &mut self,
        core: &Core,
        ctx: &AuthContext,
        tenant: &str,
        namespace: &str,
        stream: &str,
        payloads: Vec<Bytes>,
        ack: AckMode,
        request_id: Option<u64>,
        binary: bool,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let acked = ack != AckMode::None && self.role == Role::Control;
        if acked && request_id.is_none() {
            return self.fail(out, "missing request_id for acked publish");
        }
        let result = Self::check(core, ctx, Action::StreamPublish, tenant, namespace, stream)
            .and_then(|()| {
                let key = StreamKey {
                    tenant: tenant.into(),
                    namespace: namespace.into(),
                    stream: stream.into(),
                };
                core.pubsub
                    .publish(&key, &payloads, now.instant)
                    .map(|o| (key, o))
                    .map_err(|e: PublishError| e.to_string())
            });
        let reply = match result {
            Ok((key, outcome)) => {
                if let Some(at) = outcome.flush_at {
                    out.push(Output::FlushAt(key, at));
                }
                if !outcome.wait_for.is_empty() {
                    out.push(Output::Wait(outcome.wait_for));
                }
                Ok(())
            }
            Err(why) => {
                tracing::debug!(%tenant, %namespace, %stream, %why, "publish refused");
                Err(why)
            }
        };
        let (true, Some(request_id)) = (acked, request_id) else {
            return; // unacked: never answered, refusals are counted above
        };
        let frame = match (binary, reply) {
            (true, Ok(())) => frame_bytes(BinaryPublishAck {
                status: AckStatus::Ok,
                request_id,
                message: String::new(),
            }),
            (true, Err(why)) => frame_bytes(BinaryPublishAck {
                status: AckStatus::Error,
                request_id,
                message: truncate(&why),
            }),
            (false, Ok(())) => message(PublishOk { request_id }),
            (false, Err(why)) => message(PublishErrorMsg {
                request_id,
                message: why,
            }),
        };
        out.push(Output::Send(frame));
    }
}

#[cfg(test)]
mod tests {
    use felix_wire::{
        Auth, BinaryPublishBatch, CacheGet, CachePut, Publish, StartPosition, Subscribe,
        KNOWN_FLAGS,
    };

    use super::*;
    use crate::core::auth::Authenticator;
    use crate::core::settings::CoreSettings;

    fn core() -> Core {
        Core::new(
            CoreSettings {
                batch_linger: Duration::ZERO,
                ..CoreSettings::default()
            },
            Authenticator::Dev,
        )
    }

    fn now() -> Now {
        Now {
            instant: Instant::now(),
            unix: 1_700_000_000,
        }
    }

    fn send(s: &mut Session, core: &Core, frame: impl Into<Frame>) -> Vec<Output> {
        let bytes = frame.into().to_bytes().expect("encode");
        let flags = u16::from_be_bytes([bytes[6], bytes[7]]);
        s.on_frame(core, flags, bytes.slice(12..), now())
    }

    fn replies(out: &[Output]) -> Vec<Frame> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(b) => Some(Frame::decode(b.clone()).expect("reply decodes").0),
                _ => None,
            })
            .collect()
    }

    fn closes(out: &[Output]) -> bool {
        out.iter().any(|o| matches!(o, Output::Close))
    }

    fn auth(client_flags: Option<u16>) -> Message {
        Message::from(Auth {
            tenant_id: "t1".into(),
            token: "x".into(),
            client_flags,
        })
    }

    fn error_text(f: &Frame) -> &str {
        match f {
            Frame::Json(Message::Error(e)) => &e.message,
            other => panic!("not an error: {other:?}"),
        }
    }

    fn publish(ack: Option<AckMode>, request_id: Option<u64>) -> Message {
        Message::from(Publish {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            stream: "orders".into(),
            payload: Bytes::from_static(b"hi"),
            request_id,
            ack,
        })
    }

    #[test]
    fn auth_reply_depends_on_client_flags() {
        let core = core();
        let mut s = Session::new(Role::Control);
        let r = replies(&send(&mut s, &core, auth(Some(KNOWN_FLAGS))));
        assert_eq!(
            r,
            [Frame::Json(Message::AuthOk(AuthOk {
                server_flags: KNOWN_FLAGS
            }))]
        );
        let mut s = Session::new(Role::Control);
        let r = replies(&send(&mut s, &core, auth(None)));
        assert_eq!(r, [Frame::Json(Message::Ok(OkMessage {}))]);
        assert_eq!(s.negotiated_flags(), Some(ORIGINAL_V1_FLAGS));
    }

    #[test]
    fn requests_before_auth_and_second_auth_are_refused() {
        let core = core();
        let mut s = Session::new(Role::Control);
        let out = send(&mut s, &core, publish(None, Some(1)));
        assert_eq!(error_text(&replies(&out)[0]), "auth required");
        assert!(closes(&out));
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(None));
        let out = send(&mut s, &core, auth(None));
        assert_eq!(error_text(&replies(&out)[0]), "auth already established");
    }

    #[test]
    fn absent_ack_means_acked_and_needs_a_request_id() {
        let core = core();
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(None));
        let r = replies(&send(&mut s, &core, publish(None, Some(9))));
        assert_eq!(
            r,
            [Frame::Json(Message::PublishOk(PublishOk { request_id: 9 }))]
        );
        assert!(replies(&send(&mut s, &core, publish(Some(AckMode::None), None))).is_empty());
        let out = send(&mut s, &core, publish(None, None));
        assert_eq!(
            error_text(&replies(&out)[0]),
            "missing request_id for acked publish"
        );
    }

    #[test]
    fn binary_acked_batch_gets_one_binary_ack_and_bad_bodies_an_error_ack() {
        let core = core();
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(Some(KNOWN_FLAGS)));
        let batch = BinaryAckedPublishBatch {
            request_id: 5,
            ack_mode: AckMode::PerBatch,
            tenant_id: "t1".into(),
            namespace: "default".into(),
            stream: "orders".into(),
            payloads: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        };
        let r = replies(&send(&mut s, &core, batch.clone()));
        assert_eq!(
            r,
            [Frame::BinaryPublishAck(BinaryPublishAck {
                status: AckStatus::Ok,
                request_id: 5,
                message: String::new()
            })]
        );
        let mut bad = Frame::from(batch)
            .to_bytes()
            .expect("encode")
            .slice(12..)
            .to_vec();
        bad.truncate(bad.len() - 1);
        let out = s.on_frame(&core, 0x0009, Bytes::from(bad), now());
        match &replies(&out)[0] {
            Frame::BinaryPublishAck(a) => {
                assert_eq!((a.status, a.request_id), (AckStatus::Error, 5));
                assert!(
                    a.message.contains("binary_acked_publish_batch.payloads"),
                    "{}",
                    a.message
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!s.is_closed(), "the stream goes on");
    }

    #[test]
    fn unknown_flags_are_answered_and_the_stream_goes_on() {
        let core = core();
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(None));
        let out = s.on_frame(&core, 0x0040, Bytes::new(), now());
        assert_eq!(error_text(&replies(&out)[0]), "unsupported frame flags");
        assert!(!closes(&out));
        let out = s.on_frame(&core, 0x0008, Bytes::new(), now());
        assert_eq!(error_text(&replies(&out)[0]), "unsupported frame flags");
        assert_eq!(
            replies(&send(&mut s, &core, publish(None, Some(1)))).len(),
            1
        );
    }

    #[test]
    fn malformed_payload_gets_an_error_naming_it_then_the_stream_ends() {
        let core = core();
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(None));
        let out = s.on_frame(
            &core,
            0,
            Bytes::from_static(br#"{"type":"publish"}"#),
            now(),
        );
        let text = error_text(&replies(&out)[0]).to_string();
        assert!(
            text.starts_with("invalid frame: publish.tenant_id"),
            "{text}"
        );
        assert!(closes(&out));
        assert!(
            s.on_frame(&core, 0, Bytes::new(), now()).is_empty(),
            "closed streams ignore input"
        );
    }

    #[test]
    fn broker_only_messages_are_unexpected() {
        let core = core();
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(None));
        let out = send(&mut s, &core, Message::from(PublishOk { request_id: 1 }));
        assert_eq!(error_text(&replies(&out)[0]), "unexpected message type");
    }

    #[test]
    fn publish_only_streams_are_never_answered() {
        let core = core();
        let mut s = Session::new(Role::PublishOnly);
        assert!(replies(&send(&mut s, &core, auth(Some(KNOWN_FLAGS)))).is_empty());
        let batch = BinaryPublishBatch {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            stream: "orders".into(),
            payloads: vec![],
        };
        assert!(replies(&send(&mut s, &core, batch)).is_empty());
        assert!(
            replies(&send(&mut s, &core, publish(None, Some(1)))).is_empty(),
            "even an acked publish"
        );
        let out = s.on_frame(&core, 0, Bytes::from_static(b"{"), now());
        assert!(replies(&out).is_empty() && closes(&out));
    }

    #[test]
    fn tenant_isolation_on_every_request() {
        let core = core();
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(None));
        let other = Message::from(Publish {
            tenant_id: "t2".into(),
            namespace: "default".into(),
            stream: "orders".into(),
            payload: Bytes::new(),
            request_id: Some(3),
            ack: None,
        });
        let r = replies(&send(&mut s, &core, other));
        assert_eq!(
            r,
            [Frame::Json(Message::PublishError(PublishErrorMsg {
                request_id: 3,
                message: "tenant mismatch".into()
            }))]
        );
        let get = Message::from(CacheGet {
            tenant_id: "t2".into(),
            namespace: "n".into(),
            cache: "c".into(),
            key: "k".into(),
            request_id: Some(1),
        });
        assert_eq!(
            error_text(&replies(&send(&mut s, &core, get))[0]),
            "tenant mismatch"
        );
    }

    #[test]
    fn cache_one_shot_forms_end_the_stream() {
        let core = core();
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(None));
        let put = |request_id| {
            Message::from(CachePut {
                tenant_id: "t1".into(),
                namespace: "n".into(),
                cache: "c".into(),
                key: "k".into(),
                value: Bytes::from_static(b"v"),
                request_id,
                ttl_ms: None,
            })
        };
        let r = replies(&send(&mut s, &core, put(Some(4))));
        assert_eq!(
            r,
            [Frame::Json(Message::CacheOk(CacheOk { request_id: 4 }))]
        );
        let out = send(&mut s, &core, put(None));
        assert_eq!(replies(&out), [Frame::Json(Message::Ok(OkMessage {}))]);
        assert!(closes(&out));
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(None));
        let get = Message::from(CacheGet {
            tenant_id: "t1".into(),
            namespace: "n".into(),
            cache: "c".into(),
            key: "k".into(),
            request_id: None,
        });
        let out = send(&mut s, &core, get);
        match &replies(&out)[0] {
            Frame::Json(Message::CacheValue(v)) => assert_eq!(v.value.as_deref(), Some(&b"v"[..])),
            other => panic!("{other:?}"),
        }
        assert!(closes(&out));
    }

    #[test]
    fn subscribe_starts_a_subscription_or_reports_cursor_errors() {
        let core = core();
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(Some(KNOWN_FLAGS)));
        let sub = |start| {
            Message::from(Subscribe {
                tenant_id: "t1".into(),
                namespace: "default".into(),
                stream: "orders".into(),
                subscription_id: Some(77),
                start: Some(start),
            })
        };
        let out = send(&mut s, &core, sub(StartPosition::Offset(5)));
        match &replies(&out)[0] {
            Frame::Json(Message::SubscribeCursorError(e)) => {
                assert_eq!(
                    (e.reason, e.requested, e.available),
                    (CursorErrorReason::InFuture, 5, 0)
                );
            }
            other => panic!("{other:?}"),
        }
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(Some(KNOWN_FLAGS)));
        let out = send(&mut s, &core, sub(StartPosition::Latest));
        assert!(matches!(
            &out[..],
            [Output::Subscribe(Subscription { id: 77, .. })]
        ));
        let out = send(&mut s, &core, sub(StartPosition::Latest));
        assert_eq!(
            error_text(&replies(&out)[0]),
            "already subscribed on this stream"
        );
    }
}
