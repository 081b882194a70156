//! A task's status and its SVG, always looked up together with the caller's tenant.

use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};
use uuid::Uuid;

use super::super::{caching, json_response, result_url, status_url, ApiError};
use crate::app::App;
use crate::cache::outcomes::Found;
use crate::objects::ObjectError;
use crate::policy::answers::{inline_svg, INLINE_SVG_MAX_BYTES};
use crate::tasks::{Outcome, TaskStatus};

/// What `?include=` asks a status answer to carry besides the task: `svg`, the
/// SVG itself (a finished task's, up to [`INLINE_SVG_MAX_BYTES`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Include {
    svg: bool,
}

impl Include {
    pub(super) fn parse(req: &Request) -> Result<Include, ApiError> {
        let params = req.query_string_parameters();
        let mut include = Include::default();
        // API Gateway joins a repeated key's values with commas.
        let values = params.all("include").unwrap_or_default();
        for value in values.iter().flat_map(|v| v.split(',')) {
            match value {
                "svg" => include.svg = true,
                _ => {
                    return Err(crate::input::InputError::invalid(
                        "include",
                        "the one thing a status answer can include is `svg`",
                    )
                    .into())
                }
            }
        }
        Ok(include)
    }

    /// The canonical form, for the answer's `ETag`.
    fn as_str(self) -> &'static str {
        if self.svg {
            "svg"
        } else {
            ""
        }
    }
}

/// Why a status answer asked for the SVG does not carry it (`svg_omitted`).
fn omitted(reason: &str, message: &str) -> Value {
    json!({ "reason": reason, "message": message, "max_bytes": INLINE_SVG_MAX_BYTES })
}

fn too_large(bytes: u64) -> Value {
    let mut o = omitted(
        "too_large",
        &format!(
            "the SVG is {bytes} bytes, over the {INLINE_SVG_MAX_BYTES} a status answer \
             carries inline: fetch it from svg_url"
        ),
    );
    o["bytes"] = json!(bytes);
    o
}

/// Where an asked-for SVG comes from: read from `key`, or not carried (and why).
/// Judged on the size the render recorded, so the verdict is known before S3 is
/// read and a `304` never reads it.
fn svg_plan(outcome: &Outcome) -> Result<&str, Value> {
    let key = match (&outcome.status, &outcome.svg_s3_key) {
        (TaskStatus::Success, Some(key)) => key,
        (TaskStatus::Success, None) => return Err(omitted("no_svg", "no SVG was stored")),
        _ => return Err(omitted("no_svg", "the task failed; it has no SVG")),
    };
    let bytes = outcome
        .result
        .as_deref()
        .and_then(|r| r.get("svg_bytes"))
        .and_then(Value::as_u64);
    match bytes {
        Some(bytes) if !inline_svg(bytes) => Err(too_large(bytes)),
        _ => Ok(key),
    }
}

/// The SVG at `key`, read no further than [`INLINE_SVG_MAX_BYTES`]; or why not.
async fn read_inline(app: &App, key: &str) -> Result<String, Value> {
    match app.objects.get_bounded(key, INLINE_SVG_MAX_BYTES).await {
        Ok(Some(bytes)) => String::from_utf8(bytes)
            .map_err(|_| omitted("unavailable", "the stored SVG is not UTF-8")),
        Ok(None) => Err(omitted("unavailable", "the SVG has expired from storage")),
        Err(ObjectError::TooLarge { size, .. }) => Err(too_large(size)),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the SVG to inline");
            Err(omitted(
                "unavailable",
                "the SVG could not be read now: fetch it from svg_url",
            ))
        }
    }
}

pub(super) fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
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

pub(super) async fn task_status(
    app: &App,
    req: &Request,
    tenant: &str,
    task_id: Uuid,
    include: Include,
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
            if include.svg && row.status.is_finished() {
                body["svg_omitted"] = omitted("no_svg", "the task failed; it has no SVG");
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
    let mut read_svg = None;
    if include.svg {
        match svg_plan(&outcome) {
            Ok(key) => read_svg = Some(key),
            Err(why) => body["svg_omitted"] = why,
        }
    }
    // The tag covers the answer without the SVG, whose bytes the content key fixes.
    let text = body.to_string();
    let mut etag = complete
        .then(|| caching::status_etag(&outcome.input_hash, include.as_str(), text.as_bytes()));
    if let Some(etag) = etag.as_deref().filter(|e| caching::not_modified(req, e)) {
        return Ok(caching::unchanged(etag, max_age, false));
    }
    let text = match read_svg {
        None => text,
        Some(key) => {
            match read_inline(app, key).await {
                Ok(svg) => body["svg"] = json!(svg),
                Err(why) => {
                    body["svg_omitted"] = why;
                    // Not the answer its tag stands for: not to be kept.
                    etag = None;
                }
            }
            body.to_string()
        }
    };
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

pub(super) async fn svg(
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
    // Read no more than an answer can carry: a larger SVG is fetched by the client
    // from S3 itself, at a URL signed for this request.
    let bytes = match app
        .objects
        .get_bounded(&key, crate::limits::LAMBDA_SYNC_PAYLOAD_BYTES as u64)
        .await
    {
        Ok(Some(bytes)) if crate::limits::fits_lambda_response(&bytes) => bytes,
        Ok(Some(_)) | Err(crate::objects::ObjectError::TooLarge { .. }) => {
            return redirect_to_s3(app, &key).await;
        }
        Ok(None) => return Err(ApiError::NotFound("the SVG has expired".into())),
        Err(e) => return Err(e.into()),
    };
    let mut resp = Response::new(Body::Text(String::from_utf8_lossy(&bytes).into_owned()));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("image/svg+xml"),
    );
    caching::finished(&mut resp, &etag, max_age, true);
    Ok(resp)
}

/// `303 See Other` to the SVG in S3: an answer through the function is at most
/// Lambda's 6 MB (API Gateway would turn a larger one into a 502). The URL is signed
/// for `PRESIGN_TTL_SECS`, so the redirect itself is never cached.
async fn redirect_to_s3(app: &App, key: &str) -> Result<Response<Body>, ApiError> {
    let url = app
        .links
        .svg_url(app.objects.as_ref(), key, app.config.presign_ttl)
        .await?;
    let location = header::HeaderValue::from_str(&url)
        .map_err(|_| ApiError::Internal("presigned URL is not a header value".into()))?;
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let h = resp.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, no-store"),
    );
    Ok(resp)
}
