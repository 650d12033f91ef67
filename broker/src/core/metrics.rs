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
    /// Events dropped by subscriber queue policies.
    dropped_events: "counter",
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
    /// Requests refused by permissions or tenant checks.
    permission_denied: "counter",
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
