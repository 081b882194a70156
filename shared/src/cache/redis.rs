//! L1: finished outcomes in Redis, plus write-behind hit counters.
//!
//! Keys (all under the configured prefix):
//! - `{p}:r:{tenant}:{input_hash}` → outcome JSON, expiring with the entry's TTL
//! - `{p}:t:{task_id}` → the same JSON, for status requests
//! - `{p}:hits` → hash of task id → hits not yet folded into Postgres
//! - `{p}:stats:{tenant}:{yyyymmdd}` → hash of tier → requests that day
//! - `{p}:requests` → hash of `{yyyymmdd}|{tier}|{tenant}` → requests not yet folded
//!   into Postgres's `request_counts`; `{p}:requests:folding` is the batch being
//!   folded (see [`RedisTier::take_request_counts`])
//! - `{p}:kvcounts` → hash of `{tier}|{counter}|{namespace}` → the general-purpose
//!   cache's counts not yet folded into Postgres's `cache_counters`, and
//!   `{p}:kvcounts:folding`, its batch being folded (the same protocol)
//!
//! Calls go through the instance's [`RedisLink`], the connection, deadline and
//! circuit breaker it shares with the general-purpose cache's Redis tier: a cold
//! start with Redis down still serves from Postgres.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use tracing::instrument;
use uuid::Uuid;

use super::link::RedisLink;
use super::{remaining_ttl_secs, CacheError, OutcomeTier};
use crate::tasks::Outcome;

const STATS_RETENTION_SECS: u64 = crate::policy::lifetime::REDIS_DAILY_COUNTERS.as_secs();

pub struct RedisTier {
    /// `None` when the deployment runs without Redis (`REDIS_URL=none`).
    link: Option<Arc<RedisLink>>,
    prefix: String,
}

impl RedisTier {
    pub fn new(link: Option<Arc<RedisLink>>, prefix: &str) -> Self {
        RedisTier {
            link,
            prefix: prefix.to_owned(),
        }
    }

    /// Whether this deployment has a Redis tier at all.
    pub fn is_enabled(&self) -> bool {
        self.link.is_some()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn hash_key(&self, tenant: &str, input_hash: &str) -> String {
        format!("{}:r:{}:{}", self.prefix, tenant, input_hash)
    }

    fn task_key(&self, task_id: Uuid) -> String {
        format!("{}:t:{}", self.prefix, task_id)
    }

    fn hits_key(&self) -> String {
        format!("{}:hits", self.prefix)
    }

    fn requests_key(&self) -> String {
        format!("{}:requests", self.prefix)
    }

    fn requests_folding_key(&self) -> String {
        format!("{}:requests:folding", self.prefix)
    }

    fn kv_counts_key(&self) -> String {
        format!("{}:kvcounts", self.prefix)
    }

    fn kv_counts_folding_key(&self) -> String {
        format!("{}:kvcounts:folding", self.prefix)
    }

    async fn call<T, F, Fut>(&self, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, redis::RedisError>>,
    {
        let link = self.link.as_ref().ok_or(CacheError::Disabled)?;
        Ok(link.call(op).await?)
    }

    async fn get_json(&self, key: String) -> Result<Option<Outcome>, CacheError> {
        let raw: Option<Vec<u8>> = self
            .call(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await })
            .await?;
        Ok(raw.map(|r| serde_json::from_slice(&r)).transpose()?)
    }

    #[instrument(skip_all)]
    pub async fn ping(&self) -> Result<(), CacheError> {
        let _: String = self
            .call(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await?;
        Ok(())
    }

    /// Counts a request of `tenant` answered by `tier` (`l0`, `redis`, `postgres`
    /// or `miss`) in today's statistics, and, for a hit, the hit on its task, which
    /// the sweep folds into Postgres. One round trip; Postgres is not touched.
    pub async fn record_request(
        &self,
        tenant: &str,
        tier: &'static str,
        hit_task: Option<Uuid>,
    ) -> Result<(), CacheError> {
        let day = chrono::Utc::now().date_naive();
        let hits: Vec<(Uuid, i64)> = hit_task.map(|t| (t, 1)).into_iter().collect();
        self.record_counts(&[((tenant.to_owned(), day, tier), 1)], &hits, &[])
            .await
    }

    /// Adds buffered counts in one round trip: requests per (tenant, day, tier),
    /// hits per task, and the general-purpose cache's counts (the last two folded
    /// into Postgres by the sweep).
    #[instrument(skip_all, fields(requests = requests.len(), hits = hits.len(), kv = kv.len()))]
    pub async fn record_counts(
        &self,
        requests: &[((String, chrono::NaiveDate, &'static str), i64)],
        hits: &[(Uuid, i64)],
        kv: &[CacheCounter],
    ) -> Result<(), CacheError> {
        if requests.is_empty() && hits.is_empty() && kv.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for ((tenant, day, tier), n) in requests {
            let key = self.stats_key(tenant, *day);
            pipe.cmd("HINCRBY").arg(&key).arg(*tier).arg(*n).ignore();
            pipe.cmd("EXPIRE")
                .arg(&key)
                .arg(STATS_RETENTION_SECS)
                .ignore();
        }
        // The same counts once more, for the daily table in Postgres.
        let requests_key = self.requests_key();
        for ((tenant, day, tier), n) in requests {
            let field = format!("{}|{}|{}", day.format("%Y%m%d"), tier, tenant);
            pipe.cmd("HINCRBY")
                .arg(&requests_key)
                .arg(field)
                .arg(*n)
                .ignore();
        }
        let hits_key = self.hits_key();
        for (task_id, n) in hits {
            pipe.cmd("HINCRBY")
                .arg(&hits_key)
                .arg(task_id.to_string())
                .arg(*n)
                .ignore();
        }
        let kv_key = self.kv_counts_key();
        for c in kv {
            for (counter, n) in counter_fields(c) {
                if n != 0 {
                    let field = format!("{}|{}|{}", c.tier, counter, c.namespace);
                    pipe.cmd("HINCRBY").arg(&kv_key).arg(field).arg(n).ignore();
                }
            }
        }
        self.call(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    /// Requests per tier of `tenant` over the `days` days up to today.
    #[instrument(skip_all, fields(%tenant, days = days))]
    pub async fn request_counts(
        &self,
        tenant: &str,
        days: u32,
    ) -> Result<HashMap<String, i64>, CacheError> {
        let today = chrono::Utc::now().date_naive();
        let keys: Vec<String> = (0..days)
            .filter_map(|d| today.checked_sub_days(chrono::Days::new(u64::from(d))))
            .map(|day| self.stats_key(tenant, day))
            .collect();
        let per_day: Vec<HashMap<String, i64>> = self
            .call(|mut c| async move {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("HGETALL").arg(k);
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        let mut total = HashMap::new();
        for day in per_day {
            for (tier, n) in day {
                *total.entry(tier).or_insert(0) += n;
            }
        }
        Ok(total)
    }

    fn stats_key(&self, tenant: &str, day: chrono::NaiveDate) -> String {
        format!("{}:stats:{}:{}", self.prefix, tenant, day.format("%Y%m%d"))
    }

    fn hits_folding_key(&self) -> String {
        format!("{}:hits:folding", self.prefix)
    }

    /// Moves the hash `pending` aside to `folding` under a new batch id (one
    /// script, so counts recorded meanwhile go to a fresh pending hash), unless a
    /// batch left by a fold that did not finish is still there; returns that batch's
    /// id and fields. `None` when there is nothing to fold.
    ///
    /// The batch stays in Redis until [`RedisTier::finish_fold`]: a fold that fails
    /// before Postgres committed loses nothing (the next run folds the same batch),
    /// and one that fails after is not counted twice (Postgres remembers the batch
    /// id, see `TaskStore::add_request_counts` and `TaskStore::add_hits`).
    async fn take_batch(
        &self,
        pending: String,
        folding: String,
    ) -> Result<Option<(Uuid, Vec<(String, String)>)>, CacheError> {
        const TAKE: &str = r"
            if redis.call('EXISTS', KEYS[2]) == 0 then
                if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
                redis.call('RENAME', KEYS[1], KEYS[2])
                redis.call('HSET', KEYS[2], '_batch', ARGV[1])
            end
            return redis.call('HGETALL', KEYS[2])";
        let new_batch = Uuid::new_v4().to_string();
        let mut fields: Vec<(String, String)> = self
            .call(|mut c| async move {
                redis::Script::new(TAKE)
                    .key(&pending)
                    .key(&folding)
                    .arg(&new_batch)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let at = fields.iter().position(|(f, _)| f == "_batch");
        let batch = at
            .map(|i| fields.swap_remove(i).1)
            .and_then(|b| Uuid::parse_str(&b).ok())
            .ok_or_else(|| CacheError::Corrupt("counts being folded carry no batch id".into()))?;
        Ok(Some((batch, fields)))
    }

    /// Deletes the folded batch `batch` from `folding` (and nothing newer).
    async fn finish_fold(&self, folding: String, batch: Uuid) -> Result<(), CacheError> {
        const FINISH: &str = r"
            if redis.call('HGET', KEYS[1], '_batch') == ARGV[1] then
                redis.call('DEL', KEYS[1])
            end
            return 0";
        let batch = batch.to_string();
        let _: i64 = self
            .call(|mut c| async move {
                redis::Script::new(FINISH)
                    .key(&folding)
                    .arg(&batch)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// The batch of request counts to fold into Postgres (see [`Self::take_batch`]).
    #[instrument(skip_all)]
    pub async fn take_request_counts(&self) -> Result<Option<RequestBatch>, CacheError> {
        let Some((batch, fields)) = self
            .take_batch(self.requests_key(), self.requests_folding_key())
            .await?
        else {
            return Ok(None);
        };
        let mut counts = Vec::new();
        for (field, n) in fields {
            match parse_request_field(&field, &n) {
                Some(c) => counts.push(c),
                None => tracing::warn!(field, value = n, "unreadable request count skipped"),
            }
        }
        Ok(Some(RequestBatch { batch, counts }))
    }

    /// Deletes the folded batch `batch` of request counts (and nothing newer).
    #[instrument(skip_all, fields(%batch))]
    pub async fn finish_request_fold(&self, batch: Uuid) -> Result<(), CacheError> {
        self.finish_fold(self.requests_folding_key(), batch).await
    }

    /// The batch of hit counters to fold into Postgres, by the same protocol as the
    /// request counts: moved aside, committed with its id, then deleted.
    #[instrument(skip_all)]
    pub async fn take_hits(&self) -> Result<Option<HitBatch>, CacheError> {
        let Some((batch, fields)) = self
            .take_batch(self.hits_key(), self.hits_folding_key())
            .await?
        else {
            return Ok(None);
        };
        let hits = fields
            .into_iter()
            .filter_map(|(id, n)| Some((Uuid::parse_str(&id).ok()?, n.parse::<i64>().ok()?)))
            .collect();
        Ok(Some(HitBatch { batch, hits }))
    }

    /// Deletes the folded batch `batch` of hit counters (and nothing newer).
    #[instrument(skip_all, fields(%batch))]
    pub async fn finish_hit_fold(&self, batch: Uuid) -> Result<(), CacheError> {
        self.finish_fold(self.hits_folding_key(), batch).await
    }

    /// The batch of the general-purpose cache's counts to fold into Postgres, by
    /// the same protocol as the request counts.
    #[instrument(skip_all)]
    pub async fn take_cache_counters(&self) -> Result<Option<CounterBatch>, CacheError> {
        let Some((batch, fields)) = self
            .take_batch(self.kv_counts_key(), self.kv_counts_folding_key())
            .await?
        else {
            return Ok(None);
        };
        let mut rows: std::collections::BTreeMap<(String, String), CacheCounter> =
            Default::default();
        for (field, n) in fields {
            let parsed = field.splitn(3, '|').collect::<Vec<_>>();
            let (Some(n), &[tier, counter, namespace]) = (n.parse::<i64>().ok(), &parsed[..])
            else {
                tracing::warn!(field, value = n, "unreadable cache counter skipped");
                continue;
            };
            let row = rows
                .entry((namespace.to_owned(), tier.to_owned()))
                .or_insert_with(|| CacheCounter {
                    namespace: namespace.to_owned(),
                    tier: tier.to_owned(),
                    ..Default::default()
                });
            match counter {
                "hits" => row.hits += n,
                "misses" => row.misses += n,
                "sets" => row.sets += n,
                "deletes" => row.deletes += n,
                "errors" => row.errors += n,
                _ => tracing::warn!(field, "unknown cache counter skipped"),
            }
        }
        Ok(Some(CounterBatch {
            batch,
            counts: rows.into_values().collect(),
        }))
    }

    /// Deletes the folded batch `batch` of cache counts (and nothing newer).
    #[instrument(skip_all, fields(%batch))]
    pub async fn finish_cache_counter_fold(&self, batch: Uuid) -> Result<(), CacheError> {
        self.finish_fold(self.kv_counts_folding_key(), batch).await
    }

    /// The `SCAN` pattern of the by-hash outcome keys: `tenant`'s, or every tenant's.
    pub fn outcome_pattern(&self, tenant: Option<&str>) -> String {
        match tenant {
            Some(t) => format!("{}:r:{}:*", self.prefix, glob_escape(t)),
            None => format!("{}:r:*", self.prefix),
        }
    }

    /// Whether `key` (matched by [`Self::outcome_pattern`]) is `tenant`'s own: an
    /// input hash never holds `:`, so a longer tenant sharing the prefix is not.
    pub fn is_outcome_of(&self, key: &str, tenant: &str) -> bool {
        key.strip_prefix(&self.hash_key(tenant, ""))
            .is_some_and(|hash| !hash.is_empty() && !hash.contains(':'))
    }

    /// The `SCAN` pattern of every by-task outcome key.
    pub fn task_pattern(&self) -> String {
        format!("{}:t:*", self.prefix)
    }

    /// The `SCAN` pattern of `tenant`'s daily statistics, and whether a key it
    /// matched is one of them (`…:stats:{tenant}:{yyyymmdd}`).
    pub fn stats_pattern(&self, tenant: &str) -> String {
        format!("{}:stats:{}:*", self.prefix, glob_escape(tenant))
    }

    pub fn is_stats_of(&self, key: &str, tenant: &str) -> bool {
        key.strip_prefix(&format!("{}:stats:{}:", self.prefix, tenant))
            .is_some_and(|day| day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Deletes both outcome keys of each `(tenant, input hash, task id)` and its
    /// pending hit counts, in one round trip. Returns the keys that existed.
    #[instrument(skip_all, fields(tasks = rows.len()))]
    pub async fn remove_many(&self, rows: &[(&str, &str, Uuid)]) -> Result<u64, CacheError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = rows
            .iter()
            .flat_map(|(t, h, id)| [self.hash_key(t, h), self.task_key(*id)])
            .collect();
        let ids: Vec<String> = rows.iter().map(|r| r.2.to_string()).collect();
        let (hits, folding) = (self.hits_key(), self.hits_folding_key());
        let (deleted,): (u64,) = self
            .call(|mut c| async move {
                redis::pipe()
                    .cmd("DEL")
                    .arg(&keys)
                    .cmd("HDEL")
                    .arg(&hits)
                    .arg(&ids)
                    .ignore()
                    .cmd("HDEL")
                    .arg(&folding)
                    .arg(&ids)
                    .ignore()
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(deleted)
    }

    /// Deletes the by-task outcome keys of `ids`; returns those that existed.
    #[instrument(skip_all, fields(tasks = ids.len()))]
    pub async fn remove_task_keys(&self, ids: &[Uuid]) -> Result<u64, CacheError> {
        let keys: Vec<String> = ids.iter().map(|id| self.task_key(*id)).collect();
        self.delete_keys(&keys).await
    }

    /// Deletes `keys`; returns those that existed.
    #[instrument(skip_all, fields(keys = keys.len()))]
    pub async fn delete_keys(&self, keys: &[String]) -> Result<u64, CacheError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let keys = keys.to_vec();
        self.call(|mut c| async move { redis::cmd("DEL").arg(&keys).query_async(&mut c).await })
            .await
    }

    /// `SCAN`s for `pattern` and deletes the keys `wanted` accepts, page by page,
    /// until the scan ends or `until` passes. Returns the keys deleted and whether
    /// the scan ended. A scan that stops early is started afresh by the next call:
    /// what it deleted is gone, so each call makes progress.
    #[instrument(skip_all, fields(%pattern))]
    pub async fn delete_matching(
        &self,
        pattern: &str,
        wanted: &(dyn Fn(&str) -> bool + Sync),
        until: std::time::Instant,
    ) -> Result<(u64, bool), CacheError> {
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let p = pattern.to_owned();
            let (next, keys): (u64, Vec<String>) = self
                .call(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&p)
                        .arg("COUNT")
                        .arg(crate::policy::purge::SCAN_COUNT)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let mine: Vec<String> = keys.into_iter().filter(|k| wanted(k)).collect();
            deleted += self.delete_keys(&mine).await?;
            if next == 0 {
                return Ok((deleted, true));
            }
            if std::time::Instant::now() >= until {
                return Ok((deleted, false));
            }
            cursor = next;
        }
    }

    /// Drops `tenant`'s request counts not yet folded into Postgres (the pending
    /// hash and a batch being folded), so that no fold adds them back once its
    /// rows are deleted. Returns the fields dropped.
    #[instrument(skip_all, fields(%tenant))]
    pub async fn forget_request_counts(&self, tenant: &str) -> Result<u64, CacheError> {
        let mut dropped = 0;
        for key in [self.requests_key(), self.requests_folding_key()] {
            let mut cursor: u64 = 0;
            loop {
                let (k, pattern) = (key.clone(), format!("*|{}", glob_escape(tenant)));
                let (next, flat): (u64, Vec<String>) = self
                    .call(|mut c| async move {
                        redis::cmd("HSCAN")
                            .arg(&k)
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(crate::policy::purge::SCAN_COUNT)
                            .query_async(&mut c)
                            .await
                    })
                    .await?;
                let fields: Vec<String> = flat
                    .chunks(2)
                    .filter(|p| {
                        p.len() == 2
                            && parse_request_field(&p[0], &p[1]).is_some_and(|c| c.tenant == tenant)
                    })
                    .map(|p| p[0].clone())
                    .collect();
                if !fields.is_empty() {
                    let k = key.clone();
                    let n: u64 = self
                        .call(|mut c| async move {
                            redis::cmd("HDEL")
                                .arg(&k)
                                .arg(&fields)
                                .query_async(&mut c)
                                .await
                        })
                        .await?;
                    dropped += n;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(dropped)
    }

    /// Redis's own figures (`INFO memory` and `INFO stats`): memory used and the
    /// keyspace's hits and misses since the server started. Server-wide: every
    /// user of this Redis counts in them.
    #[instrument(skip_all)]
    pub async fn server_figures(&self) -> Result<ServerFigures, CacheError> {
        let (memory, stats): (String, String) = self
            .call(|mut c| async move {
                redis::pipe()
                    .cmd("INFO")
                    .arg("memory")
                    .cmd("INFO")
                    .arg("stats")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let field = |text: &str, name: &str| -> Result<u64, CacheError> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| CacheError::Corrupt(format!("INFO has no {name}")))
        };
        let hits = field(&stats, "keyspace_hits")?;
        let misses = field(&stats, "keyspace_misses")?;
        Ok(ServerFigures {
            used_memory_bytes: field(&memory, "used_memory")?,
            keyspace_hits: hits,
            keyspace_misses: misses,
            keyspace_hit_rate: crate::policy::efficiency::ratio(hits, hits + misses),
        })
    }

    /// The ids of the batches moved aside and not yet finished: Postgres must keep
    /// remembering them (see `TaskStore::prune_fold_markers`).
    #[instrument(skip_all)]
    pub async fn folds_in_progress(&self) -> Result<Vec<Uuid>, CacheError> {
        let keys = [
            self.requests_folding_key(),
            self.hits_folding_key(),
            self.kv_counts_folding_key(),
        ];
        let ids: Vec<Option<String>> = self
            .call(|mut c| async move {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("HGET").arg(k).arg("_batch");
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        Ok(ids
            .into_iter()
            .flatten()
            .filter_map(|b| Uuid::parse_str(&b).ok())
            .collect())
    }
}

/// `s` as a literal in a `SCAN`/`HSCAN` pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Hit counters taken from Redis for folding into Postgres.
#[derive(Debug)]
pub struct HitBatch {
    pub batch: Uuid,
    pub hits: Vec<(Uuid, i64)>,
}

/// The general-purpose cache's counts taken from Redis for folding into Postgres.
#[derive(Debug)]
pub struct CounterBatch {
    pub batch: Uuid,
    pub counts: Vec<CacheCounter>,
}

/// Redis's own figures, as `INFO` reports them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServerFigures {
    pub used_memory_bytes: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    /// keyspace_hits / (keyspace_hits + keyspace_misses); 0 before any lookup.
    pub keyspace_hit_rate: f64,
}

use crate::tasks::CacheCounter;

/// A counter row's amounts by name, as the Redis fields name them.
fn counter_fields(c: &CacheCounter) -> [(&'static str, i64); 5] {
    [
        ("hits", c.hits),
        ("misses", c.misses),
        ("sets", c.sets),
        ("deletes", c.deletes),
        ("errors", c.errors),
    ]
}

/// Request counts taken from Redis for folding into Postgres.
#[derive(Debug)]
pub struct RequestBatch {
    pub batch: Uuid,
    pub counts: Vec<RequestCount>,
}

/// A row of `request_counts`, owned by `tasks` (which never depends on `cache`).
pub use crate::tasks::RequestCount;

/// `{yyyymmdd}|{tier}|{tenant}` → count (the tenant last: it may hold `|`).
fn parse_request_field(field: &str, n: &str) -> Option<RequestCount> {
    let mut parts = field.splitn(3, '|');
    let day = chrono::NaiveDate::parse_from_str(parts.next()?, "%Y%m%d").ok()?;
    let tier = parts.next()?;
    let tenant = parts.next()?;
    let known = ["l0", "redis", "postgres", "miss"].contains(&tier);
    let requests = n.parse::<i64>().ok().filter(|n| *n >= 0)?;
    known.then(|| RequestCount {
        tenant: tenant.to_owned(),
        day,
        tier: tier.to_owned(),
        requests,
    })
}

#[async_trait]
impl OutcomeTier for RedisTier {
    fn name(&self) -> &'static str {
        "redis"
    }

    #[instrument(skip_all, fields(%tenant, %input_hash))]
    async fn get_by_hash(
        &self,
        tenant: &str,
        input_hash: &str,
    ) -> Result<Option<Outcome>, CacheError> {
        self.get_json(self.hash_key(tenant, input_hash)).await
    }

    #[instrument(skip_all, fields(%task_id))]
    async fn get_by_task(&self, task_id: Uuid) -> Result<Option<Outcome>, CacheError> {
        self.get_json(self.task_key(task_id)).await
    }

    #[instrument(skip_all, fields(task_id = %outcome.task_id))]
    async fn put(&self, outcome: &Outcome) -> Result<(), CacheError> {
        let Some(ttl) = remaining_ttl_secs(outcome) else {
            return Ok(());
        };
        let json = serde_json::to_vec(outcome)?;
        let (k1, k2) = (
            self.hash_key(&outcome.tenant, &outcome.input_hash),
            self.task_key(outcome.task_id),
        );
        self.call(|mut c| async move {
            redis::pipe()
                .cmd("SET")
                .arg(&k1)
                .arg(&json)
                .arg("EX")
                .arg(ttl)
                .ignore()
                .cmd("SET")
                .arg(&k2)
                .arg(&json)
                .arg("EX")
                .arg(ttl)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    #[instrument(skip_all, fields(%tenant, %input_hash, %task_id))]
    async fn remove(
        &self,
        tenant: &str,
        input_hash: &str,
        task_id: Uuid,
    ) -> Result<(), CacheError> {
        let keys = [self.hash_key(tenant, input_hash), self.task_key(task_id)];
        let hits = self.hits_key();
        self.call(|mut c| async move {
            redis::pipe()
                .cmd("DEL")
                .arg(&keys[..])
                .ignore()
                .cmd("HDEL")
                .arg(&hits)
                .arg(task_id.to_string())
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }
}
