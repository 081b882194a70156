//! A worker killed with SIGKILL in the middle of a render (a real process, killed
//! by the kernel: no destructor, no rollback of its own): its claim goes stale, the
//! redelivery renders the task exactly once, and nothing half-written is left.
//!
//! The worker is this test binary run again as a child (the ignored test
//! `child_worker`), so the kill hits the real worker code with its own pools.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Form, TestApp};

const CHILD_MESSAGE: &str = "FACESVG_SIGKILL_CHILD_MESSAGE";
/// Long enough that the checks between the kill and the first redelivery fit in it
/// on a loaded machine; the test waits for it from the claim's own timestamp.
const STALE_SECS: i64 = 6;

async fn status(db: &deadpool_postgres::Object, id: uuid::Uuid) -> String {
    db.query_one("SELECT status FROM task_results WHERE task_id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

/// Run only by the parent test below: handles one message as the process function
/// would, against the services named in its environment.
#[tokio::test]
#[ignore = "the child process of a_worker_killed_mid_render_is_replaced_once_its_claim_is_stale"]
async fn child_worker() {
    let path = std::env::var(CHILD_MESSAGE).expect("run by the parent test only");
    let body = std::fs::read_to_string(path).expect("the message");
    let app = facesvg::app::App::from_env().await.expect("app");
    let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
    record.message_id = Some("child".into());
    record.body = Some(body);
    let _ = facesvg::worker::handle_message(&app, &record).await;
}

#[tokio::test]
async fn a_worker_killed_mid_render_is_replaced_once_its_claim_is_stale() {
    let t = TestApp::spawn_with(|s| {
        s.insert("STALE_CLAIM_SECS".into(), STALE_SECS.to_string());
    })
    .await;
    // A heavy (but allowed) map, so that the render takes long enough to be killed
    // in the middle of it.
    let map = facesvg::render::synthetic::face_map(2048, 7);
    let form = Form::takeo()
        .replace(
            "image",
            "big.png",
            common::raster::grey_png(2048, 2048, &vec![128u8; 2048 * 2048]),
        )
        .replace(
            "segmentation_map",
            "m.png",
            common::raster::grey_png(2048, 2048, &map.labels),
        );
    let r = t.submit(&form).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = uuid::Uuid::parse_str(r.json()["task_id"].as_str().unwrap()).unwrap();
    let records = t.receive_all().await;
    assert_eq!(records.len(), 1);

    // The message goes to the child in a file (it holds the map: too long for an
    // environment variable).
    let message = std::env::temp_dir().join(format!("facesvg-sigkill-{id}.json"));
    std::fs::write(&message, records[0].body.clone().unwrap()).unwrap();
    let c = &t.app.config;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_worker", "--nocapture"])
        .env(CHILD_MESSAGE, &message)
        .env("DATABASE_URL", &c.database_url)
        .env("REDIS_URL", &c.redis_url)
        .env("REDIS_PREFIX", &c.redis_prefix)
        .env("S3_BUCKET", &c.s3_bucket)
        .env("QUEUE_URL", &c.queue_url)
        .env("STALE_CLAIM_SECS", STALE_SECS.to_string())
        .spawn()
        .expect("child worker");

    // Wait for its claim, then kill it while it renders.
    let db = t.db().await;
    let started = Instant::now();
    while status(&db, id).await != "PROCESSING" {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the child never claimed"
        );
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // At once: the decode and render of a 2048² map take far longer than this.
    child.kill().expect("SIGKILL");
    let exit = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&exit),
        Some(9),
        "killed, not finished"
    );
    let _ = std::fs::remove_file(&message);
    assert_eq!(status(&db, id).await, "PROCESSING", "nothing completed");
    assert!(t.s3_keys("results/").await.is_empty(), "no SVG was stored");

    // While the claim is fresh a redelivery is retried; once stale, it renders.
    // The claim's age is Postgres's own: wait until it passes STALE_SECS.
    assert_eq!(t.deliver(records.clone()).await.len(), 1);
    let left: f64 = db
        .query_one(
            "SELECT EXTRACT(EPOCH FROM started_at + make_interval(secs => $2) - now())::float8
               FROM task_results WHERE task_id = $1",
            &[&id, &(STALE_SECS as f64)],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        left > 0.0,
        "the claim went stale before the first redelivery"
    );
    tokio::time::sleep(Duration::from_secs_f64(left + 0.2)).await;
    assert!(t.deliver(records).await.is_empty());
    assert_eq!(status(&db, id).await, "SUCCESS");
    let attempts: i32 = db
        .query_one(
            "SELECT attempts FROM task_results WHERE task_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 2, "the killed claim and the one that finished");
    assert_eq!(t.s3_keys("results/").await.len(), 1);
    let renders = t.render_count().await;
    assert_eq!(renders, 1, "rendered to completion exactly once");
}
