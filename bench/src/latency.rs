//! `felix-bench latency`: Felix's latency demo, reproduced so figures
//! compare like for like: each payload is a 16-byte big-endian u128
//! nanosecond timestamp plus N zero bytes; p50/p99/p999 over the primary
//! subscriber (sorted, index round((n-1)p)); throughput = messages / time
//! to the last delivery at any subscriber; delivered msg/s across all
//! subscribers over the same time; unaccounted = expected - delivered.
//!
//! `--sub-addr` puts the subscribers on another broker (another node of a
//! cluster, docs/cluster.md) than the publisher's `--addr`: the latency
//! then includes the trip through the cluster.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use felix_client::{Ack, Client, ClientConfig, SubscriptionItem};
use felix_wire::StartPosition;

use crate::stats::{cpu_us_per, percentile, runtime_threads, Results, Table};
use crate::target::{BrokerArgs, ConnectArgs, Target};

/// One latency run's parameters.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LatencyArgs {
    /// Subscribers.
    #[arg(long, default_value_t = 1)]
    pub(crate) fanout: usize,
    /// Events per publish.
    #[arg(long, default_value_t = 1)]
    pub(crate) batch: usize,
    /// Zero bytes after the 16-byte timestamp.
    #[arg(long, default_value_t = 0)]
    pub(crate) payload: usize,
    /// Measured events.
    #[arg(long, default_value_t = 5000)]
    pub(crate) total: usize,
    /// Events published before measuring.
    #[arg(long, default_value_t = 200)]
    pub(crate) warmup: usize,
    /// Unacked binary publishes (0x0001); otherwise acked, one in flight.
    #[arg(long)]
    pub(crate) binary: bool,
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    /// Run the matrix fanout {1,10} x batch {1,64} x payload {0,1024,4096}.
    #[arg(long)]
    pub(crate) all: bool,
    /// Append each run's figures as a JSON line to this file.
    #[arg(long, default_value = "bench-results.jsonl")]
    pub(crate) results: std::path::PathBuf,
    /// Subscribe on this broker (host:port) instead of --addr: another node
    /// of the publisher's cluster. Its certificate must be one --cert
    /// trusts (a PEM file may hold several).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["embedded", "spawn_broker"])]
    pub(crate) sub_addr: Option<std::net::SocketAddr>,
    /// Print each run's figures as a JSON line on standard output (the
    /// line --results appends) instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

impl LatencyArgs {
    /// The runs to make: this one, or the whole matrix with `--all`.
    pub(crate) fn runs(&self) -> Vec<LatencyArgs> {
        if !self.all {
            return vec![self.clone()];
        }
        let mut out = Vec::new();
        for fanout in [1, 10] {
            for batch in [1, 64] {
                for payload in [0, 1024, 4096] {
                    out.push(LatencyArgs {
                        fanout,
                        batch,
                        payload,
                        all: false,
                        ..self.clone()
                    });
                }
            }
        }
        out
    }
}

/// A latency run's figures.
#[derive(Debug, serde::Serialize)]
pub(crate) struct LatencyReport {
    pub(crate) fanout: usize,
    pub(crate) batch: usize,
    pub(crate) payload: usize,
    pub(crate) binary: bool,
    pub(crate) total: usize,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) publish_msgs_per_s: f64,
    pub(crate) delivered_msgs_per_s: f64,
    pub(crate) unaccounted: u64,
    /// Worker threads of this process's runtime (which an embedded broker
    /// shares).
    pub(crate) threads: usize,
    /// Whether idle workers busy-polled (`--busy-poll`).
    pub(crate) busy_poll: bool,
    /// `embedded`, `spawned` or `external`.
    pub(crate) broker: &'static str,
    /// A spawned broker's peak RSS so far (VmHWM at the end of the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) broker_peak_rss_mib: Option<f64>,
    /// A spawned broker's CPU time (user + system) per delivered message,
    /// microseconds, over the whole run (warm-up and subscribing included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) broker_cpu_us_per_delivery: Option<f64>,
    /// Where the subscribers were, when not on the publisher's broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sub_addr: Option<std::net::SocketAddr>,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// `n` payloads of the demo's shape (16-byte big-endian timestamp, then
/// `payload` zero bytes). They are published together, so one clock
/// reading stamps them all, and they share one allocation.
fn stamped_batch(n: usize, payload: usize) -> Vec<Bytes> {
    let size = 16 + payload;
    let mut b = BytesMut::with_capacity(n * size);
    let now = now_ns();
    for _ in 0..n {
        b.put_u128(now);
        b.put_bytes(0, payload);
    }
    let all = b.freeze();
    (0..n)
        .map(|i| all.slice(i * size..(i + 1) * size))
        .collect()
}

/// A subscriber that receives nothing for this long ends its run (the
/// missing events are then reported as unaccounted).
const IDLE_LIMIT: Duration = Duration::from_secs(10);

/// Runs `felix-bench latency`: one run, or the matrix with `--all`;
/// prints a table row and appends a JSON line per run.
pub(crate) async fn run(connect: &ConnectArgs, args: &LatencyArgs) -> Result<ExitCode, String> {
    let (target, mut config) = Target::open(connect, &args.broker)?;
    // Like Felix's demos: a pool of event connections, so subscribers do
    // not all share one connection's congestion window and crypto.
    config.event_connections = args
        .runs()
        .iter()
        .map(|r| r.fanout)
        .max()
        .unwrap_or(1)
        .clamp(1, 8);
    // With --sub-addr, a second client, for the subscribers only.
    let sub_client = match args.sub_addr {
        Some(addr) => {
            let mut sub_config = ClientConfig::builder(addr, config.trust.clone())
                .server_name(config.server_name.clone())
                .credentials(config.tenant_id.clone(), config.token.clone())
                .build();
            sub_config.event_connections = config.event_connections;
            Some(
                Client::connect(sub_config)
                    .await
                    .map_err(|e| format!("--sub-addr {addr}: {e}"))?,
            )
        }
        None => None,
    };
    let client = Client::connect(config).await.map_err(|e| e.to_string())?;
    let subscriber = sub_client.as_ref().unwrap_or(&client);
    let mut results = Results::open(&args.results)?;
    let table = Table::new(args.json);
    if let Some(addr) = args.sub_addr {
        if !args.json {
            println!("publishing on {}, subscribed on {addr}", connect.addr);
        }
    }
    table.header(format_args!(
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
        target.broker_header()
    ));
    for run in args.runs() {
        let cpu_before = target.cpu_time();
        let mut r = latency(&client, subscriber, &connect.namespace, &run).await?;
        let delivered = ((run.warmup + run.total) * run.fanout.max(1)) as u64;
        r.broker_cpu_us_per_delivery = cpu_us_per(
            cpu_before,
            target.cpu_time(),
            delivered.saturating_sub(r.unaccounted),
        );
        r.broker_peak_rss_mib = target.rss().and_then(|m| m.peak_mib());
        r.broker = target.name();
        table.row(
            &r,
            format_args!(
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
                target.broker_cells(r.broker_peak_rss_mib, r.broker_cpu_us_per_delivery)
            ),
        );
        results.append(&r);
    }
    if let Some(c) = &sub_client {
        c.close().await;
    }
    client.close().await;
    target.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Runs the latency workload once: `client` publishes, `subscriber`
/// subscribes (the same client, or one on another node).
async fn latency(
    client: &Client,
    subscriber: &Client,
    namespace: &str,
    args: &LatencyArgs,
) -> Result<LatencyReport, String> {
    let stream = format!("bench-{}-{}", std::process::id(), now_ns() % 1_000_000);
    let expected = args.warmup + args.total;
    let mut readers = Vec::new();
    for i in 0..args.fanout.max(1) {
        let mut sub = subscriber
            .subscribe(namespace, &stream, StartPosition::Latest)
            .await
            .map_err(|e| e.to_string())?;
        let primary = i == 0;
        let warmup = args.warmup;
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(if primary { expected } else { 0 });
            let mut seen = 0usize;
            // Clock reading (ns) at this subscriber's last delivery: every
            // measured one for the primary (it needs the clock for
            // latency anyway), the final one for the others.
            let mut last_ns = 0u128;
            // A watchdog rather than a timeout around every event (three
            // clock readings per event were a tenth of the profile): the
            // run ends after 10 s without an event. `Delay`: ticks missed
            // while events kept coming must not fire back to back.
            let mut watchdog = tokio::time::interval(IDLE_LIMIT);
            watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            watchdog.tick().await;
            let mut seen_at_tick = 0;
            while seen < expected {
                tokio::select! {
                    biased;
                    item = sub.next() => match item {
                        Some(Ok(SubscriptionItem::Event(e))) => {
                            if primary && seen >= warmup {
                                let now = now_ns();
                                if let Some(stamp) = e.payload.get(..16) {
                                    let sent = u128::from_be_bytes(
                                        stamp.try_into().unwrap_or([0; 16]),
                                    );
                                    latencies.push(now.saturating_sub(sent));
                                }
                                last_ns = now;
                            }
                            seen += 1;
                            if !primary && seen == expected {
                                last_ns = now_ns();
                            }
                        }
                        Some(Ok(SubscriptionItem::Gap { .. })) => {}
                        _ => break,
                    },
                    _ = watchdog.tick() => {
                        if seen == seen_at_tick {
                            break;
                        }
                        seen_at_tick = seen;
                    }
                }
            }
            (seen, latencies, last_ns)
        }));
    }
    let mut sent = 0usize;
    let mut start = Instant::now();
    let mut start_ns = now_ns();
    let mut measuring = false;
    while sent < expected {
        if !measuring && sent >= args.warmup {
            measuring = true;
            start = Instant::now();
            start_ns = now_ns();
        }
        let n = args.batch.max(1).min(expected - sent);
        let payloads = stamped_batch(n, args.payload);
        let ack = if args.binary {
            Ack::None
        } else {
            Ack::PerMessage
        };
        let result = if n == 1 {
            client
                .publish(
                    namespace,
                    &stream,
                    payloads.into_iter().next().unwrap_or_default(),
                    ack,
                )
                .await
        } else {
            client
                .publish_batch(namespace, &stream, payloads, ack)
                .await
        };
        result.map_err(|e| e.to_string())?;
        sent += n;
    }
    let publish_done = start.elapsed();
    let mut delivered = 0u64;
    let mut latencies = None;
    // The last delivery at any subscriber: throughput counts the time until
    // every subscriber has everything.
    let mut last_ns = 0u128;
    for r in readers {
        let (seen, primary_latencies, reader_last_ns) = r.await.map_err(|e| e.to_string())?;
        delivered += seen.saturating_sub(args.warmup) as u64;
        last_ns = last_ns.max(reader_last_ns);
        if latencies.is_none() {
            latencies = Some(primary_latencies);
        }
    }
    let mut latencies = latencies.unwrap_or_default();
    latencies.sort_unstable();
    let to_last =
        Duration::from_nanos(u64::try_from(last_ns.saturating_sub(start_ns)).unwrap_or(u64::MAX))
            .max(publish_done)
            .as_secs_f64()
            .max(1e-9);
    let fanout = args.fanout.max(1);
    Ok(LatencyReport {
        fanout,
        batch: args.batch,
        payload: args.payload,
        binary: args.binary,
        total: args.total,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        p999_us: percentile(&latencies, 0.999),
        publish_msgs_per_s: args.total as f64 / to_last,
        delivered_msgs_per_s: delivered as f64 / to_last,
        unaccounted: (args.total * fanout) as u64 - delivered.min((args.total * fanout) as u64),
        threads: runtime_threads(),
        busy_poll: args.broker.busy_poll,
        broker: "",
        broker_peak_rss_mib: None,
        broker_cpu_us_per_delivery: None,
        sub_addr: args.sub_addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_a_big_endian_timestamp() {
        let batch = stamped_batch(3, 4);
        assert_eq!(batch.len(), 3);
        for b in &batch {
            assert_eq!(b.len(), 20);
            let ts = u128::from_be_bytes(b[..16].try_into().expect("16 bytes"));
            assert!(now_ns() - ts < 1_000_000_000);
            assert_eq!(&b[16..], &[0, 0, 0, 0]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_delivers_everything_to_every_subscriber() {
        let (broker, config) = crate::target::test_broker();
        let client = Client::connect(config).await.expect("connect");
        for binary in [false, true] {
            let args = LatencyArgs {
                fanout: 3,
                batch: 4,
                payload: 8,
                total: 40,
                warmup: 4,
                binary,
                broker: BrokerArgs::default(),
                all: false,
                results: "unused.jsonl".into(),
                sub_addr: None,
                json: false,
            };
            let r = latency(&client, &client, "default", &args)
                .await
                .expect("runs");
            assert_eq!((r.fanout, r.total, r.unaccounted), (3, 40, 0), "{r:?}");
            assert!(r.p50_us > 0.0 && r.p50_us <= r.p99_us && r.p99_us <= r.p999_us);
            assert!(r.delivered_msgs_per_s >= r.publish_msgs_per_s, "{r:?}");
        }
        client.close().await;
        broker.shutdown().await;
    }
}
