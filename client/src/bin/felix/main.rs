//! `felix`: publish, subscribe and use the cache of a felix-wire broker
//! from the command line.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use felix_client::{Ack, Client, ClientConfig, SubscriptionItem, Trust};
use felix_wire::StartPosition;

mod bench;
mod soak;

/// Talk to a felix-wire broker: publish, subscribe, cache.
///
/// Defaults reach a `felix-broker` started with no arguments in the same
/// directory (127.0.0.1:5000, its certificate in .felix/tls/cert.pem, dev
/// auth). Every connection option can also come from a FELIX_* variable.
#[derive(Debug, Parser)]
#[command(name = "felix", version, about, long_about)]
struct Cli {
    /// Broker address.
    #[arg(
        long,
        env = "FELIX_ADDR",
        default_value = "127.0.0.1:5000",
        global = true
    )]
    addr: SocketAddr,
    /// TLS server name.
    #[arg(
        long,
        env = "FELIX_SERVER_NAME",
        default_value = "localhost",
        global = true
    )]
    server_name: String,
    /// PEM certificate to trust.
    #[arg(
        long,
        env = "FELIX_CERT",
        default_value = ".felix/tls/cert.pem",
        global = true
    )]
    cert: PathBuf,
    /// Accept any certificate (debugging only).
    #[arg(long, global = true)]
    insecure: bool,
    /// Tenant.
    #[arg(long, env = "FELIX_TENANT", default_value = "t1", global = true)]
    tenant: String,
    /// Token (any token works with a dev-mode broker).
    #[arg(long, env = "FELIX_TOKEN", default_value = "dev", global = true)]
    token: String,
    /// Namespace.
    #[arg(
        long,
        env = "FELIX_NAMESPACE",
        default_value = "default",
        global = true
    )]
    namespace: String,
    /// JSON lines output instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AckArg {
    /// Fire and forget.
    None,
    /// One ack per message.
    PerMessage,
    /// One ack per batch.
    PerBatch,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish messages (arguments, or one per line of standard input).
    Pub {
        /// Stream name.
        stream: String,
        /// Messages; none reads standard input.
        messages: Vec<String>,
        /// How the broker acknowledges.
        #[arg(long, value_enum, default_value_t = AckArg::PerMessage)]
        ack: AckArg,
        /// Send all messages as one batch.
        #[arg(long)]
        batch: bool,
    },
    /// Print events as they arrive.
    Sub {
        /// Stream name.
        stream: String,
        /// latest, earliest, or an offset.
        #[arg(long, default_value = "latest", value_parser = parse_start)]
        start: StartPosition,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Cache operations.
    Cache {
        #[command(subcommand)]
        op: CacheOp,
    },
    /// Benchmarks that reproduce Felix's demos (see docs/benchmarks.md).
    Bench {
        #[command(subcommand)]
        kind: BenchKind,
    },
    /// Mixed pub/sub + cache load for a duration; every published event is
    /// accounted for at every subscriber (exit 1 if any is unaccounted or
    /// any operation failed).
    Soak {
        /// How long to publish, in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Subscribers reading the soak stream.
        #[arg(long, default_value_t = 4)]
        subscribers: usize,
        /// Events per published batch.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Payload bytes per event.
        #[arg(long, default_value_t = 128)]
        payload: usize,
    },
}

#[derive(Debug, Subcommand)]
enum BenchKind {
    /// Publish-to-delivery latency and throughput (Felix's latency demo).
    Latency(bench::LatencyArgs),
    /// Cache put / get_hit / get_miss latency and throughput (Felix's cache demo).
    Cache(bench::CacheArgs),
}

#[derive(Debug, Subcommand)]
enum CacheOp {
    /// Store a value.
    Put {
        /// Cache name.
        cache: String,
        /// Key.
        key: String,
        /// Value (UTF-8).
        value: String,
        /// Time to live in milliseconds; 0 expires at once; absent never.
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    /// Read a value (exit code 1 on a miss).
    Get {
        /// Cache name.
        cache: String,
        /// Key.
        key: String,
    },
}

fn parse_start(s: &str) -> Result<StartPosition, String> {
    match s {
        "latest" => Ok(StartPosition::Latest),
        "earliest" => Ok(StartPosition::Earliest),
        n => n
            .parse()
            .map(StartPosition::Offset)
            .map_err(|_| format!("{s:?} is not latest, earliest or an offset")),
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn run_bench(cli: &Cli, args: &bench::LatencyArgs) -> Result<ExitCode, String> {
    let mut embedded = None;
    let mut config = if args.embedded {
        let (broker, config, dir) = bench::embedded_broker().await?;
        embedded = Some((broker, dir));
        config
    } else {
        ClientConfig::new(
            cli.addr,
            cli.server_name.clone(),
            trust(cli)?,
            cli.tenant.clone(),
            cli.token.clone(),
        )
    };
    // Like Felix's demos: a pool of event connections, so subscribers do
    // not all share one connection's congestion window and crypto.
    config.event_connections = args
        .runs()
        .iter()
        .map(|r| r.fanout)
        .max()
        .unwrap_or(1)
        .clamp(1, 8);
    let client = Client::connect(config).await.map_err(|e| e.to_string())?;
    let mut results = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.results)
        .map_err(|e| format!("{}: {e}", args.results.display()))?;
    println!(
        "{:>6} {:>5} {:>7} {:>7} {:>10} {:>10} {:>10} {:>14} {:>16} {:>11}",
        "fanout",
        "batch",
        "payload",
        "mode",
        "p50 us",
        "p99 us",
        "p999 us",
        "publish msg/s",
        "delivered msg/s",
        "unaccounted"
    );
    for run in args.runs() {
        let r = bench::latency(&client, &cli.namespace, &run).await?;
        println!(
            "{:>6} {:>5} {:>7} {:>7} {:>10.0} {:>10.0} {:>10.0} {:>14.0} {:>16.0} {:>11}",
            r.fanout,
            r.batch,
            r.payload,
            if r.binary { "binary" } else { "acked" },
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.publish_msgs_per_s,
            r.delivered_msgs_per_s,
            r.unaccounted
        );
        let _ = writeln!(results, "{}", serde_json::to_string(&r).unwrap_or_default());
    }
    client.close().await;
    if let Some((broker, dir)) = embedded {
        broker.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(ExitCode::SUCCESS)
}

fn trust(cli: &Cli) -> Result<Trust, String> {
    if cli.insecure {
        eprintln!("felix: warning: --insecure accepts any certificate");
        return Ok(Trust::InsecureSkipVerify);
    }
    if !cli.cert.exists() {
        return Err(format!("certificate {} not found: start felix-broker in this directory, pass --cert, or --insecure", cli.cert.display()));
    }
    Ok(Trust::CertificateFile(cli.cert.clone()))
}

async fn run_cache_bench(cli: &Cli, args: &bench::CacheArgs) -> Result<ExitCode, String> {
    let mut embedded = None;
    let config = if args.embedded {
        let (broker, config, dir) = bench::embedded_broker().await?;
        embedded = Some((broker, dir));
        config
    } else {
        ClientConfig::new(
            cli.addr,
            cli.server_name.clone(),
            trust(cli)?,
            cli.tenant.clone(),
            cli.token.clone(),
        )
    };
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        let mut c = config.clone();
        c.cache_streams = args.streams.max(1);
        clients.push(Client::connect(c).await.map_err(|e| e.to_string())?);
    }
    let mut results = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.results)
        .map_err(|e| format!("{}: {e}", args.results.display()))?;
    println!(
        "{:>9} {:>6} {:>11} {:>9} {:>9} {:>10} {:>7}",
        "op", "size", "concurrency", "p50 us", "p99 us", "ops/s", "errors"
    );
    for size in &args.sizes {
        for r in bench::cache(&clients, &cli.namespace, args, *size).await {
            println!(
                "{:>9} {:>6} {:>11} {:>9.0} {:>9.0} {:>10.0} {:>7}",
                r.op, r.size, r.concurrency, r.p50_us, r.p99_us, r.ops_per_s, r.errors
            );
            let _ = writeln!(results, "{}", serde_json::to_string(&r).unwrap_or_default());
        }
    }
    for c in &clients {
        c.close().await;
    }
    if let Some((broker, dir)) = embedded {
        broker.shutdown().await;
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match &cli.command {
        Command::Bench {
            kind: BenchKind::Latency(args),
        } => return run_bench(&cli, args).await,
        Command::Bench {
            kind: BenchKind::Cache(args),
        } => return run_cache_bench(&cli, args).await,
        _ => {}
    }
    let trust = if cli.insecure {
        eprintln!("felix: warning: --insecure accepts any certificate");
        Trust::InsecureSkipVerify
    } else {
        if !cli.cert.exists() {
            return Err(format!(
                "certificate {} not found: start felix-broker in this directory, pass --cert, or --insecure",
                cli.cert.display()
            ));
        }
        Trust::CertificateFile(cli.cert.clone())
    };
    let config = ClientConfig::new(
        cli.addr,
        cli.server_name.clone(),
        trust,
        cli.tenant.clone(),
        cli.token.clone(),
    );
    let client = Client::connect(config).await.map_err(|e| e.to_string())?;
    let ns = cli.namespace.as_str();
    let mut out = std::io::stdout().lock();
    let code = match cli.command {
        Command::Pub {
            stream,
            messages,
            ack,
            batch,
        } => {
            let messages: Vec<String> = if messages.is_empty() {
                std::io::stdin()
                    .lock()
                    .lines()
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("stdin: {e}"))?
            } else {
                messages
            };
            let ack = match ack {
                AckArg::None => Ack::None,
                AckArg::PerMessage => Ack::PerMessage,
                AckArg::PerBatch => Ack::PerBatch,
            };
            let payloads: Vec<Bytes> = messages.into_iter().map(Bytes::from).collect();
            let n = payloads.len();
            if batch {
                client
                    .publish_batch(ns, &stream, payloads, ack)
                    .await
                    .map_err(|e| e.to_string())?;
            } else {
                for p in payloads {
                    client
                        .publish(ns, &stream, p, ack)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            if cli.json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::json!({"published": n, "stream": stream})
                );
            } else {
                let _ = writeln!(out, "published {n} message(s) to {stream}");
            }
            ExitCode::SUCCESS
        }
        Command::Sub {
            stream,
            start,
            count,
        } => {
            let mut sub = client
                .subscribe(ns, &stream, start)
                .await
                .map_err(|e| e.to_string())?;
            let mut seen = 0u64;
            while count.is_none_or(|c| seen < c) {
                match sub.next().await {
                    Some(Ok(SubscriptionItem::Event(e))) => {
                        seen += 1;
                        if cli.json {
                            let line = serde_json::json!({"offset": e.offset, "payload_base64": b64(&e.payload), "payload_utf8": String::from_utf8_lossy(&e.payload)});
                            let _ = writeln!(out, "{line}");
                        } else {
                            let offset = e.offset.map_or("-".to_string(), |o| o.to_string());
                            let _ =
                                writeln!(out, "{offset}\t{}", String::from_utf8_lossy(&e.payload));
                        }
                        let _ = out.flush();
                    }
                    Some(Ok(SubscriptionItem::Gap { expected, got })) => {
                        eprintln!("felix: gap: events {expected}..{got} were not delivered");
                        if cli.json {
                            let _ = writeln!(
                                out,
                                "{}",
                                serde_json::json!({"gap": {"expected": expected, "got": got}})
                            );
                        }
                    }
                    Some(Err(e)) => return Err(e.to_string()),
                    None => break,
                }
            }
            ExitCode::SUCCESS
        }
        // Answered before connecting (it may start its own broker).
        Command::Bench { .. } => return Err("bench runs before connecting".into()),
        Command::Soak {
            seconds,
            subscribers,
            batch,
            payload,
        } => {
            eprintln!(
                "felix: soaking {} for {seconds} s with {subscribers} subscribers...",
                cli.addr
            );
            let report = soak::run(
                &client,
                ns,
                Duration::from_secs(seconds),
                subscribers,
                batch,
                payload,
            )
            .await;
            if cli.json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&report).unwrap_or_default()
                );
            } else {
                let _ = writeln!(
                    out,
                    "soak: {:.0} s, {} events published ({:.0}/s), {} subscribers delivered {:?} (gaps {:?}), {} unaccounted; {} cache ops, {} mismatches; {} errors{}",
                    report.seconds,
                    report.published,
                    report.published as f64 / report.seconds.max(0.001),
                    report.subscribers,
                    report.delivered_per_subscriber,
                    report.gaps_per_subscriber,
                    report.unaccounted,
                    report.cache_ops,
                    report.cache_mismatches,
                    report.errors,
                    report.first_error.as_ref().map(|e| format!(" (first: {e})")).unwrap_or_default()
                );
            }
            if report.unaccounted == 0 && report.errors == 0 && report.cache_mismatches == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Cache {
            op:
                CacheOp::Put {
                    cache,
                    key,
                    value,
                    ttl_ms,
                },
        } => {
            client
                .cache_put(
                    ns,
                    &cache,
                    &key,
                    Bytes::from(value),
                    ttl_ms.map(Duration::from_millis),
                )
                .await
                .map_err(|e| e.to_string())?;
            if cli.json {
                let _ = writeln!(out, "{}", serde_json::json!({"stored": key}));
            } else {
                let _ = writeln!(out, "stored {key}");
            }
            ExitCode::SUCCESS
        }
        Command::Cache {
            op: CacheOp::Get { cache, key },
        } => match client
            .cache_get(ns, &cache, &key)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(v) => {
                if cli.json {
                    let _ = writeln!(
                        out,
                        "{}",
                        serde_json::json!({"key": key, "value_base64": b64(&v)})
                    );
                } else {
                    let _ = writeln!(out, "{}", String::from_utf8_lossy(&v));
                }
                ExitCode::SUCCESS
            }
            None => {
                if cli.json {
                    let _ = writeln!(
                        out,
                        "{}",
                        serde_json::json!({"key": key, "value_base64": null})
                    );
                }
                eprintln!("felix: {key}: not found");
                ExitCode::from(1)
            }
        },
    };
    drop(out);
    client.close().await;
    Ok(code)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FELIX_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("felix: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse() {
        let cli = Cli::try_parse_from(["felix", "sub", "orders", "--start", "42", "--count", "3"])
            .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Sub {
                start: StartPosition::Offset(42),
                count: Some(3),
                ..
            }
        ));
        assert!(Cli::try_parse_from(["felix", "sub", "orders", "--start", "middle"]).is_err());
        let cli = Cli::try_parse_from([
            "felix", "--json", "cache", "put", "c", "k", "v", "--ttl-ms", "0",
        ])
        .expect("parses");
        assert!(cli.json);
    }
}
