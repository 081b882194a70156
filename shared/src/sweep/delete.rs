//! The deletion step: expired, old failed and never-hit entries, with their Redis
//! keys first and their S3 objects last ([`drop_rows`], which the operator's clear
//! and a tenant's deletion share, see [`super::purge`]).

use super::{SweepReport, FAILURE_MAX_AGE, MAX_BATCHES, UNUSED_MAX_AGE};
use crate::app::App;
use crate::tasks::erasure::Erased;
use crate::tasks::results::SweepReason;
use crate::tasks::StoreError;

/// Deletes expired, old failed and (when the hit counts were folded) never-hit
/// entries in bounded batches, with their Redis keys first and S3 objects last.
pub(super) async fn delete(app: &App, report: &mut SweepReport) -> Result<(), StoreError> {
    let unused_age = report.unused_rule_applied.then_some(UNUSED_MAX_AGE);
    for _ in 0..MAX_BATCHES {
        let swept = app
            .tasks
            .delete_sweepable(FAILURE_MAX_AGE, unused_age, app.config.sweep_batch)
            .await?;
        if swept.is_empty() {
            return Ok(());
        }
        for row in &swept {
            match row.reason {
                SweepReason::Expired => report.expired += 1,
                SweepReason::Failed => report.failed += 1,
                SweepReason::Unused => report.unused += 1,
            }
        }
        let rows: Vec<&Erased> = swept.iter().map(|s| &s.task).collect();
        let dropped = drop_rows(app, &rows, true).await;
        report.redis_keys_deleted += dropped.redis_keys;
        report.s3_objects_deleted += dropped.results + dropped.inputs;
        report.errors.extend(dropped.errors);
    }
    report.more = true;
    Ok(())
}

/// What [`drop_rows`] removed above Postgres.
#[derive(Debug, Default)]
pub(super) struct Dropped {
    /// Redis keys that existed (both indexes of each outcome).
    pub redis_keys: u64,
    /// S3 keys deleted (S3 does not say which existed): SVGs and claim checks.
    pub results: u64,
    pub inputs: u64,
    pub redis_failed: bool,
    pub s3_failed: bool,
    pub errors: Vec<String>,
}

/// Forgets task rows just deleted from Postgres in every tier above it (this
/// instance's L0, Redis's keys and pending hits), then, with `objects`, deletes
/// their S3 objects. The row goes first, the keys that make it a hit next, the
/// objects last: whatever a crash leaves is an object nothing points at (the
/// bucket's lifecycle rule, or a tenant's deletion, removes it) or a Redis key
/// that expires with the entry. A failure is recorded, never fatal.
pub(super) async fn drop_rows(app: &App, rows: &[&Erased], objects: bool) -> Dropped {
    let mut out = Dropped::default();
    if rows.is_empty() {
        return out;
    }
    let keys: Vec<(&str, &str, uuid::Uuid)> = rows
        .iter()
        .map(|r| (r.tenant.as_str(), r.input_hash.as_str(), r.task_id))
        .collect();
    match app.outcomes.forget_many(&keys).await {
        Ok(n) => out.redis_keys = n,
        // The keys carry the entry's TTL: they expire on their own.
        Err(e) => {
            out.redis_failed = true;
            out.errors
                .push(format!("redis keys of {} rows: {e}", rows.len()));
        }
    }
    // Keys that may still name these objects keep them: a hit whose SVG is gone
    // is worse than an object nothing points at, which the lifecycle rule removes.
    if !objects || out.redis_failed {
        return out;
    }
    let svgs: Vec<String> = rows.iter().filter_map(|r| r.svg_s3_key.clone()).collect();
    let inputs: Vec<String> = rows.iter().filter_map(|r| r.input_s3_key.clone()).collect();
    for (keys, count) in [(svgs, &mut out.results), (inputs, &mut out.inputs)] {
        if keys.is_empty() {
            continue;
        }
        match app.objects.delete_many(&keys).await {
            Ok(n) => *count += n as u64,
            // The bucket's lifecycle rule deletes what is left.
            Err(e) => {
                out.s3_failed = true;
                out.errors.push(format!("s3: {e}"));
            }
        }
    }
    out
}

/// The cache's size after a sweep, as the `CachedEntries` metric.
pub(super) async fn report_entries(app: &App) {
    match app.tasks.entries().await {
        Ok(n) => crate::metrics::count("CachedEntries", n as f64),
        Err(e) => tracing::warn!(error = %e, "entries not counted"),
    }
}
