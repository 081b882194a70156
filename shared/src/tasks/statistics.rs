//! The read-only statistics: the statements behind `/cache/stats`, `/daily`, `/top`,
//! `/recent` and the `Retry-After` advice, over `task_results`, `processing_metrics`,
//! `daily_metrics` (up to `metrics_rollup`) and the `cache_performance` view.
//!
//! Kept apart from the tables' writers: these statements only read, and they are
//! listed by name ([`statistics_statements`]) so that their plans and timings can be
//! checked together.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::instrument;

use crate::policy::lifetime::{expired_sql, live_sql};

use super::results::{row_to_task, TaskStore, COLUMNS};
use super::stages::Stage;
use super::{StoreError, TaskRow};

/// The statements behind the statistics routes and `Retry-After`, by name: their
/// plans are checked (no sequential scan of a large table) by `tests/plans.rs` and
/// timed by `benches/statistics.rs`.
const MEDIAN_COMPLETION: &str = "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) FROM (
                         SELECT extract(epoch FROM completed_at - submitted_at)::float8 AS secs
                         FROM task_results WHERE status = 'SUCCESS' AND completed_at IS NOT NULL
                         ORDER BY completed_at DESC LIMIT 200) recent";
const STATS_BY_STATUS: &str = concat!("SELECT status, count(*), COALESCE(sum(cache_hits), 0)::int8, COALESCE(sum(svg_bytes), 0)::int8,
                            count(*) FILTER (WHERE status IN ('SUCCESS', 'FAILURE') AND ", expired_sql!(), ")
                     FROM task_results WHERE tenant = $1 GROUP BY status");
const STATS_TIMES: &str = "SELECT avg(processing_time_ms)::float8, min(processing_time_ms), max(processing_time_ms)
                     FROM task_results
                     WHERE tenant = $1 AND status = 'SUCCESS' AND completed_at > now() - make_interval(days => $2)";
const DAILY: &str = "SELECT date, requests, hits_l0, hits_redis, hits_postgres, hits, hit_ratio_percent,
                            renders, failures, processing_ms_avg, processing_ms_p50, processing_ms_p95
                     FROM cache_performance
                     WHERE tenant = $1 AND date > (now() AT TIME ZONE 'UTC')::date - $2::int
                     ORDER BY date DESC";
const TOP: &str = concat!(
    "SELECT left(input_hash, 12), cache_hits,
                            COALESCE(jsonb_array_length(result->'regions'), 0)::int8, last_hit_at
                     FROM task_results
                     WHERE tenant = $1 AND status = 'SUCCESS' AND cache_hits > 0 AND ",
    live_sql!(),
    "
                     ORDER BY cache_hits DESC, last_hit_at DESC NULLS LAST, input_hash
                     LIMIT $2"
);
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

/// A tenant's requests per tier over the last `$2` UTC days up to today, as folded
/// into Postgres (or written there directly without Redis).
const REQUEST_TOTALS: &str = "SELECT tier, sum(requests)::int8 FROM request_counts
                     WHERE tenant = $1 AND day > (now() AT TIME ZONE 'UTC')::date - $2::int
                     GROUP BY tier";

/// The fleet's requests per UTC day and tier over the last `$1` days (the
/// dashboard). `request_counts` is keyed by tenant first, so this reads the whole
/// table: it holds one row per tenant, day and tier, pruned after `DAILY_KEEP`.
const FLEET_REQUESTS_BY_DAY: &str = "SELECT day, tier, sum(requests)::int8 FROM request_counts
                     WHERE day > (now() AT TIME ZONE 'UTC')::date - $1::int
                     GROUP BY day, tier ORDER BY day";
/// The fleet's renders and failures per minute over the last `$1` minutes, this
/// one included, every minute present (zero when nothing finished in it).
const FLEET_PER_MINUTE: &str = "SELECT s.minute, COALESCE(c.renders, 0)::int8, COALESCE(c.failures, 0)::int8
                     FROM generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1),
                                          date_trunc('minute', now()), interval '1 minute') AS s(minute)
                     LEFT JOIN (
                         SELECT date_trunc('minute', recorded_at) AS minute,
                                count(*) FILTER (WHERE metric_name = 'processing_ms') AS renders,
                                count(*) FILTER (WHERE metric_name = 'failure_ms') AS failures
                         FROM processing_metrics
                         WHERE metric_name IN ('processing_ms', 'failure_ms')
                           AND recorded_at >= date_trunc('minute', now()) - make_interval(mins => $1 - 1)
                         GROUP BY 1
                     ) c USING (minute)
                     ORDER BY s.minute";
/// p50 and p95 of each metric in `$2` over the fleet's last `$1` minutes.
const FLEET_PERCENTILES: &str = "SELECT metric_name, count(*),
                            percentile_cont(0.5) WITHIN GROUP (ORDER BY value),
                            percentile_cont(0.95) WITHIN GROUP (ORDER BY value)
                     FROM processing_metrics
                     WHERE metric_name = ANY($2) AND recorded_at >= now() - make_interval(mins => $1)
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
        ("request_totals", REQUEST_TOTALS.to_owned()),
        ("top", TOP.to_owned()),
        ("recent", recent_sql()),
        ("median_completion", MEDIAN_COMPLETION.to_owned()),
    ]
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
    /// `tenant`'s requests per tier (`l0`, `redis`, `postgres`, `miss`) over the
    /// `days` UTC days up to today, from `request_counts`.
    #[instrument(skip_all, fields(%tenant, days = days), err)]
    pub async fn request_totals(
        &self,
        tenant: &str,
        days: u32,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let days = days as i32;
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let rows = client.query(REQUEST_TOTALS, &[&tenant, &days]).await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
        .await
    }

    /// Statistics of `tenant`'s entries; processing times over tasks finished in the
    /// last `days` days.
    #[instrument(skip_all, fields(%tenant, days = days), err)]
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
    #[instrument(skip_all, fields(%tenant, limit = limit), err)]
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

    /// The median time from submit to success of the last 200 tasks that rendered.
    #[instrument(skip_all, err)]
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

    /// `tenant`'s rows of the `cache_performance` view for the `days` UTC days up to
    /// today, newest first (days without any activity have no row).
    #[instrument(skip_all, fields(%tenant, days = days), err)]
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
    #[instrument(skip_all, fields(%tenant, limit = limit), err)]
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
    #[instrument(skip_all, fields(%tenant, days = days), err)]
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

/// One UTC day of the fleet's requests, per tier.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FleetDay {
    pub date: chrono::NaiveDate,
    pub l0: i64,
    pub redis: i64,
    pub postgres: i64,
    pub miss: i64,
}

/// One minute of the fleet's finished tasks.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FleetMinute {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    pub renders: i64,
    pub failures: i64,
}

/// A timing's median and 95th percentile over a window, and how many it saw.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub count: i64,
    pub p50: f64,
    pub p95: f64,
}

impl TaskStore {
    /// The fleet's requests per UTC day and tier over the `days` days up to
    /// today, oldest first, as folded into Postgres (days without requests absent).
    #[instrument(skip_all, fields(days = days), err)]
    pub async fn fleet_requests_by_day(&self, days: u32) -> Result<Vec<FleetDay>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let rows = client
                .query(FLEET_REQUESTS_BY_DAY, &[&(days as i32)])
                .await?;
            let mut out: Vec<FleetDay> = Vec::new();
            for r in &rows {
                let date: chrono::NaiveDate = r.try_get(0)?;
                let tier: String = r.try_get(1)?;
                let n: i64 = r.try_get(2)?;
                if out.last().is_none_or(|d| d.date != date) {
                    out.push(FleetDay {
                        date,
                        ..FleetDay::default()
                    });
                }
                let Some(day) = out.last_mut() else { continue };
                match tier.as_str() {
                    "l0" => day.l0 += n,
                    "redis" => day.redis += n,
                    "postgres" => day.postgres += n,
                    _ => day.miss += n,
                }
            }
            Ok(out)
        })
        .await
    }

    /// The fleet's renders and failures in each of the last `minutes` minutes,
    /// oldest first.
    #[instrument(skip_all, fields(minutes = minutes), err)]
    pub async fn fleet_per_minute(&self, minutes: u32) -> Result<Vec<FleetMinute>, StoreError> {
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let rows = client.query(FLEET_PER_MINUTE, &[&(minutes as i32)]).await?;
            rows.iter()
                .map(|r| {
                    Ok(FleetMinute {
                        minute: r.try_get(0)?,
                        renders: r.try_get(1)?,
                        failures: r.try_get(2)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// p50 and p95 of each stage, and of the whole render (`total`), over the
    /// fleet's last `minutes` minutes; stages not measured in it are absent.
    #[instrument(skip_all, fields(minutes = minutes), err)]
    pub async fn fleet_stage_percentiles(
        &self,
        minutes: u32,
    ) -> Result<std::collections::BTreeMap<&'static str, Percentiles>, StoreError> {
        let mut names: Vec<&str> = Stage::ALL.iter().map(|s| s.metric()).collect();
        names.push(super::metrics::SUCCESS_METRIC);
        self.bounded(async move {
            let client = self.pool.conn().await?;
            let rows = client
                .query(FLEET_PERCENTILES, &[&(minutes as i32), &names])
                .await?;
            let mut out = std::collections::BTreeMap::new();
            for r in &rows {
                let name: String = r.try_get(0)?;
                let key = match Stage::from_metric(&name) {
                    Some(stage) => stage.name(),
                    None if name == super::metrics::SUCCESS_METRIC => "total",
                    None => continue,
                };
                out.insert(
                    key,
                    Percentiles {
                        count: r.try_get(1)?,
                        p50: r.try_get(2)?,
                        p95: r.try_get(3)?,
                    },
                );
            }
            Ok(out)
        })
        .await
    }
}
