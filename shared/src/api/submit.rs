//! `POST /api/v1/frontal/crop/submit`: validate, hash, answer from the cache tiers,
//! or record the task once and enqueue it.
//!
//! Order of work is chosen so that a cache hit costs as little as possible: the
//! label map's pixels are decoded only on a miss, and a hit writes nothing to
//! Postgres (its hit is counted in Redis and folded in by the sweep).

use chrono::Utc;
use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use tracing::{info_span, Instrument};

use super::{auth, json_response, result_url, status_url, ApiError};
use crate::app::App;
use crate::cache::OutcomeTier;
use crate::input::{multipart, InputError, Submission};
use crate::key::{input_hash, sha256, KeyInputs};
use crate::message::{InputsRef, TaskInputs, TaskMessage, MESSAGE_VERSION};
use crate::objects::input_key;
use crate::tasks::results::Inserted;
use crate::tasks::{Outcome, TaskRow, TaskStatus};
use crate::RENDERER_VERSION;

/// A PENDING task whose message was never confirmed sent is re-sent by the next
/// identical submit after this long (the first submitter may have crashed).
const UNCONFIRMED_ENQUEUE_SECS: i64 = 30;

pub async fn submit(app: &App, req: Request) -> Response<Body> {
    let span = info_span!(
        "submit",
        tenant = tracing::field::Empty,
        input_hash = tracing::field::Empty
    );
    match handle(app, &req).instrument(span).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn handle(app: &App, req: &Request) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed("use POST".into()));
    }
    let caller = auth::caller(&app.config, req)?;
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
    let form = multipart::parse(body, boundary)?;
    let sub = Submission::from_form(&form, limits)?;

    let hash = input_hash(&KeyInputs {
        tenant: &caller.tenant,
        image_sha256: sha256(sub.image),
        landmarks: &sub.landmarks,
        segmentation_sha256: sub.segmentation_png.map(sha256),
        params: sub.params,
    });
    tracing::Span::current()
        .record("tenant", caller.tenant.as_str())
        .record("input_hash", hash.as_str());

    if let Some(hit) = lookup_caches(app, &caller.tenant, &hash).await {
        return Ok(hit);
    }

    // Postgres: the source of truth. Two passes at most: a row we find may be
    // reopened or re-sent; a row we insert is ours to enqueue.
    let existing = app
        .tasks
        .find_by_hash(&caller.tenant, &hash)
        .await
        .map_err(unavailable)?;
    let row = match existing {
        Some(row) => row,
        None => {
            // Decode the label map now, so that a bad one is refused before
            // anything is written.
            sub.decode_label_map(limits)?;
            match app
                .tasks
                .insert_pending(
                    &caller.tenant,
                    &hash,
                    RENDERER_VERSION,
                    app.config.cache_ttl,
                )
                .await
                .map_err(unavailable)?
            {
                Inserted::Created(row) => {
                    enqueue(app, &row, &sub, true).await?;
                    count(app, &caller.tenant, "miss", None).await;
                    return Ok(accepted(&row, false));
                }
                Inserted::Existing(row) => row,
            }
        }
    };

    if let Some(outcome) = row.outcome() {
        backfill(app, &outcome).await;
        count(app, &outcome.tenant, "postgres", Some(outcome.task_id)).await;
        return Ok(answer_hit(app, &outcome, "postgres").await);
    }
    count(app, &caller.tenant, "miss", None).await;
    match row.status {
        TaskStatus::Failure => {
            // A retryable failure (stuck or lost task): run it again with these inputs.
            sub.decode_label_map(limits)?;
            if app
                .tasks
                .reopen(row.task_id, app.config.cache_ttl)
                .await
                .map_err(unavailable)?
            {
                enqueue(app, &row, &sub, false).await?;
            }
            Ok(accepted(&row, false))
        }
        _ => {
            // Open task. If its message was never confirmed, its submitter may have
            // died between insert and send: send it again (process is idempotent).
            let unconfirmed = row.enqueued_at.is_none()
                && (Utc::now() - row.submitted_at).num_seconds() > UNCONFIRMED_ENQUEUE_SECS;
            if unconfirmed {
                sub.decode_label_map(limits)?;
                enqueue(app, &row, &sub, false).await?;
            }
            Ok(accepted(&row, true))
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(e.to_string())
}

/// L0, then Redis (refilling L0). Redis errors are logged and skipped.
async fn lookup_caches(app: &App, tenant: &str, hash: &str) -> Option<Response<Body>> {
    if let Ok(Some(outcome)) = app.l0.get_by_hash(tenant, hash).await {
        count(app, tenant, "l0", Some(outcome.task_id)).await;
        return Some(answer_hit(app, &outcome, "l0").await);
    }
    match app.redis.get_by_hash(tenant, hash).await {
        Ok(Some(outcome)) => {
            let _ = app.l0.put(&outcome).await;
            count(app, tenant, "redis", Some(outcome.task_id)).await;
            Some(answer_hit(app, &outcome, "redis").await)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "redis lookup skipped");
            None
        }
    }
}

async fn backfill(app: &App, outcome: &Outcome) {
    if let Err(e) = app.redis.put(outcome).await {
        tracing::warn!(error = %e, "redis backfill skipped");
    }
    let _ = app.l0.put(outcome).await;
}

/// Counts the request in the tenant's statistics (and a hit on its task), in Redis.
async fn count(app: &App, tenant: &str, tier: &str, hit: Option<uuid::Uuid>) {
    if let Err(e) = app.redis.record_request(tenant, tier, hit).await {
        tracing::warn!(error = %e, "request not counted");
    }
}

async fn answer_hit(app: &App, outcome: &Outcome, tier: &str) -> Response<Body> {
    if outcome.status == TaskStatus::Failure {
        // The error shape of every other 4xx (code, message, field), with the task.
        let error = outcome
            .error
            .as_ref()
            .map(|e| json!({ "code": e.code, "message": e.message, "field": e.field }));
        let body = json!({
            "task_id": outcome.task_id,
            "status": "FAILURE",
            "cached": true,
            "cache_tier": tier,
            "error": error,
            "status_url": status_url(outcome.task_id),
        });
        return json_response(StatusCode::UNPROCESSABLE_ENTITY, &body);
    }
    let svg_url = match &outcome.svg_s3_key {
        Some(key) => app
            .objects
            .presign_get(key, app.config.presign_ttl)
            .await
            .ok(),
        None => None,
    };
    json_response(
        StatusCode::OK,
        &json!({
            "task_id": outcome.task_id,
            "status": "SUCCESS",
            "cached": true,
            "cache_tier": tier,
            "result": outcome.result,
            "processing_time_ms": outcome.processing_time_ms,
            "completed_at": outcome.completed_at,
            "svg_url": svg_url,
            "result_url": result_url(outcome.task_id),
            "status_url": status_url(outcome.task_id),
        }),
    )
}

fn accepted(row: &TaskRow, existing: bool) -> Response<Body> {
    let mut resp = json_response(
        StatusCode::ACCEPTED,
        &json!({
            "task_id": row.task_id,
            "status": if row.status == TaskStatus::Processing { "PROCESSING" } else { "PENDING" },
            "cached": false,
            "deduplicated": existing,
            "status_url": status_url(row.task_id),
            "result_url": result_url(row.task_id),
        }),
    );
    if let Ok(v) = header::HeaderValue::from_str(&status_url(row.task_id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Sends the task's message: inputs inline when they fit, else through S3.
/// `created`: this call inserted the row, so on failure it removes it again and the
/// client's retry starts clean.
async fn enqueue(
    app: &App,
    row: &TaskRow,
    sub: &Submission<'_>,
    created: bool,
) -> Result<(), ApiError> {
    let inputs = TaskInputs::new(
        sub.image_info,
        sub.landmarks.clone(),
        sub.segmentation_png,
        sub.params,
    );
    let message = TaskMessage {
        v: MESSAGE_VERSION,
        task_id: row.task_id,
        tenant: row.tenant.clone(),
        input_hash: row.input_hash.clone(),
        inputs: InputsRef::Inline { inputs },
    };
    let sent = async {
        let inline =
            serde_json::to_string(&message).map_err(|e| ApiError::Internal(e.to_string()))?;
        let (body, claim_check) = if inline.len() <= app.config.limits.max_message_bytes {
            (inline, None)
        } else {
            let InputsRef::Inline { inputs } = &message.inputs else {
                unreachable!("built inline above")
            };
            let key = input_key(&row.tenant, row.task_id);
            let bytes =
                serde_json::to_vec(inputs).map_err(|e| ApiError::Internal(e.to_string()))?;
            app.objects
                .put(&key, bytes, "application/json")
                .await
                .map_err(unavailable)?;
            let by_ref = TaskMessage {
                inputs: InputsRef::S3 { key: key.clone() },
                ..message.clone()
            };
            (
                serde_json::to_string(&by_ref).map_err(|e| ApiError::Internal(e.to_string()))?,
                Some(key),
            )
        };
        app.queue.send(body).await.map_err(unavailable)?;
        Ok::<_, ApiError>(claim_check)
    }
    .await;
    match sent {
        Ok(claim_check) => {
            // The message is out: the task will run even if this bookkeeping fails.
            if let Err(e) = app
                .tasks
                .mark_enqueued(row.task_id, claim_check.as_deref())
                .await
            {
                tracing::warn!(error = %e, task_id = %row.task_id, "enqueue not recorded");
            }
            Ok(())
        }
        Err(e) => {
            if created {
                if let Err(undo) = app.tasks.delete_unqueued(row.task_id).await {
                    tracing::error!(error = %undo, task_id = %row.task_id, "could not undo an unqueued task; the sweep will fail it");
                }
            }
            Err(e)
        }
    }
}
