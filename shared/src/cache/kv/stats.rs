//! Counters of the general-purpose cache: per tier (what each tier answered), per
//! namespace (what callers got, whichever tier answered) and per namespace and
//! tier. Lock-free on the hot path: a namespace's counters are created once and
//! then only incremented.
//!
//! They live in the process; [`CounterSource`] reads their running totals, which
//! `cache::outcomes` sends on (the difference since its last send) so that the
//! fleet's sum reaches Postgres (`cache_counters`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

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

    /// The running totals: hits, misses, sets, deletes, errors.
    pub fn totals(&self) -> [u64; 5] {
        [
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
            self.sets.load(Ordering::Relaxed),
            self.deletes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        ]
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
    /// What callers of this namespace got.
    counters: Counters,
    /// What each tier answered for this namespace, by position.
    tiers: Box<[Counters]>,
}

impl Named {
    fn new(name: &str, tiers: usize) -> Self {
        Named {
            name: name.into(),
            counters: Counters::default(),
            tiers: (0..tiers).map(|_| Counters::default()).collect(),
        }
    }
}

/// What the tiers and the callers of a cache saw. "Overall" is the sum of the
/// namespaces, computed when asked: a hit moves one counter per tier and one per
/// namespace, nothing more.
pub(crate) struct Recorder {
    pub tiers: Vec<Counters>,
    slots: Box<[OnceLock<Named>]>,
    overflow: RwLock<HashMap<String, Arc<Named>>>,
}

impl Recorder {
    pub fn new(tiers: usize) -> Self {
        Recorder {
            tiers: (0..tiers).map(|_| Counters::default()).collect(),
            slots: (0..SLOTS).map(|_| OnceLock::new()).collect(),
            overflow: RwLock::new(HashMap::new()),
        }
    }

    /// Runs `f` on the namespace's counters, creating them on first use.
    fn with_named(&self, ns: &str, f: impl FnOnce(&Named)) {
        let start = fnv(ns.as_bytes()) as usize;
        for probe in 0..SLOTS {
            let slot = &self.slots[(start + probe) % SLOTS];
            // The first empty slot on the probe path is this namespace's; a racing
            // writer may take it for another namespace, and the probe goes on.
            let named = slot.get_or_init(|| Named::new(ns, self.tiers.len()));
            if &*named.name == ns {
                return f(named);
            }
        }
        let found = self
            .overflow
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns)
            .cloned();
        let named = found.unwrap_or_else(|| {
            self.overflow
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(ns.to_owned())
                .or_insert_with(|| Arc::new(Named::new(ns, self.tiers.len())))
                .clone()
        });
        f(&named)
    }

    /// Counts `n` outcomes for callers in the namespace (and so overall).
    pub fn caller(&self, ns: &str, what: Count, n: u64) {
        self.with_named(ns, |named| named.counters.add(what, n));
    }

    /// Counts `n` outcomes of the tier at `pos` for the namespace.
    pub fn tier(&self, pos: usize, ns: &str, what: Count, n: u64) {
        if n == 0 {
            return;
        }
        self.tiers[pos].add(what, n);
        self.with_named(ns, |named| named.tiers[pos].add(what, n));
    }

    /// A hit of the top tier, which is also the caller's: one namespace lookup.
    pub fn top_hit(&self, ns: &str) {
        self.tiers[0].add(Count::Hit, 1);
        self.with_named(ns, |named| {
            named.counters.add(Count::Hit, 1);
            named.tiers[0].add(Count::Hit, 1);
        });
    }

    /// Every namespace's counters, with its name.
    fn each(&self, mut f: impl FnMut(&Named)) {
        for named in self.slots.iter().filter_map(OnceLock::get) {
            f(named);
        }
        for named in self
            .overflow
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            f(named);
        }
    }

    pub fn tier_snapshot(&self, i: usize) -> CounterSnapshot {
        self.tiers[i].snapshot()
    }

    pub fn overall_snapshot(&self) -> CounterSnapshot {
        let total = Counters::default();
        self.each(|named| {
            let c = &named.counters;
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
        self.each(|named| {
            out.insert(named.name.to_string(), named.counters.snapshot());
        });
        out
    }
}

/// Where a namespace's counters stand: `callers` (what callers got) or a tier.
pub const CALLERS: &str = "callers";

/// The running totals of one namespace for callers or one tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterTotals {
    pub namespace: String,
    /// [`CALLERS`] or a [`Tier`]'s name.
    pub tier: &'static str,
    /// Hits, misses, sets, deletes, errors since the process started.
    pub counts: [u64; 5],
}

/// Reads a cache's running totals from anywhere (a task of its own included):
/// see [`super::Cache::counter_source`].
#[derive(Clone)]
pub struct CounterSource {
    pub(crate) rec: Arc<Recorder>,
    pub(crate) tiers: Vec<Tier>,
}

impl CounterSource {
    /// Every namespace's totals, for callers and per tier; all zero ones left out.
    pub fn totals(&self) -> Vec<CounterTotals> {
        let mut out = Vec::new();
        self.rec.each(|named| {
            let rows = std::iter::once((CALLERS, &named.counters)).chain(
                self.tiers
                    .iter()
                    .zip(named.tiers.iter())
                    .map(|(t, c)| (t.as_str(), c)),
            );
            for (tier, c) in rows {
                let counts = c.totals();
                if counts.iter().any(|&n| n > 0) {
                    out.push(CounterTotals {
                        namespace: named.name.to_string(),
                        tier,
                        counts,
                    });
                }
            }
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

    #[test]
    fn totals_are_kept_per_namespace_for_callers_and_each_tier() {
        let rec = Arc::new(Recorder::new(2));
        rec.top_hit("a");
        rec.tier(1, "a", Count::Miss, 2);
        rec.tier(1, "b", Count::Error, 1);
        rec.caller("b", Count::Set, 1);
        let source = CounterSource {
            rec,
            tiers: vec![Tier::Memory, Tier::Postgres],
        };
        let mut got: Vec<(String, &str, [u64; 5])> = source
            .totals()
            .into_iter()
            .map(|t| (t.namespace, t.tier, t.counts))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("a".into(), CALLERS, [1, 0, 0, 0, 0]),
                ("a".into(), "memory", [1, 0, 0, 0, 0]),
                ("a".into(), "postgres", [0, 2, 0, 0, 0]),
                ("b".into(), CALLERS, [0, 0, 1, 0, 0]),
                ("b".into(), "postgres", [0, 0, 0, 0, 1]),
            ]
        );
    }
}
