//! The counts kept outside Postgres (in Redis, or in memory without it) and added
//! here in batches: `request_counts` (requests per tenant, UTC day and tier), the
//! hit counters of `task_results` (`cache_hits`, `last_hit_at`), the general
//! cache's counters summed over the fleet (`cache_counters`), and
//! `request_count_folds`, the markers of the batches already added, which make a
//! second fold of the same batch a no-op.
//!
//! Kept apart from a task's lifecycle (`results`): a fold touches many rows at once
//! and never a task's state, and its exactly-once guarantee rests on the marker
//! table, which only these statements use. Pruning `request_counts` by age is
//! `retention`'s, with the other daily rows.

use std::time::Duration;

use tracing::instrument;
use uuid::Uuid;

use super::results::{secs, TaskStore};
use super::StoreError;

impl TaskStore {
    /// Adds request counts to `request_counts`, in one transaction. With a `batch`
    /// (a fold of Redis's counts), a batch already added is skipped and `false`
    /// returned: folding the same batch twice never counts it twice.
    #[instrument(skip_all, fields(n = counts.len(), ?batch), err)]
    pub async fn add_request_counts(
        &self,
        counts: &[super::RequestCount],
        batch: Option<Uuid>,
    ) -> Result<bool, StoreError> {
        self.bounded(async move {
            let mut client = self.pool.conn().await?;
            let tx = client.transaction().await?;
            if let Some(batch) = batch {
                if !mark_folded(&tx, batch).await? {
                    return Ok(false);
                }
            }
            if !counts.is_empty() {
                let tenants: Vec<&str> = counts.iter().map(|c| c.tenant.as_str()).collect();
                let days: Vec<chrono::NaiveDate> = counts.iter().map(|c| c.day).collect();
                let tiers: Vec<&str> = counts.iter().map(|c| c.tier.as_str()).collect();
                let ns: Vec<i64> = counts.iter().map(|c| c.requests).collect();
                // Summed first: one statement may not update the same row twice.
                tx.execute(
                    "INSERT INTO request_counts (tenant, day, tier, requests)
                     SELECT t, d, k, sum(n)::int8 FROM unnest($1::text[], $2::date[], $3::text[], $4::int8[]) AS c(t, d, k, n)
                     GROUP BY t, d, k
                     ON CONFLICT (tenant, day, tier) DO UPDATE SET requests = request_counts.requests + EXCLUDED.requests",
                    &[&tenants, &days, &tiers, &ns],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Forgets fold markers older than `age`, except those of the batches in
    /// `in_progress` (still in Redis, so they may be offered again however old).
    #[instrument(skip_all, fields(?age, in_progress = in_progress.len()), err)]
    pub async fn prune_fold_markers(
        &self,
        age: Duration,
        in_progress: &[Uuid],
    ) -> Result<u64, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            Ok(client
                .execute(
                    "DELETE FROM request_count_folds
                     WHERE folded_at < now() - make_interval(secs => $1) AND NOT (batch = ANY($2))",
                    &[&secs(age), &in_progress],
                )
                .await?)
        })
        .await
    }

    /// Adds hit counts gathered in Redis (write-behind) to the rows, in one
    /// transaction. With a `batch` (a fold of Redis's counters), a batch already
    /// added is skipped and `None` returned: folding the same batch twice never
    /// counts it twice. Otherwise, the rows updated.
    #[instrument(skip_all, fields(n = hits.len(), ?batch), err)]
    pub async fn add_hits(
        &self,
        hits: &[(Uuid, i64)],
        batch: Option<Uuid>,
    ) -> Result<Option<u64>, StoreError> {
        if hits.is_empty() && batch.is_none() {
            return Ok(Some(0));
        }
        let ids: Vec<Uuid> = hits.iter().map(|h| h.0).collect();
        let counts: Vec<i64> = hits.iter().map(|h| h.1).collect();
        self.bounded(async move {
            let mut client = self.pool.conn().await?;
            let tx = client.transaction().await?;
            if let Some(batch) = batch {
                if !mark_folded(&tx, batch).await? {
                    return Ok(None);
                }
            }
            let n = tx
                .execute(
                    "UPDATE task_results t SET cache_hits = t.cache_hits + h.n, last_hit_at = now()
                     FROM unnest($1::uuid[], $2::int8[]) AS h(id, n) WHERE t.task_id = h.id",
                    &[&ids, &counts],
                )
                .await?;
            tx.commit().await?;
            Ok(Some(n))
        })
        .await
    }
}

impl TaskStore {
    /// Adds counts of the general-purpose cache to `cache_counters`, in one
    /// transaction. With a `batch` (a fold of Redis's counts), a batch already
    /// added is skipped and `false` returned, as for [`TaskStore::add_request_counts`].
    #[instrument(skip_all, fields(n = counts.len(), ?batch), err)]
    pub async fn add_cache_counters(
        &self,
        counts: &[super::CacheCounter],
        batch: Option<Uuid>,
    ) -> Result<bool, StoreError> {
        self.bounded(async move {
            let mut client = self.pool.conn().await?;
            let tx = client.transaction().await?;
            if let Some(batch) = batch {
                if !mark_folded(&tx, batch).await? {
                    return Ok(false);
                }
            }
            if !counts.is_empty() {
                let col = |f: fn(&super::CacheCounter) -> i64| -> Vec<i64> { counts.iter().map(f).collect() };
                let namespaces: Vec<&str> = counts.iter().map(|c| c.namespace.as_str()).collect();
                let tiers: Vec<&str> = counts.iter().map(|c| c.tier.as_str()).collect();
                let (hits, misses, sets) = (col(|c| c.hits), col(|c| c.misses), col(|c| c.sets));
                let (deletes, errors) = (col(|c| c.deletes), col(|c| c.errors));
                // Summed first: one statement may not update the same row twice.
                tx.execute(
                    "INSERT INTO cache_counters AS c (namespace, tier, hits, misses, sets, deletes, errors)
                     SELECT n, t, sum(h)::int8, sum(m)::int8, sum(s)::int8, sum(d)::int8, sum(e)::int8
                     FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])
                          AS x(n, t, h, m, s, d, e)
                     GROUP BY n, t
                     ON CONFLICT (namespace, tier) DO UPDATE SET
                         hits = c.hits + EXCLUDED.hits, misses = c.misses + EXCLUDED.misses,
                         sets = c.sets + EXCLUDED.sets, deletes = c.deletes + EXCLUDED.deletes,
                         errors = c.errors + EXCLUDED.errors, updated_at = now()",
                    &[&namespaces, &tiers, &hits, &misses, &sets, &deletes, &errors],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Every row of `cache_counters`: the fleet's counts folded so far.
    #[instrument(skip_all, err)]
    pub async fn cache_counters(&self) -> Result<Vec<super::CacheCounter>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let rows = client
                .query(
                    "SELECT namespace, tier, hits, misses, sets, deletes, errors
                     FROM cache_counters ORDER BY namespace, tier",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(super::CacheCounter {
                        namespace: r.try_get(0)?,
                        tier: r.try_get(1)?,
                        hits: r.try_get(2)?,
                        misses: r.try_get(3)?,
                        sets: r.try_get(4)?,
                        deletes: r.try_get(5)?,
                        errors: r.try_get(6)?,
                    })
                })
                .collect()
        })
        .await
    }
}

/// Records that the fold of `batch` (request counts or hit counters) was added, in
/// the caller's transaction; `false` if it was added before.
async fn mark_folded(
    tx: &deadpool_postgres::Transaction<'_>,
    batch: Uuid,
) -> Result<bool, StoreError> {
    let fresh = tx
        .execute(
            "INSERT INTO request_count_folds (batch) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&batch],
        )
        .await?;
    Ok(fresh == 1)
}
