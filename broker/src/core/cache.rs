//! The cache: values keyed by (tenant, namespace, cache, key) with a TTL in
//! milliseconds and a memory bound.
//!
//! Expiry is lazy on read *and* active: [`Cache::reclaim`] (called by the
//! shell on a timer and by every put) removes expired entries in deadline
//! order, so memory held by dead entries is returned without a read. When
//! the bound is exceeded, the oldest entries are evicted first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::metrics::Metrics;

/// A cache entry's full key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    /// Tenant id.
    pub tenant: String,
    /// Namespace.
    pub namespace: String,
    /// Cache name.
    pub cache: String,
    /// Key within the cache.
    pub key: String,
}

impl CacheKey {
    fn size(&self) -> usize {
        self.tenant.len() + self.namespace.len() + self.cache.len() + self.key.len()
    }
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    expires_at: Option<Instant>,
    generation: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<CacheKey, Entry>,
    /// Insertion order for eviction; stale generations are skipped.
    order: VecDeque<(CacheKey, u64)>,
    /// Expiry order; stale generations are skipped.
    expiries: BinaryHeap<Reverse<(Instant, u64, CacheKey)>>,
    bytes: usize,
    generation: u64,
}

impl Inner {
    fn remove(&mut self, key: &CacheKey) -> Option<Entry> {
        let e = self.map.remove(key)?;
        self.bytes -= key.size() + e.value.len();
        Some(e)
    }
}

/// The cache.
#[derive(Debug)]
pub struct Cache {
    inner: Mutex<Inner>,
    capacity_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Cache {
    /// A cache holding at most `capacity_bytes` of keys and values.
    pub fn new(capacity_bytes: usize, metrics: Arc<Metrics>) -> Self {
        Cache {
            inner: Mutex::new(Inner::default()),
            capacity_bytes,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `value`; `ttl` of zero expires at once (the key is removed),
    /// `None` never expires.
    pub fn put(&self, key: CacheKey, value: Bytes, ttl: Option<Duration>, now: Instant) {
        self.reclaim(now);
        let mut inner = self.lock();
        inner.remove(&key);
        if ttl.is_some_and(|t| t.is_zero()) {
            return;
        }
        let size = key.size() + value.len();
        if size > self.capacity_bytes {
            self.metrics.cache_evictions.fetch_add(1, Ordering::Relaxed);
            return;
        }
        inner.generation += 1;
        let generation = inner.generation;
        let expires_at = ttl.map(|t| now + t);
        if let Some(at) = expires_at {
            inner.expiries.push(Reverse((at, generation, key.clone())));
        }
        inner.order.push_back((key.clone(), generation));
        inner.bytes += size;
        inner.map.insert(
            key,
            Entry {
                value,
                expires_at,
                generation,
            },
        );
        while inner.bytes > self.capacity_bytes {
            let Some((old, gen)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&old).is_some_and(|e| e.generation == gen) {
                inner.remove(&old);
                self.metrics.cache_evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The value, if present and not expired.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Option<Bytes> {
        let mut inner = self.lock();
        let hit = match inner.map.get(key) {
            Some(e) if e.expires_at.is_none_or(|at| at > now) => Some(e.value.clone()),
            Some(_) => {
                inner.remove(key);
                self.metrics.cache_expired.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        };
        let counter = if hit.is_some() {
            &self.metrics.cache_hits
        } else {
            &self.metrics.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Removes every entry whose deadline has passed; returns how many.
    pub fn reclaim(&self, now: Instant) -> usize {
        let mut inner = self.lock();
        let mut removed = 0;
        while let Some(Reverse((at, _, _))) = inner.expiries.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, gen, key))) = inner.expiries.pop() else {
                break;
            };
            if inner.map.get(&key).is_some_and(|e| e.generation == gen) {
                inner.remove(&key);
                removed += 1;
            }
        }
        // Keep the eviction queue from growing without bound on overwrites.
        if inner.order.len() > 2 * inner.map.len() + 64 {
            let live: VecDeque<(CacheKey, u64)> = {
                let map = &inner.map;
                inner
                    .order
                    .iter()
                    .filter(|(k, g)| map.get(k).is_some_and(|e| e.generation == *g))
                    .cloned()
                    .collect()
            };
            inner.order = live;
        }
        self.metrics
            .cache_expired
            .fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// (entries, bytes) held now.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.map.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> CacheKey {
        CacheKey {
            tenant: "t".into(),
            namespace: "n".into(),
            cache: "c".into(),
            key: k.into(),
        }
    }

    fn cache(capacity: usize) -> Cache {
        Cache::new(capacity, Arc::new(Metrics::default()))
    }

    #[test]
    fn ttl_expires_and_zero_expires_at_once() {
        let c = cache(1 << 20);
        let t0 = Instant::now();
        c.put(
            key("a"),
            Bytes::from_static(b"1"),
            Some(Duration::from_millis(10)),
            t0,
        );
        c.put(key("b"), Bytes::from_static(b"2"), Some(Duration::ZERO), t0);
        c.put(key("c"), Bytes::from_static(b"3"), None, t0);
        assert_eq!(
            c.get(&key("a"), t0 + Duration::from_millis(9)).as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(c.get(&key("a"), t0 + Duration::from_millis(10)), None);
        assert_eq!(c.get(&key("b"), t0), None);
        assert_eq!(
            c.get(&key("c"), t0 + Duration::from_secs(3600)).as_deref(),
            Some(&b"3"[..])
        );
    }

    #[test]
    fn expired_entries_are_reclaimed_without_a_read() {
        let c = cache(1 << 20);
        let t0 = Instant::now();
        for i in 0..100 {
            c.put(
                key(&i.to_string()),
                Bytes::from(vec![0u8; 100]),
                Some(Duration::from_millis(5)),
                t0,
            );
        }
        assert_eq!(c.usage().0, 100);
        assert_eq!(c.reclaim(t0 + Duration::from_millis(5)), 100);
        assert_eq!(c.usage(), (0, 0));
    }

    #[test]
    fn capacity_evicts_oldest_first() {
        let c = cache(3 * (4 + 1 + 10));
        let t0 = Instant::now();
        for k in ["a", "b", "c", "d"] {
            c.put(key(k), Bytes::from(vec![0u8; 10]), None, t0);
        }
        assert_eq!(c.get(&key("a"), t0), None, "oldest evicted");
        assert!(c.get(&key("d"), t0).is_some());
        assert!(c.usage().1 <= 45);
        assert_eq!(c.metrics.cache_evictions.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn overwrite_replaces_value_and_ttl() {
        let c = cache(1 << 20);
        let t0 = Instant::now();
        c.put(
            key("a"),
            Bytes::from_static(b"old"),
            Some(Duration::from_millis(1)),
            t0,
        );
        c.put(key("a"), Bytes::from_static(b"new"), None, t0);
        c.reclaim(t0 + Duration::from_secs(1));
        assert_eq!(
            c.get(&key("a"), t0 + Duration::from_secs(1)).as_deref(),
            Some(&b"new"[..])
        );
        assert_eq!(c.usage().1, 4 + 3);
    }
}
