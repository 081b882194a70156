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
