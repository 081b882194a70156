//! Tenants' buckets in Redis: `{p}:q:{bucket}:{tenant}` holds the bucket's `tat`
//! (ms on Redis's clock), expiring when the bucket is full again, so an idle
//! tenant costs no memory. One script per token: read, decide and write in one
//! round trip, atomically, with one clock for every instance.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use tracing::instrument;

use crate::cache::link::{LinkError, RedisLink};
use crate::policy::tenants::Rate;

/// KEYS: the bucket; ARGV: interval ms, tolerance ms. Returns 0 when a token was
/// taken, else the ms to wait. The arithmetic of [`super::gcra`].
const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
if tat < now then tat = now end
local nxt = tat + interval
if nxt - now > tolerance then return nxt - now - tolerance end
redis.call('SET', KEYS[1], nxt, 'PX', nxt - now)
return 0
"#;

/// The key of `tenant`'s `bucket` under `prefix` (the stack's, plus `:q`).
fn bucket_key(prefix: &str, bucket: &str, tenant: &str) -> String {
    format!("{prefix}:{bucket}:{tenant}")
}

/// Every bucket key of `tenant` under the stack's `prefix`, one per [`super::Kind`].
pub fn tenant_keys(prefix: &str, tenant: &str) -> Vec<String> {
    super::Kind::ALL
        .iter()
        .map(|k| bucket_key(&format!("{prefix}:q"), k.as_str(), tenant))
        .collect()
}

pub struct RedisBuckets {
    link: Arc<RedisLink>,
    prefix: String,
    take: Script,
}

impl RedisBuckets {
    pub fn new(link: Arc<RedisLink>, prefix: &str) -> Self {
        RedisBuckets {
            link,
            prefix: format!("{prefix}:q"),
            take: Script::new(TAKE),
        }
    }

    /// Takes a token: `None`, or how long to wait for one.
    #[instrument(skip_all, fields(tenant = %tenant, bucket = %bucket))]
    pub async fn take(
        &self,
        tenant: &str,
        bucket: &str,
        rate: &Rate,
    ) -> Result<Option<Duration>, LinkError> {
        let key = bucket_key(&self.prefix, bucket, tenant);
        let interval = rate.interval().as_millis().max(1) as u64;
        let tolerance = rate.tolerance().as_millis() as u64;
        let script = &self.take;
        let wait_ms: u64 = self
            .link
            .call(|mut c| async move {
                script
                    .key(&key)
                    .arg(interval)
                    .arg(tolerance)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }
}
