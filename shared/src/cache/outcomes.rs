//! The task-outcome cache: the one place that decides where a finished task is
//! looked up, in which order, what is refilled, what is counted, and what has expired.
//!
//! Lookup order is L0 (this instance) → Redis (shared) → Postgres (`task_results`,
//! the source of truth). A hit in a lower tier is written back to every tier above
//! it with the entry's *remaining* TTL (each tier derives its expiry from the
//! outcome's `ttl_expires_at`), so a backfill never extends an entry's life. Redis
//! trouble (down, hanging, breaker open) only skips that tier; Postgres trouble is
//! the caller's error, which the edge answers with 503.
//!
//! Expiry holds on every read: an outcome whose `ttl_expires_at` has passed is never
//! returned from any tier, even if a tier still holds it (L0's own TTL is shorter,
//! Redis keys expire with the entry, and a Postgres row past its TTL waits for the
//! sweep). Such a row is handed back as [`Found::Row`] so that submit runs it again.
//!
//! Outcomes stay separate from the general-purpose key-value cache: they are indexed
//! twice (by input hash for submit, by task id for status), their source of truth
//! is a table with its own lifecycle (claims, attempts, the sweep), and their hit
//! counts feed the sweep's "unused" rule.

use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use super::memory::MemoryTier;
use super::redis::RedisTier;
use super::{CacheError, OutcomeTier};
use crate::tasks::{Outcome, StoreError, TaskRecords, TaskRow, TaskStore};

/// The tier that answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    L0,
    Redis,
    Postgres,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::L0 => "l0",
            Tier::Redis => "redis",
            Tier::Postgres => "postgres",
        }
    }
}

/// How a request was answered, for the per-tenant request statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Hit(Tier),
    Miss,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Hit(t) => t.as_str(),
            Answer::Miss => "miss",
        }
    }
}

/// What the tiers know of a key.
#[derive(Debug)]
pub enum Found {
    /// A finished, unexpired, cacheable outcome, and the tier that had it.
    Hit(Outcome, Tier),
    /// A row that is not a servable outcome: open, a retryable failure, or expired.
    Row(TaskRow),
    /// Nothing.
    Absent,
}

pub use crate::policy::tiers::{COUNT_BATCH, COUNT_INTERVAL};

type RequestKey = (String, chrono::NaiveDate, &'static str);

/// Request and hit counts not yet sent to Redis.
#[derive(Default)]
struct Counts {
    last_sent: Option<std::time::Instant>,
    requests: std::collections::HashMap<RequestKey, i64>,
    hits: std::collections::HashMap<Uuid, i64>,
    pending: u32,
}

impl Counts {
    /// Takes back counts whose send failed, within [`crate::policy::buffers`]:
    /// counts of keys already held are always added; new keys past the bound are
    /// dropped. Returns how many requests were dropped.
    fn restore(&mut self, requests: Vec<(RequestKey, i64)>, hits: Vec<(Uuid, i64)>) -> i64 {
        use crate::policy::buffers::{MAX_HIT_TASKS, MAX_REQUEST_KEYS};
        let mut dropped = 0;
        for (k, n) in requests {
            let room = self.requests.len() < MAX_REQUEST_KEYS;
            match self.requests.get_mut(&k) {
                Some(held) => *held += n,
                None if room => {
                    self.requests.insert(k, n);
                }
                None => dropped += n,
            }
        }
        for (task, n) in hits {
            let room = self.hits.len() < MAX_HIT_TASKS;
            match self.hits.get_mut(&task) {
                Some(held) => *held += n,
                None if room => {
                    self.hits.insert(task, n);
                }
                None => {}
            }
        }
        dropped
    }
}

/// The general-purpose cache's counters of this instance, and what of them was
/// sent: a send adds the difference, so counts that could not be sent (Redis
/// down, or Postgres without Redis) go with the next send. The counters are the
/// buffer, and they are bounded by the namespaces in use.
struct KvCounting {
    source: crate::cache::kv::CounterSource,
    /// (namespace, tier) → totals as last sent. Held for a whole send, so that two
    /// sends never add the same difference twice.
    sent: tokio::sync::Mutex<std::collections::HashMap<(String, &'static str), [u64; 5]>>,
}

type KvSent = std::collections::HashMap<(String, &'static str), [u64; 5]>;

impl KvCounting {
    /// What was counted since `sent`, as rows to add, and the totals they bring
    /// `sent` to once added.
    fn since(&self, sent: &KvSent) -> (Vec<crate::tasks::CacheCounter>, KvSent) {
        let mut rows = Vec::new();
        let mut now = KvSent::new();
        for t in self.source.totals() {
            let before = sent
                .get(&(t.namespace.clone(), t.tier))
                .copied()
                .unwrap_or_default();
            let d: Vec<i64> = (0..5)
                .map(|i| t.counts[i].saturating_sub(before[i]) as i64)
                .collect();
            if d.iter().any(|&n| n > 0) {
                rows.push(crate::tasks::CacheCounter {
                    namespace: t.namespace.clone(),
                    tier: t.tier.to_owned(),
                    hits: d[0],
                    misses: d[1],
                    sets: d[2],
                    deletes: d[3],
                    errors: d[4],
                });
            }
            now.insert((t.namespace, t.tier), t.counts);
        }
        (rows, now)
    }
}

/// L0 and Redis in front of the task store.
pub struct OutcomeCache {
    pub l0: MemoryTier,
    pub redis: Arc<RedisTier>,
    counts: Arc<std::sync::Mutex<Counts>>,
    in_flight: Arc<InFlight>,
    /// Where request counts go when the deployment runs without Redis.
    direct: Option<TaskStore>,
    /// The general-purpose cache's counters, sent with the request counts.
    kv: Option<Arc<KvCounting>>,
}

fn live(outcome: Outcome) -> Option<Outcome> {
    (!crate::policy::lifetime::is_expired(outcome.ttl_expires_at, Utc::now())).then_some(outcome)
}

impl OutcomeCache {
    pub fn new(l0: MemoryTier, redis: RedisTier) -> Self {
        OutcomeCache {
            l0,
            redis: Arc::new(redis),
            counts: Default::default(),
            in_flight: Default::default(),
            direct: None,
            kv: None,
        }
    }

    /// Sends request and hit counts straight to `tasks` when Redis is disabled
    /// (see [`OutcomeCache::flush_counts`]).
    pub fn counting_to(mut self, tasks: TaskStore) -> Self {
        self.direct = Some(tasks);
        self
    }

    /// Sends the general-purpose cache's counters (read from `source`) with the
    /// request counts, so that they add up across instances (`cache_counters`).
    pub fn counting_cache(mut self, source: crate::cache::kv::CounterSource) -> Self {
        self.kv = Some(Arc::new(KvCounting {
            source,
            sent: Default::default(),
        }));
        self
    }

    /// The outcome of `tenant`'s inputs `input_hash`.
    pub async fn by_hash(
        &self,
        tasks: &dyn TaskRecords,
        tenant: &str,
        input_hash: &str,
    ) -> Result<Found, StoreError> {
        if let Some(o) = self
            .l0
            .get_by_hash(tenant, input_hash)
            .await
            .ok()
            .flatten()
            .and_then(live)
        {
            return Ok(Found::Hit(o, Tier::L0));
        }
        match self.redis.get_by_hash(tenant, input_hash).await {
            Ok(Some(o)) => {
                if let Some(o) = live(o) {
                    self.fill_l0(&o).await;
                    return Ok(Found::Hit(o, Tier::Redis));
                }
            }
            Ok(None) | Err(CacheError::Disabled) => {}
            Err(e) => tracing::warn!(error = %e, "redis tier skipped"),
        }
        self.resolve_row(tasks.find_by_hash(tenant, input_hash).await?)
            .await
    }

    /// The task `task_id` of `tenant`; another tenant's task is [`Found::Absent`],
    /// exactly like an unknown one, and so is an expired one.
    pub async fn by_task(
        &self,
        tasks: &dyn TaskRecords,
        tenant: &str,
        task_id: Uuid,
    ) -> Result<Found, StoreError> {
        let mine = |o: Outcome| (o.tenant == tenant).then_some(o).and_then(live);
        if let Some(o) = self
            .l0
            .get_by_task(task_id)
            .await
            .ok()
            .flatten()
            .and_then(mine)
        {
            return Ok(Found::Hit(o, Tier::L0));
        }
        match self.redis.get_by_task(task_id).await {
            Ok(Some(o)) => {
                if let Some(o) = mine(o) {
                    self.fill_l0(&o).await;
                    return Ok(Found::Hit(o, Tier::Redis));
                }
            }
            Ok(None) | Err(CacheError::Disabled) => {}
            Err(e) => tracing::warn!(error = %e, "redis tier skipped"),
        }
        match self.resolve_row(tasks.get(tenant, task_id).await?).await? {
            Found::Row(row) if row.is_expired() => Ok(Found::Absent),
            found => Ok(found),
        }
    }

    async fn resolve_row(&self, row: Option<TaskRow>) -> Result<Found, StoreError> {
        let Some(row) = row else {
            return Ok(Found::Absent);
        };
        match row.outcome().and_then(live) {
            Some(o) => {
                self.backfill(&o);
                self.fill_l0(&o).await;
                Ok(Found::Hit(o, Tier::Postgres))
            }
            None => Ok(Found::Row(row)),
        }
    }

    /// Copies a Postgres hit into Redis beside the answer, not in front of it: the
    /// hit costs its one SELECT and the caller never waits for the SET. An instance
    /// frozen before the SET is sent sends it when it thaws; that late write is
    /// harmless, since the TTL is what is left of the entry's life and every reader
    /// checks `ttl_expires_at` itself. A lost backfill only costs a later Postgres hit.
    fn backfill(&self, outcome: &Outcome) {
        if !self.redis.is_enabled() {
            return;
        }
        let (redis, outcome) = (Arc::clone(&self.redis), outcome.clone());
        tokio::spawn(async move {
            if let Err(e) = redis.put(&outcome).await {
                tracing::warn!(error = %e, "redis backfill skipped");
            }
        });
    }

    /// Writes a just-finished outcome to the shared tier only: the instance that
    /// rendered it (the process function) does not answer reads.
    pub async fn publish(&self, outcome: &Outcome) {
        match self.redis.put(outcome).await {
            Ok(()) | Err(CacheError::Disabled) => {}
            Err(e) => tracing::warn!(error = %e, "redis publish skipped"),
        }
    }

    async fn fill_l0(&self, outcome: &Outcome) {
        if let Err(e) = self.l0.put(outcome).await {
            tracing::warn!(error = %e, "l0 fill skipped");
        }
    }

    /// Forgets a task in every tier above Postgres (the sweep deleted its row).
    /// Other instances' L0 entries expire on their own within `L0_TTL_SECS`.
    pub async fn forget(
        &self,
        tenant: &str,
        input_hash: &str,
        task_id: Uuid,
    ) -> Result<(), super::CacheError> {
        let _ = self.l0.remove(tenant, input_hash, task_id).await;
        self.redis.remove(tenant, input_hash, task_id).await
    }

    /// Forgets tasks whose rows were deleted, in every tier above Postgres, in one
    /// Redis round trip; returns the Redis keys that existed (0 without Redis).
    /// Other instances' L0 entries expire on their own within `L0_TTL_SECS`.
    pub async fn forget_many(&self, rows: &[(&str, &str, Uuid)]) -> Result<u64, CacheError> {
        for (tenant, hash, id) in rows {
            let _ = self.l0.remove(tenant, hash, *id).await;
        }
        match self.redis.remove_many(rows).await {
            Err(CacheError::Disabled) => Ok(0),
            other => other,
        }
    }

    /// Counts a request of `tenant` in its statistics, and a hit on its task (which
    /// the sweep folds into Postgres). Counts are kept in the instance and sent in
    /// one round trip when [`COUNT_BATCH`] have gathered, when the last were sent
    /// [`COUNT_INTERVAL`] ago, or with a miss; the send runs beside the answer, so no
    /// request waits for it (an instance frozen first sends it when it thaws).
    /// A send that fails (Redis down; Postgres down without Redis) gives its counts
    /// back, within [`crate::policy::buffers`], for the next send. A send that
    /// Redis applied but whose answer was lost (a timeout) is sent again: an outage
    /// may count one send twice, where dropping would lose every send of it. An instance that
    /// dies loses the counts it holds (fewer than [`COUNT_BATCH`], at most a
    /// [`COUNT_INTERVAL`] old, plus those held through an outage).
    /// Counting never fails a request.
    pub async fn count(&self, tenant: &str, answer: Answer, hit_task: Option<Uuid>) {
        crate::metrics::cache_request(answer.as_str());
        let due = {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let day = Utc::now().date_naive();
            *c.requests
                .entry((tenant.to_owned(), day, answer.as_str()))
                .or_insert(0) += 1;
            if let Some(task) = hit_task {
                *c.hits.entry(task).or_insert(0) += 1;
            }
            c.pending += 1;
            let quiet = c.last_sent.is_none_or(|t| t.elapsed() >= COUNT_INTERVAL);
            c.pending >= COUNT_BATCH || quiet || answer == Answer::Miss
        };
        if due {
            self.send_beside();
        }
    }

    /// Sends what this instance holds (the general cache's counters included) if
    /// the last send was [`COUNT_INTERVAL`] ago: for the functions whose requests
    /// are not counted (status reads the general cache for its listings).
    pub fn send_if_due(&self) {
        let due = {
            let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            c.last_sent.is_none_or(|t| t.elapsed() >= COUNT_INTERVAL)
        };
        if due {
            self.send_beside();
        }
    }

    fn send_beside(&self) {
        let (taken, sender) = (self.take_counts(), self.sender());
        // Registered before the task exists, so a flush that follows waits for it.
        let sending = InFlight::start(&self.in_flight);
        tokio::spawn(async move {
            sender.send(taken, false).await;
            drop(sending);
        });
    }

    /// Sends the counts kept in this instance and waits for every send already under
    /// way (before statistics are read and before the sweep folds hits, so that they
    /// see every count this instance took). Counts that cannot be sent now (Redis
    /// down) are kept for a later send, within [`crate::policy::buffers`].
    ///
    /// Where requests per day reach Postgres (`request_counts`, read by the daily
    /// view): with Redis, they are added to a pending hash in the same pipeline and
    /// folded by cache-cleanup every minute (one writer for the table, whatever the
    /// number of instances; see `sweep::fold_requests`). Without Redis there is no
    /// shared place to gather them, so this writes them (and the hits on tasks, and
    /// the general cache's counters) directly: at most once a second per instance,
    /// which a deployment small enough to run without Redis can afford.
    pub async fn flush_counts(&self) {
        self.in_flight.idle().await;
        let taken = self.take_counts();
        self.sender().send(taken, true).await;
    }

    /// Sends this instance's counts, then folds the general-purpose cache's counts
    /// gathered in Redis into Postgres's `cache_counters` by the protocol of the
    /// request counts (moved aside, added in one transaction that records the
    /// batch id, then deleted): afterwards the table holds every count sent so far.
    /// Returns the (namespace, tier) rows added to; 0 without Redis, where each
    /// instance writes the table itself.
    pub async fn fold_cache_counters(&self, tasks: &TaskStore) -> Result<u64, FoldError> {
        self.flush_counts().await;
        let mut folded = 0;
        // A batch left by a fold that did not finish, then the pending counts.
        for _ in 0..2 {
            let batch = match self.redis.take_cache_counters().await {
                Ok(Some(batch)) => batch,
                Ok(None) | Err(CacheError::Disabled) => break,
                Err(e) => return Err(e.into()),
            };
            if tasks
                .add_cache_counters(&batch.counts, Some(batch.batch))
                .await?
            {
                folded += batch.counts.len() as u64;
            }
            self.redis.finish_cache_counter_fold(batch.batch).await?;
        }
        Ok(folded)
    }

    /// Requests and task hits held in this instance, not yet sent (tests and
    /// operators: what an outage has kept back).
    pub fn held_counts(&self) -> (i64, i64) {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        (c.requests.values().sum(), c.hits.values().sum())
    }

    fn take_counts(&self) -> Counts {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let taken = std::mem::take(&mut *c);
        c.last_sent = Some(std::time::Instant::now());
        taken
    }

    fn sender(&self) -> CountSender {
        CountSender {
            redis: Arc::clone(&self.redis),
            direct: self.direct.clone(),
            counts: Arc::clone(&self.counts),
            kv: self.kv.clone(),
        }
    }
}

/// Why counts could not be folded; the next fold takes the same batch.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Count sends under way beside answers.
#[derive(Default)]
struct InFlight {
    sends: std::sync::atomic::AtomicUsize,
    done: tokio::sync::Notify,
}

/// One send under way; dropped when it ends, however it ends.
struct Sending(Arc<InFlight>);

impl InFlight {
    fn start(this: &Arc<InFlight>) -> Sending {
        this.sends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Sending(Arc::clone(this))
    }

    /// Returns once no send is under way.
    async fn idle(&self) {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            // Registered before the check, so an end between the two is not missed.
            done.as_mut().enable();
            if self.sends.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            done.await;
        }
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.0
            .sends
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.0.done.notify_waiters();
    }
}

/// What sending counts needs, owned, so that a send can run as its own task. Sends
/// may overlap: every count is an increment, so their order does not matter (the
/// general cache's differences are taken under one lock, see [`KvCounting`]).
struct CountSender {
    redis: Arc<RedisTier>,
    direct: Option<TaskStore>,
    /// Where counts that could not be sent go back to.
    counts: Arc<std::sync::Mutex<Counts>>,
    kv: Option<Arc<KvCounting>>,
}

impl CountSender {
    /// Sends `taken` and the general cache's counts since the last send. A send
    /// beside an answer (`wait` false) leaves the general cache's counts to a send
    /// already under way; a flush waits for it.
    async fn send(self, taken: Counts, wait: bool) {
        let requests: Vec<_> = taken.requests.into_iter().collect();
        let hits: Vec<_> = taken.hits.into_iter().collect();
        let mut sent = match &self.kv {
            Some(kv) if wait => Some(kv.sent.lock().await),
            Some(kv) => kv.sent.try_lock().ok(),
            None => None,
        };
        let (kv_rows, kv_now) = match (&self.kv, &sent) {
            (Some(kv), Some(sent)) => kv.since(sent),
            _ => Default::default(),
        };
        let (counted, kv_counted) = match self.redis.record_counts(&requests, &hits, &kv_rows).await
        {
            Ok(()) => (true, true),
            Err(CacheError::Disabled) => self.count_in_postgres(&requests, &hits, &kv_rows).await,
            Err(e) => {
                tracing::warn!(error = %e, held = taken.pending, "counts kept for the next send");
                (false, false)
            }
        };
        if kv_counted {
            if let Some(sent) = sent.as_mut() {
                **sent = kv_now;
            }
        }
        if !counted {
            let dropped = self
                .counts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .restore(requests, hits);
            if dropped > 0 {
                tracing::warn!(dropped, "request counts dropped: the buffer is full");
            }
        }
    }

    /// Writes the counts to Postgres (no Redis); returns whether the request and
    /// hit counts, and the general cache's counts, were written.
    async fn count_in_postgres(
        &self,
        requests: &[(RequestKey, i64)],
        hits: &[(Uuid, i64)],
        kv: &[crate::tasks::CacheCounter],
    ) -> (bool, bool) {
        let Some(tasks) = &self.direct else {
            return (true, true);
        };
        let mut counted = true;
        if !requests.is_empty() {
            let counts: Vec<super::redis::RequestCount> = requests
                .iter()
                .map(|((tenant, day, tier), n)| super::redis::RequestCount {
                    tenant: tenant.clone(),
                    day: *day,
                    tier: (*tier).to_owned(),
                    requests: *n,
                })
                .collect();
            if let Err(e) = tasks.add_request_counts(&counts, None).await {
                tracing::warn!(error = %e, "request counts kept for the next send");
                counted = false;
            }
        }
        // Hits go only with their requests: a retry never adds them twice.
        if counted {
            if let Err(e) = tasks.add_hits(hits, None).await {
                tracing::warn!(error = %e, "hit counts not written");
            }
        }
        let kv_counted = kv.is_empty()
            || match tasks.add_cache_counters(kv, None).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "cache counters kept for the next send");
                    false
                }
            };
        (counted, kv_counted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::buffers::{MAX_HIT_TASKS, MAX_REQUEST_KEYS};

    fn request(i: usize) -> (RequestKey, i64) {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        ((format!("t{i}"), day, "l0"), 2)
    }

    #[test]
    fn counts_given_back_are_kept_up_to_the_bound_and_held_keys_always_add() {
        let mut c = Counts::default();
        let requests: Vec<_> = (0..MAX_REQUEST_KEYS + 5).map(request).collect();
        let hits: Vec<_> = (0..MAX_HIT_TASKS + 3)
            .map(|_| (Uuid::new_v4(), 1))
            .collect();
        assert_eq!(
            c.restore(requests, hits),
            10,
            "five new keys past the bound"
        );
        assert_eq!(c.requests.len(), MAX_REQUEST_KEYS);
        assert_eq!(c.hits.len(), MAX_HIT_TASKS);
        // A key already held still counts, however full the buffer.
        assert_eq!(c.restore(vec![request(0)], Vec::new()), 0);
        assert_eq!(c.requests[&request(0).0], 4);
    }
}
