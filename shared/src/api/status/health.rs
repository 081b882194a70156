//! `GET /health`: the verdict for everyone, each backend's check for the admin.

use std::time::Duration;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::json;

use super::super::json_response;
use crate::app::App;

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
