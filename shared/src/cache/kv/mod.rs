//! The general-purpose cache: any serde value under a `(namespace, tenant, id)`
//! key, in memory, Redis and Postgres tiers composed in any order.
//!
//! ```ignore
//! use std::{sync::Arc, time::Duration};
//! use facesvg::cache::{kv::*, link::RedisLink};
//!
//! // One link per instance; the outcome cache's `RedisTier` takes the same one.
//! let link = Arc::new(RedisLink::open("redis://127.0.0.1:6379/", Duration::from_millis(50))?);
//! let redis = Arc::new(RedisBackend::new(link.clone(), "{facesvg}"));
//! let cache = Cache::builder()
//!     .tier(Arc::new(MemoryBackend::new(10_000, 4 << 20, Duration::from_secs(60))))
//!     .tier(redis.clone())
//!     .tier(Arc::new(PostgresBackend::new(pool, Duration::from_millis(500))))
//!     .locks(redis) // cross-instance single flight
//!     .ttls(Ttls::parse("default=1h,stats=30s")?)
//!     .build();
//!
//! let stats = KeyBuilder::new("stats")?;
//! let key = stats.key(tenant, &["daily", "2026-11-24"])?;
//! cache.set(&key, &report, None).await?;                  // namespace default TTL
//! let again: Option<Report> = cache.get(&key).await?;     // memory → Redis → Postgres
//! let got = cache
//!     .get_or_compute(&key, Some(Duration::from_secs(30)), || async { build_report().await })
//!     .await?;                                            // one computation across instances
//! cache.invalidate(&Scope::tenant(tenant)).await;         // every namespace of one tenant
//! cache.invalidate_tag("user:42").await;                  // everything set with that tag
//! ```
//!
//! How it is split:
//! - [`key`]: keys (stable, versioned, long parts hashed) and invalidation scopes.
//! - [`backend`]: the [`Backend`] trait every tier implements, and the guard
//!   (timeout + circuit breaker) of the Postgres tier. The Redis tier is bounded
//!   by the [`RedisLink`](crate::cache::link::RedisLink) it shares with the
//!   outcome cache.
//! - [`memory`], [`redis`], [`postgres`]: the tiers.
//! - [`tiered`]: lookup order, backfill with the remaining TTL, counting and
//!   degradation, in one place.
//! - [`client`]: [`Cache`], typed operations, `get_or_compute` (single flight in
//!   the instance and across instances, XFetch early refresh, stale on error),
//!   `set_if_absent` and `warm`. [`flight`]: its options and the XFetch rule.
//! - [`stats`]: counters per tier, per namespace and per namespace and tier.
//!
//! Expiry holds on every read of every tier: memory compares deadlines, Redis
//! reads the key's own PTTL, Postgres filters `expires_at > now()` in the query.
//!
//! Invalidation never scans keys. Memory and Redis keep generation counters: each
//! entry records the epoch it was written at and the scopes it belongs to
//! (namespace, tenant, both, key prefixes, tags); an invalidation records the new
//! epoch for one scope, and a read drops entries written before an invalidation
//! of one of their scopes. Redis does this inside the read's Lua script, so the
//! generations come in the same round trip as the entry. Postgres deletes the
//! matching rows through an index, which costs the rows removed. An instance's
//! memory tier cannot hear another instance's invalidations: its `max_ttl` bounds
//! how long it can serve such a value.

pub mod backend;
pub mod client;
pub mod flight;
pub mod key;
pub mod memory;
pub mod postgres;
pub mod redis;
pub mod stats;
pub mod tiered;

use std::collections::HashMap;
use std::time::Duration;

use thiserror::Error;

pub use backend::{Backend, Entry, Invalidated, Memo, Tier, Usage};
pub use client::{
    Cache, CacheBuilder, Cacheable, Conditional, Fetched, Lookup, SetOptions, Source, WarmOptions,
    WarmReport,
};
pub use flight::{ComputeOptions, FlightOptions, XorShift};
pub use key::{Key, KeyBuilder, Scope};
pub use memory::MemoryBackend;
pub use postgres::{Cleanup, PostgresBackend};
pub use redis::RedisBackend;
pub use stats::{CounterSource, CounterTotals, Stats, CALLERS};
pub use tiered::{InvalidateReport, Tiered};

#[derive(Debug, Error)]
pub enum KvError {
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("redis: {0}")]
    Redis(::redis::RedisError),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error("{0} tier timed out")]
    Timeout(Tier),
    #[error("{0} tier skipped: circuit open after repeated errors")]
    CircuitOpen(Tier),
    #[error("value does not match the requested type: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("unexpected answer from a tier: {0}")]
    Protocol(String),
    #[error("no cache tier answered")]
    Unavailable,
    #[error("computation failed: {0}")]
    Compute(String),
    #[error("cache TTLs: {0}")]
    Config(String),
}

/// Every failure of the Redis tier comes from the shared link, so it is named here once.
impl From<crate::cache::link::LinkError> for KvError {
    fn from(e: crate::cache::link::LinkError) -> Self {
        use crate::cache::link::LinkError;
        match e {
            LinkError::Redis(e) => KvError::Redis(e),
            LinkError::Timeout => KvError::Timeout(Tier::Redis),
            LinkError::CircuitOpen => KvError::CircuitOpen(Tier::Redis),
        }
    }
}

/// Default TTLs per namespace, from configuration such as
/// `default=1h,stats=30s,recent=10s` (units `ms`, `s`, `m`, `h`, `d`; bare
/// numbers are seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct Ttls {
    pub default: Duration,
    pub namespaces: HashMap<String, Duration>,
}

impl Default for Ttls {
    fn default() -> Self {
        Ttls {
            default: Duration::from_secs(3600),
            namespaces: HashMap::new(),
        }
    }
}

impl Ttls {
    pub fn parse(spec: &str) -> Result<Ttls, KvError> {
        let mut ttls = Ttls::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| KvError::Config(format!("{item:?} is not name=duration")))?;
            let d = parse_duration(value.trim())
                .ok_or_else(|| KvError::Config(format!("{value:?} is not a duration")))?;
            if d.is_zero() {
                return Err(KvError::Config(format!("{name}: a TTL must be positive")));
            }
            match name.trim() {
                "default" => ttls.default = d,
                ns => {
                    key::KeyBuilder::new(ns)?;
                    ttls.namespaces.insert(ns.to_owned(), d);
                }
            }
        }
        Ok(ttls)
    }

    pub fn for_namespace(&self, namespace: &str) -> Duration {
        self.namespaces
            .get(namespace)
            .copied()
            .unwrap_or(self.default)
    }
}

fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().ok()?;
    Some(match &s[split..] {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86_400)?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_units_and_fall_back_to_the_default() {
        let t = Ttls::parse("default=2h, stats=30s,recent=1500ms,daily=1d").unwrap();
        assert_eq!(t.for_namespace("stats"), Duration::from_secs(30));
        assert_eq!(t.for_namespace("recent"), Duration::from_millis(1500));
        assert_eq!(t.for_namespace("daily"), Duration::from_secs(86_400));
        assert_eq!(t.for_namespace("other"), Duration::from_secs(7200));
        assert!(Ttls::parse("stats=soon").is_err());
        assert!(Ttls::parse("stats=0").is_err());
        assert!(Ttls::parse("Bad Name=1s").is_err());
        assert!(Ttls::parse("stats").is_err());
    }
}
