//! Which broker a benchmark runs against, and how to reach it: the one the
//! connection flags name (default), the reference broker in this process
//! (`--embedded`), or the `felix-broker` binary as a child process
//! (`--spawn-broker`, which also reports the broker's peak memory).
//!
//! The two brokers this process starts get the same settings
//! ([`embedded_config`] in-process, [`spawned_broker_flags`] for the
//! child), lossless for measurement, so their figures compare.

use std::net::SocketAddr;
use std::path::PathBuf;

use felix_broker::core::CoreSettings;
use felix_broker::embedded::{EmbeddedBroker, EmbeddedConfig};
use felix_broker::quic::Shards;
use felix_broker::tls::TransportSettings;
use felix_client::{ClientConfig, Trust};

use crate::broker_proc::{Rss, SpawnedBroker};
use crate::stats::opt_col;

/// Streams (each direction) and subscriptions per connection of a
/// benchmark broker: as many event streams as a client accepts (the
/// broadcast bench checks its spread against that).
const MAX_BROKER_STREAMS: u32 = felix_client::tls::MAX_BROKER_STREAMS;
/// Connections a benchmark broker takes, from one source address too
/// (every client of a benchmark comes from loopback).
const MAX_CONNECTIONS: usize = 10_000;

/// The settings of an `--embedded` broker.
pub(crate) fn embedded_config() -> EmbeddedConfig {
    let mut config = EmbeddedConfig {
        // Subscriber queues at the defaults (`block`): lossless for
        // subscribers that keep up, as a user's broker would be.
        core: CoreSettings {
            max_subscriptions_per_connection: MAX_BROKER_STREAMS as usize,
            ..CoreSettings::default()
        },
        transport: TransportSettings {
            max_streams_per_connection: MAX_BROKER_STREAMS,
            ..TransportSettings::default()
        },
        // Like the broker binary's default: a shard per core.
        shards: Shards {
            count: std::thread::available_parallelism().map_or(1, |n| n.get()),
            busy_poll: false,
        },
        ..EmbeddedConfig::default()
    };
    config.limits.max_connections = MAX_CONNECTIONS;
    config.limits.max_connections_per_source = MAX_CONNECTIONS;
    config
}

/// The `felix-broker` flags that give a `--spawn-broker` broker the
/// settings [`embedded_config`] gives one in-process.
pub(crate) fn spawned_broker_flags() -> Vec<String> {
    [
        (
            "--max-subscriptions-per-connection",
            MAX_BROKER_STREAMS.to_string(),
        ),
        (
            "--max-streams-per-connection",
            MAX_BROKER_STREAMS.to_string(),
        ),
        ("--max-connections", MAX_CONNECTIONS.to_string()),
        ("--max-connections-per-source", MAX_CONNECTIONS.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}

/// An `--embedded` broker and a client configuration for it, for tests.
#[cfg(test)]
pub(crate) fn test_broker() -> (EmbeddedBroker, ClientConfig) {
    let broker = embedded_config().start().expect("start an embedded broker");
    let config = ClientConfig::builder(
        broker.local_addr(),
        Trust::CertificateFile(broker.cert_path().to_path_buf()),
    )
    .credentials("t1", "test")
    .build();
    (broker, config)
}

/// How to reach the broker when this process starts none: global flags,
/// also read from `FELIX_*` variables as the `felix` CLI does.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectArgs {
    /// Broker address (host:port).
    #[arg(
        long,
        env = "FELIX_ADDR",
        default_value = "127.0.0.1:5000",
        global = true
    )]
    pub(crate) addr: SocketAddr,
    /// TLS server name the certificate must match.
    #[arg(
        long,
        env = "FELIX_SERVER_NAME",
        default_value = "localhost",
        global = true
    )]
    pub(crate) server_name: String,
    /// PEM certificate to trust (the reference broker writes its
    /// self-signed one to .felix/tls/cert.pem).
    #[arg(
        long,
        env = "FELIX_CERT",
        default_value = ".felix/tls/cert.pem",
        global = true
    )]
    pub(crate) cert: PathBuf,
    /// Accept any certificate without verifying it (debugging only).
    #[arg(long, global = true)]
    pub(crate) insecure: bool,
    /// Tenant id.
    #[arg(long, env = "FELIX_TENANT", default_value = "t1", global = true)]
    pub(crate) tenant: String,
    /// Token (a dev-mode broker accepts any).
    #[arg(long, env = "FELIX_TOKEN", default_value = "dev", global = true)]
    pub(crate) token: String,
    /// Namespace of the benchmark's streams and caches.
    #[arg(
        long,
        env = "FELIX_NAMESPACE",
        default_value = "default",
        global = true
    )]
    pub(crate) namespace: String,
}

impl ConnectArgs {
    /// A client configuration for the broker these flags name.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, String> {
        let trust = if self.insecure {
            eprintln!("felix-bench: warning: --insecure accepts any certificate");
            Trust::InsecureSkipVerify
        } else if self.cert.exists() {
            Trust::CertificateFile(self.cert.clone())
        } else {
            return Err(format!(
                "certificate {} not found: start felix-broker in this directory, pass --cert, \
                 or --insecure (or run the benchmark with --embedded or --spawn-broker)",
                self.cert.display()
            ));
        };
        Ok(ClientConfig::builder(self.addr, trust)
            .server_name(self.server_name.clone())
            .credentials(self.tenant.clone(), self.token.clone())
            .build())
    }

    /// A client configuration for a broker this process started.
    fn local(&self, addr: SocketAddr, cert: PathBuf) -> ClientConfig {
        ClientConfig::builder(addr, Trust::CertificateFile(cert))
            .credentials(self.tenant.clone(), self.token.clone())
            .build()
    }
}

/// `--embedded` / `--spawn-broker`, shared by the benchmarks.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct BrokerArgs {
    /// Run the reference broker in this process (like Felix's demos)
    /// instead of using the broker --addr names.
    #[arg(long)]
    pub(crate) embedded: bool,
    /// Start the felix-broker binary found next to this executable as a
    /// child process (127.0.0.1, free port, temporary data directory and
    /// certificate), run against it, report its peak RSS (VmHWM) as
    /// broker_peak_rss_mib, then stop it with SIGTERM.
    #[arg(long, conflicts_with = "embedded")]
    pub(crate) spawn_broker: bool,
    /// Runtime worker threads of this process, which an --embedded broker
    /// with --shards 0 shares (default: one per core). With 1 and --shards
    /// 0, the client and an embedded broker hand work over on one thread
    /// and never pay a cross-thread wake-up.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) threads: Option<u16>,
    /// Shards (serving threads with their own runtime and endpoint) of an
    /// --embedded or --spawn-broker broker; 0 serves on the runtime's
    /// workers (default: one per core, the broker's default).
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub(crate) shards: Option<u16>,
    /// Idle worker threads keep polling instead of sleeping, in this
    /// process and in a --spawn-broker broker (its --busy-poll): no wait
    /// for a sleeping thread to wake, every core busy all the time.
    #[arg(long)]
    pub(crate) busy_poll: bool,
}

impl BrokerArgs {
    /// The runtime flags a spawned broker gets: the same as this process.
    fn runtime_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(n) = self.threads {
            flags.extend(["--worker-threads".to_string(), n.to_string()]);
        }
        if let Some(n) = self.shards {
            flags.extend(["--shards".to_string(), n.to_string()]);
        }
        if self.busy_poll {
            flags.push("--busy-poll".to_string());
        }
        flags
    }
}

/// The broker a benchmark runs against.
pub(crate) enum Target {
    /// Reached through the connection flags.
    External,
    /// In this process.
    Embedded(EmbeddedBroker),
    /// A child process.
    Spawned(SpawnedBroker),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Target {
    /// Starts (or names) the broker `args` ask for and returns a client
    /// configuration for it. Runs inside the runtime (an embedded broker's
    /// tasks run on it).
    pub(crate) fn open(
        connect: &ConnectArgs,
        args: &BrokerArgs,
    ) -> Result<(Target, ClientConfig), String> {
        if args.embedded {
            let mut config = embedded_config();
            if let Some(n) = args.shards {
                config.shards.count = usize::from(n);
            }
            config.shards.busy_poll = args.busy_poll;
            let broker = config
                .start()
                .map_err(|e| format!("starting the embedded broker: {e}"))?;
            let config = connect.local(broker.local_addr(), broker.cert_path().to_path_buf());
            return Ok((Target::Embedded(broker), config));
        }
        if args.spawn_broker {
            let mut flags = spawned_broker_flags();
            flags.extend(args.runtime_flags());
            let broker = SpawnedBroker::start(&flags)?;
            let config = connect.local(broker.addr(), broker.cert_path());
            eprintln!(
                "felix-bench: spawned felix-broker on {} ({})",
                broker.addr(),
                broker.cert_path().display()
            );
            return Ok((Target::Spawned(broker), config));
        }
        Ok((Target::External, connect.client_config()?))
    }

    /// `external`, `embedded` or `spawned` (for the JSON lines).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Target::External => "external",
            Target::Embedded(_) => "embedded",
            Target::Spawned(_) => "spawned",
        }
    }

    /// A spawned broker's memory so far (None otherwise).
    pub(crate) fn rss(&self) -> Option<Rss> {
        match self {
            Target::Spawned(b) => Some(b.rss()),
            _ => None,
        }
    }

    /// A spawned broker's CPU time so far, user + system (None otherwise:
    /// an embedded broker shares this process's CPU with the benchmark).
    pub(crate) fn cpu_time(&self) -> Option<std::time::Duration> {
        match self {
            Target::Spawned(b) => b.cpu_time(),
            _ => None,
        }
    }

    /// The broker columns' headers (peak RSS, CPU per message), when a
    /// spawned broker is measured.
    pub(crate) fn broker_header(&self) -> String {
        match self {
            Target::Spawned(_) => format!(" {:>12} {:>11}", "broker MiB", "broker us/m"),
            _ => String::new(),
        }
    }

    /// The broker columns, when a spawned broker is measured.
    pub(crate) fn broker_cells(
        &self,
        peak_mib: Option<f64>,
        cpu_us_per_msg: Option<f64>,
    ) -> String {
        match self {
            Target::Spawned(_) => format!(
                " {} {}",
                opt_col(peak_mib, 12),
                match cpu_us_per_msg {
                    Some(v) => format!("{v:>11.2}"),
                    None => format!("{:>11}", "-"),
                }
            ),
            _ => String::new(),
        }
    }

    /// Stops a broker this process started; returns a spawned broker's
    /// final memory figures (read before it was stopped).
    pub(crate) async fn close(self) -> Option<Rss> {
        match self {
            Target::External => None,
            Target::Embedded(broker) => {
                broker.shutdown().await;
                None
            }
            Target::Spawned(b) => {
                let (rss, outcome) = match tokio::task::spawn_blocking(move || b.stop()).await {
                    Ok(stopped) => stopped,
                    Err(e) => (Rss::default(), Err(format!("stopping the broker: {e}"))),
                };
                if let Err(e) = outcome {
                    eprintln!("felix-bench: warning: {e}");
                }
                match (rss.peak_mib(), rss.sampled_max_mib()) {
                    (Some(peak), sampled) => eprintln!(
                        "felix-bench: broker peak RSS {peak:.1} MiB (VmHWM); sampled VmRSS max {}",
                        sampled.map_or("n/a".into(), |s| format!("{s:.1} MiB"))
                    ),
                    (None, _) => eprintln!("felix-bench: broker peak RSS unavailable (no /proc)"),
                }
                Some(rss)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawned_broker_gets_the_embedded_settings() {
        use clap::Parser as _;
        let mut argv = vec!["felix-broker".to_string()];
        argv.extend(spawned_broker_flags());
        let cli = felix_broker::config::Cli::try_parse_from(argv).expect("the broker takes them");
        let spawned = felix_broker::config::Config::resolve(cli).expect("resolves");
        let embedded = embedded_config();
        assert_eq!(spawned.core.queue_capacity, embedded.core.queue_capacity);
        assert_eq!(
            spawned.core.max_subscriptions_per_connection,
            embedded.core.max_subscriptions_per_connection
        );
        assert_eq!(
            spawned.max_streams_per_connection,
            embedded.transport.max_streams_per_connection
        );
        assert_eq!(
            spawned.limits.max_connections,
            embedded.limits.max_connections
        );
        assert_eq!(
            spawned.limits.max_connections_per_source,
            embedded.limits.max_connections_per_source
        );
        assert_eq!(
            (embedded.core.queue_capacity, embedded.core.queue_policy),
            (
                CoreSettings::default().queue_capacity,
                felix_broker::core::QueuePolicy::Block
            ),
            "benchmarks run at the default queue settings"
        );
        assert_eq!(embedded.core.max_subscriptions_per_connection, 1024);
        assert_eq!(embedded.limits.max_connections, 10_000);
    }

    #[tokio::test]
    async fn an_embedded_target_serves_and_stops() {
        let connect = ConnectArgs {
            addr: "127.0.0.1:1".parse().expect("literal"),
            server_name: "unused".into(),
            cert: "unused.pem".into(),
            insecure: false,
            tenant: "t1".into(),
            token: "bench".into(),
            namespace: "default".into(),
        };
        let args = BrokerArgs {
            embedded: true,
            ..BrokerArgs::default()
        };
        let (target, config) = Target::open(&connect, &args).expect("starts");
        assert_eq!(target.name(), "embedded");
        let addr = config.addrs()[0];
        assert!(addr.ip().is_loopback() && addr.port() != 0);
        let client = felix_client::Client::connect(config)
            .await
            .expect("connects");
        client.close().await;
        assert!(
            target.close().await.is_none(),
            "no memory figures in-process"
        );
    }

    #[test]
    fn missing_certificates_are_explained() {
        let connect = ConnectArgs {
            addr: "127.0.0.1:5000".parse().expect("literal"),
            server_name: "localhost".into(),
            cert: "/nonexistent/cert.pem".into(),
            insecure: false,
            tenant: "t1".into(),
            token: "dev".into(),
            namespace: "default".into(),
        };
        let err = connect.client_config().expect_err("no such file");
        assert!(err.contains("--embedded or --spawn-broker"), "{err}");
    }
}
