//! A poison message: one that fails retryably on every delivery (here, its inputs
//! can never be read from S3). SQS moves it to the DLQ after `maxReceiveCount`
//! receives, the sweep turns its task into a retryable failure, and the next
//! identical submit runs it again and it renders.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::QueueAttributeName as A;
use common::{submit_to, Form, TestApp};
use facesvg::app::App;
use facesvg::objects::{ObjectError, ObjectStore};

/// The real store, except that claim-checked inputs can never be read.
struct InputsUnreadable(Arc<dyn ObjectStore>);

#[async_trait]
impl ObjectStore for InputsUnreadable {
    async fn put(&self, key: &str, body: Vec<u8>, ct: &str) -> Result<(), ObjectError> {
        self.0.put(key, body, ct).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        if key.starts_with("inputs/") {
            return Err(ObjectError::Backend(
                "injected: GetObject keeps failing".into(),
            ));
        }
        self.0.get(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<usize, ObjectError> {
        self.0.delete_many(keys).await
    }
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, ObjectError> {
        self.0.presign_get(key, ttl).await
    }
    async fn ping(&self) -> Result<(), ObjectError> {
        self.0.ping().await
    }
}

async fn receive(t: &TestApp, url: &str) -> Vec<SqsMessage> {
    let got = t
        .sqs
        .client()
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(0)
        .send()
        .await
        .expect("receive");
    got.messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let mut r = SqsMessage::default();
            r.message_id = m.message_id;
            r.receipt_handle = m.receipt_handle;
            r.body = m.body;
            r
        })
        .collect()
}

async fn depth(t: &TestApp, url: &str) -> usize {
    let attrs = t
        .sqs
        .client()
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("attributes");
    let map = attrs.attributes.unwrap_or_default();
    [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|a| {
        map.get(a)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    })
    .sum()
}

#[tokio::test]
async fn a_poison_message_reaches_the_dlq_and_its_task_becomes_retryable() {
    let t = TestApp::spawn().await;
    let sqs = t.sqs.client().clone();
    let name = format!("facesvg-poison-{}", uuid::Uuid::new_v4().simple());
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(A::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&A::QueueArn]
        .clone();
    let queue = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(A::VisibilityTimeout, "1")
        .attributes(
            A::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();

    let mut config = t.app.config.clone();
    config.queue_url = queue.clone();
    config.limits.max_message_bytes = 100; // inputs through S3 (a claim check)
    config.stuck_after = Duration::from_secs(1);
    let app = App::from_config(config.clone()).await.expect("app");
    let poisoned = App::with_backends(
        config,
        Arc::new(InputsUnreadable(app.objects.clone())),
        app.queue.clone(),
    )
    .expect("app");

    let first = submit_to(&app, Some(&t.tenant), &Form::takeo()).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let id = first.json()["task_id"].as_str().unwrap().to_owned();

    // Deliver, fail, wait out the visibility timeout, again: SQS redrives it.
    let mut deliveries = 0;
    for _ in 0..10 {
        let records = receive(&t, &queue).await;
        if !records.is_empty() {
            deliveries += records.len();
            let mut event = SqsEvent::default();
            event.records = records;
            let resp = facesvg::worker::handle_batch(&poisoned, event).await;
            assert_eq!(resp.batch_item_failures.len(), 1, "retried each time");
        }
        if depth(&t, &dlq).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(deliveries, 2, "maxReceiveCount deliveries");
    assert_eq!(depth(&t, &dlq).await, 1, "the poison message is in the DLQ");
    assert_eq!(depth(&t, &queue).await, 0);

    // The task is open with no message left: the sweep fails it, retryably.
    let report = facesvg::sweep::run(&app).await;
    assert!(report.errors.is_empty(), "{report:?}");
    let status = t.status(&id).await;
    assert_eq!(status["status"], "FAILURE", "{status}");
    assert_eq!(status["error"]["retryable"], true, "{status}");

    // The same inputs again: the same task runs again and renders.
    let again = submit_to(&app, Some(&t.tenant), &Form::takeo()).await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.json()["task_id"], id.as_str());
    let records = receive(&t, &queue).await;
    assert_eq!(records.len(), 1);
    let mut event = SqsEvent::default();
    event.records = records;
    assert!(facesvg::worker::handle_batch(&app, event)
        .await
        .batch_item_failures
        .is_empty());
    assert_eq!(t.status(&id).await["status"], "SUCCESS");
}
