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

/// How many messages the queue holds, as SQS approximates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Depth {
    /// Waiting to be received.
    pub visible: i64,
    /// Received by a worker and not yet deleted (or returned).
    pub in_flight: i64,
}

#[async_trait]
pub trait TaskQueue: Send + Sync {
    async fn send(&self, body: String) -> Result<(), QueueError>;
    async fn ping(&self) -> Result<(), QueueError>;
    /// The queue's depth. A queue that cannot tell says so; the dashboard then
    /// shows no depth rather than a made-up one.
    async fn depth(&self) -> Result<Depth, QueueError> {
        Err(QueueError::Backend("this queue reports no depth".into()))
    }
}
