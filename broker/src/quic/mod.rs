//! The QUIC shell: a thin quinn/tokio layer around the sans-IO core.
//!
//! - the accept loop never stops for a failed handshake (counted, logged)
//!   and refuses connections over the limit with a close reason;
//! - each connection accepts bidirectional (control) and unidirectional
//!   (publish-only) streams and runs one task per stream ([`stream`]);
//! - each connection has one event writer task serving all its
//!   subscriptions ([`events`]);
//! - [`RunningBroker::shutdown`] drains: stop accepting, flush pending
//!   events, let writers empty their queues and finish their streams, then
//!   close connections with an application close reason.

mod events;
mod socket;
mod stream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::core::session::Role;
use crate::core::Core;

/// Application close code sent on a graceful shutdown.
pub const CLOSE_SHUTDOWN: u32 = 0;
/// Application close code sent when the connection limit is reached.
pub const CLOSE_CONNECTION_LIMIT: u32 = 1;

/// Limits the shell enforces.
#[derive(Debug, Clone)]
pub struct ShellLimits {
    /// Open connections.
    pub max_connections: usize,
    /// Frame payload cap.
    pub max_frame_bytes: u32,
    /// How long a drain waits for writers before closing anyway.
    pub drain_timeout: Duration,
}

/// What every task of one connection shares.
#[derive(Clone)]
pub(crate) struct ConnectionContext {
    pub(crate) core: Arc<Core>,
    pub(crate) connection: quinn::Connection,
    pub(crate) tasks: TaskTracker,
    pub(crate) writers: TaskTracker,
    pub(crate) subscriptions: Arc<AtomicUsize>,
    pub(crate) max_frame_bytes: u32,
    /// Writes every subscription's events on this connection.
    pub(crate) events: Arc<events::EventWriter>,
}

/// A broker serving on a bound endpoint.
pub struct RunningBroker {
    endpoint: quinn::Endpoint,
    core: Arc<Core>,
    tasks: TaskTracker,
    writers: TaskTracker,
    accept: tokio::task::JoinHandle<()>,
    limits: ShellLimits,
}

impl std::fmt::Debug for RunningBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningBroker")
            .field("local_addr", &self.local_addr())
            .finish()
    }
}

impl RunningBroker {
    /// Binds `addr` and starts accepting.
    pub fn start(
        addr: SocketAddr,
        server_config: quinn::ServerConfig,
        core: Arc<Core>,
        limits: ShellLimits,
    ) -> std::io::Result<Self> {
        let endpoint = quinn::Endpoint::new(
            crate::tls::endpoint_config(),
            Some(server_config),
            socket::bind(addr)?,
            Arc::new(quinn::TokioRuntime),
        )?;
        let tasks = TaskTracker::new();
        let writers = TaskTracker::new();
        let accept = tokio::spawn(accept_loop(
            endpoint.clone(),
            core.clone(),
            tasks.clone(),
            writers.clone(),
            limits.clone(),
        ));
        let reclaim_core = core.clone();
        tasks.spawn(async move {
            // Expired cache entries are reclaimed even if nobody reads them.
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if Arc::strong_count(&reclaim_core) == 1 {
                    return;
                }
                reclaim_core.cache.reclaim(std::time::Instant::now());
            }
        });
        Ok(RunningBroker {
            endpoint,
            core,
            tasks,
            writers,
            accept,
            limits,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The core (metrics, state).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Graceful drain: stop accepting, flush pending events to subscriber
    /// queues, close the queues so writers send what is queued and finish
    /// their streams, wait (bounded), then close every connection.
    pub async fn shutdown(self) {
        self.accept.abort();
        self.endpoint.set_server_config(None);
        // Refuse new publishes first, so everything acked is in the flush.
        self.core.pubsub.begin_drain();
        self.core.pubsub.flush_all();
        self.core.pubsub.close_all();
        self.writers.close();
        if tokio::time::timeout(self.limits.drain_timeout, self.writers.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain timed out; closing connections with events still queued");
        }
        self.endpoint
            .close(CLOSE_SHUTDOWN.into(), b"broker shutting down");
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    core: Arc<Core>,
    tasks: TaskTracker,
    writers: TaskTracker,
    limits: ShellLimits,
) {
    while let Some(incoming) = endpoint.accept().await {
        let core = core.clone();
        let conn_tasks = tasks.clone();
        let writers = writers.clone();
        let max_connections = limits.max_connections;
        let max_frame_bytes = limits.max_frame_bytes;
        tasks.spawn(async move {
            // A failed handshake only ever affects this task.
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    core.metrics.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "handshake failed");
                    return;
                }
            };
            let open = core.metrics.connections_open.fetch_add(1, Ordering::AcqRel) as usize;
            if open >= max_connections {
                core.metrics.connections_open.fetch_sub(1, Ordering::AcqRel);
                core.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(remote = %connection.remote_address(), "connection limit reached; closing");
                // Completing the handshake lets the client read why.
                connection.close(CLOSE_CONNECTION_LIMIT.into(), b"connection limit reached");
                return;
            }
            core.metrics.connections_accepted.fetch_add(1, Ordering::Relaxed);
            let ctx = ConnectionContext {
                core: core.clone(),
                connection,
                tasks: conn_tasks,
                writers,
                subscriptions: Arc::new(AtomicUsize::new(0)),
                max_frame_bytes,
                events: Arc::default(),
            };
            serve_connection(ctx).await;
            core.metrics.connections_open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

async fn serve_connection(ctx: ConnectionContext) {
    let remote = ctx.connection.remote_address();
    tracing::debug!(%remote, "connection open");
    loop {
        tokio::select! {
            bi = ctx.connection.accept_bi() => match bi {
                Ok((send, recv)) => {
                    let c = ctx.clone();
                    ctx.tasks.spawn(stream::run(c, Role::Control, Some(send), recv));
                }
                Err(e) => {
                    tracing::debug!(%remote, reason = %e, "connection closed");
                    return;
                }
            },
            uni = ctx.connection.accept_uni() => match uni {
                Ok(recv) => {
                    let c = ctx.clone();
                    ctx.tasks.spawn(stream::run(c, Role::PublishOnly, None, recv));
                }
                Err(e) => {
                    tracing::debug!(%remote, reason = %e, "connection closed");
                    return;
                }
            },
        }
    }
}
