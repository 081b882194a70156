//! Counters of the general-purpose cache: per tier (what each tier answered) and
//! per namespace (what callers got, whichever tier answered). Lock-free on the hot
//! path: a namespace's counters are created once and then only incremented.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use super::backend::{Tier, Usage};

#[derive(Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    sets: AtomicU64,
    deletes: AtomicU64,
    errors: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Count {
    Hit,
    Miss,
    Set,
    Delete,
    Error,
}

impl Counters {
    pub fn add(&self, what: Count, n: u64) {
        if n == 0 {
            return;
        }
        let c = match what {
            Count::Hit => &self.hits,
            Count::Miss => &self.misses,
            Count::Set => &self.sets,
            Count::Delete => &self.deletes,
            Count::Error => &self.errors,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CounterSnapshot {
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        CounterSnapshot {
            hits,
            misses,
            sets: self.sets.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            hit_ratio: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CounterSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub deletes: u64,
    pub errors: u64,
    /// hits / (hits + misses); 0 before any read.
    pub hit_ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TierStats {
    pub tier: Tier,
    /// Position in the lookup order, 0 first.
    pub position: usize,
    pub counters: CounterSnapshot,
    /// `None` when the tier did not answer (see `error`).
    pub usage: Option<Usage>,
    pub healthy: bool,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// What callers got, any tier.
    pub overall: CounterSnapshot,
    pub namespaces: BTreeMap<String, CounterSnapshot>,
    pub tiers: Vec<TierStats>,
}

/// FNV-1a: namespaces are the program's own short names (never request input), so
/// a keyed hash buys nothing here, and SipHash was a fifth of a memory-tier hit.
#[derive(Default)]
pub(crate) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type ByNamespace = HashMap<String, Arc<Counters>, std::hash::BuildHasherDefault<Fnv>>;

/// What the tiers and the callers of a cache saw. "Overall" is the sum of the
/// namespaces, computed when asked: a hit moves one counter per tier and one per
/// namespace, nothing more.
pub(crate) struct Recorder {
    pub tiers: Vec<Counters>,
    namespaces: RwLock<ByNamespace>,
}

impl Recorder {
    pub fn new(tiers: usize) -> Self {
        Recorder {
            tiers: (0..tiers).map(|_| Counters::default()).collect(),
            namespaces: RwLock::new(ByNamespace::default()),
        }
    }

    pub fn namespace(&self, ns: &str) -> Arc<Counters> {
        if let Some(c) = self
            .namespaces
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns)
        {
            return c.clone();
        }
        self.namespaces
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(ns.to_owned())
            .or_default()
            .clone()
    }

    /// Counts `n` outcomes for callers in the namespace (and so overall).
    pub fn caller(&self, ns: &str, what: Count, n: u64) {
        // Counted under the read lock: no reference count to move on a hit.
        if let Some(c) = self
            .namespaces
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns)
        {
            c.add(what, n);
            return;
        }
        self.namespace(ns).add(what, n);
    }

    pub fn tier_snapshot(&self, i: usize) -> CounterSnapshot {
        self.tiers[i].snapshot()
    }

    pub fn overall_snapshot(&self) -> CounterSnapshot {
        let total = Counters::default();
        for c in self
            .namespaces
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            for (sum, part) in [
                (&total.hits, &c.hits),
                (&total.misses, &c.misses),
                (&total.sets, &c.sets),
                (&total.deletes, &c.deletes),
                (&total.errors, &c.errors),
            ] {
                sum.fetch_add(part.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        total.snapshot()
    }

    pub fn namespace_snapshots(&self) -> BTreeMap<String, CounterSnapshot> {
        self.namespaces
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.snapshot()))
            .collect()
    }
}
