//! Tasks: their states, their rows in Postgres (the source of truth), and the
//! outcome that the cache tiers hold once a task is finished.
//!
//! Lifecycle: a miss inserts `PENDING` once per (tenant, input hash); a worker's
//! claim moves it to `PROCESSING` and counts the attempt; it ends `SUCCESS` (result,
//! SVG key) or `FAILURE` (error). What each failure becomes (cached, run again,
//! redelivered) is decided in [`failure`].
//!
//! The store's SQL is split by table, each file owning its statements:
//! - `results`: `task_results` through a task's lifecycle ([`TaskStore`] itself);
//! - `counts`: `request_counts`, the folded hit counters and `request_count_folds`;
//! - `statistics`: the read-only statements behind the statistics routes;
//! - `metrics`: `processing_metrics` rows, written with the results;
//! - `quotas`: `tenant_quotas`, tenants' token buckets when Redis is not there;
//! - `erasure`: a tenant's rows in every table, and every finished task, deleted
//!   on request in bounded batches;
//! - `retention`: the rollup into `daily_metrics` and the pruning of old rows;
//! - `stages`: the per-stage timings (no SQL of its own);
//! - `records`: the [`TaskRecords`] trait a submit needs, with an in-memory store
//!   for unit tests.

pub mod counts;
pub mod erasure;
pub mod failure;
pub mod metrics;
pub mod quotas;
pub mod records;
pub mod results;
pub mod retention;
pub mod stages;
pub mod statistics;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

pub use records::TaskRecords;
pub use results::TaskStore;
pub use stages::{Stage, Stages};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskStatus {
    Pending,
    Processing,
    Success,
    Failure,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Processing => "PROCESSING",
            TaskStatus::Success => "SUCCESS",
            TaskStatus::Failure => "FAILURE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(TaskStatus::Pending),
            "PROCESSING" => Some(TaskStatus::Processing),
            "SUCCESS" => Some(TaskStatus::Success),
            "FAILURE" => Some(TaskStatus::Failure),
            _ => None,
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, TaskStatus::Success | TaskStatus::Failure)
    }
}

/// Why a task failed, as stored in `task_results.error` and shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// False for errors caused by the inputs (cached and served again); true for
    /// errors of the system (the task is run again on the next submit).
    pub retryable: bool,
}

#[derive(Debug, Clone)]
pub struct TaskRow {
    pub task_id: Uuid,
    pub tenant: String,
    pub input_hash: String,
    pub status: TaskStatus,
    /// Shared with the outcome made from the row (see [`Outcome::result`]).
    pub result: Option<Arc<serde_json::Value>>,
    pub svg_s3_key: Option<String>,
    pub svg_bytes: Option<i64>,
    pub input_s3_key: Option<String>,
    pub error: Option<TaskError>,
    pub processing_time_ms: Option<i32>,
    pub cache_hits: i64,
    pub attempts: i32,
    pub submitted_at: DateTime<Utc>,
    pub enqueued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub ttl_expires_at: DateTime<Utc>,
    /// Per-stage timings of the run that finished it (successes only).
    pub stages: Option<Stages>,
}

/// `Option<Arc<Value>>` as a plain optional JSON value (what serde's `rc` feature
/// would do, without turning it on for the whole dependency tree).
mod shared_json {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(v: &Option<Arc<Value>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_deref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<Value>>, D::Error> {
        Ok(Option::<Value>::deserialize(d)?.map(Arc::new))
    }
}

/// A finished task as the cache tiers keep it: enough to answer a submit or a
/// status request without Postgres.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub task_id: Uuid,
    pub tenant: String,
    pub input_hash: String,
    pub status: TaskStatus,
    /// Shared, not copied, between the tiers and the answers built from it: a hit
    /// moves a reference count, never the regions' JSON tree.
    #[serde(default, with = "shared_json", skip_serializing_if = "Option::is_none")]
    pub result: Option<Arc<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svg_s3_key: Option<String>,
    pub processing_time_ms: Option<i32>,
    pub submitted_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub ttl_expires_at: DateTime<Utc>,
    /// Absent in outcomes cached before stages were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Stages>,
}

impl TaskRow {
    /// A finished task past its TTL: never served, run again on the next submit.
    pub fn is_expired(&self) -> bool {
        self.status.is_finished()
            && crate::policy::lifetime::is_expired(self.ttl_expires_at, Utc::now())
    }

    /// The cacheable outcome of a finished task; `None` while it is open or when
    /// its failure is retryable (which must not be served from a cache).
    pub fn outcome(&self) -> Option<Outcome> {
        let cacheable = match self.status {
            TaskStatus::Success => true,
            TaskStatus::Failure => self
                .error
                .as_ref()
                .is_some_and(|e| failure::Fate::of(e) == failure::Fate::Cached),
            _ => false,
        };
        cacheable.then(|| Outcome {
            task_id: self.task_id,
            tenant: self.tenant.clone(),
            input_hash: self.input_hash.clone(),
            status: self.status,
            result: self.result.clone(),
            error: self.error.clone(),
            svg_s3_key: self.svg_s3_key.clone(),
            processing_time_ms: self.processing_time_ms,
            submitted_at: self.submitted_at,
            completed_at: self.completed_at,
            ttl_expires_at: self.ttl_expires_at,
            stages: self.stages,
        })
    }
}

/// Requests of one tenant on one UTC day answered by one tier (or missed): a row of
/// `request_counts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCount {
    pub tenant: String,
    pub day: chrono::NaiveDate,
    pub tier: String,
    pub requests: i64,
}

/// What the general-purpose cache counted for one namespace, for its callers
/// (`tier` = `callers`) or one tier: a row of `cache_counters`, or an amount to add
/// to one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheCounter {
    pub namespace: String,
    pub tier: String,
    pub hits: i64,
    pub misses: i64,
    pub sets: i64,
    pub deletes: i64,
    pub errors: i64,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("database call timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("stored row is malformed: {0}")]
    Corrupt(String),
}
