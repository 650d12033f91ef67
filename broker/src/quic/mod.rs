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

mod budget;
mod events;
mod shards;
mod socket;
mod stream;

pub use shards::Shards;

pub(crate) use stream::wait_writable;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::core::session::Role;
use crate::core::Core;

/// Application close code sent on a graceful shutdown.
pub const CLOSE_SHUTDOWN: u32 = 0;
/// Application close code sent when the connection limit (overall or per
/// source address) is reached.
pub const CLOSE_CONNECTION_LIMIT: u32 = 1;
/// Application close code sent when no stream authenticated in time.
pub const CLOSE_AUTH_TIMEOUT: u32 = 2;

/// Read-ahead one connection's streams may hold at frame boundaries
/// (16 streams' worth of 64 KiB); broker-wide, a quarter of the receive
/// budget. Never waited for: a stream that finds none reads headers alone.
pub const READ_AHEAD_PER_CONNECTION: usize = 1024 * 1024;

/// First frames (at `max_auth_frame_bytes`) one connection's streams may
/// be receiving at once before they authenticated; past it a stream is
/// refused. Unauthenticated peers never hold the shared receive budget.
pub const PRE_AUTH_FRAMES_PER_CONNECTION: usize = 4;

/// Limits the shell enforces (see docs/operations.md, "Memory budget").
#[derive(Debug, Clone)]
pub struct ShellLimits {
    /// Open connections.
    pub max_connections: usize,
    /// Open connections from one source IP address.
    pub max_connections_per_source: usize,
    /// Frame payload cap.
    pub max_frame_bytes: u32,
    /// Payload cap of a stream's first frame (before it authenticated).
    pub max_auth_frame_bytes: u32,
    /// A connection with no authenticated stream after this long is closed,
    /// and so is a stream that has not authenticated by then.
    pub auth_timeout: Duration,
    /// A frame must arrive whole within this long of its first byte.
    pub frame_timeout: Duration,
    /// Bytes of partly received frames one connection may hold (raised to
    /// one whole frame at the cap, so every legal frame can be received);
    /// a frame past it is refused and its stream ended.
    pub receive_budget_per_connection: usize,
    /// Bytes of partly received frames all connections together may hold;
    /// a frame past it waits for other connections' frames to complete.
    pub receive_budget: usize,
    /// How long a drain waits for writers before closing anyway.
    pub drain_timeout: Duration,
}

impl Default for ShellLimits {
    fn default() -> Self {
        ShellLimits {
            max_connections: 10_000,
            max_connections_per_source: 64,
            max_frame_bytes: felix_wire::DEFAULT_MAX_FRAME_BYTES,
            max_auth_frame_bytes: 64 * 1024,
            auth_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(30),
            receive_budget_per_connection: 32 * 1024 * 1024,
            receive_budget: 64 * 1024 * 1024,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl ShellLimits {
    /// What one connection may buffer: at least one whole frame at the cap.
    fn connection_budget(&self) -> usize {
        let whole_frame = self.max_frame_bytes as usize + felix_wire::Header::LEN;
        self.receive_budget_per_connection.max(whole_frame)
    }
}

/// What every task of one connection shares.
#[derive(Clone)]
pub(crate) struct ConnectionContext {
    pub(crate) core: Arc<Core>,
    pub(crate) connection: quinn::Connection,
    pub(crate) tasks: TaskTracker,
    pub(crate) writers: TaskTracker,
    pub(crate) subscriptions: Arc<AtomicUsize>,
    pub(crate) limits: Arc<ShellLimits>,
    /// This connection's receive budget and the broker-wide one.
    pub(crate) budgets: budget::Budgets,
    /// Read-ahead at frame boundaries: a pool apart, never waited for.
    pub(crate) read_ahead: budget::Budgets,
    /// Frames of streams not yet authenticated: a small pool per connection
    /// ([`PRE_AUTH_FRAMES_PER_CONNECTION`] frames at the auth cap).
    pub(crate) pre_auth: budget::Budgets,
    /// Set once any stream of the connection has authenticated.
    pub(crate) authenticated: Arc<AtomicBool>,
    /// Tells the broker's timer task that the core armed a new timer.
    pub(crate) timer: Arc<tokio::sync::Notify>,
    /// Writes every subscription's events on this connection.
    pub(crate) events: Arc<events::EventWriter>,
    /// Cluster mode: carries forwarded requests out on NATS JetStream.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// A broker serving on a bound endpoint.
pub struct RunningBroker {
    /// One endpoint, or one per shard (all on the same port).
    endpoints: Vec<quinn::Endpoint>,
    core: Arc<Core>,
    tasks: TaskTracker,
    writers: TaskTracker,
    accepts: Vec<tokio::task::JoinHandle<()>>,
    timers: tokio::task::JoinHandle<()>,
    limits: ShellLimits,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The shard threads (none when serving on the caller's runtime).
    shards: Vec<shards::ShardThread>,
}

impl Drop for RunningBroker {
    /// A broker dropped without [`RunningBroker::shutdown`] still stops
    /// its accept loop and its timer task, which hold the core.
    fn drop(&mut self) {
        for accept in &self.accepts {
            accept.abort();
        }
        self.timers.abort();
        // Dropping a shard's handle tells its thread to stop.
    }
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
        Self::start_clustered(addr, server_config, core, limits, None)
    }

    /// Binds `addr` and starts accepting; with `cluster`, requests the
    /// core forwards (its `clustered` flag set) go to NATS JetStream.
    /// Serves on the caller's runtime (see [`RunningBroker::start_sharded`]).
    pub fn start_clustered(
        addr: SocketAddr,
        server_config: quinn::ServerConfig,
        core: Arc<Core>,
        limits: ShellLimits,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> std::io::Result<Self> {
        Self::start_sharded(
            addr,
            server_config,
            core,
            limits,
            cluster,
            Shards::default(),
        )
    }

    /// Like [`RunningBroker::start_clustered`], on `shards.count` threads
    /// of their own (none: on the caller's runtime). Each shard thread
    /// runs a single-threaded runtime with its own endpoint on the shared
    /// port (`SO_REUSEPORT`); a connection and all its streams stay on the
    /// shard the kernel gave it, so handing a request from packet to reply
    /// never wakes another thread. The core, the budgets and the limits
    /// are shared; the timer task stays on the caller's runtime.
    pub fn start_sharded(
        addr: SocketAddr,
        server_config: quinn::ServerConfig,
        core: Arc<Core>,
        limits: ShellLimits,
        cluster: Option<Arc<crate::cluster::Cluster>>,
        shards: Shards,
    ) -> std::io::Result<Self> {
        // Bound first: a taken port must not leave a timer task behind.
        let sockets = if shards.count == 0 {
            vec![socket::bind(addr)?]
        } else {
            socket::bind_shared(addr, shards.count)?
        };
        let tasks = TaskTracker::new();
        let writers = TaskTracker::new();
        let timer = Arc::new(tokio::sync::Notify::new());
        let accept = Arc::new(AcceptContext::new(
            core.clone(),
            tasks.clone(),
            writers.clone(),
            limits.clone(),
            timer.clone(),
            cluster.clone(),
        ));
        let mut endpoints = Vec::new();
        let mut accepts = Vec::new();
        let mut threads = Vec::new();
        for (i, udp) in sockets.into_iter().enumerate() {
            if shards.count == 0 {
                let endpoint = new_endpoint(server_config.clone(), udp)?;
                accepts.push(tokio::spawn(accept_loop(endpoint.clone(), accept.clone())));
                endpoints.push(endpoint);
            } else {
                // On an error, shards already started stop as their
                // handles drop.
                let (thread, endpoint, accept_task) = shards::ShardThread::start(
                    i,
                    shards.busy_poll,
                    udp,
                    server_config.clone(),
                    accept.clone(),
                )?;
                threads.push(thread);
                endpoints.push(endpoint);
                accepts.push(accept_task);
            }
        }
        let timers = tokio::spawn(run_timers(core.clone(), timer));
        Ok(RunningBroker {
            endpoints,
            core,
            tasks,
            writers,
            accepts,
            timers,
            limits,
            cluster,
            shards: threads,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoints
            .first()
            .and_then(|e| e.local_addr().ok())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The core (metrics, state).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Graceful drain: stop accepting, flush pending events to subscriber
    /// queues, close the queues so writers send what is queued and finish
    /// their streams, wait (bounded), then close every connection.
    pub async fn shutdown(mut self) {
        for accept in &self.accepts {
            accept.abort();
        }
        for endpoint in &self.endpoints {
            endpoint.set_server_config(None);
        }
        // Refuse new publishes first, so everything acked is in the flush.
        self.core.pubsub.begin_drain();
        self.core.pubsub.flush_all();
        self.timers.abort();
        if let Some(cluster) = &self.cluster {
            cluster.shutdown().await;
        }
        self.core.pubsub.close_all();
        self.writers.close();
        if tokio::time::timeout(self.limits.drain_timeout, self.writers.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain timed out; closing connections with events still queued");
        }
        for endpoint in &self.endpoints {
            endpoint.close(CLOSE_SHUTDOWN.into(), b"broker shutting down");
        }
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
        for endpoint in &self.endpoints {
            let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        }
        for shard in std::mem::take(&mut self.shards) {
            shard.stop().await;
        }
    }
}

/// Open connections per source address.
#[derive(Debug, Default)]
struct PerSource(Mutex<HashMap<IpAddr, usize>>);

impl PerSource {
    /// Counts a connection from `ip` unless it already has `max`.
    fn try_add(&self, ip: IpAddr, max: usize) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn remove(&self, ip: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// The broker's one timer task: sleeps until the core's next deadline
/// ([`crate::core::pubsub::PubSub::poll_timeout`]), or until a stream
/// reports that the core armed an earlier one, then lets the core handle
/// what is due; and once a second reclaims expired cache entries, so their
/// memory returns even if nobody reads them. Aborted by the drain.
async fn run_timers(core: Arc<Core>, rearm: Arc<tokio::sync::Notify>) {
    let mut reclaim = tokio::time::interval(Duration::from_secs(1));
    loop {
        let next = core.pubsub.poll_timeout();
        let rearmed = rearm.notified();
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = due => core.pubsub.handle_timeout(std::time::Instant::now()),
            () = rearmed => {}
            _ = reclaim.tick() => {
                core.cache.reclaim(std::time::Instant::now());
            }
        }
    }
}

/// What every shard's accept loop shares: the core, the task trackers,
/// the limits and the broker-wide budgets.
pub(crate) struct AcceptContext {
    core: Arc<Core>,
    tasks: TaskTracker,
    writers: TaskTracker,
    limits: Arc<ShellLimits>,
    timer: Arc<tokio::sync::Notify>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    broker_budget: Arc<budget::ByteBudget>,
    broker_read_ahead: Arc<budget::ByteBudget>,
    broker_pre_auth: Arc<budget::ByteBudget>,
    per_source: Arc<PerSource>,
}

impl AcceptContext {
    fn new(
        core: Arc<Core>,
        tasks: TaskTracker,
        writers: TaskTracker,
        limits: ShellLimits,
        timer: Arc<tokio::sync::Notify>,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Self {
        let broker_budget = budget::ByteBudget::new(limits.receive_budget);
        let broker_read_ahead = budget::ByteBudget::new(limits.receive_budget / 4);
        AcceptContext {
            core,
            tasks,
            writers,
            limits: Arc::new(limits),
            timer,
            cluster,
            broker_budget,
            broker_read_ahead,
            // Bounded per connection; the broker-wide side is never the limit.
            broker_pre_auth: budget::ByteBudget::new(usize::MAX / 4),
            per_source: Arc::new(PerSource::default()),
        }
    }
}

/// A quinn endpoint serving felix-wire on `socket`, driven by the current
/// runtime.
fn new_endpoint(
    server_config: quinn::ServerConfig,
    socket: std::net::UdpSocket,
) -> std::io::Result<quinn::Endpoint> {
    quinn::Endpoint::new(
        crate::tls::endpoint_config(),
        Some(server_config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<AcceptContext>) {
    let AcceptContext {
        core,
        tasks,
        writers,
        limits,
        timer,
        cluster,
        broker_budget,
        broker_read_ahead,
        broker_pre_auth,
        per_source,
    } = &*shared;
    while let Some(incoming) = endpoint.accept().await {
        let core = core.clone();
        let conn_tasks = tasks.clone();
        let writers = writers.clone();
        let limits = limits.clone();
        let broker_budget = broker_budget.clone();
        let broker_read_ahead = broker_read_ahead.clone();
        let broker_pre_auth = broker_pre_auth.clone();
        let per_source = per_source.clone();
        let timer = timer.clone();
        let cluster = cluster.clone();
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
            if open >= limits.max_connections {
                core.metrics.connections_open.fetch_sub(1, Ordering::AcqRel);
                core.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(remote = %connection.remote_address(), "connection limit reached; closing");
                // Completing the handshake lets the client read why.
                connection.close(CLOSE_CONNECTION_LIMIT.into(), b"connection limit reached");
                return;
            }
            let source = connection.remote_address().ip();
            if !per_source.try_add(source, limits.max_connections_per_source) {
                core.metrics.connections_open.fetch_sub(1, Ordering::AcqRel);
                core.metrics
                    .connections_refused_per_source
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(%source, "per-source connection limit reached; closing");
                connection.close(
                    CLOSE_CONNECTION_LIMIT.into(),
                    b"connection limit per source address reached",
                );
                return;
            }
            core.metrics.connections_accepted.fetch_add(1, Ordering::Relaxed);
            let ctx = ConnectionContext {
                core: core.clone(),
                connection,
                tasks: conn_tasks,
                writers,
                subscriptions: Arc::new(AtomicUsize::new(0)),
                budgets: budget::Budgets {
                    connection: budget::ByteBudget::new(limits.connection_budget()),
                    broker: broker_budget,
                    metrics: core.metrics.clone(),
                },
                read_ahead: budget::Budgets {
                    connection: budget::ByteBudget::new(READ_AHEAD_PER_CONNECTION),
                    broker: broker_read_ahead,
                    metrics: core.metrics.clone(),
                },
                pre_auth: budget::Budgets {
                    connection: budget::ByteBudget::new(
                        PRE_AUTH_FRAMES_PER_CONNECTION
                            * (limits.max_auth_frame_bytes as usize + felix_wire::Header::LEN),
                    ),
                    broker: broker_pre_auth,
                    metrics: core.metrics.clone(),
                },
                limits,
                authenticated: Arc::default(),
                timer,
                events: Arc::default(),
                cluster: cluster.clone(),
            };
            serve_connection(ctx).await;
            per_source.remove(source);
            core.metrics.connections_open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

async fn serve_connection(ctx: ConnectionContext) {
    let remote = ctx.connection.remote_address();
    tracing::debug!(%remote, "connection open");
    // Keep-alives would keep a connection that never authenticates open
    // for ever, holding a connection slot.
    let auth_deadline = tokio::time::sleep(ctx.limits.auth_timeout);
    tokio::pin!(auth_deadline);
    let mut auth_checked = false;
    loop {
        tokio::select! {
            () = &mut auth_deadline, if !auth_checked => {
                auth_checked = true;
                if !ctx.authenticated.load(Ordering::Acquire) {
                    ctx.core.metrics.auth_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%remote, "no stream authenticated in time; closing");
                    ctx.connection.close(CLOSE_AUTH_TIMEOUT.into(), b"authentication timeout");
                }
            }
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
