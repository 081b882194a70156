//! The read side: task status, the SVG itself, and health.
//!
//! A task is looked up in L0, Redis, then Postgres, and always together with the
//! caller's tenant: another tenant's task id answers 404, exactly like an unknown one.

mod health;
mod invalidate;
mod listings;
mod tasks;

use lambda_http::{Body, Request, RequestExt, Response};

use super::{auth, route_path, ApiError};
use crate::app::App;
pub use health::health;
use invalidate::invalidate;
use listings::{cache_stats, daily, recent, top};
use tasks::{parse_id, svg, task_status, Include};

pub async fn status(app: &App, req: Request) -> Response<Body> {
    super::observe(req, async |req| answer(app, req).await).await
}

async fn answer(app: &App, req: Request) -> Response<Body> {
    let deadline = super::invocation_deadline(&req);
    let resp = match crate::deadline::scope(deadline, route(app, &req)).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    // The listings read through the general cache: its counters go on from here.
    app.outcomes.send_if_due();
    resp
}

/// Dispatches by the route table ([`super::routes`]); a route of another function
/// (which API Gateway never sends here) is as unknown as any other path.
async fn route(app: &App, req: &Request) -> Result<Response<Body>, ApiError> {
    use super::routes::{self, Function, Handler};
    let path = route_path(req).to_owned();
    let route = routes::of_function(Function::Status, req.method().as_str(), &path)?;
    match route.handler {
        Handler::OpenApi | Handler::Docs | Handler::Viewer | Handler::Dashboard => {
            super::docs::static_route(req.method(), &path)
                .ok_or_else(|| ApiError::NotFound(format!("no route for GET {path}")))
        }
        // Public: only the verdict, kept a few seconds.
        Handler::Health => Ok(health(app).await),
        Handler::HealthDetail => {
            if !auth::caller(&app.config, req)?.admin {
                return Err(ApiError::Forbidden);
            }
            Ok(health::health_detail(app).await)
        }
        Handler::AdminCacheStats => {
            let caller = auth::caller(&app.config, req)?;
            if !caller.admin {
                return Err(ApiError::Forbidden);
            }
            let resp = listings::fleet_cache_stats(app).await?;
            Ok(super::served(resp, &caller.tenant, None))
        }
        Handler::AdminMetrics => {
            let caller = auth::caller(&app.config, req)?;
            if !caller.admin {
                return Err(ApiError::Forbidden);
            }
            let minutes = query_number(req, "minutes", crate::policy::ranges::METRICS_MINUTES)?;
            let days = query_number(req, "days", crate::policy::ranges::METRICS_DAYS)?;
            let resp = listings::fleet_metrics(app, minutes as u32, days as u32).await?;
            Ok(super::served(resp, &caller.tenant, None))
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
            let include = Include::parse(req)?;
            task_status(app, req, &caller.tenant, parse_id(id)?, include).await
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
