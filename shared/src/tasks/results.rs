//! The `task_results` table. All of its SQL lives here.

use std::time::Duration;

use crate::db::Db;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tracing::instrument;
use uuid::Uuid;

use super::metrics::{self, Metric};
use super::stages::{Stage, Stages};
use super::{StoreError, TaskError, TaskRow, TaskStatus};

const COLUMNS: &str = "task_id, tenant, input_hash, status, result, svg_s3_key, svg_bytes, input_s3_key, error,
    processing_time_ms, cache_hits, attempts, submitted_at, enqueued_at, started_at, completed_at, ttl_expires_at, stages";

/// The `processing_metrics` name written with every success (its processing time)
/// and every failure; the daily view counts renders and failures by them.
pub const SUCCESS_METRIC: &str = "processing_ms";
pub const FAILURE_METRIC: &str = "failure_ms";

/// The statements behind the statistics routes and `Retry-After`, by name: their
/// plans are checked (no sequential scan of a large table) by `tests/plans.rs` and
/// timed by `benches/statistics.rs`.
const MEDIAN_COMPLETION: &str = "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) FROM (
                         SELECT extract(epoch FROM completed_at - submitted_at)::float8 AS secs
                         FROM task_results WHERE status = 'SUCCESS' AND completed_at IS NOT NULL
                         ORDER BY completed_at DESC LIMIT 200) recent";
const STATS_BY_STATUS: &str = "SELECT status, count(*), COALESCE(sum(cache_hits), 0)::int8, COALESCE(sum(svg_bytes), 0)::int8,
                            count(*) FILTER (WHERE status IN ('SUCCESS', 'FAILURE') AND ttl_expires_at <= now())
                     FROM task_results WHERE tenant = $1 GROUP BY status";
const STATS_TIMES: &str = "SELECT avg(processing_time_ms)::float8, min(processing_time_ms), max(processing_time_ms)
                     FROM task_results
                     WHERE tenant = $1 AND status = 'SUCCESS' AND completed_at > now() - make_interval(days => $2)";
const DAILY: &str = "SELECT date, requests, hits_l0, hits_redis, hits_postgres, hits, hit_ratio_percent,
                            renders, failures, processing_ms_avg, processing_ms_p50, processing_ms_p95
                     FROM cache_performance
                     WHERE tenant = $1 AND date > (now() AT TIME ZONE 'UTC')::date - $2::int
                     ORDER BY date DESC";
const TOP: &str = "SELECT left(input_hash, 12), cache_hits,
                            COALESCE(jsonb_array_length(result->'regions'), 0)::int8, last_hit_at
                     FROM task_results
                     WHERE tenant = $1 AND status = 'SUCCESS' AND cache_hits > 0 AND ttl_expires_at > now()
                     ORDER BY cache_hits DESC, last_hit_at DESC NULLS LAST, input_hash
                     LIMIT $2";
const STAGE_TIMINGS: &str = "SELECT metric_name, sum(n)::int8, (sum(total) / sum(n))::float8, min(lo), max(hi), max(p95)
                     FROM (
                         SELECT metric_name, count AS n, sum AS total, min AS lo, max AS hi, p95
                         FROM daily_metrics
                         WHERE tenant = $1 AND metric_name = ANY($3)
                           AND day >= (now() AT TIME ZONE 'UTC')::date - $2::int + 1
                           AND day <= (SELECT rolled_through FROM metrics_rollup)
                         UNION ALL
                         SELECT metric_name, count(*), sum(value), min(value), max(value),
                                percentile_cont(0.95) WITHIN GROUP (ORDER BY value)
                         FROM processing_metrics
                         WHERE tenant = $1 AND metric_name = ANY($3)
                           AND recorded_at >= (SELECT greatest((now() AT TIME ZONE 'UTC')::date - $2::int + 1,
                                                               rolled_through + 1)::timestamp AT TIME ZONE 'UTC'
                                               FROM metrics_rollup)
                         GROUP BY metric_name
                     ) s
                     GROUP BY metric_name";

/// A tenant's latest tasks (`$1` tenant, `$2` limit).
fn recent_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM task_results WHERE tenant = $1 ORDER BY submitted_at DESC LIMIT $2"
    )
}

/// Every statement behind `/cache/stats`, `/daily`, `/top`, `/recent` and the
/// `Retry-After` advice, with its name. Parameters: `$1` the tenant (text), `$2` a
/// window in days (int4) or a row limit (int8), `$3` the stage metrics (text[]).
pub fn statistics_statements() -> Vec<(&'static str, String)> {
    vec![
        ("stats_by_status", STATS_BY_STATUS.to_owned()),
        ("stats_times", STATS_TIMES.to_owned()),
        ("stage_timings", STAGE_TIMINGS.to_owned()),
        ("daily", DAILY.to_owned()),
        ("top", TOP.to_owned()),
        ("recent", recent_sql()),
        ("median_completion", MEDIAN_COMPLETION.to_owned()),
    ]
}

#[derive(Clone)]
pub struct TaskStore {
    pub(super) pool: Db,
    /// Deadline of one call (pool wait, connect and queries together), shortened by
    /// the invocation's own deadline (see [`crate::deadline`]).
    timeout: Duration,
}

/// A task about to be recorded: its id and, when known, its queue message.
#[derive(Debug, Clone)]
pub struct Pending {
    pub task_id: Uuid,
    pub outbox: Option<String>,
    pub inputs_sha256: Option<String>,
}

/// What inserting a new task found.
#[derive(Debug)]
pub enum Inserted {
    /// This call created the row: the caller must enqueue it.
    Created(TaskRow),
    /// A row for the same inputs exists (a concurrent or earlier submit).
    Existing(TaskRow),
}

/// What a worker's claim on a task found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    Claimed {
        attempts: i32,
        submitted_at: DateTime<Utc>,
        /// The row's own tenant and inputs hash: the message is checked against them.
        tenant: String,
        inputs_sha256: Option<String>,
    },
    /// Already `SUCCESS` or `FAILURE`: a duplicate delivery.
    Finished(TaskStatus),
    /// Another worker holds a fresh claim.
    Busy,
    /// No such task (swept, or never recorded).
    Missing,
}

/// A row the sweep deleted, with what must be deleted along with it.
#[derive(Debug)]
pub struct Swept {
    pub task_id: Uuid,
    pub tenant: String,
    pub input_hash: String,
    pub svg_s3_key: Option<String>,
    pub input_s3_key: Option<String>,
    pub reason: SweepReason,
}

/// Why the sweep deleted a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepReason {
    /// Past its TTL.
    Expired,
    /// A failure older than the failure age.
    Failed,
    /// Never hit, older than the unused age.
    Unused,
}

impl SweepReason {
    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "expired" => Ok(SweepReason::Expired),
            "failed" => Ok(SweepReason::Failed),
            "unused" => Ok(SweepReason::Unused),
            other => Err(StoreError::Corrupt(format!("sweep reason {other:?}"))),
        }
    }
}

/// A tenant's entries and processing times, from Postgres.
#[derive(Debug, Default, serde::Serialize)]
pub struct TenantStats {
    pub entries: i64,
    pub by_status: std::collections::BTreeMap<String, i64>,
    /// Hits already folded in from Redis by the sweep.
    pub folded_hits: i64,
    pub storage_bytes: i64,
    /// Finished entries past their TTL, not yet deleted by the sweep (never served).
    pub expired_entries: i64,
    pub processing_ms_avg: Option<f64>,
    pub processing_ms_min: Option<i32>,
    pub processing_ms_max: Option<i32>,
}

pub(super) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn row_to_task(row: &Row) -> Result<TaskRow, StoreError> {
    let status: String = row.try_get("status")?;
    let error: Option<serde_json::Value> = row.try_get("error")?;
    let stages: Option<serde_json::Value> = row.try_get("stages")?;
    Ok(TaskRow {
        task_id: row.try_get("task_id")?,
        tenant: row.try_get("tenant")?,
        input_hash: row.try_get("input_hash")?,
        status: TaskStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
        result: row
            .try_get::<_, Option<serde_json::Value>>("result")?
            .map(std::sync::Arc::new),
        svg_s3_key: row.try_get("svg_s3_key")?,
        svg_bytes: row.try_get("svg_bytes")?,
        input_s3_key: row.try_get("input_s3_key")?,
        error: error
            .map(serde_json::from_value::<TaskError>)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("error column: {e}")))?,
        processing_time_ms: row.try_get("processing_time_ms")?,
        cache_hits: row.try_get("cache_hits")?,
        attempts: row.try_get("attempts")?,
        submitted_at: row.try_get("submitted_at")?,
        enqueued_at: row.try_get("enqueued_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        ttl_expires_at: row.try_get("ttl_expires_at")?,
        stages: stages
            .map(serde_json::from_value::<Stages>)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("stages column: {e}")))?,
    })
}

impl TaskStore {
    pub fn new(pool: Db, timeout: Duration) -> Self {
        TaskStore { pool, timeout }
    }

    /// Runs one store call within its deadline. A call cut off closes its
    /// connection and cancels its statement ([`crate::db`]): a transaction cut off
    /// midway is rolled back by Postgres, so nothing is half-written, and no
    /// connection still running a statement goes back to the pool.
    pub(super) async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        crate::db::bounded(self.timeout, call)
            .await
            .unwrap_or_else(|allowed| Err(StoreError::Timeout(allowed)))
    }

    pub fn pool(&self) -> &Db {
        &self.pool
    }

    #[instrument(skip(self), err)]
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async move {
            self.pool.conn().await?.execute("SELECT 1", &[]).await?;
            Ok(())
        })
        .await
    }

    #[instrument(skip(self), err)]
    pub async fn find_by_hash(
        &self,
        tenant: &str,
        input_hash: &str,
    ) -> Result<Option<TaskRow>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let sql =
                format!("SELECT {COLUMNS} FROM task_results WHERE tenant = $1 AND input_hash = $2");
            let stmt = client.prepare_cached(&sql).await?;
            client
                .query_opt(&stmt, &[&tenant, &input_hash])
                .await?
                .as_ref()
                .map(row_to_task)
                .transpose()
        })
        .await
    }

    /// A task of `tenant`; another tenant's task is indistinguishable from none.
    #[instrument(skip(self), err)]
    pub async fn get(&self, tenant: &str, task_id: Uuid) -> Result<Option<TaskRow>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let sql =
                format!("SELECT {COLUMNS} FROM task_results WHERE task_id = $1 AND tenant = $2");
            let stmt = client.prepare_cached(&sql).await?;
            client
                .query_opt(&stmt, &[&task_id, &tenant])
                .await?
                .as_ref()
                .map(row_to_task)
                .transpose()
        })
        .await
    }

    /// Records a new `PENDING` task unless one exists for the same inputs. Of any
    /// number of concurrent identical submits, exactly one gets `Created`.
    #[instrument(skip(self), err)]
    pub async fn insert_pending(
        &self,
        tenant: &str,
        input_hash: &str,
        renderer_version: &str,
        ttl: Duration,
    ) -> Result<Inserted, StoreError> {
        let pending = Pending {
            task_id: Uuid::new_v4(),
            outbox: None,
            inputs_sha256: None,
        };
        self.insert_with_outbox(tenant, input_hash, renderer_version, ttl, &pending)
            .await
    }

    /// Records a new `PENDING` task together with its queue message (the outbox), in
    /// one statement: if the sender dies before SQS confirms, the relay sends it.
    #[instrument(skip(self, pending), fields(task_id = %pending.task_id), err)]
    pub async fn insert_with_outbox(
        &self,
        tenant: &str,
        input_hash: &str,
        renderer_version: &str,
        ttl: Duration,
        pending: &Pending,
    ) -> Result<Inserted, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let sql = format!(
                "INSERT INTO task_results (task_id, tenant, input_hash, status, renderer_version, ttl_expires_at,
                                           outbox, inputs_sha256)
                 VALUES ($1, $2, $3, 'PENDING', $4, now() + make_interval(secs => $5), $6, $7)
                 ON CONFLICT (tenant, input_hash) DO NOTHING
                 RETURNING {COLUMNS}"
            );
            let stmt = client.prepare_cached(&sql).await?;
            if let Some(row) = client
                .query_opt(
                    &stmt,
                    &[
                        &pending.task_id,
                        &tenant,
                        &input_hash,
                        &renderer_version,
                        &secs(ttl),
                        &pending.outbox,
                        &pending.inputs_sha256,
                    ],
                )
                .await?
            {
                return Ok(Inserted::Created(row_to_task(&row)?));
            }
            drop(client);
            // The conflicting row can only vanish if the sweep deleted it in between;
            // then the caller's retry inserts afresh.
            match self.find_by_hash(tenant, input_hash).await? {
                Some(row) => Ok(Inserted::Existing(row)),
                None => Err(StoreError::Corrupt(
                    "task vanished during insert; retry".into(),
                )),
            }
        })
        .await
    }

    #[instrument(skip(self), err)]
    pub async fn mark_enqueued(
        &self,
        task_id: Uuid,
        input_s3_key: Option<&str>,
    ) -> Result<(), StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            client
                .execute(
                    "UPDATE task_results SET enqueued_at = now(), outbox = NULL,
                            input_s3_key = COALESCE($2, input_s3_key)
                     WHERE task_id = $1",
                    &[&task_id, &input_s3_key],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// Moves a retryable failure back to `PENDING` for a new run. Returns whether
    /// this call did it (a concurrent submit may have).
    #[instrument(skip(self), err)]
    pub async fn reopen(
        &self,
        task_id: Uuid,
        ttl: Duration,
        outbox: &str,
        inputs_sha256: &str,
    ) -> Result<bool, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            // A retryable failure, or an entry past its TTL that the sweep has not
            // deleted yet: both are run again rather than served.
            let n = client
                .execute(
                    "UPDATE task_results SET status = 'PENDING', error = NULL, result = NULL, attempts = 0,
                            submitted_at = now(), enqueued_at = NULL, started_at = NULL, completed_at = NULL,
                            ttl_expires_at = now() + make_interval(secs => $2), outbox = $3, inputs_sha256 = $4
                     WHERE task_id = $1 AND (
                        (status = 'FAILURE' AND (error->>'retryable')::boolean)
                        OR (status IN ('SUCCESS', 'FAILURE') AND ttl_expires_at <= now()))",
                    &[&task_id, &secs(ttl), &outbox, &inputs_sha256],
                )
                .await?;
            Ok(n == 1)
        })
        .await
    }

    /// The median time from submit to success of the last 200 tasks that rendered.
    #[instrument(skip(self), err)]
    pub async fn median_completion(&self) -> Result<Option<Duration>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let row = client.query_one(MEDIAN_COMPLETION, &[]).await?;
            let secs: Option<f64> = row.try_get(0)?;
            Ok(secs
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64))
        })
        .await
    }

    /// Finished entries held (the cache's size in rows).
    #[instrument(skip(self), err)]
    pub async fn entries(&self) -> Result<i64, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let row = client
                .query_one(
                    "SELECT count(*) FROM task_results WHERE status IN ('SUCCESS', 'FAILURE')",
                    &[],
                )
                .await?;
            Ok(row.try_get(0)?)
        })
        .await
    }

    /// Tasks whose message was recorded but never confirmed sent, oldest first.
    #[instrument(skip(self), err)]
    pub async fn unsent(
        &self,
        older_than: Duration,
        batch: i64,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let rows = client
                .query(
                    "SELECT task_id, outbox FROM task_results
                     WHERE enqueued_at IS NULL AND outbox IS NOT NULL AND status = 'PENDING'
                       AND submitted_at < now() - make_interval(secs => $1)
                     ORDER BY submitted_at LIMIT $2",
                    &[&secs(older_than), &batch],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
        .await
    }

    /// Takes a task for rendering: `PENDING`, or `PROCESSING` under a claim older
    /// than `stale` (its worker crashed).
    #[instrument(skip(self), err)]
    pub async fn claim(&self, task_id: Uuid, stale: Duration) -> Result<Claim, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let claimed = client
                .query_opt(
                    "UPDATE task_results SET status = 'PROCESSING', attempts = attempts + 1, started_at = now()
                     WHERE task_id = $1 AND (status = 'PENDING'
                        OR (status = 'PROCESSING' AND started_at < now() - make_interval(secs => $2)))
                     RETURNING attempts, submitted_at, tenant, inputs_sha256",
                    &[&task_id, &secs(stale)],
                )
                .await?;
            if let Some(row) = claimed {
                return Ok(Claim::Claimed {
                    attempts: row.try_get(0)?,
                    submitted_at: row.try_get(1)?,
                    tenant: row.try_get(2)?,
                    inputs_sha256: row.try_get(3)?,
                });
            }
            let status = client
                .query_opt(
                    "SELECT status FROM task_results WHERE task_id = $1",
                    &[&task_id],
                )
                .await?;
            Ok(match status {
                None => Claim::Missing,
                Some(row) => {
                    let s: String = row.try_get(0)?;
                    match TaskStatus::parse(&s) {
                        Some(st) if st.is_finished() => Claim::Finished(st),
                        Some(_) => Claim::Busy,
                        None => return Err(StoreError::Corrupt(format!("status {s:?}"))),
                    }
                }
            })
        })
        .await
    }

    /// Gives a claim back after a transient error, so the retry can take it at once.
    #[instrument(skip(self), err)]
    pub async fn release(&self, task_id: Uuid) -> Result<(), StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            client
                .execute("UPDATE task_results SET status = 'PENDING' WHERE task_id = $1 AND status = 'PROCESSING'", &[&task_id])
                .await?;
            Ok(())
        })
        .await
    }

    /// Records a success, its stage timings and its metrics (the stages' included)
    /// in one transaction. Returns the finished row, or `None` if the task was no
    /// longer claimed (finished or swept).
    #[allow(clippy::too_many_arguments)]
    #[instrument(skip(self, result, stages, metrics), err)]
    pub async fn complete_success(
        &self,
        task_id: Uuid,
        result: &serde_json::Value,
        svg_s3_key: &str,
        svg_bytes: i64,
        processing_time_ms: i32,
        ttl: Duration,
        stages: &Stages,
        metrics: &[Metric<'_>],
    ) -> Result<Option<TaskRow>, StoreError> {
        let stages_json =
            serde_json::to_value(stages).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut all: Vec<Metric<'_>> = metrics.to_vec();
        all.extend(stages.metrics());
        self.bounded(async move {
            let mut client = self.pool.conn().await?;
            let tx = client.transaction().await?;
            let sql = format!(
                "UPDATE task_results SET status = 'SUCCESS', result = $2, svg_s3_key = $3, svg_bytes = $4,
                        processing_time_ms = $5, error = NULL, completed_at = now(),
                        ttl_expires_at = now() + make_interval(secs => $6), stages = $7
                 WHERE task_id = $1 AND status = 'PROCESSING'
                 RETURNING {COLUMNS}"
            );
            let row = tx
                .query_opt(
                    &sql,
                    &[
                        &task_id,
                        result,
                        &svg_s3_key,
                        &svg_bytes,
                        &processing_time_ms,
                        &secs(ttl),
                        &stages_json,
                    ],
                )
                .await?;
            let Some(row) = row else { return Ok(None) };
            let task = row_to_task(&row)?;
            metrics::insert(&tx, "process", task_id, &task.tenant, &all).await?;
            tx.commit().await?;
            Ok(Some(task))
        })
        .await
    }

    /// Adds the commit stage, measured after [`TaskStore::complete_success`]
    /// committed, to the task's stages and metrics (one statement).
    #[instrument(skip(self), err)]
    pub async fn record_commit(&self, task_id: Uuid, commit_ms: f64) -> Result<(), StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            client
                .execute(
                    "WITH done AS (
                         UPDATE task_results
                         SET stages = COALESCE(stages, '{}'::jsonb) || jsonb_build_object('commit', $2::float8)
                         WHERE task_id = $1 RETURNING tenant)
                     INSERT INTO processing_metrics (metric_name, value, component, task_id, tenant)
                     SELECT $3, $2, 'process', $1, tenant FROM done",
                    &[&task_id, &commit_ms, &Stage::Commit.metric()],
                )
                .await?;
            Ok(())
        })
        .await
    }

    #[instrument(skip(self), err)]
    pub async fn complete_failure(
        &self,
        task_id: Uuid,
        error: &TaskError,
        processing_time_ms: i32,
        ttl: Duration,
    ) -> Result<Option<TaskRow>, StoreError> {
        self.bounded(async move {
            let mut client = self.pool.conn().await?;
            let tx = client.transaction().await?;
            let error = serde_json::to_value(error).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let sql = format!(
                "UPDATE task_results SET status = 'FAILURE', error = $2, processing_time_ms = $3, completed_at = now(),
                        ttl_expires_at = now() + make_interval(secs => $4)
                 WHERE task_id = $1 AND status IN ('PENDING', 'PROCESSING')
                 RETURNING {COLUMNS}"
            );
            let Some(row) = tx
                .query_opt(&sql, &[&task_id, &error, &processing_time_ms, &secs(ttl)])
                .await?
            else {
                return Ok(None);
            };
            let task = row_to_task(&row)?;
            // The failure outlives the row (the sweep deletes old failures): the
            // daily view counts failures from this metric.
            let failed = [Metric {
                name: FAILURE_METRIC,
                value: f64::from(processing_time_ms),
            }];
            metrics::insert(&tx, "process", task_id, &task.tenant, &failed).await?;
            tx.commit().await?;
            Ok(Some(task))
        })
        .await
    }

    /// Statistics of `tenant`'s entries; processing times over tasks finished in the
    /// last `days` days.
    #[instrument(skip(self), err)]
    pub async fn stats(&self, tenant: &str, days: u32) -> Result<TenantStats, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let mut stats = TenantStats::default();
            for row in client.query(STATS_BY_STATUS, &[&tenant]).await? {
                let n: i64 = row.try_get(1)?;
                stats.entries += n;
                stats.by_status.insert(row.try_get(0)?, n);
                stats.folded_hits += row.try_get::<_, i64>(2)?;
                stats.storage_bytes += row.try_get::<_, i64>(3)?;
                stats.expired_entries += row.try_get::<_, i64>(4)?;
            }
            let times = client
                .query_one(STATS_TIMES, &[&tenant, &(days as i32)])
                .await?;
            stats.processing_ms_avg = times.try_get(0)?;
            stats.processing_ms_min = times.try_get(1)?;
            stats.processing_ms_max = times.try_get(2)?;
            Ok(stats)
        })
        .await
    }

    /// The latest `limit` tasks of `tenant`, newest first.
    #[instrument(skip(self), err)]
    pub async fn recent(&self, tenant: &str, limit: i64) -> Result<Vec<TaskRow>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let sql = recent_sql();
            client
                .query(&sql, &[&tenant, &limit])
                .await?
                .iter()
                .map(row_to_task)
                .collect()
        })
        .await
    }

    /// Adds hit counts gathered in Redis (write-behind) to the rows, in one
    /// transaction. With a `batch` (a fold of Redis's counters), a batch already
    /// added is skipped and `None` returned: folding the same batch twice never
    /// counts it twice. Otherwise, the rows updated.
    #[instrument(skip(self, hits), fields(n = hits.len()), err)]
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

    /// Deletes one batch of entries that are past their TTL, failed more than
    /// `failure_age` ago, or were never hit within `unused_age`. Open tasks are left
    /// to [`TaskStore::fail_stuck`].
    #[instrument(skip(self), err)]
    pub async fn delete_sweepable(
        &self,
        failure_age: Duration,
        unused_age: Option<Duration>,
        batch: i64,
    ) -> Result<Vec<Swept>, StoreError> {
        let unused_secs = unused_age.map(secs);
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let rows = client
                .query(
                    "WITH doomed AS (
                         SELECT task_id,
                                CASE WHEN ttl_expires_at <= now() THEN 'expired'
                                     WHEN status = 'FAILURE' THEN 'failed'
                                     ELSE 'unused' END AS reason
                         FROM task_results
                         WHERE status IN ('SUCCESS', 'FAILURE')
                           AND (ttl_expires_at <= now()
                                OR (status = 'FAILURE' AND completed_at < now() - make_interval(secs => $1))
                                OR ($2::float8 IS NOT NULL AND cache_hits = 0
                                    AND submitted_at < now() - make_interval(secs => $2)))
                         LIMIT $3
                         FOR UPDATE SKIP LOCKED)
                     DELETE FROM task_results t USING doomed d WHERE t.task_id = d.task_id
                     RETURNING t.task_id, t.tenant, t.input_hash, t.svg_s3_key, t.input_s3_key, d.reason",
                    &[&secs(failure_age), &unused_secs, &batch],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Swept {
                        task_id: r.try_get(0)?,
                        tenant: r.try_get(1)?,
                        input_hash: r.try_get(2)?,
                        svg_s3_key: r.try_get(3)?,
                        input_s3_key: r.try_get(4)?,
                        reason: SweepReason::parse(r.try_get(5)?)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Fails (retryably) tasks that stayed open longer than `stuck_after`: their
    /// message was lost or kept failing. The next identical submit runs them again.
    /// Each failure stays at least `visible` before the sweep may delete it as
    /// expired, so that its client reads `task_stuck`, not 404.
    #[instrument(skip(self), err)]
    pub async fn fail_stuck(
        &self,
        stuck_after: Duration,
        visible: Duration,
        batch: i64,
    ) -> Result<u64, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let error = serde_json::to_value(TaskError {
                code: "task_stuck".into(),
                message: "the task did not finish in time; submit it again to retry".into(),
                field: None,
                retryable: true,
            })
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            // Each failure also leaves its metric (time since submit), as the worker's do.
            Ok(client
                .execute(
                    "WITH failed AS (
                         UPDATE task_results SET status = 'FAILURE', error = $1, completed_at = now(),
                                ttl_expires_at = greatest(ttl_expires_at, now() + make_interval(secs => $5))
                         WHERE task_id IN (
                             SELECT task_id FROM task_results
                             WHERE status IN ('PENDING', 'PROCESSING')
                               AND COALESCE(started_at, submitted_at) < now() - make_interval(secs => $2)
                             LIMIT $3 FOR UPDATE SKIP LOCKED)
                         RETURNING task_id, tenant, submitted_at)
                     INSERT INTO processing_metrics (metric_name, value, component, task_id, tenant)
                     SELECT $4, extract(epoch FROM now() - submitted_at) * 1000, 'cleanup', task_id, tenant
                     FROM failed",
                    &[&error, &secs(stuck_after), &batch, &FAILURE_METRIC, &secs(visible)],
                )
                .await?)
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

/// One day of a tenant's `cache_performance` view.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DailyPerformance {
    pub date: chrono::NaiveDate,
    pub requests: i64,
    pub hits_l0: i64,
    pub hits_redis: i64,
    pub hits_postgres: i64,
    pub hits: i64,
    pub hit_ratio_percent: f64,
    pub renders: i64,
    pub failures: i64,
    pub processing_ms_avg: Option<f64>,
    pub processing_ms_p50: Option<f64>,
    pub processing_ms_p95: Option<f64>,
}

/// One of a tenant's most-hit entries.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TopEntry {
    /// The first 12 characters of the entry's input hash.
    pub key_prefix: String,
    pub hits: i64,
    pub regions: i64,
    pub last_hit_at: Option<DateTime<Utc>>,
}

/// A stage's timings over a window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StageTimings {
    pub count: i64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub p95: f64,
}

impl TaskStore {
    /// Adds request counts to `request_counts`, in one transaction. With a `batch`
    /// (a fold of Redis's counts), a batch already added is skipped and `false`
    /// returned: folding the same batch twice never counts it twice.
    #[instrument(skip(self, counts), fields(n = counts.len()), err)]
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
    #[instrument(skip(self), err)]
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

    /// `tenant`'s rows of the `cache_performance` view for the `days` UTC days up to
    /// today, newest first (days without any activity have no row).
    #[instrument(skip(self), err)]
    pub async fn daily(
        &self,
        tenant: &str,
        days: u32,
    ) -> Result<Vec<DailyPerformance>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let rows = client.query(DAILY, &[&tenant, &(days as i32)]).await?;
            rows.iter()
                .map(|r| {
                    Ok(DailyPerformance {
                        date: r.try_get(0)?,
                        requests: r.try_get(1)?,
                        hits_l0: r.try_get(2)?,
                        hits_redis: r.try_get(3)?,
                        hits_postgres: r.try_get(4)?,
                        hits: r.try_get(5)?,
                        hit_ratio_percent: r.try_get(6)?,
                        renders: r.try_get(7)?,
                        failures: r.try_get(8)?,
                        processing_ms_avg: r.try_get(9)?,
                        processing_ms_p50: r.try_get(10)?,
                        processing_ms_p95: r.try_get(11)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// `tenant`'s `limit` most-hit live entries (hits folded so far), most hits first.
    #[instrument(skip(self), err)]
    pub async fn top(&self, tenant: &str, limit: i64) -> Result<Vec<TopEntry>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let rows = client.query(TOP, &[&tenant, &limit]).await?;
            rows.iter()
                .map(|r| {
                    Ok(TopEntry {
                        key_prefix: r.try_get(0)?,
                        hits: r.try_get(1)?,
                        regions: r.try_get(2)?,
                        last_hit_at: r.try_get(3)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Count, average, min, max and p95 of each stage over `tenant`'s tasks recorded
    /// in the `days` UTC days up to today, keyed by stage name; stages never measured
    /// are absent. Days already rolled up are read from their daily aggregates
    /// (count, average, min and max stay exact; a window that spans several days
    /// reports the largest p95 among them), the rest from the raw rows.
    #[instrument(skip(self), err)]
    pub async fn stage_timings(
        &self,
        tenant: &str,
        days: u32,
    ) -> Result<std::collections::BTreeMap<&'static str, StageTimings>, StoreError> {
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.metric()).collect();
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let rows = client
                .query(STAGE_TIMINGS, &[&tenant, &(days as i32), &names])
                .await?;
            let mut out = std::collections::BTreeMap::new();
            for r in &rows {
                let name: String = r.try_get(0)?;
                let Some(stage) = Stage::from_metric(&name) else {
                    continue;
                };
                out.insert(
                    stage.name(),
                    StageTimings {
                        count: r.try_get(1)?,
                        avg: r.try_get(2)?,
                        min: r.try_get(3)?,
                        max: r.try_get(4)?,
                        p95: r.try_get(5)?,
                    },
                );
            }
            Ok(out)
        })
        .await
    }
}
