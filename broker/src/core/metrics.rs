//! Broker counters, gauges and latency histograms, shared by the core and
//! the QUIC shell, rendered in the Prometheus text format by
//! [`Metrics::render`].
//!
//! Names follow Prometheus conventions: every metric is prefixed `felix_`,
//! counters end in `_total`, byte quantities in `_bytes` and durations in
//! `_seconds`. A Rust field keeps its short name (`frames_received`); the
//! exported name is derived from it (`felix_frames_received_total`), or
//! given where the unit must move (`bytes_received` is exported as
//! `felix_received_bytes_total`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the latency histogram buckets, in nanoseconds: 10 us to
/// 1 s in 1-2.5-5 steps (the `+Inf` bucket is implicit). Fixed, so an
/// observation is a short scan and three relaxed atomic adds: no lock and
/// no allocation on the publish or cache path.
const BUCKET_BOUNDS_NS: [u64; 16] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// A latency histogram with fixed buckets, safe to observe from any
/// thread. Counts are kept per bucket and summed when rendered.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; BUCKET_BOUNDS_NS.len() + 1],
    /// Sum of every observation, nanoseconds.
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKET_BOUNDS_NS
            .iter()
            .position(|&bound| ns <= bound)
            .unwrap_or(BUCKET_BOUNDS_NS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Records the time from `start` to now.
    pub fn observe_since(&self, start: Instant) {
        self.observe(start.elapsed());
    }

    /// Observations recorded so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKET_BOUNDS_NS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = *bound as f64 / 1e9;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[BUCKET_BOUNDS_NS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

macro_rules! metrics {
    (
        counters { $( $(#[doc = $doc:literal])* $name:ident : $kind:literal $(as $export:literal)? ),* $(,)? }
        histograms { $( $(#[doc = $hdoc:literal])* $hname:ident ),* $(,)? }
    ) => {
        /// Every counter, gauge and histogram the broker exports.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $( $(#[doc = $doc])* pub $name: AtomicU64, )*
            $( $(#[doc = $hdoc])* pub $hname: Histogram, )*
        }

        impl Metrics {
            /// Renders every metric as Prometheus text (format 0.0.4).
            pub fn render(&self) -> String {
                let mut out = String::new();
                let _ = writeln!(out, "# HELP felix_build_info The broker's version; always 1.");
                let _ = writeln!(out, "# TYPE felix_build_info gauge");
                let _ = writeln!(out, "felix_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
                $(
                    let help = concat!($($doc),*).trim();
                    let name = exported_name(stringify!($name), [$($export)?].first().copied(), $kind);
                    let _ = writeln!(out, "# HELP {name} {help}");
                    let _ = writeln!(out, "# TYPE {name} {}", $kind);
                    let _ = writeln!(out, "{name} {}", self.$name.load(Ordering::Relaxed));
                )*
                $(
                    let help = concat!($($hdoc),*).trim();
                    self.$hname.render(&mut out, concat!("felix_", stringify!($hname)), help);
                )*
                out
            }
        }
    };
}

/// `felix_` + the field's name (or `export`, where the unit must move to
/// the end) + `_total` for a counter.
fn exported_name(field: &str, export: Option<&str>, kind: &str) -> String {
    let base = export.unwrap_or(field);
    match kind {
        "counter" => format!("felix_{base}_total"),
        _ => format!("felix_{base}"),
    }
}

metrics! {
counters {
    /// Connections accepted (handshake completed).
    connections_accepted: "counter",
    /// Connections open now.
    connections_open: "gauge",
    /// Connections refused by the connection limit.
    connections_refused: "counter",
    /// Handshakes that failed (bad TLS, ALPN offered, garbage).
    handshakes_failed: "counter",
    /// Connections refused because their source address has too many open.
    connections_refused_per_source: "counter",
    /// Connections closed because no stream authenticated within the auth timeout.
    auth_timeouts: "counter",
    /// Streams ended because a frame did not arrive whole within the frame timeout.
    frames_timed_out: "counter",
    /// Bytes of partly received frames held now (receive budget in use).
    receive_buffered_bytes: "gauge",
    /// Frames that waited for the broker-wide receive budget.
    receive_budget_waits: "counter",
    /// Streams ended because a frame did not fit their connection's receive budget.
    receive_budget_refusals: "counter",
    /// Streams accepted from clients.
    streams_accepted: "counter",
    /// Client streams being served now.
    streams_open: "gauge",
    /// Frames received.
    frames_received: "counter",
    /// Bytes received in frames.
    bytes_received: "counter" as "received_bytes",
    /// Malformed frames (each answered with an error frame).
    frames_malformed: "counter",
    /// Events published.
    published_events: "counter",
    /// Payload bytes published.
    published_bytes: "counter",
    /// Publishes refused because too many bytes were in flight.
    publish_rejected: "counter",
    /// Event batches fanned out (each encoded once).
    fanout_batches: "counter",
    /// Events written to subscribers' event streams.
    delivered_events: "counter",
    /// Events dropped by subscriber queue policies or the queue budget.
    dropped_events: "counter",
    /// Events not queued for a subscriber that was behind while the
    /// broker-wide queue budget was spent (also in dropped_events).
    queue_budget_drops: "counter",
    /// Subscribers marked lagging: a `block` publisher waited
    /// `queue_block_timeout` for their queue, which then drops new batches
    /// (counted in dropped_events) until it has caught up.
    queue_block_timeouts: "counter",
    /// Bytes of fanned-out batches held by subscriber queues (each batch once).
    queued_bytes: "gauge",
    /// Payload bytes retained for replay, all streams.
    replay_bytes: "gauge",
    /// Events that left a replay ring to keep it within its event or byte
    /// limits or the broker-wide replay budget.
    replay_trimmed_events: "counter",
    /// Streams created on first use (dev auth).
    streams_auto_created: "gauge",
    /// Live subscribers.
    subscribers: "gauge",
    /// Cache hits.
    cache_hits: "counter",
    /// Cache misses (absent or expired).
    cache_misses: "counter",
    /// Cache entries evicted to stay within the capacity or a tenant's quota.
    cache_evictions: "counter",
    /// Cache entries reclaimed after expiry.
    cache_expired: "counter",
    /// Cache puts refused because the entry alone exceeds the tenant quota or the capacity.
    cache_rejected: "counter",
    /// Cache entries held now.
    cache_entries: "gauge",
    /// Bytes the cache is charged now: keys, values and per-entry and per-tenant overhead.
    cache_bytes: "gauge",
    /// Failed authentications.
    auth_failures: "counter",
    /// Streams ended because their token expired after they authenticated.
    auth_expired: "counter",
    /// Requests refused for a name over max_name_bytes.
    names_too_long: "counter",
    /// Requests refused by permissions or tenant checks.
    permission_denied: "counter",
    /// Metrics (HTTP) connections closed on accept because the most
    /// allowed at once were open.
    metrics_connections_refused: "counter",
    /// Replay rings restored from the data directory at start.
    persist_restored: "counter",
    /// Replay rings skipped: not saved (write failed), or not restored
    /// (unreadable, renamed, or of an undeclared stream). Each is logged.
    persist_skipped: "counter",
    /// Cluster mode: events read from JetStream by this node's stream feeds.
    cluster_events_received: "counter",
    /// Cluster mode: stream feeds (one JetStream consumer each) running now.
    cluster_feeds: "gauge",
    /// Cluster mode: publishes, cache puts and gets that failed because
    /// NATS was unreachable, timed out or refused (each answered with an error).
    cluster_failures: "counter",
    /// Cluster mode: history events read from JetStream for subscribers
    /// starting before their node's replay ring.
    cluster_history_events: "counter",
}
histograms {
    /// Seconds from a publish being accepted to its batch being pushed to
    /// every subscriber queue (coalescing linger and encoding included);
    /// one observation per fanned-out batch, timed from its oldest event.
    publish_to_fanout_seconds,
    /// Seconds from a cache put or get frame arriving to its reply being
    /// ready, single-node mode (cluster mode's NATS round trip is not
    /// included).
    cache_request_seconds,
}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_end_in_total_and_units_come_last() {
        let m = Metrics::default();
        m.dropped_events.fetch_add(7, Ordering::Relaxed);
        m.bytes_received.fetch_add(5, Ordering::Relaxed);
        let text = m.render();
        assert!(text
            .contains("# TYPE felix_dropped_events_total counter\nfelix_dropped_events_total 7\n"));
        assert!(text.contains("felix_received_bytes_total 5\n"), "{text}");
        assert!(text.contains(
            "# HELP felix_subscribers Live subscribers.\n# TYPE felix_subscribers gauge\n"
        ));
        assert!(text.contains(concat!(
            "felix_build_info{version=\"",
            env!("CARGO_PKG_VERSION"),
            "\"} 1\n"
        )));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let mut words = line.split_whitespace().skip(2);
            let (name, kind) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
            assert!(
                !name.contains("bytes_") || name.ends_with("_bytes_total"),
                "{line}"
            );
        }
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let m = Metrics::default();
        let h = &m.publish_to_fanout_seconds;
        h.observe(Duration::from_micros(5));
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(2));
        let text = m.render();
        let line = |suffix: &str| {
            let want = format!("felix_publish_to_fanout_seconds{suffix} ");
            text.lines()
                .find_map(|l| l.strip_prefix(want.as_str()))
                .unwrap_or_else(|| panic!("no {want} in {text}"))
                .to_string()
        };
        assert_eq!(line("_bucket{le=\"0.00001\"}"), "1");
        assert_eq!(line("_bucket{le=\"0.00005\"}"), "2");
        assert_eq!(line("_bucket{le=\"0.005\"}"), "3");
        assert_eq!(line("_bucket{le=\"1\"}"), "3");
        assert_eq!(line("_bucket{le=\"+Inf\"}"), "4");
        assert_eq!(line("_count"), "4");
        assert_eq!(line("_sum"), "2.003035");
        assert!(text.contains("# TYPE felix_cache_request_seconds histogram\n"));
    }

    /// docs/operations.md lists every metric by its exported name, so an
    /// operator can find what a series means.
    #[test]
    fn the_operations_guide_lists_every_metric() {
        let docs = include_str!("../../../docs/operations.md");
        let text = Metrics::default().render();
        let missing: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| !docs.contains(&format!("`{name}`")))
            .collect();
        assert!(missing.is_empty(), "not in docs/operations.md: {missing:?}");
    }
}
