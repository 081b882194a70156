//! The retention step: metrics rolled up by day, then rows past their age pruned
//! (the statements are `tasks::retention`'s).

use super::{DAILY_KEEP, MAX_BATCHES, RAW_METRICS_KEEP, RETENTION_BATCH, ROLLUP_DAYS_PER_RUN};
use crate::app::App;
use crate::tasks::StoreError;

/// Rolls finished days of metrics up, then prunes what is past its age.
pub(super) async fn retention(
    app: &App,
    out: &mut crate::tasks::retention::Retention,
) -> Result<(), StoreError> {
    out.days_rolled_up = app.tasks.roll_up_metrics(ROLLUP_DAYS_PER_RUN).await?;
    let (n, more) = app
        .tasks
        .prune_metrics(RAW_METRICS_KEEP, RETENTION_BATCH, MAX_BATCHES as u32)
        .await?;
    out.metric_rows_pruned = n;
    out.more |= more;
    let (n, more) = app
        .tasks
        .prune_daily(DAILY_KEEP, RETENTION_BATCH, MAX_BATCHES as u32)
        .await?;
    out.daily_rows_pruned = n;
    out.more |= more;
    // A bucket full again says no more than no row: at most tenants × buckets rows
    // are ever there, so one batch is plenty.
    out.quota_rows_pruned = app.tasks.prune_quotas(RETENTION_BATCH).await?;
    Ok(())
}
