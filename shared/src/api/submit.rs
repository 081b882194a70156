//! `POST /api/v1/frontal/crop/submit`: the HTTP edge of [`crate::services::submit`].
//! It parses the multipart form, authorises the caller, and turns the service's
//! outcome into 200 (cached result), 422 (cached failure) or 202 (accepted).

use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use tracing::{info_span, Instrument};

use super::{auth, json_response, result_url, status_url, ApiError};
use crate::app::App;
use crate::cache::outcomes::Tier;
use crate::input::{multipart, InputError, Submission};
use crate::services::submit::SubmitOutcome;
use crate::services::uploads;
use crate::tasks::{Outcome, TaskStatus};

pub async fn submit(app: &App, req: Request) -> Response<Body> {
    super::observe(req, async |req| answer(app, req).await).await
}

async fn answer(app: &App, req: Request) -> Response<Body> {
    let span = info_span!(
        "submit",
        tenant = tracing::field::Empty,
        input_hash = tracing::field::Empty
    );
    let deadline = super::invocation_deadline(&req);
    match crate::deadline::scope(deadline, handle(app, &req).instrument(span)).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn handle(app: &App, req: &Request) -> Result<Response<Body>, ApiError> {
    use super::routes::{self, Found, Function, Handler};
    let path = super::route_path(req);
    let handler = match routes::find(req.method().as_str(), path) {
        Found::Route(r) if r.function == Function::Submit => r.handler,
        Found::WrongMethod => return Err(ApiError::MethodNotAllowed("use POST".into())),
        Found::Route(_) | Found::Unknown => {
            return Err(ApiError::NotFound(format!(
                "no route for {} {path}",
                req.method()
            )))
        }
    };
    let caller = auth::caller(&app.config, req)?;
    if handler == Handler::Uploads {
        let upload = uploads::create(
            app.objects.as_ref(),
            &app.quota,
            &app.config.limits,
            &caller.tenant,
        )
        .await?;
        let mut resp = json_response(StatusCode::CREATED, &json!(upload));
        // The form is a credential until it expires: no cache may keep it.
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        return Ok(super::served(resp, &caller.tenant, None));
    }
    let limits = &app.config.limits;
    let body: &[u8] = req.body().as_ref();
    if body.len() > limits.max_body_bytes {
        return Err(InputError::too_large(
            "body",
            format!(
                "{} bytes is over the limit of {} bytes",
                body.len(),
                limits.max_body_bytes
            ),
        )
        .into());
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            InputError::unsupported("body", "expected Content-Type multipart/form-data")
        })?;
    let boundary = multipart::boundary(content_type)?;
    let mut form = multipart::parse(body, boundary)?;
    // A direct upload stands in for the image part; it may be larger than a body.
    let upload = match form.get(uploads::FIELD) {
        Some(part) => {
            if form.get("image").is_some() {
                return Err(InputError::invalid(
                    uploads::FIELD,
                    "send either image or image_upload, not both",
                )
                .into());
            }
            Some(uploads::parse_id(part.data)?)
        }
        None => None,
    };
    let uploaded = match upload {
        Some(id) => Some(
            uploads::fetch(app.objects.as_ref(), &app.config.limits, &caller.tenant, id).await?,
        ),
        None => None,
    };
    let upload_limits;
    let limits = match &uploaded {
        Some(bytes) => {
            form.parts.retain(|p| p.name != uploads::FIELD);
            form.parts.push(multipart::Part {
                name: "image",
                filename: None,
                content_type: None,
                data: bytes,
            });
            upload_limits = crate::limits::Limits {
                max_image_bytes: limits.max_upload_bytes,
                ..limits.clone()
            };
            &upload_limits
        }
        None => limits,
    };
    let sub = Submission::from_form(&form, limits)?;
    tracing::Span::current().record("tenant", caller.tenant.as_str());
    let outcome = app.submitting().submit(&caller.tenant, &sub).await?;
    if let Some(id) = upload {
        uploads::forget(&app.objects, &caller.tenant, id);
    }
    let (resp, tier) = match outcome {
        SubmitOutcome::Cached { outcome, tier } => {
            (answer_hit(app, &outcome, tier).await, Some(tier.as_str()))
        }
        SubmitOutcome::Accepted {
            task_id,
            status,
            deduplicated,
        } => {
            let wait = app.poll.retry_after(&app.tasks).await;
            (accepted(task_id, status, deduplicated, wait), None)
        }
    };
    Ok(super::served(resp, &caller.tenant, tier))
}

async fn answer_hit(app: &App, outcome: &Outcome, tier: Tier) -> Response<Body> {
    let tier = tier.as_str();
    if outcome.status == TaskStatus::Failure {
        return super::ApiError::CachedFailure {
            task_id: outcome.task_id,
            tier,
            error: outcome.error.clone(),
        }
        .into_response();
    }
    let svg_url = match &outcome.svg_s3_key {
        Some(key) => app
            .links
            .svg_url(app.objects.as_ref(), key, app.config.presign_ttl)
            .await
            .ok(),
        None => None,
    };
    // Serialised from borrowed fields: the result (the largest part) is written once,
    // never cloned into an intermediate JSON tree. Keys in the order `json!` would
    // give them (sorted), so the bytes are the same either way.
    #[derive(serde::Serialize)]
    struct Hit<'a> {
        cache_tier: &'static str,
        cached: bool,
        completed_at: &'a Option<chrono::DateTime<chrono::Utc>>,
        processing_time_ms: Option<i32>,
        result: Option<&'a serde_json::Value>,
        result_url: String,
        status: &'static str,
        status_url: String,
        svg_url: Option<String>,
        task_id: uuid::Uuid,
    }
    let hit = Hit {
        cache_tier: tier,
        cached: true,
        completed_at: &outcome.completed_at,
        processing_time_ms: outcome.processing_time_ms,
        result: outcome.result.as_deref(),
        result_url: result_url(outcome.task_id),
        status: "SUCCESS",
        status_url: status_url(outcome.task_id),
        svg_url,
        task_id: outcome.task_id,
    };
    super::json_body(StatusCode::OK, &hit)
}

fn accepted(
    task_id: uuid::Uuid,
    status: TaskStatus,
    deduplicated: bool,
    retry_after_secs: u64,
) -> Response<Body> {
    let mut resp = json_response(
        StatusCode::ACCEPTED,
        &json!({
            "task_id": task_id,
            "status": status.as_str(),
            "cached": false,
            "deduplicated": deduplicated,
            "status_url": status_url(task_id),
            "result_url": result_url(task_id),
        }),
    );
    let h = resp.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(&status_url(task_id)) {
        h.insert(header::LOCATION, v);
    }
    h.insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(retry_after_secs),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}
