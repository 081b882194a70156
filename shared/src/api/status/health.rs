//! `GET /health`: the verdict for everyone, kept a few seconds per instance;
//! `GET /api/v1/health`: each backend's check, probed afresh, for the admin scope
//! (behind the authorizer in AWS). The probes are `services::health`'s.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::json;

use super::super::json_response;
use crate::app::App;
use crate::services::health::{entry_totals, probe, Checks, EntryTotals};

/// The public verdict: `ok`, `degraded` (Redis down: requests still work) or
/// `down` (503).
pub async fn health(app: &App) -> Response<Body> {
    let backends = app.backends();
    let checks = app
        .health
        .recent(crate::policy::tenants::HEALTH_VERDICT_FOR, || {
            probe(&backends)
        })
        .await;
    answer(&checks, None)
}

/// The verdict with each backend's check (without error text), the renderer, and
/// the general cache's entries (live and expired, as the original's health gave).
pub async fn health_detail(app: &App) -> Response<Body> {
    let backends = app.backends();
    let (checks, entries) = tokio::join!(probe(&backends), entry_totals(&backends));
    answer(&checks, Some(entries))
}

/// The verdict; with `detail` (the admin's), each check and the entry totals
/// (`null` when they could not be counted).
fn answer(checks: &Checks, detail: Option<Option<EntryTotals>>) -> Response<Body> {
    let code = if checks.essential() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({ "status": checks.verdict() });
    if let Some(entries) = detail {
        body["entries"] = json!(entries);
        body["renderer_version"] = json!(crate::RENDERER_VERSION);
        body["checks"] = json!({
            "postgres": {"ok": checks.postgres}, "s3": {"ok": checks.s3}, "sqs": {"ok": checks.sqs},
            "redis": if checks.redis_disabled { json!({"ok": true, "disabled": true}) } else { json!({"ok": checks.redis}) },
        });
    }
    json_response(code, &body)
}
