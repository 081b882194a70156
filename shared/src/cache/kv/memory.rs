//! The in-process tier: a `moka` cache (the synchronous one: nothing here waits on
//! I/O, and a hit can then be answered without a future; see [`Backend::get_local`]), bounded by entries and by bytes, with
//! a per-entry TTL through moka's `Expiry`.
//!
//! moka bounds one weighted capacity. Both bounds hold by weighing each entry at
//! `max(its bytes, max_bytes / max_entries)`: the sum of weights stays under
//! `max_bytes`, so bytes do too, and no more than `max_entries` entries fit.
//!
//! Invalidation is by generation: the tier keeps an epoch that every invalidation
//! advances, and the epoch at which each scope was last invalidated. An entry
//! remembers the epoch it was written at; while the epoch has not moved, a read
//! checks nothing more, and after an invalidation it compares its scopes.
//!
//! This memory belongs to one instance: another instance's invalidation cannot
//! reach it. `max_ttl` caps how long an entry lives here, which bounds how long a
//! value invalidated elsewhere can still be served from here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::sync::Cache;
use moka::Expiry;

use super::backend::{Backend, Entry, Invalidated, Memo, NamespaceUsage, Tier, Usage};
use super::key::{tag_scope, Key, Scope};
use super::KvError;

struct Slot {
    value: Arc<[u8]>,
    /// The value decoded by the first typed read, for every later one.
    memo: Memo,
    fresh_until: Instant,
    stale_until: Instant,
    compute_ms: u32,
    tags: Vec<String>,
    /// Scopes of the key and of its tags.
    scopes: Vec<String>,
    epoch: u64,
    bytes: usize,
}

struct ByDeadline;

impl Expiry<String, Arc<Slot>> for ByDeadline {
    fn expire_after_create(&self, _: &String, v: &Arc<Slot>, now: Instant) -> Option<Duration> {
        Some(v.stale_until.saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        _: &String,
        v: &Arc<Slot>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.stale_until.saturating_duration_since(now))
    }
}

pub struct MemoryBackend {
    cache: Cache<String, Arc<Slot>>,
    max_ttl: Duration,
    epoch: AtomicU64,
    /// Scope → epoch of its last invalidation.
    invalidated: RwLock<HashMap<String, u64>>,
}

impl MemoryBackend {
    /// At most `max_entries` entries and `max_bytes` bytes; no entry lives here
    /// longer than `max_ttl` (plus its grace).
    pub fn new(max_entries: u64, max_bytes: u64, max_ttl: Duration) -> Self {
        let floor = (max_bytes / max_entries.max(1)).clamp(1, u64::from(u32::MAX)) as u32;
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |_k: &String, v: &Arc<Slot>| {
                (v.bytes.min(u32::MAX as usize) as u32).max(floor)
            })
            .expire_after(ByDeadline)
            .build();
        MemoryBackend {
            cache,
            max_ttl,
            epoch: AtomicU64::new(0),
            invalidated: RwLock::new(HashMap::new()),
        }
    }

    fn valid(&self, slot: &Slot) -> bool {
        if slot.epoch == self.epoch.load(Ordering::Acquire) {
            return true;
        }
        let inv = self.invalidated.read().unwrap_or_else(|p| p.into_inner());
        slot.scopes
            .iter()
            .all(|s| inv.get(s).is_none_or(|&at| at <= slot.epoch))
    }

    fn to_entry(&self, slot: &Slot, now: Instant, stale: bool) -> Option<Entry> {
        if now >= slot.stale_until || !self.valid(slot) {
            return None;
        }
        let ttl = slot.fresh_until.saturating_duration_since(now);
        if ttl.is_zero() && !stale {
            return None;
        }
        Some(Entry {
            value: slot.value.clone(),
            ttl,
            grace: slot
                .stale_until
                .saturating_duration_since(now.max(slot.fresh_until)),
            compute_ms: slot.compute_ms,
            tags: slot.tags.clone(),
            memo: slot.memo.clone(),
        })
    }

    fn slot(&self, key: &Key, e: &Entry, now: Instant) -> Arc<Slot> {
        let ttl = e.ttl.min(self.max_ttl);
        let mut scopes = key.scopes();
        scopes.extend(e.tags.iter().map(|t| tag_scope(t)));
        Arc::new(Slot {
            value: e.value.clone(),
            memo: Memo::slot(),
            fresh_until: now + ttl,
            stale_until: now + ttl + e.grace,
            compute_ms: e.compute_ms,
            tags: e.tags.clone(),
            scopes,
            // Read before the write: an invalidation racing this write wins.
            epoch: self.epoch.load(Ordering::Acquire),
            bytes: e.weight(key.full()),
        })
    }

    /// Counts of entries (fresh or in grace) the tier holds right now.
    pub fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn tier(&self) -> Tier {
        Tier::Memory
    }

    fn get_local(&self, key: &Key) -> Option<Entry> {
        let slot = self.cache.get(key.full())?;
        self.to_entry(&slot, Instant::now(), false)
    }

    fn peek_local(&self, key: &Key, read: &mut dyn FnMut(&[u8], &Memo)) -> bool {
        let Some(slot) = self.cache.get(key.full()) else {
            return false;
        };
        // What `to_entry` accepts for a fresh read. Without a grace period the fresh
        // deadline is moka's own expiry, which its `get` has just checked (moka rounds
        // its deadlines down, never past ours): a hit needs no second clock read.
        let fresh = slot.fresh_until == slot.stale_until || Instant::now() < slot.fresh_until;
        if !fresh || !self.valid(&slot) {
            return false;
        }
        read(&slot.value, &slot.memo);
        true
    }

    async fn get_many(&self, keys: &[&Key], stale: bool) -> Result<Vec<Option<Entry>>, KvError> {
        let now = Instant::now();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let got = self.cache.get(k.full());
            out.push(got.and_then(|s| self.to_entry(&s, now, stale)));
        }
        Ok(out)
    }

    async fn set_many(&self, items: &[(&Key, &Entry)]) -> Result<(), KvError> {
        let now = Instant::now();
        for (k, e) in items {
            if e.ttl.is_zero() {
                continue;
            }
            self.cache.insert(k.full().to_owned(), self.slot(k, e, now));
        }
        Ok(())
    }

    async fn set_if_absent(&self, key: &Key, entry: &Entry) -> Result<Option<Entry>, KvError> {
        let now = Instant::now();
        let slot = self.slot(key, entry, now);
        let mine = slot.clone();
        let got = self
            .cache
            .entry(key.full().to_owned())
            .or_insert_with_if(move || slot, |old| self.to_entry(old, now, false).is_none());
        if got.is_fresh() || Arc::ptr_eq(got.value(), &mine) {
            return Ok(None);
        }
        Ok(self.to_entry(got.value(), now, false))
    }

    async fn delete_many(&self, keys: &[&Key]) -> Result<u64, KvError> {
        let now = Instant::now();
        let mut n = 0;
        for k in keys {
            if let Some(s) = self.cache.remove(k.full()) {
                n += u64::from(self.to_entry(&s, now, false).is_some());
            }
        }
        Ok(n)
    }

    async fn invalidate(&self, scope: &Scope) -> Result<Invalidated, KvError> {
        let mut inv = self.invalidated.write().unwrap_or_else(|p| p.into_inner());
        // Under the write lock, so that the epoch and the map move together.
        let at = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        inv.insert(scope.id(), at);
        Ok(Invalidated::Generation(at))
    }

    async fn usage(&self) -> Result<Usage, KvError> {
        self.cache.run_pending_tasks();
        let now = Instant::now();
        let mut usage = Usage::default();
        for (k, slot) in self.cache.iter() {
            if self.to_entry(&slot, now, false).is_none() {
                continue;
            }
            let ns = k.split(':').next().unwrap_or_default().to_owned();
            let per: &mut NamespaceUsage = usage.namespaces.entry(ns).or_default();
            per.entries += 1;
            per.bytes += slot.bytes as u64;
            usage.entries += 1;
            usage.bytes += slot.bytes as u64;
        }
        Ok(usage)
    }

    async fn health(&self) -> Result<(), KvError> {
        Ok(())
    }
}
