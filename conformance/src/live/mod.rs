//! The live suite: felix-wire behaviour of any broker, case by case.
//!
//! Each case opens its own connection, so one broken behaviour cannot
//! cascade. Cases use a fresh stream per case by default (`--stream` pins
//! one stream name for brokers whose streams must be declared); offsets
//! are always measured relative to the stream's tail, so existing history
//! does not matter.
//!
//! The suite is fair to every felix-wire broker: it demands only what v1
//! promises (docs/conformance.md, "What the live suite may demand").
//! - The tail is found with an `in_future` probe (a `subscribe` from an
//!   offset far past any tail answers `available` = tail), never from the
//!   `base_offset` of live batches: Felix sends none on in-memory streams.
//! - Cases that need offsets on live batches are skipped (not failed) when
//!   the broker sends none, unless the tester says it does
//!   ([`LiveConfig::sends_offsets`]).
//! - `cursor_too_old` runs only when the tester gives the broker's bounded
//!   history ([`LiveConfig::replay_capacity`]).
//! - Destructive cases (ones that may stop a broker from accepting, such as
//!   a handshake offering ALPN against Felix) run after all others.
//!
//! [`cluster`] holds the cross-node cases for brokers that serve as one
//! cluster (`felix-conformance cluster --addr A --addr B`).

mod cases;
pub mod cluster;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use felix_wire::{AckMode, Frame, Message, Publish, StartPosition, Subscribe};

use crate::case::Level;
use crate::peer::{describe, Peer, Reader, Target};

pub use cases::all;

/// What the suite needs to know about the broker under test.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Where and as whom.
    pub target: Target,
    /// Namespace for every case.
    pub namespace: String,
    /// A fixed stream name, or `None` for a fresh stream per case.
    pub stream: Option<String>,
    /// Cache name for cache cases.
    pub cache: String,
    /// The broker's replay ring size, if its history is bounded: the
    /// `too_old` case runs only then (a durable stream never answers it).
    pub replay_capacity: Option<u64>,
    /// The tester promises `base_offset` on live batches to subscribers
    /// that negotiated `0x0020`: offset cases then fail instead of being
    /// skipped when offsets are missing.
    pub sends_offsets: bool,
    /// Per-operation timeout.
    pub timeout: Duration,
}

/// A case's context.
pub struct Ctx {
    /// The configuration.
    pub cfg: LiveConfig,
    nonce: String,
}

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseError {
    /// The broker did something wrong; the text says what.
    Fail(String),
    /// The case does not apply to this broker (it never promised the
    /// behaviour); the text says why and which flag makes it apply.
    Skip(String),
    /// The peer under test does not implement what the case needs (a
    /// client driver answered `unsupported`); the text says why.
    Unsupported(String),
}

impl From<String> for CaseError {
    fn from(s: String) -> Self {
        CaseError::Fail(s)
    }
}

impl From<&str> for CaseError {
    fn from(s: &str) -> Self {
        CaseError::Fail(s.to_string())
    }
}

/// A boxed case future.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CaseError>> + Send + 'a>>;

/// One live case.
pub struct LiveCase {
    /// Stable id.
    pub id: &'static str,
    /// Level.
    pub level: Level,
    /// What it checks, one line.
    pub about: &'static str,
    /// May leave a broker unable to serve later cases (Felix's accept loop
    /// ends after one failed handshake): such cases run after all others.
    pub destructive: bool,
    /// The check.
    pub run: for<'a> fn(&'a Ctx) -> CaseFuture<'a>,
}

impl Ctx {
    /// A context with a run-unique nonce for stream names.
    pub fn new(cfg: LiveConfig) -> Ctx {
        let nonce = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
                & 0xffff_ffff
        );
        Ctx { cfg, nonce }
    }

    /// The stream a case uses.
    pub fn stream(&self, case: &str) -> String {
        match &self.cfg.stream {
            Some(s) => s.clone(),
            None => format!("conformance-{}-{case}", self.nonce),
        }
    }

    /// A new connection.
    pub async fn peer(&self) -> Result<Peer, String> {
        Peer::connect(&self.cfg.target, self.cfg.timeout).await
    }

    /// A JSON publish.
    pub fn publish(
        &self,
        stream: &str,
        payload: impl Into<Bytes>,
        request_id: Option<u64>,
        ack: Option<AckMode>,
    ) -> Message {
        Message::from(Publish {
            tenant_id: self.cfg.target.tenant.clone(),
            namespace: self.cfg.namespace.clone(),
            stream: stream.into(),
            payload: payload.into(),
            request_id,
            ack,
        })
    }

    /// A subscribe.
    pub fn subscribe_msg(&self, stream: &str, id: u64, start: StartPosition) -> Message {
        Message::from(Subscribe {
            tenant_id: self.cfg.target.tenant.clone(),
            namespace: self.cfg.namespace.clone(),
            stream: stream.into(),
            subscription_id: Some(id),
            start: Some(start),
        })
    }

    /// Subscribes per the session model and returns the event reader:
    /// control stream, auth, subscribe, finish; the broker opens the event
    /// stream with `event_stream_hello`, replies `subscribed`, ends the
    /// control stream.
    pub async fn subscribe(
        &self,
        peer: &Peer,
        stream: &str,
        id: u64,
        start: StartPosition,
    ) -> Result<Reader, String> {
        let mut c = peer.control().await?;
        c.send(self.subscribe_msg(stream, id, start)).await?;
        c.finish()?;
        let (hello_id, events) = peer.accept_events().await?;
        if hello_id != id {
            return Err(format!(
                "event_stream_hello names subscription {hello_id}, expected {id}"
            ));
        }
        match c.recv().await? {
            Frame::Json(Message::Subscribed(s)) if s.subscription_id == id => {}
            other => {
                return Err(format!(
                    "expected subscribed {{subscription_id: {id}}}, got {}",
                    describe(&other)
                ))
            }
        }
        c.reader
            .expect_end()
            .await
            .map_err(|e| format!("control stream after subscribed: {e}"))?;
        Ok(events)
    }
}

/// Reads event batches until `n` events arrived: (offset if sent, payload).
pub async fn read_events(r: &mut Reader, n: usize) -> Result<Vec<(Option<u64>, Bytes)>, String> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = r
            .recv()
            .await
            .map_err(|e| format!("after {} of {n} events: {e}", out.len()))?;
        let (base, payloads) = match frame {
            Frame::BinarySharedEventBatch(b) => (b.base_offset, b.payloads),
            Frame::BinaryEventBatch(b) => (b.base_offset, b.payloads),
            Frame::Json(Message::Event(e)) => (e.offset, vec![e.payload]),
            Frame::Json(Message::EventBatch(e)) => (e.base_offset, e.payloads),
            other => return Err(format!("expected an event batch, got {}", describe(&other))),
        };
        for (i, p) in payloads.into_iter().enumerate() {
            out.push((base.map(|b| b + i as u64), p));
        }
    }
    Ok(out)
}

/// Publishes acked over JSON and checks the `publish_ok`.
pub async fn publish_acked(
    ctx: &Ctx,
    c: &mut crate::peer::Stream,
    stream: &str,
    payload: &str,
    request_id: u64,
) -> Result<(), String> {
    c.send(ctx.publish(
        stream,
        Bytes::copy_from_slice(payload.as_bytes()),
        Some(request_id),
        Some(AckMode::PerMessage),
    ))
    .await?;
    match c.recv().await? {
        Frame::Json(Message::PublishOk(ok)) if ok.request_id == request_id => Ok(()),
        other => Err(format!(
            "expected publish_ok {{request_id: {request_id}}}, got {}",
            describe(&other)
        )),
    }
}

/// The error text of an `error` frame.
pub fn error_text(f: &Frame) -> Result<String, String> {
    match f {
        Frame::Json(Message::Error(e)) => Ok(e.message.clone()),
        other => Err(format!("expected an error frame, got {}", describe(other))),
    }
}

/// What the suite says when a stream ends where an `error` frame was due:
/// a lost frame (Felix can drop an error it queued just before closing the
/// stream) is told apart from a wrong one.
pub const LOST_ERROR: &str = "the stream ended before the expected error frame";

/// Reads the next frame, which must be an `error`; returns its text. A
/// stream that ends (or is reset) first is reported as [`LOST_ERROR`].
pub async fn recv_error(r: &mut Reader, want: &str) -> Result<String, String> {
    match r.next().await {
        Ok(Some(f)) => error_text(&f),
        Ok(None) => Err(format!(
            "{LOST_ERROR} {want:?} (the stream finished without it: the frame was lost, or never sent)"
        )),
        Err(e) if e.contains("reset") || e.contains("lost") => Err(format!(
            "{LOST_ERROR} {want:?} (the stream was reset without it: {e})"
        )),
        Err(e) => Err(e),
    }
}

/// Expects an `error` frame with exactly `want`.
pub async fn expect_error(r: &mut Reader, want: &str) -> Result<(), String> {
    let text = recv_error(r, want).await?;
    if text == want {
        Ok(())
    } else {
        Err(format!("expected error {want:?}, got {text:?}"))
    }
}

/// An offset far past any real tail: the `in_future` probe's cursor.
pub const PROBE_OFFSET: u64 = u64::MAX / 2;

/// Checks once, before any case, that the broker can be reached at all:
/// the QUIC handshake (TLS, certificate, server name) and a plain `auth`
/// that is not refused.
/// Without it, a wrong address or certificate shows up as every case
/// timing out one after another; with it, the run stops at once with the
/// reason (exit 2, a usage error).
pub async fn preflight(target: &Target, timeout: Duration) -> Result<(), String> {
    let peer = Peer::connect(target, timeout).await.map_err(|e| {
        format!(
            "preflight: cannot reach the broker at {} (is it running, and is this its address, --server-name and certificate?): {e}",
            target.addr
        )
    })?;
    let mut s = peer
        .open()
        .await
        .map_err(|e| format!("preflight: opening a stream to {}: {e}", target.addr))?;
    s.send(peer.auth(None))
        .await
        .map_err(|e| format!("preflight: sending auth: {e}"))?;
    // Only a refusal stops the run here: any other answer (or none) is the
    // cases' to judge, case by case, with their precise reasons.
    match s.recv().await {
        Ok(Frame::Json(Message::Error(e))) => Err(format!(
            "preflight: the broker refused auth as tenant {:?} (--tenant, --token): the broker said {:?}",
            target.tenant, e.message
        )),
        _ => Ok(()),
    }
}
