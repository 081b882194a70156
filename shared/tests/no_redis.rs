//! A deployment without Redis (`REDIS_URL=none`): the service runs on its
//! in-process tier and Postgres, health says `ok` with Redis `disabled`, and the
//! statistics count every request (written to Postgres directly).

mod common;

use common::{get_on, submit_to, Form, TestApp};
use serde_json::json;

#[tokio::test]
async fn without_redis_submit_process_and_status_run_on_l0_and_postgres() {
    let t = TestApp::spawn_with(|env| {
        env.insert("REDIS_URL".into(), "none".into());
    })
    .await;
    let first = t.submit(&Form::takeo()).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let (n, failed) = t.drain().await;
    assert_eq!((n, failed.len()), (1, 0));
    let id = first.json()["task_id"].as_str().unwrap().to_owned();
    assert_eq!(t.status(&id).await["status"], "SUCCESS");
    let hit = t.submit(&Form::takeo()).await;
    assert_eq!(hit.status, 200, "{}", hit.body);
    assert_eq!(hit.json()["cache_tier"], "l0", "the status call filled L0");
    let other = t.another_instance().await;
    let cold = submit_to(&other, Some("tenant-a"), &Form::takeo()).await;
    assert_eq!(cold.json()["cache_tier"], "postgres");

    let public = t.get_as(None, "/health").await;
    assert_eq!(public.status, 200);
    assert_eq!(
        public.json()["status"],
        "ok",
        "no Redis is a choice, not degradation"
    );
    let admin = t.get("/api/v1/health").await.json();
    assert_eq!(admin["checks"]["redis"]["disabled"], true, "{admin}");

    // The other instance sends its count (as it would within a second).
    other.outcomes.flush_counts().await;
    let stats = t.get("/api/v1/cache/stats?days=1").await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    let stats = stats.json();
    // A miss, an L0 hit here and a Postgres hit on the other instance.
    assert_eq!(
        stats["requests"],
        json!({
            "total": 3,
            "hits": {"l0": 1, "redis": 0, "postgres": 1, "total": 2},
            "misses": 1,
            "hit_ratio": 2.0 / 3.0,
        }),
        "{stats}"
    );
    assert_eq!(stats["total_requests"], 3, "{stats}");
    assert_eq!(stats["cache_hits"], 2, "{stats}");
    assert_eq!(stats["hit_ratio"], json!(2.0 / 3.0), "{stats}");
    assert_eq!(stats["cache_hit_ratio"], json!(66.67), "{stats}");
    assert_eq!(stats["cache_efficiency"], "good", "{stats}");
    // The same counts as the daily view reads them.
    let daily = t.get("/api/v1/cache/daily?days=1").await.json();
    assert_eq!(daily["daily"][0]["requests"], 3, "{daily}");
    assert_eq!(daily["daily"][0]["hits"], 2, "{daily}");

    // The general cache's counters reach Postgres directly too: the statistics
    // above were computed once (a miss, the leader's second look, one set).
    let fleet = get_on(&t.app, Some("ops"), "/api/v1/admin/cache/stats")
        .await
        .json();
    assert_eq!(fleet["redis"], json!({"status": "disabled"}), "{fleet}");
    assert_eq!(fleet["tiers"], json!(["memory", "postgres"]), "{fleet}");
    let stats_ns = &fleet["namespaces"]["stats"];
    assert_eq!(
        (
            &stats_ns["callers"]["hits"],
            &stats_ns["callers"]["misses"],
            &stats_ns["callers"]["sets"]
        ),
        (&json!(0), &json!(2), &json!(1)),
        "{fleet}"
    );
    assert_eq!(
        stats_ns["tiers"]["postgres"]["entries_active"], 1,
        "{fleet}"
    );
    let report = facesvg::sweep::run(&t.app).await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(!report.unused_rule_applied, "no counts to judge by");
}
