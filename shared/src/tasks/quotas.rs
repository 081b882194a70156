//! The `tenant_quotas` table: tenants' token buckets when Redis is not there to
//! hold them (see `quota`). One row per (tenant, bucket) with its `tat`, the instant
//! the bucket is full again; a row whose `tat` has passed says nothing more than no
//! row, so the sweep deletes those (`prune_quotas`) and the table holds only
//! tenants active in the last minutes.

use std::time::Duration;

use tracing::instrument;

use super::results::TaskStore;
use super::StoreError;
use crate::policy::tenants::Rate;

impl TaskStore {
    /// Takes a token from `tenant`'s `bucket`: `None`, or how long to wait. The
    /// arithmetic of `quota::gcra`, in one statement on Postgres's clock.
    #[instrument(skip_all, fields(tenant = %tenant, bucket = %bucket), err)]
    pub async fn take_token(
        &self,
        tenant: &str,
        bucket: &str,
        rate: &Rate,
    ) -> Result<Option<Duration>, StoreError> {
        let interval = rate.interval().as_secs_f64();
        let tolerance = rate.tolerance().as_secs_f64();
        self.bounded(async move {
            let client = self.pool().conn().await?;
            let taken = client
                .query_opt(
                    "INSERT INTO tenant_quotas AS q (tenant, bucket, tat)
                     VALUES ($1, $2, now() + make_interval(secs => $3))
                     ON CONFLICT (tenant, bucket) DO UPDATE
                        SET tat = greatest(q.tat, now()) + make_interval(secs => $3)
                      WHERE greatest(q.tat, now()) + make_interval(secs => $3)
                            <= now() + make_interval(secs => $4)
                     RETURNING 1",
                    &[&tenant, &bucket, &interval, &tolerance],
                )
                .await?;
            if taken.is_some() {
                return Ok(None);
            }
            let wait: f64 = client
                .query_one(
                    "SELECT greatest(extract(epoch FROM greatest(tat, now()) - now())::float8
                                     + $3 - $4, 0)
                       FROM tenant_quotas WHERE tenant = $1 AND bucket = $2",
                    &[&tenant, &bucket, &interval, &tolerance],
                )
                .await?
                .get(0);
            Ok(Some(Duration::from_secs_f64(wait.max(0.001))))
        })
        .await
    }

    /// Deletes up to `batch` buckets that are full again.
    #[instrument(skip_all, fields(batch = batch), err)]
    pub async fn prune_quotas(&self, batch: i64) -> Result<u64, StoreError> {
        self.bounded(async move {
            let client = self.pool().conn().await?;
            Ok(client
                .execute(
                    "DELETE FROM tenant_quotas WHERE ctid = ANY (ARRAY(
                        SELECT ctid FROM tenant_quotas WHERE tat < now() LIMIT $1))",
                    &[&batch],
                )
                .await?)
        })
        .await
    }
}
