//! Expiry holds on every read, and Postgres going away leaves the upper tiers
//! serving: a `task_results` row past its TTL is never answered, even before the
//! sweep deletes it; with Postgres refusing connections, hits still come from
//! Redis and a miss gets our 503 with `Retry-After`.

mod common;

use std::sync::Arc;

use common::{status_on, submit_to, Form, TestApp};
use facesvg::app::App;

#[tokio::test]
async fn a_task_row_past_its_ttl_is_never_served_before_the_sweep() {
    let t = TestApp::spawn().await;
    let form = Form::einstein();
    let first = t.submit(&form).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let id = first.json()["task_id"].as_str().unwrap().to_owned();
    t.drain().await;
    assert_eq!(t.status(&id).await["status"], "SUCCESS");
    let task = uuid::Uuid::parse_str(&id).unwrap();

    // The row's TTL ends; the upper tiers lose their copies (as their own TTLs,
    // which never exceed the row's, would make them do).
    let db = t.db().await;
    let hash: String = db
        .query_one(
            "UPDATE task_results SET ttl_expires_at = now() - interval '1 second'
             WHERE task_id = $1 RETURNING input_hash",
            &[&task],
        )
        .await
        .unwrap()
        .get(0);
    t.app
        .outcomes
        .forget(&t.tenant, &hash, task)
        .await
        .expect("forget the upper tiers' copies");
    assert_eq!(t.count_rows("task_results").await, 1, "no sweep has run");

    // Every read goes to Postgres and none answers the expired row.
    let cold: Arc<App> = t.another_instance().await;
    let status = status_on(&cold, &t.tenant, &id).await;
    assert_eq!(status.status, 404, "{}", status.body);
    let resubmitted = submit_to(&cold, Some(&t.tenant), &form).await;
    assert_eq!(resubmitted.status, 202, "{}", resubmitted.body);
    assert_eq!(
        resubmitted.json()["task_id"],
        id.as_str(),
        "the row is reused"
    );
    assert_eq!(resubmitted.json()["status"], "PENDING");

    // It renders again and lives for a new TTL.
    let (delivered, failed) = t.drain().await;
    assert_eq!((delivered, failed.len()), (1, 0));
    let again = status_on(&cold, &t.tenant, &id).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["status"], "SUCCESS");
    let live: bool = db
        .query_one(
            "SELECT ttl_expires_at > now() FROM task_results WHERE task_id = $1",
            &[&task],
        )
        .await
        .unwrap()
        .get(0);
    assert!(live);
}

#[tokio::test]
async fn with_postgres_stopped_redis_serves_hits_and_a_miss_gets_503() {
    let t = TestApp::spawn().await;
    let first = t.submit(&Form::einstein()).await;
    let id = first.json()["task_id"].as_str().unwrap().to_owned();
    t.drain().await;
    assert_eq!(t.status(&id).await["status"], "SUCCESS");

    // An instance whose Postgres refuses every connection (nothing listens on
    // the port), with the same Redis: as after an RDS failover starts.
    // (Port 1, tcpmux, is privileged and unused: a freed ephemeral port could be
    // taken by another test's socket.)
    let mut config = t.app.config.clone();
    config.database_url = "postgres://postgres@127.0.0.1:1/facesvg".to_owned();
    let down = App::from_config(config)
        .await
        .expect("starts without Postgres");

    let hit = submit_to(&down, Some(&t.tenant), &Form::einstein()).await;
    assert_eq!(hit.status, 200, "{}", hit.body);
    assert_eq!(hit.json()["cache_tier"], "redis");
    assert_eq!(hit.json()["task_id"], id.as_str());
    let status = status_on(&down, &t.tenant, &id).await;
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(status.json()["status"], "SUCCESS");

    let miss = submit_to(&down, Some(&t.tenant), &Form::takeo()).await;
    assert_eq!(miss.status, 503, "{}", miss.body);
    assert_eq!(miss.json()["error"]["code"], "unavailable");
    assert!(
        miss.headers
            .get("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)),
        "{:?}",
        miss.headers
    );
    assert_eq!(t.queue_depth().await, 0, "nothing queued without a row");
}
