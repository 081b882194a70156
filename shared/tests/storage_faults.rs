//! Faults of the object store and the queue, on the real local services: an S3 PUT
//! that fails after the render is retried and caches no failure; with the S3/SQS
//! emulator unreachable, hits are still answered, a miss whose inputs fit a message
//! is accepted and sent by the relay once the queue is back, and one that needs S3
//! gets our 503.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use common::{submit_to, Form, TestApp};
use facesvg::app::App;
use facesvg::objects::{ObjectError, ObjectStore};

/// The real store, failing the first `fail` PUTs of SVGs.
struct FailingPuts {
    inner: Arc<dyn ObjectStore>,
    fail: AtomicUsize,
}

#[async_trait]
impl ObjectStore for FailingPuts {
    async fn put(&self, key: &str, body: Vec<u8>, ct: &str) -> Result<(), ObjectError> {
        if key.starts_with("results/")
            && self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(ObjectError::Backend("injected: S3 PUT failed".into()));
        }
        self.inner.put(key, body, ct).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        self.inner.get(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<usize, ObjectError> {
        self.inner.delete_many(keys).await
    }
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, ObjectError> {
        self.inner.presign_get(key, ttl).await
    }
    async fn ping(&self) -> Result<(), ObjectError> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn an_s3_put_failing_after_the_render_is_retried_and_caches_no_failure() {
    let t = TestApp::spawn().await;
    let failing = Arc::new(FailingPuts {
        inner: t.app.objects.clone(),
        fail: AtomicUsize::new(1),
    });
    let worker = App::with_backends(t.app.config.clone(), failing.clone(), t.app.queue.clone())
        .expect("app");
    let r = t.submit(&Form::takeo()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["task_id"].as_str().unwrap().to_owned();
    let records = t.receive_all().await;
    assert_eq!(records.len(), 1);

    // First delivery: rendered, the PUT fails, the record goes back to the queue.
    let mut event = SqsEvent::default();
    event.records = records.clone();
    let resp = facesvg::worker::handle_batch(&worker, event).await;
    assert_eq!(resp.batch_item_failures.len(), 1, "retried, not dropped");
    assert_eq!(failing.fail.load(Ordering::SeqCst), 0, "the fault fired");
    let status = t.status(&id).await;
    assert_ne!(status["status"], "FAILURE", "{status}");
    assert!(t.s3_keys("results/").await.is_empty());

    // The redelivery (what SQS does after the visibility timeout) succeeds once.
    let mut event = SqsEvent::default();
    event.records = records;
    let resp = facesvg::worker::handle_batch(&worker, event).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(t.status(&id).await["status"], "SUCCESS");
    assert_eq!(t.s3_keys("results/").await.len(), 1);
    let attempts: i32 = t
        .db()
        .await
        .query_one(
            "SELECT attempts FROM task_results WHERE task_id = $1",
            &[&uuid::Uuid::parse_str(&id).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 2, "two claims, one render stored");
}

#[tokio::test]
async fn with_the_emulator_down_hits_are_served_and_misses_wait_or_get_503() {
    let t = TestApp::spawn().await;
    let first = t.submit(&Form::einstein()).await;
    let hit_id = first.json()["task_id"].as_str().unwrap().to_owned();
    t.drain().await;
    assert_eq!(t.status(&hit_id).await["status"], "SUCCESS");

    // Same Postgres and Redis; S3 and SQS on a port where nothing listens.
    // Port 1 (tcpmux): privileged and unused, so nothing can take it meanwhile.
    let dead = "http://127.0.0.1:1".to_owned();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&dead)
        .load()
        .await;
    let down = on_sdk(t.app.config.clone(), &sdk);

    // A hit needs neither: answered, with a presigned link (signed locally).
    let hit = submit_to(&down, Some(&t.tenant), &Form::einstein()).await;
    assert_eq!(hit.status, 200, "{}", hit.body);
    assert_eq!(hit.json()["task_id"], hit_id.as_str());

    // A miss that fits a message: recorded with its message in the outbox (202);
    // the task is not lost, and the relay sends it once the queue answers again.
    let miss = submit_to(&down, Some(&t.tenant), &Form::takeo()).await;
    assert_eq!(miss.status, 202, "{}", miss.body);
    let miss_id = miss.json()["task_id"].as_str().unwrap().to_owned();
    assert_eq!(t.queue_depth().await, 0);

    // A miss whose inputs must go through S3 cannot be recorded: our 503.
    let mut small_messages = t.app.config.clone();
    small_messages.limits.max_message_bytes = 100;
    let down_small = on_sdk(small_messages, &sdk);
    let big = submit_to(
        &down_small,
        Some(&t.tenant),
        &Form::einstein().field("crop", "none"),
    )
    .await;
    assert_eq!(big.status, 503, "{}", big.body);
    assert!(big.headers.contains_key("retry-after"));
    assert_eq!(big.json()["error"]["code"], "unavailable");
    assert_eq!(
        t.count_rows("task_results").await,
        2,
        "no row without its inputs"
    );

    // The emulator is back (the healthy app): time passes, the relay sends the
    // waiting task, and it renders.
    t.age_outbox().await;
    assert_eq!(facesvg::sweep::relay(&t.app).await.expect("relay"), 1);
    t.drain().await;
    assert_eq!(t.status(&miss_id).await["status"], "SUCCESS");
}

/// An app whose S3 and SQS clients are built from `sdk` (and so reach whatever
/// endpoint it names), with the bucket and queue of `config`.
fn on_sdk(config: facesvg::config::Config, sdk: &aws_config::SdkConfig) -> App {
    let (bucket, queue) = (config.s3_bucket.clone(), config.queue_url.clone());
    App::with_backends(
        config,
        Arc::new(facesvg::objects::s3::S3Store::new(sdk, &bucket, true)),
        Arc::new(facesvg::queue::sqs::SqsQueue::new(sdk, &queue)),
    )
    .expect("app")
}
