//! The sans-IO broker core: protocol state machines and broker state, with
//! no sockets and no clock (time is passed in by the caller).
//!
//! - [`session`]: one state machine per QUIC stream: frames in, outputs
//!   (replies, subscriptions to start, timers, waits) out.
//! - [`pubsub`]: streams, offsets, the replay ring, coalescing and fanout.
//! - [`request`]: one handler per request of an authenticated stream,
//!   with typed errors whose text is what the client is sent.
//! - [`queue`]: per-subscriber bounded queues with drop/block policies.
//! - [`cache`]: the TTL cache with a memory bound and per-tenant quotas.
//! - [`auth`] and [`perms`]: dev, static-token and JWT authentication, and
//!   Felix-style permission patterns.
//! - [`metrics`]: counters shared with the shell.
//! - [`forward`]: cluster mode's hooks: checked requests the shell carries
//!   out on NATS JetStream, and the replies it sends for them.

pub mod auth;
pub mod cache;
pub mod forward;
pub mod metrics;
pub mod perms;
pub mod pubsub;
pub mod queue;
pub mod request;
pub mod session;
pub mod settings;

use std::collections::HashSet;
use std::sync::Arc;

pub use settings::{CoreSettings, QueuePolicy};

/// Everything the sessions of all connections share.
#[derive(Debug)]
pub struct Core {
    /// Settings.
    pub settings: Arc<CoreSettings>,
    /// Counters.
    pub metrics: Arc<metrics::Metrics>,
    /// Streams and fanout.
    pub pubsub: pubsub::PubSub,
    /// The cache.
    pub cache: cache::Cache,
    /// How `auth` frames are checked.
    pub auth: auth::Authenticator,
    /// Declared caches as (tenant, namespace, cache); every cache exists
    /// when streams and caches are auto-created.
    pub declared_caches: HashSet<(String, String, String)>,
    /// Cluster mode: streams and the cache live on NATS JetStream, so
    /// sessions hand checked publishes, subscribes and cache requests to
    /// the shell ([`forward::Forward`]) instead of acting on them here.
    /// Off by default: one node keeps its in-process hot path.
    pub clustered: bool,
}

impl Core {
    /// A core with these settings and authenticator.
    pub fn new(settings: CoreSettings, auth: auth::Authenticator) -> Self {
        let settings = Arc::new(settings);
        let metrics = Arc::new(metrics::Metrics::default());
        Core {
            pubsub: pubsub::PubSub::new(settings.clone(), metrics.clone()),
            cache: cache::Cache::new(
                cache::CacheLimits {
                    capacity_bytes: settings.cache_capacity_bytes,
                    tenant_capacity_bytes: settings.cache_tenant_capacity_bytes,
                },
                metrics.clone(),
            ),
            settings,
            metrics,
            auth,
            declared_caches: HashSet::new(),
            clustered: false,
        }
    }

    /// Whether a cache scope exists.
    pub fn cache_exists(&self, tenant: &str, namespace: &str, cache: &str) -> bool {
        self.settings.auto_create
            || self.declared_caches.contains(&(
                tenant.to_string(),
                namespace.to_string(),
                cache.to_string(),
            ))
    }
}
