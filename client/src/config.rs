//! Client configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the broker's certificate is trusted.
#[derive(Debug, Clone)]
pub enum Trust {
    /// PEM text of the certificate(s) to trust.
    CertificatePem(Vec<u8>),
    /// A PEM file of the certificate(s) to trust (e.g. `.felix/tls/cert.pem`).
    CertificateFile(PathBuf),
    /// Trust any certificate. For tests and debugging only.
    InsecureSkipVerify,
}

/// Everything a [`crate::Client`] needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Broker address.
    pub addr: SocketAddr,
    /// TLS server name (the dev certificate is for `localhost`).
    pub server_name: String,
    /// Certificate trust.
    pub trust: Trust,
    /// Tenant sent in every `auth`.
    pub tenant_id: String,
    /// Token sent in every `auth`.
    pub token: String,
    /// Pooled streams for publishes: this many bidirectional streams for
    /// acked publishes and as many unidirectional ones for unacked
    /// publishes (0 is taken as 1).
    pub publish_streams: usize,
    /// Pooled bidirectional streams for cache requests (0 is taken as 1).
    pub cache_streams: usize,
    /// Connections dedicated to subscriptions (event streams), used round
    /// robin (0 is taken as 1).
    pub event_connections: usize,
    /// QUIC keep-alive interval (keeps quiet subscriptions alive).
    pub keep_alive: Duration,
    /// Time allowed to establish a connection, retries included.
    pub connect_timeout: Duration,
    /// Time allowed for one request: writing it and reading its reply.
    pub request_timeout: Duration,
    /// First delay between connection attempts.
    pub reconnect_initial_backoff: Duration,
    /// Longest delay between connection attempts (the delay doubles).
    pub reconnect_max_backoff: Duration,
    /// Largest frame payload accepted from the broker.
    pub max_frame_bytes: u32,
}

impl ClientConfig {
    /// A configuration with the defaults: 4 publish and 4 cache streams, one
    /// event connection, 5 s keep-alive and connect timeout, 10 s request
    /// timeout, reconnect backoff 100 ms doubling to 5 s, 16 MiB frames.
    pub fn new(
        addr: SocketAddr,
        server_name: impl Into<String>,
        trust: Trust,
        tenant_id: impl Into<String>,
        token: impl Into<String>,
    ) -> Self {
        ClientConfig {
            addr,
            server_name: server_name.into(),
            trust,
            tenant_id: tenant_id.into(),
            token: token.into(),
            publish_streams: 4,
            cache_streams: 4,
            event_connections: 1,
            keep_alive: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            reconnect_initial_backoff: Duration::from_millis(100),
            reconnect_max_backoff: Duration::from_secs(5),
            max_frame_bytes: felix_wire::DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = ClientConfig::new(
            "127.0.0.1:5000".parse().expect("literal address"),
            "localhost",
            Trust::InsecureSkipVerify,
            "t1",
            "dev",
        );
        assert_eq!(c.server_name, "localhost");
        assert_eq!((c.tenant_id.as_str(), c.token.as_str()), ("t1", "dev"));
        assert_eq!(c.publish_streams, 4);
        assert_eq!(c.cache_streams, 4);
        assert_eq!(c.event_connections, 1);
        assert_eq!(c.keep_alive, Duration::from_secs(5));
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.reconnect_initial_backoff, Duration::from_millis(100));
        assert_eq!(c.reconnect_max_backoff, Duration::from_secs(5));
        assert_eq!(c.max_frame_bytes, 16 * 1024 * 1024);
        assert_eq!(c.max_frame_bytes, felix_wire::DEFAULT_MAX_FRAME_BYTES);
    }
}
