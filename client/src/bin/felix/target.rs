//! Which broker a benchmark runs against: the one the global `--addr` /
//! `--cert` flags name (default), the reference broker in this process
//! (`--embedded`), or the `felix-broker` binary as a child process
//! (`--spawn-broker`, which also reports the broker's peak memory).

use felix_client::{ClientConfig, Trust};

use crate::args::Cli;
use crate::bench;
use crate::broker_proc::{Rss, SpawnedBroker};

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
    /// shares, and of a --spawn-broker broker (default: one per core).
    /// With 1, the client and an embedded broker hand work over on one
    /// thread and never pay a cross-thread wake-up.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) threads: Option<u16>,
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
        if self.busy_poll {
            flags.push("--busy-poll".to_string());
        }
        flags
    }
}

/// The broker a benchmark runs against.
pub(crate) enum Target {
    /// Reached through the global connection flags.
    External,
    /// In this process.
    Embedded {
        broker: felix_broker::quic::RunningBroker,
        dir: std::path::PathBuf,
    },
    /// A child process.
    Spawned(SpawnedBroker),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Target {
    /// Starts (or names) the broker and returns a client configuration for
    /// it. `extra` are broker flags for a spawned broker, matching what
    /// [`bench::embedded_broker`] sets in-process.
    pub(crate) async fn open(
        cli: &Cli,
        args: &BrokerArgs,
        extra: &[String],
    ) -> Result<(Target, ClientConfig), String> {
        if args.embedded {
            let (broker, config, dir) = bench::embedded_broker().await?;
            return Ok((Target::Embedded { broker, dir }, config));
        }
        if args.spawn_broker {
            let mut flags = extra.to_vec();
            flags.extend(args.runtime_flags());
            let broker = SpawnedBroker::start(&flags)?;
            let config = ClientConfig::new(
                broker.addr(),
                "localhost",
                Trust::CertificateFile(broker.cert_path()),
                cli.tenant.clone(),
                cli.token.clone(),
            );
            eprintln!(
                "felix: spawned felix-broker on {} ({})",
                broker.addr(),
                broker.cert_path().display()
            );
            return Ok((Target::Spawned(broker), config));
        }
        let config = ClientConfig::new(
            cli.addr,
            cli.server_name.clone(),
            crate::trust(cli)?,
            cli.tenant.clone(),
            cli.token.clone(),
        );
        Ok((Target::External, config))
    }

    /// `external`, `embedded` or `spawned` (for the JSON lines).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Target::External => "external",
            Target::Embedded { .. } => "embedded",
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

    /// Stops a broker this process started; returns a spawned broker's
    /// final memory figures (read before it was stopped).
    pub(crate) async fn close(self) -> Option<Rss> {
        match self {
            Target::External => None,
            Target::Embedded { broker, dir } => {
                broker.shutdown().await;
                let _ = std::fs::remove_dir_all(dir);
                None
            }
            Target::Spawned(b) => {
                let (rss, outcome) = match tokio::task::spawn_blocking(move || b.stop()).await {
                    Ok(stopped) => stopped,
                    Err(e) => (Rss::default(), Err(format!("stopping the broker: {e}"))),
                };
                if let Err(e) = outcome {
                    eprintln!("felix: warning: {e}");
                }
                match (rss.peak_mib(), rss.sampled_max_mib()) {
                    (Some(peak), sampled) => eprintln!(
                        "felix: broker peak RSS {peak:.1} MiB (VmHWM); sampled VmRSS max {}",
                        sampled.map_or("n/a".into(), |s| format!("{s:.1} MiB"))
                    ),
                    (None, _) => eprintln!("felix: broker peak RSS unavailable (no /proc)"),
                }
                Some(rss)
            }
        }
    }
}

/// `{:>W.1}` of an optional figure, `-` when absent.
pub(crate) fn opt_col(v: Option<f64>, width: usize) -> String {
    v.map_or_else(|| format!("{:>width$}", "-"), |v| format!("{v:>width$.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_columns_keep_their_width() {
        assert_eq!(opt_col(Some(12.345), 7), "   12.3");
        assert_eq!(opt_col(None, 7), "      -");
    }
}
