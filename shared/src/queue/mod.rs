//! The task queue between submit and process.
//!
//! [`TaskQueue`] is the seam; [`sqs::SqsQueue`] is the implementation. Delivery is
//! at least once: process is idempotent, so duplicates cost at most a lookup.

pub mod sqs;

use async_trait::async_trait;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("queue: {0}")]
    Backend(String),
}

#[async_trait]
pub trait TaskQueue: Send + Sync {
    async fn send(&self, body: String) -> Result<(), QueueError>;
    async fn ping(&self) -> Result<(), QueueError>;
}
