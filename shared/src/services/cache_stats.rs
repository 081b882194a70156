//! The general-purpose cache seen across the fleet: what `GET
//! /api/v1/admin/cache/stats` and `facesvg-cache stats` answer.
//!
//! Counters (hits, misses, sets, deletes, errors) are counted in each instance and
//! summed in Postgres's `cache_counters` (see `cache::outcomes`): this sends the
//! asking instance's own counts and folds what other instances sent to Redis, then
//! reads the table, so the answer holds every count sent so far. Entries and bytes
//! come from the shared tiers themselves (Redis by `SCAN`, Postgres by a count);
//! a memory tier lives in each instance and has no fleet-wide size (`null`).
//! Redis's own figures (`INFO memory`, `INFO stats`) come with them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cache::kv::{Cache, Tier, CALLERS};
use crate::cache::outcomes::{FoldError, OutcomeCache};
use crate::cache::redis::ServerFigures;
use crate::cache::CacheError;
use crate::policy::efficiency;
use crate::tasks::{CacheCounter, TaskStore};

/// What the stores this view reads are.
pub struct Sources<'a> {
    pub outcomes: &'a OutcomeCache,
    pub tasks: &'a TaskStore,
    pub kv: &'a Cache,
}

/// Counters summed over the fleet, with the hit ratio they give.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counters {
    pub hits: i64,
    pub misses: i64,
    pub sets: i64,
    pub deletes: i64,
    pub errors: i64,
    /// hits / (hits + misses); 0 before any read.
    pub hit_ratio: f64,
}

impl Counters {
    fn from_row(c: &CacheCounter) -> Self {
        Counters {
            hits: c.hits,
            misses: c.misses,
            sets: c.sets,
            deletes: c.deletes,
            errors: c.errors,
            hit_ratio: 0.0,
        }
        .with_ratio()
    }

    fn add(&mut self, o: &Counters) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.sets += o.sets;
        self.deletes += o.deletes;
        self.errors += o.errors;
        *self = std::mem::take(self).with_ratio();
    }

    fn with_ratio(mut self) -> Self {
        self.hit_ratio = efficiency::ratio(self.hits as u64, (self.hits + self.misses) as u64);
        self
    }
}

/// One tier for one namespace: its counters and what it holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TierView {
    #[serde(flatten)]
    pub counters: Counters,
    /// Live entries; `null` for a memory tier (each instance has its own) or a
    /// tier that did not answer.
    pub entries_active: Option<u64>,
    /// Entries past expiry still stored (Postgres until the sweep, Redis within
    /// their stale-serving grace); never served as fresh.
    pub entries_expired: Option<u64>,
    /// Bytes of the live entries' values.
    pub bytes: Option<u64>,
}

/// One namespace: what its callers got, and each tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NamespaceView {
    pub callers: Counters,
    pub tiers: BTreeMap<String, TierView>,
}

/// Entries of a shared tier, all namespaces.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EntryTotals {
    pub active: u64,
    pub expired: u64,
    pub bytes: u64,
}

/// Redis as the server reports itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisView {
    /// `ok`, `disabled` (`REDIS_URL=none`) or `unavailable`.
    pub status: &'static str,
    #[serde(flatten)]
    pub figures: Option<ServerFigures>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetStats {
    /// The tiers in lookup order.
    pub tiers: Vec<Tier>,
    pub namespaces: BTreeMap<String, NamespaceView>,
    /// What callers got, every namespace.
    pub callers: Counters,
    /// Entries per shared tier (`redis`, `postgres`), every namespace.
    pub entries: BTreeMap<String, EntryTotals>,
    pub redis: RedisView,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetStatsError {
    #[error(transparent)]
    Fold(#[from] FoldError),
    #[error(transparent)]
    Store(#[from] crate::tasks::StoreError),
}

/// The fleet's view of the general-purpose cache (see the module's doc).
pub async fn fleet(s: &Sources<'_>) -> Result<FleetStats, FleetStatsError> {
    match s.outcomes.fold_cache_counters(s.tasks).await {
        Ok(_) => {}
        // Redis unreachable: what it holds is not folded yet (`redis.status` says
        // so); the counts Postgres has are still the fleet's, up to the last fold.
        Err(FoldError::Cache(e)) => tracing::warn!(error = %e, "cache counters not folded"),
        Err(e) => return Err(e.into()),
    }
    let (rows, stats, figures) = tokio::join!(
        s.tasks.cache_counters(),
        s.kv.stats(),
        s.outcomes.redis.server_figures()
    );
    let rows = rows?;
    let tiers = s.kv.tier_kinds();
    let mut namespaces: BTreeMap<String, NamespaceView> = BTreeMap::new();
    let view = |namespaces: &mut BTreeMap<String, NamespaceView>, ns: &str| {
        namespaces
            .entry(ns.to_owned())
            .or_insert_with(|| NamespaceView {
                callers: Counters::default(),
                tiers: tiers
                    .iter()
                    .map(|t| (t.as_str().to_owned(), TierView::default()))
                    .collect(),
            });
    };
    let mut callers = Counters::default();
    for r in &rows {
        view(&mut namespaces, &r.namespace);
        let v = namespaces.get_mut(&r.namespace).expect("inserted above");
        if r.tier == CALLERS {
            v.callers = Counters::from_row(r);
            callers.add(&v.callers);
        } else if let Some(t) = v.tiers.get_mut(&r.tier) {
            t.counters = Counters::from_row(r);
        }
    }
    let shared: Vec<_> = stats
        .tiers
        .iter()
        .filter(|t| t.tier != Tier::Memory)
        .filter_map(|t| Some((t.tier, t.usage.as_ref()?)))
        .collect();
    for ns in shared.iter().flat_map(|(_, u)| u.namespaces.keys()) {
        view(&mut namespaces, ns);
    }
    let mut entries = BTreeMap::new();
    for (tier, usage) in shared {
        let t = tier;
        entries.insert(
            t.as_str().to_owned(),
            EntryTotals {
                active: usage.entries,
                expired: usage.expired.unwrap_or(0),
                bytes: usage.bytes,
            },
        );
        for v in namespaces.values_mut() {
            if let Some(tv) = v.tiers.get_mut(t.as_str()) {
                (tv.entries_active, tv.entries_expired, tv.bytes) = (Some(0), Some(0), Some(0));
            }
        }
        for (ns, u) in &usage.namespaces {
            if let Some(tv) = namespaces
                .get_mut(ns)
                .and_then(|v| v.tiers.get_mut(t.as_str()))
            {
                tv.entries_active = Some(u.entries);
                tv.entries_expired = Some(u.expired.unwrap_or(0));
                tv.bytes = Some(u.bytes);
            }
        }
    }
    let redis = match figures {
        Ok(f) => RedisView {
            status: "ok",
            figures: Some(f),
        },
        Err(CacheError::Disabled) => RedisView {
            status: "disabled",
            figures: None,
        },
        Err(e) => {
            tracing::warn!(error = %e, "redis figures unavailable");
            RedisView {
                status: "unavailable",
                figures: None,
            }
        }
    };
    Ok(FleetStats {
        tiers,
        namespaces,
        callers,
        entries,
        redis,
    })
}
