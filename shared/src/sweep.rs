//! The cache-cleanup function: one owned place for expiry.
//!
//! Every minute (with the outbox relay) and with every sweep, the request counts
//! gathered in Redis are folded into Postgres's `request_counts` ([`fold_requests`]),
//! which the daily view reads: one writer for the table, each batch added once.
//!
//! A sweep runs its [`Step`]s in order, each on its own: relay unsent messages,
//! delete expired `cache_store` rows, fold the request counts and the write-behind hit
//! counters (so that "never hit" is judged on fresh numbers), prune fold markers, fail
//! tasks stuck open, then delete in bounded batches the rows past their TTL, failures
//! older than 7 days and never-hit rows older than 30 days, and finally roll metrics
//! up and prune them ([`crate::tasks::retention`]). A step that fails does not stop
//! the others; it is logged, counted (`Errors` by `Step`) and makes the scheduled
//! invocation fail ([`handle_event`]). Each deleted row's Redis keys go first and its
//! S3 objects last: an S3 object whose row is gone is harmless (and the bucket's
//! lifecycle rule is the safety net), a row whose SVG is gone would not be.

use lambda_http::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::app::App;
pub use crate::policy::lifetime::STUCK_FAILURE_VISIBLE;
pub use crate::policy::sweep::{
    DAILY_KEEP, FAILURE_MAX_AGE, FOLD_MEMORY, MAX_BATCHES, RAW_METRICS_KEEP, RELAY_AFTER,
    RETENTION_BATCH, ROLLUP_DAYS_PER_RUN, UNUSED_MAX_AGE,
};
use crate::tasks::results::SweepReason;
use crate::tasks::StoreError;

/// One step of a sweep. Each runs on its own: one that fails does not stop the
/// others, and fails the invocation (see [`handle_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The outbox relay.
    Relay,
    /// Expired rows of the general-purpose cache.
    CacheStore,
    /// Request counts from Redis into `request_counts`.
    FoldRequests,
    /// Hit counters from Redis into `task_results.cache_hits`.
    FoldHits,
    /// Fold markers no batch can be offered again under.
    FoldMarkers,
    /// Tasks open too long, failed retryably.
    Stuck,
    /// Expired, old failed and never-hit entries, with their objects and keys.
    Delete,
    /// Raw metrics rolled up by day and pruned; old daily rows pruned.
    Retention,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Relay => "relay",
            Step::CacheStore => "cache_store",
            Step::FoldRequests => "fold_requests",
            Step::FoldHits => "fold_hits",
            Step::FoldMarkers => "fold_markers",
            Step::Stuck => "stuck",
            Step::Delete => "delete",
            Step::Retention => "retention",
        }
    }
}

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
    /// Fold markers forgotten.
    pub fold_markers_pruned: u64,
    /// Metrics rolled up and rows pruned past their age.
    pub retention: crate::tasks::retention::Retention,
    /// False when the hit counters could not be read: then nothing is judged unused.
    pub unused_rule_applied: bool,
    /// The steps that failed; any makes the invocation fail.
    pub failed_steps: Vec<Step>,
    /// What went wrong, step by step (for the operator's log, never a caller's).
    pub errors: Vec<String>,
    /// True if the batch limit stopped this run before the backlog was empty.
    pub more: bool,
}

impl SweepReport {
    /// Records that `step` failed with `error`: logged, and an `Errors` metric
    /// naming the step.
    fn step_failed(&mut self, step: Step, error: impl std::fmt::Display) {
        tracing::error!(step = step.name(), error = %error, "sweep step failed");
        crate::metrics::sweep_step_failed(step.name());
        if !self.failed_steps.contains(&step) {
            self.failed_steps.push(step);
        }
        self.errors.push(format!("{}: {error}", step.name()));
    }

    /// Whether every step ran to its end.
    pub fn is_ok(&self) -> bool {
        self.failed_steps.is_empty()
    }
}

/// One full sweep. Every step runs, whatever the others did; the report says which
/// failed.
pub async fn run(app: &App) -> SweepReport {
    let mut report = SweepReport::default();

    match relay(app).await {
        Ok(n) => report.relayed = n,
        Err(e) => report.step_failed(Step::Relay, e),
    }
    match app
        .kv_store
        .cleanup_expired(app.config.sweep_batch, MAX_BATCHES as u32)
        .await
    {
        Ok(c) => {
            report.cache_store_expired = c.deleted;
            report.more |= c.more;
        }
        Err(e) => report.step_failed(Step::CacheStore, e),
    }
    match fold_requests(app).await {
        Ok(n) => report.requests_folded = n,
        Err(e) => report.step_failed(Step::FoldRequests, e),
    }

    // Fail safe: "never hit" is judged only on counts that were read and folded. With
    // Redis down, entries in use would look unused, so that rule waits a run.
    match fold_hits(app).await {
        Ok(Some(n)) => {
            report.hits_folded = n;
            report.unused_rule_applied = true;
        }
        // Without Redis there are no counts to judge by: the rule never applies.
        Ok(None) => {}
        Err(e) => report.step_failed(Step::FoldHits, e),
    }
    match prune_fold_markers(app).await {
        Ok(n) => report.fold_markers_pruned = n,
        Err(e) => report.step_failed(Step::FoldMarkers, e),
    }

    match app
        .tasks
        .fail_stuck(
            app.config.stuck_after,
            STUCK_FAILURE_VISIBLE,
            app.config.sweep_batch,
        )
        .await
    {
        Ok(n) => report.stuck_failed = n,
        Err(e) => report.step_failed(Step::Stuck, e),
    }

    if let Err(e) = delete(app, &mut report).await {
        report.step_failed(Step::Delete, e);
    }
    if let Err(e) = retention(app, &mut report.retention).await {
        report.step_failed(Step::Retention, e);
    }
    report.more |= report.retention.more;
    report_entries(app).await;
    report
}

/// Deletes expired, old failed and (when the hit counts were folded) never-hit
/// entries in bounded batches, with their Redis keys first and S3 objects last.
async fn delete(app: &App, report: &mut SweepReport) -> Result<(), StoreError> {
    let unused_age = report.unused_rule_applied.then_some(UNUSED_MAX_AGE);
    for _ in 0..MAX_BATCHES {
        let swept = app
            .tasks
            .delete_sweepable(FAILURE_MAX_AGE, unused_age, app.config.sweep_batch)
            .await?;
        if swept.is_empty() {
            return Ok(());
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
                // The keys carry the entry's TTL: they expire on their own.
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
                // The bucket's lifecycle rule deletes what is left.
                Err(e) => report.errors.push(format!("s3: {e}")),
            }
        }
    }
    report.more = true;
    Ok(())
}

/// Rolls finished days of metrics up, then prunes what is past its age.
async fn retention(
    app: &App,
    out: &mut crate::tasks::retention::Retention,
) -> Result<(), StoreError> {
    out.days_rolled_up = app.tasks.roll_up_metrics(ROLLUP_DAYS_PER_RUN).await?;
    let (n, more) = app
        .tasks
        .prune_metrics(RAW_METRICS_KEEP, RETENTION_BATCH, MAX_BATCHES as u32)
        .await?;
    out.metric_rows_pruned = n;
    out.more |= more;
    let (n, more) = app
        .tasks
        .prune_daily(DAILY_KEEP, RETENTION_BATCH, MAX_BATCHES as u32)
        .await?;
    out.daily_rows_pruned = n;
    out.more |= more;
    Ok(())
}

/// The cache's size after a sweep, as the `CachedEntries` metric.
async fn report_entries(app: &App) {
    match app.tasks.entries().await {
        Ok(n) => crate::metrics::count("CachedEntries", n as f64),
        Err(e) => tracing::warn!(error = %e, "entries not counted"),
    }
}

/// Forgets the fold markers older than [`FOLD_MEMORY`] whose batch is no longer in
/// Redis. With Redis unreachable, nothing is forgotten.
pub async fn prune_fold_markers(app: &App) -> Result<u64, FoldError> {
    let in_progress = match app.outcomes.redis.folds_in_progress().await {
        Ok(ids) => ids,
        Err(crate::cache::CacheError::Disabled) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(app
        .tasks
        .prune_fold_markers(FOLD_MEMORY, &in_progress)
        .await?)
}

/// Folds the hit counters gathered in Redis into the rows' `cache_hits`, by the
/// protocol of [`fold_requests`]: moved aside, added in one transaction that records
/// the batch id, then deleted. Returns the rows updated, or `None` without Redis.
pub async fn fold_hits(app: &App) -> Result<Option<u64>, FoldError> {
    app.outcomes.flush_counts().await;
    let mut folded = 0;
    for _ in 0..2 {
        let batch = match app.outcomes.redis.take_hits().await {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(crate::cache::CacheError::Disabled) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if let Some(n) = app.tasks.add_hits(&batch.hits, Some(batch.batch)).await? {
            folded += n;
        }
        app.outcomes.redis.finish_hit_fold(batch.batch).await?;
    }
    Ok(Some(folded))
}

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

/// A scheduled job in which a step failed: the invocation ends as a Lambda error,
/// so the schedule's retry policy, its dead-letter queue and the alarm see it.
#[derive(Debug, thiserror::Error)]
#[error("sweep steps failed: {}", .steps.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "))]
pub struct StepsFailed {
    pub steps: Vec<Step>,
}

/// What cache-cleanup is sent, decoded once ([`CleanupEvent::decode`]).
pub enum CleanupEvent {
    /// The minutely schedule's `{"job": "relay"}`: the outbox relay and the request
    /// counts' fold.
    Relay,
    /// The hourly schedule (an EventBridge scheduled event): a full sweep.
    Sweep,
    /// CloudFormation's migration custom resource ([`crate::deploy`]).
    CustomResource(Value),
    /// The admin route (`POST /api/v1/cache/cleanup`, API Gateway payload 2.0).
    Http(Box<crate::api::event::HttpEvent>),
    /// An API Gateway event that does not decode: answered 500, as any route would.
    UnreadableHttp(String),
}

/// An event cache-cleanup has no use for: the invocation fails, nothing runs.
#[derive(Debug, thiserror::Error)]
#[error("unrecognised event: {0}")]
pub struct UnknownEvent(String);

/// The schedule's own input (`Input` of the template's relay schedule).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Job {
    job: JobName,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum JobName {
    Relay,
}

/// The fields that make an EventBridge scheduled event one.
#[derive(serde::Deserialize)]
struct Scheduled {
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
}

impl CleanupEvent {
    pub fn decode(event: Value) -> Result<Self, UnknownEvent> {
        if crate::deploy::is_custom_resource(&event) {
            return Ok(CleanupEvent::CustomResource(event));
        }
        if let Ok(Job {
            job: JobName::Relay,
        }) = Job::deserialize(&event)
        {
            return Ok(CleanupEvent::Relay);
        }
        if let Ok(s) = Scheduled::deserialize(&event) {
            if s.source == "aws.events" && s.detail_type == "Scheduled Event" {
                return Ok(CleanupEvent::Sweep);
            }
        }
        if event.get("requestContext").is_some() {
            return Ok(match crate::api::event::HttpEvent::deserialize(event) {
                Ok(e) => CleanupEvent::Http(Box::new(e)),
                Err(e) => CleanupEvent::UnreadableHttp(e.to_string()),
            });
        }
        let keys: Vec<&str> = event
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        Err(UnknownEvent(format!("keys {keys:?}")))
    }
}

/// Why an invocation of cache-cleanup failed (a Lambda error: the schedule's retry,
/// its dead-letter queue and the alarms see it).
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    Steps(#[from] StepsFailed),
    #[error(transparent)]
    Unknown(#[from] UnknownEvent),
}

/// The Lambda entry: decodes the event once, then runs what it asks for. A
/// scheduled job with a failed step returns `Err` (after running every other step);
/// an HTTP call and the custom resource always get their answer.
pub async fn handle_event(app: &App, event: Value) -> Result<Value, CleanupError> {
    match CleanupEvent::decode(event)? {
        CleanupEvent::CustomResource(event) => {
            Ok(crate::deploy::handle_custom_resource(app, &event).await)
        }
        CleanupEvent::Relay => {
            let mut report = SweepReport::default();
            match fold_requests(app).await {
                Ok(n) => report.requests_folded = n,
                Err(e) => report.step_failed(Step::FoldRequests, e),
            }
            match relay(app).await {
                Ok(n) => report.relayed = n,
                Err(e) => report.step_failed(Step::Relay, e),
            }
            let answer =
                json!({"relayed": report.relayed, "requests_folded": report.requests_folded});
            Ok(finished(report, answer)?)
        }
        CleanupEvent::Sweep => {
            let report = run(app).await;
            let answer = json!(report);
            Ok(finished(report, answer)?)
        }
        CleanupEvent::UnreadableHttp(e) => Ok(json!(crate::api::event::HttpAnswer::from(
            crate::api::ApiError::Internal(format!("unreadable request: {e}")).into_response()
        ))),
        CleanupEvent::Http(req) => {
            let response =
                crate::api::observe(req.0, async |req| admin_cleanup(app, req).await).await;
            Ok(json!(crate::api::event::HttpAnswer::from(response)))
        }
    }
}

fn finished(report: SweepReport, answer: Value) -> Result<Value, StepsFailed> {
    if report.is_ok() {
        tracing::info!(?report, "sweep finished");
        Ok(answer)
    } else {
        tracing::error!(?report, "sweep finished with failed steps");
        Err(StepsFailed {
            steps: report.failed_steps,
        })
    }
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
    let report = run(app).await;
    if report.is_ok() {
        json_response(StatusCode::OK, &json!(report))
    } else {
        ApiError::Unavailable(format!("{:?}", report.errors)).into_response()
    }
}
