//! Broker configuration: command-line flags, `FELIX_BROKER_*` environment
//! variables (see [`crate::env`]) and an optional YAML file, in that order
//! of precedence, over built-in defaults that need nothing (`felix-broker`
//! alone serves 127.0.0.1:5000 with dev auth and a self-signed
//! certificate).
//!
//! Every enum-valued setting is spelled one way everywhere: the YAML
//! value, the flag's value and the variable's value are the same
//! snake_case word (`drop_old`), so a value copied from one place works in
//! the others.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::cluster::ClusterSettings;
use crate::core::settings::{CoreSettings, QueuePolicy};
use crate::quic::ShellLimits;
use crate::tls::TransportSettings;

/// How `auth` frames are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
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

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum LogFormat {
    /// One human-readable line per event (coloured only on a terminal).
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`), for log
    /// shippers.
    Json,
}

/// The reference felix-wire broker: pub/sub fanout and a TTL cache over QUIC.
///
/// Every option can also be set by a `FELIX_BROKER_*` environment variable
/// (shown below) or in the YAML file given by --config (same names,
/// snake_case; docs/felix-broker.example.yaml lists every key). Flags win
/// over the environment, which wins over the file.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "felix-broker", version, about, long_about)]
pub struct Cli {
    /// YAML configuration file (see docs/operations.md for every key).
    #[arg(long, env = "FELIX_BROKER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// UDP address to serve QUIC on [default: 127.0.0.1:5000].
    #[arg(long, env = "FELIX_BROKER_BIND")]
    pub bind: Option<SocketAddr>,
    /// Directory for the development certificate (tls/) and the replay
    /// rings saved on drain (rings/); created 0700 if missing and checked
    /// at start [default: .felix].
    #[arg(long, env = "FELIX_BROKER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain (with --key); default: a self-signed localhost
    /// certificate in the data directory, created on first start.
    #[arg(long, env = "FELIX_BROKER_CERT", value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, env = "FELIX_BROKER_KEY", value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// TCP address for /metrics and /healthz; "off" disables [default: 127.0.0.1:9464].
    #[arg(long, env = "FELIX_BROKER_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    /// Authentication mode [default: dev].
    #[arg(long, env = "FELIX_BROKER_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// Tokens file for --auth tokens (YAML: tokens: [{token, tenant, permissions}]).
    #[arg(long, env = "FELIX_BROKER_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,
    /// JWKS file for --auth jwt.
    #[arg(long, env = "FELIX_BROKER_JWKS_FILE", value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Largest frame payload accepted, bytes [default: 16777216].
    #[arg(long, env = "FELIX_BROKER_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<u32>,
    /// Open connections [default: 10000].
    #[arg(long, env = "FELIX_BROKER_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Open connections from one source IP address [default: 64].
    #[arg(long, env = "FELIX_BROKER_MAX_CONNECTIONS_PER_SOURCE")]
    pub max_connections_per_source: Option<usize>,
    /// Largest first frame of a stream (before it authenticated), bytes [default: 65536].
    #[arg(long, env = "FELIX_BROKER_MAX_AUTH_FRAME_BYTES")]
    pub max_auth_frame_bytes: Option<u32>,
    /// Close a connection (or stream) that has not authenticated after this
    /// long, milliseconds [default: 10000].
    #[arg(long, env = "FELIX_BROKER_AUTH_TIMEOUT_MS")]
    pub auth_timeout_ms: Option<u64>,
    /// End a stream whose frame has not arrived whole this long after its
    /// first byte, milliseconds [default: 30000].
    #[arg(long, env = "FELIX_BROKER_FRAME_TIMEOUT_MS")]
    pub frame_timeout_ms: Option<u64>,
    /// Bytes of partly received frames one connection may hold (at least
    /// one frame at --max-frame-bytes); a frame past it is refused and its
    /// stream ended [default: 33554432].
    #[arg(long, env = "FELIX_BROKER_RECEIVE_BUDGET_PER_CONNECTION_BYTES")]
    pub receive_budget_per_connection_bytes: Option<usize>,
    /// Bytes of partly received frames all connections may hold; a frame
    /// past it waits for others to complete [default: 67108864].
    #[arg(long, env = "FELIX_BROKER_RECEIVE_BUDGET_BYTES")]
    pub receive_budget_bytes: Option<usize>,
    /// Concurrent streams per connection, each direction [default: 1024].
    #[arg(long, env = "FELIX_BROKER_MAX_STREAMS_PER_CONNECTION")]
    pub max_streams_per_connection: Option<u32>,
    /// Subscriptions per connection [default: 1024].
    #[arg(long, env = "FELIX_BROKER_MAX_SUBSCRIPTIONS_PER_CONNECTION")]
    pub max_subscriptions_per_connection: Option<usize>,
    /// Publish bytes accepted but not yet fanned out, broker-wide [default: 67108864].
    #[arg(long, env = "FELIX_BROKER_MAX_INFLIGHT_PUBLISH_BYTES")]
    pub max_inflight_publish_bytes: Option<usize>,
    /// Events kept per stream for replay [default: 1024].
    #[arg(long, env = "FELIX_BROKER_REPLAY_CAPACITY")]
    pub replay_capacity: Option<usize>,
    /// Payload bytes kept per stream for replay [default: 8388608].
    #[arg(long, env = "FELIX_BROKER_REPLAY_CAPACITY_BYTES")]
    pub replay_capacity_bytes: Option<usize>,
    /// Payload bytes kept for replay by all streams together; a stream
    /// publishing past it forgets its own oldest events [default: 67108864].
    #[arg(long, env = "FELIX_BROKER_REPLAY_BUDGET_BYTES")]
    pub replay_budget_bytes: Option<usize>,
    /// Bytes of encoded event batches waiting in subscriber queues,
    /// broker-wide (a batch shared by many queues counts once); past it,
    /// only subscribers that are keeping up (fewer than 2 batches queued)
    /// get new batches [default: 67108864].
    #[arg(long, env = "FELIX_BROKER_QUEUE_BUDGET_BYTES")]
    pub queue_budget_bytes: Option<usize>,
    /// Streams one tenant may create by using them (dev auth) [default: 256].
    #[arg(long, env = "FELIX_BROKER_MAX_AUTO_STREAMS_PER_TENANT")]
    pub max_auto_streams_per_tenant: Option<usize>,
    /// Streams all tenants together may create by using them (dev auth) [default: 1024].
    #[arg(long, env = "FELIX_BROKER_MAX_AUTO_STREAMS")]
    pub max_auto_streams: Option<usize>,
    /// Longest tenant, namespace, stream, cache or key name in a request, bytes [default: 1024].
    #[arg(long, env = "FELIX_BROKER_MAX_NAME_BYTES")]
    pub max_name_bytes: Option<usize>,
    /// Most events per coalesced batch [default: 64].
    #[arg(long, env = "FELIX_BROKER_BATCH_MAX_EVENTS")]
    pub batch_max_events: Option<usize>,
    /// Most payload bytes per coalesced batch [default: 65536].
    #[arg(long, env = "FELIX_BROKER_BATCH_MAX_BYTES")]
    pub batch_max_bytes: Option<usize>,
    /// Longest a single event waits for company, microseconds; 0 sends at once [default: 250].
    #[arg(long, env = "FELIX_BROKER_BATCH_LINGER_US")]
    pub batch_linger_us: Option<u64>,
    /// Batches a subscriber queue holds [default: 512].
    #[arg(long, env = "FELIX_BROKER_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// What a full subscriber queue does [default: block].
    #[arg(long, env = "FELIX_BROKER_QUEUE_POLICY", value_enum)]
    pub queue_policy: Option<QueuePolicy>,
    /// Under `block`, longest a publisher waits for one subscriber's
    /// queue, milliseconds; then that subscriber's queue drops new batches
    /// (counted) until it has caught up [default: 500].
    #[arg(long, env = "FELIX_BROKER_QUEUE_BLOCK_TIMEOUT_MS")]
    pub queue_block_timeout_ms: Option<u64>,
    /// Cache memory bound, bytes, counting keys, values and each entry's bookkeeping [default: 67108864].
    #[arg(long, env = "FELIX_BROKER_CACHE_CAPACITY_BYTES")]
    pub cache_capacity_bytes: Option<usize>,
    /// Cache bytes one tenant may hold, counted likewise; a tenant over it
    /// evicts its own oldest entries, never another tenant's. A quarter
    /// lets four tenants fill their quota without touching each other while
    /// one alone still gets a useful share [default: a quarter of the cache capacity, 16777216].
    #[arg(long, env = "FELIX_BROKER_CACHE_TENANT_CAPACITY_BYTES")]
    pub cache_tenant_capacity_bytes: Option<usize>,
    /// QUIC connection receive window: bytes a peer may send ahead of what
    /// the broker has read, per connection [default: 2097152].
    #[arg(long, env = "FELIX_BROKER_QUIC_RECEIVE_WINDOW_BYTES")]
    pub quic_receive_window_bytes: Option<u32>,
    /// QUIC keep-alive interval, milliseconds [default: 5000].
    #[arg(long, env = "FELIX_BROKER_KEEP_ALIVE_MS")]
    pub keep_alive_ms: Option<u64>,
    /// QUIC idle timeout, milliseconds [default: 30000].
    #[arg(long, env = "FELIX_BROKER_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Log filter (tracing EnvFilter syntax) [default: info].
    #[arg(long, env = "FELIX_BROKER_LOG")]
    pub log: Option<String>,
    /// Log line format on standard error [default: text].
    #[arg(long, env = "FELIX_BROKER_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Runtime worker threads: with shards they only run timers, metrics
    /// and cluster I/O [default: 1 with shards, else one per core].
    #[arg(long, env = "FELIX_BROKER_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// QUIC endpoints on threads of their own, sharing the port
    /// (SO_REUSEPORT): each connection stays on one thread, so a request
    /// never waits for another thread to wake. 0 serves every connection on
    /// the worker threads (needed if clients' addresses change mid-
    /// connection, e.g. NAT rebinding: another shard would not know them)
    /// [default: one per core].
    #[arg(long, env = "FELIX_BROKER_SHARDS")]
    pub shards: Option<usize>,
    /// Keep every worker thread polling instead of sleeping when idle: a
    /// request then never waits for a sleeping thread to be woken (45-60 us
    /// on a 2-core VM), at the cost of every worker's core busy all the
    /// time. For dedicated cores and latency-bound work [default: false].
    #[arg(
        long,
        env = "FELIX_BROKER_BUSY_POLL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub busy_poll: Option<bool>,
    /// Start with dev auth on an address other than loopback. Dev auth
    /// accepts any token for any tenant, so this opens every tenant to
    /// whoever reaches the port; without it such a start is refused
    /// [default: false].
    #[arg(
        long,
        env = "FELIX_BROKER_ALLOW_DEV_ON_NETWORK",
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub allow_dev_on_network: Option<bool>,
    /// Cluster mode: serve as one with every broker on these NATS
    /// JetStream servers (comma-separated nats://HOST:PORT URLs). Streams,
    /// offsets and the cache then live on JetStream (docs/cluster.md)
    /// [default: off, a single node].
    #[arg(long, env = "FELIX_BROKER_CLUSTER", value_name = "URLS")]
    pub cluster: Option<String>,
    /// Cluster mode: JetStream replicas of each stream and of the cache
    /// bucket, 1 to 5 (3 survives the loss of a NATS node) [default: 1].
    #[arg(long, env = "FELIX_BROKER_CLUSTER_REPLICAS")]
    pub cluster_replicas: Option<usize>,
    /// Cluster mode: prefix of every JetStream stream, subject and bucket
    /// the brokers make (ASCII letters, digits, - and _) [default: felix].
    #[arg(long, env = "FELIX_BROKER_CLUSTER_PREFIX")]
    pub cluster_prefix: Option<String>,
    /// Cluster mode: longest a NATS request (publish ack, cache read or
    /// write) may take before the client gets "cluster unavailable",
    /// milliseconds [default: 2000].
    #[arg(long, env = "FELIX_BROKER_CLUSTER_TIMEOUT_MS")]
    pub cluster_timeout_ms: Option<u64>,
    /// Cluster mode: messages the NATS client buffers per stream feed and
    /// history read [default: 1024].
    #[arg(long, env = "FELIX_BROKER_CLUSTER_FEED_CAPACITY")]
    pub cluster_feed_capacity: Option<usize>,
    /// Cluster mode: bytes each JetStream stream keeps, oldest dropped
    /// first (replay history, on NATS's disk) [default: 268435456].
    #[arg(long, env = "FELIX_BROKER_CLUSTER_STREAM_MAX_BYTES")]
    pub cluster_stream_max_bytes: Option<i64>,
    /// Cluster mode: bytes the cache bucket keeps on NATS; puts past it
    /// are refused [default: 268435456].
    #[arg(long, env = "FELIX_BROKER_CLUSTER_CACHE_MAX_BYTES")]
    pub cluster_cache_max_bytes: Option<i64>,
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
    max_connections_per_source: Option<usize>,
    max_auth_frame_bytes: Option<u32>,
    auth_timeout_ms: Option<u64>,
    frame_timeout_ms: Option<u64>,
    receive_budget_per_connection_bytes: Option<usize>,
    receive_budget_bytes: Option<usize>,
    max_streams_per_connection: Option<u32>,
    max_subscriptions_per_connection: Option<usize>,
    max_inflight_publish_bytes: Option<usize>,
    replay_capacity: Option<usize>,
    replay_capacity_bytes: Option<usize>,
    replay_budget_bytes: Option<usize>,
    queue_budget_bytes: Option<usize>,
    max_auto_streams_per_tenant: Option<usize>,
    max_auto_streams: Option<usize>,
    max_name_bytes: Option<usize>,
    batch_max_events: Option<usize>,
    batch_max_bytes: Option<usize>,
    batch_linger_us: Option<u64>,
    queue_capacity: Option<usize>,
    queue_policy: Option<QueuePolicy>,
    queue_block_timeout_ms: Option<u64>,
    cache_capacity_bytes: Option<usize>,
    quic_receive_window_bytes: Option<u32>,
    cache_tenant_capacity_bytes: Option<usize>,
    keep_alive_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    log: Option<String>,
    log_format: Option<LogFormat>,
    worker_threads: Option<usize>,
    shards: Option<usize>,
    busy_poll: Option<bool>,
    allow_dev_on_network: Option<bool>,
    cluster: Option<String>,
    cluster_replicas: Option<usize>,
    cluster_prefix: Option<String>,
    cluster_timeout_ms: Option<u64>,
    cluster_feed_capacity: Option<usize>,
    cluster_stream_max_bytes: Option<i64>,
    cluster_cache_max_bytes: Option<i64>,
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
    /// Connection, frame, timeout and receive-budget limits of the QUIC shell.
    pub limits: ShellLimits,
    /// Streams per connection.
    pub max_streams_per_connection: u32,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// QUIC connection receive window, bytes.
    pub quic_receive_window: u32,
    /// Core settings.
    pub core: CoreSettings,
    /// Declared streams.
    pub streams: Vec<Scope>,
    /// Declared caches.
    pub caches: Vec<Scope>,
    /// Log filter.
    pub log: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Runtime worker threads (`None`: one per core).
    pub worker_threads: Option<usize>,
    /// Shard threads with their own QUIC endpoint (0: none).
    pub shards: usize,
    /// Whether idle workers keep polling instead of sleeping.
    pub busy_poll: bool,
    /// Whether dev auth may serve a non-loopback `bind`.
    pub allow_dev_on_network: bool,
    /// Cluster mode, if `cluster` is set.
    pub cluster: Option<ClusterSettings>,
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
    /// Dev auth on a non-loopback address without `allow_dev_on_network`.
    #[error(
        "auth dev on {bind}, which is not a loopback address: dev auth accepts any token for any tenant; bind to 127.0.0.1, use --auth tokens|jwt, or pass --allow-dev-on-network"
    )]
    DevOnNetwork {
        /// The QUIC address asked for.
        bind: SocketAddr,
    },
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
        // SO_REUSEPORT shards are a Unix feature.
        let shards = if cfg!(unix) {
            pick!(
                shards,
                std::thread::available_parallelism().map_or(1, |n| n.get())
            )
        } else {
            0
        };
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
        let shell = ShellLimits::default();
        let limits = ShellLimits {
            max_connections: pick!(max_connections, shell.max_connections),
            max_connections_per_source: pick!(
                max_connections_per_source,
                shell.max_connections_per_source
            )
            .max(1),
            max_frame_bytes: pick!(max_frame_bytes, shell.max_frame_bytes),
            max_auth_frame_bytes: pick!(max_auth_frame_bytes, shell.max_auth_frame_bytes),
            auth_timeout: Duration::from_millis(pick!(
                auth_timeout_ms,
                shell.auth_timeout.as_millis() as u64
            )),
            frame_timeout: Duration::from_millis(pick!(
                frame_timeout_ms,
                shell.frame_timeout.as_millis() as u64
            )),
            receive_budget_per_connection: pick!(
                receive_budget_per_connection_bytes,
                shell.receive_budget_per_connection
            ),
            receive_budget: pick!(receive_budget_bytes, shell.receive_budget),
            drain_timeout: shell.drain_timeout,
        };
        let defaults = CoreSettings::default();
        let cache_capacity_bytes = pick!(cache_capacity_bytes, defaults.cache_capacity_bytes);
        let batch_max_events = pick!(batch_max_events, defaults.batch_max_events).max(1);
        let core = CoreSettings {
            server_flags: defaults.server_flags,
            max_frame_bytes: limits.max_frame_bytes,
            replay_capacity: pick!(replay_capacity, defaults.replay_capacity),
            replay_capacity_bytes: pick!(replay_capacity_bytes, defaults.replay_capacity_bytes),
            replay_budget_bytes: pick!(replay_budget_bytes, defaults.replay_budget_bytes),
            queue_budget_bytes: pick!(queue_budget_bytes, defaults.queue_budget_bytes),
            max_auto_streams_per_tenant: pick!(
                max_auto_streams_per_tenant,
                defaults.max_auto_streams_per_tenant
            ),
            max_auto_streams: pick!(max_auto_streams, defaults.max_auto_streams),
            max_name_bytes: pick!(max_name_bytes, defaults.max_name_bytes),
            batch_max_events,
            // A batch must fit the frame cap with its framing: 20 bytes
            // (subscription id, offset, count) and 4 per event.
            batch_max_bytes: pick!(batch_max_bytes, defaults.batch_max_bytes)
                .min((limits.max_frame_bytes as usize).saturating_sub(20 + 4 * batch_max_events))
                .max(1),
            batch_linger: Duration::from_micros(pick!(
                batch_linger_us,
                defaults.batch_linger.as_micros() as u64
            )),
            queue_capacity: pick!(queue_capacity, defaults.queue_capacity).max(1),
            queue_policy: pick!(queue_policy, defaults.queue_policy),
            queue_block_timeout: Duration::from_millis(pick!(
                queue_block_timeout_ms,
                defaults.queue_block_timeout.as_millis() as u64
            )),
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
        let cluster_defaults = ClusterSettings::default();
        let cluster = match cli.cluster.clone().or(file.cluster.clone()) {
            None => None,
            Some(urls) => {
                let urls: Vec<String> = urls
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(String::from)
                    .collect();
                if urls.is_empty() {
                    return Err(ConfigError::Invalid(
                        "cluster needs at least one nats://HOST:PORT URL".into(),
                    ));
                }
                Some(ClusterSettings {
                    urls,
                    replicas: pick!(cluster_replicas, cluster_defaults.replicas),
                    prefix: pick!(cluster_prefix, cluster_defaults.prefix.clone()),
                    timeout: Duration::from_millis(pick!(
                        cluster_timeout_ms,
                        cluster_defaults.timeout.as_millis() as u64
                    )),
                    feed_capacity: pick!(cluster_feed_capacity, cluster_defaults.feed_capacity)
                        .max(1),
                    stream_max_bytes: pick!(
                        cluster_stream_max_bytes,
                        cluster_defaults.stream_max_bytes
                    ),
                    cache_max_bytes: pick!(
                        cluster_cache_max_bytes,
                        cluster_defaults.cache_max_bytes
                    ),
                })
            }
        };
        let config = Config {
            bind: pick!(bind, SocketAddr::from(([127, 0, 0, 1], 5000))),
            data_dir: pick!(data_dir, PathBuf::from(".felix")),
            cert_and_key,
            metrics_bind,
            auth,
            tokens_file: cli.tokens_file.clone().or(file.tokens_file.clone()),
            jwks_file: cli.jwks_file.clone().or(file.jwks_file.clone()),
            limits,
            max_streams_per_connection: pick!(max_streams_per_connection, 1024),
            keep_alive: Duration::from_millis(pick!(keep_alive_ms, 5_000)),
            idle_timeout: Duration::from_millis(pick!(idle_timeout_ms, 30_000)),
            quic_receive_window: pick!(
                quic_receive_window_bytes,
                TransportSettings::default().receive_window
            ),
            core,
            streams: file.streams.clone(),
            caches: file.caches.clone(),
            log: pick!(log, "info".to_string()),
            log_format: pick!(log_format, LogFormat::Text),
            worker_threads: cli
                .worker_threads
                .or(file.worker_threads)
                .or((shards > 0).then_some(1)),
            shards,
            busy_poll: pick!(busy_poll, false),
            allow_dev_on_network: pick!(allow_dev_on_network, false),
            cluster,
        };
        match config.auth {
            AuthMode::Dev if config.dev_on_network() && !config.allow_dev_on_network => {
                Err(ConfigError::DevOnNetwork { bind: config.bind })
            }
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
            _ => match tracing_subscriber::EnvFilter::try_new(&config.log) {
                // A typo in the filter used to fall back to `info` silently.
                Err(e) => Err(ConfigError::Invalid(format!(
                    "log filter {:?} is invalid: {e} (example: info,felix_broker=debug)",
                    config.log
                ))),
                Ok(_) => Ok(config),
            },
        }
    }

    /// Whether dev auth serves an address other hosts may reach: any but
    /// loopback, the unspecified `0.0.0.0` and `::` included (they listen on
    /// every interface), `::ffff:127.0.0.1` counted as loopback.
    pub fn dev_on_network(&self) -> bool {
        self.auth == AuthMode::Dev && !self.bind.ip().to_canonical().is_loopback()
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
        assert_eq!(c.limits.max_frame_bytes, 16 * 1024 * 1024);
        assert_eq!(c.limits.max_auth_frame_bytes, 64 * 1024);
        assert_eq!(c.limits.auth_timeout, Duration::from_secs(10));
        assert_eq!(
            (
                c.core.cache_capacity_bytes,
                c.core.cache_tenant_capacity_bytes
            ),
            (64 << 20, 16 << 20)
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
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(
            (c.shards, c.worker_threads, c.busy_poll),
            (cores, Some(1), false),
            "a shard per core; one worker for timers and metrics"
        );
        let c = resolve(&["--shards", "0"]).expect("valid");
        assert_eq!((c.shards, c.worker_threads), (0, None));
        let c = resolve(&["--worker-threads", "1", "--busy-poll"]).expect("valid");
        assert_eq!((c.worker_threads, c.busy_poll), (Some(1), true));
        let c = resolve(&["--busy-poll", "false"]).expect("valid");
        assert!(!c.busy_poll);
        let err = resolve(&["--worker-threads", "0"]).expect_err("invalid");
        assert!(err.to_string().contains("worker_threads"), "{err}");
    }

    fn resolve(args: &[&str]) -> Result<Config, ConfigError> {
        Config::resolve(
            Cli::try_parse_from(std::iter::once("felix-broker").chain(args.iter().copied()))
                .expect("parses"),
        )
    }

    #[test]
    fn dev_auth_on_a_network_address_needs_the_explicit_flag() {
        for bind in [
            "0.0.0.0:5000",
            "[::]:5000",
            "192.0.2.7:5000",
            "[2001:db8::1]:5000",
        ] {
            let err = resolve(&["--bind", bind]).expect_err(bind);
            let text = err.to_string();
            assert!(text.contains(bind), "{text}");
            assert!(
                text.contains("dev auth accepts any token for any tenant; bind to 127.0.0.1, use --auth tokens|jwt, or pass --allow-dev-on-network"),
                "{text}"
            );
            assert!(resolve(&["--bind", bind, "--allow-dev-on-network"]).is_ok());
            assert!(resolve(&["--bind", bind, "--allow-dev-on-network", "true"]).is_ok());
            assert!(resolve(&["--bind", bind, "--allow-dev-on-network", "false"]).is_err());
            assert!(resolve(&[
                "--bind",
                bind,
                "--auth",
                "tokens",
                "--tokens-file",
                "t.yaml"
            ])
            .is_ok());
        }
        for loopback in [
            "127.0.0.1:5000",
            "127.9.9.9:5000",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(resolve(&["--bind", loopback]).is_ok(), "{loopback}");
        }
    }

    #[test]
    fn the_file_can_allow_dev_on_the_network() {
        let dir = std::env::temp_dir().join(format!("felix-config-dev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("broker.yaml");
        let path_arg = path.to_str().expect("utf8");
        std::fs::write(&path, "bind: 0.0.0.0:5000\n").expect("write");
        assert!(resolve(&["--config", path_arg]).is_err());
        std::fs::write(&path, "bind: 0.0.0.0:5000\nallow_dev_on_network: true\n").expect("write");
        let c = resolve(&["--config", path_arg]);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(c.expect("allowed").allow_dev_on_network);
    }

    #[test]
    fn cluster_mode_is_off_unless_asked_for() {
        assert!(resolve(&[]).expect("valid").cluster.is_none());
        let c = resolve(&[
            "--cluster",
            "nats://127.0.0.1:4222, nats://127.0.0.1:4223",
            "--cluster-replicas",
            "3",
        ])
        .expect("valid");
        let cluster = c.cluster.expect("on");
        assert_eq!(
            cluster.urls,
            ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
        );
        assert_eq!((cluster.replicas, cluster.prefix.as_str()), (3, "felix"));
        assert!(resolve(&["--cluster", " , "]).is_err());
    }

    #[test]
    fn token_mode_needs_its_file() {
        let err = Config::resolve(
            Cli::try_parse_from(["felix-broker", "--auth", "tokens"]).expect("parses"),
        )
        .expect_err("invalid");
        assert!(err.to_string().contains("--tokens-file"));
    }

    /// Every enum-valued flag takes exactly the spelling the YAML file
    /// takes (and so the environment, parsed by the same flag parser): a
    /// value copied from one place works in the others. New enum settings
    /// are covered without editing this test.
    #[test]
    fn every_enum_value_is_spelled_the_same_in_flags_and_yaml() {
        use clap::CommandFactory;
        let dir = std::env::temp_dir().join(format!("felix-enum-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("broker.yaml");
        let path_arg = path.to_str().expect("utf8");
        let mut checked = 0;
        for arg in Cli::command().get_arguments() {
            let values = arg.get_possible_values();
            let long = arg.get_long().unwrap_or("");
            // Booleans are true/false everywhere already.
            if values.is_empty() || values.iter().any(|v| v.get_name() == "true") {
                continue;
            }
            let key = long.replace('-', "_");
            for value in values.iter().map(|v| v.get_name()) {
                // The other settings an auth mode needs, so both resolve.
                let extra = "tokens_file: t.yaml\njwks_file: j.json\n";
                std::fs::write(&path, format!("{extra}{key}: {value}\n")).expect("write");
                let from_file = resolve(&["--config", path_arg])
                    .unwrap_or_else(|e| panic!("{key}: {value} in YAML: {e}"));
                std::fs::write(&path, extra).expect("write");
                let from_flag = resolve(&["--config", path_arg, &format!("--{long}"), value])
                    .unwrap_or_else(|e| panic!("--{long} {value}: {e}"));
                assert_eq!(
                    format!("{from_file:?}"),
                    format!("{from_flag:?}"),
                    "--{long} {value} and `{key}: {value}` differ"
                );
                checked += 1;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        // auth (3), queue_policy (3), log_format (2).
        assert!(checked >= 8, "{checked} enum values checked");
        assert!(resolve(&["--queue-policy", "drop_old"]).is_ok());
    }

    /// docs/felix-broker.example.yaml loads, sets every key the file
    /// accepts, and gives the same configuration as no file at all (apart
    /// from nothing: it documents the defaults).
    #[test]
    fn the_example_config_lists_every_key_and_loads_to_the_defaults() {
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/felix-broker.example.yaml"
        );
        let text = std::fs::read_to_string(example).expect("the example file");
        let written: std::collections::BTreeSet<String> = text
            .lines()
            .filter(|l| !l.starts_with(['#', ' ']) && l.contains(':'))
            .filter_map(|l| l.split(':').next())
            .map(str::to_owned)
            .collect();
        // serde names every field it accepts when it meets an unknown one.
        let err = serde_yaml_ng::from_str::<FileConfig>("not_a_key: 1")
            .expect_err("unknown")
            .to_string();
        let accepted: std::collections::BTreeSet<String> = err
            .split("expected one of ")
            .nth(1)
            .expect("serde lists the fields")
            .split(", ")
            .map(|k| k.split('`').nth(1).unwrap_or("").to_owned())
            .collect();
        assert!(accepted.len() > 40, "{accepted:?}");
        let missing: Vec<_> = accepted.difference(&written).collect();
        assert!(missing.is_empty(), "the example lacks {missing:?}");
        let loaded = resolve(&["--config", example]).expect("the example loads");
        let defaults = resolve(&[]).expect("defaults");
        assert_eq!(format!("{loaded:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn an_invalid_log_filter_is_an_error_naming_it() {
        let err = Config::resolve(
            Cli::try_parse_from(["felix-broker", "--log", "felix_broker=loud"]).expect("parses"),
        )
        .expect_err("invalid filter");
        assert!(
            err.to_string()
                .starts_with("log filter \"felix_broker=loud\" is invalid"),
            "{err}"
        );
    }
}
