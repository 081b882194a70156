//! One poll per render: the 202 of a submit and the status of an open task carry
//! `Retry-After`, from the recent median time to completion.

mod common;

use common::{submit_to, Form, TestApp};

#[tokio::test]
async fn open_tasks_advise_the_recent_median_wait() {
    let t = TestApp::spawn().await;
    // No history yet: the minimum.
    let first = t.submit(&Form::takeo()).await;
    assert_eq!(first.status, 202);
    assert_eq!(
        first.headers.get("retry-after").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        first.headers.get("cache-control").map(String::as_str),
        Some("no-store")
    );
    let id = first.json()["task_id"].as_str().unwrap().to_owned();
    let open = t.get(&format!("/api/v1/frontal/crop/status/{id}")).await;
    assert_eq!(
        open.headers.get("retry-after").map(String::as_str),
        Some("1")
    );

    // Recent renders took 4, 6 and 7 s from submit to success: the median is 6 s.
    let db = t.db().await;
    for (n, secs) in [(1, 4), (2, 6), (3, 7)] {
        db.execute(
            "INSERT INTO task_results (task_id, tenant, input_hash, status, renderer_version,
                 submitted_at, completed_at, ttl_expires_at)
             VALUES (gen_random_uuid(), 'history', $1, 'SUCCESS', 'v',
                 now() - make_interval(secs => $2), now(), now() + interval '1 day')",
            &[&format!("h{n}"), &f64::from(secs)],
        )
        .await
        .unwrap();
    }
    // A new instance reads the median (an instance reuses it for a minute).
    let other = t.another_instance().await;
    let second = submit_to(&other, Some("tenant-a"), &Form::einstein()).await;
    assert_eq!(second.status, 202);
    assert_eq!(
        second.headers.get("retry-after").map(String::as_str),
        Some("6")
    );

    // A finished task is no longer polled: no advice.
    t.drain().await;
    let done = t.get(&format!("/api/v1/frontal/crop/status/{id}")).await;
    assert_eq!(done.json()["status"], "SUCCESS");
    assert!(!done.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn a_presigned_url_is_reused_while_more_than_half_its_life_is_left() {
    let t = TestApp::spawn_with(|env| {
        env.insert("PRESIGN_TTL_SECS".into(), "2".into());
    })
    .await;
    let first = t.render(&Form::takeo()).await;
    let url = |r: &common::Resp| r.json()["svg_url"].as_str().unwrap().to_owned();
    let a = t.submit(&Form::takeo()).await;
    let b = t.submit(&Form::takeo()).await;
    assert_eq!(url(&a), url(&b), "signed once, reused");
    assert_eq!(
        first["svg_url"].as_str(),
        Some(url(&a).as_str()),
        "the status call signed it"
    );
    // Past half of its two seconds, a fresh one is signed.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let c = t.submit(&Form::takeo()).await;
    assert_ne!(url(&a), url(&c));
}
