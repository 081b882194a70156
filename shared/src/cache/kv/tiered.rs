//! Tiers composed in a lookup order: the one place that decides which tier is
//! read, what is backfilled, what is counted and what a failing tier costs.
//!
//! - Read: each tier is asked, in order, only for the keys still missing (one
//!   round trip per tier for a whole batch). A tier that fails is counted, logged
//!   and skipped: the next tier answers.
//! - Backfill: a key found in tier `i` is written to every tier above `i` that
//!   answered "miss", with the entry's REMAINING lifetime, never a fresh TTL: a
//!   value never outlives its first expiry by moving up. Where the namespace gives
//!   per-tier lifetimes ([`Ttls::tier_cap`]), the tier's own lifetime caps it: an
//!   embedding kept forever in Postgres comes back into Redis for an hour.
//! - Write and delete go to every tier concurrently; a write succeeds if one tier
//!   took it (degraded), a delete only if every tier did. Each tier is written for
//!   the value's TTL capped by the tier's lifetime, as for a backfill.
//! - Conditional write: the lowest tier that answers arbitrates (Postgres when
//!   present: the most durable), and the winner's value is written above it.

use std::borrow::Cow;
use std::sync::Arc;

use futures::future::join_all;
use serde::Serialize;

use super::backend::{Backend, Entry, Invalidated, Memo, Tier};
use super::key::{Key, Scope};
use super::stats::{Count, CounterSource, Recorder, Stats, TierStats};
use super::{KvError, Ttls};

/// A value found by a read, with the tier (position) that held it.
#[derive(Clone, Debug)]
pub struct Found {
    pub entry: Entry,
    pub position: usize,
    pub tier: Tier,
}

/// The result of one batched read across the tiers.
#[derive(Debug, Default)]
pub struct Walk {
    /// Per key: a fresh entry, or (on the stale path) a stale one, or nothing.
    pub found: Vec<Option<Found>>,
    /// Tiers that failed during this read (their answer is unknown).
    pub failed: Vec<Tier>,
}

/// What an invalidation did, per tier.
#[derive(Clone, Debug, Serialize)]
pub struct InvalidateReport {
    pub scope: String,
    pub tiers: Vec<TierInvalidation>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TierInvalidation {
    pub tier: Tier,
    #[serde(flatten)]
    pub outcome: Option<Invalidated>,
    pub error: Option<String>,
}

impl InvalidateReport {
    /// Whether every tier applied it.
    pub fn complete(&self) -> bool {
        self.tiers.iter().all(|t| t.error.is_none())
    }
}

pub struct Tiered {
    tiers: Vec<Arc<dyn Backend>>,
    ttls: Ttls,
    pub(crate) rec: Arc<Recorder>,
}

/// The namespace an error of a call that names none is counted under (an
/// invalidation by tenant or tag).
pub const NO_NAMESPACE: &str = "*";

/// The distinct namespaces of `keys`, in order of first appearance.
fn namespaces<'a>(keys: impl IntoIterator<Item = &'a Key>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for k in keys {
        if !out.contains(&k.namespace()) {
            out.push(k.namespace());
        }
    }
    out
}

impl Tiered {
    /// `ttls` decides how long each tier keeps a namespace's values.
    pub fn new(tiers: Vec<Arc<dyn Backend>>, ttls: Ttls) -> Self {
        let rec = Arc::new(Recorder::new(tiers.len()));
        Tiered { tiers, ttls, rec }
    }

    pub fn tiers(&self) -> &[Arc<dyn Backend>] {
        &self.tiers
    }

    pub fn ttls(&self) -> &Ttls {
        &self.ttls
    }

    /// `entry` as the tier at `position` keeps it: its remaining TTL capped by the
    /// tier's lifetime for the key's namespace. Borrowed when nothing changes (the
    /// common case: namespaces without per-tier lifetimes).
    fn for_tier<'e>(&self, position: usize, key: &Key, entry: &'e Entry) -> Cow<'e, Entry> {
        match self
            .ttls
            .tier_cap(key.namespace(), self.tiers[position].tier())
        {
            Some(cap) if cap < entry.ttl => {
                let mut e = entry.clone();
                e.ttl = cap;
                Cow::Owned(e)
            }
            _ => Cow::Borrowed(entry),
        }
    }

    /// Writes `items` to the tier at `position`, each capped for that tier.
    async fn set_on(&self, position: usize, items: &[(&Key, &Entry)]) -> Result<(), KvError> {
        let capped: Vec<Cow<'_, Entry>> = items
            .iter()
            .map(|(k, e)| self.for_tier(position, k, e))
            .collect();
        if capped.iter().all(|c| matches!(c, Cow::Borrowed(_))) {
            return self.tiers[position].set_many(items).await;
        }
        let refs: Vec<(&Key, &Entry)> = items
            .iter()
            .zip(&capped)
            .map(|((k, _), e)| (*k, e.as_ref()))
            .collect();
        self.tiers[position].set_many(&refs).await
    }

    /// The running totals of the counters, readable from anywhere.
    pub fn counter_source(&self) -> CounterSource {
        CounterSource {
            rec: Arc::clone(&self.rec),
            tiers: self.tiers.iter().map(|t| t.tier()).collect(),
        }
    }

    /// Counts a failed call of the tier at `position`: one error for each
    /// namespace it was about.
    fn fail(&self, position: usize, namespaces: &[&str], op: &str, e: &KvError) {
        for ns in namespaces {
            self.rec.tier(position, ns, Count::Error, 1);
        }
        tracing::warn!(tier = %self.tiers[position].tier(), op, error = %e, "cache tier skipped");
    }

    /// The common read, synchronously: a fresh entry of an in-process top tier,
    /// counted as that tier's hit. `None` when the walk of [`Tiered::get_one`] is
    /// needed.
    pub fn get_local(&self, key: &Key) -> Option<Entry> {
        let entry = self.tiers.first()?.get_local(key)?;
        self.rec.top_hit(key.namespace());
        Some(entry)
    }

    /// [`Tiered::get_local`] without an [`Entry`]: `read` sees the value where the
    /// top tier keeps it (see [`Backend::peek_local`]). Counted as that tier's hit.
    pub fn peek_local(&self, key: &Key, read: &mut dyn FnMut(&[u8], &Memo)) -> bool {
        let Some(top) = self.tiers.first() else {
            return false;
        };
        if !top.peek_local(key, read) {
            return false;
        }
        self.rec.top_hit(key.namespace());
        true
    }

    /// Reads one key: [`Tiered::get_many`] of it, except that the common read (fresh
    /// in an in-process top tier) is answered without a future or a batch.
    pub async fn get_one(&self, key: &Key, stale: bool) -> (Option<Found>, Vec<Tier>) {
        if let Some(entry) = self.get_local(key) {
            let tier = self.tiers[0].tier();
            return (
                Some(Found {
                    entry,
                    position: 0,
                    tier,
                }),
                Vec::new(),
            );
        }
        // Boxed: the walk's state is large, and inline it would be copied into
        // every read's future, the fast path's included.
        let walk = Box::pin(self.get_many(&[key], stale)).await;
        (walk.found.into_iter().next().flatten(), walk.failed)
    }

    /// Reads `keys` through the tiers and backfills the tiers above each hit.
    pub async fn get_many(&self, keys: &[&Key], stale: bool) -> Walk {
        let mut found: Vec<Option<Found>> = vec![None; keys.len()];
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        let mut missed: Vec<Vec<usize>> = vec![Vec::new(); self.tiers.len()];
        let mut failed = Vec::new();
        for (pos, tier) in self.tiers.iter().enumerate() {
            if pending.is_empty() {
                break;
            }
            let ask: Vec<&Key> = pending.iter().map(|&i| keys[i]).collect();
            let got = match tier.get_many(&ask, stale).await {
                Ok(got) => got,
                Err(e) => {
                    self.fail(pos, &namespaces(ask.iter().copied()), "get", &e);
                    failed.push(tier.tier());
                    continue;
                }
            };
            let mut still = Vec::new();
            for (&i, e) in pending.iter().zip(got) {
                match e {
                    Some(entry) if entry.is_fresh() => {
                        self.rec.tier(pos, keys[i].namespace(), Count::Hit, 1);
                        found[i] = Some(Found {
                            entry,
                            position: pos,
                            tier: tier.tier(),
                        });
                    }
                    other => {
                        self.rec.tier(pos, keys[i].namespace(), Count::Miss, 1);
                        // A stale entry is a fallback; a lower tier may hold a fresh one.
                        if let (Some(entry), None) = (other, &found[i]) {
                            found[i] = Some(Found {
                                entry,
                                position: pos,
                                tier: tier.tier(),
                            });
                        }
                        still.push(i);
                        missed[pos].push(i);
                    }
                }
            }
            pending = still;
        }
        for (i, k) in keys.iter().enumerate() {
            let hit = found[i].as_ref().is_some_and(|f| f.entry.is_fresh());
            self.rec
                .caller(k.namespace(), if hit { Count::Hit } else { Count::Miss }, 1);
        }
        self.backfill(keys, &found, &missed).await;
        Walk { found, failed }
    }

    async fn backfill(&self, keys: &[&Key], found: &[Option<Found>], missed: &[Vec<usize>]) {
        let writes = missed.iter().enumerate().filter_map(|(pos, idx)| {
            let items: Vec<(&Key, &Entry)> = idx
                .iter()
                .filter_map(|&i| match &found[i] {
                    Some(f) if f.position > pos && f.entry.is_fresh() => Some((keys[i], &f.entry)),
                    _ => None,
                })
                .collect();
            (!items.is_empty()).then_some(async move {
                if let Err(e) = self.set_on(pos, &items).await {
                    self.fail(pos, &namespaces(items.iter().map(|i| i.0)), "backfill", &e);
                }
            })
        });
        join_all(writes).await;
    }

    /// Writes to every tier; fails only if no tier took the write.
    pub async fn set_many(&self, items: &[(&Key, &Entry)]) -> Result<(), KvError> {
        if items.is_empty() {
            return Ok(());
        }
        let results = join_all((0..self.tiers.len()).map(|pos| self.set_on(pos, items))).await;
        let mut last_err = None;
        let mut stored = false;
        for (pos, r) in results.into_iter().enumerate() {
            match r {
                Ok(()) => {
                    stored = true;
                    for (k, _) in items {
                        self.rec.tier(pos, k.namespace(), Count::Set, 1);
                    }
                }
                Err(e) => {
                    self.fail(pos, &namespaces(items.iter().map(|i| i.0)), "set", &e);
                    last_err = Some(e);
                }
            }
        }
        for (k, _) in items {
            self.rec.caller(k.namespace(), Count::Set, 1);
        }
        match (stored, last_err) {
            (false, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes from every tier; returns whether any tier held a key, per key count.
    pub async fn delete_many(&self, keys: &[&Key]) -> Result<u64, KvError> {
        let results = join_all(self.tiers.iter().map(|t| t.delete_many(keys))).await;
        let mut most = 0;
        let mut first_err = None;
        for (pos, r) in results.into_iter().enumerate() {
            match r {
                Ok(n) => {
                    most = most.max(n);
                    // A tier tells how many keys it held, not which: counted under
                    // the namespace when the keys share one (the common case).
                    let ns = namespaces(keys.iter().copied());
                    let under = if ns.len() == 1 { ns[0] } else { NO_NAMESPACE };
                    self.rec.tier(pos, under, Count::Delete, n);
                }
                Err(e) => {
                    self.fail(pos, &namespaces(keys.iter().copied()), "delete", &e);
                    first_err.get_or_insert(e);
                }
            }
        }
        for k in keys {
            self.rec.caller(k.namespace(), Count::Delete, 1);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(most),
        }
    }

    /// `None` if `entry` was stored; otherwise the entry that won.
    pub async fn set_if_absent(&self, key: &Key, entry: &Entry) -> Result<Option<Entry>, KvError> {
        let mut decided = None;
        let mut last_err = None;
        for pos in (0..self.tiers.len()).rev() {
            let entry = self.for_tier(pos, key, entry);
            match self.tiers[pos].set_if_absent(key, &entry).await {
                Ok(r) => {
                    decided = Some((pos, r));
                    break;
                }
                Err(e) => {
                    self.fail(pos, &[key.namespace()], "set_if_absent", &e);
                    last_err = Some(e);
                }
            }
        }
        let Some((pos, outcome)) = decided else {
            return Err(last_err.unwrap_or(KvError::Unavailable));
        };
        if outcome.is_none() {
            self.rec.tier(pos, key.namespace(), Count::Set, 1);
            self.rec.caller(key.namespace(), Count::Set, 1);
        }
        let winner = outcome.clone().unwrap_or_else(|| entry.clone());
        let above = (0..pos).map(|p| {
            let winner = &winner;
            async move {
                if let Err(e) = self.set_on(p, &[(key, winner)]).await {
                    self.fail(p, &[key.namespace()], "set", &e);
                }
            }
        });
        join_all(above).await;
        Ok(outcome)
    }

    pub async fn invalidate(&self, scope: &Scope) -> InvalidateReport {
        let results = join_all(self.tiers.iter().map(|t| t.invalidate(scope))).await;
        let tiers = results
            .into_iter()
            .enumerate()
            .map(|(pos, r)| {
                let tier = self.tiers[pos].tier();
                match r {
                    Ok(o) => TierInvalidation {
                        tier,
                        outcome: Some(o),
                        error: None,
                    },
                    Err(e) => {
                        let ns = scope.namespace_name().unwrap_or(NO_NAMESPACE);
                        self.fail(pos, &[ns], "invalidate", &e);
                        TierInvalidation {
                            tier,
                            outcome: None,
                            error: Some(e.to_string()),
                        }
                    }
                }
            })
            .collect();
        InvalidateReport {
            scope: scope.id(),
            tiers,
        }
    }

    /// Counters, usage and health of every tier (usage and health ask each tier).
    pub async fn stats(&self) -> Stats {
        let per = join_all(self.tiers.iter().map(|t| async move {
            let health = t.health().await;
            let usage = match &health {
                Ok(()) => t.usage().await,
                Err(_) => Err(KvError::Unavailable),
            };
            (health, usage)
        }))
        .await;
        let tiers = per
            .into_iter()
            .enumerate()
            .map(|(pos, (health, usage))| {
                let error = match (&health, &usage) {
                    (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
                    _ => None,
                };
                TierStats {
                    tier: self.tiers[pos].tier(),
                    position: pos,
                    counters: self.rec.tier_snapshot(pos),
                    usage: usage.ok(),
                    healthy: health.is_ok(),
                    error,
                }
            })
            .collect();
        Stats {
            overall: self.rec.overall_snapshot(),
            namespaces: self.rec.namespace_snapshots(),
            tiers,
        }
    }
}
