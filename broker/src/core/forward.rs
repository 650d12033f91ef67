//! Requests a clustered broker carries out on NATS JetStream rather than
//! in this process: the core's two hooks for cluster mode.
//!
//! With [`super::Core::clustered`] set, a session still authenticates,
//! authorizes and checks every request as on one node, then, instead of
//! acting on its own streams and cache, hands a checked [`Forward`] to the
//! shell ([`super::session::Output::Forward`]). The shell's cluster module
//! (`crate::cluster`) does the network I/O and answers with the reply
//! helpers below, so the wire text stays the core's. The second hook runs
//! the other way: events read back from JetStream enter the same
//! encode-once fan-out as local publishes, with their JetStream sequence
//! numbers as offsets ([`super::pubsub::PubSub::inject`]).
//!
//! Nothing here does I/O or reads the clock.

use bytes::Bytes;
use felix_wire::{
    CacheOk, CacheValue, CursorErrorReason, ErrorMessage, Frame, Message, OkMessage, StartPosition,
    SubscribeCursorError,
};

use super::cache::CacheKey;
use super::pubsub::{StreamKey, SubscribeError};
use super::request::PublishRequest;

/// A checked request for the cluster shell.
#[derive(Debug)]
pub enum Forward {
    /// Store these events in the stream's JetStream stream, then ack.
    Publish(PublishRequest),
    /// Subscribe, resolving the start against the JetStream stream.
    Subscribe(ClusterSubscribe),
    /// Store a cache entry in the KV bucket.
    CachePut(ClusterCachePut),
    /// Read a cache entry from the KV bucket.
    CacheGet(ClusterCacheGet),
}

/// A subscribe to resolve against JetStream.
#[derive(Debug, Clone)]
pub struct ClusterSubscribe {
    /// The stream.
    pub key: StreamKey,
    /// The subscription id.
    pub id: u64,
    /// Where to start.
    pub start: StartPosition,
    /// Whether the subscriber negotiated offsets in event batches.
    pub offsets: bool,
    /// When the subscriber's credential expires (unix seconds).
    pub expires_at_unix: Option<u64>,
}

/// A cache put for the KV bucket.
#[derive(Debug, Clone)]
pub struct ClusterCachePut {
    /// The entry's scoped key.
    pub key: CacheKey,
    /// The value.
    pub value: Bytes,
    /// Time to live, milliseconds (`None`: no expiry).
    pub ttl_ms: Option<u64>,
    /// The request id `cache_ok` echoes (`None`: a one-shot put, answered `ok`).
    pub request_id: Option<u64>,
}

/// A cache get for the KV bucket.
#[derive(Debug, Clone)]
pub struct ClusterCacheGet {
    /// The entry's scoped key.
    pub key: CacheKey,
    /// The request id the reply echoes.
    pub request_id: Option<u64>,
}

/// Why the cluster could not carry a request out. `Display` is the text
/// the client gets (in a publish error ack or an `error` frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackplaneError {
    /// NATS is unreachable, timed out or refused: nothing was acked, and
    /// the client should retry (a timed-out publish may still have been
    /// stored: delivery is at least once).
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// One event or cache value is over the NATS server's `max_payload`.
    #[error("too large for the cluster: {len} bytes; NATS takes at most {max}")]
    TooLarge {
        /// The size.
        len: usize,
        /// The server's max_payload.
        max: usize,
    },
}

fn encode(m: impl Into<Message>) -> Bytes {
    // Replies are built from values that came off the wire or short
    // literals: they always have a wire form.
    Frame::Json(m.into()).to_bytes().unwrap_or_default()
}

/// An `error` frame (the stream then ends).
pub fn error_reply(text: impl Into<String>) -> Bytes {
    encode(ErrorMessage {
        message: text.into(),
    })
}

/// The reply to a stored put, and whether the stream then ends (a
/// one-shot put without a request id).
pub fn cache_put_reply(request_id: Option<u64>) -> (Bytes, bool) {
    match request_id {
        Some(request_id) => (encode(CacheOk { request_id }), false),
        None => (encode(OkMessage {}), true),
    }
}

/// The reply to a get, and whether the stream then ends.
pub fn cache_get_reply(get: ClusterCacheGet, value: Option<Bytes>) -> (Bytes, bool) {
    let one_shot = get.request_id.is_none();
    let CacheKey {
        tenant,
        namespace,
        cache,
        key,
    } = get.key;
    let reply = encode(CacheValue {
        tenant_id: tenant,
        namespace,
        cache,
        key,
        value,
        request_id: get.request_id,
    });
    (reply, one_shot)
}

/// The reply to a refused subscribe: `subscribe_cursor_error` for a start
/// outside the stream, else `error`.
pub fn subscribe_error_reply(e: &SubscribeError) -> Bytes {
    let (reason, requested, available) = match *e {
        SubscribeError::TooOld {
            requested,
            available,
        } => (CursorErrorReason::TooOld, requested, available),
        SubscribeError::InFuture {
            requested,
            available,
        } => (CursorErrorReason::InFuture, requested, available),
        _ => return error_reply(e.to_string()),
    };
    encode(SubscribeCursorError {
        reason,
        requested,
        available,
    })
}
