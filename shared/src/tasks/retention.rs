//! What keeps the growing tables bounded: `processing_metrics` rolled up into
//! `daily_metrics` once a UTC day is over, then pruned; the daily aggregates and
//! `request_counts` pruned past the longest history kept. All of it runs in the
//! sweep, in bounded batches, each under [`MAINTENANCE_DEADLINE`].

use std::time::Duration;

use chrono::NaiveDate;
use tracing::instrument;

use super::results::{secs, TaskStore};
use super::StoreError;

// `SET LOCAL` lasts the transaction only and pins no RDS Proxy connection.
pub use crate::policy::deadlines::MAINTENANCE as MAINTENANCE_DEADLINE;

/// What one retention pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Retention {
    /// UTC days rolled up into `daily_metrics`.
    pub days_rolled_up: u32,
    pub metric_rows_pruned: u64,
    pub daily_rows_pruned: u64,
    /// Tenants' token buckets in Postgres that were full again (`tenant_quotas`).
    pub quota_rows_pruned: u64,
    /// Whether rows past their age may remain (the batch budget ran out).
    pub more: bool,
}

impl TaskStore {
    /// Runs `call` under [`MAINTENANCE_DEADLINE`] (never past the invocation's).
    async fn maintenance<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        crate::db::bounded(MAINTENANCE_DEADLINE, call)
            .await
            .unwrap_or_else(|allowed| Err(StoreError::Timeout(allowed)))
    }

    /// Rolls up at most `max_days` finished UTC days of `processing_metrics` into
    /// `daily_metrics`, one transaction per day. A day is rolled up an hour after it
    /// ended, so that no transaction that began in it can still commit a row of it.
    /// Returns the days rolled up.
    #[instrument(skip_all, fields(max_days = max_days), err)]
    pub async fn roll_up_metrics(&self, max_days: u32) -> Result<u32, StoreError> {
        let mut rolled = 0;
        while rolled < max_days {
            let done = self
                .maintenance(async {
                    let mut client = self.pool.conn().await?;
                    let tx = client.transaction().await?;
                    set_local_limits(&tx).await?;
                    // One sweep at a time rolls a given day up. The next day to roll is
                    // the first with raw rows after the last rolled (days without any
                    // are skipped at once), if it is over by an hour.
                    let day: Option<NaiveDate> = tx
                        .query_one(
                            "WITH r AS (SELECT rolled_through FROM metrics_rollup FOR UPDATE),
                                  c AS (SELECT ((now() - interval '1 hour') AT TIME ZONE 'UTC')::date - 1 AS last_day),
                                  n AS (SELECT (min(recorded_at) AT TIME ZONE 'UTC')::date AS next_day
                                        FROM processing_metrics
                                        WHERE recorded_at >= (SELECT (rolled_through + 1)::timestamp AT TIME ZONE 'UTC' FROM r)),
                                  skipped AS (
                                        UPDATE metrics_rollup SET rolled_through = c.last_day
                                        FROM c, n
                                        WHERE rolled_through < c.last_day
                                          AND (n.next_day IS NULL OR n.next_day > c.last_day))
                             SELECT CASE WHEN n.next_day <= c.last_day THEN n.next_day END FROM c, n",
                            &[],
                        )
                        .await?
                        .try_get(0)?;
                    let Some(day) = day else {
                        // Keep the skip over days without rows (the `skipped` update).
                        tx.commit().await?;
                        return Ok(false);
                    };
                    tx.execute(
                        "INSERT INTO daily_metrics (tenant, day, metric_name, count, sum, min, max, p50, p95)
                         SELECT tenant, $1::date, metric_name, count(*), sum(value), min(value), max(value),
                                percentile_cont(0.5) WITHIN GROUP (ORDER BY value),
                                percentile_cont(0.95) WITHIN GROUP (ORDER BY value)
                         FROM processing_metrics
                         WHERE recorded_at >= $1::date::timestamp AT TIME ZONE 'UTC'
                           AND recorded_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'
                           AND tenant IS NOT NULL
                         GROUP BY tenant, metric_name
                         ON CONFLICT DO NOTHING",
                        &[&day],
                    )
                    .await?;
                    tx.execute("UPDATE metrics_rollup SET rolled_through = $1", &[&day])
                        .await?;
                    tx.commit().await?;
                    Ok(true)
                })
                .await?;
            if !done {
                break;
            }
            rolled += 1;
        }
        Ok(rolled)
    }

    /// Deletes raw metric rows older than `keep` that are rolled up, `batch` rows per
    /// statement, at most `max_batches` statements. Returns (deleted, more left).
    #[instrument(skip_all, fields(batch = batch), err)]
    pub async fn prune_metrics(
        &self,
        keep: Duration,
        batch: i64,
        max_batches: u32,
    ) -> Result<(u64, bool), StoreError> {
        self.delete_batches(
            "DELETE FROM processing_metrics WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM processing_metrics
                 WHERE recorded_at < least(now() - make_interval(secs => $1),
                                           (SELECT (rolled_through + 1)::timestamp AT TIME ZONE 'UTC'
                                            FROM metrics_rollup))
                 LIMIT $2))",
            secs(keep),
            batch,
            max_batches,
        )
        .await
    }

    /// Deletes `daily_metrics` and `request_counts` rows of days older than `keep`.
    #[instrument(skip_all, fields(batch = batch), err)]
    pub async fn prune_daily(
        &self,
        keep: Duration,
        batch: i64,
        max_batches: u32,
    ) -> Result<(u64, bool), StoreError> {
        // The same rule on both tables: rows of days older than `keep`.
        const PRUNE: [&str; 2] = [
            "DELETE FROM daily_metrics WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM daily_metrics
                 WHERE day < ((now() - make_interval(secs => $1)) AT TIME ZONE 'UTC')::date
                 LIMIT $2))",
            "DELETE FROM request_counts WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM request_counts
                 WHERE day < ((now() - make_interval(secs => $1)) AT TIME ZONE 'UTC')::date
                 LIMIT $2))",
        ];
        let (mut deleted, mut more) = (0, false);
        for sql in PRUNE {
            let (n, left) = self
                .delete_batches(sql, secs(keep), batch, max_batches)
                .await?;
            deleted += n;
            more |= left;
        }
        Ok((deleted, more))
    }

    async fn delete_batches(
        &self,
        sql: &'static str,
        age_secs: f64,
        batch: i64,
        max_batches: u32,
    ) -> Result<(u64, bool), StoreError> {
        let batch = batch.clamp(1, 100_000);
        let mut deleted = 0;
        for _ in 0..max_batches {
            let n = self
                .maintenance(async {
                    let mut client = self.pool.conn().await?;
                    let tx = client.transaction().await?;
                    set_local_limits(&tx).await?;
                    let n = tx.execute(sql, &[&age_secs, &batch]).await?;
                    tx.commit().await?;
                    Ok(n)
                })
                .await?;
            deleted += n;
            if (n as i64) < batch {
                return Ok((deleted, false));
            }
        }
        Ok((deleted, true))
    }
}

/// The server's limits for one maintenance transaction, a little above its client
/// deadline (as the role's are above the calls').
async fn set_local_limits(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    let ms = MAINTENANCE_DEADLINE.as_millis();
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}",
        ms + 1000,
        ms + 500
    ))
    .await?;
    Ok(())
}
