//! A fair share per tenant: what one tenant may start, counted in token buckets
//! (GCRA: one timestamp per tenant and bucket, no timer), whatever the others do.
//!
//! - **Renders** (a miss, or a task run again) cost a token of [`Kind::Renders`];
//!   hits cost nothing: they are cheap by design and stay unlimited.
//! - **Upload forms** and **invalidations** have buckets of their own.
//! - **Open tasks**: a tenant with `TENANT_OPEN_TASKS` tasks queued or running
//!   starts no more (checked by `services::submit` against the task records), so
//!   one tenant's backlog cannot age the others' tasks into `task_stuck`.
//!
//! The buckets live in Redis (one script, one round trip, Redis's clock) and, when
//! the deployment has no Redis or Redis fails, in Postgres (`tenant_quotas`, one
//! statement, Postgres's clock): a limit holds with either. During a Redis outage a
//! tenant may get a bucket's worth from each, which is bounded. If both fail the
//! request is let through: the task store it is about to use is down anyway, and
//! refusing it would turn an outage of a counter into an outage of the service.
//!
//! The numbers are in [`crate::policy::tenants`]; a refusal is 429 `rate_limited`
//! with `Retry-After` and the limit's name (`api::ApiError::RateLimited`).

pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::cache::link::RedisLink;
use crate::policy::tenants::{Rate, TenantLimits};
use crate::tasks::TaskStore;

/// What a token is taken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Renders,
    Uploads,
    Invalidations,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Renders, Kind::Uploads, Kind::Invalidations];

    /// The bucket's name in keys and rows, and the limit named to the caller.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Renders => "renders_per_minute",
            Kind::Uploads => "uploads_per_minute",
            Kind::Invalidations => "invalidations_per_minute",
        }
    }
}

/// A request over a tenant's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("over the tenant's limit {limit}; retry in {retry_after:?}")]
pub struct Refused {
    /// The limit's name, as the configuration and the error answer call it.
    pub limit: &'static str,
    pub retry_after: Duration,
}

/// Takes tokens from tenants' buckets.
#[async_trait]
pub trait Quotas: Send + Sync {
    /// Takes one token of `kind` for `tenant`, or says when to come back.
    async fn take(&self, tenant: &str, kind: Kind) -> Result<(), Refused>;
}

/// The buckets of a deployment: Redis first, Postgres when Redis is absent or fails.
pub struct Quota {
    limits: TenantLimits,
    redis: Option<redis::RedisBuckets>,
    postgres: TaskStore,
}

impl Quota {
    pub fn new(
        limits: TenantLimits,
        link: Option<Arc<RedisLink>>,
        prefix: &str,
        postgres: TaskStore,
    ) -> Self {
        Quota {
            limits,
            redis: link.map(|l| redis::RedisBuckets::new(l, prefix)),
            postgres,
        }
    }
}

/// The configured bucket of `kind`.
fn rate_of(limits: &TenantLimits, kind: Kind) -> Rate {
    match kind {
        Kind::Renders => limits.renders,
        Kind::Uploads => limits.uploads,
        Kind::Invalidations => limits.invalidations,
    }
}

#[async_trait]
impl Quotas for Quota {
    async fn take(&self, tenant: &str, kind: Kind) -> Result<(), Refused> {
        let rate = rate_of(&self.limits, kind);
        if !rate.is_limited() {
            return Ok(());
        }
        let refused = |retry_after| Refused {
            limit: kind.as_str(),
            retry_after,
        };
        if let Some(redis) = &self.redis {
            match redis.take(tenant, kind.as_str(), &rate).await {
                Ok(None) => return Ok(()),
                Ok(Some(wait)) => return Err(refused(wait)),
                Err(e) => tracing::warn!(error = %e, "quota: redis skipped, counting in postgres"),
            }
        }
        match self.postgres.take_token(tenant, kind.as_str(), &rate).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => Err(refused(wait)),
            Err(e) => {
                tracing::warn!(error = %e, "quota: no bucket reachable; letting the request through");
                crate::metrics::error("quota_unavailable");
                Ok(())
            }
        }
    }
}

/// The bucket arithmetic both backends run (in Lua and in SQL), for unit tests and
/// in-memory quotas: `tat` is when the bucket will be full again. Returns the new
/// `tat`, or how long to wait.
pub fn gcra(tat: Duration, now: Duration, rate: &Rate) -> Result<Duration, Duration> {
    let next = tat.max(now) + rate.interval();
    let ahead = next - now;
    if ahead > rate.tolerance() {
        Err(ahead - rate.tolerance())
    } else {
        Ok(next)
    }
}

#[cfg(test)]
pub mod memory {
    //! Buckets in a map, for unit tests of the services that take tokens.

    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;

    pub struct MemoryQuotas {
        pub limits: TenantLimits,
        epoch: Instant,
        tats: Mutex<HashMap<(String, Kind), Duration>>,
    }

    impl MemoryQuotas {
        pub fn new(limits: TenantLimits) -> Self {
            MemoryQuotas {
                limits,
                epoch: Instant::now(),
                tats: Default::default(),
            }
        }
    }

    #[async_trait]
    impl Quotas for MemoryQuotas {
        async fn take(&self, tenant: &str, kind: Kind) -> Result<(), Refused> {
            let rate = rate_of(&self.limits, kind);
            if !rate.is_limited() {
                return Ok(());
            }
            let now = self.epoch.elapsed();
            let mut tats = self.tats.lock().unwrap();
            let tat = tats.entry((tenant.to_owned(), kind)).or_default();
            match gcra(*tat, now, &rate) {
                Ok(next) => {
                    *tat = next;
                    Ok(())
                }
                Err(retry_after) => Err(Refused {
                    limit: kind.as_str(),
                    retry_after,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_one_token_per_interval() {
        let rate = Rate {
            per_minute: 60,
            burst: 3,
        };
        let now = Duration::from_secs(1000);
        let mut tat = Duration::ZERO;
        for _ in 0..3 {
            tat = gcra(tat, now, &rate).expect("within the burst");
        }
        let wait = gcra(tat, now, &rate).expect_err("the burst is spent");
        assert_eq!(wait, Duration::from_secs(1));
        // One interval later exactly one more token is there.
        let later = now + Duration::from_secs(1);
        tat = gcra(tat, later, &rate).expect("refilled");
        assert!(gcra(tat, later, &rate).is_err());
        // A long quiet spell refills the bucket to its burst, never beyond.
        let much_later = later + Duration::from_secs(3600);
        for _ in 0..3 {
            tat = gcra(tat, much_later, &rate).expect("full again");
        }
        assert!(gcra(tat, much_later, &rate).is_err());
    }
}
