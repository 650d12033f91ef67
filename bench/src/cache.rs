//! `felix-bench cache`: Felix's cache demo, reproduced: `--connections`
//! clients with `--streams` request streams each, one request in flight
//! per stream, over `--keys` keys. For each value size: puts, then gets
//! of the keys just put (`get_hit`), then gets from a cache never written
//! (`get_miss`); p50/p99 of each request's time and operations per second
//! over the whole phase.

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use felix_client::Client;

use crate::stats::{cpu_us_per, percentile, runtime_threads, Results, Table};
use crate::target::{BrokerArgs, ConnectArgs, Target};

/// Runs `felix-bench cache`: every size in `--sizes`, a table row and a
/// JSON line per (size, operation).
pub(crate) async fn run(connect: &ConnectArgs, args: &CacheArgs) -> Result<ExitCode, String> {
    let (target, config) = Target::open(connect, &args.broker)?;
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        let mut c = config.clone();
        c.cache_streams = args.streams.max(1);
        clients.push(Client::connect(c).await.map_err(|e| e.to_string())?);
    }
    let mut results = Results::open(&args.results)?;
    let table = Table::new(args.json);
    table.header(format_args!(
        "{:>9} {:>6} {:>11} {:>9} {:>9} {:>10} {:>7}{}",
        "op",
        "size",
        "concurrency",
        "p50 us",
        "p99 us",
        "ops/s",
        "errors",
        target.broker_header()
    ));
    for size in &args.sizes {
        let reports = cache(&clients, &connect.namespace, args, *size, || {
            target.cpu_time()
        })
        .await;
        let peak = target.rss().and_then(|m| m.peak_mib());
        for mut r in reports {
            r.broker_peak_rss_mib = peak;
            r.broker = target.name();
            table.row(
                &r,
                format_args!(
                    "{:>9} {:>6} {:>11} {:>9.0} {:>9.0} {:>10.0} {:>7}{}",
                    r.op,
                    r.size,
                    r.concurrency,
                    r.p50_us,
                    r.p99_us,
                    r.ops_per_s,
                    r.errors,
                    target.broker_cells(peak, r.broker_cpu_us_per_op)
                ),
            );
            results.append(&r);
        }
    }
    for c in &clients {
        c.close().await;
    }
    target.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `felix-bench cache` parameters (Felix's cache demo: 8 connections x 4
/// streams, one request in flight per stream, 1024 keys).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CacheArgs {
    /// Connections.
    #[arg(long, default_value_t = 8)]
    pub(crate) connections: usize,
    /// Request streams per connection (one request in flight on each).
    #[arg(long, default_value_t = 4)]
    pub(crate) streams: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 1024)]
    pub(crate) keys: usize,
    /// Value sizes to run, bytes.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0usize, 64, 256, 1024, 4096])]
    pub(crate) sizes: Vec<usize>,
    /// Operations per (size, operation) pair.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) ops: usize,
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    /// Append each run's figures as a JSON line to this file.
    #[arg(long, default_value = "bench-results.jsonl")]
    pub(crate) results: std::path::PathBuf,
    /// Print each run's figures as a JSON line on standard output (the
    /// line --results appends) instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// One cache run's figures.
#[derive(Debug, serde::Serialize)]
pub(crate) struct CacheReport {
    pub(crate) op: &'static str,
    pub(crate) size: usize,
    pub(crate) concurrency: usize,
    /// Client connections, and request streams on each (one request in
    /// flight per stream).
    pub(crate) connections: usize,
    pub(crate) streams_per_connection: usize,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) ops_per_s: f64,
    pub(crate) errors: u64,
    /// Worker threads of this process's runtime (which an embedded broker
    /// shares).
    pub(crate) threads: usize,
    /// Whether idle workers busy-polled (`--busy-poll`).
    pub(crate) busy_poll: bool,
    /// `embedded`, `spawned` or `external`.
    pub(crate) broker: &'static str,
    /// A spawned broker's peak RSS so far (VmHWM after this size's runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) broker_peak_rss_mib: Option<f64>,
    /// A spawned broker's CPU time (user + system) per request, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) broker_cpu_us_per_op: Option<f64>,
}

/// Runs put, get_hit and get_miss for one value size over `clients`.
async fn cache(
    clients: &[Client],
    namespace: &str,
    args: &CacheArgs,
    size: usize,
    broker_cpu: impl Fn() -> Option<std::time::Duration>,
) -> Vec<CacheReport> {
    let mut out = Vec::new();
    for op in ["put", "get_hit", "get_miss"] {
        let cpu_before = broker_cpu();
        let workers = clients.len() * args.streams.max(1);
        let per_worker = args.ops.div_ceil(workers);
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..workers {
            let client = clients[w % clients.len()].clone();
            let ns = namespace.to_string();
            let keys = args.keys.max(1);
            let value = Bytes::from(vec![7u8; size]);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_worker);
                let mut errors = 0u64;
                for i in 0..per_worker {
                    let key = format!("k{}", (w * per_worker + i) % keys);
                    let t = Instant::now();
                    let ok = match op {
                        "put" => client
                            .cache_put(&ns, "bench", &key, value.clone(), None)
                            .await
                            .is_ok(),
                        "get_hit" => {
                            matches!(client.cache_get(&ns, "bench", &key).await, Ok(Some(_)))
                        }
                        _ => matches!(client.cache_get(&ns, "bench-miss", &key).await, Ok(None)),
                    };
                    lat.push(t.elapsed().as_nanos());
                    if !ok {
                        errors += 1;
                    }
                }
                (lat, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            if let Ok((lat, e)) = t.await {
                all.extend(lat);
                errors += e;
            }
        }
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        let broker_cpu_us_per_op = cpu_us_per(cpu_before, broker_cpu(), all.len() as u64);
        all.sort_unstable();
        out.push(CacheReport {
            op,
            size,
            concurrency: workers,
            connections: clients.len(),
            streams_per_connection: args.streams.max(1),
            p50_us: percentile(&all, 0.5),
            p99_us: percentile(&all, 0.99),
            ops_per_s: all.len() as f64 / secs,
            errors,
            threads: runtime_threads(),
            busy_poll: args.broker.busy_poll,
            broker: "",
            broker_peak_rss_mib: None,
            broker_cpu_us_per_op,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_size_reports_put_hit_and_miss() {
        let (broker, config) = crate::target::test_broker();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let mut c = config.clone();
            c.cache_streams = 2;
            clients.push(Client::connect(c).await.expect("connect"));
        }
        let args = CacheArgs {
            connections: 2,
            streams: 2,
            keys: 16,
            sizes: vec![32],
            ops: 64,
            broker: BrokerArgs::default(),
            results: "unused.jsonl".into(),
            json: false,
        };
        let reports = cache(&clients, "default", &args, 32, || None).await;
        let ops: Vec<&str> = reports.iter().map(|r| r.op).collect();
        assert_eq!(ops, ["put", "get_hit", "get_miss"]);
        for r in &reports {
            assert_eq!((r.size, r.concurrency, r.errors), (32, 4, 0), "{}", r.op);
            assert!(r.ops_per_s > 0.0 && r.p50_us <= r.p99_us, "{}", r.op);
        }
        for c in &clients {
            c.close().await;
        }
        broker.shutdown().await;
    }
}
