//! Every route of the HTTP API, in one table: method, path, the function that serves
//! it, its handler and the access it needs.
//!
//! Read by the functions' dispatch ([`find`]), by the request metrics' route key,
//! by the local gateway (through `infra/routes.json`, written from this table by
//! `cargo run --bin facesvg-routes` and checked against it by `tests/routes.rs`),
//! and by the tests of `template.yaml` and `openapi.json`, so none of them can
//! drift from the code.

use serde::Serialize;

/// The Lambda function behind a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Function {
    #[serde(rename = "submit")]
    Submit,
    #[serde(rename = "status")]
    Status,
    #[serde(rename = "cache-cleanup")]
    CacheCleanup,
}

impl Function {
    /// The workspace binary (and the local gateway's function name).
    pub fn name(self) -> &'static str {
        match self {
            Function::Submit => "submit",
            Function::Status => "status",
            Function::CacheCleanup => "cache-cleanup",
        }
    }

    /// The function's resource in `template.yaml`.
    pub fn resource(self) -> &'static str {
        match self {
            Function::Submit => "SubmitFunction",
            Function::Status => "StatusFunction",
            Function::CacheCleanup => "CacheCleanupFunction",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// No credentials (the gateway's authorizer is off): nothing of a tenant's.
    Public,
    /// A tenant's token; some requests of the route also need the admin scope.
    Tenant,
    /// A token with the admin scope.
    Admin,
}

/// What serves a route inside its function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Handler {
    Submit,
    Uploads,
    TaskStatus,
    TaskResult,
    Stats,
    Recent,
    Daily,
    Top,
    Invalidate,
    Cleanup,
    CacheClear,
    DeleteOwnData,
    DeleteTenantData,
    Health,
    HealthDetail,
    AdminCacheStats,
    AdminMetrics,
    OpenApi,
    Docs,
    Viewer,
    Dashboard,
}

/// One route. `path` is the gateway's template: a `{name}` segment matches one
/// non-empty segment; `{name}.svg` one that ends in `.svg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Route {
    /// `METHOD path`, as API Gateway's route key and the request metrics name it.
    pub key: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    /// The path as API Gateway declares it (`template.yaml`): a greedy-free
    /// `{name}` takes a whole segment, so `{task_id}.svg` is `{file}` there.
    pub gateway_path: &'static str,
    pub function: Function,
    pub handler: Handler,
    pub access: Access,
}

macro_rules! route {
    ($method:literal $path:literal => $function:ident :: $handler:ident, $access:ident) => {
        route!($method $path as $path => $function::$handler, $access)
    };
    ($method:literal $path:literal as $gateway:literal => $function:ident :: $handler:ident, $access:ident) => {
        Route {
            key: concat!($method, " ", $path),
            method: $method,
            path: $path,
            gateway_path: $gateway,
            function: Function::$function,
            handler: Handler::$handler,
            access: Access::$access,
        }
    };
}

/// The API, every route of it.
pub const ROUTES: &[Route] = &[
    route!("POST" "/api/v1/frontal/crop/submit" => Submit::Submit, Tenant),
    route!("POST" "/api/v1/frontal/crop/uploads" => Submit::Uploads, Tenant),
    route!("GET" "/api/v1/frontal/crop/status/{task_id}" => Status::TaskStatus, Tenant),
    route!("GET" "/api/v1/frontal/crop/result/{task_id}.svg" as "/api/v1/frontal/crop/result/{file}"
        => Status::TaskResult, Tenant),
    route!("GET" "/api/v1/cache/stats" => Status::Stats, Tenant),
    route!("GET" "/api/v1/cache/recent" => Status::Recent, Tenant),
    route!("GET" "/api/v1/cache/daily" => Status::Daily, Tenant),
    route!("GET" "/api/v1/cache/top" => Status::Top, Tenant),
    route!("POST" "/api/v1/cache/invalidate" => Status::Invalidate, Tenant),
    route!("POST" "/api/v1/cache/cleanup" => CacheCleanup::Cleanup, Admin),
    // Deleting on request (`sweep::purge`): every cached result; a tenant's data.
    route!("POST" "/api/v1/admin/cache/clear" => CacheCleanup::CacheClear, Admin),
    route!("DELETE" "/api/v1/tenant/data" => CacheCleanup::DeleteOwnData, Tenant),
    route!("DELETE" "/api/v1/admin/tenants/{tenant}/data" => CacheCleanup::DeleteTenantData, Admin),
    // Public: the verdict alone, kept a few seconds per instance.
    route!("GET" "/health" => Status::Health, Public),
    // Each backend's check, behind the authorizer.
    route!("GET" "/api/v1/health" => Status::HealthDetail, Admin),
    // The general cache's counters and entries across the fleet, for operators.
    route!("GET" "/api/v1/admin/cache/stats" => Status::AdminCacheStats, Admin),
    // The dashboard's short-window series across the fleet, for operators.
    route!("GET" "/api/v1/admin/metrics" => Status::AdminMetrics, Admin),
    // Static pages without tenant data (the viewer's and the dashboard's API calls
    // are authorised).
    route!("GET" "/openapi.json" => Status::OpenApi, Public),
    route!("GET" "/docs" => Status::Docs, Public),
    route!("GET" "/viewer" => Status::Viewer, Public),
    route!("GET" "/dashboard" => Status::Dashboard, Public),
];

/// Whether `path` fits the route template `template`.
fn matches(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) => {
                let fits = match ts.strip_prefix('{').and_then(|s| s.split_once('}')) {
                    // `{name}` and `{name}.svg`: a non-empty segment with that suffix.
                    Some((_, suffix)) => ps.len() > suffix.len() && ps.ends_with(suffix),
                    None => ts == ps,
                };
                if !fits {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// What a request for `method path` finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Route(&'static Route),
    /// The path exists with other methods (405).
    WrongMethod,
    /// No route has this path (404).
    Unknown,
}

/// The route of `function` for `method` and `path`, or the error its handler
/// answers: a route of another function (which API Gateway never sends there) is
/// as unknown as any other path.
pub fn of_function(
    function: Function,
    method: &str,
    path: &str,
) -> Result<&'static Route, super::ApiError> {
    match find(method, path) {
        Found::Route(r) if r.function == function => Ok(r),
        Found::WrongMethod => Err(super::ApiError::MethodNotAllowed(format!(
            "no route for {method} {path}"
        ))),
        Found::Route(_) | Found::Unknown => Err(super::ApiError::NotFound(format!(
            "no route for {method} {path}"
        ))),
    }
}

pub fn find(method: &str, path: &str) -> Found {
    let mut path_known = false;
    for route in ROUTES {
        if matches(route.path, path) {
            if route.method == method {
                return Found::Route(route);
            }
            path_known = true;
        }
    }
    if path_known {
        Found::WrongMethod
    } else {
        Found::Unknown
    }
}

/// The routes `function` serves.
pub fn of(function: Function) -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().filter(move |r| r.function == function)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_their_segments_only() {
        let r = |m: &str, p: &str| match find(m, p) {
            Found::Route(r) => Some(r.handler),
            _ => None,
        };
        assert_eq!(
            r("GET", "/api/v1/frontal/crop/status/abc"),
            Some(Handler::TaskStatus)
        );
        assert_eq!(
            r("GET", "/api/v1/frontal/crop/result/abc.svg"),
            Some(Handler::TaskResult)
        );
        assert_eq!(r("GET", "/api/v1/frontal/crop/result/abc"), None);
        assert_eq!(r("GET", "/api/v1/frontal/crop/result/.svg"), None);
        assert_eq!(r("GET", "/api/v1/frontal/crop/status/"), None);
        assert_eq!(r("GET", "/api/v1/frontal/crop/status/a/b"), None);
        assert_eq!(r("GET", "/health"), Some(Handler::Health));
        assert_eq!(
            find("DELETE", "/api/v1/cache/invalidate"),
            Found::WrongMethod
        );
        assert_eq!(find("GET", "/nowhere"), Found::Unknown);
    }

    #[test]
    fn each_route_is_listed_once() {
        let mut keys: Vec<&str> = ROUTES.iter().map(|r| r.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), ROUTES.len());
    }
}
