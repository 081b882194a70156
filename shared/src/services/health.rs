//! Health: whether each backend answers, and the service's verdict.
//!
//! The public `/health` is anonymous, so its verdict is kept for
//! [`crate::policy::tenants::HEALTH_VERDICT_FOR`] per instance: a flood of it costs
//! one probe of each backend every few seconds, not four probes a call. The admin
//! route (`GET /api/v1/health`, behind the authorizer) probes afresh.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cache::outcomes::OutcomeCache;
use crate::objects::ObjectStore;
use crate::queue::TaskQueue;
use crate::tasks::TaskStore;

/// What one probe of every backend found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    pub postgres: bool,
    pub redis: bool,
    /// `REDIS_URL=none`: no Redis by choice (then `redis` is true).
    pub redis_disabled: bool,
    pub s3: bool,
    pub sqs: bool,
}

impl Checks {
    /// Everything a request needs answers (Redis only speeds them up).
    pub fn essential(&self) -> bool {
        self.postgres && self.s3 && self.sqs
    }

    /// `ok`, `degraded` (Redis down: requests still work) or `down`.
    pub fn verdict(&self) -> &'static str {
        match (self.essential(), self.redis) {
            (true, true) => "ok",
            (true, false) => "degraded",
            _ => "down",
        }
    }
}

/// What a probe reaches.
pub struct Backends<'a> {
    pub tasks: &'a TaskStore,
    /// The general cache's Postgres tier, whose entries the admin health counts.
    pub kv_store: &'a crate::cache::kv::PostgresBackend,
    pub outcomes: &'a OutcomeCache,
    pub objects: &'a dyn ObjectStore,
    pub queue: &'a dyn TaskQueue,
}

/// The last probe of this instance, for the public verdict.
#[derive(Default)]
pub struct Health {
    last: Mutex<Option<(Instant, Checks)>>,
}

impl Health {
    /// The checks of at most `max_age` ago, made by `probe` if they are older.
    pub async fn recent<F>(&self, max_age: Duration, probe: impl FnOnce() -> F) -> Checks
    where
        F: std::future::Future<Output = Checks>,
    {
        if let Some((at, checks)) = *self.last.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < max_age {
                return checks;
            }
        }
        let checks = probe().await;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), checks));
        checks
    }
}

/// Probes every backend at once, each within two seconds. Failures are logged
/// with their detail; the result holds none of it.
pub async fn probe(b: &Backends<'_>) -> Checks {
    let (postgres, redis, s3, sqs) = tokio::join!(
        check("postgres", async {
            b.tasks.ping().await.map_err(|e| e.to_string())
        }),
        check("redis", async {
            match b.outcomes.redis.ping().await {
                // Running without Redis is a choice, not a fault.
                Ok(()) | Err(crate::cache::CacheError::Disabled) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }),
        check("s3", async {
            b.objects.ping().await.map_err(|e| e.to_string())
        }),
        check("sqs", async {
            b.queue.ping().await.map_err(|e| e.to_string())
        }),
    );
    Checks {
        postgres,
        redis,
        redis_disabled: !b.outcomes.redis.is_enabled(),
        s3,
        sqs,
    }
}

/// Entries of the general cache's Postgres tier (the durable one), every
/// namespace: live and past expiry (not yet swept). `None` when it does not answer
/// within two seconds.
pub async fn entry_totals(b: &Backends<'_>) -> Option<EntryTotals> {
    use crate::cache::kv::Backend;
    match tokio::time::timeout(Duration::from_secs(2), b.kv_store.usage()).await {
        Ok(Ok(u)) => Some(EntryTotals {
            active: u.entries,
            expired: u.expired.unwrap_or(0),
        }),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cache entries not counted");
            None
        }
        Err(_) => {
            tracing::warn!("cache entries not counted: timed out");
            None
        }
    }
}

/// Entries of a cache tier, live and expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EntryTotals {
    pub active: u64,
    pub expired: u64,
}

async fn check(
    backend: &'static str,
    probe: impl std::future::Future<Output = Result<(), String>>,
) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(backend, error = %e, "health check failed");
            false
        }
        Err(_) => {
            tracing::warn!(backend, "health check timed out");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn the_verdict_is_probed_once_per_window() {
        let health = Health::default();
        let probes = AtomicU32::new(0);
        let up = Checks {
            postgres: true,
            redis: true,
            redis_disabled: false,
            s3: true,
            sqs: true,
        };
        let probe = || async {
            probes.fetch_add(1, Ordering::SeqCst);
            up
        };
        let window = Duration::from_millis(200);
        for _ in 0..50 {
            assert_eq!(health.recent(window, probe).await, up);
        }
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        tokio::time::sleep(window).await;
        health.recent(window, probe).await;
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn redis_down_degrades_and_an_essential_backend_down_is_down() {
        let mut c = Checks {
            postgres: true,
            redis: false,
            redis_disabled: false,
            s3: true,
            sqs: true,
        };
        assert_eq!(c.verdict(), "degraded");
        assert!(c.essential());
        c.sqs = false;
        assert_eq!(c.verdict(), "down");
    }
}
