//! `felix-bench broadcast`: one stream, many subscriptions spread over
//! several client connections; the time from publishing one event to its
//! delivery at the last subscription.
//!
//! Each of `--connections` is a separate [`Client`] (its own UDP socket
//! and QUIC endpoint) with one event connection, so the subscriptions
//! really travel over that many QUIC connections, as they would from that
//! many processes; `--subscriptions` are spread over them as evenly as
//! possible. A separate client publishes. Every event is one unacked
//! publish (binary `0x0001`, one frame) carrying its sequence number
//! (8 bytes, big-endian) padded with zeros to `--payload` bytes. The
//! publisher sends one, waits until every subscription got it (or the
//! timeout passes), records the time from just before the publish call to
//! the arrival at the last subscription, and sends the next. p50/p99 as in
//! the latency bench (sorted, index round((n-1)p)). A delivery missing at
//! the timeout is counted as unaccounted, never ignored.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use felix_client::{Ack, Client, ClientConfig, Subscription, SubscriptionItem};
use felix_wire::StartPosition;
use tokio::sync::Notify;

use crate::stats::{cpu_us_per, opt_col, percentile, runtime_threads, Results, Table};
use crate::target::{BrokerArgs, ConnectArgs, Target};

/// Subscribe requests in flight at once on one connection while setting up.
const SUBSCRIBE_CONCURRENCY: usize = 16;

/// `felix-bench broadcast` parameters.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BroadcastArgs {
    /// Subscriptions to the one stream (all must receive every event).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) subscriptions: u32,
    /// Client connections the subscriptions are spread over (each a
    /// separate client with its own QUIC connection for events). At most
    /// 1024 subscriptions fit on one connection, so without this flag the
    /// bench uses 8, or as many as --subscriptions needs (N/1024 rounded
    /// up) when that is more; a value too small for N is an error.
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) connections: Option<u32>,
    /// Bytes per event: an 8-byte sequence number, then zeros.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..))]
    pub(crate) payload: u32,
    /// Measured publishes (one at a time).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) publishes: u32,
    /// Publishes before measuring (also waited for, and accounted).
    #[arg(long, default_value_t = 5)]
    pub(crate) warmup: u32,
    /// Seconds one event may take to reach every subscription; deliveries
    /// still missing then are reported as unaccounted.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) timeout_secs: u64,
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    /// Append the run's figures as a JSON line to this file.
    #[arg(long, default_value = "bench-results.jsonl")]
    pub(crate) results: std::path::PathBuf,
    /// Print each run's figures as a JSON line on standard output (the
    /// line --results appends) instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A broadcast run's figures.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct BroadcastReport {
    /// Always `broadcast`.
    pub(crate) bench: &'static str,
    /// `embedded`, `spawned` or `external`.
    pub(crate) broker: &'static str,
    /// Subscriptions set up (all of them, or the run fails).
    pub(crate) subscriptions: usize,
    /// Client connections carrying them.
    pub(crate) connections: usize,
    /// Most subscriptions on one connection.
    pub(crate) max_per_connection: usize,
    pub(crate) payload: usize,
    pub(crate) publishes: usize,
    pub(crate) warmup: usize,
    /// Connecting the clients (publisher and subscribers).
    pub(crate) connect_ms: f64,
    /// Subscribing every subscription, after connecting.
    pub(crate) setup_ms: f64,
    /// Publish to the last subscription's delivery.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
    /// Measured publishes that reached every subscription in time.
    pub(crate) completed: usize,
    /// Publishes (warmup included) some subscription had not received at
    /// the timeout.
    pub(crate) timed_out: usize,
    /// (event, subscription) deliveries missing at the timeout, warmup
    /// included.
    pub(crate) unaccounted: u64,
    /// Events subscriptions reported missing (gaps in offsets).
    pub(crate) gap_events: u64,
    /// Subscriptions that failed or ended during the run.
    pub(crate) subscription_failures: u64,
    pub(crate) first_failure: Option<String>,
    /// Worker threads of this process's runtime (which an embedded broker
    /// shares).
    pub(crate) threads: usize,
    /// Whether idle workers busy-polled (`--busy-poll`).
    pub(crate) busy_poll: bool,
    /// A spawned broker's peak RSS (VmHWM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) broker_peak_rss_mib: Option<f64>,
    /// A spawned broker's largest sampled VmRSS (cross-check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) broker_sampled_rss_mib: Option<f64>,
    /// A spawned broker's CPU time (user + system) per delivery over the
    /// publishes (warm-up included, set-up not), microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) broker_cpu_us_per_delivery: Option<f64>,
}

/// `total` items spread over `parts` as evenly as possible: the first
/// `total % parts` get one more. `parts` of 0 is taken as 1.
pub(crate) fn spread(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    let (each, extra) = (total / parts, total % parts);
    (0..parts).map(|i| each + usize::from(i < extra)).collect()
}

/// Connections when `--connections` is not given.
pub(crate) const DEFAULT_CONNECTIONS: usize = 8;

/// The connections to use: `explicit`, else [`DEFAULT_CONNECTIONS`] or as
/// many as `subscriptions` need at `limit` per connection, if more.
pub(crate) fn connections_for(subscriptions: usize, explicit: Option<u32>, limit: usize) -> usize {
    match explicit {
        Some(m) => (m as usize).max(1),
        None => DEFAULT_CONNECTIONS.max(subscriptions.div_ceil(limit.max(1))),
    }
}

/// Checks that `subscriptions` over `connections` puts at most `limit` on
/// any one connection; the error says how many connections are needed.
pub(crate) fn check_per_connection(
    subscriptions: usize,
    connections: usize,
    limit: usize,
) -> Result<usize, String> {
    let most = subscriptions.div_ceil(connections.max(1));
    if most > limit {
        return Err(format!(
            "{subscriptions} subscriptions over {connections} connections puts {most} on one; \
             a connection carries at most {limit} (the client accepts {} event streams per \
             connection, the broker's default subscription limit is 1024): use --connections {} or more",
            felix_client::tls::MAX_BROKER_STREAMS,
            subscriptions.div_ceil(limit.max(1))
        ));
    }
    Ok(most)
}

/// The event with sequence number `seq`: `seq` big-endian, then zeros up
/// to `size` bytes (at least 8).
pub(crate) fn event_payload(seq: u64, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(8));
    b.put_u64(seq);
    b.put_bytes(0, size.saturating_sub(8));
    b.freeze()
}

/// The sequence number of an event payload.
pub(crate) fn event_seq(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.get(..8)?.try_into().ok()?))
}

/// What every subscription reader shares.
struct Tally {
    /// Subscriptions that received event `seq`.
    arrived: Vec<AtomicU32>,
    /// When event `seq` reached its last subscription.
    completed_at: Vec<OnceLock<Instant>>,
    subscriptions: u32,
    complete: Notify,
    gap_events: AtomicU64,
    failures: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl Tally {
    fn new(events: usize, subscriptions: u32) -> Tally {
        Tally {
            arrived: (0..events).map(|_| AtomicU32::new(0)).collect(),
            completed_at: (0..events).map(|_| OnceLock::new()).collect(),
            subscriptions,
            complete: Notify::new(),
            gap_events: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            first_failure: Mutex::new(None),
        }
    }

    /// One subscription received event `seq`.
    fn arrived(&self, seq: u64) {
        let Some(count) = usize::try_from(seq).ok().and_then(|i| self.arrived.get(i)) else {
            return;
        };
        if count.fetch_add(1, Ordering::AcqRel) + 1 == self.subscriptions {
            let at = Instant::now();
            if let Some(slot) = usize::try_from(seq)
                .ok()
                .and_then(|i| self.completed_at.get(i))
            {
                let _ = slot.set(at);
            }
            self.complete.notify_waiters();
        }
    }

    fn failed(&self, why: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
    }

    /// Waits until event `seq` reached every subscription, or `deadline`;
    /// returns when it completed.
    async fn wait(&self, seq: usize, deadline: tokio::time::Instant) -> Option<Instant> {
        let slot = self.completed_at.get(seq)?;
        loop {
            let notified = self.complete.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(at) = slot.get() {
                return Some(*at);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return slot.get().copied();
            }
        }
    }

    fn missing(&self, seq: usize) -> u64 {
        let got = self
            .arrived
            .get(seq)
            .map_or(0, |a| a.load(Ordering::Acquire));
        u64::from(self.subscriptions.saturating_sub(got))
    }
}

/// Reads one subscription until it has every event, fails or ends.
async fn read(mut sub: Subscription, tally: Arc<Tally>, expected: usize) {
    let mut seen = 0usize;
    while seen < expected {
        match sub.next().await {
            Some(Ok(SubscriptionItem::Event(e))) => {
                if let Some(seq) = event_seq(&e.payload) {
                    tally.arrived(seq);
                }
                seen += 1;
            }
            Some(Ok(SubscriptionItem::Gap { expected, got })) => {
                tally
                    .gap_events
                    .fetch_add(got.saturating_sub(expected), Ordering::Relaxed);
            }
            Some(Err(e)) => return tally.failed(format!("subscription {}: {e}", sub.id())),
            None => {
                return tally.failed(format!(
                    "subscription {}: the broker ended it after {seen} events",
                    sub.id()
                ))
            }
        }
    }
}

/// Subscribes `count` times on `client` with [`SUBSCRIBE_CONCURRENCY`]
/// requests in flight.
async fn subscribe_many(
    client: &Client,
    namespace: &str,
    stream: &str,
    count: usize,
) -> Result<Vec<Subscription>, String> {
    let mut tasks = tokio::task::JoinSet::new();
    for share in spread(count, SUBSCRIBE_CONCURRENCY.min(count.max(1))) {
        let (client, namespace, stream) =
            (client.clone(), namespace.to_string(), stream.to_string());
        tasks.spawn(async move {
            let mut subs = Vec::with_capacity(share);
            for _ in 0..share {
                subs.push(
                    client
                        .subscribe(&namespace, &stream, StartPosition::Latest)
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            Ok::<_, String>(subs)
        });
    }
    let mut out = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        out.extend(done.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

/// Closes clients concurrently (each may wait a moment for its
/// connections to drain).
async fn close_all(clients: impl IntoIterator<Item = Client>) {
    let mut closing = tokio::task::JoinSet::new();
    for c in clients {
        closing.spawn(async move { c.close().await });
    }
    while closing.join_next().await.is_some() {}
}

/// Runs `felix-bench broadcast`: prints the run's table row and appends
/// its JSON line. Missing deliveries are figures (in the table and the
/// JSON line, and spelled out on standard error), not a failed run.
pub(crate) async fn run(connect: &ConnectArgs, args: &BroadcastArgs) -> Result<ExitCode, String> {
    let (target, config) = Target::open(connect, &args.broker)?;
    let run = broadcast(&config, &connect.namespace, args, || target.cpu_time()).await;
    // Stopped whatever happened; its peak is read before it stops.
    let name = target.name();
    let rss = target.close().await;
    let mut r = run?;
    r.broker = name;
    r.broker_peak_rss_mib = rss.and_then(|m| m.peak_mib());
    r.broker_sampled_rss_mib = rss.and_then(|m| m.sampled_max_mib());
    let mut results = Results::open(&args.results)?;
    let table = Table::new(args.json);
    table.header(format_args!(
        "{:>13} {:>11} {:>7} {:>9} {:>9} {:>10} {:>10} {:>10} {:>11} {:>12} {:>11}",
        "subscriptions",
        "connections",
        "payload",
        "completed",
        "setup ms",
        "p50 us",
        "p99 us",
        "max us",
        "unaccounted",
        "broker MiB",
        "broker us/d"
    ));
    table.row(
        &r,
        format_args!(
            "{:>13} {:>11} {:>7} {:>9} {:>9.0} {:>10.0} {:>10.0} {:>10.0} {:>11} {} {}",
            r.subscriptions,
            r.connections,
            r.payload,
            r.completed,
            r.setup_ms,
            r.p50_us,
            r.p99_us,
            r.max_us,
            r.unaccounted,
            opt_col(r.broker_peak_rss_mib, 12),
            r.broker_cpu_us_per_delivery
                .map_or_else(|| format!("{:>11}", "-"), |v| format!("{v:>11.2}"))
        ),
    );
    results.append(&r);
    if r.unaccounted > 0 || r.timed_out > 0 || r.subscription_failures > 0 {
        eprintln!(
            "felix-bench: broadcast: {} publishes timed out, {} deliveries unaccounted, {} subscriptions failed{}",
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

/// Runs the broadcast workload against the broker `config` reaches.
async fn broadcast(
    config: &ClientConfig,
    namespace: &str,
    args: &BroadcastArgs,
    broker_cpu: impl Fn() -> Option<Duration>,
) -> Result<BroadcastReport, String> {
    let subscriptions = args.subscriptions as usize;
    let limit = felix_client::tls::MAX_BROKER_STREAMS as usize;
    let connections = connections_for(subscriptions, args.connections, limit);
    let max_per_connection = check_per_connection(subscriptions, connections, limit)?;
    let stream = format!(
        "broadcast-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_micros())
    );
    let t0 = Instant::now();
    let publisher = Client::connect(config.clone())
        .await
        .map_err(|e| format!("connecting the publisher: {e}"))?;
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut c = config.clone();
        c.event_connections = 1;
        c.publish_streams = 1;
        c.cache_streams = 1;
        clients.push(Client::connect(c).await.map_err(|e| e.to_string())?);
    }
    let connect = t0.elapsed();

    let t1 = Instant::now();
    let mut setups = tokio::task::JoinSet::new();
    for (client, share) in clients.iter().zip(spread(subscriptions, connections)) {
        let (client, namespace, stream) = (client.clone(), namespace.to_string(), stream.clone());
        setups.spawn(async move { subscribe_many(&client, &namespace, &stream, share).await });
    }
    let mut subs = Vec::with_capacity(subscriptions);
    while let Some(done) = setups.join_next().await {
        match done.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(s) => subs.extend(s),
            Err(e) => {
                let made = subs.len();
                setups.abort_all();
                drop(subs);
                close_all(clients.into_iter().chain([publisher])).await;
                return Err(format!(
                    "setting up subscriptions failed after at least {made} of {subscriptions}: {e}"
                ));
            }
        }
    }
    let setup = t1.elapsed();
    eprintln!(
        "felix-bench: {} subscriptions over {connections} connections set up in {:.0} ms",
        subs.len(),
        setup.as_secs_f64() * 1e3
    );

    let events = (args.warmup + args.publishes) as usize;
    let tally = Arc::new(Tally::new(events, args.subscriptions));
    let mut readers = tokio::task::JoinSet::new();
    for sub in subs {
        readers.spawn(read(sub, tally.clone(), events));
    }
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut latencies: Vec<u128> = Vec::with_capacity(args.publishes as usize);
    let (mut timed_out, mut unaccounted) = (0usize, 0u64);
    let cpu_before = broker_cpu();
    for seq in 0..events {
        let payload = event_payload(seq as u64, args.payload as usize);
        let sent = Instant::now();
        publisher
            .publish(namespace, &stream, payload, Ack::None)
            .await
            .map_err(|e| format!("publish {seq}: {e}"))?;
        let deadline = tokio::time::Instant::from_std(sent + timeout);
        match tally.wait(seq, deadline).await {
            Some(at) if seq >= args.warmup as usize => {
                latencies.push(at.saturating_duration_since(sent).as_nanos())
            }
            Some(_) => {}
            None => {
                let missing = tally.missing(seq);
                eprintln!(
                    "felix-bench: event {seq}: {missing} of {subscriptions} subscriptions had not received it after {timeout:?}"
                );
                timed_out += 1;
                unaccounted += missing;
            }
        }
    }
    let broker_cpu_us_per_delivery = cpu_us_per(
        cpu_before,
        broker_cpu(),
        (events as u64 * u64::from(args.subscriptions)).saturating_sub(unaccounted),
    );
    // Readers with every event have returned; the rest were accounted
    // for above and are stopped.
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    close_all(clients.into_iter().chain([publisher])).await;
    latencies.sort_unstable();
    let first_failure = tally
        .first_failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(BroadcastReport {
        bench: "broadcast",
        subscriptions,
        connections,
        max_per_connection,
        payload: args.payload as usize,
        publishes: args.publishes as usize,
        warmup: args.warmup as usize,
        connect_ms: connect.as_secs_f64() * 1e3,
        setup_ms: setup.as_secs_f64() * 1e3,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        max_us: latencies.last().map_or(0.0, |&n| n as f64 / 1000.0),
        completed: latencies.len(),
        timed_out,
        unaccounted,
        gap_events: tally.gap_events.load(Ordering::Relaxed),
        subscription_failures: tally.failures.load(Ordering::Relaxed),
        first_failure,
        threads: runtime_threads(),
        busy_poll: args.broker.busy_poll,
        broker_cpu_us_per_delivery,
        ..BroadcastReport::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreading_is_even_and_complete() {
        assert_eq!(spread(1000, 8), vec![125; 8]);
        assert_eq!(spread(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(spread(3, 5), vec![1, 1, 1, 0, 0]);
        assert_eq!(spread(0, 3), vec![0, 0, 0]);
        assert_eq!(spread(7, 0), vec![7], "no parts is one part");
        for (total, parts) in [(25_000, 50), (25_000, 24), (1, 1), (1023, 7)] {
            let s = spread(total, parts);
            assert_eq!(s.len(), parts);
            assert_eq!(s.iter().sum::<usize>(), total);
            let (lo, hi) = (s.iter().min(), s.iter().max());
            assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{s:?}");
        }
    }

    #[test]
    fn connections_default_to_eight_or_as_many_as_needed() {
        assert_eq!(connections_for(1000, None, 1024), 8);
        assert_eq!(connections_for(8192, None, 1024), 8);
        assert_eq!(connections_for(8193, None, 1024), 9);
        assert_eq!(connections_for(25_000, None, 1024), 25);
        assert_eq!(connections_for(25_000, Some(50), 1024), 50, "explicit wins");
        assert_eq!(
            connections_for(25_000, Some(8), 1024),
            8,
            "and is checked later"
        );
        assert_eq!(connections_for(10, Some(0), 1024), 1);
    }

    #[test]
    fn connections_must_hold_their_share() {
        assert_eq!(check_per_connection(1000, 8, 1024), Ok(125));
        assert_eq!(check_per_connection(25_000, 50, 1024), Ok(500));
        assert_eq!(check_per_connection(1024, 1, 1024), Ok(1024));
        let err = check_per_connection(25_000, 8, 1024).expect_err("3125 per connection");
        assert!(err.contains("3125 on one"), "{err}");
        assert!(err.contains("--connections 25 or more"), "{err}");
        assert!(check_per_connection(1025, 1, 1024).is_err());
    }

    #[test]
    fn payloads_carry_their_sequence_number() {
        let p = event_payload(0x0102_0304_0506_0708, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(&p[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(p[8..].iter().all(|&b| b == 0));
        assert_eq!(event_seq(&p), Some(0x0102_0304_0506_0708));
        assert_eq!(event_payload(5, 8).len(), 8);
        assert_eq!(
            event_payload(5, 2).len(),
            8,
            "never shorter than the number"
        );
        assert_eq!(event_seq(&[1, 2, 3]), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_broadcast_reaches_every_subscription() {
        let (broker, config) = crate::target::test_broker();
        let args = BroadcastArgs {
            subscriptions: 20,
            connections: Some(3),
            payload: 64,
            publishes: 5,
            warmup: 1,
            timeout_secs: 10,
            broker: Default::default(),
            results: "unused.jsonl".into(),
            json: false,
        };
        let run = broadcast(&config, "default", &args, || None).await;
        broker.shutdown().await;
        let r = run.expect("runs");
        assert_eq!((r.subscriptions, r.connections), (20, 3));
        assert_eq!(r.max_per_connection, 7);
        assert_eq!((r.completed, r.timed_out, r.unaccounted), (5, 0, 0));
        assert_eq!((r.gap_events, r.subscription_failures), (0, 0));
        assert!(r.p50_us > 0.0 && r.p50_us <= r.p99_us && r.p99_us <= r.max_us);
        let line = serde_json::to_value(&r).expect("json");
        assert_eq!(line["bench"], "broadcast");
        assert!(
            line.get("broker_peak_rss_mib").is_none(),
            "only when spawned"
        );
    }

    #[tokio::test]
    async fn the_last_arrival_completes_an_event() {
        let tally = Tally::new(2, 3);
        let soon = || tokio::time::Instant::now() + Duration::from_millis(50);
        tally.arrived(0);
        tally.arrived(0);
        assert_eq!(tally.wait(0, soon()).await, None, "2 of 3");
        assert_eq!(tally.missing(0), 1);
        tally.arrived(0);
        assert!(tally.wait(0, soon()).await.is_some());
        assert_eq!(tally.missing(0), 0);
        tally.arrived(7); // not an event of the run: ignored
        assert_eq!(tally.missing(1), 3);
    }

    #[tokio::test]
    async fn a_waiter_is_woken_by_the_last_arrival() {
        let tally = Arc::new(Tally::new(1, 2));
        let waiter = {
            let tally = tally.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                tally.wait(0, deadline).await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        tally.arrived(0);
        tally.arrived(0);
        let done = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken well before the deadline")
            .expect("task");
        assert!(done.is_some());
    }
}
