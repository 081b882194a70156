//! Submitting: a validated [`Submission`] in, a [`SubmitOutcome`] out. Every decision
//! of a submit lives here; the HTTP edge (`api::submit`) only parses and translates.
//!
//! Order of work is chosen so that a hit costs as little as possible: the cache key
//! first, then the tiers ([`crate::cache::outcomes`]); the label map's pixels are
//! decoded (and its cost judged against the render budget) only on a miss.
//!
//! A miss records the task and its queue message in one INSERT (the outbox), then
//! sends the message. If the send fails, the task is still accepted: its message is
//! in the row, and the relay (`sweep::relay`) sends it. A task id once answered is
//! therefore never taken back, and no task waits on a client's retry.

use chrono::Utc;
use thiserror::Error;
use uuid::Uuid;

use crate::app::App;
use crate::cache::outcomes::{Answer, Found, Tier};
use crate::input::{InputError, Submission};
use crate::key::{input_hash, sha256, KeyInputs};
use crate::message::{InputsRef, TaskInputs, TaskMessage, MESSAGE_VERSION};
use crate::objects::input_key;
use crate::tasks::results::{Inserted, Pending};
use crate::tasks::{Outcome, StoreError, TaskRow, TaskStatus};
use crate::RENDERER_VERSION;

// Returned once per request and matched at once: boxing the outcome would add an
// allocation to every hit for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SubmitOutcome {
    /// A finished outcome (a success, or a cached deterministic failure).
    Cached { outcome: Outcome, tier: Tier },
    /// The task will run (or is running): poll its status.
    Accepted {
        task_id: Uuid,
        status: TaskStatus,
        /// Another identical submit created it.
        deduplicated: bool,
    },
}

#[derive(Debug, Error)]
pub enum SubmitError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("task store: {0}")]
    Store(#[from] StoreError),
    #[error("object store: {0}")]
    Objects(#[from] crate::objects::ObjectError),
    #[error("{0}")]
    Internal(String),
}

/// The cache key of `tenant`'s submission.
pub fn key_of(tenant: &str, sub: &Submission<'_>) -> String {
    input_hash(&KeyInputs {
        tenant,
        image_sha256: sha256(sub.image),
        landmarks: &sub.landmarks,
        segmentation_sha256: sub.segmentation_png.map(sha256),
        params: sub.params,
    })
}

pub async fn submit(
    app: &App,
    tenant: &str,
    sub: &Submission<'_>,
) -> Result<SubmitOutcome, SubmitError> {
    let hash = key_of(tenant, sub);
    tracing::Span::current().record("input_hash", hash.as_str());
    let cache = &app.outcomes;

    // At most three passes: a row inserted, reopened or deleted concurrently by
    // another submit or the sweep is looked at again.
    for _ in 0..3 {
        let row = match cache.by_hash(&app.tasks, tenant, &hash).await? {
            Found::Hit(outcome, tier) => {
                cache
                    .count(tenant, Answer::Hit(tier), Some(outcome.task_id))
                    .await;
                return Ok(SubmitOutcome::Cached { outcome, tier });
            }
            Found::Row(row) => row,
            Found::Absent => {
                // Judge the label map now, so that a bad one is refused before
                // anything is written.
                sub.decode_label_map(&app.config.limits)?;
                let task_id = Uuid::new_v4();
                let prepared = prepare(app, tenant, &hash, task_id, sub).await?;
                let pending = Pending {
                    task_id,
                    outbox: Some(prepared.body.clone()),
                    inputs_sha256: Some(prepared.inputs_sha256.clone()),
                };
                match app
                    .tasks
                    .insert_with_outbox(
                        tenant,
                        &hash,
                        RENDERER_VERSION,
                        app.config.cache_ttl,
                        &pending,
                    )
                    .await?
                {
                    Inserted::Created(row) => {
                        send(app, row.task_id, &prepared).await;
                        cache.count(tenant, Answer::Miss, None).await;
                        return Ok(accepted(&row, false));
                    }
                    Inserted::Existing(_) => {
                        // Someone else recorded it first; an object we stored for
                        // our own claim check is not needed.
                        forget_claim_check(app, &prepared).await;
                        continue;
                    }
                }
            }
        };
        if row.status == TaskStatus::Failure || row.is_expired() {
            // A retryable failure (lost or stuck), or an entry past its TTL that the
            // sweep has not deleted yet: run it again with these inputs.
            sub.decode_label_map(&app.config.limits)?;
            let prepared = prepare(app, tenant, &hash, row.task_id, sub).await?;
            if app
                .tasks
                .reopen(
                    row.task_id,
                    app.config.cache_ttl,
                    &prepared.body,
                    &prepared.inputs_sha256,
                )
                .await?
            {
                send(app, row.task_id, &prepared).await;
                cache.count(tenant, Answer::Miss, None).await;
                return Ok(SubmitOutcome::Accepted {
                    task_id: row.task_id,
                    status: TaskStatus::Pending,
                    deduplicated: false,
                });
            }
            // The row changed in between: another submit reopened it, or the sweep
            // deleted it. Answer from what is there now, never with a task id that
            // nothing will run. (A claim-check object stays: a concurrent reopen of
            // the same task may use the same key; the lifecycle rule removes it.)
            continue;
        }
        cache.count(tenant, Answer::Miss, None).await;
        // Open task. If its message was never confirmed, its submitter may have died
        // between insert and send: send it again (process is idempotent).
        let unconfirmed = row.enqueued_at.is_none()
            && (Utc::now() - row.submitted_at).num_seconds()
                > crate::policy::lifetime::UNCONFIRMED_ENQUEUE.as_secs() as i64;
        if unconfirmed {
            sub.decode_label_map(&app.config.limits)?;
            let prepared = prepare(app, tenant, &hash, row.task_id, sub).await?;
            send(app, row.task_id, &prepared).await;
        }
        return Ok(accepted(&row, true));
    }
    Err(SubmitError::Internal(
        "the task changed twice while being submitted; retry".into(),
    ))
}

fn accepted(row: &TaskRow, deduplicated: bool) -> SubmitOutcome {
    SubmitOutcome::Accepted {
        task_id: row.task_id,
        status: if row.status == TaskStatus::Processing {
            TaskStatus::Processing
        } else {
            TaskStatus::Pending
        },
        deduplicated,
    }
}

/// A task's queue message, ready to be recorded and sent.
struct Prepared {
    body: String,
    inputs_sha256: String,
    claim_check: Option<String>,
}

/// Builds the message: inputs inline when they fit, else stored in S3 first and
/// referenced (claim check). `inputs_sha256` is over the inputs' JSON, which the
/// worker recomputes to authenticate what it renders.
async fn prepare(
    app: &App,
    tenant: &str,
    hash: &str,
    task_id: Uuid,
    sub: &Submission<'_>,
) -> Result<Prepared, SubmitError> {
    let inputs = TaskInputs::new(
        sub.image_info,
        sub.landmarks.clone(),
        sub.segmentation_png,
        sub.params,
    );
    let inputs_json =
        serde_json::to_vec(&inputs).map_err(|e| SubmitError::Internal(e.to_string()))?;
    let inputs_sha256 = hex::encode(sha256(&inputs_json));
    let mut message = TaskMessage {
        v: MESSAGE_VERSION,
        task_id,
        tenant: tenant.to_owned(),
        input_hash: hash.to_owned(),
        inputs: InputsRef::Inline { inputs },
    };
    let inline =
        serde_json::to_string(&message).map_err(|e| SubmitError::Internal(e.to_string()))?;
    if inline.len() <= app.config.limits.max_message_bytes {
        return Ok(Prepared {
            body: inline,
            inputs_sha256,
            claim_check: None,
        });
    }
    let key = input_key(tenant, task_id);
    app.objects
        .put(&key, inputs_json, "application/json")
        .await?;
    message.inputs = InputsRef::S3 { key: key.clone() };
    Ok(Prepared {
        body: serde_json::to_string(&message).map_err(|e| SubmitError::Internal(e.to_string()))?,
        inputs_sha256,
        claim_check: Some(key),
    })
}

/// Sends a recorded message and confirms it in the row. A failed send is logged and
/// left to the relay: the row holds the message.
async fn send(app: &App, task_id: Uuid, prepared: &Prepared) {
    match app.queue.send(prepared.body.clone()).await {
        Ok(()) => {
            if let Err(e) = app
                .tasks
                .mark_enqueued(task_id, prepared.claim_check.as_deref())
                .await
            {
                // The message is out; the relay may send it once more, which the
                // worker's idempotent claim absorbs.
                tracing::warn!(error = %e, %task_id, "enqueue not recorded");
            }
        }
        Err(e) => tracing::warn!(error = %e, %task_id, "send failed; the relay will send it"),
    }
}

async fn forget_claim_check(app: &App, prepared: &Prepared) {
    if let Some(key) = &prepared.claim_check {
        if let Err(e) = app.objects.delete_many(std::slice::from_ref(key)).await {
            tracing::warn!(error = %e, "unneeded claim-check object left for the sweep");
        }
    }
}
