//! A raw felix-wire peer over QUIC: the live suite speaks frames directly,
//! so it can send what a well-behaved client never would and see exactly
//! what a broker answers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use felix_wire::{Auth, Frame, FrameDecoder, Message, KNOWN_FLAGS};

pub use felix_client::Trust;

/// Loads a PEM file of certificates to trust (checked now, so a bad path is
/// a usage error rather than a failed case).
pub fn trust_pem_file(path: &Path) -> Result<Trust, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    felix_client::tls::rustls_config(&Trust::CertificatePem(pem.clone()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Trust::CertificatePem(pem))
}

/// Loads several PEM files into one trust (the nodes of a cluster may each
/// have their own certificate), each checked now.
pub fn trust_pem_files(paths: &[std::path::PathBuf]) -> Result<Trust, String> {
    let mut all = Vec::new();
    for path in paths {
        match trust_pem_file(path)? {
            Trust::CertificatePem(pem) => {
                all.extend_from_slice(&pem);
                all.push(b'\n');
            }
            other => return Ok(other),
        }
    }
    Ok(Trust::CertificatePem(all))
}

/// A quinn client configuration; `alpn` only to test that it is refused.
pub fn client_config(trust: &Trust, alpn: Option<&[u8]>) -> Result<quinn::ClientConfig, String> {
    let mut tls = felix_client::tls::rustls_config(trust).map_err(|e| e.to_string())?;
    if let Some(p) = alpn {
        tls.alpn_protocols = vec![p.to_vec()];
    }
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Where and as whom the suite connects.
#[derive(Debug, Clone)]
pub struct Target {
    /// Broker address.
    pub addr: SocketAddr,
    /// TLS server name.
    pub server_name: String,
    /// Certificate trust.
    pub trust: Trust,
    /// Tenant for `auth`.
    pub tenant: String,
    /// Token for `auth`.
    pub token: String,
}

/// One QUIC connection.
pub struct Peer {
    /// The connection.
    pub conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
    target: Target,
    timeout: Duration,
}

impl Peer {
    /// Connects (no ALPN).
    pub async fn connect(target: &Target, timeout: Duration) -> Result<Peer, String> {
        Peer::connect_with(target, client_config(&target.trust, None)?, timeout).await
    }

    /// Connects with a given client configuration.
    pub async fn connect_with(
        target: &Target,
        config: quinn::ClientConfig,
        timeout: Duration,
    ) -> Result<Peer, String> {
        let bind: SocketAddr = if target.addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .map_err(|_| "bind address")?;
        let mut endpoint =
            quinn::Endpoint::client(bind).map_err(|e| format!("client endpoint: {e}"))?;
        endpoint.set_default_client_config(config);
        let connecting = endpoint
            .connect(target.addr, &target.server_name)
            .map_err(|e| format!("connect: {e}"))?;
        let conn = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| format!("handshake with {} timed out", target.addr))?
            .map_err(|e| format!("handshake with {}: {e}", target.addr))?;
        Ok(Peer {
            conn,
            _endpoint: endpoint,
            target: target.clone(),
            timeout,
        })
    }

    /// The auth frame for this target.
    pub fn auth(&self, client_flags: Option<u16>) -> Message {
        Message::from(Auth {
            tenant_id: self.target.tenant.clone(),
            token: self.target.token.clone(),
            client_flags,
        })
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.target.tenant
    }

    /// Opens a bidirectional stream.
    pub async fn open(&self) -> Result<Stream, String> {
        let (send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| format!("open_bi: {e}"))?;
        Ok(Stream {
            send,
            reader: Reader::new(recv, self.timeout),
        })
    }

    /// Opens a control stream and authenticates with every known flag.
    pub async fn control(&self) -> Result<Stream, String> {
        let mut s = self.open().await?;
        s.send(self.auth(Some(KNOWN_FLAGS))).await?;
        match s.recv().await? {
            Frame::Json(Message::AuthOk(_)) => Ok(s),
            other => Err(format!(
                "auth with client_flags: expected auth_ok, got {}",
                describe(&other)
            )),
        }
    }

    /// Accepts the next broker-opened unidirectional stream and reads its
    /// first frame, which must be `event_stream_hello`.
    pub async fn accept_events(&self) -> Result<(u64, Reader), String> {
        let recv = tokio::time::timeout(self.timeout, self.conn.accept_uni())
            .await
            .map_err(|_| "no event stream opened by the broker in time".to_string())?
            .map_err(|e| format!("accept_uni: {e}"))?;
        let mut r = Reader::new(recv, self.timeout);
        match r.recv().await? {
            Frame::Json(Message::EventStreamHello(h)) => Ok((h.subscription_id, r)),
            other => Err(format!(
                "the event stream's first frame must be event_stream_hello, got {}",
                describe(&other)
            )),
        }
    }
}

/// Reads frames from a receive stream.
pub struct Reader {
    recv: quinn::RecvStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    timeout: Duration,
}

impl Reader {
    fn new(recv: quinn::RecvStream, timeout: Duration) -> Self {
        Reader {
            recv,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(),
            timeout,
        }
    }

    /// The next frame; `None` when the stream ended cleanly.
    pub async fn next(&mut self) -> Result<Option<Frame>, String> {
        loop {
            if let Some(f) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| format!("the broker sent an invalid frame: {e}"))?
            {
                return Ok(Some(f));
            }
            let chunk = tokio::time::timeout(self.timeout, self.recv.read_chunk(64 * 1024, true))
                .await
                .map_err(|_| format!("no frame within {} ms", self.timeout.as_millis()))?;
            match chunk {
                Ok(Some(c)) => self.buf.extend_from_slice(&c.bytes),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => return Err("the stream ended inside a frame".into()),
                Err(e) => return Err(format!("stream reset or lost: {e}")),
            }
        }
    }

    /// The next frame; an error if the stream ends.
    pub async fn recv(&mut self) -> Result<Frame, String> {
        self.next()
            .await?
            .ok_or_else(|| "the stream ended before the expected frame".to_string())
    }

    /// Succeeds if the stream ends (finished or reset) without another frame.
    pub async fn expect_end(&mut self) -> Result<(), String> {
        match self.next().await {
            Ok(None) => Ok(()),
            Err(e) if e.contains("reset") || e.contains("lost") => Ok(()),
            Err(e) => Err(e),
            Ok(Some(f)) => Err(format!("expected the stream to end, got {}", describe(&f))),
        }
    }

    /// Stops the stream (unsubscribe).
    pub fn stop(&mut self) {
        let _ = self.recv.stop(0u32.into());
    }
}

/// A bidirectional stream.
pub struct Stream {
    /// Send side.
    pub send: quinn::SendStream,
    /// Receive side.
    pub reader: Reader,
}

impl Stream {
    /// Sends a frame.
    pub async fn send(&mut self, frame: impl Into<Frame>) -> Result<(), String> {
        let bytes = frame.into().to_bytes().map_err(|e| e.to_string())?;
        self.send_raw(&bytes).await
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.send
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Receives a frame.
    pub async fn recv(&mut self) -> Result<Frame, String> {
        self.reader.recv().await
    }

    /// Finishes the send side.
    pub fn finish(&mut self) -> Result<(), String> {
        self.send.finish().map_err(|e| format!("finish: {e}"))
    }
}

/// A short description of a frame for failure messages.
pub fn describe(f: &Frame) -> String {
    // The broker's own words first: an error frame's text is the reason.
    if let Frame::Json(Message::Error(e)) = f {
        return format!("error frame from the broker: {:?}", e.message);
    }
    let text = f.to_neutral().to_string();
    if text.len() > 300 {
        format!(
            "{}...",
            &text[..text
                .char_indices()
                .take_while(|(i, _)| *i < 300)
                .last()
                .map_or(0, |(i, _)| i)]
        )
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use felix_wire::ErrorMessage;

    #[test]
    fn an_error_frame_is_described_by_the_brokers_own_text() {
        let f = Frame::Json(Message::Error(ErrorMessage {
            message: "stream quota exceeded for tenant t1".into(),
        }));
        assert_eq!(
            describe(&f),
            "error frame from the broker: \"stream quota exceeded for tenant t1\""
        );
    }
}
