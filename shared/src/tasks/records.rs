//! [`TaskRecords`]: the part of the task store that a submit and the outcome cache
//! touch, as a trait, so that their decisions are tested against an in-memory
//! store ([`memory::MemoryRecords`], unit tests only) as well as against Postgres
//! ([`TaskStore`], the integration tests).

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::results::{Inserted, Pending};
use super::{StoreError, TaskError, TaskRow, TaskStore};

#[async_trait]
pub trait TaskRecords: Send + Sync {
    /// The task of `tenant`'s inputs `input_hash`, in whatever state.
    async fn find_by_hash(
        &self,
        tenant: &str,
        input_hash: &str,
    ) -> Result<Option<TaskRow>, StoreError>;
    /// A task of `tenant`; another tenant's task is indistinguishable from none.
    async fn get(&self, tenant: &str, task_id: Uuid) -> Result<Option<TaskRow>, StoreError>;
    /// Records a new `PENDING` task with its queue message unless one exists for
    /// the same inputs: of concurrent identical submits exactly one is `Created`.
    async fn insert_with_outbox(
        &self,
        tenant: &str,
        input_hash: &str,
        renderer_version: &str,
        ttl: Duration,
        pending: &Pending,
    ) -> Result<Inserted, StoreError>;
    /// Moves a retryable failure, or a finished task past its TTL, back to
    /// `PENDING`. Whether this call did it (a concurrent one may have).
    async fn reopen(
        &self,
        task_id: Uuid,
        ttl: Duration,
        outbox: &str,
        inputs_sha256: &str,
    ) -> Result<bool, StoreError>;
    /// The task's message is on the queue: the outbox is cleared.
    async fn mark_enqueued(
        &self,
        task_id: Uuid,
        input_s3_key: Option<&str>,
    ) -> Result<(), StoreError>;
    /// `tenant`'s tasks queued or running, counted up to `at_most`.
    async fn open_tasks(&self, tenant: &str, at_most: i64) -> Result<i64, StoreError>;
    /// Records inputs refused for a reason of theirs as a finished, cached failure
    /// (unless a row exists), so that the same inputs are answered from the cache
    /// without being read again.
    async fn insert_failure(
        &self,
        tenant: &str,
        input_hash: &str,
        renderer_version: &str,
        ttl: Duration,
        error: &TaskError,
    ) -> Result<Option<TaskRow>, StoreError>;
}

#[async_trait]
impl TaskRecords for TaskStore {
    async fn find_by_hash(
        &self,
        tenant: &str,
        input_hash: &str,
    ) -> Result<Option<TaskRow>, StoreError> {
        TaskStore::find_by_hash(self, tenant, input_hash).await
    }
    async fn get(&self, tenant: &str, task_id: Uuid) -> Result<Option<TaskRow>, StoreError> {
        TaskStore::get(self, tenant, task_id).await
    }
    async fn insert_with_outbox(
        &self,
        tenant: &str,
        input_hash: &str,
        renderer_version: &str,
        ttl: Duration,
        pending: &Pending,
    ) -> Result<Inserted, StoreError> {
        TaskStore::insert_with_outbox(self, tenant, input_hash, renderer_version, ttl, pending)
            .await
    }
    async fn reopen(
        &self,
        task_id: Uuid,
        ttl: Duration,
        outbox: &str,
        inputs_sha256: &str,
    ) -> Result<bool, StoreError> {
        TaskStore::reopen(self, task_id, ttl, outbox, inputs_sha256).await
    }
    async fn mark_enqueued(
        &self,
        task_id: Uuid,
        input_s3_key: Option<&str>,
    ) -> Result<(), StoreError> {
        TaskStore::mark_enqueued(self, task_id, input_s3_key).await
    }
    async fn open_tasks(&self, tenant: &str, at_most: i64) -> Result<i64, StoreError> {
        TaskStore::open_tasks(self, tenant, at_most).await
    }
    async fn insert_failure(
        &self,
        tenant: &str,
        input_hash: &str,
        renderer_version: &str,
        ttl: Duration,
        error: &TaskError,
    ) -> Result<Option<TaskRow>, StoreError> {
        TaskStore::insert_failure(self, tenant, input_hash, renderer_version, ttl, error).await
    }
}

#[cfg(test)]
pub mod memory {
    //! Rows in a map, with the SQL's rules written out: one row per (tenant,
    //! input hash), and a reopen only of a retryable failure or an expired outcome.

    use std::sync::Mutex;

    use chrono::Utc;

    use super::*;
    use crate::tasks::failure::Fate;
    use crate::tasks::TaskStatus;

    #[derive(Default)]
    pub struct MemoryRecords {
        pub rows: Mutex<Vec<TaskRow>>,
        /// Outbox messages, by task, as the row would hold them.
        pub outbox: Mutex<Vec<(Uuid, String)>>,
    }

    pub fn pending_row(task_id: Uuid, tenant: &str, input_hash: &str, ttl: Duration) -> TaskRow {
        let now = Utc::now();
        TaskRow {
            task_id,
            tenant: tenant.into(),
            input_hash: input_hash.into(),
            status: TaskStatus::Pending,
            result: None,
            svg_s3_key: None,
            svg_bytes: None,
            input_s3_key: None,
            error: None,
            processing_time_ms: None,
            cache_hits: 0,
            attempts: 0,
            submitted_at: now,
            enqueued_at: None,
            started_at: None,
            completed_at: None,
            ttl_expires_at: now + chrono::Duration::from_std(ttl).unwrap_or_default(),
            stages: None,
        }
    }

    impl MemoryRecords {
        pub fn row(&self, task_id: Uuid) -> Option<TaskRow> {
            let rows = self.rows.lock().unwrap();
            rows.iter().find(|r| r.task_id == task_id).cloned()
        }
        pub fn update(&self, task_id: Uuid, change: impl FnOnce(&mut TaskRow)) {
            let mut rows = self.rows.lock().unwrap();
            if let Some(r) = rows.iter_mut().find(|r| r.task_id == task_id) {
                change(r);
            }
        }
    }

    #[async_trait]
    impl TaskRecords for MemoryRecords {
        async fn find_by_hash(
            &self,
            tenant: &str,
            input_hash: &str,
        ) -> Result<Option<TaskRow>, StoreError> {
            let rows = self.rows.lock().unwrap();
            Ok(rows
                .iter()
                .find(|r| r.tenant == tenant && r.input_hash == input_hash)
                .cloned())
        }
        async fn get(&self, tenant: &str, task_id: Uuid) -> Result<Option<TaskRow>, StoreError> {
            Ok(self.row(task_id).filter(|r| r.tenant == tenant))
        }
        async fn insert_with_outbox(
            &self,
            tenant: &str,
            input_hash: &str,
            _renderer_version: &str,
            ttl: Duration,
            pending: &Pending,
        ) -> Result<Inserted, StoreError> {
            let mut rows = self.rows.lock().unwrap();
            if let Some(r) = rows
                .iter()
                .find(|r| r.tenant == tenant && r.input_hash == input_hash)
            {
                return Ok(Inserted::Existing(r.clone()));
            }
            let row = pending_row(pending.task_id, tenant, input_hash, ttl);
            rows.push(row.clone());
            if let Some(body) = &pending.outbox {
                self.outbox
                    .lock()
                    .unwrap()
                    .push((pending.task_id, body.clone()));
            }
            Ok(Inserted::Created(row))
        }
        async fn reopen(
            &self,
            task_id: Uuid,
            ttl: Duration,
            outbox: &str,
            _inputs_sha256: &str,
        ) -> Result<bool, StoreError> {
            let mut rows = self.rows.lock().unwrap();
            let Some(r) = rows.iter_mut().find(|r| r.task_id == task_id) else {
                return Ok(false);
            };
            let retryable = r.status == TaskStatus::Failure
                && r.error
                    .as_ref()
                    .is_some_and(|e| Fate::of(e) == Fate::RunAgain);
            let expired = r.status.is_finished()
                && crate::policy::lifetime::is_expired(r.ttl_expires_at, Utc::now());
            if !(retryable || expired) {
                return Ok(false);
            }
            *r = pending_row(task_id, &r.tenant.clone(), &r.input_hash.clone(), ttl);
            self.outbox
                .lock()
                .unwrap()
                .push((task_id, outbox.to_owned()));
            Ok(true)
        }
        async fn mark_enqueued(
            &self,
            task_id: Uuid,
            input_s3_key: Option<&str>,
        ) -> Result<(), StoreError> {
            self.update(task_id, |r| {
                r.enqueued_at = Some(Utc::now());
                if let Some(k) = input_s3_key {
                    r.input_s3_key = Some(k.to_owned());
                }
            });
            self.outbox.lock().unwrap().retain(|(id, _)| *id != task_id);
            Ok(())
        }
        async fn open_tasks(&self, tenant: &str, at_most: i64) -> Result<i64, StoreError> {
            let rows = self.rows.lock().unwrap();
            let open = rows
                .iter()
                .filter(|r| r.tenant == tenant && !r.status.is_finished())
                .count() as i64;
            Ok(open.min(at_most))
        }
        async fn insert_failure(
            &self,
            tenant: &str,
            input_hash: &str,
            _renderer_version: &str,
            ttl: Duration,
            error: &TaskError,
        ) -> Result<Option<TaskRow>, StoreError> {
            let mut rows = self.rows.lock().unwrap();
            if rows
                .iter()
                .any(|r| r.tenant == tenant && r.input_hash == input_hash)
            {
                return Ok(None);
            }
            let mut row = pending_row(Uuid::new_v4(), tenant, input_hash, ttl);
            row.status = TaskStatus::Failure;
            row.error = Some(error.clone());
            row.completed_at = Some(row.submitted_at);
            rows.push(row.clone());
            Ok(Some(row))
        }
    }
}
