//! The [`Client`] handle: the main connection (control, publish and cache
//! streams), the event connections, reconnecting with exponential backoff
//! and failing over between broker addresses, and the pools of streams.
//!
//! Failover: every connection (main or event) is made by
//! [`Client::dial_with_backoff`], which tries the configured addresses in
//! turn, starting from the one that last worked. A connection found lost
//! moves that starting point past its address, so the next attempt goes to
//! another broker first instead of spending its time on one that just
//! went away.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use felix_wire::Frame;
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::error::{ClientError, ConnectError, TlsError};
use crate::events::EventConn;
use crate::pool::{Expect, RequestError, RequestStream, UniStream};

/// Delays between connection attempts: `initial`, doubling up to `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial` (at least 1 ms, so retries never spin).
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let next = initial.max(Duration::from_millis(1));
        Backoff {
            next,
            max: max.max(next),
        }
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }
}

/// The error a failed handshake means, and whether trying again can help
/// (a refused certificate or TLS alert will not change by retrying).
pub(crate) fn handshake_error(
    addr: std::net::SocketAddr,
    e: &quinn::ConnectionError,
) -> (ClientError, bool) {
    let crypto = |code: u64| (0x100..0x200).contains(&code);
    let tls = || {
        ClientError::Tls(TlsError::Handshake {
            addr,
            source: e.clone(),
        })
    };
    let connect = || ClientError::Connect {
        addr,
        source: ConnectError::Connection(e.clone()),
    };
    match e {
        quinn::ConnectionError::TransportError(t) if crypto(t.code.into()) => (tls(), false),
        quinn::ConnectionError::ConnectionClosed(c) if crypto(c.error_code.into()) => {
            (tls(), false)
        }
        quinn::ConnectionError::VersionMismatch => (connect(), false),
        _ => (connect(), true),
    }
}

/// Which pool of request streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolKind {
    /// Acked publishes.
    Publish,
    /// Cache requests.
    Cache,
}

struct State {
    conn: Option<quinn::Connection>,
    publish: Vec<Option<Arc<RequestStream>>>,
    cache: Vec<Option<Arc<RequestStream>>>,
    uni: Vec<Option<Arc<UniStream>>>,
    events: Vec<Option<Arc<EventConn>>>,
}

impl State {
    fn new(config: &ClientConfig) -> Self {
        State {
            conn: None,
            publish: vec![None; config.publish_streams.max(1)],
            cache: vec![None; config.cache_streams.max(1)],
            uni: vec![None; config.publish_streams.max(1)],
            events: vec![None; config.event_connections.max(1)],
        }
    }

    /// Forgets every stream of the main connection.
    fn drop_streams(&mut self) {
        self.publish.iter_mut().for_each(|s| *s = None);
        self.cache.iter_mut().for_each(|s| *s = None);
        self.uni.iter_mut().for_each(|s| *s = None);
    }
}

struct Inner {
    config: ClientConfig,
    endpoint: quinn::Endpoint,
    state: tokio::sync::Mutex<State>,
    server_flags: AtomicU16,
    next_publish: AtomicUsize,
    next_cache: AtomicUsize,
    next_event: AtomicUsize,
    next_subscription_id: AtomicU64,
    /// Index in [`ClientConfig::addrs`] of the address to try first: the
    /// one that last worked, or the one after an address whose connection
    /// was lost.
    preferred: AtomicUsize,
    closed: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: nothing can use the connection any more
        // (event connections close with their last subscription).
        if let Some(c) = self.state.get_mut().conn.take() {
            c.close(0u32.into(), b"client dropped");
        }
    }
}

/// A felix-wire client: a cheap, clonable handle (clones share the
/// connections and stream pools).
///
/// One QUIC connection carries the control, publish and cache streams;
/// [`ClientConfig::event_connections`] more carry subscriptions. A lost
/// connection is re-established, with exponential backoff, by the next
/// operation that needs it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addrs", &self.inner.config.addrs())
            .field("preferred", &self.inner.preferred.load(Ordering::Relaxed))
            .field("server_flags", &self.server_flags())
            .finish_non_exhaustive()
    }
}

fn pick(counter: &AtomicUsize, len: usize) -> usize {
    counter.fetch_add(1, Ordering::Relaxed) % len
}

impl Client {
    /// Connects to the first broker address that answers and authenticates
    /// a first control stream, which tells the broker's flags
    /// ([`Client::server_flags`]).
    ///
    /// Fails with [`ClientError::Connect`] or [`ClientError::Tls`] (for the
    /// address tried last) when no connection can be made within
    /// [`ClientConfig::connect_timeout`] (trying every address, with
    /// backoff between rounds), [`ClientError::AuthFailed`] when the broker
    /// refuses the credentials.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        // One socket serves every address: an IPv6 one (dual-stack on
        // the usual systems) as soon as any address needs it.
        let bind: std::net::SocketAddr = if config.addrs().iter().any(|a| a.is_ipv6()) {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let bind_error = |source| ClientError::Connect {
            addr: bind,
            source: ConnectError::Bind(source),
        };
        let mut endpoint = quinn::Endpoint::new(
            crate::tls::endpoint_config(),
            None,
            crate::socket::bind(bind).map_err(bind_error)?,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error)?;
        endpoint.set_default_client_config(crate::tls::quinn_config(&config)?);
        let client = Client {
            inner: Arc::new(Inner {
                state: tokio::sync::Mutex::new(State::new(&config)),
                config,
                endpoint,
                server_flags: AtomicU16::new(felix_wire::ORIGINAL_V1_FLAGS),
                next_publish: AtomicUsize::new(0),
                next_cache: AtomicUsize::new(0),
                next_event: AtomicUsize::new(0),
                next_subscription_id: AtomicU64::new(1),
                preferred: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
            }),
        };
        client.request_stream(PoolKind::Publish).await?;
        Ok(client)
    }

    /// The flags the broker advertised in `auth_ok` (exactly those), or
    /// [`felix_wire::ORIGINAL_V1_FLAGS`] if it answered `ok`. They choose
    /// between binary and JSON publishes.
    pub fn server_flags(&self) -> u16 {
        self.inner.server_flags.load(Ordering::Relaxed)
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A subscription id never used before by this client.
    pub(crate) fn next_subscription_id(&self) -> u64 {
        self.inner
            .next_subscription_id
            .fetch_add(1, Ordering::Relaxed)
    }

    fn check_open(&self) -> Result<(), ClientError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(crate::error::closed("client", "Client::close was called"));
        }
        Ok(())
    }

    /// One connection attempt to `addr`, given at most `timeout`.
    async fn dial(
        &self,
        addr: std::net::SocketAddr,
        timeout: Duration,
    ) -> Result<quinn::Connection, (ClientError, bool)> {
        let c = self.config();
        let connecting = self
            .inner
            .endpoint
            .connect(addr, &c.server_name)
            .map_err(|e| {
                let e = ClientError::Connect {
                    addr,
                    source: ConnectError::Start(e),
                };
                (e, false)
            })?;
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(handshake_error(addr, &e)),
            Err(_) => Err((
                ClientError::Connect {
                    addr,
                    source: ConnectError::TimedOut(timeout),
                },
                true,
            )),
        }
    }

    /// Connects to the first broker address that answers, within the
    /// connect timeout.
    ///
    /// Each round tries every address once, from the preferred one on;
    /// each attempt gets an equal share of the time left for the addresses
    /// left in the round, because a broker that is down usually does not
    /// refuse but stays silent (QUIC ignores the ICMP errors a closed UDP
    /// port causes), and it must not eat the whole timeout. Between rounds
    /// the client waits with exponential backoff. An address that failed
    /// for a reason retrying cannot fix (a refused certificate) is skipped
    /// in later rounds; when all have, the last such error is returned.
    pub(crate) async fn dial_with_backoff(&self) -> Result<quinn::Connection, ClientError> {
        let c = self.config();
        let addrs = c.addrs();
        let deadline = Instant::now() + c.connect_timeout;
        let mut backoff = Backoff::new(c.reconnect_initial_backoff, c.reconnect_max_backoff);
        let mut hopeless = vec![false; addrs.len()];
        let mut last_error = None;
        loop {
            let first = self.inner.preferred.load(Ordering::Relaxed) % addrs.len();
            let round: Vec<usize> = (0..addrs.len())
                .map(|k| (first + k) % addrs.len())
                .filter(|&i| !hopeless[i])
                .collect();
            for (k, &i) in round.iter().enumerate() {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break;
                }
                let share = remaining / u32::try_from(round.len() - k).unwrap_or(u32::MAX);
                let addr = addrs[i];
                match self.dial(addr, share).await {
                    Ok(conn) => {
                        if i != first {
                            tracing::info!(%addr, "failed over to another broker address");
                        }
                        tracing::debug!(%addr, "connected");
                        self.inner.preferred.store(i, Ordering::Relaxed);
                        return Ok(conn);
                    }
                    Err((error, retry)) => {
                        tracing::debug!(%addr, %error, retry, "connecting failed");
                        hopeless[i] = !retry;
                        last_error = Some(error);
                    }
                }
            }
            let error = last_error.take().unwrap_or(ClientError::Connect {
                addr: addrs[first],
                source: ConnectError::TimedOut(c.connect_timeout),
            });
            let delay = backoff.next_delay();
            if hopeless.iter().all(|&h| h) || Instant::now() + delay >= deadline {
                return Err(error);
            }
            tracing::debug!(%error, ?delay, "no broker address answered; retrying");
            last_error = Some(error);
            tokio::time::sleep(delay).await;
            self.check_open()?;
        }
    }

    /// A connection to `addr` was lost: unless another connection already
    /// moved on, the next attempt starts at the address after it (with a
    /// single address, that is the same one).
    fn avoid(&self, addr: std::net::SocketAddr) {
        let addrs = self.config().addrs();
        if let Some(i) = addrs.iter().position(|a| *a == addr) {
            let next = (i + 1) % addrs.len();
            let _ = self.inner.preferred.compare_exchange(
                i,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// The live main connection, reconnecting (and forgetting every
    /// pooled stream of the old one) if it was lost.
    async fn connection(&self, state: &mut State) -> Result<quinn::Connection, ClientError> {
        self.check_open()?;
        if let Some(c) = &state.conn {
            match c.close_reason() {
                None => return Ok(c.clone()),
                Some(why) => {
                    let addr = c.remote_address();
                    tracing::info!(%addr, %why, "connection lost; reconnecting");
                    self.avoid(addr);
                }
            }
            state.conn = None;
            state.drop_streams();
        }
        let conn = self.dial_with_backoff().await?;
        state.conn = Some(conn.clone());
        Ok(conn)
    }

    /// A pooled request stream (round robin), opened and authenticated on
    /// demand. Every stream's `auth_ok` updates the server flags.
    async fn request_stream(&self, kind: PoolKind) -> Result<Arc<RequestStream>, ClientError> {
        let mut state = self.inner.state.lock().await;
        let conn = self.connection(&mut state).await?;
        let (slots, counter) = match kind {
            PoolKind::Publish => (&mut state.publish, &self.inner.next_publish),
            PoolKind::Cache => (&mut state.cache, &self.inner.next_cache),
        };
        let i = pick(counter, slots.len());
        let slot = &mut slots[i];
        if let Some(s) = slot {
            if !s.is_dead() {
                return Ok(s.clone());
            }
        }
        let c = self.config();
        let (stream, flags) = tokio::time::timeout(
            c.request_timeout,
            RequestStream::open(&conn, &c.tenant_id, &c.token, c.max_frame_bytes),
        )
        .await
        .map_err(|_| ClientError::Timeout)??;
        self.inner.server_flags.store(flags, Ordering::Relaxed);
        *slot = Some(stream.clone());
        Ok(stream)
    }

    /// The pooled publish-only stream for `affinity`, opened on demand.
    async fn uni_stream(&self, affinity: u64) -> Result<Arc<UniStream>, ClientError> {
        let mut state = self.inner.state.lock().await;
        let conn = self.connection(&mut state).await?;
        let i = usize::try_from(affinity % state.uni.len() as u64).unwrap_or(0);
        if let Some(s) = &state.uni[i] {
            if !s.is_dead() {
                return Ok(s.clone());
            }
        }
        let c = self.config();
        let stream = tokio::time::timeout(
            c.request_timeout,
            UniStream::open(&conn, &c.tenant_id, &c.token),
        )
        .await
        .map_err(|_| ClientError::Timeout)??;
        state.uni[i] = Some(stream.clone());
        Ok(stream)
    }

    /// Sends a request (the frame `build` makes for a request id, and the
    /// reply to expect) on a pooled stream and returns its reply, within
    /// the request timeout. A request that could not be written because
    /// its stream or connection had died is retried once (reconnecting if
    /// needed); so is one that was written when it is `idempotent`.
    pub(crate) async fn request(
        &self,
        kind: PoolKind,
        idempotent: bool,
        build: impl Fn(u64) -> Result<(Bytes, Expect), ClientError>,
    ) -> Result<Frame, ClientError> {
        let timeout = self.config().request_timeout;
        let mut retried = false;
        loop {
            let stream = self.request_stream(kind).await?;
            let result = tokio::time::timeout(timeout, stream.request(&build))
                .await
                .map_err(|_| ClientError::Timeout)?;
            match result {
                Ok(frame) => return Ok(frame),
                Err(RequestError::NotSent(ClientError::Closed)) if !retried => {}
                Err(RequestError::Sent(ClientError::Closed)) if idempotent && !retried => {}
                Err(e) => return Err(e.into()),
            }
            tracing::debug!(?kind, "request stream closed; retrying once");
            retried = true;
        }
    }

    /// Writes a frame on the pooled publish-only stream chosen by
    /// `affinity` (frames with the same affinity share a QUIC stream, so
    /// the broker takes them in order), retrying once on a fresh stream if
    /// it could not be written (an incomplete frame is never taken by the
    /// broker, so this cannot duplicate).
    pub(crate) async fn send_unacked(
        &self,
        affinity: u64,
        frame: Bytes,
    ) -> Result<(), ClientError> {
        let timeout = self.config().request_timeout;
        let mut retried = false;
        loop {
            let stream = self.uni_stream(affinity).await?;
            match tokio::time::timeout(timeout, stream.send(frame.clone()))
                .await
                .map_err(|_| ClientError::Timeout)?
            {
                Ok(()) => return Ok(()),
                Err(ClientError::Closed) if !retried => retried = true,
                Err(e) => return Err(e),
            }
            tracing::debug!("publish stream closed; retrying once");
        }
    }

    /// An event connection (round robin), connected on demand with its
    /// event-stream router running.
    pub(crate) async fn event_conn(&self) -> Result<Arc<EventConn>, ClientError> {
        let mut state = self.inner.state.lock().await;
        self.check_open()?;
        let i = pick(&self.inner.next_event, state.events.len());
        if let Some(e) = &state.events[i] {
            if e.is_alive() {
                return Ok(e.clone());
            }
            let addr = e.connection().remote_address();
            tracing::info!(%addr, "event connection lost; reconnecting");
            self.avoid(addr);
        }
        let conn = self.dial_with_backoff().await?;
        let c = self.config();
        let e = EventConn::start(conn, c.max_frame_bytes, c.request_timeout);
        state.events[i] = Some(e.clone());
        Ok(e)
    }

    /// Closes the client: unacked publishes already written are given up
    /// to the request timeout to reach the broker, then every connection
    /// is closed. Live subscriptions end; later operations fail with
    /// [`ClientError::Closed`].
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let (conn, uni, requests, events) = {
            let mut guard = self.inner.state.lock().await;
            let state = &mut *guard;
            let uni: Vec<_> = state.uni.iter_mut().filter_map(Option::take).collect();
            let requests: Vec<_> = state
                .publish
                .iter_mut()
                .chain(state.cache.iter_mut())
                .filter_map(Option::take)
                .collect();
            let events: Vec<_> = state.events.iter_mut().filter_map(Option::take).collect();
            (state.conn.take(), uni, requests, events)
        };
        let deadline = Instant::now() + self.config().request_timeout;
        for s in &uni {
            s.finish(deadline.saturating_duration_since(Instant::now()))
                .await;
        }
        for s in &requests {
            s.finish().await;
        }
        if let Some(c) = conn {
            c.close(0u32.into(), b"client closed");
        }
        for e in &events {
            e.close();
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn backoff_never_spins() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(b.next_delay(), Duration::from_millis(1));
        assert_eq!(b.next_delay(), Duration::from_millis(1));
    }

    #[test]
    fn tls_failures_are_not_retried() {
        let addr = "127.0.0.1:5000".parse().expect("literal address");
        let refused = quinn::ConnectionError::ConnectionClosed(quinn::ConnectionClose {
            error_code: quinn::TransportErrorCode::crypto(120), // no_application_protocol
            frame_type: None,
            reason: Bytes::new(),
        });
        let (e, retry) = handshake_error(addr, &refused);
        assert!(
            matches!(e, ClientError::Tls(TlsError::Handshake { .. })),
            "{e}"
        );
        assert!(!retry);
        let (e, retry) = handshake_error(addr, &quinn::ConnectionError::TimedOut);
        assert!(
            matches!(
                e,
                ClientError::Connect {
                    source: ConnectError::Connection(quinn::ConnectionError::TimedOut),
                    ..
                }
            ),
            "{e}"
        );
        assert!(retry);
        let (_, retry) = handshake_error(addr, &quinn::ConnectionError::Reset);
        assert!(retry);
    }
}
