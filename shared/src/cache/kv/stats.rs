//! Counters of the general-purpose cache: per tier (what each tier answered) and
//! per namespace (what callers got, whichever tier answered). Lock-free on the hot
//! path: a namespace's counters are created once and then only incremented.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};

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
/// a keyed hash buys nothing here.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Namespaces with their counters in an open-addressed table whose slots are
/// written once: a hit finds its namespace's counters with a hash, an atomic load
/// and a comparison, and takes no lock (a lock's two atomic writes were a sixth of
/// a memory-tier hit). A program has a handful of namespaces; past the table's
/// size they go to a locked map.
const SLOTS: usize = 64;

struct Named {
    name: Box<str>,
    counters: Counters,
}

/// What the tiers and the callers of a cache saw. "Overall" is the sum of the
/// namespaces, computed when asked: a hit moves one counter per tier and one per
/// namespace, nothing more.
pub(crate) struct Recorder {
    pub tiers: Vec<Counters>,
    slots: Box<[OnceLock<Named>]>,
    overflow: RwLock<HashMap<String, Counters>>,
}

impl Recorder {
    pub fn new(tiers: usize) -> Self {
        Recorder {
            tiers: (0..tiers).map(|_| Counters::default()).collect(),
            slots: (0..SLOTS).map(|_| OnceLock::new()).collect(),
            overflow: RwLock::new(HashMap::new()),
        }
    }

    /// Counts `n` outcomes for callers in the namespace (and so overall).
    pub fn caller(&self, ns: &str, what: Count, n: u64) {
        let start = fnv(ns.as_bytes()) as usize;
        for probe in 0..SLOTS {
            let slot = &self.slots[(start + probe) % SLOTS];
            // The first empty slot on the probe path is this namespace's; a racing
            // writer may take it for another namespace, and the probe goes on.
            let named = slot.get_or_init(|| Named {
                name: ns.into(),
                counters: Counters::default(),
            });
            if &*named.name == ns {
                named.counters.add(what, n);
                return;
            }
        }
        if let Some(c) = self
            .overflow
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns)
        {
            c.add(what, n);
            return;
        }
        self.overflow
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(ns.to_owned())
            .or_default()
            .add(what, n);
    }

    /// Every namespace's counters, with its name.
    fn each(&self, mut f: impl FnMut(&str, &Counters)) {
        for named in self.slots.iter().filter_map(OnceLock::get) {
            f(&named.name, &named.counters);
        }
        for (name, c) in self
            .overflow
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            f(name, c);
        }
    }

    pub fn tier_snapshot(&self, i: usize) -> CounterSnapshot {
        self.tiers[i].snapshot()
    }

    pub fn overall_snapshot(&self) -> CounterSnapshot {
        let total = Counters::default();
        self.each(|_, c| {
            for (sum, part) in [
                (&total.hits, &c.hits),
                (&total.misses, &c.misses),
                (&total.sets, &c.sets),
                (&total.deletes, &c.deletes),
                (&total.errors, &c.errors),
            ] {
                sum.fetch_add(part.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        });
        total.snapshot()
    }

    pub fn namespace_snapshots(&self) -> BTreeMap<String, CounterSnapshot> {
        let mut out = BTreeMap::new();
        self.each(|name, c| {
            out.insert(name.to_owned(), c.snapshot());
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_past_the_table_are_counted_too() {
        let rec = Recorder::new(1);
        for i in 0..SLOTS * 2 {
            rec.caller(&format!("ns{i}"), Count::Hit, 1);
            rec.caller(&format!("ns{i}"), Count::Miss, 2);
        }
        let per = rec.namespace_snapshots();
        assert_eq!(per.len(), SLOTS * 2);
        assert!(per.values().all(|c| c.hits == 1 && c.misses == 2));
        let all = rec.overall_snapshot();
        assert_eq!((all.hits, all.misses), (SLOTS as u64 * 2, SLOTS as u64 * 4));
    }
}
