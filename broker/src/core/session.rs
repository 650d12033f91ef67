//! The per-stream protocol state machine.
//!
//! The shell hands each frame envelope (checked magic, version and length;
//! flags and payload not yet parsed) to [`Session::on_frame`] and carries
//! out the [`Output`]s it returns, in order. Framing errors that break the
//! stream go to [`Session::on_framing_error`]. Nothing here touches a
//! socket or reads the clock, so tests drive sessions directly. What each
//! request does is in [`super::request`], one handler per command; this
//! file decides which handler runs and how its result is answered.
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
//!   frame flags"` and the stream goes on, since framing is intact);
//! - a JWT that expires while the stream is open ends it at the next
//!   request (`error "token expired"`).

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use felix_wire::{
    AckStatus, AuthOk, BinaryPublishAck, CacheOk, DecodeError, Direction, ErrorMessage, Frame,
    Message, OkMessage, BINARY_PUBLISH_ACKED, BINARY_PUBLISH_BATCH, ERROR_TEXT_MAX_BYTES,
    ORIGINAL_V1_FLAGS,
};

use super::forward::Forward;
use super::pubsub::{SubscribeError, Subscription};
use super::queue::SubscriberQueue;
use super::request::{PublishRequest, Ready, RequestError, Sorted};
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
    /// The core armed a timer for this time: the shell's one timer should
    /// ask [`super::pubsub::PubSub::poll_timeout`] again.
    Timeout(Instant),
    /// Wait until these `block` queues have room before reading on.
    Wait(Vec<std::sync::Arc<SubscriberQueue>>),
    /// Cluster mode: carry this checked request out on NATS JetStream,
    /// then write its reply (built with [`super::forward`]'s helpers) and
    /// read on. A subscribe ends the stream as [`Output::Subscribe`] does.
    Forward(super::forward::Forward),
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
    Ready(Ready),
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
    felix_wire::truncate_utf8(text, ERROR_TEXT_MAX_BYTES as usize).to_string()
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
            State::Ready(ready) => Some(ready.flags),
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
        let payload_len = payload.len();
        core.metrics.frames_received.fetch_add(1, Ordering::Relaxed);
        core.metrics
            .bytes_received
            .fetch_add(12 + payload_len as u64, Ordering::Relaxed);
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
                    && matches!(self.state, State::Ready(_))
                {
                    let request_id =
                        u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
                    out.push(Output::Send(frame_bytes(BinaryPublishAck {
                        status: AckStatus::Error,
                        request_id,
                        message: truncate(&format!("invalid frame: {e}")),
                    })));
                    return out;
                }
                self.fail(&mut out, format!("invalid frame: {e}"));
                return out;
            }
        };
        match self.state {
            State::AwaitAuth => self.on_first_frame(core, frame, now, &mut out),
            State::Ready(_) => self.on_request(core, frame, payload_len, now, &mut out),
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
                self.state = State::Ready(Ready { ctx, flags });
            }
            Err(e) => {
                core.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
                tracing::info!(tenant = %auth.tenant_id, error = %e, "authentication failed");
                self.fail(out, e.wire_message());
            }
        }
    }

    fn on_request(
        &mut self,
        core: &Core,
        frame: Frame,
        payload_len: usize,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let State::Ready(ready) = &self.state else {
            return;
        };
        if ready.ctx.is_expired(now.unix) {
            core.metrics.auth_expired.fetch_add(1, Ordering::Relaxed);
            return self.fail(out, RequestError::TokenExpired.to_string());
        }
        let frame = match PublishRequest::sort(frame) {
            Sorted::Publish(request) => return self.on_publish(core, request, now, out),
            Sorted::Other(other) => other,
        };
        if self.role == Role::PublishOnly {
            // Only publishes travel on a publish-only stream.
            core.metrics
                .frames_malformed
                .fetch_add(1, Ordering::Relaxed);
            return self.close(out);
        }
        match frame {
            Frame::Json(Message::Auth(_)) => self.fail(out, "auth already established"),
            Frame::Json(Message::Subscribe(s)) => {
                if self.subscribed {
                    return self.fail(out, RequestError::AlreadySubscribed.to_string());
                }
                if core.clustered {
                    return match ready.check_subscribe(core, s) {
                        Ok(sub) => {
                            self.subscribed = true;
                            out.push(Output::Forward(Forward::Subscribe(sub)));
                        }
                        Err(why) => self.fail(out, why.to_string()),
                    };
                }
                match ready.subscribe(core, s) {
                    Ok(sub) => {
                        self.subscribed = true;
                        out.push(Output::Subscribe(sub));
                    }
                    Err(RequestError::Subscribe(
                        cursor @ (SubscribeError::TooOld { .. } | SubscribeError::InFuture { .. }),
                    )) => {
                        out.push(Output::Send(super::forward::subscribe_error_reply(&cursor)));
                        self.close(out);
                    }
                    Err(why) => self.fail(out, why.to_string()),
                }
            }
            Frame::Json(Message::CachePut(c)) if core.clustered => {
                match ready.check_cache_put(core, c, payload_len) {
                    Ok(put) => out.push(Output::Forward(Forward::CachePut(put))),
                    Err(why) => self.fail(out, why.to_string()),
                }
            }
            Frame::Json(Message::CacheGet(c)) if core.clustered => {
                match ready.check_cache_get(core, c) {
                    Ok(get) => out.push(Output::Forward(Forward::CacheGet(get))),
                    Err(why) => self.fail(out, why.to_string()),
                }
            }
            Frame::Json(Message::CachePut(c)) => {
                let request_id = c.request_id;
                let put = ready.cache_put(core, c, payload_len, now.instant);
                core.metrics
                    .cache_request_seconds
                    .observe_since(now.instant);
                if let Err(why) = put {
                    return self.fail(out, why.to_string());
                }
                match request_id {
                    Some(request_id) => out.push(Output::Send(message(CacheOk { request_id }))),
                    None => {
                        out.push(Output::Send(message(OkMessage {})));
                        self.close(out);
                    }
                }
            }
            Frame::Json(Message::CacheGet(c)) => {
                let got = ready.cache_get(core, c, now.instant);
                core.metrics
                    .cache_request_seconds
                    .observe_since(now.instant);
                match got {
                    Ok(value) => {
                        let one_shot = value.request_id.is_none();
                        out.push(Output::Send(message(value)));
                        if one_shot {
                            self.close(out);
                        }
                    }
                    Err(why) => self.fail(out, why.to_string()),
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

    /// Publishes and answers as the frame kind requires.
    fn on_publish(
        &mut self,
        core: &Core,
        request: PublishRequest,
        now: Now,
        out: &mut Vec<Output>,
    ) {
        let State::Ready(ready) = &self.state else {
            return;
        };
        let control = self.role == Role::Control;
        if request.wants_ack(control) && request.request_id.is_none() {
            return self.fail(out, RequestError::MissingRequestId.to_string());
        }
        if core.clustered {
            // Acked only once JetStream stored it: the shell answers.
            return match ready.check_publish(core, &request) {
                Ok(()) => out.push(Output::Forward(Forward::Publish(request))),
                Err(why) => {
                    tracing::debug!(stream = %request.key, %why, "publish refused");
                    if let Some(ack) = request.ack(control, &Err(why)) {
                        out.push(Output::Send(frame_bytes(ack)));
                    }
                }
            };
        }
        let result = match ready.publish(core, &request, now.instant) {
            Ok(outcome) => {
                if let Some(at) = outcome.flush_at {
                    out.push(Output::Timeout(at));
                }
                if !outcome.wait_for.is_empty() {
                    out.push(Output::Wait(outcome.wait_for));
                }
                Ok(())
            }
            Err(why) => {
                tracing::debug!(stream = %request.key, %why, "publish refused");
                Err(why)
            }
        };
        // Unacked publishes are never answered; refusals are counted above.
        if let Some(ack) = request.ack(control, &result) {
            out.push(Output::Send(frame_bytes(ack)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use felix_wire::{
        AckMode, Auth, BinaryAckedPublishBatch, BinaryPublishBatch, CacheGet, CachePut,
        CursorErrorReason, Publish, PublishError as PublishErrorMsg, PublishOk, StartPosition,
        Subscribe, KNOWN_FLAGS,
    };

    use super::*;
    use crate::core::auth::Authenticator;
    use crate::core::request;
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

    #[test]
    fn a_token_that_expires_while_the_stream_is_open_ends_it() {
        let core = core();
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(None));
        // A JWT valid until now() + 60 s.
        s.state = State::Ready(Ready {
            ctx: crate::core::auth::AuthContext {
                tenant: "t1".into(),
                permissions: crate::core::perms::Permissions::AllInTenant,
                expires_at_unix: Some(now().unix + 60),
            },
            flags: ORIGINAL_V1_FLAGS,
        });
        assert_eq!(
            replies(&send(&mut s, &core, publish(None, Some(1)))).len(),
            1
        );
        let later = Now {
            unix: now().unix + 60,
            ..now()
        };
        let bytes = Frame::Json(publish(None, Some(2)))
            .to_bytes()
            .expect("encode");
        let out = s.on_frame(&core, 0, bytes.slice(12..), later);
        assert_eq!(error_text(&replies(&out)[0]), "token expired");
        assert!(closes(&out));
        assert_eq!(core.metrics.auth_expired.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn names_over_the_limit_are_refused_and_counted() {
        let core = Core::new(
            CoreSettings {
                max_name_bytes: 8,
                ..CoreSettings::default()
            },
            Authenticator::Dev,
        );
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(None));
        let long = Message::from(Publish {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            stream: "x".repeat(60_000),
            payload: Bytes::new(),
            request_id: Some(3),
            ack: None,
        });
        let r = replies(&send(&mut s, &core, long));
        assert_eq!(
            r,
            [Frame::Json(Message::PublishError(PublishErrorMsg {
                request_id: 3,
                message: "name too long: name is 60000 bytes; names are at most 8 bytes".into()
            }))]
        );
        assert_eq!(core.pubsub.stream_count(), 0, "no stream was created");
        assert_eq!(core.metrics.names_too_long.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_cache_put_whose_reply_could_pass_the_frame_cap_is_refused() {
        // A value at the cap used to be stored, and read back as a
        // cache_value of 16,777,218 bytes that no reader accepts.
        let cap = 4096u32;
        let core = Core::new(
            CoreSettings {
                max_frame_bytes: cap,
                ..CoreSettings::default()
            },
            Authenticator::Dev,
        );
        let put = |len: usize| CachePut {
            tenant_id: "t1".into(),
            namespace: "n".into(),
            cache: "c".into(),
            key: "k".into(),
            value: Bytes::from(vec![b'v'; len]),
            request_id: None,
            ttl_ms: None,
        };
        // The largest value whose put fits the cap with room for the reply.
        let fits = (0..4096)
            .rev()
            .find(|&len| {
                Frame::Json(Message::from(put(len))).payload_len() + request::CACHE_VALUE_GROWTH
                    <= cap as usize
            })
            .expect("some value fits");
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(None));
        assert_eq!(
            replies(&send(&mut s, &core, Message::from(put(fits)))),
            [Frame::Json(Message::Ok(OkMessage {}))]
        );
        // Its reply with the longest request id stays within the cap.
        let reply = Frame::Json(Message::from(felix_wire::CacheValue {
            tenant_id: "t1".into(),
            namespace: "n".into(),
            cache: "c".into(),
            key: "k".into(),
            value: Some(Bytes::from(vec![b'v'; fits])),
            request_id: Some(u64::MAX),
        }));
        assert!(
            reply.payload_len() <= cap as usize,
            "{}",
            reply.payload_len()
        );
        let mut s = Session::new(Role::Control);
        send(&mut s, &core, auth(None));
        let out = send(&mut s, &core, Message::from(put(fits + 3)));
        let text = error_text(&replies(&out)[0]).to_string();
        assert!(
            text.starts_with("cache value too large: its cache_value reply could be"),
            "{text}"
        );
    }
}
