//! The scripted broker of `client` mode: a real QUIC endpoint on loopback
//! that authenticates every stream the client opens, checks every frame
//! the client writes against the rules every felix-wire client must keep,
//! and hands the requests to the case script, which answers them (or not,
//! or wrongly) frame by frame.
//!
//! Checks made on every frame, whatever the case (each breach is recorded
//! as a violation that fails the case, naming the connection, stream and
//! frame):
//! - the first frame on every client-opened stream is `auth`, with the
//!   tenant and token the driver was given;
//! - a frame's flags are a subset of what the broker advertised
//!   (`auth_ok.server_flags`, or `0x0007` after a plain `ok`);
//! - a JSON frame is byte-for-byte the canonical encoding (compact, `type`
//!   first, fields in spec order, the null and omit rules): the first
//!   differing byte is reported with its offset;
//! - no broker-to-client message, no invalid frame (the decode error names
//!   the field and byte offset);
//! - stream roles: a unidirectional stream carries only unacked publishes
//!   (nothing is ever written back on it); after `subscribe` the client
//!   writes nothing more on that stream.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use felix_wire::{
    AckMode, AuthOk, Direction, ErrorMessage, EventStreamHello, Frame, FrameDecoder, Message,
    OkMessage, ORIGINAL_V1_FLAGS,
};
use tokio::sync::mpsc;

use crate::peer::describe;

/// How the scripted broker answers `auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthReply {
    /// `auth_ok` with these server flags (to an `auth` with client flags;
    /// a client that sends none gets `ok`).
    AuthOk(u16),
    /// A plain `ok` whatever the client advertised: the client must assume
    /// [`ORIGINAL_V1_FLAGS`].
    PlainOk,
    /// `error` with this text, then the stream ends.
    Refuse(String),
}

impl AuthReply {
    /// The flags the client may use after this reply.
    pub fn advertised(&self) -> u16 {
        match self {
            AuthReply::AuthOk(f) => *f,
            AuthReply::PlainOk | AuthReply::Refuse(_) => ORIGINAL_V1_FLAGS,
        }
    }
}

/// Who opened a stream, hence its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Client-opened bidirectional: a control stream.
    Control,
    /// Client-opened unidirectional: publishes only.
    PublishOnly,
}

/// A client-opened stream, as the script sees it.
#[derive(Clone)]
pub struct StreamRef {
    /// Connection index (0 = the client's first connection).
    pub conn: usize,
    /// QUIC stream id.
    pub id: u64,
    /// Its role.
    pub role: Role,
    send: Option<Arc<tokio::sync::Mutex<quinn::SendStream>>>,
}

impl std::fmt::Debug for StreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for StreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = match self.role {
            Role::Control => "bidirectional",
            Role::PublishOnly => "unidirectional",
        };
        write!(f, "connection {} stream {} ({role})", self.conn, self.id)
    }
}

impl StreamRef {
    fn same(&self, other: &StreamRef) -> bool {
        self.conn == other.conn && self.id == other.id
    }
}

/// What a client stream produced.
#[derive(Debug)]
pub enum What {
    /// A frame after `auth`, with its bytes (header included).
    Frame(Frame, Bytes),
    /// The client finished (or reset) its send side.
    End,
}

/// One thing the client did on a stream.
#[derive(Debug)]
pub struct Incoming {
    /// Where.
    pub stream: StreamRef,
    /// What.
    pub what: What,
}

/// A stream the client opened, as recorded for checks.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    /// Connection index.
    pub conn: usize,
    /// Role.
    pub role: Role,
    /// The first frame's type (`auth`, or what came instead).
    pub first: String,
}

#[derive(Default)]
struct Log {
    violations: Vec<String>,
    streams: Vec<StreamRecord>,
}

/// Everything the stream tasks share.
struct Shared {
    auth: AuthReply,
    tenant: String,
    token: String,
    log: Mutex<Log>,
    conns: Mutex<Vec<quinn::Connection>>,
    tx: mpsc::UnboundedSender<Incoming>,
}

impl Shared {
    fn violation(&self, v: String) {
        tracing::debug!(violation = %v, "client broke a rule");
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .violations
            .push(v);
    }
}

/// A scripted broker for one case.
pub struct ScriptedBroker {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Incoming>,
    backlog: VecDeque<Incoming>,
    timeout: Duration,
}

/// Where the broker listens and what its certificate is.
#[derive(Clone)]
pub struct Listener {
    /// The server configuration (the test certificate, no ALPN).
    pub server: quinn::ServerConfig,
    /// The certificate's PEM text, handed to the driver.
    pub cert_pem: String,
}

impl ScriptedBroker {
    /// Listens on 127.0.0.1:0 and starts accepting.
    pub fn start(
        listener: &Listener,
        auth: AuthReply,
        tenant: &str,
        token: &str,
        timeout: Duration,
    ) -> Result<ScriptedBroker, String> {
        let addr: SocketAddr = "127.0.0.1:0".parse().map_err(|_| "address")?;
        let endpoint = quinn::Endpoint::server(listener.server.clone(), addr)
            .map_err(|e| format!("scripted broker: binding {addr}: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            auth,
            tenant: tenant.into(),
            token: token.into(),
            log: Mutex::new(Log::default()),
            conns: Mutex::new(Vec::new()),
            tx,
        });
        tokio::spawn(accept(endpoint.clone(), shared.clone()));
        Ok(ScriptedBroker {
            endpoint,
            shared,
            rx,
            backlog: VecDeque::new(),
            timeout,
        })
    }

    /// The address to give the driver.
    pub fn addr(&self) -> Result<SocketAddr, String> {
        self.endpoint
            .local_addr()
            .map_err(|e| format!("scripted broker address: {e}"))
    }

    /// Violations recorded so far.
    pub fn violations(&self) -> Vec<String> {
        self.log().violations.clone()
    }

    /// Streams the client opened so far.
    pub fn streams(&self) -> Vec<StreamRecord> {
        self.log().streams.clone()
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.shared.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections the client made so far.
    pub fn connections(&self) -> usize {
        self.shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    async fn next_incoming(&mut self, within: Duration) -> Result<Incoming, String> {
        if let Some(i) = self.backlog.pop_front() {
            return Ok(i);
        }
        match tokio::time::timeout(within, self.rx.recv()).await {
            Ok(Some(i)) => Ok(i),
            Ok(None) => Err("the scripted broker stopped".into()),
            Err(_) => Err(format!(
                "the client sent no request within {} ms",
                within.as_millis()
            )),
        }
    }

    /// The next frame the client sent after `auth`, on any stream.
    pub async fn next_request(&mut self) -> Result<(StreamRef, Frame, Bytes), String> {
        loop {
            let i = self.next_incoming(self.timeout).await?;
            if let What::Frame(f, raw) = i.what {
                tracing::debug!(stream = %i.stream, frame = %describe(&f), "request");
                return Ok((i.stream, f, raw));
            }
        }
    }

    /// Succeeds if the client sends no frame for `quiet`.
    pub async fn expect_no_request(&mut self, quiet: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.next_incoming(left).await {
                Err(_) => return Ok(()),
                Ok(Incoming {
                    stream,
                    what: What::Frame(f, _),
                }) => {
                    return Err(format!(
                        "the client sent {} on {stream}, where nothing more was due",
                        describe(&f)
                    ))
                }
                Ok(_) => {}
            }
        }
    }

    /// Waits until the client ends its send side of `s`; frames meanwhile
    /// on other streams are kept for [`Self::next_request`].
    pub async fn expect_end(&mut self, s: &StreamRef) -> Result<(), String> {
        let mut kept = Vec::new();
        let result = loop {
            let i = match self.next_incoming(self.timeout).await {
                Ok(i) => i,
                Err(_) => {
                    break Err(format!(
                        "the client did not finish its send side of {s} within {} ms",
                        self.timeout.as_millis()
                    ))
                }
            };
            match (&i.what, i.stream.same(s)) {
                (What::End, true) => break Ok(()),
                (What::Frame(f, _), true) => {
                    break Err(format!(
                        "the client sent {} on {s}, where it should have finished its send side",
                        describe(f)
                    ))
                }
                _ => kept.push(i),
            }
        };
        for i in kept.into_iter().rev() {
            self.backlog.push_front(i);
        }
        result
    }

    /// Writes a frame on a client-opened bidirectional stream.
    pub async fn reply(&self, s: &StreamRef, frame: impl Into<Frame>) -> Result<(), String> {
        let bytes = frame.into().to_bytes().map_err(|e| e.to_string())?;
        self.reply_raw(s, &bytes).await
    }

    /// Writes raw bytes on a client-opened bidirectional stream.
    pub async fn reply_raw(&self, s: &StreamRef, bytes: &[u8]) -> Result<(), String> {
        let send = s
            .send
            .as_ref()
            .ok_or_else(|| format!("cannot reply on {s}: the client opened it unidirectional"))?;
        send.lock()
            .await
            .write_all(bytes)
            .await
            .map_err(|e| format!("writing to {s}: {e}"))
    }

    /// Ends the broker's side of a bidirectional stream.
    pub async fn finish(&self, s: &StreamRef) -> Result<(), String> {
        if let Some(send) = &s.send {
            // Already finished or reset by the client: nothing to end.
            let _ = send.lock().await.finish();
        }
        Ok(())
    }

    /// Opens an event stream on connection `conn` and writes
    /// `event_stream_hello {subscription_id}`.
    pub async fn open_events(&self, conn: usize, subscription_id: u64) -> Result<EventOut, String> {
        let c = self.conn(conn)?;
        let send = c
            .open_uni()
            .await
            .map_err(|e| format!("opening an event stream on connection {conn}: {e}"))?;
        let mut out = EventOut { send };
        out.send(Message::from(EventStreamHello { subscription_id }))
            .await?;
        Ok(out)
    }

    fn conn(&self, conn: usize) -> Result<quinn::Connection, String> {
        self.shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(conn)
            .cloned()
            .ok_or_else(|| format!("the client has no connection {conn}"))
    }

    /// Closes connection `conn` (the client must reconnect).
    pub fn close_connection(&self, conn: usize) -> Result<(), String> {
        self.conn(conn)?
            .close(0u32.into(), b"closed by the scripted broker");
        Ok(())
    }

    /// Stops listening and closes every connection.
    pub fn stop(&self) {
        self.endpoint.close(0u32.into(), b"case over");
    }
}

/// A broker-opened event stream.
pub struct EventOut {
    send: quinn::SendStream,
}

impl EventOut {
    /// Writes a frame.
    pub async fn send(&mut self, frame: impl Into<Frame>) -> Result<(), String> {
        let bytes = frame.into().to_bytes().map_err(|e| e.to_string())?;
        self.send_raw(&bytes).await
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.send
            .write_all(bytes)
            .await
            .map_err(|e| format!("writing the event stream: {e}"))
    }

    /// Ends the stream.
    pub fn finish(&mut self) {
        // Already stopped by the client: nothing to end.
        let _ = self.send.finish();
    }
}

async fn accept(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let conn = match incoming.await {
            Ok(c) => c,
            Err(e) => {
                shared.violation(format!("a client handshake failed: {e}"));
                continue;
            }
        };
        let index = {
            let mut conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
            conns.push(conn.clone());
            conns.len() - 1
        };
        tracing::debug!(index, remote = %conn.remote_address(), "client connected");
        let (c, s) = (conn.clone(), shared.clone());
        tokio::spawn(async move {
            while let Ok((send, recv)) = c.accept_bi().await {
                let stream = StreamRef {
                    conn: index,
                    id: recv.id().index(),
                    role: Role::Control,
                    send: Some(Arc::new(tokio::sync::Mutex::new(send))),
                };
                tokio::spawn(read_stream(stream, recv, s.clone()));
            }
        });
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok(recv) = conn.accept_uni().await {
                let stream = StreamRef {
                    conn: index,
                    id: recv.id().index(),
                    role: Role::PublishOnly,
                    send: None,
                };
                tokio::spawn(read_stream(stream, recv, s.clone()));
            }
        });
    }
}

/// Where the canonical encoding and the client's bytes first differ.
pub fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    got.iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .or_else(|| (got.len() != want.len()).then(|| got.len().min(want.len())))
}

fn around(bytes: &[u8], at: usize) -> String {
    let from = at.saturating_sub(24);
    let to = (at + 24).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..to]).into_owned()
}

/// Checks one frame the client sent after `auth`; returns violations.
pub fn check_frame(
    stream: &str,
    role: Role,
    index: usize,
    advertised: u16,
    flags: u16,
    frame: &Frame,
    raw: &[u8],
) -> Vec<String> {
    let mut v = Vec::new();
    let at = format!("{stream}, frame {index}");
    if flags & !advertised != 0 {
        v.push(format!(
            "{at}: flags {flags:#06x} use bits {:#06x} the broker did not advertise (it advertised {advertised:#06x})",
            flags & !advertised
        ));
    }
    if let Frame::Json(m) = frame {
        if m.direction() == Direction::BrokerToClient {
            v.push(format!(
                "{at}: the client sent {}, a broker-to-client message",
                m.type_name()
            ));
        }
        // The payloads are compared (a different length shows in the
        // header too, but the payload says where the text went wrong).
        if let Ok(want) = frame.to_bytes() {
            let (got, want) = (raw.get(12..).unwrap_or(&[]), want.get(12..).unwrap_or(&[]));
            if let Some(i) = first_difference(got, want) {
                v.push(format!(
                    "{at}: JSON {} differs from the canonical encoding at payload byte {i} (frame byte {}): want `{}`, got `{}`",
                    m.type_name(),
                    i + 12,
                    around(want, i),
                    around(got, i)
                ));
            }
        }
    }
    if role == Role::PublishOnly {
        let ok = match frame {
            Frame::BinaryPublishBatch(_) => true,
            Frame::Json(Message::Publish(p)) => p.ack == Some(AckMode::None),
            Frame::Json(Message::PublishBatch(p)) => p.ack == Some(AckMode::None),
            _ => false,
        };
        if !ok {
            v.push(format!(
                "{at}: a unidirectional stream carries only unacked publishes (nothing is ever written back on it), got {}",
                describe(frame)
            ));
        }
    }
    v
}

/// Reads one client stream: checks and answers `auth`, then checks and
/// forwards every frame.
async fn read_stream(stream: StreamRef, mut recv: quinn::RecvStream, shared: Arc<Shared>) {
    let mut buf = BytesMut::new();
    let mut decoder = FrameDecoder::new();
    let mut index = 0usize;
    let mut subscribed = false;
    loop {
        let raw = match decoder.decode_raw(&mut buf) {
            Ok(Some(raw)) => raw,
            Ok(None) => match recv.read_chunk(64 * 1024, true).await {
                Ok(Some(c)) => {
                    buf.extend_from_slice(&c.bytes);
                    continue;
                }
                Ok(None) if buf.is_empty() => break,
                Ok(None) => {
                    shared.violation(format!(
                        "{stream}: the client ended its send side inside a frame ({} bytes buffered)",
                        buf.len()
                    ));
                    break;
                }
                // A reset or a lost connection: the stream is over.
                Err(e) => {
                    tracing::debug!(%stream, error = %e, "client stream ended");
                    break;
                }
            },
            Err(e) => {
                shared.violation(format!(
                    "{stream}, frame {index}: invalid frame at stream byte {}: {e}",
                    decoder.stream_offset()
                ));
                return;
            }
        };
        let flags = raw.header.flags;
        let mut bytes = BytesMut::with_capacity(12 + raw.payload.len());
        raw.header.write(&mut bytes);
        bytes.extend_from_slice(&raw.payload);
        let bytes = bytes.freeze();
        let frame = match raw.parse() {
            Ok(f) => f,
            Err(e) => {
                shared.violation(format!("{stream}, frame {index}: invalid frame: {e}"));
                return;
            }
        };
        if index == 0 {
            let first = match &frame {
                Frame::Json(m) => m.type_name().to_string(),
                other => describe(other),
            };
            shared
                .log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .streams
                .push(StreamRecord {
                    conn: stream.conn,
                    role: stream.role,
                    first: first.clone(),
                });
            if !on_auth(&stream, &frame, &bytes, &shared).await {
                return;
            }
            index += 1;
            continue;
        }
        if subscribed {
            shared.violation(format!(
                "{stream}, frame {index}: {} after subscribe (the client must finish its send side after subscribe)",
                describe(&frame)
            ));
        }
        subscribed |= matches!(frame, Frame::Json(Message::Subscribe(_)));
        for v in check_frame(
            &stream.to_string(),
            stream.role,
            index,
            shared.auth.advertised(),
            flags,
            &frame,
            &bytes,
        ) {
            shared.violation(v);
        }
        index += 1;
        let _ = shared.tx.send(Incoming {
            stream: stream.clone(),
            what: What::Frame(frame, bytes),
        });
    }
    let _ = shared.tx.send(Incoming {
        stream,
        what: What::End,
    });
}

/// Checks the first frame (it must be `auth` with the right credentials)
/// and answers it; false if the stream is over.
async fn on_auth(stream: &StreamRef, frame: &Frame, raw: &[u8], shared: &Shared) -> bool {
    let Frame::Json(Message::Auth(auth)) = frame else {
        shared.violation(format!(
            "{stream}: the first frame must be auth, got {}",
            describe(frame)
        ));
        return false;
    };
    for v in check_frame(&stream.to_string(), Role::Control, 0, 0, 0, frame, raw) {
        shared.violation(v);
    }
    if auth.tenant_id != shared.tenant {
        shared.violation(format!(
            "{stream}: auth tenant_id is {:?}, expected {:?} (as given in connect)",
            auth.tenant_id, shared.tenant
        ));
    }
    if auth.token != shared.token {
        shared.violation(format!(
            "{stream}: auth token is {:?}, expected {:?} (as given in connect)",
            auth.token, shared.token
        ));
    }
    let reply = match (&shared.auth, auth.client_flags) {
        (AuthReply::AuthOk(f), Some(_)) => Message::from(AuthOk { server_flags: *f }),
        (AuthReply::AuthOk(_) | AuthReply::PlainOk, _) => Message::from(OkMessage {}),
        (AuthReply::Refuse(m), _) => Message::from(ErrorMessage { message: m.clone() }),
    };
    let Some(send) = &stream.send else {
        // Unidirectional: nothing is written back, not even the auth reply.
        return true;
    };
    let Ok(bytes) = Frame::Json(reply).to_bytes() else {
        return false;
    };
    let mut send = send.lock().await;
    if send.write_all(&bytes).await.is_err() {
        return false;
    }
    if let AuthReply::Refuse(_) = shared.auth {
        let _ = send.finish();
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use felix_wire::{CachePut, KNOWN_FLAGS};

    fn put(ttl_ms: Option<u64>) -> Frame {
        Frame::Json(Message::from(CachePut {
            tenant_id: "t1".into(),
            namespace: "default".into(),
            cache: "c".into(),
            key: "k".into(),
            value: Bytes::from_static(b"v"),
            request_id: Some(1),
            ttl_ms,
        }))
    }

    #[test]
    fn a_non_canonical_json_frame_is_named_at_its_first_differing_byte() {
        let frame = put(None);
        let canonical = frame.to_bytes().expect("encode");
        assert!(check_frame("s", Role::Control, 1, KNOWN_FLAGS, 0, &frame, &canonical).is_empty());
        // ttl_ms left out instead of null: same message, wrong bytes.
        let text = br#"{"type":"cache_put","tenant_id":"t1","namespace":"default","cache":"c","key":"k","value":"dg==","request_id":1}"#;
        let mut raw = b"FLX1\x00\x01\x00\x00".to_vec();
        raw.extend_from_slice(&(text.len() as u32).to_be_bytes());
        raw.extend_from_slice(text);
        let v = check_frame("s", Role::Control, 1, KNOWN_FLAGS, 0, &frame, &raw);
        assert_eq!(v.len(), 1, "{v:?}");
        let at = text.len() - 1;
        assert_eq!(
            v[0],
            format!(
                "s, frame 1: JSON cache_put differs from the canonical encoding at payload byte {at} (frame byte {}): want `e\":\"dg==\",\"request_id\":1,\"ttl_ms\":null}}`, got `e\":\"dg==\",\"request_id\":1}}`",
                at + 12
            )
        );
    }

    #[test]
    fn flags_roles_and_direction_are_checked() {
        let frame = put(Some(5));
        let raw = frame.to_bytes().expect("encode");
        let v = check_frame("s", Role::PublishOnly, 2, 0x0007, 0x0009, &frame, &raw);
        assert!(v[0].contains("flags 0x0009 use bits 0x0008"), "{v:?}");
        assert!(v[1].contains("a unidirectional stream carries only unacked publishes"));
        let ok = Frame::Json(Message::from(OkMessage {}));
        let raw = ok.to_bytes().expect("encode");
        let v = check_frame("s", Role::Control, 1, 0x0007, 0, &ok, &raw);
        assert_eq!(
            v,
            ["s, frame 1: the client sent ok, a broker-to-client message"]
        );
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
        assert_eq!(first_difference(b"abc", b"abc"), None);
    }
}
