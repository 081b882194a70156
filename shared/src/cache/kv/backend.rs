//! The one seam every tier implements ([`Backend`]), the entry it stores, and the
//! guard (timeout + circuit breaker) that bounds what a sick Postgres tier costs.
//! The Redis tier is bounded the same way by the
//! [`RedisLink`](crate::cache::link::RedisLink) it shares with the outcome cache.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::key::{Key, Scope};
use super::KvError;
use crate::cache::breaker::Breaker;

/// Which kind of store a tier is; the name shows in stats, health and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Memory,
    Redis,
    Postgres,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Redis => "redis",
            Tier::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored value with its remaining lifetime, as a backend returns or takes it.
/// Durations are relative, so that tiers never compare clocks of different hosts.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The value as JSON.
    pub value: Arc<[u8]>,
    /// Time left until expiry; zero for an entry only kept for stale serving.
    pub ttl: Duration,
    /// Time left, after `ttl`, during which the entry may still be served flagged
    /// stale when a recomputation fails.
    pub grace: Duration,
    /// How long the value took to compute (XFetch's delta); 0 when unknown.
    pub compute_ms: u32,
    /// Normalised tags (see [`super::key::normalize_tag`]).
    pub tags: Vec<String>,
    /// The decoded value, where the tier keeps one (see [`Memo`]).
    pub memo: Memo,
}

/// The decoded copy of a value that a tier in this process keeps beside its JSON,
/// so that repeated hits on it do not parse the same bytes again: a memory-tier hit
/// then costs the map lookup and a clone, like a typed cache used directly. The
/// first type a value is read as is kept; a read as another type decodes the bytes.
/// Network tiers carry none (their bytes are new on every read).
#[derive(Clone, Default)]
pub struct Memo(Option<Arc<OnceLock<Arc<dyn Any + Send + Sync>>>>);

impl Memo {
    /// An empty slot that the first typed read fills.
    pub fn slot() -> Self {
        Memo(Some(Arc::new(OnceLock::new())))
    }

    /// The kept value, if there is one of type `T`.
    pub fn get<T: Clone + 'static>(&self) -> Option<T> {
        self.0.as_ref()?.get()?.downcast_ref::<T>().cloned()
    }

    /// Whether a decoded value would be kept (a slot that is still empty).
    pub fn wants(&self) -> bool {
        self.0.as_ref().is_some_and(|c| c.get().is_none())
    }

    pub fn fill<T: Send + Sync + 'static>(&self, value: T) {
        if let Some(c) = &self.0 {
            let _ = c.set(Arc::new(value));
        }
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.wants() || self.0.is_none() {
            "Memo(empty)"
        } else {
            "Memo(kept)"
        })
    }
}

/// A memo is a cache of `value`, so it never makes two entries differ.
impl PartialEq for Memo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Entry {
    pub fn new(value: Arc<[u8]>, ttl: Duration) -> Self {
        Entry {
            value,
            ttl,
            grace: Duration::ZERO,
            compute_ms: 0,
            tags: Vec::new(),
            memo: Memo::default(),
        }
    }

    pub fn is_fresh(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// Approximate bytes held: what the memory tier's byte bound counts.
    pub fn weight(&self, key: &str) -> usize {
        self.value.len() + key.len() + self.tags.iter().map(|t| t.len()).sum::<usize>() + 64
    }
}

/// What an invalidation did on one tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Invalidated {
    /// Rows deleted (Postgres).
    Removed(u64),
    /// The scope's new generation: entries written before it are never served
    /// again and go with their TTL (memory, Redis).
    Generation(u64),
}

/// Size of a tier's contents; `None` where a tier cannot tell cheaply.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
    /// Rows past expiry not swept yet (Postgres only).
    pub expired: Option<u64>,
    /// Same figures per namespace.
    pub namespaces: BTreeMap<String, NamespaceUsage>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct NamespaceUsage {
    pub entries: u64,
    pub bytes: u64,
    pub expired: Option<u64>,
}

/// One cache tier. Object safe, so tiers compose as `Arc<dyn Backend>` in any order.
///
/// Every method is one round trip to the tier's store, whatever the number of keys.
#[async_trait]
pub trait Backend: Send + Sync {
    fn tier(&self) -> Tier;

    /// A fresh entry of `key` if this tier can tell without I/O (an in-process
    /// tier); `None` otherwise. Lets the common hit skip a future and a batch.
    fn get_local(&self, _key: &Key) -> Option<Entry> {
        None
    }

    /// The typed hit's fast path: shows a fresh entry's JSON and decoded copy to
    /// `read` where they lie, without building an [`Entry`] (no reference counts
    /// moved, no tags copied). `false` when this tier cannot tell without I/O or
    /// holds no fresh entry of `key`.
    fn peek_local(&self, _key: &Key, _read: &mut dyn FnMut(&[u8], &Memo)) -> bool {
        false
    }

    /// One result per key, in order. Expired entries are never returned; with
    /// `stale`, entries past expiry but within their grace are (with `ttl` zero).
    async fn get_many(&self, keys: &[&Key], stale: bool) -> Result<Vec<Option<Entry>>, KvError>;

    /// Stores every entry for its `ttl` (plus `grace`). A zero `ttl` is skipped.
    async fn set_many(&self, items: &[(&Key, &Entry)]) -> Result<(), KvError>;

    /// Stores `entry` only if no fresh entry exists, atomically on this tier.
    /// `None`: this call stored it. `Some(existing)`: another writer's fresh entry.
    async fn set_if_absent(&self, key: &Key, entry: &Entry) -> Result<Option<Entry>, KvError>;

    /// Deletes the keys; returns how many existed.
    async fn delete_many(&self, keys: &[&Key]) -> Result<u64, KvError>;

    async fn invalidate(&self, scope: &Scope) -> Result<Invalidated, KvError>;

    async fn usage(&self) -> Result<Usage, KvError>;

    async fn health(&self) -> Result<(), KvError>;
}

/// Bounds one network tier: each call gets `timeout`, and after repeated failures
/// the breaker skips the tier for a cool-down, so a hanging server costs one
/// timeout per cool-down rather than one per request.
pub(crate) struct Guard {
    pub tier: Tier,
    pub timeout: Duration,
    pub breaker: Breaker,
}

impl Guard {
    pub fn new(tier: Tier, timeout: Duration) -> Self {
        Guard {
            tier,
            timeout,
            breaker: Breaker::new(
                crate::policy::tiers::BREAKER_FAILURES,
                crate::policy::tiers::BREAKER_OPEN_FOR,
            ),
        }
    }

    pub async fn run<T>(
        &self,
        fut: impl Future<Output = Result<T, KvError>>,
    ) -> Result<T, KvError> {
        if !self.breaker.allow() {
            return Err(KvError::CircuitOpen(self.tier));
        }
        let outcome = match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(KvError::Timeout(self.tier)),
        };
        match &outcome {
            // A refused conditional write or a bad value is an answer, not a sick tier.
            Ok(_) | Err(KvError::Malformed(_)) | Err(KvError::InvalidKey(_)) => {
                self.breaker.success()
            }
            Err(e) => {
                tracing::warn!(tier = %self.tier, error = %e, "cache tier call failed");
                self.breaker.failure()
            }
        }
        outcome
    }
}
