//! The one Redis connection of an instance, shared by both caches: the task-outcome
//! cache's L1 ([`super::redis::RedisTier`]) and the general-purpose cache's Redis
//! tier ([`super::kv::redis::RedisBackend`]). Each keeps its own keys and error type;
//! the connection, the deadline and the circuit breaker are this one, so a cold
//! start opens one TCP connection, and Redis being down is found out once and skips
//! Redis for both.
//!
//! # When Redis is down
//!
//! - **Each call** costs at most `REDIS_TIMEOUT_MS`, connecting included. After
//!   [`crate::policy::tiers::BREAKER_FAILURES`] failures in a row the breaker opens:
//!   calls are skipped without I/O for [`crate::policy::tiers::BREAKER_OPEN_FOR`],
//!   then one probe goes through (see [`super::breaker`]).
//! - **Submit and status** (`cache::outcomes`) skip the Redis tier: L0 and then
//!   Postgres answer, nothing is backfilled into Redis, and request, hit and
//!   general-cache counts that cannot be sent are held by the instance, within
//!   `policy::buffers`, and sent once Redis answers again; `/cache/stats` answers
//!   `requests: null` meanwhile.
//! - **The general-purpose cache** (`cache::kv`) reads and writes its memory and
//!   Postgres tiers; an invalidation reports the Redis tier as failed, and entries
//!   there end with their TTL.
//! - **`/health`** answers 200 `degraded` (503 only when Postgres, S3 or SQS is down).
//! - **The sweep** (`sweep`): the folds of request and hit counts fail as steps of
//!   their own, so the "unused" rule waits a run; deletions go on, the deleted rows'
//!   Redis keys expire with their TTL, and the run reports its failed steps (the
//!   `Errors` metric with `Kind=sweep_step`, and a failed invocation).
//! - **Without Redis by choice** (`REDIS_URL=none`) nothing here exists: the tiers
//!   answer `Disabled`, which is no fault, and counts go straight to Postgres.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;
use thiserror::Error;
use tokio::sync::Mutex;

use super::breaker::Breaker;

/// The default key prefix: one hash tag, so every key of a deployment is in one
/// cluster hash slot (see [`check_prefix`]).
pub const DEFAULT_PREFIX: &str = "{facesvg}";

/// Every Redis key of a deployment starts with its prefix, and the prefix must be
/// one hash tag (`{name}`, nothing after it): Redis Cluster (and ElastiCache in
/// cluster mode) hashes only what is between a key's first `{` and the `}` after it,
/// so every key (whatever tenant, id or namespace follows) lands in the prefix's
/// slot. The Lua scripts, the `DEL`s of several keys and the `RENAME` of a fold all
/// touch several keys at once, which a cluster refuses across slots (`CROSSSLOT`):
/// with this rule the key layout needs no migration to move to cluster mode. The
/// price: one deployment's keys live on one shard (README "A way past one Redis
/// node").
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let tag = prefix
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or_else(|| format!("{prefix:?} must be one hash tag, such as {DEFAULT_PREFIX:?}"))?;
    if tag.is_empty() || tag.contains(['{', '}']) {
        return Err(format!(
            "{prefix:?} must be one non-empty hash tag, such as {DEFAULT_PREFIX:?}"
        ));
    }
    // The prefix starts every SCAN pattern the sweep and the clears delete by: a
    // glob character would reach other stacks' keys in a shared Redis.
    if tag.contains(['*', '?', '[', ']', '\\']) {
        return Err(format!(
            "{prefix:?} must not hold glob characters (* ? [ ] \\), such as {DEFAULT_PREFIX:?}"
        ));
    }
    Ok(())
}

/// `REDIS_URL=none` (any case): no Redis at all.
pub fn is_disabled(url: &str) -> bool {
    url.trim().eq_ignore_ascii_case("none")
}

#[derive(Debug, Error)]
pub enum LinkError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("redis call timed out")]
    Timeout,
    #[error("redis skipped: circuit open after repeated errors")]
    CircuitOpen,
}

/// A lazily made connection to Redis, behind one deadline and one circuit breaker.
///
/// Every [`RedisLink::call`] has `timeout` in all, connecting included: a call that
/// has to connect first spends the same budget, so a dead or hanging host costs one
/// timeout per call, not a connect timeout and then a command timeout. After
/// [`crate::policy::tiers::BREAKER_FAILURES`] failures in a row, calls are skipped
/// without I/O for [`crate::policy::tiers::BREAKER_OPEN_FOR`].
pub struct RedisLink {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    timeout: Duration,
    breaker: Breaker,
}

impl RedisLink {
    /// Checks the URL only; nothing connects until the first call.
    pub fn open(url: &str, timeout: Duration) -> Result<Self, RedisError> {
        Ok(RedisLink {
            client: redis::Client::open(url)?,
            conn: Mutex::new(None),
            timeout,
            breaker: Breaker::new(
                crate::policy::tiers::BREAKER_FAILURES,
                crate::policy::tiers::BREAKER_OPEN_FOR,
            ),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        // Held while connecting, so that concurrent first calls share one connection
        // instead of each opening their own.
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let c = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs one Redis operation (one round trip: a command, a pipeline or a script)
    /// under the breaker and the deadline. Every error counts against the breaker:
    /// callers decode answers after this returns, so what fails here is Redis.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, LinkError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        if !self.breaker.allow() {
            return Err(LinkError::CircuitOpen);
        }
        let attempt = async { op(self.connection().await?).await };
        let outcome = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(r) => r.map_err(LinkError::from),
            Err(_) => Err(LinkError::Timeout),
        };
        match &outcome {
            Ok(_) => self.breaker.success(),
            Err(e) => {
                tracing::warn!(tier = "redis", error = %e, "redis call failed");
                self.breaker.failure()
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_one_hash_tag() {
        assert!(check_prefix(DEFAULT_PREFIX).is_ok());
        assert!(check_prefix("{facesvg-prod}").is_ok());
        for bad in [
            "facesvg",
            "{facesvg}x",
            "x{facesvg}",
            "{}",
            "{a}{b}",
            "{a{b}",
            "{facesvg",
            "{facesvg*}",
            "{face?svg}",
            "{[fF]acesvg}",
        ] {
            assert!(check_prefix(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn none_in_any_case_disables_redis() {
        assert!(is_disabled("none"));
        assert!(is_disabled(" NONE "));
        assert!(!is_disabled("redis://127.0.0.1:6379/"));
    }
}
