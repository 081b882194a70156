//! The HTTP routes of the cache-cleanup function: the admin's sweep, the admin's clear
//! of every cached result, and the deletion of a tenant's data (by the tenant, or
//! by the admin naming it). They translate; `sweep` and `sweep::purge` decide.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::api::{auth, json_body, json_response, route_path, ApiError};
use crate::app::App;
use crate::input::InputError;
use crate::sweep::purge;

/// A deletion that could not go on: the caller calls again.
fn unavailable(e: purge::PurgeError) -> ApiError {
    ApiError::Unavailable(e.to_string())
}

/// Answers an HTTP request sent to cache-cleanup.
pub async fn answer(app: &App, req: Request) -> Response<Body> {
    let deadline = crate::api::invocation_deadline(&req);
    match crate::deadline::scope(deadline, route(app, &req, deadline)).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn route(
    app: &App,
    req: &Request,
    deadline: Option<std::time::Instant>,
) -> Result<Response<Body>, ApiError> {
    use crate::api::routes::{self, Function, Handler};
    let path = route_path(req).to_owned();
    let route = routes::of_function(Function::CacheCleanup, req.method().as_str(), &path)?;
    let caller = auth::caller(&app.config, req)?;
    if route.access == routes::Access::Admin && !caller.admin {
        return Err(ApiError::Forbidden);
    }
    let until = purge::http_deadline(deadline);
    let resp = match route.handler {
        Handler::Cleanup => {
            let report = crate::sweep::run(app).await;
            if !report.is_ok() {
                return Err(ApiError::Unavailable(format!("{:?}", report.errors)));
            }
            json_response(StatusCode::OK, &json!(report))
        }
        Handler::CacheClear => {
            no_body(req)?;
            json_body(
                StatusCode::OK,
                &purge::clear_all(app, until).await.map_err(unavailable)?,
            )
        }
        // The caller's own tenant, and no other: the route takes no name.
        Handler::DeleteOwnData => {
            no_body(req)?;
            json_body(
                StatusCode::OK,
                &purge::delete_tenant(app, &caller.tenant, until)
                    .await
                    .map_err(unavailable)?,
            )
        }
        Handler::DeleteTenantData => {
            no_body(req)?;
            // `/api/v1/admin/tenants/{tenant}/data`
            let tenant = path.rsplit('/').nth(1).unwrap_or_default();
            if !auth::is_tenant(tenant) {
                return Err(InputError::invalid(
                    "tenant",
                    "a tenant is 1 to 128 characters of A-Z, a-z, 0-9, -, _, . and @",
                )
                .into());
            }
            json_body(
                StatusCode::OK,
                &purge::delete_tenant(app, tenant, until)
                    .await
                    .map_err(unavailable)?,
            )
        }
        other => {
            return Err(ApiError::Internal(format!(
                "{other:?} is not a route of the cache-cleanup function"
            )))
        }
    };
    Ok(crate::api::served(resp, &caller.tenant, None))
}

/// These routes act on what the route names: a body would be a request they
/// cannot honour (another tenant's name, a filter), so it is refused.
fn no_body(req: &Request) -> Result<(), ApiError> {
    let body: &[u8] = req.body().as_ref();
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(())
    } else {
        Err(InputError::invalid("body", "this route takes no body").into())
    }
}
