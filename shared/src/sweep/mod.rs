//! The cache-cleanup function: one owned place for expiry.
//!
//! Every minute (with the outbox relay) and with every sweep, the request counts
//! gathered in Redis are folded into Postgres's `request_counts` ([`fold_requests`]),
//! which the daily view reads, and the general cache's counters into
//! `cache_counters` ([`fold_cache_counters`]): one writer for each table, each batch
//! added once.
//!
//! A sweep runs its [`Step`]s in order, each on its own: relay unsent messages,
//! delete expired `cache_store` rows, evict its least recently used rows over the
//! size limits (`CACHE_KV_MAX_ENTRIES`, `CACHE_KV_MAX_SIZE_MB`), fold the request counts and the write-behind hit
//! counters (so that "never hit" is judged on fresh numbers), prune fold markers, fail
//! tasks stuck open, then delete in bounded batches the rows past their TTL, failures
//! older than 7 days and never-hit rows older than 30 days, and finally roll metrics
//! up and prune them ([`crate::tasks::retention`]). A step that fails does not stop
//! the others; it is logged, counted (`Errors` by `Step`) and makes the scheduled
//! invocation fail ([`handle_event`]). Each deleted row's Redis keys go first and its
//! S3 objects last: an S3 object whose row is gone is harmless (and the bucket's
//! lifecycle rule is the safety net), a row whose SVG is gone would not be.

mod delete;
mod event;
mod folds;
pub mod http;
mod limits;
pub mod purge;
mod relay;
mod retention;

use serde::Serialize;

use crate::app::App;
pub use crate::policy::lifetime::STUCK_FAILURE_VISIBLE;
pub use crate::policy::sweep::{
    CACHE_LIMIT_BATCH, DAILY_KEEP, FAILURE_MAX_AGE, FOLD_MEMORY, MAX_BATCHES, RAW_METRICS_KEEP,
    RELAY_AFTER, RETENTION_BATCH, ROLLUP_DAYS_PER_RUN, UNUSED_MAX_AGE,
};
pub use event::{handle_event, CleanupError, CleanupEvent, StepsFailed, UnknownEvent};
pub use folds::{fold_cache_counters, fold_hits, fold_requests, prune_fold_markers, FoldError};
pub use relay::relay;

/// One step of a sweep. Each runs on its own: one that fails does not stop the
/// others, and fails the invocation (see [`handle_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The outbox relay.
    Relay,
    /// Expired rows of the general-purpose cache.
    CacheStore,
    /// Rows of the general-purpose cache over its size limits.
    CacheLimits,
    /// Request counts from Redis into `request_counts`, and the general cache's
    /// counters into `cache_counters`.
    FoldRequests,
    /// Hit counters from Redis into `task_results.cache_hits`.
    FoldHits,
    /// Fold markers no batch can be offered again under.
    FoldMarkers,
    /// Tasks open too long, failed retryably.
    Stuck,
    /// Expired, old failed and never-hit entries, with their objects and keys.
    Delete,
    /// Raw metrics rolled up by day and pruned; old daily rows pruned.
    Retention,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Relay => "relay",
            Step::CacheStore => "cache_store",
            Step::CacheLimits => "cache_limits",
            Step::FoldRequests => "fold_requests",
            Step::FoldHits => "fold_hits",
            Step::FoldMarkers => "fold_markers",
            Step::Stuck => "stuck",
            Step::Delete => "delete",
            Step::Retention => "retention",
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub hits_folded: u64,
    /// (tenant, day, tier) request counts folded from Redis into `request_counts`.
    pub requests_folded: u64,
    pub stuck_failed: u64,
    pub expired: u64,
    pub failed: u64,
    pub unused: u64,
    pub s3_objects_deleted: u64,
    pub redis_keys_deleted: u64,
    /// Unsent task messages sent by the relay.
    pub relayed: u64,
    /// Expired rows of the general-purpose cache's `cache_store` deleted.
    pub cache_store_expired: u64,
    /// Rows of `cache_store` evicted (least recently used first) to bring it under
    /// its entry and byte caps.
    pub cache_store_evicted: u64,
    /// Fold markers forgotten.
    pub fold_markers_pruned: u64,
    /// Metrics rolled up and rows pruned past their age.
    pub retention: crate::tasks::retention::Retention,
    /// False when the hit counters could not be read: then nothing is judged unused.
    pub unused_rule_applied: bool,
    /// The steps that failed; any makes the invocation fail.
    pub failed_steps: Vec<Step>,
    /// What went wrong, step by step (for the operator's log, never a caller's).
    pub errors: Vec<String>,
    /// True if the batch limit stopped this run before the backlog was empty.
    pub more: bool,
}

impl SweepReport {
    /// Records that `step` failed with `error`: logged, and an `Errors` metric
    /// naming the step.
    fn step_failed(&mut self, step: Step, error: impl std::fmt::Display) {
        tracing::error!(step = step.name(), error = %error, "sweep step failed");
        crate::metrics::sweep_step_failed(step.name());
        if !self.failed_steps.contains(&step) {
            self.failed_steps.push(step);
        }
        self.errors.push(format!("{}: {error}", step.name()));
    }

    /// Whether every step ran to its end.
    pub fn is_ok(&self) -> bool {
        self.failed_steps.is_empty()
    }
}

/// One full sweep. Every step runs, whatever the others did; the report says which
/// failed.
pub async fn run(app: &App) -> SweepReport {
    let mut report = SweepReport::default();

    match relay(app).await {
        Ok(n) => report.relayed = n,
        Err(e) => report.step_failed(Step::Relay, e),
    }
    match app
        .kv_store
        .cleanup_expired(app.config.sweep_batch, MAX_BATCHES as u32)
        .await
    {
        Ok(c) => {
            report.cache_store_expired = c.deleted;
            report.more |= c.more;
        }
        Err(e) => report.step_failed(Step::CacheStore, e),
    }
    if !app.config.kv_limits.is_empty() {
        match limits::limits(app).await {
            Ok(e) => {
                report.cache_store_evicted = e.rows;
                report.more |= e.more;
            }
            Err(e) => report.step_failed(Step::CacheLimits, e),
        }
    }
    match fold_requests(app).await {
        Ok(n) => report.requests_folded = n,
        Err(e) => report.step_failed(Step::FoldRequests, e),
    }

    // Fail safe: "never hit" is judged only on counts that were read and folded. With
    // Redis down, entries in use would look unused, so that rule waits a run.
    match fold_hits(app).await {
        Ok(Some(n)) => {
            report.hits_folded = n;
            report.unused_rule_applied = true;
        }
        // Without Redis there are no counts to judge by: the rule never applies.
        Ok(None) => {}
        Err(e) => report.step_failed(Step::FoldHits, e),
    }
    match prune_fold_markers(app).await {
        Ok(n) => report.fold_markers_pruned = n,
        Err(e) => report.step_failed(Step::FoldMarkers, e),
    }

    match app
        .tasks
        .fail_stuck(
            app.config.stuck_after,
            STUCK_FAILURE_VISIBLE,
            app.config.sweep_batch,
        )
        .await
    {
        Ok(n) => report.stuck_failed = n,
        Err(e) => report.step_failed(Step::Stuck, e),
    }

    if let Err(e) = delete::delete(app, &mut report).await {
        report.step_failed(Step::Delete, e);
    }
    if let Err(e) = retention::retention(app, &mut report.retention).await {
        report.step_failed(Step::Retention, e);
    }
    report.more |= report.retention.more;
    delete::report_entries(app).await;
    report
}
