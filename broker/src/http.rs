//! `/metrics` (Prometheus text format) and `/healthz` over plain HTTP/1.1.
//!
//! Two fixed GET routes do not need an HTTP framework: the request line is
//! read (bounded), the answer written, the connection closed.
//!
//! The endpoint must never cost the broker more than a scrape: at most
//! [`MAX_METRICS_CONNECTIONS`] connections are served at once (the rest are
//! closed on accept and counted in `felix_metrics_connections_refused`),
//! each lives at most [`CONNECTION_TIMEOUT`], and a failing `accept` (out
//! of file descriptors: `EMFILE`) backs off instead of spinning a core.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::core::Core;

/// Most metrics connections served at once. A scraper or a health probe
/// holds one for a few milliseconds, so this is far above real use, and
/// low enough that idle or slow clients cannot hold many descriptors.
pub const MAX_METRICS_CONNECTIONS: usize = 64;

/// Longest a metrics connection lives, from accept to close: a client that
/// sends nothing, or reads its answer slowly, gives its slot back by then.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The wait after failed accepts: 100 ms after the first failure of a run,
/// doubling up to 1 s; a successful accept starts over. An `accept` error
/// such as `EMFILE` repeats at once while the cause lasts (the pending
/// connection stays queued), so retrying without a pause spins a core.
#[derive(Debug, Default)]
struct AcceptBackoff {
    /// Failures since the last successful accept.
    failures: u32,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(1);

    /// Records a failure; returns how long to wait before accepting again.
    fn failed(&mut self) -> Duration {
        let delay = Self::FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Records a successful accept.
    fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Whether the last failure was the first of its run (worth a warning;
    /// the rest of the run goes to debug, so a lasting cause cannot flood
    /// the log).
    fn first_of_run(&self) -> bool {
        self.failures == 1
    }
}

/// Serves until the task is dropped; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    core: Arc<Core>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, core));
    Ok((local, task))
}

async fn accept_loop(listener: TcpListener, core: Arc<Core>) {
    let slots = Arc::new(Semaphore::new(MAX_METRICS_CONNECTIONS));
    let mut backoff = AcceptBackoff::default();
    loop {
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(error) => {
                let delay = backoff.failed();
                if backoff.first_of_run() {
                    tracing::warn!(%error, ?delay, "metrics endpoint: accept failed; backing off (repeats logged at debug)");
                } else {
                    tracing::debug!(%error, ?delay, "metrics endpoint: accept failed again");
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        backoff.succeeded();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Dropping the socket closes it.
            core.metrics
                .metrics_connections_refused
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let core = core.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, respond(socket, &core)).await;
            drop(slot);
        });
    }
}

/// Reads one request (its first 1 KiB) and answers it.
async fn respond(mut socket: TcpStream, core: &Core) {
    let mut buf = [0u8; 1024];
    let n = match socket.read(&mut buf).await {
        Ok(n) if n > 0 => n,
        _ => return,
    };
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", core.metrics.render()),
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
        _ => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics or /healthz\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_back_off_from_100_ms_to_1_s_and_a_success_starts_over() {
        let mut b = AcceptBackoff::default();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(b.failed()), 100);
        assert!(b.first_of_run());
        let next: Vec<u128> = (0..5).map(|_| ms(b.failed())).collect();
        assert_eq!(next, [200, 400, 800, 1000, 1000]);
        assert!(!b.first_of_run());
        for _ in 0..100 {
            assert_eq!(ms(b.failed()), 1000);
        }
        b.succeeded();
        assert_eq!(ms(b.failed()), 100);
        assert!(b.first_of_run());
    }
}
