//! The process function: render queued tasks, one SQS batch at a time.
//!
//! SQS delivers at least once, so every step is idempotent: a task already
//! finished is acknowledged without rendering; a claim (`PENDING → PROCESSING`,
//! counting the attempt) keeps two live workers from rendering the same task, and
//! a claim left by a crashed worker goes stale and is taken over. Errors of the
//! inputs end the task as a cached `FAILURE`; errors of the system give the claim
//! back and report the message as a batch item failure, so that only it is retried
//! (and, after the queue's `maxReceiveCount`, parked in the DLQ).

use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use thiserror::Error;
use tracing::{info_span, Instrument};

use crate::app::App;
use crate::cache::OutcomeTier;
use crate::input::segmentation;
use crate::message::{InputsRef, TaskInputs, TaskMessage, MESSAGE_VERSION};
use crate::objects::svg_key;
use crate::render::{render, RenderInput};
use crate::tasks::metrics::Metric;
use crate::tasks::results::Claim;
use crate::tasks::TaskError;

/// Why a message must be delivered again.
#[derive(Debug, Error)]
pub enum RetryError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("task is claimed by another worker")]
    Busy,
    #[error("task store: {0}")]
    Store(#[from] crate::tasks::StoreError),
    #[error("object store: {0}")]
    Objects(#[from] crate::objects::ObjectError),
}

/// What became of one message that needs no retry.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    Rendered,
    Failed,
    /// Already finished, unknown, or finished by someone else meanwhile.
    Skipped,
}

pub async fn handle_batch(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let work = event.records.iter().map(|record| {
        let id = record.message_id.clone().unwrap_or_default();
        let span = info_span!("message", message_id = %id);
        async move {
            match handle_message(app, record).await {
                Ok(handled) => {
                    tracing::info!(?handled, "message handled");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "message will be retried");
                    Some(id)
                }
            }
        }
        .instrument(span)
    });
    let failed = futures::future::join_all(work).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .flatten()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}

pub async fn handle_message(app: &App, record: &SqsMessage) -> Result<Handled, RetryError> {
    let body = record
        .body
        .as_deref()
        .ok_or_else(|| RetryError::Malformed("no body".into()))?;
    let message: TaskMessage =
        serde_json::from_str(body).map_err(|e| RetryError::Malformed(e.to_string()))?;
    if message.v != MESSAGE_VERSION {
        return Err(RetryError::Malformed(format!(
            "message version {}",
            message.v
        )));
    }
    let task_id = message.task_id;
    let claim_check = match &message.inputs {
        InputsRef::S3 { key } => Some(key.clone()),
        InputsRef::Inline { .. } => None,
    };

    let submitted_at = match app.tasks.claim(task_id, app.config.stale_claim).await? {
        Claim::Claimed { submitted_at, .. } => submitted_at,
        Claim::Busy => return Err(RetryError::Busy),
        Claim::Finished(status) => {
            tracing::info!(%task_id, status = status.as_str(), "duplicate delivery: already finished");
            return Ok(Handled::Skipped);
        }
        Claim::Missing => {
            tracing::warn!(%task_id, "no such task (swept or never recorded); dropping the message");
            delete_claim_check(app, claim_check.as_deref()).await;
            return Ok(Handled::Skipped);
        }
    };

    let started = Instant::now();
    let handled = match run_claimed(app, &message, started).await {
        Ok(h) => h,
        Err(e) => {
            // Give the claim back so that the retry need not wait for it to go stale.
            if let Err(release) = app.tasks.release(task_id).await {
                tracing::warn!(error = %release, "claim not released; it will go stale");
            }
            return Err(e);
        }
    };
    // Submit to finished, queue wait included: what the client waited for.
    let latency_ms = (chrono::Utc::now() - submitted_at).num_milliseconds();
    tracing::info!(%task_id, latency_ms, "task finished");
    delete_claim_check(app, claim_check.as_deref()).await;
    Ok(handled)
}

async fn run_claimed(
    app: &App,
    message: &TaskMessage,
    started: Instant,
) -> Result<Handled, RetryError> {
    let task_id = message.task_id;
    let inputs: TaskInputs = match &message.inputs {
        InputsRef::Inline { inputs } => inputs.clone(),
        InputsRef::S3 { key } => match app.objects.get(key).await? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| RetryError::Malformed(e.to_string()))?
            }
            None => {
                let error = TaskError {
                    code: "inputs_missing".into(),
                    message: "the task's inputs are gone; submit it again".into(),
                    field: None,
                    retryable: true,
                };
                app.tasks
                    .complete_failure(task_id, &error, 0, app.config.cache_ttl)
                    .await?;
                return Ok(Handled::Failed);
            }
        },
    };

    let label_map = match inputs.segmentation_bytes() {
        Err(e) => return Err(RetryError::Malformed(format!("segmentation_png: {e}"))),
        Ok(None) => None,
        Ok(Some(png)) => {
            match segmentation::decode_scheme(
                &png,
                inputs.image.width,
                inputs.image.height,
                inputs.params.label_scheme,
                &app.config.limits,
            ) {
                Ok(map) => Some(map),
                Err(input_error) => {
                    // Deterministic: the same inputs fail the same way. Cache it.
                    let error = TaskError {
                        code: input_error.kind.code().into(),
                        message: input_error.message.clone(),
                        field: Some(input_error.field.into()),
                        retryable: false,
                    };
                    let elapsed = started.elapsed().as_millis() as i32;
                    if let Some(row) = app
                        .tasks
                        .complete_failure(task_id, &error, elapsed, app.config.cache_ttl)
                        .await?
                    {
                        backfill(app, &row).await;
                    }
                    return Ok(Handled::Failed);
                }
            }
        }
    };

    let render_start = Instant::now();
    let rendered = render(&RenderInput {
        width: inputs.image.width,
        height: inputs.image.height,
        landmarks: &inputs.landmarks,
        label_map: label_map.as_ref(),
        params: inputs.params,
    });
    let render_ms = render_start.elapsed().as_secs_f64() * 1000.0;

    let key = svg_key(&message.tenant, task_id);
    let svg_bytes = rendered.svg.len() as i64;
    app.objects
        .put(&key, rendered.svg.into_bytes(), "image/svg+xml")
        .await?;

    let result =
        serde_json::to_value(&rendered.result).map_err(|e| RetryError::Malformed(e.to_string()))?;
    let processing_ms = started.elapsed().as_millis() as i32;
    let metrics = [
        Metric {
            name: "render_ms",
            value: render_ms,
        },
        Metric {
            name: "processing_ms",
            value: f64::from(processing_ms),
        },
        Metric {
            name: "svg_bytes",
            value: svg_bytes as f64,
        },
        Metric {
            name: "regions",
            value: rendered.result.regions.len() as f64,
        },
    ];
    let finished = app
        .tasks
        .complete_success(
            task_id,
            &result,
            &key,
            svg_bytes,
            processing_ms,
            app.config.cache_ttl,
            &metrics,
        )
        .await?;
    match finished {
        Some(row) => {
            backfill(app, &row).await;
            Ok(Handled::Rendered)
        }
        None => {
            // Our claim was taken over (we were slow enough to look crashed) and the
            // other worker finished first. Its SVG is the same bytes at the same key.
            tracing::warn!(%task_id, "claim lost before completion");
            Ok(Handled::Skipped)
        }
    }
}

async fn backfill(app: &App, row: &crate::tasks::TaskRow) {
    if let Some(outcome) = row.outcome() {
        if let Err(e) = app.redis.put(&outcome).await {
            tracing::warn!(error = %e, "redis backfill skipped");
        }
    }
}

async fn delete_claim_check(app: &App, key: Option<&str>) {
    if let Some(key) = key {
        if let Err(e) = app.objects.delete_many(&[key.to_owned()]).await {
            tracing::warn!(error = %e, "claim-check object left for the sweep");
        }
    }
}
