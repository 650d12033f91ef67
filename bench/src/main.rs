//! `felix-bench`: the broker benchmarks and the soak test, apart from the
//! client library as quinn keeps `perf/` apart from its crates.
//!
//! The latency, cache and broadcast workloads reproduce Felix's demos so
//! figures compare like for like (docs/benchmarks.md; `scripts/bench-report`
//! runs the matrix and takes medians). Each runs against the broker the
//! connection flags name, the reference broker in this process
//! (`--embedded`), or the `felix-broker` binary as a child process
//! (`--spawn-broker`, which also reports its peak memory).
//!
//! # Layout
//!
//! - `main`: the command line and the runtime.
//! - `latency`, `cache`, `broadcast`, `soak`: one file per subcommand, each
//!   with its own arguments, its workload, its report and its table.
//! - `target`: which broker a benchmark runs against, the connection
//!   flags, and the settings both brokers this process starts get.
//! - `broker_proc`: `--spawn-broker`'s child process and its memory.
//! - `stats`: percentiles, table cells and the JSON-lines results file,
//!   shared by every subcommand.
//!
//! Subcommands import `target` and `stats`, `target` imports `broker_proc`
//! and `stats`, and nothing imports `main` or a subcommand: no two files
//! import each other.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod broadcast;
mod broker_proc;
mod cache;
mod latency;
mod soak;
mod stats;
mod target;

use target::{BrokerArgs, ConnectArgs};

/// Benchmark a felix-wire broker: latency, cache and broadcast workloads
/// like Felix's demos, and a soak test.
///
/// Connection flags (--addr, --cert, ...) name the broker, as for the
/// `felix` CLI, unless a benchmark starts its own (--embedded,
/// --spawn-broker). Figures go to a table on standard output and, one JSON
/// line a run, to --results. Set FELIX_LOG=debug for protocol logs.
#[derive(Debug, Parser)]
#[command(name = "felix-bench", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish-to-delivery latency and throughput (Felix's latency demo).
    Latency(latency::LatencyArgs),
    /// Cache put / get_hit / get_miss latency and throughput (Felix's cache demo).
    Cache(cache::CacheArgs),
    /// One stream, many subscriptions over several connections: time from
    /// a publish to its delivery at the last subscription (p50/p99), and
    /// the time to set the subscriptions up.
    Broadcast(broadcast::BroadcastArgs),
    /// Mixed pub/sub and cache load for a while against the broker the
    /// connection flags name; every published event is accounted for at
    /// every subscriber (exit 1 if any is unaccounted or any operation
    /// failed).
    Soak(soak::SoakArgs),
}

impl Command {
    /// A benchmark's `--embedded` / `--spawn-broker` / runtime flags.
    fn broker(&self) -> Option<&BrokerArgs> {
        match self {
            Command::Latency(a) => Some(&a.broker),
            Command::Cache(a) => Some(&a.broker),
            Command::Broadcast(a) => Some(&a.broker),
            Command::Soak(_) => None,
        }
    }

    async fn run(&self, connect: &ConnectArgs) -> Result<ExitCode, String> {
        match self {
            Command::Latency(a) => latency::run(connect, a).await,
            Command::Cache(a) => cache::run(connect, a).await,
            Command::Broadcast(a) => broadcast::run(connect, a).await,
            Command::Soak(a) => soak::run(connect, a).await,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FELIX_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let broker = cli.command.broker();
    let threads = broker.and_then(|b| b.threads).map(usize::from);
    let runtime = match felix_broker::runtime::build(threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("felix-bench: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if broker.is_some_and(|b| b.busy_poll) {
        felix_broker::runtime::start_busy_polling(runtime.handle());
    }
    // On a runtime worker rather than on the thread in `block_on`: every
    // hand-over between the benchmark loop and the connection tasks then
    // stays on a worker (its LIFO slot) instead of a futex wake-up of
    // another thread, which costs 45-60 us on a 2-core VM, more than the
    // round trip being measured.
    let outcome = runtime.block_on(async move {
        tokio::spawn(async move { cli.command.run(&cli.connect).await })
            .await
            .map_err(|e| format!("the benchmark task failed: {e}"))?
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("felix-bench: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("felix-bench").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn connection_flags_go_anywhere_and_read_the_environment() {
        let cli =
            parse(&["soak", "--addr", "10.0.0.1:7000", "--insecure", "--json"]).expect("parses");
        assert_eq!(cli.connect.addr.to_string(), "10.0.0.1:7000");
        assert!(cli.connect.insecure);
        assert!(matches!(cli.command, Command::Soak(ref a) if a.json));
        let cmd = Cli::command();
        let env = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env())
                .and_then(|e| e.to_str())
                .map(String::from)
        };
        assert_eq!(env("addr").as_deref(), Some("FELIX_ADDR"));
        assert_eq!(env("cert").as_deref(), Some("FELIX_CERT"));
        assert_eq!(env("namespace").as_deref(), Some("FELIX_NAMESPACE"));
    }

    #[test]
    fn soak_arguments() {
        match parse(&["soak"]).expect("defaults").command {
            Command::Soak(a) => {
                assert_eq!(
                    (a.seconds, a.subscribers, a.batch, a.payload, a.json),
                    (60, 4, 16, 128, false)
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&["soak", "--seconds", "5", "--subscribers", "2"])
            .expect("parses")
            .command
        {
            Command::Soak(a) => assert_eq!((a.seconds, a.subscribers), (5, 2)),
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&["soak", "--embedded"]).is_err(),
            "soak has no broker of its own"
        );
    }

    #[test]
    fn latency_arguments() {
        match parse(&["latency"]).expect("defaults").command {
            Command::Latency(a) => {
                assert_eq!(
                    (a.fanout, a.batch, a.payload, a.total, a.warmup),
                    (1, 1, 0, 5000, 200)
                );
                assert!(!a.binary && !a.all);
                assert_eq!(a.runs().len(), 1);
                assert_eq!(a.results, PathBuf::from("bench-results.jsonl"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "latency",
            "--all",
            "--binary",
            "--embedded",
            "--threads",
            "1",
        ])
        .expect("parses")
        .command
        {
            Command::Latency(a) => {
                assert_eq!(a.runs().len(), 12, "fanout x batch x payload");
                assert!(a.runs().iter().all(|r| r.binary && !r.all));
                assert!(a.broker.embedded);
                assert_eq!(a.broker.threads, Some(1));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["latency", "--threads", "0"]).is_err());
        match parse(&[
            "latency",
            "--addr",
            "127.0.0.1:5001",
            "--sub-addr",
            "127.0.0.1:5002",
        ])
        .expect("parses")
        .command
        {
            Command::Latency(a) => {
                assert_eq!(a.sub_addr, Some("127.0.0.1:5002".parse().expect("addr")));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&["latency", "--embedded", "--sub-addr", "127.0.0.1:5002"]).is_err(),
            "a broker of its own has no other node"
        );
    }

    #[test]
    fn cache_arguments() {
        match parse(&[
            "cache",
            "--sizes",
            "0,256",
            "--connections",
            "2",
            "--streams",
            "16",
        ])
        .expect("parses")
        .command
        {
            Command::Cache(a) => {
                assert_eq!(a.sizes, [0, 256]);
                assert_eq!(
                    (a.connections, a.streams, a.keys, a.ops),
                    (2, 16, 1024, 20_000)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn broadcast_arguments() {
        let args = |argv: &[&str]| match parse(argv).map(|c| c.command) {
            Ok(Command::Broadcast(a)) => Ok(a),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        let d = args(&["broadcast"]).expect("defaults");
        assert_eq!(
            (
                d.subscriptions,
                d.connections,
                d.payload,
                d.publishes,
                d.warmup
            ),
            (1000, None, 64, 50, 5),
            "connections: 8, or as many as the subscriptions need"
        );
        assert_eq!(d.timeout_secs, 10);
        assert!(
            !d.broker.embedded && !d.broker.spawn_broker,
            "--addr by default"
        );
        assert_eq!(d.results, PathBuf::from("bench-results.jsonl"));
        let a = args(&[
            "broadcast",
            "--subscriptions",
            "25000",
            "--connections",
            "50",
            "--payload",
            "8",
            "--publishes",
            "3",
            "--warmup",
            "0",
            "--spawn-broker",
            "--results",
            "r.jsonl",
        ])
        .expect("parses");
        assert_eq!(
            (a.subscriptions, a.connections, a.payload),
            (25_000, Some(50), 8)
        );
        assert_eq!((a.publishes, a.warmup), (3, 0));
        assert!(a.broker.spawn_broker && !a.broker.embedded);
        assert!(
            args(&["broadcast", "--embedded"])
                .expect("parses")
                .broker
                .embedded
        );
        for bad in [
            &["--payload", "7"][..],
            &["--subscriptions", "0"],
            &["--connections", "0"],
            &["--publishes", "0"],
            &["--timeout-secs", "0"],
            &["--embedded", "--spawn-broker"],
        ] {
            let argv: Vec<&str> = ["broadcast"].iter().chain(bad).copied().collect();
            assert!(args(&argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_benchmark_can_spawn_a_broker() {
        for kind in ["latency", "cache", "broadcast"] {
            let cli = parse(&[kind, "--spawn-broker", "--busy-poll"]).expect("parses");
            let broker = cli.command.broker().expect("a benchmark");
            assert!(
                broker.spawn_broker && !broker.embedded && broker.busy_poll,
                "{kind}"
            );
            assert!(
                parse(&[kind, "--spawn-broker", "--embedded"]).is_err(),
                "{kind}: one broker or the other"
            );
        }
    }

    #[test]
    fn every_command_has_help() {
        for args in [
            &["--help"][..],
            &["latency", "--help"],
            &["cache", "--help"],
            &["broadcast", "--help"],
            &["soak", "--help"],
        ] {
            let err = parse(args).expect_err("help exits");
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
        }
    }
}
