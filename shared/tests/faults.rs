//! Faults on the real local services: backends that hang instead of refusing. Each
//! case states what the client sees, and that nothing is lost or half-written.

mod common;

use std::time::{Duration, Instant};

use common::{Form, TestApp};
use tokio::net::TcpListener;

/// A listener that accepts connections and never answers, as a wedged Postgres, RDS
/// Proxy or Redis would. It lives as long as the returned task.
async fn black_hole() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

/// The bound a request must be answered within: far below any Lambda timeout of the
/// stack (10 s and more), far above the configured deadlines used here.
const ANSWERED_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_postgres_that_never_answers_gets_our_503_before_the_lambda_timeout() {
    let (port, _hole) = black_hole().await;
    let t = TestApp::spawn_with(|env| {
        env.insert(
            "DATABASE_URL".into(),
            format!("postgres://postgres@127.0.0.1:{port}/facesvg"),
        );
        env.insert("DB_TIMEOUT_MS".into(), "600".into());
        env.insert("DB_CONNECT_TIMEOUT_MS".into(), "400".into());
    })
    .await;

    let started = Instant::now();
    let resp = t.submit(&Form::takeo()).await;
    let took = started.elapsed();
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(
        resp.headers.get("retry-after").map(String::as_str),
        Some("1")
    );
    assert_eq!(resp.json()["error"]["code"], "unavailable");
    assert!(took < ANSWERED_WITHIN, "submit answered after {took:?}");

    let started = Instant::now();
    let resp = t
        .get("/api/v1/frontal/crop/status/00000000-0000-4000-8000-000000000000")
        .await;
    let took = started.elapsed();
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(took < ANSWERED_WITHIN, "status answered after {took:?}");
    assert_eq!(t.queue_depth().await, 0, "nothing was queued without a row");
}

#[tokio::test]
async fn a_redis_that_never_answers_costs_its_timeout_then_nothing() {
    let (port, _hole) = black_hole().await;
    let t = TestApp::spawn_with(|env| {
        env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}/"));
        env.insert("REDIS_TIMEOUT_MS".into(), "200".into());
    })
    .await;
    let first = t.submit(&Form::takeo()).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let (_, failed) = t.drain().await;
    assert!(failed.is_empty());
    let id = first.json()["task_id"].as_str().unwrap().to_owned();
    assert_eq!(t.status(&id).await["status"], "SUCCESS");
    // Answered from Postgres while Redis hangs: the breaker opened after the first
    // failures, so later requests skip Redis entirely.
    for _ in 0..5 {
        let again = t.submit(&Form::takeo()).await;
        assert_eq!(again.status, 200, "{}", again.body);
        assert_ne!(again.json()["cache_tier"], "redis");
    }
    let health = t.get("/health").await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["status"], "degraded");
}

/// Forwards `listener`'s connections to `upstream`; while `down` is true it closes
/// each new connection at once, and turning it on ends every forwarded one: a
/// Redis that crashed, as its clients see it, without touching the server other
/// tests share.
fn forward(
    listener: TcpListener,
    upstream: String,
    down: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            if *down.borrow() {
                continue;
            }
            let (up, mut cut) = (upstream.clone(), down.subscribe());
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(&up).await {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = cut.wait_for(|d| *d) => {}
                    }
                }
            });
        }
    })
}

#[tokio::test]
async fn counts_taken_while_redis_is_down_are_sent_once_it_is_back() {
    use serde_json::json;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let real = common::env("REDIS_URL", "redis://127.0.0.1:6379/");
    let upstream = real
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let down = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
    let _proxy = forward(listener, upstream, down.clone());
    let t = TestApp::spawn_with(|env| {
        env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{port}/"));
        env.insert("REDIS_TIMEOUT_MS".into(), "300".into());
    })
    .await;
    let s = t.render(&Form::takeo()).await;
    let task = s["task_id"].as_str().unwrap().to_owned();
    t.app.outcomes.flush_counts().await;
    assert_eq!(t.app.outcomes.held_counts(), (0, 0));

    // Redis goes away: hits are still answered (L0), and their counts are held.
    down.send_replace(true);
    for _ in 0..3 {
        let hit = t.submit(&Form::takeo()).await;
        assert_eq!(hit.status, 200, "{}", hit.body);
        assert_eq!(hit.json()["cache_tier"], "l0");
    }
    let key = facesvg::cache::kv::KeyBuilder::new("buffered")
        .unwrap()
        .key("t1", &["k"])
        .unwrap();
    t.app.kv.set(&key, &json!(1), None).await.unwrap();
    t.app.outcomes.flush_counts().await;
    assert_eq!(
        t.app.outcomes.held_counts(),
        (3, 3),
        "three requests and three hits on one task held, not dropped"
    );
    let stats = t.get("/api/v1/cache/stats?days=1").await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert_eq!(stats.json()["requests"], serde_json::Value::Null);

    // Back: the next send carries what was held (once the breaker lets a call through).
    down.send_replace(false);
    for _ in 0..30 {
        t.app.outcomes.flush_counts().await;
        if t.app.outcomes.held_counts() == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        t.app.outcomes.held_counts(),
        (0, 0),
        "sent once Redis is back"
    );
    // A window not asked before (the one above was cached while Redis was down).
    let stats = t.get("/api/v1/cache/stats?days=2").await.json();
    assert_eq!(
        stats["requests"],
        json!({"total": 4, "hits": {"l0": 3, "redis": 0, "postgres": 0, "total": 3}, "misses": 1, "hit_ratio": 0.75}),
        "{stats}"
    );
    assert_eq!(stats["cache_efficiency"], "good");
    let mut redis = t.redis().await;
    let hits: Option<i64> = redis::cmd("HGET")
        .arg(format!("{}:hits", t.app.config.redis_prefix))
        .arg(&task)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(hits, Some(3), "the held hits reached Redis once");
    // The general cache's counts of the outage went too: the set was taken by
    // memory and Postgres, and Redis's failure was counted.
    let fleet = common::get_on(&t.app, Some("ops"), "/api/v1/admin/cache/stats")
        .await
        .json();
    let tiers = &fleet["namespaces"]["buffered"]["tiers"];
    assert_eq!(
        fleet["namespaces"]["buffered"]["callers"]["sets"], 1,
        "{fleet}"
    );
    assert_eq!(
        (
            &tiers["memory"]["sets"],
            &tiers["redis"]["sets"],
            &tiers["redis"]["errors"],
            &tiers["postgres"]["sets"]
        ),
        (&json!(1), &json!(0), &json!(1), &json!(1)),
        "{fleet}"
    );
}
