//! Deleting on request rather than by age: the operator's clear of every cached
//! result, and the deletion of everything stored under one tenant's name. One
//! policy for both: what goes, in which order, and how much one call does.
//!
//! **Clear** ([`clear_all`]) empties the caches, not the service: every finished
//! task row (`SUCCESS`/`FAILURE`, any tenant) with its outcome keys in Redis, its
//! SVG and claim check in S3 and this instance's L0; every Redis outcome key left
//! over; every entry of the general cache (`cache_store`, Redis `kv:e:` keys, and
//! each namespace the deployment configures invalidated in this instance's memory
//! and in Redis). It keeps open tasks (`PENDING`/`PROCESSING`: their queue
//! messages, claim checks and the SVG a running render may already have stored),
//! which finish normally, and the history and bookkeeping that are not cached
//! results: request counts, metrics, daily aggregates, quotas, pending counters,
//! generations, fold markers. A repeated submit renders again.
//!
//! **Tenant deletion** ([`delete_tenant`]) removes everything keyed by the
//! tenant, every tier: its task rows, open ones too (their messages then find no
//! row and are dropped by the worker); the Redis outcome keys and pending hit
//! counts of each; its leftover `r:` keys, daily statistics (`stats:`), token
//! buckets (`q:`), pending request counts, general-cache entries (invalidated by
//! generation first, then deleted); its rows of `cache_store`, `request_counts`,
//! `processing_metrics`, `daily_metrics` and `tenant_quotas`; and every object
//! under its own S3 prefixes (`results/`, `inputs/`, `uploads/`; a prefix names one
//! tenant, see `objects::tenant_prefixes`), each SVG's by-task Redis key first. No
//! statement names another tenant: keys are matched by pattern and then checked
//! exactly, rows by `tenant = $1`. Shared structures keep their fields of other
//! tenants; the general cache's generation for the tenant stays in `kv:gens` (it
//! is what makes an entry written during the deletion invalid).
//!
//! **Order**: a task row first (Postgres is what makes a row a hit of last
//! resort), then the keys that make it a hit above (L0, Redis), objects last, so
//! a crash at any point leaves only objects nothing points at, or Redis keys that
//! expire with their entry. Pending Redis counts go before the Postgres rows they
//! would be folded into. Redis must answer before anything is deleted (else
//! [`PurgeError::Redis`]): rows deleted while Redis is away would leave keys no
//! later call could find.
//!
//! **Bounds**: every statement deletes at most [`ROW_BATCH`] rows, every `SCAN` or
//! listing page [`SCAN_COUNT`] keys, and no batch starts after `until`. A call that
//! stops there (or whose Redis or S3 failed) answers `complete: false`; calling
//! again resumes from what is left (everything deleted is gone, so each call makes
//! progress), and a call over nothing answers zeros and `complete: true`.
//! Instances other than the caller's forget their L0 and memory-tier copies
//! within their own TTLs (`L0_TTL_SECS`, the memory tier's 60 s), and counts they
//! still hold for the tenant reach Redis with their next send: a deletion repeated
//! after a minute finds those.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::delete::drop_rows;
use crate::app::App;
use crate::cache::kv::{Backend, Scope, Tier};
use crate::cache::CacheError;
use crate::policy::purge::{ROW_BATCH, SCAN_COUNT};
use crate::tasks::erasure::{Erased, TenantTable};
use crate::tasks::StoreError;

/// What one call deleted, tier by tier, and whether anything is left.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PurgeReport {
    /// `all` (the clear) or `tenant`.
    pub scope: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// False when the call stopped at its deadline or a tier failed: call again.
    pub complete: bool,
    /// Rows deleted, per table.
    pub postgres: BTreeMap<&'static str, u64>,
    /// Keys (or hash fields, for `pending_counts`) deleted, per family.
    pub redis: BTreeMap<&'static str, u64>,
    /// Objects deleted, per prefix family.
    pub s3: BTreeMap<&'static str, u64>,
    /// Entries dropped from the memory of the instance that ran the call.
    pub memory: BTreeMap<&'static str, u64>,
    /// The clear: open tasks left to finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_tasks_kept: Option<i64>,
    /// Tiers that failed during the call (`redis`, `s3`).
    pub failed: Vec<&'static str>,
    /// What went wrong, for the operator's log, never a caller's answer.
    #[serde(skip)]
    pub errors: Vec<String>,
}

impl PurgeReport {
    fn new(scope: &'static str, tenant: Option<&str>, tiers: &Families) -> Self {
        let zeros = |names: &[&'static str]| names.iter().map(|n| (*n, 0)).collect();
        PurgeReport {
            scope,
            tenant: tenant.map(str::to_owned),
            complete: false,
            postgres: zeros(tiers.postgres),
            redis: zeros(tiers.redis),
            s3: zeros(tiers.s3),
            memory: zeros(&["outcomes"]),
            open_tasks_kept: None,
            failed: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn add(map: &mut BTreeMap<&'static str, u64>, what: &'static str, n: u64) {
        *map.entry(what).or_insert(0) += n;
    }

    fn fail(&mut self, tier: &'static str, error: impl std::fmt::Display) {
        tracing::warn!(tier, error = %error, "purge: a tier failed; the call is incomplete");
        if !self.failed.contains(&tier) {
            self.failed.push(tier);
        }
        self.errors.push(format!("{tier}: {error}"));
    }

    /// Adds the counts of a later call over the same scope (an operator's loop).
    pub fn absorb(&mut self, later: PurgeReport) {
        for (mine, theirs) in [
            (&mut self.postgres, later.postgres),
            (&mut self.redis, later.redis),
            (&mut self.s3, later.s3),
            (&mut self.memory, later.memory),
        ] {
            for (k, n) in theirs {
                Self::add(mine, k, n);
            }
        }
        self.complete = later.complete;
        self.open_tasks_kept = later.open_tasks_kept;
        self.failed = later.failed;
        self.errors.extend(later.errors);
    }

    /// Rows, keys and objects deleted in all.
    pub fn total(&self) -> u64 {
        [&self.postgres, &self.redis, &self.s3]
            .iter()
            .flat_map(|m| m.values())
            .sum()
    }
}

/// The families a report always names (zero when nothing was there).
struct Families {
    postgres: &'static [&'static str],
    redis: &'static [&'static str],
    s3: &'static [&'static str],
}

const CLEAR: Families = Families {
    postgres: &["task_results", "cache_store"],
    redis: &["outcome_keys", "cache_entries"],
    s3: &["results", "inputs"],
};

const TENANT: Families = Families {
    postgres: &[
        "task_results",
        "cache_store",
        "request_counts",
        "processing_metrics",
        "daily_metrics",
        "tenant_quotas",
    ],
    redis: &[
        "outcome_keys",
        "cache_entries",
        "stats_keys",
        "quota_keys",
        "pending_counts",
    ],
    s3: &["results", "inputs", "uploads"],
};

/// Why a call deleted nothing more: a Postgres statement failed, or Redis did not
/// answer before the first delete. The caller answers 503 and calls again.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("general cache's rows: {0}")]
    Cache(#[from] crate::cache::kv::KvError),
    #[error("redis must answer before anything is deleted: {0}")]
    Redis(CacheError),
}

/// Redis answers, or the deployment has none.
async fn redis_answers(app: &App) -> Result<(), PurgeError> {
    match app.outcomes.redis.ping().await {
        Ok(()) | Err(CacheError::Disabled) => Ok(()),
        Err(e) => Err(PurgeError::Redis(e)),
    }
}

/// The general cache's tiers above Postgres (Postgres rows are deleted in batches).
fn kv_tiers_above_postgres(app: &App) -> impl Iterator<Item = &std::sync::Arc<dyn Backend>> + '_ {
    app.kv.tiers().iter().filter(|t| t.tier() != Tier::Postgres)
}

/// Deletes rows in batches until fewer than a batch are left or `until` passes;
/// returns the rows deleted and whether none are left.
async fn batches<F, Fut, E>(until: Instant, mut delete: F) -> Result<(u64, bool), E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, E>>,
{
    let mut total = 0;
    loop {
        if Instant::now() >= until {
            return Ok((total, false));
        }
        let n = delete().await?;
        total += n;
        if (n as i64) < ROW_BATCH {
            return Ok((total, true));
        }
    }
}

/// The operator's clear: every cached result and general-cache entry, every
/// tenant, open tasks kept (see the module's documentation).
#[tracing::instrument(skip_all, err)]
pub async fn clear_all(app: &App, until: Instant) -> Result<PurgeReport, PurgeError> {
    redis_answers(app).await?;
    let mut r = PurgeReport::new("all", None, &CLEAR);
    let mut done = true;
    PurgeReport::add(&mut r.memory, "outcomes", app.outcomes.l0.clear() as u64);

    // Finished rows, then what points at them: keys, then objects.
    loop {
        if Instant::now() >= until {
            done = false;
            break;
        }
        let rows = app.tasks.erase_finished_tasks(ROW_BATCH).await?;
        let refs: Vec<&Erased> = rows.iter().collect();
        let dropped = drop_rows(app, &refs, true).await;
        PurgeReport::add(&mut r.postgres, "task_results", rows.len() as u64);
        PurgeReport::add(&mut r.redis, "outcome_keys", dropped.redis_keys);
        PurgeReport::add(&mut r.s3, "results", dropped.results);
        PurgeReport::add(&mut r.s3, "inputs", dropped.inputs);
        for e in dropped.errors {
            let tier = if e.starts_with("s3") { "s3" } else { "redis" };
            r.fail(tier, e);
        }
        if dropped.redis_failed {
            // Further rows' keys would be lost track of: stop, the caller repeats.
            done = false;
            break;
        }
        if (rows.len() as i64) < ROW_BATCH {
            break;
        }
    }

    // Outcome keys no row names any more (a sweep whose Redis call failed, a late
    // backfill). Keys of rows finished since are copies of Postgres: harmless to drop.
    if done && r.failed.is_empty() {
        let redis = &app.outcomes.redis;
        let everything = |_: &str| true;
        for pattern in [redis.outcome_pattern(None), redis.task_pattern()] {
            match redis.delete_matching(&pattern, &everything, until).await {
                Ok((n, finished)) => {
                    PurgeReport::add(&mut r.redis, "outcome_keys", n);
                    done &= finished;
                }
                Err(CacheError::Disabled) => {}
                Err(e) => r.fail("redis", e),
            }
        }
    }

    // The general cache: each configured namespace invalidated above Postgres (what
    // another writer sets meanwhile is then stale), its Redis entries deleted, its
    // rows deleted.
    for ns in app.config.kv_ttls.names() {
        let Ok(scope) = Scope::namespace(ns) else {
            continue;
        };
        for tier in kv_tiers_above_postgres(app) {
            if let Err(e) = tier.invalidate(&scope).await {
                r.fail("redis", e);
            }
        }
    }
    if !r.failed.contains(&"redis") {
        let redis = &app.outcomes.redis;
        let pattern = crate::cache::kv::redis::entry_pattern(redis.prefix());
        match redis
            .delete_matching(&pattern, &|_: &str| true, until)
            .await
        {
            Ok((n, finished)) => {
                PurgeReport::add(&mut r.redis, "cache_entries", n);
                done &= finished;
            }
            Err(CacheError::Disabled) => {}
            Err(e) => r.fail("redis", e),
        }
    }
    let (n, finished) = batches(until, || app.kv_store.delete_rows(None, ROW_BATCH)).await?;
    PurgeReport::add(&mut r.postgres, "cache_store", n);
    done &= finished;

    r.open_tasks_kept = Some(app.tasks.open_task_count().await?);
    r.complete = done && r.failed.is_empty();
    tracing::info!(report = ?r, "cache cleared");
    Ok(r)
}

/// Deletes everything stored under `tenant`'s name, every tier (see the module's
/// documentation). Idempotent; bounded by `until`.
#[tracing::instrument(skip_all, fields(%tenant), err)]
pub async fn delete_tenant(
    app: &App,
    tenant: &str,
    until: Instant,
) -> Result<PurgeReport, PurgeError> {
    redis_answers(app).await?;
    let mut r = PurgeReport::new("tenant", Some(tenant), &TENANT);
    PurgeReport::add(
        &mut r.memory,
        "outcomes",
        app.outcomes.l0.remove_tenant(tenant) as u64,
    );
    let done = delete_tenant_steps(app, tenant, until, &mut r).await?;
    r.complete = done && r.failed.is_empty();
    tracing::info!(report = ?r, "tenant's data deleted");
    Ok(r)
}

/// The steps of [`delete_tenant`], in order; returns whether all ran to their end.
async fn delete_tenant_steps(
    app: &App,
    tenant: &str,
    until: Instant,
    r: &mut PurgeReport,
) -> Result<bool, PurgeError> {
    let redis = &app.outcomes.redis;

    // 1. Task rows, each with its keys above; the objects go with the prefixes (4).
    loop {
        if Instant::now() >= until {
            return Ok(false);
        }
        let rows = app.tasks.erase_tenant_tasks(tenant, ROW_BATCH).await?;
        let refs: Vec<&Erased> = rows.iter().collect();
        let dropped = drop_rows(app, &refs, false).await;
        PurgeReport::add(&mut r.postgres, "task_results", rows.len() as u64);
        PurgeReport::add(&mut r.redis, "outcome_keys", dropped.redis_keys);
        if dropped.redis_failed {
            // Further rows' keys would be lost track of: stop here.
            for e in dropped.errors {
                r.fail("redis", e);
            }
            return Ok(false);
        }
        if (rows.len() as i64) < ROW_BATCH {
            break;
        }
    }

    // 2. Redis: keys no remaining row names, then counts not yet folded.
    let mut done = true;
    let stored = crate::cache::kv::key::escape(tenant);
    let scope = Scope::tenant(tenant);
    for tier in kv_tiers_above_postgres(app) {
        if let Err(e) = tier.invalidate(&scope).await {
            r.fail("redis", e);
        }
    }
    let kv_prefix = redis.prefix().to_owned();
    type Wanted<'a> = Box<dyn Fn(&str) -> bool + Send + Sync + 'a>;
    let patterns: [(&'static str, String, Wanted<'_>); 3] = [
        (
            "outcome_keys",
            redis.outcome_pattern(Some(tenant)),
            Box::new(|k: &str| redis.is_outcome_of(k, tenant)),
        ),
        (
            "cache_entries",
            crate::cache::kv::redis::entry_pattern(&kv_prefix),
            Box::new(|k: &str| {
                crate::cache::kv::redis::entry_tenant(&kv_prefix, k) == Some(stored.as_str())
            }),
        ),
        (
            "stats_keys",
            redis.stats_pattern(tenant),
            Box::new(|k: &str| redis.is_stats_of(k, tenant)),
        ),
    ];
    for (family, pattern, wanted) in &patterns {
        if r.failed.contains(&"redis") {
            break;
        }
        match redis.delete_matching(pattern, wanted.as_ref(), until).await {
            Ok((n, finished)) => {
                PurgeReport::add(&mut r.redis, family, n);
                done &= finished;
            }
            Err(CacheError::Disabled) => {}
            Err(e) => r.fail("redis", e),
        }
    }
    if !r.failed.contains(&"redis") {
        let buckets = crate::quota::redis::tenant_keys(redis.prefix(), tenant);
        match redis.delete_keys(&buckets).await {
            Ok(n) => PurgeReport::add(&mut r.redis, "quota_keys", n),
            Err(CacheError::Disabled) => {}
            Err(e) => r.fail("redis", e),
        }
    }
    if !r.failed.contains(&"redis") {
        match redis.forget_request_counts(tenant).await {
            Ok(n) => PurgeReport::add(&mut r.redis, "pending_counts", n),
            Err(CacheError::Disabled) => {}
            Err(e) => r.fail("redis", e),
        }
    }

    // 3. Postgres: the general cache's rows, then the tenant's history and buckets.
    let (n, finished) = batches(until, || {
        app.kv_store.delete_rows(Some(stored.as_str()), ROW_BATCH)
    })
    .await?;
    PurgeReport::add(&mut r.postgres, "cache_store", n);
    done &= finished;
    for table in TenantTable::ALL {
        let (n, finished) = batches(until, || {
            app.tasks.erase_tenant_rows(table, tenant, ROW_BATCH)
        })
        .await?;
        PurgeReport::add(&mut r.postgres, table.name(), n);
        done &= finished;
    }

    // 4. S3: every object under the tenant's prefixes, each SVG's by-task key in
    // Redis first. Not while Redis fails: an object must not go before its key.
    if r.failed.contains(&"redis") {
        return Ok(false);
    }
    for (family, prefix) in crate::objects::tenant_prefixes(tenant) {
        let mut after: Option<String> = None;
        loop {
            if Instant::now() >= until {
                return Ok(false);
            }
            let keys = match app
                .objects
                .list(&prefix, after.as_deref(), SCAN_COUNT as i32)
                .await
            {
                Ok(keys) => keys,
                Err(e) => {
                    r.fail("s3", e);
                    return Ok(false);
                }
            };
            let Some(last) = keys.last().cloned() else {
                break;
            };
            let tasks: Vec<uuid::Uuid> = keys
                .iter()
                .filter_map(|k| crate::objects::svg_task(k))
                .collect();
            match redis.remove_task_keys(&tasks).await {
                Ok(n) => PurgeReport::add(&mut r.redis, "outcome_keys", n),
                Err(CacheError::Disabled) => {}
                Err(e) => {
                    r.fail("redis", e);
                    return Ok(false);
                }
            }
            match app.objects.delete_many(&keys).await {
                Ok(n) => PurgeReport::add(&mut r.s3, family, n as u64),
                Err(e) => {
                    r.fail("s3", e);
                    return Ok(false);
                }
            }
            after = Some(last);
        }
    }
    Ok(done)
}

/// The deadline of a call that must answer over HTTP: [`crate::policy::purge::HTTP_BUDGET`]
/// from now, or sooner if the invocation ends sooner.
pub fn http_deadline(invocation: Option<Instant>) -> Instant {
    let budget = Instant::now() + crate::policy::purge::HTTP_BUDGET;
    match invocation {
        Some(end) => end
            .checked_sub(crate::policy::deadlines::ANSWER_MARGIN * 4)
            .map_or(budget, |last| budget.min(last)),
        None => budget,
    }
}
