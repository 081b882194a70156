//! The deletion step: expired, old failed and never-hit entries, with their Redis
//! keys first and their S3 objects last.

use super::{SweepReport, FAILURE_MAX_AGE, MAX_BATCHES, UNUSED_MAX_AGE};
use crate::app::App;
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
        let mut keys = Vec::new();
        for row in &swept {
            match row.reason {
                SweepReason::Expired => report.expired += 1,
                SweepReason::Failed => report.failed += 1,
                SweepReason::Unused => report.unused += 1,
            }
            match app
                .outcomes
                .forget(&row.tenant, &row.input_hash, row.task_id)
                .await
            {
                Ok(()) => report.redis_keys_deleted += 2,
                // The keys carry the entry's TTL: they expire on their own.
                Err(e) => report
                    .errors
                    .push(format!("redis keys of {}: {e}", row.task_id)),
            }
            keys.extend(row.svg_s3_key.iter().cloned());
            keys.extend(row.input_s3_key.iter().cloned());
        }
        if !keys.is_empty() {
            match app.objects.delete_many(&keys).await {
                Ok(n) => report.s3_objects_deleted += n as u64,
                // The bucket's lifecycle rule deletes what is left.
                Err(e) => report.errors.push(format!("s3: {e}")),
            }
        }
    }
    report.more = true;
    Ok(())
}

/// The cache's size after a sweep, as the `CachedEntries` metric.
pub(super) async fn report_entries(app: &App) {
    match app.tasks.entries().await {
        Ok(n) => crate::metrics::count("CachedEntries", n as f64),
        Err(e) => tracing::warn!(error = %e, "entries not counted"),
    }
}
