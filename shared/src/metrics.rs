//! Application metrics as CloudWatch Embedded Metric Format (EMF): one JSON line per
//! record on standard output, which Lambda ships to CloudWatch Logs, where the
//! metrics are extracted with no API call and no agent.
//!
//! Namespace `facesvg`. What is emitted, and by whom:
//!
//! | metric | unit | dimensions | emitted by |
//! | --- | --- | --- | --- |
//! | `Requests` | Count | Function, Route, Status | every HTTP answer |
//! | `Latency`, `RequestBytes`, `ResponseBytes` | Milliseconds, Bytes | Function, Route | every HTTP answer |
//! | `CacheRequests`, `CacheHits` | Count | Tier (`l0`, `redis`, `postgres`, `miss`) | every submit answered by the cache or queued |
//! | `TasksSubmitted` | Count | — | a submit that queued a task |
//! | `TasksCompleted` | Count | Status (`SUCCESS`, `FAILURE`) | process |
//! | `RenderTime` | Milliseconds | Stage (`decode`, `trace`, `svg`, `s3_put`, `commit`, `total`) | process |
//! | `RegionsGenerated` | Count | Region | process |
//! | `LandmarksProcessed` | Count | — | process |
//! | `CachedEntries` | Count | — | cache-cleanup (rows left after a sweep) |
//! | `Errors` | Count | Kind | every error answer and failed task |
//! | `Errors` | Count | Kind (`sweep_step`), Step | cache-cleanup, each failed step of a sweep |
//!
//! The request record doubles as the request's structured log line: it carries the
//! route, tenant, status, cache tier, latency and request id as properties, and never
//! an input (no image bytes, no landmarks).
//!
//! The hit ratio is `CacheHits / CacheRequests`, computed by CloudWatch metric math
//! on the dashboard.

use std::io::Write as _;
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "facesvg";

/// Where records go besides standard output: a test installs a capture.
static CAPTURE: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

/// Starts keeping every record in memory as well (tests read them back).
pub fn capture() {
    let _ = CAPTURE.set(Mutex::new(Vec::new()));
}

/// The records kept since [`capture`], drained.
pub fn captured() -> Vec<String> {
    CAPTURE
        .get()
        .map(|c| std::mem::take(&mut *c.lock().unwrap_or_else(|p| p.into_inner())))
        .unwrap_or_default()
}

/// One metric of a record: name, unit, value.
pub struct Metric<'a> {
    pub name: &'a str,
    pub unit: &'a str,
    pub value: f64,
}

/// Writes one EMF record: `metrics` with the dimension set `dims` (names and values),
/// plus `properties` that are logged but are not dimensions.
pub fn emit(dims: &[(&str, &str)], metrics: &[Metric<'_>], properties: Value) {
    let mut record = match properties {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let timestamp = chrono::Utc::now().timestamp_millis();
    let names: Vec<&str> = dims.iter().map(|d| d.0).collect();
    record.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in dims {
        record.insert((*k).into(), json!(v));
    }
    for m in metrics {
        record.insert(m.name.into(), json!(m.value));
    }
    let line = Value::Object(record).to_string();
    if let Some(c) = CAPTURE.get() {
        c.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.clone());
    }
    // Standard output is the EMF channel: Lambda ships it to CloudWatch Logs. Outside
    // a function (tests, tools) nobody collects it.
    if in_lambda() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// Whether this process is a Lambda function (or `cargo lambda`'s emulation of one).
fn in_lambda() -> bool {
    static IN_LAMBDA: OnceLock<bool> = OnceLock::new();
    *IN_LAMBDA.get_or_init(|| std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some())
}

/// This function's name as Lambda knows it (the binary's name locally).
pub fn function_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .ok()
            .or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            })
            .unwrap_or_else(|| "facesvg".into())
    })
}

/// What the HTTP edge knows of one answer.
pub struct RequestRecord<'a> {
    pub route: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    pub request_bytes: usize,
    pub response_bytes: usize,
    pub tenant: Option<&'a str>,
    pub tier: Option<&'a str>,
    pub request_id: &'a str,
    pub error_code: Option<&'a str>,
}

/// The request's EMF records, the first of which is its one structured log line.
pub fn request(r: &RequestRecord<'_>) {
    let function = function_name();
    let status = r.status.to_string();
    emit(
        &[
            ("Function", function),
            ("Route", r.route),
            ("Status", &status),
        ],
        &[Metric {
            name: "Requests",
            unit: "Count",
            value: 1.0,
        }],
        json!({
            "log": "request",
            "tenant": r.tenant,
            "tier": r.tier,
            "request_id": r.request_id,
            "error": r.error_code,
        }),
    );
    emit(
        &[("Function", function), ("Route", r.route)],
        &[
            Metric {
                name: "Latency",
                unit: "Milliseconds",
                value: r.latency_ms,
            },
            Metric {
                name: "RequestBytes",
                unit: "Bytes",
                value: r.request_bytes as f64,
            },
            Metric {
                name: "ResponseBytes",
                unit: "Bytes",
                value: r.response_bytes as f64,
            },
        ],
        json!({}),
    );
    if let Some(kind) = r.error_code {
        error(kind);
    }
}

/// One error of `kind` (an error code such as `unavailable` or `too_complex`).
pub fn error(kind: &str) {
    emit(
        &[("Kind", kind)],
        &[Metric {
            name: "Errors",
            unit: "Count",
            value: 1.0,
        }],
        json!({}),
    );
}

/// A step of a sweep (`relay`, `fold_hits`, …) that failed.
pub fn sweep_step_failed(step: &str) {
    emit(
        &[("Kind", "sweep_step"), ("Step", step)],
        &[Metric {
            name: "Errors",
            unit: "Count",
            value: 1.0,
        }],
        json!({}),
    );
}

/// A submit answered by `tier` (`l0`, `redis`, `postgres`) or queued (`miss`).
pub fn cache_request(tier: &str) {
    let hit = if tier == "miss" { 0.0 } else { 1.0 };
    emit(
        &[("Tier", tier)],
        &[
            Metric {
                name: "CacheRequests",
                unit: "Count",
                value: 1.0,
            },
            Metric {
                name: "CacheHits",
                unit: "Count",
                value: hit,
            },
        ],
        json!({}),
    );
    if hit == 0.0 {
        count("TasksSubmitted", 1.0);
    }
}

/// A plain count without dimensions.
pub fn count(name: &str, value: f64) {
    emit(
        &[],
        &[Metric {
            name,
            unit: "Count",
            value,
        }],
        json!({}),
    );
}

/// A finished task: its status, the time of each stage, its regions and landmarks.
pub fn task_completed(status: &str, stages: &[(&str, f64)], regions: &[&str], landmarks: usize) {
    emit(
        &[("Status", status)],
        &[Metric {
            name: "TasksCompleted",
            unit: "Count",
            value: 1.0,
        }],
        json!({}),
    );
    for (stage, ms) in stages {
        emit(
            &[("Stage", stage)],
            &[Metric {
                name: "RenderTime",
                unit: "Milliseconds",
                value: *ms,
            }],
            json!({}),
        );
    }
    for region in regions {
        emit(
            &[("Region", region)],
            &[Metric {
                name: "RegionsGenerated",
                unit: "Count",
                value: 1.0,
            }],
            json!({}),
        );
    }
    if landmarks > 0 {
        count("LandmarksProcessed", landmarks as f64);
    }
}
