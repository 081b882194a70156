//! The dashboard's data: `GET /api/v1/admin/metrics` after real traffic (a render,
//! a cache hit, a queued task), every figure of it checked against what happened;
//! who may call it; and its windows refused, before any query, with the field named.
//! The page itself is drawn in a real browser by `infra/browser_test.py`.

mod common;

use common::{Form, TestApp};
use serde_json::{json, Value};

const ROUTE: &str = "/api/v1/admin/metrics";

/// The route as `tenant`, with or without the admin scope.
async fn metrics_as(t: &TestApp, tenant: Option<&str>, admin: bool, query: &str) -> common::Resp {
    let mut event = common::http_event("GET", &format!("{ROUTE}{query}"), tenant, None, b"");
    if !admin && tenant.is_some() {
        event["requestContext"]["authorizer"]["jwt"]["scopes"] = json!([]);
    }
    // The queue's depth is left out when SQS is slower than its deadline, as the
    // emulator can be on a loaded machine: ask again rather than fail on it.
    for _ in 0..4 {
        let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
        let r = common::to_resp(facesvg::api::status(&t.app, req).await);
        if r.status != 200 || !r.json()["queue"].is_null() {
            return r;
        }
    }
    let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
    common::to_resp(facesvg::api::status(&t.app, req).await)
}

fn sum(rows: &Value, field: &str) -> i64 {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r[field].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn metrics_follow_the_traffic_across_tenants() {
    let t = TestApp::spawn().await;

    // Nothing yet: every minute of the window is there, with nothing in it.
    let r = metrics_as(&t, Some("ops"), true, "?minutes=3&days=2").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let m = r.json();
    assert_eq!(
        (m["minutes"].as_i64(), m["days"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(m["per_minute"].as_array().unwrap().len(), 3, "{m}");
    assert_eq!(sum(&m["per_minute"], "renders"), 0);
    assert_eq!(m["requests"], json!([]));
    assert_eq!(m["stages"], json!({}));
    assert_eq!(m["queue"], json!({"visible": 0, "in_flight": 0}));

    // Two tenants render once each; one of them asks again (a hit).
    for tenant in ["tenant-a", "tenant-b"] {
        let r = t.submit_as(Some(tenant), &Form::einstein()).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    assert_eq!(t.drain().await.0, 2);
    let again = t.submit_as(Some("tenant-a"), &Form::einstein()).await;
    assert_eq!(again.status, 200, "{}", again.body);
    // The counts reach Postgres with the sweep's fold, as every minute in AWS.
    t.app.outcomes.flush_counts().await;
    let report = facesvg::sweep::run(&t.app).await;
    assert!(report.is_ok(), "{report:?}");

    // One more miss stays in the queue: the depth says so.
    let queued = t.submit_as(Some("tenant-b"), &Form::takeo()).await;
    assert_eq!(queued.status, 202, "{}", queued.body);

    let m = metrics_as(&t, Some("ops"), true, "?minutes=10")
        .await
        .json();
    assert_eq!(m["days"], 7, "the default window");
    assert_eq!(m["per_minute"].as_array().unwrap().len(), 10);
    assert_eq!(sum(&m["per_minute"], "renders"), 2, "{m}");
    assert_eq!(sum(&m["per_minute"], "failures"), 0, "{m}");
    let minutes: Vec<&str> = m["per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["minute"].as_str().unwrap())
        .collect();
    assert!(
        minutes.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {minutes:?}"
    );

    // Both tenants' requests: two misses, one hit (on one day, or two if the test
    // ran across midnight UTC).
    let days = &m["requests"];
    assert!((1..=2).contains(&days.as_array().unwrap().len()), "{m}");
    assert_eq!(sum(days, "miss"), 2, "{days}");
    let hits: i64 = ["l0", "redis", "postgres"]
        .iter()
        .map(|k| sum(days, k))
        .sum();
    assert_eq!(hits, 1, "{days}");
    assert_eq!(sum(days, "total"), 3);
    if let [today] = days.as_array().unwrap().as_slice() {
        assert!((today["hit_ratio"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    }

    // Every stage the worker measures, and the whole render, two tasks each.
    let stages = m["stages"].as_object().unwrap();
    for stage in [
        "decode", "trace", "simplify", "svg", "s3_put", "commit", "total",
    ] {
        let s = &stages[stage];
        assert_eq!(s["count"], 2, "{stage}: {s}");
        let (p50, p95) = (s["p50"].as_f64().unwrap(), s["p95"].as_f64().unwrap());
        assert!(0.0 <= p50 && p50 <= p95, "{stage}: {s}");
    }
    let queue = &m["queue"];
    assert_eq!(
        queue["visible"].as_i64().unwrap() + queue["in_flight"].as_i64().unwrap(),
        1,
        "{queue}"
    );
}

#[tokio::test]
async fn only_the_admin_scope_reads_it_and_windows_are_refused_by_name() {
    let t = TestApp::spawn().await;
    assert_eq!(metrics_as(&t, None, false, "").await.status, 401);
    let r = metrics_as(&t, Some("tenant-a"), false, "").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "forbidden");

    for (query, field) in [
        ("?minutes=0", "minutes"),
        ("?minutes=721", "minutes"),
        ("?minutes=-5", "minutes"),
        ("?minutes=1e3", "minutes"),
        ("?minutes=99999999999999999999999", "minutes"),
        ("?days=0", "days"),
        ("?days=91", "days"),
        ("?minutes=60&days=abc", "days"),
    ] {
        let r = metrics_as(&t, Some("ops"), true, query).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        let e = &r.json()["error"];
        assert_eq!(e["code"], "invalid_field", "{query}");
        assert_eq!(e["field"], field, "{query}");
    }
    // The widest windows the policy allows are served.
    let r = metrics_as(&t, Some("ops"), true, "?minutes=720&days=90").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["per_minute"].as_array().unwrap().len(), 720);
}
