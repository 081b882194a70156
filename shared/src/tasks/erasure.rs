//! Deleting on request rather than by age: a tenant's rows in every table that
//! holds its name, and every finished task of all tenants (the operator's clear).
//! Each statement deletes one bounded batch; the order of the tables and tiers, and
//! when to stop, are `sweep::purge`'s.

use tracing::instrument;
use uuid::Uuid;

use super::results::TaskStore;
use super::StoreError;

/// A deleted task row, with what points at it from the other tiers.
#[derive(Debug, Clone)]
pub struct Erased {
    pub task_id: Uuid,
    pub tenant: String,
    pub input_hash: String,
    pub svg_s3_key: Option<String>,
    pub input_s3_key: Option<String>,
}

impl Erased {
    pub(super) fn from_row(r: &tokio_postgres::Row) -> Result<Self, StoreError> {
        Ok(Erased {
            task_id: r.try_get("task_id")?,
            tenant: r.try_get("tenant")?,
            input_hash: r.try_get("input_hash")?,
            svg_s3_key: r.try_get("svg_s3_key")?,
            input_s3_key: r.try_get("input_s3_key")?,
        })
    }
}

/// The tables besides `task_results` (and the general cache's `cache_store`, which
/// its own tier deletes) whose rows carry a tenant: its history and its buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantTable {
    RequestCounts,
    ProcessingMetrics,
    DailyMetrics,
    TenantQuotas,
}

impl TenantTable {
    pub const ALL: [TenantTable; 4] = [
        TenantTable::RequestCounts,
        TenantTable::ProcessingMetrics,
        TenantTable::DailyMetrics,
        TenantTable::TenantQuotas,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TenantTable::RequestCounts => "request_counts",
            TenantTable::ProcessingMetrics => "processing_metrics",
            TenantTable::DailyMetrics => "daily_metrics",
            TenantTable::TenantQuotas => "tenant_quotas",
        }
    }

    /// One batch of the tenant's rows; each reads an index led by `tenant`. The
    /// table's name is the enum's own, never a caller's.
    fn delete_sql(self) -> String {
        let t = self.name();
        format!(
            "DELETE FROM {t} WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM {t} WHERE tenant = $1 LIMIT $2))"
        )
    }
}

const RETURNING: &str = "RETURNING t.task_id, t.tenant, t.input_hash, t.svg_s3_key, t.input_s3_key";

impl TaskStore {
    /// Deletes up to `batch` task rows of `tenant`, open ones included (their
    /// messages find no row and are dropped by the worker; see `worker`).
    #[instrument(skip_all, fields(%tenant, batch = batch), err)]
    pub async fn erase_tenant_tasks(
        &self,
        tenant: &str,
        batch: i64,
    ) -> Result<Vec<Erased>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let sql = format!(
                "DELETE FROM task_results t WHERE t.task_id IN (
                     SELECT task_id FROM task_results WHERE tenant = $1 LIMIT $2)
                 {RETURNING}"
            );
            let rows = client.query(&sql, &[&tenant, &batch]).await?;
            rows.iter().map(Erased::from_row).collect()
        })
        .await
    }

    /// Deletes up to `batch` finished task rows of any tenant. Open tasks are left
    /// alone: their messages are in flight, and they finish (or fail) normally.
    #[instrument(skip_all, fields(batch = batch), err)]
    pub async fn erase_finished_tasks(&self, batch: i64) -> Result<Vec<Erased>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let sql = format!(
                "WITH doomed AS (
                     SELECT task_id FROM task_results WHERE status IN ('SUCCESS', 'FAILURE')
                     LIMIT $1 FOR UPDATE SKIP LOCKED)
                 DELETE FROM task_results t USING doomed d WHERE t.task_id = d.task_id
                 {RETURNING}"
            );
            let rows = client.query(&sql, &[&batch]).await?;
            rows.iter().map(Erased::from_row).collect()
        })
        .await
    }

    /// Open tasks of every tenant (what a clear leaves running).
    #[instrument(skip_all, err)]
    pub async fn open_task_count(&self) -> Result<i64, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let row = client
                .query_one(
                    "SELECT count(*) FROM task_results WHERE status IN ('PENDING', 'PROCESSING')",
                    &[],
                )
                .await?;
            Ok(row.try_get(0)?)
        })
        .await
    }

    /// Deletes up to `batch` rows of `tenant` from `table`; returns how many.
    #[instrument(skip_all, fields(%tenant, table = table.name(), batch = batch), err)]
    pub async fn erase_tenant_rows(
        &self,
        table: TenantTable,
        tenant: &str,
        batch: i64,
    ) -> Result<u64, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            Ok(client
                .execute(&table.delete_sql(), &[&tenant, &batch])
                .await?)
        })
        .await
    }
}
