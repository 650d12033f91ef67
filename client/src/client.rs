//! The client: connections, stream pools, publish, cache and subscribe.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use felix_wire::{
    AckMode, AckStatus, BinaryAckedPublishBatch, BinaryPublishBatch, CacheGet, CachePut,
    CursorErrorReason, Frame, Message, Publish, PublishBatch, StartPosition, Subscribe,
    BINARY_PUBLISH_ACKED, BINARY_PUBLISH_BATCH,
};
use tokio::sync::oneshot;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::stream::{auth_frame, encode, read_auth_reply, FrameReader, RequestStream};
use crate::subscription::Subscription;

/// How a publish is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Fire and forget (a publish-only stream; never answered).
    None,
    /// Acked; one ack per message (a batch still gets one ack).
    PerMessage,
    /// Acked; one ack per batch.
    PerBatch,
}

impl Ack {
    fn mode(self) -> AckMode {
        match self {
            Ack::None => AckMode::None,
            Ack::PerMessage => AckMode::PerMessage,
            Ack::PerBatch => AckMode::PerBatch,
        }
    }
}

/// Which frames a publish uses, from the flags the broker advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishEncoding {
    /// Binary `0x0001` (unacked) or `0x0009` (acked).
    Binary,
    /// JSON `publish` / `publish_batch`.
    Json,
}

/// Binary when the broker supports the needed layout, JSON otherwise.
pub fn publish_encoding(server_flags: u16, ack: Ack) -> PublishEncoding {
    let needed = match ack {
        Ack::None => BINARY_PUBLISH_BATCH,
        _ => BINARY_PUBLISH_BATCH | BINARY_PUBLISH_ACKED,
    };
    if server_flags & needed == needed {
        PublishEncoding::Binary
    } else {
        PublishEncoding::Json
    }
}

type Route = oneshot::Sender<(quinn::RecvStream, BytesMut)>;

/// A connection dedicated to event streams, with a router that hands each
/// broker-opened stream to its subscription by the id in its hello.
struct EventConn {
    conn: quinn::Connection,
    routes: Arc<Mutex<HashMap<u64, Route>>>,
}

#[derive(Default)]
struct Pools {
    conn: Option<quinn::Connection>,
    publish: Vec<Option<Arc<RequestStream>>>,
    cache: Vec<Option<Arc<RequestStream>>>,
    uni: Vec<Option<Arc<tokio::sync::Mutex<quinn::SendStream>>>>,
    events: Vec<Option<Arc<EventConn>>>,
}

struct Inner {
    config: ClientConfig,
    endpoint: quinn::Endpoint,
    pools: tokio::sync::Mutex<Pools>,
    server_flags: AtomicU16,
    next: AtomicUsize,
    next_subscription_id: AtomicU64,
}

/// A felix-wire client. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.inner.config.addr)
            .field("server_flags", &self.server_flags())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Pool {
    Publish,
    Cache,
}

impl Client {
    /// Connects and authenticates a control stream to learn the broker's
    /// flags.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let bind = if config.addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let mut endpoint = quinn::Endpoint::client(
            bind.parse()
                .map_err(|_| ClientError::Connect("bind address".into()))?,
        )
        .map_err(|e| ClientError::Connect(e.to_string()))?;
        endpoint.set_default_client_config(crate::tls::quinn_config(&config)?);
        let pools = Pools {
            publish: vec![None; config.publish_streams.max(1)],
            cache: vec![None; config.cache_streams.max(1)],
            uni: vec![None; config.publish_streams.max(1)],
            events: (0..config.event_connections.max(1)).map(|_| None).collect(),
            conn: None,
        };
        let client = Client {
            inner: Arc::new(Inner {
                config,
                endpoint,
                pools: tokio::sync::Mutex::new(pools),
                server_flags: AtomicU16::new(felix_wire::ORIGINAL_V1_FLAGS),
                next: AtomicUsize::new(0),
                next_subscription_id: AtomicU64::new(1),
            }),
        };
        // The first control stream authenticates and tells the broker's flags.
        client.stream(Pool::Publish).await?;
        Ok(client)
    }

    /// The flags the broker advertised (`ORIGINAL_V1_FLAGS` if it answered `ok`).
    pub fn server_flags(&self) -> u16 {
        self.inner.server_flags.load(Ordering::Relaxed)
    }

    fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Dials once, within the connect timeout.
    async fn dial(&self) -> Result<quinn::Connection, ClientError> {
        let c = self.config();
        let connecting = self
            .inner
            .endpoint
            .connect(c.addr, &c.server_name)
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        match tokio::time::timeout(c.connect_timeout, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(ClientError::Connect(format!("{}: {e}", c.addr))),
            Err(_) => Err(ClientError::Connect(format!(
                "{}: handshake timed out",
                c.addr
            ))),
        }
    }

    /// Dials with exponential backoff until the connect timeout has been
    /// spent on waiting.
    async fn dial_with_backoff(&self) -> Result<quinn::Connection, ClientError> {
        let c = self.config();
        let mut delay = c.reconnect_initial_backoff;
        let mut waited = Duration::ZERO;
        loop {
            match self.dial().await {
                Ok(conn) => return Ok(conn),
                Err(e) if waited >= c.connect_timeout => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, ?delay, "connect failed; retrying");
                    tokio::time::sleep(delay).await;
                    waited += delay;
                    delay = (delay * 2).min(c.reconnect_max_backoff);
                }
            }
        }
    }

    /// The live main connection, reconnecting (and dropping every pooled
    /// stream of the old one) when it was lost.
    async fn connection(&self, pools: &mut Pools) -> Result<quinn::Connection, ClientError> {
        if let Some(c) = &pools.conn {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
            tracing::info!("connection lost; reconnecting");
            pools
                .publish
                .iter_mut()
                .chain(pools.cache.iter_mut())
                .for_each(|s| *s = None);
            pools.uni.iter_mut().for_each(|s| *s = None);
        }
        let conn = self.dial_with_backoff().await?;
        pools.conn = Some(conn.clone());
        Ok(conn)
    }

    /// A pooled request stream (round robin), opened and authenticated on demand.
    async fn stream(&self, pool: Pool) -> Result<Arc<RequestStream>, ClientError> {
        let mut pools = self.inner.pools.lock().await;
        let conn = self.connection(&mut pools).await?;
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let slots = match pool {
            Pool::Publish => &mut pools.publish,
            Pool::Cache => &mut pools.cache,
        };
        let i = n % slots.len();
        if let Some(s) = &slots[i] {
            if !s.is_dead() {
                return Ok(s.clone());
            }
        }
        let c = self.config();
        let (stream, flags) =
            RequestStream::open(&conn, &c.tenant_id, &c.token, c.max_frame_bytes).await?;
        self.inner.server_flags.store(flags, Ordering::Relaxed);
        slots[i] = Some(stream.clone());
        Ok(stream)
    }

    /// A pooled publish-only (unidirectional) stream, authenticated.
    async fn uni(&self) -> Result<Arc<tokio::sync::Mutex<quinn::SendStream>>, ClientError> {
        let mut pools = self.inner.pools.lock().await;
        let conn = self.connection(&mut pools).await?;
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % pools.uni.len();
        if let Some(s) = &pools.uni[i] {
            return Ok(s.clone());
        }
        let mut send = conn
            .open_uni()
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        let c = self.config();
        // Nothing is ever written back on a publish-only stream, not even
        // the auth reply: the flags come from the control stream.
        send.write_all(&auth_frame(&c.tenant_id, &c.token)?)
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        let s = Arc::new(tokio::sync::Mutex::new(send));
        pools.uni[i] = Some(s.clone());
        Ok(s)
    }

    async fn request(
        &self,
        pool: Pool,
        build: impl Fn(u64) -> Result<Bytes, ClientError>,
        matches: crate::stream::Matcher,
    ) -> Result<Frame, ClientError> {
        let stream = self.stream(pool).await?;
        let id = stream.next_request_id();
        let frame = build(id)?;
        match tokio::time::timeout(
            self.config().request_timeout,
            stream.request(frame, id, matches),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// Publishes one payload.
    pub async fn publish(
        &self,
        namespace: &str,
        stream: &str,
        payload: Bytes,
        ack: Ack,
    ) -> Result<(), ClientError> {
        self.publish_inner(namespace, stream, vec![payload], ack, true)
            .await
    }

    /// Publishes several payloads as one batch (one ack for the batch).
    pub async fn publish_batch(
        &self,
        namespace: &str,
        stream: &str,
        payloads: Vec<Bytes>,
        ack: Ack,
    ) -> Result<(), ClientError> {
        self.publish_inner(namespace, stream, payloads, ack, false)
            .await
    }

    async fn publish_inner(
        &self,
        namespace: &str,
        stream: &str,
        payloads: Vec<Bytes>,
        ack: Ack,
        single: bool,
    ) -> Result<(), ClientError> {
        let tenant = self.config().tenant_id.clone();
        let encoding = publish_encoding(self.server_flags(), ack);
        if ack == Ack::None {
            let frame = match encoding {
                PublishEncoding::Binary => encode(BinaryPublishBatch {
                    tenant_id: tenant,
                    namespace: namespace.into(),
                    stream: stream.into(),
                    payloads,
                })?,
                PublishEncoding::Json => json_publish(
                    &tenant,
                    namespace,
                    stream,
                    payloads,
                    None,
                    AckMode::None,
                    single,
                )?,
            };
            let s = self.uni().await?;
            let result = s.lock().await.write_all(&frame).await;
            if let Err(e) = result {
                // Drop the broken stream from the pool; the next publish opens another.
                let mut pools = self.inner.pools.lock().await;
                pools
                    .uni
                    .iter_mut()
                    .filter(|slot| slot.as_ref().is_some_and(|x| Arc::ptr_eq(x, &s)))
                    .for_each(|slot| *slot = None);
                return Err(ClientError::Closed(e.to_string()));
            }
            return Ok(());
        }
        let mode = ack.mode();
        let reply = match encoding {
            PublishEncoding::Binary => {
                let build = |request_id| {
                    encode(BinaryAckedPublishBatch {
                        request_id,
                        ack_mode: mode,
                        tenant_id: tenant.clone(),
                        namespace: namespace.into(),
                        stream: stream.into(),
                        payloads: payloads.clone(),
                    })
                };
                self.request(
                    Pool::Publish,
                    build,
                    |f, id| matches!(f, Frame::BinaryPublishAck(a) if a.request_id == id),
                )
                .await?
            }
            PublishEncoding::Json => {
                let build = |request_id| {
                    json_publish(
                        &tenant,
                        namespace,
                        stream,
                        payloads.clone(),
                        Some(request_id),
                        mode,
                        single,
                    )
                };
                self.request(Pool::Publish, build, |f, id| {
                    matches!(f, Frame::Json(Message::PublishOk(o)) if o.request_id == id)
                        || matches!(f, Frame::Json(Message::PublishError(e)) if e.request_id == id)
                })
                .await?
            }
        };
        match reply {
            Frame::BinaryPublishAck(a) if a.status == AckStatus::Ok => Ok(()),
            Frame::BinaryPublishAck(a) => Err(ClientError::Broker(a.message)),
            Frame::Json(Message::PublishError(e)) => Err(ClientError::Broker(e.message)),
            _ => Ok(()),
        }
    }

    /// Stores a value; `ttl` of zero expires at once, `None` never.
    pub async fn cache_put(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), ClientError> {
        let tenant = self.config().tenant_id.clone();
        let ttl_ms = ttl.map(|t| t.as_millis().min(u128::from(u64::MAX)) as u64);
        let build = |request_id| {
            encode(Message::from(CachePut {
                tenant_id: tenant.clone(),
                namespace: namespace.into(),
                cache: cache.into(),
                key: key.into(),
                value: value.clone(),
                request_id: Some(request_id),
                ttl_ms,
            }))
        };
        self.request(
            Pool::Cache,
            build,
            |f, id| matches!(f, Frame::Json(Message::CacheOk(o)) if o.request_id == id),
        )
        .await
        .map(drop)
    }

    /// Reads a value; `None` on a miss.
    pub async fn cache_get(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
    ) -> Result<Option<Bytes>, ClientError> {
        let tenant = self.config().tenant_id.clone();
        let build = |request_id| {
            encode(Message::from(CacheGet {
                tenant_id: tenant.clone(),
                namespace: namespace.into(),
                cache: cache.into(),
                key: key.into(),
                request_id: Some(request_id),
            }))
        };
        match self.request(Pool::Cache, build, |f, id| matches!(f, Frame::Json(Message::CacheValue(v)) if v.request_id == Some(id))).await? {
            Frame::Json(Message::CacheValue(v)) => Ok(v.value),
            other => Err(ClientError::Protocol(format!("unexpected reply to cache_get: {other:?}"))),
        }
    }

    /// An event connection (round robin), with its router running.
    async fn event_conn(&self) -> Result<Arc<EventConn>, ClientError> {
        let mut pools = self.inner.pools.lock().await;
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % pools.events.len();
        if let Some(e) = &pools.events[i] {
            if e.conn.close_reason().is_none() {
                return Ok(e.clone());
            }
        }
        let conn = self.dial_with_backoff().await?;
        let routes: Arc<Mutex<HashMap<u64, Route>>> = Arc::default();
        tokio::spawn(route_event_streams(
            conn.clone(),
            routes.clone(),
            self.config().max_frame_bytes,
        ));
        let e = Arc::new(EventConn { conn, routes });
        pools.events[i] = Some(e.clone());
        Ok(e)
    }

    /// Subscribes to a stream from `start`. The returned subscription yields
    /// events (with offsets when the broker sends them) and reports gaps.
    pub async fn subscribe(
        &self,
        namespace: &str,
        stream: &str,
        start: StartPosition,
    ) -> Result<Subscription, ClientError> {
        let events = self.event_conn().await?;
        let id = self
            .inner
            .next_subscription_id
            .fetch_add(1, Ordering::Relaxed);
        // Register before subscribing: the event stream may arrive before
        // `subscribed`, and must find its subscription.
        let (tx, rx) = oneshot::channel();
        lock(&events.routes).insert(id, tx);
        let result = self
            .subscribe_on(&events.conn, namespace, stream, id, start)
            .await;
        if let Err(e) = result {
            lock(&events.routes).remove(&id);
            return Err(e);
        }
        let (recv, buf) = tokio::time::timeout(self.config().request_timeout, rx)
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|_| ClientError::Closed("event connection closed".into()))?;
        Ok(Subscription::new(
            id,
            FrameReader::with_buffer(recv, buf, self.config().max_frame_bytes),
        ))
    }

    async fn subscribe_on(
        &self,
        conn: &quinn::Connection,
        namespace: &str,
        stream: &str,
        id: u64,
        start: StartPosition,
    ) -> Result<(), ClientError> {
        let c = self.config();
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        let mut reader = FrameReader::new(recv, c.max_frame_bytes);
        send.write_all(&auth_frame(&c.tenant_id, &c.token)?)
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        read_auth_reply(&mut reader).await?;
        let subscribe = encode(Message::from(Subscribe {
            tenant_id: c.tenant_id.clone(),
            namespace: namespace.into(),
            stream: stream.into(),
            subscription_id: Some(id),
            start: Some(start),
        }))?;
        send.write_all(&subscribe)
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        let _ = send.finish();
        let reply = tokio::time::timeout(c.request_timeout, reader.recv())
            .await
            .map_err(|_| ClientError::Timeout)??;
        match reply {
            Frame::Json(Message::Subscribed(s)) if s.subscription_id == id => Ok(()),
            Frame::Json(Message::SubscribeCursorError(e)) => Err(match e.reason {
                CursorErrorReason::TooOld => ClientError::CursorTooOld {
                    requested: e.requested,
                    available: e.available,
                },
                CursorErrorReason::InFuture => ClientError::CursorInFuture {
                    requested: e.requested,
                    available: e.available,
                },
            }),
            Frame::Json(Message::Error(e)) => Err(ClientError::Broker(e.message)),
            other => Err(ClientError::Protocol(format!(
                "unexpected reply to subscribe: {other:?}"
            ))),
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        let pools = self.inner.pools.lock().await;
        if let Some(c) = &pools.conn {
            c.close(0u32.into(), b"client closed");
        }
        for e in pools.events.iter().flatten() {
            e.conn.close(0u32.into(), b"client closed");
        }
        drop(pools);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }
}

fn json_publish(
    tenant: &str,
    namespace: &str,
    stream: &str,
    mut payloads: Vec<Bytes>,
    request_id: Option<u64>,
    ack: AckMode,
    single: bool,
) -> Result<Bytes, ClientError> {
    if single && payloads.len() == 1 {
        let payload = payloads.pop().unwrap_or_default();
        return encode(Message::from(Publish {
            tenant_id: tenant.into(),
            namespace: namespace.into(),
            stream: stream.into(),
            payload,
            request_id,
            ack: Some(ack),
        }));
    }
    encode(Message::from(PublishBatch {
        tenant_id: tenant.into(),
        namespace: namespace.into(),
        stream: stream.into(),
        payloads,
        request_id,
        ack: Some(ack),
    }))
}

/// Accepts the broker's event streams on one connection, reads each one's
/// `event_stream_hello` and hands the stream to its subscription.
async fn route_event_streams(
    conn: quinn::Connection,
    routes: Arc<Mutex<HashMap<u64, Route>>>,
    max_frame_bytes: u32,
) {
    while let Ok(recv) = conn.accept_uni().await {
        let routes = routes.clone();
        tokio::spawn(async move {
            let mut reader = FrameReader::new(recv, max_frame_bytes);
            match reader.recv().await {
                Ok(Frame::Json(Message::EventStreamHello(h))) => {
                    let route = lock(&routes).remove(&h.subscription_id);
                    match route {
                        Some(tx) => {
                            let _ = tx.send(reader.into_parts());
                        }
                        None => {
                            tracing::warn!(
                                id = h.subscription_id,
                                "event stream for an unknown subscription; stopping it"
                            );
                            reader.stop();
                        }
                    }
                }
                Ok(other) => {
                    tracing::warn!(
                        ?other,
                        "event stream did not start with event_stream_hello; stopping it"
                    );
                    reader.stop();
                }
                Err(e) => tracing::debug!(error = %e, "event stream failed before its hello"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_kind_follows_server_flags() {
        assert_eq!(
            publish_encoding(felix_wire::KNOWN_FLAGS, Ack::None),
            PublishEncoding::Binary
        );
        assert_eq!(
            publish_encoding(felix_wire::KNOWN_FLAGS, Ack::PerMessage),
            PublishEncoding::Binary
        );
        // A broker that advertised nothing (answered `ok`) has 0x0001 but not 0x0008.
        assert_eq!(
            publish_encoding(felix_wire::ORIGINAL_V1_FLAGS, Ack::None),
            PublishEncoding::Binary
        );
        assert_eq!(
            publish_encoding(felix_wire::ORIGINAL_V1_FLAGS, Ack::PerBatch),
            PublishEncoding::Json
        );
        assert_eq!(publish_encoding(0, Ack::None), PublishEncoding::Json);
    }

    #[test]
    fn single_json_publish_uses_publish_and_batches_publish_batch() {
        let one = json_publish(
            "t",
            "n",
            "s",
            vec![Bytes::from_static(b"a")],
            Some(1),
            AckMode::PerMessage,
            true,
        )
        .expect("encode");
        assert!(std::str::from_utf8(&one[12..])
            .expect("utf8")
            .starts_with(r#"{"type":"publish","#));
        let many = json_publish(
            "t",
            "n",
            "s",
            vec![Bytes::from_static(b"a")],
            Some(1),
            AckMode::PerBatch,
            false,
        )
        .expect("encode");
        assert!(std::str::from_utf8(&many[12..])
            .expect("utf8")
            .starts_with(r#"{"type":"publish_batch","#));
    }
}
