//! Broker counters, shared by the core and the QUIC shell, rendered in the
//! Prometheus text format by [`Metrics::render`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident : $kind:literal ),* $(,)?) => {
        /// Every counter and gauge the broker exports.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $( $(#[doc = $doc])* pub $name: AtomicU64, )*
        }

        impl Metrics {
            /// Renders every metric as Prometheus text, `felix_` prefixed.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(
                    let help = concat!($($doc),*).trim();
                    let _ = writeln!(out, "# HELP felix_{} {}", stringify!($name), help);
                    let _ = writeln!(out, "# TYPE felix_{} {}", stringify!($name), $kind);
                    let _ = writeln!(out, "felix_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
                out
            }
        }
    };
}

counters! {
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
    bytes_received: "counter",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.dropped_events.fetch_add(7, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("# TYPE felix_dropped_events counter\nfelix_dropped_events 7\n"));
        assert!(text.contains(
            "# HELP felix_subscribers Live subscribers.\n# TYPE felix_subscribers gauge\n"
        ));
    }
}
