//! What cache-cleanup is sent, decoded once, and what each event runs: the relay
//! job, the scheduled sweep, the migrations' custom resource, the admin route.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{fold_requests, relay, run, Step, SweepReport};
use crate::app::App;

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
    /// A route of the function (`POST /api/v1/cache/cleanup` and the others of
    /// `sweep::http`; API Gateway payload 2.0).
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
                Err(e) => CleanupEvent::UnreadableHttp(crate::telemetry::json_error(&e)),
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
                crate::api::observe(req.0, async |req| super::http::answer(app, req).await).await;
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
