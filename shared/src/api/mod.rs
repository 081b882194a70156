//! The HTTP edge: API Gateway (HTTP API, payload 2.0) requests in, JSON out.
//!
//! Handlers never return an error to the runtime: every failure becomes an
//! [`ApiError`], and each variant maps to exactly one status code and error code,
//! answered as `{"error": {"code", "message", "field"}}`.

pub mod auth;
pub mod caching;
pub mod docs;
pub mod event;
pub mod routes;
pub mod status;
pub mod submit;

use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use thiserror::Error;

use crate::input::{InputError, InputErrorKind};

pub use status::status;
pub use submit::submit;

/// Base path of the task routes; status and result URLs are built from it.
pub const TASK_ROUTES: &str = "/api/v1/frontal/crop";

#[derive(Debug, Error)]
pub enum ApiError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("this route needs the admin scope")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("task is {0}; its SVG is not ready")]
    NotReady(&'static str),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// The tenant is over one of its limits (see `quota`).
    #[error("over this tenant's limit {}; retry after {} s", .0.limit, retry_secs(.0.retry_after))]
    RateLimited(#[from] crate::quota::Refused),
    /// The same inputs were rendered before and failed for a reason of theirs
    /// (see `tasks::failure`): that failure is the answer again, with its task.
    #[error("the same inputs failed before")]
    CachedFailure {
        task_id: uuid::Uuid,
        tier: &'static str,
        error: Option<crate::tasks::TaskError>,
    },
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, Option<&'static str>) {
        match self {
            ApiError::Input(e) => {
                let status = match e.kind {
                    InputErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    InputErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    InputErrorKind::TooComplex => StatusCode::UNPROCESSABLE_ENTITY,
                    InputErrorKind::Missing | InputErrorKind::Invalid => StatusCode::BAD_REQUEST,
                };
                (status, e.kind.code(), Some(e.field))
            }
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None)
            }
            ApiError::NotReady(_) => (StatusCode::CONFLICT, "not_ready", None),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", None),
            ApiError::CachedFailure { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "cached_failure", None)
            }
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let (status, code, field) = self.parts();
        if let ApiError::CachedFailure {
            task_id,
            tier,
            error,
        } = &self
        {
            // The error shape of every other 4xx (code, message, field), with the
            // task. A cached answer, not a fault of this request: not counted as an
            // error in the metrics.
            let error = error
                .as_ref()
                .map(|e| json!({ "code": e.code, "message": e.message, "field": e.field }));
            let body = json!({
                "task_id": task_id,
                "status": "FAILURE",
                "cached": true,
                "cache_tier": tier,
                "error": error,
                "status_url": status_url(*task_id),
            });
            return json_response(status, &body);
        }
        let message = match &self {
            ApiError::Input(e) => e.message.clone(),
            // Details of internal faults go to the log, not to the client.
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal error".to_owned()
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "dependency unavailable");
                "a backing service is unavailable; retry shortly".to_owned()
            }
            other => other.to_string(),
        };
        let mut error = json!({ "code": code, "message": message });
        if let Some(f) = field {
            error["field"] = json!(f);
        }
        if let ApiError::RateLimited(refused) = &self {
            error["limit"] = json!(refused.limit);
        }
        let mut resp = json_response(status, &json!({ "error": error }));
        resp.extensions_mut().insert(ErrorCode(code));
        if let ApiError::RateLimited(refused) = &self {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_secs(refused.retry_after)),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

// Each boundary's error becomes the API's here, once: a task store, cache or object
// store that failed or timed out is `unavailable` (503 with `Retry-After`; the detail
// goes to the log, never to the caller); a key that cannot be built or a setting
// that cannot be read is `internal`. `ApiError::parts` gives each kind its status
// and code.

impl From<crate::tasks::StoreError> for ApiError {
    fn from(e: crate::tasks::StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<crate::services::cache_stats::FleetStatsError> for ApiError {
    fn from(e: crate::services::cache_stats::FleetStatsError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<crate::objects::ObjectError> for ApiError {
    fn from(e: crate::objects::ObjectError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<crate::cache::kv::KvError> for ApiError {
    fn from(e: crate::cache::kv::KvError) -> Self {
        use crate::cache::kv::KvError;
        match e {
            KvError::InvalidKey(_) | KvError::Config(_) => ApiError::Internal(e.to_string()),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl From<crate::services::submit::SubmitError> for ApiError {
    fn from(e: crate::services::submit::SubmitError) -> Self {
        use crate::services::submit::SubmitError;
        match e {
            SubmitError::Input(e) => ApiError::Input(e),
            SubmitError::Store(e) => e.into(),
            SubmitError::Objects(e) => e.into(),
            SubmitError::Internal(e) => ApiError::Internal(e),
            SubmitError::Contended => ApiError::Unavailable(SubmitError::Contended.to_string()),
            SubmitError::RateLimited(refused) => ApiError::RateLimited(refused),
        }
    }
}

/// `Retry-After` in whole seconds, never 0 (which would invite a retry at once).
fn retry_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    json_body(status, value)
}

/// A JSON answer serialised straight from `value`.
pub fn json_body(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    // Plain data (no maps with non-string keys) always serialises; were it ever not
    // to, the answer says so rather than sending an empty body.
    let text = serde_json::to_string(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "answer not serialisable");
        r#"{"error":{"code":"internal","message":"internal error"}}"#.to_owned()
    });
    let mut resp = Response::new(Body::Text(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// What a handler tells the edge about its answer, for the request's log line and
/// metrics (carried in the response's extensions).
#[derive(Debug, Clone, Default)]
pub struct Served {
    pub tenant: Option<String>,
    pub tier: Option<&'static str>,
}

/// Marks `resp` as served for `tenant`, from `tier` if a cache tier answered.
pub fn served(
    mut resp: Response<Body>,
    tenant: &str,
    tier: Option<&'static str>,
) -> Response<Body> {
    resp.extensions_mut().insert(Served {
        tenant: Some(tenant.to_owned()),
        tier,
    });
    resp
}

/// The route template of a request, as API Gateway's route keys name it: the
/// metrics' `Route` dimension (never the raw path, which holds task ids).
pub fn route_key(method: &str, path: &str) -> &'static str {
    match routes::find(method, path) {
        routes::Found::Route(r) => r.key,
        _ => "other",
    }
}

/// Runs a handler and writes the request's one log line and its metrics.
pub async fn observe(
    req: Request,
    handler: impl AsyncFnOnce(Request) -> Response<Body>,
) -> Response<Body> {
    use lambda_http::RequestExt;
    let started = std::time::Instant::now();
    let route = route_key(req.method().as_str(), route_path(&req));
    let request_bytes = AsRef::<[u8]>::as_ref(req.body()).len();
    // API Gateway's request id: the one its access logs and the client see.
    let request_id = match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    }
    .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()))
    .unwrap_or_default();
    let resp = if req.extensions().get::<event::MalformedBody>().is_some() {
        ApiError::Input(InputError::invalid(
            "body",
            "the body is marked base64 but is not valid base64",
        ))
        .into_response()
    } else {
        handler(req).await
    };
    // No route may answer more than Lambda returns (API Gateway would send a 502
    // instead): every route's answer is bounded by construction, and the one that
    // can grow (the SVG) redirects to S3; this is the backstop, with a log line.
    let resp = if crate::limits::fits_lambda_response(AsRef::<[u8]>::as_ref(resp.body())) {
        resp
    } else {
        ApiError::Internal(format!("answer of {route} too large for Lambda")).into_response()
    };
    let served = resp
        .extensions()
        .get::<Served>()
        .cloned()
        .unwrap_or_default();
    let error_code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    crate::metrics::request(&crate::metrics::RequestRecord {
        route,
        status: resp.status().as_u16(),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        request_bytes,
        response_bytes: AsRef::<[u8]>::as_ref(resp.body()).len(),
        tenant: served.tenant.as_deref(),
        tier: served.tier,
        request_id: &request_id,
        error_code,
    });
    resp
}

/// The error code of an error answer, for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// When the invocation carrying `req` ends, as far as its Lambda context says.
pub fn invocation_deadline(req: &Request) -> Option<std::time::Instant> {
    use lambda_http::RequestExt;
    req.lambda_context_ref()
        .and_then(|c| crate::deadline::from_epoch_ms(c.deadline))
}

/// The route part of a request path, whatever stage or local prefix precedes it.
pub fn route_path(req: &Request) -> &str {
    let path = req.uri().path();
    ["/api/", "/health"]
        .iter()
        .filter_map(|p| path.find(p))
        .min()
        .map(|i| &path[i..])
        .unwrap_or(path)
}

pub fn status_url(task_id: uuid::Uuid) -> String {
    format!("{TASK_ROUTES}/status/{task_id}")
}

pub fn result_url(task_id: uuid::Uuid) -> String {
    format!("{TASK_ROUTES}/result/{task_id}.svg")
}
