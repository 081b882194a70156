//! L0: finished outcomes in this process's memory, bounded in bytes, short TTL.
//!
//! A Lambda instance serves one request at a time and lives for minutes to hours;
//! this tier lets its warm invocations answer repeats with no I/O at all. Entries
//! are evicted oldest-first when the byte budget is exceeded. The TTL is short
//! because another instance's sweep cannot reach this memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use uuid::Uuid;

use super::{remaining_ttl_secs, CacheError, OutcomeTier};
use crate::tasks::Outcome;

struct Entry {
    outcome: Arc<Outcome>,
    expires: Instant,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    by_hash: HashMap<(String, String), Entry>,
    /// task id → (tenant, input hash)
    by_task: HashMap<Uuid, (String, String)>,
    order: VecDeque<(String, String)>,
    bytes: usize,
}

pub struct MemoryTier {
    max_bytes: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

impl MemoryTier {
    pub fn new(max_bytes: usize, ttl: Duration) -> Self {
        MemoryTier {
            max_bytes,
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.lock().by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Drops every entry of `tenant`; returns how many there were.
    pub fn remove_tenant(&self, tenant: &str) -> usize {
        let mut inner = self.lock();
        let doomed: Vec<(String, String)> = inner
            .by_hash
            .keys()
            .filter(|(t, _)| t == tenant)
            .cloned()
            .collect();
        for key in &doomed {
            remove_entry(&mut inner, key);
        }
        doomed.len()
    }

    /// Drops every entry; returns how many there were.
    pub fn clear(&self) -> usize {
        let mut inner = self.lock();
        let n = inner.by_hash.len();
        *inner = Inner::default();
        n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock aborts the process (panic = "abort"), so
        // a poisoned lock can only be seen in tests; its data is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(&self, key: &(String, String)) -> Option<Outcome> {
        let mut inner = self.lock();
        let expired = match inner.by_hash.get(key) {
            None => return None,
            Some(e) if e.expires > Instant::now() => return Some((*e.outcome).clone()),
            Some(_) => true,
        };
        if expired {
            remove_entry(&mut inner, key);
        }
        None
    }
}

fn remove_entry(inner: &mut Inner, key: &(String, String)) {
    if let Some(e) = inner.by_hash.remove(key) {
        inner.bytes -= e.bytes;
        inner.by_task.remove(&e.outcome.task_id);
    }
}

#[async_trait]
impl OutcomeTier for MemoryTier {
    fn name(&self) -> &'static str {
        "l0"
    }

    async fn get_by_hash(
        &self,
        tenant: &str,
        input_hash: &str,
    ) -> Result<Option<Outcome>, CacheError> {
        Ok(self.lookup(&(tenant.to_owned(), input_hash.to_owned())))
    }

    async fn get_by_task(&self, task_id: Uuid) -> Result<Option<Outcome>, CacheError> {
        let key = self.lock().by_task.get(&task_id).cloned();
        Ok(key.and_then(|k| self.lookup(&k)))
    }

    async fn put(&self, outcome: &Outcome) -> Result<(), CacheError> {
        let Some(remaining) = remaining_ttl_secs(outcome) else {
            return Ok(());
        };
        if self.max_bytes == 0 {
            return Ok(()); // the tier is turned off (L0_MAX_BYTES=0)
        }
        let bytes = serde_json::to_vec(outcome)?.len() + 128;
        if bytes > self.max_bytes {
            return Ok(());
        }
        let key = (outcome.tenant.clone(), outcome.input_hash.clone());
        let ttl = self.ttl.min(Duration::from_secs(remaining));
        let mut inner = self.lock();
        remove_entry(&mut inner, &key);
        // Expired entries go first, oldest at the front: the tier then holds about
        // `ttl` worth of traffic, not `max_bytes` of entries nobody can be served
        // (the byte count is of JSON; a decoded outcome takes several times that).
        let now = Instant::now();
        while let Some(front) = inner.order.front() {
            if inner.by_hash.get(front).is_some_and(|e| e.expires > now) {
                break;
            }
            if let Some(oldest) = inner.order.pop_front() {
                remove_entry(&mut inner, &oldest);
            }
        }
        while inner.bytes + bytes > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            remove_entry(&mut inner, &oldest);
        }
        inner.by_task.insert(outcome.task_id, key.clone());
        inner.by_hash.insert(
            key.clone(),
            Entry {
                outcome: Arc::new(outcome.clone()),
                expires: Instant::now() + ttl,
                bytes,
            },
        );
        inner.order.push_back(key);
        inner.bytes += bytes;
        // `order` may hold keys already removed; keep it from growing without bound.
        if inner.order.len() > 2 * inner.by_hash.len() + 64 {
            let Inner { order, by_hash, .. } = &mut *inner;
            order.retain(|k| by_hash.contains_key(k));
        }
        Ok(())
    }

    async fn remove(
        &self,
        tenant: &str,
        input_hash: &str,
        _task_id: Uuid,
    ) -> Result<(), CacheError> {
        remove_entry(
            &mut self.lock(),
            &(tenant.to_owned(), input_hash.to_owned()),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::TaskStatus;
    use chrono::Utc;

    fn outcome(hash: &str) -> Outcome {
        Outcome {
            task_id: Uuid::new_v4(),
            tenant: "t".into(),
            input_hash: hash.into(),
            status: TaskStatus::Success,
            result: Some(Arc::new(serde_json::json!({"regions": []}))),
            error: None,
            svg_s3_key: Some("k".into()),
            processing_time_ms: Some(1),
            submitted_at: Utc::now(),
            completed_at: Some(Utc::now()),
            ttl_expires_at: Utc::now() + chrono::Duration::hours(1),
            stages: None,
        }
    }

    #[tokio::test]
    async fn finds_by_hash_and_task_and_evicts_oldest_first() {
        let one = serde_json::to_vec(&outcome("a")).unwrap().len() + 128;
        let tier = MemoryTier::new(one * 2 + 10, Duration::from_secs(60));
        let (a, b, c) = (outcome("a"), outcome("b"), outcome("c"));
        for o in [&a, &b] {
            tier.put(o).await.unwrap();
        }
        assert_eq!(tier.get_by_task(a.task_id).await.unwrap(), Some(a.clone()));
        tier.put(&c).await.unwrap();
        assert_eq!(tier.len(), 2);
        assert!(
            tier.get_by_hash("t", "a").await.unwrap().is_none(),
            "oldest evicted"
        );
        assert!(tier.get_by_hash("t", "c").await.unwrap().is_some());
        assert!(tier.bytes() <= one * 2 + 10);
    }

    #[tokio::test]
    async fn entries_expire() {
        let tier = MemoryTier::new(1 << 20, Duration::ZERO);
        tier.put(&outcome("a")).await.unwrap();
        assert!(tier.get_by_hash("t", "a").await.unwrap().is_none());
        assert!(tier.is_empty());
    }

    #[tokio::test]
    async fn expired_entries_nobody_asks_for_leave_on_the_next_put() {
        let tier = MemoryTier::new(1 << 20, Duration::from_millis(20));
        for h in ["a", "b", "c"] {
            tier.put(&outcome(h)).await.unwrap();
        }
        assert_eq!(tier.len(), 3);
        tokio::time::sleep(Duration::from_millis(40)).await;
        tier.put(&outcome("d")).await.unwrap();
        assert_eq!(tier.len(), 1, "only the live entry is held");
        let one = tier.bytes();
        assert!(one > 0 && one < (1 << 20));
        assert!(tier.get_by_hash("t", "d").await.unwrap().is_some());
    }
}
