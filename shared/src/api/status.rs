//! The read side: task status, the SVG itself, and health.
//!
//! A task is looked up in L0, Redis, then Postgres, and always together with the
//! caller's tenant: another tenant's task id answers 404, exactly like an unknown one.

use std::time::Duration;

use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use uuid::Uuid;

use super::{auth, caching, json_response, result_url, route_path, status_url, ApiError};
use crate::app::App;
use crate::cache::outcomes::Found;
use crate::tasks::TaskStatus;

pub async fn status(app: &App, req: Request) -> Response<Body> {
    super::observe(req, async |req| answer(app, req).await).await
}

async fn answer(app: &App, req: Request) -> Response<Body> {
    let deadline = super::invocation_deadline(&req);
    match crate::deadline::scope(deadline, route(app, &req)).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

/// Dispatches by the route table ([`super::routes`]); a route of another function
/// (which API Gateway never sends here) is as unknown as any other path.
async fn route(app: &App, req: &Request) -> Result<Response<Body>, ApiError> {
    use super::routes::{self, Found, Function, Handler};
    let path = route_path(req).to_owned();
    let route = match routes::find(req.method().as_str(), &path) {
        Found::Route(r) if r.function == Function::Status => r,
        Found::WrongMethod => {
            return Err(ApiError::MethodNotAllowed(format!(
                "no route for {} {path}",
                req.method()
            )))
        }
        Found::Route(_) | Found::Unknown => {
            return Err(ApiError::NotFound(format!(
                "no route for {} {path}",
                req.method()
            )))
        }
    };
    match route.handler {
        Handler::OpenApi | Handler::Docs | Handler::Viewer => {
            super::docs::static_route(req.method(), &path)
                .ok_or_else(|| ApiError::NotFound(format!("no route for GET {path}")))
        }
        Handler::Health => {
            // Public: only the verdict. The admin scope also sees each backend.
            let admin = auth::caller(&app.config, req).is_ok_and(|c| c.admin);
            Ok(health(app, admin).await)
        }
        handler => {
            let caller = auth::caller(&app.config, req)?;
            let resp = tenant_route(app, req, &caller, handler, &path).await?;
            Ok(super::served(resp, &caller.tenant, None))
        }
    }
}

async fn tenant_route(
    app: &App,
    req: &Request,
    caller: &auth::Caller,
    handler: super::routes::Handler,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    use super::routes::Handler;
    match handler {
        Handler::Stats => {
            let days = query_number(req, "days", crate::policy::ranges::STATS_DAYS)?;
            cache_stats(app, &caller.tenant, days as u32).await
        }
        Handler::Recent => {
            let limit = query_number(req, "limit", crate::policy::ranges::RECENT_LIMIT)?;
            recent(app, &caller.tenant, limit).await
        }
        Handler::Daily => {
            let days = query_number(req, "days", crate::policy::ranges::STATS_DAYS)?;
            daily(app, &caller.tenant, days as u32).await
        }
        Handler::Top => {
            let limit = query_number(req, "limit", crate::policy::ranges::TOP_LIMIT)?;
            top(app, &caller.tenant, limit).await
        }
        Handler::Invalidate => invalidate(app, req, caller).await,
        Handler::TaskStatus => {
            let id = path.rsplit('/').next().unwrap_or_default();
            task_status(app, req, &caller.tenant, parse_id(id)?).await
        }
        Handler::TaskResult => {
            let file = path.rsplit('/').next().unwrap_or_default();
            let id = file.strip_suffix(".svg").unwrap_or(file);
            svg(app, req, &caller.tenant, parse_id(id)?).await
        }
        other => Err(ApiError::Internal(format!(
            "{other:?} is not a route of the status function"
        ))),
    }
}

/// The query parameter `name`, or its default; `(default, range)` from
/// [`crate::policy::ranges`].
fn query_number(
    req: &Request,
    name: &'static str,
    (default, range): (i64, std::ops::RangeInclusive<i64>),
) -> Result<i64, ApiError> {
    let params = req.query_string_parameters();
    let Some(raw) = params.first(name) else {
        return Ok(default);
    };
    match raw.parse::<i64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(crate::input::InputError::invalid(
            name,
            format!(
                "expected a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )
        .into()),
    }
}

/// Requests per tier (Redis, written behind on every submit), entries, storage
/// and processing times (Postgres), for the caller's tenant only.
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

async fn cache_stats(app: &App, tenant: &str, days: u32) -> Result<Response<Body>, ApiError> {
    let days_part = days.to_string();
    cached_listing(app, "stats", tenant, &[&days_part], || {
        compute_stats(app, tenant, days)
    })
    .await
}

async fn compute_stats(app: &App, tenant: &str, days: u32) -> Result<serde_json::Value, ApiError> {
    // This instance's own counts first, so that a caller sees its requests.
    app.outcomes.flush_counts().await;
    let stats = app.tasks.stats(tenant, days).await?;
    let counts = match app.outcomes.redis.request_counts(tenant, days).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "request counts unavailable");
            None
        }
    };
    let (total, hits) = counts.as_ref().map_or((0, 0), |c| {
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        let hits = get("l0") + get("redis") + get("postgres");
        (hits + get("miss"), hits)
    });
    let ratio = if total > 0 {
        hits as f64 / total as f64
    } else {
        0.0
    };
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
        "entries": stats.entries,
        "entries_by_status": stats.by_status,
        "storage_bytes": stats.storage_bytes,
        "processing_time_ms": {"avg": stats.processing_ms_avg, "min": stats.processing_ms_min, "max": stats.processing_ms_max},
        // Per stage (ms): avg, min, max, p95 and how many tasks measured it.
        "stages": stages,
        // The original service's names, kept for its clients.
        "total_requests": total,
        "cache_hits": hits,
        "cache_hit_ratio": (ratio * 10_000.0).round() / 100.0,
        "avg_processing_time_ms": stats.processing_ms_avg,
        "cache_efficiency": (ratio * 10_000.0).round() / 100.0,
        "active_entries": active,
        "expired_entries": stats.expired_entries,
    }))
}

async fn recent(app: &App, tenant: &str, limit: i64) -> Result<Response<Body>, ApiError> {
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
async fn daily(app: &App, tenant: &str, days: u32) -> Result<Response<Body>, ApiError> {
    let days_part = days.to_string();
    cached_listing(app, "daily", tenant, &[&days_part], || async move {
        let rows = app.tasks.daily(tenant, days).await?;
        Ok(json!({ "days": days, "daily": rows }))
    })
    .await
}

/// `GET /api/v1/cache/top`: the caller's most-hit live entries, by the hits the
/// sweep has folded into Postgres.
async fn top(app: &App, tenant: &str, limit: i64) -> Result<Response<Body>, ApiError> {
    let limit_part = limit.to_string();
    cached_listing(app, "top", tenant, &[&limit_part], || async move {
        let rows = app.tasks.top(tenant, limit).await?;
        Ok(json!({ "entries": rows }))
    })
    .await
}

/// `POST /api/v1/cache/invalidate` with `{"namespace"?, "tenant"?, "tag"?}`: drops
/// entries of the general-purpose cache. A tenant invalidates only its own entries
/// (all of them, or one namespace); the admin scope may name any tenant, a namespace
/// across tenants, or a tag. The answer gives each tier's counts.
async fn invalidate(
    app: &App,
    req: &Request,
    caller: &auth::Caller,
) -> Result<Response<Body>, ApiError> {
    use crate::cache::kv::Scope;
    use crate::input::InputError;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        namespace: Option<String>,
        tenant: Option<String>,
        tag: Option<String>,
    }
    let body: &[u8] = req.body().as_ref();
    if body.len() > 4096 {
        return Err(InputError::too_large("body", "at most 4096 bytes").into());
    }
    let ask: Ask = if body.iter().all(u8::is_ascii_whitespace) {
        Ask {
            namespace: None,
            tenant: None,
            tag: None,
        }
    } else {
        serde_json::from_slice(body).map_err(|e| {
            InputError::invalid(
                "body",
                format!("expected {{\"namespace\", \"tenant\", \"tag\"}}: {e}"),
            )
        })?
    };
    let bad = |field: &'static str, e: crate::cache::kv::KvError| {
        ApiError::from(InputError::invalid(field, e.to_string()))
    };
    // Only a namespace this deployment caches in: each invalidated scope is a
    // permanent field of Redis's generation hash and of every instance's memory, so
    // their number is bounded by tenants × known namespaces, not by callers.
    if let Some(ns) = &ask.namespace {
        let known = &app.config.kv_ttls.namespaces;
        if !known.contains_key(ns.as_str()) {
            let mut names: Vec<&str> = known.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(InputError::invalid(
                "namespace",
                format!(
                    "unknown namespace; this deployment caches in {}",
                    names.join(", ")
                ),
            )
            .into());
        }
    }
    let report = match (ask.tag, ask.tenant, ask.namespace) {
        (Some(tag), None, None) if caller.admin => app.kv.invalidate_tag(&tag).await,
        (Some(_), _, _) if !caller.admin => return Err(ApiError::Forbidden),
        (Some(_), _, _) => {
            return Err(InputError::invalid("tag", "a tag is invalidated on its own").into())
        }
        (None, Some(t), _) if t != caller.tenant && !caller.admin => {
            return Err(ApiError::Forbidden)
        }
        // The admin scope: a namespace across every tenant.
        (None, None, Some(ns)) if caller.admin => {
            app.kv
                .invalidate(&Scope::namespace(&ns).map_err(|e| bad("namespace", e))?)
                .await
        }
        (None, tenant, ns) => {
            let tenant = tenant.unwrap_or_else(|| caller.tenant.clone());
            let scope = match ns {
                Some(ns) => {
                    Scope::tenant_namespace(&tenant, &ns).map_err(|e| bad("namespace", e))?
                }
                None => Scope::tenant(&tenant),
            };
            app.kv.invalidate(&scope).await
        }
    };
    Ok(json_response(StatusCode::OK, &json!(report)))
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    // A malformed id is as unknown as a well-formed one that does not exist.
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound("no such task".into()))
}

/// What the tiers know of `tenant`'s task (another tenant's, or an expired one, is
/// [`Found::Absent`], exactly like an unknown one).
async fn find(app: &App, tenant: &str, task_id: Uuid) -> Result<Found, ApiError> {
    app.outcomes
        .by_task(&app.tasks, tenant, task_id)
        .await
        .map_err(ApiError::from)
}

fn no_such_task() -> ApiError {
    ApiError::NotFound("no such task".into())
}

async fn task_status(
    app: &App,
    req: &Request,
    tenant: &str,
    task_id: Uuid,
) -> Result<Response<Body>, ApiError> {
    let mut body = json!({
        "task_id": task_id,
        "status_url": status_url(task_id),
        "result_url": result_url(task_id),
    });
    let outcome = match find(app, tenant, task_id).await? {
        Found::Hit(o, _) => o,
        Found::Row(row) => {
            // Open, or a failure that the next submit runs again: never from a cache.
            let open_wait = if row.status.is_finished() {
                None
            } else {
                Some(app.poll.retry_after(&app.tasks).await)
            };
            body["status"] = json!(row.status.as_str());
            body["submitted_at"] = json!(row.submitted_at);
            body["started_at"] = json!(row.started_at);
            body["completed_at"] = json!(row.completed_at);
            body["attempts"] = json!(row.attempts);
            if let Some(e) = &row.error {
                body["error"] = json!(e);
            }
            let mut resp = json_response(StatusCode::OK, &body);
            caching::open(&mut resp, open_wait);
            return Ok(resp);
        }
        Found::Absent => return Err(no_such_task()),
    };
    body["status"] = json!(outcome.status.as_str());
    body["submitted_at"] = json!(outcome.submitted_at);
    body["completed_at"] = json!(outcome.completed_at);
    body["processing_time_ms"] = json!(outcome.processing_time_ms);
    if let Some(stages) = &outcome.stages {
        body["stages"] = json!(stages);
    }
    if let Some(r) = &outcome.result {
        body["result"] = (**r).clone();
    }
    if let Some(e) = &outcome.error {
        body["error"] = json!(e);
    }
    let mut max_age = caching::seconds_until(outcome.ttl_expires_at);
    // An answer that should carry a link and does not (the presign failed) must not
    // be kept by the client for the entry's lifetime.
    let mut complete = true;
    if let Some(key) = &outcome.svg_s3_key {
        match app
            .links
            .svg_link(app.objects.as_ref(), key, app.config.presign_ttl)
            .await
        {
            Ok((url, valid_for)) => {
                body["svg_url"] = json!(url);
                // A cached answer must not outlive the link it carries.
                max_age = max_age.min(valid_for.as_secs());
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not presign");
                complete = false;
            }
        }
    }
    let text = body.to_string();
    let etag = complete.then(|| caching::status_etag(&outcome.input_hash, text.as_bytes()));
    if let Some(etag) = etag.as_deref().filter(|e| caching::not_modified(req, e)) {
        return Ok(caching::unchanged(etag, max_age, false));
    }
    let mut resp = Response::new(Body::Text(text));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    match &etag {
        Some(etag) => caching::finished(&mut resp, etag, max_age, false),
        None => caching::open(&mut resp, None),
    }
    Ok(resp)
}

async fn svg(
    app: &App,
    req: &Request,
    tenant: &str,
    task_id: Uuid,
) -> Result<Response<Body>, ApiError> {
    let outcome = match find(app, tenant, task_id).await? {
        Found::Hit(o, _) => o,
        Found::Row(row) => return Err(ApiError::NotReady(row.status.as_str())),
        Found::Absent => return Err(no_such_task()),
    };
    if outcome.status != TaskStatus::Success {
        return Err(ApiError::NotFound("the task failed; it has no SVG".into()));
    }
    // Content-addressed and immutable until the entry expires, but private to the
    // tenant. A client that has it is answered before S3 is read.
    let etag = caching::svg_etag(&outcome.input_hash);
    let max_age = caching::seconds_until(outcome.ttl_expires_at);
    if caching::not_modified(req, &etag) {
        return Ok(caching::unchanged(&etag, max_age, true));
    }
    let key = outcome
        .svg_s3_key
        .ok_or_else(|| ApiError::Internal("successful task without an SVG key".into()))?;
    let bytes = app
        .objects
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::NotFound("the SVG has expired".into()))?;
    let mut resp = Response::new(Body::Text(String::from_utf8_lossy(&bytes).into_owned()));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("image/svg+xml"),
    );
    caching::finished(&mut resp, &etag, max_age, true);
    Ok(resp)
}

/// Reachability of every backend. Redis down is `degraded`: requests still work.
/// Failures are logged with their detail; the answer carries the detail (without
/// error text) only for `admin`.
pub async fn health(app: &App, admin: bool) -> Response<Body> {
    let (pg, redis, s3, sqs) = tokio::join!(
        check("postgres", async {
            app.tasks.ping().await.map_err(|e| e.to_string())
        }),
        check("redis", async {
            match app.outcomes.redis.ping().await {
                // Running without Redis is a choice, not a fault.
                Ok(()) | Err(crate::cache::CacheError::Disabled) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }),
        check("s3", async {
            app.objects.ping().await.map_err(|e| e.to_string())
        }),
        check("sqs", async {
            app.queue.ping().await.map_err(|e| e.to_string())
        }),
    );
    let essential = pg && s3 && sqs;
    let status = match (essential, redis) {
        (true, true) => "ok",
        (true, false) => "degraded",
        _ => "down",
    };
    let code = if essential {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({ "status": status });
    if admin {
        body["renderer_version"] = json!(crate::RENDERER_VERSION);
        body["checks"] = json!({
            "postgres": {"ok": pg}, "s3": {"ok": s3}, "sqs": {"ok": sqs},
            "redis": if app.outcomes.redis.is_enabled() { json!({"ok": redis}) } else { json!({"ok": true, "disabled": true}) },
        });
    }
    json_response(code, &body)
}

async fn check(
    backend: &'static str,
    probe: impl std::future::Future<Output = Result<(), String>>,
) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(backend, error = %e, "health check failed");
            false
        }
        Err(_) => {
            tracing::warn!(backend, "health check timed out");
            false
        }
    }
}
