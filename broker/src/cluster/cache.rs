//! The cache on a JetStream KV bucket: one bucket (`{prefix}_cache`) for
//! every tenant, namespace and cache, keyed by a hash of the whole scope
//! ([`super::names::cache_key`]).
//!
//! A 2.9 server only expires a whole bucket's entries by age, so each
//! value carries its own expiry: `expires_at_unix_ms` (u64, 0 = never),
//! then the scope's length-prefixed fields (u32 length), then the value.
//! A read treats an expired entry, or one whose stored scope is not the
//! one asked for, as missing. Expiry uses each node's wall clock, so
//! nodes' clocks must agree to well within the TTLs used.

use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use bytes::{BufMut, Bytes, BytesMut};

use super::names::{cache_bucket, cache_key, scope_bytes};
use super::{Cluster, ClusterError};
use crate::core::cache::CacheKey;
use crate::core::forward::{BackplaneError, ClusterCacheGet, ClusterCachePut};

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn scope(key: &CacheKey) -> Vec<u8> {
    scope_bytes(&[&key.tenant, &key.namespace, &key.cache, &key.key])
}

/// A value as stored: expiry, scope, value.
pub(crate) fn encode_entry(key: &CacheKey, value: &[u8], expires_at_unix_ms: u64) -> Bytes {
    let scope = scope(key);
    let mut out = BytesMut::with_capacity(12 + scope.len() + value.len());
    out.put_u64(expires_at_unix_ms);
    out.put_u32(scope.len() as u32);
    out.put_slice(&scope);
    out.put_slice(value);
    out.freeze()
}

/// The value of a stored entry, if it is this key's and alive at `now`.
pub(crate) fn decode_entry(key: &CacheKey, stored: &Bytes, now_unix_ms: u64) -> Option<Bytes> {
    let expires = u64::from_be_bytes(stored.get(..8)?.try_into().ok()?);
    let scope_len = u32::from_be_bytes(stored.get(8..12)?.try_into().ok()?) as usize;
    let scope_end = 12usize.checked_add(scope_len)?;
    if stored.get(12..scope_end)? != scope(key).as_slice() {
        return None;
    }
    if expires != 0 && now_unix_ms >= expires {
        return None;
    }
    Some(stored.slice(scope_end..))
}

impl Cluster {
    /// The bucket, made on first use. Its backing stream is made here
    /// rather than by async-nats's `create_key_value`, which first reads
    /// account info in a form a 2.9 server does not send.
    async fn bucket(&self) -> Result<&kv::Store, ClusterError> {
        self.kv
            .get_or_try_init(|| async {
                self.connected()?;
                let bucket = cache_bucket(&self.settings.prefix);
                let config = jetstream::stream::Config {
                    name: format!("KV_{bucket}"),
                    description: Some("felix cache".into()),
                    subjects: vec![format!("$KV.{bucket}.>")],
                    max_messages_per_subject: 1,
                    max_bytes: self.settings.cache_max_bytes,
                    num_replicas: self.settings.replicas,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    discard: jetstream::stream::DiscardPolicy::New,
                    ..Default::default()
                };
                self.js
                    .get_or_create_stream(config)
                    .await
                    .map_err(|e| ClusterError::js("creating the cache bucket", e))?;
                self.js
                    .get_key_value(bucket)
                    .await
                    .map_err(|e| ClusterError::js("opening the cache bucket", e))
            })
            .await
    }

    /// Stores an entry; returns once JetStream stored it.
    pub async fn cache_put(&self, put: &ClusterCachePut) -> Result<(), BackplaneError> {
        self.try_cache_put(put)
            .await
            .map_err(|e| self.failed("cache put", e))
    }

    async fn try_cache_put(&self, put: &ClusterCachePut) -> Result<(), ClusterError> {
        let expires = match put.ttl_ms {
            Some(ttl) => now_unix_ms().saturating_add(ttl.max(1)),
            None => 0,
        };
        self.connected()?;
        let entry = encode_entry(&put.key, &put.value, expires);
        let max = self.max_payload();
        if entry.len() > max {
            return Err(ClusterError::TooLarge {
                len: entry.len(),
                max,
            });
        }
        let bucket = self.bucket().await?;
        self.connected()?;
        bucket
            .put(cache_key(&put.key), entry)
            .await
            .map_err(|e| ClusterError::js("storing the cache entry", e))?;
        Ok(())
    }

    /// Reads an entry (`None`: absent, expired or not this key's).
    pub async fn cache_get(&self, get: &ClusterCacheGet) -> Result<Option<Bytes>, BackplaneError> {
        self.try_cache_get(get)
            .await
            .map_err(|e| self.failed("cache get", e))
    }

    async fn try_cache_get(&self, get: &ClusterCacheGet) -> Result<Option<Bytes>, ClusterError> {
        let bucket = self.bucket().await?;
        self.connected()?;
        let stored = bucket
            .get(cache_key(&get.key))
            .await
            .map_err(|e| ClusterError::js("reading the cache entry", e))?;
        let hit = stored.and_then(|s| decode_entry(&get.key, &s, now_unix_ms()));
        let counter = if hit.is_some() {
            &self.core.metrics.cache_hits
        } else {
            &self.core.metrics.cache_misses
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> CacheKey {
        CacheKey {
            tenant: "t1".into(),
            namespace: "default".into(),
            cache: "c".into(),
            key: k.into(),
        }
    }

    #[test]
    fn entries_round_trip_until_they_expire() {
        let stored = encode_entry(&key("a"), b"value", 1_000);
        assert_eq!(
            decode_entry(&key("a"), &stored, 999).as_deref(),
            Some(&b"value"[..])
        );
        assert_eq!(decode_entry(&key("a"), &stored, 1_000), None);
        let forever = encode_entry(&key("a"), b"", 0);
        assert_eq!(
            decode_entry(&key("a"), &forever, u64::MAX).as_deref(),
            Some(&b""[..])
        );
    }

    #[test]
    fn another_scope_or_garbage_reads_as_missing() {
        let stored = encode_entry(&key("a"), b"value", 0);
        assert_eq!(decode_entry(&key("b"), &stored, 0), None);
        for junk in [
            &b""[..],
            b"short",
            &[0u8, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255][..],
        ] {
            assert_eq!(
                decode_entry(&key("a"), &Bytes::copy_from_slice(junk), 0),
                None
            );
        }
    }
}
