//! TLS material: the operator's certificate and key, or a self-signed
//! development certificate for `localhost` kept in the data directory so
//! clients can pin it across restarts.
//!
//! No ALPN is configured: rustls refuses a handshake where one side offers
//! ALPN and the other has none, and Felix peers offer none.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: &'static str,
    },
    /// Certificate generation failed.
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
    /// rustls or quinn refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A certificate chain and its key.
#[derive(Debug)]
pub struct TlsMaterial {
    /// Certificate chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// Where the leaf certificate's PEM lives (for "how to connect").
    pub cert_path: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads a PEM certificate chain and private key.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<TlsMaterial, TlsError> {
    let cert_pem = std::fs::read(cert_path).map_err(io(cert_path))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(io(cert_path))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: cert_path.to_path_buf(),
            what: "no CERTIFICATE block",
        });
    }
    let key_pem = std::fs::read(key_path).map_err(io(key_path))?;
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(io(key_path))?
        .ok_or_else(|| TlsError::Pem {
            path: key_path.to_path_buf(),
            what: "no PRIVATE KEY block",
        })?;
    Ok(TlsMaterial {
        certs,
        key,
        cert_path: cert_path.to_path_buf(),
    })
}

/// Loads `<data_dir>/tls/{cert,key}.pem`, creating a self-signed
/// certificate for `localhost` (and 127.0.0.1, ::1) first if absent.
///
/// The directory is `0700` and the key `0600` on Unix (from creation on,
/// and narrowed if an older broker left them open): anyone who reads the
/// key can impersonate the broker to clients that pin its certificate.
pub fn load_or_create_dev(data_dir: &Path) -> Result<TlsMaterial, TlsError> {
    let dir = data_dir.join("tls");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    crate::persist::create_private_dir(&dir).map_err(io(&dir))?;
    if !cert_path.exists() || !key_path.exists() {
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        crate::persist::write_private_file(
            &key_path,
            generated.signing_key.serialize_pem().as_bytes(),
        )
        .map_err(io(&key_path))?;
        std::fs::write(&cert_path, generated.cert.pem()).map_err(io(&cert_path))?;
        tracing::info!(cert = %cert_path.display(), "wrote a self-signed development certificate for localhost");
    } else {
        narrow_to_owner(&key_path);
    }
    load(&cert_path, &key_path)
}

/// Makes a key file an older broker wrote `0644` readable by its owner
/// only, and says so: the key may have been read already.
fn narrow_to_owner(path: &Path) {
    if crate::persist::narrow_mode(path, 0o600) {
        tracing::warn!(key = %path.display(), "the development key was readable by other users; made it 0600 (delete the tls directory to get a new key)");
    }
}

/// The largest UDP payload the broker searches for with path MTU
/// discovery and accepts from peers (quinn's default is 1452).
///
/// Discovery (RFC 8899) only keeps a size the path carried. On a 1500-byte
/// Ethernet path its binary search ends near the limit (about 1470 over
/// IPv4, 1446 over IPv6) after about 15 lost probes, and again every ten
/// minutes. On loopback and jumbo-frame networks
/// packets grow to this size: fewer packets mean fewer headers to protect,
/// frames to build and ACKs to track. Measured on loopback with 10
/// subscribers of 64 x 4 KiB batches: 170-190k delivered msg/s at 1452,
/// 260-320k at 3000-6000, and worse again at 9000 and above (three
/// alternating runs each), so 4096.
pub const MAX_UDP_PAYLOAD: u16 = 4096;

/// The endpoint configuration: peers may send datagrams of up to
/// [`MAX_UDP_PAYLOAD`] bytes.
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    // Within quinn's 1200..=65527, so never refused; the client crate's
    // `path_mtu` test fails if packets stop growing past 1452.
    let _ = config.max_udp_payload_size(MAX_UDP_PAYLOAD);
    config
}

/// Transport settings of the QUIC endpoint.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// Concurrent streams per connection, each direction.
    pub max_streams_per_connection: u32,
    /// Keep-alive interval so quiet subscriptions survive.
    pub keep_alive: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Bytes a peer may have in flight to one connection that the broker
    /// has not read yet (QUIC connection flow-control window). quinn's
    /// default is unlimited, which leaves only the per-stream window:
    /// up to 1024 streams x 1.25 MB buffered inside quinn per connection.
    pub receive_window: u32,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            max_streams_per_connection: 1024,
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            receive_window: 2 * 1024 * 1024,
        }
    }
}

/// The quinn server configuration: TLS 1.3 without ALPN or client auth.
pub fn server_config(
    material: &TlsMaterial,
    transport: &TransportSettings,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(material.certs.clone(), material.key.clone_key())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(transport.max_streams_per_connection.into());
    t.max_concurrent_uni_streams(transport.max_streams_per_connection.into());
    t.keep_alive_interval(Some(transport.keep_alive));
    t.receive_window(transport.receive_window.into());
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    t.max_idle_timeout(Some(
        transport
            .idle_timeout
            .try_into()
            .map_err(|_| TlsError::Config("idle timeout too large".into()))?,
    ));
    config.transport_config(Arc::new(t));
    Ok(config)
}
