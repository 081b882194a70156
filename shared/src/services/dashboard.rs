//! The operator's short-window metrics behind the dashboard (`GET /dashboard`,
//! `GET /api/v1/admin/metrics`): what Postgres already records, across the fleet,
//! and the queue's depth now.
//!
//! Requests per tier exist only per UTC day (`request_counts`, folded every
//! minute); renders, failures and stage timings per task (`processing_metrics`),
//! so those come per minute. The queue's depth is not recorded anywhere: it is read
//! from SQS on each call, and the page keeps the samples it has seen.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::queue::{Depth, TaskQueue};
use crate::tasks::statistics::{FleetMinute, Percentiles};
use crate::tasks::{StoreError, TaskStore};

/// How long the depth may take: the health probes' deadline. Past it, the answer
/// goes without the depth rather than waiting for SQS.
pub const QUEUE_DEPTH_DEADLINE: Duration = Duration::from_secs(2);

/// One UTC day of the fleet's requests per tier, and its hit ratio (0..1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayRequests {
    pub date: chrono::NaiveDate,
    pub l0: i64,
    pub redis: i64,
    pub postgres: i64,
    pub miss: i64,
    pub total: i64,
    pub hit_ratio: f64,
}

/// The answer of `GET /api/v1/admin/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub minutes: u32,
    pub days: u32,
    /// Oldest first; days without requests are absent.
    pub requests: Vec<DayRequests>,
    /// Every minute of the window, oldest first.
    pub per_minute: Vec<FleetMinute>,
    /// p50/p95 (ms) per stage and `total` over the window; unmeasured ones absent.
    pub stages: BTreeMap<&'static str, Percentiles>,
    /// `null` when SQS did not answer within [`QUEUE_DEPTH_DEADLINE`].
    pub queue: Option<Depth>,
}

/// The fleet's metrics over the last `minutes` minutes (and `days` days for the
/// requests), read at once.
pub async fn metrics(
    tasks: &TaskStore,
    queue: &dyn TaskQueue,
    minutes: u32,
    days: u32,
) -> Result<Metrics, StoreError> {
    let (requests, per_minute, stages, queue) = tokio::join!(
        tasks.fleet_requests_by_day(days),
        tasks.fleet_per_minute(minutes),
        tasks.fleet_stage_percentiles(minutes),
        depth(queue),
    );
    let requests = requests?
        .into_iter()
        .map(|d| {
            let hits = d.l0 + d.redis + d.postgres;
            let total = hits + d.miss;
            DayRequests {
                date: d.date,
                l0: d.l0,
                redis: d.redis,
                postgres: d.postgres,
                miss: d.miss,
                total,
                hit_ratio: crate::policy::efficiency::ratio(hits as u64, total as u64),
            }
        })
        .collect();
    Ok(Metrics {
        minutes,
        days,
        requests,
        per_minute: per_minute?,
        stages: stages?,
        queue,
    })
}

async fn depth(queue: &dyn TaskQueue) -> Option<Depth> {
    match tokio::time::timeout(QUEUE_DEPTH_DEADLINE, queue.depth()).await {
        Ok(Ok(d)) => Some(d),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "queue depth unavailable");
            None
        }
        Err(_) => {
            tracing::warn!("queue depth unavailable: timed out");
            None
        }
    }
}
