//! The process function: render queued tasks, one SQS batch at a time.
//!
//! SQS delivers at least once, so every step is idempotent: a task already
//! finished is acknowledged without rendering; a claim (`PENDING → PROCESSING`,
//! counting the attempt) keeps two live workers from rendering the same task, and
//! a claim left by a crashed worker goes stale and is taken over. Errors of the
//! inputs end the task as a cached `FAILURE`, a render past its deadline as a
//! retryable one (the clock is no verdict on the inputs); errors of the system give
//! the claim back and report the message as a batch item failure, so that only it is
//! retried (and, after the queue's `maxReceiveCount`, parked in the DLQ). Which is
//! which is decided in [`crate::tasks::failure`].

use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use thiserror::Error;
use tracing::{info_span, Instrument};

use crate::app::App;
use crate::input::segmentation;
use crate::message::{InputsRef, TaskInputs, TaskMessage, MESSAGE_VERSION};
use crate::objects::svg_key;
use crate::render::{render_within, RenderInput};
use crate::tasks::failure::Failure;
use crate::tasks::metrics::Metric;
use crate::tasks::results::Claim;
use crate::tasks::{Stage, Stages};

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

/// A queue message's body as process reads it. The queue is not trusted: anything
/// that is not a message of this version is `Malformed` (and, redelivered, ends in
/// the DLQ), never a panic. Pure, so that it can be fuzzed.
pub fn decode_message(body: &str) -> Result<TaskMessage, RetryError> {
    let message: TaskMessage = serde_json::from_str(body)
        .map_err(|e| RetryError::Malformed(crate::telemetry::json_error(&e)))?;
    if message.v != MESSAGE_VERSION {
        return Err(RetryError::Malformed(format!(
            "message version {}",
            message.v
        )));
    }
    Ok(message)
}

/// Inputs that travelled through S3 (a claim check) as process reads them.
pub fn decode_inputs(bytes: &[u8]) -> Result<TaskInputs, RetryError> {
    serde_json::from_slice(bytes)
        .map_err(|e| RetryError::Malformed(crate::telemetry::json_error(&e)))
}

pub async fn handle_message(app: &App, record: &SqsMessage) -> Result<Handled, RetryError> {
    let body = record
        .body
        .as_deref()
        .ok_or_else(|| RetryError::Malformed("no body".into()))?;
    let message = decode_message(body)?;
    let task_id = message.task_id;
    let claim_check = match &message.inputs {
        InputsRef::S3 { key } => Some(key.clone()),
        InputsRef::Inline { .. } => None,
    };

    let (submitted_at, owner) = match app.tasks.claim(task_id, app.config.stale_claim).await? {
        Claim::Claimed {
            submitted_at,
            tenant,
            inputs_sha256,
            ..
        } => (
            submitted_at,
            Owner {
                tenant,
                inputs_sha256,
            },
        ),
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
    let handled = match run_claimed(app, &message, &owner, started).await {
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

/// What the task's row says of it; the message must agree.
struct Owner {
    tenant: String,
    inputs_sha256: Option<String>,
}

async fn run_claimed(
    app: &App,
    message: &TaskMessage,
    owner: &Owner,
    started: Instant,
) -> Result<Handled, RetryError> {
    let task_id = message.task_id;
    let inputs: TaskInputs = match &message.inputs {
        InputsRef::Inline { inputs } => inputs.clone(),
        InputsRef::S3 { key } => match app.objects.get(key).await? {
            Some(bytes) => decode_inputs(&bytes)?,
            None => {
                let error = Failure::InputsMissing.error();
                app.tasks
                    .complete_failure(task_id, &error, 0, app.config.cache_ttl)
                    .await?;
                return Ok(Handled::Failed);
            }
        },
    };

    // The queue is not trusted: the inputs must be the ones recorded with the row
    // (rows from before the outbox carry no hash), and the tenant is the row's.
    if let Some(expected) = &owner.inputs_sha256 {
        let json = serde_json::to_vec(&inputs).map_err(|e| RetryError::Malformed(e.to_string()))?;
        if hex::encode(crate::key::sha256(&json)) != *expected {
            // A forged message, or one serialised by another release (a deploy with
            // tasks in flight). Never dropped silently: the task ends as a retryable
            // failure its client reads at once, and the next identical submit runs it
            // again with this release's inputs.
            tracing::warn!(%task_id, "message inputs do not match the task's");
            crate::metrics::error("inputs_mismatch");
            let error = Failure::InputsMismatch.error();
            app.tasks
                .complete_failure(task_id, &error, 0, app.config.cache_ttl)
                .await?;
            return Ok(Handled::Failed);
        }
    }

    // Room in the batch's memory budget for this render, held until its SVG is stored:
    // ten worst-case records of one batch wait for each other instead of running the
    // instance out of memory together (and taking the innocent ones down with them).
    let _room = app
        .render_memory
        .acquire_many(render_weight(&app.config, &inputs))
        .await
        .map_err(|_| RetryError::Malformed("render memory semaphore closed".into()))?;

    // Each stage is timed here, once, into `stages`: the row, processing_metrics and
    // the EMF metric all read these figures (see `tasks::stages`).
    let mut stages = Stages::default();
    let decode_start = Instant::now();
    let label_map = match inputs.segmentation_bytes() {
        Err(e) => return Err(RetryError::Malformed(format!("segmentation_png: {e}"))),
        Ok(None) => None,
        Ok(Some(png)) => {
            let decoded = segmentation::decode_scheme(
                &png,
                inputs.image.width,
                inputs.image.height,
                inputs.params.label_scheme,
                &app.config.limits,
            );
            match decoded {
                Ok(map) => Some(map),
                Err(input_error) => {
                    return fail_deterministically(app, task_id, &input_error, started).await
                }
            }
        }
    };
    stages.finish(Stage::Decode, decode_start);

    let render_start = Instant::now();
    let rendered = render_within(
        &RenderInput {
            width: inputs.image.width,
            height: inputs.image.height,
            landmarks: &inputs.landmarks,
            label_map: label_map.as_ref(),
            params: inputs.params,
        },
        &app.config.limits.render,
    );
    drop(label_map);
    let rendered = match rendered {
        Ok(r) => r,
        Err(over) if over.is_deterministic() => {
            let input_error = crate::input::InputError::too_complex("segmentation_map", over);
            return fail_deterministically(app, task_id, &input_error, started).await;
        }
        Err(_) => return fail_retryably(app, task_id, Failure::RenderTimeout, started).await,
    };
    let render_ms = render_start.elapsed().as_secs_f64() * 1000.0;
    // The renderer times its own phases (simplification runs inside tracing).
    stages.set(Stage::Trace, rendered.trace_ms);
    stages.set(Stage::Simplify, rendered.simplify_ms);
    stages.set(Stage::Svg, rendered.svg_ms);

    let key = svg_key(&owner.tenant, task_id);
    let svg_bytes = rendered.svg.len() as i64;
    let put_start = Instant::now();
    app.objects
        .put(&key, rendered.svg.into_bytes(), "image/svg+xml")
        .await?;
    stages.finish(Stage::S3Put, put_start);

    let result =
        serde_json::to_value(&rendered.result).map_err(|e| RetryError::Malformed(e.to_string()))?;
    let processing_ms = started.elapsed().as_millis() as i32;
    let metrics = [
        Metric {
            name: "render_ms",
            value: render_ms,
        },
        Metric {
            name: crate::tasks::metrics::SUCCESS_METRIC,
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
    let commit_start = Instant::now();
    let finished = app
        .tasks
        .complete_success(
            task_id,
            &result,
            &key,
            svg_bytes,
            processing_ms,
            app.config.cache_ttl,
            &stages,
            &metrics,
        )
        .await?;
    stages.finish(Stage::Commit, commit_start);
    match finished {
        Some(mut row) => {
            let commit_ms = stages.get(Stage::Commit).unwrap_or_default();
            // The commit is known only now; the task is done either way.
            if let Err(e) = app.tasks.record_commit(task_id, commit_ms).await {
                tracing::warn!(error = %e, "commit stage not recorded");
            }
            row.stages = Some(stages);
            backfill(app, &row).await;
            let regions: Vec<&str> = rendered
                .result
                .regions
                .iter()
                .map(|r| r.name.as_str())
                .collect();
            let mut timings = stages.named();
            timings.push(("total", started.elapsed().as_secs_f64() * 1000.0));
            crate::metrics::task_completed("SUCCESS", &timings, &regions, inputs.landmarks.len());
            Ok(Handled::Rendered)
        }
        None => {
            // Our claim was taken over (we were slow enough to look crashed) and the
            // other worker finished first: its SVG is the same bytes at the same key.
            // Or the row is gone (its tenant's data was deleted while we rendered):
            // then nothing will ever point at the SVG just written, so it goes too.
            match app.tasks.get(&owner.tenant, task_id).await {
                Ok(None) => {
                    if let Err(e) = app.objects.delete_many(std::slice::from_ref(&key)).await {
                        tracing::warn!(%task_id, error = %e, "orphan SVG of an erased task kept");
                    }
                    tracing::info!(%task_id, "task erased while rendering");
                }
                Ok(Some(_)) => tracing::warn!(%task_id, "claim lost before completion"),
                Err(e) => tracing::warn!(%task_id, error = %e, "claim lost; row not read"),
            }
            Ok(Handled::Skipped)
        }
    }
}

/// Ends a task whose inputs cannot be rendered: the same inputs fail the same way,
/// so the failure is cached (a resubmit answers 422) and the message is not retried.
async fn fail_deterministically(
    app: &App,
    task_id: uuid::Uuid,
    input_error: &crate::input::InputError,
    started: Instant,
) -> Result<Handled, RetryError> {
    let error = Failure::Inputs(input_error).error();
    let elapsed = started.elapsed().as_millis() as i32;
    crate::metrics::task_completed("FAILURE", &[], &[], 0);
    crate::metrics::error(input_error.kind.code());
    if let Some(row) = app
        .tasks
        .complete_failure(task_id, &error, elapsed, app.config.cache_ttl)
        .await?
    {
        backfill(app, &row).await;
    }
    Ok(Handled::Failed)
}

/// A render without a label map (landmark regions only) holds less than this.
const LANDMARKS_RENDER_BYTES: u64 = 1 << 20;

/// This render's share of the batch memory budget, in KiB (rounded up): the most
/// heap a render of its label map's size can hold within the render budget, map and
/// SVG included ([`crate::render::budget::heap_bound`], measured against the worst
/// maps by `tests/worst_maps.rs`). Never more than the whole budget, so that one
/// large record still runs (alone).
pub fn render_weight(config: &crate::config::Config, inputs: &TaskInputs) -> u32 {
    let bytes = if inputs.has_segmentation() {
        crate::render::budget::heap_bound(
            &config.limits.render,
            inputs.image.width,
            inputs.image.height,
        )
    } else {
        LANDMARKS_RENDER_BYTES
    };
    let total_kib = config.batch_memory_bytes / 1024;
    bytes
        .div_ceil(1024)
        .clamp(1, total_kib.max(1))
        .min(u64::from(u32::MAX)) as u32
}

/// Ends a task whose failure says nothing certain about its inputs (see
/// [`Failure::fate`]): its client reads it at once, nothing caches it, the message is
/// not retried, and the next identical submit runs the task again.
async fn fail_retryably(
    app: &App,
    task_id: uuid::Uuid,
    failure: Failure<'_>,
    started: Instant,
) -> Result<Handled, RetryError> {
    let error = failure.error();
    let elapsed = started.elapsed().as_millis() as i32;
    tracing::warn!(%task_id, code = %error.code, "task failed retryably");
    crate::metrics::task_completed("FAILURE", &[], &[], 0);
    crate::metrics::error(&error.code);
    app.tasks
        .complete_failure(task_id, &error, elapsed, app.config.cache_ttl)
        .await?;
    Ok(Handled::Failed)
}

async fn backfill(app: &App, row: &crate::tasks::TaskRow) {
    if let Some(outcome) = row.outcome() {
        app.outcomes.publish(&outcome).await;
    }
}

async fn delete_claim_check(app: &App, key: Option<&str>) {
    if let Some(key) = key {
        if let Err(e) = app.objects.delete_many(&[key.to_owned()]).await {
            tracing::warn!(error = %e, "claim-check object left for the sweep");
        }
    }
}
