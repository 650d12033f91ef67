//! Cluster mode (`--cluster nats://...`): several brokers serve as one on
//! NATS JetStream. This is shell-side code: all the network I/O of
//! clustering lives here, and the sans-IO core only sees checked requests
//! to forward ([`crate::core::forward`]) and events to fan out
//! ([`crate::core::pubsub::PubSub::inject`]).
//!
//! - [`names`]: felix names hashed into NATS names (no injection);
//! - [`streams`]: publish (acked once JetStream stored it), subscribe
//!   (start resolved against the JetStream stream, history read from it);
//! - [`feed`]: one feed per (node, stream with local subscribers),
//!   stopped when the last local subscriber leaves;
//! - [`cache`]: the cache in one KV bucket, per-entry TTLs kept in the
//!   value.
//!
//! The NATS client reconnects by itself (to any URL given), so a node
//! recovers when NATS is back; meanwhile every publish and cache request
//! fails with `cluster unavailable: ...` rather than waiting or vanishing.
//! See docs/cluster.md.

pub mod cache;
pub mod feed;
pub mod names;
pub mod streams;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

use crate::core::forward::BackplaneError;
use crate::core::pubsub::StreamKey;
use crate::core::Core;

/// What cluster mode needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// NATS server URLs (`nats://HOST:PORT`); the client fails over among them.
    pub urls: Vec<String>,
    /// JetStream replicas of each stream and of the cache bucket (1 to 5;
    /// 3 survives the loss of one NATS node).
    pub replicas: usize,
    /// Prefix of every JetStream stream, subject and bucket this broker
    /// makes, so that several felix deployments can share one NATS.
    pub prefix: String,
    /// How long one NATS request (a publish ack, a KV read) may take
    /// before the client gets `cluster unavailable`.
    pub timeout: Duration,
    /// Messages the NATS client buffers per subscription (each stream
    /// feed and history read): the feed's share of the memory budget is
    /// this times the server's max_payload at most.
    pub feed_capacity: usize,
    /// Bytes each JetStream stream keeps (its oldest events go first):
    /// this bounds replay history and NATS's disk, not broker memory.
    pub stream_max_bytes: i64,
    /// Bytes the cache bucket keeps on NATS (puts past it are refused).
    pub cache_max_bytes: i64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            urls: Vec::new(),
            replicas: 1,
            prefix: "felix".into(),
            timeout: Duration::from_secs(2),
            feed_capacity: 1024,
            stream_max_bytes: 256 << 20,
            cache_max_bytes: 256 << 20,
        }
    }
}

/// Why cluster mode could not start or carry a request out.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The settings are unusable.
    #[error("cluster settings: {0}")]
    Settings(String),
    /// The NATS client could not be set up.
    #[error("connecting to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    /// Not connected to NATS now (the client keeps reconnecting).
    #[error("not connected to NATS")]
    Disconnected,
    /// A JetStream request failed or timed out.
    #[error("{what}: {message}")]
    JetStream {
        /// What was being done.
        what: &'static str,
        /// What NATS or the client said.
        message: String,
    },
    /// An event or value is over the server's max_payload.
    #[error("{len} bytes is over NATS's max_payload of {max}")]
    TooLarge {
        /// The size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl ClusterError {
    pub(crate) fn js(what: &'static str, e: impl std::fmt::Display) -> Self {
        ClusterError::JetStream {
            what,
            message: e.to_string(),
        }
    }
}

impl From<ClusterError> for BackplaneError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::TooLarge { len, max } => BackplaneError::TooLarge { len, max },
            other => BackplaneError::Unavailable(other.to_string()),
        }
    }
}

/// A broker's link to the cluster.
pub struct Cluster {
    client: async_nats::Client,
    js: jetstream::Context,
    settings: ClusterSettings,
    core: Arc<Core>,
    /// JetStream streams this node made or found, by felix stream.
    streams: tokio::sync::Mutex<HashMap<StreamKey, jetstream::stream::Stream>>,
    /// Running feeds, by felix stream.
    feeds: tokio::sync::Mutex<feed::Feeds>,
    /// Stops feeds nobody reads ([`feed::spawn_sweeper`]).
    sweeper: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
    /// The cache bucket, once made or found.
    kv: tokio::sync::OnceCell<jetstream::kv::Store>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("urls", &self.settings.urls)
            .field("state", &self.client.connection_state())
            .finish()
    }
}

impl Cluster {
    /// Sets up the NATS client. Does not wait for NATS: a node started
    /// while NATS is down serves (refusing cluster requests with a clear
    /// error) and connects when NATS comes up.
    pub async fn connect(
        settings: ClusterSettings,
        core: Arc<Core>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        if settings.urls.is_empty() {
            return Err(ClusterError::Settings("no NATS URL".into()));
        }
        if !names::valid_prefix(&settings.prefix) {
            return Err(ClusterError::Settings(format!(
                "prefix {:?}: use 1 to 32 ASCII letters, digits, - or _",
                settings.prefix
            )));
        }
        if !(1..=5).contains(&settings.replicas) {
            return Err(ClusterError::Settings(format!(
                "replicas {}: JetStream takes 1 to 5",
                settings.replicas
            )));
        }
        let urls: Vec<async_nats::ServerAddr> = settings
            .urls
            .iter()
            .map(|u| {
                u.parse()
                    .map_err(|e| ClusterError::Settings(format!("NATS URL {u:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let client = async_nats::ConnectOptions::new()
            .name("felix-broker")
            .retry_on_initial_connect()
            .connection_timeout(settings.timeout)
            .request_timeout(Some(settings.timeout))
            .subscription_capacity(settings.feed_capacity.max(1))
            .event_callback(|event| async move {
                tracing::info!(%event, "NATS connection");
            })
            .connect(urls)
            .await?;
        // A normal start finds NATS up: wait (briefly) for the first
        // connection so the first requests do not race it.
        let deadline = std::time::Instant::now() + settings.timeout;
        while client.connection_state() != async_nats::connection::State::Connected
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut js = jetstream::new(client.clone());
        js.set_timeout(settings.timeout);
        tracing::info!(urls = ?settings.urls, replicas = settings.replicas, prefix = %settings.prefix, "cluster mode on NATS JetStream");
        let cluster = Arc::new(Cluster {
            client,
            js,
            settings,
            core,
            streams: Default::default(),
            feeds: Default::default(),
            sweeper: Default::default(),
            kv: Default::default(),
        });
        let _ = cluster.sweeper.set(feed::spawn_sweeper(&cluster));
        Ok(cluster)
    }

    /// Fails fast while disconnected: a request then gets its error at
    /// once instead of after the timeout, and is never queued in the
    /// client to be sent (and stored) after the client was told it failed.
    fn connected(&self) -> Result<(), ClusterError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            _ => Err(ClusterError::Disconnected),
        }
    }

    /// The server's largest message (unlimited until the server said).
    fn max_payload(&self) -> usize {
        match self.client.server_info().max_payload {
            0 => usize::MAX,
            max => max,
        }
    }

    /// Counts a failure and turns it into the client's error.
    fn failed(&self, what: &str, e: ClusterError) -> BackplaneError {
        self.core
            .metrics
            .cluster_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(error = %e, "cluster {what} failed");
        e.into()
    }

    /// Stops every feed (drain) and the sweeper.
    pub async fn shutdown(&self) {
        if let Some(sweeper) = self.sweeper.get() {
            sweeper.abort();
        }
        self.stop_feeds().await;
    }
}
