//! The sweep deletes exactly the rows it should, with their S3 objects and Redis
//! keys, and no others; stuck tasks become retryable failures that a resubmit runs.

mod common;

use common::{Form, TestApp};
use facesvg::cache::OutcomeTier;
use uuid::Uuid;

async fn row(t: &TestApp, label: &str, status: &str, sql_times: &str, hits: i64) -> (Uuid, String) {
    let id = Uuid::new_v4();
    let key = format!("results/tenant-a/{id}.svg");
    t.app
        .objects
        .put(
            &key,
            format!("<svg id=\"{label}\"/>").into_bytes(),
            "image/svg+xml",
        )
        .await
        .unwrap();
    let error = if status == "FAILURE" {
        Some(serde_json::json!({"code": "invalid_field", "message": "x", "retryable": false}))
    } else {
        None
    };
    let sql = format!(
        "INSERT INTO task_results (task_id, tenant, input_hash, status, result, svg_s3_key, error, cache_hits,
             renderer_version, submitted_at, completed_at, ttl_expires_at)
         SELECT $1, 'tenant-a', $2, $3, '{{}}'::jsonb, $4, $5, $6, 'v', s, c, e FROM (SELECT {sql_times}) AS times(s, c, e)"
    );
    t.db()
        .await
        .execute(&sql, &[&id, &label, &status, &key, &error, &hits])
        .await
        .unwrap();
    (id, key)
}

#[tokio::test]
async fn the_sweep_deletes_exactly_what_it_should() {
    let t = TestApp::spawn().await;
    let day = "interval '1 day'";
    let expired = row(
        &t,
        "expired",
        "SUCCESS",
        &format!("now() - 2*{day}, now() - 2*{day}, now() - {day}"),
        3,
    )
    .await;
    let old_failure = row(
        &t,
        "old-failure",
        "FAILURE",
        &format!("now() - 8*{day}, now() - 8*{day}, now() + {day}"),
        0,
    )
    .await;
    let unused = row(
        &t,
        "unused",
        "SUCCESS",
        &format!("now() - 31*{day}, now() - 31*{day}, now() + {day}"),
        0,
    )
    .await;
    let fresh = row(
        &t,
        "fresh",
        "SUCCESS",
        &format!("now(), now(), now() + {day}"),
        0,
    )
    .await;
    let used_old = row(
        &t,
        "used-old",
        "SUCCESS",
        &format!("now() - 31*{day}, now() - 31*{day}, now() + {day}"),
        5,
    )
    .await;
    let recent_failure = row(
        &t,
        "recent-failure",
        "FAILURE",
        &format!("now() - {day}, now() - {day}, now() + {day}"),
        0,
    )
    .await;
    // A row hit only through Redis so far: the sweep must fold the hit before judging it unused.
    let hit_in_redis = row(
        &t,
        "hit-in-redis",
        "SUCCESS",
        &format!("now() - 31*{day}, now() - 31*{day}, now() + {day}"),
        0,
    )
    .await;
    t.app
        .outcomes
        .redis
        .record_request("tenant-a", "redis", Some(hit_in_redis.0))
        .await
        .unwrap();
    // The expired row also has Redis copies, which must go with it.
    let task = t
        .app
        .tasks
        .get("tenant-a", expired.0)
        .await
        .unwrap()
        .unwrap();
    let mut outcome = task.outcome().unwrap();
    outcome.ttl_expires_at = chrono::Utc::now() + chrono::Duration::hours(1);
    t.app.outcomes.redis.put(&outcome).await.unwrap();

    let report = facesvg::sweep::run(&t.app).await;
    assert_eq!(
        (report.expired, report.failed, report.unused),
        (1, 1, 1),
        "{report:?}"
    );
    assert_eq!(report.s3_objects_deleted, 3);
    assert_eq!(report.hits_folded, 1);
    assert!(report.errors.is_empty(), "{report:?}");

    let remaining: Vec<String> = t
        .db()
        .await
        .query(
            "SELECT input_hash FROM task_results ORDER BY input_hash",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        remaining,
        ["fresh", "hit-in-redis", "recent-failure", "used-old"]
    );
    let mut keys = t.s3_keys("results/").await;
    keys.sort();
    let mut expected = vec![fresh.1, used_old.1, recent_failure.1, hit_in_redis.1];
    expected.sort();
    assert_eq!(keys, expected);
    for gone in [&expired, &old_failure, &unused] {
        assert!(t.app.objects.get(&gone.1).await.unwrap().is_none());
    }
    assert!(
        t.app
            .outcomes
            .redis
            .get_by_task(expired.0)
            .await
            .unwrap()
            .is_none(),
        "redis keys deleted"
    );

    // A second run finds nothing.
    let again = facesvg::sweep::run(&t.app).await;
    assert_eq!(
        (
            again.expired,
            again.failed,
            again.unused,
            again.s3_objects_deleted
        ),
        (0, 0, 0, 0)
    );
}

#[tokio::test]
async fn stuck_tasks_fail_retryably_and_a_resubmit_runs_them() {
    let t = TestApp::spawn_with(|s| {
        s.insert("STUCK_AFTER_SECS".into(), "0".into());
    })
    .await;
    let r = t.submit(&Form::takeo()).await;
    let id = r.json()["task_id"].as_str().unwrap().to_owned();
    // The message is lost.
    let lost = t.receive_all().await;
    assert_eq!(lost.len(), 1);
    for m in lost {
        t.sqs
            .client()
            .delete_message()
            .queue_url(t.sqs.url())
            .receipt_handle(m.receipt_handle.unwrap())
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let report = facesvg::sweep::run(&t.app).await;
    assert_eq!(report.stuck_failed, 1);
    let s = t.status(&id).await;
    assert_eq!(s["status"], "FAILURE");
    assert_eq!(s["error"]["retryable"], true);

    // Submitting again reopens the same task and runs it.
    let again = t.submit(&Form::takeo()).await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.json()["task_id"], id.as_str());
    let (n, failed) = t.drain().await;
    assert_eq!((n, failed.len()), (1, 0));
    assert_eq!(t.status(&id).await["status"], "SUCCESS");
}

#[tokio::test]
async fn the_admin_route_needs_the_admin_scope() {
    let t = TestApp::spawn().await;
    let mut event =
        common::http_event("POST", "/api/v1/cache/cleanup", Some("tenant-a"), None, b"");
    let ok = facesvg::sweep::handle_event(&t.app, event.clone())
        .await
        .expect("handled");
    assert_eq!(ok["statusCode"], 200, "{ok}");
    let report: serde_json::Value = serde_json::from_str(ok["body"].as_str().unwrap()).unwrap();
    assert_eq!(report["expired"], 0);
    event["requestContext"]["authorizer"]["jwt"]["scopes"] = serde_json::json!([]);
    let denied = facesvg::sweep::handle_event(&t.app, event)
        .await
        .expect("handled");
    assert_eq!(denied["statusCode"], 403);
    // The schedule's event runs the sweep directly.
    let scheduled = facesvg::sweep::handle_event(
        &t.app,
        serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}),
    )
    .await
    .expect("handled");
    assert_eq!(scheduled["expired"], 0, "{scheduled}");
}

/// Rows of `namespace` in `cache_store`, oldest use first.
async fn cache_rows(t: &TestApp, namespace: &str) -> Vec<String> {
    t.db()
        .await
        .query(
            "SELECT key FROM cache_store WHERE namespace = $1 ORDER BY last_used_at, key",
            &[&namespace],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every `cache_store` row's key and value bytes, oldest use first.
async fn cache_sizes(t: &TestApp) -> Vec<(String, i64)> {
    t.db()
        .await
        .query(
            "SELECT key, pg_column_size(value)::int8 FROM cache_store ORDER BY last_used_at, key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Makes the rows of `namespace` used `hours` ago, per key id.
async fn used_hours_ago(t: &TestApp, namespace: &str, key: &facesvg::cache::kv::Key, hours: i32) {
    t.db()
        .await
        .execute(
            "UPDATE cache_store SET last_used_at = now() - $3::int4 * interval '1 hour'
              WHERE namespace = $1 AND key = $2",
            &[&namespace, &key.id(), &hours],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_sweep_evicts_the_least_recently_used_cache_rows_over_a_namespace_cap() {
    use facesvg::cache::kv::{Backend, KeyBuilder};
    let t = TestApp::spawn_with(|s| {
        s.insert("CACHE_KV_MAX_ENTRIES".into(), "docs=5,spare=100".into());
    })
    .await;
    let docs = KeyBuilder::new("docs").unwrap();
    let other = KeyBuilder::new("other").unwrap();
    let keys: Vec<_> = (0..12)
        .map(|i| docs.key("tenant-a", &[&format!("d{i:02}")]).unwrap())
        .collect();
    for (i, k) in keys.iter().enumerate() {
        t.app.kv.set(k, &i, None).await.unwrap();
        // d00 is the least recently used, d11 the most.
        used_hours_ago(&t, "docs", k, 24 - i as i32).await;
    }
    for i in 0..3 {
        let k = other.key("tenant-a", &[&format!("o{i}")]).unwrap();
        t.app.kv.set(&k, &i, None).await.unwrap();
        used_hours_ago(&t, "other", &k, 100).await;
    }
    // Reading d00 and d01 from Postgres makes them the most recently used.
    let read: Vec<_> = t
        .app
        .kv_store
        .get_many(&[&keys[0], &keys[1]], false)
        .await
        .unwrap();
    assert!(read.iter().all(Option::is_some));

    let report = facesvg::sweep::run(&t.app).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.cache_store_evicted, 7, "{report:?}");
    let left = cache_rows(&t, "docs").await;
    let want: Vec<String> = [9, 10, 11, 0, 1]
        .iter()
        .map(|&i| keys[i].id().to_owned())
        .collect();
    assert_eq!(left, want, "the five most recently used stay");
    // A namespace without a cap keeps every row, however old.
    assert_eq!(cache_rows(&t, "other").await.len(), 3);
    // Under its cap, the next run evicts nothing.
    assert_eq!(facesvg::sweep::run(&t.app).await.cache_store_evicted, 0);

    // Bounded: 2 rows per statement, 2 statements, and the rest waits for a run.
    for i in 12..20 {
        let k = docs.key("tenant-a", &[&format!("d{i:02}")]).unwrap();
        t.app.kv.set(&k, &i, None).await.unwrap();
    }
    let e = t
        .app
        .kv_store
        .evict_over_entries("docs", 5, 2, 2)
        .await
        .unwrap();
    assert_eq!((e.rows, e.batches, e.more), (4, 2, true));
    assert_eq!(cache_rows(&t, "docs").await.len(), 9);
    let e = t
        .app
        .kv_store
        .evict_over_entries("docs", 5, 2, 10)
        .await
        .unwrap();
    assert_eq!((e.rows, e.more), (4, false));
    assert_eq!(cache_rows(&t, "docs").await.len(), 5);
}

#[tokio::test]
async fn the_sweep_evicts_the_least_recently_used_cache_rows_over_the_byte_cap() {
    use facesvg::cache::kv::{Backend, KeyBuilder};
    let t = TestApp::spawn_with(|s| {
        s.insert("CACHE_KV_MAX_SIZE_MB".into(), "1".into());
        // Kept without expiry in Postgres: only the cap bounds them.
        s.insert("CACHE_KV_TTLS".into(), "blobs@postgres=forever".into());
    })
    .await;
    let blobs = KeyBuilder::new("blobs").unwrap();
    // 30 values of about 100 KB that do not compress: about 3 MB.
    let keys: Vec<_> = (0..30)
        .map(|i| blobs.key("tenant-a", &[&format!("b{i:02}")]).unwrap())
        .collect();
    for (i, k) in keys.iter().enumerate() {
        let value: String = (0..3000)
            .map(|_| Uuid::new_v4().simple().to_string())
            .collect();
        t.app.kv.set(k, &value, None).await.unwrap();
        used_hours_ago(&t, "blobs", k, 100 - i as i32).await;
    }
    let forever: i64 = t
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM cache_store WHERE namespace = 'blobs' AND expires_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(forever, 30);
    // b00, the least recently used, is read from Postgres: now the most recent.
    assert!(t.app.kv_store.get_many(&[&keys[0]], false).await.unwrap()[0].is_some());

    let before = cache_sizes(&t).await;
    let report = facesvg::sweep::run(&t.app).await;
    assert!(report.is_ok(), "{report:?}");
    let left = cache_sizes(&t).await;
    let total: i64 = left.iter().map(|(_, b)| b).sum();
    let cap = 1 << 20;
    assert!(total <= cap, "{total} bytes left");
    // Least recently used first, and no more than needed: the evicted rows are the
    // oldest, and keeping the last of them would have been over the cap.
    let evicted = &before[..before.len() - left.len()];
    assert_eq!(&before[evicted.len()..], &left[..]);
    let last = evicted.last().expect("something was evicted").1;
    assert!(total + last > cap, "{total} + {last}: evicted too much");
    assert_eq!(report.cache_store_evicted, evicted.len() as u64);
    assert_eq!(
        left.last().map(|(k, _)| k.as_str()),
        Some(keys[0].id()),
        "b00 was read last"
    );
    // The survivors are the most recently used: b00 (just read), then the newest.
    let mut want: Vec<String> = keys[30 - (left.len() - 1)..]
        .iter()
        .map(|k| k.id().to_owned())
        .collect();
    want.push(keys[0].id().to_owned());
    let got: Vec<String> = left.into_iter().map(|(k, _)| k).collect();
    assert_eq!(got, want);
}
