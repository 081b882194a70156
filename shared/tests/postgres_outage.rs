//! Postgres goes away in the middle of traffic and comes back: clients get our 503
//! JSON with `Retry-After` (hits still come from the upper tiers), the same
//! instance serves again once Postgres answers (no restart), every accepted task
//! renders, and no row is left half-written.
//!
//! "Postgres" here is a TCP proxy in front of the real server: stopping it drops
//! every open connection and refuses new ones, as a crashed or failing-over server
//! does, without touching the server other tests share.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{submit_to, Form, TestApp};
use facesvg::app::App;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards `listener`'s connections to `upstream`. While `down` is true it closes
/// each new connection at once, and turning it on ends every forwarded one: a
/// crashed server as its clients see it, on one port for the whole test (no window
/// in which another socket could take the port).
fn forward(
    listener: TcpListener,
    upstream: String,
    down: Arc<watch::Sender<bool>>,
) -> JoinHandle<()> {
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
                if let Ok(mut out) = TcpStream::connect(&up).await {
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
async fn postgres_stopped_mid_traffic_then_back_loses_nothing() {
    let t = TestApp::spawn().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // The server the tests use, wherever FACESVG_TEST_PG puts it.
    let url = t.app.config.database_url.clone();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap().to_owned();
    let upstream = if authority.contains(':') {
        authority.clone()
    } else {
        format!("{authority}:5432")
    };
    let down = Arc::new(watch::channel(false).0);
    let _proxy = forward(listener, upstream, down.clone());

    let mut config = t.app.config.clone();
    config.database_url = url.replacen(&authority, &format!("127.0.0.1:{port}"), 1);
    assert!(config.database_url.contains(&port.to_string()));
    let app = Arc::new(App::from_config(config).await.expect("app"));

    // A finished task to hit during the outage.
    let hit = submit_to(&app, Some(&t.tenant), &Form::einstein()).await;
    assert_eq!(hit.status, 202, "{}", hit.body);
    t.drain().await;
    assert_eq!(
        submit_to(&app, Some(&t.tenant), &Form::einstein())
            .await
            .status,
        200
    );

    // Traffic: a new input and a repeat, over and over, from two clients.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|c| {
            let (app, stop, tenant) = (app.clone(), stop.clone(), t.tenant.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let opacity = format!("0.{c}{i:03}");
                    for form in [
                        Form::takeo().field("region_opacity", &opacity),
                        Form::einstein(),
                    ] {
                        let r = submit_to(&app, Some(&tenant), &form).await;
                        seen.push(r);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(400)).await;
    down.send_replace(true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    down.send_replace(false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);

    let mut answers = Vec::new();
    for c in clients {
        answers.extend(c.await.unwrap());
    }
    let count = |code: u16| answers.iter().filter(|r| r.status == code).count();
    eprintln!(
        "answers: 200×{} 202×{} 503×{} of {}",
        count(200),
        count(202),
        count(503),
        answers.len()
    );
    for r in &answers {
        assert!(
            matches!(r.status, 200 | 202 | 503),
            "{} {}",
            r.status,
            r.body
        );
        if r.status == 503 {
            assert_eq!(r.json()["error"]["code"], "unavailable", "{}", r.body);
            assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
        }
    }
    assert!(count(503) > 0, "the outage was seen");
    assert!(
        answers
            .iter()
            .filter(|r| r.status == 200)
            .all(|r| r.json()["task_id"].is_string()),
        "hits answered"
    );
    // Served again, by the same instance, after Postgres came back.
    let after = submit_to(&app, Some(&t.tenant), &Form::takeo().field("crop", "none")).await;
    assert_eq!(after.status, 202, "{}", after.body);

    // Every accepted task renders; nothing is stuck or half-written.
    let mut accepted: Vec<String> = answers
        .iter()
        .filter(|r| r.status == 202)
        .map(|r| r.json()["task_id"].as_str().unwrap().to_owned())
        .collect();
    accepted.push(after.json()["task_id"].as_str().unwrap().to_owned());
    for _ in 0..10 {
        t.age_outbox().await;
        facesvg::sweep::relay(&t.app).await.expect("relay");
        t.drain().await;
    }
    for id in &accepted {
        assert_eq!(t.status(id).await["status"], "SUCCESS", "{id}");
    }
    let db = t.db().await;
    let open: i64 = db
        .query_one(
            "SELECT count(*) FROM task_results WHERE status IN ('PENDING', 'PROCESSING')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "no task stuck");
    let torn: i64 = db
        .query_one(
            "SELECT count(*) FROM task_results WHERE status = 'SUCCESS'
               AND (result IS NULL OR svg_s3_key IS NULL OR completed_at IS NULL)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(torn, 0, "no row half-written");
}
