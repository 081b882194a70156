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
//! - [`tiered`]: lookup order, backfill with the remaining TTL (capped by the
//!   tier's own lifetime where the namespace gives one), counting and
//!   degradation, in one place.
//! - [`client`]: [`Cache`], typed operations, `get_or_compute` (single flight in
//!   the instance and across instances, XFetch early refresh, stale on error),
//!   `set_if_absent` and `warm`. [`flight`]: its options and the XFetch rule.
//! - [`stats`]: counters per tier, per namespace and per namespace and tier.
//! - [`v2`]: the V2 hybrid cache's typed API (embeddings, perceptual hashes,
//!   crawl de-duplication) and its namespaces' per-tier lifetimes.
//!
//! Expiry holds on every read of every tier: memory compares deadlines, Redis
//! reads the key's own PTTL, Postgres filters `expires_at > now()` in the query
//! (a row kept [`FOREVER`] has `expires_at` NULL).
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
pub mod v2;

use std::collections::{BTreeMap, HashMap};
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
pub use postgres::{Cleanup, Evicted, PostgresBackend};
pub use redis::RedisBackend;
pub use stats::{CounterSource, CounterTotals, Stats, CALLERS};
pub use tiered::{InvalidateReport, Tiered};
pub use v2::V2;

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

/// Lifetimes per namespace, and per tier where a namespace gives them, from
/// configuration such as `default=1h,stats=30s,embeddings@redis=1h,embeddings@postgres=forever`
/// (units `ms`, `s`, `m`, `h`, `d`; bare numbers are seconds; `forever`: no expiry).
///
/// - `name=dur`: the namespace's TTL, every tier.
/// - `name@tier=dur`: how long `tier` (`memory`, `redis`, `postgres`) keeps the
///   namespace's values. A namespace with any such entry keeps each value in each
///   tier for that tier's lifetime (its own entry, else the namespace's TTL, else
///   the default), also when the caller gives a TTL (which then bounds every tier);
///   a read's backfill writes a tier for its lifetime capped by what is left of the
///   value in the tier below ([`Tiered`]).
///
/// The V2 presets ([`v2::PRESETS`]) are part of every configuration: an entry
/// for the same namespace and tier replaces a preset's.
#[derive(Clone, Debug, PartialEq)]
pub struct Ttls {
    pub default: Duration,
    pub namespaces: HashMap<String, Duration>,
    /// Per-tier lifetimes; [`FOREVER`] for no expiry.
    pub tiers: HashMap<String, BTreeMap<Tier, Duration>>,
}

/// A lifetime that never ends: Postgres stores it as `expires_at IS NULL`, Redis
/// and memory as a deadline a century away (their own bounds apply first).
pub const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);

impl Default for Ttls {
    fn default() -> Self {
        let mut tiers: HashMap<String, BTreeMap<Tier, Duration>> = HashMap::new();
        for (ns, tier, ttl) in v2::PRESETS {
            tiers.entry(ns.to_string()).or_default().insert(*tier, *ttl);
        }
        Ttls {
            default: Duration::from_secs(3600),
            namespaces: HashMap::new(),
            tiers,
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
            let d = match value.trim() {
                "forever" => FOREVER,
                v => parse_duration(v)
                    .ok_or_else(|| KvError::Config(format!("{value:?} is not a duration")))?,
            };
            if d.is_zero() {
                return Err(KvError::Config(format!("{name}: a TTL must be positive")));
            }
            let (ns, tier) = match name.trim().split_once('@') {
                None => (name.trim(), None),
                Some((ns, tier)) => (ns, Some(parse_tier(tier)?)),
            };
            match (ns, tier) {
                ("default", None) => ttls.default = d,
                ("default", Some(_)) => {
                    return Err(KvError::Config(
                        "per-tier lifetimes belong to a namespace, not to `default`".into(),
                    ))
                }
                (ns, None) => {
                    key::KeyBuilder::new(ns)?;
                    ttls.namespaces.insert(ns.to_owned(), d);
                }
                (ns, Some(tier)) => {
                    key::KeyBuilder::new(ns)?;
                    ttls.tiers.entry(ns.to_owned()).or_default().insert(tier, d);
                }
            }
        }
        Ok(ttls)
    }

    /// The namespaces this configuration names (with a TTL, per-tier lifetimes or both).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .namespaces
            .keys()
            .chain(self.tiers.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    pub fn knows(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace) || self.tiers.contains_key(namespace)
    }

    /// A value's lifetime when its writer gives none: the namespace's TTL, or,
    /// for a namespace with per-tier lifetimes, the longest of them (each tier then
    /// keeps it for its own, see [`Ttls::tier_cap`]).
    pub fn for_namespace(&self, namespace: &str) -> Duration {
        let base = self.base(namespace);
        match self.tiers.get(namespace) {
            Some(per) => per.values().copied().fold(base, Duration::max),
            None => base,
        }
    }

    /// How long `tier` may keep a value of `namespace`: `None` when the namespace
    /// gives no per-tier lifetimes (a value then lives its own TTL everywhere).
    pub fn tier_cap(&self, namespace: &str, tier: Tier) -> Option<Duration> {
        let per = self.tiers.get(namespace)?;
        Some(
            per.get(&tier)
                .copied()
                .unwrap_or_else(|| self.base(namespace)),
        )
    }

    fn base(&self, namespace: &str) -> Duration {
        self.namespaces
            .get(namespace)
            .copied()
            .unwrap_or(self.default)
    }
}

fn parse_tier(s: &str) -> Result<Tier, KvError> {
    match s.trim() {
        "memory" => Ok(Tier::Memory),
        "redis" => Ok(Tier::Redis),
        "postgres" => Ok(Tier::Postgres),
        other => Err(KvError::Config(format!(
            "{other:?} is not a tier (memory, redis, postgres)"
        ))),
    }
}

/// Per-namespace entry caps and a total byte cap of the Postgres tier
/// (`cache_store`), enforced by the sweep, least recently used first
/// ([`PostgresBackend::evict_over_entries`], [`PostgresBackend::evict_over_bytes`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SizeLimits {
    /// Most rows a namespace may hold, from `CACHE_KV_MAX_ENTRIES`
    /// (`embeddings=1000000,crawled=500000`).
    pub max_entries: BTreeMap<String, u64>,
    /// Most bytes (`pg_column_size` of the values, as `usage` counts them) the
    /// whole table may hold, from `CACHE_KV_MAX_SIZE_MB`; `None`: no cap.
    pub max_bytes: Option<u64>,
}

impl SizeLimits {
    /// `entries`: `name=N,…` (empty: no caps); `size_mb`: megabytes (0 or empty: no cap).
    pub fn parse(entries: &str, size_mb: &str) -> Result<SizeLimits, KvError> {
        let mut limits = SizeLimits::default();
        for item in entries.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (ns, n) = item
                .split_once('=')
                .ok_or_else(|| KvError::Config(format!("{item:?} is not namespace=count")))?;
            key::KeyBuilder::new(ns.trim())?;
            let n: u64 = n
                .trim()
                .parse()
                .map_err(|_| KvError::Config(format!("{n:?} is not a count")))?;
            limits.max_entries.insert(ns.trim().to_owned(), n);
        }
        let mb = size_mb.trim();
        if !mb.is_empty() {
            let mb: u64 = mb
                .parse()
                .map_err(|_| KvError::Config(format!("{mb:?} is not a number of megabytes")))?;
            limits.max_bytes = (mb > 0).then(|| mb.saturating_mul(1024 * 1024));
        }
        Ok(limits)
    }

    pub fn is_empty(&self) -> bool {
        self.max_entries.is_empty() && self.max_bytes.is_none()
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
    fn per_tier_lifetimes_cap_each_tier_and_the_longest_is_the_values() {
        let t = Ttls::parse("default=10m,docs=1h,docs@redis=5m,docs@postgres=forever").unwrap();
        assert_eq!(t.for_namespace("docs"), FOREVER);
        assert_eq!(
            t.tier_cap("docs", Tier::Redis),
            Some(Duration::from_secs(300))
        );
        assert_eq!(t.tier_cap("docs", Tier::Postgres), Some(FOREVER));
        // A tier it does not name keeps the namespace's own TTL.
        assert_eq!(
            t.tier_cap("docs", Tier::Memory),
            Some(Duration::from_secs(3600))
        );
        // A namespace without per-tier lifetimes caps nothing: a writer's TTL holds.
        assert_eq!(t.tier_cap("stats", Tier::Redis), None);
        assert!(t.knows("docs") && !t.knows("stats"));
        assert!(Ttls::parse("docs@disk=1h").is_err());
        assert!(Ttls::parse("default@redis=1h").is_err());
        assert!(Ttls::parse("docs@redis=0").is_err());
    }

    #[test]
    fn size_limits_parse() {
        let l = SizeLimits::parse("a=10, b=0", "2").unwrap();
        assert_eq!(l.max_entries.get("a"), Some(&10));
        assert_eq!(l.max_entries.get("b"), Some(&0));
        assert_eq!(l.max_bytes, Some(2 << 20));
        assert!(SizeLimits::parse("", "0").unwrap().is_empty());
        assert!(SizeLimits::parse("a", "").is_err());
        assert!(SizeLimits::parse("Bad Name=1", "").is_err());
        assert!(SizeLimits::parse("", "-1").is_err());
    }

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
