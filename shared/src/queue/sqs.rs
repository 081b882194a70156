//! [`TaskQueue`] on Amazon SQS (or the local emulator, through the same SDK).

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;
use tracing::instrument;

use super::{Depth, QueueError, TaskQueue};

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(sdk: &aws_config::SdkConfig, queue_url: &str) -> Self {
        SqsQueue {
            client: Client::new(sdk),
            queue_url: queue_url.to_owned(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn url(&self) -> &str {
        &self.queue_url
    }
}

#[async_trait]
impl TaskQueue for SqsQueue {
    #[instrument(skip_all, fields(bytes = body.len()), err)]
    async fn send(&self, body: String) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| QueueError::Backend(crate::telemetry::error_chain(&e)))?;
        Ok(())
    }

    #[instrument(skip_all, err)]
    async fn ping(&self) -> Result<(), QueueError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| QueueError::Backend(crate::telemetry::error_chain(&e)))?;
        Ok(())
    }

    #[instrument(skip_all, err)]
    async fn depth(&self) -> Result<Depth, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| QueueError::Backend(crate::telemetry::error_chain(&e)))?;
        let attrs = out.attributes();
        let count = |name: QueueAttributeName| -> Result<i64, QueueError> {
            attrs
                .and_then(|a| a.get(&name))
                .ok_or_else(|| QueueError::Backend(format!("no {name} in the answer")))?
                .parse()
                .map_err(|_| QueueError::Backend(format!("{name} is not a number")))
        };
        Ok(Depth {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages)?,
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
        })
    }
}
