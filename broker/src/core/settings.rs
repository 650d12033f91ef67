//! The knobs of the broker core, independent of how they were configured.

use std::time::Duration;

/// What a full subscriber queue does with a new batch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// Drop the new batch (counted as dropped for that subscriber).
    DropNew,
    /// Drop the oldest queued batch to make room (counted).
    DropOld,
    /// Make the publisher wait until the subscriber catches up: lossless
    /// for a subscriber that keeps up on average. A publisher waits at
    /// most `queue_block_timeout`; then that subscriber's queue drops new
    /// batches (counted) until it has caught up, so a stalled subscriber
    /// cannot hold its stream's publishers for longer. The default.
    Block,
}

impl QueuePolicy {
    /// The policy's name in config and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            QueuePolicy::DropNew => "drop_new",
            QueuePolicy::DropOld => "drop_old",
            QueuePolicy::Block => "block",
        }
    }
}

/// Settings the sans-IO core works with.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// Flag bits the broker advertises in `auth_ok`.
    pub server_flags: u16,
    /// Frame payload cap: nothing the broker sends may exceed it either.
    pub max_frame_bytes: u32,
    /// Events retained per stream for `start` replay.
    pub replay_capacity: usize,
    /// Payload bytes retained per stream for replay.
    pub replay_capacity_bytes: usize,
    /// Payload bytes retained for replay by all streams together. A stream
    /// whose publish takes the total past it forgets its own oldest events.
    pub replay_budget_bytes: usize,
    /// Bytes of encoded batches waiting in subscriber queues, broker-wide
    /// (a batch shared by many queues counts once). Past it, new batches
    /// go only to subscribers that are keeping up (fewer than
    /// [`super::pubsub::KEEPING_UP_BATCHES`] queued).
    pub queue_budget_bytes: usize,
    /// Streams one tenant may create by using them (when `auto_create`).
    pub max_auto_streams_per_tenant: usize,
    /// Streams all tenants may create by using them (when `auto_create`).
    pub max_auto_streams: usize,
    /// Longest name (tenant, namespace, stream, cache, key) in a request.
    pub max_name_bytes: usize,
    /// Most events in one coalesced batch.
    pub batch_max_events: usize,
    /// Most payload bytes in one coalesced batch.
    pub batch_max_bytes: usize,
    /// Longest a single event waits for others to share its batch.
    pub batch_linger: Duration,
    /// Batches a subscriber queue holds.
    pub queue_capacity: usize,
    /// What a full queue does.
    pub queue_policy: QueuePolicy,
    /// Longest a publisher waits for a `block` queue's room before that
    /// subscriber is marked lagging and its queue drops instead.
    pub queue_block_timeout: Duration,
    /// Cache memory bound, bytes: keys, values and each entry's and
    /// tenant's bookkeeping (see `cache::ENTRY_OVERHEAD_BYTES`).
    pub cache_capacity_bytes: usize,
    /// Most cache bytes one tenant may hold, counted as for
    /// `cache_capacity_bytes`; a tenant over it evicts its own oldest
    /// entries. The configuration defaults it to a quarter of the capacity.
    pub cache_tenant_capacity_bytes: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions_per_connection: usize,
    /// Publish payload bytes accepted but not yet fanned out, across the broker.
    pub max_inflight_publish_bytes: usize,
    /// Streams and caches spring into existence on first use (dev mode).
    pub auto_create: bool,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            server_flags: felix_wire::KNOWN_FLAGS,
            max_frame_bytes: felix_wire::DEFAULT_MAX_FRAME_BYTES,
            replay_capacity: 1024,
            replay_capacity_bytes: 8 * 1024 * 1024,
            replay_budget_bytes: 64 * 1024 * 1024,
            queue_budget_bytes: 64 * 1024 * 1024,
            max_auto_streams_per_tenant: 256,
            max_auto_streams: 1024,
            max_name_bytes: 1024,
            batch_max_events: 64,
            batch_max_bytes: 64 * 1024,
            batch_linger: Duration::from_micros(250),
            queue_capacity: 512,
            queue_policy: QueuePolicy::Block,
            queue_block_timeout: Duration::from_millis(500),
            cache_capacity_bytes: 64 * 1024 * 1024,
            cache_tenant_capacity_bytes: 16 * 1024 * 1024,
            max_subscriptions_per_connection: 1024,
            max_inflight_publish_bytes: 64 * 1024 * 1024,
            auto_create: true,
        }
    }
}
