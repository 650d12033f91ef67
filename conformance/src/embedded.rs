//! The reference broker started in-process on an ephemeral loopback port,
//! for the default run (no subcommand).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use felix_broker::core::auth::Authenticator;
use felix_broker::core::{Core, CoreSettings};
use felix_broker::quic::{RunningBroker, ShellLimits};
use felix_broker::tls::{self, TransportSettings};

use crate::peer::{Target, Trust};

/// A running embedded broker and its scratch directory.
pub struct Embedded {
    /// The broker.
    pub broker: RunningBroker,
    /// How to reach it.
    pub target: Target,
    /// Its replay ring size.
    pub replay_capacity: u64,
    dir: PathBuf,
}

impl Embedded {
    /// Starts the reference broker with dev auth on 127.0.0.1:0.
    pub async fn start() -> Result<Embedded, String> {
        let dir = std::env::temp_dir().join(format!("felix-conformance-{}", std::process::id()));
        let material = tls::load_or_create_dev(&dir).map_err(|e| e.to_string())?;
        let transport = TransportSettings::default();
        let server = tls::server_config(&material, &transport).map_err(|e| e.to_string())?;
        let settings = CoreSettings::default();
        let replay_capacity = settings.replay_capacity as u64;
        let core = Arc::new(Core::new(settings, Authenticator::Dev));
        let limits = ShellLimits {
            max_connections: 10_000,
            max_connections_per_source: 10_000,
            max_frame_bytes: felix_wire::DEFAULT_MAX_FRAME_BYTES,
            drain_timeout: Duration::from_secs(5),
            ..ShellLimits::default()
        };
        let addr = "127.0.0.1:0".parse().map_err(|_| "address")?;
        let broker = RunningBroker::start(addr, server, core, limits)
            .map_err(|e| format!("starting the embedded broker: {e}"))?;
        let target = Target {
            addr: broker.local_addr(),
            server_name: "localhost".into(),
            trust: Trust::CertificateFile(material.cert_path.clone()),
            tenant: "t1".into(),
            token: "dev".into(),
        };
        Ok(Embedded {
            broker,
            target,
            replay_capacity,
            dir,
        })
    }

    /// Drains the broker and removes its scratch directory.
    pub async fn stop(self) {
        self.broker.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
