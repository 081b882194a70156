//! A deployment without Redis (`REDIS_URL=none`): the service runs on its
//! in-process tier and Postgres, and health says `ok` with Redis `disabled`.

mod common;

use common::{submit_to, Form, TestApp};

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

    let stats = t.get("/api/v1/cache/stats?days=1").await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    let report = facesvg::sweep::run(&t.app).await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(!report.unused_rule_applied, "no counts to judge by");
}
