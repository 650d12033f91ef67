//! `felix-client`: the reference felix-wire client.
//!
//! ```no_run
//! use bytes::Bytes;
//! use felix_client::{Ack, Client, ClientConfig, Trust};
//! use felix_wire::StartPosition;
//!
//! # async fn demo() -> Result<(), felix_client::ClientError> {
//! let config = ClientConfig::new(
//!     "127.0.0.1:5000".parse().expect("address"),
//!     "localhost",
//!     Trust::CertificateFile(".felix/tls/cert.pem".into()),
//!     "t1",
//!     "dev",
//! );
//! let client = Client::connect(config).await?;
//! let mut sub = client.subscribe("default", "orders", StartPosition::Latest).await?;
//! client.publish("default", "orders", Bytes::from_static(b"hello"), Ack::PerMessage).await?;
//! if let Some(event) = sub.next_event().await {
//!     println!("{:?}", event?);
//! }
//! client.cache_put("default", "sessions", "k1", Bytes::from_static(b"v"), None).await?;
//! assert_eq!(client.cache_get("default", "sessions", "k1").await?.as_deref(), Some(&b"v"[..]));
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`config`]: [`ClientConfig`] and [`Trust`].
//! - [`client`]: [`Client`]: connections with reconnect and backoff, pools
//!   of publish, cache and publish-only streams, event connections.
//! - [`stream`](crate::stream) (private): frame reading, per-stream auth,
//!   request streams with in-order reply matching.
//! - [`subscription`]: [`Subscription`] events and gap detection.
//! - [`tls`]: the quinn/rustls configuration (never any ALPN).
//! - [`error`]: the [`ClientError`] type.

pub mod client;
pub mod config;
pub mod error;
mod stream;
pub mod subscription;
pub mod tls;

pub use client::{Ack, Client, PublishEncoding};
pub use config::{ClientConfig, Trust};
pub use error::ClientError;
pub use subscription::{Event, GapDetector, Subscription, SubscriptionItem};
