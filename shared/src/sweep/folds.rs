//! Counts gathered in Redis folded into Postgres: request counts and the general
//! cache's counters (every minute, with the relay) and hit counters (with each
//! sweep), each batch moved aside, added in one transaction that records its id,
//! then deleted; and the fold markers that make a second fold of the same batch a
//! no-op.

use super::FOLD_MEMORY;
use crate::app::App;
use crate::tasks::StoreError;

/// Forgets the fold markers older than [`FOLD_MEMORY`] whose batch is no longer in
/// Redis. With Redis unreachable, nothing is forgotten.
pub async fn prune_fold_markers(app: &App) -> Result<u64, FoldError> {
    let in_progress = match app.outcomes.redis.folds_in_progress().await {
        Ok(ids) => ids,
        Err(crate::cache::CacheError::Disabled) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(app
        .tasks
        .prune_fold_markers(FOLD_MEMORY, &in_progress)
        .await?)
}

/// Folds the hit counters gathered in Redis into the rows' `cache_hits`, by the
/// protocol of [`fold_requests`]: moved aside, added in one transaction that records
/// the batch id, then deleted. Returns the rows updated, or `None` without Redis.
pub async fn fold_hits(app: &App) -> Result<Option<u64>, FoldError> {
    app.outcomes.flush_counts().await;
    let mut folded = 0;
    for _ in 0..2 {
        let batch = match app.outcomes.redis.take_hits().await {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(crate::cache::CacheError::Disabled) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if let Some(n) = app.tasks.add_hits(&batch.hits, Some(batch.batch)).await? {
            folded += n;
        }
        app.outcomes.redis.finish_hit_fold(batch.batch).await?;
    }
    Ok(Some(folded))
}

/// Why request counts could not be folded; the next run folds the same batch.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
}

/// Folds the request counts gathered in Redis into Postgres's `request_counts`:
/// first a batch left by a fold that did not finish, then the pending counts.
/// Returns how many (tenant, day, tier) counts were added.
///
/// Never twice, never lost: the batch is moved aside in Redis atomically, added in
/// one Postgres transaction that also records its id (a batch seen before is
/// skipped), and only then deleted from Redis. A failure at any step leaves the
/// batch for the next run. Without Redis there is nothing to fold:
/// `OutcomeCache::flush_counts` writes the table itself.
pub async fn fold_requests(app: &App) -> Result<u64, FoldError> {
    app.outcomes.flush_counts().await;
    let mut folded = 0;
    // A leftover batch, then the pending counts: at most two batches per run.
    for _ in 0..2 {
        let batch = match app.outcomes.redis.take_request_counts().await {
            Ok(Some(batch)) => batch,
            Ok(None) | Err(crate::cache::CacheError::Disabled) => break,
            Err(e) => return Err(e.into()),
        };
        if app
            .tasks
            .add_request_counts(&batch.counts, Some(batch.batch))
            .await?
        {
            folded += batch.counts.len() as u64;
        }
        app.outcomes.redis.finish_request_fold(batch.batch).await?;
    }
    fold_cache_counters(app).await?;
    Ok(folded)
}

/// Folds the general-purpose cache's counts gathered in Redis into Postgres's
/// `cache_counters` (see `OutcomeCache::fold_cache_counters`), with the request
/// counts. Returns the (namespace, tier) rows added to.
pub async fn fold_cache_counters(app: &App) -> Result<u64, FoldError> {
    use crate::cache::outcomes::FoldError as Counts;
    app.outcomes
        .fold_cache_counters(&app.tasks)
        .await
        .map_err(|e| match e {
            Counts::Store(e) => FoldError::Store(e),
            Counts::Cache(e) => FoldError::Cache(e),
        })
}
