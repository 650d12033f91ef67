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

/// Everything a [`crate::Client`] needs. Made with [`ClientConfig::builder`].
///
/// `#[non_exhaustive]`: new settings can be added without breaking
/// callers, so it cannot be written as a struct literal. The fields stay
/// public to read, and to adjust a configuration already built (for
/// example a copy with fewer streams).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Broker addresses, in the order they are tried; never empty (see
    /// [`ClientConfig::addrs`]).
    addrs: Vec<SocketAddr>,
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
    /// Time allowed to establish a connection, retries and every broker
    /// address included (each attempt gets an equal share of what is left
    /// of it, so an address that never answers cannot use all of it).
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
    /// The broker addresses: the first given to [`ClientConfig::builder`],
    /// then those added with [`ClientConfigBuilder::failover_addr`].
    ///
    /// The client connects to the first that answers, starting from the
    /// one that last worked, and moves to the next when a connection is
    /// lost. Every address must present a certificate [`ClientConfig::trust`]
    /// accepts for [`ClientConfig::server_name`].
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// A builder for a client of the broker at `addr` whose certificate is
    /// trusted as `trust` (there is no default trust: like rustls, the
    /// caller chooses its roots).
    ///
    /// The defaults: server name `localhost` (the dev certificate's),
    /// empty credentials (set them with [`ClientConfigBuilder::credentials`];
    /// only a dev-mode broker accepts an empty tenant), 4 publish and 4
    /// cache streams, one event connection, 5 s keep-alive and connect
    /// timeout, 10 s request timeout, reconnect backoff 100 ms doubling to
    /// 5 s, 16 MiB frames.
    pub fn builder(addr: SocketAddr, trust: Trust) -> ClientConfigBuilder {
        ClientConfigBuilder {
            config: ClientConfig {
                addrs: vec![addr],
                server_name: "localhost".into(),
                trust,
                tenant_id: String::new(),
                token: String::new(),
                publish_streams: 4,
                cache_streams: 4,
                event_connections: 1,
                keep_alive: Duration::from_secs(5),
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(10),
                reconnect_initial_backoff: Duration::from_millis(100),
                reconnect_max_backoff: Duration::from_secs(5),
                max_frame_bytes: felix_wire::DEFAULT_MAX_FRAME_BYTES,
            },
        }
    }
}

/// Builds a [`ClientConfig`]; from [`ClientConfig::builder`]. Each setter
/// documents its setting on [`ClientConfig`]'s field of the same name.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClientConfigBuilder {
    config: ClientConfig,
}

impl ClientConfigBuilder {
    /// Adds a broker address to fail over to (a node of the same cluster:
    /// see docs/cluster.md). An address already listed is not added twice.
    pub fn failover_addr(mut self, addr: SocketAddr) -> Self {
        if !self.config.addrs.contains(&addr) {
            self.config.addrs.push(addr);
        }
        self
    }

    /// Adds several broker addresses to fail over to, in order
    /// ([`ClientConfigBuilder::failover_addr`]).
    pub fn failover_addrs(self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        addrs.into_iter().fold(self, Self::failover_addr)
    }

    /// The TLS server name the broker's certificate must match.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.config.server_name = name.into();
        self
    }

    /// The tenant and token sent in every `auth`.
    pub fn credentials(mut self, tenant_id: impl Into<String>, token: impl Into<String>) -> Self {
        self.config.tenant_id = tenant_id.into();
        self.config.token = token.into();
        self
    }

    /// [`ClientConfig::publish_streams`].
    pub fn publish_streams(mut self, n: usize) -> Self {
        self.config.publish_streams = n;
        self
    }

    /// [`ClientConfig::cache_streams`].
    pub fn cache_streams(mut self, n: usize) -> Self {
        self.config.cache_streams = n;
        self
    }

    /// [`ClientConfig::event_connections`].
    pub fn event_connections(mut self, n: usize) -> Self {
        self.config.event_connections = n;
        self
    }

    /// [`ClientConfig::keep_alive`]; zero disables keep-alives.
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.config.keep_alive = interval;
        self
    }

    /// [`ClientConfig::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// [`ClientConfig::request_timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// The delay before the first reconnection attempt, and the most it
    /// doubles to ([`ClientConfig::reconnect_initial_backoff`],
    /// [`ClientConfig::reconnect_max_backoff`]).
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.reconnect_initial_backoff = initial;
        self.config.reconnect_max_backoff = max;
        self
    }

    /// [`ClientConfig::max_frame_bytes`].
    pub fn max_frame_bytes(mut self, n: u32) -> Self {
        self.config.max_frame_bytes = n;
        self
    }

    /// The configuration.
    pub fn build(self) -> ClientConfig {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = ClientConfig::builder(
            "127.0.0.1:5000".parse().expect("literal address"),
            Trust::InsecureSkipVerify,
        )
        .credentials("t1", "dev")
        .build();
        assert_eq!(c.server_name, "localhost");
        assert_eq!(c.addrs().len(), 1);
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

    #[test]
    fn every_setter_sets_its_field() {
        let c = ClientConfig::builder(
            "127.0.0.1:5000".parse().expect("literal address"),
            Trust::InsecureSkipVerify,
        )
        .server_name("broker.example")
        .publish_streams(1)
        .cache_streams(2)
        .event_connections(3)
        .keep_alive(Duration::ZERO)
        .connect_timeout(Duration::from_millis(1))
        .request_timeout(Duration::from_millis(2))
        .reconnect_backoff(Duration::from_millis(3), Duration::from_millis(4))
        .max_frame_bytes(5)
        .failover_addr("127.0.0.1:5001".parse().expect("literal address"))
        .failover_addrs(["127.0.0.1:5000", "127.0.0.1:5002"].map(|a| a.parse().expect("literal")))
        .build();
        let addrs: Vec<String> = c.addrs().iter().map(|a| a.to_string()).collect();
        assert_eq!(
            addrs,
            ["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"],
            "in order, without duplicates"
        );
        assert_eq!(c.server_name, "broker.example");
        assert_eq!((c.tenant_id.as_str(), c.token.as_str()), ("", ""));
        assert_eq!(
            (c.publish_streams, c.cache_streams, c.event_connections),
            (1, 2, 3)
        );
        assert_eq!(c.keep_alive, Duration::ZERO);
        assert_eq!(c.connect_timeout, Duration::from_millis(1));
        assert_eq!(c.request_timeout, Duration::from_millis(2));
        assert_eq!(c.reconnect_initial_backoff, Duration::from_millis(3));
        assert_eq!(c.reconnect_max_backoff, Duration::from_millis(4));
        assert_eq!(c.max_frame_bytes, 5);
    }
}
