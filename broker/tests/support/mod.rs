//! A scripted felix-wire peer over real QUIC (loopback), and a broker
//! started on an ephemeral port, for the broker's integration tests.

#![allow(dead_code)]

pub(crate) mod nats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use felix_broker::core::auth::Authenticator;
use felix_broker::core::CoreSettings;
use felix_broker::embedded::{EmbeddedBroker, EmbeddedConfig};
use felix_broker::quic::ShellLimits;
use felix_wire::{Auth, DecodeError, Frame, FrameDecoder, Message, KNOWN_FLAGS};
use rustls::pki_types::CertificateDer;

pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct TestBroker {
    pub(crate) broker: EmbeddedBroker,
    pub(crate) certs: Vec<CertificateDer<'static>>,
}

impl TestBroker {
    /// Waits (up to 2 s) until stream `stream` of tenant `t1`, namespace
    /// `default` has `n` live subscribers; returns the count it ended with.
    pub(crate) async fn wait_for_subscribers(&self, stream: &str, n: usize) -> usize {
        let key = felix_broker::core::pubsub::StreamKey {
            tenant: "t1".into(),
            namespace: "default".into(),
            stream: stream.into(),
        };
        let count = || self.broker.core().pubsub.subscriber_stats(&key).len();
        for _ in 0..200 {
            if count() == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        count()
    }
}

pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn temp_dir(tag: &str) -> TempDir {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "felix-broker-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

pub(crate) fn settings() -> CoreSettings {
    CoreSettings {
        batch_linger: Duration::ZERO,
        ..CoreSettings::default()
    }
}

pub(crate) async fn start(settings: CoreSettings, auth: Authenticator) -> TestBroker {
    start_with(settings, auth, |_| {}).await
}

pub(crate) async fn start_with(
    settings: CoreSettings,
    auth: Authenticator,
    f: impl FnOnce(&mut ShellLimits),
) -> TestBroker {
    let mut config = EmbeddedConfig {
        auth,
        core: settings,
        ..EmbeddedConfig::default()
    };
    config.limits.max_connections = 1000;
    config.limits.max_connections_per_source = 1000;
    f(&mut config.limits);
    let broker = config.start().expect("start the broker");
    TestBroker {
        certs: broker.certificates().to_vec(),
        broker,
    }
}

pub(crate) fn client_config(
    certs: &[CertificateDer<'static>],
    alpn: Option<&[u8]>,
) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c.clone()).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots)
        .with_no_client_auth();
    if let Some(p) = alpn {
        tls.alpn_protocols = vec![p.to_vec()];
    }
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    quinn::ClientConfig::new(Arc::new(crypto))
}

/// A raw felix-wire peer: one QUIC connection, streams on demand.
pub(crate) struct Peer {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) conn: quinn::Connection,
}

impl Peer {
    pub(crate) async fn connect(
        addr: SocketAddr,
        certs: &[CertificateDer<'static>],
    ) -> Result<Peer, String> {
        Peer::connect_with(addr, client_config(certs, None)).await
    }

    pub(crate) async fn connect_with(
        addr: SocketAddr,
        config: quinn::ClientConfig,
    ) -> Result<Peer, String> {
        Peer::connect_from("127.0.0.1", addr, config).await
    }

    /// Connects from local address `ip` (any of 127.0.0.0/8 on Linux):
    /// several "sources" on one machine.
    pub(crate) async fn connect_from(
        ip: &str,
        addr: SocketAddr,
        config: quinn::ClientConfig,
    ) -> Result<Peer, String> {
        let local = SocketAddr::new(ip.parse().map_err(|_| format!("bad ip {ip}"))?, 0);
        let mut endpoint = quinn::Endpoint::client(local).map_err(|e| e.to_string())?;
        endpoint.set_default_client_config(config);
        let connecting = endpoint
            .connect(addr, "localhost")
            .map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(TIMEOUT, connecting)
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(Peer { endpoint, conn })
    }

    /// Opens a control stream and authenticates it (with client_flags).
    pub(crate) async fn control(&self, tenant: &str) -> Control {
        let mut c = self.open().await;
        c.send(Message::from(Auth {
            tenant_id: tenant.into(),
            token: "dev".into(),
            client_flags: Some(KNOWN_FLAGS),
        }))
        .await;
        match c.recv().await {
            Frame::Json(Message::AuthOk(_)) => c,
            other => panic!("auth: {other:?}"),
        }
    }

    /// Opens a control stream without authenticating.
    pub(crate) async fn open(&self) -> Control {
        let (send, recv) = self.conn.open_bi().await.expect("open_bi");
        Control {
            send,
            reader: Reader::new(recv),
        }
    }

    /// Accepts the next broker-opened event stream and reads its hello.
    pub(crate) async fn accept_events(&self) -> (u64, Reader) {
        let recv = tokio::time::timeout(TIMEOUT, self.conn.accept_uni())
            .await
            .expect("event stream in time")
            .expect("accept_uni");
        let mut r = Reader::new(recv);
        match r.recv().await {
            Frame::Json(Message::EventStreamHello(h)) => (h.subscription_id, r),
            other => panic!("expected event_stream_hello, got {other:?}"),
        }
    }
}

pub(crate) struct Reader {
    pub(crate) recv: quinn::RecvStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl Reader {
    pub(crate) fn new(recv: quinn::RecvStream) -> Self {
        Reader {
            recv,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(),
        }
    }

    /// The next frame, or `None` when the stream ends cleanly.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, String> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                Err(e) => return Err(format!("decode: {e}")),
            }
            let chunk = tokio::time::timeout(TIMEOUT, self.recv.read_chunk(65536, true))
                .await
                .map_err(|_| "timeout".to_string())?;
            match chunk {
                Ok(Some(c)) => self.buf.extend_from_slice(&c.bytes),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => {
                    return Err(format!(
                        "stream ended inside a frame: {:?}",
                        DecodeError::Incomplete {
                            needed: 0,
                            available: self.buf.len()
                        }
                    ))
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    pub(crate) async fn recv(&mut self) -> Frame {
        self.next()
            .await
            .expect("frame")
            .expect("stream ended early")
    }

    /// Asserts the stream ends (cleanly or reset) with no further frame.
    pub(crate) async fn expect_end(&mut self) {
        match self.next().await {
            Ok(None) | Err(_) => {}
            Ok(Some(f)) => panic!("expected the stream to end, got {f:?}"),
        }
    }
}

pub(crate) struct Control {
    pub(crate) send: quinn::SendStream,
    pub(crate) reader: Reader,
}

impl Control {
    pub(crate) async fn send(&mut self, frame: impl Into<Frame>) {
        let bytes = frame.into().to_bytes().expect("encode");
        self.send.write_all(&bytes).await.expect("write");
    }

    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.expect("write");
    }

    pub(crate) async fn recv(&mut self) -> Frame {
        self.reader.recv().await
    }

    pub(crate) fn finish(&mut self) {
        self.send.finish().expect("finish");
    }
}

pub(crate) fn error_text(f: &Frame) -> String {
    match f {
        Frame::Json(Message::Error(e)) => e.message.clone(),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

/// Payloads of an event batch frame, with the batch's base offset.
pub(crate) fn events(f: &Frame) -> (Option<u64>, Vec<Bytes>) {
    match f {
        Frame::BinarySharedEventBatch(b) => (b.base_offset, b.payloads.clone()),
        Frame::BinaryEventBatch(b) => (b.base_offset, b.payloads.clone()),
        other => panic!("expected an event batch, got {other:?}"),
    }
}

/// Starts the real `felix-broker` binary on `bind` with its data in
/// `data_dir` (dev auth, no metrics endpoint) plus `extra` flags; returns
/// the process and the address from its banner.
pub(crate) fn spawn_broker(
    data_dir: &std::path::Path,
    bind: &str,
    extra: &[&str],
) -> (std::process::Child, SocketAddr) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_felix-broker"))
        .args([
            "--bind",
            bind,
            "--data-dir",
            data_dir.to_str().expect("utf8"),
            "--metrics-bind",
            "off",
        ])
        .args(extra)
        .env("FELIX_BROKER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start felix-broker");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("banner");
    // Keep draining stdout so the broker never writes to a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let addr = line
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

/// The certificate a spawned broker wrote to its data directory.
pub(crate) fn certs(data_dir: &std::path::Path) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(data_dir.join("tls/cert.pem")).expect("cert");
    rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .expect("pem")
}

/// Resident set size of process `pid`, bytes (Linux `/proc`).
pub(crate) fn rss_of(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}
