//! `felix-client`: the reference felix-wire v1 client over QUIC.
//!
//! ```no_run
//! use felix_client::{Ack, Bytes, Client, ClientConfig, StartPosition, SubscriptionItem, Trust};
//!
//! # async fn demo() -> Result<(), felix_client::ClientError> {
//! let config = ClientConfig::builder(
//!     "127.0.0.1:5000".parse().expect("a literal address"),
//!     Trust::CertificateFile(".felix/tls/cert.pem".into()),
//! )
//! // Another node of the same cluster, to fail over to.
//! .failover_addr("127.0.0.1:5001".parse().expect("a literal address"))
//! .credentials("t1", "dev")
//! .build();
//! let client = Client::connect(config).await?;
//! let mut sub = client.subscribe("default", "orders", StartPosition::Latest).await?;
//! client.publish("default", "orders", Bytes::from_static(b"hello"), Ack::PerMessage).await?;
//! match sub.next().await {
//!     Some(Ok(SubscriptionItem::Event(event))) => println!("{:?} {:?}", event.offset, event.payload),
//!     Some(Ok(SubscriptionItem::Gap { expected, got })) => println!("missed {expected}..{got}"),
//!     Some(Err(e)) => return Err(e),
//!     None => println!("the broker ended the subscription"),
//! }
//! client.cache_put("default", "sessions", "k1", Bytes::from_static(b"v"), None).await?;
//! assert_eq!(client.cache_get("default", "sessions", "k1").await?.as_deref(), Some(&b"v"[..]));
//! client.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # How it uses the protocol
//!
//! - One QUIC connection carries control, publish and cache streams;
//!   [`ClientConfig::event_connections`] more carry subscriptions. TLS 1.3,
//!   never any ALPN, keep-alives on. A lost connection is re-established
//!   (exponential backoff) by the next operation; a live [`Subscription`]
//!   ends with an error instead, and [`Client::resume`] continues it from
//!   the event after the last one it delivered.
//! - Several broker addresses ([`ClientConfigBuilder::failover_addr`], the
//!   nodes of a cluster): connecting tries them in turn from the one that
//!   last worked, and a lost connection sends the next attempt to another
//!   node first. Resuming is explicit, not automatic, because only cluster
//!   nodes share offsets (docs/cluster.md).
//! - Every stream the client opens starts with its own `auth` advertising
//!   every known flag; the broker's answer sets [`Client::server_flags`].
//! - Publishes use binary frames when the broker advertised them, JSON
//!   otherwise ([`publish_encoding`]); unacked ones go on pooled
//!   unidirectional streams, acked ones on pooled bidirectional streams
//!   with several requests in flight, replies matched in order.
//! - Cache requests use pooled bidirectional streams the same way.
//! - Each subscription has its own control stream and a broker-opened
//!   event stream, routed by the id in its `event_stream_hello`.
//!
//! # Layout
//!
//! Every public item, by what it is for (`examples/` has runnable
//! programs: pub/sub, the cache, resuming after a reconnect):
//!
//! - Configuring: [`ClientConfig`], [`ClientConfigBuilder`], [`Trust`].
//! - Connecting and the operations: [`Client`] (`connect`, `publish`,
//!   `publish_batch`, `subscribe`, `resume`, `cache_put`, `cache_get`,
//!   `close`).
//! - Publishing: [`Ack`]; [`publish_encoding`] and [`PublishEncoding`]
//!   say which frame a publish uses.
//! - Subscribing: [`StartPosition`], [`Subscription`] (also a
//!   `futures::Stream`), [`SubscriptionItem`], [`Event`], [`GapDetector`].
//! - Errors: [`ClientError`], with [`ConnectError`] and [`TlsError`] under
//!   its connection variants, and the codec's [`DecodeError`] and
//!   [`EncodeError`].
//! - [`tls`]: the rustls and quinn configuration the client uses, for
//!   callers that build their own endpoint.
//! - Re-exported because public signatures use them: [`Bytes`], and the
//!   [`quinn`] and [`rustls`] crates (the [`tls`] functions and the
//!   sources of connection errors are their types).

// Inside (private modules, one job each):
// - config: ClientConfig and its builder, Trust.
// - error: ClientError, ConnectError, TlsError.
// - connection: Client, connections, reconnecting, stream pools.
// - pool: request streams (in-order reply matching), publish-only streams.
// - frames: reading and writing frames, the per-stream `auth`.
// - publish: Ack, PublishEncoding, publishing.
// - cache: the cache requests.
// - events: event connections, and routing the event streams the broker
//   opens to their subscription by the id in their hello.
// - subscribe: Subscription and its Stream implementation, decoding event
//   streams.
// - socket: the UDP socket, with kernel buffers sized for fan-out.

mod cache;
mod config;
mod connection;
mod error;
mod events;
mod frames;
mod pool;
mod publish;
mod socket;
mod subscribe;
pub mod tls;

pub use config::{ClientConfig, ClientConfigBuilder, Trust};
pub use connection::Client;
pub use error::{ClientError, ConnectError, TlsError};
pub use publish::{publish_encoding, Ack, PublishEncoding};
pub use subscribe::{Event, GapDetector, Subscription, SubscriptionItem};

pub use bytes::Bytes;
pub use felix_wire::{DecodeError, EncodeError, StartPosition};
pub use quinn;
pub use rustls;

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// The handle and every operation's future can move between threads
    /// (`tokio::spawn`). Here, at the root, because it spans the modules.
    #[allow(dead_code, clippy::let_underscore_future)]
    fn futures_are_send(c: &Client, config: ClientConfig, s: &mut Subscription) {
        fn send<T: Send + 'static>(_: &T) {}
        fn send_ref<T: Send>(_: T) {}
        send(c);
        send_ref(Client::connect(config));
        send_ref(c.publish("n", "s", Bytes::new(), Ack::None));
        send_ref(c.publish_batch("n", "s", Vec::new(), Ack::PerBatch));
        send_ref(c.subscribe("n", "s", felix_wire::StartPosition::Latest));
        send_ref(c.cache_put("n", "c", "k", Bytes::new(), None));
        send_ref(c.cache_get("n", "c", "k"));
        send_ref(c.close());
        send_ref(s.next());
        send_ref(&*s);
    }
}
