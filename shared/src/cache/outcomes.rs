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

/// L0 and Redis in front of the task store.
pub struct OutcomeCache {
    pub l0: MemoryTier,
    pub redis: Arc<RedisTier>,
    counts: std::sync::Mutex<Counts>,
    in_flight: Arc<InFlight>,
    /// Where request counts go when the deployment runs without Redis.
    direct: Option<TaskStore>,
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
        }
    }

    /// Sends request and hit counts straight to `tasks` when Redis is disabled
    /// (see [`OutcomeCache::flush_counts`]).
    pub fn counting_to(mut self, tasks: TaskStore) -> Self {
        self.direct = Some(tasks);
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

    /// Counts a request of `tenant` in its statistics, and a hit on its task (which
    /// the sweep folds into Postgres). Counts are kept in the instance and sent in
    /// one round trip when [`COUNT_BATCH`] have gathered, when the last were sent
    /// [`COUNT_INTERVAL`] ago, or with a miss; the send runs beside the answer, so no
    /// request waits for it (an instance frozen first sends it when it thaws).
    /// An instance that dies loses the counts it holds (fewer than [`COUNT_BATCH`],
    /// at most a [`COUNT_INTERVAL`] old) and those of sends not yet finished; a send
    /// ends within its Redis deadline (`REDIS_TIMEOUT_MS`, 50 ms by default), so
    /// those are the requests of that last twentieth of a second.
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
            let (taken, sender) = (self.take_counts(), self.sender());
            // Registered before the task exists, so a flush that follows waits for it.
            let sending = InFlight::start(&self.in_flight);
            tokio::spawn(async move {
                sender.send(taken).await;
                drop(sending);
            });
        }
    }

    /// Sends the counts kept in this instance and waits for every send already under
    /// way (before statistics are read and before the sweep folds hits, so that they
    /// see every count this instance took). Counts that cannot be sent (Redis down)
    /// are dropped: keeping them would grow without bound.
    ///
    /// Where requests per day reach Postgres (`request_counts`, read by the daily
    /// view): with Redis, they are added to a pending hash in the same pipeline and
    /// folded by cache-cleanup every minute (one writer for the table, whatever the
    /// number of instances; see `sweep::fold_requests`). Without Redis there is no
    /// shared place to gather them, so this writes them (and the hits on tasks)
    /// directly: at most once a second per instance, which a deployment small
    /// enough to run without Redis can afford.
    pub async fn flush_counts(&self) {
        let taken = self.take_counts();
        self.sender().send(taken).await;
        self.in_flight.idle().await;
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
        }
    }
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
/// may overlap: every count is an increment, so their order does not matter.
struct CountSender {
    redis: Arc<RedisTier>,
    direct: Option<TaskStore>,
}

impl CountSender {
    async fn send(self, taken: Counts) {
        let requests: Vec<_> = taken.requests.into_iter().collect();
        let hits: Vec<_> = taken.hits.into_iter().collect();
        match self.redis.record_counts(&requests, &hits).await {
            Ok(()) => {}
            Err(CacheError::Disabled) => self.count_in_postgres(&requests, &hits).await,
            Err(e) => {
                tracing::warn!(error = %e, dropped = taken.pending, "request counts not sent")
            }
        }
    }

    async fn count_in_postgres(&self, requests: &[(RequestKey, i64)], hits: &[(Uuid, i64)]) {
        let Some(tasks) = &self.direct else { return };
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
                tracing::warn!(error = %e, "request counts not written");
            }
        }
        if let Err(e) = tasks.add_hits(hits, None).await {
            tracing::warn!(error = %e, "hit counts not written");
        }
    }
}
