//! A fair share per tenant, against the real stack: a tenant that floods distinct
//! misses is refused once its bucket is spent, while another tenant's tasks are all
//! accepted and rendered; the buckets hold in Redis, in Postgres without Redis, and
//! in Postgres when Redis is down; upload forms and invalidations have buckets of
//! their own; a tenant at its cap of open tasks starts no more.

mod common;

use std::collections::HashMap;

use common::{http_event, to_resp, Form, Resp, TestApp};

/// Tight limits: a burst of 5 renders, then one a second; 3 open tasks at most.
fn tight(s: &mut HashMap<String, String>) {
    s.insert("TENANT_RENDERS_PER_MINUTE".into(), "60".into());
    s.insert("TENANT_RENDER_BURST".into(), "5".into());
    s.insert("TENANT_UPLOADS_PER_MINUTE".into(), "3".into());
    s.insert("TENANT_INVALIDATIONS_PER_MINUTE".into(), "2".into());
    s.insert("TENANT_OPEN_TASKS".into(), "1000".into());
}

/// A distinct miss for each `n`: the same face at another opacity.
fn miss(n: u32) -> Form {
    Form::takeo().field("region_opacity", &format!("0.{:03}", 100 + n))
}

fn assert_refused(r: &Resp, limit: &str) {
    assert_eq!(r.status, 429, "{}", r.body);
    let body = r.json();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["error"]["limit"], limit);
    let wait: u64 = r.headers["retry-after"].parse().expect("Retry-After");
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
}

/// Floods `flood` with `n` distinct misses at once; returns (accepted, refused).
async fn flood(t: &TestApp, n: u32) -> (usize, usize) {
    let answers = futures::future::join_all((0..n).map(|i| {
        let form = miss(i);
        async move { t.submit_as(Some("flood"), &form).await }
    }))
    .await;
    let mut accepted = 0;
    let mut refused = 0;
    for r in &answers {
        match r.status {
            202 => accepted += 1,
            429 => {
                assert_refused(r, "renders_per_minute");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    (accepted, refused)
}

async fn a_flood_is_refused_and_the_quiet_tenant_is_served(t: &TestApp) {
    // One miss first, to be a hit later.
    assert_eq!(t.submit_as(Some("flood"), &miss(99)).await.status, 202);
    let (accepted, refused) = flood(t, 20).await;
    // The rest of the burst, plus what refilled while the flood ran (one a second).
    assert!((4..=10).contains(&accepted), "accepted {accepted}");
    assert_eq!(accepted + refused, 20);

    // The other tenant's bucket is its own: every one of its misses is accepted…
    let mut quiet = Vec::new();
    for i in 0..5 {
        let r = t.submit_as(Some("quiet"), &miss(i)).await;
        assert_eq!(r.status, 202, "{}", r.body);
        quiet.push(r.json()["task_id"].as_str().unwrap().to_owned());
    }
    // …and rendered.
    let (_, failed) = t.drain().await;
    assert!(failed.is_empty(), "{failed:?}");
    for id in &quiet {
        let r = t
            .get_as(Some("quiet"), &format!("/api/v1/frontal/crop/status/{id}"))
            .await;
        assert_eq!(r.json()["status"], "SUCCESS", "{}", r.body);
    }
    // A hit costs nothing: the flooding tenant is still answered from the cache.
    let r = t.submit_as(Some("flood"), &miss(99)).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn the_buckets_hold_in_redis() {
    let t = TestApp::spawn_with(tight).await;
    a_flood_is_refused_and_the_quiet_tenant_is_served(&t).await;
    let mut redis = t.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:q:*", t.app.config.redis_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        keys.iter()
            .any(|k| k.ends_with(":renders_per_minute:flood")),
        "{keys:?}"
    );
    assert_eq!(t.count_rows("tenant_quotas").await, 0, "Redis held them");
}

#[tokio::test]
async fn the_buckets_hold_in_postgres_without_redis() {
    let t = TestApp::spawn_with(|s| {
        tight(s);
        s.insert("REDIS_URL".into(), "none".into());
    })
    .await;
    a_flood_is_refused_and_the_quiet_tenant_is_served(&t).await;
    assert!(t.count_rows("tenant_quotas").await >= 2);
}

#[tokio::test]
async fn the_buckets_hold_in_postgres_while_redis_is_down() {
    let t = TestApp::spawn_with(|s| {
        tight(s);
        s.insert("REDIS_URL".into(), "redis://127.0.0.1:1/".into());
        s.insert("REDIS_TIMEOUT_MS".into(), "50".into());
    })
    .await;
    let (accepted, refused) = flood(&t, 12).await;
    assert!((5..=10).contains(&accepted), "accepted {accepted}");
    assert!(refused >= 2, "refused {refused}");
    assert!(t.count_rows("tenant_quotas").await >= 1);
}

#[tokio::test]
async fn a_tenant_at_its_cap_of_open_tasks_starts_no_more() {
    let t = TestApp::spawn_with(|s| {
        s.insert("TENANT_OPEN_TASKS".into(), "2".into());
    })
    .await;
    for i in 0..2 {
        assert_eq!(t.submit_as(Some("busy"), &miss(i)).await.status, 202);
    }
    let r = t.submit_as(Some("busy"), &miss(2)).await;
    assert_refused(&r, "open_tasks");
    // Others are not held back by it.
    assert_eq!(t.submit_as(Some("other"), &miss(2)).await.status, 202);
    // Once its tasks are rendered, it may start more.
    let (_, failed) = t.drain().await;
    assert!(failed.is_empty());
    assert_eq!(t.submit_as(Some("busy"), &miss(2)).await.status, 202);
}

#[tokio::test]
async fn upload_forms_and_invalidations_have_buckets_of_their_own() {
    let t = TestApp::spawn_with(tight).await;
    let call = |method: &'static str, path: &'static str, body: &'static [u8]| {
        let app = t.app.clone();
        async move {
            let event = http_event(
                method,
                path,
                Some("tenant-a"),
                Some("application/json"),
                body,
            );
            let req = facesvg::api::event::decode(event.to_string().as_bytes()).unwrap();
            if path.ends_with("/uploads") {
                to_resp(facesvg::api::submit(&app, req).await)
            } else {
                to_resp(facesvg::api::status(&app, req).await)
            }
        }
    };
    for _ in 0..3 {
        let r = call("POST", "/api/v1/frontal/crop/uploads", b"").await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = call("POST", "/api/v1/frontal/crop/uploads", b"").await;
    assert_refused(&r, "uploads_per_minute");
    for _ in 0..2 {
        let r = call("POST", "/api/v1/cache/invalidate", b"{}").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = call("POST", "/api/v1/cache/invalidate", b"{}").await;
    assert_refused(&r, "invalidations_per_minute");
    // Renders are a bucket of their own: still available.
    assert_eq!(t.submit(&miss(0)).await.status, 202);
}
