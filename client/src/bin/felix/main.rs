//! `felix`: publish, subscribe and use the cache of a felix-wire broker
//! from the command line.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use felix_client::{Client, ClientConfig, SubscriptionItem, Trust};

mod args;
mod bench;
mod broadcast;
mod broker_proc;
mod soak;
mod target;

use args::{BenchKind, CacheOp, Cli, Command};
use target::Target;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Opens the results file for appending.
fn results_file(path: &std::path::Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The peak RSS column's header, when a spawned broker is measured.
fn rss_header(target: &Target) -> String {
    match target {
        Target::Spawned(_) => format!(" {:>12}", "broker MiB"),
        _ => String::new(),
    }
}

/// The peak RSS column, when a spawned broker is measured.
fn rss_cell(target: &Target, peak_mib: Option<f64>) -> String {
    match target {
        Target::Spawned(_) => format!(" {}", target::opt_col(peak_mib, 12)),
        _ => String::new(),
    }
}

async fn run_bench(cli: &Cli, args: &bench::LatencyArgs) -> Result<ExitCode, String> {
    let (target, mut config) =
        Target::open(cli, &args.broker, &bench::spawned_broker_flags()).await?;
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
    let mut results = results_file(&args.results)?;
    println!(
        "{:>6} {:>5} {:>7} {:>7} {:>10} {:>10} {:>10} {:>14} {:>16} {:>11}{}",
        "fanout",
        "batch",
        "payload",
        "mode",
        "p50 us",
        "p99 us",
        "p999 us",
        "publish msg/s",
        "delivered msg/s",
        "unaccounted",
        rss_header(&target)
    );
    for run in args.runs() {
        let mut r = bench::latency(&client, &cli.namespace, &run).await?;
        r.broker_peak_rss_mib = target.rss().and_then(|m| m.peak_mib());
        r.broker = target.name();
        println!(
            "{:>6} {:>5} {:>7} {:>7} {:>10.0} {:>10.0} {:>10.0} {:>14.0} {:>16.0} {:>11}{}",
            r.fanout,
            r.batch,
            r.payload,
            if r.binary { "binary" } else { "acked" },
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.publish_msgs_per_s,
            r.delivered_msgs_per_s,
            r.unaccounted,
            rss_cell(&target, r.broker_peak_rss_mib)
        );
        let _ = writeln!(results, "{}", serde_json::to_string(&r).unwrap_or_default());
    }
    client.close().await;
    target.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn run_broadcast_bench(
    cli: &Cli,
    args: &broadcast::BroadcastArgs,
) -> Result<ExitCode, String> {
    let (target, config) = Target::open(cli, &args.broker, &bench::spawned_broker_flags()).await?;
    let run = broadcast::broadcast(&config, &cli.namespace, args).await;
    // Stopped whatever happened; its peak is read before it stops.
    let rss = target_name_and_close(target).await;
    let mut r = run?;
    r.broker = rss.0;
    r.broker_peak_rss_mib = rss.1.and_then(|m| m.peak_mib());
    r.broker_sampled_rss_mib = rss.1.and_then(|m| m.sampled_max_mib());
    let mut results = results_file(&args.results)?;
    println!(
        "{:>13} {:>11} {:>7} {:>9} {:>9} {:>10} {:>10} {:>10} {:>11} {:>12}",
        "subscriptions",
        "connections",
        "payload",
        "completed",
        "setup ms",
        "p50 us",
        "p99 us",
        "max us",
        "unaccounted",
        "broker MiB"
    );
    println!(
        "{:>13} {:>11} {:>7} {:>9} {:>9.0} {:>10.0} {:>10.0} {:>10.0} {:>11} {}",
        r.subscriptions,
        r.connections,
        r.payload,
        r.completed,
        r.setup_ms,
        r.p50_us,
        r.p99_us,
        r.max_us,
        r.unaccounted,
        target::opt_col(r.broker_peak_rss_mib, 12)
    );
    let _ = writeln!(results, "{}", serde_json::to_string(&r).unwrap_or_default());
    // Like the other benches, missing deliveries are figures (in the table
    // and the JSON line), not a failed run; they are also spelled out here.
    if r.unaccounted > 0 || r.timed_out > 0 || r.subscription_failures > 0 {
        eprintln!(
            "felix: broadcast: {} publishes timed out, {} deliveries unaccounted, {} subscriptions failed{}",
            r.timed_out,
            r.unaccounted,
            r.subscription_failures,
            r.first_failure
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Stops `target`; returns its name and a spawned broker's memory.
async fn target_name_and_close(target: Target) -> (&'static str, Option<broker_proc::Rss>) {
    let name = target.name();
    (name, target.close().await)
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
    let (target, config) = Target::open(cli, &args.broker, &bench::spawned_broker_flags()).await?;
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        let mut c = config.clone();
        c.cache_streams = args.streams.max(1);
        clients.push(Client::connect(c).await.map_err(|e| e.to_string())?);
    }
    let mut results = results_file(&args.results)?;
    println!(
        "{:>9} {:>6} {:>11} {:>9} {:>9} {:>10} {:>7}{}",
        "op",
        "size",
        "concurrency",
        "p50 us",
        "p99 us",
        "ops/s",
        "errors",
        rss_header(&target)
    );
    for size in &args.sizes {
        let reports = bench::cache(&clients, &cli.namespace, args, *size).await;
        let peak = target.rss().and_then(|m| m.peak_mib());
        for mut r in reports {
            r.broker_peak_rss_mib = peak;
            r.broker = target.name();
            println!(
                "{:>9} {:>6} {:>11} {:>9.0} {:>9.0} {:>10.0} {:>7}{}",
                r.op,
                r.size,
                r.concurrency,
                r.p50_us,
                r.p99_us,
                r.ops_per_s,
                r.errors,
                rss_cell(&target, peak)
            );
            let _ = writeln!(results, "{}", serde_json::to_string(&r).unwrap_or_default());
        }
    }
    for c in &clients {
        c.close().await;
    }
    target.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Runs a benchmark.
async fn run_benchmark(cli: &Cli, kind: &BenchKind) -> Result<ExitCode, String> {
    match kind {
        BenchKind::Latency(args) => run_bench(cli, args).await,
        BenchKind::Cache(args) => run_cache_bench(cli, args).await,
        BenchKind::Broadcast(args) => run_broadcast_bench(cli, args).await,
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    if let Command::Bench { .. } = cli.command {
        // On a runtime worker rather than on the thread in `main`'s
        // `block_on`: every hand-over between the benchmark loop and the
        // connection tasks then stays on a worker (its LIFO slot) instead
        // of a futex wake-up of another thread, which costs 45-60 us on a
        // 2-core VM, more than the round trip being measured.
        return tokio::spawn(async move {
            let Command::Bench { kind } = &cli.command else {
                return Err("not a benchmark".to_string());
            };
            run_benchmark(&cli, kind).await
        })
        .await
        .map_err(|e| format!("the benchmark task failed: {e}"))?;
    }
    let config = ClientConfig::new(
        cli.addr,
        cli.server_name.clone(),
        trust(&cli)?,
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
            let ack = ack.into();
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FELIX_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let bench = cli.bench_broker();
    let threads = bench.and_then(|b| b.threads).map(usize::from);
    let runtime = match felix_broker::runtime::build(threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("felix: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if bench.is_some_and(|b| b.busy_poll) {
        felix_broker::runtime::start_busy_polling(runtime.handle());
    }
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("felix: {e}");
            ExitCode::from(2)
        }
    }
}
