//! The reference broker started in-process on an ephemeral loopback port
//! ([`felix_broker::embedded`]), for the default run (no subcommand).

use felix_broker::embedded::{EmbeddedBroker, EmbeddedConfig};

use crate::peer::{Target, Trust};

/// A running embedded broker and how the live suite reaches it.
pub struct Embedded {
    /// The broker.
    pub broker: EmbeddedBroker,
    /// How to reach it.
    pub target: Target,
    /// Its replay ring size.
    pub replay_capacity: u64,
}

impl Embedded {
    /// Starts the reference broker with dev auth on 127.0.0.1:0.
    pub async fn start() -> Result<Embedded, String> {
        let config = EmbeddedConfig::default();
        let replay_capacity = config.core.replay_capacity as u64;
        let broker = config
            .start()
            .map_err(|e| format!("starting the embedded broker: {e}"))?;
        let target = Target {
            addr: broker.local_addr(),
            server_name: "localhost".into(),
            trust: Trust::CertificateFile(broker.cert_path().to_path_buf()),
            tenant: "t1".into(),
            token: "dev".into(),
        };
        Ok(Embedded {
            broker,
            target,
            replay_capacity,
        })
    }

    /// Drains the broker and removes its scratch directory.
    pub async fn stop(self) {
        self.broker.shutdown().await;
    }
}
