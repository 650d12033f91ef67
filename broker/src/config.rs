//! Broker configuration: command-line flags, `FELIX_*` environment
//! variables and an optional YAML file, in that order of precedence, over
//! built-in defaults that need nothing (`felix-broker` alone serves
//! 127.0.0.1:5000 with dev auth and a self-signed certificate).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::core::settings::{CoreSettings, QueuePolicy};

/// How `auth` frames are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Any token; the tenant is taken from the auth frame; streams and
    /// caches are created on first use.
    Dev,
    /// Static tokens from `tokens_file`, each bound to a tenant and permissions.
    Tokens,
    /// EdDSA JWTs (issuer felix-auth, audience felix-broker) checked
    /// against the keys in `jwks_file`.
    Jwt,
}

/// The reference felix-wire broker: pub/sub fanout and a TTL cache over QUIC.
///
/// Every option can also be set by a `FELIX_*` environment variable (shown
/// below) or in the YAML file given by --config (same names, snake_case).
/// Flags win over the environment, which wins over the file.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "felix-broker", version, about, long_about)]
pub struct Cli {
    /// YAML configuration file (see docs/operations.md for every key).
    #[arg(long, env = "FELIX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// UDP address to serve QUIC on [default: 127.0.0.1:5000].
    #[arg(long, env = "FELIX_BIND")]
    pub bind: Option<SocketAddr>,
    /// Directory for the self-signed development certificate [default: .felix].
    #[arg(long, env = "FELIX_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain (with --key); default: a self-signed localhost
    /// certificate in the data directory, created on first start.
    #[arg(long, env = "FELIX_CERT", value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, env = "FELIX_KEY", value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// TCP address for /metrics and /healthz; "off" disables [default: 127.0.0.1:9464].
    #[arg(long, env = "FELIX_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    /// Authentication mode [default: dev].
    #[arg(long, env = "FELIX_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// Tokens file for --auth tokens (YAML: tokens: [{token, tenant, permissions}]).
    #[arg(long, env = "FELIX_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,
    /// JWKS file for --auth jwt.
    #[arg(long, env = "FELIX_JWKS_FILE", value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Largest frame payload accepted, bytes [default: 16777216].
    #[arg(long, env = "FELIX_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<u32>,
    /// Open connections [default: 10000].
    #[arg(long, env = "FELIX_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Concurrent streams per connection, each direction [default: 1024].
    #[arg(long, env = "FELIX_MAX_STREAMS_PER_CONNECTION")]
    pub max_streams_per_connection: Option<u32>,
    /// Subscriptions per connection [default: 1024].
    #[arg(long, env = "FELIX_MAX_SUBSCRIPTIONS_PER_CONNECTION")]
    pub max_subscriptions_per_connection: Option<usize>,
    /// Publish bytes accepted but not yet fanned out, broker-wide [default: 268435456].
    #[arg(long, env = "FELIX_MAX_INFLIGHT_PUBLISH_BYTES")]
    pub max_inflight_publish_bytes: Option<usize>,
    /// Events kept per stream for replay [default: 1024].
    #[arg(long, env = "FELIX_REPLAY_CAPACITY")]
    pub replay_capacity: Option<usize>,
    /// Most events per coalesced batch [default: 64].
    #[arg(long, env = "FELIX_BATCH_MAX_EVENTS")]
    pub batch_max_events: Option<usize>,
    /// Most payload bytes per coalesced batch [default: 65536].
    #[arg(long, env = "FELIX_BATCH_MAX_BYTES")]
    pub batch_max_bytes: Option<usize>,
    /// Longest a single event waits for company, microseconds; 0 sends at once [default: 250].
    #[arg(long, env = "FELIX_BATCH_LINGER_US")]
    pub batch_linger_us: Option<u64>,
    /// Batches a subscriber queue holds [default: 512].
    #[arg(long, env = "FELIX_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// What a full subscriber queue does [default: drop-new].
    #[arg(long, env = "FELIX_QUEUE_POLICY", value_enum)]
    pub queue_policy: Option<QueuePolicy>,
    /// Cache memory bound, bytes, counting keys, values and each entry's bookkeeping [default: 268435456].
    #[arg(long, env = "FELIX_CACHE_CAPACITY_BYTES")]
    pub cache_capacity_bytes: Option<usize>,
    /// Cache bytes one tenant may hold, counted likewise; a tenant over it
    /// evicts its own oldest entries, never another tenant's. A quarter
    /// lets four tenants fill their quota without touching each other while
    /// one alone still gets a useful share [default: a quarter of the cache capacity, 67108864].
    #[arg(long, env = "FELIX_CACHE_TENANT_CAPACITY_BYTES")]
    pub cache_tenant_capacity_bytes: Option<usize>,
    /// QUIC keep-alive interval, milliseconds [default: 5000].
    #[arg(long, env = "FELIX_KEEP_ALIVE_MS")]
    pub keep_alive_ms: Option<u64>,
    /// QUIC idle timeout, milliseconds [default: 30000].
    #[arg(long, env = "FELIX_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Log filter (tracing EnvFilter syntax) [default: info].
    #[arg(long, env = "FELIX_LOG")]
    pub log: Option<String>,
    /// Runtime worker threads [default: one per core].
    #[arg(long, env = "FELIX_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Keep every worker thread polling instead of sleeping when idle: a
    /// request then never waits for a sleeping thread to be woken (45-60 us
    /// on a 2-core VM), at the cost of every worker's core busy all the
    /// time. For dedicated cores and latency-bound work [default: false].
    #[arg(
        long,
        env = "FELIX_BUSY_POLL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub busy_poll: Option<bool>,
}

/// A declared stream or cache.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Tenant id.
    pub tenant: String,
    /// Namespace.
    pub namespace: String,
    /// Stream or cache name.
    pub name: String,
}

/// The YAML file: every flag's snake_case name, plus declared scopes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    bind: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    metrics_bind: Option<String>,
    auth: Option<AuthMode>,
    tokens_file: Option<PathBuf>,
    jwks_file: Option<PathBuf>,
    max_frame_bytes: Option<u32>,
    max_connections: Option<usize>,
    max_streams_per_connection: Option<u32>,
    max_subscriptions_per_connection: Option<usize>,
    max_inflight_publish_bytes: Option<usize>,
    replay_capacity: Option<usize>,
    batch_max_events: Option<usize>,
    batch_max_bytes: Option<usize>,
    batch_linger_us: Option<u64>,
    queue_capacity: Option<usize>,
    queue_policy: Option<QueuePolicy>,
    cache_capacity_bytes: Option<usize>,
    cache_tenant_capacity_bytes: Option<usize>,
    keep_alive_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    log: Option<String>,
    worker_threads: Option<usize>,
    busy_poll: Option<bool>,
    /// Streams that exist from start (required outside dev mode).
    #[serde(default)]
    streams: Vec<Scope>,
    /// Caches that exist from start (required outside dev mode).
    #[serde(default)]
    caches: Vec<Scope>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// QUIC address.
    pub bind: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Operator certificate and key, if given.
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
    /// Metrics address, if enabled.
    pub metrics_bind: Option<SocketAddr>,
    /// Auth mode.
    pub auth: AuthMode,
    /// Tokens file.
    pub tokens_file: Option<PathBuf>,
    /// JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// Frame payload cap.
    pub max_frame_bytes: u32,
    /// Connection limit.
    pub max_connections: usize,
    /// Streams per connection.
    pub max_streams_per_connection: u32,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Core settings.
    pub core: CoreSettings,
    /// Declared streams.
    pub streams: Vec<Scope>,
    /// Declared caches.
    pub caches: Vec<Scope>,
    /// Log filter.
    pub log: String,
    /// Runtime worker threads (`None`: one per core).
    pub worker_threads: Option<usize>,
    /// Whether idle workers keep polling instead of sleeping.
    pub busy_poll: bool,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid configuration YAML.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said (with line and column).
        message: String,
    },
    /// A value is invalid or values contradict each other.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Resolves flags and environment (`cli`) over the file over defaults.
    pub fn resolve(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        macro_rules! pick {
            ($name:ident, $default:expr) => {
                cli.$name.clone().or(file.$name.clone()).unwrap_or($default)
            };
        }
        let auth = pick!(auth, AuthMode::Dev);
        let metrics_bind = match pick!(metrics_bind, "127.0.0.1:9464".to_string()).as_str() {
            "off" | "" => None,
            text => Some(text.parse().map_err(|_| {
                ConfigError::Invalid(format!("metrics_bind {text:?} is not host:port or \"off\""))
            })?),
        };
        let cert_and_key = match (
            cli.cert.clone().or(file.cert.clone()),
            cli.key.clone().or(file.key.clone()),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "cert and key must be given together".into(),
                ))
            }
        };
        let defaults = CoreSettings::default();
        let cache_capacity_bytes = pick!(cache_capacity_bytes, defaults.cache_capacity_bytes);
        let core = CoreSettings {
            server_flags: defaults.server_flags,
            replay_capacity: pick!(replay_capacity, defaults.replay_capacity),
            batch_max_events: pick!(batch_max_events, defaults.batch_max_events).max(1),
            batch_max_bytes: pick!(batch_max_bytes, defaults.batch_max_bytes).max(1),
            batch_linger: Duration::from_micros(pick!(
                batch_linger_us,
                defaults.batch_linger.as_micros() as u64
            )),
            queue_capacity: pick!(queue_capacity, defaults.queue_capacity).max(1),
            queue_policy: pick!(queue_policy, defaults.queue_policy),
            cache_capacity_bytes,
            cache_tenant_capacity_bytes: pick!(
                cache_tenant_capacity_bytes,
                cache_capacity_bytes / 4
            ),
            max_subscriptions_per_connection: pick!(
                max_subscriptions_per_connection,
                defaults.max_subscriptions_per_connection
            ),
            max_inflight_publish_bytes: pick!(
                max_inflight_publish_bytes,
                defaults.max_inflight_publish_bytes
            ),
            auto_create: auth == AuthMode::Dev,
        };
        let config = Config {
            bind: pick!(bind, SocketAddr::from(([127, 0, 0, 1], 5000))),
            data_dir: pick!(data_dir, PathBuf::from(".felix")),
            cert_and_key,
            metrics_bind,
            auth,
            tokens_file: cli.tokens_file.clone().or(file.tokens_file.clone()),
            jwks_file: cli.jwks_file.clone().or(file.jwks_file.clone()),
            max_frame_bytes: pick!(max_frame_bytes, felix_wire::DEFAULT_MAX_FRAME_BYTES),
            max_connections: pick!(max_connections, 10_000),
            max_streams_per_connection: pick!(max_streams_per_connection, 1024),
            keep_alive: Duration::from_millis(pick!(keep_alive_ms, 5_000)),
            idle_timeout: Duration::from_millis(pick!(idle_timeout_ms, 30_000)),
            core,
            streams: file.streams.clone(),
            caches: file.caches.clone(),
            log: pick!(log, "info".to_string()),
            worker_threads: cli.worker_threads.or(file.worker_threads),
            busy_poll: pick!(busy_poll, false),
        };
        match config.auth {
            AuthMode::Tokens if config.tokens_file.is_none() => Err(ConfigError::Invalid(
                "--auth tokens needs --tokens-file".into(),
            )),
            AuthMode::Jwt if config.jwks_file.is_none() => {
                Err(ConfigError::Invalid("--auth jwt needs --jwks-file".into()))
            }
            _ if config.keep_alive >= config.idle_timeout => Err(ConfigError::Invalid(
                "keep_alive_ms must be below idle_timeout_ms".into(),
            )),
            _ if config.worker_threads == Some(0) => Err(ConfigError::Invalid(
                "worker_threads must be at least 1".into(),
            )),
            _ => Ok(config),
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_gives_the_documented_defaults() {
        let c =
            Config::resolve(Cli::try_parse_from(["felix-broker"]).expect("parses")).expect("valid");
        assert_eq!(c.bind, "127.0.0.1:5000".parse().expect("addr"));
        assert_eq!(c.auth, AuthMode::Dev);
        assert!(c.core.auto_create);
        assert_eq!(c.core.replay_capacity, 1024);
        assert_eq!(
            (c.core.batch_max_events, c.core.batch_max_bytes),
            (64, 65536)
        );
        assert_eq!(c.core.batch_linger, Duration::from_micros(250));
        assert_eq!(c.max_frame_bytes, 16 * 1024 * 1024);
        assert_eq!(
            (
                c.core.cache_capacity_bytes,
                c.core.cache_tenant_capacity_bytes
            ),
            (256 << 20, 64 << 20)
        );
        assert_eq!(
            c.core.cache_tenant_capacity_bytes,
            CoreSettings::default().cache_tenant_capacity_bytes
        );
    }

    #[test]
    fn the_tenant_quota_follows_the_capacity_unless_set() {
        let dir = std::env::temp_dir().join(format!("felix-quota-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("broker.yaml");
        std::fs::write(&path, "cache_tenant_capacity_bytes: 300\n").expect("write");
        let resolve = |args: &[&str]| {
            let args = std::iter::once("felix-broker").chain(args.iter().copied());
            Config::resolve(Cli::try_parse_from(args).expect("parses")).expect("valid")
        };
        let c = resolve(&["--cache-capacity-bytes", "1000"]);
        assert_eq!(c.core.cache_tenant_capacity_bytes, 250);
        let c = resolve(&["--cache-tenant-capacity-bytes", "10"]);
        assert_eq!(c.core.cache_tenant_capacity_bytes, 10);
        let c = resolve(&["--config", path.to_str().expect("utf8")]);
        assert_eq!(c.core.cache_tenant_capacity_bytes, 300);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("felix-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("broker.yaml");
        std::fs::write(&path, "replay_capacity: 10\nqueue_policy: drop_old\nstreams:\n  - {tenant: t1, namespace: default, name: orders}\n").expect("write");
        let cli = Cli::try_parse_from([
            "felix-broker",
            "--config",
            path.to_str().expect("utf8"),
            "--replay-capacity",
            "20",
        ])
        .expect("parses");
        let c = Config::resolve(cli).expect("valid");
        assert_eq!(c.core.replay_capacity, 20);
        assert_eq!(c.core.queue_policy, QueuePolicy::DropOld);
        assert_eq!(c.streams.len(), 1);
        std::fs::write(&path, "replay_capacty: 10\n").expect("write");
        let err = Config::resolve(
            Cli::try_parse_from(["felix-broker", "--config", path.to_str().expect("utf8")])
                .expect("parses"),
        )
        .expect_err("typo");
        assert!(
            err.to_string().contains("unknown field `replay_capacty`"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn runtime_settings() {
        let resolve = |args: &[&str]| {
            Config::resolve(
                Cli::try_parse_from(std::iter::once("felix-broker").chain(args.iter().copied()))
                    .expect("parses"),
            )
        };
        let c = resolve(&[]).expect("valid");
        assert_eq!((c.worker_threads, c.busy_poll), (None, false));
        let c = resolve(&["--worker-threads", "1", "--busy-poll"]).expect("valid");
        assert_eq!((c.worker_threads, c.busy_poll), (Some(1), true));
        let c = resolve(&["--busy-poll", "false"]).expect("valid");
        assert!(!c.busy_poll);
        let err = resolve(&["--worker-threads", "0"]).expect_err("invalid");
        assert!(err.to_string().contains("worker_threads"), "{err}");
    }

    #[test]
    fn token_mode_needs_its_file() {
        let err = Config::resolve(
            Cli::try_parse_from(["felix-broker", "--auth", "tokens"]).expect("parses"),
        )
        .expect_err("invalid");
        assert!(err.to_string().contains("--tokens-file"));
    }
}
