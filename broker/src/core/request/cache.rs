//! Cache puts and gets: the same scope checks for both, and a put refused
//! when reading it back could need a frame over the cap.

use std::time::{Duration, Instant};

use felix_wire::{CacheGet, CachePut, CacheValue};

use super::{check_names, Ready, RequestError};
use crate::core::cache::CacheKey;
use crate::core::forward::{ClusterCacheGet, ClusterCachePut};
use crate::core::perms::Action;
use crate::core::Core;

/// How much longer a `cache_value` can be than the `cache_put` payload
/// that stored its value: the type name is 2 bytes longer, and a get may
/// carry `,"request_id":` with 20 digits (34 bytes) where the put had
/// none. Everything else is the same fields, which the broker writes no
/// longer than any client can (canonical base64, the shortest escapes).
pub const CACHE_VALUE_GROWTH: usize = 36;

impl Ready {
    fn cache_scope(
        &self,
        core: &Core,
        action: Action,
        tenant: &str,
        namespace: &str,
        cache: &str,
        key: &str,
    ) -> Result<(), RequestError> {
        self.authorize(core, action, tenant, namespace, cache)?;
        check_names(core, &[("key", key)])?;
        if !core.cache_exists(tenant, namespace, cache) {
            return Err(RequestError::CacheNotFound {
                tenant: tenant.into(),
                namespace: namespace.into(),
                cache: cache.into(),
            });
        }
        Ok(())
    }

    /// Stores a value; `payload_len` is the put frame's payload length.
    pub fn cache_put(
        &self,
        core: &Core,
        c: CachePut,
        payload_len: usize,
        now: Instant,
    ) -> Result<(), RequestError> {
        self.cache_scope(
            core,
            Action::CacheWrite,
            &c.tenant_id,
            &c.namespace,
            &c.cache,
            &c.key,
        )?;
        let reply = payload_len + CACHE_VALUE_GROWTH;
        let max = core.settings.max_frame_bytes as usize;
        if reply > max {
            core.metrics
                .cache_rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(RequestError::CacheValueOverCap { len: reply, max });
        }
        let key = CacheKey {
            tenant: c.tenant_id,
            namespace: c.namespace,
            cache: c.cache,
            key: c.key,
        };
        core.cache
            .put(key, c.value, c.ttl_ms.map(Duration::from_millis), now)?;
        Ok(())
    }

    /// Reads a value (`value: None` for a miss).
    pub fn cache_get(
        &self,
        core: &Core,
        c: CacheGet,
        now: Instant,
    ) -> Result<CacheValue, RequestError> {
        self.cache_scope(
            core,
            Action::CacheRead,
            &c.tenant_id,
            &c.namespace,
            &c.cache,
            &c.key,
        )?;
        let key = CacheKey {
            tenant: c.tenant_id,
            namespace: c.namespace,
            cache: c.cache,
            key: c.key,
        };
        let value = core.cache.get(&key, now);
        let CacheKey {
            tenant,
            namespace,
            cache,
            key,
        } = key;
        Ok(CacheValue {
            tenant_id: tenant,
            namespace,
            cache,
            key,
            value,
            request_id: c.request_id,
        })
    }

    /// Cluster mode: the same checks as [`Ready::cache_put`]; the shell
    /// stores the entry in the KV bucket.
    pub fn check_cache_put(
        &self,
        core: &Core,
        c: CachePut,
        payload_len: usize,
    ) -> Result<ClusterCachePut, RequestError> {
        self.cache_scope(
            core,
            Action::CacheWrite,
            &c.tenant_id,
            &c.namespace,
            &c.cache,
            &c.key,
        )?;
        let reply = payload_len + CACHE_VALUE_GROWTH;
        let max = core.settings.max_frame_bytes as usize;
        if reply > max {
            return Err(RequestError::CacheValueOverCap { len: reply, max });
        }
        Ok(ClusterCachePut {
            key: CacheKey {
                tenant: c.tenant_id,
                namespace: c.namespace,
                cache: c.cache,
                key: c.key,
            },
            value: c.value,
            ttl_ms: c.ttl_ms,
            request_id: c.request_id,
        })
    }

    /// Cluster mode: the same checks as [`Ready::cache_get`].
    pub fn check_cache_get(
        &self,
        core: &Core,
        c: CacheGet,
    ) -> Result<ClusterCacheGet, RequestError> {
        self.cache_scope(
            core,
            Action::CacheRead,
            &c.tenant_id,
            &c.namespace,
            &c.cache,
            &c.key,
        )?;
        Ok(ClusterCacheGet {
            key: CacheKey {
                tenant: c.tenant_id,
                namespace: c.namespace,
                cache: c.cache,
                key: c.key,
            },
            request_id: c.request_id,
        })
    }
}
