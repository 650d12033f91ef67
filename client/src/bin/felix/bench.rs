//! `felix bench latency`: Felix's latency demo, reproduced so figures
//! compare like for like: each payload is a 16-byte big-endian u128
//! nanosecond timestamp plus N zero bytes; p50/p99/p999 over the primary
//! subscriber (sorted, index round((n-1)p)); throughput = messages / time
//! to the last delivery at any subscriber; delivered msg/s across all
//! subscribers over the same time; unaccounted = expected - delivered.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use felix_client::{Ack, Client, ClientConfig, SubscriptionItem, Trust};
use felix_wire::StartPosition;

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
    pub(crate) broker: crate::target::BrokerArgs,
    /// Run the matrix fanout {1,10} x batch {1,64} x payload {0,1024,4096}.
    #[arg(long)]
    pub(crate) all: bool,
    /// Append each run's figures as a JSON line to this file.
    #[arg(long, default_value = "bench-results.jsonl")]
    pub(crate) results: std::path::PathBuf,
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

/// Worker threads of the runtime this runs on.
pub(crate) fn runtime_threads() -> usize {
    tokio::runtime::Handle::current().metrics().num_workers()
}

/// The value at index round((n-1)p) of `sorted` nanoseconds, in
/// microseconds (0 when empty).
pub(crate) fn percentile(sorted: &[u128], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// A subscriber that receives nothing for this long ends its run (the
/// missing events are then reported as unaccounted).
const IDLE_LIMIT: Duration = Duration::from_secs(10);

/// Subscriber queue depth of a benchmark broker (lossless for a run).
const QUEUE_CAPACITY: usize = 1 << 16;
/// Streams (each direction) and subscriptions per connection of a
/// benchmark broker: as many event streams as a client accepts.
const MAX_BROKER_STREAMS: u32 = felix_client::tls::MAX_BROKER_STREAMS;

/// The `felix-broker` flags that give a spawned broker the settings
/// [`embedded_broker`] uses in-process (and the same 10,000 connections
/// as both default to).
pub(crate) fn spawned_broker_flags() -> Vec<String> {
    [
        ("--queue-capacity", QUEUE_CAPACITY.to_string()),
        (
            "--max-subscriptions-per-connection",
            MAX_BROKER_STREAMS.to_string(),
        ),
        (
            "--max-streams-per-connection",
            MAX_BROKER_STREAMS.to_string(),
        ),
        ("--max-connections", "10000".to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}

/// Starts the reference broker in-process on an ephemeral port with a
/// throwaway certificate; returns it and a client configuration for it.
pub(crate) async fn embedded_broker() -> Result<
    (
        felix_broker::quic::RunningBroker,
        ClientConfig,
        std::path::PathBuf,
    ),
    String,
> {
    use felix_broker::core::{auth::Authenticator, Core, CoreSettings};
    use felix_broker::quic::{RunningBroker, ShellLimits};
    use felix_broker::tls::{self, TransportSettings};
    let dir = std::env::temp_dir().join(format!("felix-bench-{}", std::process::id()));
    let material = tls::load_or_create_dev(&dir).map_err(|e| e.to_string())?;
    let transport = TransportSettings {
        max_streams_per_connection: MAX_BROKER_STREAMS,
        keep_alive: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        ..TransportSettings::default()
    };
    let server = tls::server_config(&material, &transport).map_err(|e| e.to_string())?;
    // Lossless for measurement: a subscriber queue deep enough for the run.
    // As many subscriptions per connection as the client accepts event
    // streams (the broadcast bench checks its spread against that).
    let settings = CoreSettings {
        queue_capacity: QUEUE_CAPACITY,
        max_subscriptions_per_connection: MAX_BROKER_STREAMS as usize,
        ..CoreSettings::default()
    };
    let limits = ShellLimits {
        max_connections: 10_000,
        max_connections_per_source: 10_000,
        max_frame_bytes: felix_wire::DEFAULT_MAX_FRAME_BYTES,
        drain_timeout: Duration::from_secs(5),
        ..ShellLimits::default()
    };
    let addr = "127.0.0.1:0".parse().map_err(|_| "address")?;
    let broker = RunningBroker::start(
        addr,
        server,
        Arc::new(Core::new(settings, Authenticator::Dev)),
        limits,
    )
    .map_err(|e| e.to_string())?;
    let config = ClientConfig::new(
        broker.local_addr(),
        "localhost",
        Trust::CertificateFile(material.cert_path.clone()),
        "t1",
        "bench",
    );
    Ok((broker, config, dir))
}

/// Runs the latency workload.
pub(crate) async fn latency(
    client: &Client,
    namespace: &str,
    args: &LatencyArgs,
) -> Result<LatencyReport, String> {
    let stream = format!("bench-{}-{}", std::process::id(), now_ns() % 1_000_000);
    let expected = args.warmup + args.total;
    let mut readers = Vec::new();
    for i in 0..args.fanout.max(1) {
        let mut sub = client
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_rounded_indices() {
        let v: Vec<u128> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 501.0); // round(999 * 0.5) = 500 -> 501 us
        assert_eq!(percentile(&v, 0.99), 990.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn a_spawned_broker_gets_the_embedded_settings() {
        use clap::Parser as _;
        let mut argv = vec!["felix-broker".to_string()];
        argv.extend(spawned_broker_flags());
        let cli = felix_broker::config::Cli::try_parse_from(argv).expect("the broker takes them");
        let config = felix_broker::config::Config::resolve(cli).expect("resolves");
        assert_eq!(config.core.queue_capacity, QUEUE_CAPACITY);
        assert_eq!(config.core.max_subscriptions_per_connection, 1024);
        assert_eq!(config.max_streams_per_connection, 1024);
        assert_eq!(config.limits.max_connections, 10_000);
    }

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
}

/// `felix bench cache` parameters (Felix's cache demo: 8 connections x 4
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
    pub(crate) broker: crate::target::BrokerArgs,
    /// Append each run's figures as a JSON line to this file.
    #[arg(long, default_value = "bench-results.jsonl")]
    pub(crate) results: std::path::PathBuf,
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
}

/// Runs put, get_hit and get_miss for one value size over `clients`.
pub(crate) async fn cache(
    clients: &[Client],
    namespace: &str,
    args: &CacheArgs,
    size: usize,
) -> Vec<CacheReport> {
    let mut out = Vec::new();
    for op in ["put", "get_hit", "get_miss"] {
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
        });
    }
    out
}
