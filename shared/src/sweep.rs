//! The cache-cleanup function: one owned place for expiry.
//!
//! Every minute (with the outbox relay) and with every sweep, the request counts
//! gathered in Redis are folded into Postgres's `request_counts` ([`fold_requests`]),
//! which the daily view reads: one writer for the table, each batch added once.
//!
//! In order: fold the write-behind hit counters from Redis into Postgres (so that
//! "never hit" is judged on fresh numbers), fail tasks stuck open, then delete in
//! bounded batches the rows past their TTL, failures older than 7 days and never-hit
//! rows older than 30 days. Each deleted row's Redis keys go first and its S3
//! objects last: an S3 object whose row is gone is harmless (and the bucket's
//! lifecycle rule is the safety net), a row whose SVG is gone would not be.

use std::time::Duration;

use lambda_http::http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};

use crate::app::App;
use crate::tasks::results::SweepReason;
use crate::tasks::StoreError;

pub const FAILURE_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
pub const UNUSED_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Bounded work per run: a backlog is finished by the next scheduled runs.
const MAX_BATCHES: usize = 50;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub hits_folded: u64,
    /// (tenant, day, tier) request counts folded from Redis into `request_counts`.
    pub requests_folded: u64,
    pub stuck_failed: u64,
    pub expired: u64,
    pub failed: u64,
    pub unused: u64,
    pub s3_objects_deleted: u64,
    pub redis_keys_deleted: u64,
    /// Unsent task messages sent by the relay.
    pub relayed: u64,
    /// Expired rows of the general-purpose cache's `cache_store` deleted.
    pub cache_store_expired: u64,
    /// False when the hit counters could not be read: then nothing is judged unused.
    pub unused_rule_applied: bool,
    pub errors: Vec<String>,
    /// True if the batch limit stopped this run before the backlog was empty.
    pub more: bool,
}

pub async fn run(app: &App) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();

    report.relayed = relay(app).await?;
    match app
        .kv_store
        .cleanup_expired(app.config.sweep_batch, MAX_BATCHES as u32)
        .await
    {
        Ok(c) => {
            report.cache_store_expired = c.deleted;
            report.more |= c.more;
        }
        Err(e) => report.errors.push(format!("cache_store: {e}")),
    }

    match fold_requests(app).await {
        Ok(n) => report.requests_folded = n,
        Err(e) => report.errors.push(format!("folding requests: {e}")),
    }
    if let Err(e) = app.tasks.prune_request_folds(FOLD_MEMORY).await {
        report.errors.push(format!("fold markers: {e}"));
    }

    // Fail safe: "never hit" is judged only on counts that were read and folded. With
    // Redis down, entries in use would look unused, so that rule waits a run.
    app.outcomes.flush_counts().await;
    match app.outcomes.redis.take_hits().await {
        Ok(hits) => match app.tasks.add_hits(&hits).await {
            Ok(n) => {
                report.hits_folded = n;
                report.unused_rule_applied = true;
            }
            Err(e) => report.errors.push(format!("folding hits: {e}")),
        },
        // Without Redis there are no counts to judge by: the rule never applies.
        Err(crate::cache::CacheError::Disabled) => {}
        Err(e) => report.errors.push(format!("reading hits: {e}")),
    }
    let unused_age = report.unused_rule_applied.then_some(UNUSED_MAX_AGE);

    report.stuck_failed = app
        .tasks
        .fail_stuck(app.config.stuck_after, app.config.sweep_batch)
        .await?;

    for _ in 0..MAX_BATCHES {
        let swept = app
            .tasks
            .delete_sweepable(FAILURE_MAX_AGE, unused_age, app.config.sweep_batch)
            .await?;
        if swept.is_empty() {
            report_entries(app).await;
            return Ok(report);
        }
        let mut keys = Vec::new();
        for row in &swept {
            match row.reason {
                SweepReason::Expired => report.expired += 1,
                SweepReason::Failed => report.failed += 1,
                SweepReason::Unused => report.unused += 1,
            }
            match app
                .outcomes
                .forget(&row.tenant, &row.input_hash, row.task_id)
                .await
            {
                Ok(()) => report.redis_keys_deleted += 2,
                Err(e) => report
                    .errors
                    .push(format!("redis keys of {}: {e}", row.task_id)),
            }
            keys.extend(row.svg_s3_key.iter().cloned());
            keys.extend(row.input_s3_key.iter().cloned());
        }
        if !keys.is_empty() {
            match app.objects.delete_many(&keys).await {
                Ok(n) => report.s3_objects_deleted += n as u64,
                Err(e) => report.errors.push(format!("s3: {e}")),
            }
        }
    }
    report.more = true;
    report_entries(app).await;
    Ok(report)
}

/// The cache's size after a sweep, as the `CachedEntries` metric.
async fn report_entries(app: &App) {
    match app.tasks.entries().await {
        Ok(n) => crate::metrics::count("CachedEntries", n as f64),
        Err(e) => tracing::warn!(error = %e, "entries not counted"),
    }
}

/// How long Postgres remembers a folded batch of request counts. Only the latest
/// batch can ever be offered again (a fold that committed but could not delete it
/// from Redis, retried by the next run a minute later), so a day is ample.
const FOLD_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// Why request counts could not be folded; the next run folds the same batch.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
}

/// Folds the request counts gathered in Redis into Postgres's `request_counts`:
/// first a batch left by a fold that did not finish, then the pending counts.
/// Returns how many (tenant, day, tier) counts were added.
///
/// Never twice, never lost: the batch is moved aside in Redis atomically, added in
/// one Postgres transaction that also records its id (a batch seen before is
/// skipped), and only then deleted from Redis. A failure at any step leaves the
/// batch for the next run. Without Redis there is nothing to fold:
/// `OutcomeCache::flush_counts` writes the table itself.
pub async fn fold_requests(app: &App) -> Result<u64, FoldError> {
    app.outcomes.flush_counts().await;
    let mut folded = 0;
    // A leftover batch, then the pending counts: at most two batches per run.
    for _ in 0..2 {
        let batch = match app.outcomes.redis.take_request_counts().await {
            Ok(Some(batch)) => batch,
            Ok(None) | Err(crate::cache::CacheError::Disabled) => break,
            Err(e) => return Err(e.into()),
        };
        if app
            .tasks
            .add_request_counts(&batch.counts, Some(batch.batch))
            .await?
        {
            folded += batch.counts.len() as u64;
        }
        app.outcomes.redis.finish_request_fold(batch.batch).await?;
    }
    Ok(folded)
}

/// Unconfirmed sends older than this are the relay's: younger ones may still be in
/// their submitter's hands.
pub const RELAY_AFTER: Duration = Duration::from_secs(10);

/// The outbox relay: sends every task message that was recorded but never confirmed
/// sent (its submitter's send failed, or it died in between), in bounded batches.
/// A message sent twice is harmless: the worker's claim is idempotent.
pub async fn relay(app: &App) -> Result<u64, StoreError> {
    let mut sent = 0;
    for _ in 0..MAX_BATCHES {
        let unsent = app
            .tasks
            .unsent(RELAY_AFTER, app.config.sweep_batch)
            .await?;
        if unsent.is_empty() {
            break;
        }
        let mut progressed = false;
        for (task_id, body) in unsent {
            match app.queue.send(body).await {
                Ok(()) => {
                    app.tasks.mark_enqueued(task_id, None).await?;
                    sent += 1;
                    progressed = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, %task_id, "relay send failed; next run retries")
                }
            }
        }
        if !progressed {
            break;
        }
    }
    Ok(sent)
}

/// The Lambda entry: an EventBridge schedule event, the admin HTTP route
/// (`POST /api/v1/cache/cleanup`, API Gateway payload 2.0, admin scope only), or
/// CloudFormation's migration custom resource ([`crate::deploy`]).
pub async fn handle_event(app: &App, event: Value) -> Value {
    if crate::deploy::is_custom_resource(&event) {
        return crate::deploy::handle_custom_resource(app, &event).await;
    }
    let is_http = event.get("requestContext").is_some() && event.get("rawPath").is_some();
    if event.get("job").and_then(Value::as_str) == Some("relay") {
        // The minutely schedule: the outbox relay and the request counts' fold, both
        // cheap when there is nothing.
        let folded = match fold_requests(app).await {
            Ok(n) => json!(n),
            Err(e) => {
                tracing::error!(error = %e, "folding request counts failed");
                json!({"error": e.to_string()})
            }
        };
        return match relay(app).await {
            Ok(n) => json!({"relayed": n, "requests_folded": folded}),
            Err(e) => {
                tracing::error!(error = %e, "relay failed");
                json!({"error": e.to_string(), "requests_folded": folded})
            }
        };
    }
    if !is_http {
        return match run(app).await {
            Ok(report) => {
                tracing::info!(?report, "sweep finished");
                json!(report)
            }
            Err(e) => {
                tracing::error!(error = %e, "sweep failed");
                json!({"error": e.to_string()})
            }
        };
    }
    let response = match serde_json::from_value::<crate::api::event::HttpEvent>(event) {
        Err(e) => {
            crate::api::ApiError::Internal(format!("unreadable request: {e}")).into_response()
        }
        Ok(req) => crate::api::observe(req.0, async |req| admin_cleanup(app, req).await).await,
    };
    json!(crate::api::event::HttpAnswer::from(response))
}

async fn admin_cleanup(
    app: &App,
    req: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    use crate::api::{auth, json_response, ApiError};
    if req.method() != lambda_http::http::Method::POST {
        return ApiError::MethodNotAllowed("use POST".into()).into_response();
    }
    let caller = match auth::caller(&app.config, &req) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if !caller.admin {
        return ApiError::Forbidden.into_response();
    }
    match run(app).await {
        Ok(report) => json_response(StatusCode::OK, &json!(report)),
        Err(e) => ApiError::Unavailable(e.to_string()).into_response(),
    }
}
