//! Subscribing: scope checks, then the start position resolved against the
//! stream's ring (cursor errors come back as [`SubscribeError`]s).

use felix_wire::{StartPosition, Subscribe, EVENT_BATCH_OFFSETS};

use super::{Ready, RequestError};
use crate::core::forward::ClusterSubscribe;
use crate::core::perms::Action;
use crate::core::pubsub::{StreamKey, Subscription};
use crate::core::Core;

impl Ready {
    /// Checks and registers a subscription.
    pub fn subscribe(&self, core: &Core, s: Subscribe) -> Result<Subscription, RequestError> {
        self.authorize(
            core,
            Action::StreamSubscribe,
            &s.tenant_id,
            &s.namespace,
            &s.stream,
        )?;
        let key = StreamKey {
            tenant: s.tenant_id,
            namespace: s.namespace,
            stream: s.stream,
        };
        let id = s
            .subscription_id
            .unwrap_or_else(|| core.pubsub.next_subscription_id());
        let offsets = self.flags & EVENT_BATCH_OFFSETS != 0;
        let start = s.start.unwrap_or(StartPosition::Latest);
        let mut sub = core.pubsub.subscribe(&key, id, start, offsets)?;
        sub.expires_at_unix = self.ctx.expires_at_unix;
        Ok(sub)
    }

    /// Cluster mode: the same checks as [`Ready::subscribe`]; the shell
    /// resolves the start against JetStream.
    pub fn check_subscribe(
        &self,
        core: &Core,
        s: Subscribe,
    ) -> Result<ClusterSubscribe, RequestError> {
        self.authorize(
            core,
            Action::StreamSubscribe,
            &s.tenant_id,
            &s.namespace,
            &s.stream,
        )?;
        let key = StreamKey {
            tenant: s.tenant_id,
            namespace: s.namespace,
            stream: s.stream,
        };
        core.pubsub.admit_subscribe(&key)?;
        Ok(ClusterSubscribe {
            key,
            id: s
                .subscription_id
                .unwrap_or_else(|| core.pubsub.next_subscription_id()),
            start: s.start.unwrap_or(StartPosition::Latest),
            offsets: self.flags & EVENT_BATCH_OFFSETS != 0,
            expires_at_unix: self.ctx.expires_at_unix,
        })
    }
}
