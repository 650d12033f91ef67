//! The cache: values keyed by (tenant, namespace, cache, key) with a TTL in
//! milliseconds, a memory bound for the whole cache and a quota per tenant.
//!
//! # Accounting
//!
//! Every entry is charged what it holds in memory, not only its payload:
//! [`ENTRY_OVERHEAD_BYTES`] (the map slot, the shared key allocation, the
//! allocator's rounding of the key strings and the value, the entry's slot
//! and its expiry record, measured) plus the capacity of its four key
//! strings plus the value's length. Every tenant that holds entries is also
//! charged its record, [`TENANT_OVERHEAD_BYTES`] plus the tenant id's
//! length. The sum of the charges never exceeds the cache's capacity, so the
//! capacity bounds memory, not just payload bytes.
//!
//! The bookkeeping holds exactly one record of each kind per live entry: the
//! key is allocated once and shared (`Arc`) by the map and the entry, the
//! insertion order is a list threaded through the entries themselves, and
//! the expiry heap can remove or move an entry's deadline. An overwrite
//! updates its entry in place and a removal unlinks it at once, so no stale
//! record is left behind for later compaction: the structures stay
//! proportional to the live entries whatever the mix of overwrites,
//! evictions and expiries. (Their backing vectors and map keep the size of
//! their peak, which the capacity bounds in turn.)
//!
//! # Quotas and eviction
//!
//! A tenant may be charged at most its quota (`cache_tenant_capacity_bytes`).
//! A put that would take it past the quota evicts that tenant's own oldest
//! entries (oldest by last write), never another tenant's.
//!
//! When the whole cache would exceed its capacity, the tenant whose entries
//! are charged the most gives up its oldest entry, repeatedly. A tenant at
//! or under the average (capacity / tenants holding entries, its fair
//! share) is therefore never evicted while another tenant is over it; a
//! busy tenant can only push the others down to its own level. Finding that
//! tenant is a heap lookup, so eviction stays O(log tenants). With the
//! default quota of a quarter of the capacity, the global bound only comes
//! into play once more than four tenants are near their quota.
//!
//! # Refusals
//!
//! An entry whose charge (plus its tenant's record) exceeds the quota or the
//! capacity can never be stored: [`Cache::put`] refuses it with
//! [`CacheRejected`], whose text is what the client is told, and counts it
//! in `cache_rejected` (not as an eviction). The key's previous value is
//! removed all the same, as any put replaces it, so a reader never gets the
//! value a writer tried to replace.
//!
//! # Expiry
//!
//! Expiry is lazy on read *and* active: [`Cache::reclaim`] (called by the
//! shell on a timer and by every put) removes expired entries in deadline
//! order, so memory held by dead entries is returned without a read.
//!
//! # Not counted
//!
//! A value is charged its length: values come from the JSON decoder as
//! freshly decoded buffers (at most 2 bytes of slack), not as slices of a
//! larger frame. Allocator fragmentation after churn is not charged.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::metrics::Metrics;

/// Memory one entry holds beyond its key strings' capacity and its value's
/// length, bytes.
///
/// Made of: a map slot (an `Arc` pointer and a `u32` id, 16 bytes, plus a
/// control byte, at a load factor between 7/8 and 7/16), the shared key
/// allocation (two counts and four `String` headers: 112 bytes, a 128-byte
/// chunk), the allocator's header and rounding of each of the four key
/// strings (up to 31 bytes each for one-byte strings), of the value's
/// buffer and of its shared header (for a one-byte value decoded from
/// base64, whose buffer has spare capacity: ~60 bytes), the entry's slab
/// slot (72 bytes), its expiry heap item and position (28 bytes) and its
/// share of the free list.
///
/// Measured by the ignored test `measure_entry_overhead`: it inserts N
/// entries as the decoder makes them (one-byte tenant, namespace and cache
/// strings, a seven-byte key, a one-byte value decoded from base64, a TTL),
/// each string its own allocation, and divides the growth of the process's
/// RSS (`/proc/self/statm`) by N, less the key and value bytes. Debug
/// build, glibc malloc, x86-64: 439, 448, 446, 449 and 445 bytes for N =
/// 100,000, 250,000, 500,000, 917,505 (just past a map resize, the map's
/// worst load factor) and 1,000,000. A one-byte key would add ~6 more; the
/// constant is the largest figure plus that, rounded up to 16. The same
/// test on the previous layout (the key cloned into the map, the order
/// queue and the expiry heap) gave 983 bytes. Under churn (the ignored
/// `measure_churn_rss`: 2 million puts into a full cache, evicting all
/// along) RSS stays within 0.85-1.06 times the capacity.
pub const ENTRY_OVERHEAD_BYTES: usize = 464;

/// Memory a tenant's record holds beyond the tenant id's length, bytes,
/// charged while the tenant holds entries: the id map's slot (a `String`
/// header and a `u32`, 32 bytes, plus a control byte), the id's own
/// allocation and its rounding, the record's slab slot (32 bytes) and its
/// place in the usage heap (20 bytes).
///
/// Measured as for [`ENTRY_OVERHEAD_BYTES`] with every entry in a tenant of
/// its own (`FELIX_CACHE_MEASURE_TENANTS=1`), less the entry overhead:
/// 115-156 bytes for N = 100,000, 458,753 (just past the id map's resize)
/// and 500,000, with seven-byte ids; rounded up with a margin.
pub const TENANT_OVERHEAD_BYTES: usize = 176;

/// "No entry" in the links and heap positions.
const NIL: u32 = u32::MAX;

/// Most entries at once: ids are `u32`, [`NIL`] excluded. Only a capacity
/// beyond ~1.9 TiB could reach it; the global bound evicts at this count.
const MAX_ENTRIES: usize = NIL as usize;

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
    /// Heap bytes the key's strings hold: their capacity, which a string
    /// decoded with escapes may have beyond its length.
    fn heap_bytes(&self) -> usize {
        self.tenant.capacity()
            + self.namespace.capacity()
            + self.cache.capacity()
            + self.key.capacity()
    }
}

/// What an entry with this key and a value of `value_len` bytes is charged.
fn entry_charge(key: &CacheKey, value_len: usize) -> usize {
    ENTRY_OVERHEAD_BYTES + key.heap_bytes() + value_len
}

/// What a tenant's record is charged while the tenant holds entries.
fn tenant_charge(tenant: &str) -> usize {
    TENANT_OVERHEAD_BYTES + tenant.len()
}

/// The cache's bounds, in charged bytes (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Bytes the whole cache may be charged.
    pub capacity_bytes: usize,
    /// Bytes one tenant may be charged (its entries and its record).
    pub tenant_capacity_bytes: usize,
}

impl CacheLimits {
    /// Whether an entry needing `needed` bytes (with its tenant's record)
    /// could ever be stored; the error names the smaller bound.
    fn admit(&self, needed: usize) -> Result<(), CacheRejected> {
        if self.tenant_capacity_bytes < self.capacity_bytes {
            if needed > self.tenant_capacity_bytes {
                return Err(CacheRejected::OverTenantQuota {
                    needed,
                    quota: self.tenant_capacity_bytes,
                });
            }
        } else if needed > self.capacity_bytes {
            return Err(CacheRejected::OverCapacity {
                needed,
                capacity: self.capacity_bytes,
            });
        }
        Ok(())
    }
}

/// Why a put was refused; the text is what a client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheRejected {
    /// The entry alone is larger than one tenant may hold.
    #[error(
        "cache value too large: {needed} bytes with its key and bookkeeping \
         exceeds the per-tenant cache quota of {quota} bytes"
    )]
    OverTenantQuota {
        /// Bytes the entry would be charged, with its tenant's record.
        needed: usize,
        /// The per-tenant quota.
        quota: usize,
    },
    /// The entry alone is larger than the whole cache.
    #[error(
        "cache value too large: {needed} bytes with its key and bookkeeping \
         exceeds the cache capacity of {capacity} bytes"
    )]
    OverCapacity {
        /// Bytes the entry would be charged, with its tenant's record.
        needed: usize,
        /// The cache's capacity.
        capacity: usize,
    },
}

/// Values stored by `u32` id, with ids of removed values reused.
#[derive(Debug)]
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// Stores `item`; the caller keeps the count of live items below
    /// [`MAX_ENTRIES`].
    fn insert(&mut self, item: T) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.items[id as usize] = Some(item);
                id
            }
            None => {
                self.items.push(Some(item));
                (self.items.len() - 1) as u32
            }
        }
    }

    fn remove(&mut self, id: u32) -> Option<T> {
        let item = self.items.get_mut(id as usize)?.take()?;
        self.free.push(id);
        Some(item)
    }

    fn get(&self, id: u32) -> Option<&T> {
        self.items.get(id as usize)?.as_ref()
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.items.get_mut(id as usize)?.as_mut()
    }
}

/// A binary min-heap of `(priority, id)` that can also move or remove an
/// id's item in O(log n), so nothing stale ever stays in it.
#[derive(Debug)]
struct IndexedHeap<P> {
    items: Vec<(P, u32)>,
    /// Where each id's item is in `items`, [`NIL`] if it has none.
    pos: Vec<u32>,
}

impl<P> Default for IndexedHeap<P> {
    fn default() -> Self {
        IndexedHeap {
            items: Vec::new(),
            pos: Vec::new(),
        }
    }
}

impl<P: Ord + Copy> IndexedHeap<P> {
    fn peek(&self) -> Option<(P, u32)> {
        self.items.first().copied()
    }

    /// Inserts or moves `id`'s item.
    fn set(&mut self, id: u32, priority: P) {
        let slot = id as usize;
        if slot >= self.pos.len() {
            self.pos.resize(slot + 1, NIL);
        }
        match self.pos[slot] {
            NIL => {
                self.items.push((priority, id));
                let at = self.items.len() - 1;
                self.pos[slot] = at as u32;
                self.sift_up(at);
            }
            at => {
                let at = at as usize;
                let old = std::mem::replace(&mut self.items[at].0, priority);
                if priority < old {
                    self.sift_up(at);
                } else {
                    self.sift_down(at);
                }
            }
        }
    }

    /// Removes `id`'s item, if it has one.
    fn remove(&mut self, id: u32) {
        let Some(at) = self.pos.get_mut(id as usize) else {
            return;
        };
        let at = std::mem::replace(at, NIL);
        if at == NIL {
            return;
        }
        let at = at as usize;
        self.items.swap_remove(at);
        if let Some(&(_, moved)) = self.items.get(at) {
            self.pos[moved as usize] = at as u32;
            self.sift_down(at);
            self.sift_up(at);
        }
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.items[at].0 >= self.items[parent].0 {
                break;
            }
            self.swap(at, parent);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        let len = self.items.len();
        loop {
            let left = 2 * at + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.items[right].0 < self.items[left].0 {
                right
            } else {
                left
            };
            if self.items[child].0 >= self.items[at].0 {
                break;
            }
            self.swap(at, child);
            at = child;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.items.swap(a, b);
        self.pos[self.items[a].1 as usize] = a as u32;
        self.pos[self.items[b].1 as usize] = b as u32;
    }
}

/// An entry, threaded into its tenant's write order.
#[derive(Debug)]
struct Entry {
    /// Shared with the map, which it lets eviction find.
    key: Arc<CacheKey>,
    value: Bytes,
    expires_at: Option<Instant>,
    tenant: u32,
    /// The tenant's next older entry, [`NIL`] for its oldest.
    older: u32,
    /// The tenant's next newer entry, [`NIL`] for its newest.
    newer: u32,
}

impl Entry {
    fn charge(&self) -> usize {
        entry_charge(&self.key, self.value.len())
    }
}

/// A tenant holding entries: its write order and its charges.
#[derive(Debug)]
struct Tenant {
    oldest: u32,
    newest: u32,
    /// Charged bytes of its entries in the order.
    entry_bytes: usize,
    /// Charged bytes of this record.
    record_bytes: usize,
}

/// The tenants holding entries, by id and by how much they hold.
#[derive(Debug, Default)]
struct Tenants {
    ids: HashMap<String, u32>,
    records: Slab<Tenant>,
    /// Largest `entry_bytes` first: who gives up entries for the global bound.
    by_usage: IndexedHeap<Reverse<usize>>,
}

impl Tenants {
    /// The tenant's id, and the bytes its record adds if it is new.
    fn id_or_insert(&mut self, name: &str) -> (u32, usize) {
        if let Some(&id) = self.ids.get(name) {
            return (id, 0);
        }
        let record_bytes = tenant_charge(name);
        let id = self.records.insert(Tenant {
            oldest: NIL,
            newest: NIL,
            entry_bytes: 0,
            record_bytes,
        });
        self.ids.insert(name.to_owned(), id);
        self.by_usage.set(id, Reverse(0));
        (id, record_bytes)
    }

    /// Drops the record of a tenant left without entries; returns the
    /// bytes it was charged.
    fn release_if_empty(&mut self, id: u32, name: &str) -> usize {
        if self.records.get(id).is_none_or(|t| t.oldest != NIL) {
            return 0;
        }
        self.ids.remove(name);
        self.by_usage.remove(id);
        self.records.remove(id).map_or(0, |t| t.record_bytes)
    }

    /// Bytes the tenant is charged now, record included.
    fn usage(&self, id: u32) -> usize {
        self.records
            .get(id)
            .map_or(0, |t| t.entry_bytes + t.record_bytes)
    }

    fn oldest(&self, id: u32) -> Option<u32> {
        self.records.get(id).map(|t| t.oldest).filter(|&e| e != NIL)
    }

    /// The tenant whose entries are charged the most, if any holds one.
    fn largest(&self) -> Option<u32> {
        match self.by_usage.peek() {
            Some((Reverse(bytes), id)) if bytes > 0 => Some(id),
            _ => None,
        }
    }

    /// Charges a tenant for an entry joining its order.
    fn add_entry_bytes(&mut self, id: u32, bytes: usize) {
        if let Some(t) = self.records.get_mut(id) {
            t.entry_bytes += bytes;
            self.rerank(id);
        }
    }

    /// Refunds a tenant for an entry leaving its order.
    fn sub_entry_bytes(&mut self, id: u32, bytes: usize) {
        if let Some(t) = self.records.get_mut(id) {
            t.entry_bytes -= bytes;
            self.rerank(id);
        }
    }

    /// Moves a tenant to its place in the eviction ranking.
    fn rerank(&mut self, id: u32) {
        if let Some(t) = self.records.get(id) {
            self.by_usage.set(id, Reverse(t.entry_bytes));
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Arc<CacheKey>, u32>,
    entries: Slab<Entry>,
    /// Deadlines of the entries that have one, soonest first.
    expiries: IndexedHeap<Instant>,
    tenants: Tenants,
    /// Charged bytes: entries and tenant records.
    bytes: usize,
}

/// What one call did, for the counters.
#[derive(Debug, Default)]
struct Tally {
    evicted: u64,
    expired: u64,
}

impl Inner {
    /// Takes entry `id` out of its tenant's order and the charges; it stays
    /// in the map (an overwrite puts it back with [`Inner::attach`]).
    fn detach(&mut self, id: u32) {
        let Some(e) = self.entries.get(id) else {
            return;
        };
        let (tenant, older, newer, charge) = (e.tenant, e.older, e.newer, e.charge());
        match self.entries.get_mut(older) {
            Some(o) => o.newer = newer,
            None => {
                if let Some(t) = self.tenants.records.get_mut(tenant) {
                    t.oldest = newer;
                }
            }
        }
        match self.entries.get_mut(newer) {
            Some(n) => n.older = older,
            None => {
                if let Some(t) = self.tenants.records.get_mut(tenant) {
                    t.newest = older;
                }
            }
        }
        self.tenants.sub_entry_bytes(tenant, charge);
        self.bytes -= charge;
    }

    /// Makes entry `id` its tenant's newest and charges it.
    fn attach(&mut self, id: u32) {
        let Some(e) = self.entries.get(id) else {
            return;
        };
        let (tenant, charge) = (e.tenant, e.charge());
        let Some(t) = self.tenants.records.get_mut(tenant) else {
            return;
        };
        let older = std::mem::replace(&mut t.newest, id);
        if t.oldest == NIL {
            t.oldest = id;
        }
        if let Some(o) = self.entries.get_mut(older) {
            o.newer = id;
        }
        if let Some(e) = self.entries.get_mut(id) {
            e.older = older;
            e.newer = NIL;
        }
        self.tenants.add_entry_bytes(tenant, charge);
        self.bytes += charge;
    }

    /// Removes entry `id` everywhere; its tenant's record stays.
    fn remove_entry(&mut self, id: u32) -> Option<Entry> {
        self.detach(id);
        self.expiries.remove(id);
        let e = self.entries.remove(id)?;
        self.map.remove(&*e.key);
        Some(e)
    }

    /// Removes entry `id` and its tenant's record if that was its last.
    fn remove_and_release(&mut self, id: u32) {
        if let Some(e) = self.remove_entry(id) {
            self.bytes -= self.tenants.release_if_empty(e.tenant, &e.key.tenant);
        }
    }

    fn remove_key(&mut self, key: &CacheKey) {
        if let Some(&id) = self.map.get(key) {
            self.remove_and_release(id);
        }
    }

    fn reclaim(&mut self, now: Instant, tally: &mut Tally) {
        while let Some((at, id)) = self.expiries.peek() {
            if at > now {
                break;
            }
            self.remove_and_release(id);
            tally.expired += 1;
        }
    }

    /// Evicts until an entry charged `charge` fits for tenant `tenant`:
    /// first the tenant's own oldest entries down to its quota, then, while
    /// the whole cache is over capacity, the oldest entries of whichever
    /// tenant holds the most. The tenant's record is kept, whatever it is
    /// left with, since the entry is about to join it.
    fn make_room(
        &mut self,
        tenant: u32,
        charge: usize,
        adds_entry: bool,
        limits: CacheLimits,
        tally: &mut Tally,
    ) {
        while self.tenants.usage(tenant) + charge > limits.tenant_capacity_bytes {
            let Some(victim) = self.tenants.oldest(tenant) else {
                break;
            };
            self.remove_entry(victim);
            tally.evicted += 1;
        }
        while self.bytes + charge > limits.capacity_bytes
            || (adds_entry && self.map.len() >= MAX_ENTRIES)
        {
            let Some(victim) = self.tenants.largest().and_then(|t| self.tenants.oldest(t)) else {
                break;
            };
            if let Some(e) = self.remove_entry(victim) {
                if e.tenant != tenant {
                    self.bytes -= self.tenants.release_if_empty(e.tenant, &e.key.tenant);
                }
            }
            tally.evicted += 1;
        }
    }

    /// Stores `value` under `key`, or refuses it (see [`Cache::put`]).
    fn put(
        &mut self,
        limits: CacheLimits,
        key: CacheKey,
        value: Bytes,
        expires_at: Option<Instant>,
        tally: &mut Tally,
    ) -> Result<(), CacheRejected> {
        let existing = self.map.get(&key).copied();
        // An overwrite keeps the stored key, so it is charged by that one.
        let stored = existing.and_then(|id| self.entries.get(id));
        let charge = entry_charge(stored.map_or(&key, |e| &e.key), value.len());
        if let Err(rejected) = limits.admit(charge + tenant_charge(&key.tenant)) {
            if let Some(id) = existing {
                self.remove_and_release(id);
            }
            return Err(rejected);
        }
        let id = match existing {
            Some(id) => self.overwrite(id, value, charge, limits, tally),
            None => self.insert(key, value, charge, limits, tally),
        };
        if let Some(e) = self.entries.get_mut(id) {
            e.expires_at = expires_at;
        }
        self.attach(id);
        match expires_at {
            Some(at) => self.expiries.set(id, at),
            None => self.expiries.remove(id),
        }
        Ok(())
    }

    /// Replaces entry `id`'s value in place (no allocation, no stale
    /// record), making room first; the caller attaches it again.
    fn overwrite(
        &mut self,
        id: u32,
        value: Bytes,
        charge: usize,
        limits: CacheLimits,
        tally: &mut Tally,
    ) -> u32 {
        let tenant = self.entries.get(id).map_or(NIL, |e| e.tenant);
        self.detach(id);
        self.make_room(tenant, charge, false, limits, tally);
        if let Some(e) = self.entries.get_mut(id) {
            e.value = value;
        }
        id
    }

    /// Adds a new entry (its key allocated once, shared by the map and the
    /// entry), making room first; the caller attaches it.
    fn insert(
        &mut self,
        key: CacheKey,
        value: Bytes,
        charge: usize,
        limits: CacheLimits,
        tally: &mut Tally,
    ) -> u32 {
        let (tenant, record_bytes) = self.tenants.id_or_insert(&key.tenant);
        self.bytes += record_bytes;
        self.make_room(tenant, charge, true, limits, tally);
        let key = Arc::new(key);
        let id = self.entries.insert(Entry {
            key: key.clone(),
            value,
            expires_at: None,
            tenant,
            older: NIL,
            newer: NIL,
        });
        self.map.insert(key, id);
        id
    }
}

/// The cache.
#[derive(Debug)]
pub struct Cache {
    inner: Mutex<Inner>,
    limits: CacheLimits,
    metrics: Arc<Metrics>,
}

impl Cache {
    /// An empty cache within `limits`.
    pub fn new(limits: CacheLimits, metrics: Arc<Metrics>) -> Self {
        Cache {
            inner: Mutex::new(Inner::default()),
            limits,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts what a call did and publishes the gauges.
    fn record(&self, inner: &Inner, tally: &Tally) {
        let m = &self.metrics;
        if tally.evicted > 0 {
            m.cache_evictions
                .fetch_add(tally.evicted, Ordering::Relaxed);
        }
        if tally.expired > 0 {
            m.cache_expired.fetch_add(tally.expired, Ordering::Relaxed);
        }
        m.cache_bytes.store(inner.bytes as u64, Ordering::Relaxed);
        m.cache_entries
            .store(inner.map.len() as u64, Ordering::Relaxed);
    }

    /// Stores `value`; `ttl` of zero expires at once (the key is removed),
    /// `None` never expires, nor does a TTL too long to represent.
    ///
    /// Refused, with the key's previous value removed, when the entry alone
    /// exceeds the tenant quota or the capacity (see the module doc).
    pub fn put(
        &self,
        key: CacheKey,
        value: Bytes,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<(), CacheRejected> {
        let mut tally = Tally::default();
        let mut inner = self.lock();
        inner.reclaim(now, &mut tally);
        let result = match ttl {
            Some(t) if t.is_zero() => {
                inner.remove_key(&key);
                Ok(())
            }
            ttl => {
                let expires_at = ttl.and_then(|t| now.checked_add(t));
                inner.put(self.limits, key, value, expires_at, &mut tally)
            }
        };
        if result.is_err() {
            self.metrics.cache_rejected.fetch_add(1, Ordering::Relaxed);
        }
        self.record(&inner, &tally);
        result
    }

    /// The value, if present and not expired.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Option<Bytes> {
        let mut inner = self.lock();
        let found = inner
            .map
            .get(key)
            .and_then(|&id| Some((id, inner.entries.get(id)?)));
        let hit = match found {
            Some((_, e)) if e.expires_at.is_none_or(|at| at > now) => Some(e.value.clone()),
            Some((id, _)) => {
                self.expire(&mut inner, id);
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

    /// Removes an entry a read found expired.
    fn expire(&self, inner: &mut Inner, id: u32) {
        inner.remove_and_release(id);
        let tally = Tally {
            expired: 1,
            ..Tally::default()
        };
        self.record(inner, &tally);
    }

    /// Removes every entry whose deadline has passed; returns how many.
    pub fn reclaim(&self, now: Instant) -> usize {
        let mut tally = Tally::default();
        let mut inner = self.lock();
        inner.reclaim(now, &mut tally);
        if tally.expired > 0 {
            self.record(&inner, &tally);
        }
        tally.expired as usize
    }

    /// (entries, charged bytes) held now.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.map.len(), inner.bytes)
    }
}

impl Cache {
    /// Panics unless every structure agrees with every other and the
    /// bounds hold: for tests and the `broker_session` fuzz target.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let inner = self.lock();
        let mut linked = 0;
        let mut total = 0;
        for (name, &t) in &inner.tenants.ids {
            let record = inner.tenants.records.get(t).expect("record");
            let order = inner.order_of(t);
            assert!(!order.is_empty(), "tenant {name} kept without entries");
            let mut bytes = 0;
            for &id in &order {
                let e = inner.entries.get(id).expect("entry");
                assert_eq!((&e.key.tenant, e.tenant), (name, t));
                assert_eq!(inner.map.get(&*e.key), Some(&id));
                bytes += e.charge();
            }
            assert_eq!(record.entry_bytes, bytes, "tenant {name}");
            assert_eq!(record.record_bytes, tenant_charge(name));
            let usage = bytes + record.record_bytes;
            assert!(usage <= self.limits.tenant_capacity_bytes, "{name} {usage}");
            let at = inner.tenants.by_usage.pos[t as usize] as usize;
            assert_eq!(inner.tenants.by_usage.items[at], (Reverse(bytes), t));
            linked += order.len();
            total += usage;
        }
        assert_eq!(linked, inner.map.len());
        assert_eq!(inner.tenants.by_usage.items.len(), inner.tenants.ids.len());
        assert_eq!(total, inner.bytes);
        assert!(inner.bytes <= self.limits.capacity_bytes);
        let deadlines = inner
            .map
            .values()
            .filter(|&&id| {
                inner
                    .entries
                    .get(id)
                    .is_some_and(|e| e.expires_at.is_some())
            })
            .count();
        assert_eq!(inner.expiries.items.len(), deadlines);
        inner.expiries.check();
        inner.tenants.by_usage.check();
    }
}

#[cfg(test)]
impl Cache {
    /// (entries threaded in the tenants' write orders, expiry heap items):
    /// the bookkeeping records, which must match the live entries.
    fn record_counts(&self) -> (usize, usize) {
        let inner = self.lock();
        let linked = inner
            .tenants
            .ids
            .values()
            .map(|&t| inner.order_of(t).len())
            .sum();
        (linked, inner.expiries.items.len())
    }

    /// Bytes the tenant is charged now, its record included.
    fn tenant_usage(&self, tenant: &str) -> usize {
        let inner = self.lock();
        inner
            .tenants
            .ids
            .get(tenant)
            .map_or(0, |&t| inner.tenants.usage(t))
    }
}

impl Inner {
    /// The tenant's entries, oldest first, checking the back links.
    fn order_of(&self, tenant: u32) -> Vec<u32> {
        let mut order = Vec::new();
        let mut prev = NIL;
        let mut at = self.tenants.records.get(tenant).map_or(NIL, |t| t.oldest);
        while at != NIL {
            let e = self.entries.get(at).expect("linked entry");
            assert_eq!(e.older, prev, "back link");
            order.push(at);
            prev = at;
            at = e.newer;
        }
        let newest = self.tenants.records.get(tenant).map_or(NIL, |t| t.newest);
        assert_eq!(newest, prev, "newest");
        order
    }
}

impl<P: Ord + Copy + std::fmt::Debug> IndexedHeap<P> {
    /// Panics unless the heap order and the positions hold.
    fn check(&self) {
        for (at, &(p, id)) in self.items.iter().enumerate() {
            assert_eq!(self.pos[id as usize] as usize, at, "position of {id}");
            if at > 0 {
                assert!(self.items[(at - 1) / 2].0 <= p, "heap order at {at}");
            }
        }
        let placed = self.pos.iter().filter(|&&p| p != NIL).count();
        assert_eq!(placed, self.items.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> CacheKey {
        tkey("t", k)
    }

    fn tkey(tenant: &str, k: &str) -> CacheKey {
        CacheKey {
            tenant: tenant.into(),
            namespace: "n".into(),
            cache: "c".into(),
            key: k.into(),
        }
    }

    fn cache_with_quota(capacity_bytes: usize, tenant_capacity_bytes: usize) -> Cache {
        let limits = CacheLimits {
            capacity_bytes,
            tenant_capacity_bytes,
        };
        Cache::new(limits, Arc::new(Metrics::default()))
    }

    fn cache(capacity: usize) -> Cache {
        cache_with_quota(capacity, capacity)
    }

    fn put(c: &Cache, k: CacheKey, len: usize, ttl: Option<Duration>, now: Instant) {
        c.put(k, Bytes::from(vec![0u8; len]), ttl, now)
            .expect("stored");
    }

    #[test]
    fn ttl_expires_and_zero_expires_at_once() {
        let c = cache(1 << 20);
        let t0 = Instant::now();
        let one = |v: &'static [u8]| Bytes::from_static(v);
        let ttl = Some(Duration::from_millis(10));
        c.put(key("a"), one(b"1"), ttl, t0).expect("stored");
        c.put(key("b"), one(b"2"), Some(Duration::ZERO), t0)
            .expect("stored");
        c.put(key("c"), one(b"3"), None, t0).expect("stored");
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
        c.check_invariants();
    }

    #[test]
    fn a_ttl_too_long_to_represent_never_expires() {
        let c = cache(1 << 20);
        let t0 = Instant::now();
        put(&c, key("a"), 1, Some(Duration::MAX), t0);
        put(&c, key("b"), 1, Some(Duration::from_millis(u64::MAX)), t0);
        let later = t0 + Duration::from_secs(1 << 40);
        assert!(c.get(&key("a"), later).is_some());
        assert!(c.get(&key("b"), later).is_some());
        c.check_invariants();
    }

    #[test]
    fn expired_entries_are_reclaimed_without_a_read() {
        let c = cache(1 << 20);
        let t0 = Instant::now();
        for i in 0..100 {
            put(
                &c,
                key(&i.to_string()),
                100,
                Some(Duration::from_millis(5)),
                t0,
            );
        }
        assert_eq!(c.usage().0, 100);
        assert_eq!(c.reclaim(t0 + Duration::from_millis(5)), 100);
        assert_eq!(c.usage(), (0, 0), "the tenant's record goes too");
        assert_eq!(c.record_counts(), (0, 0));
        c.check_invariants();
    }

    #[test]
    fn capacity_evicts_oldest_first() {
        let entry = entry_charge(&key("a"), 10);
        let c = cache(tenant_charge("t") + 3 * entry);
        let t0 = Instant::now();
        for k in ["a", "b", "c", "d"] {
            put(&c, key(k), 10, None, t0);
        }
        assert_eq!(c.get(&key("a"), t0), None, "oldest evicted");
        assert!(c.get(&key("d"), t0).is_some());
        assert_eq!(c.usage(), (3, tenant_charge("t") + 3 * entry));
        assert_eq!(c.metrics.cache_evictions.load(Ordering::Relaxed), 1);
        c.check_invariants();
    }

    #[test]
    fn an_overwrite_moves_the_key_to_the_back_of_the_order() {
        let entry = entry_charge(&key("a"), 10);
        let c = cache(tenant_charge("t") + 3 * entry);
        let t0 = Instant::now();
        for k in ["a", "b", "c", "a", "d"] {
            put(&c, key(k), 10, None, t0);
        }
        assert_eq!(c.get(&key("b"), t0), None, "b is now the oldest");
        assert!(c.get(&key("a"), t0).is_some());
        c.check_invariants();
    }

    #[test]
    fn overwrite_replaces_value_and_ttl() {
        let c = cache(1 << 20);
        let t0 = Instant::now();
        let old = Some(Duration::from_millis(1));
        c.put(key("a"), Bytes::from_static(b"old"), old, t0)
            .expect("stored");
        c.put(key("a"), Bytes::from_static(b"new"), None, t0)
            .expect("stored");
        c.reclaim(t0 + Duration::from_secs(1));
        assert_eq!(
            c.get(&key("a"), t0 + Duration::from_secs(1)).as_deref(),
            Some(&b"new"[..])
        );
        let charged = tenant_charge("t") + entry_charge(&key("a"), 3);
        assert_eq!(c.usage(), (1, charged));
        c.check_invariants();
    }

    /// Finding 4: every put with a TTL used to push an expiry record (with
    /// a key clone) that overwrites and evictions never removed: 4000
    /// records for one live entry.
    #[test]
    fn overwrites_and_evictions_leave_no_stale_records() {
        let c = cache(1 << 20);
        let t0 = Instant::now();
        let value = Bytes::from(vec![0u8; 64 * 1024]);
        let long = Some(Duration::from_secs(3600));
        for _ in 0..4000 {
            c.put(key("a"), value.clone(), long, t0).expect("stored");
        }
        assert_eq!(c.record_counts(), (1, 1), "one live entry");
        for i in 0..4000 {
            c.put(key(&i.to_string()), value.clone(), long, t0)
                .expect("stored");
        }
        let live = c.usage().0;
        assert!(live < 16, "{live}");
        assert_eq!(c.record_counts(), (live, live));
        c.check_invariants();
    }

    /// Finding 5: only key and value bytes were counted, so a million tiny
    /// entries were "14 MB" in 679 MB of RSS.
    #[test]
    fn tiny_entries_are_charged_their_overhead() {
        let capacity = 64 * 1024;
        let c = cache(capacity);
        let t0 = Instant::now();
        for i in 0..10_000 {
            c.put(key(&format!("{i:05}")), Bytes::from_static(b"v"), None, t0)
                .expect("stored");
        }
        let per_entry = ENTRY_OVERHEAD_BYTES + 3 + 5 + 1;
        let (entries, bytes) = c.usage();
        assert!(
            entries <= capacity / per_entry,
            "{entries} entries in {capacity} bytes"
        );
        assert_eq!(bytes, tenant_charge("t") + entries * per_entry);
        assert!(bytes <= capacity);
        c.check_invariants();
    }

    /// Finding 6: one tenant's puts evicted another's entries through the
    /// single global order.
    #[test]
    fn a_tenant_over_its_quota_evicts_only_its_own_entries() {
        let c = cache_with_quota(1 << 20, 1 << 18);
        let t0 = Instant::now();
        for i in 0..10 {
            put(&c, tkey("b", &i.to_string()), 1024, None, t0);
        }
        for i in 0..10_000 {
            put(&c, tkey("a", &i.to_string()), 1024, None, t0);
        }
        for i in 0..10 {
            let k = tkey("b", &i.to_string());
            assert!(c.get(&k, t0).is_some(), "b's entry {i} evicted");
        }
        assert!(c.tenant_usage("a") <= 1 << 18);
        assert!(
            c.get(&tkey("a", "9999"), t0).is_some(),
            "a keeps its newest"
        );
        assert!(c.get(&tkey("a", "0"), t0).is_none(), "a lost its oldest");
        c.check_invariants();
    }

    /// More tenants at their quota than the capacity holds: the largest
    /// give way, a small tenant keeps everything.
    #[test]
    fn the_global_bound_evicts_from_the_largest_tenant() {
        let (capacity, quota) = (1 << 20, 1 << 18);
        let c = cache_with_quota(capacity, quota);
        let t0 = Instant::now();
        for i in 0..10 {
            put(&c, tkey("small", &i.to_string()), 1024, None, t0);
        }
        for round in 0..1000 {
            for tenant in ["a", "b", "c", "d", "e", "f"] {
                put(&c, tkey(tenant, &round.to_string()), 1024, None, t0);
            }
        }
        for i in 0..10 {
            let k = tkey("small", &i.to_string());
            assert!(c.get(&k, t0).is_some(), "small's entry {i} evicted");
        }
        let big: Vec<usize> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|t| c.tenant_usage(t))
            .collect();
        let (least, most) = (big.iter().min(), big.iter().max());
        let spread = most.zip(least).map(|(m, l)| m - l);
        assert!(
            spread <= Some(2 * entry_charge(&tkey("a", "999"), 1024)),
            "{big:?}"
        );
        assert!(c.usage().1 <= capacity);
        c.check_invariants();
    }

    #[test]
    fn a_value_larger_than_the_quota_is_refused_and_counted() {
        let c = cache_with_quota(1 << 20, 64 * 1024);
        let t0 = Instant::now();
        put(&c, key("a"), 10, None, t0);
        put(&c, key("b"), 10, None, t0);
        let err = c
            .put(key("a"), Bytes::from(vec![0u8; 100_000]), None, t0)
            .expect_err("refused");
        let needed = entry_charge(&key("a"), 100_000) + tenant_charge("t");
        assert_eq!(
            err,
            CacheRejected::OverTenantQuota {
                needed,
                quota: 64 * 1024
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "cache value too large: {needed} bytes with its key and bookkeeping \
                 exceeds the per-tenant cache quota of 65536 bytes"
            )
        );
        assert_eq!(c.get(&key("a"), t0), None, "the old value is gone");
        assert!(c.get(&key("b"), t0).is_some(), "nothing was evicted");
        let m = &c.metrics;
        assert_eq!(m.cache_rejected.load(Ordering::Relaxed), 1);
        assert_eq!(m.cache_evictions.load(Ordering::Relaxed), 0);
        c.check_invariants();

        let c = cache_with_quota(4096, 1 << 20);
        let err = c
            .put(key("a"), Bytes::from(vec![0u8; 4096]), None, t0)
            .expect_err("refused");
        assert!(
            matches!(err, CacheRejected::OverCapacity { capacity: 4096, .. }),
            "{err}"
        );
        assert_eq!(c.usage(), (0, 0));
        c.check_invariants();
    }

    #[test]
    fn gauges_follow_the_charges() {
        let c = cache(1 << 20);
        let t0 = Instant::now();
        let gauges = |c: &Cache| {
            let m = &c.metrics;
            let bytes = m.cache_bytes.load(Ordering::Relaxed) as usize;
            let entries = m.cache_entries.load(Ordering::Relaxed) as usize;
            (entries, bytes)
        };
        put(&c, key("a"), 10, Some(Duration::from_millis(5)), t0);
        put(&c, key("b"), 10, None, t0);
        assert_eq!(gauges(&c), c.usage());
        assert_eq!(c.reclaim(t0 + Duration::from_millis(5)), 1);
        assert_eq!(gauges(&c), c.usage());
        put(&c, key("c"), 10, Some(Duration::from_millis(1)), t0);
        assert_eq!(c.get(&key("c"), t0 + Duration::from_millis(6)), None);
        assert_eq!(gauges(&c), (1, c.usage().1));
    }

    /// A random mix of puts (several tenants, sizes, TTLs), gets and clock
    /// steps, with every invariant checked after each operation.
    #[test]
    fn random_operations_keep_every_invariant() {
        let c = cache_with_quota(40_000, 15_000);
        let t0 = Instant::now();
        let mut now = t0;
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for _ in 0..20_000 {
            let tenant = ["a", "b", "c", "d", "e"][next(5) as usize];
            let k = tkey(tenant, &next(40).to_string());
            match next(10) {
                0..=5 => {
                    let ttl = match next(4) {
                        0 => None,
                        1 => Some(Duration::ZERO),
                        2 => Some(Duration::from_millis(next(50))),
                        _ => Some(Duration::from_secs(3600)),
                    };
                    let len = [0, 1, 100, 2000, 16_000][next(5) as usize];
                    let result = c.put(k, Bytes::from(vec![0u8; len]), ttl, now);
                    let refused = len == 16_000 && ttl != Some(Duration::ZERO);
                    assert_eq!(result.is_err(), refused, "{result:?}");
                }
                6..=8 => {
                    c.get(&k, now);
                }
                _ => now += Duration::from_millis(next(20)),
            }
            c.check_invariants();
        }
        assert!(c.metrics.cache_evictions.load(Ordering::Relaxed) > 0);
        assert!(c.metrics.cache_expired.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn the_indexed_heap_moves_and_removes_items() {
        let mut h = IndexedHeap::default();
        let mut reference = std::collections::BTreeMap::new();
        let mut seed: u64 = 7;
        for _ in 0..5000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let id = ((seed >> 33) % 64) as u32;
            let p = (seed >> 40) % 1000;
            if seed.is_multiple_of(3) {
                h.remove(id);
                reference.remove(&id);
            } else {
                h.set(id, p);
                reference.insert(id, p);
            }
            h.check();
            let least = reference.values().min().copied();
            assert_eq!(h.peek().map(|(p, _)| p), least);
        }
    }

    /// Resident set size of this process, bytes.
    fn rss_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("resident pages");
        pages * 4096
    }

    /// Measures what one tiny entry costs in RSS (see
    /// [`ENTRY_OVERHEAD_BYTES`]); with `FELIX_CACHE_MEASURE_TENANTS=1`
    /// every entry has a tenant of its own (see [`TENANT_OVERHEAD_BYTES`]).
    /// Run alone, once per N, e.g. `FELIX_CACHE_MEASURE_N=250000 cargo test
    /// -p felix-broker --lib measure_entry_overhead -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement: reads this process's RSS, run alone"]
    fn measure_entry_overhead() {
        use base64::Engine as _;
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        let n: usize = var("FELIX_CACHE_MEASURE_N").unwrap_or(1_000_000);
        let own_tenants = var("FELIX_CACHE_MEASURE_TENANTS") == Some(1);
        let c = cache(usize::MAX);
        let t0 = Instant::now();
        let before = rss_bytes();
        let mut counted = 0;
        for i in 0..n {
            // As the decoder makes them: owned Strings, a base64-decoded value.
            let mut k = key(&format!("{i:07}"));
            if own_tenants {
                k.tenant = format!("{i:07}");
            }
            let v = Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode("dg==")
                    .expect("base64"),
            );
            counted += k.heap_bytes() + v.len();
            c.put(k, v, Some(Duration::from_secs(3600)), t0)
                .expect("stored");
        }
        let after = rss_bytes();
        assert_eq!(c.usage().0, n);
        let per_entry = (after - before) as f64 / n as f64;
        let counted = counted as f64 / n as f64;
        println!(
            "n={n} own_tenants={own_tenants} rss_delta={} per_entry={per_entry:.1} \
             key_and_value={counted:.1} overhead={:.1}",
            after - before,
            per_entry - counted
        );
    }

    /// Measures RSS against the charged bytes under churn: N puts of
    /// values of 1 B to 16 KiB (only 1 B with `FELIX_CACHE_MEASURE_TINY=1`)
    /// to 64 distinct tenants into a cache of `FELIX_CACHE_MEASURE_CAPACITY`
    /// bytes (default 64 MiB), evicting all along. Run alone, as
    /// [`measure_entry_overhead`].
    #[test]
    #[ignore = "measurement: reads this process's RSS, run alone"]
    fn measure_churn_rss() {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        let n: usize = var("FELIX_CACHE_MEASURE_N").unwrap_or(2_000_000);
        let capacity = var("FELIX_CACHE_MEASURE_CAPACITY").unwrap_or(64 << 20);
        let sizes: &[usize] = match var("FELIX_CACHE_MEASURE_TINY") {
            Some(1) => &[1],
            _ => &[1, 10, 100, 1000, 16_384],
        };
        let c = cache_with_quota(capacity, capacity / 4);
        let t0 = Instant::now();
        let before = rss_bytes();
        let mut peak = 0;
        for i in 0..n {
            let k = tkey(&(i % 64).to_string(), &format!("{i:08}"));
            let len = sizes[i % sizes.len()];
            let ttl = (i % 3 == 0).then_some(Duration::from_secs(3600));
            put(&c, k, len, ttl, t0);
            if i % 100_000 == 0 {
                peak = peak.max(rss_bytes() - before);
            }
        }
        let rss = rss_bytes() - before;
        let (entries, charged) = c.usage();
        println!(
            "n={n} capacity={capacity} entries={entries} charged={charged} rss_delta={rss} \
             peak_rss_delta={} rss/capacity={:.3}",
            peak.max(rss),
            peak.max(rss) as f64 / capacity as f64
        );
    }
}
