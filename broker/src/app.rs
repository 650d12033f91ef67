//! Wiring a [`Config`] into a running broker: authentication, declared
//! scopes, TLS, the QUIC endpoint and the metrics endpoint.

use std::sync::Arc;

use crate::config::{AuthMode, Config};
use crate::core::auth::{Authenticator, Jwks, JwtVerifier, TokensFile};
use crate::core::pubsub::StreamKey;
use crate::core::Core;
use crate::quic::{RunningBroker, Shards};
use crate::tls::{self, TransportSettings};

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be used.
    #[error(transparent)]
    DataDir(#[from] crate::data_dir::DataDirError),
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// An auth file.
    #[error("{path}: {message}")]
    AuthFile {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Cluster mode could not start.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// Binding a socket.
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        /// QUIC or metrics.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// A started broker and where to reach it.
#[derive(Debug)]
pub struct Started {
    /// The QUIC endpoint.
    pub broker: RunningBroker,
    /// The PEM file clients should trust.
    pub cert_path: std::path::PathBuf,
    /// The metrics endpoint, if enabled.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

fn authenticator(config: &Config) -> Result<Authenticator, StartError> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| StartError::AuthFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    };
    let bad = |path: &std::path::Path, message: String| StartError::AuthFile {
        path: path.display().to_string(),
        message,
    };
    Ok(
        match (config.auth, &config.tokens_file, &config.jwks_file) {
            (AuthMode::Tokens, Some(path), _) => {
                let file: TokensFile =
                    serde_yaml_ng::from_str(&read(path)?).map_err(|e| bad(path, e.to_string()))?;
                Authenticator::tokens(&file).map_err(|e| bad(path, e.to_string()))?
            }
            (AuthMode::Jwt, _, Some(path)) => {
                let jwks: Jwks =
                    serde_json::from_str(&read(path)?).map_err(|e| bad(path, e.to_string()))?;
                Authenticator::Jwt(JwtVerifier::new(&jwks).map_err(|e| bad(path, e.to_string()))?)
            }
            _ => Authenticator::Dev,
        },
    )
}

/// Builds the core from the configuration.
pub fn build_core(config: &Config) -> Result<Core, StartError> {
    let mut core = Core::new(config.core.clone(), authenticator(config)?);
    for s in &config.streams {
        core.pubsub.declare(StreamKey {
            tenant: s.tenant.clone(),
            namespace: s.namespace.clone(),
            stream: s.name.clone(),
        });
    }
    for c in &config.caches {
        core.declared_caches
            .insert((c.tenant.clone(), c.namespace.clone(), c.name.clone()));
    }
    Ok(core)
}

/// Starts the broker (QUIC and metrics) as configured.
pub async fn start(config: &Config) -> Result<Started, StartError> {
    if config.dev_on_network() {
        // Allowed explicitly (config refuses it otherwise), never silent.
        tracing::warn!(
            bind = %config.bind,
            "dev auth on a network address (--allow-dev-on-network): any client that reaches this port can act as any tenant"
        );
    }
    // The data directory holds the replay rings (single node) and the
    // development certificate (no --cert): checked before anything starts.
    if config.cluster.is_none() || config.cert_and_key.is_none() {
        crate::data_dir::check(&config.data_dir)?;
    }
    let mut core = build_core(config)?;
    core.clustered = config.cluster.is_some();
    let core = Arc::new(core);
    let cluster = match &config.cluster {
        Some(settings) => {
            Some(crate::cluster::Cluster::connect(settings.clone(), core.clone()).await?)
        }
        None => None,
    };
    // In cluster mode JetStream holds every stream's history; a node's
    // rings are only a cache of it, never saved or restored.
    let loaded = match cluster {
        Some(_) => Default::default(),
        None => crate::persist::load(&core, &config.data_dir),
    };
    if loaded.restored + loaded.skipped + loaded.undeclared > 0 {
        tracing::info!(
            streams = loaded.restored,
            skipped = loaded.skipped,
            undeclared = loaded.undeclared,
            dir = %config.data_dir.display(),
            "replay rings restored"
        );
    }
    let material = match &config.cert_and_key {
        Some((cert, key)) => tls::load(cert, key)?,
        None => tls::load_or_create_dev(&config.data_dir)?,
    };
    let transport = TransportSettings {
        max_streams_per_connection: config.max_streams_per_connection,
        keep_alive: config.keep_alive,
        idle_timeout: config.idle_timeout,
        receive_window: config.quic_receive_window,
    };
    let server_config = tls::server_config(&material, &transport)?;
    let broker = RunningBroker::start_sharded(
        config.bind,
        server_config,
        core.clone(),
        config.limits.clone(),
        cluster,
        Shards {
            count: config.shards,
            busy_poll: config.busy_poll,
        },
    )
    .map_err(|source| StartError::Bind {
        what: "QUIC",
        addr: config.bind,
        source,
    })?;
    let metrics_addr = match config.metrics_bind {
        Some(addr) => {
            let (bound, _task) =
                crate::http::serve(addr, core)
                    .await
                    .map_err(|source| StartError::Bind {
                        what: "metrics",
                        addr,
                        source,
                    })?;
            Some(bound)
        }
        None => None,
    };
    Ok(Started {
        broker,
        cert_path: material.cert_path,
        metrics_addr,
    })
}
