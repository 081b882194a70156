//! Cache tiers in front of Postgres for finished task outcomes.
//!
//! - L0 ([`memory::MemoryTier`]): bounded by bytes with a short TTL, in the Lambda
//!   instance's memory, so warm invocations answer repeats without any I/O.
//! - L1 ([`redis::RedisTier`]): shared by all instances; every call has a short
//!   timeout behind a circuit breaker, so Redis trouble costs milliseconds and is
//!   never the reason a request fails.
//!
//! Both implement [`OutcomeTier`]; Postgres stays the source of truth and refills
//! them (backfill) on a hit below them.
//!
//! [`kv`] is the general-purpose cache (any serde value, memory / Redis / Postgres
//! tiers, invalidation, single flight) that application code calls directly.
//!
//! Both caches reach Redis through one [`link::RedisLink`] per instance: one
//! connection, one deadline per call (`REDIS_TIMEOUT_MS`, connecting included) and
//! one circuit breaker, so Redis being down is one fact that both act on.

pub mod breaker;
pub mod kv;
pub mod link;
pub mod memory;
pub mod outcomes;
pub mod redis;

use async_trait::async_trait;
use chrono::Utc;
use thiserror::Error;
use uuid::Uuid;

use crate::tasks::Outcome;

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(::redis::RedisError),
    #[error("cache call timed out")]
    Timeout,
    #[error("circuit open: skipping the cache after repeated errors")]
    CircuitOpen,
    /// `REDIS_URL=none`: the deployment runs without Redis, by choice.
    #[error("the Redis tier is disabled (REDIS_URL=none)")]
    Disabled,
    #[error("cached value is malformed: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("cached data is malformed: {0}")]
    Corrupt(String),
}

impl From<link::LinkError> for CacheError {
    fn from(e: link::LinkError) -> Self {
        match e {
            link::LinkError::Redis(e) => CacheError::Redis(e),
            link::LinkError::Timeout => CacheError::Timeout,
            link::LinkError::CircuitOpen => CacheError::CircuitOpen,
        }
    }
}

#[async_trait]
pub trait OutcomeTier: Send + Sync {
    /// Short name for logs and responses (`l0`, `redis`).
    fn name(&self) -> &'static str;
    async fn get_by_hash(
        &self,
        tenant: &str,
        input_hash: &str,
    ) -> Result<Option<Outcome>, CacheError>;
    async fn get_by_task(&self, task_id: Uuid) -> Result<Option<Outcome>, CacheError>;
    /// Stores a finished outcome until its `ttl_expires_at` (or the tier's own limit).
    async fn put(&self, outcome: &Outcome) -> Result<(), CacheError>;
    async fn remove(&self, tenant: &str, input_hash: &str, task_id: Uuid)
        -> Result<(), CacheError>;
}

/// Seconds an outcome may still be cached; `None` once it has expired.
pub fn remaining_ttl_secs(outcome: &Outcome) -> Option<u64> {
    let secs = (outcome.ttl_expires_at - Utc::now()).num_seconds();
    (secs > 0).then_some(secs as u64)
}
