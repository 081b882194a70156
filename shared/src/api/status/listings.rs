//! The statistics routes (`/cache/stats`, `/recent`, `/daily`, `/top`): each a
//! listing of the caller's tenant, computed through the general-purpose cache; and
//! the operator's view of that cache across the fleet (`/admin/cache/stats`).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::json;

use super::super::{caching, json_response, status_url, ApiError};
use crate::app::App;

/// A key of the general-purpose cache for `tenant`'s `namespace`.
fn kv_key(
    namespace: &str,
    tenant: &str,
    parts: &[&str],
) -> Result<crate::cache::kv::Key, ApiError> {
    crate::cache::kv::KeyBuilder::new(namespace)
        .and_then(|b| b.key(tenant, parts))
        .map_err(ApiError::from)
}

/// A listing computed once per key and TTL through the general-purpose cache (one
/// computation across instances), answered with a matching short `max-age`.
async fn cached_listing<F, Fut>(
    app: &App,
    namespace: &str,
    tenant: &str,
    parts: &[&str],
    compute: F,
) -> Result<Response<Body>, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, ApiError>>,
{
    let key = kv_key(namespace, tenant, parts)?;
    let fetched = app.kv.get_or_compute(&key, None, compute).await?;
    let mut resp = json_response(StatusCode::OK, &fetched.value);
    caching::listing(
        &mut resp,
        app.config.kv_ttls.for_namespace(namespace).as_secs(),
    );
    Ok(resp)
}

/// Requests per tier (Redis, written behind on every submit; Postgres without
/// Redis), entries, storage and processing times (Postgres), for the caller's
/// tenant only.
pub(super) async fn cache_stats(
    app: &App,
    tenant: &str,
    days: u32,
) -> Result<Response<Body>, ApiError> {
    let days_part = days.to_string();
    cached_listing(app, "stats", tenant, &[&days_part], || {
        compute_stats(app, tenant, days)
    })
    .await
}

/// The tenant's requests per tier over `days` days: from Redis's daily counters;
/// without Redis (`REDIS_URL=none`), from `request_counts`, which each instance
/// writes directly (as `/cache/daily` reads it). `None` while Redis is down: its
/// counts are held back until it answers, so no source has them all.
async fn request_counts(
    app: &App,
    tenant: &str,
    days: u32,
) -> Result<Option<std::collections::HashMap<String, i64>>, ApiError> {
    match app.outcomes.redis.request_counts(tenant, days).await {
        Ok(c) => Ok(Some(c)),
        Err(crate::cache::CacheError::Disabled) => {
            Ok(Some(app.tasks.request_totals(tenant, days).await?))
        }
        Err(e) => {
            tracing::warn!(error = %e, "request counts unavailable");
            Ok(None)
        }
    }
}

async fn compute_stats(app: &App, tenant: &str, days: u32) -> Result<serde_json::Value, ApiError> {
    use crate::policy::efficiency;
    // This instance's own counts first, so that a caller sees its requests.
    app.outcomes.flush_counts().await;
    let stats = app.tasks.stats(tenant, days).await?;
    let counts = request_counts(app, tenant, days).await?;
    let (total, hits) = counts.as_ref().map_or((0, 0), |c| {
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        let hits = get("l0") + get("redis") + get("postgres");
        (hits + get("miss"), hits)
    });
    let ratio = efficiency::ratio(hits as u64, total as u64);
    let requests = counts.map(|c| {
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        json!({
            "total": total,
            "hits": {"l0": get("l0"), "redis": get("redis"), "postgres": get("postgres"), "total": hits},
            "misses": get("miss"),
            "hit_ratio": ratio,
        })
    });
    let stages = app.tasks.stage_timings(tenant, days).await?;
    let active = stats.entries - stats.expired_entries;
    Ok(json!({
        "days": days,
        "requests": requests,
        "hit_ratio": ratio,
        "entries": stats.entries,
        "entries_by_status": stats.by_status,
        "storage_bytes": stats.storage_bytes,
        "processing_time_ms": {"avg": stats.processing_ms_avg, "min": stats.processing_ms_min, "max": stats.processing_ms_max},
        // Per stage (ms): avg, min, max, p95 and how many tasks measured it.
        "stages": stages,
        // The original service's names, with its types, kept for its clients.
        "total_requests": total,
        "cache_hits": hits,
        "cache_hit_ratio": (ratio * 10_000.0).round() / 100.0,
        "avg_processing_time_ms": stats.processing_ms_avg,
        "cache_efficiency": efficiency::label(ratio),
        "active_entries": active,
        "expired_entries": stats.expired_entries,
    }))
}

/// `GET /api/v1/admin/cache/stats`: the general-purpose cache across the fleet
/// (see [`crate::services::cache_stats`]). Never cached: reading it folds the
/// counts sent so far, and an operator asks for now.
pub(super) async fn fleet_cache_stats(app: &App) -> Result<Response<Body>, ApiError> {
    let stats = crate::services::cache_stats::fleet(&app.cache_sources()).await?;
    let mut resp = json_response(StatusCode::OK, &json!(stats));
    caching::open(&mut resp, None);
    Ok(resp)
}

/// `GET /api/v1/admin/metrics`: the dashboard's series across the fleet (see
/// [`crate::services::dashboard`]). Never cached: the page polls it for now.
pub(super) async fn fleet_metrics(
    app: &App,
    minutes: u32,
    days: u32,
) -> Result<Response<Body>, ApiError> {
    let metrics =
        crate::services::dashboard::metrics(&app.tasks, app.queue.as_ref(), minutes, days).await?;
    let mut resp = super::super::json_body(StatusCode::OK, &metrics);
    caching::open(&mut resp, None);
    Ok(resp)
}

pub(super) async fn recent(
    app: &App,
    tenant: &str,
    limit: i64,
) -> Result<Response<Body>, ApiError> {
    let limit_part = limit.to_string();
    cached_listing(app, "recent", tenant, &[&limit_part], || async move {
        let rows = app.tasks.recent(tenant, limit).await?;
        let tasks: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "task_id": r.task_id,
                    "status": r.status.as_str(),
                    "submitted_at": r.submitted_at,
                    "completed_at": r.completed_at,
                    "processing_time_ms": r.processing_time_ms,
                    "cache_hits": r.cache_hits,
                    "svg_bytes": r.svg_bytes,
                    "status_url": status_url(r.task_id),
                })
            })
            .collect();
        Ok(json!({ "tasks": tasks }))
    })
    .await
}

/// `GET /api/v1/cache/daily`: the caller's rows of the `cache_performance` view,
/// newest day first. Requests reach the view with cache-cleanup's fold (every
/// minute); renders, failures and processing times as tasks finish.
pub(super) async fn daily(app: &App, tenant: &str, days: u32) -> Result<Response<Body>, ApiError> {
    let days_part = days.to_string();
    cached_listing(app, "daily", tenant, &[&days_part], || async move {
        let rows = app.tasks.daily(tenant, days).await?;
        Ok(json!({ "days": days, "daily": rows }))
    })
    .await
}

/// `GET /api/v1/cache/top`: the caller's most-hit live entries, by the hits the
/// sweep has folded into Postgres.
pub(super) async fn top(app: &App, tenant: &str, limit: i64) -> Result<Response<Body>, ApiError> {
    let limit_part = limit.to_string();
    cached_listing(app, "top", tenant, &[&limit_part], || async move {
        let rows = app.tasks.top(tenant, limit).await?;
        Ok(json!({ "entries": rows }))
    })
    .await
}
