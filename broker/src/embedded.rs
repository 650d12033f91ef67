//! The reference broker inside another program: tests, the conformance
//! runner and the benchmarks start one here instead of wiring TLS, the
//! core and the QUIC shell by hand.
//!
//! ```no_run
//! use felix_broker::core::CoreSettings;
//! use felix_broker::embedded::EmbeddedConfig;
//!
//! # async fn demo() -> Result<(), felix_broker::app::StartError> {
//! let broker = EmbeddedConfig {
//!     core: CoreSettings {
//!         replay_capacity: 8,
//!         ..CoreSettings::default()
//!     },
//!     ..EmbeddedConfig::default()
//! }
//! .start()?;
//! println!("{} trusts {}", broker.local_addr(), broker.cert_path().display());
//! broker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! What it does that `felix-broker` does not: it binds 127.0.0.1 on a port
//! the kernel picks (no race for a free port), keeps its self-signed
//! development certificate in a scratch directory of its own (removed when
//! the broker stops) unless given a data directory, and hands the
//! certificate back, as a PEM file and as DER, so a client can trust it.
//! What it leaves out: the metrics endpoint, persisted replay rings and
//! auth files (pass an [`Authenticator`] instead); [`crate::app`] wires
//! those for the real broker.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::app::StartError;
use crate::core::auth::Authenticator;
use crate::core::{Core, CoreSettings};
use crate::quic::{RunningBroker, Shards, ShellLimits};
use crate::tls::{self, TransportSettings};

/// How to start an embedded broker. Every field has a default
/// ([`EmbeddedConfig::default`]); override the ones that matter with
/// `..EmbeddedConfig::default()`.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Where to serve QUIC. Default `127.0.0.1:0`: loopback, a free port.
    pub addr: SocketAddr,
    /// Where the development certificate lives (`<dir>/tls/`); it is
    /// reused if present, and the directory is kept. `None` (the default):
    /// a fresh scratch directory, removed when the broker stops.
    pub data_dir: Option<PathBuf>,
    /// How `auth` frames are checked. Default [`Authenticator::Dev`].
    pub auth: Authenticator,
    /// The core's settings. Default [`CoreSettings::default`].
    pub core: CoreSettings,
    /// The shell's limits. Default [`ShellLimits::default`], except that a
    /// source address may hold every connection (all clients of an
    /// embedded broker come from loopback) and a drain waits at most 5 s.
    pub limits: ShellLimits,
    /// The QUIC transport. Default [`TransportSettings::default`].
    pub transport: TransportSettings,
    /// Shard threads with their own endpoint on the shared port
    /// ([`RunningBroker::start_sharded`]). Default none: the broker serves
    /// on the caller's runtime.
    pub shards: Shards,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        let limits = ShellLimits::default();
        EmbeddedConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: None,
            auth: Authenticator::Dev,
            core: CoreSettings::default(),
            limits: ShellLimits {
                max_connections_per_source: limits.max_connections,
                drain_timeout: Duration::from_secs(5),
                ..limits
            },
            transport: TransportSettings::default(),
            shards: Shards::default(),
        }
    }
}

impl EmbeddedConfig {
    /// Loads (or makes) the certificate and starts serving. Must be called
    /// inside a tokio runtime: the broker's tasks run on it.
    pub fn start(self) -> Result<EmbeddedBroker, StartError> {
        self.start_inner(None)
    }

    /// Starts a cluster-mode node on these NATS JetStream settings
    /// (docs/cluster.md): brokers on the same NATS serve as one.
    pub async fn start_clustered(
        self,
        cluster: crate::cluster::ClusterSettings,
    ) -> Result<EmbeddedBroker, StartError> {
        let mut core = Core::new(self.core.clone(), self.auth.clone());
        core.clustered = true;
        let core = Arc::new(core);
        let cluster = crate::cluster::Cluster::connect(cluster, core.clone()).await?;
        self.start_inner(Some((core, cluster)))
    }

    fn start_inner(
        self,
        clustered: Option<(Arc<Core>, Arc<crate::cluster::Cluster>)>,
    ) -> Result<EmbeddedBroker, StartError> {
        let (dir, scratch) = match self.data_dir {
            Some(dir) => (dir, None),
            None => {
                let scratch = ScratchDir::new();
                (scratch.0.clone(), Some(scratch))
            }
        };
        let material = tls::load_or_create_dev(&dir)?;
        let server = tls::server_config(&material, &self.transport)?;
        let (core, cluster) = match clustered {
            Some((core, cluster)) => (core, Some(cluster)),
            None => (Arc::new(Core::new(self.core, self.auth)), None),
        };
        let broker = RunningBroker::start_sharded(
            self.addr,
            server,
            core,
            self.limits,
            cluster,
            self.shards,
        )
        .map_err(|source| StartError::Bind {
            what: "QUIC",
            addr: self.addr,
            source,
        })?;
        Ok(EmbeddedBroker {
            broker,
            cert_path: material.cert_path,
            certs: material.certs,
            _scratch: scratch,
        })
    }
}

/// A broker started by [`EmbeddedConfig::start`], and the certificate its
/// clients must trust. Stop it with [`EmbeddedBroker::shutdown`]; dropping
/// it stops serving too, without the graceful drain.
#[derive(Debug)]
pub struct EmbeddedBroker {
    broker: RunningBroker,
    cert_path: PathBuf,
    certs: Vec<CertificateDer<'static>>,
    /// Removed after the broker (fields drop in order).
    _scratch: Option<ScratchDir>,
}

impl EmbeddedBroker {
    /// The address it serves on (with the port the kernel picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.broker.local_addr()
    }

    /// The PEM file of its certificate (for a client's trust settings).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Its certificate chain as DER, leaf first (for a rustls root store).
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The core (metrics, state).
    pub fn core(&self) -> &Arc<Core> {
        self.broker.core()
    }

    /// The QUIC shell.
    pub fn running(&self) -> &RunningBroker {
        &self.broker
    }

    /// Drains it ([`RunningBroker::shutdown`]), then removes its scratch
    /// directory, if it made one.
    pub async fn shutdown(self) {
        let EmbeddedBroker {
            broker, _scratch, ..
        } = self;
        broker.shutdown().await;
        drop(_scratch);
    }
}

/// A directory of this process's, removed when dropped.
#[derive(Debug)]
struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `felix-embedded-<pid>-<n>` in the temporary directory. One with the
    /// same name can only be left over from an earlier process that had
    /// this pid: it is removed first.
    fn new() -> ScratchDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "felix-embedded-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_der(path: &Path) -> Vec<CertificateDer<'static>> {
        let pem = std::fs::read(path).expect("read the certificate");
        rustls_pemfile::certs(&mut &pem[..])
            .collect::<Result<_, _>>()
            .expect("PEM")
    }

    #[tokio::test]
    async fn it_serves_on_a_free_loopback_port_with_its_own_certificate() {
        let broker = EmbeddedConfig::default().start().expect("starts");
        let addr = broker.local_addr();
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0, "the kernel picked a port");
        let cert = broker.cert_path().to_path_buf();
        assert_eq!(pem_der(&cert), broker.certificates(), "PEM and DER agree");
        let dir = cert
            .parent()
            .and_then(Path::parent)
            .expect("<dir>/tls/cert.pem")
            .to_path_buf();
        let other = EmbeddedConfig::default().start().expect("a second one");
        assert_ne!(other.local_addr(), addr);
        assert_ne!(other.cert_path(), cert, "each has its own directory");
        other.shutdown().await;
        broker.shutdown().await;
        assert!(!dir.exists(), "the scratch directory is removed");
    }

    #[tokio::test]
    async fn a_given_data_directory_is_kept_and_its_certificate_reused() {
        let dir = ScratchDir::new();
        let start = || {
            EmbeddedConfig {
                data_dir: Some(dir.0.clone()),
                ..EmbeddedConfig::default()
            }
            .start()
            .expect("starts")
        };
        let first = start();
        let der = first.certificates().to_vec();
        first.shutdown().await;
        assert!(dir.0.join("tls/cert.pem").is_file(), "kept");
        let second = start();
        assert_eq!(second.certificates(), der, "the same certificate");
        second.shutdown().await;
    }

    #[tokio::test]
    async fn settings_reach_the_core_and_the_shell() {
        let broker = EmbeddedConfig {
            core: CoreSettings {
                replay_capacity: 8,
                ..CoreSettings::default()
            },
            ..EmbeddedConfig::default()
        }
        .start()
        .expect("starts");
        assert_eq!(broker.core().settings.replay_capacity, 8);
        broker.shutdown().await;
        let limits = EmbeddedConfig::default().limits;
        assert_eq!(
            limits.max_connections_per_source, limits.max_connections,
            "every client of an embedded broker is on loopback"
        );
    }

    #[tokio::test]
    async fn a_taken_address_is_a_bind_error() {
        let first = EmbeddedConfig::default().start().expect("starts");
        let taken = EmbeddedConfig {
            addr: first.local_addr(),
            ..EmbeddedConfig::default()
        }
        .start();
        assert!(
            matches!(taken, Err(StartError::Bind { addr, .. }) if addr == first.local_addr()),
            "{taken:?}"
        );
        first.shutdown().await;
    }
}
