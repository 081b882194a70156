//! The `task_results` table: a task's row through its lifecycle, from the submit
//! that inserts it `PENDING` (with its outbox message), through the worker's claim,
//! to `SUCCESS` or `FAILURE`, and the sweep that fails it when stuck or deletes it.
//! The `processing_metrics` rows that must commit with a state change are written
//! in the same statement or transaction, so they live here too.
//!
//! Kept apart from the row's other readers and writers: the hit counts folded from
//! Redis (`counts`) and the statistics reads (`statistics`) change on their own
//! schedule, and none of them moves a task between states.

use std::time::Duration;

use crate::db::Db;
use crate::policy::lifetime::expired_sql;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tracing::instrument;
use uuid::Uuid;

use super::metrics::{self, Metric, FAILURE_METRIC};
use super::stages::{Stage, Stages};
use super::{StoreError, TaskError, TaskRow, TaskStatus};

pub(super) const COLUMNS: &str = "task_id, tenant, input_hash, status, result, svg_s3_key, svg_bytes, input_s3_key, error,
    processing_time_ms, cache_hits, attempts, submitted_at, enqueued_at, started_at, completed_at, ttl_expires_at, stages";

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
    pub task: super::erasure::Erased,
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

pub(super) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub(super) fn row_to_task(row: &Row) -> Result<TaskRow, StoreError> {
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

    #[instrument(skip_all, err)]
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async move {
            self.pool.conn().await?.execute("SELECT 1", &[]).await?;
            Ok(())
        })
        .await
    }

    #[instrument(skip_all, fields(%tenant, %input_hash), err)]
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
    #[instrument(skip_all, fields(%tenant, %task_id), err)]
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
    #[instrument(skip_all, fields(%tenant, %input_hash), err)]
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
    #[instrument(skip_all, fields(%tenant, %input_hash, task_id = %pending.task_id), err)]
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

    #[instrument(skip_all, fields(%task_id), err)]
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

    /// How many of `tenant`'s tasks are queued or running, counted up to `at_most`
    /// (the cap is all a caller needs to know, and the count stops there).
    #[instrument(skip_all, fields(tenant = %tenant, at_most = at_most), err)]
    pub async fn open_tasks(&self, tenant: &str, at_most: i64) -> Result<i64, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT count(*) FROM (SELECT 1 FROM task_results
                      WHERE tenant = $1 AND status IN ('PENDING', 'PROCESSING') LIMIT $2) open",
                )
                .await?;
            Ok(client.query_one(&stmt, &[&tenant, &at_most]).await?.get(0))
        })
        .await
    }

    /// Moves a retryable failure back to `PENDING` for a new run. Returns whether
    /// this call did it (a concurrent submit may have).
    #[instrument(skip_all, fields(%task_id, outbox_bytes = outbox.len()), err)]
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
                    concat!("UPDATE task_results SET status = 'PENDING', error = NULL, result = NULL, attempts = 0,
                            submitted_at = now(), enqueued_at = NULL, started_at = NULL, completed_at = NULL,
                            ttl_expires_at = now() + make_interval(secs => $2), outbox = $3, inputs_sha256 = $4
                     WHERE task_id = $1 AND (
                        (status = 'FAILURE' AND (error->>'retryable')::boolean)
                        OR (status IN ('SUCCESS', 'FAILURE') AND ", expired_sql!(), "))"),
                    &[&task_id, &secs(ttl), &outbox, &inputs_sha256],
                )
                .await?;
            Ok(n == 1)
        })
        .await
    }

    /// Finished entries held (the cache's size in rows).
    #[instrument(skip_all, err)]
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
    #[instrument(skip_all, fields(batch = batch), err)]
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
    #[instrument(skip_all, fields(%task_id), err)]
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
    #[instrument(skip_all, fields(%task_id), err)]
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
    #[instrument(skip_all, fields(%task_id, svg_bytes = svg_bytes), err)]
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
    #[instrument(skip_all, fields(%task_id), err)]
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

    #[instrument(skip_all, fields(%task_id, code = %error.code), err)]
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

    /// Records inputs refused at submit for a reason of theirs (a label map that
    /// cannot be rendered) as a finished failure, so that the same inputs are
    /// answered from the cache tiers without their map being read again. `None` if
    /// a row for these inputs exists already.
    #[instrument(skip_all, fields(tenant = %tenant, code = %error.code), err)]
    pub async fn insert_failure(
        &self,
        tenant: &str,
        input_hash: &str,
        renderer_version: &str,
        ttl: Duration,
        error: &TaskError,
    ) -> Result<Option<TaskRow>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let error = serde_json::to_value(error).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let sql = format!(
                "INSERT INTO task_results (task_id, tenant, input_hash, status, error, processing_time_ms,
                                           renderer_version, completed_at, ttl_expires_at)
                 VALUES ($1, $2, $3, 'FAILURE', $4, 0, $5, now(), now() + make_interval(secs => $6))
                 ON CONFLICT (tenant, input_hash) DO NOTHING
                 RETURNING {COLUMNS}"
            );
            client
                .query_opt(
                    &sql,
                    &[
                        &Uuid::new_v4(),
                        &tenant,
                        &input_hash,
                        &error,
                        &renderer_version,
                        &secs(ttl),
                    ],
                )
                .await?
                .as_ref()
                .map(row_to_task)
                .transpose()
        })
        .await
    }

    /// Deletes one batch of entries that are past their TTL, failed more than
    /// `failure_age` ago, or were never hit within `unused_age`. Open tasks are left
    /// to [`TaskStore::fail_stuck`].
    #[instrument(skip_all, fields(batch = batch), err)]
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
                    concat!("WITH doomed AS (
                         SELECT task_id,
                                CASE WHEN ", expired_sql!(), " THEN 'expired'
                                     WHEN status = 'FAILURE' THEN 'failed'
                                     ELSE 'unused' END AS reason
                         FROM task_results
                         WHERE status IN ('SUCCESS', 'FAILURE')
                           AND (", expired_sql!(), "
                                OR (status = 'FAILURE' AND completed_at < now() - make_interval(secs => $1))
                                OR ($2::float8 IS NOT NULL AND cache_hits = 0
                                    AND submitted_at < now() - make_interval(secs => $2)))
                         LIMIT $3
                         FOR UPDATE SKIP LOCKED)
                     DELETE FROM task_results t USING doomed d WHERE t.task_id = d.task_id
                     RETURNING t.task_id, t.tenant, t.input_hash, t.svg_s3_key, t.input_s3_key, d.reason"),
                    &[&secs(failure_age), &unused_secs, &batch],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Swept {
                        task: super::erasure::Erased::from_row(r)?,
                        reason: SweepReason::parse(r.try_get("reason")?)?,
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
    #[instrument(skip_all, fields(batch = batch), err)]
    pub async fn fail_stuck(
        &self,
        stuck_after: Duration,
        visible: Duration,
        batch: i64,
    ) -> Result<u64, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let error = serde_json::to_value(super::failure::Failure::Stuck.error())
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
