//! The EMF records the functions write: names, dimensions and units as CloudWatch
//! reads them, and the one structured log line per request. One test in this binary:
//! the capture is process-wide.

mod common;

use common::{Form, TestApp};
use serde_json::Value;

/// (metric name → (unit, dimension names)) of every record, and the records.
fn parse(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The records that carry metric `name`, checked to be well-formed EMF.
fn with_metric<'a>(records: &'a [Value], name: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| {
            r["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["Name"] == name))
        })
        .inspect(|r| {
            let directive = &r["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], "facesvg");
            assert!(r["_aws"]["Timestamp"].is_i64());
            // Every dimension and metric named in the directive is a top-level member.
            for d in directive["Dimensions"][0].as_array().unwrap() {
                assert!(r[d.as_str().unwrap()].is_string(), "dimension {d} in {r}");
            }
            assert!(r[name].is_number(), "value of {name} in {r}");
        })
        .collect()
}

fn unit_and_dims(r: &Value, name: &str) -> (String, Vec<String>) {
    let directive = &r["_aws"]["CloudWatchMetrics"][0];
    let unit = directive["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Name"] == name)
        .unwrap()["Unit"]
        .as_str()
        .unwrap()
        .to_owned();
    let dims = directive["Dimensions"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    (unit, dims)
}

#[tokio::test]
async fn requests_tasks_and_cache_tiers_are_emitted_as_emf() {
    facesvg::metrics::capture();
    let t = TestApp::spawn().await;
    let miss = t.submit(&Form::einstein()).await;
    assert_eq!(miss.status, 202);
    t.drain().await;
    let hit = t.submit(&Form::einstein()).await;
    assert_eq!(hit.status, 200);
    let id = miss.json()["task_id"].as_str().unwrap().to_owned();
    t.status(&id).await;
    let bad = t.submit(&Form::einstein().without("landmarks")).await;
    assert_eq!(bad.status, 400);

    let records = parse(&facesvg::metrics::captured());
    let expect = |name: &str, unit: &str, dims: &[&str]| {
        let found = with_metric(&records, name);
        assert!(!found.is_empty(), "no {name} record");
        for r in found {
            assert_eq!(
                unit_and_dims(r, name),
                (
                    unit.to_owned(),
                    dims.iter().map(|d| d.to_string()).collect()
                ),
                "{name}"
            );
        }
    };
    expect("Requests", "Count", &["Function", "Route", "Status"]);
    expect("Latency", "Milliseconds", &["Function", "Route"]);
    expect("RequestBytes", "Bytes", &["Function", "Route"]);
    expect("ResponseBytes", "Bytes", &["Function", "Route"]);
    expect("CacheRequests", "Count", &["Tier"]);
    expect("CacheHits", "Count", &["Tier"]);
    expect("TasksSubmitted", "Count", &[]);
    expect("TasksCompleted", "Count", &["Status"]);
    expect("RenderTime", "Milliseconds", &["Stage"]);
    expect("RegionsGenerated", "Count", &["Region"]);
    expect("LandmarksProcessed", "Count", &[]);
    expect("Errors", "Count", &["Kind"]);

    let stages: Vec<&str> = with_metric(&records, "RenderTime")
        .iter()
        .map(|r| r["Stage"].as_str().unwrap())
        .collect();
    for stage in ["decode", "trace", "svg", "s3_put", "commit", "total"] {
        assert!(stages.contains(&stage), "stage {stage}: {stages:?}");
    }
    let tiers: Vec<&str> = with_metric(&records, "CacheRequests")
        .iter()
        .map(|r| r["Tier"].as_str().unwrap())
        .collect();
    assert_eq!(tiers, ["miss", "redis"], "the render is published to Redis");

    // One log line per request, with what an operator needs and no inputs.
    let requests = with_metric(&records, "Requests");
    assert_eq!(requests.len(), 4, "submit, submit, status, bad submit");
    let routes: Vec<&str> = requests
        .iter()
        .map(|r| r["Route"].as_str().unwrap())
        .collect();
    assert!(routes.contains(&"POST /api/v1/frontal/crop/submit"));
    assert!(
        routes.contains(&"GET /api/v1/frontal/crop/status/{task_id}"),
        "{routes:?}"
    );
    let hit_line = requests
        .iter()
        .find(|r| r["tier"] == "redis")
        .expect("the hit's line");
    assert_eq!(hit_line["tenant"], "tenant-a");
    assert_eq!(hit_line["Status"], "200");
    assert!(hit_line["request_id"].is_string());
    let bad_line = requests.iter().find(|r| r["Status"] == "400").unwrap();
    assert_eq!(bad_line["error"], "missing_field");
    let all = records.iter().map(Value::to_string).collect::<String>();
    assert!(
        !all.contains("version: 1"),
        "no landmarks text in the records"
    );
    assert!(!all.contains(&id), "no task ids in dimensions or lines");
}
